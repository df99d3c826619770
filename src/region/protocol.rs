//! The protocol on directory entries behind [`Region::get`] and the `get_or_*` calls:
//! scanning, claiming, initialising and publishing an entry, and taking over one whose
//! creator died.
//!
//! # Protocol
//!
//! Each entry has a state word (layout in [`state`](super::format::state)). To get or
//! create `name`, a process scans the directory from entry 0:
//!
//! - a `READY` or `INITIALISING` entry has a published name: if it is `name`, the type is
//!   checked and the object returned (once `READY`; until then the process waits);
//!   otherwise the scan moves on;
//! - a `CLAIMED` entry's name is not published yet: the process waits until it is, since
//!   it might be `name` (this is what keeps names unique when two processes create the
//!   same name at once: whoever claims a later entry has seen every earlier name);
//! - the first `EMPTY` entry proves `name` absent: the process claims it by CAS (`EMPTY ->
//!   CLAIMED`), writes name and type, allocates the object's space by CAS on the header's
//!   bump word, publishes the name (`INITIALISING`, release), zeroes the object, runs
//!   `init`, and publishes the object (`READY`, release). A losing CAS re-examines the
//!   entry.
//!
//! Waiting spins briefly with loads, then sets the `WAITERS` bit and futex-waits in
//! 10 ms slices; between slices it probes the owner, the thread recorded in the word
//! (`wait::holder_is_dead`: `kill(tid, 0)` and `/proc/<tid>/stat`). An entry whose owner died in
//! `CLAIMED` or `INITIALISING` is taken over by CAS on the state word (keeping the phase,
//! replacing the owner): a dead claim is re-claimed for the taker's own
//! name, a dead initialisation is restarted from zeroed bytes with the taker's `init`.
//! The space a dead claimer had already allocated is leaked. An `init` that panics marks
//! its entry abandoned (owner 0, which no thread has) so that the next caller takes over.
//!
//! # Crash windows
//!
//! What a SIGKILL of the creating process at each step leaves (a SIGSTOP leaves the same
//! until it continues: waiters then return [`GetError::Timeout`] at the region's
//! timeout):
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | before the claim | nothing | — |
//! | `CLAIMED`: name or type being written, space maybe allocated | an entry naming a dead owner | the next process that reaches it probes the owner between 10 ms slices and re-claims the entry for its own name (unit test `a_dead_claim_is_taken_over`); allocated space leaks; failpoint test |
//! | `INITIALISING`: object being zeroed or `init` running | the same, with the name published | a process waiting for that name takes it over and restarts from zeroed bytes with its own `init` within a slice (`tests/region_takeover.rs`) |
//! | `READY` published, waiters not yet woken | sleepers on a ready entry | each re-checks after its slice (10 ms); failpoint test |
//! | `init` panicked | an abandoned entry (owner 0) | the next caller takes it over at once |
//!
//! # Limits
//!
//! - Every process sharing a region must be in the same PID namespace: a TID from another
//!   namespace reads as dead (an entry could be taken over from a live owner) or as
//!   another thread.
//! - TIDs are reused: an owner that died after its TID was handed to a new thread reads
//!   as alive, and waiters return [`GetError::Timeout`] after the region's timeout
//!   instead of taking over.
//! - Space is never freed: objects live as long as the region.

use std::time::{Duration, Instant};

use crate::futex;
use crate::owner;
use crate::shared::{Shared, TypeTag};
use crate::sync::{Ordering, spin_loop};

use super::error::GetError;
use super::file::Region;
use super::format::{
    Entry, EntrySnapshot, MAX_NAME_LEN, NAME_FIELD, OBJECT_ALIGN, round_up, state,
};

/// Loads of a state word before a waiter sleeps.
const SPINS: u32 = crate::wait::SPIN_LIMIT;
/// Longest single futex wait: the owner's liveness is probed between slices. The crate's
/// word-wait cap ([`PROBE_SLICE`](crate::wait::PROBE_SLICE); the region is not built
/// under loom, where that is unbounded).
const SLICE: Duration = match crate::wait::PROBE_SLICE {
    Some(s) => s,
    None => Duration::from_millis(10),
};

/// What a caller asks for: a checked name and the type's identity.
struct Want<'n> {
    name: &'n str,
    tag: TypeTag,
    align: usize,
    /// The length asked for; `None` for [`Region::get`], which takes the recorded one.
    len: Option<usize>,
    size_for: fn(usize) -> Option<usize>,
}

