//! Single-process tests of the shared hash map on the heap (and in an anonymous region for
//! type identity): every operation, a full map, TTL expiry, eviction, a long random run
//! against `std::collections::HashMap` that also checks probe lengths stay bounded, hostile
//! bytes, the typed facade and `FixedStr`.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shmstate::sync::Ordering;
use shmstate::{
    ByteMap, Evicted, FixedStr, GetError, IncrError, InsertError, Map, MapError, MapOpenError,
    MapOptions, Region, Update, UpdateError,
};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SEED: [u8; 16] = *b"0123456789abcdef";

fn map(capacity: usize) -> Box<ByteMap> {
    ByteMap::with_seed(MapOptions::new(capacity).key_max(16).value_max(24), SEED).unwrap()
}

fn get(m: &ByteMap, k: &[u8]) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    m.get(k, &mut v).unwrap().then_some(v)
}

#[test]
fn options_are_validated() {
    for o in [
        MapOptions::new(0),
        MapOptions::new(1).key_max(0),
        MapOptions::new(1).key_max(1025),
        MapOptions::new(1).value_max(65537),
    ] {
        assert!(
            matches!(ByteMap::new(o), Err(MapError::InvalidOptions { .. })),
            "{o:?}"
        );
    }
    let m = ByteMap::new(MapOptions::new(5).key_max(1024).value_max(65536)).unwrap();
    assert_eq!(
        m.options(),
        MapOptions::new(5).key_max(1024).value_max(65536)
    );
    assert_eq!(m.capacity(), 5);
}

#[test]
fn every_operation_does_what_it_says() {
    let m = map(100);
    assert!(m.is_empty());
    assert_eq!(m.insert(b"a", b"1").unwrap(), None);
    assert_eq!(m.insert(b"a", b"22").unwrap(), Some(b"1".to_vec()));
    assert_eq!(get(&m, b"a"), Some(b"22".to_vec()));
    assert!(m.contains(b"a").unwrap());
    assert!(!m.contains(b"b").unwrap());
    assert_eq!(
        m.get_with(b"a", |v| v.to_vec()).unwrap(),
        Some(b"22".to_vec())
    );
    assert_eq!(m.get_with(b"b", |v| v.to_vec()).unwrap(), None);
    // Nested get_with on one thread.
    assert_eq!(
        m.get_with(b"a", |v| (v.len(), m.get_with(b"a", |w| w.len()).unwrap()))
            .unwrap(),
        Some((2, Some(2)))
    );
    assert!(!m.add(b"a", b"x").unwrap());
    assert!(m.add(b"b", b"x").unwrap());
    assert_eq!(m.replace(b"c", b"y").unwrap(), None);
    assert!(!m.contains(b"c").unwrap());
    assert_eq!(m.replace(b"b", b"y").unwrap(), Some(b"x".to_vec()));
    assert_eq!(m.compare_exchange(b"b", b"y", b"z").unwrap(), Ok(()));
    assert_eq!(
        m.compare_exchange(b"b", b"y", b"w").unwrap(),
        Err(Some(b"z".to_vec()))
    );
    assert_eq!(m.compare_exchange(b"q", b"y", b"w").unwrap(), Err(None));
    assert_eq!(m.len(), 2);
    assert_eq!(m.remove(b"b").unwrap(), Some(b"z".to_vec()));
    assert_eq!(m.remove(b"b").unwrap(), None);
    assert_eq!(m.len(), 1);
    // Empty keys and values are keys and values.
    m.insert(b"", b"").unwrap();
    assert_eq!(get(&m, b""), Some(Vec::new()));
    // update: set, keep, remove.
    assert!(
        m.update(b"u", |old| Update::Set(b"1", old.is_none()))
            .unwrap()
    );
    assert_eq!(
        m.update(b"u", |old| Update::<_, Vec<u8>>::Keep(
            old.map(|v| v.to_vec())
        ))
        .unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(
        m.update(b"u", |_| Update::<_, Vec<u8>>::Remove(7)).unwrap(),
        7
    );
    assert!(!m.contains(b"u").unwrap());
    assert_eq!(
        m.update(b"u", |_| Update::Set(vec![0; 25], ())),
        Err(UpdateError::ValueTooLong { len: 25, max: 24 })
    );
    assert!(!m.contains(b"u").unwrap());
    // incr.
    assert_eq!(m.incr(b"n", 5, 10).unwrap(), 15);
    assert_eq!(
        m.incr(b"n", i64::MAX, 0).unwrap(),
        15i64.wrapping_add(i64::MAX)
    );
    assert_eq!(m.incr(b"a", 1, 0), Err(IncrError::NotAnInteger { len: 2 }));
    // Lengths.
    assert_eq!(
        m.insert(&[0; 17], b"").unwrap_err(),
        InsertError::KeyTooLong { len: 17, max: 16 }
    );
    assert_eq!(
        m.insert(b"k", &[0; 25]).unwrap_err(),
        InsertError::ValueTooLong { len: 25, max: 24 }
    );
    assert_eq!(
        m.get(&[0; 17], &mut Vec::new()),
        Err(MapError::KeyTooLong { len: 17, max: 16 })
    );
    assert_eq!(
        m.replace(b"a", &[0; 25]),
        Err(MapError::ValueTooLong { len: 25, max: 24 })
    );
    // Longest key and value round-trip.
    m.insert(&[7; 16], &[9; 24]).unwrap();
    assert_eq!(get(&m, &[7; 16]), Some(vec![9; 24]));
    // snapshot / for_each / clear.
    let mut snap = m.snapshot();
    snap.sort();
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"".to_vec(), b"".to_vec()),
        (b"a".to_vec(), b"22".to_vec()),
        (
            b"n".to_vec(),
            15i64.wrapping_add(i64::MAX).to_le_bytes().to_vec(),
        ),
        (vec![7; 16], vec![9; 24]),
    ];
    want.sort();
    assert_eq!(snap, want);
    let mut n = 0;
    m.for_each(|_, _| n += 1);
    assert_eq!(n, 4);
    assert_eq!(m.len(), 4);
    m.clear();
    assert!(m.is_empty());
    assert!(m.snapshot().is_empty());
    assert!(!m.contains(b"a").unwrap());
}

/// `set` writes what `insert` writes, says whether the key was new, and hands key and
/// value back from a full map; the typed map's does the same with its types.
#[test]
fn set_is_insert_without_the_old_value() {
    let m = map(2);
    assert_eq!(m.set(b"a", b"1"), Ok(true));
    assert_eq!(m.set(b"a", b"22"), Ok(false));
    assert_eq!(get(&m, b"a"), Some(b"22".to_vec()));
    assert_eq!(m.set(b"b", b""), Ok(true));
    assert_eq!(m.len(), 2);
    assert_eq!(
        m.set(b"c", b"3"),
        Err(InsertError::Full {
            key: b"c".to_vec(),
            value: b"3".to_vec()
        })
    );
    // An expired entry is replaced as new.
    m.insert_ttl(b"b", b"x", Duration::ZERO).unwrap();
    assert_eq!(m.set(b"b", b"y"), Ok(true));
    assert!(matches!(
        m.set(&[0; 200], b"v"),
        Err(InsertError::KeyTooLong { .. })
    ));
    assert!(matches!(
        m.set(b"a", &[0; 5000]),
        Err(InsertError::ValueTooLong { .. })
    ));
    assert_eq!(
        get(&m, b"a"),
        Some(b"22".to_vec()),
        "a refused set changes nothing"
    );

    let t = Map::<u64, [f64; 2]>::new(1).unwrap();
    assert_eq!(t.set(1, [0.5, 1.5]), Ok(true));
    assert_eq!(t.set(1, [2.5, 3.5]), Ok(false));
    assert_eq!(t.get(&1), Some([2.5, 3.5]));
    assert_eq!(
        t.set(2, [4.0; 2]),
        Err(InsertError::Full {
            key: 2,
            value: [4.0; 2]
        })
    );
}

#[test]
fn a_full_map_hands_key_and_value_back() {
    for cap in [1, 7, 128] {
        let m = map(cap);
        for i in 0..cap as u32 {
            m.insert(&i.to_le_bytes(), b"v").unwrap();
        }
        assert_eq!(m.len(), cap);
        assert_eq!(
            m.insert(b"new", b"value"),
            Err(InsertError::Full {
                key: b"new".to_vec(),
                value: b"value".to_vec()
            })
        );
        assert!(matches!(
            m.add(b"new", b"value"),
            Err(InsertError::Full { .. })
        ));
        assert_eq!(m.incr(b"new", 1, 0), Err(IncrError::Full));
        assert_eq!(
            m.update(b"new", |_| Update::Set(b"x", ())),
            Err(UpdateError::Full)
        );
        // Present keys can still be written, and a removal makes room.
        assert_eq!(
            m.insert(&0u32.to_le_bytes(), b"w").unwrap(),
            Some(b"v".to_vec())
        );
        m.remove(&0u32.to_le_bytes()).unwrap();
        m.insert(b"new", b"value").unwrap();
    }
}

