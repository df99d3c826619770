//! [`ReadOnlyRegion`]: a region mapped `PROT_READ`, for tools that look without touching.

use std::path::Path;

use super::directory::{EntryInfo, EntryState};
use super::error::{OpenError, RemoveError};
use super::file::{Region, RegionOptions};
use super::format::{EntrySnapshot, state};
use crate::Kind;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::values::histogram::{self, HistogramSnapshot};

/// A region opened for reading only (`O_RDONLY`, mapped `PROT_READ`), after the same
/// header and directory checks as [`Region::open`]: the handle for inspection tools,
/// which must not write a byte of a region that live processes use, and which need no
/// write permission on the file.
///
/// It lists the directory and loads single words; it hands out no objects, because every
/// primitive has storing methods and a store through a read-only mapping faults. Each
/// access is one atomic load (`Acquire`, at most 8 bytes), which is allowed on read-only
/// memory. What the words mean is each primitive's layout, documented on its fields.
///
/// # Examples
///
/// ```
/// use shmstate::region::ReadOnlyRegion;
/// use shmstate::{Counter, Region};
///
/// let path = std::env::temp_dir().join(format!("shmstate-doc-ro-{}", std::process::id()));
/// let region = Region::create(&path, 1 << 16)?;
/// region.get_or_default::<Counter>("hits")?.add(5);
///
/// let view = ReadOnlyRegion::open(&path)?;
/// let hits = &view.entries()[0];
/// assert_eq!(hits.name, "hits");
/// // A `Counter` is one u64 at the start of its object.
/// assert_eq!(view.load_u64(hits.offset), Some(5));
/// # drop(region); std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ReadOnlyRegion {
    /// A region over a read-only mapping; only its load-only parts are ever used.
    region: Region,
    /// Device and inode of the file mapped.
    file: (u64, u64),
}

// A tool may share one handle between threads.
static_assertions::assert_impl_all!(ReadOnlyRegion: Send, Sync);

impl ReadOnlyRegion {
    /// Wraps a region whose mapping is read-only (from `RegionOptions::open_read_only`).
    pub(super) fn new(region: Region, file: (u64, u64)) -> Self {
        ReadOnlyRegion { region, file }
    }

    /// Opens the region at `path` for reading only.
    ///
    /// # Errors
    ///
    /// As [`RegionOptions::open`] ([`OpenError::NotFound`], [`OpenError::Refused`], the
    /// validation errors, [`OpenError::Io`]; permission denied needs only read access to
    /// pass), except [`OpenError::Retired`]: a removed region whose file is still in place
    /// opens, and [`is_retired`](Self::is_retired) says so.
    pub fn open(path: impl AsRef<Path>) -> Result<ReadOnlyRegion, OpenError> {
        RegionOptions::new().open_read_only(path)
    }

    /// The region's size in bytes, now: a region that grows ([`RegionOptions::max_size`])
    /// may have grown since this view was opened, and the view follows it (its loads
    /// reach objects created in the new part).
    pub fn size(&self) -> usize {
        self.region.size()
    }

    /// The largest size the region may grow to ([`Region::max_size`]).
    pub fn max_size(&self) -> usize {
        self.region.max_size()
    }

    /// The number of directory entries.
    pub fn capacity(&self) -> usize {
        self.region.capacity()
    }

    /// A snapshot of the directory, as [`Region::entries`] gives it (loads only).
    pub fn entries(&self) -> Vec<EntryInfo> {
        self.region.entries()
    }

