//! A region's life cycle with real processes: the attach table lists exactly the live
//! processes that have it open (whatever kills them, and whoever reuses their pids), and a
//! region created with `remove_when_unused` is removed once its last process is gone,
//! never while one is live, and never from under a process opening it at that moment.
//!
//! Offsets below follow the documented format (`src/region/format.rs`): with 4 directory
//! entries, the attach table is at 128 + 4 * 128 = 640, one 8-byte word per handle
//! (pid << 32 | low 32 bits of the start time).

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{SharedMem, TempDir, fork_children, in_new_time_namespace, wait_all, watchdog};
use shmstate::region::{ATTACH_SLOTS, ReadOnlyRegion};
use shmstate::sync::{AtomicU32, AtomicU64, Ordering};
use shmstate::{
    Counter, Elem, Kind, OpenError, Region, RegionOptions, RemoveError, SharedSized, TypeTag, futex,
};

const CAPACITY: u32 = 4;
const TABLE: u64 = 128 + CAPACITY as u64 * 128;
const SIZE: u64 = 1 << 16;

fn options() -> RegionOptions {
    RegionOptions::new().capacity(CAPACITY)
}

fn removing() -> RegionOptions {
    options().remove_when_unused(true)
}

/// The non-zero attach-table words of the file at `path`, read from the file.
fn table_words(path: &Path) -> Vec<u64> {
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; ATTACH_SLOTS as usize * 8];
    f.read_exact_at(&mut buf, TABLE).unwrap();
    buf.chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .filter(|&w| w != 0)
        .collect()
}

/// Writes attach-table word `i` of the file at `path` (through the file, as a hostile or
/// crashed peer's word would be there).
fn write_word(path: &Path, i: u32, word: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&word.to_ne_bytes(), TABLE + 8 * u64::from(i))
        .unwrap();
}

fn live_pids(region: &Region) -> Vec<u32> {
    let mut pids: Vec<u32> = region
        .attached()
        .iter()
        .inspect(|a| assert!(a.alive, "Region::attached lists a dead process: {a:?}"))
        .map(|a| a.pid)
        .collect();
    pids.sort_unstable();
    pids
}

fn kill(pid: libc::pid_t) {
    // SAFETY: signalling a process this test forked.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// The pid of a process that has exited and been reaped: what a killed process leaves in
/// an attach table.
#[cfg_attr(not(shmstate_test_hooks), allow(dead_code))]
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Reaps child `pid` (blocks until it has ended).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

/// Blocks until `word` reaches at least `target`; panics after 30 s (a peer that died).
fn wait_for(word: &AtomicU32, target: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "waited 30 s for {target}"
        );
        // Acquire: pairs with the writer's release store or increment.
        let v = word.load(Ordering::Acquire);
        if v >= target {
            return;
        }
        futex::wait(word, v, Some(Duration::from_millis(50)));
    }
}

fn bump(word: &AtomicU32) {
    // Release: publishes what the process did before (opened, dropped, ...).
    word.fetch_add(1, Ordering::Release);
    futex::wake_all(word);
}

/// Parks a child until it is killed.
fn park_forever() -> ! {
    let never = AtomicU32::new(0);
    loop {
        futex::wait(&never, 0, None);
    }
}

struct XorShift(u64);
impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

const KILLERS: usize = 8;

#[repr(C)]
struct KillControl {
    /// Children that have the region open.
    ready: AtomicU32,
    /// The pid child `i` is to kill (set by the test).
    order: [AtomicU32; KILLERS],
    /// The last pid child `i` killed.
    done: [AtomicU32; KILLERS],
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for KillControl {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 11), Elem::NONE);
}

#[test]
fn attached_lists_exactly_the_live_processes_while_they_kill_each_other() {
    watchdog(Duration::from_secs(60));
    let dir = TempDir::new("life-kill");
    let path = dir.0.join("r");
    let region = options().create(&path, SIZE).unwrap();
    let shared = SharedMem::<KillControl>::new(1);
    let ctl = shared.get();
    let pids = fork_children(KILLERS, |i| {
        let _r = Region::open(&path).unwrap();
        bump(&ctl.ready);
        let mut handled = 0;
        loop {
            // Acquire: pairs with the test's release store of the order.
            let victim = ctl.order[i].load(Ordering::Acquire);
            if victim != handled {
                kill(victim as libc::pid_t);
                handled = victim;
                // Release: the kill was sent before this is seen.
                ctl.done[i].store(victim, Ordering::Release);
                futex::wake_all(&ctl.done[i]);
            } else {
                futex::wait(&ctl.order[i], victim, Some(Duration::from_millis(50)));
            }
        }
    });
    wait_for(&ctl.ready, KILLERS as u32);
    let me = std::process::id();
    let mut alive: Vec<usize> = (0..KILLERS).collect();
    let expect = |alive: &[usize]| {
        let mut v: Vec<u32> = alive.iter().map(|&i| pids[i] as u32).collect();
        v.push(me);
        v.sort_unstable();
        v
    };
    assert_eq!(live_pids(&region), expect(&alive));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed:#x}");
    let mut rng = XorShift(seed);
    while alive.len() > 1 {
        let killer = alive[rng.below(alive.len())];
        let victim = loop {
            let v = alive[rng.below(alive.len())];
            if v != killer {
                break v;
            }
        };
        let victim_pid = pids[victim] as u32;
        // Release: pairs with the killer's acquire load.
        ctl.order[killer].store(victim_pid, Ordering::Release);
        futex::wake_all(&ctl.order[killer]);
        while ctl.done[killer].load(Ordering::Acquire) != victim_pid {
            futex::wait(
                &ctl.done[killer],
                ctl.done[killer].load(Ordering::Relaxed),
                Some(Duration::from_millis(50)),
            );
        }
        reap(pids[victim]);
        alive.retain(|&i| i != victim);
        assert_eq!(live_pids(&region), expect(&alive), "after killing {victim}");
        // `attached` freed the dead process's words: one word per live handle is left
        // (each child has two: the one it opened, and the one it inherited at the fork).
        assert_eq!(table_words(&path).len(), 2 * alive.len() + 1);
    }
    let last = alive[0];
    kill(pids[last]);
    reap(pids[last]);
    assert_eq!(live_pids(&region), vec![me]);
    assert_eq!(table_words(&path).len(), 1);
}

