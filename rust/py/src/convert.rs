//! Python values → owned core values, done once per `log()` call with the GIL held.
//!
//! Fast paths first: float (numpy.float64 included, it subclasses float), int, bool, str, then
//! nested dicts (flattened with `/`), `steplog.Histogram`, numpy scalars by dtype kind, and
//! finally anything numpy can turn into an array (arrays, torch/jax tensors, objects with
//! `__array__`, lists and tuples; see [`crate::array`] and [`crate::npscalar`]). The rare
//! kinds (datetimes, bytes, time dtypes) go through `steplog._values`, whose result is
//! converted without calling back.
//!
//! Invariants: no conversion recurses except through dict nesting, which both paths bound at
//! [`MAX_DEPTH`]; every failure is a `TypeError`/`ValueError` naming the key, raised before
//! anything of the call is logged.

use numpy::PyUntypedArray;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use smallvec::SmallVec;
use steplog_core::histogram::DEFAULT_BINS;
use steplog_core::logger::Call;
use steplog_core::{Histogram, Value};

use crate::array::{array_as, histogram_from_parts, Shape, MAX_LIST};
use crate::errors::IntoPy;
use crate::histogram::PyHistogram;
use crate::npscalar::{numpy, numpy_generic, numpy_scalar};

/// Deepest dict nesting flattened (the top-level dict is depth 0), on both paths.
pub const MAX_DEPTH: usize = 32;

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

/// Stages the values of `data` into `call` when every one of them is a plain float, int,
/// bool, str or a dict of those, at most [`MAX_DEPTH`] deep; returns `Ok(false)` at the first
/// other value, key or depth (the caller then takes the general path, which names what was
/// wrong). Runs no Python code, so it is safe under the accumulator's lock. Sets `nested`
/// when a value is a dict (its flattened names may repeat a top-level key).
pub fn stage_plain(
    call: &mut Call<'_>,
    data: &Bound<'_, PyDict>,
    prefix: Option<&str>,
    nested: &mut bool,
    depth: usize,
) -> PyResult<bool> {
    // NOTE: `take(len)` stops after the last item instead of asking the dict for one more,
    // which would scan its empty slots (a visible cost for a one-key dict).
    for (k, v) in data.iter().take(data.len()) {
        let Ok(k) = k.cast::<PyString>() else {
            return Ok(false);
        };
        let Ok(k) = k.to_str() else {
            return Ok(false);
        };
        let value = if let Ok(f) = v.cast::<PyFloat>() {
            let staged = match prefix {
                None => call.set_f64(k, f.value()),
                Some(p) => call.set_f64(&format!("{p}/{k}"), f.value()),
            };
            staged.py()?;
            continue;
        } else if let Ok(b) = v.cast_exact::<PyBool>() {
            Value::Bool(b.is_true())
        } else if let Ok(i) = v.cast::<PyInt>() {
            match i.extract::<i64>() {
                Ok(i) => Value::I64(i),
                Err(_) => return Ok(false),
            }
        } else if let Ok(s) = v.cast::<PyString>() {
            match s.to_str() {
                Ok(s) => Value::Text(s.into()),
                Err(_) => return Ok(false),
            }
        } else if let Ok(d) = v.cast::<PyDict>() {
            // Only nesting pays for the depth count; a self-containing dict stops here too.
            if depth >= MAX_DEPTH {
                return Ok(false);
            }
            let name = match prefix {
                None => k.to_string(),
                Some(p) => format!("{p}/{k}"),
            };
            *nested = true;
            if !stage_plain(call, d, Some(&name), nested, depth + 1)? {
                return Ok(false);
            }
            continue;
        } else {
            return Ok(false);
        };
        let staged = match prefix {
            None => call.set(k, value),
            Some(p) => call.set(&format!("{p}/{k}"), value),
        };
        staged.py()?;
    }
    Ok(true)
}

/// Flattens `data` into `out`, converting every value. Fails on the first bad key or value,
/// naming it, before anything is logged. A `None` value leaves its key out of the row.
pub fn flatten<'py>(data: &Bound<'py, PyDict>, out: &mut Cells<'py>) -> PyResult<()> {
    flatten_into(data, None, out, 0)
}

/// A key path for a message, cut to a readable length.
fn shown(path: &str) -> String {
    const MAX: usize = 200;
    if path.len() <= MAX {
        return path.to_string();
    }
    let cut = (0..=MAX)
        .rev()
        .find(|i| path.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}...", &path[..cut])
}

