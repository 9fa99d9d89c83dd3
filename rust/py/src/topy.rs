//! Core values → Python objects: counters, summary values, logged values.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList};
use steplog_core::{List, ListData, StatsSnapshot, SummaryValue, Value};

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
    d.set_item("rows_unacked", s.rows_unacked)?;
    d.set_item("reconnects", s.reconnects)?;
    d.set_item("net_errors", s.net_errors)?;
    d.set_item("first_net_error", s.first_net_error.clone())?;
    d.set_item("spill_path", s.spill_path.clone())?;
    d.set_item("writer_panic", s.writer_panic.clone())?;
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
        Value::List(l) => list_to_py(py, l)?,
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

/// A list value as nested Python lists of its shape, holding floats, ints or bools.
fn list_to_py(py: Python<'_>, l: &List) -> PyResult<Py<PyAny>> {
    let flat: Vec<Py<PyAny>> = match l.data() {
        ListData::F64(v) => v
            .iter()
            .map(|x| PyFloat::new(py, *x).into_any().unbind())
            .collect(),
        ListData::I64(v) => v
            .iter()
            .map(|x| PyInt::new(py, *x).into_any().unbind())
            .collect(),
        ListData::Bool(v) => v
            .iter()
            .map(|x| PyBool::new(py, *x).to_owned().into_any().unbind())
            .collect(),
    };
    let shape = l.shape();
    // Innermost dimension first: group the flat elements into lists of each size in turn.
    let mut level = flat;
    for d in shape.iter().skip(1).rev() {
        let d = (*d as usize).max(1);
        let mut next = Vec::with_capacity(level.len() / d);
        let mut it = level.into_iter();
        loop {
            let group: Vec<Py<PyAny>> = it.by_ref().take(d).collect();
            if group.is_empty() {
                break;
            }
            next.push(PyList::new(py, group)?.into_any().unbind());
        }
        level = next;
    }
    Ok(PyList::new(py, level)?.into_any().unbind())
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
