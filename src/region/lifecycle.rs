//! Who has a region open, and removing its file when nobody does.
//!
//! # The attach table
//!
//! A region lists the processes that have it open in a table of
//! [`ATTACH_SLOTS`] (128) words after its directory (layout of a
//! word under [Layout](#layout)): the process's thread-group id and the low 32 bits of its
//! start time (field 22 of `/proc/<pid>/stat`), so that a process that died and whose pid
//! the kernel gave to a new process is not mistaken for the old one. A word is claimed
//! (`0 -> word`) and released (`word -> 0`) by a single compare-and-swap: no crash leaves
//! half an entry.
//!
//! - **One word per handle.** Every [`Region`] handle opened read-write (created, opened by
//!   path, from a descriptor, memfd, anonymous) claims its own word when it is made and
//!   releases it when dropped. A process with three handles on one file holds three words;
//!   [`Region::attached`] lists it once, with [`Attached::handles`] = 3. So "is anyone else
//!   still attached" needs no per-process bookkeeping: another live word, even this
//!   process's own, means "yes". A [`ReadOnlyRegion`](super::ReadOnlyRegion) never claims a
//!   word (it cannot write), and neither do [`Region::remove_unused`] and
//!   [`Region::remove_forced`].
//! - **Full table.** A handle that finds no free word, even after pruning dead ones, is
//!   still made: the open succeeds, the handle is not listed, and the region's life-cycle
//!   word gets the sticky `UNLISTED` bit. From then on nothing removes the region
//!   automatically (`remove_when_unused` and [`Region::remove_unused`] refuse: an unlisted
//!   process may be using it); only [`Region::remove_forced`] does. So a full table errs on
//!   the side of never removing.
//! - **Dead words** (the pid is gone, is a zombie process, or is alive with another start
//!   time; a process whose main thread exited while other threads run on shows a zombie
//!   thread-group leader but more than one thread, field 20 of `/proc/<pid>/stat`, and is
//!   alive)
//!   are pruned by whoever notices: [`Region::attached`], an open that finds the table
//!   full, and every removal check. A process that was SIGKILLed keeps its word until then;
//!   it only costs a table word.
//! - **Fork.** A child inherits its parent's handles, but not their words: a word names the
//!   parent. The crate registers `pthread_atfork` handlers as the program starts (an ELF
//!   constructor, also run when `dlopen` loads a library that links the crate, such as the
//!   Python extension; never lazily, where a registration racing a fork on another thread
//!   could leave the child stuck at its first attach): the prepare handler claims, in the
//!   parent's name, one more word for every listed handle, and the child handler swaps the
//!   child's own word into exactly that slot (one CAS, no scan, no allocation). The
//!   prepare handler also copies the parent handle's bits in every entry's user bitmap to
//!   the child's word, and the child handler sets the bits of every entry the inherited
//!   handle had pinned ([`remove`](super::remove)): the child's inherited references keep
//!   their objects from removal like the parent's did. When the table is full the
//!   prepare handler prunes dead words and claims again; if it is still full it sets
//!   `UNLISTED` before `fork` (the full-table rule above, so no removal of the region or
//!   of an object succeeds from then on) and the child claims a word of its own in its
//!   handler, as an opener does. So the child counts as attached
//!   before `fork` returns in either process (a parent that drops its last handle the
//!   moment `fork` returns finds the
//!   child's word, or the parent's claimed for it, and keeps the file), and dropping the inherited
//!   handle releases the child's word, never the parent's (a handle only ever releases a
//!   word whose pid is the caller's). A child that `exec`s stays listed until the new
//!   program exits (the table cannot see an `exec`): that keeps the file longer, never
//!   removes it early. `posix_spawn` (what `std::process::Command` uses) runs no fork
//!   handlers and claims nothing. If `fork` fails, the words claimed for the child stay,
//!   naming the parent, until it exits (the parent handler cannot tell a failed fork from
//!   a child that has not run yet): that too keeps the file longer, never removes it
//!   early. So does a child killed before its child handler ran: the word claimed for it
//!   still names the parent, alive, so the parent's own last drop finds a live word and
//!   leaves the file, which then stays after the parent exits until the next opener or
//!   `shmstate gc`. A child that ends without dropping the handles it
//!   inherited (they live on its copy of the parent's stack; `_exit`, `exit` and a kill
//!   all skip their destructors) leaves words that read dead once it is gone, like a
//!   killed process: if it was the last process using a `remove_when_unused` region, the
//!   file stays until the next opener or `shmstate gc`. (The usual shape, a parent that
//!   forks workers and outlives them, removes the file when the parent drops its handle.)
//!
//! # Removal
//!
//! [`RegionOptions::remove_when_unused`](super::RegionOptions::remove_when_unused) is
//! recorded in the file at creation; every handle follows it, whatever its own options
//! say. When a handle that opened the region by path (or created it) is dropped, it
//! releases its word and, if the flag is set, tries to retire the region: mark it dead in
//! its life-cycle word (layout under [Layout](#layout)), check that no live
//! process is attached, and unlink the file. [`Region::remove_unused`] (`shmstate rm`,
//! `shmstate gc`) runs the same steps without being attached; [`Region::remove_forced`]
//! skips the check.
//!
//! The steps of a removal by thread `t`:
//!
//! 1. `LIVE -> RETIRING(t)` by CAS (`SeqCst`). A word with `UNLISTED` stops here (an
//!    unlisted user may be attached); so does `RETIRED` (someone else removed it: a handle
//!    being dropped waits until that unlink is done, so that dropping the last handle
//!    returns with the file gone). `RETIRING` by another live thread is waited for on the
//!    word (in 10 ms slices, at most the region's timeout): its scan decides (it removes the
//!    file, or finds a live process, cancels, and this removal looks again; without the
//!    wait, two last handles dropped at once could each see the other and both leave the
//!    file). `RETIRING` by a dead thread is taken over by CAS. Whoever puts its TID in the
//!    word records itself in the remover word (layout under [Layout](#layout)): a TID is
//!    probed with its thread's start time, like a table word.
//! 2. Scan the attach table (`SeqCst` loads). A live word cancels: `RETIRING(t) -> LIVE`.
//!    Dead words are pruned.
//! 3. `RETIRING(t) -> RETIRED(t)` by CAS (`SeqCst`). It fails if an opener cancelled the
//!    retirement in between (or set `UNLISTED`): the region stays.
//! 4. Unlink the path, if the file at the path is still the one mapped (same device and
//!    inode by `fstatat` on a directory descriptor kept from the open; a file created
//!    there since is never removed).
//! 5. If the file is now linked nowhere (`st_nlink` 0, by `fstat` of the mapped file):
//!    `RETIRED(t) -> RETIRED(0)`. Otherwise nothing was removed (the unlink was refused:
//!    another user's file in a sticky directory such as `/dev/shm`, a mount point; or the
//!    path names another file now, the region's was renamed; or the file has another
//!    name): `RETIRED(t) -> LIVE`, and the removal fails with
//!    [`RemoveError::Unlink`] (a drop has nobody to tell).
//!    This is safe: whoever saw `RETIRED` meanwhile released its word and opens the path
//!    again. Either way, wake the processes waiting on the word.
//!
//! An opener (any read-write handle being made from an existing file) does:
//!
//! 1. Claim a table word by CAS (`SeqCst`), or set `UNLISTED` (`fetch_or`, `SeqCst`).
//! 2. Load the life-cycle word (`SeqCst`). `LIVE`: done. `RETIRING`: cancel it by CAS to
//!    `LIVE` and be done; if that CAS loses to the remover's step 3, see `RETIRED`.
//!    `RETIRED`: release the word, wait until the unlink is done (the path no longer
//!    names the mapped file, or the region is `LIVE` again; taking the unlink over if the
//!    unlinker is dead), drop the mapping, and open the path again:
//!    [`Region::open`] then finds nothing ([`OpenError::NotFound`](super::OpenError::NotFound))
//!    or a new file, and [`Region::open_or_create`] creates a fresh region. If the unlink
//!    is not done within the region's timeout (the remover is stopped), the open fails
//!    with [`OpenError::Retired`](super::OpenError::Retired).
//!
//! **Why no opener ends up using a removed file.** Opener step 1 (a `SeqCst` write to a
//! table word or the life-cycle word) comes before its step 2 (a `SeqCst` load of the
//! life-cycle word); remover step 1 (a `SeqCst` write of the life-cycle word) comes before
//! its step 2 (`SeqCst` loads of every table word). All four are `SeqCst`, so they lie in
//! one total order. If the opener's load comes before the remover's step-1 write, then the
//! opener's claim came before it too, and the remover's scan, later still, sees the claim:
//! it cancels. Otherwise the opener's load reads `RETIRING(t)` or what came after it: it
//! either cancels the retirement before the remover's step 3 (whose CAS then fails: the
//! region stays), or finds `RETIRED` and does not use the region. In every case either the
//! remover sees the opener or the opener sees the removal. (With `UNLISTED` the opener's
//! write is on the life-cycle word itself, so the remover's step-3 CAS fails outright.)
//! Only one thread at a time unlinks (the TID in `RETIRED`; a forced removal may take over
//! from a live one that is stuck, and each checks the path before unlinking), and the file
//! at a path is replaced only after it is unlinked (creators `link` without replacing), so
//! the unlink of step 4 removes the retired file or nothing (but see Limits for a rename
//! by hand).
//!
//! A program killed with its region open leaves it behind with a dead word; the next
//! program that opens it finds it `LIVE`, simply uses it, and removes it when it too
//! detaches (its own removal prunes the dead word). `shmstate gc DIR` removes such files
//! when nobody comes back. The same holds for a process that exits without dropping its
//! handles (`std::process::exit`, `_exit`, a `Region` leaked or kept in a `static`: no
//! destructor runs), and for a fork child killed before its child handler ran (its word,
//! claimed by the parent's prepare handler, still names the parent, so the parent's last
//! drop finds it live and leaves the file; see Fork above).
//!
//! # Crash windows
//!
//! What a SIGKILL at each step leaves (a SIGSTOP leaves the same until it continues):
//!
//! | step | left behind | repaired by, how fast |
//! |------|-------------|-----------------------|
//! | opener: word claimed, life-cycle word not yet read | a word naming a dead process (stopped: a live one, which keeps every removal off; failpoint test `an_opener_stopped_after_claiming_keeps_the_region`) | pruned by the next `attached()`, removal check or full-table open; a removal meanwhile prunes it and goes ahead (tests `attached_lists_exactly_the_live_processes_while_they_kill_each_other`, `remove_when_unused_the_last_live_process_removes_it_past_a_killed_one`) |
//! | opener: `RETIRING` cancelled | nothing: the region is `LIVE` with a dead word; the remover's final CAS fails and it leaves the file | as above: the next opener uses it and removes it when done (failpoint test `an_opener_killed_after_cancelling_a_retirement_leaves_a_live_region`) |
//! | attached process killed while using the region | a dead word | as above; with `remove_when_unused`, the file stays until the next opener detaches or `shmstate gc` (tests `remove_when_unused_a_killed_last_process_is_reclaimed_by_the_next_opener`, CLI test `gc_removes_only_regions_without_live_processes`) |
//! | drop: word released, removal not begun | a `LIVE` region nobody is attached to | the next opener (uses it, removes it when done), `shmstate rm`/`gc` (failpoint test `a_process_killed_between_releasing_and_removing_leaves_the_file_to_the_next`) |
//! | remover step 1: `RETIRING(t)` set, table not scanned | a region that openers cancel at once, and removers take over after probing `t` dead | the next opener (no wait) or remover (one probe); failpoint tests `a_remover_killed_while_retiring_is_cancelled_by_an_opener_or_taken_over`, `a_stopped_remover_cancelled_by_an_opener_keeps_the_region` |
//! | remover step 1, stopped (not killed) | handles opened before the `RETIRING` wait for its outcome when dropped, each for its full timeout, then leave the file | the remover, when continued (its scan decides); if killed instead, as above (failpoint test `a_remover_stopped_while_retiring_makes_another_last_drop_leave_the_file`) |
//! | remover step 2: scanning, pruning | as step 1, some dead words pruned | as step 1 (failpoint test `a_remover_killed_mid_scan_leaves_a_region_the_next_opener_uses`) |
//! | remover step 3: `RETIRED(t)` set, not unlinked | a dead file at the path | the next opener waits for `t` on the life-cycle word in 10 ms slices, probes it dead (TID and recorded start time), takes the unlink over and opens afresh; `shmstate gc`/`rm` likewise; `rm --force` even if `t` reads alive (failpoint test `a_remover_killed_before_unlinking_is_finished_by_the_next_opener`; tests `a_retired_region_whose_unlinker_tid_was_reused_is_unlinked_by_the_next_opener`, `remove_forced_takes_over_a_retired_region_whose_unlinker_reads_alive`) |
//! | remover step 4 done, step 5 not | `RETIRED(t)` in an unlinked file; the path is free | only handles that opened the file before the unlink see it: the path no longer names their file, so they are done at once and retry by path (failpoint test `an_unlinker_killed_after_unlinking_leaves_the_path_free`, unit test `an_unlinker_killed_after_its_unlink_is_finished_without_touching_a_new_file`) |
//! | remover step 4 failed, step 5 not | `RETIRED(t)` with the file still at the path | as step 3: a taker-over unlinks it or, failing too, sets it `LIVE` (tests `a_refused_unlink_leaves_the_region_live_and_remove_unused_says_so`, `a_region_renamed_before_its_last_drop_stays_live_under_its_new_name`) |
//! | fork prepare handler, a word claimed for the child | a word naming the parent | the child's: swapped by its handler; after a failed fork, or a child killed before its handler ran, pruned once the parent is dead, so the parent's own last drop leaves a `remove_when_unused` file, to the next opener or `shmstate gc` (tests `a_parent_dropping_its_handle_right_after_fork_keeps_the_file_for_its_child`, `a_fork_child_ended_before_its_handler_makes_the_parents_last_drop_leave_the_file`) |
//! | fork prepare handler, the table full after pruning | `UNLISTED` set, no word for the child | nothing to repair: the region is never removed automatically again (the full-table rule); the child's handler claims a word if one is free by then (failpoint test `a_fork_with_a_table_full_of_live_words_leaves_the_region_unlisted`) |
//! | fork child handler, the child's word swapped in | a word naming the child | pruned once the child is dead, as above (failpoint test `a_fork_child_stopped_in_its_handler_is_listed_and_pruned_once_killed`) |
//! | parent killed between its prepare handler and the child's swap | a dead word the child's swap replaces, unless a removal pruned it first: then the child claims a word as an opener does, and if the region was retired meanwhile it keeps a handle without a word and marks the region `UNLISTED` (failpoint test `a_fork_child_left_without_a_word_by_a_retirement_marks_the_region_unlisted`); a child whose word was taken and that finds the table full marks it too, and checks its inherited objects (failpoint test `a_fork_child_whose_word_was_taken_and_that_finds_the_table_full_checks_its_objects`) | the parent is gone: nothing but the child can use the old file anyway, unless the unlink fails and the region goes live again, which is then never removed unforced (`UNLISTED`) |
//!
//! # Limits
//!
//! - As for every liveness probe in the crate (`kill(pid, 0)`, then the state and start
//!   time in `/proc/<pid>/stat`): all processes sharing a
//!   region must be in the same PID namespace, and a dead process's pid reused by a new
//!   process reads as dead only where `/proc` of this namespace shows start times (else it
//!   reads as alive, and the file is kept). Containers with separate PID namespaces that
//!   share a directory (a common `/dev/shm` mount) break this: another namespace's pid
//!   names nobody here, or someone else, so a live user can read dead and a
//!   `remove_when_unused` region, or one `shmstate rm` is run on, can be removed under it.
//!   Do not share removable regions across PID namespaces.
//! - Start times are not compared across time namespaces: `/proc` shows them shifted by
//!   the reader's boot-time offset, so a process known to be in another time namespace
//!   (`owner::shares_time_namespace`) is judged by its pid alone (a dead one's pid reused
//!   by a new process then reads as alive, and the file is kept). Where that cannot be
//!   told (the process's `ns/time` link is another user's, or a non-dumpable process's),
//!   start times are compared, so such a process in another time namespace reads as dead
//!   to the others, with the consequence above; so does a process restored by CRIU,
//!   which has a new start time, and one that joins another time namespace (`setns`)
//!   after it attached (its words record the start time its old namespace showed): not
//!   supported. A word that reads dead (so, or pruned by a misjudgment, below) also
//!   makes its process's threads read dead as owners of directory entries
//!   (the creation protocol's Limits, `src/region/protocol.rs`): an object it is
//!   initialising can be taken over or freed, and its removal in progress cancelled under
//!   it (the remover then goes on: it may clear the bit of a getter that pinned the object
//!   after the cancel, and fails with `RemoveObjectError::Corrupt`, leaving an object
//!   that a later removal can free under that getter).
//! - With `/proc` mounted `hidepid=2` (or `hidepid=invisible`), another user's processes
//!   have no `/proc/<pid>`: their words are probed by pid alone (`kill` answers `EPERM`:
//!   alive), so a dead one's pid reused by a new process reads as alive, and the file is
//!   kept, as where `/proc` shows no start times.
//! - The start time is compared on its low 32 bits (about 497 days of clock ticks at
//!   100 Hz): a process that reuses a recorded pid exactly a multiple of that later reads
//!   as the old one (and the file is kept). A recorded start time of 0 means unknown (no
//!   `/proc` when the word was claimed): only the pid is probed.
//! - Only handles that know the region's path remove it: made by
//!   [`RegionOptions::create`](super::RegionOptions::create),
//!   [`open`](super::RegionOptions::open) or
//!   [`open_or_create`](super::RegionOptions::open_or_create). A memfd or anonymous region
//!   has no path (it vanishes with its last descriptor and mapping anyway); a handle from
//!   [`Region::from_fd`] on a region file is listed but never removes it.
//! - A file removed by hand (`rm`) while in use is not this protocol's concern: its users
//!   keep a file nobody can open by path any more.
//! - Step 4 checks the path (`fstatat`) and then unlinks it (`unlinkat`): a file renamed
//!   onto the path (`mv other path`) between the two calls is unlinked instead of the
//!   region's (which then stays `LIVE`, step 5). Regions are created by `link`, which never
//!   replaces, so only a rename by hand or by another program can land there.
//! - The table is region memory: a process that writes the region (buggy or hostile) can
//!   zero other processes' words, and then a removal finds nobody attached and removes the
//!   file under them (they keep their mapping; new openers get a new region). Removal
//!   trusts the processes that can write the region, as every primitive in it does.
//! - A `remove_when_unused` region is removed only by a handle's drop: a last process
//!   that exits without dropping its handles (`exit`, `_exit`, a leaked or `static`
//!   `Region`) leaves the file, as a killed one does, and so does a parent whose fork
//!   child was killed before its child handler ran (the word claimed for the child names
//!   the parent until the parent is gone). The next opener or `shmstate gc` removes it.
//! - A process that forks while holding handles lists each child until the child exits,
//!   `exec` or not. 128 children at once, each holding a word (a server forking
//!   `exec`-ing helpers through `fork` rather than `posix_spawn`), fill the table: the
//!   next handle is unlisted and `UNLISTED` stays set for good, so the region is never
//!   removed unforced.
//! - With start times unknown (0: no `/proc` of this namespace), a prune racing a pid
//!   reuse can free a live word: it probes a dead process's word dead, and before its
//!   compare-and-swap, another prune frees the slot and a new process that reused the pid
//!   claims that very slot with the same value. That process is then unlisted without
//!   knowing it (a window of a few microseconds, and a pid reused within it).
//!
//! # Layout
//!
//! An attach-table word (8 bytes, at `128 + capacity * 128 + 8 * i`):
//!
//! ```text
//! bits 63..32  thread-group id (pid) of the process; 0: the word is free
//! bits 31..0   low 32 bits of the process's start time (field 22 of /proc/<pid>/stat,
//!              clock ticks since boot); 0: unknown (only the pid is probed)
//! ```
//!
//! A pid of 0 with a non-zero start, or above the kernel's `PID_MAX_LIMIT` (2^22), names
//! no process and reads as dead (a hostile file's words are pruned, never trusted).
//!
//! The life-cycle word (the header's 32-bit word at offset 60):
//!
//! ```text
//! bits 31..3   TID of the thread retiring the region (RETIRING), or of the one that
//!              unlinks it (RETIRED; 0 once unlinked); 0 while LIVE
//! bit  2       UNLISTED: a handle was made without a table word (sticky)
//! bits 1..0    phase: 0 LIVE, 1 RETIRING, 2 RETIRED (3 is refused at open)
//! ```
//!
//! The remover word (the header's 64-bit word at offset 72) names the thread whose TID the
//! life-cycle word holds, laid out as a table word (TID in bits 63..32, the low 32 bits of
//! the thread's start time, field 22 of `/proc/<tid>/stat`, in bits 31..0). The thread
//! writes it right after its compare-and-swap puts its TID in the life-cycle word; a
//! reader probing that TID uses the recorded start time if the word names the same TID
//! (so a TID that a new thread reused reads dead), and the TID alone otherwise (a thread
//! killed between the two writes).
//!
//! The creation flags (the header's 32-bit word at offset 56): bit 0 is
//! `remove_when_unused`; any other bit set is refused at open.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::futex;
use crate::owner::{self, Liveness, ProcStat, StartTime, Tid};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

