//! [`Watch`]: a wait's pidfd watch of the holder it probes, which makes the probes of a
//! holder watched long a `poll` instead of a `kill` and a `/proc` read.

use super::Tid;

/// Watches one holder across the probes of one wait: once a full [`probe`](super::probe) has found the
/// same TID alive twice, a pidfd for that thread (`pidfd_open` with `PIDFD_THREAD`, Linux
/// 6.9+) makes each further probe one `poll`, about 0.2 µs instead of a `kill` and a
/// `/proc` read (about 4 µs).
///
/// A readable pidfd only says that *the watched thread* exited: the kernel may already have
/// handed its TID to a new thread, which may hold the lock by now. So a readable pidfd is
/// dropped and the number is probed in full, as without a watch. An unreadable one says the
/// watched thread, and so the number, is alive. A pidfd does not report a thread-group
/// leader that called `pthread_exit` while its other threads run on (it stays a zombie
/// until they end), which the `/proc` check of [`probe`](super::probe) does: so every tenth probe of a
/// watched holder is a full one too. Where the pidfd cannot be had (a kernel before 6.9,
/// which the process then remembers, no fds left, Miri, loom), every probe is a full one.
#[derive(Default)]
pub(crate) struct Watch {
    /// The watched holder (its TID, or a stamped word's bits) and its pidfd (`pub(super)`
    /// for the unit tests).
    #[cfg(not(any(loom, miri)))]
    pub(super) fd: Option<(u32, rustix::fd::OwnedFd)>,
    /// A holder (as `fd` keys it) a full probe found alive: the next alive probe of it
    /// opens its pidfd (a holder seen once only, under ordinary contention, costs no
    /// `pidfd_open`).
    #[cfg(not(any(loom, miri)))]
    seen: u32,
    /// No fds left for this wait (`EMFILE`, `ENFILE`): probe in full from now on.
    #[cfg(not(any(loom, miri)))]
    no_fd: bool,
    probes: u32,
}

/// Set once `pidfd_open` with `PIDFD_THREAD` has been refused for good (an older kernel,
/// a seccomp filter): watches then never try again in this process.
#[cfg(not(any(loom, miri)))]
static PIDFD_REFUSED: crate::sync::AtomicBool = crate::sync::AtomicBool::new(false);

impl Watch {
    /// One probe in this many of a watched holder is a full [`probe`](super::probe).
    #[cfg(not(any(loom, miri)))]
    pub(crate) const FULL_PROBE_EVERY: u32 = 10;

    /// Whether probes of a watched holder can be cheap in this process (a pidfd per
    /// holder), as far as it knows yet.
    pub(crate) fn cheap_probes() -> bool {
        #[cfg(not(any(loom, miri)))]
        {
            // Relaxed: a hint; a stale `false` costs one more refused `pidfd_open`.
            !PIDFD_REFUSED.load(crate::sync::Ordering::Relaxed)
        }
        #[cfg(any(loom, miri))]
        false
    }

    /// Whether `tid` no longer names a live thread (unstamped: the unit tests' probe).
    #[cfg(test)]
    pub(crate) fn is_dead(&mut self, tid: Tid) -> bool {
        self.judge(tid, tid.get(), || tid.is_dead())
    }

    /// Whether the holder a stamped word's bits `bits` name (its TID `tid`, and a stamp:
    /// see [`probe_stamped`](super::probe_stamped)) is gone. Watched as [`is_dead`]
    /// watches a TID, keyed by TID and stamp; a readable pidfd, and every tenth probe, is
    /// a full stamped probe.
    pub(crate) fn stamped_is_dead(&mut self, tid: Tid, bits: u32) -> bool {
        self.judge(tid, bits, || {
            super::probe_stamped(bits) == super::Liveness::Dead
        })
    }

    /// [`is_dead`](Self::is_dead) of the holder `key` names (its TID `tid`, and whatever
    /// else a word records of it), with `full` as the full probe.
    pub(crate) fn judge(&mut self, tid: Tid, key: u32, full: impl FnOnce() -> bool) -> bool {
        self.probes = self.probes.wrapping_add(1);
        #[cfg(not(any(loom, miri)))]
        if let Some((watched, fd)) = &self.fd
            && *watched == key
        {
            let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let zero = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            match rustix::event::poll(&mut fds, Some(&zero)) {
                Ok(0) if !self.probes.is_multiple_of(Self::FULL_PROBE_EVERY) => return false,
                // Readable: the watched thread exited, and its number may name a new
                // thread already. Drop the pidfd and probe the number in full.
                Ok(n) if n > 0 => self.fd = None,
                // A full probe is due, or poll failed: probe in full.
                _ => {}
            }
        }
        let dead = full();
        #[cfg(not(any(loom, miri)))]
        if !dead && self.fd.as_ref().is_none_or(|(w, _)| *w != key) {
            self.fd = None;
            if self.seen == key && !self.no_fd && Self::cheap_probes() {
                self.fd = self.open(tid).map(|fd| (key, fd));
            }
            self.seen = key;
        }
        #[cfg(any(loom, miri))]
        let _ = (tid, key);
        dead
    }

    /// A pidfd for thread `tid`, or `None` (and remembers why) where it cannot be had.
    #[cfg(not(any(loom, miri)))]
    fn open(&mut self, tid: Tid) -> Option<rustix::fd::OwnedFd> {
        use rustix::io::Errno;
        use rustix::process::{Pid, PidfdFlags, pidfd_open};
        let pid = Pid::from_raw(i32::try_from(tid.get()).ok()?)?;
        match pidfd_open(pid, PidfdFlags::from_bits_retain(libc::PIDFD_THREAD)) {
            Ok(fd) => Some(fd),
            Err(Errno::MFILE | Errno::NFILE | Errno::NOMEM) => {
                self.no_fd = true;
                None
            }
            // Gone meanwhile: the next probe says so.
            Err(Errno::SRCH) => None,
            Err(_) => {
                // EINVAL (no PIDFD_THREAD before Linux 6.9), ENOSYS, EPERM: for good.
                // Relaxed: a hint (see `cheap_probes`).
                PIDFD_REFUSED.store(true, crate::sync::Ordering::Relaxed);
                None
            }
        }
    }
}
