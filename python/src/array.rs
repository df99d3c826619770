//! `Array`: a fixed-length array of atomic numbers in a region, with an optional `RLock`.
//!
//! Why a `ValueArray` and a lock rather than a `SeqLockArray`: multiprocessing's
//! `Array` promises that whatever is done under `get_lock()` is seen whole by every other
//! access; a seqlock snapshot is consistent with each single write, not with a critical
//! section of several, so it would need the lock as well. Under the lock, a whole-array
//! read (`a[:]`) sees the array between two critical sections; single elements are one
//! atomic word each, so `a[i]` is read without the lock and never torn.

use std::sync::Arc;

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyAttributeError, PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PySlice, PySliceMethods};
use shmstate::ValueArray as VA;
use shmstate::sync::Ordering::{Relaxed, SeqCst};

use crate::lock::RLock;
use crate::obj::{Obj, RegionInner, reduce};
use crate::typecode::{cell_enum, dispatch, dispatch_num, open_by_code};

cell_enum!(ArrayCell, VA);

/// A fixed-length array of numbers shared between processes: ``multiprocessing.Array``.
///
/// ``Array(typecode_or_type, size_or_initializer, *, lock=True)``: the typecodes of
/// :class:`Value`; a size makes that many zeros, an iterable gives the elements. The
/// array lives in the process's default region (``Region.Array`` names it in a region
/// file of your own) and pickles as a reference to it. Supports ``len(a)``, ``a[i]``, ``a[i] = x``,
/// slices (``a[2:5]``, ``a[:]``, ``a[::2] = [...]``, same length only) and iteration.
///
/// With a lock (the default) a slice read or write takes it, so ``a[:]`` is a consistent
/// copy: no write made under the lock shows half done. Single elements are one atomic
/// word each: ``a[i]`` never sees a torn number, and ``add(i, n)`` / ``fetch_add(i, n)``
/// change one element atomically without the lock (not ordered against a critical
/// section under ``get_lock()``: use one or the other for an element).
#[pyclass(module = "shmstate._shmstate", frozen, weakref, sequence)]
pub struct Array {
    cell: ArrayCell,
    code: char,
    len: usize,
    lock: Option<Py<RLock>>,
}

/// Index `i` of a sequence of `len`, negative from the end.
fn index(i: isize, len: usize) -> PyResult<usize> {
    let j = if i < 0 { i + len as isize } else { i };
    if j < 0 || j as usize >= len {
        return Err(PyIndexError::new_err("array index out of range"));
    }
    Ok(j as usize)
}

impl Array {
    pub(crate) fn open(
        region: &Arc<RegionInner>,
        name: &str,
        code: char,
        len: usize,
        init: Option<&Bound<'_, PyAny>>,
        lock: Option<Py<RLock>>,
    ) -> PyResult<Self> {
        let cell = open_by_code!(ArrayCell, code, T => {
            let xs: Option<Vec<T>> = init.map(|o| o.extract()).transpose()?;
            if xs.as_ref().is_some_and(|xs| xs.len() != len) {
                return Err(PyValueError::new_err("initializer length differs from the array's"));
            }
            Obj::get_or_init(region, name, len, |a: &VA<T>| {
                if let Some(xs) = &xs {
                    for (i, &x) in xs.iter().enumerate() {
                        // Relaxed: the region publishes the initialised object.
                        a.store(i, x, Relaxed);
                    }
                }
            })?
        });
        Ok(Array {
            cell,
            code,
            len,
            lock,
        })
    }

    /// Runs `f` under the lock, if there is one.
    fn locked<R>(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        match &self.lock {
            None => f(),
            Some(l) => {
                let l = l.get();
                l.lock_for_access(py)?;
                let r = f();
                l.release()?;
                r
            }
        }
    }

    /// The elements at `indices` as a list, read under the lock.
    fn read(&self, py: Python<'_>, start: isize, step: isize, n: usize) -> PyResult<PyObject> {
        dispatch!(ArrayCell, &self.cell, c, T => {
            let a = c.get();
            let xs: Vec<T> = self.locked(py, || {
                Ok((0..n)
                    .map(|k| {
                        let i = (start + k as isize * step) as usize;
                        // SeqCst, as every access of the bindings (the lock orders
                        // these loads after the writes of earlier critical sections).
                        a.load(i, SeqCst)
                    })
                    .collect())
            })?;
            PyList::new(py, xs)?.into_py_any(py)
        })
    }

