//! The real futex, through rustix.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::thread::futex;
use rustix::time::{ClockId, Timespec, clock_gettime};

use crate::sync::AtomicU32;

/// `FUTEX_BITSET_MATCH_ANY`: with `FUTEX_WAIT_BITSET` this is a plain wait whose timeout is
/// an absolute `CLOCK_MONOTONIC` time.
const MATCH_ANY: NonZeroU32 = NonZeroU32::MAX;

/// Blocks while `*word == expected`, for at most `timeout` (`None`: no limit).
///
/// Returns `false` if the timeout expired, `true` otherwise: woken, the word did not hold
/// `expected` when the kernel looked, or a spurious wakeup. Callers re-check their
/// condition in a loop either way. `EINTR` is retried against the same deadline.
#[inline]
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let deadline = timeout.and_then(monotonic_after);
    match (timeout, deadline) {
        // A timeout too large to represent: no limit.
        (Some(_), None) => wait_abs(word, expected, None),
        (_, deadline) => wait_abs(word, expected, deadline.as_ref()),
    }
}

/// Like [`wait`], with an absolute deadline (`std::time::Instant` is `CLOCK_MONOTONIC`).
#[inline]
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    match deadline {
        None => wait_abs(word, expected, None),
        Some(d) => wait(
            word,
            expected,
            Some(d.saturating_duration_since(Instant::now())),
        ),
    }
}

/// Wakes at most one thread blocked in [`wait`] on `word`, in any process.
#[inline]
pub fn wake_one(word: &AtomicU32) {
    // Errors: EFAULT/EINVAL cannot happen for a valid, aligned `&AtomicU32`; waking nobody
    // is not an error. Nothing useful to report.
    let _ = futex::wake(word, futex::Flags::empty(), 1);
}

/// Wakes every thread blocked in [`wait`] on `word`, in any process.
#[inline]
pub fn wake_all(word: &AtomicU32) {
    // As in `wake_one`.
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// `CLOCK_MONOTONIC` now + `d`, or `None` if that does not fit a `Timespec`.
fn monotonic_after(d: Duration) -> Option<Timespec> {
    let now = clock_gettime(ClockId::Monotonic);
    let secs = i64::try_from(d.as_secs()).ok()?.checked_add(now.tv_sec)?;
    let nanos = now.tv_nsec + i64::from(d.subsec_nanos());
    let (secs, nanos) = if nanos >= 1_000_000_000 {
        (secs.checked_add(1)?, nanos - 1_000_000_000)
    } else {
        (secs, nanos)
    };
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    })
}

#[cold]
fn wait_abs(word: &AtomicU32, expected: u32, deadline: Option<&Timespec>) -> bool {
    loop {
        match futex::wait_bitset(word, futex::Flags::empty(), expected, deadline, MATCH_ANY) {
            // Woken (maybe spuriously), or the word already differed.
            Ok(()) | Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(Errno::TIMEDOUT) => return false,
            // EFAULT/EINVAL/ENOSYS cannot happen for a valid aligned word on Linux ≥ 2.6.25;
            // report a spurious wakeup so the caller re-checks rather than spinning here.
            Err(_) => return true,
        }
    }
}
