//! [`ByteMap`]'s operations: each one a lookup without writes (readers) or one stripe
//! locked for one protocol step (writers).

use core::cell::RefCell;
use core::mem::MaybeUninit;
use core::time::Duration;
use std::time::Instant;

use crate::failpoint::{self, Point};
use crate::sync::{AtomicU64, Ordering};

use super::clock::now_ns;
use super::error::{IncrError, InsertError, MapError, UpdateError};
use super::hash::Place;
use super::layout::{ByteMap, Meta, copy_out};
use super::options::{Geometry, MapOptions};
use super::read::{Clock, Out, READ_RETRIES, next, place_in};
use super::write::{Find, Locked, vec_of};

/// What an [`update`](ByteMap::update) closure decides: keep the entry as it is, set a
/// value, or remove the entry; each with the result `R` that `update` returns.
///
/// `V` is the new value's type: anything that is bytes (`Vec<u8>`, `&[u8]`, `[u8; N]`,
/// ...); a closure that only keeps or removes may need to name it
/// (`Update::<_, Vec<u8>>::Keep(r)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update<R, V = Vec<u8>> {
    /// Leave the entry (or its absence) as it is.
    Keep(R),
    /// Set the value (inserting the key if absent; an existing entry keeps its deadline).
    Set(V, R),
    /// Remove the entry (nothing if absent).
    Remove(R),
}

/// What [`insert_evicting`](ByteMap::insert_evicting) did to make room. `K` and `V` are
/// the key and value types (`Vec<u8>` for a [`ByteMap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evicted<K = Vec<u8>, V = Vec<u8>> {
    /// The key was new and there was room: nothing was evicted.
    Nothing,
    /// The key was present: its old value (nothing was evicted).
    Replaced(V),
    /// The map was full: this entry (the least recently written of the key's stripe, or
    /// an expired one) was evicted to make room.
    Entry {
        /// The evicted key.
        key: K,
        /// Its value.
        value: V,
    },
}

/// The longest value [`ByteMap::get_with`] copies to the stack.
const STACK_VALUE: usize = 128;

/// Words on the stack for a value of up to `STACK_VALUE` bytes
/// ([`ByteMap::read_to_stack`]).
pub(crate) struct StackValue([MaybeUninit<u64>; STACK_VALUE / 8]);

impl StackValue {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Self([const { MaybeUninit::uninit() }; STACK_VALUE / 8])
    }
}

/// What [`ByteMap::read_to_stack`] found.
pub(crate) enum Stacked<'a> {
    /// No such key (or it expired).
    Absent,
    /// The value, copied to the stack.
    Value(&'a [u8]),
    /// A value longer than `STACK_VALUE` bytes: not copied.
    Long,
}

impl ByteMap {
    /// Looks `key` up and copies its value into `stack` (see [`Stacked`]); gives up at
    /// `dl` as [`read`](Self::read) does. Inlined, so that a caller with a key of fixed
    /// size gets a lookup specialised for it.
    #[inline(always)]
    pub(crate) fn read_to_stack<'a>(
        &self,
        geo: Option<&Geometry>,
        key: &[u8],
        stack: &'a mut StackValue,
        dl: Option<Instant>,
    ) -> Result<Stacked<'a>, MapError> {
        let mut len = 0;
        if !self.read(geo, key, Out::Words(&mut stack.0, &mut len), dl)? {
            return Ok(Stacked::Absent);
        }
        if len > STACK_VALUE {
            return Ok(Stacked::Long);
        }
        // SAFETY: `read` returned `true` with `len <= 8 * stack.0.len()`, so it wrote the
        // first `len.div_ceil(8)` words (see `Out::Words`); `len` bytes of them are
        // initialised, inside `stack`, aligned for `u8`, and `stack` is borrowed for as
        // long as the slice lives.
        let v = unsafe { core::slice::from_raw_parts(stack.0.as_ptr().cast::<u8>(), len) };
        Ok(Stacked::Value(v))
    }
}

