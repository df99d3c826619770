//! Drives the primitives from untrusted bytes: the bytes are both the objects' raw memory
//! (as a peer in another process may leave it) and a script of operations interleaved with
//! further raw writes. Shared by the cargo-fuzz targets in `fuzz/` (included with
//! `#[path]`) and by the seeded test `tests/ops_fuzz.rs`.
//!
//! Only bounded operations run: `try_*`, and timed waits with deadlines of at most 2 ms (or
//! already past). An untimed wait may legitimately block for good on a word that names a
//! live thread, so it is never called. Each operation must return within [`OP_BOUND`] and
//! must not panic; a guard held across raw writes must drop without panicking or blocking.
//!
//! Input layout: one byte `n`, then `n` bytes copied over the family's objects laid end to
//! end (the rest stays zero, a valid fresh state), then up to [`MAX_OPS`] operations, each
//! an opcode byte and its arguments. Missing argument bytes read as zero.
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
    Barrier, BoundedSemaphore, Condvar, Counter, Event, Mutex, MutexGuard, OwnerDied, Queue,
    RawMutex, RawRwLock, ReentrantMutex, ReentrantMutexGuard, RwLock, RwLockReadGuard,
    RwLockWriteGuard, Semaphore, SeqLock, SeqLockArray, SeqLockWriteGuard, Shared, SharedSized,
    StripedCounter, TimedLockError, TryLockError, Value,
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
