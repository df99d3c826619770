//! Drives the primitives from untrusted bytes: the bytes are both the objects' raw memory
//! (as a peer in another process may leave it) and a script of operations interleaved with
//! further raw writes. Shared by the cargo-fuzz targets in `fuzz/` (included with
//! `#[path]`) and by the seeded test `tests/ops_fuzz.rs`.
//!
//! Only bounded operations run: `try_*`, and timed waits with deadlines of at most 2 ms (or
//! already past). An untimed wait may legitimately block for good on a word that names a
//! live thread, so it is never called. (The one exception: the map's untimed operations
//! wait only for stripe locks, so they run right after every stripe lock word is cleared or
//! made to name a dead thread.) Each operation must return within [`OP_BOUND`] and must not
//! panic; a guard held across raw writes must drop without panicking or blocking.
//!
//! Input layout: one byte `n`, then `n` bytes copied over the family's objects laid end to
//! end (the rest stays as the object's constructor left it: a valid fresh state), then up
//! to [`MAX_OPS`] operations, each an opcode byte and its arguments. Missing argument bytes
//! read as zero. Objects larger than 256 bytes (the map and the channel) are offered to the
//! image and to raw writes as windows of at most 256 bytes.
//!
//! Set `SHMSTATE_FUZZ_TRACE=1` to print each operation as it runs.
#![allow(dead_code)]

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shmstate::seqlock::SeqLockArrayWriteGuard;
use shmstate::sync::Ordering;
use shmstate::{
    Barrier, BoundedSemaphore, ByteMap, Channel, ChannelOptions, Condvar, Counter, Event, Map,
    MapOptions, Mutex, MutexGuard, OwnerDied, Queue, RawMutex, RawRwLock, ReentrantMutex,
    ReentrantMutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Semaphore, SendSide, SendSlot,
    SeqLock, SeqLockArray, SeqLockWriteGuard, Shared, SharedSized, StripedCounter, TimedLockError,
    TryLockError, Update, Value,
};
use shmstate::{Elem, Kind, TypeTag};

/// The most any single operation (or a guard's drop) may take. Timed calls here wait at
/// most 2 ms; the margin covers a loaded machine, not a missed deadline.
pub const OP_BOUND: Duration = Duration::from_secs(2);

/// Operations per input, so that one input's run time stays bounded.
pub const MAX_OPS: usize = 96;

/// Guards of one kind held at once.
const MAX_GUARDS: usize = 4;

// ----- input -----

/// A cursor over the input bytes.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, or `None` at the end.
    pub fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    /// The next byte, 0 at the end.
    pub fn u8(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A timeout of 0 to 2 ms (mostly zero: the deadline probe path is worth as much as a
    /// wait).
    pub fn timeout(&mut self) -> Duration {
        match self.u8() % 8 {
            0..=3 => Duration::ZERO,
            4 | 5 => Duration::from_micros(100),
            6 => Duration::from_millis(1),
            _ => Duration::from_millis(2),
        }
    }

    /// A deadline at most 2 ms away, or one already past.
    pub fn deadline(&mut self) -> Instant {
        let now = Instant::now();
        match self.u8() % 6 {
            0 | 1 => now,
            2 => now + Duration::from_micros(100),
            3 => now + Duration::from_millis(1),
            4 => now + Duration::from_millis(2),
            _ => now.checked_sub(Duration::from_millis(1)).unwrap_or(now),
        }
    }

    pub fn load_order(&mut self) -> Ordering {
        [Ordering::Relaxed, Ordering::Acquire, Ordering::SeqCst][usize::from(self.u8() % 3)]
    }

    pub fn store_order(&mut self) -> Ordering {
        [Ordering::Relaxed, Ordering::Release, Ordering::SeqCst][usize::from(self.u8() % 3)]
    }

    pub fn rmw_order(&mut self) -> Ordering {
        [
            Ordering::Relaxed,
            Ordering::Acquire,
            Ordering::Release,
            Ordering::AcqRel,
            Ordering::SeqCst,
        ][usize::from(self.u8() % 5)]
    }
}

// ----- thread ids a hostile word may name -----

fn gettid() -> u32 {
    rustix::thread::gettid().as_raw_nonzero().get() as u32
}

/// The TID of a thread that has exited.
fn dead_tid() -> u32 {
    static T: OnceLock<u32> = OnceLock::new();
    *T.get_or_init(|| std::thread::spawn(gettid).join().unwrap_or(0x3f_ffff))
}

/// The TID of a live thread of this process that never takes any lock.
fn sibling_tid() -> u32 {
    static T: OnceLock<u32> = OnceLock::new();
    *T.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(gettid());
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap_or(1)
    })
}

// ----- objects in raw memory -----

/// One `T` (of length `len`) in its own zeroed heap allocation of exactly
/// `T::size_for(len)` bytes (so that AddressSanitizer sees any access past it), placed
/// with the crate's [`Shared`] API the way a region places it in a mapping.
pub struct Obj<T: ?Sized + Shared> {
    base: NonNull<u8>,
    ptr: NonNull<T>,
    layout: Layout,
}

impl<T: ?Sized + Shared> Obj<T> {
    pub fn new(len: usize) -> Self {
        let size = T::size_for(len).expect("valid length");
        let layout = Layout::from_size_align(size, T::ALIGN).expect("layout");
        // SAFETY: `layout` has a non-zero size (`size_for` refuses empty objects).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Obj {
            base,
            ptr: T::from_raw_parts(base, len),
            layout,
        }
    }

    pub fn get(&self) -> &T {
        // SAFETY: the allocation is aligned to `T::ALIGN`, `size_for(len)` bytes long and
        // was zero-filled; every bit pattern `poke` leaves is valid too (the `Shared`
        // contract, items 1 and 2). It lives as long as `self` and is only shared.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ?Sized + Shared> Drop for Obj<T> {
    fn drop(&mut self) {
        // SAFETY: frees exactly the allocation made in `new`, with its layout; no reference
        // outlives `self`.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// The raw bytes of an object, for writes between operations.
pub trait Bytes {
    fn size(&self) -> usize;
    /// Writes `bytes` at `offset` (clipped to the object).
    fn poke(&self, offset: usize, bytes: &[u8]);
    /// Reads bytes at `offset` into `out` (clipped to the object; the rest of `out` is
    /// left as it was).
    fn peek(&self, offset: usize, out: &mut [u8]);
}

impl<T: ?Sized + Shared> Bytes for Obj<T> {
    fn size(&self) -> usize {
        self.layout.size()
    }

    fn poke(&self, offset: usize, bytes: &[u8]) {
        let size = self.size();
        let offset = offset.min(size);
        let n = bytes.len().min(size - offset);
        // SAFETY: `[offset, offset + n)` lies inside the allocation, and `base` was derived
        // with write permission from it. Only one thread uses these objects and no
        // operation is running, so nothing accesses these bytes concurrently. Every byte of
        // the types driven here lies inside an atomic or an `UnsafeCell` (they are chosen
        // without padding), so a write through a raw pointer while `&T` exists is allowed;
        // and any bytes are a valid `T` (the `Shared` contract, item 2).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.as_ptr().add(offset), n);
        }
    }

    fn peek(&self, offset: usize, out: &mut [u8]) {
        let size = self.size();
        let offset = offset.min(size);
        let n = out.len().min(size - offset);
        // SAFETY: `[offset, offset + n)` lies inside the allocation, which is initialised
        // (zero-filled, then written only by the object's operations and `poke`); no
        // operation is running, so nothing writes these bytes concurrently.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(offset), out.as_mut_ptr(), n);
        }
    }
}

/// A byte range of another object: raw writes pick an offset with one byte, so a large
/// object is offered to them in windows of at most 256 bytes.
pub struct Window<'a> {
    obj: &'a dyn Bytes,
    start: usize,
    len: usize,
}

impl Bytes for Window<'_> {
    fn size(&self) -> usize {
        self.len
    }

    fn poke(&self, offset: usize, bytes: &[u8]) {
        let offset = offset.min(self.len);
        let n = bytes.len().min(self.len - offset);
        self.obj.poke(self.start + offset, &bytes[..n]);
    }

    fn peek(&self, offset: usize, out: &mut [u8]) {
        let offset = offset.min(self.len);
        let n = out.len().min(self.len - offset);
        self.obj.peek(self.start + offset, &mut out[..n]);
    }
}

/// Windows of at most `chunk` bytes over `[start, end)` of `obj`.
fn windows(obj: &dyn Bytes, start: usize, end: usize, chunk: usize) -> Vec<Window<'_>> {
    let end = end.min(obj.size());
    (start..end)
        .step_by(chunk)
        .map(|at| Window {
            obj,
            start: at,
            len: chunk.min(end - at),
        })
        .collect()
}

/// The little-endian `u64` at byte `offset` of `o`.
fn peek_u64(o: &dyn Bytes, offset: usize) -> u64 {
    let mut b = [0u8; 8];
    o.peek(offset, &mut b);
    u64::from_le_bytes(b)
}

