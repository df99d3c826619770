//! A child forked by the allocator in the middle of a receive: `recv` copies into a `Vec`,
//! which allocates, and a program's global allocator (or a signal handler) may fork
//! there. The child returns into the receive after its parent went on; its copy of the
//! claim must release nothing, or it would move `free` back behind the parent's later
//! releases (a needless `lost()`, then a channel that reads `Corrupt` for every process).
//! One test in its own binary: the allocator below forks whichever thread allocates while
//! it is armed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use shmstate::{Channel, ChannelOptions, Region};

/// Fork at the next allocation.
static ARMED: AtomicBool = AtomicBool::new(false);
/// The read end of the pipe the child waits on.
static WAIT_FD: AtomicI32 = AtomicI32::new(-1);
/// The child forked, in the parent.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// The system allocator, forking once when armed: the child waits for a byte on
/// `WAIT_FD` (or its EOF), then carries on with the allocation and returns into its caller.
struct ForkingAllocator;

// SAFETY: every allocation is the system allocator's; the fork changes no allocator state.
unsafe impl GlobalAlloc for ForkingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.swap(false, Ordering::Relaxed) {
            // SAFETY: the child only reads a pipe before it returns to the caller.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let mut b = 0u8;
                // SAFETY: reading one byte into `b` from the pipe.
                unsafe { libc::read(WAIT_FD.load(Ordering::Relaxed), (&raw mut b).cast(), 1) };
            } else {
                CHILD.store(pid, Ordering::Relaxed);
            }
        }
        // SAFETY: as the caller's contract for `alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout` (above).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ForkingAllocator = ForkingAllocator;

/// Arms the allocator, runs `recv` (which must allocate: an empty `Vec` to copy into), and
/// in the child exits at once after it. In the parent: sends 100 messages and receives
/// each with `take` (the ring wraps), then lets the child finish its receive and reaps it.
fn receive_while_a_child_forks(
    ch: &Channel,
    recv: impl FnOnce(&mut Vec<u8>),
    mut take: impl FnMut(&mut Vec<u8>) -> usize,
) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    WAIT_FD.store(fds[0], Ordering::Relaxed);
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut out = Vec::new();
    ARMED.store(true, Ordering::Relaxed);
    recv(&mut out);
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != me {
        // The child, back from the receive (its claim's release ran, or did nothing).
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    assert!(
        !ARMED.load(Ordering::Relaxed),
        "the receive did not allocate"
    );
    let mut out = Vec::new();
    for i in 0..100u8 {
        ch.send(&[i; 8]).unwrap();
        assert_eq!(take(&mut out), 8);
        assert_eq!(out, [i; 8]);
    }
    // SAFETY: writing one byte from a local to the pipe.
    assert_eq!(unsafe { libc::write(fds[1], [1u8].as_ptr().cast(), 1) }, 1);
    let child = CHILD.load(Ordering::Relaxed);
    let mut status = 0;
    // SAFETY: reaping our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    // SAFETY: closing the pipe's two ends, ours.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

/// After the child's receive: nothing counted lost, and the channel goes on for many
/// more messages (a `free` moved back would make the cursors invalid: `Corrupt`).
fn still_works(ch: &Channel) {
    assert_eq!(ch.lost(), 0);
    let mut out = Vec::new();
    for i in 0..200u32 {
        ch.try_send(&i.to_le_bytes()).unwrap();
        assert_eq!(ch.try_recv(&mut out), Ok(4));
        assert_eq!(out, i.to_le_bytes());
    }
    assert_eq!(ch.bytes_used(), 0);
}

#[test]
fn a_child_forked_by_the_allocator_inside_recv_releases_nothing() {
    common::watchdog(Duration::from_secs(60));
    let region = Region::anonymous(1 << 20).unwrap();
    let ch = region.channel("plain", ChannelOptions::new(256)).unwrap();
    ch.try_send(b"forked in").unwrap();
    receive_while_a_child_forks(
        ch,
        |out| assert_eq!(ch.recv(out), Ok(9)),
        |out| ch.recv(out).unwrap(),
    );
    still_works(ch);
    // The same under a held receive side.
    let ch = region.channel("side", ChannelOptions::new(256)).unwrap();
    ch.try_send(b"forked in").unwrap();
    let side = RefCell::new(ch.recv_side().unwrap());
    receive_while_a_child_forks(
        ch,
        |out| assert_eq!(side.borrow_mut().recv(out), Ok(9)),
        |out| side.borrow_mut().recv(out).unwrap(),
    );
    drop(side);
    still_works(ch);
}
