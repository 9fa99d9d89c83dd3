//! `steplog._core.read_shard`: decodes one shard file in Rust (without the GIL) and hands the
//! columns to Python as numpy arrays that own their memory (no copy); a shard without a
//! summary frame also gets its summary recomputed from its history by the core
//! ([`HistoryStats`], the writer's own statistics), and `glob_match` is the core's matching of
//! `define_metric` patterns, so the Python reader implements neither.

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use steplog_core::metric::{Goal, MetricDef, MetricDefs, Stat};
use steplog_core::reader::{read_shard as core_read, Meta, Scalars};
use steplog_core::summary::HistoryStats;

use crate::errors::IntoPy;
use crate::topy::{summary_to_py, value_to_py};

fn meta_dict<'py>(py: Python<'py>, m: &[(String, Meta)]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in m {
        match v {
            Meta::Nil => d.set_item(k, py.None())?,
            Meta::Bool(b) => d.set_item(k, *b)?,
            Meta::Int(i) => d.set_item(k, *i)?,
            Meta::F64(f) => d.set_item(k, *f)?,
            Meta::Str(s) => d.set_item(k, s)?,
        }
    }
    Ok(d)
}

/// The statistics of every key of a shard that has no summary frame, replayed from its
/// history; `summary(metrics)` presents them under the run's definitions.
#[pyclass(frozen, module = "steplog._core", name = "HistorySummary")]
pub struct PyHistorySummary {
    stats: HistoryStats,
}

/// A definition as the reader lists it (`{"step_metric", "summary", "goal"}`), rebuilt as
/// the core decoded it from the file (unknown statistic or goal names are skipped there too).
fn definition(name: &str, d: &Bound<'_, PyAny>) -> PyResult<MetricDef> {
    let step_metric: Option<String> = d.get_item("step_metric")?.extract()?;
    let stats: Option<Vec<String>> = d.get_item("summary")?.extract()?;
    let goal: Option<String> = d.get_item("goal")?.extract()?;
    Ok(MetricDef {
        name: name.into(),
        step_metric: step_metric.map(Into::into),
        summary: stats.map(|s| {
            s.iter()
                .map(String::as_str)
                .filter_map(Stat::parse)
                .collect()
        }),
        goal: goal.as_deref().and_then(Goal::parse),
    })
}

#[pymethods]
impl PyHistorySummary {
    /// The summary under `metrics` (`(name, definition)` pairs, oldest first, as
    /// `RunReader.metrics` lists them), shaped like `run.summary`.
    fn summary<'py>(
        &self,
        py: Python<'py>,
        metrics: Vec<(String, Bound<'py, PyAny>)>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut defs = MetricDefs::default();
        for (name, d) in &metrics {
            defs.define(definition(name, d)?);
        }
        let out = PyDict::new(py);
        for (k, v) in self.stats.summary(&defs) {
            out.set_item(k, summary_to_py(py, &v)?)?;
        }
        Ok(out)
    }

    fn __len__(&self) -> usize {
        self.stats.len()
    }
}

/// Whether `name` matches the `define_metric` pattern `pattern` (`*` any run of characters,
/// `/` included; `?` one character; nothing else is special).
#[pyfunction]
pub fn glob_match(pattern: &str, name: &str) -> bool {
    steplog_core::glob::glob_match(pattern, name)
}

/// Decodes the shard file at `path` into a dict of plain Python and numpy values.
#[pyfunction]
pub fn read_shard<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let (data, history) = py
        .detach(|| {
            let data = core_read(&path)?;
            let history = (!data.has_summary).then(|| HistoryStats::from_shard(&data));
            Ok::<_, steplog_core::Error>((data, history))
        })
        .py()?;
    let out = PyDict::new(py);
    match history {
        Some(stats) => out.set_item("history_summary", PyHistorySummary { stats })?,
        None => out.set_item("history_summary", py.None())?,
    }
    out.set_item("info", meta_dict(py, &data.info)?)?;
    out.set_item("keys", &data.keys)?;
    let series = PyList::empty(py);
    for ((key, dtype), s) in data.series {
        let steps = PyArray1::from_vec(py, s.steps);
        let values = match s.values {
            Scalars::F64(v) => PyArray1::from_vec(py, v).into_any(),
            Scalars::I64(v) => PyArray1::from_vec(py, v).into_any(),
            Scalars::Bool(v) => PyArray1::from_vec(py, v).into_any(),
        };
        series.append((key, dtype.name(), steps, values))?;
    }
    out.set_item("series", series)?;
    let others = PyList::empty(py);
    for (step, key, value) in &data.others {
        let kind = match value {
            steplog_core::Value::Text(_) => "text",
            steplog_core::Value::List(_) => "list",
            steplog_core::Value::Histogram(_) => "hist",
            _ => "scalar",
        };
        others.append((step, &**key, kind, value_to_py(py, value)?))?;
    }
    out.set_item("others", others)?;
    let summary = PyDict::new(py);
    for (k, v) in &data.summary {
        summary.set_item(k, summary_to_py(py, v)?)?;
    }
    out.set_item("summary", summary)?;
    out.set_item("has_summary", data.has_summary)?;
    let metrics = PyList::empty(py);
    for m in data.metrics.as_slice() {
        let summary = m
            .summary
            .as_ref()
            .map(|s| s.iter().map(|s| s.name()).collect::<Vec<_>>());
        let d = PyDict::new(py);
        d.set_item("step_metric", m.step_metric.as_deref())?;
        d.set_item("summary", summary)?;
        d.set_item("goal", m.goal.map(|g| g.name()))?;
        metrics.append((m.name.as_ref(), d))?;
    }
    out.set_item("metrics", metrics)?;
    out.set_item("gaps", data.gaps)?;
    match &data.close {
        Some(c) => {
            let close = meta_dict(py, c)?;
            let counts = PyDict::new(py);
            for (k, c) in &data.nonfinite {
                counts.set_item(k, c.to_vec())?;
            }
            close.set_item("nonfinite", counts)?;
            out.set_item("close", close)?;
        }
        None => out.set_item("close", py.None())?,
    }
    let problems = PyList::empty(py);
    for p in &data.problems {
        let d = PyDict::new(py);
        d.set_item("offset", p.offset)?;
        d.set_item("length", p.len)?;
        d.set_item("torn_tail", p.torn_tail)?;
        d.set_item("reason", &p.reason)?;
        d.set_item("lost_frames", p.lost_frames)?;
        problems.append(d)?;
    }
    out.set_item("problems", problems)?;
    out.set_item("missing_frames", data.missing_frames)?;
    out.set_item("rows", data.rows)?;
    out.set_item(
        "nonfinite",
        crate::topy::nonfinite_dict(py, data.nonfinite.into_iter())?,
    )?;
    Ok(out)
}