std::thread_local! {
    /// The copy a [`ByteMap::get_with`] closure sees for a value longer than
    /// `STACK_VALUE` bytes (grown once per thread).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl ByteMap {
    /// An empty map on the heap, with a random hash seed (from the kernel's `getrandom`).
    ///
    /// # Errors
    ///
    /// [`MapError::InvalidOptions`] for options out of range (see [`MapOptions`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(1000).key_max(16).value_max(8))?;
    /// assert_eq!(m.capacity(), 1000);
    /// assert!(m.is_empty());
    /// # Ok::<(), shmstate::MapError>(())
    /// ```
    pub fn new(options: MapOptions) -> Result<Box<ByteMap>, MapError> {
        ByteMap::with_seed(options, random_seed())
    }

    /// An empty map on the heap with the hash seed `seed` (for reproducible layouts in
    /// tests and benchmarks; a map whose seed an attacker knows can be flooded with keys
    /// of one stripe).
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn with_seed(options: MapOptions, seed: [u8; 16]) -> Result<Box<ByteMap>, MapError> {
        options.validate()?;
        let g = options.geometry().ok_or(MapError::InvalidOptions {
            reason: "the map does not fit the address space",
        })?;
        let m = ByteMap::alloc(&g);
        m.write_header(&options, seed);
        Ok(m)
    }

    /// The options the map was created with (all zero if its header is corrupt).
    pub fn options(&self) -> MapOptions {
        self.geometry()
            .map_or(MapOptions::new(0).key_max(0).value_max(0), |g| g.options)
    }

    /// The number of entries the map is sized for (see the capacity rule in the
    /// [module docs](super)).
    pub fn capacity(&self) -> usize {
        self.options().capacity()
    }

    /// The number of entries: exact when no write is in progress, a snapshot otherwise.
    /// Expired entries count until a writer reclaims them ([`purge_expired`]).
    ///
    /// [`purge_expired`]: Self::purge_expired
    pub fn len(&self) -> usize {
        let Ok(g) = self.geometry() else { return 0 };
        self.count(&g).min(g.options.capacity())
    }

    /// The untimed (`None`) or timed view the operations run through.
    #[inline]
    fn at(&self, dl: Option<Instant>) -> ByteMapDeadline<'_> {
        ByteMapDeadline {
            map: self,
            dl,
            geo: None,
        }
    }

    /// A handle to this map that validates the map's header once, now, instead of at
    /// every operation (see [`ByteMapHandle`]): for a process that keeps using one map.
    ///
    /// # Errors
    ///
    /// [`MapError::Corrupt`] if the header is not one a map of this size has.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(100).key_max(16).value_max(8))?;
    /// let h = m.handle()?;
    /// for _ in 0..3 {
    ///     h.incr(b"hits", 1, 0)?;
    /// }
    /// assert_eq!(h.get_with(b"hits", |v| v.to_vec())?, Some(3i64.to_le_bytes().to_vec()));
    /// assert_eq!(m.incr(b"hits", 1, 0)?, 4, "the map and its handles are one map");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self) -> Result<ByteMapHandle<'_>, MapError> {
        Ok(ByteMapHandle {
            view: ByteMapDeadline {
                map: self,
                dl: None,
                geo: Some(self.geometry()?),
            },
        })
    }

    /// This map, with operations that give up at `deadline` (see [`ByteMapDeadline`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.with_deadline(Instant::now() + Duration::from_millis(5)).insert(b"k", b"v")?;
    /// assert!(m.contains(b"k")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn with_deadline(&self, deadline: Instant) -> ByteMapDeadline<'_> {
        self.at(Some(deadline))
    }

    /// [`get`](Self::get) that never waits for a writer beyond a brief bounded spin:
    /// [`MapError::Timeout`] if the key's slot or stripe is in the middle of a write
    /// (a live writer's, or a stopped one's).
    ///
    /// # Errors
    ///
    /// [`MapError::Timeout`]; else as for [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"k", b"v")?;
    /// let mut out = Vec::new();
    /// assert!(m.try_get(b"k", &mut out)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, MapError> {
        self.with_deadline(Instant::now()).get(key, out)
    }

    /// [`get`](Self::get) that gives up after `timeout` ([`MapError::Timeout`]).
    ///
    /// # Errors
    ///
    /// As for [`try_get`](Self::try_get).
    pub fn get_timeout(
        &self,
        key: &[u8],
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<bool, MapError> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.get_until(key, out, d),
            None => self.get(key, out),
        }
    }

    /// [`get`](Self::get) that gives up at `deadline` ([`MapError::Timeout`]).
    ///
    /// # Errors
    ///
    /// As for [`try_get`](Self::try_get).
    pub fn get_until(
        &self,
        key: &[u8],
        out: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<bool, MapError> {
        self.with_deadline(deadline).get(key, out)
    }

    /// [`get_with`](Self::get_with) that gives up at `deadline` ([`MapError::Timeout`]).
    ///
    /// # Errors
    ///
    /// As for [`try_get`](Self::try_get).
    pub fn get_with_until<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
        deadline: Instant,
    ) -> Result<Option<R>, MapError> {
        self.with_deadline(deadline).get_with(key, f)
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the value of `key` into `out` (cleared first). `Ok(false)` if the key is
    /// absent (or expired).
    ///
    /// Writes nothing shared and takes no lock: it copies the entry optimistically and
    /// checks the copy against the slot's and the stripe's sequences, retrying if a writer
    /// raced it (see "Readers" in the [module docs](super)). A write in the middle of the
    /// key's slot or stripe makes it wait until the write ends, or its writer is found dead
    /// and the stripe repaired: a stopped writer holds it up for as long as the stop lasts
    /// ([`get_until`](Self::get_until), [`try_get`](Self::try_get) are bounded).
    ///
    /// # Errors
    ///
    /// [`MapError::KeyTooLong`]; [`MapError::Corrupt`] if the map's header is garbage or a
    /// stripe stays unreadable after a repair.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"k", b"v")?;
    /// let mut out = Vec::new();
    /// assert!(m.get(b"k", &mut out)?);
    /// assert_eq!(out, b"v");
    /// assert!(!m.get(b"nope", &mut out)?);
    /// assert!(out.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, MapError> {
        self.at(None).get(key, out)
    }

    /// Calls `f` with the value of `key`, if present. `f` sees a consistent private copy
    /// (on the stack for a value of up to 128 bytes; else in a per-thread buffer, grown
    /// once: no allocation after the first call with a value that long, except when `f`
    /// itself calls `get_with` on this thread).
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"k", b"value")?;
    /// assert_eq!(m.get_with(b"k", |v| v.len())?, Some(5));
    /// assert_eq!(m.get_with(b"x", |v| v.len())?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, MapError> {
        self.at(None).get_with(key, f)
    }

    /// Whether `key` is present (and not expired).
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub fn contains(&self, key: &[u8]) -> Result<bool, MapError> {
        self.at(None).contains(key)
    }

    /// Sets `key` to `value` (without a deadline); returns the old value.
    ///
    /// Like every write, it locks the key's stripe: it waits for a writer that holds the
    /// lock for as long as it holds it (a stopped one too; a dead one is taken over within
    /// a slice). [`with_deadline`](Self::with_deadline) bounds the wait.
    ///
    /// # Errors
    ///
    /// [`InsertError::Full`] (handing key and value back) if the key is new and the map
    /// holds `capacity` entries or the key's stripe is full; [`InsertError::KeyTooLong`],
    /// [`InsertError::ValueTooLong`]; [`InsertError::Corrupt`] as for [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, InsertError, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(1))?;
    /// assert_eq!(m.insert(b"a", b"1")?, None);
    /// assert_eq!(m.insert(b"a", b"2")?, Some(b"1".to_vec()));
    /// let err = m.insert(b"b", b"3").unwrap_err();
    /// assert_eq!(err, InsertError::Full { key: b"b".to_vec(), value: b"3".to_vec() });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, InsertError> {
        self.at(None).insert(key, value)
    }

    /// Sets `key` to `value`, like [`insert`](Self::insert), without reading the old
    /// value out: Python's `d[key] = value`, Redis' `SET`. Whether the key was new.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, InsertError, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(1))?;
    /// assert!(m.set(b"a", b"1")?, "new");
    /// assert!(!m.set(b"a", b"2")?, "replaced");
    /// let mut out = Vec::new();
    /// assert!(m.get(b"a", &mut out)?);
    /// assert_eq!(out, b"2");
    /// assert!(matches!(m.set(b"b", b"3"), Err(InsertError::Full { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<bool, InsertError> {
        self.at(None).set(key, value)
    }

    /// Sets `key` to `value` for `ttl`: after `ttl` the entry reads as absent, and writers
    /// reclaim it (see "TTL and eviction" in the [module docs](super)). Returns the old
    /// value.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert_ttl(b"session", b"x", Duration::from_secs(3600))?;
    /// assert!(m.contains(b"session")?);
    /// m.insert_ttl(b"gone", b"x", Duration::ZERO)?;
    /// assert!(!m.contains(b"gone")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert_ttl(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, InsertError> {
        self.at(None).insert_ttl(key, value, ttl)
    }

    /// Inserts `key` with `value` only if it is absent (or expired): `Ok(true)` if it
    /// was inserted, `Ok(false)` (nothing changed) if it was present.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// assert!(m.add(b"k", b"first")?);
    /// assert!(!m.add(b"k", b"second")?);
    /// assert_eq!(m.get_with(b"k", |v| v.to_vec())?, Some(b"first".to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add(&self, key: &[u8], value: &[u8]) -> Result<bool, InsertError> {
        self.at(None).add(key, value)
    }

    /// Sets the value of `key` only if it is present: returns the old value, or `None`
    /// (nothing changed) if the key is absent. The entry keeps its deadline.
    ///
    /// # Errors
    ///
    /// [`MapError::KeyTooLong`], [`MapError::ValueTooLong`], [`MapError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// assert_eq!(m.replace(b"k", b"v")?, None);
    /// assert!(!m.contains(b"k")?);
    /// m.insert(b"k", b"1")?;
    /// assert_eq!(m.replace(b"k", b"2")?, Some(b"1".to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replace(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.at(None).replace(key, value)
    }

    /// Removes `key`; returns its value, or `None` if it was absent (or expired).
    ///
    /// The entries after it in its probe run move back (backward-shift deletion): no
    /// tombstone is left, so removals never slow later lookups.
    ///
    /// # Errors
    ///
    /// [`MapError::KeyTooLong`], [`MapError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"k", b"v")?;
    /// assert_eq!(m.remove(b"k")?, Some(b"v".to_vec()));
    /// assert_eq!(m.remove(b"k")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.at(None).remove(key)
    }

    /// Sets `key` to `new` if its value is `current`: `Ok(Ok(()))` if it did, else
    /// `Ok(Err(actual))` with the value found (`None`: the key is absent; nothing is
    /// inserted). The entry keeps its deadline.
    ///
    /// # Errors
    ///
    /// [`MapError::KeyTooLong`], [`MapError::ValueTooLong`] (for `new`),
    /// [`MapError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"state", b"idle")?;
    /// assert_eq!(m.compare_exchange(b"state", b"idle", b"busy")?, Ok(()));
    /// assert_eq!(m.compare_exchange(b"state", b"idle", b"busy")?, Err(Some(b"busy".to_vec())));
    /// assert_eq!(m.compare_exchange(b"other", b"idle", b"busy")?, Err(None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compare_exchange(
        &self,
        key: &[u8],
        current: &[u8],
        new: &[u8],
    ) -> Result<Result<(), Option<Vec<u8>>>, MapError> {
        self.at(None).compare_exchange(key, current, new)
    }

    /// Reads, modifies and writes the entry of `key` atomically: `f` gets the current
    /// value (`None` if absent) and decides ([`Update`]); `update` returns `f`'s result.
    ///
    /// `f` runs with the key's stripe locked: other writers of that stripe wait for it
    /// (readers do not). Keep it short, and do not touch the same map from it (a write to
    /// the same stripe would deadlock: the lock is not reentrant). If `f` panics, the
    /// lock is released and the key's entry is as it was (expired entries met on its probe
    /// run may have been reclaimed before `f` ran).
    ///
    /// # Errors
    ///
    /// [`UpdateError::Full`] if `f` sets an absent key and there is no room;
    /// [`UpdateError::ValueTooLong`] if `f`'s value is too long (nothing changes);
    /// [`UpdateError::ForkedInside`] in a child process forked inside `f` (the stripe
    /// and its lock are the parent's: nothing changes);
    /// [`UpdateError::KeyTooLong`], [`UpdateError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions, Update};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// // Append to a value, creating it if absent.
    /// for part in [&b"ab"[..], b"cd"] {
    ///     m.update(b"log", |old| {
    ///         let mut v = old.unwrap_or_default().to_vec();
    ///         v.extend_from_slice(part);
    ///         Update::Set(v, ())
    ///     })?;
    /// }
    /// assert_eq!(m.get_with(b"log", |v| v.to_vec())?, Some(b"abcd".to_vec()));
    /// let len = m.update(b"log", |old| Update::<_, Vec<u8>>::Remove(old.map(<[u8]>::len)))?;
    /// assert_eq!(len, Some(4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update<R, V: AsRef<[u8]>>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Update<R, V>,
    ) -> Result<R, UpdateError> {
        self.at(None).update(key, f)
    }

    /// Adds `by` to the 8-byte little-endian `i64` value of `key` (wrapping), inserting
    /// `init + by` if the key is absent; returns the new value. The entry keeps its
    /// deadline.
    ///
    /// # Errors
    ///
    /// [`IncrError::NotAnInteger`] if the value is not 8 bytes long (it is left alone);
    /// [`IncrError::Full`] if the key is absent and there is no room;
    /// [`IncrError::ValueTooLong`] if the map's values are shorter than 8 bytes;
    /// [`IncrError::KeyTooLong`], [`IncrError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// assert_eq!(m.incr(b"hits", 1, 100)?, 101);
    /// assert_eq!(m.incr(b"hits", -2, 100)?, 99);
    /// assert_eq!(m.get_with(b"hits", |v| v.to_vec())?, Some(99i64.to_le_bytes().to_vec()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn incr(&self, key: &[u8], by: i64, init: i64) -> Result<i64, IncrError> {
        self.at(None).incr(key, by, init)
    }

    /// Sets `key` to `value` (without a deadline), evicting an entry if the map is full:
    /// an expired entry of the key's stripe if there is one, else the stripe's least
    /// recently written entry; if the key's stripe holds no entry, the least recently
    /// written entry of the next stripe that holds one and is not locked at that moment
    /// (see "TTL and eviction" in the [module docs](super)).
    ///
    /// # Errors
    ///
    /// [`InsertError::Full`] only if no entry can be evicted: the key's stripe holds none
    /// (the rest of the map holds `capacity` entries) and every other stripe is empty or
    /// locked at that moment; [`InsertError::KeyTooLong`],
    /// [`InsertError::ValueTooLong`], [`InsertError::Corrupt`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, Evicted, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(2))?;
    /// assert_eq!(m.insert_evicting(b"a", b"1")?, Evicted::Nothing);
    /// assert_eq!(m.insert_evicting(b"b", b"2")?, Evicted::Nothing);
    /// assert_eq!(m.insert_evicting(b"b", b"3")?, Evicted::Replaced(b"2".to_vec()));
    /// // Full: "a" is the least recently written.
    /// assert_eq!(
    ///     m.insert_evicting(b"c", b"4")?,
    ///     Evicted::Entry { key: b"a".to_vec(), value: b"1".to_vec() }
    /// );
    /// assert_eq!(m.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert_evicting(&self, key: &[u8], value: &[u8]) -> Result<Evicted, InsertError> {
        self.at(None).insert_evicting(key, value)
    }

    /// Makes a map created in another boot (header word 7 records the creator's boot)
    /// this boot's: its deadlines count on a `CLOCK_MONOTONIC` that restarted, so every
    /// entry with a deadline is removed, stripe by stripe under its lock; then the header
    /// records this boot. A process killed midway leaves the old boot recorded, and the
    /// next process to open the map does it again; so does one that gives up at `dl`
    /// (a stripe lock held past it: `Timeout`). Each stripe is checked again under its
    /// lock: once another process finished (the header says this boot), nothing more is
    /// removed, so no deadline set in this boot is taken for an old one. Run by
    /// [`Region::map`](crate::Region::map) and the other region openers, with the
    /// region's timeout; one load when the boots match.
    #[cfg(not(loom))]
    pub(crate) fn adopt_boot(&self, dl: Option<Instant>) -> Result<(), crate::wait::Timeout> {
        let here = super::layout::boot_hash();
        // Acquire: pairs with the Release compare-exchange below, by which another process
        // recorded this boot after its sweep.
        let boot = |m: &ByteMap| m.words()[7].load(Ordering::Acquire);
        let recorded = boot(self);
        if here == 0 || recorded == here {
            return Ok(());
        }
        let Ok(g) = self.geometry() else {
            return Ok(());
        };
        // Every deadline has passed (the clock says `u64::MAX`).
        let mut clock = Clock::at(u64::MAX);
        for s in 0..g.stripes {
            let l = self.lock_stripe_until(&g, s, dl)?;
            if boot(self) == here {
                return Ok(());
            }
            l.purge(&mut clock);
        }
        // Release: pairs with the Acquire loads above (of the processes that open next).
        let _ =
            self.words()[7].compare_exchange(recorded, here, Ordering::Release, Ordering::Relaxed);
        Ok(())
    }

    /// Evicts the least recently written entry of the first stripe after `l`'s that holds
    /// one and whose lock is free now, handing its place to `l`'s stripe (pending there,
    /// see [`Locked::write_held`]); its key and value.
    #[cold]
    fn evict_elsewhere(&self, l: &Locked<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
        let g = l.g;
        (1..g.stripes).find_map(|k| {
            let lk = self.try_lock_stripe(g, (l.s + k) & (g.stripes - 1), l.dl)?;
            let (v, m) = lk.victim()?;
            let e = lk.entry(v, m);
            // A repair in the eviction (garbage met) gave the place back to the map's
            // count: nothing to hand on, and `write_held` then reserves one.
            if lk.evict_keeping_place(v) {
                lk.move_place_to(l);
            }
            Some(e)
        })
    }

    /// Removes every expired entry; returns how many. Locks one stripe at a time, waiting
    /// for each lock as long as a writer holds it (a stopped one too).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"b", b"2")?;
    /// m.insert_ttl(b"a", b"1", Duration::ZERO)?;
    /// assert_eq!(m.len(), 2); // the expired entry still takes room
    /// assert_eq!(m.purge_expired(), 1);
    /// assert_eq!(m.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn purge_expired(&self) -> usize {
        let Ok(g) = self.geometry() else { return 0 };
        let mut clock = Clock::new();
        (0..g.stripes)
            .map(|s| self.lock_stripe(&g, s).purge(&mut clock))
            .sum()
    }

    /// Removes every entry. Locks one stripe at a time, waiting for each lock as long as a
    /// writer holds it (a stopped one too): writes to stripes already cleared stay.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"a", b"1")?;
    /// m.clear();
    /// assert!(m.is_empty() && !m.contains(b"a")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) {
        let Ok(g) = self.geometry() else { return };
        for s in 0..g.stripes {
            let l = self.lock_stripe(&g, s);
            let ss = l.begin_move();
            let mut n = 0;
            for i in 0..g.sps {
                // Relaxed: we hold the lock.
                if l.slot(i).meta().load(Ordering::Relaxed) != 0 {
                    l.clear_slot(i);
                    n += 1;
                    if n == 1 {
                        crate::failpoint::hit(crate::failpoint::Point::MapClearing);
                    }
                }
            }
            l.end_move(ss);
            l.add_count(-n);
        }
    }

    /// Calls `f` with every entry (not expired), stripe by stripe. Each entry is a
    /// consistent copy of one value some writer wrote; the entries are not one snapshot:
    /// a write that lands during the scan may show in one entry and an earlier write not
    /// in another (only a removal's or repair's move of entries makes a stripe's scan start
    /// over, so no entry is seen twice or missed for being moved). Takes no lock unless a
    /// stripe keeps changing under it or a write in it does not end within a brief spin:
    /// then it reads that stripe under its lock (waiting for the lock as long as a writer
    /// holds it, a stopped one too, and repairing a dead writer's leftovers). Never runs
    /// `f` with a lock held.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"a", b"1")?;
    /// m.insert(b"b", b"2")?;
    /// let mut n = 0;
    /// m.for_each(|k, v| n += k.len() + v.len());
    /// assert_eq!(n, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        let Ok(g) = self.geometry() else { return };
        let mut entries = Vec::new();
        for s in 0..g.stripes {
            self.stripe_entries(&g, s, &mut entries);
            for (k, v) in entries.drain(..) {
                f(&k, &v);
            }
        }
    }

    /// Every entry (not expired), as [`for_each`](Self::for_each) sees them.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// m.insert(b"a", b"1")?;
    /// assert_eq!(m.snapshot(), vec![(b"a".to_vec(), b"1".to_vec())]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        self.for_each(|k, v| out.push((k.to_vec(), v.to_vec())));
        out
    }

    /// The entries of stripe `s`: an optimistic copy validated by the stripe's and the
    /// slots' sequences, or (after `READ_RETRIES` races or a long write) a copy under the
    /// lock.
    fn stripe_entries(&self, g: &Geometry, s: usize, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        let mut clock = Clock::new();
        for _ in 0..READ_RETRIES {
            out.clear();
            if self.try_stripe_entries(g, s, &mut clock, out) {
                return;
            }
            crate::sync::spin_loop();
        }
        out.clear();
        let l = self.lock_stripe(g, s);
        for i in 0..g.sps {
            let slot = l.slot(i);
            // Relaxed: we hold the lock.
            let m = Meta(slot.meta().load(Ordering::Relaxed));
            if !m.full_and_valid(g) || clock.expired(slot.expiry().load(Ordering::Relaxed)) {
                continue;
            }
            let mut k = vec![0u8; m.key_len()];
            copy_out(slot.key(), &mut k);
            out.push((k, l.value_vec(i, m)));
        }
    }

    fn try_stripe_entries(
        &self,
        g: &Geometry,
        s: usize,
        clock: &mut Clock,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> bool {
        let head = self.head(g, s);
        // Acquire: as in `try_read`.
        let ss = head.seq.load(Ordering::Acquire);
        if ss & 1 != 0 {
            return false;
        }
        for i in 0..g.sps {
            let slot = self.slot(g, s, i);
            // Acquire: as in `try_read`.
            let q = slot.seq().load(Ordering::Acquire);
            if q & 1 != 0 {
                return false;
            }
            // Relaxed: validated below.
            let m = Meta(slot.meta().load(Ordering::Relaxed));
            if !m.full_and_valid(g) {
                continue;
            }
            let expiry = slot.expiry().load(Ordering::Relaxed);
            let mut k = vec![0u8; m.key_len()];
            copy_out(slot.key(), &mut k);
            let mut v = vec![0u8; m.value_len()];
            copy_out(slot.value(), &mut v);
            // Acquire fence and Relaxed recheck: as in `try_read`.
            crate::sync::fence(Ordering::Acquire);
            if slot.seq().load(Ordering::Relaxed) != q {
                return false;
            }
            if !clock.expired(expiry) {
                out.push((k, v));
            }
        }
        // Acquire fence and Relaxed recheck: as in `try_read`.
        crate::sync::fence(Ordering::Acquire);
        head.seq.load(Ordering::Relaxed) == ss
    }

    /// Checks the value's length against `g` (the key's was checked by `locate`), and
    /// locks the stripe of place `p`.
    #[inline(always)]
    fn lock_for<'a>(
        &'a self,
        g: &'a Geometry,
        p: &Place,
        value: &[u8],
        dl: Option<Instant>,
    ) -> Result<Locked<'a>, MapError> {
        let max = g.options.value_max_len();
        if value.len() > max {
            return Err(MapError::ValueTooLong {
                len: value.len(),
                max,
            });
        }
        Ok(self.lock_stripe_until(g, p.stripe, dl)?)
    }
}

