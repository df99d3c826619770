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
//! # Limits
//!
//! A file-backed region's size is fixed at creation; if another process truncates the
//! file while it is mapped, accesses beyond the new end raise `SIGBUS` (as for any
//! mapped file). A memfd region is sealed against shrinking and growing, so it cannot.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{AtFlags, CWD, FallocateFlags, FileType, MemfdFlags, Mode, OFlags, SealFlags};
use rustix::io::Errno;

use super::error::{CreateError, OpenError, OpenOrCreateError};
use super::format::{
    self, DEFAULT_CAPACITY, Geometry, HEADER_SIZE, MAX_CAPACITY, Raw, data_start_for, flags,
};
use super::lifecycle::{Life, PathRef};
use super::validate;
use crate::sync::{AtomicU32, Ordering};

/// How long the `get_or_*` calls and [`Region::get`] wait, by default, for another process
/// to finish creating an object.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A mapped region: a fixed-size file (or memfd, or anonymous shared memory) holding
/// named, typed objects that several processes use at once.
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
    pub(super) timeout: Duration,
    fd: Option<OwnedFd>,
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
            .field("size", &self.geo.total)
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

    /// Creates a new region file of `size` bytes at `path`; fails if anything exists
    /// there (including a symbolic link).
    ///
    /// # Errors
    ///
    /// [`CreateError::AlreadyExists`] if the path exists; [`CreateError::InvalidSize`] if
    /// `size` cannot hold the directory; [`CreateError::Io`] if the directory does not
    /// exist, permission is denied, or there is no space (`ENOSPC`) for `size` bytes.
    pub fn create(&self, path: impl AsRef<Path>, size: u64) -> Result<Region, CreateError> {
        let path = path.as_ref();
        let geo = self.geometry(size)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = TempFile::new(dir, path, self.mode)?;
        rustix::fs::fchmod(&tmp.fd, Mode::from_raw_mode(self.mode))?;
        reserve(&tmp.fd, size)?;
        let map = map(&tmp.fd, geo.total)?;
        format::write_header(raw_of(&map), &geo);
        let path_ref = PathRef::new(path, &tmp.fd)?;
        let mut region = self.region(map, geo, None);
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
    /// [`OpenError::Io`] otherwise.
    ///
    /// A region being removed at this moment (its last process detaching) is never
    /// returned: the open waits for the removal and then finds nothing
    /// ([`OpenError::NotFound`]) or the new file created at the path since.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Region, OpenError> {
        self.open_path(path.as_ref())
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
        let fd = self.open_file(path.as_ref(), Access::ReadOnly)?;
        let st = rustix::fs::fstat(&fd)?;
        let region = self.open_fd(fd, false, Access::ReadOnly)?;
        Ok(super::read_only::ReadOnlyRegion::new(
            region,
            (st.st_dev, st.st_ino),
        ))
    }

    /// [`open`](Self::open): opens, maps, validates and attaches; a region found retired
    /// is left for the next file at the path.
    fn open_path(&self, path: &Path) -> Result<Region, OpenError> {
        let deadline = super::protocol::deadline_after(self.timeout);
        // Each round that finds a retired region waits until it is unlinked, so the next
        // finds nothing or a new file; a few rounds bound a path that keeps being
        // recreated and retired under us.
        for _ in 0..16 {
            let (mut region, path_ref) = self.open_path_unattached(path)?;
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

    /// Opens, maps and validates the region at `path` read-write, without attaching;
    /// with the reference that lets it unlink that very file.
    pub(super) fn open_path_unattached(&self, path: &Path) -> Result<(Region, PathRef), OpenError> {
        let fd = self.open_file(path, Access::ReadWrite)?;
        let path_ref = PathRef::new(path, &fd)?;
        Ok((self.open_fd(fd, false, Access::ReadWrite)?, path_ref))
    }

    /// Opens the file at `path` (a regular file, not a symbolic link).
    fn open_file(&self, path: &Path, access: Access) -> Result<OwnedFd, OpenError> {
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
        let fd = match rustix::fs::open(path, flags, Mode::empty()) {
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
            match self.open(path) {
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
    /// label for `/proc/PID/fd`), sealed so that nobody can shrink or grow it. Share it
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
    /// `MAP_SHARED | MAP_ANONYMOUS` mapping, and with no one else.
    ///
    /// # Errors
    ///
    /// As [`memfd`](Self::memfd).
    pub fn anonymous(&self, size: u64) -> Result<Region, CreateError> {
        let (map, geo, _fd) = self.sealed_memfd("shmstate-anonymous", size)?;
        let mut region = self.region(map, geo, None);
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
        match usize::try_from(size) {
            Ok(total) if size >= min && isize::try_from(size).is_ok() => Ok(Geometry {
                total,
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
        reserve(&fd, size)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let map = map(&fd, geo.total)?;
        format::write_header(raw_of(&map), &geo);
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
        let map = match access {
            Access::ReadWrite => map(&fd, len_usize)?,
            Access::ReadOnly => MmapOptions::new().len(len_usize).map_raw_read_only(&fd)?,
        };
        // Validation only loads, so it runs unchanged over a read-only mapping.
        let raw = raw_of(&map);
        let geo = validate::validate_header(raw)?;
        validate::validate_directory(raw, &geo)?;
        Ok(self.region(map, geo, keep.then_some(fd)))
    }

    fn region(&self, map: MmapRaw, geo: Geometry, fd: Option<OwnedFd>) -> Region {
        Region {
            map,
            geo,
            timeout: self.timeout,
            fd,
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

    /// The region's size in bytes.
    pub fn size(&self) -> usize {
        self.geo.total
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
        addr.checked_sub(base).filter(|&o| o < self.geo.total)
    }

    /// The checked view of the mapping.
    pub(super) fn raw(&self) -> Raw<'_> {
        raw_of(&self.map)
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

/// The view of a whole mapping.
fn raw_of(map: &MmapRaw) -> Raw<'_> {
    // A mapping is never at address 0; a dangling pointer for an (impossible) empty one
    // is never dereferenced because the view's length is 0.
    let base = NonNull::new(map.as_mut_ptr()).unwrap_or(NonNull::dangling());
    // SAFETY: `base` comes from `MmapRaw::as_mut_ptr` (a mutable pointer), is page-aligned
    // (≥ 64), and is valid for reads and writes of `map.len()` bytes while `map` lives,
    // which the returned lifetime ties to. This crate accesses region memory only through
    // `Raw`, i.e. atomics and `Shared` types. A read-only mapping (`Access::ReadOnly`) is
    // valid for reads only: it is wrapped at once in a `ReadOnlyRegion`, whose every
    // access (the header and directory checks, `entries`, its loads) is a non-`SeqCst`
    // atomic load of at most 8 bytes, which std allows on read-only memory.
    unsafe { Raw::new(base, map.len()) }
}

/// Maps `len` bytes of `fd`, shared and writable.
fn map(fd: &OwnedFd, len: usize) -> std::io::Result<MmapRaw> {
    MmapOptions::new().len(len).map_raw(fd)
}

/// Sizes `fd` to `size` bytes with the space reserved, so that running out of memory or
/// disk is an error now rather than a `SIGBUS` on first touch. Filesystems without
/// `fallocate` get a plain (sparse) `ftruncate`.
/// A signal can interrupt a large `fallocate` (`EINTR`); it is retried, a bounded number
/// of times.
fn reserve(fd: &OwnedFd, size: u64) -> Result<(), CreateError> {
    let mut interrupted = 0;
    loop {
        match rustix::fs::fallocate(fd, FallocateFlags::empty(), 0, size) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) if interrupted < 100 => interrupted += 1,
            Err(Errno::OPNOTSUPP) => return Ok(rustix::fs::ftruncate(fd, size)?),
            Err(e) => return Err(e.into()),
        }
    }
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