use super::error::RemoveError;
use super::file::{Region, RegionOptions};
use super::format::{ATTACH_SLOTS, Geometry, Raw, flags, life, slot};

/// One process that has a region open, as listed by [`Region::attached`] and
/// [`ReadOnlyRegion::attached`](super::ReadOnlyRegion::attached): a snapshot, stale as
/// soon as it is made.
///
/// # Examples
///
/// ```
/// use shmstate::Region;
///
/// let region = Region::anonymous(1 << 16)?;
/// let me = region.attached();
/// assert_eq!(me.len(), 1);
/// assert_eq!(me[0].pid, std::process::id());
/// assert!(me[0].alive);
/// # Ok::<(), shmstate::RegionError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attached {
    /// The process id (thread-group id).
    pub pid: u32,
    /// The low 32 bits of the process's start time in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`); 0 if it was unknown when the process attached.
    pub start_time: u32,
    /// Whether the process is alive: its pid names a live, non-zombie process with this
    /// start time (see the module docs for the limits of the probe).
    pub alive: bool,
    /// How many handles of the process hold a word in the table.
    pub handles: u32,
}

/// The path a handle was opened by, kept to unlink that very file (and no other).
pub(super) struct PathRef {
    /// The directory the name was looked up in (`O_PATH`).
    dir: OwnedFd,
    /// The file name in `dir`.
    name: OsString,
    /// The mapped file (a duplicate of the descriptor it was opened by), to tell whether an
    /// unlink left it linked nowhere.
    file: OwnedFd,
    /// Device and inode of the mapped file.
    dev: u64,
    ino: u64,
}