impl Locked<'_> {
    /// [`find`](Self::find) for a key that may be added: `Found`, `Vacant` if the map has
    /// room for it (reclaiming the stripe's expired entries if that makes room), or `None`
    /// (no room).
    ///
    /// A key found at its home slot (the common case) is found inline; everything else
    /// goes on out of line.
    #[inline(always)]
    fn find_room(
        &self,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
    ) -> Result<Option<Find>, MapError> {
        match self.find_at_home(p, key, clock) {
            Some(f) => Ok(Some(f)),
            None => self.find_room_probing(p, key, clock),
        }
    }

    /// [`find_room`](Self::find_room) past the home slot.
    #[inline(never)]
    fn find_room_probing(
        &self,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
    ) -> Result<Option<Find>, MapError> {
        match self.find_probing(p, key, clock)? {
            f @ Find::Found(..) => Ok(Some(f)),
            f @ Find::Vacant(_) if self.below_capacity() => Ok(Some(f)),
            f => self.make_room(p, key, clock, f),
        }
    }

    /// The rest of [`find_room`](Self::find_room) when the first look found no room:
    /// reclaims the stripe's expired entries and looks again.
    #[cold]
    #[inline(never)]
    fn make_room(
        &self,
        p: &Place,
        key: &[u8],
        clock: &mut Clock,
        first: Find,
    ) -> Result<Option<Find>, MapError> {
        let mut found = Some(first);
        for _ in 0..2 {
            let f = match found.take() {
                Some(f) => f,
                None => self.find(p, key, clock)?,
            };
            match f {
                f @ Find::Found(..) => return Ok(Some(f)),
                f @ Find::Vacant(_) if self.below_capacity() => return Ok(Some(f)),
                f => {
                    if self.purge(clock) == 0 {
                        // No expired entry to reclaim: room only if the map's count held
                        // places a dead writer left.
                        return Ok(match f {
                            Find::Vacant(_) if self.heal_count() => Some(f),
                            _ => None,
                        });
                    }
                }
            }
        }
        Ok(None)
    }

    /// Removes the stripe's expired entries; returns how many.
    pub(crate) fn purge(&self, clock: &mut Clock) -> usize {
        let mut n = 0;
        let mut i = 0;
        // Each removal moves later entries back into the slot just checked, which is then
        // checked again: at most `sps` removals and `sps` advances.
        for _ in 0..2 * self.g.sps {
            if i >= self.g.sps {
                break;
            }
            let slot = self.slot(i);
            // Relaxed: we hold the lock.
            let m = Meta(slot.meta().load(Ordering::Relaxed));
            if m.full_and_valid(self.g) && clock.expired(slot.expiry().load(Ordering::Relaxed)) {
                self.remove_at(i);
                n += 1;
            } else {
                i += 1;
            }
        }
        n
    }

    /// The key and value of slot `v`, whose validated meta is `m`.
    fn entry(&self, v: usize, m: Meta) -> (Vec<u8>, Vec<u8>) {
        let mut k = vec![0u8; m.key_len()];
        copy_out(self.slot(v).key(), &mut k);
        (k, self.value_vec(v, m))
    }

    /// The entry to evict from this stripe: the least recently written (its expired
    /// entries were reclaimed before: `find_room`). `None` if the stripe is empty.
    fn victim(&self) -> Option<(usize, Meta)> {
        let mut best: Option<(u64, usize, Meta)> = None;
        let mut i = 0;
        for _ in 0..self.g.sps {
            let slot = self.slot(i);
            // Relaxed: we hold the lock.
            let m = Meta(slot.meta().load(Ordering::Relaxed));
            if m.full_and_valid(self.g) {
                let stamp = slot.stamp().load(Ordering::Relaxed);
                if best.is_none_or(|(b, ..)| stamp < b) {
                    best = Some((stamp, i, m));
                }
            }
            i = next(i, self.g.sps);
        }
        best.map(|(_, i, m)| (i, m))
    }
}