/// Writes `v` little-endian at byte `offset` of `o`.
fn poke_u64(o: &dyn Bytes, offset: usize, v: u64) {
    o.poke(offset, &v.to_le_bytes());
}

/// The bytes of an object the crate built on the heap (a map or a channel with its header
/// written by its constructor), to copy into an [`Obj`] of the same shape.
fn bytes_of_fresh<T: ?Sized>(t: &T) -> Vec<u8> {
    let n = size_of_val(t);
    let mut v = vec![0u8; n];
    // SAFETY: `t` is a live, initialised object of `n` bytes, borrowed for the copy; the
    // types copied here are atomics only, without padding (their `Shared` impls say so),
    // and no other thread can reach this private heap object, so a plain read of its
    // bytes races with nothing.
    unsafe { std::ptr::copy_nonoverlapping((t as *const T).cast::<u8>(), v.as_mut_ptr(), n) };
    v
}

/// Copies the input's initial image over `objs` laid end to end.
fn image(inp: &mut Input<'_>, objs: &[&dyn Bytes]) {
    let n = usize::from(inp.u8());
    let mut img = inp.take(n);
    for o in objs {
        if img.is_empty() {
            break;
        }
        let k = img.len().min(o.size());
        o.poke(0, &img[..k]);
        img = &img[k..];
    }
}

/// Opcodes below this are raw writes (about one operation in six).
const RAW_OPS: u8 = 40;

/// Raw writes: opcodes below 16 write up to 8 arbitrary bytes, the others below
/// [`RAW_OPS`] a 32-bit word chosen to reach interesting states (a word naming this thread,
/// a dead thread, a live thread of this process or another, with arbitrary flag bits; a
/// count or index about to wrap).
/// Returns `None` if `op` was one of them, else the operation number `2..n`.
fn raw_write(op: u8, n: u8, inp: &mut Input<'_>, objs: &[&dyn Bytes]) -> Option<u8> {
    if op >= RAW_OPS {
        return Some((op - RAW_OPS) % (n - 2) + 2);
    }
    let i = usize::from(inp.u8()) % objs.len();
    let o = objs[i];
    let at = usize::from(inp.u8()) % o.size();
    if op < 16 {
        let n = usize::from(inp.u8() % 9);
        let bytes = inp.take(n);
        if tracing() {
            trace(&format!("  bytes {bytes:02x?} at object {i} offset {at}"));
        }
        o.poke(at, bytes);
    } else {
        let hi = u32::from(inp.u8()) << 24;
        let w = match inp.u8() % 10 {
            0 => inp.u32(),
            1 => gettid(),
            2 => gettid() | hi,
            3 => dead_tid() | hi,
            4 => sibling_tid() | hi,
            5 => 1 | hi,
            6 => 0,
            7 => hi,
            // Counters and indices at the edge of wrapping.
            8 => u32::MAX - u32::from(inp.u8()),
            _ => (1 << 31) - 1 + u32::from(inp.u8() % 3),
        };
        if tracing() {
            trace(&format!(
                "  word {w:#010x} at object {i} offset {}",
                at & !3
            ));
        }
        o.poke(at & !3, &w.to_le_bytes());
    }
    None
}

// ----- running operations -----

fn tracing() -> bool {
    static T: OnceLock<bool> = OnceLock::new();
    *T.get_or_init(|| std::env::var_os("SHMSTATE_FUZZ_TRACE").is_some())
}

fn trace(s: &str) {
    if tracing() {
        eprintln!("{s}");
    }
}

thread_local! {
    /// The slowest operation this thread ran, and how long it took.
    static SLOWEST: std::cell::Cell<(Duration, &'static str)> =
        const { std::cell::Cell::new((Duration::ZERO, "")) };
}

/// The slowest operation the calling thread has run so far, and how long it took.
pub fn slowest() -> (Duration, &'static str) {
    SLOWEST.with(|s| s.get())
}

/// Runs `f`, checking that it returns within [`OP_BOUND`].
fn timed<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    trace(name);
    let t = Instant::now();
    let r = f();
    let e = t.elapsed();
    assert!(e < OP_BOUND, "{name} took {e:?} (bound {OP_BOUND:?})");
    SLOWEST.with(|s| {
        if e > s.get().0 {
            s.set((e, name));
        }
    });
    r
}

/// Keeps a guard if there is room (dropping it otherwise, which unlocks).
fn keep<G>(v: &mut Vec<G>, g: G, name: &'static str) {
    if v.len() < MAX_GUARDS {
        v.push(g);
    } else {
        timed(name, || drop(g));
    }
}

fn from_try<G>(r: Result<G, TryLockError<G>>, mark: bool, fix: impl FnOnce(&mut G)) -> Option<G> {
    match r {
        Ok(g) => Some(g),
        Err(TryLockError::WouldBlock) => None,
        Err(TryLockError::OwnerDied(d)) => Some(died(d, mark, fix)),
    }
}

fn from_timed<G>(
    r: Result<G, TimedLockError<G>>,
    mark: bool,
    fix: impl FnOnce(&mut G),
) -> Option<G> {
    match r {
        Ok(g) => Some(g),
        Err(TimedLockError::Timeout) => None,
        Err(TimedLockError::OwnerDied(d)) => Some(died(d, mark, fix)),
    }
}

fn died<G>(d: OwnerDied<G>, mark: bool, fix: impl FnOnce(&mut G)) -> G {
    let mut g = d.into_inner();
    if mark {
        fix(&mut g);
    }
    g
}

/// Drops the newest guard of `v`, if any.
fn release<G>(v: &mut Vec<G>, name: &'static str) {
    if let Some(g) = v.pop() {
        timed(name, || drop(g));
    }
}

/// Drops every guard of `v`, newest first.
fn release_all<G>(v: &mut Vec<G>, name: &'static str) {
    while !v.is_empty() {
        release(v, name);
    }
}

// ----- locks: RawMutex, Mutex, RawRwLock, RwLock, ReentrantMutex, Condvar -----

/// A [`RawMutex`] placed on its own (the crate places it only inside its typed locks).
#[repr(transparent)]
struct PlacedRawMutex(RawMutex);
// SAFETY: one `RawMutex`, which is one `AtomicU32`: all-zero is unlocked, any bytes are a
// valid lock (its docs: garbage reads as a dead owner), no pointers, `Sync`, and every
// `&self` method is a lock operation made for concurrent use.
unsafe impl SharedSized for PlacedRawMutex {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 0x100), Elem::NONE);
}

/// A [`RawRwLock`] placed on its own.
#[repr(transparent)]
struct PlacedRawRwLock(RawRwLock);
// SAFETY: one `RawRwLock`, sixteen `AtomicU32`s: all-zero is unlocked with every reader
// slot free, any bytes are a valid lock (its docs: a garbage state reads as a dead writer,
// garbage slots are freed), no pointers, `Sync`, every `&self` method is a lock operation.
unsafe impl SharedSized for PlacedRawRwLock {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 0x101), Elem::NONE);
}

