//! [`Map<K, V>`]: the typed facade over a [`ByteMap`], keys and values of plain-old-data
//! types.

use core::marker::PhantomData;
use core::time::Duration;

use bytemuck::Pod;

use crate::shared::Element;

use super::bytemap::{ByteMapDeadline, Evicted, StackValue, Stacked, Update};
use super::error::{IncrError, InsertError, MapError, UpdateError};
use super::layout::ByteMap;
use super::options::{Geometry, MapOptions};
use crate::wait::Timeout;
use std::time::Instant;

/// A shared hash map from `K` to `V`, both plain old data with an identity
/// ([`Pod`] + [`Element`]): the integers, floats, arrays of them, [`FixedStr`](super::FixedStr)
/// and `#[derive(Element)]` structs. A key is its bytes (two keys are equal when their
/// bytes are), a value is copied in and out whole.
///
/// A [`ByteMap`] underneath with `key_max = size_of::<K>()` and
/// `value_max = size_of::<V>()`; in a region its identity records `K` and `V`, so a
/// `Map<u64, f64>` never opens as a `Map<u32, f64>` ([`Region::typed_map`](crate::Region::typed_map)).
///
/// Reads ([`get`](Self::get), [`contains`](Self::contains), iteration) report a corrupt
/// map as absent entries; writes report it as an error.
///
/// # Examples
///
/// ```
/// use shmstate::{FixedStr, Map};
///
/// let prices = Map::<FixedStr<15>, f64>::new(100)?;
/// let apple = FixedStr::new("apple")?;
/// prices.insert(apple, 1.25)?;
/// assert_eq!(prices.get(&apple), Some(1.25));
/// assert_eq!(prices.insert(apple, 1.5)?, Some(1.25));
/// assert_eq!(prices.len(), 1);
///
/// let hits = Map::<u32, i64>::new(10)?;
/// assert_eq!(hits.incr(&7, 1, 0)?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(transparent)]
pub struct Map<K, V> {
    _types: PhantomData<fn() -> (K, V)>,
    inner: ByteMap,
}

// SAFETY: as for `ByteMap` (`#[repr(transparent)]` over it; `PhantomData` of a function
// pointer type is zero-sized, `Sync`, and holds no `K` or `V`), with a tag that adds `K`'s
// and `V`'s identities; `from_raw_parts` casts `ByteMap`'s pointer, keeping its metadata.
#[cfg(not(loom))]
unsafe impl<K: Pod + Element, V: Pod + Element> crate::shared::Shared for Map<K, V> {
    const TAG: crate::shared::TypeTag = crate::shared::TypeTag::new(
        crate::shared::Kind::MAP,
        crate::Elem::record(
            "Map",
            0,
            0,
            &[
                crate::Field {
                    name: "key",
                    offset: 0,
                    ty: K::ELEM,
                },
                crate::Field {
                    name: "value",
                    offset: 0,
                    ty: V::ELEM,
                },
            ],
        ),
    );
    const ALIGN: usize = <ByteMap as crate::shared::Shared>::ALIGN;

    #[inline]
    fn size_for(len: usize) -> Option<usize> {
        <ByteMap as crate::shared::Shared>::size_for(len)
    }

    #[inline]
    fn from_raw_parts(ptr: core::ptr::NonNull<u8>, len: usize) -> core::ptr::NonNull<Self> {
        let p = <ByteMap as crate::shared::Shared>::from_raw_parts(ptr, len);
        // SAFETY: `new_unchecked` needs a non-null pointer: `p` is. `Map<K, V>` is
        // `#[repr(transparent)]` over `ByteMap` (the cast keeps the metadata).
        unsafe { core::ptr::NonNull::new_unchecked(p.as_ptr() as *mut Map<K, V>) }
    }
}

/// `V`'s bytes, for [`ByteMap::update`].
struct Bytes<V>(V);

impl<V: Pod> AsRef<[u8]> for Bytes<V> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::bytes_of(&self.0)
    }
}

fn read<T: Pod>(b: &[u8]) -> Option<T> {
    bytemuck::try_pod_read_unaligned(b).ok()
}

