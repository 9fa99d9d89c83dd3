//! Python values → owned core values, done once per `log()` call with the GIL held.
//!
//! Fast paths first: float (numpy.float64 included, it subclasses float), int, bool, str, then
//! nested dicts (flattened with `/`), `steplog.Histogram`, and finally anything numpy can turn
//! into an array (numpy scalars and arrays, objects with `__array__`): size 1 → scalar,
//! ≤ 32 → list, larger → 64-bin histogram.

use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use smallvec::SmallVec;
use steplog_core::histogram::{
    bin_f32, bin_f32_iter, bin_f64, bin_f64_iter, bin_int_iter, DEFAULT_BINS,
};
use steplog_core::logger::Call;
use steplog_core::{Histogram, Value};

use crate::errors::IntoPy;

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

/// Stages the values of `data` into `call` when every one of them is a plain float, int,
/// bool, str or a dict of those; returns `Ok(false)` at the first other value (the caller then
/// takes the general path). Runs no Python code, so it is safe under the accumulator's lock.
/// Sets `nested` when a value is a dict (its flattened names may repeat a top-level key).
pub fn stage_plain(
    call: &mut Call<'_>,
    data: &Bound<'_, PyDict>,
    prefix: Option<&str>,
    nested: &mut bool,
) -> PyResult<bool> {
    // NOTE: `take(len)` stops after the last item instead of asking the dict for one more,
    // which would scan its empty slots (a visible cost for a one-key dict).
    for (k, v) in data.iter().take(data.len()) {
        let Ok(k) = k.cast::<PyString>() else {
            return Err(bad_key(prefix));
        };
        let value = if let Ok(f) = v.cast::<PyFloat>() {
            let staged = match prefix {
                None => call.set_f64(k.to_str()?, f.value()),
                Some(p) => call.set_f64(&format!("{p}/{}", k.to_str()?), f.value()),
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
            Value::Text(s.to_str()?.into())
        } else if let Ok(d) = v.cast::<PyDict>() {
            let name = match prefix {
                None => k.to_str()?.to_string(),
                Some(p) => format!("{p}/{}", k.to_str()?),
            };
            *nested = true;
            if !stage_plain(call, d, Some(&name), nested)? {
                return Ok(false);
            }
            continue;
        } else {
            return Ok(false);
        };
        let staged = match prefix {
            None => call.set(k.to_str()?, value),
            Some(p) => call.set(&format!("{p}/{}", k.to_str()?), value),
        };
        staged.py()?;
    }
    Ok(true)
}

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
    for (k, v) in data.iter().take(data.len()) {
        let Ok(k) = k.cast_into::<PyString>() else {
            return Err(bad_key(prefix));
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

fn bad_key(prefix: Option<&str>) -> PyErr {
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
    tensor_value(v)
}

fn unsupported(v: &Bound<'_, PyAny>) -> PyErr {
    unsupported_because(v, "")
}

fn unsupported_because(v: &Bound<'_, PyAny>, detail: &str) -> PyErr {
    let ty = v
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string());
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
    match tensor_as(v, Shape::Histogram(n))? {
        Value::Histogram(h) => Ok(*h),
        _ => Err(unsupported(v)),
    }
}

/// numpy arrays and scalars, torch/jax tensors, DLPack producers, `__array__` objects, lists.
fn tensor_as(v: &Bound<'_, PyAny>, shape: Shape) -> PyResult<Value> {
    let py = v.py();
    if let Ok(arr) = v.cast::<PyUntypedArray>() {
        return array_as(arr, shape);
    }
    let ty = v.get_type();
    let module = ty.module()?;
    let module = module.to_str()?;
    if module == "numpy" && matches!(shape, Shape::Auto) {
        // A numpy scalar (np.float32(1), np.bool_(True), ...): its Python value is exact.
        if v.hasattr(intern!(py, "item"))? && v.hasattr(intern!(py, "dtype"))? {
            let item = v.call_method0(intern!(py, "item"))?;
            if item.is(v) {
                return Err(unsupported(v));
            }
            return to_value(&item);
        }
    }
    if module.starts_with("torch") {
        // Tensors go through steplog._torch: detach, move or bin on the device, never a copy
        // of a large CUDA tensor to the host.
        let conv = py.import(intern!(py, "steplog._torch"))?;
        let (max_list, bins) = match shape {
            Shape::Auto => (MAX_LIST, DEFAULT_BINS),
            Shape::Histogram(n) => (0, n),
        };
        let out = conv.call_method1(intern!(py, "convert"), (v, max_list, bins))?;
        return match out.cast::<PyUntypedArray>() {
            Ok(arr) => array_as(arr, shape),
            Err(_) => Ok(Value::Histogram(Box::new(histogram_from_parts(&out)?))),
        };
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
        return Err(unsupported(v));
    }
    let arr = np
        .call_method1(intern!(py, "asarray"), (v,))
        .map_err(|_| unsupported(v))?;
    match arr.cast::<PyUntypedArray>() {
        Ok(a) => array_as(a, shape).map_err(|e| {
            let detail = e.value(py).to_string();
            unsupported_because(v, detail.trim_start_matches("unsupported value: "))
        }),
        Err(_) => Err(unsupported(v)),
    }
}

/// `(counts, edges, nan, pos_inf, neg_inf)` as returned by steplog._torch for device binning.
fn histogram_from_parts(out: &Bound<'_, PyAny>) -> PyResult<Histogram> {
    let (counts, edges, nan, pos_inf, neg_inf): (Vec<u64>, Vec<f64>, u64, u64, u64) =
        out.extract()?;
    Ok(Histogram {
        counts,
        edges,
        nan,
        pos_inf,
        neg_inf,
    })
}

/// Elements numpy arrays can hold that steplog reads in place.
trait Elem: numpy::Element + Copy + Send + Sync {
    fn scalar(self) -> Value;
    fn to_f64(self) -> f64;
    fn bin<'a, I: Iterator<Item = &'a Self> + Clone>(data: I, n: usize) -> Histogram
    where
        Self: 'a;
    fn bin_slice(data: &[Self], n: usize) -> Histogram {
        Self::bin(data.iter(), n)
    }
}

impl Elem for f64 {
    fn scalar(self) -> Value {
        Value::F64(self)
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn bin<'a, I: Iterator<Item = &'a Self> + Clone>(data: I, n: usize) -> Histogram {
        bin_f64_iter(data.copied(), n)
    }
    fn bin_slice(data: &[Self], n: usize) -> Histogram {
        bin_f64(data, n)
    }
}

impl Elem for f32 {
    fn scalar(self) -> Value {
        Value::F64(f64::from(self))
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn bin<'a, I: Iterator<Item = &'a Self> + Clone>(data: I, n: usize) -> Histogram {
        bin_f32_iter(data.copied(), n)
    }
    fn bin_slice(data: &[Self], n: usize) -> Histogram {
        bin_f32(data, n)
    }
}

impl Elem for bool {
    fn scalar(self) -> Value {
        Value::Bool(self)
    }
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn bin<'a, I: Iterator<Item = &'a Self> + Clone>(data: I, n: usize) -> Histogram {
        bin_int_iter(data.map(|b| i128::from(*b)), n)
    }
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn scalar(self) -> Value {
                i64::try_from(self).map_or(Value::F64(self as f64), Value::I64)
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn bin<'a, I: Iterator<Item = &'a Self> + Clone>(data: I, n: usize) -> Histogram {
                bin_int_iter(data.map(|x| i128::from(*x)), n)
            }
        }
    )*};
}

int_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

/// Arrays at least this large are binned with the GIL released.
const DETACH_AT: usize = 1 << 16;

/// How an array becomes a value: by size (`log`), or always a histogram of `n` bins.
#[derive(Clone, Copy)]
pub enum Shape {
    /// size 1 → scalar, ≤ 32 → list, larger → 64-bin histogram.
    Auto,
    /// A histogram with this many bins, whatever the size.
    Histogram(usize),
}

fn typed<T: Elem>(arr: &Bound<'_, PyUntypedArray>, shape: Shape) -> Option<PyResult<Value>> {
    let arr = arr.cast::<PyArrayDyn<T>>().ok()?;
    let ro = arr.readonly();
    let view = ro.as_array();
    let size = view.len();
    let bins = match shape {
        Shape::Histogram(n) => n,
        Shape::Auto => DEFAULT_BINS,
    };
    let auto = matches!(shape, Shape::Auto);
    Some(Ok(if auto && size == 1 {
        view.iter()
            .next()
            .map_or(Value::F64(f64::NAN), |x| x.scalar())
    } else if auto && size <= MAX_LIST {
        Value::List(view.iter().map(|x| x.to_f64()).collect())
    } else {
        let bin = || match view.as_slice_memory_order() {
            Some(s) => T::bin_slice(s, bins),
            None => T::bin(view.iter(), bins),
        };
        // NOTE: with the GIL released another thread could write to this array while it is
        // read; the counts would then reflect a mix of old and new values (documented).
        let h = if size >= DETACH_AT {
            arr.py().detach(bin)
        } else {
            bin()
        };
        Value::Histogram(Box::new(h))
    }))
}

/// A numpy array read in place, shaped as `shape` says.
fn array_as(arr: &Bound<'_, PyUntypedArray>, shape: Shape) -> PyResult<Value> {
    if arr.len() == 0 && matches!(shape, Shape::Auto) {
        return Err(PyTypeError::new_err("unsupported value: an empty array"));
    }
    let found = typed::<f64>(arr, shape)
        .or_else(|| typed::<f32>(arr, shape))
        .or_else(|| typed::<i64>(arr, shape))
        .or_else(|| typed::<i32>(arr, shape))
        .or_else(|| typed::<bool>(arr, shape))
        .or_else(|| typed::<u8>(arr, shape))
        .or_else(|| typed::<i8>(arr, shape))
        .or_else(|| typed::<i16>(arr, shape))
        .or_else(|| typed::<u16>(arr, shape))
        .or_else(|| typed::<u32>(arr, shape))
        .or_else(|| typed::<u64>(arr, shape));
    if let Some(v) = found {
        return v;
    }
    let dtype = arr.dtype();
    if dtype.kind() == b'f' {
        // float16 and other float widths numpy has but Rust reads poorly: via float32/64.
        let wide = if dtype.itemsize() <= 4 {
            "float32"
        } else {
            "float64"
        };
        let cast = arr.call_method1(intern!(arr.py(), "astype"), (wide,))?;
        return array_as(cast.cast::<PyUntypedArray>()?, shape);
    }
    Err(PyTypeError::new_err(format!(
        "unsupported value: an array of dtype {}; log numeric or bool arrays",
        dtype.str()?
    )))
}
