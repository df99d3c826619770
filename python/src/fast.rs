//! The calls of an inner loop, as plain CPython methods.
//!
//! The wrapper PyO3 generates around a method costs more than most of this package's
//! operations: its trampoline (the GIL count in a thread-local, the deferred reference
//! pool, a panic guard), the check of `self`'s type through the lazy type object, and the
//! extraction of the arguments take about 180 instructions per call, where an uncontended
//! lock acquisition is about 20. So `multiprocessing`'s C `Lock` (an Argument Clinic
//! method) was faster than the crate's lock behind PyO3's wrapper.
//!
//! For the calls a program makes in its inner loop (`acquire`/`release` and `with` on a
//! `Lock` or an `RLock`; a `Value`'s `value`, `add` and `sub`), [`install`] puts a CPython
//! method descriptor (or get-set descriptor) over PyO3's on the class. The descriptor is
//! called by CPython's vectorcall with `self` already type-checked (a method descriptor
//! checks that `self` is an instance of its class before it calls the function), and
//! does the common case itself: no arguments, or the one positional argument the fast
//! path understands. Anything else (keywords, a timeout, a contended lock) calls the
//! PyO3 method the descriptor replaced, which is kept (in [`Slow`]) with its argument
//! parsing and error messages: the two paths cannot disagree about a call the fast path
//! does not handle.
//!
//! A fast method never lets a panic unwind into the interpreter: its body runs under
//! `catch_unwind`, and a panic raises `SystemError`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};

use pyo3::exceptions::PySystemError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyTuple};

use crate::lock::{Lock, RLock};
use crate::value::Value;

/// The PyO3 method a fast method replaced, called for every case the fast path does not
/// handle.
type Slow = GILOnceCell<Py<PyAny>>;

static LOCK_ACQUIRE: Slow = GILOnceCell::new();
static RLOCK_ACQUIRE: Slow = GILOnceCell::new();

/// What a fast body returns: a new reference, or an error to raise.
type Ret = PyResult<*mut ffi::PyObject>;

/// A new reference to `None`.
fn none() -> *mut ffi::PyObject {
    // SAFETY: `Py_None` is the interpreter's immortal singleton; the caller holds the
    // GIL (every function here is called by the interpreter with it).
    unsafe {
        let o = ffi::Py_None();
        ffi::Py_IncRef(o);
        o
    }
}

/// A new reference to `True` or `False`.
fn boolean(b: bool) -> *mut ffi::PyObject {
    // SAFETY: as in `none`: interpreter singletons, GIL held.
    unsafe {
        let o = if b { ffi::Py_True() } else { ffi::Py_False() };
        ffi::Py_IncRef(o);
        o
    }
}

/// Runs `body` with the GIL token and `self` as a `T`, turning its result (or a panic)
/// into what CPython expects: a new reference, or NULL with an exception set.
///
/// # Safety
///
/// The interpreter calls with the GIL held, and `slf` is an instance of `T`'s class (a
/// method or get-set descriptor checks `self`'s type before it calls; `install` only
/// puts a function of `T` on `T`'s class).
unsafe fn run<T, F>(slf: *mut ffi::PyObject, body: F) -> *mut ffi::PyObject
where
    T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync,
    F: FnOnce(Python<'_>, &Bound<'_, T>) -> Ret,
{
    // SAFETY: the caller guarantees the GIL is held.
    let py = unsafe { Python::assume_gil_acquired() };
    // SAFETY: `slf` is a live object, borrowed from the caller for the call (no reference
    // count change needed), of `T`'s class (the caller's guarantee), so the unchecked
    // downcast is sound.
    let any = unsafe { pyo3::Borrowed::from_ptr(py, slf) };
    // SAFETY: as above.
    let this = unsafe { any.downcast_unchecked::<T>() };
    let result = catch_unwind(AssertUnwindSafe(|| body(py, this)));
    match result {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            e.restore(py);
            ptr::null_mut()
        }
        Err(_) => {
            PySystemError::new_err("shmstate: a fast method panicked").restore(py);
            ptr::null_mut()
        }
    }
}