    /// How the data area is used, as [`Region::space`] reports it (loads only).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::region::ReadOnlyRegion;
    /// use shmstate::{Counter, Region};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-ro-space-{}", std::process::id()));
    /// let region = Region::create(&path, 1 << 16)?;
    /// region.get_or_default::<Counter>("hits")?;
    /// let view = ReadOnlyRegion::open(&path)?;
    /// assert_eq!(view.space(), region.space());
    /// assert_eq!(view.space().used, 64);
    /// # drop(region); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn space(&self) -> super::SpaceInfo {
        self.region.space()
    }

    /// The processes listed as having the region open, one entry per process, each
    /// probed for liveness, as [`Region::attached`] lists them, except that dead ones
    /// are listed too (with `alive: false`; a read-only handle cannot free their words).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::region::ReadOnlyRegion;
    /// use shmstate::Region;
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-ro-att-{}", std::process::id()));
    /// let region = Region::create(&path, 1 << 16)?;
    /// let view = ReadOnlyRegion::open(&path)?; // not listed itself
    /// let listed = view.attached();
    /// assert_eq!((listed.len(), listed[0].pid, listed[0].alive), (1, std::process::id(), true));
    /// # drop(region); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attached(&self) -> Vec<super::lifecycle::Attached> {
        super::lifecycle::attached(self.region.raw(), &self.region.geo, false)
    }

    /// Removes the region file at `path` as [`Region::remove_unused`] does, if `path`
    /// still names the very file this view maps (same device and inode): what a tool
    /// decided from this view (nobody alive attached, created with
    /// [`remove_when_unused`](RegionOptions::remove_when_unused)) then holds for the file
    /// it removes, not for another one put at the path since.
    ///
    /// # Errors
    ///
    /// As [`Region::remove_unused`], and [`RemoveError::Replaced`] if `path` names
    /// another file now.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::region::ReadOnlyRegion;
    /// use shmstate::{Region, RemoveError};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-ro-rm-{}", std::process::id()));
    /// drop(Region::create(&path, 1 << 16)?);
    /// let view = ReadOnlyRegion::open(&path)?;
    /// // Another region takes its place meanwhile.
    /// std::fs::remove_file(&path)?;
    /// let other = Region::create(&path, 1 << 16)?;
    /// drop(other);
    /// assert!(matches!(view.remove_unused(&path), Err(RemoveError::Replaced)));
    /// assert!(path.exists());
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_unused(&self, path: impl AsRef<Path>) -> Result<(), RemoveError> {
        super::lifecycle::remove_path(path.as_ref(), false, Some(self.file))
    }

    /// Whether the region was created with
    /// [`remove_when_unused`](RegionOptions::remove_when_unused).
    pub fn remove_when_unused(&self) -> bool {
        self.region.remove_when_unused()
    }

    /// Whether the region has been removed or is being removed (`RETIRED`): no process
    /// starts using it any more.
    pub fn is_retired(&self) -> bool {
        self.life_word() & super::format::life::PHASE == super::format::life::RETIRED
    }

    /// Whether a process had the region open without being listed (its attach table was
    /// full, or, on a failure path, a fork child was left without a table word): then [`attached`](Self::attached) may miss users, and the region is never
    /// removed unless forced.
    pub fn has_unlisted(&self) -> bool {
        self.life_word() & super::format::life::UNLISTED != 0
    }

    fn life_word(&self) -> u32 {
        self.region.raw().header().map_or(0, |h| {
            // Acquire: a snapshot for tools (the only ordering used on read-only mappings
            // here); the word is self-contained.
            h.life.load(Ordering::Acquire)
        })
    }

    /// The state of the [`Histogram`](crate::Histogram) that `entry` (from
    /// [`entries`](Self::entries)) describes: bounds, cumulative bucket counts, sum and
    /// count, read by the decoder behind [`Histogram::snapshot`](crate::Histogram::snapshot)
    /// and the metrics renderer. `None` if the entry is not a ready histogram, or its
    /// header or bounds do not decode (whatever bytes a peer wrote: the read stays within
    /// the object and is bounded by its length).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::region::ReadOnlyRegion;
    /// use shmstate::Region;
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-ro-hist-{}", std::process::id()));
    /// let region = Region::create(&path, 1 << 16)?;
    /// let h = region.histogram("latency", &[0.1, 1.0])?;
    /// h.observe(0.0625);
    /// h.observe(0.5);
    ///
    /// let view = ReadOnlyRegion::open(&path)?;
    /// let s = view.histogram(&view.entries()[0]).unwrap();
    /// assert_eq!((s.count, s.sum, s.cumulative), (2, 0.5625, vec![1, 2, 2]));
    /// # drop(region); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn histogram(&self, entry: &EntryInfo) -> Option<HistogramSnapshot> {
        if entry.state != EntryState::Ready || entry.tag.kind != Kind::HISTOGRAM {
            return None;
        }
        // A histogram is `len` lines of 64 bytes.
        let lines = usize::try_from(entry.len).ok()?;
        if entry.size != entry.len.checked_mul(64)? {
            return None;
        }
        histogram::decode(lines, |w| self.object_word(entry, w))
    }

    /// The state of the channel `entry` describes (messages waiting, bytes used, closed,
    /// lost), decoded from the mapping without writing to it; `None` if `entry` is not a
    /// ready channel or its words cannot be read.
    pub fn channel(&self, entry: &EntryInfo) -> Option<crate::channel::ChannelSnapshot> {
        if entry.state != EntryState::Ready || entry.tag.kind != Kind::CHANNEL {
            return None;
        }
        let ring_words = usize::try_from(entry.len).ok()?;
        crate::channel::decode(ring_words, |w| self.object_word(entry, w))
    }

    /// Word `w` (8 bytes each, from the object's start) of the object `entry` describes,
    /// with an Acquire load (see [`load_u64`](Self::load_u64)); `None` past the object's
    /// end or the region's: the decoders never read another object's words.
    fn object_word(&self, entry: &EntryInfo, w: usize) -> Option<u64> {
        let off = u64::try_from(w).ok()?.checked_mul(8)?;
        if off >= entry.size {
            return None;
        }
        self.load_u64(entry.offset.checked_add(off)?)
    }

    /// The region underneath, for the crate's load-only readers (the metrics renderer).
    pub(crate) fn as_region(&self) -> &Region {
        &self.region
    }

    /// The state of the map ([`ByteMap`](crate::ByteMap) or [`Map`](crate::Map)) `entry`
    /// describes (capacity, entries, key and value limits, stripes and slots, and with
    /// `with_keys` the keys of its live entries), decoded from the mapping without
    /// writing to it or taking a lock; `None` if `entry` is not a ready map, its header
    /// does not validate as the map's own operations validate it, or its words cannot be
    /// read. Listing the keys reads every slot a bounded number of times; a slot a writer
    /// is busy on is left out.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::region::ReadOnlyRegion;
    /// use shmstate::{MapOptions, Region};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-ro-map-{}", std::process::id()));
    /// let region = Region::create(&path, 1 << 20)?;
    /// let m = region.map("sessions", MapOptions::new(100))?;
    /// m.insert(b"alice", b"1")?;
    ///
    /// let view = ReadOnlyRegion::open(&path)?;
    /// let s = view.map(&view.entries()[0], true).unwrap();
    /// assert_eq!((s.len, s.capacity), (1, 100));
    /// assert_eq!(s.keys, Some(vec![b"alice".to_vec()]));
    /// # drop(region); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn map(&self, entry: &EntryInfo, with_keys: bool) -> Option<crate::map::MapSnapshot> {
        if entry.state != EntryState::Ready || entry.tag.kind != Kind::MAP {
            return None;
        }
        // A map is `len` lines of 64 bytes.
        let lines = usize::try_from(entry.len).ok()?;
        if entry.size != entry.len.checked_mul(64)? {
            return None;
        }
        crate::map::decode(lines, |w| self.object_word(entry, w), with_keys)
    }

    /// The 32-bit word at byte `offset` from the region's start, if it is 4-aligned and
    /// within the region; `None` otherwise. An `Acquire` load, so that data a peer
    /// published with a release store before this word is visible to later loads.
    pub fn load_u32(&self, offset: u64) -> Option<u32> {
        self.region.load_u32_at(offset)
    }

    /// The 64-bit word at byte `offset`, if it is 8-aligned and within the region.
    /// An `Acquire` load, as for [`load_u32`](Self::load_u32).
    pub fn load_u64(&self, offset: u64) -> Option<u64> {
        self.region.load_u64_at(offset)
    }
}

