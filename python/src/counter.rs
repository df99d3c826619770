//! `Counter`: the crate's striped counter.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::obj::{Obj, RegionInner, reduce};

/// A counter that many processes add to at once without contending: one cache line per
/// stripe (a process adds to its CPU's stripe), summed on read.
///
/// ``add(n=1)`` and ``inc()`` are one atomic instruction on an uncontended line;
/// ``value`` sums the stripes (exact once the adders have stopped); ``take()`` reads and
/// zeroes it; ``reset()`` zeroes it. Counts are unsigned 64-bit, wrapping.
#[pyclass(module = "shmstate._shmstate", frozen, weakref)]
pub struct Counter {
    obj: Obj<shmstate::StripedCounter>,
}

impl Counter {
    pub(crate) fn open(region: &Arc<RegionInner>, name: &str, stripes: usize) -> PyResult<Self> {
        Ok(Counter {
            obj: Obj::get_or_init(region, name, stripes, |_: &shmstate::StripedCounter| {})?,
        })
    }
}

#[pymethods]
impl Counter {
    #[new]
    #[pyo3(signature = (*args, **kwargs), text_signature = "(stripes=None)")]
    fn py_new(
        py: Python<'_>,
        args: &Bound<'_, pyo3::types::PyTuple>,
        kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
    ) -> PyResult<Self> {
        let placed = crate::obj::new_in_default_region::<Self>(py, "Counter", args, kwargs)?;
        let this = placed.get();
        Ok(Counter {
            obj: this.obj.clone(),
        })
    }
    /// add(n=1) -> None
    ///
    /// Add ``n`` (0 ≤ n < 2**64).
    #[pyo3(signature = (n = 1))]
    fn add(&self, n: u64) {
        self.obj.get().add(n)
    }

    /// Add 1.
    fn inc(&self) {
        self.obj.get().inc()
    }

    /// The sum of the stripes.
    #[getter]
    fn value(&self) -> u64 {
        self.obj.get().sum()
    }

    /// Read the count and zero it.
    fn take(&self) -> u64 {
        self.obj.get().take()
    }

    /// Zero the count.
    fn reset(&self) {
        self.obj.get().reset()
    }

    /// The number of stripes.
    #[getter]
    fn stripes(&self) -> usize {
        self.obj.get().stripes()
    }

    fn __int__(&self) -> u64 {
        self.value()
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<(PyObject, PyObject)> {
        let extra = vec![self.stripes().into_pyobject(py)?.into_any().unbind()];
        reduce(py, "Counter", &self.obj, extra)
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmstate.Counter {:?} value={}>",
            self.obj.name(),
            self.value()
        )
    }
}
