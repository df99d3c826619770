//! `Lock` and `RLock`: the crate's robust futex mutex, held across Python calls.
//!
//! A Python lock is acquired in one call and released in another, so the bindings keep
//! no guard: `acquire` forgets the guard the crate's `Mutex` hands out and `release`
//! unlocks the raw mutex, after checking that the calling thread is the holder (the
//! mutex records its holder's thread id, which is what lets a waiter find a dead holder).

use std::mem;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use shmstate::sync::Ordering;
use shmstate::{Mutex, TimedLockError, TryLockError};

use crate::errors::OwnerDiedError;
use crate::obj::{Obj, RegionInner, reduce};
use crate::wait::{Block, deadline, interruptible};

/// A `Lock` in a region: the crate's mutex (its data is unused).
#[derive(shmstate::Shared)]
#[repr(C)]
pub(crate) struct LockCell {
    lock: Mutex<u32>,
}

/// An `RLock` in a region: the mutex and the holder's recursion depth (written only by
/// the holder).
#[derive(shmstate::Shared)]
#[repr(C)]
pub(crate) struct RLockCell {
    lock: Mutex<u32>,
    depth: shmstate::Value<u32>,
}

/// How an acquisition went.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Got {
    /// Acquired; the previous holder released it.
    Clean,
    /// Acquired, but the previous holder died holding it (or a holder released it without
    /// marking it consistent).
    OwnerDied,
}

/// One bounded attempt: the guard is forgotten (the lock stays held until `release`).
fn attempt(m: &Mutex<u32>, slice: Duration) -> Option<Got> {
    match m.lock_timeout(slice) {
        Ok(g) => {
            mem::forget(g);
            Some(Got::Clean)
        }
        Err(TimedLockError::OwnerDied(od)) => {
            mem::forget(od.into_inner());
            Some(Got::OwnerDied)
        }
        Err(TimedLockError::Timeout) => None,
    }
}