#[test]
fn a_recorded_pid_now_used_by_another_process_reads_dead() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-reuse");
    let path = dir.0.join("r");
    let region = options().create(&path, SIZE).unwrap();
    let words = table_words(&path);
    assert_eq!(words.len(), 1);
    let mine = words[0];
    assert_eq!(mine >> 32, u64::from(std::process::id()));
    let start = mine as u32;
    assert_ne!(start, 0, "this process's start time is known here (/proc)");
    // A process that died, whose pid the kernel has given to this (live) process: the
    // same pid, another start time.
    let forged = (mine & !0xffff_ffff) | u64::from(start.wrapping_sub(1000));
    write_word(&path, 5, forged);
    let view = ReadOnlyRegion::open(&path).unwrap();
    let listed = view.attached();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let old = listed.iter().find(|a| a.start_time != start).unwrap();
    assert_eq!(old.pid, std::process::id());
    assert!(
        !old.alive,
        "a reused pid is taken for the old process: {old:?}"
    );
    assert!(listed.iter().any(|a| a.start_time == start && a.alive));
    // The writable handle frees the dead word.
    assert_eq!(live_pids(&region), vec![std::process::id()]);
    assert_eq!(table_words(&path), vec![mine]);
    // And a removal is not held up by it.
    write_word(&path, 5, forged);
    drop(region);
    Region::remove_unused(&path).unwrap();
    assert!(!path.exists());
}

#[repr(C)]
struct Steps {
    /// Children that opened the region.
    opened: AtomicU32,
    /// How many children the test lets go (each drops its handle and exits).
    release: AtomicU32,
    /// Spare words for tests.
    a: AtomicU64,
    b: AtomicU64,
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Steps {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 12), Elem::NONE);
}

#[test]
fn remove_when_unused_removes_the_file_when_the_last_process_exits_and_not_before() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-last");
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    const N: usize = 4;
    // Forked before the region exists (a child inherits its parent's handles, and one
    // that exits without dropping them leaves like a killed process: see the lifecycle
    // module docs).
    let pids = fork_children(N, |i| {
        wait_for(&ctl.release, 1);
        // Plain `open` (default options): the file's recorded flag governs.
        let r = Region::open(&path).unwrap();
        assert!(r.remove_when_unused());
        r.get::<Counter>("hits").unwrap().add(1);
        bump(&ctl.opened);
        wait_for(&ctl.release, i as u32 + 2);
        drop(r);
    });
    let region = removing().create(&path, SIZE).unwrap();
    region.get_or_default::<Counter>("hits").unwrap();
    bump(&ctl.release);
    wait_for(&ctl.opened, N as u32);
    // The creator leaves first: four live processes still have it open.
    drop(region);
    assert!(path.exists());
    for (i, &pid) in pids.iter().enumerate() {
        bump(&ctl.release);
        reap(pid);
        let view = ReadOnlyRegion::open(&path);
        if i + 1 < N {
            let view = view.unwrap_or_else(|e| panic!("removed with {} left: {e}", N - i - 1));
            let live = view.attached().iter().filter(|a| a.alive).count();
            assert_eq!(live, N - i - 1);
        } else {
            assert!(
                matches!(view, Err(OpenError::NotFound(_))),
                "left behind by the last process: {view:?}"
            );
        }
    }
}

#[test]
fn remove_when_unused_a_killed_last_process_is_reclaimed_by_the_next_opener() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-killed");
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    let pid = fork_children(1, |_| {
        let r = removing().create(&path, SIZE).unwrap();
        r.get_or_default::<Counter>("hits").unwrap().add(7);
        bump(&ctl.opened);
        park_forever();
    })[0];
    wait_for(&ctl.opened, 1);
    kill(pid);
    reap(pid);
    // Killed: nobody detached, the file stays (with a dead word).
    assert!(path.exists());
    let view = ReadOnlyRegion::open(&path).unwrap();
    assert!(view.attached().iter().all(|a| !a.alive));
    drop(view);
    // The next program uses it as it is, and removes it when it is done.
    let r = Region::open(&path).unwrap();
    assert_eq!(r.get::<Counter>("hits").unwrap().get(), 7);
    assert_eq!(live_pids(&r), vec![std::process::id()]);
    drop(r);
    assert!(!path.exists());
}

