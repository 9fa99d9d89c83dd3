//! numpy arrays → values, read in place: size 1 → scalar, up to [`MAX_LIST`] elements → a
//! list keeping its shape and element type (float, int, bool), larger → a histogram. An
//! empty array is the empty list. Dtypes Rust cannot read in place are cast once to one it can
//! (float16 → float32, other byte orders → native); longdouble and datetime64/timedelta64 go
//! through `steplog._values` (float64, seconds); anything else (complex, str, object, structured) is a
//! `TypeError`. Nothing here recurses, whatever the array holds.

use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use steplog_core::histogram::{
    bin_f32, bin_f32_iter, bin_f64, bin_f64_iter, bin_int_iter, DEFAULT_BINS,
};
use steplog_core::value::MAX_LIST_DIMS;
use steplog_core::{Histogram, List, ListData, Value};

use crate::npscalar::extension_number;

/// Largest tensor stored as a list; larger ones become histograms.
pub const MAX_LIST: usize = 32;

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

/// Elements numpy arrays can hold that steplog reads in place.
trait Elem: numpy::Element + Copy + Send + Sync {
    fn scalar(self) -> Value;
    /// The elements of a short list, in their own kind of number.
    fn list<'a, I: Iterator<Item = &'a Self> + Clone>(data: I) -> ListData
    where
        Self: 'a;
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
    fn list<'a, I: Iterator<Item = &'a Self> + Clone>(data: I) -> ListData {
        ListData::F64(data.copied().collect())
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
    fn list<'a, I: Iterator<Item = &'a Self> + Clone>(data: I) -> ListData {
        ListData::F64(data.map(|x| f64::from(*x)).collect())
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
    fn list<'a, I: Iterator<Item = &'a Self> + Clone>(data: I) -> ListData {
        ListData::Bool(data.copied().collect())
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
            fn list<'a, I: Iterator<Item = &'a Self> + Clone>(data: I) -> ListData {
                // Integers stay integers; only a uint64 list holding a value beyond int64
                // becomes float64 (as a uint64 scalar beyond int64 does).
                match data.clone().map(|x| i64::try_from(*x).ok()).collect() {
                    Some(v) => ListData::I64(v),
                    None => ListData::F64(data.map(|x| *x as f64).collect()),
                }
            }
            fn bin<'a, I: Iterator<Item = &'a Self> + Clone>(data: I, n: usize) -> Histogram {
                bin_int_iter(data.map(|x| i128::from(*x)), n)
            }
        }
    )*};
}

int_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

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
        match List::new(view.shape(), T::list(view.iter())) {
            Some(l) => Value::List(Box::new(l)),
            None => {
                return Some(Err(PyTypeError::new_err(
                    "unsupported value: an array of this shape",
                )))
            }
        }
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

/// The array read in place when its dtype is one Rust reads natively.
fn native(arr: &Bound<'_, PyUntypedArray>, shape: Shape) -> Option<PyResult<Value>> {
    typed::<f64>(arr, shape)
        .or_else(|| typed::<f32>(arr, shape))
        .or_else(|| typed::<i64>(arr, shape))
        .or_else(|| typed::<i32>(arr, shape))
        .or_else(|| typed::<bool>(arr, shape))
        .or_else(|| typed::<u8>(arr, shape))
        .or_else(|| typed::<i8>(arr, shape))
        .or_else(|| typed::<i16>(arr, shape))
        .or_else(|| typed::<u16>(arr, shape))
        .or_else(|| typed::<u32>(arr, shape))
        .or_else(|| typed::<u64>(arr, shape))
}

/// A numpy array read in place, shaped as `shape` says.
pub fn array_as(arr: &Bound<'_, PyUntypedArray>, shape: Shape) -> PyResult<Value> {
    if arr.len() == 0 && matches!(shape, Shape::Auto) {
        return Ok(Value::List(Box::new(List::flat_f64(Vec::new()))));
    }
    if arr.ndim() > MAX_LIST_DIMS {
        // numpy allows 64 dimensions, rust-numpy's views 32 (it panics beyond): more than a
        // list keeps are flattened first.
        let flat = arr.call_method1(intern!(arr.py(), "reshape"), (-1,))?;
        return array_as(flat.cast::<PyUntypedArray>()?, shape);
    }
    if let Some(v) = native(arr, shape) {
        return v;
    }
    let py = arr.py();
    let dtype = arr.dtype();
    let kind = dtype.kind();
    // One cast (or conversion) to a dtype `native` reads, then no further one.
    let cast = match kind {
        b'f' if dtype.itemsize() <= 4 => "float32",
        b'f' if dtype.itemsize() <= 8 => "float64",
        b'i' => "int64",
        b'u' => "uint64",
        b'b' => "bool",
        // longdouble (rounded without numpy's overflow warning) and the time dtypes (seconds).
        b'f' | b'M' | b'm' => {
            let conv = py.import(intern!(py, "steplog._values"))?;
            let secs = conv.call_method1(intern!(py, "convert"), (arr,))?;
            return native(secs.cast::<PyUntypedArray>()?, shape)
                .unwrap_or_else(|| Err(PyTypeError::new_err("unsupported value: an array")));
        }
        // ml_dtypes (bfloat16, float8, int4): numpy arrays of kind 'V' without fields.
        b'V' if extension_number(&dtype)? => {
            let cast = arr.call_method1(intern!(py, "astype"), ("float64",));
            return match cast {
                Ok(c) => native(c.cast::<PyUntypedArray>()?, shape)
                    .unwrap_or_else(|| Err(PyTypeError::new_err("unsupported value: an array"))),
                Err(_) => Err(PyTypeError::new_err(format!(
                    "unsupported value: an array of dtype {}; log numeric or bool arrays",
                    dtype.str()?
                ))),
            };
        }
        b'c' => {
            return Err(PyTypeError::new_err(format!(
                "unsupported value: an array of dtype {} (complex); log its .real and .imag \
                 (or abs()) as separate keys",
                dtype.str()?
            )))
        }
        _ => {
            return Err(PyTypeError::new_err(format!(
                "unsupported value: an array of dtype {}; log numeric or bool arrays",
                dtype.str()?
            )))
        }
    };
    let cast = arr.call_method1(intern!(py, "astype"), (cast,))?;
    native(cast.cast::<PyUntypedArray>()?, shape).unwrap_or_else(|| {
        Err(PyTypeError::new_err(
            "unsupported value: an unreadable array",
        ))
    })
}

/// `(counts, edges, nan, pos_inf, neg_inf)` as returned by steplog._torch for device binning.
pub fn histogram_from_parts(out: &Bound<'_, PyAny>) -> PyResult<Histogram> {
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