/// The lock family: every lock at once, plus a condvar used with the mutex.
pub fn locks(data: &[u8]) {
    let raw_m = Obj::<PlacedRawMutex>::new(1);
    let mutex = Obj::<Mutex<u32>>::new(1);
    let raw_rw = Obj::<PlacedRawRwLock>::new(1);
    let rw = Obj::<RwLock<u32>>::new(1);
    let re = Obj::<ReentrantMutex<Value<u32>>>::new(1);
    let cv = Obj::<Condvar>::new(1);
    let objs: [&dyn Bytes; 6] = [&raw_m, &mutex, &raw_rw, &rw, &re, &cv];
    let (rm, m, rrw, l, r, c) = (
        &raw_m.get().0,
        mutex.get(),
        &raw_rw.get().0,
        rw.get(),
        re.get(),
        cv.get(),
    );

    let mut inp = Input::new(data);
    image(&mut inp, &objs);

    // Acquisitions not yet released, per kind.
    let mut rm_held = 0u32;
    let (mut rrw_read, mut rrw_write) = (0u32, 0u32);
    let mut mg: Vec<MutexGuard<'_, u32>> = Vec::new();
    let mut rg: Vec<RwLockReadGuard<'_, u32>> = Vec::new();
    let mut wg: Vec<RwLockWriteGuard<'_, u32>> = Vec::new();
    let mut reg: Vec<ReentrantMutexGuard<'_, Value<u32>>> = Vec::new();

    for _ in 0..MAX_OPS {
        let Some(op) = inp.next() else { break };
        let Some(op) = raw_write(op, 38, &mut inp, &objs) else {
            continue;
        };
        let mark = inp.u8() & 1 == 1;
        match op {
            // RawMutex.
            2 => {
                rm_held += u32::from(timed("RawMutex::try_lock", || rm.try_lock()).is_some());
            }
            3 => {
                let t = inp.timeout();
                rm_held +=
                    u32::from(timed("RawMutex::lock_timeout", || rm.lock_timeout(t)).is_some());
            }
            4 => {
                let d = inp.deadline();
                rm_held += u32::from(timed("RawMutex::lock_until", || rm.lock_until(d)).is_some());
            }
            5 if rm_held > 0 => {
                rm_held -= 1;
                // SAFETY: this thread acquired the lock and has not unlocked it since
                // (`rm_held` counts such acquisitions; raw writes may have changed the
                // word, which `unlock` tolerates); nothing uses protected data.
                timed("RawMutex::unlock", || unsafe { rm.unlock() });
            }
            6 => timed("RawMutex::inspect", || {
                if mark {
                    rm.mark_consistent();
                }
                let _ = (rm.is_locked(), rm.owner(), rm.mark_is_set());
                let _ = rm.is_owned_by_current_thread();
            }),
            // Mutex.
            7 => {
                let g = timed("Mutex::try_lock", || {
                    from_try(m.try_lock(), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut mg, g, "drop MutexGuard");
                }
            }
            8 => {
                let t = inp.timeout();
                let g = timed("Mutex::lock_timeout", || {
                    from_timed(m.lock_timeout(t), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut mg, g, "drop MutexGuard");
                }
            }
            9 => {
                let d = inp.deadline();
                let g = timed("Mutex::lock_until", || {
                    from_timed(m.lock_until(d), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut mg, g, "drop MutexGuard");
                }
            }
            10 => release(&mut mg, "drop MutexGuard"),
            11 => {
                let v = inp.u32();
                if let Some(g) = mg.last_mut() {
                    timed("MutexGuard::write", || {
                        **g = g.wrapping_add(v);
                        if mark {
                            g.mark_consistent();
                        }
                    });
                }
                let _ = timed("Mutex::is_locked", || m.is_locked());
            }
            // RawRwLock.
            12 => {
                rrw_read += u32::from(timed("RawRwLock::try_read", || rrw.try_read()).is_some());
            }
            13 => {
                let d = inp.deadline();
                rrw_read +=
                    u32::from(timed("RawRwLock::read_until", || rrw.read_until(d)).is_some());
            }
            14 => {
                rrw_write += u32::from(timed("RawRwLock::try_write", || rrw.try_write()).is_some());
            }
            15 => {
                let d = inp.deadline();
                rrw_write +=
                    u32::from(timed("RawRwLock::write_until", || rrw.write_until(d)).is_some());
            }
            16 if rrw_read > 0 => {
                rrw_read -= 1;
                // SAFETY: this thread took a read lock and has not released it (counted by
                // `rrw_read`); raw writes since are tolerated by `read_unlock`.
                timed("RawRwLock::read_unlock", || unsafe { rrw.read_unlock() });
            }
            17 if rrw_write > 0 => {
                rrw_write -= 1;
                // SAFETY: this thread took the write lock and has not released it (counted
                // by `rrw_write`); raw writes since are tolerated by `write_unlock`.
                timed("RawRwLock::write_unlock", || unsafe { rrw.write_unlock() });
            }
            18 => {
                let _ = timed("RawRwLock::inspect", || {
                    if mark {
                        rrw.mark_consistent();
                    }
                    rrw.is_locked()
                });
            }
            // RwLock.
            19 => {
                let g = timed("RwLock::try_read", || from_try(l.try_read(), mark, |_| {}));
                if let Some(g) = g {
                    keep(&mut rg, g, "drop RwLockReadGuard");
                }
            }
            20 => {
                let t = inp.timeout();
                let g = timed("RwLock::read_timeout", || {
                    from_timed(l.read_timeout(t), mark, |_| {})
                });
                if let Some(g) = g {
                    keep(&mut rg, g, "drop RwLockReadGuard");
                }
            }
            21 => {
                let d = inp.deadline();
                let g = timed("RwLock::read_until", || {
                    from_timed(l.read_until(d), mark, |_| {})
                });
                if let Some(g) = g {
                    keep(&mut rg, g, "drop RwLockReadGuard");
                }
            }
            22 => {
                let g = timed("RwLock::try_write", || {
                    from_try(l.try_write(), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut wg, g, "drop RwLockWriteGuard");
                }
            }
            23 => {
                let t = inp.timeout();
                let g = timed("RwLock::write_timeout", || {
                    from_timed(l.write_timeout(t), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut wg, g, "drop RwLockWriteGuard");
                }
            }
            24 => {
                let d = inp.deadline();
                let g = timed("RwLock::write_until", || {
                    from_timed(l.write_until(d), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut wg, g, "drop RwLockWriteGuard");
                }
            }
            25 => release(&mut rg, "drop RwLockReadGuard"),
            26 => release(&mut wg, "drop RwLockWriteGuard"),
            27 => {
                let v = inp.u32();
                if let Some(g) = wg.last_mut() {
                    timed("RwLockWriteGuard::write", || {
                        **g ^= v;
                        if mark {
                            g.mark_consistent();
                        }
                    });
                }
                if let Some(g) = rg.last() {
                    let _ = timed("RwLockReadGuard::read", || **g);
                }
                let _ = timed("RwLock::is_locked", || l.is_locked());
            }
            // ReentrantMutex.
            28 => {
                let g = timed("ReentrantMutex::try_lock", || {
                    from_try(r.try_lock(), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut reg, g, "drop ReentrantMutexGuard");
                }
            }
            29 => {
                let t = inp.timeout();
                let g = timed("ReentrantMutex::lock_timeout", || {
                    from_timed(r.lock_timeout(t), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut reg, g, "drop ReentrantMutexGuard");
                }
            }
            30 => {
                let d = inp.deadline();
                let g = timed("ReentrantMutex::lock_until", || {
                    from_timed(r.lock_until(d), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut reg, g, "drop ReentrantMutexGuard");
                }
            }
            31 => release(&mut reg, "drop ReentrantMutexGuard"),
            32 => {
                let v = inp.u32();
                if let Some(g) = reg.last() {
                    timed("ReentrantMutexGuard::deref", || {
                        let old = g.load(Ordering::Relaxed);
                        g.store(old ^ v, Ordering::Relaxed);
                        g.fetch_add(1, Ordering::Relaxed);
                        if mark {
                            g.mark_consistent();
                        }
                    });
                }
                let _ = timed("ReentrantMutex::is_owned_by_current_thread", || {
                    r.is_owned_by_current_thread()
                });
            }
            // Condvar, with the mutex.
            33 => timed("Condvar::notify_one", || c.notify_one()),
            34 => timed("Condvar::notify_all", || c.notify_all()),
            35 | 36 => {
                // Wait with a held guard, or with one taken now (without waiting).
                let g = match mg.pop() {
                    Some(g) => Some(g),
                    None => timed("Mutex::try_lock", || {
                        from_try(m.try_lock(), mark, |g| g.mark_consistent())
                    }),
                };
                let Some(g) = g else { continue };
                let r = if op == 35 {
                    let t = inp.timeout();
                    timed("Condvar::wait_for", || c.wait_for(g, t))
                } else {
                    let d = inp.deadline();
                    timed("Condvar::wait_until", || c.wait_until(g, d))
                };
                if let Some((g, _)) = from_timed(r, mark, |(g, _)| g.mark_consistent()) {
                    keep(&mut mg, g, "drop MutexGuard");
                }
            }
            37 => {
                let _ = timed("Mutex::raw", || {
                    let raw = m.raw();
                    (raw.owner(), raw.mark_is_set(), raw.is_locked())
                });
            }
            _ => {}
        }
    }

    release_all(&mut mg, "drop MutexGuard");
    release_all(&mut rg, "drop RwLockReadGuard");
    release_all(&mut wg, "drop RwLockWriteGuard");
    release_all(&mut reg, "drop ReentrantMutexGuard");
    for _ in 0..rm_held {
        // SAFETY: as for opcode 5: each count is an acquisition by this thread not yet
        // released.
        timed("RawMutex::unlock", || unsafe { rm.unlock() });
    }
    for _ in 0..rrw_read {
        // SAFETY: as for opcode 16.
        timed("RawRwLock::read_unlock", || unsafe { rrw.read_unlock() });
    }
    for _ in 0..rrw_write {
        // SAFETY: as for opcode 17.
        timed("RawRwLock::write_unlock", || unsafe { rrw.write_unlock() });
    }
}

// ----- seqlocks: SeqLock, SeqLockArray -----

type Triple = [u64; 3];
type Pair = [u32; 2];

/// Slots of the seqlock array: two stripes of `[u32; 2]` (32 and 8 elements), so that
/// hostile bytes reach a header after the first.
const ARRAY_LEN: usize = 40;

/// The seqlock family: a `SeqLock<[u64; 3]>` and a `SeqLockArray<[u32; 2]>` of 40.
pub fn seqlocks(data: &[u8]) {
    let single = Obj::<SeqLock<Triple>>::new(1);
    let array = Obj::<SeqLockArray<Pair>>::new(ARRAY_LEN);
    let objs: [&dyn Bytes; 2] = [&single, &array];
    let (s, a) = (single.get(), array.get());

    let mut inp = Input::new(data);
    image(&mut inp, &objs);

    let mut sg: Vec<SeqLockWriteGuard<'_, Triple>> = Vec::new();
    let mut ag: Vec<SeqLockArrayWriteGuard<'_, Pair>> = Vec::new();
    let mut out = [[0u32; 2]; ARRAY_LEN];

    for _ in 0..MAX_OPS {
        let Some(op) = inp.next() else { break };
        let Some(op) = raw_write(op, 17, &mut inp, &objs) else {
            continue;
        };
        let mark = inp.u8() & 1 == 1;
        let i = usize::from(inp.u8()) % (ARRAY_LEN + 1);
        match op {
            2 => {
                let _ = timed("SeqLock::try_read", || s.try_read());
            }
            3 => {
                let t = inp.timeout();
                let _ = timed("SeqLock::read_timeout", || s.read_timeout(t));
            }
            4 => {
                let t = inp.timeout();
                let g = timed("SeqLock::lock_timeout", || {
                    from_timed(s.lock_timeout(t), mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut sg, g, "drop SeqLockWriteGuard");
                }
            }
            5 => release(&mut sg, "drop SeqLockWriteGuard"),
            6 => {
                let v = inp.u64();
                if let Some(g) = sg.last_mut() {
                    timed("SeqLockWriteGuard::write", || {
                        g[usize::from(v as u8) % 3] ^= v;
                        let _ = g.recovered();
                        if mark {
                            g.mark_consistent();
                        }
                    });
                }
            }
            7 => {
                let _ = timed("SeqLockArray::try_get", || {
                    (i < a.len()).then(|| a.try_get(i))
                });
            }
            8 => {
                let t = inp.timeout();
                let _ = timed("SeqLockArray::get_timeout", || {
                    (i < a.len()).then(|| a.get_timeout(i, t))
                });
            }
            9 => {
                let t = inp.timeout();
                let g = timed("SeqLockArray::lock_timeout", || {
                    if i >= a.len() {
                        return None;
                    }
                    let r = a.lock_timeout(i, t);
                    from_timed(r, mark, |g| g.mark_consistent())
                });
                if let Some(g) = g {
                    keep(&mut ag, g, "drop SeqLockArrayWriteGuard");
                }
            }
            10 => release(&mut ag, "drop SeqLockArrayWriteGuard"),
            11 => {
                let v = inp.u32();
                if let Some(g) = ag.last_mut() {
                    timed("SeqLockArrayWriteGuard::write", || {
                        g[usize::from(v as u8) % 2] ^= v;
                        if mark {
                            g.mark_consistent();
                        }
                    });
                }
            }
            12 => {
                let _ = timed("SeqLockArray::try_snapshot", || a.try_snapshot(&mut out));
            }
            13 => {
                let t = inp.timeout();
                let _ = timed("SeqLockArray::snapshot_timeout", || {
                    a.snapshot_timeout(&mut out, t)
                });
            }
            14 => {
                let t = inp.timeout();
                let v = inp.u32();
                let _ = timed("SeqLockArray::write_batch_timeout", || {
                    let add = |vals: &mut [Pair]| {
                        for x in vals.iter_mut() {
                            x[0] = x[0].wrapping_add(v);
                        }
                    };
                    match a.write_batch_timeout(t, add) {
                        Ok(()) => Ok(false),
                        Err(TimedLockError::Timeout) => Err(()),
                        Err(TimedLockError::OwnerDied(torn)) => {
                            let mut batch = torn.into_inner();
                            add(&mut batch);
                            batch.mark_consistent();
                            Ok(true)
                        }
                    }
                });
            }
            15 => {
                let _ = timed("SeqLockArray::len", || (a.len(), a.is_empty()));
            }
            16 => {
                let _ = timed("SeqLockArray::try_get (every element)", || {
                    (0..a.len()).filter(|&i| a.try_get(i).is_err()).count()
                });
            }
            _ => {}
        }
    }

    release_all(&mut sg, "drop SeqLockWriteGuard");
    release_all(&mut ag, "drop SeqLockArrayWriteGuard");
}

// ----- coordination: Semaphore, BoundedSemaphore, Event, Barrier, Queue -----

/// The coordination family: one of each, and a `Queue<u32, 4>`.
pub fn coord(data: &[u8]) {
    let sem = Obj::<Semaphore>::new(1);
    let bsem = Obj::<BoundedSemaphore>::new(1);
    let event = Obj::<Event>::new(1);
    let barrier = Obj::<Barrier>::new(1);
    let queue = Obj::<Queue<u32, 4>>::new(1);
    let objs: [&dyn Bytes; 5] = [&sem, &bsem, &event, &barrier, &queue];
    let (s, b, e, br, q) = (
        sem.get(),
        bsem.get(),
        event.get(),
        barrier.get(),
        queue.get(),
    );

    let mut inp = Input::new(data);
    image(&mut inp, &objs);

    for _ in 0..MAX_OPS {
        let Some(op) = inp.next() else { break };
        let Some(op) = raw_write(op, 33, &mut inp, &objs) else {
            continue;
        };
        match op {
            // Semaphore.
            2 => {
                let _ = timed("Semaphore::try_acquire", || s.try_acquire());
            }
            3 => {
                let t = inp.timeout();
                let _ = timed("Semaphore::acquire_timeout", || s.acquire_timeout(t));
            }
            4 => {
                let d = inp.deadline();
                let _ = timed("Semaphore::acquire_until", || s.acquire_until(d));
            }
            5 => {
                let _ = timed("Semaphore::release", || s.release());
            }
            6 => {
                let n = inp.u32();
                let _ = timed("Semaphore::release_n", || s.release_n(n));
            }
            7 => {
                let _ = timed("Semaphore::value", || s.value());
            }
            // BoundedSemaphore.
            8 => {
                let _ = timed("BoundedSemaphore::try_acquire", || b.try_acquire());
            }
            9 => {
                let t = inp.timeout();
                let _ = timed("BoundedSemaphore::acquire_timeout", || b.acquire_timeout(t));
            }
            10 => {
                let d = inp.deadline();
                let _ = timed("BoundedSemaphore::acquire_until", || b.acquire_until(d));
            }
            11 => {
                let _ = timed("BoundedSemaphore::release", || b.release());
            }
            12 => {
                let n = inp.u32();
                let _ = timed("BoundedSemaphore::release_n", || b.release_n(n));
            }
            13 => {
                let _ = timed("BoundedSemaphore::value", || (b.value(), b.bound()));
            }
            14 => {
                let n = inp.u32();
                timed("BoundedSemaphore::init", || b.init(n));
            }
            // Event.
            15 => timed("Event::set", || e.set()),
            16 => timed("Event::clear", || e.clear()),
            17 => {
                let _ = timed("Event::is_set", || e.is_set());
            }
            18 => {
                let t = inp.timeout();
                let _ = timed("Event::wait_timeout", || e.wait_timeout(t));
            }
            19 => {
                let d = inp.deadline();
                let _ = timed("Event::wait_until", || e.wait_until(d));
            }
            // Barrier.
            20 => {
                let t = inp.timeout();
                let _ = timed("Barrier::wait_timeout", || br.wait_timeout(t));
            }
            21 => {
                let d = inp.deadline();
                let _ = timed("Barrier::wait_until", || br.wait_until(d));
            }
            22 => timed("Barrier::reset", || br.reset()),
            23 => timed("Barrier::abort", || br.abort()),
            24 => {
                let _ = timed("Barrier::inspect", || {
                    (br.parties(), br.n_waiting(), br.is_broken())
                });
            }
            25 => {
                // `init` panics on a party count out of range by contract: keep it valid.
                let n = 1 + inp.u32() % Barrier::MAX_PARTIES;
                timed("Barrier::init", || br.init(n));
            }
            // Queue.
            26 => {
                let v = inp.u32();
                let _ = timed("Queue::try_push", || q.try_push(v));
            }
            27 => {
                let (v, t) = (inp.u32(), inp.timeout());
                let _ = timed("Queue::push_timeout", || q.push_timeout(v, t));
            }
            28 => {
                let (v, d) = (inp.u32(), inp.deadline());
                let _ = timed("Queue::push_until", || q.push_until(v, d));
            }
            29 => {
                let _ = timed("Queue::try_pop", || q.try_pop());
            }
            30 => {
                let t = inp.timeout();
                let _ = timed("Queue::pop_timeout", || q.pop_timeout(t));
            }
            31 => {
                let d = inp.deadline();
                let _ = timed("Queue::pop_until", || q.pop_until(d));
            }
            32 => {
                let _ = timed("Queue::len", || (q.len(), q.is_empty(), q.capacity()));
            }
            _ => {}
        }
    }
}

// ----- values: Value, Counter, StripedCounter -----

/// Stripes of the striped counter.
const STRIPES: usize = 3;

macro_rules! int_ops {
    ($v:expr, $t:ty, $inp:expr) => {{
        let v = $v;
        let inp: &mut Input<'_> = $inp;
        let x = inp.u64() as $t;
        let y = inp.u64() as $t;
        let sub = inp.u8();
        let (o, lo, so) = (inp.rmw_order(), inp.load_order(), inp.store_order());
        let name = concat!("Value<", stringify!($t), ">");
        timed(name, || match sub % 14 {
            0 => {
                let _ = v.load(lo);
            }
            1 => v.store(x, so),
            2 => {
                let _ = v.swap(x, o);
            }
            3 => {
                let _ = v.compare_exchange(x, y, o, lo);
            }
            4 => {
                let _ = v.compare_exchange_weak(x, y, o, lo);
            }
            5 => {
                let _ = v.fetch_update(o, lo, |c| (x & 1 == 0).then(|| c.wrapping_add(y)));
            }
            6 => {
                let _ = v.fetch_add(x, o);
            }
            7 => {
                let _ = v.fetch_sub(x, o);
            }
            8 => {
                let _ = v.fetch_and(x, o);
            }
            9 => {
                let _ = v.fetch_nand(x, o);
            }
            10 => {
                let _ = v.fetch_or(x, o);
            }
            11 => {
                let _ = v.fetch_xor(x, o);
            }
            12 => {
                let _ = v.fetch_max(x, o);
            }
            _ => {
                let _ = v.fetch_min(x, o);
            }
        })
    }};
}

macro_rules! float_ops {
    ($v:expr, $t:ty, $bits:ty, $inp:expr) => {{
        let v = $v;
        let inp: &mut Input<'_> = $inp;
        // Raw bits: NaNs, infinities, negative zero and subnormals included.
        let x = <$t>::from_bits(inp.u64() as $bits);
        let y = <$t>::from_bits(inp.u64() as $bits);
        let sub = inp.u8();
        let (o, lo, so) = (inp.rmw_order(), inp.load_order(), inp.store_order());
        let name = concat!("Value<", stringify!($t), ">");
        timed(name, || match sub % 10 {
            0 => {
                let _ = v.load(lo);
            }
            1 => v.store(x, so),
            2 => {
                let _ = v.swap(x, o);
            }
            3 => {
                let _ = v.compare_exchange(x, y, o, lo);
            }
            4 => {
                let _ = v.compare_exchange_weak(x, y, o, lo);
            }
            5 => {
                let _ = v.fetch_update(o, lo, |c| (sub & 16 == 0).then_some(c + y));
            }
            6 => {
                let _ = v.fetch_add(x, o);
            }
            7 => {
                let _ = v.fetch_sub(x, o);
            }
            8 => {
                let _ = v.fetch_max(x, o);
            }
            _ => {
                let _ = v.fetch_min(x, o);
            }
        })
    }};
}

/// The value family: `Value` of several element types, `Counter`, `StripedCounter`.
pub fn values(data: &[u8]) {
    let v64 = Obj::<Value<u64>>::new(1);
    let vi32 = Obj::<Value<i32>>::new(1);
    let v8 = Obj::<Value<u8>>::new(1);
    let vf64 = Obj::<Value<f64>>::new(1);
    let vf32 = Obj::<Value<f32>>::new(1);
    let vb = Obj::<Value<bool>>::new(1);
    let counter = Obj::<Counter>::new(1);
    let striped = Obj::<StripedCounter>::new(STRIPES);
    let objs: [&dyn Bytes; 8] = [&v64, &vi32, &v8, &vf64, &vf32, &vb, &counter, &striped];
    let (c, sc) = (counter.get(), striped.get());

    let mut inp = Input::new(data);
    image(&mut inp, &objs);

    for _ in 0..MAX_OPS {
        let Some(op) = inp.next() else { break };
        let Some(op) = raw_write(op, 10, &mut inp, &objs) else {
            continue;
        };
        match op {
            2 => int_ops!(v64.get(), u64, &mut inp),
            3 => int_ops!(vi32.get(), i32, &mut inp),
            4 => int_ops!(v8.get(), u8, &mut inp),
            5 => float_ops!(vf64.get(), f64, u64, &mut inp),
            6 => float_ops!(vf32.get(), f32, u32, &mut inp),
            7 => {
                let v = vb.get();
                let (x, y, sub) = (inp.u8() & 1 == 1, inp.u8() & 1 == 1, inp.u8());
                let (o, lo, so) = (inp.rmw_order(), inp.load_order(), inp.store_order());
                timed("Value<bool>", || match sub % 11 {
                    0 => {
                        let _ = v.load(lo);
                    }
                    1 => v.store(x, so),
                    2 => {
                        let _ = v.swap(x, o);
                    }
                    3 => {
                        let _ = v.compare_exchange(x, y, o, lo);
                    }
                    4 => {
                        let _ = v.compare_exchange_weak(x, y, o, lo);
                    }
                    5 => {
                        let _ = v.fetch_update(o, lo, |b| (sub & 16 == 0).then_some(!b));
                    }
                    6 => {
                        let _ = v.fetch_and(x, o);
                    }
                    7 => {
                        let _ = v.fetch_nand(x, o);
                    }
                    8 => {
                        let _ = v.fetch_or(x, o);
                    }
                    9 => {
                        let _ = v.fetch_xor(x, o);
                    }
                    _ => {
                        let _ = v.fetch_not(o);
                    }
                });
            }
            8 => {
                let (n, sub) = (inp.u64(), inp.u8());
                let _ = timed("Counter", || match sub % 5 {
                    0 => c.add(n),
                    1 => c.inc(),
                    2 => c.get(),
                    3 => {
                        c.reset();
                        0
                    }
                    _ => c.take(),
                });
            }
            9 => {
                let (n, sub) = (inp.u64(), inp.u8());
                let _ = timed("StripedCounter", || match sub % 6 {
                    0 => {
                        sc.add(n);
                        0
                    }
                    1 => {
                        sc.inc();
                        0
                    }
                    2 => sc.sum(),
                    3 => sc.take(),
                    4 => {
                        sc.reset();
                        0
                    }
                    _ => sc.stripes() as u64,
                });
            }
            _ => {}
        }
    }
}

// ----- map: ByteMap, Map<K, V> -----

/// The seed of the maps' hash: fixed, so that an input means the same layout every run.
const MAP_SEED: [u8; 16] = *b"shmstate-fuzzing";

/// Words of a map's header line; word 6 packs the geometry (bits 0..6 log2 of the
/// stripes, 8..17 slots per stripe; see the map's module docs, "Layout").
const MAP_GEOMETRY_WORD: usize = 6;

/// Lines before the stripe heads: the header and the count line.
const MAP_HEADER_LINES: usize = 2;

/// Where a map's parts lie in its raw bytes.
#[derive(Clone, Copy)]
struct MapShape {
    stripes: usize,
    sps: usize,
    slot_words: usize,
}

impl MapShape {
    fn slots(self) -> usize {
        self.stripes * self.sps
    }

    /// Byte offset of the first stripe head.
    fn heads_at(self) -> usize {
        MAP_HEADER_LINES * 64
    }

    /// Byte offset of slot `i` (counted over every stripe).
    fn slot_at(self, i: usize) -> usize {
        (MAP_HEADER_LINES + self.stripes) * 64 + i * self.slot_words * 8
    }
}

/// A header word 6 for `stripes` (a power of two) stripes of `sps` slots.
fn packed_geometry(stripes: usize, sps: usize) -> u64 {
    u64::from(stripes.trailing_zeros()) | (sps as u64) << 8
}

/// The byte map's options: one stripe of 58 slots.
fn byte_map_options() -> MapOptions {
    MapOptions::new(24).key_max(16).value_max(24)
}

/// The typed map: `Map<u64, [u8; 8]>` of capacity 24, its header rewritten to four
/// stripes of 8 slots (the capacity rule would give one stripe of 58; a header that breaks
/// the rule is used as it says, see the map's module docs, "Hostile bytes"), so that the
/// paths across stripes (eviction from another stripe, the count's heal scan) run in a
/// small object.
type TypedMap = Map<u64, [u8; 8]>;
const TYPED_STRIPES: usize = 4;
const TYPED_SPS: usize = 8;
const TYPED_SLOT_WORDS: usize = 4 + 1 + 1;
const TYPED_LINES: usize =
    MAP_HEADER_LINES + TYPED_STRIPES + (TYPED_STRIPES * TYPED_SPS * TYPED_SLOT_WORDS).div_ceil(8);

/// The fresh maps' bytes (made by the crate's constructors), built once.
fn map_templates() -> &'static (Vec<u8>, Vec<u8>) {
    static T: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    T.get_or_init(|| {
        let bm = ByteMap::with_seed(byte_map_options(), MAP_SEED).expect("valid options");
        let bytes = bytes_of_fresh(&*bm);
        let tm = TypedMap::with_seed(24, MAP_SEED).expect("valid options");
        let mut header = bytes_of_fresh(tm.as_bytes());
        header.truncate(64);
        let g = packed_geometry(TYPED_STRIPES, TYPED_SPS).to_le_bytes();
        header[MAP_GEOMETRY_WORD * 8..][..8].copy_from_slice(&g);
        (bytes, header)
    })
}

/// Clears each stripe lock word of the map `o` (per its header as it is now), or makes it
/// name a dead thread: an untimed operation may then lock any stripe within a slice. (It
/// waits for a live holder for as long as it holds on, by design: a lock word a raw write
/// left may name this thread, a live sibling, or init.)
fn free_stripes(o: &dyn Bytes, dead: bool) {
    let log = peek_u64(o, MAP_GEOMETRY_WORD * 8) & 0x3f;
    let lines = o.size() / 64;
    let stripes = if log < 24 { 1usize << log } else { 0 };
    let w = if dead { dead_tid() } else { 0 };
    for s in 0..stripes.min(lines.saturating_sub(MAP_HEADER_LINES)) {
        o.poke((MAP_HEADER_LINES + s) * 64, &w.to_le_bytes());
    }
}

/// Raw writes shaped by the map's layout: an entry copied or swapped to another slot (two
/// copies of a key, an entry away from its home), a slot's sequence made odd (a torn
/// write), meta bits flipped, an entry expired, a count or sequence off by a little.
fn map_raw(inp: &mut Input<'_>, o: &dyn Bytes, shape: MapShape) {
    let sub = inp.u8();
    let pick = |inp: &mut Input<'_>| -> usize {
        let b = usize::from(inp.u8());
        // Mostly a full slot (state bits 1 in its meta word), the `b`-th one found.
        let full: Vec<usize> = (0..shape.slots())
            .filter(|&i| peek_u64(o, shape.slot_at(i) + 8) & 3 == 1)
            .collect();
        if b & 0x80 != 0 && !full.is_empty() {
            full[b % full.len()]
        } else {
            b % shape.slots()
        }
    };
    let (a, b) = (pick(inp), pick(inp));
    let bytes = shape.slot_words * 8;
    let (at, bt) = (shape.slot_at(a), shape.slot_at(b));
    let mut sa = vec![0u8; bytes];
    o.peek(at, &mut sa);
    trace(&format!("  map raw {} on slots {a}, {b}", sub % 7));
    match sub % 7 {
        0 => o.poke(bt, &sa),
        1 => {
            let mut sb = vec![0u8; bytes];
            o.peek(bt, &mut sb);
            o.poke(at, &sb);
            o.poke(bt, &sa);
        }
        2 => poke_u64(o, at, peek_u64(o, at).wrapping_add(1)),
        3 => {
            let bit = u32::from(inp.u8() % 64);
            poke_u64(o, at + 8, peek_u64(o, at + 8) ^ (1 << bit));
        }
        4 => poke_u64(o, at + 16, 1),
        5 => {
            // A stripe head's sequence, count or write counter, or the map's count line.
            let s = usize::from(inp.u8()) % shape.stripes;
            let word = match inp.u8() % 6 {
                0 => shape.heads_at() + s * 64 + 8,
                1 => shape.heads_at() + s * 64 + 16,
                2 => shape.heads_at() + s * 64 + 24,
                w => 64 + 8 * usize::from(w - 3),
            };
            let delta = i64::from(inp.u8() as i8);
            let delta = if inp.u8() & 1 == 0 {
                delta
            } else {
                delta << 32
            };
            poke_u64(o, word, peek_u64(o, word).wrapping_add_signed(delta));
        }
        _ => {
            // The stamp (eviction order) or the home slot of the entry.
            if inp.u8() & 1 == 0 {
                poke_u64(o, at + 24, inp.u64());
            } else {
                let home = u64::from(inp.u8());
                poke_u64(o, at + 8, peek_u64(o, at + 8) & !(0xff << 32) | home << 32);
            }
        }
    }
}

/// Keys of the byte map: 36 of them (more than its capacity), of lengths around word
/// boundaries and its limit (16), and one too long.
fn map_key(inp: &mut Input<'_>) -> Vec<u8> {
    const LENS: [usize; 9] = [0, 1, 7, 8, 9, 15, 16, 3, 17];
    let b = inp.u8();
    vec![b'a' + (b >> 4) % 4; LENS[usize::from(b) % LENS.len()]]
}

/// Values of the byte map: 0 to 26 bytes (its limit is 24).
fn map_value(inp: &mut Input<'_>) -> Vec<u8> {
    let b = inp.u8();
    vec![b; usize::from(b) % 27]
}

/// A time to live: none left, or too short to outlive the input, or long.
fn map_ttl(inp: &mut Input<'_>) -> Duration {
    match inp.u8() % 5 {
        0 => Duration::ZERO,
        1 => Duration::from_micros(1),
        2 => Duration::from_micros(50),
        3 => Duration::from_millis(1),
        _ => Duration::from_secs(3600),
    }
}

/// What an `update` closure decides, from one input byte.
fn map_update<V: Clone>(sub: u8, new: V, old: Option<V>) -> Update<u8, V> {
    match sub % 4 {
        0 => Update::Keep(0),
        1 => Update::Remove(1),
        2 => Update::Set(new, 2),
        _ => Update::Set(old.unwrap_or(new), 3),
    }
}

/// The map family: a `ByteMap` (capacity 24, keys up to 16 bytes, values up to 24) and a
/// `Map<u64, [u8; 8]>` of four stripes. Operations run through `with_deadline` (a deadline
/// at most 2 ms away; every other step through a handle made before the first raw write)
/// or the `try_`/timed reads; the untimed ones (`clear`,
/// `purge_expired`, `for_each`, `snapshot`, and untimed reads and writes) run only after
/// [`free_stripes`].
pub fn map(data: &[u8]) {
    let (bm_bytes, tm_header) = map_templates();
    let bm_obj = Obj::<ByteMap>::new(bm_bytes.len() / 64);
    bm_obj.poke(0, bm_bytes);
    let tm_obj = Obj::<TypedMap>::new(TYPED_LINES);
    tm_obj.poke(0, tm_header);
    let (bm, tm) = (bm_obj.get(), tm_obj.get());

    let bm_geometry = peek_u64(&bm_obj, MAP_GEOMETRY_WORD * 8);
    let bm_shape = MapShape {
        stripes: 1 << (bm_geometry & 0x3f),
        sps: (bm_geometry >> 8 & 0x1ff) as usize,
        slot_words: 4 + 2 + 3,
    };
    let tm_shape = MapShape {
        stripes: TYPED_STRIPES,
        sps: TYPED_SPS,
        slot_words: TYPED_SLOT_WORDS,
    };
    debug_assert_eq!(bm.capacity(), 24, "the byte map's header is valid");
    debug_assert_eq!(tm.capacity(), 24, "the typed map's crafted header is valid");

    // Raw writes reach every byte: the slots, the count line and stripe heads, then the
    // header lines (the initial image covers them in this order: a short one leaves the
    // counts and headers as they are).
    let bm_slots = bm_shape.slot_at(0);
    let tm_slots = tm_shape.slot_at(0);
    let mut views: Vec<Window<'_>> = Vec::new();
    views.extend(windows(&bm_obj, bm_slots, bm_obj.size(), 256));
    views.extend(windows(&tm_obj, tm_slots, tm_obj.size(), 256));
    views.extend(windows(&bm_obj, 64, bm_slots, 256));
    views.extend(windows(&tm_obj, 64, tm_slots, 256));
    views.extend(windows(&bm_obj, 0, 64, 64));
    views.extend(windows(&tm_obj, 0, 64, 64));
    let objs: Vec<&dyn Bytes> = views.iter().map(|w| w as &dyn Bytes).collect();

    // Handles made while the headers are valid: every other operation runs through them,
    // with the layout they validated, whatever the raw writes do to the headers later.
    let (bh, th) = (
        bm.handle().expect("the byte map's header is valid"),
        tm.handle()
            .expect("the typed map's crafted header is valid"),
    );

    let mut inp = Input::new(data);
    image(&mut inp, &objs);

    let mut out = Vec::new();
    for step in 0..MAX_OPS {
        let Some(op) = inp.next() else { break };
        let Some(op) = raw_write(op, 40, &mut inp, &objs) else {
            continue;
        };
        let d = inp.deadline();
        let (b, t) = if step % 2 == 0 {
            (bm.with_deadline(d), tm.with_deadline(d))
        } else {
            (bh.with_deadline(d), th.with_deadline(d))
        };
        match op {
            // ByteMap, reads.
            2 => {
                let k = map_key(&mut inp);
                let _ = timed("ByteMap::with_deadline.get", || b.get(&k, &mut out));
            }
            3 => {
                let k = map_key(&mut inp);
                let _ = timed("ByteMap::with_deadline.get_with", || {
                    b.get_with(&k, |v| v.len())
                });
            }
            4 => {
                let k = map_key(&mut inp);
                let _ = timed("ByteMap::with_deadline.contains", || b.contains(&k));
            }
            5 => {
                let k = map_key(&mut inp);
                let _ = timed("ByteMap::try_get", || bm.try_get(&k, &mut out));
            }
            6 => {
                let (k, t) = (map_key(&mut inp), inp.timeout());
                let _ = timed("ByteMap::get_timeout", || bm.get_timeout(&k, &mut out, t));
            }
            7 => {
                let (k, d) = (map_key(&mut inp), inp.deadline());
                let _ = timed("ByteMap::get_with_until", || {
                    bm.get_with_until(&k, |v| v.first().copied(), d)
                });
            }
            // ByteMap, writes.
            8 => {
                let (k, v) = (map_key(&mut inp), map_value(&mut inp));
                let _ = timed("ByteMap::with_deadline.insert", || b.insert(&k, &v));
            }
            9 => {
                let (k, v) = (map_key(&mut inp), map_value(&mut inp));
                let _ = timed("ByteMap::with_deadline.set", || b.set(&k, &v));
            }
            10 => {
                let (k, v) = (map_key(&mut inp), map_value(&mut inp));
                let _ = timed("ByteMap::with_deadline.add", || b.add(&k, &v));
            }
            11 => {
                let (k, v) = (map_key(&mut inp), map_value(&mut inp));
                let _ = timed("ByteMap::with_deadline.replace", || b.replace(&k, &v));
            }
            12 => {
                let k = map_key(&mut inp);
                let _ = timed("ByteMap::with_deadline.remove", || b.remove(&k));
            }
            13 => {
                // The current value: the last one read, or any.
                let (k, v) = (map_key(&mut inp), map_value(&mut inp));
                let cur = if inp.u8() & 1 == 0 {
                    out.clone()
                } else {
                    map_value(&mut inp)
                };
                let _ = timed("ByteMap::with_deadline.compare_exchange", || {
                    b.compare_exchange(&k, &cur, &v)
                });
            }
            14 => {
                let (k, v, sub) = (map_key(&mut inp), map_value(&mut inp), inp.u8());
                let _ = timed("ByteMap::with_deadline.update", || {
                    b.update(&k, |old| map_update(sub, v, old.map(<[u8]>::to_vec)))
                });
            }
            15 => {
                let (k, by, init) = (map_key(&mut inp), inp.u64() as i64, i64::from(inp.u8()));
                let _ = timed("ByteMap::with_deadline.incr", || b.incr(&k, by, init));
            }
            16 => {
                let (k, v, ttl) = (map_key(&mut inp), map_value(&mut inp), map_ttl(&mut inp));
                let _ = timed("ByteMap::with_deadline.insert_ttl", || {
                    b.insert_ttl(&k, &v, ttl)
                });
            }
            17 => {
                let (k, v) = (map_key(&mut inp), map_value(&mut inp));
                let _ = timed("ByteMap::with_deadline.insert_evicting", || {
                    b.insert_evicting(&k, &v)
                });
            }
            18 => {
                let _ = timed("ByteMap::len", || {
                    (bm.len(), bm.is_empty(), bm.capacity(), bm.options())
                });
            }
            // ByteMap, untimed, with every stripe lock free or a dead thread's.
            19 => {
                let (sub, dead) = (inp.u8(), inp.u8() & 1 == 1);
                let (k, v) = (map_key(&mut inp), map_value(&mut inp));
                free_stripes(&bm_obj, dead);
                match sub % 8 {
                    0 => timed("ByteMap::clear", || bm.clear()),
                    1 => {
                        let _ = timed("ByteMap::purge_expired", || bm.purge_expired());
                    }
                    2 => {
                        let _ = timed("ByteMap::snapshot", || bm.snapshot());
                    }
                    3 => {
                        let mut n = 0;
                        timed("ByteMap::for_each", || {
                            bm.for_each(|k, v| n += k.len() + v.len())
                        });
                    }
                    4 => {
                        let _ = timed("ByteMap::get", || bm.get(&k, &mut out));
                    }
                    5 => {
                        let _ = timed("ByteMap::insert", || bm.insert(&k, &v));
                    }
                    6 => {
                        let _ = timed("ByteMap::remove", || bm.remove(&k));
                    }
                    _ => {
                        let _ = timed("ByteMap::insert_evicting", || bm.insert_evicting(&k, &v));
                    }
                }
            }
            // Map<u64, [u8; 8]>.
            20..=34 => {
                let k = u64::from(inp.u8() % 40);
                let v = inp.u64().to_le_bytes();
                match op {
                    20 => {
                        let _ = timed("Map::with_deadline.get", || t.get(&k));
                    }
                    21 => {
                        let _ = timed("Map::with_deadline.contains", || t.contains(&k));
                    }
                    22 => {
                        let t = inp.timeout();
                        let _ = timed("Map::try_get/get_timeout", || {
                            (tm.try_get(&k), tm.get_timeout(&k, t))
                        });
                    }
                    23 => {
                        let _ = timed("Map::with_deadline.insert", || t.insert(k, v));
                    }
                    24 => {
                        let _ = timed("Map::with_deadline.set", || t.set(k, v));
                    }
                    25 => {
                        let _ = timed("Map::with_deadline.add", || t.add(k, v));
                    }
                    26 => {
                        let _ = timed("Map::with_deadline.replace", || t.replace(&k, v));
                    }
                    27 => {
                        let _ = timed("Map::with_deadline.remove", || t.remove(&k));
                    }
                    28 => {
                        let cur = inp.u64().to_le_bytes();
                        let _ = timed("Map::with_deadline.compare_exchange", || {
                            t.compare_exchange(&k, cur, v)
                        });
                    }
                    29 => {
                        let sub = inp.u8();
                        let _ = timed("Map::with_deadline.update", || {
                            t.update(&k, |old| map_update(sub, v, old))
                        });
                    }
                    30 => {
                        let (by, init) = (inp.u64() as i64, i64::from(inp.u8()));
                        // `Map::incr` is for `i64` values: through the bytes, as a peer
                        // with a `Map<u64, i64>` view would.
                        let b = tm.as_bytes().with_deadline(d);
                        let _ = timed("Map::as_bytes.incr", || b.incr(&k.to_le_bytes(), by, init));
                    }
                    31 => {
                        let ttl = map_ttl(&mut inp);
                        let _ = timed("Map::with_deadline.insert_ttl", || t.insert_ttl(k, v, ttl));
                    }
                    32 => {
                        let _ = timed("Map::with_deadline.insert_evicting", || {
                            t.insert_evicting(k, v)
                        });
                    }
                    33 => {
                        let _ = timed("Map::len", || (tm.len(), tm.is_empty(), tm.capacity()));
                    }
                    _ => {
                        let (sub, dead) = (inp.u8(), inp.u8() & 1 == 1);
                        free_stripes(&tm_obj, dead);
                        match sub % 6 {
                            0 => timed("Map::clear", || tm.clear()),
                            1 => {
                                let _ = timed("Map::purge_expired", || tm.purge_expired());
                            }
                            2 => {
                                let _ = timed("Map::snapshot", || tm.snapshot());
                            }
                            3 => {
                                let mut n = 0u64;
                                timed("Map::for_each", || tm.for_each(|k, _| n ^= k));
                            }
                            4 => {
                                let _ = timed("Map::get", || (tm.get(&k), tm.contains(&k)));
                            }
                            _ => {
                                let _ = timed("Map::insert_evicting", || tm.insert_evicting(k, v));
                            }
                        }
                    }
                }
            }
            // Raw writes shaped by the layout.
            35..=37 => map_raw(&mut inp, &bm_obj, bm_shape),
            _ => map_raw(&mut inp, &tm_obj, tm_shape),
        }
    }
}

// ----- channel -----

/// The channel's ring, in bytes, and its largest message.
const RING: usize = 512;
const MAX_MESSAGE: usize = 100;

/// Byte offsets of the channel's cursor words (see its module docs, "Layout"): `tail`,
/// `free_cache`, `head`, `pending` (the span of a record being committed: `to` in its
/// low half), `free`; then `lost`, and the wake words' line.
const CURSORS: [usize; 5] = [128, 136, 256, 144, 320];
const LOST: usize = 264;
const WAKE: usize = 384;
/// The ring's first byte.
const RING_AT: usize = 448;
/// Record header tags (high half of a record's header word).
const TAG_MESSAGE: u64 = 0x4D53_4721;
const TAG_PAD: u64 = 0x5041_4421;
const TAG_SKIP: u64 = 0x534B_4921;

/// The fresh channel's bytes (made by the crate's constructor), built once.
fn channel_template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| {
        let ch = Channel::new(ChannelOptions::new(RING).max_message(MAX_MESSAGE))
            .expect("valid options");
        bytes_of_fresh(&*ch)
    })
}

/// Raw writes shaped by the channel's layout: a cursor moved by a few words or set to
/// another cursor's position (a claimed message, a ring fuller or emptier than it is, a
/// record committed without its header), the flag bits of `tail`, a record header with a
/// valid tag and a lying length, the wake words' flags.
fn channel_raw(inp: &mut Input<'_>, o: &dyn Bytes) {
    let sub = inp.u8();
    let c = CURSORS[usize::from(inp.u8()) % CURSORS.len()];
    let w = peek_u64(o, c);
    trace(&format!("  channel raw {} at {c}", sub % 6));
    let set_pos = |p: u32| poke_u64(o, c, w & !0xffff_ffff | u64::from(p));
    match sub % 6 {
        0 => {
            let words = i32::from(inp.u8() as i8 % 9);
            set_pos((w as u32).wrapping_add_signed(words * 8));
        }
        1 => {
            let from = CURSORS[usize::from(inp.u8()) % CURSORS.len()];
            set_pos(peek_u64(o, from) as u32);
        }
        2 => {
            // `tail`'s flags and sent count, or the head's claimed count.
            let bit = [63, 62, 32, 33, 61][usize::from(inp.u8()) % 5];
            poke_u64(o, CURSORS[usize::from(inp.u8() & 1) * 2], w ^ 1 << bit);
        }
        3 => {
            let at = RING_AT + usize::from(inp.u8()) % (RING / 8) * 8;
            let tag = match inp.u8() % 5 {
                0 | 1 => TAG_MESSAGE,
                2 => TAG_PAD,
                3 => TAG_SKIP,
                _ => u64::from(inp.u32()),
            };
            let len = match inp.u8() % 4 {
                0 => u64::from(inp.u8()),
                1 => MAX_MESSAGE as u64 + u64::from(inp.u8() % 4),
                2 => u64::from(inp.u32()),
                _ => u64::from(inp.u8() % 16),
            };
            poke_u64(o, at, tag << 32 | len);
        }
        4 => {
            let v = [1u32 << 31, (1 << 31) | inp.u32(), inp.u32(), 0][usize::from(inp.u8() % 4)];
            o.poke(WAKE + usize::from(inp.u8() & 1) * 4, &v.to_le_bytes());
        }
        _ => poke_u64(o, LOST, u64::MAX - u64::from(inp.u8())),
    }
}

/// A message of 0 to 109 bytes (the largest is 100).
fn message(inp: &mut Input<'_>) -> Vec<u8> {
    let b = inp.u8();
    vec![b; usize::from(b) % (MAX_MESSAGE + 10)]
}

/// The channel family: a `Channel` of a 512-byte ring and 100-byte messages. Only `try_`
/// and timed operations run (an untimed send or receive waits for room or a message for
/// as long as none comes, by design); reserved slots and a held send side are held
/// across raw writes.
pub fn channel(data: &[u8]) {
    let template = channel_template();
    let obj = Obj::<Channel>::new(RING / 8);
    obj.poke(0, template);
    let ch = obj.get();
    debug_assert_eq!(
        ch.options().max_message_len(),
        MAX_MESSAGE,
        "the header is valid"
    );

    // Raw writes reach every line: the ring, the lock, cursor and wake lines, then the
    // config line (the initial image covers them in this order: a short one leaves the
    // cursors and the config as they are).
    let mut views: Vec<Window<'_>> = Vec::new();
    views.extend(windows(&obj, RING_AT, obj.size(), 256));
    views.extend(windows(&obj, 64, RING_AT, 64));
    views.extend(windows(&obj, 0, 64, 64));
    let objs: Vec<&dyn Bytes> = views.iter().map(|w| w as &dyn Bytes).collect();

    let mut inp = Input::new(data);
    image(&mut inp, &objs);

    let mut slots: Vec<SendSlot<'_>> = Vec::new();
    let mut side: Option<SendSide<'_>> = None;
    let mut out = Vec::new();
    for _ in 0..MAX_OPS {
        let Some(op) = inp.next() else { break };
        let Some(op) = raw_write(op, 22, &mut inp, &objs) else {
            continue;
        };
        match op {
            2 => {
                let m = message(&mut inp);
                let _ = timed("Channel::try_send", || ch.try_send(&m));
            }
            3 => {
                let (m, t) = (message(&mut inp), inp.timeout());
                let _ = timed("Channel::send_timeout", || ch.send_timeout(&m, t));
            }
            4 => {
                let (m, d) = (message(&mut inp), inp.deadline());
                let _ = timed("Channel::send_until", || ch.send_until(&m, d));
            }
            5 | 6 => {
                let (len, t, fill) = (
                    usize::from(inp.u8()) % (MAX_MESSAGE + 10),
                    inp.timeout(),
                    inp.u8(),
                );
                let r = if op == 5 {
                    timed("Channel::try_reserve", || ch.try_reserve(len).ok())
                } else {
                    timed("Channel::reserve_timeout", || {
                        ch.reserve_timeout(len, t).ok()
                    })
                };
                if let Some(mut s) = r {
                    timed("SendSlot::write_at", || {
                        let n = s.len();
                        s.write_at(0, &vec![fill; n / 2]);
                    });
                    keep(&mut slots, s, "drop SendSlot");
                }
            }
            7 => {
                let (sub, k) = (inp.u8(), usize::from(inp.u8()));
                if let Some(s) = slots.pop() {
                    let _ = timed("SendSlot::commit", || {
                        if sub & 1 == 0 {
                            s.commit()
                        } else {
                            let n = k % (s.len() + 1);
                            s.commit_len(n)
                        }
                    });
                }
            }
            8 => {
                if let Some(s) = slots.pop() {
                    timed("SendSlot::abort", || s.abort());
                }
            }
            9 => {
                let (at, n, fill) = (usize::from(inp.u8()), usize::from(inp.u8()), inp.u8());
                if let Some(s) = slots.last_mut() {
                    timed("SendSlot::write_at / io::Write", || {
                        let len = s.len();
                        if fill & 1 == 0 {
                            let at = at % (len + 1);
                            let n = n % (len - at + 1);
                            s.write_at(at, &vec![fill; n]);
                        } else {
                            // Writes at most what is left of the slot.
                            let _ = std::io::Write::write(s, &vec![fill; n]);
                        }
                        s.written()
                    });
                }
            }
            10 => {
                let _ = timed("Channel::try_recv", || ch.try_recv(&mut out));
            }
            11 => {
                let _ = timed("Channel::try_recv_with", || ch.try_recv_with(|m| m.len()));
            }
            12 => {
                let t = inp.timeout();
                let _ = timed("Channel::recv_timeout", || ch.recv_timeout(&mut out, t));
            }
            13 => {
                let (t, d) = (inp.timeout(), inp.deadline());
                let _ = timed("Channel::recv_timeout_with/recv_until", || {
                    (
                        ch.recv_timeout_with(t, |m| m.first().copied()),
                        ch.recv_until(&mut out, d),
                    )
                });
            }
            14 => {
                let d = inp.deadline();
                let _ = timed("Channel::recv_until_with", || {
                    ch.recv_until_with(d, |m| m.last().copied())
                });
            }
            15 => {
                let max = usize::from(inp.u8() % 8);
                let mut n = 0;
                let _ = timed("Channel::drain", || ch.drain(max, |m| n += m.len()));
            }
            16 => {
                let _ = timed("Channel::len", || {
                    (
                        ch.len(),
                        ch.is_empty(),
                        ch.bytes_used(),
                        ch.lost(),
                        ch.is_closed(),
                        ch.options(),
                    )
                });
            }
            17 => {
                // Rarely: a closed channel only reports `Disconnected`.
                if inp.u8().is_multiple_of(16) {
                    timed("Channel::close", || ch.close());
                }
            }
            18 => {
                // Take the send side (held across ops, as slots are), or give it back.
                let (sub, t) = (inp.u8(), inp.timeout());
                match side.take() {
                    None if sub & 1 == 0 => {
                        side = timed("Channel::try_send_side", || ch.try_send_side().ok());
                    }
                    None => {
                        side = timed("Channel::send_side_timeout", || {
                            ch.send_side_timeout(t).ok()
                        });
                    }
                    Some(held) if sub % 4 == 3 => timed("drop SendSide", || drop(held)),
                    held => side = held,
                }
            }
            19 => {
                let (sub, m, t, d) = (inp.u8(), message(&mut inp), inp.timeout(), inp.deadline());
                if let Some(held) = side.as_mut() {
                    let _ = match sub % 3 {
                        0 => timed("SendSide::try_send", || held.try_send(&m).is_ok()),
                        1 => timed("SendSide::send_timeout", || {
                            held.send_timeout(&m, t).is_ok()
                        }),
                        _ => timed("SendSide::send_until", || held.send_until(&m, d).is_ok()),
                    };
                }
            }
            _ => channel_raw(&mut inp, &obj),
        }
    }

    if let Some(held) = side.take() {
        timed("drop SendSide", || drop(held));
    }
    release_all(&mut slots, "drop SendSlot");
}
