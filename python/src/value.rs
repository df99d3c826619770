//! `Value`: one atomic number (bool, byte or wide character) in a region, with an optional
//! lock (its own `RLock`, or a `Lock` or `RLock` given as `lock=`).

use std::sync::Arc;

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyAttributeError;
use pyo3::prelude::*;
use shmstate::sync::Ordering::SeqCst;

use crate::lock::SideLock;
use crate::obj::{Obj, RegionInner, reduce};
use crate::typecode::{Codec, cell_enum, dispatch, dispatch_num, open_by_code};

use shmstate::Value as V;

cell_enum!(ValueCell, V);

/// A number shared between processes: ``multiprocessing.Value``, plus atomic arithmetic.
///
/// ``Value(typecode_or_type, *args, lock=True)``: ``typecode_or_type`` is an ``array``
/// typecode (``'b' 'B' 'h' 'H' 'i' 'I' 'l' 'L' 'q' 'Q' 'f' 'd' '?'``), ``'c'`` (one
/// byte: ``.value`` is a ``bytes`` of length 1, as ``ctypes.c_char``), ``'u'`` (one wide
/// character: a ``str`` of length 1, as ``ctypes.c_wchar``) or a ctypes type
/// (``ctypes.c_int``, ``ctypes.c_char``); the optional argument is the initial value (0,
/// ``b'\x00'`` or ``'\x00'`` by default). The value lives in the process's default
/// region (``Region.Value`` names it in a region file of your own); it pickles as a
/// reference to it, so it can be passed to processes under every start method. ``.value`` reads and writes it; every access is one atomic
/// instruction, so a read never sees half a write.
///
/// ``v.value += 1`` is a read and a write: two processes doing it at once lose updates.
/// Either hold the lock (``with v.get_lock(): v.value += 1``, as with multiprocessing), or
/// use the atomic methods, each one instruction and never lost:
/// ``add(n)``, ``sub(n)``, ``fetch_add(n)`` / ``fetch_sub(n)`` (return the previous value),
/// ``max(x)`` / ``min(x)`` (store the larger / smaller, return the previous value),
/// ``swap(x)`` and ``compare_exchange(expected, new)``. Integers wrap on overflow as C's
/// do; an argument outside the type's range raises ``OverflowError``. A ``'?'``, ``'c'``
/// or ``'u'`` value has ``swap`` and ``compare_exchange`` but no arithmetic
/// (``TypeError``).
///
/// The atomic methods do not take the lock: they are atomic with respect to each other,
/// not to a read-modify-write done under ``get_lock()``. Use one or the other for a
/// given value. Setting ``.value`` takes the lock (when there is one), as multiprocessing
/// does; reading it does not need to (the read is one atomic load).
///
/// ``lock=True`` (the default, or ``None``) gives the value an :class:`RLock` of its own;
/// ``lock=False`` none (``get_lock`` raises ``AttributeError``); ``lock=`` an existing
/// :class:`Lock` or :class:`RLock` guards the value with that lock, which several values
/// and arrays may share (a lock of another kind, such as a ``multiprocessing.Lock``,
/// cannot be shared through a region: ``TypeError``). ``get_lock()`` returns the lock
/// (the same object: ``v.get_lock() is l``); a pickled value carries a reference to it,
/// so a child's ``get_lock()`` is the same shared lock. ``get_obj()`` returns the same
/// value without the lock.
///
/// On a :class:`Lock`, ``with v.get_lock(): v.value += 1`` works: setting ``.value``
/// takes the lock unless the calling thread holds it already (multiprocessing's accessor
/// would take a ``multiprocessing.Lock`` again and deadlock for ever).
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct Value {
    cell: ValueCell,
    code: char,
    lock: Option<SideLock>,
}

impl Value {
    pub(crate) fn open(
        region: &Arc<RegionInner>,
        name: &str,
        code: char,
        init: Option<&Bound<'_, PyAny>>,
        lock: Option<SideLock>,
    ) -> PyResult<Self> {
        let cell = open_by_code!(ValueCell, code, T, K => {
            let x: Option<T> = init.map(|o| K::from_py(o)).transpose()?;
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

    /// `value`: one atomic load, which needs no lock (a write under the lock is one
    /// atomic store, so the read sees it whole or not at all).
    pub(crate) fn load(&self, py: Python<'_>) -> PyResult<PyObject> {
        dispatch!(ValueCell, &self.cell, c, T, K => K::to_py(py, c.get().load(SeqCst)))
    }

    /// `value = x`.
    pub(crate) fn store(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        dispatch!(ValueCell, &self.cell, c, T, K => {
            let x: T = K::from_py(x)?;
            match &self.lock {
                None => c.get().store(x, SeqCst),
                Some(l) => l.with(py, || {
                    c.get().store(x, SeqCst);
                    Ok(())
                })?,
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
        dispatch!(ValueCell, &self.cell, c, T, K => c.name())
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
        dispatch!(ValueCell, &self.cell, c, T, K => {
            K::to_py(py, c.get().swap(K::from_py(x)?, SeqCst))
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
        dispatch!(ValueCell, &self.cell, c, T, K => {
            let (e, n): (T, T) = (K::from_py(expected)?, K::from_py(new)?);
            match c.get().compare_exchange(e, n, SeqCst, SeqCst) {
                Ok(prev) => Ok((true, K::to_py(py, prev)?)),
                Err(cur) => Ok((false, K::to_py(py, cur)?)),
            }
        })
    }

    /// get_lock() -> RLock or Lock
    ///
    /// The lock that guards compound operations (``with v.get_lock(): v.value += 1``):
    /// the value's own ``RLock``, or the lock given as ``lock=``.
    fn get_lock(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.lock.as_ref().map(|l| l.object(py)).ok_or_else(|| {
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

    /// The typecode (``'i'``, ``'d'``, ``'c'``, ...).
    #[getter]
    fn typecode(&self) -> char {
        self.code
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        // The lock travels as itself (a reference to its region and name), so values
        // that share a lock share it in the receiver too.
        let lock = match &self.lock {
            None => false.into_py_any(py)?,
            Some(l) => l.object(py),
        };
        let extra = vec![self.code.into_py_any(py)?, lock];
        dispatch!(ValueCell, &self.cell, c, T, K => reduce(py, "Value", c, extra))
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