/// Calls the PyO3 method `slow` replaced, with the arguments of a vectorcall.
///
/// # Safety
///
/// `args` points to `nargs` positional arguments followed by one value per name in
/// `kwnames` (a tuple of strings, or NULL), all live for the call: what CPython passes a
/// `METH_FASTCALL | METH_KEYWORDS` function.
unsafe fn slow_call(
    py: Python<'_>,
    slow: &Slow,
    slf: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargs: usize,
    kwnames: *mut ffi::PyObject,
) -> Ret {
    let method = slow
        .get(py)
        .ok_or_else(|| PySystemError::new_err("shmstate: a fast method was not installed"))?;
    let arg = |i: usize| {
        // SAFETY: the caller guarantees `args` holds `nargs` live positional arguments and
        // then one live value per keyword name; `i` is below that total.
        unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) }
    };
    let mut positional = Vec::with_capacity(nargs + 1);
    positional.push(slf.clone());
    positional.extend((0..nargs).map(arg));
    let kwargs = match NonNull::new(kwnames) {
        None => None,
        Some(names) => {
            // SAFETY: a live tuple of names, borrowed for the call (the caller's guarantee).
            let names = unsafe { Bound::from_borrowed_ptr(py, names.as_ptr()) };
            let dict = PyDict::new(py);
            for (j, name) in names.try_iter()?.enumerate() {
                dict.set_item(name?, arg(nargs + j))?;
            }
            Some(dict)
        }
    };
    Ok(method
        .bind(py)
        .call(PyTuple::new(py, positional)?, kwargs.as_ref())?
        .into_ptr())
}

/// The positional argument count of a vectorcall (the offset flag masked off; CPython
/// passes method descriptors' functions the bare count, but the mask costs nothing).
fn nargs(nargsf: ffi::Py_ssize_t) -> usize {
    (nargsf as usize) & !(1usize << (usize::BITS - 1))
}

/// Whether `arg` is exactly `True` or `False` (the fast path's `block`).
///
/// # Safety
///
/// The GIL is held.
unsafe fn is_bool(arg: *mut ffi::PyObject) -> bool {
    // SAFETY: reading the interpreter's singletons (GIL held).
    unsafe { arg == ffi::Py_True() || arg == ffi::Py_False() }
}

/// `acquire([block])` of a lock: the fast path's decision.
///
/// # Safety
///
/// As for [`slow_call`].
unsafe fn acquire_fast<T>(
    py: Python<'_>,
    this: &Bound<'_, T>,
    slow: &Slow,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    try_acquire: impl FnOnce(&T) -> Option<PyResult<bool>>,
) -> Ret
where
    T: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync,
{
    let n = nargs(nargsf);
    // The fast path takes `acquire()` and `acquire(True)` / `acquire(False)`.
    // SAFETY: with one positional argument, `args[0]` is it (the caller's guarantee).
    let fast = kwnames.is_null() && (n == 0 || (n == 1 && unsafe { is_bool(*args) }));
    if fast {
        // Held (`None`): the full method (a non-blocking call probes whether the holder
        // died; a blocking one waits in slices with the GIL released, interruptibly).
        if let Some(got) = try_acquire(this.get()) {
            return got.map(boolean);
        }
    }
    // SAFETY: passed through from the caller.
    unsafe { slow_call(py, slow, this.as_any(), args, n, kwnames) }
}

/// What the lock methods below need of a lock class.
trait FastLock: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    /// The PyO3 `acquire` the fast one replaced.
    const SLOW: &'static Slow;
    /// `acquire(False)` without a probe: `None` if another thread holds the lock.
    fn try_acquire(&self) -> Option<PyResult<bool>>;
    fn release(&self) -> PyResult<()>;
    fn enter(&self, py: Python<'_>) -> PyResult<bool>;
}

impl FastLock for Lock {
    const SLOW: &'static Slow = &LOCK_ACQUIRE;
    fn try_acquire(&self) -> Option<PyResult<bool>> {
        Lock::try_acquire(self)
    }
    fn release(&self) -> PyResult<()> {
        Lock::release(self)
    }
    fn enter(&self, py: Python<'_>) -> PyResult<bool> {
        Lock::enter(self, py)
    }
}

impl FastLock for RLock {
    const SLOW: &'static Slow = &RLOCK_ACQUIRE;
    fn try_acquire(&self) -> Option<PyResult<bool>> {
        RLock::try_acquire(self)
    }
    fn release(&self) -> PyResult<()> {
        RLock::release(self)
    }
    fn enter(&self, py: Python<'_>) -> PyResult<bool> {
        RLock::enter(self, py)
    }
}

