//! Backings and mapping: the `Region` handle, created on a path, a sealed memfd or
//! anonymous shared memory, and opened from a path or a descriptor.
//!
//! # Race-free creation
//!
//! A region file is never visible half-built. [`RegionOptions::create`] builds it as an
//! unnamed `O_TMPFILE` in the target directory (or, where the filesystem lacks
//! `O_TMPFILE`, under a unique temporary name opened `O_CREAT|O_EXCL|O_NOFOLLOW`), sets
//! its mode, reserves its space with `fallocate` (so a full tmpfs fails here, not with a
//! `SIGBUS` later), writes the header, and only then `link`s it to its name. `link` fails
//! with `EEXIST` if another creator won; [`RegionOptions::open_or_create`] then opens
//! theirs. A creator that dies mid-way leaves nothing behind (an `O_TMPFILE` vanishes
//! with its descriptor; a named temporary file may be left in the fallback case).
//!
//! # Growth
//!
//! A region created with [`RegionOptions::max_size`] above its size grows on demand (the
//! protocol is in [`format`](super::format)): the mapping covers the maximum from the
//! start, and a handle touches nothing past the file length it has itself observed.
//! The handle keeps a duplicate of the file's descriptor for that (`fstat` when it
//! first meets an object beyond what it has verified; `fallocate` to grow).
//!
//! # Crash windows (growth)
//!
//! Growth needs no lock of its own: extending a file is idempotent and never shrinks it,
//! and the size word only rises (`fetch_max`), so a grower's steps need no order with
//! anyone else's. It runs inside object creation, which holds the region's creation lock
//! (see [`remove`](super::remove)): creators take turns, so one grower at a time.
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | file being extended (`fallocate` running) | a file extended in part, or not at all; the size word unchanged | nothing to repair: the next process that needs room extends it again, at its call (failpoint test `a_grower_killed_before_extending_leaves_nothing_to_repair`) |
//! | file extended, size word not yet raised | a file longer than its size word | nothing waits: openers accept a file between the size and the maximum; the next grower finds the file covering the room it needs and only raises the word (without `fallocate`, and without a descriptor: also a handle opened when the file had already reached the maximum), at its call (failpoint test `a_grower_killed_after_extending_is_finished_by_the_next`; the state made by hand at the maximum: `an_opener_after_an_extension_to_the_maximum_still_allocates`) |
//! | size word raised | a grown region, its new space not yet allocated | — (allocation goes on as in a region that never grew) |
//!
//! Growth runs while the growing process holds the creation lock and the directory entry
//! it claimed for the new object (`CLAIMED`, name not yet published): a grower killed at
//! any step leaves both to the next creator, which probes the lock's holder and takes it
//! over within a slice (the creation crash windows in [`remove`](super::remove)), and its
//! extension of the file stays (harmless: see above). A grower stopped (SIGSTOP) stalls
//! other creators of new objects as any stopped creator does: they wait up to the
//! region's timeout, then return [`GetError::Timeout`]; lookups of existing objects are
//! not held up. Its claim is left alone, and published once it continues (failpoint test
//! `a_stopped_growers_claim_is_left_alone_and_published_when_it_continues` in
//! `tests/region_grow.rs`).
//!
//! # Limits
//!
//! If another process truncates a region's file while it is mapped, accesses beyond the
//! new end raise `SIGBUS` (as for any mapped file); so can pages of a file that another
//! process extended sparsely (`ftruncate`) or punched holes in, once the filesystem is
//! full: these file operations, unlike writes into the region, are beyond the crate's
//! checks. A memfd region is sealed against
//! shrinking (and, unless it may grow, against growing), so it cannot be truncated.
//! A region grows only on a filesystem with `fallocate` (tmpfs, ext4, xfs, btrfs, ...):
//! creating one with a maximum above its size elsewhere fails.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{AtFlags, CWD, FallocateFlags, FileType, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use super::error::{CreateError, GetError, OpenError, OpenOrCreateError};
use super::format::{
    self, DEFAULT_CAPACITY, Geometry, HEADER_SIZE, MAX_CAPACITY, OBJECT_ALIGN, Raw, data_start_for,
    flags,
};
use super::lifecycle::{Life, PathRef};
use super::validate;
use crate::sync::{AtomicU32, AtomicUsize, Ordering};

/// How long the `get_or_*` calls and [`Region::get`] wait, by default, for another process
/// to finish creating an object.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A mapped region: a file (or memfd, or anonymous shared memory) of a size fixed at
/// creation, or growing up to a maximum fixed at creation
/// ([`RegionOptions::max_size`]), holding named, typed objects that several processes
/// use at once.
///
/// Objects are placed and found with [`get_or_default`](Region::get_or_default),
/// [`get_or_init`](Region::get_or_init) (and their `_slice` forms for slice-shaped types)
/// and [`get`](Region::get); they live as long as the `Region` they were borrowed from.
/// `Region` is `Send + Sync`: threads may share one handle.
///
/// # Examples
///
/// ```
/// use shmstate::Region;
///
/// let dir = std::env::temp_dir().join(format!("shmstate-doc-region-{}", std::process::id()));
/// let region = Region::open_or_create(&dir, 1 << 16)?;
/// assert_eq!(region.size(), 1 << 16);
/// let again = Region::open(&dir)?; // another process would do the same
/// assert_eq!(again.capacity(), region.capacity());
/// # std::fs::remove_file(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Region {
    pub(super) map: MmapRaw,
    pub(super) geo: Geometry,
    pub(crate) timeout: Duration,
    fd: Option<OwnedFd>,
    /// The file (or memfd) of a region that may grow, when `fd` does not hold it: to
    /// read its length (`fstat`) and extend it (`fallocate`).
    grow_fd: Option<OwnedFd>,
    /// Bytes from the start that this process has seen the file cover (`fstat`, or its
    /// own successful `fallocate`): the bound of every access. Only rises, from
    /// `geo.total` up to `geo.max`.
    verified: AtomicUsize,
    /// Its table word and the path it may remove ([`lifecycle`](super::lifecycle)).
    pub(super) life: Life,
    /// The entries this handle has marked itself a user of ([`remove`](super::remove)).
    pub(super) pins: std::sync::Arc<super::remove::Pins>,
}