#[test]
fn remove_when_unused_the_last_live_process_removes_it_past_a_killed_one() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-past");
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    // Forked before this process has a handle: the child holds only its own.
    let pid = fork_children(1, |_| {
        wait_for(&ctl.release, 1);
        let _r = Region::open(&path).unwrap();
        bump(&ctl.opened);
        park_forever();
    })[0];
    let region = removing().create(&path, SIZE).unwrap();
    bump(&ctl.release);
    wait_for(&ctl.opened, 1);
    assert_eq!(region.attached().len(), 2);
    kill(pid);
    reap(pid);
    // The child's word is still there (nobody noticed yet); dropping the last live handle
    // finds it dead, prunes it, and removes the file.
    assert_eq!(table_words(&path).len(), 2);
    drop(region);
    assert!(!path.exists());
}

#[test]
fn remove_unused_refuses_a_live_process_and_removes_a_dead_one() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-rm");
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    // Without remove_when_unused: persistent, removed only when asked.
    let pid = fork_children(1, |_| {
        let _r = options().create(&path, SIZE).unwrap();
        bump(&ctl.opened);
        park_forever();
    })[0];
    wait_for(&ctl.opened, 1);
    match Region::remove_unused(&path) {
        Err(RemoveError::InUse { attached }) => {
            assert_eq!(attached.len(), 1);
            assert_eq!(attached[0].pid, pid as u32);
        }
        other => panic!("removed under a live process: {other:?}"),
    }
    assert!(path.exists());
    kill(pid);
    reap(pid);
    Region::remove_unused(&path).unwrap();
    assert!(!path.exists());
    // Forced: even with a live process (this one), which keeps its mapping.
    let r = options().create(&path, SIZE).unwrap();
    Region::remove_forced(&path).unwrap();
    assert!(!path.exists());
    r.get_or_default::<Counter>("still mapped").unwrap().add(1);
    // A new region at the path is a new file, which dropping the old handle leaves alone.
    let fresh = removing().create(&path, SIZE).unwrap();
    drop(r);
    assert!(path.exists());
    drop(fresh);
    assert!(!path.exists());
}

#[test]
fn a_fork_child_dropping_its_inherited_handle_leaves_the_parent_listed() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-fork");
    let path = dir.0.join("r");
    let region = removing().create(&path, SIZE).unwrap();
    let me = std::process::id();
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    let region_ref = &region;
    let path_ref = path.as_path();
    let pids = fork_children(1, move |_| {
        let path = path_ref;
        // The child counts as attached from the fork on, without touching the handle.
        let words = table_words(path);
        let child = std::process::id();
        assert!(
            words.iter().any(|w| (w >> 32) as u32 == child),
            "{words:x?}"
        );
        assert!(words.iter().any(|w| (w >> 32) as u32 == me), "{words:x?}");
        let mut listed = live_pids(region_ref);
        listed.sort_unstable();
        let mut want = vec![me, child];
        want.sort_unstable();
        assert_eq!(listed, want);
        // Dropping the inherited handle releases the child's word, not the parent's, and
        // removes nothing (the parent is attached).
        // SAFETY: the child owns its copy of the parent's memory; the parent's handle is
        // untouched. The child then exits without the parent's `region` being used again.
        let inherited = unsafe { std::ptr::read(region_ref) };
        drop(inherited);
        assert!(path.exists());
        assert_eq!(table_words(path).len(), 1);
        ctl.a.store(1, Ordering::Release);
    });
    wait_all(&pids, Duration::from_secs(20));
    assert_eq!(ctl.a.load(Ordering::Acquire), 1);
    assert_eq!(live_pids(&region), vec![me]);
    assert_eq!(region.attached()[0].handles, 1);
    assert!(path.exists());
    drop(region);
    assert!(!path.exists());
}

#[test]
fn a_process_whose_main_thread_exited_is_alive_while_its_other_threads_run() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-zombie-leader");
    let path = dir.0.join("r");
    drop(options().create(&path, SIZE).unwrap());
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    let path_ref = path.as_path();
    let pid = fork_children(1, move |_| {
        std::thread::scope(|s| {
            s.spawn(move || {
                let _r = Region::open(path_ref).unwrap();
                bump(&ctl.opened);
                park_forever();
            });
            wait_for(&ctl.opened, 1);
            // SAFETY: ends the calling (leader) thread only, without unwinding; the
            // process lives on in the other thread, which holds the handle.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        });
    })[0];
    wait_for(&ctl.opened, 1);
    // The leader reads as a zombie in /proc once it has exited.
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&stat)
        .is_ok_and(|s| s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never exited"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let view = ReadOnlyRegion::open(&path).unwrap();
    let listed = view.attached();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].alive, "{listed:?}");
    assert!(matches!(
        Region::remove_unused(&path),
        Err(RemoveError::InUse { .. })
    ));
    assert!(path.exists());
    kill(pid);
    reap(pid);
    Region::remove_unused(&path).unwrap();
}

#[test]
fn a_region_renamed_before_its_last_drop_stays_live_under_its_new_name() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-renamed");
    let (p, q) = (dir.0.join("p"), dir.0.join("q"));
    let r = removing().create(&p, SIZE).unwrap();
    std::fs::rename(&p, &q).unwrap();
    // The drop's unlink finds nothing of its own at `p`: nothing is removed, and the
    // region is not left retired.
    drop(r);
    assert!(q.exists());
    assert!(!ReadOnlyRegion::open(&q).unwrap().is_retired());
    let r = options()
        .timeout(Duration::from_millis(200))
        .open(&q)
        .unwrap();
    r.get_or_default::<Counter>("usable").unwrap().add(1);
    drop(r);
    assert!(!q.exists(), "its last handle by the new name removed it");
}

