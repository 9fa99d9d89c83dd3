//! numpy scalars → values, by their dtype's kind, never by recursing on `item()` (whose
//! result for a longdouble or clongdouble is the same kind of scalar again): bool and integer
//! kinds as their `item()`, float16/32/64 exactly, longdouble rounded to float64, complex and
//! structured values a `TypeError`, datetime64/timedelta64 and bytes through `steplog._values`,
//! ml_dtypes' kind-'V' numbers (bfloat16, float8, int4) as numbers.

use numpy::{PyArrayDescr, PyArrayDescrMethods};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use steplog_core::Value;

use crate::convert::{plain, plain_result, unsupported, unsupported_because};

/// The `numpy` module, imported once.
pub fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || py.import("numpy").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// `numpy.generic`, the base of every numpy scalar type.
pub fn numpy_generic(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static GENERIC: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    GENERIC
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                numpy(py)?
                    .getattr("generic")?
                    .cast_into::<PyType>()?
                    .unbind(),
            )
        })
        .map(|t| t.bind(py))
}

/// A numpy scalar, by its dtype's kind. Returns what `item()` gives for the kinds whose item
/// is a Python number (never another numpy scalar), and never calls itself.
pub fn numpy_scalar(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let py = v.py();
    let dtype = v.getattr(intern!(py, "dtype"))?;
    let dtype = dtype.cast::<PyArrayDescr>()?;
    match dtype.kind() {
        b'b' | b'i' | b'u' => plain_result(&v.call_method0(intern!(py, "item"))?, v),
        // float16/32/64 items are Python floats; a longdouble's item is a longdouble again,
        // so it is rounded to float64 (as wandb does).
        b'f' if dtype.itemsize() <= 8 => plain_result(&v.call_method0(intern!(py, "item"))?, v),
        b'f' => Ok(Value::F64(v.extract::<f64>()?)),
        b'c' => Err(unsupported_because(
            v,
            "complex; log its .real and .imag (or abs()) as separate keys",
        )),
        // ml_dtypes' bfloat16, float8 and int4 are numpy scalars of kind 'V' without fields:
        // a Python number as item(), or float() (wandb's rule for bfloat16).
        b'V' if extension_number(dtype)? => {
            let item = v.call_method0(intern!(py, "item"))?;
            match plain(&item)? {
                Some(x @ (Value::F64(_) | Value::I64(_) | Value::Bool(_))) => Ok(x),
                _ => v
                    .extract::<f64>()
                    .map(Value::F64)
                    .map_err(|_| unsupported_because(v, "raw bytes of numpy void")),
            }
        }
        b'V' => Err(unsupported_because(
            v,
            "a structured numpy value; log its fields as separate keys",
        )),
        b'M' | b'm' | b'S' => {
            let conv = py.import(intern!(py, "steplog._values"))?;
            let out = conv.call_method1(intern!(py, "convert"), (v,))?;
            plain_result(&out, v)
        }
        _ => Err(unsupported(v)),
    }
}

/// Whether a kind-'V' dtype is a number type of an extension (ml_dtypes' bfloat16, float8,
/// int4): no fields, no subarray, and a scalar type of its own, not numpy's raw `void`.
pub fn extension_number(dtype: &Bound<'_, PyArrayDescr>) -> PyResult<bool> {
    if dtype.has_fields() || dtype.has_subarray() {
        return Ok(false);
    }
    let void = numpy(dtype.py())?.getattr(intern!(dtype.py(), "void"))?;
    Ok(!dtype.typeobj().is(&void))
}