impl std::fmt::Debug for PathRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathRef").field("name", &self.name).finish()
    }
}

impl PathRef {
    /// The reference to `path`, which names the open file `fd`.
    pub(super) fn new(path: &Path, fd: &OwnedFd) -> std::io::Result<PathRef> {
        let st = rustix::fs::fstat(fd)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other("the path has no file name"))?
            .to_owned();
        let dir = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(PathRef {
            dir,
            name,
            file: fd.try_clone()?,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// Whether the name still names the mapped file.
    fn names_file(&self) -> bool {
        rustix::fs::statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_dev == self.dev && st.st_ino == self.ino)
    }

    /// Unlinks the name if it still names the mapped file.
    fn unlink_if_same(&self) -> std::io::Result<()> {
        if !self.names_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the path no longer names the region's file",
            ));
        }
        Ok(rustix::fs::unlinkat(
            &self.dir,
            &self.name,
            AtFlags::empty(),
        )?)
    }

    /// Whether the mapped file is linked nowhere any more (`st_nlink == 0`).
    fn unlinked(&self) -> bool {
        rustix::fs::fstat(&self.file).is_ok_and(|st| st.st_nlink == 0)
    }
}

/// A handle's word in the attach table.
pub(super) struct Attachment {
    /// The mapping's base and length (the handle's `Raw` view).
    base: core::ptr::NonNull<u8>,
    len: usize,
    geo: Geometry,
    /// Index of the word this handle holds, or `NO_SLOT`.
    slot: AtomicU32,
    /// The word written there (its pid is the process that holds it); 0: none.
    word: AtomicU64,
    /// Index of the word claimed for the child by a fork in progress (the prepare handler
    /// claims it in this process's name, the child handler swaps in the child's), or
    /// `NO_SLOT`. Only touched by the forking thread, under the registry lock.
    fork_slot: AtomicU32,
    /// The handle's pin set ([`remove`](super::remove)): the fork child handler sets the
    /// child's bits for the references it inherited.
    pins: Arc<super::remove::Pins>,
}

// SAFETY: `base` points into a `MAP_SHARED` mapping that is only accessed through atomics
// (`Raw`'s contract); an `Attachment` is only used while the `Region` that owns the
// mapping lives (the handle's `Drop` takes it out of the registry before unmapping), and
// any thread may load and CAS atomics there.
unsafe impl Send for Attachment {}
// SAFETY: as above; its own fields are atomics.
unsafe impl Sync for Attachment {}

const NO_SLOT: u32 = u32::MAX;

impl Attachment {
    fn raw(&self) -> Raw<'_> {
        // SAFETY: `base` and `len` are the handle's mapping (from `Region::raw`), which
        // outlives every use of `self` (see the `Send` impl), and is only accessed
        // through atomics.
        unsafe { Raw::new(self.base, self.len) }
    }

    /// Releases the word if this process holds it (not in a child that inherited the
    /// handle without claiming its own). Returns whether this process was listed.
    fn release(&self) -> bool {
        // Relaxed: the handle's own fields, written by this process (or by the fork child
        // handler before the child ran anything else).
        let word = self.word.load(Ordering::Relaxed);
        let i = self.slot.load(Ordering::Relaxed);
        if word == 0 || slot::pid(word) != owner::current_pid() {
            return false;
        }
        self.word.store(0, Ordering::Relaxed);
        self.slot.store(NO_SLOT, Ordering::Relaxed);
        // SeqCst: as every load of a table word by the protocol (module docs). A word
        // pruned (misjudged dead) and claimed by another handle is that handle's, with
        // its bits: leave them.
        let still_ours = self
            .raw()
            .attach_slot(&self.geo, i)
            .is_some_and(|s| s.load(Ordering::SeqCst) == word);
        if i != NO_SLOT && still_ours {
            // The handle's references are gone with it: so are its uses of entries.
            super::remove::clear_slot_bits(self.raw(), &self.geo, i);
        }
        if let Some(s) = self.raw().attach_slot(&self.geo, i) {
            // SeqCst: in the one order of the protocol's SeqCst operations (module docs), a
            // removal's scan either sees the word or comes after this release. Failure:
            // someone pruned the word (misjudged dead): nothing to release.
            let _ = s.compare_exchange(word, 0, Ordering::SeqCst, Ordering::Relaxed);
        }
        true
    }
}

/// This process's table word, cached per process (a forked child works its own out).
fn my_word(for_child: bool) -> u64 {
    static CACHE: AtomicU64 = AtomicU64::new(0);
    let pid = owner::current_pid();
    // Relaxed: the cached word is self-contained.
    let cached = CACHE.load(Ordering::Relaxed);
    if !for_child && cached != 0 && slot::pid(cached) == pid {
        return cached;
    }
    let start = match owner::start_time(None) {
        // Low 32 bits: see the format of a word.
        StartTime::Known(t) => t as u32,
        _ => 0,
    };
    let word = slot::make(pid, start);
    CACHE.store(word, Ordering::Relaxed);
    word
}

/// Whether the table word `w` names a live process: its pid is alive (see [`judge`])
/// and (where `/proc` shows it) started at the recorded time.
pub(super) fn word_is_alive(w: u64) -> bool {
    let Some(tid) = Tid::parse(slot::pid(w)) else {
        return false;
    };
    let kill = owner::kill_probe(tid.get());
    if kill == Liveness::Dead {
        return false;
    }
    judge(
        kill,
        owner::stat(Some(tid.get())),
        slot::start(w),
        true,
        || owner::shares_time_namespace(tid.get()) != Some(false),
    )
}

/// The liveness of the process (with `process`) or thread that `kill(id, 0)` answered
/// `kill` for, `/proc/<id>/stat` read `stat`, recorded with start time `recorded` (low
/// 32 bits; 0: unknown).
///
/// - `kill` says dead: dead.
/// - The start time differs from the recorded one: dead (a new process has the pid),
///   unless `comparable()` (called only then) says no: the task is known to be in
///   another time namespace than the caller. `/proc` shows start times shifted by the
///   reader's time namespace, so across two a start time cannot be compared: the pid
///   alone decides. Where that cannot be told (the task's `ns/time` link is another
///   user's, or a non-dumpable process's), the start time decides, as it did before
///   time namespaces were looked at: reading such a task alive would keep a dead
///   holder's lock for as long as the task lives.
/// - A zombie (`Z`) or dead (`X`) task: dead, except that a process whose main thread
///   exited (which leaves the thread-group leader a zombie) while other threads run on is
///   alive, for a `process`: its thread count (field 20) is above 1.
/// - Otherwise, or when `/proc` cannot tell (no such file, as for another user's process
///   under `hidepid=2`, where `kill` answers `EPERM`): alive.
fn judge(
    kill: Liveness,
    stat: ProcStat,
    recorded: u32,
    process: bool,
    comparable: impl FnOnce() -> bool,
) -> bool {
    if kill == Liveness::Dead {
        return false;
    }
    match stat {
        ProcStat::Known {
            state,
            threads,
            start,
        } => {
            if recorded != 0 && start as u32 != recorded && comparable() {
                return false;
            }
            if matches!(state, b'Z' | b'X') {
                return process && threads > 1;
            }
            true
        }
        // `kill` found it, `/proc` does not show it: `/proc` mounted `hidepid=2` hides
        // another user's processes (or it exited a moment ago, which the next probe sees).
        // The start time cannot be checked: alive, as when `/proc` cannot tell.
        ProcStat::Gone | ProcStat::Unknown => true,
    }
}

/// The calling thread as the header's remover word names it: its TID and the low 32 bits
/// of its start time (field 22 of `/proc/<tid>/stat`; 0 if unknown).
fn remover_word() -> u64 {
    let me = owner::current();
    slot::make(me, start_of(me))
}

thread_local! {
    /// [`own_start`]'s cache: TID, fork generation, start time.
    static OWN: core::cell::Cell<(u32, u32, u32)> = const { core::cell::Cell::new((0, 0, 0)) };
}

/// Sets [`own_start`]'s cache, as a thread that had this TID in an ancestor process left
/// it (tests).
#[cfg(test)]
pub(super) fn seed_own_start(tid: u32, forks: u32, start: u32) {
    OWN.with(|c| c.set((tid, forks, start)));
}

/// The calling thread's TID and [`start_of`] it, read from `/proc` once per thread (and
/// again in a forked process, or after a read that failed).
pub(super) fn own_start() -> (u32, u32) {
    own_start_read(start_of)
}

/// [`own_start`], reading a start time with `read` (tests pass a reader that fails).
fn own_start_read(read: impl FnOnce(u32) -> u32) -> (u32, u32) {
    let me = owner::current();
    // Keyed by the fork generation too: a forked child's thread inherits this copy, and a
    // descendant's thread may get the very TID it was filled for (after that thread died).
    let forks = owner::fork_generation();
    let (tid, generation, start) = OWN.with(core::cell::Cell::get);
    if tid == me && generation == forks {
        return (me, start);
    }
    let start = read(me);
    // An unknown start (a `/proc` read that failed) is read again next time, and nothing
    // is cached where forks do not count (the generation would not tell a descendant).
    if start != 0 && owner::fork_counted() {
        OWN.with(|c| c.set((me, forks, start)));
    }
    (me, start)
}

/// The low 32 bits of thread `tid`'s start time (field 22 of `/proc/<tid>/stat`), as the
/// remover word and the creation lock's holder word record it; 0 if unknown.
pub(super) fn start_of(tid: u32) -> u32 {
    match owner::stat(Some(tid)) {
        ProcStat::Known { start, .. } => start as u32,
        _ => 0,
    }
}

