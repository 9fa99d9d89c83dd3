//! `steplog._core.Run`: the Rust half of a run. The public `steplog.Run` subclasses it in
//! Python; `log` is this class's method, so a call crosses into Rust once.
//!
//! Each process writes its own shard. The shard lives behind an `ArcSwapOption`: after a fork
//! the child drops its inherited handle without touching it (`_after_fork_child`, leaking it on
//! purpose: its locks and thread belong to the parent) and opens a shard of its own at its
//! first `log()`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use smallvec::SmallVec;
use steplog_core::logger::Backlog;
use steplog_core::net::client::{NetOptions, NetSink};
use steplog_core::net::target::target_from;
use steplog_core::{
    FileSink, Logged, Logger, MetricDef, Setting, Sink, StatsSnapshot, Value, WriterConfig,
};

use crate::args::{settings_from, shard_info, str_arg};
use crate::convert::{flatten, stage_plain, to_value, Cells, KeyName};
use crate::errors::{ClosedError, IntoPy, SteplogWarning};
use crate::topy::{nonfinite_dict, stats_dict};

/// This process's shard of a run.
pub struct Shard {
    pub logger: Logger,
    path: PathBuf,
    /// Whether it streams to a collector.
    pub networked: bool,
    /// Unique within the process, so handles can tell shards apart (never 0).
    pub serial: u32,
}

static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Bumped in a forked child before it runs other code (`_after_fork_child`), so a run's
/// `primary` shard, which belongs to the process that created the run, is never used there.
static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);

/// A run, seen from one process.
#[pyclass(name = "Run", module = "steplog._core", subclass, frozen)]
pub struct PyRun {
    /// This process's shard (swapped out after a fork, attached at a child's first log).
    shard: ArcSwapOption<Shard>,
    /// The shard opened when the run was created, for the creating process's hot path: one
    /// relaxed load and a compare instead of arc-swap's thread-local bookkeeping. Valid only
    /// while `FORK_EPOCH` equals `epoch`.
    primary: OnceLock<Arc<Shard>>,
    epoch: u64,
    settings: Vec<(String, Setting)>,
    finished: AtomicBool,
}

fn open_shard(
    py: Python<'_>,
    path: PathBuf,
    info: &Bound<'_, PyDict>,
    settings: &[(String, Setting)],
) -> PyResult<Shard> {
    let env = |k: &str| std::env::var(k).ok();
    let config = WriterConfig::resolve(settings, env).py()?;
    let target = target_from(settings, env).py()?;
    let info = shard_info(info)?;
    let networked = target.is_some();
    let p = path.clone();
    let logger = py
        .detach(move || {
            let sink: Box<dyn Sink> = match target {
                None => Box::new(FileSink::create(&p)?),
                Some(target) => Box::new(NetSink::start(NetOptions {
                    target,
                    run: info.run_id.clone(),
                    shard: info.shard.clone(),
                    spill_path: p.clone(),
                    buffer_bytes: config.net_buffer_bytes,
                    timeout: Duration::from_secs_f64(config.net_timeout_s),
                })?),
            };
            Logger::start(sink, &info, config)
        })
        .py()?;
    Ok(Shard {
        logger,
        path,
        networked,
        serial: SERIAL.fetch_add(1, Ordering::Relaxed),
    })
}

impl PyRun {
    /// This process's shard, opened on first use in a forked or attached process.
    pub(crate) fn shard(slf: &Bound<'_, Self>) -> PyResult<Arc<Shard>> {
        let run = slf.get();
        if let Some(shard) = run.shard.load_full() {
            return Ok(shard);
        }
        if run.finished.load(Ordering::Acquire) {
            return Err(ClosedError::new_err(
                "the run is finished; start a new one with steplog.init()",
            ));
        }
        slf.call_method0(pyo3::intern!(slf.py(), "_open_process_shard"))?;
        run.shard
            .load_full()
            .ok_or_else(|| ClosedError::new_err("steplog: this process could not open its shard"))
    }