#[cfg_attr(miri, ignore = "20,000 inserts")]
#[test]
fn a_large_map_fills_to_its_capacity() {
    // Many stripes: the capacity rule leaves room for every stripe's share.
    let cap = 20_000;
    let m = ByteMap::with_seed(MapOptions::new(cap).key_max(8).value_max(8), SEED).unwrap();
    for i in 0..cap as u64 {
        m.insert(&i.to_le_bytes(), &i.to_le_bytes()).unwrap();
    }
    assert_eq!(m.len(), cap);
    assert!(matches!(
        m.insert(b"one more", b""),
        Err(InsertError::Full { .. })
    ));
    for i in (0..cap as u64).step_by(97) {
        assert_eq!(get(&m, &i.to_le_bytes()), Some(i.to_le_bytes().to_vec()));
    }
}

#[cfg_attr(miri, ignore = "sleeps for the TTLs")]
#[test]
fn expired_entries_read_as_absent_and_are_reclaimed() {
    let m = map(4);
    m.insert_ttl(b"short", b"1", Duration::from_millis(30))
        .unwrap();
    m.insert_ttl(b"long", b"2", Duration::from_secs(3600))
        .unwrap();
    m.insert(b"forever", b"3").unwrap();
    let set = Instant::now();
    // Checked before the deadline, if this thread got here in time.
    if set.elapsed() < Duration::from_millis(20) {
        assert!(m.contains(b"short").unwrap());
    }
    // The behaviour under test is the passing of time.
    std::thread::sleep(Duration::from_millis(40));
    assert!(!m.contains(b"short").unwrap());
    assert_eq!(get(&m, b"short"), None);
    assert!(m.contains(b"long").unwrap());
    assert_eq!(m.snapshot().len(), 2);
    assert_eq!(m.len(), 3, "an expired entry takes room until reclaimed");
    m.insert(b"x", b"4").unwrap();
    assert_eq!(m.len(), 4);
    // Full by count: the next new key reclaims the expired entry to make room.
    m.insert(b"y", b"5").unwrap();
    assert_eq!(m.len(), 4);
    // Deadline zero: expires at once, never readable.
    m.remove(b"x").unwrap();
    m.insert_ttl(b"z", b"5", Duration::ZERO).unwrap();
    assert!(!m.contains(b"z").unwrap());
    assert_eq!(m.purge_expired(), 1);
    assert_eq!(m.len(), 3);
    let m = map(8);
    // Writes that keep the deadline, and insert that drops it.
    m.insert_ttl(b"t", b"1", Duration::from_millis(30)).unwrap();
    m.replace(b"t", b"2").unwrap();
    m.insert_ttl(b"u", b"1", Duration::from_millis(30)).unwrap();
    m.insert(b"u", b"2").unwrap();
    std::thread::sleep(Duration::from_millis(40));
    assert!(!m.contains(b"t").unwrap(), "replace keeps the deadline");
    assert!(m.contains(b"u").unwrap(), "insert clears the deadline");
    // add over an expired key inserts.
    assert!(m.add(b"t", b"3").unwrap());
    assert_eq!(get(&m, b"t"), Some(b"3".to_vec()));
}

#[test]
fn insert_evicting_evicts_the_least_recently_written() {
    let m = map(3);
    for k in [b"a", b"b", b"c"] {
        assert_eq!(m.insert_evicting(k, b"v").unwrap(), Evicted::Nothing);
    }
    // "a" is rewritten: "b" becomes the oldest.
    assert_eq!(
        m.insert_evicting(b"a", b"w").unwrap(),
        Evicted::Replaced(b"v".to_vec())
    );
    assert_eq!(
        m.insert_evicting(b"d", b"x").unwrap(),
        Evicted::Entry {
            key: b"b".to_vec(),
            value: b"v".to_vec()
        }
    );
    assert_eq!(m.len(), 3);
    assert!(!m.contains(b"b").unwrap());
    // An expired entry goes first.
    m.insert_ttl(b"a", b"w", Duration::ZERO).unwrap();
    assert_eq!(m.insert_evicting(b"e", b"y").unwrap(), Evicted::Nothing);
    assert!(!m.contains(b"a").unwrap());
    assert_eq!(m.len(), 3);
}

/// With the map full and the key's own stripe empty, `insert_evicting` evicts from another
/// stripe.
#[test]
fn insert_evicting_takes_a_victim_from_another_stripe_when_its_own_is_empty() {
    let o = MapOptions::new(300).key_max(8).value_max(8);
    let m = ByteMap::with_seed(o, SEED).unwrap();
    assert_eq!(m.stripe_geometry().0, 4);
    let stripe = |k: u64| ByteMap::place_of(o, SEED, &k.to_le_bytes()).unwrap().0;
    // 100 keys in each of stripes 0, 1 and 2: the map is full, stripe 3 empty.
    let mut n = [0; 4];
    for k in 0.. {
        let s = stripe(k);
        if s < 3 && n[s] < 100 {
            m.insert(&k.to_le_bytes(), b"v").unwrap();
            n[s] += 1;
        }
        if n[..3] == [100; 3] {
            break;
        }
    }
    let other = (0..).find(|&k| stripe(k) == 3).unwrap().to_le_bytes();
    assert!(matches!(
        m.insert(&other, b"w"),
        Err(InsertError::Full { .. })
    ));
    match m.insert_evicting(&other, b"w").unwrap() {
        Evicted::Entry { key, value } => {
            assert_ne!(stripe(u64::from_le_bytes(key.try_into().unwrap())), 3);
            assert_eq!(value, b"v");
        }
        e => panic!("nothing evicted: {e:?}"),
    }
    assert_eq!(m.len(), 300);
    assert_eq!(get(&m, &other), Some(b"w".to_vec()));
}

/// Probes stay short however long the churn runs: backward-shift deletion leaves no
/// tombstones. Checked against a `HashMap` at 90% of capacity.
#[cfg_attr(miri, ignore = "200,000 operations")]
#[test]
fn random_churn_matches_a_hashmap_and_probes_stay_bounded() {
    let cap = 2000;
    let m = ByteMap::with_seed(MapOptions::new(cap).key_max(8).value_max(16), SEED).unwrap();
    let mut reference: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let keys = (cap as u64 * 9) / 10 * 2;
    let ops = if cfg!(debug_assertions) {
        200_000
    } else {
        2_000_000
    };
    let (mut first_mean, mut worst_max) = (None, 0);
    for n in 0..ops {
        let k = rng.below(keys);
        let kb = k.to_le_bytes();
        match rng.below(10) {
            0..=3 => {
                if reference.len() < cap * 9 / 10 || reference.contains_key(&k) {
                    let v = [rng.next().to_le_bytes(), rng.next().to_le_bytes()].concat()
                        [..(k % 16) as usize]
                        .to_vec();
                    assert_eq!(m.insert(&kb, &v).unwrap(), reference.insert(k, v));
                }
            }
            4..=6 => assert_eq!(m.remove(&kb).unwrap(), reference.remove(&k)),
            _ => assert_eq!(get(&m, &kb).as_ref(), reference.get(&k)),
        }
        if n % 20_000 == 19_999 {
            assert_eq!(m.len(), reference.len());
            let (max, total, entries) = m.probe_stats();
            assert_eq!(entries, reference.len());
            let mean = total as f64 / entries.max(1) as f64;
            let first = *first_mean.get_or_insert(mean);
            worst_max = worst_max.max(max);
            // No decay: the mean displacement does not creep up with churn.
            assert!(
                mean < first * 2.0 + 1.0,
                "mean displacement {mean} (first {first})"
            );
        }
    }
    let (_, sps) = m.stripe_geometry();
    assert!(worst_max < sps, "a probe run spans the stripe: {worst_max}");
    let mut snap = m.snapshot();
    snap.sort();
    let mut want: Vec<_> = reference
        .into_iter()
        .map(|(k, v)| (k.to_le_bytes().to_vec(), v))
        .collect();
    want.sort();
    assert_eq!(snap, want);
}