/// Records this thread as the one whose TID it just put in the life-cycle word.
fn record_remover(h: &super::format::Header, remover: u64) {
    // SeqCst: as every access to the life-cycle word, which it goes with (a reader loads
    // the life-cycle word, then this).
    h.remover.store(remover, Ordering::SeqCst);
}

/// Whether thread `tid`, found in the life-cycle word, is alive: by its TID, and by the
/// start time the remover word records for it (if that word names `tid`: it is written a
/// moment after the life-cycle word, so a thread killed in between is probed by its TID
/// alone). A zombie thread is dead.
fn holder_is_alive(h: &super::format::Header, tid: u32) -> bool {
    thread_is_alive(tid, || {
        // SeqCst: see `record_remover`.
        let r = h.remover.load(Ordering::SeqCst);
        if slot::pid(r) == tid {
            slot::start(r)
        } else {
            0
        }
    })
}

/// Whether thread `tid` is alive: by its TID and, if `recorded()` gives its start time
/// (0: unknown, checked by the TID alone), by that too, so that a new thread that reused
/// a dead one's TID reads dead. `recorded` is called only if the TID answers. A zombie
/// thread is dead. The creation lock's holder is probed this way as well.
pub(super) fn thread_is_alive(tid: u32, recorded: impl FnOnce() -> u32) -> bool {
    let Some(t) = Tid::parse(tid) else {
        return false;
    };
    let kill = owner::kill_probe(t.get());
    if kill == Liveness::Dead {
        return false;
    }
    judge(kill, owner::stat(Some(tid)), recorded(), false, || {
        owner::shares_time_namespace(tid) != Some(false)
    })
}

/// Whether thread `tid` (alive by its TID) may still be the thread that wrote it into an
/// entry's state word: its process holds a live word of the table among those `counts`
/// accepts (by index). A thread whose process holds none is a new thread that reused a
/// dead owner's TID (the owner's handle held such a word from before it wrote its TID
/// until it was gone: see [`protocol`](super::protocol)'s Limits).
///
/// Answers `true` (alive: the TID alone decides) where this cannot be told: the region is
/// `UNLISTED` (a handle without a word may have written the TID), or the thread's
/// process cannot be read (no `/proc` of this PID namespace, another user's thread under
/// `hidepid`). A syscall per word probed: slow paths only.
pub(super) fn owner_is_attached(
    raw: Raw<'_>,
    geo: &Geometry,
    tid: u32,
    counts: impl Fn(u32) -> bool,
) -> bool {
    let Some(h) = raw.header() else {
        return true;
    };
    // SeqCst: as every access to the life-cycle word. A handle without a word set the bit
    // before it created or took over an entry (`Life::slot_or_unlist`: the transition the
    // caller's acquire load of the state word read comes after). A remover without a word
    // sets none, and may read dead here: harmless, as it refuses at its step 2 anyway,
    // before it touches a bit, and a cancelled `REMOVING` only makes its own cancel fail.
    if h.life.load(Ordering::SeqCst) & life::UNLISTED != 0 {
        return true;
    }
    let Some(pid) = owner::thread_group(tid) else {
        return true;
    };
    (0..ATTACH_SLOTS).filter(|&i| counts(i)).any(|i| {
        // SeqCst: as every load of a table word by the protocol (module docs). The owner's
        // word was claimed before it wrote its TID (the caller's acquire load of that
        // write orders the claim before this load), and stays while its handle lives.
        raw.attach_slot(geo, i)
            .map(|s| s.load(Ordering::SeqCst))
            .is_some_and(|w| slot::pid(w) == pid && word_is_alive(w))
    })
}

