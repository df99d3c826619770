//! The fallback of a process whose kernel refuses the process-wide barrier, with a real
//! refusal. Each test re-executes this test binary as a child that installs a seccomp
//! filter failing `membarrier(2)` with `EPERM` before it touches a channel, as a sandbox
//! (or a kernel before 4.16) would: its registration fails, so its busy side fences, its
//! sleepers set the channel's `fenced` word, and as a send-lock holder it keeps `busy` at
//! its fencing idle value. A fresh image, not a fork: a forked child inherits its
//! parent's registration (`channel_sleeper.rs`).
//!
//! The tests of `channel_sleeper.rs` that use `Channel::act_unregistered_for_tests` cover
//! the same paths in a process the kernel still registers; these show that nothing in the
//! fallback calls on the barrier after all.

mod channel_support;
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use channel_support::until;
use common::{TempDir, watchdog};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
use shmstate::{Channel, ChannelOptions, RecvError, Region, SendError, TryRecvError};

/// Each test's limit (the watchdog aborts the whole test process after it), in the test
/// and in its child.
const LIMIT: Duration = Duration::from_secs(60);

/// Set in a re-executed child: the path of the region file its test made.
const CHILD: &str = "SHMSTATE_TEST_NO_BARRIER_CHILD";

/// Set in a re-executed child: its parent's process id (the child dies with it).
const PARENT: &str = "SHMSTATE_TEST_NO_BARRIER_PARENT";

/// If this process is the re-executed child of a test: installs the filter, opens the
/// test's region, runs `f` on it and exits 0 (a panic fails the child, and so the test).
/// Otherwise returns.
fn child_role(f: impl FnOnce(&Region)) {
    let Some(path) = std::env::var_os(CHILD) else {
        return;
    };
    // A failed test's child must not outlive it (asleep on a channel nobody closes).
    let parent = std::env::var(PARENT).expect("the parent's pid");
    common::die_with_parent(parent.parse().expect("a pid"));
    watchdog(LIMIT);
    refuse_the_barrier();
    let region = Region::open(&path).expect("the test's region");
    f(&region);
    std::process::exit(0);
}

/// Installs, on every thread of this process, a seccomp filter under which `membarrier`
/// fails with `EPERM` and every other call is allowed; checks that it does.
fn refuse_the_barrier() {
    let rules = BTreeMap::from([(libc::SYS_membarrier, vec![])]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH
            .try_into()
            .expect("an architecture seccompiler knows"),
    )
    .expect("filter");
    let program: BpfProgram = filter.try_into().expect("BPF program");
    seccompiler::apply_filter_all_threads(&program).expect("installing the filter");
    /// `MEMBARRIER_CMD_QUERY`: allowed and answered on every kernel that has the call.
    const QUERY: libc::c_long = 0;
    // SAFETY: `membarrier` with a command and two zero arguments reads no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((r, errno), (-1, Some(libc::EPERM)), "the filter is not on");
}

/// Starts this test binary again, running only `test`, as its child under the filter.
fn spawn_filtered(test: &str, region: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, region)
        .env(PARENT, std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the filtered child")
}

