//! `Dict`: a shared `dict` on the crate's map ([`shmstate::ByteMap`]).
//!
//! A key is stored as a type tag and its bytes (so that `1`, `"1"` and `b"1"` are three
//! keys); a value as an 8-byte insertion number (the dict's order: the number comes from a
//! counter beside the map, `NAME/order`, drawn when a key is inserted and kept when its
//! value is replaced, as a `dict` keeps a key's place), a type tag and its bytes: `int`
//! (64-bit), `float`, `str`, `bytes`, `bool` and `None` directly, anything else pickled.
//!
//! Every operation is one operation of the map: `d[k] = v`, `setdefault` and `incr` are
//! each one `update` of the key's entry under its stripe's lock, so they are atomic across
//! processes; reads take no lock. Each call first tries once with the GIL held (a read
//! never waits beyond a brief spin, a write takes a free stripe lock or gives up), then
//! waits in slices with the GIL released, checking signals between slices, until the
//! dict's timeout (if any) passes.
//!
//! # Crash windows
//!
//! A `Dict` adds one shared step to the map's protocol (whose table, in the crate's `map`
//! module docs, covers the rest): drawing an insertion number.
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | insertion number drawn (`fetch_add` on `NAME/order`, under the key's stripe lock), entry not yet written | a gap in the numbers, the stripe lock held by a dead process | nothing to repair in the order (numbers only sort); the lock and the stripe as in the map's table: the next writer of the stripe takes it over within a slice (`test_a_writer_killed_holding_the_lock_does_not_wedge_others`) |
//! | any step, SIGSTOP | a live stripe-lock holder | per-key writes of that stripe wait for it, the timed ones (`with_timeout`) until their timeout (`test_a_stopped_writer_holds_up_only_bounded_calls_until_their_deadline`); snapshots and `clear` as long as the stop lasts |

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyKeyError, PyOverflowError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::{IntoPyObjectExt, PyTypeInfo};
use shmstate::{
    ByteMap, ByteMapDeadline, IncrError, InsertError, MapError, MapOptions, Update, UpdateError,
};

use crate::errors::RegionError;
use crate::obj::{Obj, RegionInner, reduce};
use crate::wait::SLICE;

pyo3::create_exception!(
    _shmstate,
    DictFullError,
    pyo3::exceptions::PyException,
    "A :class:`Dict` has no room for another key.\n\n\
     Raised by a write that would insert a new key into a dict that holds ``capacity`` \
     keys (or, rarely, whose share of the table for that key is full). Nothing is \
     stored. A dict's capacity is fixed when it is created: make it larger, or remove \
     keys."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DictFullError", m.py().get_type::<DictFullError>())?;
    m.add_class::<Dict>()?;
    Ok(())
}

/// Bytes a key's encoding adds to the user's `max_key_size`: the type tag.
const KEY_EXTRA: usize = 1;
/// Bytes a value's encoding adds to the user's `max_value_size`: the insertion number and
/// the type tag.
const VALUE_EXTRA: usize = 9;
/// The insertion number's bytes at the start of a stored value.
const SEQ: usize = 8;

/// The defaults of `Dict()`.
pub(crate) const DEFAULT_CAPACITY: usize = 1024;
pub(crate) const DEFAULT_KEY_SIZE: usize = 64;
pub(crate) const DEFAULT_VALUE_SIZE: usize = 512;

// Key tags.
const K_STR: u8 = b's';
const K_BYTES: u8 = b'b';
const K_INT: u8 = b'i';
const K_BIGINT: u8 = b'I';
const K_FLOAT: u8 = b'f';
// Value tags.
const V_INT: u8 = b'i';
const V_FLOAT: u8 = b'f';
const V_STR: u8 = b's';
const V_BYTES: u8 = b'b';
const V_NONE: u8 = b'n';
const V_TRUE: u8 = b'T';
const V_FALSE: u8 = b'F';
const V_PICKLE: u8 = b'p';

/// A `dict` shared between processes: ``multiprocessing.Manager().dict()`` without the
/// server process.
///
/// ``Dict(initial=None, /, *, capacity=1024, max_key_size=64, max_value_size=512,
/// timeout=None)`` makes an empty dict (then adds ``initial``: a mapping or an iterable of
/// key/value pairs) in the process's default region (``Region.Dict`` names one in a region
/// file of your own). It pickles as a reference, so it can be passed to
/// ``multiprocessing.Process`` and ``ProcessPoolExecutor`` under every start method; every
/// process sees and changes the same entries.
///
/// Keys are ``str``, ``bytes``, ``int`` or ``float`` (``1``, ``"1"`` and ``b"1"`` are three
/// keys; as in a ``dict``, ``1``, ``1.0`` and ``True`` are one key, which comes back as the
/// ``int`` ``1``), of up to ``max_key_size`` bytes (a ``str``'s UTF-8; 8 for an ``int`` or
/// ``float``). Values are any picklable object of up to ``max_value_size`` bytes (a
/// ``str``'s UTF-8, a ``bytes``' length, 8 for an ``int`` or ``float``, 0 for ``None`` and
/// ``bool``, else the length of its pickle); a longer key or value raises ``ValueError``
/// and stores nothing. ``capacity`` keys fit; a new key beyond them raises
/// :class:`DictFullError`. All three are fixed at creation.
///
/// It has ``dict``'s methods: ``d[k]``, ``d[k] = v``, ``del d[k]``, ``k in d``, ``len``,
/// ``get``, ``setdefault``, ``pop``, ``popitem``, ``update``, ``clear``, ``copy`` (a plain
/// ``dict``), ``keys``, ``values``, ``items``, iteration, ``|`` and ``|=``, and ``==``
/// with a ``dict``; and ``incr(key, by=1, init=0)``, an atomic ``d[key] += by``.
///
/// Each key's operation is atomic across processes: ``d[k] = v``, ``setdefault`` and
/// ``incr`` are each one step of the shared table (``setdefault`` inserts only if no other
/// process did first; concurrent ``incr`` calls lose no update). Reads take no lock. A
/// process killed in the middle of a write leaves the dict consistent: the next write to
/// that part of the table repairs it, and the key it was writing is either its old or new
/// value, or absent (a replaced value cut short drops the key).
///
/// ``keys()``, ``values()``, ``items()``, ``copy()``, iteration and ``==`` read a
/// *snapshot* in insertion order: each entry is one value some process wrote, but the
/// snapshot is not atomic across the whole dict (a write that lands during it may show in
/// one entry and an earlier one not in another). ``update`` and ``clear`` are one key at a
/// time too. Iterating never raises for a dict changed meanwhile.
///
/// Waiting: a call waits only for a write in progress on its key's part of the table; a
/// writer stopped with SIGSTOP holds such calls up while it is stopped. ``timeout``
/// (seconds, or ``with_timeout``) bounds every per-key call, which then raises
/// ``TimeoutError`` having changed nothing; the whole-dict calls (snapshots, ``clear``)
/// wait for such a writer for as long as it is stopped. The first opening of a dict last
/// used in another boot removes its entries with a deadline, and raises ``TimeoutError``
/// if such a writer holds part of the table past the region's timeout.
///
/// Values that are not ``int``/``float``/``str``/``bytes``/``bool``/``None`` are pickled,
/// and unpickled by every reader: share a dict only with processes you trust, as with
/// ``multiprocessing``.
///
/// Example::
///
///     from multiprocessing import Process
///     from shmstate import Dict
///
///     def work(d):
///         d.incr("done")
///         d.setdefault("first", "the child")
///
///     if __name__ == "__main__":
///         d = Dict(capacity=100)
///         p = Process(target=work, args=(d,)); p.start(); p.join()
///         print(d)   # {'done': 1, 'first': 'the child'}
#[pyclass(module = "shmstate._shmstate", frozen, weakref, mapping)]
pub struct Dict {
    map: Obj<ByteMap>,
    order: Obj<shmstate::Value<u64>>,
    /// The map's options (the validated local copy, with the encodings' extra bytes).
    options: MapOptions,
    /// Seconds every per-key call waits at most (`None`: no bound).
    timeout: Option<f64>,
    /// An instant in the past: the deadline of the first try, which never waits.
    born: Instant,
}

/// A map error that may be the deadline of a timed call.
trait MaybeTimeout {
    fn is_timeout(&self) -> bool;
}

impl MaybeTimeout for MapError {
    fn is_timeout(&self) -> bool {
        matches!(self, MapError::Timeout)
    }
}
impl MaybeTimeout for InsertError {
    fn is_timeout(&self) -> bool {
        matches!(self, InsertError::Timeout)
    }
}
impl MaybeTimeout for UpdateError {
    fn is_timeout(&self) -> bool {
        matches!(self, UpdateError::Timeout)
    }
}
impl MaybeTimeout for IncrError {
    fn is_timeout(&self) -> bool {
        matches!(self, IncrError::Timeout)
    }
}

/// The map options of a dict with these user-facing sizes.
pub(crate) fn map_options(
    capacity: usize,
    max_key_size: usize,
    max_value_size: usize,
) -> PyResult<MapOptions> {
    let key_max = max_key_size
        .checked_add(KEY_EXTRA)
        .filter(|&k| k <= shmstate::map::MAX_KEY_LEN)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "max_key_size must be at most {}",
                shmstate::map::MAX_KEY_LEN - KEY_EXTRA
            ))
        })?;
    let value_max = max_value_size
        .checked_add(VALUE_EXTRA)
        .filter(|&v| v <= shmstate::map::MAX_VALUE_LEN)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "max_value_size must be at most {}",
                shmstate::map::MAX_VALUE_LEN - VALUE_EXTRA
            ))
        })?;
    // `int` and `float` keys and values take 8 bytes.
    if max_key_size < 8 || max_value_size < 8 {
        return Err(PyValueError::new_err(
            "max_key_size and max_value_size must be at least 8 (an int takes 8 bytes)",
        ));
    }
    if capacity == 0 || capacity > shmstate::map::MAX_CAPACITY {
        return Err(PyValueError::new_err(format!(
            "capacity must be in 1..={}",
            shmstate::map::MAX_CAPACITY
        )));
    }
    Ok(MapOptions::new(capacity)
        .key_max(key_max)
        .value_max(value_max))
}