/// Every word of the map overwritten with random bytes, then every operation: none
/// panics or hangs, each returns something.
#[cfg_attr(miri, ignore = "40 rounds of every operation")]
#[test]
fn hostile_bytes_never_panic_or_hang() {
    let mut rng = Rng(99);
    for round in 0..40 {
        let m = map(300);
        for i in 0..250u32 {
            m.insert(&i.to_le_bytes(), &[i as u8; 5]).unwrap();
        }
        m.insert_ttl(b"ttl", b"x", Duration::from_secs(60)).unwrap();
        let handle = m.handle().unwrap();
        let words = m.raw_words();
        // Some rounds spare the header (so the ops reach the slots), others do not.
        let from = if round % 4 == 0 { 0 } else { 16 };
        for _ in 0..(1 + rng.below(200)) {
            let i = from + rng.below((words.len() - from) as u64) as usize;
            words[i].store(rng.next(), Ordering::Relaxed);
        }
        if round % 3 == 0 {
            for (lock, seq, count) in m.raw_stripe_words() {
                match rng.below(4) {
                    0 => lock.store(rng.next() as u32, Ordering::Relaxed),
                    1 => seq.store(rng.next(), Ordering::Relaxed),
                    2 => count.store(rng.next(), Ordering::Relaxed),
                    _ => {}
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        // The map's operations, and a handle's (its layout validated before the garbage).
        macro_rules! every_keyed_operation {
            ($m:expr, $k:expr) => {{
                let (m, k) = ($m, $k);
                let _ = m.get(k, &mut Vec::new());
                let _ = m.get_with(k, |v| v.len());
                let _ = m.contains(k);
                let _ = m.insert(k, b"new");
                let _ = m.add(b"added", b"1");
                let _ = m.replace(k, b"r");
                let _ = m.compare_exchange(k, b"r", b"s");
                let _ = m.update(k, |v| Update::Set(v.unwrap_or_default().to_vec(), ()));
                let _ = m.incr(b"n", 1, 0);
                let _ = m.insert_evicting(k, b"e");
                let _ = m.remove(k);
            }};
        }
        for i in 0..260u32 {
            let k = i.to_le_bytes();
            every_keyed_operation!(&*m, &k);
            every_keyed_operation!(&handle, &k);
        }
        let _ = m.len();
        let _ = m.snapshot();
        let _ = m.purge_expired();
        m.clear();
        assert!(Instant::now() < deadline, "round {round} took too long");
        // A map whose header survived works again after the repairs (unless the map's
        // count was overwritten with a number above its capacity: then it is full).
        if m.options() == MapOptions::new(300).key_max(16).value_max(24) {
            match m.insert(b"after", b"ok") {
                Ok(_) => assert_eq!(get(&m, b"after"), Some(b"ok".to_vec())),
                Err(e) => assert!(matches!(e, InsertError::Full { .. }), "{e:?}"),
            }
        }
    }
}

#[test]
fn a_garbage_header_is_corrupt() {
    let m = map(10);
    m.raw_words()[0].store(0xdead, Ordering::Relaxed);
    assert!(matches!(
        m.get(b"a", &mut Vec::new()),
        Err(MapError::Corrupt { .. })
    ));
    assert!(matches!(
        m.insert(b"a", b"b"),
        Err(InsertError::Corrupt { .. })
    ));
    assert_eq!(m.len(), 0);
    assert_eq!(m.capacity(), 0);
    assert!(matches!(m.handle(), Err(MapError::Corrupt { .. })));
    // Options that do not match the object's size.
    let m = map(10);
    m.raw_words()[1].store(1_000_000, Ordering::Relaxed);
    assert!(matches!(m.contains(b"a"), Err(MapError::Corrupt { .. })));
    assert!(matches!(m.handle(), Err(MapError::Corrupt { .. })));
}

/// Every keyed operation through a handle returns what the same operation returns on the
/// map itself: two maps of one seed take the same random operations, one through its
/// handle, and agree on every result (errors included) and on their entries at the end.
#[test]
fn a_handle_does_what_the_map_does() {
    let (a, b) = (map(40), map(40));
    let h = b.handle().unwrap();
    let mut rng = Rng(0xfeed_beef);
    let ops = if cfg!(miri) { 300 } else { 20_000 };
    for _ in 0..ops {
        // Keys of 0 to 17 bytes (one too long), more of them than the capacity.
        let k = vec![b'a' + rng.below(6) as u8; rng.below(18) as usize];
        let v = vec![rng.below(256) as u8; rng.below(26) as usize];
        let ((mut oa, mut ob), long) = ((Vec::new(), Vec::new()), Duration::from_secs(3600));
        match rng.below(14) {
            0 => assert_eq!(a.insert(&k, &v), h.insert(&k, &v)),
            1 => assert_eq!(a.set(&k, &v), h.set(&k, &v)),
            2 => assert_eq!(a.add(&k, &v), h.add(&k, &v)),
            3 => assert_eq!(a.replace(&k, &v), h.replace(&k, &v)),
            4 => assert_eq!(a.remove(&k), h.remove(&k)),
            5 => assert_eq!(
                a.compare_exchange(&k, &v[..v.len().min(1)], &v),
                h.compare_exchange(&k, &v[..v.len().min(1)], &v)
            ),
            6 => {
                let f = |old: Option<&[u8]>| match old {
                    Some(o) if o.len() % 2 == 0 => Update::Remove(o.len()),
                    Some(o) => Update::Set([o, &v[..]].concat(), o.len()),
                    None => Update::Set(v.clone(), 0),
                };
                assert_eq!(a.update(&k, f), h.update(&k, f));
            }
            7 => {
                let by = rng.below(5) as i64;
                assert_eq!(a.incr(&k, by, 1), h.incr(&k, by, 1));
            }
            8 => assert_eq!(a.insert_ttl(&k, &v, long), h.insert_ttl(&k, &v, long)),
            9 => assert_eq!(a.insert_evicting(&k, &v), h.insert_evicting(&k, &v)),
            10 => assert_eq!(
                a.get_with(&k, |x| x.to_vec()),
                h.get_with(&k, |x| x.to_vec())
            ),
            11 => assert_eq!(a.contains(&k), h.contains(&k)),
            12 => {
                let far = Instant::now() + Duration::from_secs(60);
                assert_eq!(
                    a.with_deadline(far).insert(&k, &v),
                    h.with_deadline(far).insert(&k, &v)
                );
            }
            _ => {
                assert_eq!(a.get(&k, &mut oa), h.get(&k, &mut ob));
                assert_eq!(oa, ob);
            }
        }
    }
    assert_eq!(a.len(), b.len());
    let (mut sa, mut sb) = (a.snapshot(), b.snapshot());
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb);
    assert!(!sa.is_empty());
    assert_eq!(h.map().len(), b.len());
}

/// A handle keeps the layout it validated: a header rewritten afterwards (here garbage)
/// makes the map itself report `Corrupt`, while the handle goes on reading and writing
/// the entries, inside the map; the typed map's handle likewise.
#[test]
fn a_handle_keeps_its_layout_when_the_header_is_rewritten() {
    let m = map(50);
    for i in 0..40u32 {
        m.insert(&i.to_le_bytes(), &[i as u8; 3]).unwrap();
    }
    let h = m.handle().unwrap();
    let words = m.raw_words();
    let header: Vec<u64> = (0..8).map(|i| words[i].load(Ordering::Relaxed)).collect();
    let mut rng = Rng(5);
    for w in &words[..8] {
        w.store(rng.next(), Ordering::Relaxed);
    }
    assert!(matches!(m.contains(b"x"), Err(MapError::Corrupt { .. })));
    assert!(matches!(m.handle(), Err(MapError::Corrupt { .. })));
    for i in 0..40u32 {
        assert_eq!(
            h.get_with(&i.to_le_bytes(), |v| v.to_vec()),
            Ok(Some(vec![i as u8; 3]))
        );
    }
    assert_eq!(h.insert(b"new", b"v"), Ok(None));
    assert_eq!(h.remove(&0u32.to_le_bytes()), Ok(Some(vec![0; 3])));
    for (w, v) in words.iter().zip(header) {
        w.store(v, Ordering::Relaxed);
    }
    assert_eq!(get(&m, b"new"), Some(b"v".to_vec()));
    assert_eq!(get(&m, &0u32.to_le_bytes()), None);
    assert_eq!(m.len(), 40);

    let t = Map::<u64, i64>::with_seed(20, SEED).unwrap();
    t.insert(1, 10).unwrap();
    let th = t.handle().unwrap();
    let tw = t.as_bytes().raw_words();
    tw[3].store(u64::MAX, Ordering::Relaxed);
    assert_eq!(t.get(&1), None, "a corrupt map reads as absent");
    assert!(t.handle().is_err());
    assert_eq!(th.get(&1), Some(10));
    assert!(th.contains(&1));
    assert_eq!(th.incr(&2, 5, 0), Ok(5));
    assert_eq!(th.set(1, 11), Ok(false));
    assert_eq!(th.get(&1), Some(11));
    assert_eq!(
        th.map().len(),
        0,
        "the map-wide calls read the header: corrupt"
    );
}

/// A header rewritten to another one that validates (a new seed): the map's calls use the
/// new layout and the handle the old one, so they disagree on where keys live, as the
/// docs say; neither panics, and the handle still finds what it wrote.
#[test]
fn a_handle_and_the_map_disagree_after_a_valid_rewrite_and_stay_inside_it() {
    let m = map(64);
    let h = m.handle().unwrap();
    for i in 0..40u32 {
        h.insert(&i.to_le_bytes(), &[i as u8; 2]).unwrap();
    }
    let words = m.raw_words();
    // Words 4 and 5: the hash seed.
    words[4].fetch_xor(0x5555, Ordering::Relaxed);
    assert!(m.handle().is_ok(), "the rewritten header validates");
    let missing = (0..40u32)
        .filter(|i| !m.contains(&i.to_le_bytes()).unwrap())
        .count();
    assert!(missing > 0, "the map hashes with the new seed");
    for i in 0..40u32 {
        let _ = m.insert(&(100 + i).to_le_bytes(), b"m");
        let _ = h.update(&i.to_le_bytes(), |v| {
            Update::Set(v.map_or(b"h".to_vec(), <[u8]>::to_vec), ())
        });
    }
    for i in 0..40u32 {
        assert_eq!(
            h.get_with(&i.to_le_bytes(), |v| v.to_vec()).unwrap(),
            Some(vec![i as u8; 2])
        );
    }
    let _ = m.snapshot();
    assert!(m.len() <= m.capacity());
}

/// The typed handle returns what the typed map returns, for every keyed operation.
#[test]
fn a_typed_handle_does_what_the_typed_map_does() {
    let (a, b) = (
        Map::<u32, i64>::with_seed(30, SEED).unwrap(),
        Map::<u32, i64>::with_seed(30, SEED).unwrap(),
    );
    let h = b.handle().unwrap();
    let mut rng = Rng(77);
    for _ in 0..if cfg!(miri) { 200 } else { 10_000 } {
        let (k, v) = (rng.below(50) as u32, rng.below(9) as i64);
        match rng.below(10) {
            0 => assert_eq!(a.insert(k, v), h.insert(k, v)),
            1 => assert_eq!(a.set(k, v), h.set(k, v)),
            2 => assert_eq!(a.add(k, v), h.add(k, v)),
            3 => assert_eq!(a.replace(&k, v), h.replace(&k, v)),
            4 => assert_eq!(a.remove(&k), h.remove(&k)),
            5 => assert_eq!(a.incr(&k, v, 1), h.incr(&k, v, 1)),
            6 => assert_eq!(a.insert_evicting(k, v), h.insert_evicting(k, v)),
            7 => {
                let f = |old: Option<i64>| match old {
                    Some(o) if o > 20 => Update::Remove(o),
                    Some(o) => Update::Set(o + v, o),
                    None => Update::Keep(-1),
                };
                assert_eq!(a.update(&k, f), h.update(&k, f));
            }
            8 => assert_eq!(a.contains(&k), h.contains(&k)),
            _ => assert_eq!(a.get(&k), h.get(&k)),
        }
    }
    let (mut sa, mut sb) = (a.snapshot(), b.snapshot());
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb);
    assert_eq!(h.map().len(), b.len());
}

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable, shmstate::Element)]
#[repr(C)]
struct Point {
    x: f32,
    y: f32,
}

