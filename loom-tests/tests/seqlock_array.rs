//! Model checks of `SeqLockArray`'s batch writes against the other writers: a batch over
//! two stripes racing an element writer of one of them and a snapshot reader (no torn or
//! half-batch snapshot, a serial final state, no deadlock), and two batches racing each
//! other and an element writer (no deadlock, no lost acknowledged write).
//!
//! Under loom a stripe is 2 elements of 8 bytes (see `stripe_len` in
//! `src/seqlock/array.rs`: fewer atomics per model, same protocol), so the 4 `u64`s below
//! are 2 stripes of 2 data words each: a copy can tear inside a stripe as well as across
//! stripes. A `u64` is the tiniest element that keeps one element per word (smaller ones
//! share words and, under loom, put 8 elements in a stripe).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::SeqLockArray;

/// A shared array of four `u64`s (two stripes) holding `init`.
fn array(init: [u64; 4]) -> Arc<Box<SeqLockArray<u64>>> {
    assert_eq!(
        SeqLockArray::<u64>::STRIPE_LEN,
        2,
        "the models assume 2-element stripes"
    );
    Arc::new(SeqLockArray::from_slice(&init))
}

/// A batch writer over both stripes (`write_batch`, all elements to 1), an element writer
/// of stripe 0 (element 1 to 2) and a snapshot reader, all at once. The writes are
/// `B` = `[1, 1, 1, 1]` and `E` = element 1 to 2, so every state of some serial order is
/// one of `[0, 0, 0, 0]`, `[0, 2, 0, 0]` (E), `[1, 1, 1, 1]` (B, or E then B) and
/// `[1, 2, 1, 1]` (B then E). A snapshot that is anything else holds part of a write: a
/// stripe with values of two writes (torn inside a stripe) or half of the batch (torn
/// across stripes). Every thread finishing in every interleaving is the no-deadlock half
/// (loom reports a deadlock when every thread is blocked).
#[test]
fn batch_element_and_snapshot_race_to_a_serial_state() {
    loom::model(|| {
        let a = array([0; 4]);
        let (ab, ae) = (a.clone(), a.clone());
        let batch = thread::spawn(move || {
            ab.write_batch(|v| v.fill(1))
                .expect("no writer died mid-write")
        });
        let elem = thread::spawn(move || ae.set(1, 2));
        let serial = [[0, 0, 0, 0], [0, 2, 0, 0], [1, 1, 1, 1], [1, 2, 1, 1]];
        let mut out = [9u64; 4];
        a.snapshot(&mut out);
        assert!(serial.contains(&out), "torn snapshot {out:?}");
        batch.join().unwrap();
        elem.join().unwrap();
        let end = a.to_vec();
        assert!(
            end == [1, 1, 1, 1] || end == [1, 2, 1, 1],
            "final state of no serial order: {end:?}"
        );
    });
}

/// Two batch writers (each adds 1 to every element: a read-modify-write, so a batch that
/// ran on a stale copy or was overwritten shows) and an element writer of stripe 1 (adds
/// 10 to element 2), all at once. The element writer can make a batch find stripe 1 busy
/// after it took stripe 0, so the release-everything-and-block-on-the-busy-stripe path
/// runs. Every call returns (no deadlock) and the result holds every acknowledged write.
#[test]
fn two_batches_and_an_element_writer_lose_nothing() {
    loom::model(|| {
        let a = array([0; 4]);
        let (a1, a2) = (a.clone(), a.clone());
        let b1 = thread::spawn(move || {
            a1.write_batch(|v| v.iter_mut().for_each(|x| *x += 1))
                .expect("no writer died mid-write")
        });
        let e = thread::spawn(move || {
            a2.update(2, |x| *x += 10)
                .expect("no writer died mid-write")
        });
        a.write_batch(|v| v.iter_mut().for_each(|x| *x += 1))
            .expect("no writer died mid-write");
        b1.join().unwrap();
        e.join().unwrap();
        assert_eq!(a.to_vec(), [2, 2, 12, 2], "a lost write");
    });
}
