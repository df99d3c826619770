//! The one error type of region operations.

use std::io;

/// Why a region or a named object in it could not be created, opened or handed out.
///
/// Each variant says what to do about it: a missing file can be created, a version or
/// layout mismatch needs a matching build, a corrupt or truncated file has to be
/// recreated, a type mismatch is a bug in one of the programs sharing the region.
///
/// # Examples
///
/// ```
/// use shmstate::{Region, RegionError};
///
/// match Region::open("/nonexistent/shmstate-example") {
///     Err(RegionError::NotFound(what)) => assert!(what.contains("shmstate-example")),
///     other => panic!("unexpected: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// The file (a path) or the named object (a name) does not exist (for
    /// [`Region::get`](crate::Region::get): also an object whose creator died before it was
    /// ready).
    #[error("not found: {0}")]
    NotFound(String),

    /// A file already exists at the path given to [`Region::create`](crate::Region::create).
    #[error("already exists: {0}")]
    AlreadyExists(String),

    /// The path or descriptor is not something a region may live in: a symbolic link
    /// (refused so that nobody can redirect a region into another file), a directory, a
    /// device or a pipe.
    #[error("refused: {0}")]
    Refused(&'static str),

    /// The file does not start with the shmstate magic number: not a region.
    #[error("not a shmstate region (magic {found:#018x})")]
    BadMagic {
        /// The first eight bytes of the file, as a native-endian `u64`.
        found: u64,
    },

    /// The region was made by a build with another format version.
    #[error("region format version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// Version recorded in the file.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },

    /// The region was made by a build with another byte order, word size or layout of
    /// the header (its layout fingerprint differs): it cannot be shared with this build.
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
    /// truncated, or is not a region.
    #[error("truncated region: {found} bytes, at least {needed} needed")]
    Truncated {
        /// Length of the file.
        found: u64,
        /// Length it must have.
        needed: u64,
    },

    /// The file is longer than the size recorded in its header: it was resized.
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

    /// The name exists with another type, length, size or alignment than asked for. The
    /// bytes are never reinterpreted: element types are told apart by their identity
    /// ([`Element::ELEM`](crate::Element)), not by their size, so a `SeqLock<f32>` is not
    /// opened as a `SeqLock<i32>`, nor one struct as another of the same size (see
    /// [`Element`](crate::Element) for what the identity of a struct covers).
    #[error("object `{name}` is a {found}, not a {expected}")]
    TypeMismatch {
        /// The object's name.
        name: String,
        /// The type asked for.
        expected: String,
        /// The type recorded in the region.
        found: String,
    },

    /// The name is empty, too long, or contains a NUL byte.
    #[error("invalid object name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The type has no object of this length (zero or overflowing slice lengths, a length
    /// other than 1 for sized types), or needs more than the region's 64-byte alignment.
    #[error("invalid length {len} for object `{name}`")]
    InvalidLength {
        /// The object's name.
        name: String,
        /// The length given.
        len: usize,
    },

    /// The size given at creation cannot hold the header and the directory, or does not
    /// fit the address space.
    #[error("invalid region size {size}: at least {min} bytes needed")]
    InvalidSize {
        /// The size given.
        size: u64,
        /// The smallest size with this directory capacity.
        min: u64,
    },

    /// No data space is left for a new object: create a larger region.
    #[error("region full: {needed} bytes needed, {available} available")]
    RegionFull {
        /// Bytes the new object needs (rounded up to the object alignment).
        needed: u64,
        /// Bytes left in the region.
        available: u64,
    },

    /// Every directory entry is in use: create a region with a larger capacity.
    #[error("region directory full ({capacity} entries)")]
    DirectoryFull {
        /// Number of directory entries.
        capacity: u32,
    },

    /// Another thread (of this or another process) kept the named object, or a directory
    /// entry before it, in creation longer than the region's timeout, and is still alive
    /// (or its thread id was reused).
    #[error("timed out waiting for object `{name}` to be created by another thread")]
    Timeout {
        /// The object's name.
        name: String,
    },

    /// The operating system refused an operation (no space, permission, ...).
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<rustix::io::Errno> for RegionError {
    fn from(e: rustix::io::Errno) -> Self {
        RegionError::Io(e.into())
    }
}