#[test]
fn typed_maps_round_trip_their_types() {
    let m = Map::<u64, f64>::with_seed(10, SEED).unwrap();
    assert_eq!(m.insert(1, 1.5).unwrap(), None);
    assert_eq!(m.get(&1), Some(1.5));
    assert_eq!(m.insert(1, 2.5).unwrap(), Some(1.5));
    assert!(m.add(2, 0.5).unwrap());
    assert_eq!(m.replace(&2, 0.25).unwrap(), Some(0.5));
    assert_eq!(m.compare_exchange(&2, 0.25, 1.0).unwrap(), Ok(()));
    assert_eq!(m.compare_exchange(&2, 0.25, 1.0).unwrap(), Err(Some(1.0)));
    assert_eq!(m.update(&3, |v| Update::Set(v.unwrap_or(7.0), ())), Ok(()));
    assert_eq!(m.remove(&3).unwrap(), Some(7.0));
    let mut s = m.snapshot();
    s.sort_by_key(|a| a.0);
    assert_eq!(s, vec![(1, 2.5), (2, 1.0)]);
    assert_eq!(m.len(), 2);
    m.clear();
    assert!(m.is_empty());

    let full = Map::<u32, Point>::new(1).unwrap();
    full.insert(1, Point { x: 1.0, y: 2.0 }).unwrap();
    assert_eq!(
        full.insert(2, Point { x: 3.0, y: 4.0 }),
        Err(InsertError::Full {
            key: 2,
            value: Point { x: 3.0, y: 4.0 }
        })
    );
    assert_eq!(
        full.insert_evicting(2, Point { x: 3.0, y: 4.0 }).unwrap(),
        Evicted::Entry {
            key: 1,
            value: Point { x: 1.0, y: 2.0 }
        }
    );

    let counters = Map::<FixedStr<7>, i64>::new(10).unwrap();
    let k = FixedStr::new("hits").unwrap();
    assert_eq!(counters.incr(&k, 2, 0).unwrap(), 2);
    assert_eq!(counters.incr(&k, 3, 0).unwrap(), 5);
    assert_eq!(counters.get(&k), Some(5));
    assert!(
        Map::<[u8; 0], u8>::new(1).is_err(),
        "a zero-sized key is refused"
    );
}

/// A typed `get` reads the value's words straight onto the stack: a value whose length is
/// not `V`'s (written through the byte map), an expired one and an absent key read as
/// `None`; a value as long as the stack buffer and one longer still read.
#[test]
fn a_typed_get_returns_only_a_live_value_of_its_size() {
    let m = Map::<u64, u64>::with_seed(10, SEED).unwrap();
    m.insert(1, 11).unwrap();
    assert_eq!(m.get(&1), Some(11));
    assert_eq!(m.get(&2), None);
    m.as_bytes()
        .insert(&3u64.to_ne_bytes(), &[1, 2, 3, 4])
        .unwrap();
    assert_eq!(m.get(&3), None, "a 4-byte value is not a u64");
    m.as_bytes()
        .insert_ttl(&4u64.to_ne_bytes(), &5u64.to_ne_bytes(), Duration::ZERO)
        .unwrap();
    assert_eq!(m.get(&4), None, "expired");

    // 128 bytes: the longest value copied to the stack; 136: read through `get_with`.
    let wide = Map::<u8, [u64; 16]>::with_seed(4, SEED).unwrap();
    wide.insert(1, [7; 16]).unwrap();
    assert_eq!(wide.get(&1), Some([7; 16]));
    let wider = Map::<u8, [u64; 17]>::with_seed(4, SEED).unwrap();
    wider.insert(1, [9; 17]).unwrap();
    assert_eq!(wider.get(&1), Some([9; 17]));
    assert_eq!(wider.get(&2), None);
}

#[test]
fn fixed_str_is_a_string_and_a_key() {
    let a = FixedStr::<23>::new("héllo").unwrap();
    assert_eq!(a.as_str(), "héllo");
    assert_eq!(&*a, "héllo");
    assert_eq!(a, "héllo");
    assert_eq!(a.to_string(), "héllo");
    assert_eq!(format!("{a:?}"), "\"héllo\"");
    assert_eq!(size_of::<FixedStr<23>>(), 24);
    let e = FixedStr::<3>::new("abcd").unwrap_err();
    assert_eq!((e.len, e.max), (4, 3));
    assert_eq!(
        FixedStr::<3>::try_from("abc").unwrap(),
        FixedStr::<3>::new("abc").unwrap()
    );
    let m = Map::<FixedStr<23>, FixedStr<23>>::new(10).unwrap();
    m.insert(a, FixedStr::new("world").unwrap()).unwrap();
    assert_eq!(m.get(&FixedStr::new("héllo").unwrap()).unwrap(), "world");
    assert_eq!(m.get(&FixedStr::new("hello").unwrap()), None);
}

