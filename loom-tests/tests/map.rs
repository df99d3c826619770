//! Model checks of the shared hash map's protocol: a reader of one slot never accepts a
//! torn value while a writer rewrites it; a reader racing a removal that moves its key
//! back (backward shift) always finds the key; a reader racing an insert sees the key
//! absent or whole.
//!
//! The writer and the reader are both spawned threads (the model's main thread only
//! joins): with the reader on the main thread, loom 0.7 explored a single interleaving
//! (the main thread's join orders everything it did before the writer's accesses).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmstate::{ByteMap, MapOptions};

const SEED: [u8; 16] = [7; 16];

/// Two-word values (so that a torn copy would show), one-word keys.
fn options() -> MapOptions {
    MapOptions::new(2).key_max(8).value_max(16)
}

fn get(m: &ByteMap, k: &[u8]) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    m.get(k, &mut v).unwrap().then_some(v)
}

/// Runs `write` and `read` on the map on two threads.
fn race(
    m: &Arc<Box<ByteMap>>,
    write: impl FnOnce(&ByteMap) + Send + 'static,
    read: impl FnOnce(&ByteMap) + Send + 'static,
) {
    let (m1, m2) = (m.clone(), m.clone());
    let w = thread::spawn(move || write(&m1));
    let r = thread::spawn(move || read(&m2));
    w.join().unwrap();
    r.join().unwrap();
}

#[test]
fn map_slot_read_is_never_torn_by_a_value_write() {
    loom::model(|| {
        let m: Arc<Box<ByteMap>> = Arc::new(ByteMap::with_seed(options(), SEED).unwrap());
        m.insert(b"k", &[1; 16]).unwrap();
        race(
            &m,
            |m| {
                m.insert(b"k", &[2; 16]).unwrap();
            },
            |m| {
                let v = get(m, b"k").expect("the key is present throughout");
                assert!(v == [1; 16] || v == [2; 16], "torn read {v:?}");
            },
        );
        assert_eq!(get(&m, b"k"), Some(vec![2; 16]));
    });
}

/// Two keys with the same home slot: `b` sits one slot after it. Removing `a` moves `b`
/// back into the home slot while a reader looks `b` up.
#[test]
fn map_reader_finds_a_key_that_a_removal_moves() {
    let (a, b) = same_home();
    loom::model(move || {
        let m: Arc<Box<ByteMap>> = Arc::new(ByteMap::with_seed(options(), SEED).unwrap());
        m.insert(&a, &[1; 16]).unwrap();
        m.insert(&b, &[2; 16]).unwrap();
        let (a2, b2) = (a.clone(), b.clone());
        race(
            &m,
            move |m| assert_eq!(m.remove(&a2).unwrap(), Some(vec![1; 16])),
            move |m| assert_eq!(get(m, &b2), Some(vec![2; 16]), "the moved key went missing"),
        );
        assert_eq!(get(&m, &a), None);
        assert_eq!(get(&m, &b), Some(vec![2; 16]));
        assert_eq!(m.len(), 1);
    });
}

#[test]
fn map_reader_sees_an_insert_whole_or_not_at_all() {
    loom::model(|| {
        let m: Arc<Box<ByteMap>> = Arc::new(ByteMap::with_seed(options(), SEED).unwrap());
        race(
            &m,
            |m| assert_eq!(m.insert(b"k", &[3; 16]).unwrap(), None),
            |m| {
                let v = get(m, b"k");
                assert!(v.is_none() || v == Some(vec![3; 16]), "torn insert {v:?}");
            },
        );
        assert_eq!(m.len(), 1);
    });
}

/// Two one-byte keys with the same home slot (found outside the model: the hash is a pure
/// function of the seed).
fn same_home() -> (Vec<u8>, Vec<u8>) {
    let place = |k: &[u8]| ByteMap::place_of(options(), SEED, k).unwrap();
    for x in 0..=255u8 {
        for y in x + 1..=255u8 {
            if place(&[x]) == place(&[y]) {
                return (vec![x], vec![y]);
            }
        }
    }
    unreachable!("256 keys over 18 slots share a home")
}
