//! Process-wide state seen from Python: the current run behind module-level `steplog.log()`
//! and the NaN/Inf replacements. The current run is held in an `ArcSwapOption` (lock-free), so
//! a forked child never waits on a lock another thread held at the fork.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::run::PyRun;

/// The run that module-level `steplog.log()` writes to.
static CURRENT: ArcSwapOption<Py<PyRun>> = ArcSwapOption::const_empty();

/// Makes `run` the current run.
pub fn set_current(run: Py<PyRun>) {
    CURRENT.store(Some(Arc::new(run)));
}

/// Clears the current run if it is `run`.
pub fn clear_current_if(run: &PyRun) {
    let cur = CURRENT.load();
    if cur.as_ref().is_some_and(|c| std::ptr::eq(c.get(), run)) {
        CURRENT.store(None);
    }
}

/// Module-level `steplog.log()`: logs to the current run. In a worker started with spawn or
/// forkserver, the first call attaches to the run named by `STEPLOG_RUN_DIR`.
#[pyfunction]
#[pyo3(signature = (data, step=None, commit=None))]
pub fn log(
    data: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = crate::args::global_step)] step: Option<i64>,
    commit: Option<bool>,
) -> PyResult<()> {
    let py = data.py();
    let run = match CURRENT.load_full() {
        Some(run) => run,
        None => {
            let attached = py
                .import(pyo3::intern!(py, "steplog._run"))?
                .call_method0(pyo3::intern!(py, "_attach_from_env"))?;
            if attached.is_none() {
                return Err(crate::errors::SteplogError::new_err(
                    "steplog.log: no active run; call steplog.init() first",
                ));
            }
            Arc::new(attached.cast_into::<PyRun>()?.unbind())
        }
    };
    PyRun::log_bound(run.bind(py), data, step, commit)
}

/// The current run, if any.
#[pyfunction]
pub fn current_run(py: Python<'_>) -> Option<Py<PyRun>> {
    CURRENT.load().as_ref().map(|r| r.clone_ref(py))
}

/// Process-wide NaN replacement (ClearML's name); `None` keeps NaN. A run's own `nan_value`
/// wins over it.
#[pyfunction]
#[pyo3(signature = (value=None))]
pub fn set_reporting_nan_value(value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    steplog_core::nonfinite::set_global_nan(check_replacement("nan", value)?);
    Ok(())
}

/// Process-wide Inf replacement (ClearML's name), negated for -Inf; `None` keeps Inf.
#[pyfunction]
#[pyo3(signature = (value=None))]
pub fn set_reporting_inf_value(value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
    steplog_core::nonfinite::set_global_inf(check_replacement("inf", value)?);
    Ok(())
}

/// `value` as a finite float or `None`; errors name the function, the argument and the value.
fn check_replacement(what: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let shown = || crate::args::short_repr(value);
    let number = if value.is_instance_of::<PyBool>() {
        None
    } else {
        value.extract::<f64>().ok()
    };
    match number {
        None => Err(PyTypeError::new_err(format!(
            "set_reporting_{what}_value: value={} ({}): expected a finite number or None",
            shown(),
            value.get_type().name()?
        ))),
        Some(v) if !v.is_finite() => Err(PyValueError::new_err(format!(
            "set_reporting_{what}_value: value={}: expected a finite number or None",
            shown()
        ))),
        v => Ok(v),
    }
}