/// Claims a free word of the table for `word`; returns its index.
fn claim(raw: Raw<'_>, geo: &Geometry, word: u64) -> Option<u32> {
    (0..ATTACH_SLOTS).find(|&i| {
        raw.attach_slot(geo, i).is_some_and(|s| {
            // Relaxed load: a hint; the CAS decides. SeqCst CAS: the opener's step 1
            // (module docs), paired with a removal's SeqCst scan.
            s.load(Ordering::Relaxed) == 0
                && s.compare_exchange(0, word, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
        })
    })
}

/// Frees every table word that names a dead process. Returns the live words.
fn prune(raw: Raw<'_>, geo: &Geometry) -> Vec<u64> {
    let mut live = Vec::new();
    prune_each(raw, geo, |w| live.push(w));
    live
}

/// Frees every table word that names a dead process, passing each live word to `live`.
/// Takes no lock and allocates nothing (the fork prepare handler calls it, in the
/// parent, where an allocator with fork handlers of its own may already hold its locks):
/// atomics, and the `kill`/`/proc` probes of each word (whose first probe of another
/// process caches, once per process, whether `/proc` is this namespace's: a `readlink`
/// into a stack buffer).
fn prune_each(raw: Raw<'_>, geo: &Geometry, mut live: impl FnMut(u64)) {
    for i in 0..ATTACH_SLOTS {
        let Some(s) = raw.attach_slot(geo, i) else {
            break;
        };
        // SeqCst: a removal's step 2 (module docs), paired with the openers' claims.
        let w = s.load(Ordering::SeqCst);
        if w == 0 {
            continue;
        }
        if word_is_alive(w) {
            live(w);
        } else {
            // SeqCst: as for a release. A failure means the word changed under us:
            // released or pruned (0), or a fork child swapped its own word into the slot
            // its parent claimed for it: that one counts as live (the child is starting).
            match s.compare_exchange(w, 0, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => crate::failpoint::hit(crate::failpoint::Point::RegionScanPruned),
                Err(now) if now != 0 => live(now),
                Err(_) => {}
            }
        }
    }
}

/// The processes listed in `raw`'s table (deduplicated), probing each; with `prune`,
/// dead words are freed.
pub(super) fn attached(raw: Raw<'_>, geo: &Geometry, prune_dead: bool) -> Vec<Attached> {
    let mut out: Vec<Attached> = Vec::new();
    for i in 0..ATTACH_SLOTS {
        let Some(s) = raw.attach_slot(geo, i) else {
            break;
        };
        // Acquire: a snapshot for tools; the word is self-contained (Relaxed would do,
        // Acquire is the only ordering a read-only mapping's loads use here).
        let w = s.load(Ordering::Acquire);
        if w == 0 {
            continue;
        }
        let (pid, start_time) = (slot::pid(w), slot::start(w));
        if let Some(a) = out
            .iter_mut()
            .find(|a| a.pid == pid && a.start_time == start_time)
        {
            a.handles += 1;
            continue;
        }
        let alive = word_is_alive(w);
        if !alive && prune_dead {
            // SeqCst: as in `prune`.
            let _ = s.compare_exchange(w, 0, Ordering::SeqCst, Ordering::Relaxed);
            continue;
        }
        out.push(Attached {
            pid,
            start_time,
            alive,
            handles: 1,
        });
    }
    out
}

/// What the opener's step 2 found.
pub(super) enum Joined {
    /// The region is live, and this handle holds word `slot` (or none: unlisted).
    Live,
    /// The region is retired; the handle released its word. The life-cycle word seen.
    Retired(u32),
}

/// Opener steps 1 and 2 for the attachment `a` (module docs). `may_prune`: free dead
/// words if the table is full (not in the fork child handler, which must not allocate).
fn join(a: &Attachment, word: u64, may_prune: bool) -> Joined {
    let raw = a.raw();
    let geo = a.geo;
    let Some(h) = raw.header() else {
        return Joined::Live;
    };
    let mut got = claim(raw, &geo, word);
    if got.is_none() && may_prune {
        prune(raw, &geo);
        got = claim(raw, &geo, word);
    }
    match got {
        Some(i) => {
            // Bits a dead previous holder of the word left (it never cleared them).
            super::remove::clear_slot_bits(raw, &geo, i);
            // Relaxed: the handle's own fields (see `release`).
            a.slot.store(i, Ordering::Relaxed);
            a.word.store(word, Ordering::Relaxed);
            if may_prune {
                // Not in the fork child handler (which has its own point).
                crate::failpoint::hit(crate::failpoint::Point::RegionAttachClaimed);
            }
        }
        None => {
            a.slot.store(NO_SLOT, Ordering::Relaxed);
            a.word.store(0, Ordering::Relaxed);
            // SeqCst: the opener's step 1 for an unlisted handle (module docs).
            h.life.fetch_or(life::UNLISTED, Ordering::SeqCst);
        }
    }
    // A peer rewriting the word forever cannot keep us here: bounded.
    for _ in 0..1000 {
        // SeqCst: the opener's step 2 (module docs).
        let s = h.life.load(Ordering::SeqCst);
        match life::phase(s) {
            life::RETIRING => {
                // SeqCst: the cancellation must order against the remover's step-3 CAS on
                // the same word (coherence alone decides which wins; SeqCst for the proof).
                if h.life
                    .compare_exchange(
                        s,
                        life::make(s, 0, life::LIVE),
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    )
                    .is_ok()
                {
                    crate::failpoint::hit(crate::failpoint::Point::RegionRetiringCancelled);
                    return Joined::Live;
                }
            }
            life::RETIRED => {
                a.release();
                return Joined::Retired(s);
            }
            // LIVE (or garbage phase 3, which validation refused a moment ago: treat as
            // live, as the region was when opened).
            _ => return Joined::Live,
        }
    }
    // Never seen live (a peer rewrote the word under every attempt): not ours to use.
    // The caller retries by path, and gives up with `OpenError::Retired` at its deadline.
    a.release();
    // SeqCst: as above.
    Joined::Retired(h.life.load(Ordering::SeqCst))
}

/// The attachments of this process's live handles, for the fork child handler.
static REGISTRY: Mutex<Vec<Arc<Attachment>>> = Mutex::new(Vec::new());

thread_local! {
    /// The registry's lock, held by the forking thread from the fork's prepare handler to
    /// its parent or child handler.
    static FORK_GUARD: std::cell::RefCell<Option<MutexGuard<'static, Vec<Arc<Attachment>>>>> =
        const { std::cell::RefCell::new(None) };
}

fn registry() -> MutexGuard<'static, Vec<Arc<Attachment>>> {
    // A panic while holding it leaves a consistent Vec (push/retain): ignore poisoning.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

extern "C" fn before_fork() {
    let guard = registry();
    // Claim, in this process's name, one word per listed handle for the child: from this
    // moment the child-to-be counts as attached, so a removal racing the fork (this
    // process dropping its last handle as soon as `fork` returns, before the child has
    // run a single instruction) sees it. The child swaps its own word in.
    // No handle (a process that links the crate but attached no region): no work.
    let me = if guard.is_empty() {
        0
    } else {
        owner::current_pid()
    };
    for a in guard.iter() {
        // Relaxed: the handle's own fields (see `release`).
        let word = a.word.load(Ordering::Relaxed);
        if word != 0 && slot::pid(word) == me {
            let (raw, geo) = (a.raw(), &a.geo);
            let mut got = claim(raw, geo, word);
            if got.is_none() {
                // A table full of dead words (e.g. forked workers that were killed): free
                // them (probes only: no allocation, no lock) and try again.
                prune_each(raw, geo, |_| {});
                got = claim(raw, geo, word);
            }
            let i = got.unwrap_or(NO_SLOT);
            if i != NO_SLOT {
                // The child inherits this handle's references: its word uses what this
                // one does, from before `fork` returns (`remove`'s module docs).
                let parent = a.slot.load(Ordering::Relaxed);
                super::remove::copy_slot_bits(raw, geo, parent, i);
            } else if let Some(h) = raw.header() {
                // Still full: nothing would protect the child's inherited references
                // between this process dropping its handle and the child's handler.
                // Unlisted from now on, so no removal (of an object or of the region)
                // succeeds again: the full-table rule an opener follows, applied before
                // `fork` returns. SeqCst: the opener's step 1 for an unlisted handle
                // (module docs), as in `join`.
                h.life.fetch_or(life::UNLISTED, Ordering::SeqCst);
            }
            a.fork_slot.store(i, Ordering::Relaxed);
        }
    }
    let _ = FORK_GUARD.try_with(|g| {
        if let Ok(mut g) = g.try_borrow_mut() {
            *g = Some(guard);
        }
    });
}

extern "C" fn after_fork_parent() {
    let _ = FORK_GUARD.try_with(|g| {
        if let Ok(mut g) = g.try_borrow_mut()
            && let Some(handles) = g.take()
        {
            // The words claimed for the child are the child's now (it swaps its own word
            // in); this process never releases them. (This handler also runs when `fork`
            // failed, and cannot tell: then they stay, naming this process, until it
            // exits; that keeps the file longer, never removes it early.)
            for a in handles.iter() {
                // Relaxed: as in `before_fork`.
                let i = a.fork_slot.swap(NO_SLOT, Ordering::Relaxed);
                if i != NO_SLOT {
                    // The entries another thread of this process pinned after the prepare
                    // handler's copy but before `fork` (the child inherited those
                    // references too): their bits go to the child's word now, while the
                    // registry lock still keeps this handle (and its own bits) alive, not
                    // only when the child's handler runs, which may be much later.
                    super::remove::set_pinned_bits(a.raw(), &a.geo, i, &a.pins);
                }
            }
        }
    });
}

extern "C" fn after_fork_child() {
    let _ = FORK_GUARD.try_with(|g| {
        let Ok(mut g) = g.try_borrow_mut() else {
            return;
        };
        // No handle: no syscall either (the guard is dropped, unlocking the registry).
        if let Some(handles) = g.take().filter(|h| !h.is_empty()) {
            crate::failpoint::hit(crate::failpoint::Point::RegionForkChildEntered);
            // Syscalls only (getpid, open, read): no allocation, no lock.
            let word = my_word(true);
            for a in handles.iter() {
                // Relaxed: the handle's own fields, written by the forking thread (this
                // one) in the prepare handler.
                let i = a.fork_slot.swap(NO_SLOT, Ordering::Relaxed);
                let parent = a.word.load(Ordering::Relaxed);
                let swapped = i != NO_SLOT
                    && a.raw().attach_slot(&a.geo, i).is_some_and(|s| {
                        // SeqCst: in the one order of the protocol (module docs) the slot
                        // holds the parent's word, alive, from before the fork until this
                        // swap: a removal's scan sees it or the child's. (If the parent
                        // died meanwhile, a prune either fails on the child's word and
                        // counts it live, or freed the slot first: this CAS fails.)
                        s.compare_exchange(parent, word, Ordering::SeqCst, Ordering::Relaxed)
                            .is_ok()
                    });
                // Whether the prepare handler found the table full and set `UNLISTED`
                // before `fork` (read before `join` below, which sets it too if it finds
                // the table full: that protects from then on only). SeqCst: as the
                // removal's step 2 load it pairs with.
                let unlisted_before_fork = i == NO_SLOT
                    && a.raw().header().is_some_and(|h| {
                        h.life.load(Ordering::SeqCst) & life::UNLISTED != 0
                    });
                if swapped {
                    a.slot.store(i, Ordering::Relaxed);
                    a.word.store(word, Ordering::Relaxed);
                    crate::failpoint::hit(crate::failpoint::Point::RegionForkSwapped);
                } else {
                    // No word was claimed (a full table), or it was pruned (the parent
                    // died during the fork): claim one as an opener does. A retired
                    // region: the handle stays, unlisted (below).
                    let _ = join(a, word, false);
                }
                // The references the child inherited (some a parent thread may have taken
                // after the prepare handler's copy): atomics only.
                let i = a.slot.load(Ordering::Relaxed);
                if i != NO_SLOT && slot::pid(a.word.load(Ordering::Relaxed)) == owner::current_pid()
                {
                    super::remove::set_pinned_bits(a.raw(), &a.geo, i, &a.pins);
                }
                // A parent alive now was alive from the fork to the bits just set: every
                // removal meanwhile found the word it claimed for this child live. A parent
                // that died in between may have had that word probed dead, and objects this
                // child holds removed: if so, the child cannot go on (its references may
                // read other objects' bytes), and nothing it could return would say so.
                // A child that did not swap into the word claimed for it (pruned: its
                // parent was judged dead, or a peer rewrote it) checks too: nothing it can
                // see proves that a removal did not come in between. So does a child for
                // which no word was claimed (a full table), unless the region is unlisted:
                // the prepare handler set `UNLISTED` before `fork`, so every removal since
                // is refused (its step 2, which a removal looks at again after its scan: one
                // in flight across the fork either found the parent's bits live or, if the
                // parent dropped its handle first, finds `UNLISTED` on that second look).
                // (Checking there anyway would abort a child that merely meets a refused
                // removal's transient `REMOVING`.)
                let unprotected = !swapped && !unlisted_before_fork;
                if i == NO_SLOT
                    && parent != 0
                    && a.pins.iter().next().is_some()
                    && let Some(h) = a.raw().header()
                {
                    // Without a word (a full table, or `join` found the region retired)
                    // the child's inherited references have no bits: from here on only
                    // `UNLISTED` keeps removals off them (a retired region's unlink can
                    // still fail and leave it live). Set before the check below, which
                    // then catches any removal that came earlier. Only for a handle that
                    // had a word in the parent and references to protect: one without a
                    // word had set `UNLISTED` itself, and one without pins (an opener of
                    // a retired region, waiting for its unlink, perhaps copied by the
                    // fork between its claim and its release) protects nothing; a later
                    // use marks the region itself (`Life::slot_or_unlist`). SeqCst: the
                    // opener's step 1 for an unlisted handle (module docs), as in `join`.
                    h.life.fetch_or(life::UNLISTED, Ordering::SeqCst);
                }
                if parent != 0
                    && (unprotected || std::os::unix::process::parent_id() != slot::pid(parent))
                    && !super::remove::inherited_objects_held(a.raw(), &a.geo, &a.pins)
                {
                    const MSG: &[u8] = b"shmstate: an object this fork child inherited a reference to was removed during the fork (its parent died, or its word was taken); aborting\n";
                    // SAFETY: `write` of a static buffer to fd 2 (async-signal-safe, no
                    // allocation); `abort` has no preconditions.
                    unsafe {
                        libc::write(2, MSG.as_ptr().cast(), MSG.len());
                        libc::abort();
                    }
                }
            }
        }
    });
}

/// [`ATFORK`]: the constructor has not run (the handlers are not registered).
const ATFORK_NONE: u8 = 0;
/// [`ATFORK`]: the fork handlers are registered.
const ATFORK_REGISTERED: u8 = 1;
/// [`ATFORK`]: registering them failed (`pthread_atfork` out of memory).
const ATFORK_FAILED: u8 = 2;

/// Whether this process has the fork handlers ([`ATFORK_NONE`], [`ATFORK_REGISTERED`] or
/// [`ATFORK_FAILED`]), written once by [`register_fork_handlers`].
static ATFORK: crate::sync::AtomicU8 = crate::sync::AtomicU8::new(ATFORK_NONE);

/// Registers the fork handlers as the program starts (or as `dlopen` loads the library
/// that links this crate, e.g. the Python extension): an ELF constructor, run before
/// `main`.
///
/// Not lazily, at the first attach: glibc's `fork` holds the lock `pthread_atfork` takes
/// from its prepare handlers to its parent and child handlers, so a registration racing a
/// fork on another thread waits for it, and a child forked then would inherit a
/// once-guard left mid-run by a thread it does not have, and stop for good at its own
/// first attach. A constructor runs before any thread of this crate's making exists, and
/// registers exactly once per process (a forked child inherits the registration; an
/// `exec`'d program runs its constructors anew). A process that never attaches pays one
/// lock and a few syscalls per `fork`. The owner module registers its child handler from
/// a constructor of its own, in an order the linker picks: the handlers here use none of
/// its caches (only `getpid` and `/proc/self/stat`).
extern "C" fn register_fork_handlers() {
    // SAFETY: `pthread_atfork` needs valid `extern "C" fn()` pointers. The handlers
    // lock or unlock the registry's mutex and claim table words with atomics
    // (prepare/parent), and in the child swap table words and read `/proc/self/stat`
    // into a stack buffer (no allocation: the child of a multithreaded parent may only
    // use what fork left consistent, and the registry lock is held across the fork, so
    // its Vec is).
    let failed = unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        )
    } != 0;
    // Relaxed: written before `main` (or inside `dlopen`, before the library's code can
    // be called): every later reader is ordered after it by the thread start or the
    // loader's lock.
    ATFORK.store(
        if failed {
            ATFORK_FAILED
        } else {
            ATFORK_REGISTERED
        },
        Ordering::Relaxed,
    );
}

// SAFETY: an `.init_array` entry is called once by the dynamic loader (or the static
// start-up code) with `argc, argv, envp`, which an `extern "C" fn()` ignores (the C
// calling convention lets a callee take fewer arguments than passed). It runs before
// `main`, when only libc is initialised: `register_fork_handlers` calls only libc and
// stores an atomic.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_FORK_HANDLERS: extern "C" fn() = register_fork_handlers;

fn register(a: &Arc<Attachment>) {
    // Relaxed: see `register_fork_handlers`.
    if ATFORK.load(Ordering::Relaxed) != ATFORK_REGISTERED
        && let Some(h) = a.raw().header()
    {
        // Fork children would use the region without a word: never remove it unforced.
        // SeqCst: as the opener's step 1 for an unlisted handle (module docs).
        h.life.fetch_or(life::UNLISTED, Ordering::SeqCst);
    }
    push_unallocating(Arc::clone(a));
}