/// A [`ByteMap`] whose operations give up at a deadline: made by
/// [`ByteMap::with_deadline`]. Its methods mirror [`ByteMap`]'s and fail with a `Timeout`
/// error (nothing changed) if the deadline passes while they wait: for a stripe lock a
/// writer holds (a reader waits only behind a write in the middle of the key's slot or
/// stripe, or for the lock after a race). A deadline already passed makes a `try_` form:
/// one attempt, with a brief bounded spin.
///
/// One view type rather than a timed twin of each method: the deadline is one argument
/// given once, every operation keeps its name and its error type, and a view built for a
/// batch of operations bounds the batch's total wait.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use shmstate::{ByteMap, MapOptions};
///
/// let m = ByteMap::new(MapOptions::new(10))?;
/// let within = m.with_deadline(Instant::now() + Duration::from_millis(10));
/// within.insert(b"k", b"v")?;
/// assert_eq!(within.incr(b"n", 1, 0)?, 1);
/// assert_eq!(within.get_with(b"k", |v| v.to_vec())?, Some(b"v".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct ByteMapDeadline<'a> {
    pub(crate) map: &'a ByteMap,
    /// `None` only for the untimed calls of [`ByteMap`] and of a [`ByteMapHandle`], which
    /// go through this type.
    pub(crate) dl: Option<Instant>,
    /// A handle's geometry, validated when the handle was made; `None`: validate the
    /// header at each operation.
    pub(crate) geo: Option<Geometry>,
}