/// `acquire(block, timeout)` on the raw mutex: `None` if not acquired.
pub(crate) fn acquire_mutex(
    py: Python<'_>,
    m: &Mutex<u32>,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<Option<Got>> {
    // The uncontended path: one compare-exchange, the GIL kept.
    match m.try_lock() {
        Ok(g) => {
            mem::forget(g);
            return Ok(Some(Got::Clean));
        }
        Err(TryLockError::OwnerDied(od)) => {
            mem::forget(od.into_inner());
            return Ok(Some(Got::OwnerDied));
        }
        Err(TryLockError::WouldBlock) => {}
    }
    if !block {
        // Held: one bounded look that probes the holder (a brief spin, then one liveness
        // check), so that a lock whose holder died is taken over (and reported) rather
        // than refused for ever.
        return Ok(attempt(m, Duration::ZERO));
    }
    interruptible(py, deadline(timeout)?, |slice| attempt(m, slice))
}

/// Unlocks `m` if the calling thread holds it.
#[inline]
fn release_mutex(m: &Mutex<u32>, what: &str) -> PyResult<()> {
    if !m.raw().is_owned_by_current_thread() {
        return Err(PyRuntimeError::new_err(format!(
            "cannot release an un-acquired {what} (or one another thread holds)"
        )));
    }
    // SAFETY: the calling thread holds the lock (checked just above: the lock word names
    // this thread, and only this thread's acquire could have written it); the bindings
    // never touch the mutex's data, so nothing uses it after the unlock.
    unsafe { m.raw().unlock() };
    Ok(())
}

fn owner_died(what: &str) -> PyErr {
    OwnerDiedError::new_err(format!(
        "the previous holder of this {what} died holding it; the caller now holds it: \
         repair the data it protects, then call mark_consistent()"
    ))
}

thread_local! {
    /// How many acquisitions of `Lock`s and `RLock`s this thread holds (an `RLock`'s
    /// nested ones too). A lock word naming this thread while it holds none is a dead
    /// thread's whose TID the kernel gave to this one: the lock is taken over
    /// (`OwnerDiedError`), not taken for this thread's own (an `RLock` entered at the dead
    /// holder's depth, a `Lock` waited on forever, or a `Value`'s access that skips a lock
    /// it thinks the caller holds). Reset in a forked child ([`reset_held_in_child`]),
    /// whose thread holds none of its parent's. One count for both kinds: it only errs
    /// towards "this thread holds something", which is how the locks behaved without it.
    static HELD: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// How many lock acquisitions this thread holds.
#[inline]
fn held() -> u32 {
    HELD.with(core::cell::Cell::get)
}

/// Adds `delta` (1 or -1) to [`held`].
#[inline]
fn add_held(delta: i32) {
    HELD.with(|c| c.set(c.get().saturating_add_signed(delta)));
}

/// The `pthread_atfork` child handler (registered as the module is imported): the
/// child's thread holds none of the locks its parent's thread held. (A fork that races
/// the registration may not run it: the count the child inherits then only errs high.)
pub(crate) extern "C" fn reset_held_in_child() {
    // `try_with`: cannot fail in the thread that called `fork`, and a failure would only
    // leave the count high.
    let _ = HELD.try_with(|c| c.set(0));
}

/// [`reset_held_in_child`] as an `os.register_at_fork` hook, where `pthread_atfork` had
/// no memory for it.
#[pyfunction]
pub(crate) fn reset_held_in_python_child() {
    reset_held_in_child();
}

/// Whether the calling thread holds `m`: its word names the thread, and the thread holds
/// some lock acquisition ([`HELD`]).
#[inline]
fn is_mine(m: &Mutex<u32>) -> bool {
    m.raw().is_owned_by_current_thread() && held() > 0
}

/// If `m`'s word names the calling thread while it holds no lock acquisition: the lock
/// taken over from the dead thread whose TID it got, counted, `Some(OwnerDied)`.
#[inline]
fn recover_reused_tid(m: &Mutex<u32>) -> Option<Got> {
    if held() == 0 && m.raw().recover_from_reused_tid().is_some() {
        add_held(1);
        return Some(Got::OwnerDied);
    }
    None
}

/// A non-recursive lock shared between processes: ``multiprocessing.Lock``.
///
/// ``acquire(block=True, timeout=None)`` returns ``True`` once acquired, ``False`` if
/// ``block`` is false and the lock is held, or if ``timeout`` seconds passed. Only the
/// thread that acquired the lock may release it (it records its holder, which is how a
/// waiter finds a holder that died): releasing an unheld lock, or one another thread
/// holds, raises ``RuntimeError``.
///
/// If the holder dies (its process is killed, or its thread ends without releasing it),
/// the next ``acquire`` takes the lock and raises :class:`OwnerDiedError` (see there);
/// waiting never hangs on a dead holder, nor, as a rule, on a new thread that got its
/// thread id (the kernel reuses ids): the lock word records 8 bits of its holder's start
/// time beside its id. That check needs ``/proc`` to show the new thread's start time to
/// the waiter (the same user's process, in the same time namespace); where it does not,
/// or in the 1 case in 255 where those bits match too, other threads wait for the new thread
/// (their timed ``acquire`` returns ``False``), and the new thread itself takes the lock
/// over as long as it holds no other ``Lock`` or ``RLock`` acquisition (one that does
/// waits on the lock as on its own).
/// Blocking waits release the GIL and are interrupted by Ctrl-C (``KeyboardInterrupt``).
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct Lock {
    obj: Obj<LockCell>,
}

/// The uncontended `acquire` of the fast methods (`fast.rs`): `None` if the lock is held
/// (the caller then returns `False` or waits through the full method).
#[inline]
fn try_acquire_mutex(m: &Mutex<u32>, what: &str) -> Option<PyResult<bool>> {
    match m.try_lock() {
        Ok(g) => {
            mem::forget(g);
            Some(Ok(true))
        }
        Err(TryLockError::OwnerDied(od)) => {
            mem::forget(od.into_inner());
            Some(Err(owner_died(what)))
        }
        Err(TryLockError::WouldBlock) => None,
    }
}

impl Lock {
    /// `acquire(False)`: see [`try_acquire_mutex`].
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<PyResult<bool>> {
        let m = &self.obj.get().lock;
        // The compare-exchange first: the reused-TID check costs only when it fails.
        let Some(got) = try_acquire_mutex(m, "Lock") else {
            return recover_reused_tid(m).map(|_| Err(owner_died("Lock")));
        };
        // Held on a dead holder's lock too (the error says so).
        add_held(1);
        Some(got)
    }

    /// Acquires as `acquire(block, timeout)` does, counted ([`HELD`]).
    fn acquire_counted(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Option<Got>> {
        let m = &self.obj.get().lock;
        // The compare-exchange first (`try_acquire_mutex`): the reused-TID check costs
        // only when it fails.
        let got = match try_acquire_mutex(m, "Lock") {
            Some(Ok(_)) => Some(Got::Clean),
            Some(Err(_)) => Some(Got::OwnerDied),
            None => {
                if let Some(got) = recover_reused_tid(m) {
                    return Ok(Some(got));
                }
                acquire_mutex(py, m, block, timeout)?
            }
        };
        if got.is_some() {
            add_held(1);
        }
        Ok(got)
    }

    /// `__enter__`: acquire, waiting; a dead holder is reported with the lock released.
    pub(crate) fn enter(&self, py: Python<'_>) -> PyResult<bool> {
        match self.acquire_counted(py, true, None)? {
            Some(Got::OwnerDied) => {
                self.release()?;
                Err(owner_died("Lock"))
            }
            _ => Ok(true),
        }
    }

    /// `release()`.
    #[inline]
    pub(crate) fn release(&self) -> PyResult<()> {
        let m = &self.obj.get().lock;
        if held() == 0 {
            // The word may name this thread, for a dead holder whose TID it got.
            return Err(PyRuntimeError::new_err(
                "cannot release an un-acquired Lock (or one another thread holds)",
            ));
        }
        release_mutex(m, "Lock")?;
        add_held(-1);
        Ok(())
    }

    /// Whether the calling thread holds the lock.
    #[inline]
    pub(crate) fn is_mine(&self) -> bool {
        is_mine(&self.obj.get().lock)
    }

    pub(crate) fn open(region: &std::sync::Arc<RegionInner>, name: &str) -> PyResult<Self> {
        Ok(Lock {
            obj: Obj::get_or_init(region, name, 1, |_: &LockCell| {})?,
        })
    }
}

#[pymethods]
impl Lock {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "()")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "Lock", args, kwargs)?;
        let this = placed.get();
        Ok(Lock {
            obj: this.obj.clone(),
        })
    }
    /// acquire(block=True, timeout=None) -> bool
    ///
    /// Acquire the lock; see the class docs for ``block``, ``timeout`` and
    /// :class:`OwnerDiedError`.
    #[pyo3(signature = (block = Block(true), timeout = None))]
    fn acquire(&self, py: Python<'_>, block: Block, timeout: Option<f64>) -> PyResult<bool> {
        let Block(block) = block;
        match self.acquire_counted(py, block, timeout)? {
            None => Ok(false),
            Some(Got::Clean) => Ok(true),
            Some(Got::OwnerDied) => Err(owner_died("Lock")),
        }
    }

    /// release() -> None
    ///
    /// Release the lock (held by the calling thread).
    #[pyo3(name = "release")]
    fn py_release(&self) -> PyResult<()> {
        self.release()
    }

    /// Whether some thread holds the lock now (a snapshot).
    fn locked(&self) -> bool {
        self.obj.get().lock.is_locked()
    }

    /// Mark the lock consistent after an :class:`OwnerDiedError` (the caller holds it and
    /// has repaired what it protects): later acquisitions no longer raise.
    fn mark_consistent(&self) -> bool {
        self.is_mine() && self.obj.get().lock.raw().mark_consistent()
    }

    fn _is_mine(&self) -> bool {
        self.is_mine()
    }

    fn _count(&self) -> u32 {
        u32::from(self._is_mine())
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.enter(py)
    }

    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyType>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        reduce(py, "Lock", &self.obj, vec![])
    }

    fn __repr__(&self) -> String {
        let state = if self.locked() { "locked" } else { "unlocked" };
        format!("<shmstate.Lock {:?} {state}>", self.obj.name())
    }
}

