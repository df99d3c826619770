//! Prometheus metrics for pre-forked services: a region's counters, gauges and histograms
//! in the text exposition format (version 0.0.4).
//!
//! Workers count and observe into objects of one region, each a single atomic update with
//! no lock; whoever serves `/metrics` (a process of the service, or
//! `shmstate serve-metrics` reading the file) renders the region at each scrape.
//!
//! - Create metric objects through this module ([`counter`], [`striped_counter`],
//!   [`gauge`], [`histogram`]): their names are series names, a metric name with
//!   optional labels in the exposition syntax (`http_requests_total{method="GET"}`),
//!   checked when the object is created ([`MetricNameError`]) so that a bad name is a
//!   typed error, never a broken scrape. A series name is a region object name, so it
//!   must fit [`MAX_NAME_LEN`](crate::region::MAX_NAME_LEN) bytes.
//! - Render with [`render_prometheus`] (one region) or an [`Exposition`] (several),
//!   over a [`Region`](crate::Region) or a read-only
//!   [`ReadOnlyRegion`](crate::region::ReadOnlyRegion): one renderer, reading by word
//!   loads only, so a tool never writes a byte of a region.
//!
//! # What is rendered
//!
//! | object | rendered as |
//! |--------|-------------|
//! | `Counter`, `StripedCounter` (sum of stripes) | `counter` |
//! | `Value<T>` of an integer, `f32` or `f64` (`bool` as 0 or 1) | `gauge` |
//! | `Histogram` | `histogram`: `_bucket{le="..."}` (cumulative, `le="+Inf"` last), `_sum`, `_count` |
//! | anything else (locks, arrays, queues, objects being created) | nothing |
//!
//! Series sharing a metric name are one family: one `# HELP` line (the shmstate type) and
//! one `# TYPE` line, then the series in directory order. Floats are written as the
//! format reads them (`+Inf`, `-Inf`, `NaN`, shortest round-trip decimal).
//!
//! Objects created outside this module may have any name. A name that is not a series
//! name is **sanitised** when it has no `{`: every character outside `[a-zA-Z0-9_:]`
//! becomes `_`, and a leading digit gets a `_` in front (`queue-depth` is rendered as
//! `queue_depth`). A name with a `{` that does not parse as a label set is **skipped**,
//! as is any series that would break the exposition: a second series of the same name
//! and labels, a family name taken by another kind (including a histogram's
//! `_bucket`/`_sum`/`_count`), a histogram with an `le` label. [`Exposition::skipped`]
//! lists them.
//!
//! # Examples
//!
//! ```
//! use shmstate::{metrics, Region};
//!
//! let region = Region::anonymous(1 << 16)?;
//! metrics::counter(&region, r#"http_requests_total{method="GET"}"#)?.add(3);
//! metrics::counter(&region, r#"http_requests_total{method="POST"}"#)?.inc();
//! metrics::histogram(&region, "latency_seconds", &[0.1, 1.0])?.observe(0.25);
//!
//! let mut out = Vec::new();
//! metrics::render_prometheus(&region, &mut out)?;
//! let expected = [
//!     "# HELP http_requests_total shmstate Counter",
//!     "# TYPE http_requests_total counter",
//!     "http_requests_total{method=\"GET\"} 3",
//!     "http_requests_total{method=\"POST\"} 1",
//!     "# HELP latency_seconds shmstate Histogram",
//!     "# TYPE latency_seconds histogram",
//!     "latency_seconds_bucket{le=\"0.1\"} 0",
//!     "latency_seconds_bucket{le=\"1\"} 1",
//!     "latency_seconds_bucket{le=\"+Inf\"} 1",
//!     "latency_seconds_sum 0.25",
//!     "latency_seconds_count 1",
//! ];
//! assert_eq!(String::from_utf8(out)?, expected.join("\n") + "\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod create;
mod name;
mod render;
mod source;

use std::io;

pub use create::{MetricError, counter, gauge, histogram, striped_counter};
pub use name::{MetricNameError, SeriesName};
pub use render::{Exposition, SkipReason, Skipped};
pub use source::MetricSource;

/// Writes every metric-shaped object of `source` (a [`Region`](crate::Region) or a
/// [`ReadOnlyRegion`](crate::region::ReadOnlyRegion)) to `out` in the Prometheus text
/// exposition format 0.0.4. See the [module docs](self) for what is rendered and how;
/// for several regions in one exposition, use an [`Exposition`].
///
/// # Errors
///
/// The first error `out` returns.
///
/// # Examples
///
/// See the [module docs](self).
pub fn render_prometheus<S: MetricSource + ?Sized>(
    source: &S,
    out: &mut impl io::Write,
) -> io::Result<()> {
    let mut e = Exposition::new();
    e.add(source);
    e.write(out)
}