/// A `T` read out of a value's words (`len` bytes), if the value is a `T`'s size (as
/// [`read`], without a vector in between).
#[inline]
fn pod_of<T: Pod>(words: &[crate::sync::AtomicU64], len: usize) -> Option<T> {
    if len != size_of::<T>() {
        return None;
    }
    let mut t = T::zeroed();
    super::layout::copy_out(words, bytemuck::bytes_of_mut(&mut t));
    Some(t)
}

/// [`Map::get`] with the geometry `geo` of a handle, if any: the value straight onto the
/// stack, as `get_with` reads it, without its closure and nested options (one lookup
/// call, specialised for `K`'s size).
#[inline(always)]
fn get_in<K: Pod, V: Pod>(map: &ByteMap, geo: Option<&Geometry>, key: &K) -> Option<V> {
    let mut stack = StackValue::new();
    match map.read_to_stack(geo, bytemuck::bytes_of(key), &mut stack, None) {
        Ok(Stacked::Value(v)) => read::<V>(v),
        Ok(Stacked::Long) => ByteMapDeadline {
            map,
            dl: None,
            geo: geo.copied(),
        }
        .get_long_with(bytemuck::bytes_of(key), read::<V>)
        .ok()
        .flatten()
        .flatten(),
        Ok(Stacked::Absent) | Err(_) => None,
    }
}

impl<K: Pod + Element, V: Pod + Element> Map<K, V> {
    /// The options of a map from `K` to `V` of `capacity` entries.
    pub fn options(capacity: usize) -> MapOptions {
        MapOptions::new(capacity)
            .key_max(size_of::<K>())
            .value_max(size_of::<V>())
    }

    /// An empty map of `capacity` entries on the heap, with a random hash seed.
    ///
    /// # Errors
    ///
    /// [`MapError::InvalidOptions`] if `capacity` is 0 or above 2^32, `K` is zero-sized or
    /// larger than 1024 bytes, or `V` is larger than 65536 bytes.
    pub fn new(capacity: usize) -> Result<Box<Self>, MapError> {
        Ok(Self::from_bytes(ByteMap::new(Self::options(capacity))?))
    }

    /// [`new`](Self::new) with the hash seed `seed` (see [`ByteMap::with_seed`]).
    ///
    /// # Errors
    ///
    /// As for [`new`](Self::new).
    pub fn with_seed(capacity: usize, seed: [u8; 16]) -> Result<Box<Self>, MapError> {
        Ok(Self::from_bytes(ByteMap::with_seed(
            Self::options(capacity),
            seed,
        )?))
    }

    fn from_bytes(b: Box<ByteMap>) -> Box<Self> {
        let raw = Box::into_raw(b);
        // SAFETY: `Box::from_raw` needs a pointer from `Box::into_raw` of the same layout:
        // `Map<K, V>` is `#[repr(transparent)]` over `ByteMap` (the cast keeps the metadata).
        unsafe { Box::from_raw(raw as *mut Map<K, V>) }
    }

    /// The byte map underneath (keys and values as their bytes).
    pub fn as_bytes(&self) -> &ByteMap {
        &self.inner
    }