fn flatten_into<'py>(
    data: &Bound<'py, PyDict>,
    prefix: Option<&str>,
    out: &mut Cells<'py>,
    depth: usize,
) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "steplog.log: key '{}': dicts nested deeper than {MAX_DEPTH} levels (or a dict \
             that contains itself)",
            shown(prefix.unwrap_or(""))
        )));
    }
    // The items are taken first: converting a value may run Python code that changes `data`.
    let items: SmallVec<[(Bound<'py, PyAny>, Bound<'py, PyAny>); 16]> =
        data.iter().take(data.len()).collect();
    for (k, v) in items {
        let k = match k.cast_into::<PyString>() {
            Ok(k) => k,
            Err(e) => return Err(bad_key(prefix, e.into_inner().as_any())),
        };
        let name = match prefix {
            None => KeyName::Py(k),
            Some(p) => KeyName::Owned(format!("{p}/{}", key_text(&k, prefix)?)),
        };
        if let KeyName::Py(k) = &name {
            key_text(k, prefix)?;
        }
        if let Ok(d) = v.cast::<PyDict>() {
            let p = name.as_str()?.to_string();
            flatten_into(d, Some(&p), out, depth + 1)?;
            continue;
        }
        if v.is_none() {
            continue;
        }
        let value = to_value(&v).map_err(|e| with_key(e, &name))?;
        out.push((name, value));
    }
    Ok(())
}

/// A key's text; a `str` Rust cannot read (a lone surrogate) is a `ValueError`.
fn key_text<'a>(k: &'a Bound<'_, PyString>, prefix: Option<&str>) -> PyResult<&'a str> {
    k.to_str().map_err(|_| {
        let under = prefix.map_or_else(String::new, |p| format!(" under '{}'", shown(p)));
        PyValueError::new_err(format!(
            "steplog.log: a key{under} is not valid text (it holds a lone surrogate)"
        ))
    })
}

fn bad_key(prefix: Option<&str>, k: &Bound<'_, PyAny>) -> PyErr {
    let ty = type_name(k);
    match prefix {
        None => PyTypeError::new_err(format!("steplog.log: keys must be str, not {ty}")),
        Some(p) => PyTypeError::new_err(format!(
            "steplog.log: keys must be str, not {ty} (under '{}')",
            shown(p)
        )),
    }
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

fn with_key(e: PyErr, name: &KeyName<'_>) -> PyErr {
    let key = shown(name.as_str().unwrap_or("?"));
    Python::attach(|py| {
        let msg = e
            .value(py)
            .str()
            .map_or_else(|_| "?".to_string(), |s| s.to_string());
        let new = PyErr::from_type(e.get_type(py), format!("steplog.log: key '{key}': {msg}"));
        new.set_cause(py, Some(e));
        new
    })
}

/// Converts one value (a `None` is a `TypeError` here; `log()` leaves such keys out).
pub fn to_value(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if let Some(value) = plain(v)? {
        return Ok(value);
    }
    if let Ok(h) = v.cast::<PyHistogram>() {
        return Ok(Value::Histogram(Box::new(h.get().inner.clone())));
    }
    tensor_value(v).map_err(|e| as_value_error(v, e))
}

/// A float, bool, int or str, or `None` for any other type.
pub(crate) fn plain(v: &Bound<'_, PyAny>) -> PyResult<Option<Value>> {
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(Some(Value::F64(f.value())));
    }
    if let Ok(b) = v.cast_exact::<PyBool>() {
        return Ok(Some(Value::Bool(b.is_true())));
    }
    if let Ok(i) = v.cast::<PyInt>() {
        return Ok(Some(match i.extract::<i64>() {
            Ok(i) => Value::I64(i),
            Err(_) => {
                match i.extract::<f64>() {
                    Ok(f) => Value::F64(f),
                    Err(_) => return Err(PyValueError::new_err(
                        "an int too large for a float64 (ints beyond int64 are stored as floats)",
                    )),
                }
            }
        }));
    }
    if let Ok(s) = v.cast::<PyString>() {
        let s = s.to_str().map_err(|_| {
            PyValueError::new_err("a str that is not valid text (it holds a lone surrogate)")
        })?;
        return Ok(Some(Value::Text(s.into())));
    }
    Ok(None)
}

/// `plain` for a value a conversion produced: anything else is unsupported (no recursion).
pub(crate) fn plain_result(v: &Bound<'_, PyAny>, from: &Bound<'_, PyAny>) -> PyResult<Value> {
    plain(v)?.ok_or_else(|| unsupported(from))
}

/// Errors from arbitrary Python code (`__array__`, `__getattr__`, ...) become a `TypeError`
/// that keeps the original as its cause; `TypeError`, `ValueError` and exceptions that are
/// not `Exception` (KeyboardInterrupt, SystemExit) pass unchanged.
fn as_value_error(v: &Bound<'_, PyAny>, e: PyErr) -> PyErr {
    let py = v.py();
    if e.is_instance_of::<PyTypeError>(py)
        || e.is_instance_of::<PyValueError>(py)
        || !e.is_instance_of::<PyException>(py)
    {
        return e;
    }
    let detail = e
        .value(py)
        .repr()
        .map_or_else(|_| "?".to_string(), |s| s.to_string());
    let new = unsupported_because(v, &format!("converting it raised {}", shown(&detail)));
    new.set_cause(py, Some(e));
    new
}

pub(crate) fn unsupported(v: &Bound<'_, PyAny>) -> PyErr {
    unsupported_because(v, "")
}