unsafe extern "C" fn acquire<T: FastLock>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by the interpreter through a `METH_FASTCALL | METH_KEYWORDS` method
    // descriptor of `T`'s class (`install`), with the GIL held and a vectorcall's
    // arguments.
    unsafe {
        run::<T, _>(slf, |py, this| {
            acquire_fast(py, this, T::SLOW, args, nargsf, kwnames, T::try_acquire)
        })
    }
}

unsafe extern "C" fn release<T: FastLock>(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called through a `METH_NOARGS` method descriptor of `T`'s class.
    unsafe { run::<T, _>(slf, |_, this| this.get().release().map(|()| none())) }
}

unsafe extern "C" fn enter<T: FastLock>(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called through a `METH_NOARGS` method descriptor of `T`'s class.
    unsafe { run::<T, _>(slf, |py, this| this.get().enter(py).map(boolean)) }
}

/// `__exit__(*exc_info)`: releases; its arguments are not looked at (as PyO3's method).
unsafe extern "C" fn exit<T: FastLock>(
    slf: *mut ffi::PyObject,
    _: *const *mut ffi::PyObject,
    _: ffi::Py_ssize_t,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called through a method descriptor of `T`'s class.
    unsafe { run::<T, _>(slf, |_, this| this.get().release().map(|()| boolean(false))) }
}

unsafe extern "C" fn value_add(
    slf: *mut ffi::PyObject,
    n: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called through a `METH_O` method descriptor of `Value`'s class; `n` is a
    // live argument borrowed for the call.
    unsafe {
        run::<Value, _>(slf, |py, this| {
            this.get()
                .add_by(&Bound::from_borrowed_ptr(py, n), false)
                .map(|()| none())
        })
    }
}

unsafe extern "C" fn value_sub(
    slf: *mut ffi::PyObject,
    n: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as in `value_add`.
    unsafe {
        run::<Value, _>(slf, |py, this| {
            this.get()
                .add_by(&Bound::from_borrowed_ptr(py, n), true)
                .map(|()| none())
        })
    }
}

unsafe extern "C" fn value_get(
    slf: *mut ffi::PyObject,
    _: *mut std::ffi::c_void,
) -> *mut ffi::PyObject {
    // SAFETY: called through a get-set descriptor of `Value`'s class.
    unsafe { run::<Value, _>(slf, |py, this| Ok(this.get().load(py)?.into_ptr())) }
}

unsafe extern "C" fn value_set(
    slf: *mut ffi::PyObject,
    x: *mut ffi::PyObject,
    _: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    // SAFETY: called through a get-set descriptor of `Value`'s class; `x` is the new value
    // (borrowed), or NULL for `del v.value`.
    let r = unsafe {
        run::<Value, _>(slf, |py, this| {
            if x.is_null() {
                return Err(pyo3::exceptions::PyAttributeError::new_err(
                    "a Value's value cannot be deleted",
                ));
            }
            this.get().store(py, &Bound::from_borrowed_ptr(py, x))?;
            Ok(none())
        })
    };
    if r.is_null() {
        -1
    } else {
        // SAFETY: `r` is the new reference to `None` made above.
        unsafe { ffi::Py_DecRef(r) };
        0
    }
}

/// A method entry; the table lives for the interpreter's life (a `static`), as CPython
/// requires of the `PyMethodDef` a descriptor points to.
struct Def(ffi::PyMethodDef);
// SAFETY: the entries are immutable after construction (CPython only reads them) and
// hold pointers to static strings and functions.
unsafe impl Sync for Def {}

macro_rules! def {
    ($name:literal, $kind:ident : $f:expr, $flags:expr, $doc:literal) => {
        Def(ffi::PyMethodDef {
            ml_name: $name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { $kind: $f },
            ml_flags: $flags,
            ml_doc: $doc.as_ptr(),
        })
    };
}

const FASTCALL: std::ffi::c_int = ffi::METH_FASTCALL | ffi::METH_KEYWORDS;

static LOCK_DEFS: [Def; 4] = [
    def!(c"acquire", PyCFunctionFastWithKeywords: acquire::<Lock>, FASTCALL,
        c"acquire($self, /, block=True, timeout=None)\n--\n\nAcquire the lock; see the class docs for ``block``, ``timeout`` and :class:`OwnerDiedError`."),
    def!(c"release", PyCFunction: release::<Lock>, ffi::METH_NOARGS,
        c"release($self, /)\n--\n\nRelease the lock (held by the calling thread)."),
    def!(c"__enter__", PyCFunction: enter::<Lock>, ffi::METH_NOARGS, c"__enter__($self, /)\n--\n\nAcquire (waiting); a dead holder raises OwnerDiedError."),
    def!(c"__exit__", PyCFunctionFastWithKeywords: exit::<Lock>, FASTCALL, c"__exit__($self, /, *exc_info)\n--\n\nRelease."),
];

