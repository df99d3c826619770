//! The clock of the map's deadlines: `CLOCK_MONOTONIC` of the initial time namespace, one
//! clock for every process of a boot.
//!
//! A process in a time namespace reads `CLOCK_MONOTONIC` shifted by its namespace's offset
//! (`/proc/<pid>/timens_offsets`), so a deadline it wrote on its own clock would read, to
//! a process in another namespace, as passed long ago (and be reclaimed by its next
//! write) or as days away. Every process therefore takes its own offset off what it reads
//! ([`now_ns`]), and deadlines in the map are on the initial namespace's clock.
//!
//! The offset is worked out once per process (every thread of a process is in one time
//! namespace), by its first thread to read the clock: four `readlink`s and a read of the
//! thread's `/proc/<tid>/timens_offsets`, into stack buffers (no allocation). Then it
//! costs three atomic loads per clock read. After a failure that may pass (out of file
//! descriptors or memory) the next read asks again; meanwhile no deadline counts as
//! passed ([`expiry_now_ns`]: no live entry reads expired, none is reclaimed), and a
//! deadline written counts the offset as 0.
//!
//! Where the offset cannot be told, it counts as 0 (the initial namespace's), as where the
//! kernel has no time namespaces:
//! - without a `/proc` that shows the process;
//! - when neither the thread that works it out nor the main thread shows the process's
//!   own namespace as the one for their children: a thread's `timens_offsets` file shows
//!   the offsets of that one, which is another after an `unshare(CLONE_NEWTIME)` by the
//!   thread or by the thread that made it (threads share their maker's namespaces, the
//!   one for children included). So it counts as 0 where the calling thread was made by,
//!   or is, a thread that unshared, and the main thread has unshared too, or has exited.
//!   The first thread of a process to read the clock decides for the process: another
//!   thread may have told it.
//!
//! A process that changes its time namespace without a fork (`setns`, which the kernel
//! allows only a single-threaded process, or a checkpoint restored elsewhere) keeps the
//! offset it worked out before.

#[cfg(not(loom))]
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `CLOCK_MONOTONIC` of the initial time namespace now, in nanoseconds: this process's
/// `CLOCK_MONOTONIC` less its time namespace's offset (see the [module docs](self)). For
/// a deadline to write; while the offset cannot be read (a failure that may pass), the
/// offset counts as 0.
#[inline]
pub(crate) fn now_ns() -> u64 {
    own_clock_ns().wrapping_sub(monotonic_offset().unwrap_or(0) as u64)
}

/// [`now_ns`] to judge deadlines by: 0 (before every deadline: none has passed) while
/// this process's offset cannot be read, so that a failure that may pass makes no
/// reader see a live entry as expired and no writer reclaim it.
#[inline]
pub(crate) fn expiry_now_ns() -> u64 {
    match monotonic_offset() {
        Some(offset) => own_clock_ns().wrapping_sub(offset as u64),
        None => 0,
    }
}

/// This process's `CLOCK_MONOTONIC` now, in nanoseconds.
#[inline]
fn own_clock_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// The offset last worked out, in nanoseconds (as `i64` bits); valid while [`KNOWN`] holds
/// this process's fork generation plus one.
#[cfg(not(loom))]
static OFFSET: AtomicU64 = AtomicU64::new(0);

/// The fork generation ([`crate::owner::fork_generation`]) plus one that [`OFFSET`] was
/// worked out in, or 0: a forked child (whose generation differs) works it out again, as
/// it may be in another time namespace (forked after its parent's
/// `unshare(CLONE_NEWTIME)`).
#[cfg(not(loom))]
static KNOWN: AtomicU32 = AtomicU32::new(0);

/// This process's time namespace's `CLOCK_MONOTONIC` offset from the initial namespace's,
/// in nanoseconds (0 where it cannot be told; see the [module docs](self)); `None` after
/// a failure that may pass (the next call asks again).
#[cfg(not(loom))]
#[inline]
pub(crate) fn monotonic_offset() -> Option<i64> {
    let generation = crate::owner::fork_generation().wrapping_add(1);
    // Acquire: pairs with the Release store in `monotonic_offset_slow`, so `OFFSET` holds
    // the offset stored before it.
    if KNOWN.load(Ordering::Acquire) == generation {
        // Relaxed: ordered by the Acquire load above.
        return Some(OFFSET.load(Ordering::Relaxed) as i64);
    }
    monotonic_offset_slow(generation)
}