/// The bytes a map of `options` takes in a region (the crate's sizing rule, see the `map`
/// module docs), for choosing a region large enough.
pub(crate) fn map_nbytes(options: &MapOptions) -> usize {
    let n = options.capacity();
    let stripes = n.div_ceil(128).next_power_of_two();
    let mean = n.div_ceil(stripes);
    let sqrt = (mean as f64).sqrt().ceil() as usize;
    let sps = (mean * 4).div_ceil(3).max(mean + 6 * sqrt + 4).min(256);
    let slot_words = 4 + options.key_max_len().div_ceil(8) + options.value_max_len().div_ceil(8);
    64 * (2 + stripes + (stripes * sps * slot_words).div_ceil(8))
}

impl Dict {
    /// The dict `name` in `region`: created with `options` if there is none; with
    /// `options` `None`, the existing one (or a new one with the defaults).
    pub(crate) fn open(
        py: Python<'_>,
        region: &Arc<RegionInner>,
        name: &str,
        options: Option<MapOptions>,
        timeout: Option<f64>,
    ) -> PyResult<Self> {
        check_timeout(timeout)?;
        let r = &region.region;
        let map = py.allow_threads(|| match options {
            Some(o) => r.map(name, o),
            None => match r.open_map(name) {
                Err(shmstate::MapOpenError::Region(shmstate::GetError::NotFound { .. })) => r.map(
                    name,
                    map_options(DEFAULT_CAPACITY, DEFAULT_KEY_SIZE, DEFAULT_VALUE_SIZE)
                        .expect("the defaults are in range"),
                ),
                other => other,
            },
        });
        let map = map.map_err(|e| open_error(name, e))?;
        let options = map.options();
        if options.key_max_len() < 8 + KEY_EXTRA || options.value_max_len() < 8 + VALUE_EXTRA {
            return Err(PyTypeError::new_err(format!(
                "object {name:?} is a map, but not one a shmstate.Dict made"
            )));
        }
        let map = Obj::from_ref(region, map, name);
        let order = Obj::get_or_init(
            region,
            &format!("{name}/order"),
            1,
            |_: &shmstate::Value<u64>| {},
        )?;
        Ok(Dict {
            map,
            order,
            options,
            timeout,
            born: Instant::now(),
        })
    }