#[test]
fn a_refused_unlink_leaves_the_region_live_and_remove_unused_says_so() {
    watchdog(Duration::from_secs(30));
    // SAFETY: `geteuid` has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root, to drop to another user in a child");
        return;
    }
    let dir = TempDir::new("life-sticky");
    // As /dev/shm: anyone may create files, only their owner may remove them.
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    let path_ref = path.as_path();
    // Forked before the region exists: the child inherits no handle.
    let pids = fork_children(1, move |_| {
        wait_for(&ctl.release, 1);
        // SAFETY: dropping privileges in this child only.
        unsafe {
            assert_eq!(libc::setgid(65534), 0);
            assert_eq!(libc::setuid(65534), 0);
        }
        let r = Region::open(path_ref).unwrap();
        bump(&ctl.opened);
        wait_for(&ctl.release, 2);
        // The last handle, of a user that may not unlink root's file here.
        drop(r);
        assert!(path_ref.exists());
        assert!(!ReadOnlyRegion::open(path_ref).unwrap().is_retired());
        // And `remove_unused` reports the refusal rather than success.
        let e = Region::remove_unused(path_ref).unwrap_err();
        assert!(
            matches!(&e, RemoveError::Unlink(io) if io.kind() == std::io::ErrorKind::PermissionDenied),
            "{e:?}"
        );
        bump(&ctl.opened);
    });
    let mine = removing().mode(0o666).create(&path, SIZE).unwrap();
    bump(&ctl.release);
    wait_for(&ctl.opened, 1);
    drop(mine);
    assert!(path.exists(), "the other user's process has it open");
    bump(&ctl.release);
    wait_all(&pids, Duration::from_secs(20));
    assert_eq!(ctl.opened.load(Ordering::Acquire), 2);
    // Not bricked: it opens, and a user allowed to unlink it removes it.
    let r = options()
        .timeout(Duration::from_millis(200))
        .open(&path)
        .unwrap();
    drop(r);
    assert!(!path.exists());
}

/// Writes the header's life-cycle word (offset 60) and remover word (offset 72) of the
/// file at `path`, as a remover would have left them.
fn write_life(path: &Path, life: u32, remover: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&life.to_ne_bytes(), 60).unwrap();
    f.write_all_at(&remover.to_ne_bytes(), 72).unwrap();
}

/// `RETIRED` by thread `tid` (the life-cycle word's layout).
const fn retired_by(tid: u32) -> u32 {
    tid << 3 | 2
}

/// The low 32 bits of the start time of process 1 (always alive).
fn start_of_init() -> u32 {
    let stat = std::fs::read_to_string("/proc/1/stat").unwrap();
    let field = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(22 - 3);
    field.unwrap().parse::<u64>().unwrap() as u32
}

#[test]
fn a_retired_region_whose_unlinker_tid_was_reused_is_unlinked_by_the_next_opener() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-tid-reused");
    let path = dir.0.join("r");
    drop(options().create(&path, SIZE).unwrap());
    // Retired by a thread that died before unlinking, whose TID now names a live thread
    // (of this process): its recorded start time tells them apart.
    let Some((tid, start)) = common::live_thread_with_start() else {
        eprintln!("skipped: /proc shows no start time here");
        return;
    };
    write_life(
        &path,
        retired_by(tid),
        u64::from(tid) << 32 | u64::from(start as u32 ^ 1),
    );
    let e = options()
        .timeout(Duration::from_secs(10))
        .open(&path)
        .unwrap_err();
    assert!(matches!(e, OpenError::NotFound(_)), "{e:?}");
    assert!(!path.exists());
}

#[test]
fn remove_forced_takes_over_a_retired_region_whose_unlinker_reads_alive() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-retired-alive");
    let path = dir.0.join("r");
    drop(options().create(&path, SIZE).unwrap());
    // Retired by a live thread that never unlinks (stopped, or a word a peer wrote).
    write_life(&path, retired_by(1), 1 << 32 | u64::from(start_of_init()));
    let e = options()
        .timeout(Duration::from_millis(100))
        .open(&path)
        .unwrap_err();
    assert!(matches!(e, OpenError::Retired(_)), "{e:?}");
    assert!(matches!(
        Region::remove_unused(&path),
        Err(RemoveError::Busy)
    ));
    Region::remove_forced(&path).unwrap();
    assert!(!path.exists());
}

#[test]
fn a_view_removes_only_the_file_it_viewed() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-view-rm");
    let path = dir.0.join("r");
    // A tool (`shmstate gc`) looks at a region nobody has open...
    drop(options().create(&path, SIZE).unwrap());
    let view = ReadOnlyRegion::open(&path).unwrap();
    assert!(view.attached().is_empty());
    // ... and another file takes its place before it removes it: left alone.
    std::fs::remove_file(&path).unwrap();
    drop(options().create(&path, SIZE).unwrap());
    assert!(matches!(
        view.remove_unused(&path),
        Err(RemoveError::Replaced)
    ));
    assert!(path.exists());
    // The file a view maps is removed while the path names it.
    let view = ReadOnlyRegion::open(&path).unwrap();
    view.remove_unused(&path).unwrap();
    assert!(!path.exists());
}

/// Rounds of a parent dropping its last handle right after a fork.
const FORK_DROP_ROUNDS: u32 = if cfg!(debug_assertions) { 100 } else { 400 };

