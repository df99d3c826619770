//! Errors of region operations: one type per operation ([`OpenError`], [`CreateError`],
//! [`OpenOrCreateError`], [`GetError`]), each convertible into the umbrella
//! [`RegionError`] for `?`.

use std::io;
use std::path::PathBuf;

use crate::shared::TypeTag;
use crate::wait::Timeout;

/// Why an existing region could not be opened ([`Region::open`](crate::Region::open),
/// [`Region::from_fd`](crate::Region::from_fd)).
///
/// Each variant says what to do about it: a missing file can be created, a version or
/// layout mismatch needs a matching build, a corrupt or truncated file has to be
/// recreated.
///
/// # Examples
///
/// ```
/// use shmstate::{OpenError, Region};
///
/// match Region::open("/nonexistent/shmstate-example") {
///     Err(OpenError::NotFound(path)) => assert!(path.ends_with("shmstate-example")),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Nothing exists at the path. Create the region
    /// ([`Region::create`](crate::Region::create)), or open it with
    /// [`Region::open_or_create`](crate::Region::open_or_create) in the first place.
    #[error("no region at {}", .0.display())]
    NotFound(PathBuf),

    /// The path or descriptor is not something a region may live in: a symbolic link
    /// (refused so that nobody can redirect a region into another file), a directory, a
    /// device or a pipe. Give the path of the region file itself.
    #[error("refused: {0}")]
    Refused(&'static str),

    /// The file does not start with the shmstate magic number: it is not a region (or
    /// was overwritten). Check the path; recreate the region if it is the right one.
    #[error("not a shmstate region (magic {found:#018x})")]
    BadMagic {
        /// The first eight bytes of the file, as a native-endian `u64`.
        found: u64,
    },

    /// The region was made by a build with another format version. Open it with a build
    /// of that version, or recreate it with this one.
    #[error("region format version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// Version recorded in the file.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },

    /// The region was made by a build with another byte order, word size or layout of
    /// the header (its layout fingerprint differs): it cannot be shared with this build.
    /// Use the same build (and architecture) in every process sharing a region.
    #[error("incompatible region: {what} is {found:#x}, this build expects {expected:#x}")]
    LayoutMismatch {
        /// Which property differs (`"byte order"`, `"word size marker"`, `"layout fingerprint"`).
        what: &'static str,
        /// Value found in the file.
        found: u64,
        /// Value this build expects.
        expected: u64,
    },

    /// The file is shorter than its header says (or than a header at all): it was
    /// truncated, or is not a region. Recreate it.
    #[error("truncated region: {found} bytes, at least {needed} needed")]
    Truncated {
        /// Length of the file.
        found: u64,
        /// Length it must have.
        needed: u64,
    },

    /// The file is longer than the region's maximum size recorded in its header (its
    /// size, for a region that does not grow): it was resized. Recreate it (a region's
    /// maximum size is fixed at creation).
    #[error("region size {header} in the header, but the file has {file} bytes")]
    WrongSize {
        /// Size recorded in the header.
        header: u64,
        /// Size of the file.
        file: u64,
    },

    /// The header or directory holds values no shmstate build writes (out-of-range
    /// offsets, overlapping objects, unterminated names, ...). Recreate the region.
    #[error("corrupt region: {0}")]
    Corrupt(String),

    /// The region was removed (its last user detached, or `shmstate rm` removed it), and
    /// its file was still in place when the open's timeout passed: the process removing
    /// it is stopped. From [`Region::from_fd`](crate::Region::from_fd) (path empty): the
    /// descriptor's region was removed. Open the path again later, or remove the file
    /// (`shmstate rm --force`).
    #[error("region{} was removed", at(.0))]
    Retired(PathBuf),

    /// The region's format is older than this build's and
    /// [`recreate_stale_format`](crate::RegionOptions::recreate_stale_format) was asked
    /// for, but processes may still use the old file: those listed in `users` map it,
    /// and those in `unreadable` have mappings this process may not read (another user's
    /// processes; run as that user or as root to see them). Both lists empty: the kernel
    /// refused the read lease that confirms nobody has the file open for writing (a
    /// process that `/proc` does not show has it open for writing, or this process may
    /// not take a lease on the file: it is neither its owner nor has `CAP_LEASE`, or the
    /// filesystem has no leases). Nothing was changed. Stop them (they run a build of
    /// the old format) and open it again.
    #[error(
        "region format version {found} is older than this build's, but processes may use it: \
         mapping it {users:?}, unreadable {unreadable:?}"
    )]
    StaleInUse {
        /// Version recorded in the file.
        found: u32,
        /// Processes that map the file.
        users: Vec<u32>,
        /// Processes whose mappings cannot be read and that may have opened the file.
        unreadable: Vec<u32>,
    },

    /// Another process kept recreating the stale region (see
    /// [`recreate_stale_format`](crate::RegionOptions::recreate_stale_format)) for longer
    /// than the [`timeout`](crate::RegionOptions::timeout), holding its lock or its
    /// lease on the file (which keeps every open for writing waiting): it is stopped.
    /// Retry later.
    #[error("timed out waiting for another process recreating the region")]
    Timeout,

    /// The operating system refused an operation (permission denied, too many open
    /// files, no memory for the mapping, ...).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why a region file could not be removed ([`Region::remove_unused`](crate::Region::remove_unused),
