//! Unit tests of [`SeqLockArray`]'s layout, copies and batch recovery.

use super::*;

/// `bytes_for` is what `Box` and `&Self` think the object's size is, and the data
/// words and stripe headers fit in it, for every element size and many lengths.
fn shape<T: Pod>() {
    for len in (0..300).chain([1000, 4095, 4096, 4097]) {
        let a = SeqLockArray::<T>::new(len);
        let size = SeqLockArray::<T>::bytes_for(len).unwrap();
        assert_eq!(size_of_val(&*a), size, "len {len}");
        assert_eq!(align_of_val(&*a), 8);
        // The last header's end (module docs, "Layout"): headers are `STRIPE_LEN` apart,
        // and they end inside the `UnsafeCell`s, before the padding that rounds the size.
        let used = 8 * a.data_words()
            + (a.stripes().max(1) - 1) * SeqLockArray::<T>::STRIPE_LEN
            + 16 * usize::from(a.stripes() > 0);
        let cells = 24 + len * (size_of::<T>() + 1);
        assert!(used <= cells, "len {len}: {used} > {cells}");
        assert!(cells <= size && size - cells < 8);
        for k in 0..a.stripes() {
            let at = (a.stripe(k) as *const Stripe).addr() - (&raw const *a).addr();
            assert_eq!(at, 8 * a.data_words() + k * SeqLockArray::<T>::STRIPE_LEN);
        }
        assert_eq!((SeqLockArray::<T>::STRIPE_LEN * size_of::<T>()) % 8, 0);
        assert!(SeqLockArray::<T>::STRIPE_LEN.is_power_of_two());
        assert!(SeqLockArray::<T>::STRIPE_LEN >= 16);
    }
}

#[test]
fn every_element_size_fits_its_object() {
    shape::<()>();
    shape::<u8>();
    shape::<[u8; 3]>();
    shape::<u16>();
    shape::<[u8; 5]>();
    shape::<[u8; 7]>();
    shape::<f64>();
    shape::<[u8; 12]>();
    shape::<u128>();
    shape::<[u64; 8]>();
    shape::<[u8; 100]>();
}

/// Snapshots take the wide copy for 8 words or more (after at most one word to align
/// the source): every length and both source alignments copy every word once.
#[test]
fn snapshots_of_every_length_copy_every_word() {
    for len in 0..140u64 {
        let want: Vec<u64> = (1..=len).map(|i| i * 0x0101_0101_0101).collect();
        let a = SeqLockArray::from_slice(&want);
        assert_eq!(a.to_vec(), want, "len {len}");
        let bytes: Vec<[u8; 3]> = (0..len).map(|i| [i as u8, 1, 2]).collect();
        assert_eq!(SeqLockArray::from_slice(&bytes).to_vec(), bytes);
    }
    // A source that is 8- but not 16-aligned: an array placed 8 bytes into a buffer.
    let mut buf = vec![0u128; 200];
    let base = core::ptr::NonNull::from(&mut buf[..]).cast::<u8>();
    for skip in [0, 8] {
        // SAFETY: `base + skip` is 8-aligned, and the 3,200-byte buffer holds the
        // array's 16 + 9 · 100 bytes after `skip`; zeroed memory is a valid array; the
        // array is used only while `buf` lives.
        let a = unsafe {
            let p = core::ptr::NonNull::new_unchecked(base.as_ptr().add(skip));
            <SeqLockArray<u64> as crate::Shared>::from_raw_parts(p, 100).as_ref()
        };
        let want: Vec<u64> = (0..100).collect();
        a.set_all(&want);
        assert_eq!(a.to_vec(), want, "skip {skip}");
    }
}

/// A batch writer that finds every stripe held by one dead batch writer probes that
/// TID once or twice in all (the wait on the first stripe, then the first stripe it
/// tries), not once per stripe.
#[test]
fn a_dead_batch_writer_is_probed_once_not_per_stripe() {
    use crate::seqlock::single::tests::PROBES;
    let n = 100 * SeqLockArray::<u64>::STRIPE_LEN;
    let a = SeqLockArray::<u64>::new(n);
    // A thread that exits holding every stripe lock, mid-batch.
    let tid = std::thread::scope(|s| {
        s.spawn(|| {
            a.begin_batch_for_test(&vec![1; n]);
            crate::owner::current()
        })
        .join()
        .unwrap()
    });
    // `join` returns once the thread's TID is cleared, which can come before the kernel
    // has finished tearing the task down: until then a probe still finds it alive and the
    // writer below would (rightly) probe it again after a slice. Count only once it is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while crate::owner::probe(tid) == crate::owner::Liveness::Alive {
        assert!(
            std::time::Instant::now() < deadline,
            "an exited thread stayed alive"
        );
        std::thread::yield_now();
    }
    let before = PROBES.with(std::cell::Cell::get);
    a.set_all(&vec![2; n]);
    let probes = PROBES.with(std::cell::Cell::get) - before;
    assert!(
        probes <= 2,
        "{probes} probes for 100 stripes of one dead writer"
    );
    assert_eq!(a.to_vec(), vec![2; n]);
}

#[test]
fn an_f64_costs_nine_bytes() {
    let size = SeqLockArray::<f64>::bytes_for(1000).unwrap();
    assert_eq!(size, 24 + 9 * 1000);
}

/// Batch writes store to every stripe header, the last one included: under Miri, a header
/// that reached the padding after the object's `UnsafeCell`s would be a write through a
/// shared reference to bytes it may only read (lengths where the last header ends closest
/// to the end of the object).
#[test]
fn a_batch_write_stores_every_header_inside_the_cells() {
    fn check<T: Pod + PartialEq + core::fmt::Debug>(len: usize, v: T) {
        let a = SeqLockArray::<T>::new(len);
        a.set_all(&vec![v; len]);
        assert_eq!(a.to_vec(), vec![v; len], "len {len}");
    }
    for len in [1, 2, 3, 255, 256, 257, 263] {
        check(len, 7u8);
    }
    for len in [1, 65, 129] {
        check(len, 7u32);
        check(len, 7u16);
    }
    for len in [1, 33] {
        check(len, [7u8; 5]);
        check(len, [7u8; 12]);
    }
}