static RLOCK_DEFS: [Def; 4] = [
    def!(c"acquire", PyCFunctionFastWithKeywords: acquire::<RLock>, FASTCALL,
        c"acquire($self, /, block=True, timeout=None)\n--\n\nAcquire the lock (again, if this thread holds it); see the class docs."),
    def!(c"release", PyCFunction: release::<RLock>, ffi::METH_NOARGS,
        c"release($self, /)\n--\n\nUndo one ``acquire`` of the calling thread; the last one releases the lock."),
    def!(c"__enter__", PyCFunction: enter::<RLock>, ffi::METH_NOARGS, c"__enter__($self, /)\n--\n\nAcquire (waiting); a dead holder raises OwnerDiedError."),
    def!(c"__exit__", PyCFunctionFastWithKeywords: exit::<RLock>, FASTCALL, c"__exit__($self, /, *exc_info)\n--\n\nRelease once."),
];

static VALUE_DEFS: [Def; 2] = [
    def!(c"add", PyCFunction: value_add, ffi::METH_O,
        c"add($self, n, /)\n--\n\nAtomically add ``n`` (one instruction; no lock)."),
    def!(c"sub", PyCFunction: value_sub, ffi::METH_O,
        c"sub($self, n, /)\n--\n\nAtomically subtract ``n`` (one instruction; no lock)."),
];

struct GetSet(ffi::PyGetSetDef);
// SAFETY: as for `Def`.
unsafe impl Sync for GetSet {}

static VALUE_GETSET: GetSet = GetSet(ffi::PyGetSetDef {
    name: c"value".as_ptr(),
    get: Some(value_get),
    set: Some(value_set),
    doc: c"The value (under the lock when the Value has one, as multiprocessing's).".as_ptr(),
    closure: ptr::null_mut(),
});

/// Puts `defs` on `T`'s class over PyO3's methods of the same names, keeping the PyO3
/// method named `keep` in `slow`.
fn put<T: pyo3::PyTypeInfo>(
    py: Python<'_>,
    defs: &'static [Def],
    keep: Option<(&str, &Slow)>,
) -> PyResult<()> {
    let ty = py.get_type::<T>();
    if let Some((name, slow)) = keep {
        let original = ty.getattr(name)?.unbind();
        slow.set(py, original)
            .map_err(|_| PySystemError::new_err("shmstate: fast methods installed twice"))?;
    }
    for def in defs {
        // SAFETY: `def` is a `'static` entry (CPython keeps the pointer); the descriptor is
        // made for `T`'s class object; the GIL is held (`py`). `PyDescr_NewMethod` does not
        // write through the pointer (the `*mut` is the C signature's).
        let descr =
            unsafe { ffi::PyDescr_NewMethod(ty.as_type_ptr(), ptr::from_ref(&def.0).cast_mut()) };
        // SAFETY: a new reference, or NULL with an exception set.
        let descr = unsafe { Bound::from_owned_ptr_or_err(py, descr)? };
        // SAFETY: `ml_name` is a static C string.
        let name = unsafe { std::ffi::CStr::from_ptr(def.0.ml_name) };
        ty.setattr(name.to_str()?, descr)?;
    }
    Ok(())
}

/// Installs the fast methods on the module's classes (after they are added).
pub(crate) fn install(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    put::<Lock>(py, &LOCK_DEFS, Some(("acquire", &LOCK_ACQUIRE)))?;
    put::<RLock>(py, &RLOCK_DEFS, Some(("acquire", &RLOCK_ACQUIRE)))?;
    put::<Value>(py, &VALUE_DEFS, None)?;
    let ty = py.get_type::<Value>();
    // SAFETY: as in `put`, for a `'static` get-set entry.
    let descr = unsafe {
        ffi::PyDescr_NewGetSet(ty.as_type_ptr(), ptr::from_ref(&VALUE_GETSET.0).cast_mut())
    };
    // SAFETY: a new reference, or NULL with an exception set.
    let descr = unsafe { Bound::from_owned_ptr_or_err(py, descr)? };
    ty.setattr("value", descr)?;
    Ok(())
}
