//! `steplog._core.Run`: the Rust half of a run (one shard of it). The public `steplog.Run`
//! subclasses it in Python; `log` is this class's method, so a call crosses into Rust once.

use std::path::PathBuf;
use std::time::Duration;

use parking_lot::RwLock;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use steplog_core::{
    FileSink, Logged, Logger, MetricDef, Setting, ShardInfo, StatsSnapshot, SummaryValue, Value,
    WriterConfig,
};

use smallvec::SmallVec;

use crate::convert::{flatten, stage_plain, to_value, Cells, KeyName};
use crate::errors::{IntoPy, SteplogWarning};

/// The run that module-level `steplog.log()` writes to.
static CURRENT: RwLock<Option<Py<PyRun>>> = RwLock::new(None);

/// One shard of a run being written.
#[pyclass(name = "Run", module = "steplog._core", subclass, frozen)]
pub struct PyRun {
    logger: Logger,
    shard_path: PathBuf,
}

fn settings_from(settings: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, Setting)>> {
    let mut out = Vec::new();
    if let Some(d) = settings {
        for (k, v) in d.iter() {
            let name: String = k.extract()?;
            if v.is_none() {
                continue;
            }
            let s = if let Ok(s) = v.cast::<PyString>() {
                Setting::Text(s.to_str()?.to_string())
            } else if let Ok(f) = v.extract::<f64>() {
                if v.is_instance_of::<pyo3::types::PyBool>() {
                    return Err(PyValueError::new_err(format!(
                        "{name}={v}: expected a number"
                    )));
                }
                Setting::Num(f)
            } else {
                return Err(PyValueError::new_err(format!(
                    "{name}={}: expected a number or a string",
                    v.repr()?
                )));
            };
            out.push((name, s));
        }
    }
    Ok(out)
}

fn shard_info(d: &Bound<'_, PyDict>) -> PyResult<ShardInfo> {
    let s = |k: &str| -> PyResult<String> {
        Ok(d.get_item(k)?
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or_default())
    };
    let i = |k: &str| -> PyResult<Option<i64>> {
        d.get_item(k)?
            .filter(|v| !v.is_none())
            .map(|v| v.extract())
            .transpose()
    };
    Ok(ShardInfo {
        run_id: s("run_id")?,
        shard: s("shard")?,
        pid: u32::try_from(i("pid")?.unwrap_or(0)).unwrap_or(0),
        host: s("host")?,
        rank: i("rank")?,
        local_rank: i("local_rank")?,
        world_size: i("world_size")?,
        worker: i("worker")?,
        started: d
            .get_item("started")?
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or(0.0),
        writer: s("writer")?,
    })
}

pub fn stats_dict<'py>(py: Python<'py>, s: &StatsSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("rows_queued", s.rows_queued)?;
    d.set_item("rows_written", s.rows_written)?;
    d.set_item("rows_dropped", s.rows_dropped)?;
    d.set_item("rows_failed", s.rows_failed)?;
    d.set_item("summary_dropped", s.summary_dropped)?;
    d.set_item("steps_rejected", s.steps_rejected)?;
    d.set_item("scalars_written", s.scalars_written)?;
    d.set_item("frames_written", s.frames_written)?;
    d.set_item("bytes_written", s.bytes_written)?;
    d.set_item("write_errors", s.write_errors)?;
    d.set_item("first_error", s.first_error.clone())?;
    Ok(d)
}

/// `{key: {"nan": n, "inf": n, "-inf": n}}`.
pub fn nonfinite_dict<'py, K: AsRef<str>>(
    py: Python<'py>,
    counts: impl Iterator<Item = (K, [u64; 3])>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, [nan, pos, neg]) in counts {
        let c = PyDict::new(py);
        c.set_item("nan", nan)?;
        c.set_item("inf", pos)?;
        c.set_item("-inf", neg)?;
        d.set_item(k.as_ref(), c)?;
    }
    Ok(d)
}

pub fn value_to_py(py: Python<'_>, v: &Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Value::F64(f) => f.into_pyobject(py)?.into_any().unbind(),
        Value::I64(i) => i.into_pyobject(py)?.into_any().unbind(),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        Value::Text(s) => s.as_ref().into_pyobject(py)?.into_any().unbind(),
        Value::List(l) => l.to_vec().into_pyobject(py)?.into_any().unbind(),
        Value::Histogram(h) => {
            let d = PyDict::new(py);
            d.set_item(
                "counts",
                numpy::PyArray1::from_vec(py, h.counts.iter().map(|c| *c as i64).collect()),
            )?;
            d.set_item("edges", numpy::PyArray1::from_vec(py, h.edges.clone()))?;
            d.set_item("nan", h.nan)?;
            d.set_item("pos_inf", h.pos_inf)?;
            d.set_item("neg_inf", h.neg_inf)?;
            d.into_any().unbind()
        }
    })
}

