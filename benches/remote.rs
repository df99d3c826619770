//! What a primitive's job costs once it moves to a networked engine, next to shmstate doing
//! the same job in a region, in one run: a lock round trip (Redis `SET NX PX` + a
//! compare-and-delete script, etcd's lock API with a lease), a stream message (Redis
//! Streams), and a small key-value put and get (etcd, NATS JetStream key-value). The
//! README's "When one machine is not enough" table is built from these rows and from the
//! Redis `GET`/`SET`/`INCR` rows of `benches/map.rs` (not repeated here).
//!
//! Every engine runs on this machine's loopback, one connection, one request in flight
//! (pipelining off): the floor of what the same call costs across hosts, where a network
//! round trip adds to every operation. Every row checks its result: the lock was granted
//! and released, the message read back is the one sent, the value read back is the one
//! stored, every put was acknowledged.
//!
//! The bench starts each engine itself on free loopback ports, without persistence where
//! the engine allows it, in a temporary directory, and kills it at the end; an engine
//! whose binary is not on `PATH` has its rows skipped with one printed line:
//!
//! - Redis: `redis-server` (`--save "" --appendonly no`), or the server at
//!   `SHMSTATE_REDIS_URL` (`redis://127.0.0.1:PORT`, which is flushed).
//! - etcd: `etcd` (3.4 or later, through its v3 JSON gateway over keep-alive HTTP/1.1).
//!   etcd writes and fsyncs its write-ahead log before it acknowledges a write, so its put
//!   and lock rows include a flush of the temporary directory's disk. The gateway runs
//!   inside etcd and passes each request on to etcd's own gRPC port over loopback: a
//!   native gRPC client saves that hop, so read the etcd rows as an upper bound.
//! - NATS: `nats-server` with JetStream (`-js`, file storage in the temporary directory;
//!   by default the file store does not fsync each write), through the text protocol.
//!
//! Install the engines (Debian, Ubuntu): `apt-get install -y redis-server etcd-server
//! nats-server`.
//!
//! The clients are minimal exchanges over a `TcpStream` (RESP for Redis, HTTP/1.1 with
//! JSON built by `format!` for etcd, the NATS text protocol), each with read and write
//! timeouts: an engine that stops answering or answers with an error fails the bench with
//! a message; nothing here waits without bound.
//!
//! Run: `cargo bench --bench remote` (smoke: `SHMSTATE_BENCH_QUICK=1 cargo bench --bench
//! remote`).

mod common;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Weight, tune};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use shmstate::{ByteMap, Channel, ChannelOptions, MapOptions, Mutex, Region};

/// How many keys the key-value rows cycle through (all present before a get is measured).
fn keys() -> usize {
    common::size(1000, 100)
}

/// The keys: key `i` is 8 bytes of text (`key-0042`), valid as an etcd key and as a NATS
/// subject token. Made before the benches, so no formatting is measured.
fn key_table(n: usize) -> Vec<[u8; 8]> {
    (0..n)
        .map(|i| {
            let mut k = *b"key-0000";
            write!(&mut k[4..], "{:04}", i % 10_000).expect("4 digits fit");
            k
        })
        .collect()
}

/// Value number `v`: its 8 little-endian bytes.
fn value(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// The stream rows' message size.
const MESSAGE: usize = 64;

/// A 64-byte message carrying `k` in its first 8 bytes.
fn message(k: u64) -> [u8; MESSAGE] {
    let mut m = [b'm'; MESSAGE];
    m[..8].copy_from_slice(&k.to_le_bytes());
    m
}

/// How long any engine may take to answer one request before the bench fails.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an engine may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A single-thread bench whose iteration `k` runs `op(state, k)`, which returns whether the
/// operation did what it should (lock granted and released, value read back); every
/// iteration of every sample must. `after(state, iters)` checks what the sample left.
fn checked<S: ?Sized>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    state: &S,
    op: impl Fn(&S, u64) -> bool,
    after: impl Fn(&S, u64),
) {
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut ok = 0u64;
            let t0 = Instant::now();
            for k in 0..iters {
                ok += u64::from(op(std::hint::black_box(state), std::hint::black_box(k)));
            }
            let elapsed = t0.elapsed();
            assert_eq!(ok, iters, "{id}: not every operation succeeded");
            after(state, iters);
            elapsed
        })
    });
}

