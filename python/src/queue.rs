//! `Queue` and `JoinableQueue`: multiprocessing's queues on the crate's byte channel.
//!
//! # Objects in the region (for a queue named `NAME`)
//!
//! | Name | Type | What |
//! |---|---|---|
//! | `NAME` | [`Channel`](shmstate::Channel) | the pickled items, one message each |
//! | `NAME/maxsize` | `Value<u64>` | the item limit, written by the creator (0: none) |
//! | `NAME/space` | [`Event`](shmstate::Event) | bounded queues: a getter's doorbell for a producer waiting for an item's room |
//! | `NAME/unfinished` | `Value<u64>` | `JoinableQueue`: items put and not yet `task_done` |
//! | `NAME/done` | [`Event`](shmstate::Event) | `JoinableQueue`: a `task_done` that reached 0 rings it for `join` |
//!
//! # The item limit
//!
//! The channel bounds bytes; `maxsize` bounds items without a counter of its own: a
//! producer reserves its message (which holds the channel's send lock, so no other
//! producer publishes meanwhile) and checks the channel's own count of waiting messages
//! (sent minus claimed) against `maxsize` before it commits. Only the send-lock holder
//! raises that count and getters only lower it, so the bound is exact, and nothing leaks
//! when a process dies: a producer killed before its commit published nothing, a getter
//! killed after its claim has already lowered the count. A producer that finds the
//! queue full gives its reservation back, clears `NAME/space`, fences, looks again and
//! waits on the event; a getter fences after its receive and sets the event if it is
//! clear (one load when nobody waits). The two `SeqCst` fences pair: either the producer
//! sees the getter's claim or the getter sees the cleared event.
//!
//! # Crash windows
//!
//! The channel's own table covers its steps (a producer killed before its commit sends
//! nothing; a getter killed between its claim and its release loses that one item, counted
//! in `lost()`; a dead lock holder is recovered by the next producer or getter, a
//! non-blocking one at once or a millisecond after its thread's previous probe). What
//! this module adds:
//!
//! | Step (process killed there) | What it leaves | Who repairs it, how fast |
//! |---|---|---|
//! | Put: space event cleared, not waiting yet | the event clear | the next get sets it again; nothing else depends on it |
//! | Put (`JoinableQueue`): `unfinished` raised, commit not done | one unfinished task that no item carries: `join()` without a timeout waits until interrupted (as multiprocessing's does) | nobody: the window is the copy of the item into the ring; `join(timeout)` returns `False` |
//! | Get: item received, space event not set | a producer waiting for room not woken | it wakes at the end of its 20 ms slice and looks again |
//! | Get (`JoinableQueue`): item received, `task_done()` never called (killed mid-task) | one unfinished task: `join()` without a timeout waits until interrupted, as multiprocessing's | nobody can know whether the task was done: `join(timeout)` returns `False` at its deadline |
//! | `task_done`: count reached 0, `done` not set | a joiner not woken | it wakes at the end of its 20 ms slice and sees 0 |
//!
//! Tests (python/tests/test_queue.py): `test_a_producer_killed_mid_put_*` and
//! `test_a_producer_killed_while_waiting_*` (a producer killed at any step, or asleep on a
//! full queue), `test_a_consumer_killed_mid_get_*`, `test_a_worker_killed_mid_task_*`,
//! `test_a_joiner_not_woken_by_a_dying_task_done_*` (the last line, made by writing the
//! count behind the queue's back). The two lines inside a put or a get are a few
//! instructions wide and have no hook (the Python package is built without the crate's
//! failpoints); each costs at most one wait slice, by the same bounded waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyDict, PyInt, PyTuple, PyType};
use shmstate::sync::{AtomicBool, Ordering, fence};
use shmstate::{
    Channel, ChannelOpenError, ChannelOptions, Event, RecvTimeoutError, SendTimeoutError,
    TryRecvError, TrySendError, Value,
};

use crate::errors;
use crate::obj::{Obj, RegionInner, reduce};
use crate::wait::{deadline, interruptible};

