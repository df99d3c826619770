//! `Value<bool>`: the std `AtomicBool` surface on a byte, where any non-zero byte another
//! process writes reads (and behaves) as `true`.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::time::Duration;

use shmstate::{Elem, Kind, Shared, TypeTag, Value};

#[test]
fn bool_value_matches_std_atomic_bool_for_every_operation() {
    for a in [false, true] {
        for b in [false, true] {
            macro_rules! same {
                ($op:ident $(, $arg:expr)*) => {{
                    let v = Value::new(a);
                    let s = AtomicBool::new(a);
                    assert_eq!(v.$op($($arg),*), s.$op($($arg),*), "{}({a}, {b})", stringify!($op));
                    assert_eq!(v.load(SeqCst), s.load(SeqCst), "{} left", stringify!($op));
                }};
            }
            same!(fetch_and, b, AcqRel);
            same!(fetch_nand, b, SeqCst);
            same!(fetch_or, b, Release);
            same!(fetch_xor, b, Acquire);
            same!(fetch_not, Relaxed);
            same!(swap, b, AcqRel);
            same!(compare_exchange, a, b, AcqRel, Acquire);
            same!(compare_exchange, !a, b, SeqCst, Relaxed);
            same!(fetch_update, SeqCst, Relaxed, |x: bool| Some(x != b));
            same!(fetch_update, SeqCst, Relaxed, |x: bool| (x == b)
                .then_some(!x));

            let v = Value::new(a);
            v.store(b, Release);
            assert_eq!(v.load(Acquire), b);
            assert_eq!(v.into_inner(), b);
        }
        assert_eq!(format!("{:?}", Value::new(a)), format!("{a:?}"));
    }
    assert!(!Value::<bool>::default().load(Relaxed));
}

#[test]
fn bool_value_is_one_byte_tagged_bool() {
    assert_eq!(size_of::<Value<bool>>(), 1);
    assert_eq!(align_of::<Value<bool>>(), 1);
    assert_eq!(
        <Value<bool> as Shared>::TAG,
        TypeTag::new(Kind::VALUE, Elem::BOOL)
    );
    assert_eq!(<Value<bool> as Shared>::size_for(1), Some(1));
}

/// The same byte seen as a `Value<u8>` (to write raw bytes, as a foreign process might)
/// and as a `Value<bool>`.
fn as_bool(raw: &Value<u8>) -> &Value<bool> {
    // SAFETY: both types are `#[repr(transparent)]` over an `AtomicU8` (same size and
    // alignment, asserted by the crate), every byte is a valid `Value<bool>`, and the
    // result borrows from `raw`, so it lives no longer than the memory.
    unsafe { &*std::ptr::from_ref(raw).cast::<Value<bool>>() }
}

/// Bytes other than 0 and 1, written by another process, read as `true`, and every
/// operation treats them exactly like `true`: no UB, no lost flip, no endless loop.
#[test]
#[cfg_attr(miri, ignore = "forks processes (Miri cannot fork)")]
fn any_nonzero_byte_written_by_another_process_reads_true() {
    common::watchdog(Duration::from_secs(30));
    let mem = common::SharedMem::<Value<u8>>::new(1);
    let raw = mem.get();
    let flag = as_bool(raw);
    assert!(!flag.load(Relaxed), "zeroed memory is false");

    for byte in [2u8, 3, 127, 128, 254, 255] {
        // Write the byte from a child process, through the raw storage.
        let pids = common::fork_children(1, |_| raw.store(byte, Release));
        common::wait_all(&pids, Duration::from_secs(10));
        assert_eq!(raw.load(Acquire), byte);
        assert!(flag.load(Acquire), "byte {byte} reads true");

        // Each operation, starting from the foreign byte, does what it does to `true`.
        macro_rules! from_byte {
            ($op:expr, returns $ret:expr, leaves $left:expr) => {{
                raw.store(byte, Relaxed);
                assert_eq!($op, $ret, "{} on byte {byte}", stringify!($op));
                assert_eq!(
                    flag.load(Relaxed),
                    $left,
                    "{} on byte {byte}",
                    stringify!($op)
                );
            }};
        }
        from_byte!(flag.swap(false, AcqRel), returns true, leaves false);
        from_byte!(flag.fetch_and(true, AcqRel), returns true, leaves true);
        from_byte!(flag.fetch_and(false, AcqRel), returns true, leaves false);
        from_byte!(flag.fetch_or(false, AcqRel), returns true, leaves true);
        from_byte!(flag.fetch_or(true, AcqRel), returns true, leaves true);
        from_byte!(flag.fetch_xor(false, AcqRel), returns true, leaves true);
        from_byte!(flag.fetch_xor(true, AcqRel), returns true, leaves false);
        from_byte!(flag.fetch_nand(true, AcqRel), returns true, leaves false);
        from_byte!(flag.fetch_nand(false, AcqRel), returns true, leaves true);
        from_byte!(flag.fetch_not(AcqRel), returns true, leaves false);
        from_byte!(flag.compare_exchange(true, false, AcqRel, Acquire), returns Ok(true), leaves false);
        from_byte!(flag.compare_exchange(false, true, AcqRel, Acquire), returns Err(true), leaves true);
        from_byte!(
            flag.fetch_update(AcqRel, Acquire, |x| Some(!x)),
            returns Ok(true),
            leaves false
        );
        // A weak compare-exchange loop terminates on a foreign byte instead of failing on
        // it forever.
        from_byte!(
            {
                let mut tries = 0;
                while flag.compare_exchange_weak(true, false, AcqRel, Relaxed).is_err() {
                    tries += 1;
                    assert!(tries < 1000, "weak CAS keeps failing on byte {byte}");
                }
                tries < 1000
            },
            returns true,
            leaves false
        );
        // Writes are canonical again.
        flag.store(true, Relaxed);
        assert_eq!(raw.load(Relaxed), 1);
    }
}