/// A ready directory entry, as [`Region::for_each_ready_entry`] hands it out: the fields
/// of an [`EntryInfo`] that a reader of the object needs, the name as stored (bytes,
/// not checked for UTF-8).
pub(crate) struct ReadyEntry<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) tag: crate::TypeTag,
    pub(crate) len: u64,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// Single-word loads at an offset, for readers that decode objects from their documented
/// layout (the read-only view above, and the metrics renderer over a writable region).
/// Loads only: allowed on a read-only mapping as on a writable one.
impl Region {
    /// As [`ReadOnlyRegion::load_u32`].
    pub(crate) fn load_u32_at(&self, offset: u64) -> Option<u32> {
        let ptr = self.word_ptr(offset, 4)?;
        // SAFETY: `ptr` is 4-aligned and its 4 bytes lie within the live mapping (checked
        // by `word_ptr`), which `self` keeps mapped for the reference's short life. Any
        // bits are a valid `AtomicU32`, and other processes write this memory only with
        // atomics; an atomic load of 4 bytes is allowed on read-only memory.
        let word = unsafe { &*ptr.cast::<AtomicU32>() };
        // Acquire: pairs with whatever release store the primitive's protocol makes on
        // this word (a lock's unlock, a counter's publication).
        Some(word.load(Ordering::Acquire))
    }