/// How long `shutdown(immediate=True)` goes on discarding items while the receive side is
/// busy: a probe of its holder comes due within a millisecond of this thread's calls (the
/// crate's `PROBE_INTERVAL`) and a dead holder's recovery takes up to 5 ms; 25 ms leaves
/// room for a loaded machine.
const IMMEDIATE_SHUTDOWN_DRAIN: Duration = Duration::from_millis(25);

/// Why a put step did not send.
enum PutFail {
    /// No room (items or bytes) before the step's deadline, or the send side busy.
    Full,
    /// `shutdown()`: the channel is closed.
    ShutDown,
    /// The channel's shared state is invalid.
    Corrupt,
}

/// Why a get step did not receive.
enum GetFail {
    Empty,
    ShutDown,
    Corrupt,
}

/// The unfinished-task count of a `JoinableQueue` and the event its `join` waits on.
#[derive(Clone)]
struct Tasks {
    unfinished: Obj<Value<u64>>,
    done: Obj<Event>,
}

impl Tasks {
    /// Rings `done` if the count is 0 and the event is clear (a joiner cleared it).
    fn ring_if_zero(&self, count: u64) {
        if count == 0 {
            // SeqCst: pairs with the fence in `join_step` between its clear of `done` and
            // its load of the count: either it sees our decrement or we see its clear.
            fence(Ordering::SeqCst);
            let done = self.done.get();
            if !done.is_set() {
                done.set();
            }
        }
    }

    /// Takes back a raise of the count (a put that did not send): as a `task_done`,
    /// which never takes the count below 0 (a peer's extra `task_done` may have).
    fn undo_put(&self) {
        let _ = task_done_inner(self);
    }
}

/// What `Queue` and `JoinableQueue` share: the channel and its side objects.
#[derive(Clone)]
pub(crate) struct Core {
    ch: Obj<Channel>,
    /// 0: no item limit (the ring's bytes bound the queue).
    maxsize: u64,
    /// The room doorbell, for a bounded queue.
    space: Option<Obj<Event>>,
    tasks: Option<Tasks>,
}

impl Core {
    pub(crate) fn open(
        region: &Arc<RegionInner>,
        name: &str,
        maxsize: i64,
        capacity: usize,
        joinable: bool,
    ) -> PyResult<Self> {
        let options = ChannelOptions::new(capacity);
        // The largest message a ring accepts: the crate's `capacity / 2 - 8`.
        let cap = options.capacity_bytes();
        let options = options.max_message((cap / 2).saturating_sub(8));
        let ch = Obj::get_or_init_with(region, name, |r| r.channel(name, options))
            .map_err(|e| channel_error(name, e))?;
        // `maxsize <= 0` is "no item limit", as in multiprocessing.
        let want = u64::try_from(maxsize).unwrap_or(0);
        let stored: Obj<Value<u64>> =
            Obj::get_or_init(region, &format!("{name}/maxsize"), 1, |v: &Value<u64>| {
                // Relaxed: the region publishes the object after its init closure.
                v.store(want, Ordering::Relaxed)
            })?;
        // Relaxed: written once, by the creator, before the object was published.
        let maxsize = stored.get().load(Ordering::Relaxed);
        let space = if maxsize > 0 {
            Some(Obj::get_or_init(
                region,
                &format!("{name}/space"),
                1,
                |_: &Event| {},
            )?)
        } else {
            None
        };
        let tasks = if joinable {
            Some(Tasks {
                unfinished: Obj::get_or_init(
                    region,
                    &format!("{name}/unfinished"),
                    1,
                    |_: &Value<u64>| {},
                )?,
                done: Obj::get_or_init(region, &format!("{name}/done"), 1, |_: &Event| {})?,
            })
        } else {
            None
        };
        Ok(Core {
            ch,
            maxsize,
            space,
            tasks,
        })
    }

    fn max_message(&self) -> usize {
        self.ch.get().options().max_message_len()
    }

