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
    /// or a batch's): on a CPU that reports AVX, with aligned 16-byte `vmovdqa` loads
    /// (`load_words_avx`), each of which reads two of the array's aligned 8-byte data
    /// words; otherwise with the relaxed word loop of [`load_bytes`](Self::load_bytes).
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
            // SAFETY: `base.add(8w)`: `w <= data_words()`, so the offset stays within the
            // object (the headers follow the data). `load_words_avx`: AVX is reported
            // (checked above); words `w..w + n` are data words (the caller's contract:
            // `w0 + dst.len() / 8` words, of which the loop above copied `w - w0`), and
            // the first is 16-aligned (above), with the base's provenance; `out` has `8n`
            // bytes left in `dst`, which we borrow mutably.
            let done = unsafe { Self::load_words_avx(base.add(8 * w), out, n) };
            // SAFETY: `done <= n`: stays within (or one past) `dst`.
            out = unsafe { out.add(8 * done) };
            (w, n) = (w + done, n - done);
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

    /// Copies the data words at `src` (the first `n` words from there, rounded down to a
    /// multiple of 8: blocks of 64 and 32 words, then of 8) to `out` with aligned 16-byte
    /// `vmovdqa` loads; returns the number of words copied (the rest, fewer than 8, is
    /// the caller's).
    ///
    /// Why the `vmovdqa` loads are the relaxed word copy of
    /// [`load_bytes`](Self::load_bytes), only wider: an `asm!` block is opaque to the
    /// compiler, which must assume it accesses memory like a call to an unknown function;
    /// what it does to shared memory is what the hardware does. The Intel SDM (vol. 3A,
    /// 9.1.1) guarantees that processors that enumerate AVX carry out the 16-byte memory
    /// accesses of `MOVDQA` and of `VMOVDQA` encoded with VEX.128 (the `xmm` form used
    /// here) atomically; nothing is guaranteed for other 16-byte loads, for any 16-byte
    /// load on a CPU without AVX, or for 32-byte loads, so those are not used on the
    /// array. An atomic 16-byte load reads each of its two aligned quadwords as a value
    /// some writer stored to that word: exactly what two relaxed `AtomicU64` loads return.
    /// Pairs of loaded registers are joined with `vinsertf128` (registers only) and
    /// stored to `out`, private memory, with one 32-byte store each: half the stores of
    /// a 16-byte copy. The blocks stay ordered before the caller's Acquire fence (a
    /// compiler barrier for any block without `nomem`; x86 does not reorder loads with
    /// loads). A racy copy is rejected by the sequence recheck, as for the word loop. The
    /// upper halves of the `ymm` registers are cleared (`vzeroupper`) before returning,
    /// so legacy SSE code after it pays no transition penalty.
    ///
    /// # Safety
    ///
    /// - the CPU supports AVX;
    /// - `src` is 16-aligned and the `8 · (n / 8 · 8)` bytes from it are data words of
    ///   the array (inside its `UnsafeCell`s, only ever accessed atomically), with
    ///   provenance from the object's base;
    /// - `out` is valid for writes of `8 · (n / 8 · 8)` bytes and not shared.
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    #[target_feature(enable = "avx")]
    unsafe fn load_words_avx(src: *const u8, out: *mut u8, n: usize) -> usize {
        let (mut src, mut out, mut left) = (src, out, n);
        while left >= 64 {
            // SAFETY: AVX is supported and `src` is 16-aligned (the caller's contract); at
            // least 64 words are left, so both 256-byte halves are data words of the
            // array and fit in `out`.
            unsafe {
                Self::load_block_avx(src, out);
                Self::load_block_avx(src.add(256), out.add(256));
            }
            // SAFETY: both stay within (or one past) their ranges (64 words left).
            (src, out) = unsafe { (src.add(512), out.add(512)) };
            left -= 64;
        }
        if left >= 32 {
            // SAFETY: as above, for one 256-byte block (at least 32 words left).
            unsafe { Self::load_block_avx(src, out) };
            // SAFETY: both stay within (or one past) their ranges (32 words left).
            (src, out) = unsafe { (src.add(256), out.add(256)) };
            left -= 32;
        }
        while left >= 8 {
            // SAFETY: as above, for 64 bytes (at least 8 words left).
            unsafe {
                core::arch::asm!(
                    "vmovdqa {a:x}, xmmword ptr [{src}]",
                    "vmovdqa {b:x}, xmmword ptr [{src} + 16]",
                    "vmovdqa {c:x}, xmmword ptr [{src} + 32]",
                    "vmovdqa {d:x}, xmmword ptr [{src} + 48]",
                    "vinsertf128 {a}, {a}, {b:x}, 1",
                    "vinsertf128 {c}, {c}, {d:x}, 1",
                    "vmovdqu ymmword ptr [{out}], {a}",
                    "vmovdqu ymmword ptr [{out} + 32], {c}",
                    src = in(reg) src,
                    out = in(reg) out,
                    a = out(ymm_reg) _,
                    b = out(ymm_reg) _,
                    c = out(ymm_reg) _,
                    d = out(ymm_reg) _,
                    options(nostack, preserves_flags),
                );
            }
            // SAFETY: both stay within (or one past) their ranges (8 words left).
            (src, out) = unsafe { (src.add(64), out.add(64)) };
            left -= 8;
        }
        // SAFETY: `vzeroupper` touches no memory and only the vector registers, which
        // `clobber_abi("C")` declares clobbered (every `xmm`/`ymm` is caller-saved).
        unsafe {
            core::arch::asm!(
                "vzeroupper",
                clobber_abi("C"),
                options(nostack, nomem, preserves_flags)
            )
        };
        n - left
    }

    /// Copies the 32 data words (256 bytes) at `src` to `out`: 16 `vmovdqa` loads, joined
    /// in pairs into 8 32-byte stores (see [`load_words_avx`](Self::load_words_avx)).
    ///
    /// # Safety
    ///
    /// As [`load_words_avx`](Self::load_words_avx), for 32 words at `src` and 256 bytes
    /// at `out`.
    #[cfg(all(target_arch = "x86_64", not(loom), not(miri)))]
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn load_block_avx(src: *const u8, out: *mut u8) {
        // SAFETY: AVX is supported (the caller's contract), so each `vmovdqa` load is one
        // atomic 16-byte access (`load_words_avx`'s docs); `src` is 16-aligned and its 256
        // bytes are data words; `out` has 256 bytes, and is the caller's private buffer.
        // No stack use; flags are not touched.
        unsafe {
            core::arch::asm!(
                "vmovdqa {a:x}, xmmword ptr [{src} + 0]",
                "vmovdqa {b:x}, xmmword ptr [{src} + 16]",
                "vmovdqa {c:x}, xmmword ptr [{src} + 32]",
                "vmovdqa {d:x}, xmmword ptr [{src} + 48]",
                "vmovdqa {e:x}, xmmword ptr [{src} + 64]",
                "vmovdqa {f:x}, xmmword ptr [{src} + 80]",
                "vmovdqa {g:x}, xmmword ptr [{src} + 96]",
                "vmovdqa {h:x}, xmmword ptr [{src} + 112]",
                "vmovdqa {i:x}, xmmword ptr [{src} + 128]",
                "vmovdqa {j:x}, xmmword ptr [{src} + 144]",
                "vmovdqa {k:x}, xmmword ptr [{src} + 160]",
                "vmovdqa {l:x}, xmmword ptr [{src} + 176]",
                "vmovdqa {m:x}, xmmword ptr [{src} + 192]",
                "vmovdqa {n:x}, xmmword ptr [{src} + 208]",
                "vmovdqa {o:x}, xmmword ptr [{src} + 224]",
                "vmovdqa {p:x}, xmmword ptr [{src} + 240]",
                "vinsertf128 {a}, {a}, {b:x}, 1",
                "vinsertf128 {c}, {c}, {d:x}, 1",
                "vinsertf128 {e}, {e}, {f:x}, 1",
                "vinsertf128 {g}, {g}, {h:x}, 1",
                "vinsertf128 {i}, {i}, {j:x}, 1",
                "vinsertf128 {k}, {k}, {l:x}, 1",
                "vinsertf128 {m}, {m}, {n:x}, 1",
                "vinsertf128 {o}, {o}, {p:x}, 1",
                "vmovdqu ymmword ptr [{out} + 0], {a}",
                "vmovdqu ymmword ptr [{out} + 32], {c}",
                "vmovdqu ymmword ptr [{out} + 64], {e}",
                "vmovdqu ymmword ptr [{out} + 96], {g}",
                "vmovdqu ymmword ptr [{out} + 128], {i}",
                "vmovdqu ymmword ptr [{out} + 160], {k}",
                "vmovdqu ymmword ptr [{out} + 192], {m}",
                "vmovdqu ymmword ptr [{out} + 224], {o}",
                src = in(reg) src,
                out = in(reg) out,
                a = out(ymm_reg) _,
                b = out(ymm_reg) _,
                c = out(ymm_reg) _,
                d = out(ymm_reg) _,
                e = out(ymm_reg) _,
                f = out(ymm_reg) _,
                g = out(ymm_reg) _,
                h = out(ymm_reg) _,
                i = out(ymm_reg) _,
                j = out(ymm_reg) _,
                k = out(ymm_reg) _,
                l = out(ymm_reg) _,
                m = out(ymm_reg) _,
                n = out(ymm_reg) _,
                o = out(ymm_reg) _,
                p = out(ymm_reg) _,
                options(nostack, preserves_flags),
            );
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