#[cfg_attr(miri, ignore = "maps shared memory")]
#[test]
fn a_typed_map_does_not_open_as_another_type() {
    let region = Region::anonymous(1 << 20).unwrap();
    let m = region.typed_map::<u64, f64>("m", 100).unwrap();
    m.insert(7, 0.5).unwrap();
    assert!(matches!(
        region.typed_map::<u32, f64>("m", 100),
        Err(MapOpenError::Region(GetError::TypeMismatch { .. }))
    ));
    assert!(matches!(
        region.typed_map::<u64, i64>("m", 100),
        Err(MapOpenError::Region(GetError::TypeMismatch { .. }))
    ));
    assert!(matches!(
        region.open_map("m"),
        Err(MapOpenError::Region(GetError::TypeMismatch { .. }))
    ));
    assert!(matches!(
        region.typed_map::<u64, f64>("m", 200),
        Err(MapOpenError::OptionsMismatch { .. }
            | MapOpenError::Region(GetError::TypeMismatch { .. }))
    ));
    assert_eq!(
        region.typed_map::<u64, f64>("m", 100).unwrap().get(&7),
        Some(0.5)
    );

    let b = region.map("b", MapOptions::new(50)).unwrap();
    b.insert(b"k", b"v").unwrap();
    assert!(matches!(
        region.map("b", MapOptions::new(50).value_max(8)),
        Err(MapOpenError::OptionsMismatch { .. })
    ));
    assert!(region.open_map("b").unwrap().contains(b"k").unwrap());
    assert!(matches!(
        region.open_map("none"),
        Err(MapOpenError::Region(GetError::NotFound { .. }))
    ));
}

/// The value a writer of key `k` writes in round `r`: the key, then `n` bytes of value
/// `n` (`n` from `r`, 1 to 40), so a torn, misplaced or wrongly sized copy shows.
fn stamped(k: u64, r: u64) -> Vec<u8> {
    let n = (r % 40 + 1) as u8;
    let mut v = k.to_le_bytes().to_vec();
    v.extend(std::iter::repeat_n(n, n as usize));
    v
}

fn check_stamped(k: &[u8], v: &[u8]) {
    assert!(v.len() > 8 && v[..8] == *k, "value {v:?} under key {k:?}");
    assert!(v[8..].iter().all(|&b| b == v[8]), "torn value {v:?}");
    assert_eq!(v.len() - 8, v[8] as usize, "length of {v:?}");
}

/// Threads writing (insert, add, replace, remove, update, incr) and reading (get,
/// get_with, for_each) one map at once: every value read is one a writer wrote whole, and
/// the counters lose no increment.
#[cfg_attr(miri, ignore = "40,000 operations on 4 threads")]
#[test]
fn threads_racing_on_one_map_never_see_a_torn_value() {
    const KEYS: u64 = 300; // more than the capacity: some inserts find the map full
    const COUNTERS: u64 = 4;
    let ops: u64 = if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    };
    let m = ByteMap::with_seed(MapOptions::new(256).key_max(8).value_max(64), SEED).unwrap();
    let counter = |c: u64| (1_000_000 + c).to_le_bytes();
    for c in 0..COUNTERS {
        m.insert(&counter(c), &0i64.to_le_bytes()).unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let m = &m;
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9 + t);
                    let mut incrs = 0;
                    for r in 0..ops {
                        let k = rng.below(KEYS);
                        let kb = k.to_le_bytes();
                        let v = stamped(k, r + t);
                        match rng.below(8) {
                            0 | 1 => drop(m.insert(&kb, &v)),
                            2 => drop(m.add(&kb, &v)),
                            3 => drop(m.replace(&kb, &v).unwrap()),
                            4 | 5 => drop(m.remove(&kb).unwrap()),
                            6 => m
                                .update(&kb, |old| {
                                    if let Some(o) = old {
                                        check_stamped(&kb, o);
                                    }
                                    Update::Set(v.clone(), ())
                                })
                                .unwrap_or(()),
                            _ => {
                                m.incr(&counter(rng.below(COUNTERS)), 1, 0).unwrap();
                                incrs += 1;
                            }
                        }
                    }
                    incrs
                })
            })
            .collect();
        for t in 0..2u64 {
            let (m, stop) = (&m, &stop);
            s.spawn(move || {
                let mut rng = Rng(0x1234 + t);
                let mut out = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let kb = rng.below(KEYS).to_le_bytes();
                    if m.get(&kb, &mut out).unwrap() {
                        check_stamped(&kb, &out);
                    }
                    m.get_with(&kb, |v| check_stamped(&kb, v)).unwrap();
                    if rng.below(64) == 0 {
                        m.for_each(|k, v| {
                            if k.len() == 8 && u64::from_le_bytes(k.try_into().unwrap()) < KEYS {
                                check_stamped(k, v);
                            }
                        });
                    }
                }
            });
        }
        let incrs: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let total: i64 = (0..COUNTERS)
            .map(|c| {
                let v = get(&m, &counter(c)).unwrap();
                i64::from_le_bytes(v.try_into().unwrap())
            })
            .sum();
        assert_eq!(total as u64, incrs, "an increment was lost");
    });
    assert_eq!(m.len(), m.snapshot().len());
    let (max, _, n) = m.probe_stats();
    assert_eq!(n, m.len());
    assert!(max < m.stripe_geometry().1);
}