    /// The number of entries the map is sized for.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// The number of entries (see [`ByteMap::len`]).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The untimed (`None`) or timed view the operations run through.
    #[inline]
    fn at(&self, dl: Option<Instant>) -> MapDeadline<'_, K, V> {
        MapDeadline {
            _types: PhantomData,
            inner: ByteMapDeadline {
                map: &self.inner,
                dl,
                geo: None,
            },
        }
    }

    /// A handle to this map that validates the map's header once, now, instead of at
    /// every operation (see [`MapHandle`]).
    ///
    /// # Errors
    ///
    /// [`MapError::Corrupt`] if the header is not one a map of this size has.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Map;
    ///
    /// let m = Map::<u64, i64>::new(100)?;
    /// let h = m.handle()?;
    /// assert_eq!(h.incr(&7, 1, 0)?, 1);
    /// assert_eq!(h.get(&7), Some(1));
    /// assert_eq!(m.get(&7), Some(1), "the map and its handles are one map");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self) -> Result<MapHandle<'_, K, V>, MapError> {
        Ok(MapHandle {
            map: self,
            view: MapDeadline {
                _types: PhantomData,
                inner: ByteMapDeadline {
                    map: &self.inner,
                    dl: None,
                    geo: Some(self.inner.geometry()?),
                },
            },
        })
    }

    /// This map, with operations that give up at `deadline` (see [`MapDeadline`]).
    pub fn with_deadline(&self, deadline: Instant) -> MapDeadline<'_, K, V> {
        self.at(Some(deadline))
    }

    /// [`get`](Self::get) that never waits for a writer beyond a brief bounded spin (see
    /// [`ByteMap::try_get`]).
    ///
    /// # Errors
    ///
    /// [`Timeout`] if the key's slot or stripe is in the middle of a write.
    pub fn try_get(&self, key: &K) -> Result<Option<V>, Timeout> {
        self.get_until(key, Instant::now())
    }

    /// [`get`](Self::get) that gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`try_get`](Self::try_get).
    pub fn get_timeout(&self, key: &K, timeout: Duration) -> Result<Option<V>, Timeout> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.get_until(key, d),
            None => Ok(self.get(key)),
        }
    }

    /// [`get`](Self::get) that gives up at `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`try_get`](Self::try_get).
    pub fn get_until(&self, key: &K, deadline: Instant) -> Result<Option<V>, Timeout> {
        self.with_deadline(deadline).get(key)
    }

    /// The value of `key`, if present (and not expired). Lock-free (see [`ByteMap::get`]).
    pub fn get(&self, key: &K) -> Option<V> {
        get_in(&self.inner, None, key)
    }

    /// Whether `key` is present (and not expired).
    pub fn contains(&self, key: &K) -> bool {
        self.inner
            .contains(bytemuck::bytes_of(key))
            .unwrap_or(false)
    }

    fn typed_err(e: InsertError, key: K, value: V) -> InsertError<K, V> {
        e.map(|_| key, |_| value)
    }

    /// Sets `key` to `value`; returns the old value (see [`ByteMap::insert`]).
    ///
    /// # Errors
    ///
    /// [`InsertError::Full`] hands `key` and `value` back; [`InsertError::Corrupt`].
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, InsertError<K, V>> {
        self.at(None).insert(key, value)
    }

    /// Sets `key` to `value` without reading the old value out; whether the key was new
    /// (see [`ByteMap::set`]).
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Map, Region};
    ///
    /// let region = Region::anonymous(1 << 20)?;
    /// let m = region.typed_map::<u64, f64>("prices", 100)?;
    /// assert!(m.set(7, 1.5)?);
    /// assert!(!m.set(7, 2.5)?);
    /// assert_eq!(m.get(&7), Some(2.5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set(&self, key: K, value: V) -> Result<bool, InsertError<K, V>> {
        self.at(None).set(key, value)
    }

    /// Sets `key` to `value` for `ttl` (see [`ByteMap::insert_ttl`]).
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn insert_ttl(
        &self,
        key: K,
        value: V,
        ttl: Duration,
    ) -> Result<Option<V>, InsertError<K, V>> {
        self.at(None).insert_ttl(key, value, ttl)
    }

    /// Inserts `key` only if absent: whether it was inserted (see [`ByteMap::add`]).
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn add(&self, key: K, value: V) -> Result<bool, InsertError<K, V>> {
        self.at(None).add(key, value)
    }

    /// Sets `key` only if present: the old value (see [`ByteMap::replace`]).
    ///
    /// # Errors
    ///
    /// [`MapError::Corrupt`].
    pub fn replace(&self, key: &K, value: V) -> Result<Option<V>, MapError> {
        self.at(None).replace(key, value)
    }

    /// Removes `key`: its value, if it was present (see [`ByteMap::remove`]).
    ///
    /// # Errors
    ///
    /// [`MapError::Corrupt`].
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        self.at(None).remove(key)
    }

    /// Sets `key` to `new` if its value's bytes equal `current`'s; else the value found
    /// (see [`ByteMap::compare_exchange`]).
    ///
    /// # Errors
    ///
    /// [`MapError::Corrupt`].
    pub fn compare_exchange(
        &self,
        key: &K,
        current: V,
        new: V,
    ) -> Result<Result<(), Option<V>>, MapError> {
        self.at(None).compare_exchange(key, current, new)
    }

    /// Reads, modifies and writes the entry of `key` atomically (see [`ByteMap::update`]).
    ///
    /// # Errors
    ///
    /// [`UpdateError::Full`], [`UpdateError::Corrupt`]; [`UpdateError::ForkedInside`] in a
    /// child process forked inside `f` (nothing changes).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Map, Update};
    ///
    /// let m = Map::<u64, f64>::new(10)?;
    /// let doubled = m.update(&1, |v| {
    ///     let n = v.unwrap_or(1.5) * 2.0;
    ///     Update::Set(n, n)
    /// })?;
    /// assert_eq!(doubled, 3.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn update<R>(
        &self,
        key: &K,
        f: impl FnOnce(Option<V>) -> Update<R, V>,
    ) -> Result<R, UpdateError> {
        self.at(None).update(key, f)
    }

    /// Sets `key` to `value`, evicting an entry if the map is full (see
    /// [`ByteMap::insert_evicting`]).
    ///
    /// # Errors
    ///
    /// As for [`ByteMap::insert_evicting`], with `key` and `value` handed back.
    pub fn insert_evicting(&self, key: K, value: V) -> Result<Evicted<K, V>, InsertError<K, V>> {
        self.at(None).insert_evicting(key, value)
    }

    /// Removes every expired entry; how many.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge_expired()
    }

    /// Removes every entry (see [`ByteMap::clear`]).
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// Calls `f` with every entry (see [`ByteMap::for_each`]).
    pub fn for_each(&self, mut f: impl FnMut(K, V)) {
        self.inner.for_each(|k, v| {
            if let (Some(k), Some(v)) = (read(k), read(v)) {
                f(k, v);
            }
        });
    }

    /// Every entry (see [`ByteMap::snapshot`]).
    pub fn snapshot(&self) -> Vec<(K, V)> {
        let mut out = Vec::new();
        self.for_each(|k, v| out.push((k, v)));
        out
    }
}