/// Waits for the child (bounded by the watchdog) and asserts that it exited 0.
fn reap_filtered(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn options() -> ChannelOptions {
    ChannelOptions::new(4096).max_message(1024)
}

/// A fresh region file for one test, and the directory that holds it.
fn region_file(tag: &str) -> (TempDir, std::path::PathBuf, Region) {
    let dir = TempDir::new(tag);
    let path = dir.0.join("region");
    let region = Region::create(&path, 1 << 20).expect("region");
    (dir, path, region)
}

/// The refused process sleeps first (setting `fenced`, having failed to issue the
/// barrier); then messages go both ways between it and this registered process, each
/// waiting for the other in turn, none lost or repeated, and its receiver sees the close.
#[test]
fn a_process_refused_the_barrier_sets_fenced_and_exchanges_with_a_registered_one() {
    const ROUNDS: u32 = 2000;
    child_role(|region| {
        let ping = region.open_channel("ping").unwrap();
        let pong = region.open_channel("pong").unwrap();
        channel_support::echo_rounds(ping, pong, ROUNDS);
    });
    watchdog(LIMIT);
    let (_dir, path, region) = region_file("no-barrier-exchange");
    let ping = region.channel("ping", options()).unwrap();
    let pong = region.channel("pong", options()).unwrap();
    let child = spawn_filtered(
        "a_process_refused_the_barrier_sets_fenced_and_exchanges_with_a_registered_one",
        &path,
    );
    // Its first receive finds `ping` empty and sleeps; before it does, it sets `fenced`.
    until(LIMIT / 2, "the refused process to set fenced", || {
        ping.fenced_for_tests()
    });
    assert!(!pong.fenced_for_tests(), "nobody slept on pong yet");
    channel_support::ping_rounds(ping, pong, ROUNDS);
    assert!(ping.is_closed());
    reap_filtered(child, "the refused side");
    assert!(ping.is_empty() && pong.is_empty());
}

/// In the refused process, a close is made final at once while another of its threads
/// holds the send side between sends: that holder keeps `busy` at its fencing idle value,
/// so the closer's fence suffices where it cannot issue the barrier. Receivers get what
/// was sent, then `Disconnected`; the holder's next send is refused.
#[test]
fn refused_the_barrier_a_close_is_final_while_its_own_side_is_held_idle() {
    child_role(|region| {
        let ch = region.open_channel("held").unwrap();
        channel_support::close_while_a_side_is_held_idle_without_the_barrier(ch);
    });
    watchdog(LIMIT);
    let (_dir, path, region) = region_file("no-barrier-held");
    let ch = region.channel("held", options()).unwrap();
    let child = spawn_filtered(
        "refused_the_barrier_a_close_is_final_while_its_own_side_is_held_idle",
        &path,
    );
    reap_filtered(child, "the close in the refused process");
    // What the child left: closed, final, and empty.
    assert!(ch.is_closed());
    assert_eq!(
        ch.try_recv(&mut Vec::new()),
        Err(TryRecvError::Disconnected)
    );
}

/// What the refused process cannot do: make its close final while a registered process
/// (this one) holds the send side between sends, for that holder's idle value pairs only
/// with the barrier. Its close refuses sends at once but is not final; its receivers get
/// what was sent, then wait (a `try_` receive says `Empty`); the holder's next send is
/// refused and makes the close final, which wakes them with `Disconnected`.
#[test]
fn a_close_by_a_refused_process_is_made_final_by_the_registered_holders_next_send() {
    close_by_a_refused_process_behind_a_registered_holder(
        "a_close_by_a_refused_process_is_made_final_by_the_registered_holders_next_send",
        Holder::SideSendsAgain,
    );
}

/// The same, the holder letting the side go without another send: after its unlock it
/// fences and looks at `closed`, so its drop makes the close final.
#[test]
fn a_close_by_a_refused_process_is_made_final_when_the_registered_holder_lets_go() {
    close_by_a_refused_process_behind_a_registered_holder(
        "a_close_by_a_refused_process_is_made_final_when_the_registered_holder_lets_go",
        Holder::SideLetGo,
    );
}

/// The same with a reservation held instead of a side, given back unsent.
#[test]
fn a_close_by_a_refused_process_is_made_final_when_the_registered_holder_gives_its_slot_back() {
    close_by_a_refused_process_behind_a_registered_holder(
        "a_close_by_a_refused_process_is_made_final_when_the_registered_holder_gives_its_slot_back",
        Holder::SlotGivenBack,
    );
}

/// What the registered holder of the send lock holds, and does once the refused process
/// has closed.
#[derive(Clone, Copy)]
enum Holder {
    /// A send side, which sends again (refused).
    SideSendsAgain,
    /// A send side, dropped.
    SideLetGo,
    /// A reservation, given back.
    SlotGivenBack,
}

/// The body of the three tests above: `test` is the caller's name (its child runs it).
fn close_by_a_refused_process_behind_a_registered_holder(test: &str, holder: Holder) {
    child_role(|region| {
        let ch = region.open_channel("held").unwrap();
        let signal = region.open_channel("signal").unwrap();
        ch.close();
        assert!(
            !ch.is_closed(),
            "final without the barrier or a fencing holder"
        );
        assert_eq!(ch.send(b"x"), Err(SendError::Disconnected));
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(6));
        assert_eq!(out, b"before");
        assert_eq!(ch.try_recv(&mut out), Err(TryRecvError::Empty));
        // Tells the holder that the close has begun (the send's publication orders the
        // store of `closed` before the holder's receive of it).
        signal.send(b"closed").unwrap();
        // Woken by the holder, which makes the close final (or finding it final).
        assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
        assert!(ch.is_closed());
    });
    watchdog(LIMIT);
    // A directory of its own per test (`cargo test` runs the three in one process).
    let (_dir, path, region) = region_file(test);
    let ch = region.channel("held", options()).unwrap();
    let signal = region.channel("signal", options()).unwrap();
    ch.send(b"before").unwrap();
    let (mut side, slot) = match holder {
        Holder::SlotGivenBack => (None, Some(ch.reserve(8).unwrap())),
        _ => (Some(ch.send_side().unwrap()), None),
    };
    let child = spawn_filtered(test, &path);
    let mut out = Vec::new();
    if signal.recv_timeout(&mut out, LIMIT / 2) != Ok(6) {
        // It failed before its signal: its own message says why.
        reap_filtered(child, "the refused closer");
        panic!("no signal from the refused closer");
    }
    assert!(!ch.is_closed(), "the refused process made its close final");
    match holder {
        Holder::SideSendsAgain => {
            let refused = side.as_mut().unwrap().send(b"late");
            assert_eq!(refused, Err(SendError::Disconnected));
            assert!(ch.is_closed(), "not final after the holder's refused send");
            drop(side);
        }
        Holder::SideLetGo => drop(side),
        Holder::SlotGivenBack => slot.unwrap().abort(),
    }
    assert!(ch.is_closed(), "not final once the holder is done");
    reap_filtered(child, "the refused closer");
}

/// The filter itself: a registered process's channel works beside a refused one, and
/// the refused one does not need the barrier to make or open a channel.
#[test]
fn a_refused_process_makes_and_uses_a_channel_of_its_own() {
    child_role(|region| {
        let ch = region.channel("own", options()).unwrap();
        ch.send(b"mine").unwrap();
        let mut out = Vec::new();
        assert_eq!(ch.recv(&mut out), Ok(4));
        assert_eq!(out, b"mine");
        ch.send(b"for the parent").unwrap();
        ch.close();
        assert!(ch.is_closed());
    });
    watchdog(LIMIT);
    let (_dir, path, region) = region_file("no-barrier-own");
    let child = spawn_filtered(
        "a_refused_process_makes_and_uses_a_channel_of_its_own",
        &path,
    );
    reap_filtered(child, "the refused process's own channel");
    let ch: &Channel = region.open_channel("own").unwrap();
    let mut out = Vec::new();
    assert_eq!(ch.recv(&mut out), Ok(14));
    assert_eq!(out, b"for the parent");
    assert_eq!(ch.recv(&mut out), Err(RecvError::Disconnected));
}