    fn obj_name(&self) -> &str {
        dispatch!(ArrayCell, &self.cell, c, T => c.name())
    }
}

#[pymethods]
impl Array {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(typecode_or_type, size_or_initializer, *, lock=True)")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "Array", args, kwargs)?;
        let this = placed.get();
        Ok(Array {
            cell: this.cell.clone(),
            code: this.code,
            len: this.len,
            lock: this.lock.as_ref().map(|l| l.clone_ref(py)),
        })
    }
    fn __len__(&self) -> usize {
        self.len
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        if let Ok(s) = key.downcast::<PySlice>() {
            let ind = s.indices(self.len as isize)?;
            return self.read(py, ind.start, ind.step, ind.slicelength);
        }
        let i = index(key.extract::<isize>()?, self.len)?;
        dispatch!(ArrayCell, &self.cell, c, T => c.get().load(i, SeqCst).into_py_any(py))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if let Ok(s) = key.downcast::<PySlice>() {
            let ind = s.indices(self.len as isize)?;
            return dispatch!(ArrayCell, &self.cell, c, T => {
                let xs: Vec<T> = value.extract().map_err(|_| {
                    PyTypeError::new_err("can only assign a sequence of numbers to a slice")
                })?;
                if xs.len() != ind.slicelength {
                    return Err(PyValueError::new_err(
                        "Can only assign sequence of same size",
                    ));
                }
                let a = c.get();
                self.locked(py, || {
                    for (k, &x) in xs.iter().enumerate() {
                        a.store((ind.start + k as isize * ind.step) as usize, x, SeqCst);
                    }
                    Ok(())
                })
            });
        }
        let i = index(key.extract::<isize>()?, self.len)?;
        dispatch!(ArrayCell, &self.cell, c, T => {
            let x: T = value.extract()?;
            self.locked(py, || {
                c.get().store(i, x, SeqCst);
                Ok(())
            })
        })
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<PyObject> {
        let all = self.read(py, 0, 1, self.len)?;
        Ok(all.bind(py).try_iter()?.into_any().unbind())
    }

    /// add(i, n) -> None
    ///
    /// Add ``n`` to element ``i`` atomically.
    fn add(&self, i: isize, n: &Bound<'_, PyAny>) -> PyResult<()> {
        let i = index(i, self.len)?;
        dispatch_num!(ArrayCell, &self.cell, c, T => {
            c.get().fetch_add(i, n.extract::<T>()?, SeqCst);
        });
        Ok(())
    }

    /// fetch_add(i, n) -> previous value
    ///
    /// Add ``n`` to element ``i`` atomically; return its value before.
    fn fetch_add(&self, py: Python<'_>, i: isize, n: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let i = index(i, self.len)?;
        dispatch_num!(ArrayCell, &self.cell, c, T => {
            c.get().fetch_add(i, n.extract::<T>()?, SeqCst).into_py_any(py)
        })
    }

    /// get_lock() -> RLock
    ///
    /// The lock that slice reads and writes take, for compound operations.
    fn get_lock(&self, py: Python<'_>) -> PyResult<Py<RLock>> {
        self.lock.as_ref().map(|l| l.clone_ref(py)).ok_or_else(|| {
            PyAttributeError::new_err("an Array made with lock=False has no get_lock()")
        })
    }

    /// get_obj() -> Array
    ///
    /// The same array without its lock.
    fn get_obj(&self) -> Array {
        Array {
            cell: self.cell.clone(),
            code: self.code,
            len: self.len,
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
            self.len.into_py_any(py)?,
            self.lock.is_some().into_py_any(py)?,
        ];
        dispatch!(ArrayCell, &self.cell, c, T => reduce(py, "Array", c, extra))
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstate.Array {:?} {:?} len={}{}>",
            self.obj_name(),
            self.code,
            self.len,
            if self.lock.is_some() {
                ""
            } else {
                " lock=False"
            }
        )
    }
}