impl<K: Pod + Element> Map<K, i64> {
    /// Adds `by` to the value of `key` (wrapping), inserting `init + by` if absent; the new
    /// value (see [`ByteMap::incr`]).
    ///
    /// # Errors
    ///
    /// [`IncrError::Full`], [`IncrError::Corrupt`].
    pub fn incr(&self, key: &K, by: i64, init: i64) -> Result<i64, IncrError> {
        self.at(None).incr(key, by, init)
    }
}

/// A [`Map`] whose operations give up at a deadline: made by [`Map::with_deadline`]; the
/// typed form of [`ByteMapDeadline`] (see there).
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use shmstate::Map;
///
/// let m = Map::<u32, i64>::new(10)?;
/// let within = m.with_deadline(Instant::now() + Duration::from_millis(10));
/// within.insert(1, 5)?;
/// assert_eq!(within.incr(&1, 1, 0)?, 6);
/// assert_eq!(within.get(&1)?, Some(6));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MapDeadline<'a, K, V> {
    _types: PhantomData<fn() -> (K, V)>,
    inner: ByteMapDeadline<'a>,
}

impl<K, V> Clone for MapDeadline<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for MapDeadline<'_, K, V> {}

impl<K, V> core::fmt::Debug for MapDeadline<'_, K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("MapDeadline").field(&self.inner).finish()
    }
}

