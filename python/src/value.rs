//! `Value`: one atomic number (or bool) in a region, with an optional `RLock`.

use std::sync::Arc;

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use shmstate::sync::Ordering::SeqCst;

use crate::lock::RLock;
use crate::obj::{Obj, RegionInner, reduce};
use crate::typecode::{cell_enum, dispatch, dispatch_num, open_by_code};

use shmstate::Value as V;

cell_enum!(ValueCell, V);

/// A number shared between processes: ``multiprocessing.Value``, plus atomic arithmetic.
///
/// ``Value(typecode_or_type, *args, lock=True)``: ``typecode_or_type`` is an ``array``
/// typecode (``'b' 'B' 'h' 'H' 'i' 'I' 'l' 'L' 'q' 'Q' 'f' 'd' '?'``) or a ctypes type
/// (``ctypes.c_int``); the optional argument is the initial value (0 by default). The
/// value lives in the process's default region (``Region.Value`` names it in a region
/// file of your own); it pickles as a reference to it, so it can be passed to processes
/// under every start method. ``.value`` reads and writes it; every access is one atomic
/// instruction, so a read never sees half a write.
///
/// ``v.value += 1`` is a read and a write: two processes doing it at once lose updates.
/// Either hold the lock (``with v.get_lock(): v.value += 1``, as with multiprocessing), or
/// use the atomic methods, each one instruction and never lost:
/// ``add(n)``, ``sub(n)``, ``fetch_add(n)`` / ``fetch_sub(n)`` (return the previous value),
/// ``max(x)`` / ``min(x)`` (store the larger / smaller, return the previous value),
/// ``swap(x)`` and ``compare_exchange(expected, new)``. Integers wrap on overflow as C's
/// do; an argument outside the type's range raises ``OverflowError``.
///
/// The atomic methods do not take the lock: they are atomic with respect to each other,
/// not to a read-modify-write done under ``get_lock()``. Use one or the other for a
/// given value. Setting ``.value`` takes the lock (when there is one), as multiprocessing
/// does; reading it does not need to (the read is one atomic load).
///
/// ``get_lock()`` returns the :class:`RLock` (``lock=True``, the default, makes one;
/// ``lock=False`` has none, and ``get_lock`` raises ``AttributeError``); ``get_obj()``
/// returns the same value without the lock.
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct Value {
    cell: ValueCell,
    code: char,
    lock: Option<Py<RLock>>,
}

impl Value {
    pub(crate) fn open(
        region: &Arc<RegionInner>,
        name: &str,
        code: char,
        init: Option<&Bound<'_, PyAny>>,
        lock: Option<Py<RLock>>,
    ) -> PyResult<Self> {
        let cell = open_by_code!(ValueCell, code, T => {
            let x: Option<T> = init.map(|o| o.extract()).transpose()?;
            Obj::get_or_init(region, name, 1, |v: &V<T>| {
                if let Some(x) = x {
                    // SeqCst as every access of the bindings; the region publishes the
                    // initialised object to other processes.
                    v.store(x, SeqCst)
                }
            })?
        });
        Ok(Value { cell, code, lock })
    }

    /// `value` (under the lock if there is one: multiprocessing's synchronized wrapper
    /// takes it too).
    pub(crate) fn load(&self, py: Python<'_>) -> PyResult<PyObject> {
        dispatch!(ValueCell, &self.cell, c, T => c.get().load(SeqCst).into_py_any(py))
    }

    /// `value = x`.
    pub(crate) fn store(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        dispatch!(ValueCell, &self.cell, c, T => {
            let x: T = x.extract()?;
            match &self.lock {
                None => c.get().store(x, SeqCst),
                Some(l) => {
                    let l = l.get();
                    l.lock_for_access(py)?;
                    c.get().store(x, SeqCst);
                    l.release()?;
                }
            }
        });
        Ok(())
    }

    /// `add(n)` (`sub(n)` if `negate`).
    pub(crate) fn add_by(&self, n: &Bound<'_, PyAny>, negate: bool) -> PyResult<()> {
        dispatch_num!(ValueCell, &self.cell, c, T => {
            let n = n.extract::<T>()?;
            if negate {
                c.get().fetch_sub(n, SeqCst);
            } else {
                c.get().fetch_add(n, SeqCst);
            }
        });
        Ok(())
    }

    fn obj_name(&self) -> &str {
        dispatch!(ValueCell, &self.cell, c, T => c.name())
    }
}

