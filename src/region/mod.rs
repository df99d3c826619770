//! The region: a mapped file (or memfd, or anonymous shared memory) holding
//! named, typed objects that many processes use at once.
//!
//! - layout of the header and directory (`format.rs`), and the checks every open runs on
//!   them (`validate.rs`).
//! - backings, creation and opening: [`Region`], [`RegionOptions`]; growth up to
//!   [`RegionOptions::max_size`] and its crash windows (`file.rs`); replacing a file of an
//!   older format ([`RegionOptions::recreate_stale_format`], `stale.rs`).
//! - reading a region without writing to it, for tools: [`ReadOnlyRegion`] (`read_only.rs`).
//! - named objects: [`Region::get_or_default`], [`Region::get_or_init`], [`Region::get`],
//!   [`Region::entries`] (`directory.rs`); the entry protocol behind them: claiming,
//!   initialising, taking over from a dead creator, crash windows (`protocol.rs`).
//! - who has it open, and removing the file when nobody does: [`Region::attached`],
//!   [`RegionOptions::remove_when_unused`], [`Region::remove_unused`]; the attach table,
//!   the removal protocol and its crash windows are in [`lifecycle`].
//! - removing named objects and reusing their entries and space: [`Region::remove`],
//!   [`Region::space`]; the rule (no live handle that asked for the object), the creation
//!   lock that keeps names unique, first-fit placement and the crash windows are in
//!   [`remove`].
//! - errors: one type per operation ([`OpenError`], [`CreateError`],
//!   [`OpenOrCreateError`], [`GetError`], [`RemoveError`], [`RemoveObjectError`]) and the umbrella [`RegionError`] (`error.rs`).

mod directory;
mod error;
mod file;
mod format;
pub mod lifecycle;
mod protocol;
mod read_only;
pub mod remove;
mod stale;
mod validate;

pub use directory::{EntryInfo, EntryState};
pub use error::{
    CreateError, GetError, OpenError, OpenOrCreateError, RegionError, RemoveError,
    RemoveObjectError,
};
pub use file::{DEFAULT_TIMEOUT, Region, RegionOptions};
pub use format::{ATTACH_SLOTS, MAX_CAPACITY, MAX_NAME_LEN};
pub use lifecycle::Attached;
pub use read_only::ReadOnlyRegion;
pub use remove::SpaceInfo;