impl core::fmt::Debug for ByteMapDeadline<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ByteMapDeadline")
            .field("deadline", &self.dl)
            .finish_non_exhaustive()
    }
}

impl<'a> ByteMapDeadline<'a> {
    /// The map.
    pub fn map(&self) -> &'a ByteMap {
        self.map
    }

    /// The map's geometry (the handle's, or validated now into `tmp`) and `key`'s place.
    #[inline(always)]
    fn locate<'s>(
        &'s self,
        tmp: &'s mut Option<Geometry>,
        key: &[u8],
    ) -> Result<(&'s Geometry, Place), MapError> {
        let g = self.map.geometry_in(self.geo.as_ref(), tmp)?;
        Ok((g, place_in(g, key)?))
    }

    /// [`ByteMap::get`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`MapError::Timeout`] if the deadline passes while a writer of the key's slot or stripe
    /// (alive, or stopped) is in the middle of a write; else as for [`ByteMap::get`].
    pub fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, MapError> {
        out.clear();
        let found = self
            .map
            .read(self.geo.as_ref(), key, Out::Vec(out), self.dl)?;
        if !found {
            out.clear();
        }
        Ok(found)
    }

    /// [`ByteMap::get_with`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    #[inline]
    pub fn get_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, MapError> {
        // A value up to `STACK_VALUE` bytes is copied to the stack; a longer one into the
        // thread's scratch buffer.
        let mut stack = StackValue::new();
        match self
            .map
            .read_to_stack(self.geo.as_ref(), key, &mut stack, self.dl)?
        {
            Stacked::Absent => Ok(None),
            Stacked::Value(v) => Ok(Some(f(v))),
            Stacked::Long => self.get_long_with(key, f),
        }
    }

    /// [`get_with`](Self::get_with) of a value longer than `STACK_VALUE` bytes: a copy
    /// into the thread's scratch buffer (out of line, so that the common short value's
    /// lookup stays small enough to inline).
    #[cold]
    #[inline(never)]
    pub(crate) fn get_long_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, MapError> {
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut buf) => {
                if self
                    .map
                    .read(self.geo.as_ref(), key, Out::Vec(&mut buf), self.dl)?
                {
                    // The closure runs with the buffer released, so that it may call
                    // `get_with` again.
                    let v = core::mem::take(&mut *buf);
                    drop(buf);
                    let r = f(&v);
                    *s.borrow_mut() = v;
                    Ok(Some(r))
                } else {
                    Ok(None)
                }
            }
            Err(_) => {
                let mut buf = Vec::new();
                Ok(self
                    .map
                    .read(self.geo.as_ref(), key, Out::Vec(&mut buf), self.dl)?
                    .then(|| f(&buf)))
            }
        })
    }

    /// [`ByteMap::contains`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    #[inline]
    pub fn contains(&self, key: &[u8]) -> Result<bool, MapError> {
        self.map.read(self.geo.as_ref(), key, Out::Nothing, self.dl)
    }

    /// [`ByteMap::insert`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`InsertError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`ByteMap::insert`].
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, InsertError> {
        self.insert_with_expiry(key, value, 0)
    }

    /// [`ByteMap::set`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    #[inline]
    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<bool, InsertError> {
        self.insert_taking(key, value, 0, |_, _| ())
            .map(|old| old.is_none())
    }

    /// [`ByteMap::insert_ttl`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn insert_ttl(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, InsertError> {
        self.insert_with_expiry(key, value, deadline(ttl))
    }

    fn insert_with_expiry(
        &self,
        key: &[u8],
        value: &[u8],
        expiry: u64,
    ) -> Result<Option<Vec<u8>>, InsertError> {
        self.insert_taking(key, value, expiry, vec_of)
    }

    /// The insert of `key` (with `expiry`) that hands the old value, if any, to `take`
    /// (its words and its length in bytes, read under the stripe lock before the
    /// overwrite) and returns what `take` made of it: the typed map reads its `V` out of
    /// the words without a vector.
    #[inline]
    pub(crate) fn insert_taking<O>(
        &self,
        key: &[u8],
        value: &[u8],
        expiry: u64,
        take: impl FnOnce(&[AtomicU64], usize) -> O,
    ) -> Result<Option<O>, InsertError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, value, self.dl)?;
        let mut clock = Clock::new();
        match l.find_room(&p, key, &mut clock)? {
            Some(Find::Found(i, m)) => {
                let old = take(l.slot(i).value(), m.value_len());
                l.write_value(i, m, value, Some(expiry));
                Ok(Some(old))
            }
            Some(Find::Vacant(i)) if l.write_new(i, &p, key, value, expiry) => Ok(None),
            _ => Err(full(key, value)),
        }
    }

    /// [`ByteMap::add`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn add(&self, key: &[u8], value: &[u8]) -> Result<bool, InsertError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, value, self.dl)?;
        let mut clock = Clock::new();
        match l.find_room(&p, key, &mut clock)? {
            Some(Find::Found(..)) => Ok(false),
            Some(Find::Vacant(i)) if l.write_new(i, &p, key, value, 0) => Ok(true),
            _ => Err(full(key, value)),
        }
    }

    /// [`ByteMap::replace`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`MapError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`ByteMap::replace`].
    pub fn replace(&self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, value, self.dl)?;
        let mut clock = Clock::new();
        match l.find(&p, key, &mut clock)? {
            Find::Found(i, m) => {
                let old = l.value_vec(i, m);
                l.write_value(i, m, value, None);
                Ok(Some(old))
            }
            _ => Ok(None),
        }
    }

    /// [`ByteMap::remove`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`replace`](Self::replace).
    pub fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, &[], self.dl)?;
        let mut clock = Clock::new();
        match l.find(&p, key, &mut clock)? {
            Find::Found(i, m) => {
                let old = l.value_vec(i, m);
                l.remove_at(i);
                Ok(Some(old))
            }
            _ => Ok(None),
        }
    }

    /// [`ByteMap::compare_exchange`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`replace`](Self::replace).
    pub fn compare_exchange(
        &self,
        key: &[u8],
        current: &[u8],
        new: &[u8],
    ) -> Result<Result<(), Option<Vec<u8>>>, MapError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, new, self.dl)?;
        let mut clock = Clock::new();
        match l.find(&p, key, &mut clock)? {
            Find::Found(i, m) => {
                let old = l.value_vec(i, m);
                if old == current {
                    l.write_value(i, m, new, None);
                    Ok(Ok(()))
                } else {
                    Ok(Err(Some(old)))
                }
            }
            _ => Ok(Err(None)),
        }
    }

    /// [`ByteMap::update`], giving up at the deadline (`f` is not called if it passes).
    ///
    /// # Errors
    ///
    /// [`UpdateError::Timeout`] if the key's stripe lock is not acquired by the deadline;
    /// else as for [`ByteMap::update`].
    pub fn update<R, V: AsRef<[u8]>>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Update<R, V>,
    ) -> Result<R, UpdateError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, &[], self.dl)?;
        let mut clock = Clock::new();
        let found = l.find_room(&p, key, &mut clock)?;
        let (slot, old) = match found {
            Some(Find::Found(i, m)) => (Some((i, m)), Some(l.value_vec(i, m))),
            _ => (None, None),
        };
        let update = f(old.as_deref());
        if !l.held_here() {
            // The closure returned in a child forked inside it: the stripe is its
            // parent's, which holds its lock; write nothing.
            return Err(UpdateError::ForkedInside);
        }
        match update {
            Update::Keep(r) => Ok(r),
            Update::Remove(r) => {
                if let Some((i, _)) = slot {
                    l.remove_at(i);
                }
                Ok(r)
            }
            Update::Set(v, r) => {
                let v = v.as_ref();
                let max = l.g.options.value_max_len();
                if v.len() > max {
                    return Err(UpdateError::ValueTooLong { len: v.len(), max });
                }
                match (slot, found) {
                    (Some((i, m)), _) => l.write_value(i, m, v, None),
                    (None, Some(Find::Vacant(i))) if l.write_new(i, &p, key, v, 0) => {}
                    _ => return Err(UpdateError::Full),
                }
                Ok(r)
            }
        }
    }

    /// [`ByteMap::incr`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`IncrError::Timeout`] if the key's stripe lock is not acquired by the deadline;
    /// else as for [`ByteMap::incr`].
    #[inline]
    pub fn incr(&self, key: &[u8], by: i64, init: i64) -> Result<i64, IncrError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, &[0; 8], self.dl)?;
        let mut clock = Clock::new();
        match l.find_room(&p, key, &mut clock)? {
            Some(Find::Found(i, m)) => {
                if m.value_len() != 8 {
                    return Err(IncrError::NotAnInteger { len: m.value_len() });
                }
                let mut b = [0u8; 8];
                copy_out(l.slot(i).value(), &mut b);
                let n = i64::from_le_bytes(b).wrapping_add(by);
                l.write_value(i, m, &n.to_le_bytes(), None);
                Ok(n)
            }
            Some(Find::Vacant(i))
                if l.write_new(i, &p, key, &init.wrapping_add(by).to_le_bytes(), 0) =>
            {
                Ok(init.wrapping_add(by))
            }
            _ => Err(IncrError::Full),
        }
    }

    /// [`ByteMap::insert_evicting`], giving up at the deadline (it never waits for
    /// another stripe's lock).
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn insert_evicting(&self, key: &[u8], value: &[u8]) -> Result<Evicted, InsertError> {
        let mut tmp = None;
        let (g, p) = self.locate(&mut tmp, key)?;
        let l = self.map.lock_for(g, &p, value, self.dl)?;
        let mut clock = Clock::new();
        match l.find_room(&p, key, &mut clock)? {
            Some(Find::Found(i, m)) => {
                let old = l.value_vec(i, m);
                l.write_value(i, m, value, Some(0));
                return Ok(Evicted::Replaced(old));
            }
            Some(Find::Vacant(i)) if l.write_new(i, &p, key, value, 0) => {
                return Ok(Evicted::Nothing);
            }
            _ => {}
        }
        // The victim's place goes straight to the new entry (pending in this stripe's
        // count word, the map's count unchanged): no insert elsewhere can take it between
        // the eviction and the write.
        let evicted = match l.victim() {
            Some((v, m)) => {
                let e = l.entry(v, m);
                // A repair in the eviction gave the place back: `write_held` reserves.
                let _ = l.evict_keeping_place(v);
                e
            }
            // The key's stripe holds no entry while the map holds `capacity`: evict from
            // another stripe, one that is free right now (never waiting while holding ours).
            None => match self.map.evict_elsewhere(&l) {
                Some(e) => e,
                None => return Err(full(key, value)),
            },
        };
        failpoint::hit(Point::MapEvicted);
        match l.find(&p, key, &mut clock) {
            Ok(Find::Vacant(i)) if l.write_held(i, &p, key, value, 0) => Ok(Evicted::Entry {
                key: evicted.0,
                value: evicted.1,
            }),
            // Not reached unless a peer wrote garbage into the stripe: its repair gave the
            // held place back, and the map filled again meanwhile.
            r => {
                l.release_held();
                r?;
                Err(full(key, value))
            }
        }
    }
}