// `Region` must stay usable from any thread (the API contract).
static_assertions::assert_impl_all!(Region: Send, Sync);

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("size", &self.size())
            .field("max_size", &self.geo.max)
            .field("capacity", &self.geo.capacity)
            .field("fd", &self.fd)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

/// Options for creating or opening a [`Region`]: file mode, directory capacity, and how
/// long to wait for other processes.
///
/// # Examples
///
/// ```
/// use shmstate::RegionOptions;
/// use std::time::Duration;
///
/// let region = RegionOptions::new()
///     .capacity(8)
///     .timeout(Duration::from_secs(1))
///     .anonymous(64 * 1024)?;
/// assert_eq!(region.capacity(), 8);
/// # Ok::<(), shmstate::RegionError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RegionOptions {
    mode: u32,
    capacity: u32,
    timeout: Duration,
    remove_when_unused: bool,
    max_size: Option<u64>,
    recreate_stale_format: bool,
}

impl Default for RegionOptions {
    fn default() -> Self {
        RegionOptions::new()
    }
}

impl RegionOptions {
    /// Mode 0600, 64 directory entries, a 5 s timeout.
    pub fn new() -> Self {
        RegionOptions {
            mode: 0o600,
            capacity: DEFAULT_CAPACITY,
            timeout: DEFAULT_TIMEOUT,
            remove_when_unused: false,
            max_size: None,
            recreate_stale_format: false,
        }
    }