/// A recursive lock shared between processes: ``multiprocessing.RLock``.
///
/// The holding thread may acquire it again; it is released when ``release`` has been
/// called as many times as ``acquire``. Otherwise as :class:`Lock`: ``acquire(block=True,
/// timeout=None)``, only the holder releases (``RuntimeError`` otherwise), a dead holder
/// raises :class:`OwnerDiedError` in the next acquirer, waits are interruptible.
///
/// A thread that got the thread id of a holder that died (the kernel reuses ids) is not
/// taken for that holder re-entering: its ``acquire`` raises :class:`OwnerDiedError` as
/// any other thread's would. The lock word records the holder's start time (8 bits of
/// it) beside its id; in the 1 case in 255 where those bits match too, this still holds
/// as long as the thread holds no other ``Lock`` or ``RLock`` acquisition (one that does
/// enters, at the dead holder's depth). The check relies on a per-thread count of acquisitions: a ``release``
/// without a matching ``acquire`` (of an ``RLock`` or a ``Lock``) on a lock whose word
/// names the thread so confuses it, and a later ``acquire`` of a lock the thread does
/// hold may then take it over (``OwnerDiedError``) and its ``release`` free it early.
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct RLock {
    obj: Obj<RLockCell>,
}

impl RLock {
    pub(crate) fn open(region: &std::sync::Arc<RegionInner>, name: &str) -> PyResult<Self> {
        Ok(RLock {
            obj: Obj::get_or_init(region, name, 1, |_: &RLockCell| {})?,
        })
    }

