//! `Array`: a fixed-length array of atomic numbers (bools, bytes or wide characters) in a
//! region, with an optional lock (its own `RLock`, or a `Lock` or `RLock` given as `lock=`).
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
use pyo3::types::{PyBytes, PyList, PyMemoryView, PySlice, PySliceMethods};
use shmstate::sync::Ordering::{Relaxed, SeqCst};
use shmstate::{ValueArray as VA, ValueType};

use crate::lock::SideLock;
use crate::obj::{Obj, RegionInner, reduce};
use crate::typecode::{Char, Codec, WChar, cell_enum, dispatch, dispatch_num, open_by_code};

cell_enum!(ArrayCell, VA);

/// A fixed-length array of numbers shared between processes: ``multiprocessing.Array``.
///
/// ``Array(typecode_or_type, size_or_initializer, *, lock=True)``: the typecodes of
/// :class:`Value`; a size makes that many zeros, an iterable gives the elements. The
/// array lives in the process's default region (``Region.Array`` names it in a region
/// file of your own) and pickles as a reference to it. Supports ``len(a)``, ``a[i]``, ``a[i] = x``,
/// slices (``a[2:5]``, ``a[:]``, ``a[::2] = [...]``, same length only) and iteration.
///
/// Character arrays, as ctypes' and multiprocessing's: a ``'c'`` array's items are
/// ``bytes`` of length 1 and its slices ``bytes`` (``Array('c', b'hello')``,
/// ``Array('c', 10)``); a ``'u'`` array's items are ``str`` of length 1 and its slices
/// ``str`` (``Array('u', 'hello')``). Both have ``.value``: the characters up to the first
/// NUL; setting it (a ``bytes`` / a ``str``, ``ValueError`` if longer than the array)
/// writes them and a NUL after them if there is room. A ``'c'`` array also has ``.raw``:
/// all its bytes; setting it (any bytes-like object, ``ValueError`` if longer) writes
/// them and nothing else. With a lock, ``.value`` and ``.raw`` take it, as slices do.
///
/// ``lock=`` is as :class:`Value`'s: ``True`` (an ``RLock`` of its own), ``False``, or
/// an existing :class:`Lock` or :class:`RLock` that ``get_lock()`` then returns and the
/// accessors take (a :class:`Lock` the calling thread holds already is not taken again).
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
    lock: Option<SideLock>,
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
        lock: Option<SideLock>,
    ) -> PyResult<Self> {
        let cell = open_by_code!(ArrayCell, code, T, K => {
            let xs: Option<Vec<T>> = init.map(|o| K::seq_from_py(o)).transpose()?;
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
            Some(l) => l.with(py, f),
        }
    }

    /// The `n` elements from `start` by `step` (in bounds: a slice's `indices`), read
    /// under the lock.
    fn load_slice<T: ValueType>(
        &self,
        py: Python<'_>,
        a: &VA<T>,
        start: isize,
        step: isize,
        n: usize,
    ) -> PyResult<Vec<T>> {
        self.locked(py, || {
            Ok((0..n)
                .map(|k| {
                    // SeqCst, as every access of the bindings (the lock orders these
                    // loads after the writes of earlier critical sections).
                    a.load((start + k as isize * step) as usize, SeqCst)
                })
                .collect())
        })
    }

    /// The slice as Python wants it: a list of numbers, `bytes` for `'c'`, `str` for
    /// `'u'`.
    fn read(&self, py: Python<'_>, start: isize, step: isize, n: usize) -> PyResult<PyObject> {
        dispatch!(ArrayCell, &self.cell, c, T, K => {
            let xs: Vec<T> = self.load_slice(py, c.get(), start, step, n)?;
            K::seq_to_py(py, xs)
        })
    }

    /// Writes `xs` from index 0 under the lock, and a NUL after them if there is room
    /// (`.value = ...` of a character array; `xs` is no longer than the array).
    fn store_prefix<T: ValueType>(
        &self,
        py: Python<'_>,
        a: &VA<T>,
        xs: &[T],
        nul: bool,
    ) -> PyResult<()> {
        self.locked(py, || {
            // SeqCst, as every access of the bindings (the lock's release publishes
            // them to the next critical section).
            for (i, &x) in xs.iter().enumerate() {
                a.store(i, x, SeqCst);
            }
            if nul && xs.len() < self.len {
                a.store(xs.len(), T::default(), SeqCst);
            }
            Ok(())
        })
    }

    fn obj_name(&self) -> &str {
        dispatch!(ArrayCell, &self.cell, c, T, K => c.name())
    }
}

