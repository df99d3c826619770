//! The shared hash map: `ByteMap` and `Map<u64, _>` placed in a region, next to what a user
//! would otherwise reach for, in one run: a `std::sync::RwLock<std::collections::HashMap>`
//! and a `dashmap::DashMap` (in-process only: the floor a shared map is measured against),
//! and Redis on loopback (the usual way to share a map between processes: one request
//! and reply per operation, pipelining off). Python's `Manager().dict()` is measured by
//! `benches/python/manager_dict.py` and put beside these rows by `benches/report.py`.
//!
//! Every row works on the same [`KEYS`] 8-byte keys, in the same order, and checks its
//! count: every get found its key, every increment landed.
//!
//! Redis: the bench starts `redis-server` on a free loopback port itself (no persistence),
//! or uses the server at `SHMSTATE_REDIS_URL` (`redis://127.0.0.1:PORT`); without either,
//! the Redis rows are skipped with a printed message (install: `apt-get install -y
//! redis-server`). Its client is a minimal RESP exchange over a `TcpStream` (below): GET,
//! SET and INCR are one request and one reply each, so a full client library would add
//! only parsing this bench does not need.
//!
//! Run: `cargo bench --bench map` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench map`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::{Shm, Weight, Workers, concurrent, tune};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use shmstate::{ByteMap, MapOptions, Region};

/// The keys every row works on (all present before a get or an overwrite is measured).
const KEYS: usize = 1000;

/// Key `i`: spread over the whole `u64` range, as real keys (ids, hashes) are.
#[inline]
fn key(i: usize) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The value stored under key `i` before a get is measured.
#[inline]
fn value(i: usize) -> u64 {
    i as u64 * 3 + 1
}

/// The region holding the maps (an anonymous region: `MAP_SHARED` memory shared with
/// children forked after it is made, exactly as a user places a map).
fn region() -> Region {
    Region::anonymous(32 << 20).expect("anonymous region")
}

fn options() -> MapOptions {
    MapOptions::new(2 * KEYS).key_max(8).value_max(8)
}

/// A keyed single-thread bench: iteration `k` runs `op(k % KEYS)`, which returns how many
/// operations succeeded (1, or 0 for a miss); after `reset`, the sample must count `iters`
/// successes.
fn keyed<S: ?Sized>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    state: &S,
    reset: impl Fn(&S),
    op: impl Fn(&S, usize) -> u64,
    check: impl Fn(&S, u64),
) {
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            reset(state);
            let mut ok = 0u64;
            let mut i = 0usize;
            let t0 = Instant::now();
            for _ in 0..iters {
                ok += op(std::hint::black_box(state), std::hint::black_box(i));
                i += 1;
                if i == KEYS {
                    i = 0;
                }
            }
            let elapsed = t0.elapsed();
            assert_eq!(ok, iters, "{id}: not every operation succeeded");
            check(state, iters);
            elapsed
        })
    });
}

/// What [`keyed`] checks after an insert or set sample on a `ByteMap`: the last pass wrote
/// key 0's value, 0.
fn key0_is_zero(m: &ByteMap, _: u64) {
    let mut out = Vec::new();
    assert!(m.get(&key(0).to_le_bytes(), &mut out).unwrap());
    assert_eq!(out, 0u64.to_le_bytes());
}

/// What [`keyed`] checks after the sample when the operation leaves nothing to count.
fn no_check<S: ?Sized>(_: &S, _: u64) {}

// ---------------------------------------------------------------------------------------
// The alternatives.

/// `RwLock<HashMap<u64, V>>` with std's default hasher: the map a Rust program shares
/// between its threads.
type StdMap<V> = RwLock<HashMap<u64, V>>;

fn std_map<V: Copy>(v: impl Fn(usize) -> V) -> StdMap<V> {
    RwLock::new((0..KEYS).map(|i| (key(i), v(i))).collect())
}

fn dash_map<V: Copy>(v: impl Fn(usize) -> V) -> DashMap<u64, V> {
    (0..KEYS).map(|i| (key(i), v(i))).collect()
}

/// A Redis connection: a server this bench started (killed on drop), or the one at
/// `SHMSTATE_REDIS_URL`.
struct Redis {
    server: Option<Child>,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    buf: Vec<u8>,
    line: Vec<u8>,
}

/// One RESP reply.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok,
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

