//! `shmstate._shmstate`: the native half of shmstate's Python package.
//!
//! Each class here is one object of a shmstate [`Region`](shmstate::Region): the Python
//! object holds the region (an `Arc`, so the mapping outlives every object in it) and a
//! pointer to the object in the mapping. The pure-Python package `shmstate` builds
//! multiprocessing's vocabulary on these (factories with multiprocessing's signatures,
//! `Condition`, `Barrier`, pickling as a reference to a region file).
//!
//! Adding a kind of object (a shared dict on the crate's map, a queue on its byte
//! channel): a `#[pyclass]` holding an `obj::Obj<T>` (the region handle and the object),
//! a constructor on `region::Region` (`RegionCore` in Python) and a `#[new]` that places
//! it in the default region (`obj::new_in_default_region`), a `__reduce__` through
//! `obj::reduce` with the shape the receiver needs, and the same kind name in
//! `shmstate._reduce.rebuild` and a method of `shmstate.Region`; blocking calls go through
//! `wait::interruptible`.
//!
//! The calls of an inner loop (`Lock`/`RLock` `acquire`, `release` and `with`; a `Value`'s
//! `value`, `add` and `sub`) are CPython methods installed over PyO3's (`fast`): PyO3's
//! per-call wrapper cost more than the operations themselves.
//!
//! Every blocking call waits in bounded slices with the GIL released and checks for
//! signals between slices (`wait::interruptible`), so Ctrl-C interrupts it promptly.

mod array;
mod coord;
mod counter;
mod dict;
mod errors;
mod fast;
mod lock;
mod obj;
mod queue;
mod region;
mod typecode;
mod value;
mod wait;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _shmstate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<region::Region>()?;
    m.add_class::<value::Value>()?;
    m.add_class::<array::Array>()?;
    m.add_class::<lock::Lock>()?;
    m.add_class::<lock::RLock>()?;
    m.add_class::<coord::Semaphore>()?;
    m.add_class::<coord::BoundedSemaphore>()?;
    m.add_class::<coord::Event>()?;
    m.add_class::<counter::Counter>()?;
    m.add_class::<queue::Queue>()?;
    m.add_class::<queue::JoinableQueue>()?;
    errors::register(m)?;
    fast::install(m)?;
    dict::register(m)?;
    // A forked child's thread holds none of the locks its parent's thread held: reset
    // inside `fork` itself, before any Python `after_in_child` hook (which may take a
    // lock) and for a fork from C too. (Module init runs once per process.)
    // SAFETY: `pthread_atfork` with a valid `extern "C"` handler that lives as long as
    // the process (extension modules are never unloaded).
    if unsafe { libc::pthread_atfork(None, None, Some(lock::reset_held_in_child)) } != 0 {
        // No memory for the handler: Python's hook instead (it runs after hooks
        // registered earlier, and not for a fork from C).
        let reset = wrap_pyfunction!(lock::reset_held_in_python_child, m)?;
        let kwargs = pyo3::types::PyDict::new(m.py());
        kwargs.set_item("after_in_child", reset)?;
        m.py()
            .import("os")?
            .getattr("register_at_fork")?
            .call((), Some(&kwargs))?;
    }
    Ok(())
}