/// A [`Map`] whose header was validated once, when the handle was made ([`Map::handle`]),
/// instead of at every operation: the typed form of [`ByteMapHandle`] (see there for what
/// the handle keeps and why a rewritten header cannot lead it outside the map).
///
/// [`get`](Self::get) and [`contains`](Self::contains) are [`Map`]'s; every other keyed
/// operation is [`MapDeadline`]'s with no deadline (through `Deref`), with the signature
/// of [`Map`]'s: it waits as [`Map`]'s untimed calls do and never returns `Timeout`.
/// Bounded forms come from [`with_deadline`](Self::with_deadline), the map-wide calls
/// (`len`, `clear`, `snapshot`, ...) from [`map`](Self::map).
///
/// [`ByteMapHandle`]: crate::ByteMapHandle
///
/// # Examples
///
/// ```
/// use shmstate::{Map, Region};
///
/// let region = Region::anonymous(1 << 20)?;
/// let prices = region.typed_map::<u64, f64>("prices", 1000)?;
/// let h = prices.handle()?;
/// h.insert(42, 9.5)?;
/// assert_eq!(h.get(&42), Some(9.5));
/// assert!(!h.contains(&43));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MapHandle<'a, K, V> {
    map: &'a Map<K, V>,
    view: MapDeadline<'a, K, V>,
}

impl<K, V> Clone for MapHandle<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for MapHandle<'_, K, V> {}

impl<K, V> core::fmt::Debug for MapHandle<'_, K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MapHandle").finish_non_exhaustive()
    }
}

impl<'a, K, V> core::ops::Deref for MapHandle<'a, K, V> {
    type Target = MapDeadline<'a, K, V>;

    /// The handle's operations: a view with no deadline that uses the handle's layout.
    #[inline]
    fn deref(&self) -> &MapDeadline<'a, K, V> {
        &self.view
    }
}

impl<'a, K: Pod + Element, V: Pod + Element> MapHandle<'a, K, V> {
    /// The map (its map-wide calls validate the header as usual).
    pub fn map(&self) -> &'a Map<K, V> {
        self.map
    }

    /// The value of `key`, if present (and not expired): [`Map::get`].
    pub fn get(&self, key: &K) -> Option<V> {
        get_in(self.view.inner.map, self.view.inner.geo.as_ref(), key)
    }

    /// Whether `key` is present (and not expired): [`Map::contains`].
    pub fn contains(&self, key: &K) -> bool {
        self.view
            .inner
            .contains(bytemuck::bytes_of(key))
            .unwrap_or(false)
    }

    /// The map's operations with the handle's layout, giving up at `deadline` (see
    /// [`MapDeadline`]).
    pub fn with_deadline(&self, deadline: Instant) -> MapDeadline<'a, K, V> {
        MapDeadline {
            _types: PhantomData,
            inner: ByteMapDeadline {
                dl: Some(deadline),
                ..self.view.inner
            },
        }
    }
}