/// [`Region::remove_forced`](crate::Region::remove_forced)).
///
/// # Examples
///
/// ```
/// use shmstate::{OpenError, Region, RemoveError};
///
/// match Region::remove_unused("/nonexistent/shmstate-example") {
///     Err(RemoveError::Open(OpenError::NotFound(_))) => {}
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveError {
    /// Live processes have the region open (listed). Stop them first, or remove it with
    /// [`Region::remove_forced`](crate::Region::remove_forced).
    #[error("in use by {} live process(es): {}", .attached.len(), pids(.attached))]
    InUse {
        /// The live processes found attached.
        attached: Vec<crate::region::Attached>,
    },

    /// A process had the region open without being listed (its attach table was full, or,
    /// on a failure path, a fork child was left without a table word),
    /// so nobody can tell whether it is in use. Remove it with
    /// [`Region::remove_forced`](crate::Region::remove_forced) if you know it is not.
    #[error("may be in use by processes not listed in its attach table")]
    Unlisted,

    /// Another live thread is removing the region at this moment.
    #[error("another process is removing it")]
    Busy,

    /// The path names another file than the one the removal was asked for
    /// ([`ReadOnlyRegion::remove_unused`](crate::region::ReadOnlyRegion::remove_unused)):
    /// it was replaced since. Nothing was removed.
    #[error("the path names another file now")]
    Replaced,

    /// The region's file could not be unlinked: permission (another user's file in a
    /// sticky directory such as `/dev/shm`), a mount point, or the path no longer names
    /// it (renamed or replaced meanwhile). The region is live again, unchanged; its users
    /// go on, and new openers open it as before.
    #[error("cannot unlink it: {0}")]
    Unlink(#[source] std::io::Error),

    /// The file cannot be opened as a region (not found, not a region, another format
    /// version, ...).
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Why [`Region::remove`](crate::Region::remove) did not remove an object.
///
/// # Examples
///
/// ```
/// use shmstate::{Counter, Region, RemoveObjectError};
///
/// let mut region = Region::anonymous(1 << 16)?;
/// assert!(matches!(region.remove("nothing"), Err(RemoveObjectError::NotFound { .. })));
/// region.get_or_default::<Counter>("hits")?;
/// region.remove("hits")?; // this handle's own references are gone: `&mut self`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoveObjectError {
    /// No object has this name (or it is still being created: remove it once it is
    /// ready).
    #[error("no object `{name}`")]
    NotFound {
        /// The name asked for.
        name: String,
    },

    /// Handles of these live processes have asked for the object (and may hold
    /// references to it). They must drop those handles first: a reference cannot be
    /// revoked.
    #[error("object `{name}` is in use by process(es) {}", pid_list(.pids))]
    InUse {
        /// The name asked for.
        name: String,
        /// The processes whose handles use it (each once).
        pids: Vec<u32>,
    },

    /// A process had the region open without an attach-table word (the table was full, or,
    /// on a failure path, a fork child was left without one):
    /// nobody can tell what it uses, so no object of the region is ever removed.
    #[error("the region had users without an attach-table word: no object may be removed")]
    Unlisted,

    /// The name is empty, longer than [`MAX_NAME_LEN`](crate::region::MAX_NAME_LEN) bytes
    /// or contains a NUL byte.
    #[error("invalid object name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Another live process kept the entry busy (creating the object, or removing it)
    /// longer than the region's timeout.
    #[error("timed out")]
    Timeout,

    /// The directory holds values no shmstate build writes.
    #[error("corrupt region: {0}")]
    Corrupt(String),

    /// The region could not be opened ([`Region::remove_object`](crate::Region::remove_object)).
    #[error(transparent)]
    Open(#[from] OpenError),
}

impl From<Timeout> for RemoveObjectError {
    fn from(_: Timeout) -> Self {
        RemoveObjectError::Timeout
    }
}

fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// " at PATH", or nothing for an empty path (a region opened from a descriptor).
fn at(path: &std::path::Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!(" at {}", path.display())
    }
}

fn pids(attached: &[crate::region::Attached]) -> String {
    attached
        .iter()
        .map(|a| a.pid.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a new region could not be created ([`Region::create`](crate::Region::create),
/// [`Region::memfd`](crate::Region::memfd), [`Region::anonymous`](crate::Region::anonymous)).
///
/// # Examples
///
/// ```
/// use shmstate::{CreateError, Region};
///
/// match Region::anonymous(100) {
///     Err(CreateError::InvalidSize { size: 100, min }) => assert!(min > 100),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// Something (a file, a symbolic link, a directory) already exists at the path. Open
    /// it ([`Region::open`](crate::Region::open)), remove it, or use
    /// [`Region::open_or_create`](crate::Region::open_or_create). From `open_or_create`:
    /// a file was there each time it tried to create one and gone each time it tried to
    /// open it (another process keeps removing it).
    #[error("already exists: {}", .0.display())]
    AlreadyExists(PathBuf),

    /// The size asked for cannot hold the header and the directory, or does not fit the
    /// address space. Ask for at least `min` bytes (plus the objects), or a smaller
    /// [`capacity`](crate::RegionOptions::capacity).
    #[error("invalid region size {size}: at least {min} bytes needed")]
    InvalidSize {
        /// The size given.
        size: u64,
        /// The smallest size with this directory capacity.
        min: u64,
    },

    /// The [`max_size`](crate::RegionOptions::max_size) asked for is below the size.
    /// Give a maximum at least as large as the size (or none: the region does not grow).
    #[error("maximum size {max_size} below the region size {size}")]
    InvalidMaxSize {
        /// The size given.
        size: u64,
        /// The maximum size given.
        max_size: u64,
    },

    /// The operating system refused an operation: the directory does not exist,
    /// permission is denied, there is no space for the size asked for (`ENOSPC`), memfds
    /// are unavailable, a region that may grow on a filesystem without `fallocate`, ...
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why [`Region::open_or_create`](crate::Region::open_or_create) failed: opening the
/// existing region, or creating a new one.
///
/// # Examples
///
/// ```
/// use shmstate::{CreateError, OpenOrCreateError, Region};
///
/// match Region::open_or_create("/nonexistent/dir/region", 1 << 16) {
///     Err(OpenOrCreateError::Create(CreateError::Io(e))) => {
///         assert_eq!(e.kind(), std::io::ErrorKind::NotFound)
///     }
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenOrCreateError {
    /// A region exists at the path, and opening it failed.
    #[error(transparent)]
    Open(OpenError),
    /// No region exists at the path, and creating it failed.
    #[error(transparent)]
    Create(CreateError),
}

/// Why a named object could not be handed out ([`Region::get`](crate::Region::get) and
/// the `get_or_*` calls).
///
/// A type or size mismatch is a bug in one of the programs sharing the region: the bytes
/// are never reinterpreted.
///
/// # Examples
///
/// ```
/// use shmstate::{Counter, GetError, Region, SharedSized, Value};
///
/// let region = Region::anonymous(1 << 16)?;
/// region.get_or_default::<Counter>("hits")?;
/// match region.get::<Value<u64>>("hits") {
///     Err(GetError::TypeMismatch { recorded, requested, .. }) => {
///         assert_eq!(recorded, <Counter as SharedSized>::TAG);
///         assert_eq!(requested, <Value<u64> as SharedSized>::TAG);
///     }
///     other => panic!("unexpected: {other:?}"),
/// }
/// # Ok::<(), shmstate::RegionError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// No object has this name ([`Region::get`](crate::Region::get) only), or its
    /// creator died (or its `init` panicked) before it was ready. Create it with one of
    /// the `get_or_*` calls, or wait for the process that creates it.
    #[error("no object named `{name}`")]
    NotFound {
        /// The name asked for.
        name: String,
    },

    /// The name is empty, longer than [`MAX_NAME_LEN`](crate::region::MAX_NAME_LEN)
    /// bytes, or contains a NUL byte. Choose another name.
    #[error("invalid object name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The type has no object of this length: zero, a size overflowing `isize`, or any
    /// length but 1 for a sized type (use [`get_or_default`](crate::Region::get_or_default)
    /// or [`get_or_init`](crate::Region::get_or_init) for those). From
    /// [`Region::get`](crate::Region::get): the length recorded for an object of this
    /// type is one this build's type has no object of (another build of the type).
    #[error("type {tag} has no object of length {len} (object `{name}`)")]
    InvalidLength {
        /// The object's name.
        name: String,
        /// The type asked for.
        tag: TypeTag,
        /// The length given (or recorded).
        len: u64,
    },

    /// The type's alignment is not a power of two or exceeds the 64 bytes to which a
    /// region aligns its objects: such a type cannot live in a region. Lower its
    /// alignment (hot fields that need their own cache line are padded inside the type).
    #[error(
        "type {tag} needs alignment {align}; a region aligns objects to 64 bytes (object `{name}`)"
    )]
    BadAlignment {
        /// The object's name.
        name: String,
        /// The type asked for.
        tag: TypeTag,
        /// The type's alignment.
        align: usize,
    },

    /// The name exists with another type or length than asked for. Two programs disagree
    /// about what the name holds: fix one of them, or use another name. The bytes are
    /// never reinterpreted: element types are told apart by their identity
    /// ([`Element::ELEM`](crate::Element)), not by their size, so a `SeqLock<f32>` is not
    /// opened as a `SeqLock<i32>`, nor one struct as another of the same size (see
    /// [`Element`](crate::Element) for what the identity of a struct covers).
    #[error(
        "object `{name}` is {}, not {}",
        Shape(*.recorded, *.recorded_len),
        Shape(*.requested, *.requested_len)
    )]
    TypeMismatch {
        /// The object's name.
        name: String,
        /// The type recorded in the region.
        recorded: TypeTag,
        /// The length recorded in the region (1 for sized types).
        recorded_len: u64,
        /// The type asked for.
        requested: TypeTag,
        /// The length asked for ([`Region::get`](crate::Region::get), which takes the
        /// recorded length: the recorded one).
        requested_len: u64,
    },

    /// The name exists with the type and length asked for, but another byte size or
    /// alignment: the programs sharing the region were built with different definitions
    /// of the type (two user types with the same [`TypeTag`], or another version of
    /// one). Build every program from the same definition.
    #[error(
        "object `{name}` has {recorded_size} bytes (align {recorded_align}) in the region, \
         {requested_size} bytes (align {requested_align}) in this build"
    )]
    SizeMismatch {
        /// The object's name.
        name: String,
        /// The byte size recorded in the region.
        recorded_size: u64,
        /// The alignment recorded in the region.
        recorded_align: u64,
        /// The byte size of the type asked for, at the recorded length.
        requested_size: u64,
        /// The alignment of the type asked for.
        requested_align: u64,
    },

    /// No data space is left for a new object, and the region cannot grow enough for it
    /// (it was created without a larger [`max_size`](crate::RegionOptions::max_size), or
    /// the object does not fit below it). Create a larger region, or one with a larger
    /// maximum size.
    #[error("region full: {needed} bytes needed, {available} available")]
    RegionFull {
        /// Bytes the new object needs (rounded up to the object alignment).
        needed: u64,
        /// Bytes left unallocated at the end of the data area, up to the region's maximum
        /// size for one that grows (free extents of removed objects that did not fit are not
        /// counted: see [`Region::space`](crate::Region::space)).
        available: u64,
    },

    /// The region had to grow for a new object, and its file could not be extended:
    /// the filesystem is full (`ENOSPC`: a full tmpfs or disk), a file size limit
    /// (`EFBIG`: `RLIMIT_FSIZE`), or a memfd sealed against growing (`EPERM`). Nothing
    /// changed: the object was not created, every other object is intact, and no later
    /// access faults. Free space (or raise the limit) and retry.
    #[error("cannot grow the region to {size} bytes: {source}")]
    GrowFailed {
        /// The size the region was to grow to.
        size: u64,
        /// Why the operating system refused.
        #[source]
        source: io::Error,
    },

    /// Every directory entry is in use. Create a region with a larger
    /// [`capacity`](crate::RegionOptions::capacity).
    #[error("region directory full ({capacity} entries)")]
    DirectoryFull {
        /// Number of directory entries.
        capacity: u32,
    },

    /// Another thread (of this or another process) kept the object, or a directory entry
    /// before it, in creation longer than the region's
    /// [`timeout`](crate::RegionOptions::timeout), and is still alive (or its thread id
    /// was reused). Retry, or find out why that process's `init` does not return.
    #[error("timed out waiting for another thread to finish creating an object")]
    Timeout,

    /// The directory holds values no shmstate build writes (another process wrote
    /// garbage into it). Recreate the region.
    #[error("corrupt region: {0}")]
    Corrupt(String),
}

