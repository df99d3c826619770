//! The loom emulation of the futex: a table of queues keyed by the word's address, behind
//! one loom mutex, each queue a loom condition variable plus two ticket counters. It
//! really blocks, so a wake that never comes is a loom deadlock; and a wake reports how
//! many sleepers it dequeued, as the kernel does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use loom::sync::{Arc, Condvar, Mutex};

use crate::sync::{AtomicU32, Ordering};

/// The sleepers of one word, first come first served: sleeper `t` (its ticket) may
/// return once `woken > t`.
#[derive(Default)]
struct Queue {
    cv: Arc<Condvar>,
    /// Tickets handed out: every sleeper that ever queued on this word.
    next: u64,
    /// Tickets woken: sleepers `0..woken` may return.
    woken: u64,
}

struct Table {
    lock: Mutex<HashMap<usize, Queue>>,
}

loom::lazy_static! {
    static ref TABLE: Table = Table { lock: Mutex::new(HashMap::new()) };
}

/// Blocks while `*word == expected`. A timed wait never blocks and reports a timeout.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let key = word as *const AtomicU32 as usize;
    let mut table = TABLE.lock.lock().unwrap();
    // SeqCst: the check happens under the table lock, which every waker takes after its
    // store, so a store before the wake is either seen here or followed by a wake that
    // finds us queued (the same guarantee the kernel gives).
    if word.load(Ordering::SeqCst) != expected {
        return true;
    }
    if timeout.is_some() {
        return false;
    }
    let q = table.entry(key).or_default();
    let ticket = q.next;
    q.next += 1;
    let cv = q.cv.clone();
    // Loom's condvar wakes no one spuriously, but the loop makes this independent of it:
    // we return only once a wake has dequeued our ticket.
    while table.get(&key).is_none_or(|q| q.woken <= ticket) {
        table = cv.wait(table).unwrap();
    }
    true
}

/// [`wait`] with a deadline; any deadline times out at once under loom.
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    wait(word, expected, deadline.map(|_| Duration::ZERO))
}

/// Wakes up to `n` sleepers on `word`; returns how many.
fn wake(word: &AtomicU32, n: u64) -> usize {
    let key = word as *const AtomicU32 as usize;
    let mut table = TABLE.lock.lock().unwrap();
    let Some(q) = table.get_mut(&key) else {
        return 0;
    };
    let k = (q.next - q.woken).min(n);
    if k != 0 {
        q.woken += k;
        // All: each sleeper checks its own ticket; the others wait again.
        q.cv.notify_all();
    }
    k as usize
}

/// Wakes one waiter on `word`; returns how many (0 or 1).
pub fn wake_one(word: &AtomicU32) -> usize {
    wake(word, 1)
}

/// Wakes every waiter on `word`; returns how many.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, u64::MAX)
}