    fn key_limit(&self) -> usize {
        self.options.key_max_len()
    }

    fn value_limit(&self) -> usize {
        self.options.value_max_len()
    }

    /// Runs `op` on the map: once with the GIL held and no waiting, then in slices with
    /// the GIL released until it is not a timeout or the dict's timeout passes
    /// (`TimeoutError`).
    fn run<R: Send, E: MaybeTimeout + Send>(
        &self,
        py: Python<'_>,
        mut op: impl FnMut(ByteMapDeadline<'_>) -> Result<R, E> + Send,
    ) -> PyResult<Result<R, E>> {
        let m = self.map.get();
        match op(m.with_deadline(self.born)) {
            Err(e) if e.is_timeout() => {}
            r => return Ok(r),
        }
        self.run_waiting(py, op)
    }

    #[cold]
    fn run_waiting<R: Send, E: MaybeTimeout + Send>(
        &self,
        py: Python<'_>,
        mut op: impl FnMut(ByteMapDeadline<'_>) -> Result<R, E> + Send,
    ) -> PyResult<Result<R, E>> {
        let m = self.map.get();
        let end = self.timeout.and_then(|t| {
            Instant::now().checked_add(Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX))
        });
        loop {
            let now = Instant::now();
            let slice = match end {
                Some(e) => e.min(now + SLICE),
                None => now + SLICE,
            };
            match py.allow_threads(|| op(m.with_deadline(slice))) {
                Err(e) if e.is_timeout() => {}
                r => return Ok(r),
            }
            py.check_signals()?;
            if end.is_some_and(|e| Instant::now() >= e) {
                return Err(PyTimeoutError::new_err(format!(
                    "shmstate.Dict: a writer held the key's part of the table for the whole timeout ({} s)",
                    self.timeout.unwrap_or(0.0)
                )));
            }
        }
    }

    /// A new insertion number.
    fn next_seq(&self) -> [u8; SEQ] {
        // Relaxed: the number only has to be unique and increasing in each process's
        // program order; the entry it goes into is published by the map's own protocol.
        self.order
            .get()
            .fetch_add(1, shmstate::sync::Ordering::Relaxed)
            .to_le_bytes()
    }

    /// Encodes `key` into `buf`; `Ok(false)` if it is not a key type a `Dict` stores
    /// (after checking it is hashable, as `dict` does).
    fn encode_key(&self, key: &Bound<'_, PyAny>, buf: &mut Vec<u8>) -> PyResult<bool> {
        buf.clear();
        if let Ok(s) = key.downcast::<PyString>() {
            buf.push(K_STR);
            with_utf8(s, |b| buf.extend_from_slice(b))?;
        } else if let Ok(b) = key.downcast::<PyBytes>() {
            buf.push(K_BYTES);
            buf.extend_from_slice(b.as_bytes());
        } else if key.is_instance_of::<PyInt>() {
            encode_int_key(key, buf)?;
        } else if let Ok(f) = key.downcast::<PyFloat>() {
            let x = f.value();
            if x.is_finite() && x.fract() == 0.0 {
                // Equal to an int, so the same key as that int (as in a dict).
                encode_int_key(&key.py().get_type::<PyInt>().call1((x,))?, buf)?;
            } else {
                buf.push(K_FLOAT);
                buf.extend_from_slice(&x.to_le_bytes());
            }
        } else {
            key.hash()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Encodes a key that is stored, or raises `TypeError`/`ValueError`.
    fn key_for_write(&self, key: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let mut k = Vec::with_capacity(32);
        if !self.encode_key(key, &mut k)? {
            return Err(PyTypeError::new_err(format!(
                "shmstate.Dict keys are str, bytes, int or float, not {}",
                key.get_type().name()?
            )));
        }
        self.check_key_len(&k)?;
        Ok(k)
    }

    fn check_key_len(&self, k: &[u8]) -> PyResult<()> {
        if k.len() > self.key_limit() {
            return Err(PyValueError::new_err(format!(
                "key of {} bytes; this shmstate.Dict holds keys of up to {} (max_key_size)",
                k.len() - KEY_EXTRA,
                self.key_limit() - KEY_EXTRA
            )));
        }
        Ok(())
    }

    /// Encodes a key for a lookup: `None` if no such key can be in the dict (another
    /// type, or too long).
    fn key_for_read(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
        let mut k = Vec::with_capacity(32);
        Ok((self.encode_key(key, &mut k)? && k.len() <= self.key_limit()).then_some(k))
    }

    /// Encodes `value` (with room for the insertion number in front), or raises
    /// `ValueError` if it is too large.
    fn encode_value(&self, value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&[0; SEQ]);
        if value.is_exact_instance_of::<PyString>() {
            let s = value.downcast::<PyString>()?;
            v.push(V_STR);
            with_utf8(s, |b| v.extend_from_slice(b))?;
        } else if value.is_exact_instance_of::<PyInt>() {
            match value.extract::<i64>() {
                Ok(i) => {
                    v.push(V_INT);
                    v.extend_from_slice(&i.to_le_bytes());
                }
                Err(_) => pickle_into(value, &mut v)?,
            }
        } else if value.is_exact_instance_of::<PyFloat>() {
            v.push(V_FLOAT);
            v.extend_from_slice(&value.downcast::<PyFloat>()?.value().to_le_bytes());
        } else if value.is_exact_instance_of::<PyBytes>() {
            v.push(V_BYTES);
            v.extend_from_slice(value.downcast::<PyBytes>()?.as_bytes());
        } else if value.is_none() {
            v.push(V_NONE);
        } else if value.is_exact_instance_of::<PyBool>() {
            v.push(if value.is_truthy()? { V_TRUE } else { V_FALSE });
        } else {
            pickle_into(value, &mut v)?;
        }
        if v.len() > self.value_limit() {
            return Err(PyValueError::new_err(format!(
                "value of {} bytes (encoded); this shmstate.Dict holds values of up to {} \
                 (max_value_size)",
                v.len() - VALUE_EXTRA,
                self.value_limit() - VALUE_EXTRA
            )));
        }
        Ok(v)
    }

    fn set_encoded(&self, py: Python<'_>, k: &[u8], v: &mut [u8]) -> PyResult<()> {
        let r = self.run(py, |d| {
            let v = &mut *v;
            d.update(k, |old| {
                let seq = match old {
                    Some(o) if o.len() >= SEQ => {
                        let mut s = [0; SEQ];
                        s.copy_from_slice(&o[..SEQ]);
                        s
                    }
                    _ => self.next_seq(),
                };
                v[..SEQ].copy_from_slice(&seq);
                Update::Set(&*v, ())
            })
        })?;
        r.map_err(|e| self.update_error(e))
    }

    fn update_error(&self, e: UpdateError) -> PyErr {
        match e {
            UpdateError::Full => DictFullError::new_err(format!(
                "the shmstate.Dict is full (capacity {})",
                self.options.capacity()
            )),
            UpdateError::KeyTooLong { len, .. } => PyValueError::new_err(format!(
                "key of {} bytes; this shmstate.Dict holds keys of up to {}",
                len.saturating_sub(KEY_EXTRA),
                self.key_limit() - KEY_EXTRA
            )),
            UpdateError::ValueTooLong { len, .. } => PyValueError::new_err(format!(
                "value of {} bytes; this shmstate.Dict holds values of up to {}",
                len.saturating_sub(VALUE_EXTRA),
                self.value_limit() - VALUE_EXTRA
            )),
            e => map_error(e.to_string()),
        }
    }

    /// The value of `key` (encoded), if present: `Ok(None)` if absent.
    fn lookup(&self, py: Python<'_>, k: &[u8]) -> PyResult<Option<PyObject>> {
        // The first try decodes in place, with the GIL held.
        let m = self.map.get();
        match m
            .with_deadline(self.born)
            .get_with(k, |v| decode_value(py, v))
        {
            Ok(Some(r)) => return r.map(Some),
            Ok(None) => return Ok(None),
            Err(MapError::Timeout) => {}
            Err(e) => return Err(map_error(e.to_string())),
        }
        let mut out = Vec::new();
        let found = self
            .run_waiting(py, |d| d.get(k, &mut out))?
            .map_err(|e| map_error(e.to_string()))?;
        if found {
            decode_value(py, &out).map(Some)
        } else {
            Ok(None)
        }
    }

    fn remove(&self, py: Python<'_>, k: &[u8]) -> PyResult<Option<Vec<u8>>> {
        self.run(py, |d| d.remove(k))?
            .map_err(|e| map_error(e.to_string()))
    }

    /// Every entry, in insertion order, encoded.
    fn entries(&self, py: Python<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let m = self.map.get();
        let mut all = py.allow_threads(|| m.snapshot());
        all.retain(|(_, v)| v.len() > SEQ);
        all.sort_by_key(|(_, v)| seq_of(v));
        all
    }

    fn snapshot_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.entries(py) {
            d.set_item(decode_key(py, &k)?, decode_value(py, &v)?)?;
        }
        Ok(d)
    }

    fn set_item(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = self.key_for_write(key)?;
        let mut v = self.encode_value(value)?;
        self.set_encoded(py, &k, &mut v)
    }
}

#[pymethods]
impl Dict {
    #[new]
    #[pyo3(
        signature = (*args, **kwargs),
        text_signature = "(initial=None, /, *, capacity=1024, max_key_size=64, max_value_size=512, timeout=None)"
    )]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if args.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "Dict expected at most 1 positional argument, got {}",
                args.len()
            )));
        }
        let placed =
            crate::obj::new_in_default_region::<Self>(py, "Dict", &PyTuple::empty(py), kwargs)?;
        let this = placed.get();
        let d = Dict {
            map: this.map.clone(),
            order: this.order.clone(),
            options: this.options,
            timeout: this.timeout,
            born: this.born,
        };
        if let Ok(initial) = args.get_item(0)
            && !initial.is_none()
        {
            d.update_from(py, &initial)?;
        }
        Ok(d)
    }

    /// The most keys the dict holds.
    #[getter]
    fn capacity(&self) -> usize {
        self.options.capacity()
    }

    /// The longest key, in bytes (a ``str``'s UTF-8; 8 for an ``int`` or ``float``).
    #[getter]
    fn max_key_size(&self) -> usize {
        self.key_limit() - KEY_EXTRA
    }

    /// The largest value, in bytes of its encoding (a ``str``'s UTF-8, a ``bytes``'
    /// length, 8 for an ``int`` or ``float``, else its pickle's length).
    #[getter]
    fn max_value_size(&self) -> usize {
        self.value_limit() - VALUE_EXTRA
    }

    /// Seconds every per-key call waits at most for a writer of the key's part of the
    /// table (``None``: no bound).
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout
    }

    /// with_timeout(timeout) -> Dict
    ///
    /// The same dict, through a handle whose per-key calls give up after ``timeout``
    /// seconds (``None``: never) with ``TimeoutError``, having changed nothing.
    /// ``d.with_timeout(0)`` never waits for a writer.
    fn with_timeout(&self, timeout: Option<f64>) -> PyResult<Self> {
        check_timeout(timeout)?;
        Ok(Dict {
            map: self.map.clone(),
            order: self.order.clone(),
            options: self.options,
            timeout,
            born: self.born,
        })
    }

    fn __len__(&self) -> usize {
        self.map.get().len()
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(k) = self.key_for_read(key)? else {
            return Ok(false);
        };
        self.run(py, |d| d.contains(&k))?
            .map_err(|e| map_error(e.to_string()))
    }

    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let Some(k) = self.key_for_read(key)? else {
            return Err(PyKeyError::new_err(key.clone().unbind()));
        };
        self.lookup(py, &k)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.set_item(py, key, value)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(k) = self.key_for_read(key)? else {
            return Err(PyKeyError::new_err(key.clone().unbind()));
        };
        match self.remove(py, &k)? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// get(key, default=None)
    ///
    /// ``d[key]`` if ``key`` is in the dict, else ``default``.
    #[pyo3(signature = (key, default = None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<PyObject>,
    ) -> PyResult<PyObject> {
        let Some(k) = self.key_for_read(key)? else {
            return Ok(default.unwrap_or_else(|| py.None()));
        };
        Ok(self
            .lookup(py, &k)?
            .or(default)
            .unwrap_or_else(|| py.None()))
    }

    /// setdefault(key, default=None)
    ///
    /// ``d[key]`` if ``key`` is in the dict; else inserts ``key`` with ``default`` and
    /// returns ``default``. Atomic across processes: of several processes calling it at
    /// once for a missing key, exactly one inserts its default and all get that value.
    #[pyo3(signature = (key, default = None))]
    fn setdefault(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let k = self.key_for_write(key)?;
        if let Some(v) = self.lookup(py, &k)? {
            return Ok(v);
        }
        let none = py.None().into_bound(py);
        let default = default.unwrap_or(&none);
        let mut enc = self.encode_value(default)?;
        let found = self.run(py, |d| {
            let enc = &mut *enc;
            d.update(&k, |old| match old {
                Some(o) => Update::Keep(Some(o.to_vec())),
                None => {
                    enc[..SEQ].copy_from_slice(&self.next_seq());
                    Update::Set(&*enc, None)
                }
            })
        })?;
        match found.map_err(|e| self.update_error(e))? {
            Some(old) => decode_value(py, &old),
            None => Ok(default.clone().unbind()),
        }
    }

    /// pop(key[, default])
    ///
    /// Removes ``key`` and returns its value; if it is absent, returns ``default``, or
    /// raises ``KeyError`` without one.
    #[pyo3(signature = (key, *default))]
    fn pop(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: &Bound<'_, PyTuple>,
    ) -> PyResult<PyObject> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                default.len() + 1
            )));
        }
        let removed = match self.key_for_read(key)? {
            Some(k) => self.remove(py, &k)?,
            None => None,
        };
        match removed {
            Some(v) => decode_value(py, &v),
            None => match default.get_item(0) {
                Ok(d) => Ok(d.unbind()),
                Err(_) => Err(PyKeyError::new_err(key.clone().unbind())),
            },
        }
    }

    /// popitem() -> (key, value)
    ///
    /// Removes and returns the most recently inserted entry (as ``dict`` does), or, if
    /// another process removes it first, the next one; ``KeyError`` if the dict is empty.
    fn popitem(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        loop {
            let entries = self.entries(py);
            if entries.is_empty() {
                return Err(PyKeyError::new_err("popitem(): dictionary is empty"));
            }
            for (k, _) in entries.iter().rev() {
                if let Some(v) = self.remove(py, k)? {
                    return Ok((decode_key(py, k)?, decode_value(py, &v)?));
                }
            }
        }
    }

    /// incr(key, by=1, init=0) -> int | float
    ///
    /// ``d[key] += by`` as one atomic step (``d[key] = init + by`` if ``key`` is absent);
    /// returns the new value. Concurrent calls from any number of processes lose no
    /// update. The value must be an ``int`` (64-bit: a result outside the range raises
    /// ``OverflowError`` and changes nothing) or a ``float``; ``by`` and ``init`` may be
    /// ``float`` (the result is then a ``float``). Another value type raises
    /// ``TypeError`` and is left alone.
    #[pyo3(signature = (key, by = None, init = None))]
    fn incr(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        by: Option<&Bound<'_, PyAny>>,
        init: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyObject> {
        let k = self.key_for_write(key)?;
        let by = Num::from_arg(by, "by")?.unwrap_or(Num::I(1));
        let init = Num::from_arg(init, "init")?.unwrap_or(Num::I(0));
        let r = self.run(py, |d| {
            d.update(&k, |old| {
                let (seq, cur) = match old {
                    None => (self.next_seq(), init),
                    Some(o) => match decode_num(o) {
                        Ok(n) => {
                            let mut s = [0; SEQ];
                            s.copy_from_slice(&o[..SEQ]);
                            (s, n)
                        }
                        Err(e) => return Update::Keep(Err(e)),
                    },
                };
                match cur.add(by) {
                    Some(n) => {
                        let mut buf = [0u8; SEQ + 9];
                        buf[..SEQ].copy_from_slice(&seq);
                        n.write(&mut buf[SEQ..]);
                        Update::Set(buf, Ok(n))
                    }
                    None => Update::Keep(Err(IncrFail::Overflow)),
                }
            })
        })?;
        match r.map_err(|e| self.update_error(e))? {
            Ok(Num::I(i)) => i.into_py_any(py),
            Ok(Num::F(f)) => f.into_py_any(py),
            Err(IncrFail::Overflow) => Err(PyOverflowError::new_err(
                "incr: the result does not fit a 64-bit integer (nothing changed)",
            )),
            Err(IncrFail::NotANumber) => Err(PyTypeError::new_err(format!(
                "incr: the value of {} is not an int or a float",
                key.repr()?
            ))),
        }
    }

    /// update([other, ]**kwargs)
    ///
    /// Sets each key of ``other`` (a mapping, or an iterable of key/value pairs) and of
    /// ``kwargs``, one key at a time (each set is atomic, the whole update is not).
    #[pyo3(signature = (other = None, **kwargs))]
    fn update(
        &self,
        py: Python<'_>,
        other: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if let Some(o) = other {
            self.update_from(py, o)?;
        }
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                self.set_item(py, &k, &v)?;
            }
        }
        Ok(())
    }

    /// Removes every entry, one part of the table at a time.
    fn clear(&self, py: Python<'_>) {
        let m = self.map.get();
        py.allow_threads(|| m.clear());
    }

    /// A plain ``dict`` with the entries (a snapshot, in insertion order).
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.snapshot_dict(py)
    }

    /// A list of the keys (a snapshot, in insertion order; see the class docs).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let keys = self
            .entries(py)
            .iter()
            .map(|(k, _)| decode_key(py, k))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, keys)
    }

    /// A list of the values (a snapshot, in insertion order).
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let values = self
            .entries(py)
            .iter()
            .map(|(_, v)| decode_value(py, v))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, values)
    }

    /// A list of ``(key, value)`` pairs (a snapshot, in insertion order).
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .entries(py)
            .iter()
            .map(|(k, v)| Ok((decode_key(py, k)?, decode_value(py, v)?)))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py)?.try_iter().map(Bound::into_any)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let other = if let Ok(d) = other.downcast::<Dict>() {
            d.get().snapshot_dict(py)?.into_any()
        } else if other.is_instance_of::<PyDict>() {
            other.clone()
        } else {
            return Ok(py.NotImplemented());
        };
        self.snapshot_dict(py)?.eq(other)?.into_py_any(py)
    }

    fn __ne__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let eq = self.__eq__(py, other)?;
        if eq.is(py.NotImplemented()) {
            return Ok(eq);
        }
        (!eq.bind(py).is_truthy()?).into_py_any(py)
    }

    fn __or__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<PyObject> {
        if !(other.is_instance_of::<PyDict>() || other.is_instance_of::<Dict>()) {
            return Ok(py.NotImplemented());
        }
        let d = self.snapshot_dict(py)?;
        let other = match other.downcast::<Dict>() {
            Ok(o) => o.get().snapshot_dict(py)?.into_any(),
            Err(_) => other.clone(),
        };
        d.call_method1("update", (other,))?;
        Ok(d.into_any().unbind())
    }

    fn __ror__<'py>(&self, py: Python<'py>, other: &Bound<'py, PyAny>) -> PyResult<PyObject> {
        if !other.is_instance_of::<PyDict>() {
            return Ok(py.NotImplemented());
        }
        let d = other.downcast::<PyDict>()?.copy()?;
        d.call_method1("update", (self.snapshot_dict(py)?,))?;
        Ok(d.into_any().unbind())
    }

    fn __ior__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        self.update_from(py, other)
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        reduce(py, "Dict", &self.map, vec![self.timeout.into_py_any(py)?])
    }

    fn __str__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.snapshot_dict(py)?.repr()?.to_string())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<shmstate.Dict {:?} {}>",
            self.map.name(),
            self.snapshot_dict(py)?.repr()?
        ))
    }

    /// Unhashable, as ``dict``.
    #[classattr]
    fn __hash__(py: Python<'_>) -> PyObject {
        py.None()
    }

    #[staticmethod]
    #[pyo3(signature = (capacity = DEFAULT_CAPACITY, max_key_size = DEFAULT_KEY_SIZE, max_value_size = DEFAULT_VALUE_SIZE))]
    fn _nbytes(capacity: usize, max_key_size: usize, max_value_size: usize) -> PyResult<usize> {
        Ok(map_nbytes(&map_options(
            capacity,
            max_key_size,
            max_value_size,
        )?))
    }

    /// Holds the lock of ``key``'s part of the table for ``seconds`` (with the GIL
    /// released): for tests of what a holder killed or stopped meanwhile leaves.
    fn _hold_key_lock(&self, py: Python<'_>, key: &Bound<'_, PyAny>, seconds: f64) -> PyResult<()> {
        let k = self.key_for_write(key)?;
        let m = self.map.get();
        let d = Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX);
        py.allow_threads(|| {
            m.update(&k, |_| {
                std::thread::sleep(d);
                Update::<(), Vec<u8>>::Keep(())
            })
        })
        .map_err(|e| self.update_error(e))
    }
}

