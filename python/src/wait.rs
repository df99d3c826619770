//! Interruptible waits: bounded slices with the GIL released, signals checked between.

use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How long one slice of a blocking call sleeps at most before it checks for signals:
/// Ctrl-C interrupts a wait within about this long.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// Python's `block` argument: any object, by its truth (`acquire(0)`, `acquire(1)` and
/// `acquire(False)` all work, as with `multiprocessing`'s locks).
#[derive(Clone, Copy)]
pub(crate) struct Block(pub(crate) bool);

impl<'py> FromPyObject<'py> for Block {
    fn extract_bound(o: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Block(o.is_truthy()?))
    }
}

/// Python's `timeout` argument: `None` waits forever; negative is 0 (as `multiprocessing`
/// does).
pub(crate) fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(pyo3::exceptions::PyValueError::new_err(
            "timeout must be a number, not NaN",
        )),
        Some(t) => {
            let t = Duration::try_from_secs_f64(t.max(0.0)).unwrap_or(Duration::MAX);
            Ok(Instant::now().checked_add(t))
        }
    }
}

/// Calls `attempt(slice)` with the GIL released until it returns `Some` or `deadline`
/// passes (`Ok(None)`); between slices runs Python's signal handlers, so a
/// `KeyboardInterrupt` (or any exception a handler raises) ends the wait.
pub(crate) fn interruptible<R: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    attempt: impl Fn(Duration) -> Option<R> + Sync,
) -> PyResult<Option<R>> {
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        if let Some(r) = py.allow_threads(|| attempt(slice)) {
            return Ok(Some(r));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}
