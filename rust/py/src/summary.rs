//! The live summary seen from Python (`steplog.Summary`): its version, whole snapshots,
//! single keys and deletion. Reading never flushes by itself; the caller says when the
//! result must reflect earlier `log()` calls (`flush=True`), so that `steplog.Summary` can
//! flush once per change instead of once per access.

use std::time::Duration;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::errors::IntoPy;
use crate::run::{PyRun, Shard};
use crate::topy::summary_to_py;

/// Waits until the writer has taken everything queued before (a finished run has nothing
/// left to take).
fn flush(py: Python<'_>, shard: &Shard) -> PyResult<()> {
    if shard.logger.is_finished() {
        return Ok(());
    }
    let t = Duration::from_secs_f64(shard.logger.config().finish_timeout_s);
    py.detach(|| shard.logger.flush(t)).py()
}

/// `(shard serial, rows committed, edits queued)`: equal tuples mean an unchanged summary
/// (the serial tells a forked child's new shard from its parent's). `(0, 0, 0)` without a
/// shard.
#[pyfunction]
#[pyo3(name = "_summary_version")]
pub fn summary_version<'py>(run: &Bound<'py, PyRun>) -> PyResult<Bound<'py, PyTuple>> {
    let py = run.py();
    let (serial, commits, edits) = match run.get().loaded_shard() {
        None => (0, 0, 0),
        Some(shard) => {
            let v = shard.logger.summary_version();
            (shard.serial, v.commits, v.edits)
        }
    };
    PyTuple::new(py, [u64::from(serial), commits, edits])
}

/// The whole summary of this process's shard as a new dict; with `flush`, after the writer
/// took every row and edit queued before the call.
#[pyfunction]
#[pyo3(name = "_summary_read", signature = (run, flush_first=true))]
pub fn summary_read<'py>(
    run: &Bound<'py, PyRun>,
    flush_first: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let py = run.py();
    let d = PyDict::new(py);
    let Some(shard) = run.get().loaded_shard() else {
        return Ok(d);
    };
    if flush_first {
        flush(py, &shard)?;
    }
    for (k, v) in shard.logger.summary() {
        d.set_item(k.as_ref(), summary_to_py(py, &v)?)?;
    }
    Ok(d)
}

/// One key of the summary (`KeyError` when it has none), without copying the others.
#[pyfunction]
#[pyo3(name = "_summary_get", signature = (run, key, flush_first=true))]
pub fn summary_get(run: &Bound<'_, PyRun>, key: &str, flush_first: bool) -> PyResult<Py<PyAny>> {
    let py = run.py();
    let Some(shard) = run.get().loaded_shard() else {
        return Err(PyKeyError::new_err(key.to_string()));
    };
    if flush_first {
        flush(py, &shard)?;
    }
    match shard.logger.summary_get(key) {
        Some(v) => summary_to_py(py, &v),
        None => Err(PyKeyError::new_err(key.to_string())),
    }
}

/// `del run.summary[key]`: the key leaves the summary until it is logged or set again.
#[pyfunction]
#[pyo3(name = "_summary_delete")]
pub fn summary_delete(run: &Bound<'_, PyRun>, key: &str) -> PyResult<()> {
    PyRun::shard(run)?.logger.delete_summary(key).py()
}