impl Dict {
    fn update_from(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(d) = other.downcast::<PyDict>() {
            for (k, v) in d.iter() {
                self.set_item(py, &k, &v)?;
            }
        } else if other.hasattr("keys")? {
            for k in other.call_method0("keys")?.try_iter()? {
                let k = k?;
                let v = other.get_item(&k)?;
                self.set_item(py, &k, &v)?;
            }
        } else {
            for (i, pair) in other.try_iter()?.enumerate() {
                let pair = pair?;
                let seq: Vec<Bound<'_, PyAny>> = pair
                    .try_iter()
                    .and_then(|it| it.collect::<PyResult<Vec<_>>>())
                    .map_err(|_| {
                        PyTypeError::new_err(format!(
                            "cannot convert dictionary update sequence element #{i} to a sequence"
                        ))
                    })?;
                if seq.len() != 2 {
                    return Err(PyValueError::new_err(format!(
                        "dictionary update sequence element #{i} has length {}; 2 is required",
                        seq.len()
                    )));
                }
                self.set_item(py, &seq[0], &seq[1])?;
            }
        }
        Ok(())
    }
}

fn check_timeout(timeout: Option<f64>) -> PyResult<()> {
    match timeout {
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        _ => Ok(()),
    }
}

fn open_error(name: &str, e: shmstate::MapOpenError) -> PyErr {
    match e {
        shmstate::MapOpenError::Region(e) => crate::errors::get_error(name, e),
        e @ shmstate::MapOpenError::OptionsMismatch { .. } => {
            PyTypeError::new_err(format!("object {name:?}: {e}"))
        }
        e @ shmstate::MapOpenError::InvalidOptions { .. } => {
            PyValueError::new_err(format!("object {name:?}: {e}"))
        }
        e @ shmstate::MapOpenError::Timeout => {
            PyTimeoutError::new_err(format!("object {name:?}: {e}"))
        }
        e => RegionError::new_err(format!("object {name:?}: {e}")),
    }
}

