//! `Semaphore`, `BoundedSemaphore` and `Event` over the crate's futex primitives.

use std::sync::Arc;

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::obj::{Obj, RegionInner, reduce};
use crate::wait::{Block, deadline, interruptible};

macro_rules! semaphore_methods {
    ($ty:ident, $what:literal) => {
        #[pymethods]
        impl $ty {
            #[new]
            #[pyo3(signature = (*args, **kwargs), text_signature = "(value=1)")]
            fn py_new(
                py: Python<'_>,
                args: &Bound<'_, pyo3::types::PyTuple>,
                kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
            ) -> PyResult<Self> {
                let placed = crate::obj::new_in_default_region::<Self>(py, $what, args, kwargs)?;
                Ok($ty {
                    obj: placed.get().obj.clone(),
                })
            }
            /// acquire(block=True, timeout=None) -> bool
            ///
            /// Take a permit, waiting for one if ``block`` (at most ``timeout`` seconds
            /// if given). ``True`` if a permit was taken.
            #[pyo3(signature = (block = Block(true), timeout = None))]
            fn acquire(
                &self,
                py: Python<'_>,
                block: Block,
                timeout: Option<f64>,
            ) -> PyResult<bool> {
                let Block(block) = block;
                let s = self.obj.get();
                if s.try_acquire() {
                    return Ok(true);
                }
                if !block {
                    return Ok(false);
                }
                Ok(interruptible(py, deadline(timeout)?, |slice| {
                    s.acquire_timeout(slice).ok()
                })?
                .is_some())
            }

            /// The number of permits now (a snapshot).
            fn get_value(&self) -> u32 {
                self.obj.get().value()
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.acquire(py, Block(true), None)
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

            /// release() -> None
            ///
            /// Return a permit, waking one waiter (a ``BoundedSemaphore`` refuses, with
            /// ``ValueError``, to exceed its initial value).
            fn release(&self) -> PyResult<()> {
                self.release_inner()
            }

            fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
                reduce(py, $what, &self.obj, vec![])
            }

            fn __repr__(&self) -> String {
                format!(
                    "<shmstate.{} {:?} value={}>",
                    $what,
                    self.obj.name(),
                    self.get_value()
                )
            }
        }
    };
}

/// A counting semaphore shared between processes: ``multiprocessing.Semaphore``.
///
/// ``Semaphore(value=1)`` holds ``value`` permits; ``acquire(block=True, timeout=None)``
/// takes one (waiting, interruptibly, while there are none), ``release()`` returns one
/// (any thread or process may). ``get_value()`` reads the count.
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct Semaphore {
    obj: Obj<shmstate::Semaphore>,
}

impl Semaphore {
    pub(crate) fn open(region: &Arc<RegionInner>, name: &str, value: u32) -> PyResult<Self> {
        Ok(Semaphore {
            obj: Obj::get_or_init(region, name, 1, |s: &shmstate::Semaphore| {
                // A fresh semaphore has 0 permits; `release_n` cannot overflow from 0.
                let _ = s.release_n(value);
            })?,
        })
    }

    fn release_inner(&self) -> PyResult<()> {
        self.obj
            .get()
            .release()
            .map_err(|e| PyOverflowError::new_err(e.to_string()))
    }
}

semaphore_methods!(Semaphore, "Semaphore");

/// A semaphore that refuses to be released above its initial value:
/// ``multiprocessing.BoundedSemaphore``.
///
/// As :class:`Semaphore`; ``release()`` past the initial value raises ``ValueError``.
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct BoundedSemaphore {
    obj: Obj<shmstate::BoundedSemaphore>,
}

impl BoundedSemaphore {
    pub(crate) fn open(region: &Arc<RegionInner>, name: &str, value: u32) -> PyResult<Self> {
        Ok(BoundedSemaphore {
            obj: Obj::get_or_init(region, name, 1, |s: &shmstate::BoundedSemaphore| {
                s.init(value)
            })?,
        })
    }

    fn release_inner(&self) -> PyResult<()> {
        self.obj.get().release().map_err(|e| {
            PyValueError::new_err(format!("semaphore or lock released too many times ({e})"))
        })
    }
}

semaphore_methods!(BoundedSemaphore, "BoundedSemaphore");

/// A flag that processes wait for: ``multiprocessing.Event``.
///
/// ``set()`` sets it and wakes every waiter, ``clear()`` resets it, ``is_set()`` reads it,
/// ``wait(timeout=None)`` waits (interruptibly) until it is set and returns whether it is.
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct Event {
    obj: Obj<shmstate::Event>,
}

impl Event {
    pub(crate) fn open(region: &Arc<RegionInner>, name: &str) -> PyResult<Self> {
        Ok(Event {
            obj: Obj::get_or_init(region, name, 1, |_: &shmstate::Event| {})?,
        })
    }
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "()")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "Event", args, kwargs)?;
        let this = placed.get();
        Ok(Event {
            obj: this.obj.clone(),
        })
    }
    /// Whether the flag is set.
    fn is_set(&self) -> bool {
        self.obj.get().is_set()
    }

    /// Set the flag and wake every waiter.
    fn set(&self) {
        self.obj.get().set()
    }

    /// Reset the flag.
    fn clear(&self) {
        self.obj.get().clear()
    }

    /// wait(timeout=None) -> bool
    ///
    /// Wait until the flag is set (at most ``timeout`` seconds if given); returns whether
    /// it is set.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let e = self.obj.get();
        if e.is_set() {
            return Ok(true);
        }
        Ok(interruptible(py, deadline(timeout)?, |slice| e.wait_timeout(slice).ok())?.is_some())
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        reduce(py, "Event", &self.obj, vec![])
    }

    fn __repr__(&self) -> String {
        let state = if self.is_set() { "set" } else { "unset" };
        format!("<shmstate.Event {:?} {state}>", self.obj.name())
    }
}
