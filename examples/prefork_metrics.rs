//! Prometheus metrics for a pre-forked service: a parent forks worker processes that
//! count requests by route (labelled counters) and observe their latencies into one
//! histogram, all in one region; the parent then renders the exposition.
//!
//! Run: `cargo run --example prefork_metrics` (or with a path, to keep the region in a
//! file and serve it: `cargo run --example prefork_metrics -- /dev/shm/web.metrics`, then
//! `shmstate serve-metrics /dev/shm/web.metrics` and scrape http://127.0.0.1:9464/metrics).
//!
//! The requests are simulated and deterministic, so the output is the same at every run:
//! latencies are multiples of 1/256 s (exact in binary), so even the floating-point sum
//! does not depend on the order in which workers add.

use std::error::Error;

use rustix::process::{Pid, WaitOptions};
use shmstate::{Region, metrics};

const WORKERS: u64 = 4;
const REQUESTS_PER_WORKER: u64 = 10_000;
const ROUTES: [&str; 3] = ["/", "/api/users", "/static"];
const LATENCY_BOUNDS: [f64; 5] = [0.01, 0.05, 0.1, 0.25, 0.5];

/// A worker's request loop: what a pre-forked server's request handler does per request.
fn worker(region: &Region, w: u64) -> Result<(), Box<dyn Error>> {
    // Each worker opens the metric objects by name (the parent created them; a worker
    // forked or started later would create them itself on first use).
    let latency = metrics::histogram(region, "http_request_duration_seconds", &LATENCY_BOUNDS)?;
    let by_route: Vec<_> = ROUTES
        .iter()
        .map(|r| metrics::counter(region, &format!("http_requests_total{{route=\"{r}\"}}")))
        .collect::<Result<_, _>>()?;
    for i in 0..REQUESTS_PER_WORKER {
        let route = ((i + w) % ROUTES.len() as u64) as usize;
        // "Handle" the request: a simulated latency of 0 to 127/256 s.
        let seconds = ((i * 37 + w * 11) % 128) as f64 / 256.0;
        by_route[route].inc();
        latency.observe(seconds);
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let region = match std::env::args_os().nth(1) {
        Some(path) => Region::open_or_create(path, 1 << 20)?,
        None => Region::anonymous(1 << 20)?,
    };
    // Created before forking, so that the exposition lists the routes in this order.
    metrics::histogram(&region, "http_request_duration_seconds", &LATENCY_BOUNDS)?;
    for r in ROUTES {
        metrics::counter(&region, &format!("http_requests_total{{route=\"{r}\"}}"))?;
    }
    metrics::gauge::<u64>(&region, "workers")?.store(WORKERS, shmstate::sync::Ordering::Relaxed);

    let mut pids = Vec::new();
    for w in 0..WORKERS {
        // SAFETY: after `fork` in a multi-threaded process the child may only call
        // async-signal-safe functions; this program has a single thread, so the child may
        // run any code. The child never returns from this block (it ends with `_exit`).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        if pid == 0 {
            // AssertUnwindSafe: after a panic the child only exits.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                worker(&region, w).is_ok()
            }))
            .unwrap_or(false);
            // SAFETY: `_exit` has no preconditions; it ends the child at once, without
            // running exit handlers or flushing the stdio buffers it shares with the parent.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        pids.push(pid);
    }
    for pid in pids {
        let status = rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty())?;
        match status {
            Some((_, s)) if s.exit_status() == Some(0) => {}
            other => return Err(format!("worker failed: {other:?}").into()),
        }
    }

    // What a `/metrics` handler in the parent would send (or `shmstate metrics FILE`).
    metrics::render_prometheus(&region, &mut std::io::stdout().lock())?;
    Ok(())
}