impl<K: Pod + Element, V: Pod + Element> MapDeadline<'_, K, V> {
    /// The value of `key`, if present (and not expired); gives up at the deadline (see
    /// [`ByteMap::get_until`]). A corrupt map reads as absent, as for [`Map::get`].
    ///
    /// # Errors
    ///
    /// [`Timeout`] if a write in the middle of the key's slot or stripe holds the lookup
    /// up past the deadline.
    pub fn get(&self, key: &K) -> Result<Option<V>, Timeout> {
        match self.inner.get_with(bytemuck::bytes_of(key), read::<V>) {
            Ok(v) => Ok(v.flatten()),
            Err(MapError::Timeout) => Err(Timeout),
            Err(_) => Ok(None),
        }
    }

    /// Whether `key` is present (and not expired); gives up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`get`](Self::get).
    pub fn contains(&self, key: &K) -> Result<bool, Timeout> {
        match self.inner.contains(bytemuck::bytes_of(key)) {
            Ok(v) => Ok(v),
            Err(MapError::Timeout) => Err(Timeout),
            Err(_) => Ok(false),
        }
    }

    /// [`Map::insert`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`InsertError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::insert`].
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>, InsertError<K, V>> {
        self.inner
            .insert_taking(
                bytemuck::bytes_of(&key),
                bytemuck::bytes_of(&value),
                0,
                pod_of::<V>,
            )
            .map(Option::flatten)
            .map_err(|e| Map::<K, V>::typed_err(e, key, value))
    }

    /// [`Map::set`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`insert`](Self::insert).
    pub fn set(&self, key: K, value: V) -> Result<bool, InsertError<K, V>> {
        self.inner
            .insert_taking(
                bytemuck::bytes_of(&key),
                bytemuck::bytes_of(&value),
                0,
                |_, _| (),
            )
            .map(|old| old.is_none())
            .map_err(|e| Map::<K, V>::typed_err(e, key, value))
    }

    /// [`Map::insert_ttl`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`InsertError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::insert_ttl`].
    pub fn insert_ttl(
        &self,
        key: K,
        value: V,
        ttl: Duration,
    ) -> Result<Option<V>, InsertError<K, V>> {
        self.inner
            .insert_ttl(bytemuck::bytes_of(&key), bytemuck::bytes_of(&value), ttl)
            .map(|old| old.and_then(|o| read(&o)))
            .map_err(|e| Map::<K, V>::typed_err(e, key, value))
    }

    /// [`Map::add`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`InsertError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::add`].
    pub fn add(&self, key: K, value: V) -> Result<bool, InsertError<K, V>> {
        self.inner
            .add(bytemuck::bytes_of(&key), bytemuck::bytes_of(&value))
            .map_err(|e| Map::<K, V>::typed_err(e, key, value))
    }

    /// [`Map::replace`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`MapError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::replace`].
    pub fn replace(&self, key: &K, value: V) -> Result<Option<V>, MapError> {
        Ok(self
            .inner
            .replace(bytemuck::bytes_of(key), bytemuck::bytes_of(&value))?
            .and_then(|o| read(&o)))
    }

    /// [`Map::remove`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`MapError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::remove`].
    pub fn remove(&self, key: &K) -> Result<Option<V>, MapError> {
        Ok(self
            .inner
            .remove(bytemuck::bytes_of(key))?
            .and_then(|o| read(&o)))
    }

    /// [`Map::compare_exchange`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`MapError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::compare_exchange`].
    pub fn compare_exchange(
        &self,
        key: &K,
        current: V,
        new: V,
    ) -> Result<Result<(), Option<V>>, MapError> {
        Ok(self
            .inner
            .compare_exchange(
                bytemuck::bytes_of(key),
                bytemuck::bytes_of(&current),
                bytemuck::bytes_of(&new),
            )?
            .map_err(|actual| actual.and_then(|a| read(&a))))
    }

    /// [`Map::update`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`UpdateError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::update`].
    pub fn update<R>(
        &self,
        key: &K,
        f: impl FnOnce(Option<V>) -> Update<R, V>,
    ) -> Result<R, UpdateError> {
        self.inner.update(bytemuck::bytes_of(key), |old| {
            match f(old.and_then(read::<V>)) {
                Update::Keep(r) => Update::Keep(r),
                Update::Remove(r) => Update::Remove(r),
                Update::Set(v, r) => Update::Set(Bytes(v), r),
            }
        })
    }

    /// [`Map::insert_evicting`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`InsertError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::insert_evicting`].
    pub fn insert_evicting(&self, key: K, value: V) -> Result<Evicted<K, V>, InsertError<K, V>> {
        match self
            .inner
            .insert_evicting(bytemuck::bytes_of(&key), bytemuck::bytes_of(&value))
        {
            Ok(Evicted::Nothing) => Ok(Evicted::Nothing),
            Ok(Evicted::Replaced(v)) => Ok(read(&v).map_or(Evicted::Nothing, Evicted::Replaced)),
            Ok(Evicted::Entry { key: k, value: v }) => Ok(match (read(&k), read(&v)) {
                (Some(key), Some(value)) => Evicted::Entry { key, value },
                _ => Evicted::Nothing,
            }),
            Err(e) => Err(Map::<K, V>::typed_err(e, key, value)),
        }
    }
}

impl<K: Pod + Element> MapDeadline<'_, K, i64> {
    /// [`Map::incr`], giving up at the deadline.
    ///
    /// # Errors
    ///
    /// [`IncrError::Timeout`] if the key's stripe lock is not acquired by the deadline
    /// (nothing changed); else as for [`Map::incr`].
    pub fn incr(&self, key: &K, by: i64, init: i64) -> Result<i64, IncrError> {
        self.inner.incr(bytemuck::bytes_of(key), by, init)
    }
}