    fn acquire_inner(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Option<Got>> {
        let cell = self.obj.get();
        if let Some(got) = self.relock() {
            return Ok(Some(got));
        }
        let got = acquire_mutex(py, &cell.lock, block, timeout)?;
        if got.is_some() {
            self.fresh();
        }
        Ok(got)
    }

    /// If the calling thread holds the lock: one more level. If the word names it but it
    /// holds no `RLock`: the lock taken over from the dead thread whose TID it got
    /// ([`HELD`]), as `OwnerDied`.
    #[inline]
    fn relock(&self) -> Option<Got> {
        let cell = self.obj.get();
        if !cell.lock.raw().is_owned_by_current_thread() {
            return None;
        }
        if held() == 0 {
            // `None` if the word changed meanwhile: acquire the usual way.
            recover_reused_tid(&cell.lock)?;
            // Relaxed: only the holder (this thread) reads or writes `depth`.
            cell.depth.store(1, Ordering::Relaxed);
            return Some(Got::OwnerDied);
        }
        // Relaxed: only the holder (this thread) reads or writes `depth`.
        let d = cell.depth.load(Ordering::Relaxed);
        cell.depth.store(d.saturating_add(1), Ordering::Relaxed);
        add_held(1);
        Some(Got::Clean)
    }

    /// After a fresh acquisition by this thread.
    #[inline]
    fn fresh(&self) {
        // Relaxed: only the holder (this thread) reads or writes `depth`; the acquisition
        // ordered us after the previous holder.
        self.obj.get().depth.store(1, Ordering::Relaxed);
        add_held(1);
    }

    /// Whether the calling thread holds the lock (see [`relock`](Self::relock)).
    #[inline]
    fn is_mine(&self) -> bool {
        is_mine(&self.obj.get().lock)
    }

    /// `acquire(False)` for the fast methods (`fast.rs`): `None` if another thread holds it.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Option<PyResult<bool>> {
        match self.relock() {
            Some(Got::Clean) => return Some(Ok(true)),
            Some(Got::OwnerDied) => return Some(Err(owner_died("RLock"))),
            None => {}
        }
        let got = try_acquire_mutex(&self.obj.get().lock, "RLock")?;
        // Set on a dead holder's lock too: the caller holds it (and learns so from the
        // error).
        self.fresh();
        Some(got)
    }

    /// `__enter__`.
    pub(crate) fn enter(&self, py: Python<'_>) -> PyResult<bool> {
        self.lock_for_access(py)?;
        Ok(true)
    }

    /// Acquire for the bindings' own use (a `Value`'s or `Array`'s accessors): a dead
    /// holder is reported with the lock released again.
    pub(crate) fn lock_for_access(&self, py: Python<'_>) -> PyResult<()> {
        if self.acquire_inner(py, true, None)? == Some(Got::OwnerDied) {
            self.release()?;
            return Err(owner_died("RLock"));
        }
        Ok(())
    }
}

