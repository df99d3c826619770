//! `SeqLockArray` crash windows with real forked processes that involve more than one
//! writer of a stripe: writers SIGKILLed mid-write one after another, and what the next
//! writers may and may not declare consistent. Run under nextest (one process per test).
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::{SharedMem, fork_children, wait_all, watchdog};
use shmstate::{SeqLockArray, SeqLockError};

/// Large elements: a write of one is 512 word stores, so a kill lands among them.
const N: usize = 512;
type Big = [u64; N];

/// Forks a child that runs `doom` (a test hook that stops a write half-way, holding the
/// stripe lock) and then kills itself with SIGKILL; reaps it.
fn die_mid_write(doom: impl Fn()) {
    let doomed = fork_children(1, |_| {
        doom();
        // SAFETY: the child kills itself, exactly where the hook stopped.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    });
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(doomed[0], std::ptr::null_mut(), 0) };
}

/// Element 0 torn by a dead writer; a second writer of element 1 of the same stripe
/// dies half-way through it; the next writer of element 0 repairs element 0. Element 1
/// is half old, half new: it must not be readable as valid.
#[test]
fn array_a_second_dead_writer_in_a_torn_stripe_keeps_it_torn_after_the_first_is_repaired() {
    watchdog(Duration::from_secs(60));
    let arr = SharedMem::<SeqLockArray<Big>>::new(4);
    let a = arr.get();
    a.set_all(&[[1; N]; 4]);
    die_mid_write(|| a.begin_write_for_test(0, [2; N]));
    die_mid_write(|| a.begin_write_part_for_test(1, [3; N], N / 2 * 8));
    let repairer = fork_children(1, |_| a.set(0, [7; N]));
    wait_all(&repairer, Duration::from_secs(20));
    let half: Big = core::array::from_fn(|w| if w < N / 2 { 3 } else { 1 });
    assert_eq!(a.try_get(1), Err(SeqLockError::WriterDied));
    assert_eq!(
        a.get_timeout(1, Duration::from_millis(50)),
        Err(SeqLockError::WriterDied)
    );
    let mut out = vec![[0; N]; 4];
    assert_eq!(a.try_snapshot(&mut out), Err(SeqLockError::WriterDied));
    // A writer of element 1 is told its value is torn.
    let torn = a.lock(1).expect_err("element 1 may be torn").into_inner();
    assert_eq!(*torn, half);
    drop(torn);
    // A batch write repairs the stripe.
    a.set_all(&[[5; N]; 4]);
    assert_eq!(a.try_get(1), Ok([5; N]));
}

/// The same sequence with a second writer that completes its write of element 1: then
/// the repair of element 0 makes the whole stripe consistent again.
#[test]
fn array_a_completed_write_in_a_torn_stripe_lets_the_repair_of_the_torn_element_end_it() {
    watchdog(Duration::from_secs(60));
    let arr = SharedMem::<SeqLockArray<Big>>::new(4);
    let a = arr.get();
    a.set_all(&[[1; N]; 4]);
    die_mid_write(|| a.begin_write_for_test(0, [2; N]));
    let writer = fork_children(1, |_| a.set(1, [3; N]));
    wait_all(&writer, Duration::from_secs(20));
    assert_eq!(a.try_get(1), Err(SeqLockError::WriterDied));
    let repairer = fork_children(1, |_| a.set(0, [7; N]));
    wait_all(&repairer, Duration::from_secs(20));
    assert_eq!(a.try_get(0), Ok([7; N]));
    assert_eq!(a.try_get(1), Ok([3; N]));
    assert_eq!(a.to_vec(), [[7; N], [3; N], [1; N], [1; N]]);
}