    /// Permission bits of a file created on a path (default 0600; set exactly, not
    /// masked by the umask).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o7777;
        self
    }

    /// Number of named objects a created region can hold (default 64, at most
    /// [`MAX_CAPACITY`](crate::region::MAX_CAPACITY); clamped to `1..=MAX_CAPACITY`).
    pub fn capacity(mut self, entries: u32) -> Self {
        self.capacity = entries.clamp(1, MAX_CAPACITY);
        self
    }

    /// How long the `get_or_*` calls and [`Region::get`] wait for another live process to
    /// finish creating an object before returning [`GetError::Timeout`](crate::GetError::Timeout).
    /// Opening waits as long at most (in all) for a process recreating a stale format
    /// ([`recreate_stale_format`](Self::recreate_stale_format)) to release the file,
    /// then returns [`OpenError::Timeout`](crate::OpenError::Timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether a region file created with these options is removed when the last process
    /// that has it open detaches (default `false`: the file and its state persist).
    ///
    /// Recorded in the file at creation, so that every process follows it: opening an
    /// existing region ignores this option. The last handle to be dropped, in whichever
    /// process, removes the file; a process killed with the region open leaves it to
    /// the next one that opens it (which uses it, and removes it when it detaches in
    /// turn) or to `shmstate gc`. An opener racing the removal gets a fresh region
    /// (from [`open_or_create`](Self::open_or_create)) or
    /// [`OpenError::NotFound`](crate::OpenError::NotFound), never the removed file. The
    /// protocol and its limits: [`lifecycle`](crate::region::lifecycle).
    ///
    /// Dropping a handle of such a region may wait, at most the region's
    /// [`timeout`](Self::timeout), for another process's removal in progress (a few
    /// syscalls, unless that process is stopped).
    ///
    /// Memfd and anonymous regions have no path and vanish with their last user anyway:
    /// the option does nothing for them.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Counter, RegionOptions};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-rwu-{}", std::process::id()));
    /// let options = RegionOptions::new().remove_when_unused(true);
    /// let a = options.open_or_create(&path, 1 << 16)?;
    /// let b = options.open_or_create(&path, 1 << 16)?; // as another process would
    /// b.get_or_default::<Counter>("hits")?.add(1);
    /// drop(a);
    /// assert!(path.exists(), "b still has it open");
    /// drop(b);
    /// assert!(!path.exists(), "the last one removed it");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_when_unused(mut self, remove: bool) -> Self {
        self.remove_when_unused = remove;
        self
    }

    /// The largest size, in bytes, a region created with these options may grow to
    /// (default: its size; it does not grow).
    ///
    /// When an object does not fit, the process creating it extends the file: the size
    /// doubles (at least enough for the object), capped at `max_size` and at the
    /// process's file size limit (`RLIMIT_FSIZE`); if the filesystem has no room for
    /// that, it grows by just what the object needs. Objects never
    /// move, so references stay valid; every process maps the whole maximum from the
    /// start (address space only) and starts using the new part when it first needs an
    /// object there. The space is reserved with `fallocate`, so growth that the
    /// filesystem cannot back (a full tmpfs) fails the call that needed it
    /// ([`GetError::GrowFailed`]), never a later access with `SIGBUS`. An object that
    /// would end past the file size limit fails the same way (`EFBIG`) without
    /// extending the file, so the process never gets `SIGXFSZ` (whose default action
    /// ends it) from growth.
    ///
    /// Growth runs under the creation lock (as every creation does) and costs the growing
    /// call one `fallocate` of the new part
    /// (not of the whole file), which this call does not bound by its
    /// [`timeout`](Self::timeout). Another process that truncates, sparsely extends or
    /// punches holes in the file (file operations, not writes into the region) is out
    /// of the crate's reach: touching an unbacked page then raises `SIGBUS` (a full
    /// filesystem) as for any mapped file.
    ///
    /// Recorded in the region at creation: opening an existing region ignores it. A path
    /// region grows on filesystems with `fallocate`; a memfd or anonymous region made
    /// with a maximum is not sealed against growing (a memfd sealed with `F_SEAL_GROW`
    /// and opened with [`Region::from_fd`] fails each growth with
    /// [`GetError::GrowFailed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Counter, RegionOptions, ValueArray};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-grow-{}", std::process::id()));
    /// let region = RegionOptions::new().max_size(1 << 24).create(&path, 1 << 16)?;
    /// let hits = region.get_or_default::<Counter>("hits")?;
    /// // 1 MiB does not fit in 64 KiB: the region grows to 2 MiB for it.
    /// region.get_or_default_slice::<ValueArray<u64>>("samples", 1 << 17)?;
    /// assert_eq!((region.size(), region.max_size()), (1 << 21, 1 << 24));
    /// hits.add(1); // still valid
    /// # drop(region); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Whether [`open`](Self::open) and [`open_or_create`](Self::open_or_create) replace
    /// a region file of an older format than this build's, that no live process uses,
    /// with a new, empty region (default `false`: such a file fails the open with
    /// [`OpenError::VersionMismatch`], forever).
    ///
    /// The old file's objects are lost: use it for state that is rebuilt anyway (caches,
    /// metrics) when a new build replaces an old one. Only a file with shmstate's magic
    /// and an older version is replaced; a newer version (a newer build's region) or
    /// anything else fails as without the option. "No live process uses it" is decided
    /// by the kernel's list of every process's mappings (`/proc/<pid>/maps`), since an
    /// old format's own records cannot be trusted: a process that maps the file, or whose
    /// mappings cannot be read and that may have opened it, fails the open with
    /// [`OpenError::StaleInUse`] naming it. The kernel must also grant a read lease on
    /// the file (`F_SETLEASE`), which it does only while no process has it open for
    /// writing: this catches writers `/proc` does not show (`hidepid`, another PID
    /// namespace), and needs the recreating process to own the file (or to have
    /// `CAP_LEASE`) on a filesystem with leases. Any number of processes may race on
    /// this: one recreates the region, the others open the new one. The new region has
    /// the size given to `open_or_create` (for `open`: the old file's length) and these
    /// options.
    ///
    /// While the lease is held (a few syscalls), opens of the file for writing wait:
    /// every `open` of this crate retries until its [`timeout`](Self::timeout) (then
    /// [`OpenError::Timeout`]), a blocking open by other software waits for the release
    /// (up to `/proc/sys/fs/lease-break-time`, 45 s by default, if the recreating
    /// process is stopped there), and the kernel sends `SIGURG` to the recreating
    /// process (ignored by default; a program with its own `SIGURG` handler sees a
    /// spurious one).
    ///
    /// Limits: a process that maps the old file only read-only and that this process
    /// cannot see in `/proc` (another PID namespace, `hidepid`) is not detected, and
    /// keeps reading the unlinked old file; so does a process of the older build that
    /// opens the old file between the check and the replacement. Stop the older build's
    /// processes before upgrading.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{OpenError, Region, RegionOptions};
    /// use std::os::unix::fs::FileExt;
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-stale-{}", std::process::id()));
    /// drop(Region::create(&path, 1 << 16)?);
    /// // As if an older build had made it: format version 1 (the word at byte 8).
    /// std::fs::OpenOptions::new().write(true).open(&path)?.write_all_at(&1u32.to_ne_bytes(), 8)?;
    /// assert!(matches!(Region::open(&path), Err(OpenError::VersionMismatch { found: 1, .. })));
    /// let region = RegionOptions::new().recreate_stale_format(true).open_or_create(&path, 1 << 16)?;
    /// assert_eq!(region.entries().len(), 0); // a new, empty region
    /// # drop(region); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recreate_stale_format(mut self, recreate: bool) -> Self {
        self.recreate_stale_format = recreate;
        self
    }

    /// Creates a new region file of `size` bytes at `path`; fails if anything exists
    /// there (including a symbolic link).
    ///
    /// # Errors
    ///
    /// [`CreateError::AlreadyExists`] if the path exists; [`CreateError::InvalidSize`] if
    /// `size` cannot hold the directory; [`CreateError::InvalidMaxSize`] if
    /// [`max_size`](Self::max_size) is below it;
    /// [`CreateError::Io`] if the directory does not exist, permission is denied, there
    /// is no space (`ENOSPC`) for `size` bytes, `size` is past the process's file size
    /// limit (`EFBIG`, without raising `SIGXFSZ`), or the region may grow and the
    /// filesystem has no `fallocate`.
    pub fn create(&self, path: impl AsRef<Path>, size: u64) -> Result<Region, CreateError> {
        let path = path.as_ref();
        let geo = self.geometry(size)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = TempFile::new(dir, path, self.mode)?;
        rustix::fs::fchmod(&tmp.fd, Mode::from_raw_mode(self.mode))?;
        reserve(&tmp.fd, size, geo.max > geo.total)?;
        let map = map(&tmp.fd, geo.max)?;
        format::write_header(raw_of(&map, geo.total), &geo);
        let path_ref = PathRef::new(path, &tmp.fd)?;
        let grow_fd = (geo.max > geo.total)
            .then(|| tmp.fd.try_clone())
            .transpose()?;
        let mut region = self.region(map, geo, None);
        region.grow_fd = grow_fd;
        // Attached before the file has a name: nobody can see it unattached (a `gc` in
        // between would otherwise find a region with nobody in it). Nobody else can see
        // it at all yet, so it cannot be retired.
        let _ = region.attach(Some(path_ref));
        if !region.remove_when_unused() {
            region.life.forget_path();
        }
        if let Err(e) = tmp.link_to(path) {
            // Never published: nothing to remove when the handle is dropped.
            region.life.forget_path();
            return Err(e);
        }
        Ok(region)
    }

    /// Opens the existing region at `path` and validates it.
    ///
    /// # Errors
    ///
    /// [`OpenError::NotFound`]; [`OpenError::Refused`] for a symbolic link or
    /// anything but a regular file; the validation errors ([`OpenError::Truncated`],
    /// [`OpenError::BadMagic`], [`OpenError::VersionMismatch`],
    /// [`OpenError::LayoutMismatch`], [`OpenError::WrongSize`],
    /// [`OpenError::Corrupt`]); [`OpenError::Retired`] if the region was removed but its
    /// file is still in place after the timeout (the process removing it is stopped);
    /// [`OpenError::Timeout`] if a process recreating a stale format held its lease on
    /// the file (or, with [`recreate_stale_format`](Self::recreate_stale_format), its
    /// lock) past the timeout; with `recreate_stale_format`,
    /// [`OpenError::StaleInUse`]; [`OpenError::Io`] otherwise.
    ///
    /// A region being removed at this moment (its last process detaching) is never
    /// returned: the open waits for the removal and then finds nothing
    /// ([`OpenError::NotFound`]) or the new file created at the path since.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Region, OpenError> {
        self.open_path(path.as_ref(), None)
    }

    /// Opens the region at `path` for reading only: the file is opened `O_RDONLY`, mapped
    /// `PROT_READ`, and its header and directory are validated exactly as
    /// [`open`](Self::open) does. The result only lists and loads: see
    /// [`ReadOnlyRegion`](crate::region::ReadOnlyRegion). Unlike `open`, a region that was
    /// removed but whose file is still in place is returned as it is (for tools to see:
    /// [`ReadOnlyRegion::is_retired`](crate::region::ReadOnlyRegion::is_retired)).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), except [`OpenError::Retired`].
    pub fn open_read_only(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<super::read_only::ReadOnlyRegion, OpenError> {
        let deadline = super::protocol::deadline_after(self.timeout);
        let fd = self.open_file(path.as_ref(), Access::ReadOnly, deadline)?;
        let st = rustix::fs::fstat(&fd)?;
        let region = self.open_fd(fd, false, Access::ReadOnly)?;
        Ok(super::read_only::ReadOnlyRegion::new(
            region,
            (st.st_dev, st.st_ino),
        ))
    }

    /// [`open`](Self::open): opens, maps, validates and attaches; a region found retired
    /// is left for the next file at the path. A stale format is recreated (if asked) with
    /// `size` bytes (the old file's length if `None`).
    fn open_path(&self, path: &Path, size: Option<u64>) -> Result<Region, OpenError> {
        let deadline = super::protocol::deadline_after(self.timeout);
        // Each round that finds a retired region waits until it is unlinked, so the next
        // finds nothing or a new file; a few rounds bound a path that keeps being
        // recreated and retired under us.
        for _ in 0..16 {
            let (mut region, path_ref) = match self.open_path_unattached_by(path, deadline) {
                Err(OpenError::VersionMismatch { found, expected })
                    if self.recreate_stale_format && found < expected =>
                {
                    match self.recreate_stale(path, size, deadline)? {
                        Some(region) => return Ok(region),
                        // Another process replaced it: open what is there now.
                        None => continue,
                    }
                }
                other => other?,
            };
            match region.attach(Some(path_ref)) {
                Ok(()) => {
                    if !region.remove_when_unused() {
                        region.life.forget_path();
                    }
                    return Ok(region);
                }
                Err(_) => {
                    if !region.life.wait_unlinked(region.raw(), deadline) {
                        return Err(OpenError::Retired(path.to_owned()));
                    }
                }
            }
        }
        Err(OpenError::Retired(path.to_owned()))
    }

    /// Replaces the stale region file at `path` with a new region of `size` bytes (the
    /// old file's length if `None`), if no live process uses it (`stale.rs`). `None` if
    /// another process replaced it first.
    fn recreate_stale(
        &self,
        path: &Path,
        size: Option<u64>,
        deadline: std::time::Instant,
    ) -> Result<Option<Region>, OpenError> {
        // Read-only: an open for writing would keep the kernel from confirming that no
        // process has it open for writing (`stale.rs`).
        let fd = self.open_file(path, Access::ReadOnly, deadline)?;
        let old_len = u64::try_from(rustix::fs::fstat(&fd)?.st_size).unwrap_or(0);
        match super::stale::unlink_if_unused(path, fd, deadline)? {
            super::stale::Stale::Replaced => Ok(None),
            super::stale::Stale::Unlinked(lock) => {
                let size = size.unwrap_or_else(|| {
                    old_len
                        .max(data_start_for(self.capacity) as u64)
                        .min(self.max_size.unwrap_or(u64::MAX))
                });
                // Created while the old file's lock is held: the next recreator then
                // finds the path naming the new file.
                let created = self.create(path, size);
                drop(lock);
                match created {
                    Ok(region) => Ok(Some(region)),
                    // An `open_or_create` created one in the gap: open it.
                    Err(CreateError::AlreadyExists(_)) => Ok(None),
                    Err(CreateError::Io(e)) => Err(OpenError::Io(e)),
                    Err(e) => Err(OpenError::Io(std::io::Error::other(e))),
                }
            }
        }
    }

    /// Opens, maps and validates the region at `path` read-write, without attaching;
    /// with the reference that lets it unlink that very file.
    pub(super) fn open_path_unattached(&self, path: &Path) -> Result<(Region, PathRef), OpenError> {
        self.open_path_unattached_by(path, super::protocol::deadline_after(self.timeout))
    }

    /// [`open_path_unattached`](Self::open_path_unattached), waiting for a lease on the
    /// file until `deadline`.
    fn open_path_unattached_by(
        &self,
        path: &Path,
        deadline: std::time::Instant,
    ) -> Result<(Region, PathRef), OpenError> {
        let fd = self.open_file(path, Access::ReadWrite, deadline)?;
        let path_ref = PathRef::new(path, &fd)?;
        Ok((self.open_fd(fd, false, Access::ReadWrite)?, path_ref))
    }

    /// Opens the file at `path` (a regular file, not a symbolic link), waiting until
    /// `deadline` for a lease on it to be released.
    fn open_file(
        &self,
        path: &Path,
        access: Access,
        deadline: std::time::Instant,
    ) -> Result<OwnedFd, OpenError> {
        // Look before opening: opening a device or FIFO read-write can have side effects
        // (a watchdog device arms itself), so anything but a regular file is refused by
        // `lstat` first. The `fstat` check after the open still catches a file swapped in
        // between the two calls.
        match rustix::fs::statat(CWD, path, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {}
                FileType::Symlink => {
                    return Err(OpenError::Refused("the path is a symbolic link"));
                }
                FileType::Directory => return Err(OpenError::Refused("the path is a directory")),
                _ => return Err(OpenError::Refused("the path is not a regular file")),
            },
            Err(Errno::NOENT) => return Err(OpenError::NotFound(path.to_owned())),
            // Let the open below report anything else (permissions, ...).
            Err(_) => {}
        }
        let mode = match access {
            Access::ReadWrite => OFlags::RDWR,
            Access::ReadOnly => OFlags::RDONLY,
        };
        let flags = mode | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        let fd = loop {
            match rustix::fs::open(path, flags, Mode::empty()) {
                // A regular file opened `O_NONBLOCK` refuses only while a lease on it is
                // held (a recreator of a stale format checking for writers, for a few
                // syscalls, unless it is stopped): the kernel asks the holder to let go.
                Err(Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(Errno::WOULDBLOCK) => return Err(OpenError::Timeout),
                other => break other,
            }
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(OpenError::NotFound(path.to_owned())),
            Err(Errno::LOOP) => return Err(OpenError::Refused("the path is a symbolic link")),
            Err(Errno::ISDIR) => return Err(OpenError::Refused("the path is a directory")),
            Err(e) => return Err(e.into()),
        };
        Ok(fd)
    }

    /// Opens the region at `path`, creating it with `size` bytes if it does not exist.
    /// Any number of processes may race on this: exactly one creates the file, the
    /// others open it, and none sees it half-built. An existing region keeps its size.
    ///
    /// # Errors
    ///
    /// [`OpenOrCreateError::Open`] with the errors of [`open`](Self::open) (except
    /// [`OpenError::NotFound`]) if a region exists at `path`;
    /// [`OpenOrCreateError::Create`] with those of [`create`](Self::create) if none does.
    /// If the file keeps appearing and disappearing between the two (another process
    /// removes it in a loop), the last round's [`CreateError::AlreadyExists`].
    pub fn open_or_create(
        &self,
        path: impl AsRef<Path>,
        size: u64,
    ) -> Result<Region, OpenOrCreateError> {
        let path = path.as_ref();
        // Each failed round means the file appeared or vanished between two syscalls
        // (someone deleting it in a loop); give up after a few rather than spin.
        let mut last = None;
        for _ in 0..16 {
            match self.open_path(path, Some(size)) {
                Err(OpenError::NotFound(_)) => {}
                other => return Ok(other?),
            }
            match self.create(path, size) {
                Err(e @ CreateError::AlreadyExists(_)) => last = Some(e),
                other => return Ok(other?),
            }
        }
        Err(last
            .unwrap_or_else(|| CreateError::AlreadyExists(path.to_owned()))
            .into())
    }

    /// Creates a region of `size` bytes in a new memfd named `name` (the name is only a
    /// label for `/proc/PID/fd`), sealed so that nobody can shrink it, nor grow it
    /// unless it was made with a larger [`max_size`](Self::max_size). Share it
    /// with another process by passing [`Region::as_fd`] (fork, `SCM_RIGHTS`, or
    /// `/proc/PID/fd/N`) and opening it there with [`Region::from_fd`].
    ///
    /// # Errors
    ///
    /// [`CreateError::InvalidSize`]; [`CreateError::Io`] if memfds are unavailable or
    /// there is no memory for `size` bytes.
    pub fn memfd(&self, name: &str, size: u64) -> Result<Region, CreateError> {
        let (map, geo, fd) = self.sealed_memfd(name, size)?;
        let mut region = self.region(map, geo, Some(fd));
        // A private memfd nobody else can see yet: cannot be retired.
        let _ = region.attach(None);
        Ok(region)
    }

    /// Creates a region of `size` bytes in anonymous shared memory (a sealed memfd whose
    /// descriptor is closed once mapped): shared with children forked afterwards, like a
    /// `MAP_SHARED | MAP_ANONYMOUS` mapping, and with no one else. With a larger
    /// [`max_size`](Self::max_size), the handle keeps the descriptor (one per handle,
    /// inherited by forked children) to grow the memfd: a child's growth is seen by its
    /// parent and siblings, whose mappings cover the maximum from the start. Then, as
    /// any open descriptor, it is reachable by processes of the same user through
    /// `/proc/<pid>/fd` (a path region that may grow keeps one descriptor per handle
    /// too).
    ///
    /// # Errors
    ///
    /// As [`memfd`](Self::memfd).
    pub fn anonymous(&self, size: u64) -> Result<Region, CreateError> {
        let (map, geo, fd) = self.sealed_memfd("shmstate-anonymous", size)?;
        let mut region = self.region(map, geo, None);
        // Kept (private to the handles, inherited by forked children) only to grow.
        region.grow_fd = (geo.max > geo.total).then_some(fd);
        // As for `memfd`.
        let _ = region.attach(None);
        Ok(region)
    }

    /// Opens the region in `fd` (a memfd from [`Region::memfd`], or a region file), and
    /// validates it. The region keeps `fd`.
    ///
    /// Seals are not required: a descriptor of an unsealed file that another process
    /// truncates while it is mapped raises `SIGBUS` on access, as for any mapped file.
    /// Memfds made by [`Region::memfd`] are sealed against that.
    ///
    /// The handle is listed in the region's attach table ([`Region::attached`]) but
    /// never removes a file (it does not know the file's path).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open), and [`OpenError::Retired`] for a region file that was
    /// removed (or is being removed).
    pub fn from_fd(&self, fd: OwnedFd) -> Result<Region, OpenError> {
        let mut region = self.open_fd(fd, true, Access::ReadWrite)?;
        match region.attach(None) {
            Ok(()) => Ok(region),
            Err(_) => Err(OpenError::Retired(PathBuf::new())),
        }
    }

    fn geometry(&self, size: u64) -> Result<Geometry, CreateError> {
        let data_start = data_start_for(self.capacity);
        let min = data_start as u64;
        let max = self.max_size.unwrap_or(size);
        if max < size {
            return Err(CreateError::InvalidMaxSize {
                size,
                max_size: max,
            });
        }
        let fits = |n: u64| {
            usize::try_from(n)
                .ok()
                .filter(|&n| isize::try_from(n).is_ok())
        };
        match (fits(size), fits(max)) {
            (Some(total), Some(max)) if size >= min => Ok(Geometry {
                total,
                max,
                capacity: self.capacity,
                data_start,
                flags: if self.remove_when_unused {
                    flags::REMOVE_WHEN_UNUSED
                } else {
                    0
                },
            }),
            _ => Err(CreateError::InvalidSize { size, min }),
        }
    }

    fn sealed_memfd(
        &self,
        name: &str,
        size: u64,
    ) -> Result<(MmapRaw, Geometry, OwnedFd), CreateError> {
        // No path to remove: the option means nothing here.
        let geo = Geometry {
            flags: 0,
            ..self.geometry(size)?
        };
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let grows = geo.max > geo.total;
        reserve(&fd, size, grows)?;
        let seals = if grows {
            SealFlags::SHRINK | SealFlags::SEAL
        } else {
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
        };
        rustix::fs::fcntl_add_seals(&fd, seals)?;
        let map = map(&fd, geo.max)?;
        format::write_header(raw_of(&map, geo.total), &geo);
        Ok((map, geo, fd))
    }

    fn open_fd(&self, fd: OwnedFd, keep: bool, access: Access) -> Result<Region, OpenError> {
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(OpenError::Refused("not a regular file"));
        }
        let len = u64::try_from(stat.st_size).unwrap_or(0);
        if len < HEADER_SIZE as u64 {
            return Err(OpenError::Truncated {
                found: len,
                needed: HEADER_SIZE as u64,
            });
        }
        let Some(len_usize) = usize::try_from(len)
            .ok()
            .filter(|&l| isize::try_from(l).is_ok())
        else {
            return Err(OpenError::Corrupt(format!(
                "file of {len} bytes cannot be mapped"
            )));
        };
        let map_len = |len: usize| match access {
            Access::ReadWrite => map(&fd, len),
            Access::ReadOnly => MmapOptions::new().len(len).map_raw_read_only(&fd),
        };
        let mut map = map_len(len_usize)?;
        // Validation only loads, so it runs unchanged over a read-only mapping.
        let mut file = len;
        let mut geo = None;
        // A grower may extend the file and raise the size word between the `fstat` and
        // the header's check: the check then finds the file short, and the length is
        // read again (a few times: a hostile size word stays short forever).
        for _ in 0..4 {
            match validate::validate_header(raw_of(&map, HEADER_SIZE), file) {
                Err(OpenError::Truncated { .. }) => {
                    let now = u64::try_from(rustix::fs::fstat(&fd)?.st_size).unwrap_or(0);
                    if now <= file {
                        break;
                    }
                    file = now;
                }
                other => {
                    geo = Some(other?);
                    break;
                }
            }
        }
        let mut geo = match geo {
            Some(geo) => geo,
            None => validate::validate_header(raw_of(&map, HEADER_SIZE), file)?,
        };
        if geo.max != map.len() {
            // Mapped again over the whole maximum: objects never move once handed out.
            map = map_len(geo.max)?;
        }
        // Nothing at or past the length checked is touched: the file covers it. A region
        // that grew since that length was read may hold objects (and an allocation
        // pointer) past it: then the length is read again and the directory checked
        // again, a bounded number of times (a region doubles at most 64 times).
        let mut rounds = 0;
        loop {
            match validate::validate_directory(raw_of(&map, geo.total), &geo) {
                Err(e @ OpenError::Corrupt(_)) if geo.max > geo.total && rounds < 64 => {
                    let now = u64::try_from(rustix::fs::fstat(&fd)?.st_size).unwrap_or(0);
                    let now = usize::try_from(now).unwrap_or(usize::MAX).min(geo.max);
                    if now <= geo.total {
                        return Err(e);
                    }
                    geo.total = now;
                    rounds += 1;
                }
                other => break other?,
            }
        }
        // A region that may still grow keeps its descriptor (to read the file's length
        // and extend it), in `fd` if the caller hands it over anyway.
        let (fd, grow_fd) = match (keep, geo.max > geo.total) {
            (true, _) => (Some(fd), None),
            (false, true) => (None, Some(fd)),
            (false, false) => (None, None),
        };
        let mut region = self.region(map, geo, fd);
        region.grow_fd = grow_fd;
        Ok(region)
    }

    fn region(&self, map: MmapRaw, geo: Geometry, fd: Option<OwnedFd>) -> Region {
        Region {
            map,
            geo,
            timeout: self.timeout,
            fd,
            grow_fd: None,
            verified: AtomicUsize::new(geo.total),
            life: Life::default(),
            pins: std::sync::Arc::new(super::remove::Pins::new(geo.capacity)),
        }
    }
}

