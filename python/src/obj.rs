//! [`Obj`]: a shared object in a region, kept alive with its region.

use std::ptr::NonNull;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use shmstate::Shared;

use crate::errors;

/// A region's mapping and where it lives.
pub(crate) struct RegionInner {
    pub(crate) region: shmstate::Region,
    /// The file, or `None` for an anonymous region (inherited across `fork` only).
    pub(crate) path: Option<String>,
}

/// One object of type `T` in a region: the region (kept mapped as long as any object in
/// it lives) and the object's address in the mapping.
pub(crate) struct Obj<T: ?Sized> {
    region: Arc<RegionInner>,
    ptr: NonNull<T>,
    name: String,
}

impl<T: ?Sized> Clone for Obj<T> {
    fn clone(&self) -> Self {
        Obj {
            region: self.region.clone(),
            ptr: self.ptr,
            name: self.name.clone(),
        }
    }
}

// SAFETY: `ptr` points into the mapping that `region` keeps alive; `T` is a shared
// type, made of atomics and meant to be used from any number of threads (`T: Sync`), so
// handing `&T` to another thread is sound, and so is moving the handle (`Arc` is Send).
unsafe impl<T: ?Sized + Sync> Send for Obj<T> {}
// SAFETY: as above: every access is `&T`, and `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for Obj<T> {}

impl<T: ?Sized + Shared> Obj<T> {
    /// The object `name` of `len` elements, created by `init` (by exactly one process) if
    /// it does not exist yet.
    pub(crate) fn get_or_init(
        region: &Arc<RegionInner>,
        name: &str,
        len: usize,
        init: impl FnOnce(&T),
    ) -> PyResult<Self> {
        let r = region
            .region
            .get_or_init_with_len::<T>(name, len, init)
            .map_err(|e| errors::get_error(name, e))?;
        Ok(Obj {
            region: region.clone(),
            ptr: NonNull::from(r),
            name: name.to_owned(),
        })
    }
}

impl<T: ?Sized> Obj<T> {
    /// The object `name` as `open` finds or creates it in the region (for types with
    /// their own constructor on `Region`, such as the channel).
    pub(crate) fn get_or_init_with<'r, E>(
        region: &'r Arc<RegionInner>,
        name: &str,
        open: impl FnOnce(&'r shmstate::Region) -> Result<&'r T, E>,
    ) -> Result<Self, E>
    where
        T: 'r,
    {
        let r = open(&region.region)?;
        Ok(Obj {
            region: region.clone(),
            ptr: NonNull::from(r),
            name: name.to_owned(),
        })
    }

    /// The object `obj` named `name`, which the region placed (a reference into
    /// `region`'s mapping).
    pub(crate) fn from_ref(region: &Arc<RegionInner>, obj: &T, name: &str) -> Self {
        Obj {
            region: region.clone(),
            ptr: NonNull::from(obj),
            name: name.to_owned(),
        }
    }

    /// The object.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `ptr` came from a `&T` the region handed out, valid as long as the
        // region's mapping, which `self.region` keeps alive for as long as `self` lives;
        // only shared references are ever made from it.
        unsafe { self.ptr.as_ref() }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The region's path, for pickling: an anonymous region cannot be named to another
    /// process.
    pub(crate) fn path_for_pickle(&self) -> PyResult<&str> {
        self.region.path.as_deref().ok_or_else(|| {
            PyValueError::new_err(
                "an object in an anonymous region cannot be pickled: only fork children \
                 inherit it (create it in a region with a path)",
            )
        })
    }
}

/// `(shmstate._reduce.rebuild, (kind, path, name, *extra))`: what `__reduce__` returns.
pub(crate) fn reduce<'py, T: ?Sized>(
    py: Python<'py>,
    kind: &str,
    obj: &Obj<T>,
    extra: Vec<PyObject>,
) -> PyResult<(PyObject, PyObject)> {
    let rebuild = py.import("shmstate._reduce")?.getattr("rebuild")?;
    let mut args: Vec<PyObject> = vec![
        kind.into_pyobject(py)?.into_any().unbind(),
        obj.path_for_pickle()?
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        obj.name().into_pyobject(py)?.into_any().unbind(),
    ];
    args.extend(extra);
    let tuple = pyo3::types::PyTuple::new(py, args)?;
    Ok((rebuild.unbind(), tuple.into_any().unbind()))
}

/// `shmstate._region.new_object(kind, *args, **kwargs)`: a new object of class `T` in
/// the process's default region (what `shmstate.Lock()` and the other constructors do).
pub(crate) fn new_in_default_region<'py, T: pyo3::PyClass>(
    py: Python<'py>,
    kind: &str,
    args: &Bound<'py, pyo3::types::PyTuple>,
    kwargs: Option<&Bound<'py, pyo3::types::PyDict>>,
) -> PyResult<Bound<'py, T>> {
    let new_object = py.import("shmstate._region")?.getattr("new_object")?;
    let mut all = vec![kind.into_pyobject(py)?.into_any()];
    all.extend(args.iter());
    let all = pyo3::types::PyTuple::new(py, all)?;
    Ok(new_object.call(all, kwargs)?.downcast_into::<T>()?)
}