impl<'n> Want<'n> {
    fn new<T: Shared + ?Sized>(name: &'n str, len: Option<usize>) -> Result<Self, GetError> {
        check_name(name)?;
        if !T::ALIGN.is_power_of_two() || T::ALIGN > OBJECT_ALIGN {
            return Err(GetError::BadAlignment {
                name: name.to_owned(),
                tag: T::TAG,
                align: T::ALIGN,
            });
        }
        if let Some(len) = len
            && T::size_for(len).is_none()
        {
            return Err(GetError::InvalidLength {
                name: name.to_owned(),
                tag: T::TAG,
                len: len as u64,
            });
        }
        Ok(Want {
            name,
            tag: T::TAG,
            align: T::ALIGN,
            len,
            size_for: T::size_for,
        })
    }

    /// Checks the entry recording `snap` against what this caller asked for; returns the
    /// object's length.
    fn check(&self, snap: &EntrySnapshot) -> Result<usize, GetError> {
        let name = || self.name.to_owned();
        let requested_len = self.len.map_or(snap.len, |l| l as u64);
        if snap.tag != self.tag || snap.len != requested_len {
            return Err(GetError::TypeMismatch {
                name: name(),
                recorded: snap.tag,
                recorded_len: snap.len,
                requested: self.tag,
                requested_len,
            });
        }
        // Only `get` gets here with a length it has not checked: the recorded one.
        let Some((len, size)) = usize::try_from(snap.len)
            .ok()
            .and_then(|len| Some((len, (self.size_for)(len)?)))
        else {
            return Err(GetError::InvalidLength {
                name: name(),
                tag: self.tag,
                len: snap.len,
            });
        };
        if snap.size != size as u64 || snap.align as usize != self.align {
            return Err(GetError::SizeMismatch {
                name: name(),
                recorded_size: snap.size,
                recorded_align: snap.align.into(),
                requested_size: size as u64,
                requested_align: self.align as u64,
            });
        }
        Ok(len)
    }
}