/// An odd structure sequence or slot sequence with no writer (garbage, or a writer that
/// died) is repaired by the next reader through the stripe lock, and a garbage lock word
/// is taken over: the entries read back at once.
#[test]
fn stray_odd_sequences_and_garbage_lock_words_are_repaired() {
    let m = map(50);
    for i in 0..40u32 {
        m.insert(&i.to_le_bytes(), &[i as u8; 3]).unwrap();
    }
    let heads = m.raw_stripe_words();
    let (lock, seq, _) = heads[0];
    let t = Instant::now();
    // An odd structure sequence, lock free: readers take the lock and repair.
    seq.fetch_add(1, Ordering::Relaxed);
    for i in 0..40u32 {
        assert_eq!(get(&m, &i.to_le_bytes()), Some(vec![i as u8; 3]), "key {i}");
    }
    assert_eq!(
        seq.load(Ordering::Relaxed) & 1,
        0,
        "the sequence was closed"
    );
    // A lock word naming TID 2^22 - 1, stamped (no such thread here): the next writer
    // takes it over.
    lock.store(u32::MAX >> 2, Ordering::Relaxed);
    m.insert(b"w", b"x").unwrap();
    assert_eq!(
        lock.load(Ordering::Relaxed),
        0,
        "taken over, repaired, released"
    );
    assert_eq!(get(&m, b"w"), Some(b"x".to_vec()));
    // An odd slot sequence on a full slot: the slot is dropped (its write was cut short),
    // every other key stays.
    let slots = m.raw_slots();
    let (_, i, _, victim) = slots.iter().find(|e| e.3.len() == 4).cloned().unwrap();
    let (_, sps) = m.stripe_geometry();
    let words = m.raw_words();
    // Slot `i`'s sequence word: after the header and count lines (16 words; the stripe
    // head lines are not in `raw_words`), slot `i` of stripe 0.
    let slot_words = 4 + 2 + 3; // head, key_max 16, value_max 24
    let seq_word = 16 + i * slot_words;
    assert!(i < sps);
    words[seq_word].fetch_add(1, Ordering::Relaxed);
    assert_eq!(
        get(&m, &victim),
        None,
        "the torn slot reads absent after the repair"
    );
    for j in 0..40u32 {
        let k = j.to_le_bytes();
        if k[..] != victim[..] {
            assert_eq!(get(&m, &k), Some(vec![j as u8; 3]), "key {j}");
        }
    }
    assert_eq!(m.len(), 40, "40 keys and `w`, less the dropped one");
    assert_eq!(m.snapshot().len(), 40);
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// A thread overwriting random words of the map (headers, counts, sequences, metas, keys,
/// values; stripe locks and sequences too) while other threads call every operation: no
/// operation panics or hangs, whatever it reads midway (a meta rewritten between a
/// repair's steps, a length changed under a copy, ...).
#[test]
#[cfg_attr(miri, ignore = "thousands of operations on 3 threads")]
fn a_live_vandal_thread_makes_no_operation_panic_or_hang() {
    let m = map(200);
    for i in 0..150u32 {
        m.insert(&i.to_le_bytes(), &[i as u8; 9]).unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rounds = if cfg!(debug_assertions) {
        3_000
    } else {
        30_000
    };
    std::thread::scope(|s| {
        let (m, stop) = (&m, &stop);
        s.spawn(move || {
            let mut rng = Rng(77);
            let words = m.raw_words();
            let heads = m.raw_stripe_words();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Mostly the slots (past the header and count lines), sometimes anything.
                let from = if rng.below(20) == 0 { 0 } else { 16 };
                let i = from + rng.below((words.len() - from) as u64) as usize;
                let v = match rng.below(3) {
                    0 => rng.next(),
                    1 => rng.next() & 0xFFFF_FFFF_0000_0003, // plausible metas
                    _ => rng.below(4),
                };
                words[i].store(v, Ordering::Relaxed);
                if rng.below(50) == 0 {
                    let (lock, seq, count) = heads[0];
                    match rng.below(3) {
                        0 => lock.store(rng.next() as u32, Ordering::Relaxed),
                        1 => seq.store(rng.next(), Ordering::Relaxed),
                        _ => count.store(rng.next(), Ordering::Relaxed),
                    }
                }
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(5 + t);
                    let mut out = Vec::new();
                    for _ in 0..rounds {
                        let k = (rng.below(200) as u32).to_le_bytes();
                        let _ = match rng.below(12) {
                            0 => m.get(&k, &mut out).map(drop),
                            1 => m.get_with(&k, |v| v.len()).map(drop),
                            2 => m
                                .insert(&k, &[1; 5])
                                .map(drop)
                                .map_err(|_| MapError::Corrupt { reason: "" }),
                            3 => m.remove(&k).map(drop),
                            4 => m
                                .add(&k, b"a")
                                .map(drop)
                                .map_err(|_| MapError::Corrupt { reason: "" }),
                            5 => m.replace(&k, b"r").map(drop),
                            6 => m.compare_exchange(&k, b"r", b"s").map(drop),
                            7 => m
                                .update(&k, |v| Update::Set(v.unwrap_or_default().to_vec(), ()))
                                .map_err(|_| MapError::Corrupt { reason: "" }),
                            8 => m
                                .incr(b"n", 1, 0)
                                .map(drop)
                                .map_err(|_| MapError::Corrupt { reason: "" }),
                            9 => m
                                .insert_evicting(&k, b"e")
                                .map(drop)
                                .map_err(|_| MapError::Corrupt { reason: "" }),
                            10 => {
                                m.for_each(|_, _| {});
                                Ok(())
                            }
                            _ => {
                                m.purge_expired();
                                Ok(())
                            }
                        };
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("an operation panicked");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// A peer keeps writing one garbage meta word while this process repairs the stripe again
/// and again (an odd structure sequence, as a dead remover leaves, makes every writer
/// repair): whatever the repair reads between its steps, it neither panics nor indexes
/// out of the stripe.
fn repair_survives_a_concurrent_garbage_meta(garbage: u64) {
    // key_max 16, value_max 16: a slot is 4 + 2 + 2 = 8 words; `raw_words` puts slot 0 at 16.
    let m = ByteMap::with_seed(MapOptions::new(100).key_max(16).value_max(16), SEED).unwrap();
    for i in 0..60u32 {
        m.insert(&i.to_le_bytes(), b"v").unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rounds = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    std::thread::scope(|s| {
        let (m, stop) = (&m, &stop);
        s.spawn(move || {
            let w = m.raw_words();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                w[16 + 5 * 8 + 1].store(garbage, Ordering::Relaxed);
            }
        });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for _ in 0..rounds {
                m.raw_stripe_words()[0].1.store(1, Ordering::Relaxed);
                let _ = m.insert(b"x", b"y");
                let _ = m.remove(b"x");
            }
        }));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            r.is_ok(),
            "a repair panicked under a concurrent garbage meta"
        );
    });
}

#[test]
#[cfg_attr(miri, ignore = "thousands of repairs on 2 threads")]
fn a_repair_survives_a_key_length_rewritten_under_it() {
    // Full, key length 1000 (> key_max 16).
    repair_survives_a_concurrent_garbage_meta(1 | (1000 << 2));
}

#[test]
#[cfg_attr(miri, ignore = "thousands of repairs on 2 threads")]
fn a_repair_survives_a_home_rewritten_under_it() {
    // Full, key length 1, home 200 (≥ the stripe's slots).
    repair_survives_a_concurrent_garbage_meta(1 | (1 << 2) | (200 << 32));
}

/// Keys of one stripe with one home slot, in a map made with `options` and `SEED`.
fn keys_with_one_home(options: MapOptions, n: usize) -> Vec<Vec<u8>> {
    let mut by_home: HashMap<(usize, usize), Vec<Vec<u8>>> = HashMap::new();
    for i in 0..100_000u32 {
        let k = format!("k{i}").into_bytes();
        let place = ByteMap::place_of(options, SEED, &k).unwrap();
        let v = by_home.entry(place).or_default();
        v.push(k);
        if v.len() == n {
            return v.clone();
        }
    }
    panic!("no {n} keys with one home");
}

/// A removal whose backward shift stops at a garbage meta repairs the stripe: the entries
/// of the probe run beyond the garbage stay reachable.
#[test]
fn a_removal_stopped_by_a_garbage_meta_repairs_the_stripe() {
    let options = MapOptions::new(100).key_max(16).value_max(24);
    let m = ByteMap::with_seed(options, SEED).unwrap();
    let keys = keys_with_one_home(options, 3);
    for k in &keys {
        m.insert(k, k).unwrap();
    }
    let slots = m.raw_slots();
    let at = |k: &[u8]| slots.iter().find(|e| e.3 == k).unwrap().1;
    // The probe run: keys[0] at its home h, keys[1] at h + 1, keys[2] at h + 2.
    let (h, b, c) = (at(&keys[0]), at(&keys[1]), at(&keys[2]));
    let sps = m.stripe_geometry().1;
    assert_eq!((b, c), ((h + 1) % sps, (h + 2) % sps));
    // A slot is 4 + 2 + 3 = 9 words; `raw_words` puts slot 0 at 16. State 2 is garbage.
    m.raw_words()[16 + b * 9 + 1].store(2, Ordering::Relaxed);
    assert_eq!(
        get(&m, &keys[2]),
        Some(keys[2].clone()),
        "readable past the garbage"
    );
    assert_eq!(m.remove(&keys[0]).unwrap(), Some(keys[0].clone()));
    assert_eq!(
        get(&m, &keys[2]),
        Some(keys[2].clone()),
        "cut off by the removal"
    );
    // One copy of it: an insert replaces it rather than adding a second.
    assert_eq!(m.insert(&keys[2], b"new").unwrap(), Some(keys[2].clone()));
    assert_eq!(m.raw_slots().iter().filter(|e| e.3 == keys[2]).count(), 1);
}

/// A meta that matches a reader's probe (the key's tag and length) but breaks another
/// rule of a full slot (a home past the stripe, a value longer than the map's maximum, a
/// state that is not "full", a reserved bit set) makes the key absent to every reader,
/// and the writers agree: `add` inserts it anew, after which it reads as written.
#[test]
fn a_matching_meta_that_breaks_a_rule_reads_as_absent_to_readers_and_writers() {
    type Corrupt = fn(u64) -> u64;
    let corruptions: [(&str, Corrupt); 6] = [
        ("a home past the stripe", |w| w & !(0xFF << 32) | 255 << 32),
        ("a value one byte too long", |w| {
            w & !(0x1_FFFF << 13) | 6 << 13
        }),
        ("the longest value length", |w| w | 0x1_FFFF << 13),
        ("state 2", |w| w & !3 | 2),
        ("state 3", |w| w | 3),
        ("reserved bit 30", |w| w | 1 << 30),
    ];
    for (what, corrupt) in corruptions {
        // Keys of 3 bytes and values of 5: a slot is 4 + 1 + 1 words.
        let typed = Map::<[u8; 3], [u8; 5]>::with_seed(100, SEED).unwrap();
        let m = typed.as_bytes();
        let (stripes, sps) = m.stripe_geometry();
        assert_eq!(stripes, 1);
        assert!(sps < 255, "a home of 255 is past the stripe");
        m.insert(b"abc", b"value").unwrap();
        assert_eq!(typed.get(b"abc"), Some(*b"value"));
        let slot = m.raw_slots().iter().find(|e| e.3 == b"abc").unwrap().1;
        // `raw_words` puts slot 0 at 16; the meta is a slot's word 1.
        let meta = m.raw_words()[16 + slot * 6 + 1];
        let w = meta.load(Ordering::Relaxed);
        assert_eq!((w & 3, (w >> 2) & 0x7FF, (w >> 13) & 0x1_FFFF), (1, 3, 5));
        meta.store(corrupt(w), Ordering::Relaxed);
        assert_eq!(get(m, b"abc"), None, "{what}: get");
        assert_eq!(m.get_with(b"abc", |v| v.to_vec()).unwrap(), None, "{what}");
        assert!(!m.contains(b"abc").unwrap(), "{what}: contains");
        assert_eq!(typed.get(b"abc"), None, "{what}: typed get");
        assert!(
            m.add(b"abc", b"fresh").unwrap(),
            "{what}: add found it present"
        );
        assert_eq!(get(m, b"abc"), Some(b"fresh".to_vec()), "{what}: after add");
        assert_eq!(m.len(), 1, "{what}: the repair dropped the corrupt slot");
    }
}

/// `insert_evicting` evicting from another stripe whose backward shift meets a garbage
/// meta: the repair that follows gives the victim's place back to the map's count, so no
/// place is handed on to the key's stripe, and the new entry reserves one. The count stays
/// equal to the entries, and the map never holds more than `capacity`.
#[test]
fn an_eviction_elsewhere_that_repairs_hands_on_no_place() {
    let cap = 512;
    let options = MapOptions::new(cap).key_max(16).value_max(16);
    let m = ByteMap::with_seed(options, SEED).unwrap();
    let (stripes, sps) = m.stripe_geometry();
    assert_eq!(stripes, 4);
    let stripe = |k: &[u8]| ByteMap::place_of(options, SEED, k).unwrap().0;
    let key = |i: u32| format!("key-{i}").into_bytes();
    // Fill from stripes 1 to 3; stripe 0 stays empty.
    let kept: Vec<u32> = (0..).filter(|&i| stripe(&key(i)) != 0).take(cap).collect();
    for &i in &kept {
        m.insert(&key(i), b"v").unwrap();
    }
    assert_eq!(m.len(), cap);
    // The victim: stripe 1's first key (its least recently written).
    let victim = key(*kept.iter().find(|&&i| stripe(&key(i)) == 1).unwrap());
    let slots = m.raw_slots();
    let vslot = slots.iter().find(|e| e.0 == 1 && e.3 == victim).unwrap().1;
    // The first empty slot after the victim's probe run gets a garbage meta (state 2):
    // the eviction's shift stops there and repairs the stripe.
    let full: std::collections::HashSet<usize> =
        slots.iter().filter(|e| e.0 == 1).map(|e| e.1).collect();
    let mut j = (vslot + 1) % sps;
    while full.contains(&j) {
        j = (j + 1) % sps;
    }
    // A slot is 4 + 2 + 2 words; `raw_words` puts stripe 1's slot 0 at 16 + sps slots.
    let meta = m.raw_words()[16 + (sps + j) * 8 + 1];
    assert_eq!(meta.load(Ordering::Relaxed), 0);
    meta.store(2, Ordering::Relaxed);
    let new = (0..)
        .map(|i| format!("new-{i}").into_bytes())
        .find(|k| stripe(k) == 0)
        .unwrap();
    let r = m.insert_evicting(&new, b"v").unwrap();
    assert_eq!(
        r,
        Evicted::Entry {
            key: victim.clone(),
            value: b"v".to_vec()
        }
    );
    assert_eq!(get(&m, &new), Some(b"v".to_vec()));
    assert_eq!(
        m.len(),
        m.snapshot().len(),
        "the count drifted from the entries"
    );
    assert_eq!(m.len(), cap);
    // The map is full: an insert of a new key fails.
    let extra = (0..)
        .map(|i| format!("extra-{i}").into_bytes())
        .find(|k| stripe(k) == 2)
        .unwrap();
    assert!(matches!(
        m.insert(&extra, b"v"),
        Err(InsertError::Full { .. })
    ));
    assert_eq!(m.snapshot().len(), cap, "capacity exceeded");
    assert_eq!(m.len(), cap);
}

/// A live thread holds a stripe's lock (inside `update`) and leaves a slot of it odd, as
/// a writer stopped mid-write does: every timed call gives up at its deadline with
/// `Timeout` and changes nothing; `try_get` gives up at once; untimed readers of other
/// keys of the stripe are not held up.
#[test]
#[cfg_attr(miri, ignore = "sleeps to deadlines")]
fn timed_calls_give_up_behind_a_writer_that_does_not_finish() {
    let m = map(100); // one stripe: every key shares the lock
    m.insert(b"busy", b"1").unwrap();
    m.insert(b"other", b"2").unwrap();
    let typed = Map::<u32, i64>::new(100).unwrap();
    typed.insert(7, 1).unwrap();
    let busy_slot = m.raw_slots().iter().find(|e| e.3 == b"busy").unwrap().1;
    // A slot is 4 + 2 + 3 = 9 words; `raw_words` puts slot 0 at 16; word 0 is its sequence.
    let seq = m.raw_words()[16 + busy_slot * 9];
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let (m, typed) = (&m, &typed);
        s.spawn(move || {
            typed
                .update(&7, |_| {
                    m.update(b"busy", |_| {
                        held_tx.send(()).unwrap();
                        go_rx.recv().unwrap();
                        Update::<_, Vec<u8>>::Keep(())
                    })
                    .unwrap();
                    Update::Keep(())
                })
                .unwrap();
        });
        held_rx.recv().unwrap();
        let q = seq.load(Ordering::Relaxed);
        seq.store(q | 1, Ordering::Relaxed);

        let soon = || Instant::now() + Duration::from_millis(30);
        let mut out = Vec::new();
        let t = Instant::now();
        assert_eq!(m.try_get(b"busy", &mut out), Err(MapError::Timeout));
        assert!(t.elapsed() < Duration::from_millis(500), "try_get waited");
        let t = Instant::now();
        assert_eq!(
            m.get_timeout(b"busy", &mut out, Duration::from_millis(30)),
            Err(MapError::Timeout)
        );
        assert!(t.elapsed() >= Duration::from_millis(30), "gave up early");
        assert_eq!(
            m.get_with_until(b"busy", |v| v.len(), soon()),
            Err(MapError::Timeout)
        );
        assert_eq!(
            m.with_deadline(soon()).contains(b"busy"),
            Err(MapError::Timeout)
        );
        // A reader of another key of the stripe is not held up.
        assert_eq!(m.try_get(b"other", &mut out), Ok(true));
        assert_eq!(out, b"2");
        // Writers of the stripe wait for its lock: each gives up at its deadline.
        let w = m.with_deadline(soon());
        let t = Instant::now();
        assert_eq!(w.insert(b"new", b"x"), Err(InsertError::Timeout));
        assert!(t.elapsed() >= Duration::from_millis(25), "gave up early");
        let w = m.with_deadline(Instant::now());
        assert_eq!(w.add(b"new", b"x"), Err(InsertError::Timeout));
        assert_eq!(
            w.insert_ttl(b"new", b"x", Duration::from_secs(1)),
            Err(InsertError::Timeout)
        );
        assert_eq!(w.insert_evicting(b"new", b"x"), Err(InsertError::Timeout));
        assert_eq!(w.set(b"other", b"x"), Err(InsertError::Timeout));
        assert_eq!(w.replace(b"other", b"x"), Err(MapError::Timeout));
        assert_eq!(w.remove(b"other"), Err(MapError::Timeout));
        assert_eq!(
            w.compare_exchange(b"other", b"2", b"3"),
            Err(MapError::Timeout)
        );
        assert_eq!(w.incr(b"n", 1, 0), Err(IncrError::Timeout));
        assert_eq!(
            w.update(b"other", |_| -> Update<(), Vec<u8>> {
                panic!("called past the deadline")
            }),
            Err(UpdateError::Timeout)
        );
        // The typed map: its one stripe is locked by the same thread.
        let tw = typed.with_deadline(soon());
        assert_eq!(tw.insert(8, 1), Err(InsertError::Timeout));
        assert_eq!(tw.set(7, 2), Err(InsertError::Timeout));
        assert_eq!(tw.incr(&7, 1, 0), Err(IncrError::Timeout));
        assert_eq!(tw.remove(&7), Err(MapError::Timeout));
        assert_eq!(typed.try_get(&7), Ok(Some(1)));
        assert_eq!(typed.get_until(&7, soon()), Ok(Some(1)));
        // Handles' timed views give up alike; a handle's typed read is lock-free.
        let (h, th) = (m.handle().unwrap(), typed.handle().unwrap());
        assert_eq!(
            h.with_deadline(soon()).contains(b"busy"),
            Err(MapError::Timeout)
        );
        let hw = h.with_deadline(Instant::now());
        assert_eq!(hw.insert(b"new", b"x"), Err(InsertError::Timeout));
        assert_eq!(hw.incr(b"n", 1, 0), Err(IncrError::Timeout));
        let thw = th.with_deadline(Instant::now());
        assert_eq!(thw.set(7, 2), Err(InsertError::Timeout));
        assert_eq!(th.get(&7), Some(1));
        // Nothing changed.
        seq.store(q, Ordering::Relaxed);
        go_tx.send(()).unwrap();
    });
    assert_eq!(get(&m, b"other"), Some(b"2".to_vec()));
    assert_eq!(get(&m, b"busy"), Some(b"1".to_vec()));
    assert!(!m.contains(b"new").unwrap() && !m.contains(b"n").unwrap());
    assert_eq!(m.len(), 2);
    assert_eq!(typed.get(&7), Some(1));
    assert_eq!(typed.len(), 1);
}

/// Two threads insert new keys of different stripes into a map one entry short of its
/// capacity at once: one of them gets the last place, the other fails `Full`; the map
/// never holds more than `capacity` entries.
#[test]
#[cfg_attr(miri, ignore = "hundreds of maps filled on 2 threads")]
fn racing_inserts_never_overshoot_the_capacity() {
    let cap = 256; // two stripes
    let probe = map(cap);
    let stripe_of = |k: &[u8]| {
        probe.insert(k, b"p").unwrap();
        let s = probe.raw_slots().iter().find(|e| e.3 == k).unwrap().0;
        probe.remove(k).unwrap();
        s
    };
    let a = b"racer-a".to_vec();
    let b = (0..1000u32)
        .map(|i| format!("racer-b{i}").into_bytes())
        .find(|k| stripe_of(k) != stripe_of(&a))
        .unwrap();
    let trials = if cfg!(debug_assertions) { 200 } else { 3000 };
    for _ in 0..trials {
        let m = map(cap);
        for i in 0..(cap as u32 - 1) {
            m.insert(&i.to_le_bytes(), b"f").unwrap();
        }
        let go = std::sync::Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let t = s.spawn(|| {
                go.wait();
                m.insert(&b, b"v").is_ok()
            });
            go.wait();
            let ra = m.insert(&a, b"v").is_ok();
            (ra, t.join().unwrap())
        });
        assert!(
            ra != rb,
            "exactly one insert gets the last place ({ra}, {rb})"
        );
        assert_eq!(m.len(), cap);
        assert_eq!(m.snapshot().len(), cap);
    }
}