/// Appends `a` to the registry without allocating or freeing while its lock is held: the
/// fork prepare handler takes that lock, and an allocator with fork handlers of its own
/// (jemalloc's run before ours when registered after them) holds its locks by then, so
/// a thread that allocated under the registry lock would wait for the allocator while
/// the forking thread waited for the registry. A full vector is replaced by a larger one
/// allocated outside the lock; the old buffer is freed after the lock is released.
fn push_unallocating(a: Arc<Attachment>) {
    let mut spare: Vec<Arc<Attachment>> = Vec::new();
    loop {
        let mut reg = registry();
        if reg.len() < reg.capacity() {
            reg.push(a);
            return;
        }
        if spare.capacity() > reg.len() {
            // Moves within capacity: `append` and `push` do not allocate.
            spare.append(&mut reg);
            spare.push(a);
            let old = core::mem::replace(&mut *reg, spare);
            drop(reg);
            drop(old);
            return;
        }
        let want = (reg.len() + 1).max(4) * 2;
        drop(reg);
        spare = Vec::with_capacity(want);
    }
}

fn unregister(a: &Arc<Attachment>) {
    registry().retain(|x| !Arc::ptr_eq(x, a));
}

/// A handle's part in the life cycle: its table word, and the path it may remove.
#[derive(Default)]
pub(super) struct Life {
    attachment: Option<Arc<Attachment>>,
    path: Option<PathRef>,
}

impl std::fmt::Debug for Life {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slot = self
            .attachment
            .as_ref()
            .map(|a| a.slot.load(Ordering::Relaxed));
        f.debug_struct("Life")
            .field("slot", &slot)
            .field("path", &self.path)
            .finish()
    }
}

impl Life {
    /// The attach-table word this handle holds in this process, if any.
    pub(super) fn slot(&self) -> Option<u32> {
        let a = self.attachment.as_ref()?;
        // Relaxed: the handle's own fields (see `Attachment::release`).
        let word = a.word.load(Ordering::Relaxed);
        let i = a.slot.load(Ordering::Relaxed);
        (i != NO_SLOT && word != 0 && slot::pid(word) == owner::current_pid()).then_some(i)
    }

    /// [`slot`](Self::slot), or, for a handle without a word, `None` once the region is
    /// marked `UNLISTED`. Called before a handle takes part in an entry (as a user or an
    /// owner): the protocols count on every such handle without a word having set
    /// `UNLISTED` first. A full table sets it when the handle is made, and the fork
    /// child handler for a child left without a word; this covers a handle that lost its
    /// word otherwise (a fork whose handlers did not run).
    pub(super) fn slot_or_unlist(&self, raw: Raw<'_>) -> Option<u32> {
        let slot = self.slot();
        if slot.is_none()
            && let Some(h) = raw.header()
        {
            // SeqCst: the opener's step 1 for an unlisted handle (module docs), as in
            // `join`: before this handle's use of an entry, so that a removal's SeqCst load
            // of this word either sees the bit or comes before the use in the one order
            // (a read-modify-write even if the bit is set already: a Relaxed load of it
            // would not place this handle's use in that order).
            h.life.fetch_or(life::UNLISTED, Ordering::SeqCst);
        }
        slot
    }

    /// Drops the path (a handle that never removes the file keeps no directory fd).
    pub(super) fn forget_path(&mut self) {
        self.path = None;
    }

    /// [`wait_unlinked`] for this handle's path (done at once without one).
    pub(super) fn wait_unlinked(&self, raw: Raw<'_>, deadline: Instant) -> bool {
        match &self.path {
            Some(p) => wait_unlinked(raw, p, deadline),
            None => true,
        }
    }
}

impl Region {
    /// Attaches this new handle (opener steps 1 and 2); with `path`, it may later
    /// remove the file. On a retired region, returns the life-cycle word seen; the
    /// caller drops the handle (which releases nothing: the word is already released).
    pub(super) fn attach(&mut self, path: Option<PathRef>) -> Result<(), u32> {
        let raw = self.raw();
        let a = Arc::new(Attachment {
            base: core::ptr::NonNull::new(self.map.as_mut_ptr())
                .unwrap_or(core::ptr::NonNull::dangling()),
            len: raw.len(),
            geo: self.geo,
            slot: AtomicU32::new(NO_SLOT),
            word: AtomicU64::new(0),
            fork_slot: AtomicU32::new(NO_SLOT),
            pins: Arc::clone(&self.pins),
        });
        // Registered before claiming: a fork in between gives the child its own word (or,
        // if the claim below has not happened yet, a word of its own anyway).
        register(&a);
        let joined = join(&a, my_word(false), true);
        self.life = Life {
            attachment: Some(a),
            path,
        };
        match joined {
            Joined::Live => Ok(()),
            Joined::Retired(s) => Err(s),
        }
    }

    /// The processes that have this region open (one entry per process, however many
    /// handles it has), each probed for liveness. Words of dead processes (exited,
    /// killed, or whose pid now names another process) are freed on the way and not
    /// listed.
    ///
    /// A syscall or two per listed process (`kill(pid, 0)`, a read of
    /// `/proc/<pid>/stat`): for tools and tests, not hot paths.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Region;
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-attached-{}", std::process::id()));
    /// let a = Region::create(&path, 1 << 16)?;
    /// let b = Region::open(&path)?;
    /// let listed = a.attached();
    /// assert_eq!(listed.len(), 1, "one process");
    /// assert_eq!(listed[0].handles, 2, "two handles");
    /// # drop((a, b)); std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn attached(&self) -> Vec<Attached> {
        attached(self.raw(), &self.geo, true)
    }

    /// Whether the region was created with
    /// [`remove_when_unused`](RegionOptions::remove_when_unused).
    pub fn remove_when_unused(&self) -> bool {
        self.geo.flags & flags::REMOVE_WHEN_UNUSED != 0
    }

    /// Detaches this handle (at drop): releases its word and, if this process held one
    /// and the region is to be removed when unused, tries to remove it.
    pub(super) fn detach(&mut self) {
        let Some(a) = self.life.attachment.take() else {
            return;
        };
        unregister(&a);
        let listed = a.release();
        if !listed {
            return;
        }
        crate::failpoint::hit(crate::failpoint::Point::RegionReleased);
        if let Some(path) = self.life.path.take().filter(|_| self.remove_when_unused()) {
            let raw = self.raw();
            let deadline = super::protocol::deadline_after(self.timeout);
            match retire(raw, &self.geo, false, deadline) {
                // A failed unlink leaves the region live: nobody to tell from a drop.
                Retire::Retired => {
                    let _ = finish_unlink(raw, &path);
                }
                // Another handle's removal won while this one waited: the file goes once
                // its unlink is done, and a drop of the last handle returns after that.
                Retire::AlreadyRetired(_) => {
                    wait_unlinked(raw, &path, deadline);
                }
                Retire::InUse | Retire::Unlisted | Retire::Busy => {}
            }
        }
    }

    /// Removes the region file at `path` if no live process has it open: the removal
    /// that [`remove_when_unused`](RegionOptions::remove_when_unused) makes when the last
    /// handle is dropped, for a region whose last user was killed, or one created without
    /// that option. Race-free against processes opening it at the same moment (they get a
    /// fresh region or a clear error, see the [module docs](super::lifecycle)). Does not
    /// attach to the region.
    ///
    /// # Errors
    ///
    /// - [`RemoveError::InUse`]: a live process has it open (listed).
    /// - [`RemoveError::Unlisted`]: a process had it open without a table word (the table
    ///   was full): nobody can tell whether it still does. [`remove_forced`](Self::remove_forced)
    ///   removes it.
    /// - [`RemoveError::Busy`]: another live thread is removing it right now.
    /// - [`RemoveError::Open`]: it cannot be opened as a region (not found, not a region,
    ///   another format version, ...).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::{Region, RemoveError};
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-rm-{}", std::process::id()));
    /// let region = Region::create(&path, 1 << 16)?;
    /// assert!(matches!(Region::remove_unused(&path), Err(RemoveError::InUse { .. })));
    /// drop(region);
    /// Region::remove_unused(&path)?;
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_unused(path: impl AsRef<Path>) -> Result<(), RemoveError> {
        remove_path(path.as_ref(), false, None)
    }

    /// Removes the region file at `path` even if live processes have it open: they keep
    /// using their mapping (of a file nobody can open by path any more), and new openers
    /// get a fresh region. Does not attach to the region.
    ///
    /// # Errors
    ///
    /// [`RemoveError::Busy`] if another live thread is unlinking it right now;
    /// [`RemoveError::Open`] if it cannot be opened as a region.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmstate::Region;
    ///
    /// let path = std::env::temp_dir().join(format!("shmstate-doc-rmf-{}", std::process::id()));
    /// let region = Region::create(&path, 1 << 16)?;
    /// Region::remove_forced(&path)?;
    /// assert!(!path.exists());
    /// region.get_or_default::<shmstate::Counter>("still usable")?.add(1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove_forced(path: impl AsRef<Path>) -> Result<(), RemoveError> {
        remove_path(path.as_ref(), true, None)
    }
}

/// [`Region::remove_unused`] and [`Region::remove_forced`]; with `file`, only if `path`
/// names that file (device, inode).
pub(super) fn remove_path(
    path: &Path,
    force: bool,
    file: Option<(u64, u64)>,
) -> Result<(), RemoveError> {
    let (region, path_ref) = RegionOptions::new().open_path_unattached(path)?;
    if file.is_some_and(|f| f != (path_ref.dev, path_ref.ino)) {
        return Err(RemoveError::Replaced);
    }
    let raw = region.raw();
    let deadline = super::protocol::deadline_after(region.timeout);
    match retire(raw, &region.geo, force, deadline) {
        Retire::Retired => finish_unlink(raw, &path_ref).map_err(RemoveError::Unlink),
        Retire::InUse => Err(RemoveError::InUse {
            attached: attached(raw, &region.geo, false)
                .into_iter()
                .filter(|a| a.alive)
                .collect(),
        }),
        Retire::Unlisted => Err(RemoveError::Unlisted),
        Retire::Busy => Err(RemoveError::Busy),
        Retire::AlreadyRetired(s) => {
            // Retired by someone else: finish their unlink if they died (with `force`,
            // whatever became of them: a stopped remover, or a word a peer wrote), else it
            // is theirs.
            match help_unlink(raw, &path_ref, s, force) {
                Helped::Done => Ok(()),
                Helped::Busy => Err(RemoveError::Busy),
                Helped::Failed(e) => Err(RemoveError::Unlink(e)),
            }
        }
    }
}

/// What a removal attempt (steps 1 to 3) came to.
enum Retire {
    /// `RETIRED(me)`: unlink now.
    Retired,
    /// A live process is attached (the retirement was cancelled), or an opener cancelled it.
    InUse,
    /// `UNLISTED` is set.
    Unlisted,
    /// Another live thread is retiring it.
    Busy,
    /// Already `RETIRED`, with this word.
    AlreadyRetired(u32),
}

