//! The data copies of [`SeqLockArray`]: relaxed word loads and stores, and the wide
//! 16-byte loads of bulk copies on CPUs with AVX (see the module docs of the parent for why
//! they are atomic per word).
//!
//! # Crash windows
//!
//! None of their own: a copy is one step of the parent's protocol (its tables).

use super::*;

impl<T: Pod> SeqLockArray<T> {
    /// Copies `dst.len()` bytes of data from byte offset `off` with relaxed loads of the
    /// words that cover them (the caller validates the copy against the sequence words).
    #[inline]
    pub(super) fn load_bytes(&self, off: usize, dst: &mut [u8]) {
        let (words, tail) = if off.is_multiple_of(8) {
            let full = dst.len() / 8 * 8;
            dst.split_at_mut(full)
        } else {
            dst.split_at_mut(0)
        };
        let w0 = off / 8;
        #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
        if words.len() >= 64 {
            // SAFETY: words `w0..w0 + words.len() / 8` are data words of the array
            // (the caller's range is inside the data), and `words` is that many bytes.
            unsafe { self.load_words_wide(w0, words) };
            return self.load_tail(off + words.len(), tail);
        }
        for (j, chunk) in words.chunks_exact_mut(8).enumerate() {
            // Relaxed: a racy copy is detected by the sequence recheck.
            let v = self.word(w0 + j).load(Ordering::Relaxed);
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        self.load_tail(off + words.len(), tail);
    }

    /// The bytes of [`load_bytes`](Self::load_bytes) after its whole words.
    #[inline]
    pub(super) fn load_tail(&self, off: usize, tail: &mut [u8]) {
        if !tail.is_empty() {
            self.load_bytes_slow(off, tail);
        }
    }

    /// Copies data words `w0..w0 + dst.len() / 8` into `dst` (a bulk copy: a snapshot's
    /// or a batch's): on a CPU that reports AVX, with aligned 16-byte `movdqa` loads, each
    /// of which reads two of the array's aligned 8-byte data words; otherwise with the
    /// relaxed word loop of [`load_bytes`](Self::load_bytes).
    ///
    /// Why the `movdqa` loads are that relaxed word copy, only wider: an `asm!` block is
    /// opaque to the compiler, which must assume it accesses memory like a call to an
    /// unknown function; what it does to shared memory is what the hardware does. The
    /// Intel SDM (vol. 3A, 9.1.1) guarantees that processors that enumerate AVX carry
    /// out the 16-byte memory accesses of `MOVDQA` (and `VMOVDQA` with VEX.128)
    /// atomically; nothing is guaranteed for other 16-byte loads, for any 16-byte load on
    /// a CPU without AVX, or for 32-byte loads, so those are not used. An atomic 16-byte
    /// load reads each of its two aligned quadwords as a value some writer stored to that
    /// word: exactly what two relaxed `AtomicU64` loads return. Stores go to `dst`,
    /// private memory. The block stays ordered before the caller's Acquire fence (a
    /// compiler barrier for any block without `nomem`; x86 does not reorder loads with
    /// loads). A racy copy is rejected by the sequence recheck, as for the word loop.
    ///
    /// # Safety
    ///
    /// `w0 + dst.len() / 8 <= self.data_words()`.
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    #[inline]
    pub(super) unsafe fn load_words_wide(&self, w0: usize, dst: &mut [u8]) {
        let mut n = dst.len() / 8;
        let mut w = w0;
        let mut out = dst.as_mut_ptr();
        if std::arch::is_x86_feature_detected!("avx") {
            // The object's base: its provenance covers every data word (as in `word`).
            let base = (self as *const Self).cast::<u8>();
            // Scalar words until the source is 16-aligned (at most one: it is 8-aligned).
            while n > 0 && !base.wrapping_add(8 * w).addr().is_multiple_of(16) {
                // Relaxed: as in `load_bytes`.
                let v = self.word(w).load(Ordering::Relaxed);
                // SAFETY: `out` points into `dst` with at least `8n` bytes left.
                unsafe { out.cast::<u64>().write_unaligned(v) };
                // SAFETY: as above; stays within (or one past) `dst`.
                out = unsafe { out.add(8) };
                (w, n) = (w + 1, n - 1);
            }
            while n >= 8 {
                // SAFETY: words `w..w + 8` are data words (the caller's contract), so
                // bytes `8w..8w + 64` lie within the object `base` points to.
                let src = unsafe { base.add(8 * w) };
                // SAFETY: AVX is reported (checked above), so each `movdqa` load is one
                // atomic 16-byte access (this function's docs); `src` is 16-aligned
                // (above) and its 64 bytes are data words inside the object's
                // `UnsafeCell`s, with provenance from the object's base. `out` has at
                // least 64 bytes left in `dst`, which we borrow mutably. No stack use;
                // flags are not touched.
                unsafe {
                    core::arch::asm!(
                        "movdqa {a}, xmmword ptr [{src}]",
                        "movdqa {b}, xmmword ptr [{src} + 16]",
                        "movdqa {c}, xmmword ptr [{src} + 32]",
                        "movdqa {d}, xmmword ptr [{src} + 48]",
                        "movdqu xmmword ptr [{out}], {a}",
                        "movdqu xmmword ptr [{out} + 16], {b}",
                        "movdqu xmmword ptr [{out} + 32], {c}",
                        "movdqu xmmword ptr [{out} + 48], {d}",
                        src = in(reg) src,
                        out = in(reg) out,
                        a = out(xmm_reg) _,
                        b = out(xmm_reg) _,
                        c = out(xmm_reg) _,
                        d = out(xmm_reg) _,
                        options(nostack, preserves_flags),
                    );
                }
                // SAFETY: as above; stays within (or one past) `dst`.
                out = unsafe { out.add(64) };
                (w, n) = (w + 8, n - 8);
            }
        }
        while n > 0 {
            // Relaxed: as in `load_bytes`.
            let v = self.word(w).load(Ordering::Relaxed);
            // SAFETY: `out` points into `dst` with at least `8n` bytes left.
            unsafe { out.cast::<u64>().write_unaligned(v) };
            // SAFETY: as above.
            out = unsafe { out.add(8) };
            (w, n) = (w + 1, n - 1);
        }
    }

    /// [`load_bytes`](Self::load_bytes) for a range that does not start or end on a word
    /// boundary: word by word, keeping the bytes in range.
    pub(super) fn load_bytes_slow(&self, off: usize, dst: &mut [u8]) {
        let mut pos = 0;
        while pos < dst.len() {
            let at = off + pos;
            let skip = at % 8;
            let n = (8 - skip).min(dst.len() - pos);
            // Relaxed: as in `load_bytes`.
            let bytes = self.word(at / 8).load(Ordering::Relaxed).to_ne_bytes();
            dst[pos..pos + n].copy_from_slice(&bytes[skip..skip + n]);
            pos += n;
        }
    }

    /// Stores `src` at data byte offset `off` with relaxed word stores; a word only
    /// partly in range is merged (load, replace the bytes in range, store). The caller
    /// holds the writer lock of every stripe whose words it touches (so nobody else stores
    /// them), between its odd store + Release fence and its even store, or the array is
    /// not shared yet.
    pub(super) fn store_bytes(&self, off: usize, src: &[u8]) {
        let mut pos = 0;
        while pos < src.len() {
            let at = off + pos;
            let skip = at % 8;
            let n = (8 - skip).min(src.len() - pos);
            let word = self.word(at / 8);
            let mut bytes = if n == 8 {
                [0; 8]
            } else {
                // Relaxed: we hold the stripe's lock, so the last store to this word was
                // ours or a previous holder's, made visible by our Acquire lock CAS.
                word.load(Ordering::Relaxed).to_ne_bytes()
            };
            bytes[skip..skip + n].copy_from_slice(&src[pos..pos + n]);
            // Relaxed: readers order their loads with the sequence word's fences.
            word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
            pos += n;
        }
    }
}
