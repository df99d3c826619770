//! `shmstate serve-metrics --listen ADDR FILE…`: serves the exposition of the region
//! files at `/metrics` over HTTP, reading the regions (read-only) at each scrape.

use std::net::SocketAddr;
use std::path::PathBuf;

use tiny_http::{Header, Method, Response, Server};

use crate::Failure;

/// The exposition's content type (text format 0.0.4).
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves until killed. Prints `listening on http://ADDR/metrics` (the bound address: with
/// port 0, the port the system chose) once the socket is bound.
pub fn run(listen: SocketAddr, paths: &[PathBuf]) -> Result<u8, Failure> {
    let cannot =
        |e: &dyn std::fmt::Display| Failure::runtime(format!("cannot listen on {listen}: {e}"));
    let listener = std::net::TcpListener::bind(listen).map_err(|e| cannot(&e))?;
    // Responses go out at once: with Nagle's algorithm, the last segment of an exposition
    // waits for the scraper's delayed ACK (40 ms on Linux) on a kept-alive connection, as
    // Prometheus keeps them. The connections accepted inherit the option on Linux.
    rustix::net::sockopt::set_tcp_nodelay(&listener, true).map_err(|e| cannot(&e))?;
    let server = Server::from_listener(listener, None).map_err(|e| cannot(&e))?;
    let bound = server
        .server_addr()
        .to_ip()
        .map_or_else(|| listen.to_string(), |a| a.to_string());
    println!("listening on http://{bound}/metrics");
    // Flushed by println!'s line buffering only on a terminal: flush for pipes too.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    for request in server.incoming_requests() {
        let response = match (request.method(), request.url()) {
            (Method::Get | Method::Head, "/metrics") => scrape(paths),
            (Method::Get | Method::Head, "/") => text(
                200,
                "shmstate serve-metrics: the metrics are at /metrics\n".to_owned(),
            ),
            (Method::Get | Method::Head, _) => text(404, "not found; try /metrics\n".to_owned()),
            _ => text(405, "only GET and HEAD\n".to_owned()),
        };
        // A client that went away is its own problem; keep serving.
        let _ = request.respond(response);
    }
    Ok(0)
}

/// One scrape: every region opened afresh and rendered, or a 500 naming the region that
/// could not be read (Prometheus then records the target as down).
fn scrape(paths: &[PathBuf]) -> Response<std::io::Cursor<Vec<u8>>> {
    let e = match crate::metrics::collect(paths) {
        Ok(e) => e,
        Err(f) => return text(500, format!("{}\n", f.message)),
    };
    for s in e.skipped() {
        eprintln!("{}", crate::metrics::skip_note(&s.object, &s.reason));
    }
    let mut body = Vec::new();
    if let Err(err) = e.write(&mut body) {
        return text(500, format!("rendering: {err}\n"));
    }
    Response::from_data(body).with_header(header(CONTENT_TYPE))
}

fn text(code: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("text/plain; charset=utf-8"))
}

fn header(content_type: &str) -> Header {
    // Both parts are ASCII constants: `from_bytes` cannot fail on them.
    Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("an ASCII header is valid")
}