fn check_name(name: &str) -> Result<(), GetError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_NAME_LEN {
        "longer than 47 bytes"
    } else if name.bytes().any(|b| b == 0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(GetError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// Where a directory scan ended.
enum Step<'r> {
    /// A ready object of the wanted type, at `(offset, len)`.
    Ready(usize, usize),
    /// This process owns a `CLAIMED` entry (fresh or taken over) and must fill it.
    Claimed(&'r Entry),
    /// This process took over a dead owner's `INITIALISING` entry of the wanted type, at
    /// `(offset, len)`.
    TakenOver(&'r Entry, usize, usize),
}

/// What a wait on a state word saw.
enum Seen {
    /// The word changed (or the wait slice ended): look again.
    Changed,
    /// The word still names its owner, and the owner is dead.
    OwnerDead,
}

impl Region {
    /// The shared body of the `get_or_*` calls: the object `name` of type `T` and length
    /// `len`, created and initialised with `init` if absent.
    pub(super) fn get_or_create<T: Shared + ?Sized>(
        &self,
        name: &str,
        len: usize,
        init: impl FnOnce(&T),
    ) -> Result<&T, GetError> {
        let want = Want::new::<T>(name, Some(len))?;
        let deadline = self.deadline();
        let me = owner::current();
        match self.lookup(&want, true, deadline)? {
            Step::Ready(offset, len) => self.object(&want, offset, len),
            Step::Claimed(e) => {
                let offset = self.fill(e, &want, len, me, deadline)?;
                self.initialise(e, offset, len, me, init)
            }
            Step::TakenOver(e, offset, len) => self.initialise(e, offset, len, me, init),
        }
    }

    /// The body of [`Region::get`]: the existing object `name` of type `T`.
    pub(super) fn find<T: Shared + ?Sized>(&self, name: &str) -> Result<&T, GetError> {
        let want = Want::new::<T>(name, None)?;
        match self.lookup(&want, false, self.deadline())? {
            Step::Ready(offset, len) => self.object(&want, offset, len),
            // `lookup` without `create` neither claims nor takes over.
            Step::Claimed(_) | Step::TakenOver(..) => Err(GetError::NotFound {
                name: name.to_owned(),
            }),
        }
    }

    fn deadline(&self) -> Instant {
        deadline_after(self.timeout)
    }

    /// The checked object at `offset`.
    fn object<T: Shared + ?Sized>(
        &self,
        want: &Want<'_>,
        offset: usize,
        len: usize,
    ) -> Result<&T, GetError> {
        let end = T::size_for(len).and_then(|size| offset.checked_add(size));
        let raw = end.and_then(|end| self.raw_covering(end));
        raw.and_then(|raw| raw.object::<T>(offset, len))
            .ok_or_else(|| {
                GetError::Corrupt(format!("object `{}` at {offset} out of bounds", want.name))
            })
    }

    /// Scans the directory for `want` (see the module docs). With `create`, claims the
    /// first empty entry if the name is absent and takes over dead owners' entries.
    fn lookup(
        &self,
        want: &Want<'_>,
        create: bool,
        deadline: Instant,
    ) -> Result<Step<'_>, GetError> {
        let raw = self.raw();
        let geo = self.geo;
        let me = owner::current();
        let mut i = 0;
        while i < geo.capacity {
            let Some(e) = raw.entry(&geo, i) else {
                return Err(GetError::Corrupt(format!("entry {i} outside the region")));
            };
            // Acquire: pairs with the release transitions in `transition` (name and type
            // published for INITIALISING, the initialised object for READY).
            let s = e.state.load(Ordering::Acquire);
            match state::phase(s) {
                state::EMPTY => {
                    if !create {
                        return Err(GetError::NotFound {
                            name: want.name.to_owned(),
                        });
                    }
                    // Acquire on success: if a claimer gave this entry back (CLAIMED ->
                    // EMPTY, release), its writes to the fields happen before ours.
                    let claimed = state::make(me, state::CLAIMED);
                    match e
                        .state
                        .compare_exchange(s, claimed, Ordering::Acquire, Ordering::Relaxed)
                    {
                        Ok(_) => return Ok(Step::Claimed(e)),
                        Err(_) if Instant::now() >= deadline => return Err(GetError::Timeout),
                        Err(_) => continue,
                    }
                }
                state::CLAIMED => match wait_on(e, s, deadline, true)? {
                    Seen::Changed => continue,
                    // A dead claim names nothing: `get` looks further, a creator re-claims it.
                    Seen::OwnerDead if !create => i += 1,
                    Seen::OwnerDead => {
                        if take_over(e, s, me) {
                            return Ok(Step::Claimed(e));
                        }
                    }
                },
                phase => {
                    let snap = EntrySnapshot::read(e);
                    let corrupt = |what: &str| GetError::Corrupt(format!("entry {i}: {what}"));
                    let name = snap
                        .name_bytes()
                        .ok_or_else(|| corrupt("name not terminated"))?;
                    if name != want.name.as_bytes() {
                        i += 1;
                        continue;
                    }
                    let len = want.check(&snap)?;
                    // Against the maximum: an object beyond what this process has seen
                    // the file cover is checked against the file when it is handed out.
                    let mapped = super::format::Geometry {
                        total: geo.max,
                        ..geo
                    };
                    let (offset, _) = snap.placement(&mapped).map_err(|w| corrupt(&w))?;
                    if phase == state::READY {
                        return Ok(Step::Ready(offset, len));
                    }
                    match wait_on(e, s, deadline, true)? {
                        Seen::Changed => {}
                        // Without `create` nobody here finishes a dead owner's work, and no
                        // creator may ever come: the object does not exist (yet).
                        Seen::OwnerDead if !create => {
                            return Err(GetError::NotFound {
                                name: want.name.to_owned(),
                            });
                        }
                        Seen::OwnerDead => {
                            if take_over(e, s, me) {
                                return Ok(Step::TakenOver(e, offset, len));
                            }
                        }
                    }
                }
            }
        }
        if create {
            Err(GetError::DirectoryFull {
                capacity: geo.capacity,
            })
        } else {
            Err(GetError::NotFound {
                name: want.name.to_owned(),
            })
        }
    }

    /// Fills the `CLAIMED` entry `e` this process owns with `want` and allocates its
    /// space; publishes the name (`INITIALISING`). Returns the object's offset. On
    /// failure the entry is given back (`EMPTY`).
    fn fill(
        &self,
        e: &Entry,
        want: &Want<'_>,
        len: usize,
        me: u32,
        deadline: Instant,
    ) -> Result<usize, GetError> {
        // `Want::new` checked that `size_for(len)` exists.
        let size = (want.size_for)(len).unwrap_or(0);
        // Relaxed (all fields): published by the release transition to INITIALISING below.
        e.kind.store(want.tag.kind.0, Ordering::Relaxed);
        e.elem_code.store(want.tag.elem.code, Ordering::Relaxed);
        e.elem_size.store(want.tag.elem.size, Ordering::Relaxed);
        e.elem_align.store(want.tag.elem.align, Ordering::Relaxed);
        e.elem_id.store(want.tag.elem.id, Ordering::Relaxed);
        e.align.store(want.align as u32, Ordering::Relaxed);
        e.len.store(len as u64, Ordering::Relaxed);
        e.size.store(size as u64, Ordering::Relaxed);
        let name = want.name.as_bytes();
        for (k, byte) in e.name.iter().enumerate().take(NAME_FIELD) {
            byte.store(name.get(k).copied().unwrap_or(0), Ordering::Relaxed);
        }
        let offset = match self.allocate(size, deadline) {
            Ok(offset) => offset,
            Err(err) => {
                // Give the entry back: nobody has passed a CLAIMED entry, so the used
                // entries stay a prefix.
                transition(e, me, state::CLAIMED, state::EMPTY);
                return Err(err);
            }
        };
        e.offset.store(offset as u64, Ordering::Relaxed);
        crate::failpoint::hit(crate::failpoint::Point::RegionClaimed);
        if !transition(e, me, state::CLAIMED, state::make(me, state::INITIALISING)) {
            return Err(lost(want));
        }
        Ok(offset)
    }

    /// Zeroes the object of the `INITIALISING` entry `e` this process owns, runs `init`
    /// on it, and publishes it (`READY`).
    fn initialise<T: Shared + ?Sized>(
        &self,
        e: &Entry,
        offset: usize,
        len: usize,
        me: u32,
        init: impl FnOnce(&T),
    ) -> Result<&T, GetError> {
        let corrupt = || GetError::Corrupt(format!("object at {offset} out of bounds"));
        let size = T::size_for(len).ok_or_else(corrupt)?;
        let raw = offset
            .checked_add(size)
            .and_then(|end| self.raw_covering(end))
            .ok_or_else(corrupt)?;
        if !raw.zero(offset, size) {
            return Err(corrupt());
        }
        let object = raw.object::<T>(offset, len).ok_or_else(corrupt)?;
        let abandon = Abandon { e, me };
        init(object);
        core::mem::forget(abandon);
        if !transition(e, me, state::INITIALISING, state::make(me, state::READY)) {
            return Err(GetError::Corrupt(format!(
                "entry at object offset {offset} changed owner during init"
            )));
        }
        Ok(object)
    }

    /// Allocates `size` bytes (rounded up to 64) of data space; returns the offset.
    /// When the space below the size word runs out, grows the region if it may
    /// ([`Region::grow`]), and tries again.
    fn allocate(&self, size: usize, deadline: Instant) -> Result<usize, GetError> {
        let geo = self.geo;
        let raw = self.raw();
        let Some(h) = raw.header() else {
            return Err(GetError::Corrupt("no header".into()));
        };
        let Some(need) = round_up(size as u64) else {
            return Err(GetError::RegionFull {
                needed: u64::MAX,
                available: 0,
            });
        };
        // Acquire (loads, and the CAS's failure), Release (the CAS's success): the bump
        // word only hands out disjoint ranges (what is written into them is published
        // through the entry's state word), but a pointer past the old size is written
        // only after its allocator saw the size word raised (a grower's release
        // `fetch_max`, its own or a peer's): reading that pointer with acquire (through
        // the release sequence of the CAS's on it) makes the size-word load below see
        // the raised size, so an honest pointer is never found past the size and called
        // corrupt.
        let mut cur = h.bump.load(Ordering::Acquire);
        loop {
            // Acquire: pairs with a grower's release `fetch_max` (`Region::grow`), made
            // after it extended the file.
            let total = h.total_size.load(Ordering::Acquire);
            if total > geo.max as u64 {
                return Err(GetError::Corrupt(format!(
                    "size {total} above the maximum size {}",
                    geo.max
                )));
            }
            if cur < geo.data_start as u64
                || !cur.is_multiple_of(OBJECT_ALIGN as u64)
                || cur > total
            {
                return Err(GetError::Corrupt(format!(
                    "allocation pointer {cur} outside the data area"
                )));
            }
            if need > total - cur {
                // `RegionFull` unless it may grow; on success the size word rose.
                self.grow(cur, need, total)?;
                // Acquire: as above.
                cur = h.bump.load(Ordering::Acquire);
            } else {
                // Release on success: pairs with the acquire loads of the pointer (above,
                // and the failure ordering here) in allocators that then read the size
                // word, which this thread read (acquire) at `total` or above.
                match h.bump.compare_exchange_weak(
                    cur,
                    cur + need,
                    Ordering::Release,
                    Ordering::Acquire,
                ) {
                    // `cur + need <= total <= max`, a `usize`. The file must cover the
                    // range before anything touches it: a size word raised by a peer
                    // without extending the file is corruption, never a `SIGBUS`.
                    Ok(_) => {
                        return match self.raw_covering((cur + need) as usize) {
                            Some(_) => Ok(cur as usize),
                            None => Err(GetError::Corrupt(format!(
                                "size {total} beyond the end of the file"
                            ))),
                        };
                    }
                    Err(now) => cur = now,
                }
            }
            if Instant::now() >= deadline {
                return Err(GetError::Timeout);
            }
        }
    }
}

/// The instant `timeout` from now (a year from now if that overflows).
pub(super) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Waits for the state word of `e` to change from `seen`: spins briefly, then (if
/// `probe`) reports a dead owner, else futex-waits one slice.
#[cold]
fn wait_on(e: &Entry, seen: u32, deadline: Instant, probe: bool) -> Result<Seen, GetError> {
    let now = Instant::now();
    if now >= deadline {
        return Err(GetError::Timeout);
    }
    for _ in 0..SPINS {
        // Relaxed: only a hint to look again; `lookup` reloads with acquire.
        if e.state.load(Ordering::Relaxed) != seen {
            return Ok(Seen::Changed);
        }
        spin_loop();
    }
    if probe && crate::wait::holder_is_dead(state::owner(seen)) {
        return Ok(Seen::OwnerDead);
    }
    let waiting = seen | state::WAITERS;
    // Relaxed: setting WAITERS orders nothing; the owner's swap-like CAS in `transition`
    // sees the bit (same word) and wakes us.
    if seen != waiting
        && e.state
            .compare_exchange(seen, waiting, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return Ok(Seen::Changed);
    }
    futex::wait(&e.state, waiting, Some(SLICE.min(deadline - now)));
    Ok(Seen::Changed)
}

/// Takes over the entry whose dead owner left it in state `seen`, keeping its phase and
/// WAITERS bit. Returns whether this process won.
fn take_over(e: &Entry, seen: u32, me: u32) -> bool {
    let mine = state::make(me, state::phase(seen)) | (seen & state::WAITERS);
    // Acquire: the dead owner's last release transition (if any) happens before our
    // writes. Its later relaxed writes are complete: the kernel reports a thread dead only
    // after tearing down its address space.
    e.state
        .compare_exchange(seen, mine, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// Moves the entry this process owns in phase `from` to the word `to`, waking waiters.
/// Returns `false` if the entry is no longer ours in `from` (another process wrote the
/// word: a taker that misjudged us dead, or a hostile one).
fn transition(e: &Entry, me: u32, from: u32, to: u32) -> bool {
    let mine = state::make(me, from);
    // Relaxed: the CAS below re-reads the word anyway.
    let mut s = e.state.load(Ordering::Relaxed);
    // Only the WAITERS bit changes under a legitimate owner; bound the retries in case
    // someone flips it forever.
    for _ in 0..1000 {
        if s & !state::WAITERS != mine {
            return false;
        }
        // Release: publishes the entry's fields (to INITIALISING) or the initialised object
        // (to READY); pairs with the acquire loads of the state in `lookup` and `entries`.
        match e
            .state
            .compare_exchange_weak(s, to, Ordering::Release, Ordering::Relaxed)
        {
            Ok(prev) => {
                if state::phase(to) == state::READY {
                    crate::failpoint::hit(crate::failpoint::Point::RegionReadyUnwoken);
                }
                if state::has_waiters(prev) {
                    futex::wake_all(&e.state);
                }
                return true;
            }
            Err(now) => s = now,
        }
    }
    false
}

fn lost(want: &Want<'_>) -> GetError {
    GetError::Corrupt(format!(
        "the directory entry claimed for `{}` was taken by another process",
        want.name
    ))
}

/// Marks an entry abandoned (owner 0, which probes dead) if `init` unwinds, so that the
/// next caller takes it over instead of waiting for a timeout.
struct Abandon<'a> {
    e: &'a Entry,
    me: u32,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        transition(
            self.e,
            self.me,
            state::INITIALISING,
            state::make(0, state::INITIALISING),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::TestWord;
    use super::*;
    use crate::region::{EntryState, RegionOptions};
    use crate::sync::AtomicU32;

    fn region() -> Region {
        RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_millis(200))
            .anonymous(4096)
            .unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_dead_claim_is_taken_over() {
        let r = region();
        let e = r.raw().entry(&r.geo, 0).unwrap();
        // Pid 0: nobody; as if the claimer died before publishing a name.
        e.state
            .store(state::make(0, state::CLAIMED), Ordering::Release);
        let w = r
            .get_or_init::<TestWord>("x", |w| w.0.store(1, Ordering::Relaxed))
            .unwrap();
        assert_eq!(w.0.load(Ordering::Relaxed), 1);
        assert_eq!(r.entries()[0].name, "x");
        assert_eq!(r.entries()[0].owner, owner::current());
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_panicking_init_is_taken_over_from_zero() {
        let r = region();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.get_or_init::<TestWord>("p", |w| {
                w.0.store(99, Ordering::Relaxed);
                panic!("init failed");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(r.entries()[0].state, EntryState::Initialising);
        assert_eq!(r.entries()[0].owner, 0);
        let w = r
            .get_or_init::<TestWord>("p", |w| assert_eq!(w.0.load(Ordering::Relaxed), 0))
            .unwrap();
        assert_eq!(w.0.load(Ordering::Relaxed), 0);
        assert_eq!(r.entries()[0].state, EntryState::Ready);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn get_of_an_object_whose_creator_died_is_not_found_without_waiting_for_the_timeout() {
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_secs(10))
            .anonymous(4096)
            .unwrap();
        // As left by a creator that died inside `init` (a panicking `init` marks the entry
        // with owner 0, which probes dead like a killed process).
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            r.get_or_init::<TestWord>("p", |_| panic!("init failed"))
        }));
        assert!(caught.is_err());
        assert_eq!(r.entries()[0].state, EntryState::Initialising);
        // Nobody will finish it: `get` must not wait out the 10 s timeout and then blame a
        // live creator (`Timeout`).
        let err = r.get::<TestWord>("p").unwrap_err();
        assert!(
            matches!(&err, GetError::NotFound { name: n } if n == "p"),
            "{err:?}"
        );
        // A creator still takes it over.
        r.get_or_default::<TestWord>("p").unwrap();
        r.get::<TestWord>("p").unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn a_live_owner_that_never_finishes_times_out() {
        let r = region();
        let e = r.raw().entry(&r.geo, 0).unwrap();
        e.state.store(
            state::make(owner::current(), state::CLAIMED),
            Ordering::Release,
        );
        assert!(matches!(
            r.get_or_default::<TestWord>("x"),
            Err(GetError::Timeout)
        ));
        assert!(matches!(r.get::<TestWord>("x"), Err(GetError::Timeout)));
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd (memfd_create, MAP_SHARED)")]
    fn threads_racing_on_one_name_init_once() {
        // Not `region()`: its 200 ms timeout is how long the losers wait for the winner's
        // `init`, and a loaded machine can deschedule the winner for longer than that
        // (they would fail with `Timeout`, which is not what this test is about).
        let r = RegionOptions::new()
            .capacity(4)
            .timeout(Duration::from_secs(60))
            .anonymous(4096)
            .unwrap();
        let inits = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let w = r
                        .get_or_init::<TestWord>("t", |_| {
                            inits.fetch_add(1, Ordering::Relaxed);
                        })
                        .unwrap();
                    w.0.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert_eq!(inits.load(Ordering::Relaxed), 1);
        assert_eq!(r.get::<TestWord>("t").unwrap().0.load(Ordering::Relaxed), 4);
    }
}
