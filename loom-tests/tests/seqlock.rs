//! Model checks of the seqlock protocol: a reader never accepts a torn value while two
//! writers race, and an array snapshot never sees half of a batch write, nor a later
//! write without the earlier one.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::{SeqLock, SeqLockArray};

#[test]
fn seqlock_read_is_never_torn_with_two_writers() {
    loom::model(|| {
        let s = Arc::new(SeqLock::new([0u64; 2]));
        let writers: Vec<_> = (1..=2u64)
            .map(|k| {
                let s = s.clone();
                thread::spawn(move || s.write([k; 2]))
            })
            .collect();
        let v = s.read();
        assert_eq!(v[0], v[1], "torn read {v:?}");
        for w in writers {
            w.join().unwrap();
        }
        let v = s.read();
        assert!(v == [1; 2] || v == [2; 2], "lost write {v:?}");
    });
}

#[test]
fn seqlock_update_is_serialised() {
    loom::model(|| {
        let s = Arc::new(SeqLock::new([0u64; 2]));
        let s2 = s.clone();
        let t = thread::spawn(move || assert!(s2.update(|v| *v = [v[0] + 1, v[1] + 1]).is_ok()));
        assert!(s.update(|v| *v = [v[0] + 1, v[1] + 1]).is_ok());
        t.join().unwrap();
        assert_eq!(s.read(), [2, 2]);
    });
}

#[test]
fn array_snapshot_sees_a_batch_write_entirely_or_not_at_all() {
    loom::model(|| {
        let a: Arc<Box<SeqLockArray<u64>>> = Arc::new(SeqLockArray::from_slice(&[5, 5]));
        let a2 = a.clone();
        let writer = thread::spawn(move || {
            a2.write_batch(|v, _| {
                v[0] -= 2;
                v[1] += 2;
            })
        });
        let mut out = [0u64; 2];
        a.snapshot(&mut out);
        assert_eq!(out[0] + out[1], 10, "inconsistent snapshot {out:?}");
        assert!(
            out == [5, 5] || out == [3, 7],
            "unexpected snapshot {out:?}"
        );
        writer.join().unwrap();
        assert_eq!(a.to_vec(), [3, 7]);
    });
}

/// The cross-element half of the snapshot argument (and of its sum-of-sequences recheck):
/// a snapshot that holds a write holds every write that happened before it.
#[test]
fn array_snapshot_never_holds_a_later_write_without_an_earlier_one() {
    loom::model(|| {
        let a: Arc<Box<SeqLockArray<u64>>> = Arc::new(SeqLockArray::from_slice(&[0, 0]));
        let a2 = a.clone();
        let writer = thread::spawn(move || {
            a2.set(0, 1);
            a2.set(1, 1);
        });
        let mut out = [0u64; 2];
        a.snapshot(&mut out);
        assert!(
            out[1] <= out[0],
            "element 1's write without element 0's: {out:?}"
        );
        writer.join().unwrap();
    });
}
