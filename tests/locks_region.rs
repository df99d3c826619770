//! The locks placed in a `Region` by name and used from forked processes that look them up
//! by name: `Mutex`, `RwLock`, `ReentrantMutex` and `Condvar` together.

mod common;

use std::time::Duration;

use common::{fork_children, wait_all, watchdog};
use shmstate::sync::Ordering::Relaxed;
use shmstate::{Condvar, Counter, Mutex, ReentrantMutex, Region, RwLock, Value};

const CHILDREN: usize = 3;
const ROUNDS: u64 = 20_000;

#[test]
fn locks_placed_by_name_work_across_processes() {
    watchdog(Duration::from_secs(120));
    let region = Region::anonymous(1 << 16).unwrap();
    // [increments, children done]
    region
        .get_or_init::<Mutex<[u64; 2]>>("m", |m| *m.lock().unwrap() = [0, 0])
        .unwrap();
    region.get_or_default::<RwLock<[u64; 2]>>("rw").unwrap();
    region
        .get_or_default::<ReentrantMutex<Value<u64>>>("r")
        .unwrap();
    region.get_or_default::<Condvar>("done").unwrap();

    let pids = fork_children(CHILDREN, |_| {
        let m = region.get::<Mutex<[u64; 2]>>("m").unwrap();
        let rw = region.get::<RwLock<[u64; 2]>>("rw").unwrap();
        let r = region.get::<ReentrantMutex<Value<u64>>>("r").unwrap();
        let done = region.get::<Condvar>("done").unwrap();
        for _ in 0..ROUNDS {
            m.lock().unwrap()[0] += 1;
            let mut w = rw.write().unwrap();
            w[0] += 1;
            w[1] += 1;
            drop(w);
            let g = rw.read().unwrap();
            assert_eq!(g[0], g[1]);
            drop(g);
            let outer = r.lock().unwrap();
            // A load and a store: only the lock keeps the other children out in between.
            let inner = r.lock().unwrap();
            inner.store(outer.load(Relaxed) + 1, Relaxed);
        }
        m.lock().unwrap()[1] += 1;
        done.notify_all();
    });

    // The parent looks them up by name too, and waits on the condvar for the children.
    let m = region.get::<Mutex<[u64; 2]>>("m").unwrap();
    let done = region.get::<Condvar>("done").unwrap();
    let (g, timed_out) = done
        .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(100), |s| {
            s[1] < CHILDREN as u64
        })
        .unwrap();
    assert!(!timed_out.timed_out(), "the children never all reported");
    let total = CHILDREN as u64 * ROUNDS;
    assert_eq!(*g, [total, CHILDREN as u64]);
    drop(g);
    wait_all(&pids, Duration::from_secs(100));
    assert_eq!(
        *region
            .get::<RwLock<[u64; 2]>>("rw")
            .unwrap()
            .read()
            .unwrap(),
        [total; 2]
    );
    assert_eq!(
        region
            .get::<ReentrantMutex<Value<u64>>>("r")
            .unwrap()
            .lock()
            .unwrap()
            .load(Relaxed),
        total
    );

    // A name holds one type: another lock kind, or the same lock over another `T`, is an
    // error, never a reinterpretation of the bytes.
    assert!(region.get::<RwLock<[u64; 2]>>("m").is_err());
    assert!(region.get::<Mutex<[u32; 4]>>("m").is_err());
    assert!(region.get::<Mutex<u64>>("r").is_err());
    assert!(region.get::<ReentrantMutex<Value<u32>>>("r").is_err());
    // The same size and alignment, another type inside: still refused.
    assert!(region.get::<ReentrantMutex<Value<i64>>>("r").is_err());
    assert!(region.get::<ReentrantMutex<Counter>>("r").is_err());
    assert!(region.get::<Mutex<[u64; 2]>>("done").is_err());
}
