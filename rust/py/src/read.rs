//! `steplog._core.read_shard`: decodes one shard file in Rust (without the GIL) and hands the
//! columns to Python as numpy arrays that own their memory (no copy).

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use steplog_core::reader::{read_shard as core_read, Meta, Scalars};

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

/// Decodes the shard file at `path` into a dict of plain Python and numpy values.
#[pyfunction]
pub fn read_shard<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let data = py.detach(|| core_read(&path)).py()?;
    let out = PyDict::new(py);
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
