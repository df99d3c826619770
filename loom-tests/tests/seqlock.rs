//! Model checks of the seqlock protocol: a reader never accepts a torn value while two
//! writers race, and an array snapshot never sees half of a batch write across stripes,
//! nor a later write without the earlier one; a writer of one stripe never disturbs a
//! reader of another, and writers of elements sharing a word lose nothing.
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

// Under loom a stripe is 2 elements of `u64` (8 of `u32`): elements 0 and 2 below are in
// different stripes, 0 and 1 in the same one.

#[test]
fn array_snapshot_sees_a_batch_write_across_stripes_entirely_or_not_at_all() {
    loom::model(|| {
        assert_eq!(SeqLockArray::<u64>::STRIPE_LEN, 2);
        let a: Arc<Box<SeqLockArray<u64>>> = Arc::new(SeqLockArray::from_slice(&[5, 0, 5]));
        let a2 = a.clone();
        let writer = thread::spawn(move || {
            a2.write_batch(|v| {
                v[0] -= 2;
                v[2] += 2;
            })
            .expect("no writer died mid-write")
        });
        let mut out = [0u64; 3];
        a.snapshot(&mut out);
        assert!(
            out == [5, 0, 5] || out == [3, 0, 7],
            "half a batch in a snapshot: {out:?}"
        );
        writer.join().unwrap();
        assert_eq!(a.to_vec(), [3, 0, 7]);
    });
}

/// The cross-stripe half of the snapshot argument (and of its sum-of-sequences recheck):
/// a snapshot that holds a write holds every write that happened before it.
#[test]
fn array_snapshot_never_holds_a_later_write_without_an_earlier_one() {
    loom::model(|| {
        let a: Arc<Box<SeqLockArray<u64>>> = Arc::new(SeqLockArray::from_slice(&[0, 0, 0]));
        let a2 = a.clone();
        let writer = thread::spawn(move || {
            a2.set(0, 1);
            a2.set(2, 1);
        });
        let mut out = [0u64; 3];
        a.snapshot(&mut out);
        assert!(
            out[2] <= out[0],
            "element 2's write without element 0's: {out:?}"
        );
        writer.join().unwrap();
    });
}

/// A reader of one stripe is never disturbed by a writer of another: its first attempt
/// succeeds, whatever the interleaving.
#[test]
fn array_writer_of_one_stripe_never_disturbs_a_reader_of_another() {
    loom::model(|| {
        let a: Arc<Box<SeqLockArray<u64>>> = Arc::new(SeqLockArray::from_slice(&[0, 0, 7]));
        let a2 = a.clone();
        let writer = thread::spawn(move || a2.set(0, 1));
        assert_eq!(a.try_get(2), Ok(7));
        writer.join().unwrap();
        assert_eq!(a.get(0), 1);
    });
}

/// Two `u32` elements share a data word: their writers merge their bytes into it under
/// the stripe's lock, so neither write is lost, and a reader sees each value whole.
#[test]
fn array_writers_of_elements_sharing_a_word_lose_nothing() {
    loom::model(|| {
        let a: Arc<Box<SeqLockArray<u32>>> = Arc::new(SeqLockArray::from_slice(&[0, 0]));
        let a2 = a.clone();
        let writer = thread::spawn(move || a2.set(0, 0x1111_1111));
        assert!(a.update(1, |v| *v = 0x2222_2222).is_ok());
        let v = a.get(0);
        assert!(v == 0 || v == 0x1111_1111, "torn element {v:#x}");
        writer.join().unwrap();
        assert_eq!(a.to_vec(), [0x1111_1111, 0x2222_2222]);
    });
}
