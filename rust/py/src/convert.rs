//! Python values → owned core values, done once per `log()` call with the GIL held.
//!
//! Fast paths first: float (numpy.float64 included, it subclasses float), int, bool, str, then
//! nested dicts (flattened with `/`), `steplog.Histogram`, and finally anything numpy can turn
//! into an array (numpy scalars and arrays, objects with `__array__`): size 1 → scalar,
//! ≤ 32 → list, larger → 64-bin histogram.

use numpy::PyArrayMethods;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use steplog_core::histogram::{bin_f64, DEFAULT_BINS};
use steplog_core::Value;

use crate::histogram::PyHistogram;

/// Largest tensor stored as a list; larger ones become histograms.
pub const MAX_LIST: usize = 32;
/// Deepest dict nesting flattened.
const MAX_DEPTH: usize = 32;

/// A flattened key: the caller's own string when it is top level, else `prefix/key`.
pub enum KeyName<'py> {
    /// A top-level key, borrowed.
    Py(Bound<'py, PyString>),
    /// A nested key joined with `/`.
    Owned(String),
}

impl KeyName<'_> {
    /// The key as text.
    pub fn as_str(&self) -> PyResult<&str> {
        match self {
            KeyName::Py(s) => s.to_str(),
            KeyName::Owned(s) => Ok(s),
        }
    }
}

/// The cells of one call, on the stack for up to 16 keys.
pub type Cells<'py> = SmallVec<[(KeyName<'py>, Value); 16]>;

/// Flattens `data` into `out`, converting every value. Fails on the first bad key or value,
/// naming it, before anything is logged.
pub fn flatten<'py>(data: &Bound<'py, PyDict>, out: &mut Cells<'py>) -> PyResult<()> {
    flatten_into(data, None, out, 0)
}

fn flatten_into<'py>(
    data: &Bound<'py, PyDict>,
    prefix: Option<&str>,
    out: &mut Cells<'py>,
    depth: usize,
) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(PyTypeError::new_err(format!(
            "steplog.log: dict nested deeper than {MAX_DEPTH} levels under {:?}",
            prefix.unwrap_or("")
        )));
    }
    for (k, v) in data.iter() {
        let Ok(k) = k.cast_into::<PyString>() else {
            return Err(bad_key(&data.py(), prefix));
        };
        let name = match prefix {
            None => KeyName::Py(k),
            Some(p) => KeyName::Owned(format!("{p}/{}", k.to_str()?)),
        };
        if let Ok(d) = v.cast::<PyDict>() {
            let p = name.as_str()?.to_string();
            flatten_into(d, Some(&p), out, depth + 1)?;
            continue;
        }
        let value = to_value(&v).map_err(|e| with_key(e, &name))?;
        out.push((name, value));
    }
    Ok(())
}

fn bad_key(_py: &Python<'_>, prefix: Option<&str>) -> PyErr {
    match prefix {
        None => PyTypeError::new_err("steplog.log: keys must be str"),
        Some(p) => PyTypeError::new_err(format!("steplog.log: keys must be str (under {p:?})")),
    }
}

fn with_key(e: PyErr, name: &KeyName<'_>) -> PyErr {
    let key = name.as_str().unwrap_or("?");
    Python::attach(|py| {
        let msg = e.value(py).to_string();
        let new = PyErr::from_type(e.get_type(py), format!("steplog.log: key '{key}': {msg}"));
        new.set_cause(py, Some(e));
        new
    })
}

fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || py.import("numpy").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// Converts one value.
pub fn to_value(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(Value::F64(f.value()));
    }
    if let Ok(b) = v.cast_exact::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = v.cast::<PyInt>() {
        return Ok(match i.extract::<i64>() {
            Ok(i) => Value::I64(i),
            Err(_) => Value::F64(i.extract::<f64>()?),
        });
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Value::Text(s.to_str()?.into()));
    }
    if let Ok(h) = v.cast::<PyHistogram>() {
        return Ok(Value::Histogram(Box::new(h.get().inner.clone())));
    }
    array_value(v)
}

fn unsupported(v: &Bound<'_, PyAny>) -> PyErr {
    let ty = v
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string());
    PyTypeError::new_err(format!(
        "unsupported value of type {ty}; log numbers, str, dicts of them, \
         numpy arrays or tensors, or steplog.Histogram"
    ))
}

fn array_value(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = v.py();
    let is_arraylike = v.is_instance_of::<PyList>()
        || v.is_instance_of::<PyTuple>()
        || v.hasattr(pyo3::intern!(py, "__array__"))?
        || v.hasattr(pyo3::intern!(py, "__array_interface__"))?;
    if !is_arraylike || v.is_none() {
        return Err(unsupported(v));
    }
    let np = numpy(py)?;
    let arr = np
        .call_method1(pyo3::intern!(py, "asarray"), (v,))
        .map_err(|_| unsupported(v))?;
    let kind: String = arr
        .getattr(pyo3::intern!(py, "dtype"))?
        .getattr(pyo3::intern!(py, "kind"))?
        .extract()?;
    let size: usize = arr.getattr(pyo3::intern!(py, "size"))?.extract()?;
    if !matches!(kind.as_str(), "b" | "i" | "u" | "f") || size == 0 {
        return Err(unsupported(v));
    }
    if size == 1 {
        let item = arr.call_method0(pyo3::intern!(py, "item"))?;
        return to_value(&item);
    }
    let flat = np.call_method1(
        pyo3::intern!(py, "ascontiguousarray"),
        (arr.call_method0(pyo3::intern!(py, "ravel"))?, "float64"),
    )?;
    let data: Vec<f64> = flat
        .cast::<numpy::PyArray1<f64>>()?
        .readonly()
        .as_slice()
        .map(<[f64]>::to_vec)
        .map_err(|e| PyTypeError::new_err(e.to_string()))?;
    if size <= MAX_LIST {
        return Ok(Value::List(data.into()));
    }
    let h = py.detach(|| bin_f64(&data, DEFAULT_BINS));
    Ok(Value::Histogram(Box::new(h)))
}