/// A map in a region opened in another boot (header word 7 names another boot id): the
/// opener removes every entry with a deadline (its clock restarted), keeps the others, and
/// records this boot, so the next opener changes nothing.
#[test]
fn a_map_opened_in_another_boot_drops_its_deadlines() {
    let region = Region::anonymous(1 << 20).unwrap();
    let m = region
        .map("m", MapOptions::new(300).key_max(16).value_max(16))
        .unwrap();
    for i in 0..100u32 {
        m.insert(&i.to_le_bytes(), b"kept").unwrap();
        m.insert_ttl(&(1000 + i).to_le_bytes(), b"ttl", Duration::from_secs(3600))
            .unwrap();
    }
    let boot = m.raw_words()[7];
    let ours = boot.load(Ordering::Relaxed);
    assert_ne!(ours, 0);
    // Reopened in this boot: nothing changes.
    let m = region.open_map("m").unwrap();
    assert_eq!(m.len(), 200);
    // Another boot recorded.
    boot.store(ours ^ 0x5555, Ordering::Relaxed);
    let m = region.open_map("m").unwrap();
    assert_eq!(m.len(), 100);
    for i in 0..100u32 {
        assert_eq!(get(m, &i.to_le_bytes()), Some(b"kept".to_vec()));
        assert_eq!(get(m, &(1000 + i).to_le_bytes()), None);
    }
    assert_eq!(boot.load(Ordering::Relaxed), ours, "this boot recorded");
    // A deadline set now survives the next opener.
    m.insert_ttl(b"fresh", b"x", Duration::from_secs(3600))
        .unwrap();
    let m = region
        .map("m", MapOptions::new(300).key_max(16).value_max(16))
        .unwrap();
    assert!(m.contains(b"fresh").unwrap());
}