/// The map reports memory no shmstate build writes (another process wrote garbage).
fn map_error(msg: String) -> PyErr {
    RegionError::new_err(format!("shmstate.Dict: {msg}"))
}

fn corrupt_entry() -> PyErr {
    map_error("an entry's bytes are not a key or value a shmstate.Dict writes".into())
}

fn seq_of(v: &[u8]) -> u64 {
    let mut s = [0; SEQ];
    s.copy_from_slice(&v[..SEQ]);
    u64::from_le_bytes(s)
}

unsafe extern "C" {
    /// CPython's `PyUnicode_AsUTF8AndSize`: in the stable ABI from 3.10, and exported by
    /// every CPython 3 (PyO3 declares it only for 3.10 and later under the stable ABI).
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::ffi::c_char;
}

/// Calls `f` with the UTF-8 bytes of `s` without copying them (CPython keeps a string's
/// UTF-8 form with it once asked for): a key or value `str` costs no temporary `bytes`.
fn with_utf8<R>(s: &Bound<'_, PyString>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    let mut len: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY:
    // - `s` is a live `str` object (a `Bound` holds a reference to it) and we hold the GIL
    //   (a `Bound` proves it), as the function requires;
    // - `len` is a valid place for the size.
    let p = unsafe { PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut len) };
    if p.is_null() {
        // A string with lone surrogates has no UTF-8 form: the error is set.
        return Err(PyErr::fetch(s.py()));
    }
    let len = usize::try_from(len)
        .map_err(|_| pyo3::exceptions::PySystemError::new_err("a str of negative length"))?;
    // SAFETY: on success the function returns a pointer to `len` bytes (and a NUL) that
    // live as long as the string object, which `s` keeps alive for the whole call of `f`;
    // nothing writes them (a `str` is immutable, and its UTF-8 form is made once).
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    Ok(f(bytes))
}

