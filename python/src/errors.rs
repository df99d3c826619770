//! The package's exceptions, and the crate's errors as Python exceptions.

use pyo3::exceptions::{
    PyKeyError, PyOSError, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use shmstate::{CreateError, GetError, OpenError, OpenOrCreateError, RemoveObjectError};

pyo3::create_exception!(
    _shmstate,
    OwnerDiedError,
    PyRuntimeError,
    "The previous holder of a lock died holding it.\n\n\
     Raised by ``acquire()`` (and so by ``with lock:``) when the process or thread that \
     held the lock exited or was killed without releasing it. ``acquire()`` leaves the \
     caller holding the lock; ``with lock:`` releases it before raising. The data the \
     lock protects may be half-updated: repair it while holding the lock, then call \
     ``lock.mark_consistent()``. Until someone does, every acquisition raises this error."
);

pyo3::create_exception!(
    _shmstate,
    RegionError,
    PyOSError,
    "A region file could not be created or opened, or an object in it could not be \
     created or opened (another type or length under that name, a bad name, ...)."
);

pyo3::create_exception!(
    _shmstate,
    RegionFullError,
    RegionError,
    "The region has no room (or no directory entry) left for another object."
);

pyo3::create_exception!(
    _shmstate,
    ObjectInUseError,
    RegionError,
    "An object could not be removed: live processes may hold references to it.\n\n\
     Raised by ``Region.remove()`` and ``Region.remove_object()``. ``pids`` lists the \
     live processes (each once) with a handle on the region that asked for the object, \
     ``name`` is the object's name. Each must drop its ``Region`` and every object made \
     from it (or exit) first; this process's own pid is listed while it keeps one. \
     Nothing was changed."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("OwnerDiedError", py.get_type::<OwnerDiedError>())?;
    m.add("RegionError", py.get_type::<RegionError>())?;
    m.add("RegionFullError", py.get_type::<RegionFullError>())?;
    m.add("ObjectInUseError", py.get_type::<ObjectInUseError>())?;
    Ok(())
}

/// A failed `get*` on a region.
pub(crate) fn get_error(name: &str, e: GetError) -> PyErr {
    match e {
        GetError::RegionFull { .. } | GetError::DirectoryFull { .. } => {
            RegionFullError::new_err(format!("object {name:?}: {e}"))
        }
        GetError::TypeMismatch { .. } | GetError::SizeMismatch { .. } => {
            PyTypeError::new_err(format!("object {name:?}: {e}"))
        }
        GetError::InvalidName { .. } | GetError::InvalidLength { .. } => {
            PyValueError::new_err(format!("object {name:?}: {e}"))
        }
        e => RegionError::new_err(format!("object {name:?}: {e}")),
    }
}

pub(crate) fn open_error(path: &str, e: OpenError) -> PyErr {
    RegionError::new_err(format!("{path}: {e}"))
}

pub(crate) fn create_error(path: &str, e: CreateError) -> PyErr {
    RegionError::new_err(format!("{path}: {e}"))
}

pub(crate) fn open_or_create_error(path: &str, e: OpenOrCreateError) -> PyErr {
    RegionError::new_err(format!("{path}: {e}"))
}

/// A failed removal of object `name` of the region at `path`: `KeyError(name)` if there
/// is none (as `del d[key]`), `ObjectInUseError` with `pids` and `name`, `ValueError` for
/// a bad name, `TimeoutError`, and `RegionError` for the rest (a region that cannot be
/// opened, one that had unlisted users, a corrupt directory).
pub(crate) fn remove_object_error(
    py: Python<'_>,
    path: &str,
    name: &str,
    e: RemoveObjectError,
) -> PyErr {
    match e {
        RemoveObjectError::NotFound { .. } => PyKeyError::new_err(name.to_owned()),
        RemoveObjectError::InUse { ref pids, .. } => {
            let err = ObjectInUseError::new_err(format!("{path}: {e}"));
            let value = err.value(py);
            if let Err(set) = value
                .setattr("pids", pids.clone())
                .and_then(|()| value.setattr("name", name))
            {
                return set;
            }
            err
        }
        RemoveObjectError::InvalidName { .. } => {
            PyValueError::new_err(format!("object {name:?}: {e}"))
        }
        RemoveObjectError::Timeout => PyTimeoutError::new_err(format!(
            "{path}: object {name:?}: timed out waiting for another process creating or \
             removing it"
        )),
        RemoveObjectError::Open(e) => open_error(path, e),
        e => RegionError::new_err(format!("{path}: object {name:?}: {e}")),
    }
}