/// A [`ByteMap`] whose header was validated once, when the handle was made
/// ([`ByteMap::handle`]), instead of at every operation: its keyed operations are
/// [`ByteMap`]'s (through [`ByteMapDeadline`], with no deadline), each without the load
/// and check of the seven header words, and [`with_deadline`](Self::with_deadline) makes
/// timed views that skip the check too.
///
/// The handle keeps its own copy of the map's layout and hash seed. A map's header is
/// written once, before the map is shared, so the copy stays right; if another process
/// rewrites the header later (a bug or an attack), the handle keeps using the layout it
/// validated, which fits the map's memory, and goes on treating every slot's bytes as
/// untrusted, as every operation does: a hostile header cannot make a handle read or
/// write outside the map. The map's own calls see the rewritten header: garbage makes
/// them fail [`MapError::Corrupt`]; another header that validates (a new seed, say) makes
/// them use the new layout while the handle keeps the old, so the two disagree on where
/// keys live (see "Hostile bytes" in the [module docs](super)).
///
/// The handle's operations are [`ByteMapDeadline`]'s with no deadline: they wait as the
/// map's untimed calls do and never return `Timeout`. Bounded forms come from
/// [`with_deadline`](Self::with_deadline); the map-wide calls (`len`, `clear`,
/// `for_each`, `snapshot`, ...) from [`map`](ByteMapDeadline::map), which validates the
/// header as the map's calls do.
///
/// Handles are cheap to copy; make one per thread or share one.
///
/// # Examples
///
/// ```
/// use shmstate::{MapOptions, Region};
///
/// let region = Region::anonymous(1 << 20)?;
/// let limits = region.map("limits", MapOptions::new(1000).key_max(32).value_max(8))?;
/// let h = limits.handle()?;
/// assert_eq!(h.incr(b"client:7", 1, 0)?, 1);
/// assert!(h.contains(b"client:7")?);
/// assert_eq!(h.map().len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy)]
pub struct ByteMapHandle<'a> {
    view: ByteMapDeadline<'a>,
}