    /// One attempt to put `bytes`: without waiting (`until` is `None`) or until `until`.
    fn put_step(&self, bytes: &[u8], until: Option<Instant>) -> Result<(), PutFail> {
        let ch = self.ch.get();
        loop {
            let slot = match until {
                None => ch.try_reserve(bytes.len()).map_err(|e| match e {
                    TrySendError::Full | TrySendError::Busy => PutFail::Full,
                    TrySendError::Disconnected => PutFail::ShutDown,
                    // Checked by the caller against the same channel's largest message.
                    TrySendError::TooLarge { .. } | TrySendError::Corrupt => PutFail::Corrupt,
                })?,
                Some(d) => ch.reserve_until(bytes.len(), d).map_err(|e| match e {
                    SendTimeoutError::Timeout => PutFail::Full,
                    SendTimeoutError::Disconnected => PutFail::ShutDown,
                    SendTimeoutError::TooLarge { .. } | SendTimeoutError::Corrupt => {
                        PutFail::Corrupt
                    }
                })?,
            };
            // Exact under the send lock that `slot` holds: only its holder raises the
            // count of waiting messages.
            if let Some(space) = &self.space
                && ch.len() as u64 >= self.maxsize
            {
                drop(slot);
                let space = space.get();
                space.clear();
                // SeqCst: pairs with the fence in `after_get` between a getter's claim
                // and its look at `space`: either we see the claim below or the getter
                // sees our clear and sets the event.
                fence(Ordering::SeqCst);
                if (ch.len() as u64) < self.maxsize {
                    continue;
                }
                match until {
                    None => return Err(PutFail::Full),
                    Some(d) => {
                        if space.wait_until(d).is_err() {
                            return Err(PutFail::Full);
                        }
                        continue;
                    }
                }
            }
            let mut slot = slot;
            if let Some(t) = &self.tasks {
                // SeqCst: before the commit publishes the item, so a getter's
                // `task_done` never sees the count without it.
                t.unfinished.get().fetch_add(1, Ordering::SeqCst);
            }
            slot.write_at(0, bytes);
            return match slot.commit() {
                Ok(()) => Ok(()),
                Err(_) => {
                    if let Some(t) = &self.tasks {
                        t.undo_put();
                    }
                    Err(PutFail::ShutDown)
                }
            };
        }
    }

    /// After a get: rings the room doorbell if a producer cleared it to wait.
    #[inline]
    fn after_get(&self) {
        if let Some(space) = &self.space {
            // SeqCst: pairs with the fence in `put_step` (see there).
            fence(Ordering::SeqCst);
            let space = space.get();
            if !space.is_set() {
                space.set();
            }
        }
    }

    /// One wait of `join`: `true` once no task is unfinished.
    fn join_step(&self, tasks: &Tasks, slice: Duration) -> bool {
        let count = || tasks.unfinished.get().load(Ordering::SeqCst);
        if count() == 0 {
            return true;
        }
        let done = tasks.done.get();
        done.clear();
        // SeqCst: pairs with the fence in `Tasks::ring_if_zero`.
        fence(Ordering::SeqCst);
        if count() == 0 {
            return true;
        }
        let _ = done.wait_timeout(slice);
        count() == 0
    }
}

fn channel_error(name: &str, e: ChannelOpenError) -> PyErr {
    match e {
        ChannelOpenError::Get(g) => errors::get_error(name, g),
        ChannelOpenError::InvalidOptions(o) => {
            PyValueError::new_err(format!("queue {name:?}: {o}"))
        }
        ChannelOpenError::Mismatch { .. } => {
            pyo3::exceptions::PyTypeError::new_err(format!("queue {name:?}: {e}"))
        }
        ChannelOpenError::Corrupt { .. } => errors::RegionError::new_err(format!("{e}")),
    }
}

static DUMPS: GILOnceCell<PyObject> = GILOnceCell::new();
static LOADS: GILOnceCell<PyObject> = GILOnceCell::new();
static FULL: GILOnceCell<PyObject> = GILOnceCell::new();
static EMPTY: GILOnceCell<PyObject> = GILOnceCell::new();
static SHUTDOWN: GILOnceCell<PyObject> = GILOnceCell::new();