/// A summary entry as Python sees it: the plain value, or a dict of statistics.
pub fn summary_to_py(py: Python<'_>, v: &SummaryValue) -> PyResult<Py<PyAny>> {
    match v {
        SummaryValue::Plain(v) => value_to_py(py, v),
        SummaryValue::Stats(stats) => {
            let d = PyDict::new(py);
            for (name, v) in stats {
                d.set_item(name.as_ref(), value_to_py(py, v)?)?;
            }
            Ok(d.into_any().unbind())
        }
    }
}

fn str_arg(arg: &str, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
    match v {
        Some(v) if !v.is_none() => match v.cast::<PyString>() {
            Ok(s) => Ok(Some(s.to_str()?.to_string())),
            Err(_) => Err(PyTypeError::new_err(format!(
                "define_metric: {arg} must be {}, got {}",
                if arg == "name" { "str" } else { "str or None" },
                v.get_type().name()?
            ))),
        },
        _ => Ok(None),
    }
}

impl PyRun {
    fn log_impl(
        &self,
        data: &Bound<'_, PyAny>,
        step: Option<i64>,
        commit: Option<bool>,
    ) -> PyResult<()> {
        let py = data.py();
        let Ok(dict) = data.cast::<PyDict>() else {
            return Err(PyTypeError::new_err(format!(
                "steplog.log: expected a dict of metrics, got {}",
                data.get_type().name()?
            )));
        };
        // Fast path: plain numbers, text and nested dicts are converted while the call holds
        // the accumulator (no Python code can run there). Anything else is converted first,
        // outside the lock, by the general path.
        let fast = {
            let mut call = self.logger.call().py()?;
            if stage_plain(&mut call, dict, None)? {
                Some(call.commit(step, commit))
            } else {
                None
            }
        };
        let logged = match fast {
            Some(logged) => logged,
            None => {
                let mut cells = Cells::new();
                flatten(dict, &mut cells)?;
                let (names, values): (SmallVec<[KeyName<'_>; 16]>, SmallVec<[Value; 16]>) =
                    cells.into_iter().unzip();
                let mut keys = SmallVec::<[&str; 16]>::new();
                for k in &names {
                    keys.push(k.as_str()?);
                }
                self.logger
                    .log(step, commit, keys.into_iter().zip(values))
                    .py()?
            }
        };
        match logged {
            Logged::Accepted => Ok(()),
            Logged::Rejected { rejected, first } => {
                if first {
                    let keys: Vec<String> = dict.keys().iter().map(|k| format!("'{k}'")).collect();
                    let msg = format!(
                        "steplog.log: step {} is smaller than the current step {}; key(s) {} \
                         not logged (later smaller steps are dropped without a warning and \
                         counted in run.stats()['steps_rejected'])",
                        rejected.step,
                        rejected.current,
                        keys.join(", ")
                    );
                    let cat = py.get_type::<SteplogWarning>();
                    let msg = std::ffi::CString::new(msg).unwrap_or_default();
                    PyErr::warn(py, &cat, &msg, 2)?;
                }
                Ok(())
            }
        }
    }
}

#[pymethods]
impl PyRun {
    #[new]
    #[pyo3(signature = (shard_path, info, settings=None))]
    fn new(
        py: Python<'_>,
        shard_path: PathBuf,
        info: &Bound<'_, PyDict>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let given = settings_from(settings)?;
        let config = WriterConfig::resolve(&given, |k| std::env::var(k).ok()).py()?;
        let info = shard_info(info)?;
        let path = shard_path.clone();
        let logger = py.detach(move || {
            let sink = FileSink::create(&path)?;
            Logger::start(Box::new(sink), &info, config)
        });
        Ok(PyRun {
            logger: logger.py()?,
            shard_path,
        })
    }

    /// Logs a dict of metrics as one step (see the README for the step rules).
    #[pyo3(signature = (data, step=None, commit=None))]
    fn log(
        &self,
        data: &Bound<'_, PyAny>,
        step: Option<i64>,
        commit: Option<bool>,
    ) -> PyResult<()> {
        self.log_impl(data, step, commit)
    }

    /// Waits until everything logged so far from this thread is written.
    #[pyo3(signature = (timeout_s=None))]
    fn flush(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<()> {
        let t = Duration::from_secs_f64(
            timeout_s
                .unwrap_or(self.logger.config().finish_timeout_s)
                .max(0.0),
        );
        py.detach(|| self.logger.flush(t)).py()
    }

    /// Commits the open row, writes everything and stops the writer. Returns the counters.
    fn _finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.logger.finish()).py()?;
        let nonfinite = nonfinite_dict(py, self.logger.nonfinite().into_iter())?;
        {
            let mut cur = CURRENT.write();
            if cur.as_ref().is_some_and(|c| std::ptr::eq(c.get(), self)) {
                *cur = None;
            }
        }
        let d = stats_dict(py, &s)?;
        d.set_item("nonfinite", nonfinite)?;
        Ok(d)
    }

    /// Live counters, with NaN/Inf counts per key under "nonfinite".
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = stats_dict(py, &self.logger.stats())?;
        d.set_item(
            "nonfinite",
            nonfinite_dict(py, self.logger.nonfinite().into_iter())?,
        )?;
        Ok(d)
    }