#[pymethods]
impl Value {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(typecode_or_type, *args, lock=True)")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "Value", args, kwargs)?;
        let this = placed.get();
        Ok(Value {
            cell: this.cell.clone(),
            code: this.code,
            lock: this.lock.as_ref().map(|l| l.clone_ref(py)),
        })
    }
    /// The value.
    #[getter]
    fn get_value(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.load(py)
    }

    #[setter]
    fn set_value(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        self.store(py, x)
    }

    fn add(&self, n: &Bound<'_, PyAny>) -> PyResult<()> {
        dispatch_num!(ValueCell, &self.cell, c, T => {
            c.get().fetch_add(n.extract::<T>()?, SeqCst);
        });
        Ok(())
    }

    /// sub(n) -> None
    ///
    /// Subtract ``n`` atomically.
    fn sub(&self, n: &Bound<'_, PyAny>) -> PyResult<()> {
        dispatch_num!(ValueCell, &self.cell, c, T => {
            c.get().fetch_sub(n.extract::<T>()?, SeqCst);
        });
        Ok(())
    }

    /// fetch_add(n) -> previous value
    ///
    /// Add ``n`` atomically; return the value before.
    fn fetch_add(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        dispatch_num!(ValueCell, &self.cell, c, T => {
            c.get().fetch_add(n.extract::<T>()?, SeqCst).into_py_any(py)
        })
    }

    /// fetch_sub(n) -> previous value
    ///
    /// Subtract ``n`` atomically; return the value before.
    fn fetch_sub(&self, py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        dispatch_num!(ValueCell, &self.cell, c, T => {
            c.get().fetch_sub(n.extract::<T>()?, SeqCst).into_py_any(py)
        })
    }

    /// max(x) -> previous value
    ///
    /// Store the larger of the value and ``x`` atomically; return the value before.
    fn max(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        dispatch_num!(ValueCell, &self.cell, c, T => {
            c.get().fetch_max(x.extract::<T>()?, SeqCst).into_py_any(py)
        })
    }

    /// min(x) -> previous value
    ///
    /// Store the smaller of the value and ``x`` atomically; return the value before.
    fn min(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        dispatch_num!(ValueCell, &self.cell, c, T => {
            c.get().fetch_min(x.extract::<T>()?, SeqCst).into_py_any(py)
        })
    }

    /// swap(x) -> previous value
    ///
    /// Store ``x`` atomically; return the value before.
    fn swap(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        dispatch!(ValueCell, &self.cell, c, T => {
            c.get().swap(x.extract::<T>()?, SeqCst).into_py_any(py)
        })
    }

    /// compare_exchange(expected, new) -> (bool, previous value)
    ///
    /// Atomically: if the value is ``expected``, store ``new`` and return ``(True,
    /// expected)``; otherwise change nothing and return ``(False, current)``. Floats
    /// compare by their bits.
    fn compare_exchange(
        &self,
        py: Python<'_>,
        expected: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<(bool, PyObject)> {
        dispatch!(ValueCell, &self.cell, c, T => {
            let (e, n): (T, T) = (expected.extract()?, new.extract()?);
            match c.get().compare_exchange(e, n, SeqCst, SeqCst) {
                Ok(prev) => Ok((true, prev.into_py_any(py)?)),
                Err(cur) => Ok((false, cur.into_py_any(py)?)),
            }
        })
    }

    /// get_lock() -> RLock
    ///
    /// The lock that guards compound operations (``with v.get_lock(): v.value += 1``).
    fn get_lock(&self, py: Python<'_>) -> PyResult<Py<RLock>> {
        self.lock.as_ref().map(|l| l.clone_ref(py)).ok_or_else(|| {
            PyAttributeError::new_err("a Value made with lock=False has no get_lock()")
        })
    }

    /// get_obj() -> Value
    ///
    /// The same value without its lock.
    fn get_obj(&self) -> Value {
        Value {
            cell: self.cell.clone(),
            code: self.code,
            lock: None,
        }
    }

    /// The typecode (``'i'``, ``'d'``, ...).
    #[getter]
    fn typecode(&self) -> char {
        self.code
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        let extra = vec![
            self.code.into_py_any(py)?,
            self.lock.is_some().into_py_any(py)?,
        ];
        dispatch!(ValueCell, &self.cell, c, T => reduce(py, "Value", c, extra))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.get_value(py)?;
        Ok(format!(
            "<shmstate.Value {:?} {:?} {}{}>",
            self.obj_name(),
            self.code,
            v.bind(py).repr()?,
            if self.lock.is_some() {
                ""
            } else {
                " lock=False"
            }
        ))
    }
}