#[test]
fn a_parent_dropping_its_handle_right_after_fork_keeps_the_file_for_its_child() {
    watchdog(Duration::from_secs(60));
    let dir = TempDir::new("life-fork-drop");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    for round in 0..FORK_DROP_ROUNDS {
        let path = dir.0.join(format!("r{round}"));
        let region = removing().create(&path, SIZE).unwrap();
        ctl.a.store(0, Ordering::SeqCst);
        let region_ref = &region;
        let path_ref = path.as_path();
        let pids = fork_children(1, move |_| {
            // Listed from the fork on, so the parent's drop (racing this) keeps the file.
            let me = std::process::id();
            let listed = region_ref.attached().iter().any(|a| a.pid == me);
            let exists = path_ref.exists();
            // SAFETY: the child's copy of the parent's handle, dropped once here (the
            // parent's own is untouched). The last of the two drops removes the file.
            drop(unsafe { std::ptr::read(region_ref) });
            ctl.a.store(
                1 | u64::from(listed) << 1 | u64::from(exists) << 2,
                Ordering::SeqCst,
            );
        });
        drop(region);
        wait_all(&pids, Duration::from_secs(20));
        let v = ctl.a.load(Ordering::SeqCst);
        assert_eq!(v, 0b111, "round {round}: ran, listed, file kept: {v:#b}");
        assert!(!path.exists(), "round {round}: the last drop removed it");
    }
}

/// Rounds of the race between the last handle's removal and a new opener.
const RACE_ROUNDS: u32 = if cfg!(debug_assertions) { 300 } else { 2000 };

#[repr(C)]
struct Race {
    /// The round both sides may run.
    round: AtomicU32,
    /// Arrivals at the round's start line (2 per round).
    arrived: AtomicU32,
    /// Rounds the opener finished.
    done: AtomicU32,
    /// Rounds where the opener got the old region, and a fresh one.
    old: AtomicU64,
    fresh: AtomicU64,
}
// SAFETY: integer atomics only: zero and every bit pattern valid, no pointers, `Sync`.
unsafe impl SharedSized for Race {
    const TAG: TypeTag = TypeTag::new(Kind(Kind::USER.0 + 13), Elem::NONE);
}

/// Both sides spin on the start line so that the drop and the open run at once.
fn start_line(ctl: &Race, round: u32) {
    // AcqRel: each side's arrival is seen by the other's spin.
    ctl.arrived.fetch_add(1, Ordering::AcqRel);
    while ctl.arrived.load(Ordering::Acquire) < 2 * round {
        std::hint::spin_loop();
    }
}