    /// The current summary (flushes first so it includes everything logged before).
    fn _summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if !self.logger.is_finished() {
            let t = Duration::from_secs_f64(self.logger.config().finish_timeout_s);
            py.detach(|| self.logger.flush(t)).py()?;
        }
        let d = PyDict::new(py);
        for (k, v) in self.logger.summary() {
            d.set_item(k.as_ref(), summary_to_py(py, &v)?)?;
        }
        Ok(d)
    }

    /// Defines how a metric (a key, or a pattern with `*` and `?`) is summarised and plotted.
    /// See `steplog.Run.define_metric`.
    #[pyo3(signature = (name, step_metric=None, summary=None, goal=None))]
    fn _define_metric(
        &self,
        name: &Bound<'_, PyAny>,
        step_metric: Option<&Bound<'_, PyAny>>,
        summary: Option<&Bound<'_, PyAny>>,
        goal: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some(name) = str_arg("name", Some(name))? else {
            return Err(PyTypeError::new_err(
                "define_metric: name must be str, got None",
            ));
        };
        let step_metric = str_arg("step_metric", step_metric)?;
        let summary = str_arg("summary", summary)?;
        let goal = str_arg("goal", goal)?;
        let def = MetricDef::parse(
            &name,
            step_metric.as_deref(),
            summary.as_deref(),
            goal.as_deref(),
        )
        .py()?;
        self.logger.define_metric(def).py()
    }

    /// Overrides a summary value.
    fn _set_summary(&self, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = to_value(value).map_err(|e| {
            PyTypeError::new_err(format!("run.summary['{key}']: {}", e.value(value.py())))
        })?;
        if matches!(v, Value::List(_) | Value::Histogram(_)) {
            return Err(PyTypeError::new_err(format!(
                "run.summary['{key}']: summary values are numbers or str, not arrays"
            )));
        }
        self.logger.set_summary(key, v).py()
    }

    /// The step the next `log()` without `step=` writes.
    #[getter]
    fn step(&self) -> i64 {
        self.logger.step()
    }

    /// Whether the run is finished.
    #[getter]
    fn finished(&self) -> bool {
        self.logger.is_finished()
    }

    /// This process's shard file.
    #[getter]
    fn shard_path(&self) -> PathBuf {
        self.shard_path.clone()
    }

    /// Makes this run the target of module-level `steplog.log()`.
    fn _make_current(slf: &Bound<'_, Self>) {
        *CURRENT.write() = Some(slf.clone().unbind());
    }
}

/// Module-level `steplog.log()`: logs to the current run.
#[pyfunction]
#[pyo3(signature = (data, step=None, commit=None))]
pub fn log(data: &Bound<'_, PyAny>, step: Option<i64>, commit: Option<bool>) -> PyResult<()> {
    // NOTE: clone the handle out so no lock is held while values are converted (conversion can
    // run Python code, which could call steplog.init()).
    let run = CURRENT.read().as_ref().map(|r| r.clone_ref(data.py()));
    match run {
        Some(run) => run.get().log_impl(data, step, commit),
        None => Err(crate::errors::SteplogError::new_err(
            "steplog.log: no active run; call steplog.init() first",
        )),
    }
}

/// The current run, if any.
#[pyfunction]
pub fn current_run(py: Python<'_>) -> Option<Py<PyRun>> {
    CURRENT.read().as_ref().map(|r| r.clone_ref(py))
}

/// Process-wide NaN replacement (ClearML's name); `None` keeps NaN. A run's own `nan_value`
/// wins over it.
#[pyfunction]
#[pyo3(signature = (value=None))]
pub fn set_reporting_nan_value(value: Option<f64>) -> PyResult<()> {
    steplog_core::nonfinite::set_global_nan(check_replacement("nan", value)?);
    Ok(())
}

/// Process-wide Inf replacement (ClearML's name), negated for -Inf; `None` keeps Inf.
#[pyfunction]
#[pyo3(signature = (value=None))]
pub fn set_reporting_inf_value(value: Option<f64>) -> PyResult<()> {
    steplog_core::nonfinite::set_global_inf(check_replacement("inf", value)?);
    Ok(())
}

fn check_replacement(what: &str, value: Option<f64>) -> PyResult<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() => Err(PyValueError::new_err(format!(
            "set_reporting_{what}_value({v}): expected a finite number or None"
        ))),
        v => Ok(v),
    }
}