fn cached<'py>(
    py: Python<'py>,
    cell: &'static GILOnceCell<PyObject>,
    module: &str,
    attr: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || -> PyResult<PyObject> {
            Ok(py.import(module)?.getattr(attr)?.unbind())
        })?
        .bind(py))
}

/// The exception class `module.attr`, raised without arguments.
fn raise(py: Python<'_>, cell: &'static GILOnceCell<PyObject>, module: &str, attr: &str) -> PyErr {
    match cached(py, cell, module, attr).map(|t| t.downcast::<PyType>().cloned()) {
        Ok(Ok(t)) => PyErr::from_type(t, ()),
        Ok(Err(e)) => e.into(),
        Err(e) => e,
    }
}

fn full(py: Python<'_>) -> PyErr {
    raise(py, &FULL, "queue", "Full")
}

fn empty(py: Python<'_>) -> PyErr {
    raise(py, &EMPTY, "queue", "Empty")
}

fn shut_down(py: Python<'_>) -> PyErr {
    raise(py, &SHUTDOWN, "shmstate._queue", "ShutDown")
}

fn corrupt() -> PyErr {
    PyRuntimeError::new_err("the queue's shared state is corrupt (another process overwrote it)")
}

/// A FIFO queue of picklable objects shared between processes: ``multiprocessing.Queue``.
///
/// ``Queue(maxsize=0, *, capacity=1 MiB)``: ``put(obj, block=True, timeout=None)``
/// pickles ``obj`` straight into shared memory (no feeder thread: when ``put`` returns,
/// the item is in the queue); ``get(block=True, timeout=None)`` takes the oldest item.
/// ``put_nowait``/``get_nowait``, ``queue.Full``/``queue.Empty``, ``qsize()``,
/// ``empty()``, ``full()``, ``close()`` and ``join_thread()`` as multiprocessing's.
///
/// ``maxsize > 0`` bounds the number of items (exactly, across processes); ``capacity``
/// bounds the bytes of the pickled items waiting (a ring, rounded up to a power of two):
/// a ``put`` that finds no room for either waits, as on a full queue. An item whose
/// pickle is longer than ``capacity / 2 - 8`` bytes raises ``ValueError`` and is not sent.
///
/// ``shutdown(immediate=False)`` (Python 3.13's ``queue.Queue.shutdown``) closes the
/// queue for every process: ``put`` raises :class:`shmstate.ShutDown`; ``get`` raises it
/// once the queue is empty.
///
/// Delivery is at most once: a process killed inside ``get``, after it took the item
/// from shared memory and before it returned it, takes that one item with it
/// (``lost()`` counts such items); no other item is lost or delivered twice, and no
/// killed producer or getter blocks the others.
#[pyclass(module = "shmstate._shmstate", subclass, frozen, weakref)]
pub struct Queue {
    core: Core,
    /// `close()` was called on this handle.
    closed: AtomicBool,
}

impl Queue {
    pub(crate) fn from_core(core: Core) -> Self {
        Queue {
            core,
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> PyResult<()> {
        // Relaxed: a process-local flag; no data hangs on it.
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyValueError::new_err(format!(
                "Queue {:?} is closed",
                self.core.ch.name()
            )));
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        if self.core.tasks.is_some() {
            "JoinableQueue"
        } else {
            "Queue"
        }
    }
}

#[pymethods]
impl Queue {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(maxsize=0, *, capacity=1048576)")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "Queue", args, kwargs)?;
        Ok(Queue::from_core(placed.get().core.clone()))
    }

