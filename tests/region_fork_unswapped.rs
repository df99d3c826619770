//! A fork child that ends before the crate's child handler ran (killed, or a failed fork)
//! leaves the word its parent's prepare handler claimed for it naming the parent: the
//! parent's own last drop finds it live and leaves a `remove_when_unused` file, which the
//! next opener removes once the parent is gone.
//!
//! To end a child exactly there, this binary registers a child handler of its own from an
//! ELF constructor that runs before the crate's (child handlers run in registration order;
//! the test checks that it did), which `_exit`s a child forked by a thread that armed it.

mod common;

use std::cell::Cell;
use std::time::Duration;

use common::{TempDir, fork_children, wait_all, watchdog};
use shmstate::{Region, RegionOptions};

thread_local! {
    /// Set by a thread whose next fork's child must end in [`exit_in_child_handler`].
    static EXIT_IN_CHILD_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Child handler: `_exit(0)` in a child forked by an armed thread (before the crate's
/// child handler, which is registered after this one).
extern "C" fn exit_in_child_handler() {
    if EXIT_IN_CHILD_HANDLER.try_with(Cell::get).unwrap_or(false) {
        // SAFETY: `_exit` ends the child at once, without running any destructor.
        unsafe { libc::_exit(0) };
    }
}

extern "C" fn register_exit_in_child_handler() {
    // SAFETY: a valid `extern "C" fn()` that reads a thread-local and may `_exit`.
    unsafe { libc::pthread_atfork(None, None, Some(exit_in_child_handler)) };
}

// SAFETY: called once before `main` with `argc, argv, envp`, which an `extern "C" fn()`
// ignores; it calls only libc. This binary's `.init_array` entries come before those of
// the libraries it links, so this registration comes before the crate's.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER: extern "C" fn() = register_exit_in_child_handler;

#[test]
fn a_fork_child_ended_before_its_handler_makes_the_parents_last_drop_leave_the_file() {
    watchdog(Duration::from_secs(60));
    let dir = TempDir::new("fork-unswapped");
    let path = dir.0.join("r");
    let path_ref = path.as_path();
    // The parent of the test's fork is itself a forked process, so that it can be gone
    // afterwards.
    let parent = fork_children(1, move |_| {
        let region = RegionOptions::new()
            .remove_when_unused(true)
            .create(path_ref, 1 << 16)
            .unwrap();
        EXIT_IN_CHILD_HANDLER.with(|f| f.set(true));
        // SAFETY: the child ends in `exit_in_child_handler`, inside `fork`; should it
        // return from `fork`, it leaves by `_exit(1)`.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: as above.
            unsafe { libc::_exit(1) };
        }
        EXIT_IN_CHILD_HANDLER.with(|f| f.set(false));
        assert!(child > 0, "fork failed");
        let mut status = 0;
        // SAFETY: a blocking `waitpid` on our own child, which has exited.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child did not end in this binary's child handler: {status:#x}"
        );
        // The crate's child handler never ran: the word claimed for the child still names
        // this process (with the child's swap, it would name the dead child and be pruned).
        let me = std::process::id();
        let listed: Vec<_> = region.attached();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].pid, me, "{listed:?}");
        assert_eq!(
            listed[0].handles, 2,
            "the word claimed for the child names the parent: {listed:?}"
        );
        drop(region);
        assert!(
            path_ref.exists(),
            "the parent's last drop found the child's word naming itself, alive, and kept the file"
        );
    });
    wait_all(&parent, Duration::from_secs(30));
    assert!(path.exists(), "the file outlives the parent");
    // The next opener finds only dead words (the parent's two), uses the region, and
    // removes it when it drops its handle.
    let region = Region::open(&path).unwrap();
    assert!(region.remove_when_unused());
    drop(region);
    assert!(
        !path.exists(),
        "the next opener's last drop removed the file"
    );
}
