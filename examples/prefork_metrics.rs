//! Prometheus metrics for a pre-forked service: a parent forks worker processes that
//! count requests by route (labelled counters) and observe their latencies into one
//! histogram, all in one region; the parent serves `/metrics` over HTTP while they run,
//! rendering the region at each scrape.
//!
//! Run:
//!
//! - `cargo run --example prefork_metrics` prints the exposition once the workers are done
//!   (what a scrape after the run returns).
//! - `cargo run --example prefork_metrics -- --listen 127.0.0.1:9464 --requests 100000000`
//!   serves http://127.0.0.1:9464/metrics while the workers run (`--listen 127.0.0.1:0`
//!   picks a free port). The first line on stdout is `listening on http://ADDR/metrics`
//!   (the bound address); `workers done` follows when every worker has exited. The parent
//!   exits after answering one scrape that shows `workers_running 0`: the final counts.
//! - With a path (`-- /dev/shm/web.metrics`, with or without `--listen`) the region is a
//!   file, which `shmstate serve-metrics /dev/shm/web.metrics` can serve from outside.
//!
//! `--requests N` sets the requests per worker (default 10,000). The requests are
//! simulated and deterministic, so the final exposition is the same at every run:
//! latencies are multiples of 1/256 s (exact in binary), so even the floating-point sum
//! does not depend on the order in which workers add.

use std::error::Error;
use std::ffi::OsString;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{Pid, WaitOptions};
use shmstate::{Region, Value, metrics};

const WORKERS: u64 = 4;
const ROUTES: [&str; 3] = ["/", "/api/users", "/static"];
const LATENCY_BOUNDS: [f64; 5] = [0.01, 0.05, 0.1, 0.25, 0.5];
/// The exposition's content type (text format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The command line: `[--listen ADDR] [--requests N] [PATH]`.
struct Args {
    listen: Option<SocketAddr>,
    requests: u64,
    path: Option<OsString>,
}

fn parse_args() -> Result<Args, Box<dyn Error>> {
    let mut args = Args {
        listen: None,
        requests: 10_000,
        path: None,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| -> Result<String, Box<dyn Error>> {
            it.next()
                .and_then(|v| v.into_string().ok())
                .ok_or_else(|| format!("{flag} needs a value").into())
        };
        match arg.to_str() {
            Some("--listen") => args.listen = Some(value("--listen")?.parse()?),
            Some("--requests") => args.requests = value("--requests")?.parse()?,
            Some(flag) if flag.starts_with("--") => {
                return Err(format!(
                    "unknown flag {flag}; usage: [--listen ADDR] [--requests N] [PATH]"
                )
                .into());
            }
            _ => args.path = Some(arg),
        }
    }
    Ok(args)
}

/// A worker's request loop: what a pre-forked server's request handler does per request.
fn worker(region: &Region, w: u64, requests: u64) -> Result<(), Box<dyn Error>> {
    // Each worker opens the metric objects by name (the parent created them; a worker
    // forked or started later would create them itself on first use).
    let latency = metrics::histogram(region, "http_request_duration_seconds", &LATENCY_BOUNDS)?;
    let by_route: Vec<_> = ROUTES
        .iter()
        .map(|r| metrics::counter(region, &format!("http_requests_total{{route=\"{r}\"}}")))
        .collect::<Result<_, _>>()?;
    for i in 0..requests {
        let route = ((i + w) % ROUTES.len() as u64) as usize;
        // "Handle" the request: a simulated latency of 0 to 127/256 s.
        let seconds = ((i * 37 + w * 11) % 128) as f64 / 256.0;
        by_route[route].inc();
        latency.observe(seconds);
    }
    Ok(())
}

/// Forks the workers. The children close their copy of `listener` (only the parent
/// accepts), run [`worker`] and exit.
fn fork_workers(
    region: &Region,
    requests: u64,
    listener: &mut Option<TcpListener>,
) -> Result<Vec<Pid>, Box<dyn Error>> {
    let mut pids = Vec::new();
    for w in 0..WORKERS {
        // SAFETY: after `fork` in a multi-threaded process the child may only call
        // async-signal-safe functions; this program forks before it starts any thread,
        // so the child may run any code. The child never returns from this block (it
        // ends with `_exit`).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if pid == 0 {
            // The child's copy of the listening socket: closed, so that the port closes
            // when the parent exits, whatever the workers do.
            drop(listener.take());
            // AssertUnwindSafe: after a panic the child only exits.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker(region, w, requests).is_ok()
            }))
            .unwrap_or(false);
            // SAFETY: `_exit` has no preconditions; it ends the child at once, without
            // running exit handlers or flushing the stdio buffers it shares with the parent.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        pids.push(Pid::from_raw(pid).expect("fork returned a positive pid"));
    }
    Ok(pids)
}