impl core::fmt::Debug for ByteMapHandle<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ByteMapHandle").finish_non_exhaustive()
    }
}

impl<'a> core::ops::Deref for ByteMapHandle<'a> {
    type Target = ByteMapDeadline<'a>;

    /// The handle's operations: a view with no deadline that uses the handle's layout.
    #[inline]
    fn deref(&self) -> &ByteMapDeadline<'a> {
        &self.view
    }
}

impl<'a> ByteMapHandle<'a> {
    /// The map's operations with the handle's layout, giving up at `deadline` (see
    /// [`ByteMapDeadline`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shmstate::{ByteMap, MapOptions};
    ///
    /// let m = ByteMap::new(MapOptions::new(10))?;
    /// let h = m.handle()?;
    /// h.with_deadline(Instant::now() + Duration::from_millis(5)).insert(b"k", b"v")?;
    /// assert!(h.contains(b"k")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_deadline(&self, deadline: Instant) -> ByteMapDeadline<'a> {
        ByteMapDeadline {
            dl: Some(deadline),
            ..self.view
        }
    }
}

/// The deadline `ttl` from now, in `CLOCK_MONOTONIC` nanoseconds of the initial time
/// namespace ([`now_ns`]; never 0, which means "no deadline").
fn deadline(ttl: Duration) -> u64 {
    let ns = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
    now_ns().saturating_add(ns).max(1)
}

