//! [`MapOptions`] (what a map is created with) and the geometry derived from them: how many
//! stripes, slots and words the map has (the capacity rule of the [module docs](super)).

use super::error::MapError;

/// The largest `key_max` a map accepts (bytes).
pub const MAX_KEY_LEN: usize = 1024;
/// The largest `value_max` a map accepts (bytes).
pub const MAX_VALUE_LEN: usize = 65536;
/// The largest capacity a map accepts (entries).
pub const MAX_CAPACITY: usize = 1 << 32;

/// Entries per stripe that the sizing rule aims at (the mean load of a stripe at capacity is
/// at most this).
pub(crate) const STRIPE_TARGET: usize = 128;
/// Most slots in a stripe: a slot's home offset is stored in 8 bits.
pub(crate) const MAX_STRIPE_SLOTS: usize = 256;

/// Words of a slot before its key: sequence, meta, expiry, stamp.
pub(crate) const SLOT_HEAD_WORDS: usize = 4;
/// Words of the map header (line 0) and of the count line (line 1).
pub(crate) const HEADER_LINES: usize = 2;

/// The parameters a map is created with: its capacity (entries) and the largest key and
/// value it holds (bytes). Fixed for the map's life and recorded in its header.
///
/// Validated when a map is made: `capacity` in `1..=2^32`, `key_max` in `1..=1024`,
/// `value_max` in `0..=65536` ([`MapError::InvalidOptions`] otherwise).
///
/// # Examples
///
/// ```
/// use shmstate::MapOptions;
///
/// let o = MapOptions::new(1000).key_max(16).value_max(8);
/// assert_eq!((o.capacity(), o.key_max_len(), o.value_max_len()), (1000, 16, 8));
/// assert_eq!(MapOptions::new(10).key_max_len(), 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapOptions {
    capacity: usize,
    key_max: usize,
    value_max: usize,
}

impl MapOptions {
    /// A map of `capacity` entries, keys of up to 64 bytes and values of up to 256.
    pub const fn new(capacity: usize) -> Self {
        MapOptions {
            capacity,
            key_max: 64,
            value_max: 256,
        }
    }

    /// Keys of up to `bytes` bytes (1 to 1024).
    pub const fn key_max(mut self, bytes: usize) -> Self {
        self.key_max = bytes;
        self
    }

    /// Values of up to `bytes` bytes (0 to 65536).
    pub const fn value_max(mut self, bytes: usize) -> Self {
        self.value_max = bytes;
        self
    }

    /// The number of entries the map is sized for (see the capacity rule in the
    /// [module docs](super)).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The longest key, in bytes.
    pub fn key_max_len(&self) -> usize {
        self.key_max
    }

    /// The longest value, in bytes.
    pub fn value_max_len(&self) -> usize {
        self.value_max
    }

    /// Checks the ranges.
    pub(crate) fn validate(&self) -> Result<(), MapError> {
        let reason = if self.capacity == 0 {
            "capacity is 0"
        } else if self.capacity > MAX_CAPACITY {
            "capacity is above 2^32"
        } else if self.key_max == 0 || self.key_max > MAX_KEY_LEN {
            "key_max is not in 1..=1024"
        } else if self.value_max > MAX_VALUE_LEN {
            "value_max is above 65536"
        } else {
            return Ok(());
        };
        Err(MapError::InvalidOptions { reason })
    }

    /// The geometry of a map with these options, or `None` if they are out of range or
    /// the map would not fit the address space.
    pub(crate) fn geometry(&self) -> Option<Geometry> {
        self.validate().ok()?;
        let n = self.capacity;
        // Stripes: a power of two such that the mean load at capacity is at most
        // STRIPE_TARGET entries.
        let stripes = n.div_ceil(STRIPE_TARGET).checked_next_power_of_two()?;
        let mean = n.div_ceil(stripes);
        // Slots: room for the mean at load 0.75, and for the mean plus six standard
        // deviations of a binomial stripe load (sqrt(mean) bounds it), plus 4.
        let by_load = (mean * 4).div_ceil(3);
        let by_tail = mean + 6 * isqrt_ceil(mean) + 4;
        let sps = by_load.max(by_tail).min(MAX_STRIPE_SLOTS);
        let key_words = self.key_max.div_ceil(8);
        let value_words = self.value_max.div_ceil(8);
        let slot_words = SLOT_HEAD_WORDS + key_words + value_words;
        let slot_area = stripes.checked_mul(sps)?.checked_mul(slot_words)?;
        let lines = HEADER_LINES
            .checked_add(stripes)?
            .checked_add(slot_area.div_ceil(8))?;
        // The object must fit `isize` bytes.
        lines
            .checked_mul(64)
            .filter(|&b| b <= isize::MAX as usize)?;
        Some(Geometry {
            options: *self,
            stripes,
            sps,
            key_words,
            value_words,
            slot_words,
            lines,
            seed: [0; 2],
        })
    }
}

/// `ceil(sqrt(n))` for the small `n` of a stripe's mean load.
fn isqrt_ceil(n: usize) -> usize {
    let mut r = 0;
    while r * r < n {
        r += 1;
    }
    r
}

/// A map's layout, derived from its options, and its hash seed: the validated local copy
/// every operation works from (see "Hostile bytes" in the [module docs](super)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) options: MapOptions,
    /// Stripes (a power of two).
    pub(crate) stripes: usize,
    /// Slots per stripe (at most 256).
    pub(crate) sps: usize,
    /// Words of a key (`ceil(key_max / 8)`).
    pub(crate) key_words: usize,
    /// Words of a value (`ceil(value_max / 8)`).
    pub(crate) value_words: usize,
    /// Words of a slot: head, key, value.
    pub(crate) slot_words: usize,
    /// Total 64-byte lines of the object.
    pub(crate) lines: usize,
    /// The hash seed, as SipHash's two key words (`k0`, `k1`: the seed's bytes 0..8 and
    /// 8..16, little-endian).
    pub(crate) seed: [u64; 2],
}

impl Geometry {
    /// Total slots.
    pub(crate) fn slots(&self) -> usize {
        self.stripes * self.sps
    }

    /// Index of the first word of slot `i` of stripe `s`, counted from the start of the
    /// slot area.
    #[inline]
    pub(crate) fn slot_base(&self, s: usize, i: usize) -> usize {
        (s * self.sps + i) * self.slot_words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_capacity_rule() {
        for n in [1, 2, 10, 100, 128, 129, 1000, 100_000, 1 << 20] {
            let g = MapOptions::new(n)
                .key_max(8)
                .value_max(8)
                .geometry()
                .unwrap();
            assert!(g.stripes.is_power_of_two());
            assert!(g.sps <= MAX_STRIPE_SLOTS);
            let mean = n.div_ceil(g.stripes);
            assert!(mean <= STRIPE_TARGET);
            // Room for the mean load at 0.75 at least, and for the whole capacity in a
            // one-stripe map.
            assert!(g.sps * 3 >= mean * 4, "n = {n}");
            if g.stripes == 1 {
                assert!(g.sps >= n);
            }
        }
        assert!(MapOptions::new(0).geometry().is_none());
        assert!(MapOptions::new(1).key_max(0).geometry().is_none());
        assert!(MapOptions::new(1).key_max(1025).geometry().is_none());
        assert!(MapOptions::new(1).value_max(65537).geometry().is_none());
    }
}