fn nothing<S: ?Sized>(_: &S, _: u64) {}

// ---------------------------------------------------------------------------------------
// Engines: a process the bench started, its temporary directory, a connection.

/// A free loopback port: bind port 0, note the port, release it for the server.
fn free_port() -> Option<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

/// A server process started by the bench, killed (and its directory removed) on drop.
struct Server {
    child: Child,
    dir: Option<PathBuf>,
}

impl Server {
    /// Starts `bin` with `args`; `None`, with one printed line, when it cannot run.
    fn spawn(what: &str, bin: &str, args: &[String], dir: Option<PathBuf>) -> Option<Server> {
        match Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => Some(Server { child, dir }),
            Err(e) => {
                eprintln!(
                    "remote bench: skipping the {what} rows: cannot run {bin} ({e}); install \
                     it with `apt-get install -y {}`",
                    match what {
                        "etcd" => "etcd-server",
                        "NATS" => "nats-server",
                        _ => "redis-server",
                    }
                );
                if let Some(d) = dir {
                    let _ = std::fs::remove_dir_all(d);
                }
                None
            }
        }
    }

    /// Connects to `port` once the server listens; `None` (printed) if it never does.
    fn connect(&mut self, what: &str, port: u16) -> Option<Conn> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => return Some(Conn::new(s)),
                Err(e) if Instant::now() > deadline => {
                    eprintln!("remote bench: skipping the {what} rows: it did not listen: {e}");
                    return None;
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        eprintln!("remote bench: skipping the {what} rows: it exited ({status})");
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A fresh temporary directory for one engine's data.
fn temp_dir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shmstate-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a temporary directory");
    d
}

/// One TCP connection with bounded reads and writes, Nagle off (each request goes out at
/// once, as a client's does).
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl Conn {
    fn new(s: TcpStream) -> Conn {
        s.set_nodelay(true).expect("TCP_NODELAY");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        s.set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        let writer = s.try_clone().expect("clone the socket");
        Conn {
            reader: BufReader::new(s),
            writer,
            out: Vec::with_capacity(256),
            line: Vec::with_capacity(256),
        }
    }

    /// Sends what was written to `out`.
    fn flush(&mut self, what: &str) {
        self.writer
            .write_all(&self.out)
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        self.out.clear();
    }

    /// Reads one `\n`-terminated line (at most 64 KiB) into `line`, without the line end.
    fn read_line(&mut self, what: &str) -> &[u8] {
        self.line.clear();
        let n = (&mut self.reader)
            .take(64 << 10)
            .read_until(b'\n', &mut self.line)
            .unwrap_or_else(|e| panic!("{what}: read: {e}"));
        assert!(
            n > 0 && self.line.ends_with(b"\n"),
            "{what}: connection closed or line too long"
        );
        let end = self.line.len() - if self.line.ends_with(b"\r\n") { 2 } else { 1 };
        &self.line[..end]
    }

    /// Reads exactly `n` bytes (at most 16 MiB).
    fn read_exact(&mut self, what: &str, n: usize) -> Vec<u8> {
        assert!(n <= 16 << 20, "{what}: {n}-byte body");
        let mut v = vec![0; n];
        self.reader
            .read_exact(&mut v)
            .unwrap_or_else(|e| panic!("{what}: read: {e}"));
        v
    }
}

fn parse<T: std::str::FromStr>(what: &str, text: &[u8]) -> T {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad number {:?}", String::from_utf8_lossy(text)))
}

// ---------------------------------------------------------------------------------------
// Redis: RESP over one connection.