    /// This process's shard if it has one (never opens it).
    pub(crate) fn loaded_shard(&self) -> Option<Arc<Shard>> {
        self.shard.load_full()
    }

    /// Runs `f` on this process's shard, opening it first in a forked or attached process.
    #[inline]
    pub fn with_shard<R>(
        slf: &Bound<'_, Self>,
        f: impl FnOnce(&Shard) -> PyResult<R>,
    ) -> PyResult<R> {
        let run = slf.get();
        // NOTE: the creating process's case costs two loads; elsewhere the shard is borrowed
        // through arc-swap's guard (no reference count traffic per call); only a process
        // without a shard yet takes the slow path.
        if FORK_EPOCH.load(Ordering::Relaxed) == run.epoch {
            if let Some(shard) = run.primary.get() {
                return f(shard);
            }
        }
        if let Some(shard) = run.shard.load().as_ref() {
            return f(shard);
        }
        f(&*Self::shard(slf)?)
    }

    /// `log()` for a bound run (also used by module-level `steplog.log`).
    pub fn log_bound(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        step: Option<i64>,
        commit: Option<bool>,
    ) -> PyResult<()> {
        Self::with_shard(slf, |shard| log_to(&shard.logger, data, step, commit))
    }
}

fn log_to(
    logger: &Logger,
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
        let mut call = logger.call().py()?;
        let mut nested = false;
        if stage_plain(&mut call, dict, None, &mut nested, 0)? {
            if !nested {
                // The keys of one flat dict are distinct strings, hence distinct names.
                call.keys_are_distinct();
            }
            Some(call.commit(step, commit))
        } else {
            None
        }
    };
    let logged = match fast {
        Some(logged) => logged,
        None => log_converted(logger, dict, step, commit)?,
    };
    match logged {
        Logged::Accepted => Ok(()),
        Logged::Waiting(backlog) => {
            wait_for_ring(py, logger, backlog);
            Ok(())
        }
        Logged::Rejected { rejected, first } => {
            let keys: Vec<String> = dict.keys().iter().map(|k| format!("'{k}'")).collect();
            warn_rejected(py, rejected, first, &keys.join(", "))
        }
    }
}