    /// put(obj, block=True, timeout=None) -> None
    ///
    /// Put ``obj`` (pickled) at the end of the queue, waiting while it is full if
    /// ``block`` (at most ``timeout`` seconds if given); ``queue.Full`` if it stayed full.
    /// ``ValueError`` if the pickle is too large for the queue (nothing is sent);
    /// :class:`shmstate.ShutDown` after ``shutdown()``.
    #[pyo3(signature = (obj, block = true, timeout = None))]
    fn put(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        self.check_open()?;
        let dumps = cached(py, &DUMPS, "pickle", "dumps")?;
        // Protocol -1: the highest (5), the fastest for `bytes`-like and large objects.
        let pickled = dumps.call1((obj, PyInt::new(py, -1)))?;
        let pickled = pickled.downcast::<PyBytes>()?;
        let bytes = pickled.as_bytes();
        let max = self.core.max_message();
        if bytes.len() > max {
            return Err(PyValueError::new_err(format!(
                "object pickles to {} bytes, more than the queue's largest item ({max} \
                 bytes: capacity / 2 - 8); make the queue with a larger capacity",
                bytes.len()
            )));
        }
        let r = match self.core.put_step(bytes, None) {
            Err(PutFail::Full) if block => {
                let deadline = deadline(timeout)?;
                let core = &self.core;
                interruptible(py, deadline, |slice| {
                    match core.put_step(bytes, Some(Instant::now() + slice)) {
                        Err(PutFail::Full) => None,
                        r => Some(r),
                    }
                })?
                .unwrap_or(Err(PutFail::Full))
            }
            r => r,
        };
        match r {
            Ok(()) => Ok(()),
            Err(PutFail::Full) => Err(full(py)),
            Err(PutFail::ShutDown) => Err(shut_down(py)),
            Err(PutFail::Corrupt) => Err(corrupt()),
        }
    }