/// Removal steps 1 to 3 (module docs); with `force`, straight to `RETIRED(me)`. Another
/// live thread's retirement in progress is waited for (it ends in a table scan), until
/// `deadline`: then `Busy`.
fn retire(raw: Raw<'_>, geo: &Geometry, force: bool, deadline: Instant) -> Retire {
    let Some(h) = raw.header() else {
        return Retire::Busy;
    };
    let me = owner::current();
    let remover = remover_word();
    let backoff = crossbeam_utils::Backoff::new();
    // SeqCst (every access to the word here): removal steps 1 and 3 (module docs).
    let mut s = h.life.load(Ordering::SeqCst);
    let mine = loop {
        let target = match life::phase(s) {
            life::RETIRED => return Retire::AlreadyRetired(s),
            _ if force => life::make(s, me, life::RETIRED),
            life::LIVE if s & life::UNLISTED != 0 => return Retire::Unlisted,
            life::LIVE => life::make(s, me, life::RETIRING),
            life::RETIRING if !holder_is_alive(h, life::tid(s)) => {
                life::make(s, me, life::RETIRING)
            }
            _ => {
                // Another remover is scanning: its outcome decides ours (it may find us
                // gone and remove the file, or find a live process and cancel, and then
                // we look again). Woken by its cancel or unlink; a slice bounds a missed
                // wake and the next probe of a dead one.
                let now = Instant::now();
                if now >= deadline {
                    return Retire::Busy;
                }
                futex::wait(
                    &h.life,
                    s,
                    Some(Duration::from_millis(10).min(deadline - now)),
                );
                s = h.life.load(Ordering::SeqCst);
                continue;
            }
        };
        match h
            .life
            .compare_exchange(s, target, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                record_remover(h, remover);
                break target;
            }
            Err(now) => {
                // A peer rewriting the word forever cannot keep us here (the deadline),
                // nor spin this thread hot until then (the backoff).
                if Instant::now() >= deadline {
                    return Retire::Busy;
                }
                backoff.snooze();
                s = now;
            }
        }
    };
    if force {
        crate::failpoint::hit(crate::failpoint::Point::RegionRetired);
        return Retire::Retired;
    }
    crate::failpoint::hit(crate::failpoint::Point::RegionRetiring);
    if !prune(raw, geo).is_empty() {
        cancel(h, me);
        return Retire::InUse;
    }
    match h.life.compare_exchange(
        mine,
        life::make(mine, me, life::RETIRED),
        Ordering::SeqCst,
        Ordering::SeqCst,
    ) {
        Ok(_) => {
            crate::failpoint::hit(crate::failpoint::Point::RegionRetired);
            Retire::Retired
        }
        Err(now) if life::phase(now) == life::RETIRED => Retire::AlreadyRetired(now),
        Err(now) => {
            // An opener cancelled it (it is LIVE again), or `UNLISTED` was set under us.
            if now & life::UNLISTED != 0 {
                cancel(h, me);
                return Retire::Unlisted;
            }
            Retire::InUse
        }
    }
}

/// `RETIRING(me) -> LIVE`, whatever `UNLISTED` became meanwhile.
fn cancel(h: &super::format::Header, me: u32) {
    // SeqCst: the remover's own word, as in `retire`.
    let mut s = h.life.load(Ordering::SeqCst);
    for _ in 0..1000 {
        if life::phase(s) != life::RETIRING || life::tid(s) != me {
            return;
        }
        match h.life.compare_exchange(
            s,
            life::make(s, 0, life::LIVE),
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => {
                // Removers waiting for this retirement's outcome look again.
                futex::wake_all(&h.life);
                return;
            }
            Err(now) => s = now,
        }
    }
}

/// Removal steps 4 and 5 by the thread that set `RETIRED(me)`: unlink the path if it
/// still names the mapped file; then `RETIRED(0)` if the file is linked nowhere, else
/// (the unlink failed, or the file has another name) `LIVE` again: nothing was removed,
/// and whoever saw `RETIRED` meanwhile opens it again by path. `Err`: the path was not
/// unlinked.
fn finish_unlink(raw: Raw<'_>, path: &PathRef) -> std::io::Result<()> {
    let unlinked = path.unlink_if_same();
    let gone = path.unlinked();
    crate::failpoint::hit(crate::failpoint::Point::RegionUnlinked);
    let Some(h) = raw.header() else {
        return unlinked;
    };
    let me = owner::current();
    // SeqCst: as every access to the word; this one publishes "unlinked" (or "live
    // again") to the openers waiting in `wait_unlinked` (their loads pair with it).
    let mut s = h.life.load(Ordering::SeqCst);
    // Only `UNLISTED` may change under a live unlinker (a handle without a word marking
    // the region): retried then, a bounded number of times (a peer could flip it forever).
    for _ in 0..1000 {
        if life::phase(s) != life::RETIRED || life::tid(s) != me {
            break;
        }
        let next = if gone {
            life::make(s, 0, life::RETIRED)
        } else {
            life::make(s, 0, life::LIVE)
        };
        match h
            .life
            .compare_exchange(s, next, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => break,
            Err(now) => s = now,
        }
    }
    futex::wake_all(&h.life);
    unlinked
}

/// What [`help_unlink`] came to.
enum Helped {
    /// The path no longer names the retired file.
    Done,
    /// A live thread is unlinking it, or the word changed: look again.
    Busy,
    /// This thread took the unlink over, and it failed (the region is live again).
    Failed(std::io::Error),
}

/// For a region found `RETIRED` with word `s`: whether its unlink is done, or now done by
/// this thread, taking over from a dead unlinker (with `force`, from any), or from none:
/// `RETIRED(0)` at a path that still names the file (the word was written by hand).
fn help_unlink(raw: Raw<'_>, path: &PathRef, s: u32, force: bool) -> Helped {
    let Some(h) = raw.header() else {
        return Helped::Done;
    };
    if !path.names_file() {
        return Helped::Done;
    }
    let tid = life::tid(s);
    if tid != 0 && !force && holder_is_alive(h, tid) {
        return Helped::Busy;
    }
    let me = owner::current();
    let remover = remover_word();
    // SeqCst: as every access to the word. Acquire on success would be enough for the
    // takeover; the dead unlinker's writes are complete (its thread is gone).
    match h.life.compare_exchange(
        s,
        life::make(s, me, life::RETIRED),
        Ordering::SeqCst,
        Ordering::SeqCst,
    ) {
        Ok(_) => {
            record_remover(h, remover);
            match finish_unlink(raw, path) {
                Ok(()) => Helped::Done,
                Err(e) => Helped::Failed(e),
            }
        }
        // Someone else took it over or finished: look again.
        Err(_) => Helped::Busy,
    }
}