/// `log()`'s general path: converts every value first (running Python code where a value
/// needs it), outside the accumulator's lock, then logs the converted cells.
// NOTE: kept out of line so that the fast path's frame stays small.
#[inline(never)]
fn log_converted(
    logger: &Logger,
    dict: &Bound<'_, PyDict>,
    step: Option<i64>,
    commit: Option<bool>,
) -> PyResult<Logged> {
    let mut cells = Cells::new();
    flatten(dict, &mut cells)?;
    let (names, values): (SmallVec<[KeyName<'_>; 16]>, SmallVec<[Value; 16]>) =
        cells.into_iter().unzip();
    let mut keys = SmallVec::<[&str; 16]>::new();
    for k in &names {
        keys.push(k.as_str()?);
    }
    // Not `Logger::log`, which would wait for ring space itself, with the GIL held.
    let mut call = logger.call().py()?;
    for (name, value) in keys.into_iter().zip(values) {
        call.set(name, value).py()?;
    }
    Ok(call.commit(step, commit))
}

/// Waits for ring space after a call that found the ring full under `block`, with the GIL
/// released (the call has already released the accumulator's lock), so other threads run.
#[cold]
#[inline(never)]
pub fn wait_for_ring(py: Python<'_>, logger: &Logger, backlog: Backlog) {
    py.detach(|| logger.wait(backlog));
}

/// Warns about the run's first call rejected for its step (later ones are only counted).
pub fn warn_rejected(
    py: Python<'_>,
    rejected: steplog_core::accumulator::StepRejected,
    first: bool,
    keys: &str,
) -> PyResult<()> {
    if first {
        let msg = format!(
            "steplog.log: step {} is smaller than the current step {}; key(s) {keys} \
             not logged (later smaller steps are dropped without a warning and \
             counted in run.stats()['steps_rejected'])",
            rejected.step, rejected.current,
        );
        let cat = py.get_type::<SteplogWarning>();
        let msg = std::ffi::CString::new(msg).unwrap_or_default();
        PyErr::warn(py, &cat, &msg, 2)?;
    }
    Ok(())
}

fn zero_stats() -> StatsSnapshot {
    StatsSnapshot::default()
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
        let settings = settings_from(settings)?;
        let shard = Arc::new(open_shard(py, shard_path, info, &settings)?);
        Ok(PyRun {
            shard: ArcSwapOption::new(Some(Arc::clone(&shard))),
            primary: OnceLock::from(shard),
            epoch: FORK_EPOCH.load(Ordering::Relaxed),
            settings,
            finished: AtomicBool::new(false),
        })
    }

    /// Logs a dict of metrics as one step (see the README for the step rules).
    #[pyo3(signature = (data, step=None, commit=None))]
    fn log(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = crate::args::run_step)] step: Option<i64>,
        commit: Option<bool>,
    ) -> PyResult<()> {
        Self::log_bound(slf, data, step, commit)
    }

    /// Opens this process's shard at `shard_path` (after a fork, or when a spawned worker
    /// attaches). Replaces nothing: only valid when the process has no shard yet.
    fn _attach_shard(
        &self,
        py: Python<'_>,
        shard_path: PathBuf,
        info: &Bound<'_, PyDict>,
    ) -> PyResult<()> {
        let shard = open_shard(py, shard_path, info, &self.settings)?;
        self.shard.store(Some(Arc::new(shard)));
        Ok(())
    }

    /// Called in a forked child before it runs any other code: forgets the parent's shard
    /// without touching it (its locks may be held by threads that do not exist here, and its
    /// writer thread is gone), so the child's first `log()` opens a shard of its own.
    fn _after_fork_child(&self) {
        // NOTE: `primary` keeps its (parent's) shard, never used here again; forgetting the
        // swapped-out reference keeps the count above zero, so nothing of it is ever dropped.
        FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
        let inherited = self.shard.swap(None);
        std::mem::forget(inherited);
    }

    /// Hands rows committed so far to the writer (done before a fork, so the child's copy of
    /// memory holds none that are not on their way to the parent's file).
    fn _hand_over(&self, py: Python<'_>) {
        if let Some(shard) = self.shard.load_full() {
            py.detach(|| shard.logger.hand_over());
        }
    }

    /// Waits until everything logged so far is written.
    #[pyo3(signature = (timeout_s=None))]
    fn flush(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<()> {
        let Some(shard) = self.shard.load_full() else {
            return Ok(());
        };
        let t = timeout_s
            .unwrap_or(shard.logger.config().finish_timeout_s)
            .max(0.0);
        py.detach(|| shard.logger.flush(Duration::from_secs_f64(t)))
            .py()
    }

    /// Writes everything logged so far and has the writer thread fsync this process's shard,
    /// waiting at most `timeout_s` (default `finish_timeout_s`); raises `FlushTimeout` past
    /// it. A failed write or fsync is counted in `stats()`, not raised.
    #[pyo3(signature = (timeout_s=None))]
    fn sync(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<()> {
        let Some(shard) = self.shard.load_full() else {
            return Ok(());
        };
        let t = timeout_s
            .unwrap_or(shard.logger.config().finish_timeout_s)
            .max(0.0);
        py.detach(|| shard.logger.sync(Duration::from_secs_f64(t)))
            .py()
    }

    /// Commits the open row, writes everything, stops this process's writer and returns the
    /// counters, with `rows_unwritten` > 0 when the writer could not finish in time.
    fn _finish<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.finished.store(true, Ordering::Release);
        crate::global::clear_current_if(self);
        let Some(shard) = self.shard.load_full() else {
            let d = stats_dict(py, &zero_stats())?;
            d.set_item("nonfinite", PyDict::new(py))?;
            d.set_item("rows_unwritten", 0)?;
            return Ok(d);
        };
        let (stats, unwritten) = py.detach(|| shard.logger.finish_bounded());
        let d = stats_dict(py, &stats)?;
        d.set_item(
            "nonfinite",
            nonfinite_dict(py, shard.logger.nonfinite().into_iter())?,
        )?;
        d.set_item("rows_unwritten", unwritten)?;
        Ok(d)
    }

    /// Queues the run's metadata (JSON text) for a network sink's collector (`run.json`).
    fn _put_run_meta(&self, json: &str) -> PyResult<()> {
        match self.shard.load_full() {
            Some(shard) => shard.logger.put_run_meta(json.as_bytes()).py(),
            None => Ok(()),
        }
    }

    /// Whether this process's shard streams to a collector.
    #[getter]
    fn _networked(&self) -> bool {
        self.shard.load().as_ref().is_some_and(|s| s.networked)
    }

    /// Live counters of this process's shard, with NaN/Inf counts per key under "nonfinite".
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let Some(shard) = self.shard.load_full() else {
            let d = stats_dict(py, &zero_stats())?;
            d.set_item("nonfinite", PyDict::new(py))?;
            return Ok(d);
        };
        let d = stats_dict(py, &shard.logger.stats())?;
        d.set_item(
            "nonfinite",
            nonfinite_dict(py, shard.logger.nonfinite().into_iter())?,
        )?;
        Ok(d)
    }

    /// Defines how a metric (a key, or a pattern with `*` and `?`) is summarised and plotted.
    /// See `steplog.Run.define_metric`.
    #[pyo3(signature = (name, step_metric=None, summary=None, goal=None))]
    fn _define_metric(
        slf: &Bound<'_, Self>,
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
        let shard = Self::shard(slf)?;
        // May wait (bounded) for ring space: without the GIL.
        slf.py().detach(|| shard.logger.define_metric(def)).py()
    }

    /// Overrides a summary value.
    fn _set_summary(slf: &Bound<'_, Self>, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = to_value(value).map_err(|e| {
            PyTypeError::new_err(format!("run.summary['{key}']: {}", e.value(value.py())))
        })?;
        if matches!(v, Value::List(_) | Value::Histogram(_)) {
            return Err(PyTypeError::new_err(format!(
                "run.summary['{key}']: summary values are numbers or str, not arrays"
            )));
        }
        let shard = Self::shard(slf)?;
        slf.py().detach(|| shard.logger.set_summary(key, v)).py()
    }

    /// The step the next `log()` without `step=` writes (in this process).
    #[getter]
    fn step(&self) -> i64 {
        self.shard.load().as_ref().map_or(0, |s| s.logger.step())
    }

    /// Whether the run is finished.
    #[getter]
    fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Whether this process has opened its shard.
    #[getter]
    fn _has_shard(&self) -> bool {
        self.shard.load().is_some()
    }

    /// This process's shard file (None until it logs, in a forked child).
    #[getter]
    fn shard_path(&self) -> Option<PathBuf> {
        self.shard.load().as_ref().map(|s| s.path.clone())
    }

    /// A pre-bound handle for the hottest loops: `loss = run.metric("loss")`, then
    /// `loss.log(x)` (and `loss.log(x, step=n)`) with `log`'s step rules.
    fn metric(slf: &Bound<'_, Self>, name: &str) -> PyResult<crate::metric::PyMetric> {
        steplog_core::keys::validate_key(name).py()?;
        Ok(crate::metric::PyMetric::new(
            slf.clone().unbind(),
            name.to_string(),
        ))
    }

    /// Makes this run the target of module-level `steplog.log()`.
    fn _make_current(slf: &Bound<'_, Self>) {
        crate::global::set_current(slf.clone().unbind());
    }
}