#[test]
fn a_late_opener_racing_the_removal_always_ends_with_a_usable_region() {
    watchdog(Duration::from_secs(120));
    let dir = TempDir::new("life-race");
    let shared = SharedMem::<Race>::new(1);
    let ctl = shared.get();
    let round_path = |round: u32| -> PathBuf { dir.0.join(format!("r{}", round % 4)) };
    let opener = fork_children(1, |_| {
        for round in 1..=RACE_ROUNDS {
            wait_for(&ctl.round, round);
            let path = round_path(round);
            start_line(ctl, round);
            let r = removing().open_or_create(&path, SIZE).unwrap();
            // Usable: its objects work, and it is the file at the path (a new opener sees
            // what it wrote), with this process listed.
            let hits = r.get_or_default::<Counter>("opener").unwrap();
            hits.add(1);
            let old = r.get::<Counter>("remover").is_ok();
            let view = ReadOnlyRegion::open(&path).unwrap_or_else(|e| {
                panic!("round {round}: the opener's region is not at the path: {e}")
            });
            let e = view
                .entries()
                .into_iter()
                .find(|e| e.name == "opener")
                .expect("the opener's object is in the file at the path");
            assert_eq!(view.load_u64(e.offset), Some(1), "round {round}");
            assert!(!view.is_retired());
            assert!(
                view.attached()
                    .iter()
                    .any(|a| a.pid == std::process::id() && a.alive)
            );
            drop(view);
            if old {
                ctl.old.fetch_add(1, Ordering::Relaxed);
            } else {
                ctl.fresh.fetch_add(1, Ordering::Relaxed);
            }
            // The remover may not have dropped its handle yet: the test checks the path
            // once both are done.
            drop(r);
            bump(&ctl.done);
        }
    });
    for round in 1..=RACE_ROUNDS {
        let path = round_path(round);
        let r = removing().create(&path, SIZE).unwrap();
        r.get_or_default::<Counter>("remover").unwrap();
        // Release: pairs with the opener's acquire wait.
        ctl.round.store(round, Ordering::Release);
        futex::wake_all(&ctl.round);
        start_line(ctl, round);
        drop(r);
        wait_for(&ctl.done, round);
        assert!(!path.exists(), "round {round}: the last handle left it");
    }
    wait_all(&opener, Duration::from_secs(30));
    eprintln!(
        "{RACE_ROUNDS} rounds: the opener got the old region {} times, a fresh one {} times",
        ctl.old.load(Ordering::Relaxed),
        ctl.fresh.load(Ordering::Relaxed)
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_opener_of_a_retired_region_gets_not_found_or_a_fresh_region() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-retired");
    let path = dir.0.join("r");
    let r = removing().create(&path, SIZE).unwrap();
    // Another handle opened it, then the file was removed (forced): the old mapping is
    // retired, the path empty.
    Region::remove_forced(&path).unwrap();
    assert!(matches!(Region::open(&path), Err(OpenError::NotFound(_))));
    let fresh = removing().open_or_create(&path, SIZE).unwrap();
    assert!(fresh.get::<Counter>("x").is_err());
    drop(r);
    assert!(
        path.exists(),
        "the retired handle does not remove the new file"
    );
    drop(fresh);
    assert!(!path.exists());
}

/// Crash windows of the removal protocol (a build with `--cfg shmstate_test_hooks`).
#[cfg(shmstate_test_hooks)]
mod crash {
    use super::*;
    use shmstate::failpoint::{Point, arm};
    use std::time::Instant;

    /// Forks a child that creates a removing region at `path` with an object, arms `p`
    /// and drops the region; returns once it has stopped at `p`.
    fn remover_stopped_at(path: &Path, p: Point) -> libc::pid_t {
        let pid = fork_children(1, |_| {
            let r = removing().create(path, SIZE).unwrap();
            r.get_or_default::<Counter>("old").unwrap();
            arm(p);
            drop(r);
            std::process::exit(3);
        })[0];
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) };
            if r == pid {
                assert!(libc::WIFSTOPPED(status), "ended before {p:?}: {status:#x}");
                return pid;
            }
            assert!(Instant::now() < deadline, "never reached {p:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_remover_killed_while_retiring_is_cancelled_by_an_opener_or_taken_over() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-retiring");
        let path = dir.0.join("r");
        // An opener cancels it at once and uses the region.
        let pid = remover_stopped_at(&path, Point::RegionRetiring);
        kill(pid);
        reap(pid);
        let r = Region::open(&path).unwrap();
        r.get::<Counter>("old").unwrap();
        drop(r);
        assert!(!path.exists(), "the opener removed it when done");
        // A removal takes the dead remover's place.
        let pid = remover_stopped_at(&path, Point::RegionRetiring);
        kill(pid);
        reap(pid);
        Region::remove_unused(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_remover_killed_before_unlinking_is_finished_by_the_next_opener() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-retired");
        let path = dir.0.join("r");
        let pid = remover_stopped_at(&path, Point::RegionRetired);
        // Stopped, not dead: an opener waits its timeout out and says so.
        let err = removing()
            .timeout(Duration::from_millis(100))
            .open(&path)
            .unwrap_err();
        assert!(matches!(err, OpenError::Retired(_)), "{err:?}");
        assert!(ReadOnlyRegion::open(&path).unwrap().is_retired());
        kill(pid);
        reap(pid);
        // Dead: the next opener unlinks the retired file and creates a fresh one.
        let r = removing().open_or_create(&path, SIZE).unwrap();
        assert!(r.get::<Counter>("old").is_err(), "a fresh region");
        assert!(!ReadOnlyRegion::open(&path).unwrap().is_retired());
        drop(r);
        assert!(!path.exists());
        // A plain open finds nothing; `remove_unused` finishes the unlink too.
        let pid = remover_stopped_at(&path, Point::RegionRetired);
        kill(pid);
        reap(pid);
        assert!(matches!(Region::open(&path), Err(OpenError::NotFound(_))));
        let pid = remover_stopped_at(&path, Point::RegionRetired);
        kill(pid);
        reap(pid);
        Region::remove_unused(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn an_opener_stopped_after_claiming_keeps_the_region() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-claimed");
        let path = dir.0.join("r");
        let shared = SharedMem::<Steps>::new(1);
        let ctl = shared.get();
        let path_ref = path.as_path();
        // Forked before the region exists: the child inherits no handle, so the only
        // word it can hold is the one its open claims.
        let pid = fork_children(1, move |_| {
            wait_for(&ctl.release, 1);
            arm(Point::RegionAttachClaimed);
            let _r = Region::open(path_ref).unwrap();
            std::process::exit(3);
        })[0];
        let region = removing().create(&path, SIZE).unwrap();
        bump(&ctl.release);
        common::wait_until_stopped(pid);
        let words = table_words(&path);
        assert!(words.iter().any(|w| (w >> 32) as i32 == pid), "{words:x?}");
        // The last handle here is dropped while the opener has claimed its word but not
        // yet looked at the life-cycle word: the removal must see it and keep the file.
        drop(region);
        assert!(path.exists());
        assert!(!ReadOnlyRegion::open(&path).unwrap().is_retired());
        kill(pid);
        reap(pid);
        // Dead now: its word is pruned by the removal that `rm` makes.
        Region::remove_unused(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_fork_child_stopped_in_its_handler_is_listed_and_pruned_once_killed() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-fork");
        let path = dir.0.join("r");
        let region = removing().create(&path, SIZE).unwrap();
        // Only the fork child handler reaches this point: the child stops in it.
        arm(Point::RegionForkSwapped);
        let pid = fork_children(1, |_| std::process::exit(3))[0];
        common::wait_until_stopped(pid);
        let child = pid as u32;
        assert_eq!(live_pids(&region), {
            let mut v = vec![std::process::id(), child];
            v.sort_unstable();
            v
        });
        // The last handle here: the stopped child keeps the file.
        drop(region);
        assert!(path.exists());
        assert!(!ReadOnlyRegion::open(&path).unwrap().is_retired());
        kill(pid);
        reap(pid);
        // Dead: its word is pruned by the removal `rm` makes.
        Region::remove_unused(&path).unwrap();
        assert!(!path.exists());
    }

    /// Forks a child that opens the region at `path` once `ctl.release` reaches 1 and
    /// signals `ctl.opened`, arms `p`, and drops its handle when `ctl.release` reaches 2.
    fn opener_then_dropper(path: &Path, ctl: &Steps, p: Point) -> libc::pid_t {
        fork_children(1, move |_| {
            wait_for(&ctl.release, 1);
            let r = Region::open(path).unwrap();
            bump(&ctl.opened);
            wait_for(&ctl.release, 2);
            arm(p);
            drop(r);
            std::process::exit(3);
        })[0]
    }

    #[test]
    fn an_opener_killed_after_cancelling_a_retirement_leaves_a_live_region() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-cancelled");
        let path = dir.0.join("r");
        let remover = remover_stopped_at(&path, Point::RegionRetiring);
        let path_ref = path.as_path();
        let opener = fork_children(1, move |_| {
            arm(Point::RegionRetiringCancelled);
            let _r = Region::open(path_ref).unwrap();
            std::process::exit(3);
        })[0];
        common::wait_until_stopped(opener);
        kill(opener);
        reap(opener);
        // LIVE again, with the opener's dead word.
        assert!(!ReadOnlyRegion::open(&path).unwrap().is_retired());
        // The remover goes on: its scan prunes that word, its final CAS fails (the
        // retirement was cancelled): nothing removed.
        // SAFETY: signalling our own stopped child.
        unsafe { libc::kill(remover, libc::SIGCONT) };
        reap(remover);
        assert!(path.exists());
        let r = Region::open(&path).unwrap();
        r.get::<Counter>("old").unwrap();
        drop(r);
        assert!(!path.exists(), "the next opener removed it when done");
    }

    #[test]
    fn a_remover_killed_mid_scan_leaves_a_region_the_next_opener_uses() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-scan");
        let path = dir.0.join("r");
        let shared = SharedMem::<Steps>::new(1);
        let ctl = shared.get();
        let child = opener_then_dropper(&path, ctl, Point::RegionScanPruned);
        let region = removing().create(&path, SIZE).unwrap();
        region.get_or_default::<Counter>("old").unwrap();
        bump(&ctl.release);
        wait_for(&ctl.opened, 1);
        // Leaves the child the last one attached (this removal sees it and keeps the file).
        drop(region);
        assert!(path.exists());
        // A dead process's word for the child's scan to prune.
        write_word(&path, ATTACH_SLOTS - 1, u64::from(dead_pid()) << 32);
        bump(&ctl.release);
        common::wait_until_stopped(child);
        kill(child);
        reap(child);
        // RETIRING by a dead thread: an opener cancels it and uses the region.
        let r = Region::open(&path).unwrap();
        r.get::<Counter>("old").unwrap();
        drop(r);
        assert!(!path.exists());
    }

    #[test]
    fn an_unlinker_killed_after_unlinking_leaves_the_path_free() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-unlinked");
        let path = dir.0.join("r");
        let pid = remover_stopped_at(&path, Point::RegionUnlinked);
        assert!(!path.exists(), "unlinked");
        kill(pid);
        reap(pid);
        assert!(matches!(Region::open(&path), Err(OpenError::NotFound(_))));
        let r = removing().open_or_create(&path, SIZE).unwrap();
        assert!(r.get::<Counter>("old").is_err(), "a fresh region");
        drop(r);
        assert!(!path.exists());
    }

    #[test]
    fn a_process_killed_between_releasing_and_removing_leaves_the_file_to_the_next() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-released");
        let path = dir.0.join("r");
        let pid = remover_stopped_at(&path, Point::RegionReleased);
        kill(pid);
        reap(pid);
        // Nobody attached, not retired: `rm` (or `gc`, or the next opener) removes it.
        let view = ReadOnlyRegion::open(&path).unwrap();
        assert!(view.attached().is_empty() && !view.is_retired());
        Region::remove_unused(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_remover_stopped_while_retiring_makes_another_last_drop_leave_the_file() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-stopped-retiring");
        let path = dir.0.join("r");
        let shared = SharedMem::<Steps>::new(1);
        let ctl = shared.get();
        let child = opener_then_dropper(&path, ctl, Point::RegionRetiring);
        let region = removing()
            .timeout(Duration::from_millis(100))
            .create(&path, SIZE)
            .unwrap();
        bump(&ctl.release);
        wait_for(&ctl.opened, 1);
        bump(&ctl.release);
        // The child set RETIRING and stopped before its scan (which would find us).
        common::wait_until_stopped(child);
        // Our drop waits for that retirement's outcome until its timeout, then leaves
        // the file (nobody can tell whether the stopped remover's scan will see us).
        drop(region);
        assert!(path.exists());
        kill(child);
        reap(child);
        // RETIRING by a dead thread: `rm` takes it over and removes the file.
        Region::remove_unused(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_stopped_remover_cancelled_by_an_opener_keeps_the_region() {
        watchdog(Duration::from_secs(60));
        let dir = TempDir::new("life-crash-cancel");
        let path = dir.0.join("r");
        let pid = remover_stopped_at(&path, Point::RegionRetiring);
        // The remover is stopped between RETIRING and its scan; an opener cancels it.
        let r = Region::open(&path).unwrap();
        r.get::<Counter>("old").unwrap();
        // The remover continues: its scan finds this process, or its final CAS fails.
        // SAFETY: signalling our own stopped child.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3);
        assert!(path.exists(), "removed under a live opener");
        assert!(!ReadOnlyRegion::open(&path).unwrap().is_retired());
        drop(r);
        assert!(!path.exists(), "the opener, last, removed it");
    }
}

/// The offsets of [`in_new_time_namespace`]: boot time 7 s ahead, so that its `/proc`
/// shows every start time shifted.
const BOOT_AHEAD: &str = "boottime 7 0";

/// Reaps child `pid` (the watchdog bounds the wait): its exit code, 5 if it did not exit.
fn code_of(pid: libc::pid_t) -> i32 {
    common::exit_code(pid).unwrap_or(5)
}

/// A process in another time namespace (whose `/proc` shows every start time shifted by
/// its boot-time offset) judges the processes attached to a region by their pids alone:
/// it lists a live process of this namespace alive, keeps its word, and its drop of a
/// `remove_when_unused` region leaves the file to it. Needs `CAP_SYS_ADMIN`,
/// `CAP_SYS_TIME` (for the offset) and Linux 5.6 (skipped elsewhere).
#[test]
fn a_process_in_another_time_namespace_leaves_a_region_to_a_live_process() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-timens");
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    // Exit codes: 0 right, 1 listed this process dead, 3 could not open.
    let child = in_new_time_namespace(BOOT_AHEAD, || {
        wait_for(&ctl.release, 1);
        match Region::open(&path) {
            Err(_) => 3,
            Ok(r) => {
                let parent = ctl.a.load(Ordering::Acquire) as u32;
                let alive = r.attached().iter().any(|a| a.pid == parent && a.alive);
                drop(r);
                if alive { 0 } else { 1 }
            }
        }
    });
    let region = removing().create(&path, SIZE).unwrap();
    let mine = table_words(&path);
    ctl.a
        .store(u64::from(std::process::id()), Ordering::Release);
    bump(&ctl.release);
    match code_of(child) {
        4 => eprintln!("skipped: cannot make a time namespace here"),
        code => {
            assert!(path.exists(), "removed under a live process");
            assert_eq!(table_words(&path), mine, "this process's word was pruned");
            assert_eq!(code, 0, "listed this process dead (1), or failed ({code})");
        }
    }
    drop(region);
    assert!(!path.exists());
}