    /// put_nowait(obj) -> None
    ///
    /// ``put(obj, False)``.
    fn put_nowait(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, obj, false, None)
    }

    /// get(block=True, timeout=None) -> object
    ///
    /// Remove and return the oldest item, waiting while the queue is empty if ``block``
    /// (at most ``timeout`` seconds if given); ``queue.Empty`` if it stayed empty.
    /// :class:`shmstate.ShutDown` once the queue is shut down and empty.
    #[pyo3(signature = (block = true, timeout = None))]
    fn get(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<PyObject> {
        self.check_open()?;
        let ch = self.core.ch.get();
        // Without releasing the GIL: the item goes straight from the ring's copy into a
        // `bytes` object.
        let r = ch.try_recv_with(|m| PyBytes::new(py, m).into_any().unbind());
        let r = match r {
            Ok(b) => Ok(b),
            Err(TryRecvError::Empty | TryRecvError::Busy) if block => {
                let deadline = deadline(timeout)?;
                interruptible(py, deadline, |slice| {
                    match ch.recv_timeout_with(slice, |m| m.to_vec()) {
                        Ok(v) => Some(Ok(v)),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Err(GetFail::ShutDown)),
                        Err(RecvTimeoutError::Corrupt) => Some(Err(GetFail::Corrupt)),
                    }
                })?
                .unwrap_or(Err(GetFail::Empty))
                .map(|v| PyBytes::new(py, &v).into_any().unbind())
            }
            Err(TryRecvError::Empty | TryRecvError::Busy) => Err(GetFail::Empty),
            Err(TryRecvError::Disconnected) => Err(GetFail::ShutDown),
            Err(TryRecvError::Corrupt) => Err(GetFail::Corrupt),
        };
        match r {
            Ok(b) => {
                self.core.after_get();
                cached(py, &LOADS, "pickle", "loads")?
                    .call1((b,))
                    .map(Bound::unbind)
            }
            Err(GetFail::Empty) => Err(empty(py)),
            Err(GetFail::ShutDown) => Err(shut_down(py)),
            Err(GetFail::Corrupt) => Err(corrupt()),
        }
    }

    /// get_nowait() -> object
    ///
    /// ``get(False)``.
    fn get_nowait(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.get(py, false, None)
    }

    /// The number of items waiting (a snapshot).
    fn qsize(&self) -> usize {
        self.core.ch.get().len()
    }

    /// Whether no item is waiting (a snapshot).
    fn empty(&self) -> bool {
        self.core.ch.get().is_empty()
    }

    /// Whether ``maxsize`` items are waiting (a snapshot; always ``False`` without
    /// ``maxsize``, as multiprocessing's, though a ``put`` may still wait for bytes).
    fn full(&self) -> bool {
        self.core.maxsize > 0 && self.core.ch.get().len() as u64 >= self.core.maxsize
    }

    /// The item limit (0: none).
    #[getter]
    fn maxsize(&self) -> u64 {
        self.core.maxsize
    }

    /// The ring's size in bytes.
    #[getter]
    fn capacity(&self) -> usize {
        self.core.ch.get().options().capacity_bytes()
    }

    /// Items lost with getters killed while taking them (at-most-once delivery),
    /// counted by the getter or producer that repaired the queue after them.
    fn lost(&self) -> u64 {
        self.core.ch.get().lost()
    }

    /// close() -> None
    ///
    /// This handle will not be used any more: later ``put``/``get`` on it raise
    /// ``ValueError`` (as multiprocessing's). Other handles, in this process or others,
    /// are unaffected; items already put stay in the queue.
    fn close(&self) {
        // Relaxed: a process-local flag.
        self.closed.store(true, Ordering::Relaxed);
    }

    /// join_thread() -> None
    ///
    /// Does nothing: there is no feeder thread (an item is in shared memory when ``put``
    /// returns, so nothing is left to flush at exit).
    fn join_thread(&self) {}

    /// cancel_join_thread() -> None
    ///
    /// Does nothing, as ``join_thread``: a process never waits at exit for its puts.
    fn cancel_join_thread(&self) {}

    /// shutdown(immediate=False) -> None
    ///
    /// Shut the queue down for every process (Python 3.13's ``queue.Queue.shutdown``):
    /// ``put`` raises :class:`shmstate.ShutDown` from now on (waiting ones too); ``get``
    /// returns the items already put, then raises it. With ``immediate``, the waiting
    /// items are discarded first (for a ``JoinableQueue``, each counts as done); if
    /// another process holds the queue's receive side meanwhile (a getter stopped while
    /// taking an item), the call tries for up to about 25 ms, then returns and leaves the
    /// items to the next getter. Shutting down is final.
    #[pyo3(signature = (immediate = false))]
    fn shutdown(&self, py: Python<'_>, immediate: bool) -> PyResult<()> {
        let ch = self.core.ch.get();
        ch.close();
        if immediate {
            let tasks = self.core.tasks.clone();
            py.allow_threads(|| {
                // Bounded in time, not in calls: a `try_` call probes a holder of the
                // receive side at most once a millisecond (of this thread's calls), and
                // recovers it from a dead one within 5 ms, so a dead getter's side is
                // taken back within the bound however recently this thread last probed
                // it. A getter that keeps the side (a stopped process) keeps its items;
                // the others are discarded.
                let until = Instant::now() + IMMEDIATE_SHUTDOWN_DRAIN;
                loop {
                    match ch.drain(usize::MAX, |_| {
                        if let Some(t) = &tasks {
                            let _ = task_done_inner(t);
                        }
                    }) {
                        Err(TryRecvError::Disconnected | TryRecvError::Corrupt) => break,
                        // Nothing more, unless a record committed before the close is
                        // still without its header: a dead putter's is skipped once this
                        // thread's probe of the send side is due (within a millisecond);
                        // a stopped one's holds the rest until the deadline.
                        Ok(0) if ch.is_empty() => break,
                        Ok(0) | Err(TryRecvError::Busy) => std::thread::yield_now(),
                        Ok(_) | Err(TryRecvError::Empty) => {}
                    }
                    if Instant::now() >= until {
                        break;
                    }
                }
            });
        }
        Ok(())
    }

    /// Whether ``shutdown()`` was called (by any process).
    #[getter]
    fn is_shutdown(&self) -> bool {
        self.core.ch.get().is_closed()
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        let extra = vec![
            self.core.maxsize.into_pyobject(py)?.into_any().unbind(),
            self.capacity().into_pyobject(py)?.into_any().unbind(),
        ];
        reduce(py, self.kind(), &self.core.ch, extra)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstate.{} {:?} qsize={} maxsize={}>",
            self.kind(),
            self.core.ch.name(),
            self.qsize(),
            self.core.maxsize
        )
    }
}

