//! `Region`: a region file (or anonymous region) and the constructors of its objects.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;
use shmstate::RegionOptions;

use crate::array::Array;
use crate::coord::{BoundedSemaphore, Event, Semaphore};
use crate::counter::Counter;
use crate::errors;
use crate::lock::{Lock, RLock, RLockCell, SideLock};
use crate::obj::RegionInner;
use crate::value::Value;

/// The native region: a mapped file of named objects (see ``shmstate.Region``, the
/// Python class that wraps it).
#[pyclass(name = "RegionCore", module = "shmstate._shmstate", frozen, weakref)]
pub struct Region {
    inner: Arc<RegionInner>,
}

#[pymethods]
impl Region {
    /// RegionCore(path, size, create=True, remove_when_unused=False, capacity=None,
    /// recreate_stale_format=False)
    ///
    /// Opens the region file at ``path``, creating it (``size`` bytes, mode 0600) if
    /// ``create`` and it does not exist. ``remove_when_unused`` (recorded at creation)
    /// removes the file when the last process that has it open closes it or exits.
    /// ``recreate_stale_format`` replaces a file of an older format that no live process
    /// uses with a new, empty region (`RegionOptions::recreate_stale_format`).
    #[new]
    #[pyo3(signature = (
        path,
        size,
        create = true,
        remove_when_unused = false,
        capacity = None,
        recreate_stale_format = false
    ))]
    fn new(
        py: Python<'_>,
        path: String,
        size: u64,
        create: bool,
        remove_when_unused: bool,
        capacity: Option<u32>,
        recreate_stale_format: bool,
    ) -> PyResult<Self> {
        let mut options = RegionOptions::new()
            .remove_when_unused(remove_when_unused)
            .recreate_stale_format(recreate_stale_format);
        if let Some(c) = capacity {
            options = options.capacity(c);
        }
        let region = py.allow_threads(|| {
            if create {
                options
                    .open_or_create(&path, size)
                    .map_err(|e| errors::open_or_create_error(&path, e))
            } else {
                options
                    .open(&path)
                    .map_err(|e| errors::open_error(&path, e))
            }
        })?;
        Ok(Region {
            inner: shared(path, region),
        })
    }

    /// open_shared(path) -> RegionCore
    ///
    /// The region file at ``path`` as this process has it open (the handle a live
    /// ``RegionCore`` or object of that path uses), or opened now if nothing uses one:
    /// how unpickled objects find their region.
    #[staticmethod]
    fn open_shared(py: Python<'_>, path: String) -> PyResult<Self> {
        if let Some(inner) = open_handle(&path) {
            return Ok(Region { inner });
        }
        let region = py.allow_threads(|| {
            RegionOptions::new()
                .open(&path)
                .map_err(|e| errors::open_error(&path, e))
        })?;
        Ok(Region {
            inner: shared(path, region),
        })
    }

    /// anonymous(size, capacity=None) -> RegionCore
    ///
    /// A region in anonymous shared memory: shared with children forked after this call,
    /// gone when the last of them exits; its objects cannot be pickled.
    #[staticmethod]
    #[pyo3(signature = (size, capacity = None))]
    fn anonymous(size: u64, capacity: Option<u32>) -> PyResult<Self> {
        let mut options = RegionOptions::new();
        if let Some(c) = capacity {
            options = options.capacity(c);
        }
        let region = options
            .anonymous(size)
            .map_err(|e| errors::create_error("<anonymous>", e))?;
        Ok(Region {
            inner: Arc::new(RegionInner { region, path: None }),
        })
    }

    /// remove_unused(path) -> bool
    ///
    /// Removes the region file at ``path`` if no live process has it open (a region left
    /// by a killed program); ``True`` if it was removed.
    #[staticmethod]
    fn remove_unused(py: Python<'_>, path: String) -> bool {
        py.allow_threads(|| shmstate::Region::remove_unused(&path).is_ok())
    }

    /// remove_object(path, name)
    ///
    /// Removes object ``name`` of the region file at ``path`` through a handle opened
    /// for the purpose (the crate's ``Region::remove_object``), if no live handle of any
    /// process (this one's included) has asked for it. ``KeyError`` if there is none,
    /// ``ObjectInUseError`` (``pids``) if one has, ``ValueError`` for a bad name,
    /// ``TimeoutError`` if another process kept it busy past the region's timeout,
    /// ``RegionError`` otherwise (see ``shmstate.Region.remove_object``).
    ///
    /// An ``RLock`` named ``NAME/lock`` (the lock ``Value`` and ``Array`` make with
    /// ``lock=True``) is removed first, under the same rule, if ``name`` exists.
    #[staticmethod]
    fn remove_object(py: Python<'_>, path: String, name: String) -> PyResult<()> {
        py.allow_threads(|| remove_with_own_lock(&path, &name))
            .map_err(|(which, e)| errors::remove_object_error(py, &path, &which, e))
    }

    /// remove(name)
    ///
    /// ``remove_object(self.path, name)``: this handle is not the remover (it counts as a
    /// user of every object it asked for). ``ValueError`` for an anonymous region.
    fn remove(&self, py: Python<'_>, name: String) -> PyResult<()> {
        let Some(path) = self.inner.path.clone() else {
            return Err(PyValueError::new_err(
                "an object of an anonymous region cannot be removed: there is no file to \
                 open a fresh handle on, and this handle (shared with fork children) may \
                 still hold references to it",
            ));
        };
        Self::remove_object(py, path, name)
    }

    /// The file, or ``None`` for an anonymous region.
    #[getter]
    fn path(&self) -> Option<&str> {
        self.inner.path.as_deref()
    }

    /// Whether the file is removed when the last process that has it open closes it
    /// (``remove_when_unused``, recorded in the file when it was created).
    #[getter]
    fn remove_when_unused(&self) -> bool {
        self.inner.region.remove_when_unused()
    }

    /// The size in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.inner.region.size()
    }

    /// How many objects the directory holds at most.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.region.capacity()
    }

    /// The names of the objects in the region.
    fn names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let names: Vec<String> = self
            .inner
            .region
            .entries()
            .into_iter()
            .map(|e| e.name)
            .collect();
        PyList::new(py, names)
    }

    /// The pids of the live processes that have the region open.
    fn attached_pids(&self) -> Vec<u32> {
        self.inner
            .region
            .attached()
            .into_iter()
            .filter(|a| a.alive)
            .map(|a| a.pid)
            .collect()
    }

    #[pyo3(signature = (name, typecode, init = None, lock = None))]
    fn value(
        &self,
        py: Python<'_>,
        name: &str,
        typecode: char,
        init: Option<&Bound<'_, PyAny>>,
        lock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Value> {
        let lock = self.side_lock(py, name, lock)?;
        Value::open(&self.inner, name, typecode, init, lock)
    }

    #[pyo3(signature = (name, typecode, len, init = None, lock = None))]
    fn array(
        &self,
        py: Python<'_>,
        name: &str,
        typecode: char,
        len: usize,
        init: Option<&Bound<'_, PyAny>>,
        lock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Array> {
        let lock = self.side_lock(py, name, lock)?;
        Array::open(&self.inner, name, typecode, len, init, lock)
    }

    fn lock(&self, name: &str) -> PyResult<Lock> {
        Lock::open(&self.inner, name)
    }

    fn rlock(&self, name: &str) -> PyResult<RLock> {
        RLock::open(&self.inner, name)
    }

    #[pyo3(signature = (name, value, bounded = false))]
    fn semaphore(
        &self,
        py: Python<'_>,
        name: &str,
        value: u32,
        bounded: bool,
    ) -> PyResult<PyObject> {
        Ok(if bounded {
            Py::new(py, BoundedSemaphore::open(&self.inner, name, value)?)?.into_any()
        } else {
            Py::new(py, Semaphore::open(&self.inner, name, value)?)?.into_any()
        })
    }

    fn event(&self, name: &str) -> PyResult<Event> {
        Event::open(&self.inner, name)
    }

    fn counter(&self, name: &str, stripes: usize) -> PyResult<Counter> {
        Counter::open(&self.inner, name, stripes)
    }

    #[pyo3(signature = (name, maxsize, capacity, joinable = false))]
    fn queue(
        &self,
        py: Python<'_>,
        name: &str,
        maxsize: i64,
        capacity: usize,
        joinable: bool,
    ) -> PyResult<PyObject> {
        crate::queue::open_in(py, &self.inner, name, maxsize, capacity, joinable)
    }

    #[pyo3(signature = (name, capacity = None, max_key_size = None, max_value_size = None, timeout = None))]
    fn dict(
        &self,
        py: Python<'_>,
        name: &str,
        capacity: Option<usize>,
        max_key_size: Option<usize>,
        max_value_size: Option<usize>,
        timeout: Option<f64>,
    ) -> PyResult<crate::dict::Dict> {
        let options = if capacity.is_none() && max_key_size.is_none() && max_value_size.is_none() {
            None
        } else {
            use crate::dict::{
                DEFAULT_CAPACITY, DEFAULT_KEY_SIZE, DEFAULT_VALUE_SIZE, map_options,
            };
            Some(map_options(
                capacity.unwrap_or(DEFAULT_CAPACITY),
                max_key_size.unwrap_or(DEFAULT_KEY_SIZE),
                max_value_size.unwrap_or(DEFAULT_VALUE_SIZE),
            )?)
        };
        crate::dict::Dict::open(py, &self.inner, name, options, timeout)
    }

    fn __repr__(&self) -> String {
        match &self.inner.path {
            Some(p) => format!("<shmstate.RegionCore {p:?} size={}>", self.size()),
            None => format!("<shmstate.RegionCore anonymous size={}>", self.size()),
        }
    }
}

/// The file-backed regions this process has open, by path: one handle per path for as
/// long as a `RegionCore` or an object of it lives (each holds the `Arc`), so that objects
/// of one region share one mapping and one attach-table word, and the handle is closed
/// (its uses of objects released, so that they can be removed) once nothing uses it.
///
/// Locked only with the GIL held and no Python code run under it: a `fork` (taken with
/// the GIL held) never finds it locked by another thread.
static OPEN: Mutex<BTreeMap<String, Weak<RegionInner>>> = Mutex::new(BTreeMap::new());

/// The handle on `path` this process has open, if anything still uses one.
fn open_handle(path: &str) -> Option<Arc<RegionInner>> {
    let open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    open.get(path).and_then(Weak::upgrade)
}

/// `region`, just opened on `path`, as the process's handle on `path`; or, if another
/// thread or an earlier call has one that is still in use, that one (`region` is closed).
fn shared(path: String, region: shmstate::Region) -> Arc<RegionInner> {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(inner) = open.get(&path).and_then(Weak::upgrade) {
        drop(open);
        drop(region);
        return inner;
    }
    open.retain(|_, w| w.strong_count() > 0);
    let inner = Arc::new(RegionInner {
        region,
        path: Some(path.clone()),
    });
    open.insert(path, Arc::downgrade(&inner));
    inner
}

impl Region {
    /// The lock of object `name` as `lock` says (multiprocessing's `lock=`): `False`
    /// none, `True` or `None` its own `RLock` (`name/lock`), or the `Lock` or `RLock`
    /// given (`TypeError` for anything else).
    fn side_lock(
        &self,
        py: Python<'_>,
        name: &str,
        lock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<SideLock>> {
        let own = match lock {
            None => true,
            Some(l) if l.is_none() => true,
            Some(l) => match l.downcast::<pyo3::types::PyBool>() {
                Ok(b) => b.is_true(),
                Err(_) => return SideLock::given(l).map(Some),
            },
        };
        if !own {
            return Ok(None);
        }
        Ok(Some(SideLock::RLock(Py::new(
            py,
            RLock::open(&self.inner, &own_lock_name(name))?,
        )?)))
    }
}

/// Removes object `name` of the region file at `path` through a fresh handle, and first
/// its own lock: an `RLock` named `NAME/lock`, as `Value` and `Array` make with
/// `lock=True`, if `name` exists. The lock goes first so that a failure leaves no lock
/// behind a removed value; a value whose lock was removed and which some process still
/// uses is safe, since every process that opened it with its own lock uses the lock too
/// (so the lock's removal was refused). On failure, the name whose removal failed.
fn remove_with_own_lock(
    path: &str,
    name: &str,
) -> Result<(), (String, shmstate::RemoveObjectError)> {
    let mut region = RegionOptions::new()
        .open(path)
        .map_err(|e| (name.to_owned(), e.into()))?;
    let lock = own_lock_name(name);
    let entries = region.entries();
    let has = |n: &str, tag: Option<shmstate::TypeTag>| {
        entries
            .iter()
            .any(|e| e.name == n && tag.is_none_or(|t| e.tag == t))
    };
    if has(name, None) && has(&lock, Some(<RLockCell as shmstate::Shared>::TAG)) {
        region.remove(&lock).map_err(|e| (lock.clone(), e))?;
    }
    region.remove(name).map_err(|e| (name.to_owned(), e))
}

/// The name of the `RLock` that `Value` and `Array` make for object `name` with
/// `lock=True`.
fn own_lock_name(name: &str) -> String {
    format!("{name}/lock")
}
