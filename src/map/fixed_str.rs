//! [`FixedStr<N>`]: a short string of fixed capacity, plain old data, usable as a key or a
//! value of a [`Map`](super::Map).

use core::fmt;
use core::ops::Deref;

use crate::shared::{Elem, Element, Field};

use super::error::TooLong;

/// A string of at most `N` bytes (`N` ≤ 255) stored inline: a length byte and `N` bytes,
/// zero after the string. Plain old data ([`bytemuck::Pod`]) with an identity
/// ([`Element`]), so it can be a key or a value of a [`Map`](super::Map), and of every
/// other primitive that holds `Pod` data.
///
/// Equal strings have equal bytes (the tail is zeroed by every constructor), so they are
/// the same map key. Any bytes are a valid `FixedStr` (a peer may write garbage): a length
/// above `N` reads as `N`, and [`as_str`](Self::as_str) returns the longest valid UTF-8
/// prefix.
///
/// # Examples
///
/// ```
/// use shmstate::FixedStr;
///
/// let s = FixedStr::<23>::new("hello")?; // 24 bytes
/// assert_eq!(s.as_str(), "hello");
/// assert_eq!(s.len(), 5); // through `Deref<Target = str>`
/// assert_eq!(size_of::<FixedStr<23>>(), 24);
/// assert!(FixedStr::<2>::new("abc").is_err());
/// # Ok::<(), shmstate::map::TooLong>(())
/// ```
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FixedStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

// SAFETY: `#[repr(C)]` of a `u8` and a `[u8; N]`: alignment 1, so no padding; all-zero
// is the empty string.
unsafe impl<const N: usize> bytemuck::Zeroable for FixedStr<N> {}
// SAFETY: as above; every bit pattern is a valid value (no invariant is relied on for
// safety: `as_str` validates), and the type is `Copy + 'static`.
unsafe impl<const N: usize> bytemuck::Pod for FixedStr<N> {}

impl<const N: usize> Element for FixedStr<N> {
    const ELEM: Elem = Elem::record(
        "FixedStr",
        size_of::<FixedStr<N>>(),
        1,
        &[
            Field {
                name: "len",
                offset: 0,
                ty: u8::ELEM,
            },
            Field {
                name: "bytes",
                offset: 1,
                ty: <[u8; N] as Element>::ELEM,
            },
        ],
    );
}

impl<const N: usize> FixedStr<N> {
    /// The most bytes a `FixedStr<N>` holds.
    pub const CAPACITY: usize = {
        assert!(N <= 255, "FixedStr<N>: N must be at most 255");
        N
    };

    /// `s`, if it is at most `N` bytes long.
    ///
    /// # Errors
    ///
    /// [`TooLong`] if `s` is longer than `N` bytes.
    pub fn new(s: &str) -> Result<Self, TooLong> {
        let max = Self::CAPACITY;
        if s.len() > max {
            return Err(TooLong { len: s.len(), max });
        }
        let mut bytes = [0u8; N];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(FixedStr {
            len: s.len() as u8,
            bytes,
        })
    }

    /// The string (the longest valid UTF-8 prefix, if a peer wrote garbage).
    pub fn as_str(&self) -> &str {
        let b = &self.bytes[..(self.len as usize).min(N)];
        match core::str::from_utf8(b) {
            Ok(s) => s,
            // `valid_up_to` is a char boundary within `b`, so this cannot fail.
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
        }
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        bytemuck::Zeroable::zeroed()
    }
}

impl<const N: usize> Deref for FixedStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> AsRef<str> for FixedStr<N> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> TryFrom<&str> for FixedStr<N> {
    type Error = TooLong;
    fn try_from(s: &str) -> Result<Self, TooLong> {
        FixedStr::new(s)
    }
}

impl<const N: usize> PartialEq for FixedStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for FixedStr<N> {}

impl<const N: usize> PartialEq<str> for FixedStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for FixedStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> PartialOrd for FixedStr<N> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for FixedStr<N> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl<const N: usize> core::hash::Hash for FixedStr<N> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_reads_as_a_valid_prefix() {
        let mut raw = [0xFFu8; 9];
        raw[0] = 200;
        raw[1] = b'a';
        let s: FixedStr<8> = bytemuck::cast(raw);
        assert_eq!(s.as_str(), "a");
        let e: FixedStr<8> = Default::default();
        assert_eq!(e.as_str(), "");
    }
}