/// `task_done` on the count: `Err` if it is already 0.
fn task_done_inner(t: &Tasks) -> Result<(), ()> {
    // SeqCst: pairs with the fence in `join_step` (through `ring_if_zero`).
    let was = t
        .unfinished
        .get()
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .map_err(|_| ())?;
    t.ring_if_zero(was - 1);
    Ok(())
}

/// A :class:`Queue` whose items count as unfinished until ``task_done()``:
/// ``multiprocessing.JoinableQueue``.
///
/// ``JoinableQueue(maxsize=0, *, capacity=1 MiB)``: each ``put`` adds an unfinished
/// task; ``task_done()`` marks one done (``ValueError`` if called more times than items
/// were put); ``join(timeout=None)`` waits until none is unfinished.
///
/// As in multiprocessing, a worker killed between its ``get`` and its ``task_done``
/// leaves its task unfinished for ever (nobody can know whether it was done): an untimed
/// ``join()`` then waits until interrupted (Ctrl-C interrupts it); ``join(timeout)``
/// returns ``False`` at its deadline.
#[pyclass(module = "shmstate._shmstate", extends = Queue, frozen, weakref)]
pub struct JoinableQueue {}

impl JoinableQueue {
    fn tasks(slf: &Bound<'_, Self>) -> PyResult<Tasks> {
        let q = slf.as_super().get();
        q.core
            .tasks
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("a JoinableQueue without its task count"))
    }
}

#[pymethods]
impl JoinableQueue {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(maxsize=0, *, capacity=1048576)")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "JoinableQueue", args, kwargs)?;
        let core = placed.as_super().get().core.clone();
        Ok(PyClassInitializer::from(Queue::from_core(core)).add_subclass(JoinableQueue {}))
    }

    /// task_done() -> None
    ///
    /// Mark one task done (a ``get`` item processed); wakes ``join`` when none is left.
    /// ``ValueError`` if called more times than items were put.
    fn task_done(slf: &Bound<'_, Self>) -> PyResult<()> {
        task_done_inner(&Self::tasks(slf)?)
            .map_err(|()| PyValueError::new_err("task_done() called too many times"))
    }

    /// join(timeout=None) -> bool
    ///
    /// Wait until every item put has been marked done with ``task_done()`` (at most
    /// ``timeout`` seconds if given: an extension of multiprocessing's). Returns ``True``,
    /// or ``False`` on timeout.
    #[pyo3(signature = (timeout = None))]
    fn join(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<bool> {
        let py = slf.py();
        let tasks = Self::tasks(slf)?;
        let core = slf.as_super().get().core.clone();
        // SeqCst: as every access to the count (see `join_step`).
        if tasks.unfinished.get().load(Ordering::SeqCst) == 0 {
            return Ok(true);
        }
        Ok(interruptible(py, deadline(timeout)?, |slice| {
            core.join_step(&tasks, slice).then_some(())
        })?
        .is_some())
    }

    /// The number of unfinished tasks (a snapshot).
    fn unfinished_tasks(slf: &Bound<'_, Self>) -> PyResult<u64> {
        // SeqCst: as every access to the count.
        Ok(Self::tasks(slf)?.unfinished.get().load(Ordering::SeqCst))
    }
}

/// The queue's objects in `region`, as `Region.Queue`/`Region.JoinableQueue` make them.
pub(crate) fn open_in(
    py: Python<'_>,
    region: &Arc<RegionInner>,
    name: &str,
    maxsize: i64,
    capacity: usize,
    joinable: bool,
) -> PyResult<PyObject> {
    let core = Core::open(region, name, maxsize, capacity, joinable)?;
    let q = Queue::from_core(core);
    Ok(if joinable {
        Bound::new(
            py,
            PyClassInitializer::from(q).add_subclass(JoinableQueue {}),
        )?
        .into_any()
        .unbind()
    } else {
        Py::new(py, q)?.into_any()
    })
}
