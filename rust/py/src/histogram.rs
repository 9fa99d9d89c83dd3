//! `steplog.Histogram`: a distribution binned in Rust (numpy.histogram's rules) or given
//! pre-binned as `np_histogram=(counts, edges)`.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use steplog_core::histogram::{check_bins, from_parts, DEFAULT_BINS};
use steplog_core::Histogram;

use crate::convert::histogram_of;
use crate::errors::IntoPy;

/// A histogram value for `log()`.
#[pyclass(name = "Histogram", module = "steplog", frozen)]
pub struct PyHistogram {
    pub inner: Histogram,
}

fn f64_vec(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<f64>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = np
        .call_method1("asarray", (obj, "float64"))?
        .call_method0("ravel")?;
    let arr = np.call_method1("ascontiguousarray", (arr,))?;
    let arr = arr
        .cast::<PyArray1<f64>>()
        .map_err(|_| PyValueError::new_err(format!("{what}: expected numbers")))?;
    Ok(arr
        .readonly()
        .as_slice()
        .map(<[f64]>::to_vec)
        .unwrap_or_default())
}

#[pymethods]
impl PyHistogram {
    #[new]
    #[pyo3(signature = (sequence=None, num_bins=DEFAULT_BINS as i64, np_histogram=None))]
    fn new(
        sequence: Option<&Bound<'_, PyAny>>,
        num_bins: i64,
        np_histogram: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let n = check_bins(num_bins).py()?;
        let inner =
            match (sequence, np_histogram) {
                (Some(_), Some(_)) | (None, None) => return Err(PyValueError::new_err(
                    "Histogram: pass either a sequence or np_histogram=(counts, edges), not both",
                )),
                (Some(seq), None) => histogram_of(seq, n)?,
                (None, Some(pair)) => {
                    let (counts, edges): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                        pair.extract().map_err(|_| {
                            PyValueError::new_err("np_histogram: expected a (counts, edges) pair")
                        })?;
                    let counts = f64_vec(&counts, "np_histogram counts")?;
                    if counts
                        .iter()
                        .any(|c| !(c.is_finite() && *c >= 0.0 && c.fract() == 0.0))
                    {
                        return Err(PyValueError::new_err(
                            "np_histogram: counts must be non-negative integers",
                        ));
                    }
                    let edges = f64_vec(&edges, "np_histogram edges")?;
                    from_parts(counts.iter().map(|c| *c as u64).collect(), edges).py()?
                }
            };
        Ok(PyHistogram { inner })
    }

    /// Elements per bin (int64).
    #[getter]
    fn counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_vec(py, self.inner.counts.iter().map(|c| *c as i64).collect())
    }

    /// Bin edges (float64), one more than the counts.
    #[getter]
    fn edges<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_vec(py, self.inner.edges.clone())
    }

    /// NaN elements left out of the bins.
    #[getter]
    fn nan_count(&self) -> u64 {
        self.inner.nan
    }

    /// +Inf and -Inf elements left out of the bins.
    #[getter]
    fn inf_count(&self) -> (u64, u64) {
        (self.inner.pos_inf, self.inner.neg_inf)
    }

    fn __repr__(&self) -> String {
        format!(
            "Histogram(bins={}, total={})",
            self.inner.counts.len(),
            self.inner.counts.iter().sum::<u64>()
        )
    }
}