/// One RESP reply (an error reply fails the bench).
#[derive(Debug, PartialEq, Eq)]
enum Resp {
    Simple(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

struct Redis {
    _server: Option<Server>,
    conn: Conn,
}

/// The documented safe release of a `SET NX PX` lock: delete the key only if it still
/// holds this holder's token.
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

impl Redis {
    fn start() -> Option<Redis> {
        if let Ok(url) = std::env::var("SHMSTATE_REDIS_URL") {
            let addr = url.trim_start_matches("redis://").trim_end_matches('/');
            return match TcpStream::connect(addr) {
                Ok(s) => Some(Redis::over(Conn::new(s), None)),
                Err(e) => {
                    eprintln!(
                        "remote bench: skipping the Redis rows: cannot connect to {url}: {e}"
                    );
                    None
                }
            };
        }
        let port = free_port()?;
        let args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut server = Server::spawn("Redis", "redis-server", &args, None)?;
        let conn = server.connect("Redis", port)?;
        Some(Redis::over(conn, Some(server)))
    }

    fn over(conn: Conn, server: Option<Server>) -> Redis {
        let mut r = Redis {
            _server: server,
            conn,
        };
        assert_eq!(r.call(&[b"FLUSHDB"]), Resp::Simple(b"OK".to_vec()));
        r
    }

    /// Sends one command and reads its reply (one round trip).
    fn call(&mut self, args: &[&[u8]]) -> Resp {
        let out = &mut self.conn.out;
        write!(out, "*{}\r\n", args.len()).unwrap();
        for a in args {
            write!(out, "${}\r\n", a.len()).unwrap();
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.conn.flush("redis");
        self.reply(0)
    }

    /// Reads one reply; nested arrays at most 8 deep, at most 1024 elements each.
    fn reply(&mut self, depth: u32) -> Resp {
        assert!(depth < 8, "redis: reply nested too deep");
        let line = self.conn.read_line("redis");
        let (kind, text) = line
            .split_first()
            .unwrap_or_else(|| panic!("redis: empty reply line"));
        let text = text.to_vec();
        match kind {
            b'+' => Resp::Simple(text),
            b'-' => panic!("redis error: {}", String::from_utf8_lossy(&text)),
            b':' => Resp::Int(parse("redis integer", &text)),
            b'$' => {
                let n: i64 = parse("redis bulk length", &text);
                if n < 0 {
                    return Resp::Bulk(None);
                }
                let mut v = self.conn.read_exact("redis bulk", n as usize + 2);
                v.truncate(n as usize);
                Resp::Bulk(Some(v))
            }
            b'*' => {
                let n: i64 = parse("redis array length", &text);
                if n < 0 {
                    return Resp::Array(None);
                }
                assert!(n <= 1024, "redis: {n}-element array");
                Resp::Array(Some((0..n).map(|_| self.reply(depth + 1)).collect()))
            }
            _ => panic!("redis: {}", String::from_utf8_lossy(line)),
        }
    }
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream: `(id, field values)`.
/// Shape: `[[stream, [[id, [field, value, ..]], ..]]]`.
fn stream_entries(r: Resp) -> Vec<(Vec<u8>, Vec<Vec<u8>>)> {
    let Resp::Array(Some(streams)) = r else {
        panic!("redis stream read: {r:?}")
    };
    let mut out = Vec::new();
    for s in streams {
        let Resp::Array(Some(mut s)) = s else {
            panic!("redis stream read: {s:?}")
        };
        let Some(Resp::Array(Some(entries))) = s.pop() else {
            panic!("redis stream read: no entries")
        };
        for e in entries {
            let Resp::Array(Some(mut e)) = e else {
                panic!("redis stream entry: {e:?}")
            };
            let (Some(Resp::Array(Some(fields))), Some(Resp::Bulk(Some(id)))) = (e.pop(), e.pop())
            else {
                panic!("redis stream entry: {e:?}")
            };
            let fields = fields
                .into_iter()
                .map(|f| match f {
                    Resp::Bulk(Some(b)) => b,
                    other => panic!("redis stream field: {other:?}"),
                })
                .collect();
            out.push((id, fields));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// etcd: the v3 JSON gateway over one keep-alive HTTP/1.1 connection.

struct Etcd {
    _server: Server,
    conn: Conn,
    host: String,
}

impl Etcd {
    fn start() -> Option<Etcd> {
        let client = free_port()?;
        // Another free port for the member's peer traffic (the kernel may hand out the
        // same one again once it is released).
        let peer = (0..8).filter_map(|_| free_port()).find(|&p| p != client)?;
        let dir = temp_dir("etcd");
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let args: Vec<String> = vec![
            "--name".into(),
            "bench".into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--listen-client-urls".into(),
            c.clone(),
            "--advertise-client-urls".into(),
            c,
            "--listen-peer-urls".into(),
            p.clone(),
            "--initial-advertise-peer-urls".into(),
            p.clone(),
            "--initial-cluster".into(),
            format!("bench={p}"),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "error".into(),
        ];
        let mut server = Server::spawn("etcd", "etcd", &args, Some(dir))?;
        let conn = server.connect("etcd", client)?;
        let mut e = Etcd {
            _server: server,
            conn,
            host: format!("127.0.0.1:{client}"),
        };
        // Listening comes before the member has elected itself leader: wait for a put.
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = format!(r#"{{"key":"{}","value":""}}"#, b64(b"probe"));
        while e.try_post("/v3/kv/put", &probe).0 != 200 {
            if Instant::now() > deadline {
                eprintln!(
                    "remote bench: skipping the etcd rows: no leader after {START_TIMEOUT:?}"
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(e)
    }

    /// One POST of a JSON body; the status and the response body.
    fn try_post(&mut self, path: &str, json: &str) -> (u16, String) {
        write!(
            self.conn.out,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{json}",
            self.host,
            json.len()
        )
        .unwrap();
        self.conn.flush("etcd");
        let status_line = self.conn.read_line("etcd status").to_vec();
        let status: u16 = status_line
            .split(|&b| b == b' ')
            .nth(1)
            .map(|s| parse("etcd status", s))
            .unwrap_or_else(|| panic!("etcd: {}", String::from_utf8_lossy(&status_line)));
        let (mut length, mut chunked) = (None, false);
        for _ in 0..64 {
            let h = self.conn.read_line("etcd header");
            if h.is_empty() {
                break;
            }
            let h = String::from_utf8_lossy(h).to_ascii_lowercase();
            if let Some(v) = h.strip_prefix("content-length:") {
                length = Some(parse::<usize>("etcd content-length", v.as_bytes()));
            } else if h.starts_with("transfer-encoding:") && h.contains("chunked") {
                chunked = true;
            }
        }
        let body = if let Some(n) = length {
            self.conn.read_exact("etcd body", n)
        } else if chunked {
            let mut body = Vec::new();
            loop {
                let size = self.conn.read_line("etcd chunk").to_vec();
                let size = usize::from_str_radix(String::from_utf8_lossy(&size).trim(), 16)
                    .unwrap_or_else(|_| panic!("etcd: bad chunk size"));
                let chunk = self.conn.read_exact("etcd chunk", size + 2);
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
                assert!(body.len() <= 16 << 20, "etcd: body too long");
            }
            body
        } else {
            panic!("etcd: response without a length")
        };
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// One POST that must succeed; the response body.
    fn post(&mut self, path: &str, json: &str) -> String {
        let (status, body) = self.try_post(path, json);
        assert_eq!(status, 200, "etcd {path}: {body}");
        body
    }

    fn put(&mut self, k: &[u8], v: &[u8]) -> bool {
        let body = self.post(
            "/v3/kv/put",
            &format!(r#"{{"key":"{}","value":"{}"}}"#, b64(k), b64(v)),
        );
        body.contains(r#""revision":"#)
    }

    /// The value under `k`, base64-encoded as the gateway returns it: a linearizable read
    /// (etcd's default: the member confirms with the cluster that it still leads), or with
    /// `serializable`, the member's local copy, which may be stale on a follower.
    fn range(&mut self, k: &[u8], serializable: bool) -> Option<String> {
        let body = self.post(
            "/v3/kv/range",
            &format!(r#"{{"key":"{}","serializable":{serializable}}}"#, b64(k)),
        );
        json_str(&body, "value").map(str::to_owned)
    }

    fn get(&mut self, k: &[u8]) -> Option<String> {
        self.range(k, false)
    }
}

/// The string value of the first `"field":"..."` in `json` (base64 and numbers, which the
/// gateway writes as strings, have no escapes).
fn json_str<'a>(json: &'a str, field: &str) -> Option<&'a str> {
    let start = json.find(&format!(r#""{field}":""#))? + field.len() + 4;
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

/// Standard base64 with padding, as etcd's gateway writes bytes.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            s.push(if i <= c.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// NATS: the text protocol, JetStream key-value through its API subjects.

struct Nats {
    _server: Server,
    conn: Conn,
}

/// The bucket of the key-value rows: stream `KV_bench`, subjects `$KV.bench.>`.
const BUCKET: &str = "bench";

/// Where replies come back (one request in flight at a time).
const INBOX: &str = "_INBOX.bench.reply";

/// One message delivered to the inbox: its headers (`HMSG`), if any, and its payload.
struct NatsMsg {
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl Nats {
    fn start() -> Option<Nats> {
        let port = free_port()?;
        let dir = temp_dir("nats");
        let args: Vec<String> = vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            dir.display().to_string(),
        ];
        let mut server = Server::spawn("NATS", "nats-server", &args, Some(dir))?;
        let conn = server.connect("NATS", port)?;
        let mut n = Nats {
            _server: server,
            conn,
        };
        let info = n.conn.read_line("nats INFO").to_vec();
        assert!(info.starts_with(b"INFO "), "nats: expected INFO");
        // `headers` to receive HMSG (direct get answers with headers), `no_responders` so
        // that a request nobody serves fails at once (a 503 status) instead of timing out.
        n.conn.out.extend_from_slice(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
              \"no_responders\":true}\r\nPING\r\n",
        );
        n.conn.flush("nats");
        n.expect_pong();
        write!(n.conn.out, "SUB {INBOX} 1\r\n").unwrap();
        n.conn.flush("nats");
        // A bucket as the official clients create it: one value per key, direct gets on.
        let config = format!(
            r#"{{"name":"KV_{BUCKET}","subjects":["$KV.{BUCKET}.>"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":1,"max_msg_size":-1,"discard":"new","storage":"file","num_replicas":1,"duplicate_window":120000000000,"deny_delete":true,"deny_purge":false,"allow_rollup_hdrs":true,"allow_direct":true}}"#
        );
        let reply = n.request(
            &format!("$JS.API.STREAM.CREATE.KV_{BUCKET}"),
            config.as_bytes(),
        );
        let text = String::from_utf8_lossy(&reply.payload);
        if text.contains(r#""error""#) || reply.headers.is_some() {
            eprintln!("remote bench: skipping the NATS rows: cannot create the bucket: {text}");
            return None;
        }
        Some(n)
    }

    fn expect_pong(&mut self) {
        for _ in 0..16 {
            let line = self.conn.read_line("nats").to_vec();
            match line.as_slice() {
                b"PONG" => return,
                b"+OK" => {}
                l if l.starts_with(b"INFO ") => {}
                l => panic!("nats: {}", String::from_utf8_lossy(l)),
            }
        }
        panic!("nats: no PONG");
    }

    /// Publishes `payload` to `subject` with the inbox as reply subject and returns the
    /// reply; answers the server's PINGs on the way, fails on `-ERR`.
    fn request(&mut self, subject: &str, payload: &[u8]) -> NatsMsg {
        write!(self.conn.out, "PUB {subject} {INBOX} {}\r\n", payload.len()).unwrap();
        self.conn.out.extend_from_slice(payload);
        self.conn.out.extend_from_slice(b"\r\n");
        self.conn.flush("nats");
        for _ in 0..16 {
            let line = self.conn.read_line("nats").to_vec();
            let words: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .collect();
            match words.first().copied() {
                Some(b"PING") => {
                    self.conn.out.extend_from_slice(b"PONG\r\n");
                    self.conn.flush("nats");
                }
                Some(b"+OK") | Some(b"PONG") | Some(b"INFO") => {}
                // MSG <subject> <sid> [reply] <bytes>
                Some(b"MSG") if words.len() >= 4 => {
                    assert_eq!(
                        words[1],
                        INBOX.as_bytes(),
                        "nats: message on another subject"
                    );
                    let n = parse("nats MSG length", words[words.len() - 1]);
                    let mut payload = self.conn.read_exact("nats MSG", n + 2);
                    payload.truncate(n);
                    return NatsMsg {
                        headers: None,
                        payload,
                    };
                }
                // HMSG <subject> <sid> [reply] <header bytes> <total bytes>
                Some(b"HMSG") if words.len() >= 5 => {
                    assert_eq!(
                        words[1],
                        INBOX.as_bytes(),
                        "nats: message on another subject"
                    );
                    let h: usize = parse("nats HMSG header length", words[words.len() - 2]);
                    let t: usize = parse("nats HMSG length", words[words.len() - 1]);
                    assert!(h <= t, "nats: header longer than message");
                    let mut all = self.conn.read_exact("nats HMSG", t + 2);
                    all.truncate(t);
                    let payload = all.split_off(h);
                    return NatsMsg {
                        headers: Some(all),
                        payload,
                    };
                }
                _ => panic!("nats: {}", String::from_utf8_lossy(&line)),
            }
        }
        panic!("nats: no reply to {subject}");
    }

    /// A key-value put: publish to the key's subject, wait for JetStream's ack.
    fn put(&mut self, k: &[u8], v: &[u8]) -> bool {
        let k = std::str::from_utf8(k).expect("text key");
        let ack = self.request(&format!("$KV.{BUCKET}.{k}"), v);
        let text = std::str::from_utf8(&ack.payload).unwrap_or("");
        ack.headers.is_none() && text.contains(r#""seq":"#) && !text.contains(r#""error""#)
    }

    /// A key-value get: a direct get of the last message on the key's subject; `None` for
    /// a status reply (404 when the key is missing).
    fn get(&mut self, k: &[u8]) -> Option<Vec<u8>> {
        let k = std::str::from_utf8(k).expect("text key");
        let m = self.request(
            &format!("$JS.API.DIRECT.GET.KV_{BUCKET}.$KV.{BUCKET}.{k}"),
            b"",
        );
        // A found message's header block starts with the bare version line.
        let h = m.headers.as_deref().unwrap_or(b"");
        h.starts_with(b"NATS/1.0\r\n").then_some(m.payload)
    }
}

// ---------------------------------------------------------------------------------------
// The groups.

/// Engines reachable from the `Fn` closures of the benches (criterion runs them on this
/// thread only).
struct Engines {
    redis: Option<RefCell<Redis>>,
    etcd: Option<RefCell<Etcd>>,
    nats: Option<RefCell<Nats>>,
}

/// A lock round trip: acquire, then release, of an uncontended lock.
fn lock(c: &mut Criterion, e: &Engines) {
    let mut g = common::group(c, "remote_lock_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    // shmstate: the robust mutex in a region; the increment under it counts the grants.
    let region = Region::anonymous(1 << 20).expect("anonymous region");
    let m = region
        .get_or_default::<Mutex<u64>>("lock")
        .expect("Mutex in the region");
    let start = RefCell::new(0u64);
    checked(
        &mut g,
        "shmstate_mutex",
        &(m, &start),
        |(m, _), _| {
            *m.lock().expect("no owner died") += 1;
            true
        },
        |(m, start), iters| {
            let now = *m.lock().unwrap();
            assert_eq!(
                now - start.replace(now),
                iters,
                "shmstate_mutex: lost a grant"
            );
        },
    );

    // Redis: `SET lock token NX PX 30000` (granted: +OK; held: a null reply) and the
    // compare-and-delete script by its SHA1, as client libraries run it (`EVALSHA`).
    if let Some(r) = &e.redis {
        let sha = match r
            .borrow_mut()
            .call(&[b"SCRIPT", b"LOAD", RELEASE.as_bytes()])
        {
            Resp::Bulk(Some(sha)) => sha,
            other => panic!("redis SCRIPT LOAD: {other:?}"),
        };
        checked(
            &mut g,
            "redis_set_nx_px_evalsha",
            r,
            |r, k| {
                let mut r = r.borrow_mut();
                let token = value(k);
                let granted = r.call(&[b"SET", b"lock", &token, b"NX", b"PX", b"30000"])
                    == Resp::Simple(b"OK".to_vec());
                let released = r.call(&[b"EVALSHA", &sha, b"1", b"lock", &token]) == Resp::Int(1);
                granted && released
            },
            nothing,
        );
    }

    // etcd: the lock API under one lease (granted before the group, as a client's session
    // holds one lease for all its locks); Lock returns the key that is held until Unlock.
    if let Some(et) = &e.etcd {
        let body = et.borrow_mut().post("/v3/lease/grant", r#"{"TTL":3600}"#);
        let lease = json_str(&body, "ID")
            .unwrap_or_else(|| panic!("etcd lease grant: {body}"))
            .to_owned();
        let name = b64(b"bench-lock");
        checked(
            &mut g,
            "etcd_lock_unlock",
            et,
            |et, _| {
                let mut et = et.borrow_mut();
                let body = et.post(
                    "/v3/lock/lock",
                    &format!(r#"{{"name":"{name}","lease":"{lease}"}}"#),
                );
                let Some(key) = json_str(&body, "key") else {
                    return false;
                };
                let body = et.post("/v3/lock/unlock", &format!(r#"{{"key":"{key}"}}"#));
                body.contains(r#""revision":"#)
            },
            nothing,
        );
    }
    g.finish();
}

/// One 64-byte message through a stream or channel and back out, one thread.
fn stream(c: &mut Criterion, e: &Engines) {
    let mut g = common::group(c, format!("remote_stream_{MESSAGE}B_1thread"));
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));

    let region = Region::anonymous(4 << 20).expect("anonymous region");
    let ch: &Channel = region
        .channel("stream", ChannelOptions::new(64 << 10).max_message(MESSAGE))
        .expect("channel");
    let buf = RefCell::new([0u8; MESSAGE]);
    checked(
        &mut g,
        "shmstate_channel",
        &(ch, &buf),
        |(ch, buf), k| {
            ch.send(&message(k)).expect("send");
            let mut buf = buf.borrow_mut();
            let n = ch.recv_into(&mut buf[..]).expect("recv");
            n == MESSAGE && *buf == message(k)
        },
        nothing,
    );

    if let Some(r) = &e.redis {
        // `XADD` (the stream capped near 1,000 entries), then `XREAD COUNT 1` after the
        // last id read: two round trips, no delivery tracking.
        let last = RefCell::new(b"0-0".to_vec());
        checked(
            &mut g,
            "redis_xadd_xread",
            &(r, &last),
            |(r, last), k| {
                let mut r = r.borrow_mut();
                let m = message(k);
                let id = r.call(&[b"XADD", b"s", b"MAXLEN", b"~", b"1000", b"*", b"m", &m]);
                let Resp::Bulk(Some(id)) = id else {
                    panic!("redis XADD: {id:?}")
                };
                let mut last = last.borrow_mut();
                let got =
                    stream_entries(r.call(&[b"XREAD", b"COUNT", b"1", b"STREAMS", b"s", &last]));
                let ok =
                    got.len() == 1 && got[0].0 == id && got[0].1 == [b"m".to_vec(), m.to_vec()];
                *last = id;
                ok
            },
            nothing,
        );
        // With a consumer group: `XADD`, `XREADGROUP ... >` and `XACK`, three round trips,
        // the at-least-once delivery a consumer that can die needs.
        assert_eq!(
            r.borrow_mut()
                .call(&[b"XGROUP", b"CREATE", b"g", b"g", b"$", b"MKSTREAM"]),
            Resp::Simple(b"OK".to_vec())
        );
        checked(
            &mut g,
            "redis_xadd_xreadgroup_xack",
            r,
            |r, k| {
                let mut r = r.borrow_mut();
                let m = message(k);
                let id = r.call(&[b"XADD", b"g", b"MAXLEN", b"~", b"1000", b"*", b"m", &m]);
                let Resp::Bulk(Some(id)) = id else {
                    panic!("redis XADD: {id:?}")
                };
                let got = stream_entries(r.call(&[
                    b"XREADGROUP",
                    b"GROUP",
                    b"g",
                    b"c",
                    b"COUNT",
                    b"1",
                    b"STREAMS",
                    b"g",
                    b">",
                ]));
                let ok =
                    got.len() == 1 && got[0].0 == id && got[0].1 == [b"m".to_vec(), m.to_vec()];
                ok && r.call(&[b"XACK", b"g", b"g", &id]) == Resp::Int(1)
            },
            nothing,
        );
    }
    g.finish();
}

/// The shmstate side of the key-value rows: a `ByteMap` for 8-byte keys and values.
fn bytemap(region: &Region) -> &ByteMap {
    region
        .map("kv", MapOptions::new(2 * keys()).key_max(8).value_max(8))
        .expect("ByteMap in the region")
}

/// Put of an 8-byte value over a present 8-byte key; after the sample, the last key put
/// must read back the last value put.
fn put(c: &mut Criterion, e: &Engines) {
    let mut g = common::group(c, "remote_kv_put_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));
    let n = keys();
    let keys = key_table(n);
    let key = |i: usize| keys[i];
    let last = |iters: u64| (key(((iters - 1) as usize) % n), value(iters - 1));

    let region = Region::anonymous(4 << 20).expect("anonymous region");
    let map = bytemap(&region);
    for i in 0..n {
        map.set(&key(i), &value(i as u64))
            .expect("fill the ByteMap");
    }
    checked(
        &mut g,
        "shmstate_bytemap_set",
        map,
        |m, k| {
            !m.set(&key(k as usize % n), &value(k))
                .expect("ByteMap::set")
        },
        |m, iters| {
            let (k, v) = last(iters);
            assert_eq!(m.get_with(&k, |got| got == v).unwrap(), Some(true));
        },
    );
    if let Some(et) = &e.etcd {
        checked(
            &mut g,
            "etcd_put",
            et,
            |et, k| et.borrow_mut().put(&key(k as usize % n), &value(k)),
            |et, iters| {
                let (k, v) = last(iters);
                assert_eq!(et.borrow_mut().get(&k), Some(b64(&v)), "etcd read back");
            },
        );
    }
    if let Some(na) = &e.nats {
        checked(
            &mut g,
            "nats_kv_put",
            na,
            |na, k| na.borrow_mut().put(&key(k as usize % n), &value(k)),
            |na, iters| {
                let (k, v) = last(iters);
                assert_eq!(na.borrow_mut().get(&k), Some(v.to_vec()), "NATS read back");
            },
        );
    }
    g.finish();
}

/// Get of a present 8-byte key, checked against the value stored before the group.
fn get(c: &mut Criterion, e: &Engines) {
    let mut g = common::group(c, "remote_kv_get_1thread");
    tune(&mut g, Weight::Single);
    g.throughput(Throughput::Elements(1));
    let n = keys();
    let keys = key_table(n);
    let key = |i: usize| keys[i];

    let region = Region::anonymous(4 << 20).expect("anonymous region");
    let map = bytemap(&region);
    for i in 0..n {
        map.set(&key(i), &value(i as u64))
            .expect("fill the ByteMap");
    }
    checked(
        &mut g,
        "shmstate_bytemap",
        map,
        |m, k| {
            let i = k as usize % n;
            m.get_with(&key(i), |v| v == value(i as u64))
                .expect("get_with")
                == Some(true)
        },
        nothing,
    );
    if let Some(et) = &e.etcd {
        let expected: Vec<String> = (0..n).map(|i| b64(&value(i as u64))).collect();
        for i in 0..n {
            assert!(et.borrow_mut().put(&key(i), &value(i as u64)), "fill etcd");
        }
        checked(
            &mut g,
            "etcd_range",
            et,
            |et, k| {
                let i = k as usize % n;
                et.borrow_mut().get(&key(i)).as_deref() == Some(expected[i].as_str())
            },
            nothing,
        );
        checked(
            &mut g,
            "etcd_range_serializable",
            et,
            |et, k| {
                let i = k as usize % n;
                et.borrow_mut().range(&key(i), true).as_deref() == Some(expected[i].as_str())
            },
            nothing,
        );
    }
    if let Some(na) = &e.nats {
        for i in 0..n {
            assert!(na.borrow_mut().put(&key(i), &value(i as u64)), "fill NATS");
        }
        checked(
            &mut g,
            "nats_kv_get",
            na,
            |na, k| {
                let i = k as usize % n;
                na.borrow_mut().get(&key(i)).as_deref() == Some(&value(i as u64)[..])
            },
            nothing,
        );
    }
    g.finish();
}

fn all(c: &mut Criterion) {
    let engines = Engines {
        redis: Redis::start().map(RefCell::new),
        etcd: Etcd::start().map(RefCell::new),
        nats: Nats::start().map(RefCell::new),
    };
    lock(c, &engines);
    stream(c, &engines);
    put(c, &engines);
    get(c, &engines);
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = all
}
criterion_main!(benches);
