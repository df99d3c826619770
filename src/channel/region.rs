//! [`Region::channel`] and [`Region::open_channel`]: channels as named objects of a region.

use super::error::ChannelError;
use super::layout::Channel;
use super::options::ChannelOptions;
use crate::region::{GetError, Region};

/// Creating or opening a channel in a region failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelOpenError {
    /// The region refused the object (a wrong type or length for the name, a full
    /// region, a bad name, ...).
    #[error(transparent)]
    Get(#[from] GetError),
    /// The options are invalid ([`Channel::new`]'s rule).
    #[error(transparent)]
    InvalidOptions(#[from] ChannelError),
    /// A channel of this name exists with other options.
    #[error("channel `{name}` exists with {stored:?}, not {requested:?}")]
    Mismatch {
        /// The object's name.
        name: String,
        /// Its options, as stored.
        stored: ChannelOptions,
        /// The options asked for.
        requested: ChannelOptions,
    },
    /// The object's header is not a valid channel header (overwritten by another
    /// process, or written by a build that uses another version of the channel's
    /// format).
    #[error("channel `{name}` has a corrupt header")]
    Corrupt {
        /// The object's name.
        name: String,
    },
}

impl Region {
    /// The channel `name` of this region, created with `options` if there is none
    /// (race-free among processes: exactly one creates it, the others wait for it).
    ///
    /// # Errors
    ///
    /// [`ChannelOpenError::InvalidOptions`] as for [`Channel::new`];
    /// [`ChannelOpenError::Mismatch`] if the channel exists with other options (compared
    /// after rounding, see [`ChannelOptions`]); [`ChannelOpenError::Get`] for the
    /// region's refusals (another type under this name, a full region, ...);
    /// [`ChannelOpenError::Corrupt`] if its header was overwritten.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{ChannelOptions, Region};
    ///
    /// let region = Region::anonymous(1 << 20)?;
    /// let jobs = region.channel("jobs", ChannelOptions::new(64 << 10))?;
    /// jobs.send(b"job 1")?;
    /// // Another process (a child after fork, or one that opens the same file) does
    /// // the same, or opens it without knowing the options:
    /// let same = region.open_channel("jobs")?;
    /// let mut out = Vec::new();
    /// same.recv(&mut out)?;
    /// assert_eq!(out, b"job 1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn channel(
        &self,
        name: &str,
        options: ChannelOptions,
    ) -> Result<&Channel, ChannelOpenError> {
        let (cap, max) = options
            .validate()
            .map_err(|reason| ChannelError::InvalidOptions {
                capacity: options.capacity_bytes(),
                max_message: options.max_message_len(),
                reason,
            })?;
        let requested = ChannelOptions::exact(cap, max);
        super::barrier::register();
        let ch = self.get_or_init_slice::<Channel>(name, cap / 8, |c| c.init(cap, max));
        let ch = match ch {
            Ok(ch) => ch,
            // Another length under this name: report the stored options if it is a
            // channel.
            Err(GetError::TypeMismatch { recorded, .. })
                if recorded == <Channel as crate::Shared>::TAG =>
            {
                let other = self.open_channel(name)?;
                return Err(ChannelOpenError::Mismatch {
                    name: name.to_owned(),
                    stored: other.options(),
                    requested,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let stored = ch
            .stored_options()
            .ok_or_else(|| ChannelOpenError::Corrupt {
                name: name.to_owned(),
            })?;
        if stored != requested {
            return Err(ChannelOpenError::Mismatch {
                name: name.to_owned(),
                stored,
                requested,
            });
        }
        Ok(ch)
    }

    /// The existing channel `name`, with the options it was created with.
    ///
    /// # Errors
    ///
    /// [`ChannelOpenError::Get`] (e.g. [`GetError::NotFound`]) as for
    /// [`Region::get`]; [`ChannelOpenError::Corrupt`] if its header was overwritten.
    pub fn open_channel(&self, name: &str) -> Result<&Channel, ChannelOpenError> {
        super::barrier::register();
        let ch = self.get::<Channel>(name)?;
        ch.stored_options()
            .ok_or_else(|| ChannelOpenError::Corrupt {
                name: name.to_owned(),
            })?;
        Ok(ch)
    }
}