impl Redis {
    /// Connects to `SHMSTATE_REDIS_URL`, or starts `redis-server` on a free loopback port;
    /// `None` (with a printed reason) when neither is possible.
    fn start() -> Option<Redis> {
        if let Ok(url) = std::env::var("SHMSTATE_REDIS_URL") {
            let addr = url.trim_start_matches("redis://").trim_end_matches('/');
            match TcpStream::connect(addr) {
                Ok(s) => return Some(Redis::over(s, None)),
                Err(e) => {
                    eprintln!("map bench: skipping the Redis rows: cannot connect to {url}: {e}");
                    return None;
                }
            }
        }
        // A free port: bind port 0, note the port, release it for the server.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let server = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut server = match server {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "map bench: skipping the Redis rows: cannot run redis-server ({e}); install \
                     it with `apt-get install -y redis-server`, or set SHMSTATE_REDIS_URL"
                );
                return None;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => return Some(Redis::over(s, Some(server))),
                Err(e) if Instant::now() > deadline => {
                    eprintln!(
                        "map bench: skipping the Redis rows: redis-server did not listen: {e}"
                    );
                    let _ = server.kill();
                    let _ = server.wait();
                    return None;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn over(stream: TcpStream, server: Option<Child>) -> Redis {
        // Pipelining off, Nagle off: each request goes out at once, as a client's does.
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let writer = stream.try_clone().expect("clone the socket");
        let mut r = Redis {
            server,
            reader: BufReader::new(stream),
            writer,
            buf: Vec::with_capacity(64),
            line: Vec::with_capacity(64),
        };
        assert_eq!(r.call(&[b"FLUSHDB"]), Reply::Ok, "redis FLUSHDB");
        r
    }

    /// Sends one command and reads its reply (one round trip).
    fn call(&mut self, args: &[&[u8]]) -> Reply {
        self.buf.clear();
        write!(self.buf, "*{}\r\n", args.len()).unwrap();
        for a in args {
            write!(self.buf, "${}\r\n", a.len()).unwrap();
            self.buf.extend_from_slice(a);
            self.buf.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&self.buf).expect("redis write");
        self.line.clear();
        self.reader
            .read_until(b'\n', &mut self.line)
            .expect("redis read");
        let text = std::str::from_utf8(&self.line[1..])
            .expect("redis reply line")
            .trim_end();
        match self.line.first() {
            Some(b'+') => Reply::Ok,
            Some(b':') => Reply::Int(text.parse().expect("redis integer")),
            Some(b'$') => {
                let n: i64 = text.parse().expect("redis bulk length");
                if n < 0 {
                    return Reply::Bulk(None);
                }
                let mut v = vec![0; n as usize + 2];
                self.reader.read_exact(&mut v).expect("redis bulk");
                v.truncate(n as usize);
                Reply::Bulk(Some(v))
            }
            _ => panic!("redis: {}", String::from_utf8_lossy(&self.line)),
        }
    }

    fn set(&mut self, k: &[u8], v: &[u8]) {
        assert_eq!(self.call(&[b"SET", k, v]), Reply::Ok, "redis SET");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(s) = &mut self.server {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// The one connection, reachable from the `Fn` closures of [`keyed`] (criterion runs
/// them on this thread only).
struct RedisCell(std::cell::RefCell<Redis>);

impl RedisCell {
    fn with<R>(&self, f: impl FnOnce(&mut Redis) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

// ---------------------------------------------------------------------------------------
// The groups.

/// Get of a present 8-byte key (8-byte value), one thread.
fn get(c: &mut Criterion, redis: Option<&RedisCell>) {
    let mut g = common::group(c, "map_get_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let region = region();
    let bytes = region
        .map("bytes", options())
        .expect("ByteMap in the region");
    let typed = region
        .typed_map::<u64, u64>("typed", 2 * KEYS)
        .expect("Map<u64, u64> in the region");
    for i in 0..KEYS {
        bytes
            .insert(&key(i).to_le_bytes(), &value(i).to_le_bytes())
            .expect("fill the ByteMap");
        typed.insert(key(i), value(i)).expect("fill the Map");
    }

    // `get_with`: the value is looked at in place of a copy into a `Vec`; no allocation.
    keyed(
        &mut g,
        "shmstate_bytemap",
        bytes,
        |_| {},
        |m, i| {
            let v = m.get_with(&key(i).to_le_bytes(), |v| v.len() as u64);
            u64::from(v.expect("ByteMap::get_with") == Some(8))
        },
        no_check,
    );
    keyed(
        &mut g,
        "shmstate_map_u64",
        typed,
        |_| {},
        |m, i| u64::from(m.get(&key(i)) == Some(value(i))),
        no_check,
    );
    // The same two gets through handles (the header validated once, not per get).
    keyed(
        &mut g,
        "shmstate_bytemap_handle",
        &bytes.handle().expect("ByteMap handle"),
        |_| {},
        |h, i| {
            let v = h.get_with(&key(i).to_le_bytes(), |v| v.len() as u64);
            u64::from(v.expect("ByteMapHandle::get_with") == Some(8))
        },
        no_check,
    );
    keyed(
        &mut g,
        "shmstate_map_u64_handle",
        &typed.handle().expect("Map handle"),
        |_| {},
        |h, i| u64::from(h.get(&key(i)) == Some(value(i))),
        no_check,
    );

    let std = std_map(value);
    keyed(
        &mut g,
        "std_rwlock_hashmap",
        &std,
        |_| {},
        |m, i| u64::from(m.read().unwrap().get(&key(i)).copied() == Some(value(i))),
        no_check,
    );
    let dash = dash_map(value);
    keyed(
        &mut g,
        "dashmap",
        &dash,
        |_| {},
        |m, i| u64::from(m.get(&key(i)).map(|v| *v) == Some(value(i))),
        no_check,
    );
    if let Some(r) = redis {
        r.with(|r| {
            for i in 0..KEYS {
                r.set(&key(i).to_le_bytes(), &value(i).to_le_bytes());
            }
        });
        keyed(
            &mut g,
            "redis",
            r,
            |_| {},
            |r, i| {
                let v = r.with(|r| r.call(&[b"GET", &key(i).to_le_bytes()]));
                u64::from(v == Reply::Bulk(Some(value(i).to_le_bytes().to_vec())))
            },
            no_check,
        );
    }
    g.finish();
}

/// Insert over a present key (8-byte value), one thread. Every sample writes key 0 first
/// (value 0, where it held 1): checked after the sample.
fn insert(c: &mut Criterion, redis: Option<&RedisCell>) {
    let mut g = common::group(c, "map_insert_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let region = region();
    let bytes = region
        .map("bytes", options())
        .expect("ByteMap in the region");
    let typed = region
        .typed_map::<u64, u64>("typed", 2 * KEYS)
        .expect("Map<u64, u64> in the region");
    for i in 0..KEYS {
        bytes
            .insert(&key(i).to_le_bytes(), &value(i).to_le_bytes())
            .expect("fill the ByteMap");
        typed.insert(key(i), value(i)).expect("fill the Map");
    }

    // `insert` hands back the old value (here always present): a `Vec` for the ByteMap.
    keyed(
        &mut g,
        "shmstate_bytemap",
        bytes,
        |_| {},
        |m, i| {
            let old = m.insert(&key(i).to_le_bytes(), &(i as u64).to_le_bytes());
            u64::from(old.expect("ByteMap::insert").is_some())
        },
        key0_is_zero,
    );
    keyed(
        &mut g,
        "shmstate_map_u64",
        typed,
        |_| {},
        |m, i| u64::from(m.insert(key(i), i as u64).expect("Map::insert").is_some()),
        |m, _| assert_eq!(m.get(&key(0)), Some(0)),
    );

    // `set` writes the same without reading the old value out: what Redis' SET and
    // Python's `d[k] = v` do.
    keyed(
        &mut g,
        "shmstate_bytemap_set",
        bytes,
        |_| {},
        |m, i| {
            let new = m.set(&key(i).to_le_bytes(), &(i as u64).to_le_bytes());
            u64::from(!new.expect("ByteMap::set"))
        },
        key0_is_zero,
    );
    keyed(
        &mut g,
        "shmstate_map_u64_set",
        typed,
        |_| {},
        |m, i| u64::from(!m.set(key(i), i as u64).expect("Map::set")),
        |m, _| assert_eq!(m.get(&key(0)), Some(0)),
    );
    keyed(
        &mut g,
        "shmstate_bytemap_handle_set",
        &bytes.handle().expect("ByteMap handle"),
        |_| {},
        |h, i| {
            let new = h.set(&key(i).to_le_bytes(), &(i as u64).to_le_bytes());
            u64::from(!new.expect("ByteMapHandle::set"))
        },
        |h, n| key0_is_zero(h.map(), n),
    );
    keyed(
        &mut g,
        "shmstate_map_u64_handle_set",
        &typed.handle().expect("Map handle"),
        |_| {},
        |h, i| u64::from(!h.set(key(i), i as u64).expect("MapHandle::set")),
        |h, _| assert_eq!(h.get(&key(0)), Some(0)),
    );

    let std = std_map(value);
    keyed(
        &mut g,
        "std_rwlock_hashmap",
        &std,
        |_| {},
        |m, i| u64::from(m.write().unwrap().insert(key(i), i as u64).is_some()),
        |m, _| assert_eq!(m.read().unwrap().get(&key(0)), Some(&0)),
    );
    let dash = dash_map(value);
    keyed(
        &mut g,
        "dashmap",
        &dash,
        |_| {},
        |m, i| u64::from(m.insert(key(i), i as u64).is_some()),
        |m, _| assert_eq!(m.get(&key(0)).map(|v| *v), Some(0)),
    );
    if let Some(r) = redis {
        keyed(
            &mut g,
            "redis",
            r,
            |_| {},
            |r, i| {
                r.with(|r| r.set(&key(i).to_le_bytes(), &(i as u64).to_le_bytes()));
                1
            },
            |r, _| {
                let v = r.with(|r| r.call(&[b"GET", &key(0).to_le_bytes()]));
                assert_eq!(v, Reply::Bulk(Some(0u64.to_le_bytes().to_vec())));
            },
        );
    }
    g.finish();
}

/// Increment of a present counter, one thread: the counters are reset to 0 before each
/// sample and must add up to the sample's iterations after it.
fn incr(c: &mut Criterion, redis: Option<&RedisCell>) {
    let mut g = common::group(c, "map_incr_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let region = region();
    let bytes = region
        .map("bytes", options())
        .expect("ByteMap in the region");
    let typed = region
        .typed_map::<u64, i64>("typed", 2 * KEYS)
        .expect("Map<u64, i64> in the region");

    keyed(
        &mut g,
        "shmstate_bytemap",
        bytes,
        |m| {
            for i in 0..KEYS {
                m.insert(&key(i).to_le_bytes(), &0i64.to_le_bytes())
                    .expect("reset the ByteMap");
            }
        },
        |m, i| u64::from(m.incr(&key(i).to_le_bytes(), 1, 0).expect("ByteMap::incr") > 0),
        |m, iters| {
            let mut sum = 0i64;
            m.for_each(|_, v| sum += i64::from_le_bytes(v.try_into().unwrap()));
            assert_eq!(sum as u64, iters, "ByteMap counters");
        },
    );
    keyed(
        &mut g,
        "shmstate_map_i64",
        typed,
        |m| {
            for i in 0..KEYS {
                m.insert(key(i), 0).expect("reset the Map");
            }
        },
        |m, i| u64::from(m.incr(&key(i), 1, 0).expect("Map::incr") > 0),
        |m, iters| {
            let sum: i64 = m.snapshot().iter().map(|(_, v)| v).sum();
            assert_eq!(sum as u64, iters, "Map counters");
        },
    );
    keyed(
        &mut g,
        "shmstate_bytemap_handle",
        &bytes.handle().expect("ByteMap handle"),
        |h| {
            for i in 0..KEYS {
                h.insert(&key(i).to_le_bytes(), &0i64.to_le_bytes())
                    .expect("reset the ByteMap");
            }
        },
        |h, i| {
            u64::from(
                h.incr(&key(i).to_le_bytes(), 1, 0)
                    .expect("ByteMapHandle::incr")
                    > 0,
            )
        },
        |h, iters| {
            let mut sum = 0i64;
            h.map()
                .for_each(|_, v| sum += i64::from_le_bytes(v.try_into().unwrap()));
            assert_eq!(sum as u64, iters, "ByteMap counters");
        },
    );

    let std = std_map(|_| 0i64);
    keyed(
        &mut g,
        "std_rwlock_hashmap",
        &std,
        |m| m.write().unwrap().values_mut().for_each(|v| *v = 0),
        |m, i| {
            let mut m = m.write().unwrap();
            let v = m.entry(key(i)).or_insert(0);
            *v += 1;
            u64::from(*v > 0)
        },
        |m, iters| assert_eq!(m.read().unwrap().values().sum::<i64>() as u64, iters),
    );
    let dash = dash_map(|_| 0i64);
    keyed(
        &mut g,
        "dashmap",
        &dash,
        |m| m.iter_mut().for_each(|mut v| *v = 0),
        |m, i| {
            let mut v = m.entry(key(i)).or_insert(0);
            *v += 1;
            u64::from(*v > 0)
        },
        |m, iters| assert_eq!(m.iter().map(|v| *v).sum::<i64>() as u64, iters),
    );
    if let Some(r) = redis {
        keyed(
            &mut g,
            "redis",
            r,
            |r| {
                r.with(|r| {
                    for i in 0..KEYS {
                        r.set(&key(i).to_le_bytes(), b"0");
                    }
                })
            },
            |r, i| {
                let v = r.with(|r| r.call(&[b"INCR", &key(i).to_le_bytes()]));
                u64::from(matches!(v, Reply::Int(n) if n > 0))
            },
            |r, iters| {
                let sum: i64 = r.with(|r| {
                    (0..KEYS)
                        .map(|i| match r.call(&[b"GET", &key(i).to_le_bytes()]) {
                            Reply::Bulk(Some(v)) => {
                                std::str::from_utf8(&v).unwrap().parse::<i64>().unwrap()
                            }
                            other => panic!("redis GET: {other:?}"),
                        })
                        .sum()
                });
                assert_eq!(sum as u64, iters, "Redis counters");
            },
        );
    }
    g.finish();
}

/// Readers in processes: 1 then 2 processes each getting present keys (no writer), so the
/// time per iteration (one get by each reader) of the 2-process group over the 1-process
/// one says how much two readers slow each other down. Named as a scaling sweep, so that
/// benches/report.py puts both points in one table.
fn readers(c: &mut Criterion) {
    let region = region();
    let bytes = region
        .map("bytes", options())
        .expect("ByteMap in the region");
    let typed = region
        .typed_map::<u64, u64>("typed", 2 * KEYS)
        .expect("Map<u64, u64> in the region");
    for i in 0..KEYS {
        bytes
            .insert(&key(i).to_le_bytes(), &value(i).to_le_bytes())
            .expect("fill the ByteMap");
        typed.insert(key(i), value(i)).expect("fill the Map");
    }
    // Gets that found their key, summed by the readers after their loop.
    let found = Shm::new(AtomicU64::new(0));

    for w in [Workers::Processes(1), Workers::Processes(2)] {
        let mut g = common::group(c, format!("scaling_map_get_{}", w.label()));
        tune(&mut g, Weight::Spawning);
        g.throughput(Throughput::Elements(w.count() as u64));
        let n = w.count() as u64;
        // Relaxed: the count is read after the readers were counted done (Release/Acquire
        // in the runner).
        concurrent(
            &mut g,
            "shmstate_bytemap",
            w,
            n,
            &*found,
            |f| f.store(0, Relaxed),
            |f, r, iters| {
                let mut ok = 0;
                let mut i = r * KEYS / 2;
                for _ in 0..iters {
                    let v = bytes.get_with(&key(i).to_le_bytes(), |v| v.len());
                    ok += u64::from(v.expect("ByteMap::get_with") == Some(8));
                    i = if i + 1 == KEYS { 0 } else { i + 1 };
                }
                f.fetch_add(ok, Relaxed);
            },
            |f| f.load(Relaxed),
        );
        concurrent(
            &mut g,
            "shmstate_map_u64",
            w,
            n,
            &*found,
            |f| f.store(0, Relaxed),
            |f, r, iters| {
                let mut ok = 0;
                let mut i = r * KEYS / 2;
                for _ in 0..iters {
                    ok += u64::from(typed.get(&key(i)) == Some(value(i)));
                    i = if i + 1 == KEYS { 0 } else { i + 1 };
                }
                f.fetch_add(ok, Relaxed);
            },
            |f| f.load(Relaxed),
        );
        g.finish();
    }
}

fn all(c: &mut Criterion) {
    let redis = Redis::start().map(|r| RedisCell(std::cell::RefCell::new(r)));
    get(c, redis.as_ref());
    insert(c, redis.as_ref());
    incr(c, redis.as_ref());
    // The forked readers last, and after the Redis connection is closed: children must
    // not inherit it.
    drop(redis);
    readers(c);
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = all
}
criterion_main!(benches);