fn full(key: &[u8], value: &[u8]) -> InsertError {
    InsertError::Full {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

/// A random seed from the kernel (`getrandom`); falls back to the clock and the thread
/// id if the call fails (it does not on Linux ≥ 3.17 unless seccomp forbids it).
pub(crate) fn random_seed() -> [u8; 16] {
    let mut seed = [0u8; 16];
    let mut filled = 0;
    for _ in 0..8 {
        match rustix::rand::getrandom(&mut seed[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
        if filled == 16 {
            return seed;
        }
    }
    let t = now_ns() ^ (u64::from(crate::owner::current()) << 40);
    seed[..8].copy_from_slice(&t.to_le_bytes());
    seed[8..].copy_from_slice(
        &t.rotate_left(29)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .to_le_bytes(),
    );
    seed
}

/// Test hooks: raw access for hostile-bytes tests and table statistics.
#[cfg(any(test, feature = "test-hooks"))]
impl ByteMap {
    /// Every word of the map's memory except the stripe-head lines (header, count, slots),
    /// for tests that write hostile bytes. Not part of the API.
    #[doc(hidden)]
    pub fn raw_words(&self) -> Vec<&crate::sync::AtomicU64> {
        let Ok(g) = self.geometry() else {
            return self.words().iter().take(16).collect();
        };
        let w = self.words();
        let heads =
            super::options::HEADER_LINES * 8..(super::options::HEADER_LINES + g.stripes) * 8;
        w.iter()
            .enumerate()
            .filter(|(i, _)| !heads.contains(i))
            .map(|(_, a)| a)
            .collect()
    }

    /// The stripe-head words (lock, structure sequence, count) of every stripe, for tests
    /// that write hostile bytes. Not part of the API.
    #[doc(hidden)]
    pub fn raw_stripe_words(
        &self,
    ) -> Vec<(
        &crate::sync::AtomicU32,
        &crate::sync::AtomicU64,
        &crate::sync::AtomicU64,
    )> {
        let Ok(g) = self.geometry() else {
            return Vec::new();
        };
        (0..g.stripes)
            .map(|s| {
                let h = self.head(&g, s);
                (h.lock.word(), &h.seq, &h.count)
            })
            .collect()
    }

    /// The longest and the total displacement (probe distance from home) over all
    /// entries, and the number of entries, read without synchronisation (for quiescent
    /// maps in tests). Not part of the API.
    #[doc(hidden)]
    pub fn probe_stats(&self) -> (usize, usize, usize) {
        let Ok(g) = self.geometry() else {
            return (0, 0, 0);
        };
        let (mut max, mut total, mut n) = (0, 0, 0);
        for s in 0..g.stripes {
            for i in 0..g.sps {
                // Relaxed: a quiescent map.
                let m = Meta(self.slot(&g, s, i).meta().load(Ordering::Relaxed));
                if m.full_and_valid(&g) {
                    let d = super::write::dist(m.home(), i, g.sps);
                    max = max.max(d);
                    total += d;
                    n += 1;
                }
            }
        }
        (max, total, n)
    }

    /// Every full slot as (stripe, slot, home, key), read without synchronisation (for
    /// quiescent maps in tests). Not part of the API.
    #[doc(hidden)]
    pub fn raw_slots(&self) -> Vec<(usize, usize, usize, Vec<u8>)> {
        let Ok(g) = self.geometry() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in 0..g.stripes {
            for i in 0..g.sps {
                let slot = self.slot(&g, s, i);
                // Relaxed: a quiescent map.
                let m = Meta(slot.meta().load(Ordering::Relaxed));
                if m.full_and_valid(&g) {
                    let mut k = vec![0u8; m.key_len()];
                    copy_out(slot.key(), &mut k);
                    out.push((s, i, m.home(), k));
                }
            }
        }
        out
    }

    /// The stripe and home slot of `key` in a map made by this version with `options` and
    /// `seed` (layout version 2, SipHash-1-3; a pure function: no map needed). Not part of
    /// the API.
    #[doc(hidden)]
    pub fn place_of(options: MapOptions, seed: [u8; 16], key: &[u8]) -> Option<(usize, usize)> {
        let mut g = options.geometry()?;
        g.seed = super::hash::seed_keys(&seed);
        let p = super::hash::place(&g, super::hash::key_hash(&g, key));
        Some((p.stripe, p.home))
    }

    /// Stripes and slots per stripe. Not part of the API.
    #[doc(hidden)]
    pub fn stripe_geometry(&self) -> (usize, usize) {
        self.geometry().map_or((0, 0), |g| (g.stripes, g.sps))
    }
}