/// An `insert_evicting` into a full map hands its victim's place straight to the new
/// entry: an insert into another stripe racing it never takes that place, so it never
/// fails `Full` while its own stripe holds entries (which would lose the victim unreported),
/// and the map stays at its capacity.
#[test]
fn insert_evicting_keeps_its_victims_place_against_racing_inserts() {
    let o = MapOptions::new(256).key_max(16).value_max(16);
    let m: &'static ByteMap = Box::leak(ByteMap::with_seed(o, SEED).unwrap());
    assert_eq!(m.stripe_geometry().0, 2);
    let stripe = move |k: &[u8]| ByteMap::place_of(o, SEED, k).unwrap().0;
    let keys = move |p: &'static str, s: usize| {
        (0u32..)
            .map(move |i| format!("{p}-{i}").into_bytes())
            .filter(move |k| stripe(k) == s)
    };
    for k in keys("a", 0).take(128).chain(keys("b", 1).take(128)) {
        m.insert(&k, b"v").unwrap();
    }
    assert_eq!(m.len(), 256);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut taken = 0;
            for k in keys("c", 1) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                taken += usize::from(m.insert(&k, b"v").is_ok());
            }
            taken
        })
    };
    let mut full = 0;
    for k in keys("d", 0).take(if cfg!(debug_assertions) {
        20_000
    } else {
        200_000
    }) {
        match m.insert_evicting(&k, b"v") {
            Ok(Evicted::Entry { .. }) => {}
            Err(InsertError::Full { .. }) => full += 1,
            r => panic!("the full map did not evict: {r:?}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(racer.join().unwrap(), 0, "an insert took an evicted place");
    assert_eq!(
        full, 0,
        "insert_evicting failed Full with entries in its stripe"
    );
    assert_eq!(m.len(), 256);
    assert_eq!(m.snapshot().len(), 256);
}

/// The stripe and home slot of a key whose hash is `h` (the rule of "Hashing" in the
/// module docs).
fn place_by_hash(h: u64, stripes: usize, sps: usize) -> (usize, usize) {
    (
        (h as usize) & (stripes - 1),
        (((h >> 32) * sps as u64) >> 32) as usize,
    )
}

/// Maps of layout version 2 (every map this version creates) hash keys with SipHash-1-3:
/// every entry's stripe and home slot are the ones the reference SipHash-1-3 gives. A
/// header with the magic of layout version 1 (SipHash-2-4) reads as corrupt rather than be
/// read with the wrong hash.
#[test]
fn keys_are_placed_by_siphash_1_3_and_a_version_1_header_is_corrupt() {
    use core::hash::Hasher;
    let m = ByteMap::with_seed(MapOptions::new(1000).key_max(8).value_max(8), SEED).unwrap();
    assert_eq!(
        m.raw_words()[0].load(Ordering::Relaxed),
        u64::from_le_bytes(*b"shmmap\x02\0"),
        "a new map is of layout version 2"
    );
    for i in 0..600u64 {
        assert_eq!(
            m.insert(&i.to_le_bytes(), &(i * 3).to_le_bytes()).unwrap(),
            None
        );
    }
    let mut out = Vec::new();
    for i in 0..600u64 {
        assert!(m.get(&i.to_le_bytes(), &mut out).unwrap(), "key {i}");
        assert_eq!(out, (i * 3).to_le_bytes());
    }
    let (stripes, sps) = m.stripe_geometry();
    let slots = m.raw_slots();
    assert_eq!(slots.len(), 600);
    for (stripe, _, home, key) in slots {
        let mut h = siphasher::sip::SipHasher13::new_with_key(&SEED);
        h.write(&key);
        assert_eq!((stripe, home), place_by_hash(h.finish(), stripes, sps));
    }
    m.raw_words()[0].store(u64::from_le_bytes(*b"shmmap\x01\0"), Ordering::Relaxed);
    assert!(matches!(
        m.get(&1u64.to_le_bytes(), &mut out),
        Err(MapError::Corrupt { .. })
    ));
}