/// Waits until the unlink of a retired region is done (taking it over from a dead
/// unlinker), or the region is live again (its unlink failed), at most until `deadline`.
/// Returns whether it is done: then the path no longer names the retired file.
pub(super) fn wait_unlinked(raw: Raw<'_>, path: &PathRef, deadline: Instant) -> bool {
    let Some(h) = raw.header() else { return true };
    loop {
        // SeqCst: pairs with `finish_unlink`'s store.
        let s = h.life.load(Ordering::SeqCst);
        if life::phase(s) != life::RETIRED {
            return true;
        }
        match help_unlink(raw, path, s, false) {
            Helped::Done | Helped::Failed(_) => return true,
            Helped::Busy => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        // A live unlinker: it wakes us when done; a slice bounds a missed wake and the
        // next probe of a dead one.
        futex::wait(
            &h.life,
            s,
            Some(Duration::from_millis(10).min(deadline - now)),
        );
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn words_of_this_process_are_alive_and_of_a_reused_pid_dead() {
        let me = my_word(false);
        assert_eq!(slot::pid(me), std::process::id());
        assert!(word_is_alive(me));
        if slot::start(me) != 0 {
            // Our pid with another start time: a process that reused a dead one's pid.
            let forged = slot::make(slot::pid(me), slot::start(me).wrapping_add(1));
            assert!(!word_is_alive(forged));
        }
        assert!(!word_is_alive(slot::make(0, 5)));
        assert!(!word_is_alive(slot::make(u32::MAX, 5)));
    }

    /// A process whose time namespace cannot be told (its `ns/time` link unreadable: init,
    /// where the tests do not run with ptrace access to it) is judged by its start time
    /// as before: another start time reads dead. Skipped where init's link is readable or
    /// its start time is not shown.
    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn a_process_whose_time_namespace_cannot_be_told_is_judged_by_its_start_time() {
        let start = start_of(1);
        if owner::shares_time_namespace(1).is_some() || start <= 1 {
            eprintln!("skipped: init's time namespace is readable here, or its start unknown");
            return;
        }
        assert!(word_is_alive(slot::make(1, start)));
        assert!(!word_is_alive(slot::make(1, start ^ 1)));
    }

    #[test]
    fn judge_reads_a_zombie_leader_with_live_threads_alive_and_a_reused_pid_dead() {
        let stat = |state, threads, start| ProcStat::Known {
            state,
            threads,
            start,
        };
        let alive = Liveness::Alive;
        let same = || true;
        assert!(!judge(Liveness::Dead, stat(b'S', 1, 7), 7, true, same));
        assert!(judge(alive, stat(b'S', 1, 7), 7, true, same));
        assert!(
            judge(alive, stat(b'S', 1, 7), 0, true, same),
            "start unknown"
        );
        assert!(!judge(alive, stat(b'S', 1, 8), 7, true, same), "pid reused");
        assert!(!judge(
            alive,
            stat(b'S', 1, 7 + (1 << 32) + 1),
            7,
            true,
            same
        ));
        assert!(
            judge(alive, stat(b'S', 1, 7 + (1 << 32)), 7, true, same),
            "low 32 bits"
        );
        // A zombie process is dead; a zombie leader whose threads run on is not.
        assert!(!judge(alive, stat(b'Z', 1, 7), 7, true, same));
        assert!(!judge(alive, stat(b'X', 1, 7), 7, true, same));
        assert!(judge(alive, stat(b'Z', 3, 7), 7, true, same));
        // A thread probe: a zombie leader thread is dead whatever its process does.
        assert!(!judge(alive, stat(b'Z', 3, 7), 7, false, same));
        assert!(judge(alive, ProcStat::Unknown, 7, true, same));
        // `/proc` mounted `hidepid=2`: another user's live process has no `/proc/<pid>`,
        // yet `kill` answers (`EPERM`): alive, start time unknown.
        assert!(judge(alive, ProcStat::Gone, 7, true, same));
        assert!(judge(alive, ProcStat::Gone, 7, false, same));
        // Another time namespace (its `/proc` shows start times shifted): the pid alone
        // decides, so another start time reads alive; a zombie still reads dead.
        // The namespace is asked only on a mismatch (two `readlink`s: not on every probe).
        let never = || -> bool { panic!("the namespace was asked on a matching start time") };
        assert!(judge(alive, stat(b'S', 1, 7), 7, true, never));
        assert!(judge(alive, stat(b'S', 1, 7), 0, true, never));
        assert!(!judge(alive, stat(b'Z', 1, 7), 7, true, never));
        let other = || false;
        assert!(
            judge(alive, stat(b'S', 1, 8), 7, true, other),
            "other namespace"
        );
        assert!(!judge(alive, stat(b'Z', 1, 8), 7, true, other));
        assert!(!judge(Liveness::Dead, stat(b'S', 1, 8), 7, true, other));
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn own_start_is_each_threads_own() {
        let me = owner::current();
        assert_eq!(own_start(), (me, start_of(me)));
        assert_eq!(own_start(), (me, start_of(me)), "cached");
        let other = std::thread::spawn(|| (owner::current(), own_start()))
            .join()
            .unwrap();
        assert_ne!(other.0, me);
        assert_eq!(other.1.0, other.0, "a new thread reads its own");
    }

    /// A failed read of the own start time (0) is not cached: the next call reads again,
    /// and only then is the start time kept.
    #[test]
    fn own_start_reads_again_after_a_failed_read() {
        std::thread::spawn(|| {
            let me = owner::current();
            assert_eq!(own_start_read(|_| 0), (me, 0), "the read failed");
            assert_eq!(own_start_read(|_| 42), (me, 42), "read again, not cached");
            if owner::fork_counted() {
                assert_eq!(own_start_read(|_| 7), (me, 42), "cached once known");
            }
        })
        .join()
        .unwrap();
    }

    /// A forked process whose thread got the TID that an inherited cache was filled for
    /// (by a thread of an ancestor, since dead) reads its own start time, not the cached
    /// one: the cache is keyed by the fork generation too.
    #[test]
    #[cfg_attr(miri, ignore = "fork")]
    fn own_start_is_read_again_in_a_forked_process() {
        let before = owner::fork_generation();
        // SAFETY: the child only reads /proc and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let me = owner::current();
            let real = start_of(me);
            seed_own_start(me, before, real ^ 1);
            let code = if real == 0 {
                2
            } else if own_start() == (me, real) {
                0
            } else {
                1
            };
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        match libc::WEXITSTATUS(status) {
            0 => {}
            2 => eprintln!("skipped: /proc shows no start time here"),
            c => panic!("the child read the inherited start time (exit {c})"),
        }
    }

    /// An opener that found its region retired keeps a registered handle without a word
    /// while it waits for the unlink. A fork then must not mark the region `UNLISTED`: the
    /// handle protects nothing, and a file that outlives its unlink (a second name, a
    /// refused unlink) would stay unlisted, never removed unforced, for good.
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd; fork")]
    fn a_fork_while_a_handle_waits_on_a_retired_region_leaves_it_listed() {
        let r = Region::memfd("retired-fork", 1 << 16).unwrap();
        let h = r.raw().header().unwrap();
        assert!(r.life.attachment.as_ref().unwrap().release());
        // As a remover left it (unlinked, or about to be).
        h.life
            .store(life::make(0, 0, life::RETIRED), Ordering::SeqCst);
        // SAFETY: the child only returns from `fork` (running the fork handlers) and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: ends the forked child at once.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        let w = h.life.load(Ordering::SeqCst);
        assert_eq!(life::phase(w), life::RETIRED);
        assert_eq!(w & life::UNLISTED, 0, "marked by the fork child: {w:#x}");
    }

    /// An opener's handle is registered before its `join` claims a word: a fork whose
    /// prepare handler runs between the two (no word claimed for the child) and whose copy
    /// of memory is taken after `join` stored the word but before it released it (the
    /// region found `RETIRED`) gives the child a handle with a parent word, no word of its
    /// own, and no pins. It protects nothing: its handler must not mark the region.
    /// Simulated by running the handlers around that store, in a forked process (they
    /// touch every handle registered in the process).
    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd; fork")]
    fn a_fork_copying_an_openers_join_of_a_retired_region_leaves_it_listed() {
        // SAFETY: the child runs the simulation below and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let r = Region::memfd("retired-join", 1 << 16).unwrap();
            let h = r.raw().header().unwrap();
            let a = r.life.attachment.as_ref().unwrap();
            let (w, i) = (
                a.word.load(Ordering::Relaxed),
                a.slot.load(Ordering::Relaxed),
            );
            // The opener's handle, registered, its word not claimed yet.
            let released = a.release();
            h.life
                .store(life::make(0, 0, life::RETIRED), Ordering::SeqCst);
            // The prepare handler: the handle has no word, nothing is claimed for it.
            before_fork();
            let none_claimed = a.fork_slot.load(Ordering::Relaxed) == NO_SLOT;
            // `join` claims and stores its word (not yet released): the copy is taken.
            r.raw()
                .attach_slot(&r.geo, i)
                .unwrap()
                .store(w, Ordering::SeqCst);
            a.slot.store(i, Ordering::Relaxed);
            a.word.store(w, Ordering::Relaxed);
            let no_pins = r.pins.iter().next().is_none();
            // The child's handler on that copy.
            after_fork_child();
            let now = h.life.load(Ordering::SeqCst);
            let code = if !(released && none_claimed && no_pins) {
                2
            } else if life::phase(now) == life::RETIRED && now & life::UNLISTED == 0 {
                0
            } else {
                1
            };
            // SAFETY: ends the forked process at once.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{status:#x}");
        match libc::WEXITSTATUS(status) {
            0 => {}
            2 => panic!("the simulation's set-up did not hold"),
            c => panic!("the fork child's handler marked the retired region (exit {c})"),
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn a_full_table_opens_unlisted_and_is_never_removed_unforced() {
        let r = Region::memfd("full", 1 << 16).unwrap();
        let raw = r.raw();
        let me = my_word(false);
        for i in 0..ATTACH_SLOTS {
            let s = raw.attach_slot(&r.geo, i).unwrap();
            let _ = s.compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed);
        }
        // Every word names this live process: nothing to prune, no word left.
        let fd = r.as_fd().unwrap().try_clone_to_owned().unwrap();
        let r2 = Region::from_fd(fd).unwrap();
        let h = raw.header().unwrap();
        assert_ne!(h.life.load(Ordering::SeqCst) & life::UNLISTED, 0);
        assert!(matches!(
            retire(raw, &r.geo, false, Instant::now()),
            Retire::Unlisted
        ));
        assert_eq!(life::phase(h.life.load(Ordering::SeqCst)), life::LIVE);
        drop(r2);
        assert!(matches!(
            retire(raw, &r.geo, true, Instant::now()),
            Retire::Retired
        ));
    }

    /// A handle that lost its word (released here by hand, as when a fork's handlers did
    /// not run) marks the region `UNLISTED` before it creates an object (`get` false) or
    /// gets one another handle made (`get` true): without a bit, only that keeps other
    /// handles' removals off the object, and makes probers judge its creation by the TID
    /// alone.
    fn a_handle_without_a_word_marks_the_region_unlisted(get: bool) {
        let r = Region::memfd("wordless", 1 << 16).unwrap();
        let fd = || r.as_fd().unwrap().try_clone_to_owned().unwrap();
        if get {
            // Made, and dropped: no bit of a live handle in `x` but `r`'s (if it set one).
            let maker = Region::from_fd(fd()).unwrap();
            maker.get_or_default::<crate::Counter>("x").unwrap();
            drop(maker);
        }
        let h = r.raw().header().unwrap();
        assert!(r.life.attachment.as_ref().unwrap().release());
        assert_eq!(r.life.slot(), None);
        assert_eq!(h.life.load(Ordering::SeqCst) & life::UNLISTED, 0);
        let x = if get {
            r.get::<crate::Counter>("x")
        } else {
            r.get_or_default::<crate::Counter>("x")
        }
        .unwrap();
        assert_ne!(h.life.load(Ordering::SeqCst) & life::UNLISTED, 0);
        // A listed handle's removal refuses: `x` has no bit of `r`'s.
        let mut admin = Region::from_fd(fd()).unwrap();
        assert!(matches!(
            admin.remove("x"),
            Err(super::super::RemoveObjectError::Unlisted)
        ));
        x.add(1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn a_handle_without_a_word_marks_the_region_unlisted_before_it_creates() {
        a_handle_without_a_word_marks_the_region_unlisted(false);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn a_handle_without_a_word_marks_the_region_unlisted_before_it_gets() {
        a_handle_without_a_word_marks_the_region_unlisted(true);
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn an_opener_cancels_a_retirement_in_progress() {
        let r = Region::memfd("cancel", 1 << 16).unwrap();
        let h = r.raw().header().unwrap();
        // As left by a remover between its steps 1 and 3.
        h.life.store(
            life::make(0, owner::current(), life::RETIRING),
            Ordering::SeqCst,
        );
        let fd = r.as_fd().unwrap().try_clone_to_owned().unwrap();
        let r2 = Region::from_fd(fd).unwrap();
        assert_eq!(h.life.load(Ordering::SeqCst), life::LIVE);
        assert_eq!(r2.attached()[0].handles, 2);
    }

    /// The pid of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps a file")]
    fn an_unlinker_killed_after_its_unlink_is_finished_without_touching_a_new_file() {
        let path = std::env::temp_dir().join(format!("shmstate-unlinked-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        drop(Region::create(&path, 1 << 16).unwrap());
        let (old, path_ref) = RegionOptions::new().open_path_unattached(&path).unwrap();
        let h = old.raw().header().unwrap();
        // As left by an unlinker killed after step 4: retired, unlinked, TID still set.
        let dead = dead_pid();
        h.life
            .store(life::make(0, dead, life::RETIRED), Ordering::SeqCst);
        std::fs::remove_file(&path).unwrap();
        // A new region at the path since.
        let new = Region::create(&path, 1 << 16).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // Done at once: the path no longer names the retired file.
        assert!(wait_unlinked(old.raw(), &path_ref, deadline));
        assert_eq!(life::phase(h.life.load(Ordering::SeqCst)), life::RETIRED);
        assert!(path.exists(), "the new file is another inode: left alone");
        drop((new, old));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    #[cfg_attr(miri, ignore = "a region maps a memfd")]
    fn a_dead_remover_left_retiring_is_taken_over_by_the_next_remover() {
        let r = Region::memfd("dead-remover", 1 << 16).unwrap();
        let h = r.raw().header().unwrap();
        h.life
            .store(life::make(0, dead_pid(), life::RETIRING), Ordering::SeqCst);
        // This handle is live: the new remover finds it and cancels (LIVE again).
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(
            retire(r.raw(), &r.geo, false, deadline),
            Retire::InUse
        ));
        assert_eq!(h.life.load(Ordering::SeqCst), life::LIVE);
    }
}