impl Region {
    /// Creates a new region file of `size` bytes at `path` with mode 0600 and 64 entries
    /// (see [`RegionOptions`] for others).
    ///
    /// # Errors
    ///
    /// See [`RegionOptions::create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Region, CreateError};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-create-{}", std::process::id()));
    /// let region = Region::create(&path, 1 << 16)?;
    /// assert!(matches!(Region::create(&path, 1 << 16), Err(CreateError::AlreadyExists(_))));
    /// # drop(region); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<Region, CreateError> {
        RegionOptions::new().create(path, size)
    }

    /// Opens the existing region at `path`.
    ///
    /// # Errors
    ///
    /// See [`RegionOptions::open`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Region, OpenError};
    ///
    /// assert!(matches!(Region::open("/nonexistent/region"), Err(OpenError::NotFound(_))));
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Region, OpenError> {
        RegionOptions::new().open(path)
    }

    /// Opens the region at `path`, creating it with `size` bytes if there is none.
    ///
    /// # Errors
    ///
    /// See [`RegionOptions::open_or_create`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Region;
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-ooc-{}", std::process::id()));
    /// let a = Region::open_or_create(&path, 1 << 16)?;
    /// let b = Region::open_or_create(&path, 1 << 20)?; // opens; keeps the first size
    /// assert_eq!(b.size(), 1 << 16);
    /// # drop((a, b)); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(path: impl AsRef<Path>, size: u64) -> Result<Region, OpenOrCreateError> {
        RegionOptions::new().open_or_create(path, size)
    }

    /// Creates a region in anonymous shared memory, shared with children forked later.
    ///
    /// # Errors
    ///
    /// See [`RegionOptions::anonymous`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Region;
    ///
    /// let region = Region::anonymous(1 << 16)?;
    /// assert_eq!(region.entries().len(), 0);
    /// # Ok::<(), shmstate::RegionError>(())
    /// ```
    pub fn anonymous(size: u64) -> Result<Region, CreateError> {
        RegionOptions::new().anonymous(size)
    }

    /// Creates a region in a new sealed memfd.
    ///
    /// # Errors
    ///
    /// See [`RegionOptions::memfd`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Region;
    ///
    /// let region = Region::memfd("example", 1 << 16)?;
    /// let fd = region.as_fd().expect("a memfd region keeps its fd").try_clone_to_owned()?;
    /// let same = Region::from_fd(fd)?; // another process would receive the fd
    /// assert_eq!(same.size(), region.size());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn memfd(name: &str, size: u64) -> Result<Region, CreateError> {
        RegionOptions::new().memfd(name, size)
    }

    /// Opens the region in `fd`.
    ///
    /// # Errors
    ///
    /// See [`RegionOptions::from_fd`].
    ///
    /// # Examples
    ///
    /// See [`Region::memfd`].
    pub fn from_fd(fd: OwnedFd) -> Result<Region, OpenError> {
        RegionOptions::new().from_fd(fd)
    }

    /// The region's size in bytes: where its objects end at most. A region created with a
    /// [`max_size`](RegionOptions::max_size) above its size grows up to
    /// [`max_size`](Self::max_size); this is its size now (as this process can see the
    /// file cover it).
    ///
    /// The header's size word, which a process that writes the region can lower: opening
    /// checks it against where the objects end, but a lowered word read later can make
    /// this smaller than that (never below the start of the data area). Every access to
    /// an object stays within the file whatever the word says.
    pub fn size(&self) -> usize {
        let Some(h) = self.raw().header() else {
            return self.geo.total;
        };
        // Acquire: pairs with the grower's release `fetch_max` (in `grow`), made after it
        // extended the file, so that the `fstat` in `refresh` sees the extension.
        let word = h.total_size.load(Ordering::Acquire);
        // Not below the data area's start either, which opening checked the word against:
        // a lowered word (a peer's garbage) must not make `space` subtract past it.
        let word = usize::try_from(word)
            .unwrap_or(usize::MAX)
            .clamp(self.geo.data_start, self.geo.max);
        if word <= self.verified() {
            word
        } else {
            // A peer grew it (or wrote a larger word): report what the file covers.
            word.min(self.refresh())
        }
    }

    /// The largest size the region may grow to: [`size`](Self::size) for a region
    /// created without a larger [`max_size`](RegionOptions::max_size). Every process maps
    /// this many bytes of address space.
    pub fn max_size(&self) -> usize {
        self.geo.max
    }

    /// The number of directory entries (named objects it can hold).
    pub fn capacity(&self) -> usize {
        self.geo.capacity as usize
    }

    /// The descriptor of a memfd region or of one opened with [`from_fd`](Self::from_fd)
    /// (to hand to another process); `None` for path and anonymous regions.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }

    /// The offset of `object` from the start of the region, if it lies in this region
    /// (the same in every process that maps it).
    pub fn offset_of<T: ?Sized>(&self, object: &T) -> Option<usize> {
        let addr = (object as *const T).cast::<u8>() as usize;
        let base = self.map.as_mut_ptr() as usize;
        addr.checked_sub(base).filter(|&o| o < self.verified())
    }

    /// The checked view of the mapping: the bytes this process has verified the file
    /// covers (the mapping may be longer: a region that grows is mapped to its maximum).
    pub(super) fn raw(&self) -> Raw<'_> {
        raw_of(&self.map, self.verified())
    }

    /// How many bytes from the start this process has seen the file cover.
    fn verified(&self) -> usize {
        // Relaxed: the value only ever stands for a file length some thread of this
        // process observed (or made), and a region's file never shrinks: any value read
        // is a sound bound whatever the order.
        self.verified.load(Ordering::Relaxed)
    }

    /// A view covering at least `end` bytes, if the file does: past what this process
    /// has verified, the file's length is read again (the region grew since). `None` if
    /// the file is shorter (an entry or size word beyond it is corrupt): nothing past
    /// the end of the file is ever touched.
    pub(super) fn raw_covering(&self, end: usize) -> Option<Raw<'_>> {
        if end > self.verified() && end > self.refresh() {
            return None;
        }
        Some(self.raw())
    }

    /// Reads the file's length (at most the mapping's) into the verified bound; returns
    /// the bound. Without a descriptor (a region that cannot grow) the bound stays.
    fn refresh(&self) -> usize {
        let cur = self.verified();
        let Some(fd) = self.backing_fd().filter(|_| cur < self.geo.max) else {
            return cur;
        };
        let Ok(st) = rustix::fs::fstat(fd) else {
            return cur;
        };
        let len = usize::try_from(st.st_size).unwrap_or(0).min(self.geo.max);
        // Relaxed: see `verified`.
        self.verified.fetch_max(len, Ordering::Relaxed).max(len)
    }

    /// The descriptor of the region's file or memfd, if the handle keeps one.
    fn backing_fd(&self) -> Option<&OwnedFd> {
        self.grow_fd.as_ref().or(self.fd.as_ref())
    }

    /// Grows the region so that `need` more bytes fit at the allocation pointer `cur`,
    /// `total` being the size word the allocator found too small: extends the file to
    /// the next size (doubling, at least `cur + need`, capped at the maximum; just
    /// `cur + need` if the filesystem or the file size limit has no room for that) with
    /// `fallocate`, then raises the size word. Concurrent growers need no order (see the
    /// module's crash windows).
    ///
    /// # Errors
    ///
    /// [`GetError::RegionFull`] if the region cannot grow (no maximum above its size, or
    /// `cur + need` beyond it); [`GetError::GrowFailed`] if the file cannot be extended.
    pub(super) fn grow(&self, cur: u64, need: u64, total: u64) -> Result<(), GetError> {
        let max = self.geo.max as u64;
        let full = |limit: u64| GetError::RegionFull {
            needed: need,
            available: limit.saturating_sub(cur),
        };
        if max <= total {
            return Err(full(total));
        }
        let end = match cur.checked_add(need) {
            Some(end) if end <= max => end,
            _ => return Err(full(max)),
        };
        let mut new = total.max(OBJECT_ALIGN as u64);
        while new < end {
            new = new.saturating_mul(2);
        }
        let mut new = new.min(max);
        // The file may cover the room already: a grower killed (or stopped) after
        // extending it, before raising the size word, or one racing this call. Then only
        // the word is left to raise, which needs no descriptor (a handle opened when the
        // file already reached the maximum keeps none).
        let seen = self.refresh() as u64;
        if seen >= end {
            new = new.min(seen);
        } else {
            let Some(fd) = self.backing_fd() else {
                return Err(full(total));
            };
            // Past the file size limit, `fallocate` raises `SIGXFSZ` (which ends the
            // process unless it ignores it): the doubling stops at the limit, and an
            // object past it fails in `extend` without the call.
            new = new.min(fsize_limit().max(end));
            crate::failpoint::hit(crate::failpoint::Point::RegionGrowing);
            match extend(fd, seen, new) {
                // No room for the doubling (or past the filesystem's largest file):
                // just what the object needs, if that fits.
                Err(e)
                    if new > end
                        && matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EFBIG)) =>
                {
                    new = end;
                    extend(fd, seen, new)
                }
                other => other,
            }
            .map_err(|source| GetError::GrowFailed { size: new, source })?;
            // Relaxed: see `verified`; our own `fallocate` made the file this long.
            self.verified.fetch_max(new as usize, Ordering::Relaxed);
            crate::failpoint::hit(crate::failpoint::Point::RegionGrown);
        }
        if let Some(h) = self.raw().header() {
            // Release: pairs with the acquire loads of the size word (the allocator's,
            // `size`, an opener's `validate_header`): the file was extended before.
            h.total_size.fetch_max(new, Ordering::Release);
        }
        Ok(())
    }
}