/// A process in another time namespace does not remove an object a live process of this
/// namespace holds: its `remove` fails `InUse`, naming that process, and the object keeps
/// its value. Needs `CAP_SYS_ADMIN`, `CAP_SYS_TIME` and Linux 5.6 (skipped elsewhere).
#[test]
fn a_process_in_another_time_namespace_leaves_an_object_to_a_live_holder() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-timens-rm");
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    // Exit codes: 0 `InUse` naming this process (right), 1 removed, 2 `InUse` naming
    // others, 3 another error.
    let child = in_new_time_namespace(BOOT_AHEAD, || {
        wait_for(&ctl.release, 1);
        let Ok(mut r) = Region::open(&path) else {
            return 3;
        };
        let parent = ctl.a.load(Ordering::Acquire) as u32;
        match r.remove("jobs") {
            Ok(()) => 1,
            Err(shmstate::RemoveObjectError::InUse { pids, .. }) if pids == [parent] => 0,
            Err(shmstate::RemoveObjectError::InUse { .. }) => 2,
            Err(_) => 3,
        }
    });
    let region = options().create(&path, SIZE).unwrap();
    let jobs = region.get_or_default::<Counter>("jobs").unwrap();
    jobs.add(7);
    ctl.a
        .store(u64::from(std::process::id()), Ordering::Release);
    bump(&ctl.release);
    match code_of(child) {
        4 => eprintln!("skipped: cannot make a time namespace here"),
        code => assert_eq!(
            code, 0,
            "removed under a live holder (1), or failed ({code})"
        ),
    }
    assert_eq!(jobs.get(), 7);
    assert_eq!(region.get::<Counter>("jobs").unwrap().get(), 7);
}

