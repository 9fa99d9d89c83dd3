//! Python arguments → core types: writer settings, shard identity, `define_metric` strings.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use steplog_core::{Setting, ShardInfo};

pub fn settings_from(settings: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(String, Setting)>> {
    let mut out = Vec::new();
    if let Some(d) = settings {
        for (k, v) in d.iter() {
            let name: String = k.extract()?;
            if v.is_none() {
                continue;
            }
            let text = steplog_core::config::is_text_setting(&name);
            let s = if let Ok(s) = v.cast::<PyString>() {
                Setting::Text(s.to_str()?.to_string())
            } else if let (false, Ok(f)) = (text, v.extract::<f64>()) {
                if v.is_instance_of::<pyo3::types::PyBool>() {
                    return Err(PyValueError::new_err(format!(
                        "{name}={v}: expected a number, not a bool"
                    )));
                }
                Setting::Num(f)
            } else {
                // NOTE: the token's value is never shown.
                let shown = if name == "token" {
                    "...".to_string()
                } else {
                    short_repr(&v)
                };
                let what = if text {
                    "a string"
                } else {
                    "a number or a string"
                };
                return Err(PyValueError::new_err(format!(
                    "{name}={shown}: expected {what}, got {}",
                    v.get_type().name()?
                )));
            };
            out.push((name, s));
        }
    }
    Ok(out)
}

pub fn shard_info(d: &Bound<'_, PyDict>) -> PyResult<ShardInfo> {
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

pub fn str_arg(arg: &str, v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<String>> {
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

/// `step=` of `run.log`: `None` or an int, extracted as pyo3 would; the message naming `step`
/// and its value is built only when that fails.
#[inline]
pub fn run_step(v: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    step_arg("run.log", v)
}

/// `step=` of module-level `steplog.log` (see [`run_step`]).
#[inline]
pub fn global_step(v: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    step_arg("steplog.log", v)
}

/// `step=` of `steplog.Metric.log` (see [`run_step`]).
#[inline]
pub fn metric_step(v: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    step_arg("steplog.Metric.log", v)
}

#[inline(always)]
fn step_arg(context: &str, v: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if v.is_none() {
        return Ok(None);
    }
    match v.extract::<i64>() {
        Ok(n) => Ok(Some(n)),
        Err(e) => Err(step_error(context, v, e)),
    }
}

/// The error for a `step=` that is not a 64-bit integer, naming it and its value, with
/// Python's own error as the cause.
#[cold]
#[inline(never)]
fn step_error(context: &str, v: &Bound<'_, PyAny>, cause: PyErr) -> PyErr {
    let py = v.py();
    let shown = short_repr(v);
    let err = if v.is_instance_of::<pyo3::types::PyInt>() {
        PyValueError::new_err(format!(
            "{context}: step={shown} is out of range: steps are 64-bit integers"
        ))
    } else {
        let type_name = v
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!(
            "{context}: step={shown} ({type_name}): expected an int or None"
        ))
    };
    err.set_cause(py, Some(cause));
    err
}

/// `repr(v)`, at most 80 characters (`<unprintable>` when `repr` fails).
pub fn short_repr(v: &Bound<'_, PyAny>) -> String {
    let text = v
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unprintable>".into());
    if text.chars().count() > 80 {
        let head: String = text.chars().take(77).collect();
        format!("{head}...")
    } else {
        text
    }
}