/// How [`RegionOptions::open_path`] opens and maps a file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `O_RDWR`, `PROT_READ | PROT_WRITE`: a [`Region`].
    ReadWrite,
    /// `O_RDONLY`, `PROT_READ`: only for a [`ReadOnlyRegion`](super::read_only::ReadOnlyRegion),
    /// which never stores.
    ReadOnly,
}

/// The view of the first `len` bytes of a mapping (at most all of it). The caller knows
/// the file covers them: a mapping may extend past the end of its file (a region that
/// grows is mapped to its maximum), where any access raises `SIGBUS`.
fn raw_of(map: &MmapRaw, len: usize) -> Raw<'_> {
    let len = len.min(map.len());
    // A mapping is never at address 0; a dangling pointer for an (impossible) empty one
    // is never dereferenced because the view's length is 0.
    let base = NonNull::new(map.as_mut_ptr()).unwrap_or(NonNull::dangling());
    // SAFETY: `base` comes from `MmapRaw::as_mut_ptr` (a mutable pointer), is page-aligned
    // (≥ 64), and is valid for reads and writes of `len <= map.len()` bytes while `map`
    // lives, which the returned lifetime ties to: the callers pass a length the file
    // covers (a length they read with `fstat`, created with `fallocate`, or checked
    // against the header's size at open), and a region's file never shrinks (a truncation
    // by another process is the documented `SIGBUS` limit of any mapped file). This crate accesses region memory only through
    // `Raw`, i.e. atomics and `Shared` types. A read-only mapping (`Access::ReadOnly`) is
    // valid for reads only: it is wrapped at once in a `ReadOnlyRegion`, whose every
    // access (the header and directory checks, `entries`, its loads) is a non-`SeqCst`
    // atomic load of at most 8 bytes, which std allows on read-only memory.
    unsafe { Raw::new(base, len) }
}