/// The characters up to the first NUL (all of them if there is none).
fn up_to_nul<T: Copy + Default + PartialEq>(mut xs: Vec<T>) -> Vec<T> {
    if let Some(end) = xs.iter().position(|&x| x == T::default()) {
        xs.truncate(end);
    }
    xs
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
        dispatch!(ArrayCell, &self.cell, c, T, K => K::to_py(py, c.get().load(i, SeqCst)))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if let Ok(s) = key.downcast::<PySlice>() {
            let ind = s.indices(self.len as isize)?;
            return dispatch!(ArrayCell, &self.cell, c, T, K => {
                let xs: Vec<T> = K::seq_from_py(value)?;
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
        dispatch!(ArrayCell, &self.cell, c, T, K => {
            let x: T = K::from_py(value)?;
            self.locked(py, || {
                c.get().store(i, x, SeqCst);
                Ok(())
            })
        })
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<PyObject> {
        // The items (a 'c' array's are 1-byte `bytes`, not the ints of its slice).
        let items = dispatch!(ArrayCell, &self.cell, c, T, K => {
            let xs: Vec<T> = self.load_slice(py, c.get(), 0, 1, self.len)?;
            let items = xs.into_iter().map(|x| K::to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?
        });
        Ok(items.try_iter()?.into_any().unbind())
    }

    /// A character array's characters up to the first NUL (``bytes`` for ``'c'``,
    /// ``str`` for ``'u'``), as ctypes' ``.value``; settable (``ValueError`` if longer
    /// than the array; a NUL follows if there is room).
    #[getter]
    fn get_value(&self, py: Python<'_>) -> PyResult<PyObject> {
        match &self.cell {
            ArrayCell::Char(c) => {
                let xs = self.load_slice(py, c.get(), 0, 1, self.len)?;
                Char::seq_to_py(py, up_to_nul(xs))
            }
            ArrayCell::WChar(c) => {
                let xs = self.load_slice(py, c.get(), 0, 1, self.len)?;
                WChar::seq_to_py(py, up_to_nul(xs))
            }
            _ => Err(no_text_attr("value", self.code)),
        }
    }

    #[setter]
    fn set_value(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        match &self.cell {
            ArrayCell::Char(c) => {
                // As ctypes: exactly `bytes` (not a bytearray).
                let b = value.downcast::<PyBytes>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "bytes expected instead of {} instance",
                        type_name(value)
                    ))
                })?;
                let b = b.as_bytes();
                if b.len() > self.len {
                    return Err(PyValueError::new_err("byte string too long"));
                }
                self.store_prefix(py, c.get(), b, true)
            }
            ArrayCell::WChar(c) => {
                let xs = crate::typecode::wide_value(value)?;
                if xs.len() > self.len {
                    return Err(PyValueError::new_err("string too long"));
                }
                self.store_prefix(py, c.get(), &xs, true)
            }
            _ => Err(no_text_attr("value", self.code)),
        }
    }

    /// A ``'c'`` array's bytes, all of them (ctypes' ``.raw``); settable from any
    /// bytes-like object no longer than the array (only its bytes are written).
    #[getter]
    fn get_raw(&self, py: Python<'_>) -> PyResult<PyObject> {
        match &self.cell {
            ArrayCell::Char(c) => {
                let xs = self.load_slice(py, c.get(), 0, 1, self.len)?;
                Char::seq_to_py(py, xs)
            }
            _ => Err(no_text_attr("raw", self.code)),
        }
    }

    #[setter]
    fn set_raw(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let ArrayCell::Char(c) = &self.cell else {
            return Err(no_text_attr("raw", self.code));
        };
        if value.is_instance_of::<pyo3::types::PyString>() {
            // memoryview's own message for a str.
            return Err(PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{}'",
                type_name(value)
            )));
        }
        // A private copy of the caller's buffer (whatever its kind), then the writes.
        let view = PyMemoryView::from(value)?;
        let bytes = view.call_method0("tobytes")?;
        let b = bytes.downcast::<PyBytes>()?.as_bytes();
        if b.len() > self.len {
            return Err(PyValueError::new_err("byte string too long"));
        }
        self.store_prefix(py, c.get(), b, false)
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

    /// get_lock() -> RLock or Lock
    ///
    /// The lock that slice reads and writes take, for compound operations: the array's
    /// own ``RLock``, or the lock given as ``lock=``.
    fn get_lock(&self, py: Python<'_>) -> PyResult<PyObject> {
        self.lock.as_ref().map(|l| l.object(py)).ok_or_else(|| {
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

    /// The typecode (``'i'``, ``'d'``, ``'c'``, ...).
    #[getter]
    fn typecode(&self) -> char {
        self.code
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        // The lock travels as itself, as a Value's.
        let lock = match &self.lock {
            None => false.into_py_any(py)?,
            Some(l) => l.object(py),
        };
        let extra = vec![self.code.into_py_any(py)?, self.len.into_py_any(py)?, lock];
        dispatch!(ArrayCell, &self.cell, c, T, K => reduce(py, "Array", c, extra))
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

/// `AttributeError` for `.value` / `.raw` of an array that is not of characters.
fn no_text_attr(attr: &str, code: char) -> PyErr {
    let which = if attr == "raw" {
        "a 'c'"
    } else {
        "a 'c' or 'u'"
    };
    PyAttributeError::new_err(format!(
        "a {code:?} Array has no .{attr} (only {which} Array has, as ctypes' character arrays)"
    ))
}

/// The name of `o`'s type, for messages.
fn type_name(o: &Bound<'_, PyAny>) -> String {
    o.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}