/// A process in another time namespace waits for a live process of this namespace that
/// is initialising an object, instead of taking the initialisation over: its
/// `get_or_init` of the same name times out, and the object is initialised once. Needs
/// `CAP_SYS_ADMIN`, `CAP_SYS_TIME` and Linux 5.6 (skipped elsewhere).
#[test]
fn a_process_in_another_time_namespace_waits_for_a_live_initialiser() {
    watchdog(Duration::from_secs(30));
    let dir = TempDir::new("life-timens-init");
    let path = dir.0.join("r");
    let shared = SharedMem::<Steps>::new(1);
    let ctl = shared.get();
    // Exit codes: 0 timed out (right), 1 took the initialisation over, 3 another error.
    let child = in_new_time_namespace(BOOT_AHEAD, || {
        wait_for(&ctl.release, 1);
        match options().timeout(Duration::from_millis(300)).open(&path) {
            Err(_) => 3,
            Ok(r) => match r.get_or_init::<Counter>("x", |c| {
                c.add(100);
            }) {
                Err(shmstate::GetError::Timeout) => 0,
                Ok(_) => 1,
                Err(_) => 3,
            },
        }
    });
    let region = options().create(&path, SIZE).unwrap();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (finish, finish_rx) = std::sync::mpsc::channel::<()>();
    let (code, init) = std::thread::scope(|s| {
        let region = &region;
        let init = s.spawn(move || {
            region
                .get_or_init::<Counter>("x", |c| {
                    started_tx.send(()).unwrap();
                    // Until the other process has tried (or the test failed).
                    let _ = finish_rx.recv();
                    c.add(1);
                })
                .map(|c| c.get())
        });
        started.recv().unwrap();
        bump(&ctl.release);
        let code = code_of(child);
        drop(finish);
        (code, init.join().unwrap())
    });
    match code {
        4 => eprintln!("skipped: cannot make a time namespace here"),
        code => assert_eq!(
            code, 0,
            "took the initialisation over (1), or failed ({code})"
        ),
    }
    assert!(
        matches!(init, Ok(1)),
        "initialised once, by its creator: {init:?}"
    );
    assert_eq!(region.get::<Counter>("x").unwrap().get(), 1);
}