/// Maps `len` bytes of `fd`, shared and writable.
fn map(fd: &OwnedFd, len: usize) -> std::io::Result<MmapRaw> {
    MmapOptions::new().len(len).map_raw(fd)
}

/// Sizes `fd` to `size` bytes with the space reserved, so that running out of memory or
/// disk is an error now rather than a `SIGBUS` on first touch. Filesystems without
/// `fallocate` get a plain (sparse) `ftruncate`, unless the region `grows`: growth
/// needs `fallocate` (an `ftruncate` could shrink a file another grower extended).
fn reserve(fd: &OwnedFd, size: u64, grows: bool) -> Result<(), CreateError> {
    match extend(fd, 0, size) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported && !grows => {
            Ok(rustix::fs::ftruncate(fd, size)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the file of `fd` at least `size` bytes long, every byte below backed by
/// reserved space: `fallocate` of the bytes from `from` (below which the file is known
/// to be reserved: a length this process saw, which only a mode-0 `fallocate` raises)
/// up to `size`; it never shrinks the file and is idempotent. A signal can interrupt a
/// large `fallocate` (`EINTR`); it is retried, a bounded number of times.
///
/// A file size limit (`RLIMIT_FSIZE`) is checked first: a `fallocate` past it would
/// raise `SIGXFSZ`, which ends the process unless it ignores it. Past the limit (and
/// past the file's length) this fails with `EFBIG` without the call.
fn extend(fd: &OwnedFd, from: u64, size: u64) -> std::io::Result<()> {
    if size > fsize_limit() {
        let len = u64::try_from(rustix::fs::fstat(fd)?.st_size).unwrap_or(0);
        if size > len {
            return Err(std::io::Error::from_raw_os_error(libc::EFBIG));
        }
        return Ok(());
    }
    if from >= size {
        return Ok(());
    }
    let mut interrupted = 0;
    loop {
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), from, size - from) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) if interrupted < 100 => interrupted += 1,
            Err(Errno::OPNOTSUPP) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "the filesystem has no fallocate",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// This process's file size limit (the soft `RLIMIT_FSIZE`), `u64::MAX` if none.
fn fsize_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `getrlimit` writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// A region file under construction: unnamed (`O_TMPFILE`) or under a temporary name
/// that is removed on drop.
struct TempFile {
    fd: OwnedFd,
    name: Option<PathBuf>,
}

impl TempFile {
    fn new(dir: &Path, target: &Path, mode: u32) -> Result<TempFile, CreateError> {
        let mode = Mode::from_raw_mode(mode);
        match rustix::fs::open(dir, OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, mode) {
            Ok(fd) => return Ok(TempFile { fd, name: None }),
            // The filesystem has no O_TMPFILE: fall back to a named temporary file.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let stem = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for _ in 0..100 {
            // Relaxed: only uniqueness within this process matters; O_EXCL does the rest.
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = dir.join(format!(
                ".{stem}.{}.{seq}.{nanos}.tmp",
                crate::owner::current_pid()
            ));
            let flags =
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::open(&name, flags, mode) {
                Ok(fd) => {
                    return Ok(TempFile {
                        fd,
                        name: Some(name),
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CreateError::Io(std::io::Error::other(
            "no free temporary file name",
        )))
    }

    /// Gives the file its final name; fails if anything exists there.
    fn link_to(self, path: &Path) -> Result<(), CreateError> {
        let result = match &self.name {
            Some(name) => rustix::fs::link(name, path),
            None => {
                let proc = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
                match rustix::fs::linkat(CWD, &proc, CWD, path, AtFlags::SYMLINK_FOLLOW) {
                    // No /proc: link the descriptor itself.
                    Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => {
                        rustix::fs::linkat(&self.fd, "", CWD, path, AtFlags::EMPTY_PATH)
                    }
                    other => other,
                }
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => Err(CreateError::AlreadyExists(path.to_owned())),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            // Best effort: a leftover temporary file is harmless (never opened by name).
            let _ = rustix::fs::unlink(name);
        }
    }
}