/// Loom models do not fork or change namespaces: one clock.
#[cfg(loom)]
pub(crate) fn monotonic_offset() -> Option<i64> {
    Some(0)
}

#[cfg(not(loom))]
#[cold]
fn monotonic_offset_slow(generation: u32) -> Option<i64> {
    // `None`: a failure that may pass (out of file descriptors or memory); the next call
    // asks again.
    let offset = read_offset()?;
    // Cached only where forks bump the generation, so that a child never reuses its
    // parent's answer (generation 0 after a wrap is never cached: `KNOWN` reads 0 as none).
    if generation != 0 && crate::owner::fork_counted() {
        // Relaxed: published by the Release store below. Racing threads of one process
        // store the same offset, unless one of them could not tell it (then 0, see the
        // module docs): the first store published is the process's.
        OFFSET.store(offset as u64, Ordering::Relaxed);
        // Release: pairs with the Acquire load in `monotonic_offset`.
        KNOWN.store(generation, Ordering::Release);
    }
    Some(offset)
}

/// The calling thread's offset for good (0 where it cannot be told, see the
/// [module docs](self)), or `None` after a failure that may pass.
#[cfg(not(any(miri, loom)))]
fn read_offset() -> Option<i64> {
    use crate::owner::TimensOffsets;
    use rustix::io::Errno;
    let mut buf = [0u8; 256];
    match crate::owner::timens_offsets(&mut buf) {
        Ok(TimensOffsets::Text(len)) => Some(parse_offset(&buf[..len]).unwrap_or(0)),
        Ok(TimensOffsets::NoNamespaces | TimensOffsets::Unknowable) => Some(0),
        Err(Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::INTR | Errno::AGAIN) => None,
        Err(_) => Some(0),
    }
}

/// Miri's isolation refuses `/proc`: one clock.
#[cfg(all(miri, not(loom)))]
fn read_offset() -> Option<i64> {
    Some(0)
}

/// The `CLOCK_MONOTONIC` offset in `timens_offsets` text (`<clock> <seconds>
/// <nanoseconds>` per line; the clock by name, or by number), in
/// nanoseconds; `None` if there is no such line or it does not parse.
#[cfg(not(loom))]
#[cfg_attr(miri, allow(dead_code))]
fn parse_offset(text: &[u8]) -> Option<i64> {
    let text = core::str::from_utf8(text).ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_ascii_whitespace();
        if !matches!(words.next()?, "monotonic" | "1") {
            return None;
        }
        let secs: i64 = words.next()?.parse().ok()?;
        let nanos: i64 = words.next()?.parse().ok()?;
        if !(0..1_000_000_000).contains(&nanos) || words.next().is_some() {
            return None;
        }
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_line_is_read_by_name_or_number() {
        let named = b"monotonic           86400         0\nboottime            7         0\n";
        assert_eq!(parse_offset(named), Some(86_400_000_000_000));
        assert_eq!(
            parse_offset(b"7 5 0\n1 -3 250000000\n"),
            Some(-2_750_000_000)
        );
        assert_eq!(parse_offset(b"boottime 7 0\nmonotonic 0 0\n"), Some(0));
    }

    #[test]
    fn a_malformed_line_is_no_offset() {
        for text in [
            &b""[..],
            b"boottime 7 0\n",
            b"monotonic 1\n",
            b"monotonic x 0\n",
            b"monotonic 1 1000000000\n",
            b"monotonic 1 -1\n",
            b"monotonic 1 0 9\n",
            b"monotonic 9223372036854775807 0\n",
            b"\xFF\xFE",
        ] {
            assert_eq!(parse_offset(text), None, "{text:?}");
        }
    }

    /// In the test process (the initial time namespace, or a kernel without them): the
    /// offset is the file's, and is cached.
    #[cfg_attr(miri, ignore = "reads /proc")]
    #[test]
    fn this_process_reads_its_own_offset() {
        let expected = std::fs::read("/proc/self/timens_offsets")
            .ok()
            .and_then(|t| parse_offset(&t))
            .unwrap_or(0);
        assert_eq!(monotonic_offset(), Some(expected));
        assert_eq!(monotonic_offset(), Some(expected));
        if crate::owner::fork_counted() {
            assert_eq!(
                KNOWN.load(Ordering::Relaxed),
                crate::owner::fork_generation().wrapping_add(1)
            );
        }
    }
}