    /// As [`ReadOnlyRegion::load_u64`].
    pub(crate) fn load_u64_at(&self, offset: u64) -> Option<u64> {
        let ptr = self.word_ptr(offset, 8)?;
        // SAFETY: as in `load_u32_at`, with 8 bytes and 8-alignment (the mapping's base is
        // page-aligned, so an 8-aligned offset gives an 8-aligned address).
        let word = unsafe { &*ptr.cast::<AtomicU64>() };
        // Acquire: as in `load_u32_at`.
        Some(word.load(Ordering::Acquire))
    }

    /// Calls `f` with every ready entry of the directory, in directory order, as
    /// [`entries`](Self::entries) lists them but without allocating: the metrics
    /// renderer's one pass over the directory at each scrape. Loads only.
    pub(crate) fn for_each_ready_entry(&self, mut f: impl FnMut(&ReadyEntry<'_>)) {
        let raw = self.raw();
        for index in 0..self.geo.capacity {
            let Some(e) = raw.entry(&self.geo, index) else {
                break;
            };
            // Acquire: pairs with the owner's release transitions, which publish the
            // fields (as in `entries`).
            let s = e.state.load(Ordering::Acquire);
            if state::phase(s) != state::READY {
                continue;
            }
            // A copy whose generation held: one object's fields, not a mix of two while
            // the entry is reused (an entry that keeps changing is left out of this pass).
            let Some(snap) = EntrySnapshot::read_settled(e) else {
                continue;
            };
            f(&ReadyEntry {
                // A name without its terminator is the whole field, as `entries` has it.
                name: snap.name_bytes().unwrap_or(&snap.name),
                tag: snap.tag,
                len: snap.len,
                offset: snap.offset,
                size: snap.size,
            });
        }
    }

    /// The address of the `width`-byte word at `offset`, if aligned and in bounds. From
    /// the mapping's mutable pointer, as every atomic the region hands out is.
    fn word_ptr(&self, offset: u64, width: usize) -> Option<*mut u8> {
        let offset = usize::try_from(offset).ok()?;
        if !offset.is_multiple_of(width) {
            return None;
        }
        // Past what this process has seen the file cover, its length is read again (the
        // region grew); past the end of the file, nothing is read.
        self.raw_covering(offset.checked_add(width)?)?;
        // SAFETY: `offset + width <= size`, the mapping's length: in bounds.
        Some(unsafe { self.map.as_mut_ptr().add(offset) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Counter;

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn the_ready_entry_pass_sees_what_entries_lists() {
        let region = Region::anonymous(1 << 16).unwrap();
        region.get_or_default::<Counter>("a").unwrap();
        region.histogram("h{x=\"1\"}", &[1.0, 2.0]).unwrap();
        region
            .get_or_default_slice::<crate::StripedCounter>("s", 4)
            .unwrap();
        let mut seen = Vec::new();
        region.for_each_ready_entry(|e| {
            seen.push((
                String::from_utf8(e.name.to_vec()).unwrap(),
                e.tag,
                e.len,
                e.offset,
                e.size,
            ))
        });
        let listed: Vec<_> = region
            .entries()
            .into_iter()
            .filter(|e| e.state == EntryState::Ready)
            .map(|e| (e.name, e.tag, e.len, e.offset, e.size))
            .collect();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen, listed);
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps a file")]
    fn loads_see_what_a_writer_stored_and_refuse_bad_offsets() {
        let path = std::env::temp_dir().join(format!("shmstate-ro-unit-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let region = Region::create(&path, 1 << 16).unwrap();
        region.get_or_default::<Counter>("c").unwrap().add(7);
        let view = ReadOnlyRegion::open(&path).unwrap();
        let e = &view.entries()[0];
        assert_eq!((e.name.as_str(), view.load_u64(e.offset)), ("c", Some(7)));
        region.get::<Counter>("c").unwrap().add(1);
        assert_eq!(view.load_u64(e.offset), Some(8), "a live view, not a copy");
        assert_eq!(view.load_u32(e.offset + 2), None, "misaligned");
        assert_eq!(view.load_u64(e.offset + 4), None, "misaligned");
        assert_eq!(view.load_u32(1 << 16), None, "past the end");
        assert_eq!(view.load_u32(u64::MAX - 3), None, "overflow");
        assert_eq!(view.load_u32((1 << 16) - 4), Some(0), "last word");
        assert_eq!(view.size(), region.size());
        drop(view);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            ReadOnlyRegion::open(&path),
            Err(OpenError::NotFound(_))
        ));
    }
}