fn encode_int_key(key: &Bound<'_, PyAny>, buf: &mut Vec<u8>) -> PyResult<()> {
    match key.extract::<i64>() {
        Ok(i) => {
            buf.push(K_INT);
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Err(_) => {
            // Beyond 64 bits: the decimal digits (one spelling per number).
            let int = key.py().get_type::<PyInt>().call1((key,))?;
            buf.push(K_BIGINT);
            buf.extend_from_slice(int.str()?.to_cow()?.as_bytes());
        }
    }
    Ok(())
}

fn decode_key(py: Python<'_>, k: &[u8]) -> PyResult<PyObject> {
    let (&tag, body) = k.split_first().ok_or_else(corrupt_entry)?;
    match tag {
        K_STR => std::str::from_utf8(body)
            .map_err(|_| corrupt_entry())?
            .into_py_any(py),
        K_BYTES => Ok(PyBytes::new(py, body).into_any().unbind()),
        K_INT => i64::from_le_bytes(body.try_into().map_err(|_| corrupt_entry())?).into_py_any(py),
        K_BIGINT => {
            let digits = std::str::from_utf8(body).map_err(|_| corrupt_entry())?;
            Ok(PyInt::type_object(py).call1((digits,))?.unbind())
        }
        K_FLOAT => {
            f64::from_le_bytes(body.try_into().map_err(|_| corrupt_entry())?).into_py_any(py)
        }
        _ => Err(corrupt_entry()),
    }
}

fn decode_value(py: Python<'_>, v: &[u8]) -> PyResult<PyObject> {
    let (&tag, body) = v
        .get(SEQ..)
        .and_then(<[u8]>::split_first)
        .ok_or_else(corrupt_entry)?;
    match tag {
        V_INT => i64::from_le_bytes(body.try_into().map_err(|_| corrupt_entry())?).into_py_any(py),
        V_FLOAT => {
            f64::from_le_bytes(body.try_into().map_err(|_| corrupt_entry())?).into_py_any(py)
        }
        V_STR => std::str::from_utf8(body)
            .map_err(|_| corrupt_entry())?
            .into_py_any(py),
        V_BYTES => Ok(PyBytes::new(py, body).into_any().unbind()),
        V_NONE => Ok(py.None()),
        V_TRUE => true.into_py_any(py),
        V_FALSE => false.into_py_any(py),
        V_PICKLE => Ok(pickle(py)?
            .loads
            .bind(py)
            .call1((PyBytes::new(py, body),))?
            .unbind()),
        _ => Err(corrupt_entry()),
    }
}

struct Pickle {
    dumps: PyObject,
    loads: PyObject,
    protocol: PyObject,
}

fn pickle(py: Python<'_>) -> PyResult<&Pickle> {
    static PICKLE: GILOnceCell<Pickle> = GILOnceCell::new();
    PICKLE.get_or_try_init(py, || {
        let m = py.import("pickle")?;
        Ok(Pickle {
            dumps: m.getattr("dumps")?.unbind(),
            loads: m.getattr("loads")?.unbind(),
            protocol: m.getattr("HIGHEST_PROTOCOL")?.unbind(),
        })
    })
}

fn pickle_into(value: &Bound<'_, PyAny>, v: &mut Vec<u8>) -> PyResult<()> {
    let py = value.py();
    let p = pickle(py)?;
    let bytes = p.dumps.bind(py).call1((value, p.protocol.bind(py)))?;
    v.push(V_PICKLE);
    v.extend_from_slice(bytes.downcast::<PyBytes>()?.as_bytes());
    Ok(())
}

/// A number `incr` works on.
#[derive(Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

/// Why `incr` left a value alone.
enum IncrFail {
    Overflow,
    NotANumber,
}

impl Num {
    fn from_arg(o: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Num>> {
        let Some(o) = o else { return Ok(None) };
        if o.is_instance_of::<PyFloat>() {
            return Ok(Some(Num::F(o.extract()?)));
        }
        if o.is_instance_of::<PyInt>() {
            return o.extract::<i64>().map(|i| Some(Num::I(i))).map_err(|_| {
                PyOverflowError::new_err(format!("incr: {what} does not fit a 64-bit integer"))
            });
        }
        Err(PyTypeError::new_err(format!(
            "incr: {what} must be an int or a float, not {}",
            o.get_type().name()?
        )))
    }

    fn add(self, by: Num) -> Option<Num> {
        Some(match (self, by) {
            (Num::I(a), Num::I(b)) => Num::I(a.checked_add(b)?),
            (Num::I(a), Num::F(b)) => Num::F(a as f64 + b),
            (Num::F(a), Num::I(b)) => Num::F(a + b as f64),
            (Num::F(a), Num::F(b)) => Num::F(a + b),
        })
    }

    /// Tag and 8 bytes.
    fn write(self, out: &mut [u8]) {
        let (tag, bytes) = match self {
            Num::I(i) => (V_INT, i.to_le_bytes()),
            Num::F(f) => (V_FLOAT, f.to_le_bytes()),
        };
        out[0] = tag;
        out[1..9].copy_from_slice(&bytes);
    }
}

fn decode_num(v: &[u8]) -> Result<Num, IncrFail> {
    match v.get(SEQ..) {
        Some([V_INT, b @ ..]) => b
            .try_into()
            .map(|b| Num::I(i64::from_le_bytes(b)))
            .map_err(|_| IncrFail::NotANumber),
        Some([V_FLOAT, b @ ..]) => b
            .try_into()
            .map(|b| Num::F(f64::from_le_bytes(b)))
            .map_err(|_| IncrFail::NotANumber),
        _ => Err(IncrFail::NotANumber),
    }
}