pub(crate) fn unsupported_because(v: &Bound<'_, PyAny>, detail: &str) -> PyErr {
    let ty = type_name(v);
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    PyTypeError::new_err(format!(
        "unsupported value of type {ty}{detail}; log numbers, str, dicts of them, \
         numpy arrays or tensors, or steplog.Histogram"
    ))
}

fn tensor_value(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    tensor_as(v, Shape::Auto)
}

/// Bins any array-like (numpy, torch, jax, DLPack, `__array__`, sequences) into `n` bins.
pub fn histogram_of(v: &Bound<'_, PyAny>, n: usize) -> PyResult<Histogram> {
    match tensor_as(v, Shape::Histogram(n)).map_err(|e| as_value_error(v, e))? {
        Value::Histogram(h) => Ok(*h),
        _ => Err(unsupported(v)),
    }
}

/// numpy arrays and scalars, torch/jax tensors, DLPack producers, `__array__` objects, lists;
/// then the rare kinds `steplog._values` knows.
fn tensor_as(v: &Bound<'_, PyAny>, shape: Shape) -> PyResult<Value> {
    let py = v.py();
    if let Ok(arr) = v.cast::<PyUntypedArray>() {
        return array_as(arr, shape);
    }
    if matches!(shape, Shape::Auto) && v.is_instance(numpy_generic(py)?)? {
        return numpy_scalar(v);
    }
    let ty = v.get_type();
    if is_torch(&ty) {
        return torch_as(v, intern!(py, "convert"), shape);
    }
    if first_is_torch(v)? {
        // `[loss_a, loss_b]`: stacked by torch, so that grad-requiring and bfloat16 tensors
        // work as they do alone (numpy.asarray refuses both).
        return torch_as(v, intern!(py, "convert_sequence"), shape);
    }
    let np = numpy(py)?;
    if v.hasattr(intern!(py, "__dlpack__"))? {
        if let Ok(arr) = np.call_method1(intern!(py, "from_dlpack"), (v,)) {
            if let Ok(arr) = arr.cast::<PyUntypedArray>() {
                return array_as(arr, shape);
            }
        }
    }
    let arraylike = v.is_instance_of::<PyList>()
        || v.is_instance_of::<PyTuple>()
        || v.hasattr(intern!(py, "__array__"))?
        || v.hasattr(intern!(py, "__array_interface__"))?;
    if !arraylike {
        if matches!(shape, Shape::Histogram(_)) {
            return Err(unsupported(v));
        }
        let conv = py.import(intern!(py, "steplog._values"))?;
        let out = conv.call_method1(intern!(py, "convert"), (v,))?;
        if out.is(py.NotImplemented()) {
            return Err(unsupported(v));
        }
        return plain_result(&out, v);
    }
    let arr = np.call_method1(intern!(py, "asarray"), (v,)).map_err(|e| {
        if e.is_instance_of::<PyException>(py) {
            let detail = e
                .value(py)
                .str()
                .map_or_else(|_| "?".to_string(), |s| s.to_string());
            let new = unsupported_because(v, &shown(&detail));
            new.set_cause(py, Some(e));
            new
        } else {
            e
        }
    })?;
    match arr.cast::<PyUntypedArray>() {
        Ok(a) => array_as(a, shape).map_err(|e| {
            if e.is_instance_of::<PyValueError>(py) {
                return e;
            }
            let detail = e.value(py).to_string();
            unsupported_because(v, detail.trim_start_matches("unsupported value: "))
        }),
        Err(_) => Err(unsupported(v)),
    }
}

fn is_torch(ty: &Bound<'_, PyType>) -> bool {
    ty.module()
        .is_ok_and(|m| m.to_str().is_ok_and(|m| m.starts_with("torch")))
}

/// Whether `v` is a non-empty list or tuple whose first element is a torch tensor.
fn first_is_torch(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    let first = if let Ok(l) = v.cast::<PyList>() {
        l.get_item(0).ok()
    } else if let Ok(t) = v.cast::<PyTuple>() {
        t.get_item(0).ok()
    } else {
        None
    };
    Ok(first.is_some_and(|f| is_torch(&f.get_type())))
}

/// Tensors go through steplog._torch (`func` is `convert` or `convert_sequence`): detach,
/// move or bin on the device, never a copy of a large CUDA tensor to the host.
fn torch_as(v: &Bound<'_, PyAny>, func: &Bound<'_, PyString>, shape: Shape) -> PyResult<Value> {
    let py = v.py();
    let conv = py.import(intern!(py, "steplog._torch"))?;
    let (max_list, bins) = match shape {
        Shape::Auto => (MAX_LIST, DEFAULT_BINS),
        Shape::Histogram(n) => (0, n),
    };
    let out = conv.call_method1(func, (v, max_list, bins))?;
    match out.cast::<PyUntypedArray>() {
        Ok(arr) => array_as(arr, shape),
        Err(_) => Ok(Value::Histogram(Box::new(histogram_from_parts(&out)?))),
    }
}