/// Waits for each worker in turn; `exited(n)` is called with the number still running
/// after each one exits. A worker that failed ends the wait with an error.
fn wait_workers(pids: &[Pid], mut exited: impl FnMut(u64)) -> Result<(), String> {
    for (k, &pid) in pids.iter().enumerate() {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, s))) if s.exit_status() == Some(0) => {}
            other => return Err(format!("worker {} failed: {other:?}", pid.as_raw_nonzero())),
        }
        exited((pids.len() - k - 1) as u64);
    }
    Ok(())
}

/// Sets TCP_NODELAY on `listener`, which the connections it accepts inherit (on Linux):
/// a response goes out at once, rather than its last segment waiting for the scraper's
/// delayed ACK (40 ms) on a kept-alive connection, as Prometheus keeps them.
fn set_nodelay(listener: &TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is the listener's, open for this call; the option value
    // points to a live `c_int` whose size is passed as the option length.
    let r = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Serves `/metrics` on `listener` until the workers are done and one scrape has shown
/// it (`workers_running 0`).
fn serve(
    listener: TcpListener,
    region: &Region,
    running: &Value<u64>,
    pids: &[Pid],
) -> Result<(), Box<dyn Error>> {
    let server = tiny_http::Server::from_listener(listener, None).map_err(|e| e.to_string())?;
    // The workers still running, as the waiting thread counts them.
    let alive = AtomicU64::new(pids.len() as u64);
    let waited = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let r = wait_workers(pids, |n| {
                // Release: pairs with the Acquire load in the request loop, so that a
                // scrape that reads `n` is rendered after the exits it counts.
                alive.store(n, Ordering::Release);
            });
            match &r {
                Ok(()) => {
                    println!("workers done");
                    let _ = std::io::stdout().flush();
                }
                // Stop serving: the error is the program's result.
                Err(_) => server.unblock(),
            }
            r
        });
        for request in server.incoming_requests() {
            use tiny_http::Method::{Get, Head};
            let (response, last) = match (request.method(), request.url()) {
                (Get | Head, "/metrics") => {
                    // Acquire: pairs with the waiter's Release store above.
                    let n = alive.load(Ordering::Acquire);
                    // Only this thread writes the gauge, so the scrape shows `n`: the
                    // count this loop decides on.
                    running.store(n, Ordering::Relaxed);
                    let mut body = Vec::new();
                    metrics::render_prometheus(region, &mut body)
                        .expect("rendering into a Vec cannot fail");
                    let ct = tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE)
                        .expect("an ASCII header is valid");
                    (tiny_http::Response::from_data(body).with_header(ct), n == 0)
                }
                (Get | Head, _) => (
                    tiny_http::Response::from_string("not found; try /metrics\n")
                        .with_status_code(404),
                    false,
                ),
                _ => (
                    tiny_http::Response::from_string("only GET and HEAD\n").with_status_code(405),
                    false,
                ),
            };
            // A client that went away is its own problem; keep serving.
            let _ = request.respond(response);
            if last {
                break;
            }
        }
        waiter.join().expect("the waiting thread does not panic")
    });
    Ok(waited?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let region = match &args.path {
        Some(path) => Region::open_or_create(path, 1 << 20)?,
        None => Region::anonymous(1 << 20)?,
    };
    // Created before forking, so that the exposition lists the routes in this order.
    metrics::histogram(&region, "http_request_duration_seconds", &LATENCY_BOUNDS)?;
    for r in ROUTES {
        metrics::counter(&region, &format!("http_requests_total{{route=\"{r}\"}}"))?;
    }
    // Relaxed: the stores are published to the workers by `fork` and to a scrape by its
    // own thread (the parent is the only writer of both gauges).
    metrics::gauge::<u64>(&region, "workers")?.store(WORKERS, Ordering::Relaxed);
    let running = metrics::gauge::<u64>(&region, "workers_running")?;
    running.store(WORKERS, Ordering::Relaxed);

    // Bound before forking (and before any thread starts), so that a client can connect
    // as soon as it reads the address.
    let mut listener = match args.listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)?;
            set_nodelay(&l)?;
            println!("listening on http://{}/metrics", l.local_addr()?);
            std::io::stdout().flush()?;
            Some(l)
        }
        None => None,
    };
    let pids = fork_workers(&region, args.requests, &mut listener)?;
    match listener {
        Some(l) => serve(l, &region, running, &pids),
        None => {
            wait_workers(&pids, |n| running.store(n, Ordering::Relaxed))?;
            // What a scrape of the parent's `/metrics` returns now (or `shmstate metrics
            // FILE` with a path).
            metrics::render_prometheus(&region, &mut std::io::stdout().lock())?;
            Ok(())
        }
    }
}