#[pymethods]
impl RLock {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "()")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "RLock", args, kwargs)?;
        let this = placed.get();
        Ok(RLock {
            obj: this.obj.clone(),
        })
    }
    /// acquire(block=True, timeout=None) -> bool
    ///
    /// Acquire the lock (again, if this thread holds it); see the class docs.
    #[pyo3(signature = (block = Block(true), timeout = None))]
    fn acquire(&self, py: Python<'_>, block: Block, timeout: Option<f64>) -> PyResult<bool> {
        let Block(block) = block;
        match self.acquire_inner(py, block, timeout)? {
            None => Ok(false),
            Some(Got::Clean) => Ok(true),
            Some(Got::OwnerDied) => Err(owner_died("RLock")),
        }
    }

    /// release() -> None
    ///
    /// Undo one ``acquire`` of the calling thread; the last one releases the lock.
    pub(crate) fn release(&self) -> PyResult<()> {
        let cell = self.obj.get();
        if !self.is_mine() {
            return Err(PyRuntimeError::new_err(
                "cannot release an un-acquired RLock (or one another thread holds)",
            ));
        }
        // Relaxed: only the holder reads or writes `depth`.
        let d = cell.depth.load(Ordering::Relaxed);
        if d > 1 {
            cell.depth.store(d - 1, Ordering::Relaxed);
        } else {
            cell.depth.store(0, Ordering::Relaxed);
            release_mutex(&cell.lock, "RLock")?;
        }
        add_held(-1);
        Ok(())
    }

    /// Whether some thread holds the lock now (a snapshot).
    fn locked(&self) -> bool {
        self.obj.get().lock.is_locked()
    }

    /// As :meth:`Lock.mark_consistent`.
    fn mark_consistent(&self) -> bool {
        // Not a dead holder's lock whose word names this thread (see the class docs).
        self.is_mine() && self.obj.get().lock.raw().mark_consistent()
    }

    fn _is_mine(&self) -> bool {
        self.is_mine()
    }

    /// How many times the calling thread holds the lock (0 if it does not).
    fn _count(&self) -> u32 {
        if self._is_mine() {
            // Relaxed: we hold the lock; only the holder writes `depth`.
            self.obj.get().depth.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.enter(py)
    }

    fn __exit__(
        &self,
        _t: Option<&Bound<'_, PyType>>,
        _v: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.release()?;
        Ok(false)
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        reduce(py, "RLock", &self.obj, vec![])
    }

    fn __repr__(&self) -> String {
        let state = if self.locked() { "locked" } else { "unlocked" };
        format!("<shmstate.RLock {:?} {state}>", self.obj.name())
    }
}

/// The lock of a `Value` or an `Array`: its own `RLock` (``lock=True``) or the `Lock` or
/// `RLock` given as ``lock=`` (which several objects may share).
pub(crate) enum SideLock {
    RLock(Py<RLock>),
    Lock(Py<Lock>),
}

impl SideLock {
    /// ``lock=`` an existing lock: a shmstate `Lock` or `RLock`. Any other kind of lock
    /// cannot be shared through a region (`TypeError`); an object that is no lock at all
    /// raises multiprocessing's `AttributeError`.
    pub(crate) fn given(lock: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(l) = lock.downcast::<RLock>() {
            return Ok(SideLock::RLock(l.clone().unbind()));
        }
        if let Ok(l) = lock.downcast::<Lock>() {
            return Ok(SideLock::Lock(l.clone().unbind()));
        }
        if !lock.hasattr("acquire")? {
            return Err(pyo3::exceptions::PyAttributeError::new_err(format!(
                "{} has no method 'acquire'",
                lock.repr()?
            )));
        }
        let ty = lock
            .get_type()
            .fully_qualified_name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "lock must be True, False, None or a shmstate.Lock or shmstate.RLock, not {ty} \
             (a lock of another kind cannot be shared through a region)"
        )))
    }

    /// The lock object (``get_lock()``: the same object every time).
    pub(crate) fn object(&self, py: Python<'_>) -> PyObject {
        match self {
            SideLock::RLock(l) => l.clone_ref(py).into_any(),
            SideLock::Lock(l) => l.clone_ref(py).into_any(),
        }
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Self {
        match self {
            SideLock::RLock(l) => SideLock::RLock(l.clone_ref(py)),
            SideLock::Lock(l) => SideLock::Lock(l.clone_ref(py)),
        }
    }

    /// Runs `f` holding the lock, for an accessor of the object it guards. An `RLock` is
    /// acquired (again, if the calling thread holds it) and released; a `Lock` the
    /// calling thread holds already is left as it is (the caller's critical section
    /// covers the access: ``with v.get_lock(): v.value += 1`` works on a `Lock` too,
    /// where taking it again would deadlock). A dead holder raises `OwnerDiedError`
    /// with the lock released.
    pub(crate) fn with<R>(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        match self {
            SideLock::RLock(l) => {
                let l = l.get();
                l.lock_for_access(py)?;
                let r = f();
                l.release()?;
                r
            }
            SideLock::Lock(l) => {
                let l = l.get();
                if l.is_mine() {
                    return f();
                }
                l.enter(py)?;
                let r = f();
                l.release()?;
                r
            }
        }
    }
}
