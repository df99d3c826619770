//! The loom emulation of the futex: a table of loom condition variables keyed by the
//! word's address, behind one loom mutex. It really blocks, so a wake that never comes is a
//! loom deadlock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use loom::sync::{Arc, Condvar, Mutex};

use crate::sync::{AtomicU32, Ordering};

struct Table {
    lock: Mutex<HashMap<usize, Arc<Condvar>>>,
}

loom::lazy_static! {
    static ref TABLE: Table = Table { lock: Mutex::new(HashMap::new()) };
}

/// Blocks while `*word == expected`. A timed wait never blocks and reports a timeout.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    let key = word as *const AtomicU32 as usize;
    let mut table = TABLE.lock.lock().unwrap();
    // SeqCst: the check happens under the table lock, which every waker takes after its
    // store, so a store before the wake is either seen here or followed by a notify that
    // finds us waiting (the same guarantee the kernel gives).
    if word.load(Ordering::SeqCst) != expected {
        return true;
    }
    if timeout.is_some() {
        return false;
    }
    let cv = table
        .entry(key)
        .or_insert_with(|| Arc::new(Condvar::new()))
        .clone();
    drop(cv.wait(table).unwrap());
    true
}

/// [`wait`] with a deadline; any deadline times out at once under loom.
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    wait(word, expected, deadline.map(|_| Duration::ZERO))
}

/// Wakes one waiter on `word`.
pub fn wake_one(word: &AtomicU32) {
    let key = word as *const AtomicU32 as usize;
    let table = TABLE.lock.lock().unwrap();
    if let Some(cv) = table.get(&key) {
        cv.notify_one();
    }
}

/// Wakes every waiter on `word`.
pub fn wake_all(word: &AtomicU32) {
    let key = word as *const AtomicU32 as usize;
    let table = TABLE.lock.lock().unwrap();
    if let Some(cv) = table.get(&key) {
        cv.notify_all();
    }
}
