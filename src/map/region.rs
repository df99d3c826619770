//! Placing maps in a [`Region`]: [`Region::map`], [`Region::open_map`],
//! [`Region::typed_map`], and their error [`MapOpenError`].

use bytemuck::Pod;

use crate::region::{GetError, Region};
use crate::shared::{Element, Shared};
use crate::wait::Timeout;

use super::bytemap::random_seed;
use super::layout::ByteMap;
use super::options::MapOptions;
use super::typed::Map;

/// Why a map could not be placed in or opened from a region.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapOpenError {
    /// The region refused the object (bad name, no room, another type under the name,
    /// ...).
    #[error(transparent)]
    Region(#[from] GetError),
    /// The options are out of range (see [`MapOptions`]).
    #[error("invalid map options: {reason}")]
    InvalidOptions {
        /// What is out of range.
        reason: &'static str,
    },
    /// The map exists with other options than asked for.
    #[error("map `{name}` exists with {found:?}, not {requested:?}")]
    OptionsMismatch {
        /// The map's name.
        name: String,
        /// The options asked for.
        requested: MapOptions,
        /// The options the map was created with.
        found: MapOptions,
    },
    /// The map's header holds values no shmstate build writes, or options that do not
    /// match the object's size.
    #[error("map `{name}` is corrupt: {reason}")]
    Corrupt {
        /// The map's name.
        name: String,
        /// What was found.
        reason: &'static str,
    },
    /// The map was last opened in another boot, and its first opener in this one (this
    /// call) had to remove the entries with a deadline, but a stripe's lock stayed held
    /// (by a stopped process) past the region's [`timeout`](crate::RegionOptions::timeout)
    /// (see "TTL and eviction" in the [map docs](crate::map)). Nothing was removed from
    /// that stripe on; retry.
    #[error("timed out sweeping a map last opened in another boot: a stripe lock stayed held")]
    Timeout,
}

impl From<Timeout> for MapOpenError {
    fn from(Timeout: Timeout) -> Self {
        MapOpenError::Timeout
    }
}

impl Region {
    /// The map `name`, creating it with `options` (and a random hash seed) if there is
    /// none. Exactly one process creates it; every other one gets the same map.
    ///
    /// # Errors
    ///
    /// - [`MapOpenError::InvalidOptions`]: `options` out of range.
    /// - [`MapOpenError::OptionsMismatch`]: the map exists with other options.
    /// - [`MapOpenError::Corrupt`]: the map's header is garbage.
    /// - [`MapOpenError::Region`]: as for [`Region::get_or_init_slice`] (a name of another
    ///   type, no room, ...).
    /// - [`MapOpenError::Timeout`]: the map was last opened in another boot, and a stripe
    ///   lock stayed held past the region's timeout while this call removed the entries
    ///   with a deadline (the first opener after a reboot does; see "TTL and eviction" in
    ///   the [map docs](crate::map)).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{MapOptions, Region};
    ///
    /// let region = Region::anonymous(1 << 20)?;
    /// let sessions = region.map("sessions", MapOptions::new(100).key_max(16).value_max(32))?;
    /// sessions.insert(b"alice", b"logged in")?;
    /// // Another process (or this one) opens the same map.
    /// assert!(region.open_map("sessions")?.contains(b"alice")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map(&self, name: &str, options: MapOptions) -> Result<&ByteMap, MapOpenError> {
        self.place_map::<ByteMap>(name, options)
            .map(|m| m as &ByteMap)
    }

    /// The existing map `name`, with whatever options it was created with.
    ///
    /// # Errors
    ///
    /// [`MapOpenError::Region`] (e.g. [`GetError::NotFound`]), [`MapOpenError::Corrupt`],
    /// [`MapOpenError::Timeout`] (as for [`map`](Self::map)).
    pub fn open_map(&self, name: &str) -> Result<&ByteMap, MapOpenError> {
        let m = self.get::<ByteMap>(name)?;
        m.geometry().map_err(|e| corrupt(name, e))?;
        m.adopt_boot(self.sweep_deadline())?;
        Ok(m)
    }

    /// The typed map `name` from `K` to `V`, creating it with `capacity` entries if there
    /// is none. Its identity records `K` and `V`: a `Map<u64, f64>` is never opened as a
    /// `Map<u32, f64>` (nor as a [`ByteMap`]).
    ///
    /// # Errors
    ///
    /// As for [`map`](Self::map); another `K` or `V` is a [`GetError::TypeMismatch`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{GetError, Map, MapOpenError, Region};
    ///
    /// let region = Region::anonymous(1 << 20)?;
    /// let m = region.typed_map::<u64, f64>("temps", 100)?;
    /// m.insert(1, 20.5)?;
    /// assert!(matches!(
    ///     region.typed_map::<u32, f64>("temps", 100),
    ///     Err(MapOpenError::Region(GetError::TypeMismatch { .. }))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn typed_map<K: Pod + Element, V: Pod + Element>(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<&Map<K, V>, MapOpenError> {
        self.place_map::<Map<K, V>>(name, Map::<K, V>::options(capacity))
    }

    fn place_map<T: Shared + ?Sized + AsByteMap>(
        &self,
        name: &str,
        options: MapOptions,
    ) -> Result<&T, MapOpenError> {
        options
            .validate()
            .map_err(|e| MapOpenError::InvalidOptions {
                reason: match e {
                    super::MapError::InvalidOptions { reason } => reason,
                    _ => "out of range",
                },
            })?;
        let g = options.geometry().ok_or(MapOpenError::InvalidOptions {
            reason: "the map does not fit the address space",
        })?;
        let m = match self.get_or_init_slice::<T>(name, g.lines, |m| {
            m.bytes().write_header(&options, random_seed())
        }) {
            Ok(m) => m,
            // Another length under this name: a map with other options, or another type.
            Err(e @ GetError::TypeMismatch { .. }) => match self.get::<T>(name) {
                Ok(m) => m,
                Err(_) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        let found = m.bytes().geometry().map_err(|e| corrupt(name, e))?;
        if found.options != options {
            return Err(MapOpenError::OptionsMismatch {
                name: name.to_owned(),
                requested: options,
                found: found.options,
            });
        }
        m.bytes().adopt_boot(self.sweep_deadline())?;
        Ok(m)
    }

    /// The deadline of a first opener's sweep after a reboot: the region's timeout.
    fn sweep_deadline(&self) -> Option<std::time::Instant> {
        std::time::Instant::now().checked_add(self.timeout)
    }
}

fn corrupt(name: &str, e: super::MapError) -> MapOpenError {
    MapOpenError::Corrupt {
        name: name.to_owned(),
        reason: match e {
            super::MapError::Corrupt { reason } => reason,
            _ => "bad header",
        },
    }
}

/// The byte map under a map type.
trait AsByteMap {
    fn bytes(&self) -> &ByteMap;
}

impl AsByteMap for ByteMap {
    fn bytes(&self) -> &ByteMap {
        self
    }
}

impl<K: Pod + Element, V: Pod + Element> AsByteMap for Map<K, V> {
    fn bytes(&self) -> &ByteMap {
        self.as_bytes()
    }
}