impl From<Timeout> for GetError {
    fn from(Timeout: Timeout) -> Self {
        GetError::Timeout
    }
}

/// `Counter`, `StripedCounter[16]`: a type and length as error messages show them.
struct Shape(TypeTag, u64);

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1 == 1 {
            write!(f, "a {}", self.0)
        } else {
            write!(f, "a {}[{}]", self.0, self.1)
        }
    }
}

/// Any error of a region operation: the type to name in a function that opens or creates
/// a region and gets objects from it, and propagates failures with `?`.
///
/// Each operation returns its own type ([`OpenError`], [`CreateError`],
/// [`OpenOrCreateError`], [`GetError`]), which says exactly how that operation can fail;
/// each converts into this one. Its `Display` is the operation's error's.
///
/// # Examples
///
/// ```
/// use shmstate::{Counter, GetError, Region, RegionError};
///
/// fn hits(path: &std::path::Path) -> Result<u64, RegionError> {
///     let region = Region::open(path)?; // OpenError
///     let hits = region.get::<Counter>("hits")?; // GetError
///     Ok(hits.get())
/// }
///
/// assert!(matches!(hits("/nonexistent/region".as_ref()), Err(RegionError::Open(_))));
/// # let r = Region::anonymous(1 << 16)?;
/// # assert!(matches!(r.get::<Counter>("x").map_err(RegionError::from),
/// #     Err(RegionError::Get(GetError::NotFound { .. }))));
/// # Ok::<(), RegionError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// Opening an existing region failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Creating a new region failed.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// Getting (or creating) a named object failed.
    #[error(transparent)]
    Get(#[from] GetError),
    /// Removing a region file failed.
    #[error(transparent)]
    Remove(#[from] RemoveError),
    /// Removing a named object failed.
    #[error(transparent)]
    RemoveObject(#[from] RemoveObjectError),
}

impl From<OpenOrCreateError> for RegionError {
    fn from(e: OpenOrCreateError) -> Self {
        match e {
            OpenOrCreateError::Open(e) => RegionError::Open(e),
            OpenOrCreateError::Create(e) => RegionError::Create(e),
        }
    }
}

impl From<OpenError> for OpenOrCreateError {
    fn from(e: OpenError) -> Self {
        OpenOrCreateError::Open(e)
    }
}

impl From<CreateError> for OpenOrCreateError {
    fn from(e: CreateError) -> Self {
        OpenOrCreateError::Create(e)
    }
}

impl From<Timeout> for OpenError {
    fn from(Timeout: Timeout) -> Self {
        OpenError::Timeout
    }
}

impl From<rustix::io::Errno> for OpenError {
    fn from(e: rustix::io::Errno) -> Self {
        OpenError::Io(e.into())
    }
}

impl From<rustix::io::Errno> for CreateError {
    fn from(e: rustix::io::Errno) -> Self {
        CreateError::Io(e.into())
    }
}
