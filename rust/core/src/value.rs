//! Values as they travel through the ring: owned Rust data only, never a borrowed buffer or a
//! Python object, so the writer thread needs nothing from the caller once `log()` returns.

/// Dense id of an interned key name, assigned in first-use order per shard.
pub type KeyId = u32;

/// One logged value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A floating-point scalar, kept bit-exact.
    F64(f64),
    /// An integer scalar, kept exact.
    I64(i64),
    /// A boolean scalar.
    Bool(bool),
    /// A text value.
    Text(Box<str>),
    /// A short list of numbers with its shape (tensors of 2..=32 elements, or empty).
    List(Box<List>),
    /// A binned distribution.
    Histogram(Box<Histogram>),
}

impl Value {
    /// Whether the value may hold NaN/Inf that must be counted (and perhaps replaced).
    #[inline]
    pub fn needs_policy(&self) -> bool {
        match self {
            Value::F64(v) => !v.is_finite(),
            Value::List(l) => matches!(l.data, ListData::F64(_)),
            _ => false,
        }
    }

    /// The value as a float when it is a scalar.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::I64(v) => Some(v as f64),
            Value::Bool(v) => Some(f64::from(u8::from(v))),
            _ => None,
        }
    }

    /// Rough heap + inline size, used to cut batches by bytes.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Value::F64(_) | Value::I64(_) | Value::Bool(_) => 8,
            Value::Text(s) => s.len() + 8,
            Value::List(l) => l.data.len() * 8 + l.shape.len() * 4 + 16,
            Value::Histogram(h) => h.counts.len() * 8 + h.edges.len() * 8 + 32,
        }
    }
}

// A cell is copied on every staged value: the list's shape lives behind its box, so a value
// stays three words and a cell four.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Value>() == 24 && std::mem::size_of::<Cell>() == 32);

/// Most dimensions a list value may have (numpy's own limit is 64).
pub const MAX_LIST_DIMS: usize = 32;

/// The elements of a list value, in row-major (C) order, in their own type.
#[derive(Debug, Clone, PartialEq)]
pub enum ListData {
    /// Floating-point elements (any float dtype, kept as float64).
    F64(Box<[f64]>),
    /// Integer elements (every integer dtype whose values fit int64).
    I64(Box<[i64]>),
    /// Boolean elements.
    Bool(Box<[bool]>),
}

impl ListData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ListData::F64(v) => v.len(),
            ListData::I64(v) => v.len(),
            ListData::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of the element type in the file (`f64`, `i64`, `bool`).
    pub fn dtype_name(&self) -> &'static str {
        match self {
            ListData::F64(_) => "f64",
            ListData::I64(_) => "i64",
            ListData::Bool(_) => "bool",
        }
    }
}

/// A short tensor: its shape and its elements. Invariant (kept by [`List::new`]): the product
/// of `shape` is the number of elements, `shape` has 1 to [`MAX_LIST_DIMS`] entries, and an
/// empty list has shape `[0]`.
#[derive(Debug, Clone, PartialEq)]
pub struct List {
    shape: Box<[u32]>,
    data: ListData,
}

impl List {
    /// A list of `data` shaped as `shape`; `None` when the shape does not fit the invariant.
    /// Any empty data is the empty list `[0]` whatever the shape said.
    pub fn new(shape: &[usize], data: ListData) -> Option<Self> {
        if data.is_empty() {
            return Some(List {
                shape: Box::new([0]),
                data,
            });
        }
        if shape.is_empty() || shape.len() > MAX_LIST_DIMS {
            return None;
        }
        let mut n: usize = 1;
        for d in shape {
            n = n.checked_mul(*d)?;
        }
        if n != data.len() {
            return None;
        }
        let shape = shape
            .iter()
            .map(|d| u32::try_from(*d).ok())
            .collect::<Option<Box<[u32]>>>()?;
        Some(List { shape, data })
    }

    /// A one-dimensional list of floats.
    pub fn flat_f64(v: impl Into<Box<[f64]>>) -> Self {
        let data: Box<[f64]> = v.into();
        let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
        List {
            shape: Box::new([n]),
            data: ListData::F64(data),
        }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[u32] {
        &self.shape
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &ListData {
        &self.data
    }

    /// The float elements, in place (for the NaN/Inf policy); `None` for ints and bools.
    pub fn f64_mut(&mut self) -> Option<&mut [f64]> {
        match &mut self.data {
            ListData::F64(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the list is one-dimensional float64 (the form files have always had).
    pub fn is_flat_f64(&self) -> bool {
        self.shape.len() == 1 && matches!(self.data, ListData::F64(_))
    }
}

/// Counts over `edges.len() - 1` bins, plus the non-finite elements left out of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Elements per bin.
    pub counts: Vec<u64>,
    /// Bin edges, one more than `counts`, increasing.
    pub edges: Vec<f64>,
    /// NaN elements left out.
    pub nan: u64,
    /// +Inf elements left out.
    pub pos_inf: u64,
    /// -Inf elements left out.
    pub neg_inf: u64,
}

/// A metric value at a key inside a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Interned key.
    pub key: KeyId,
    /// The value.
    pub value: Value,
}

/// What travels through the ring to the writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Committed rows.
    Chunk(crate::chunk::Chunk),
    /// `run.summary[key] = value`.
    SummarySet(KeyId, Value),
    /// `del run.summary[key]`.
    SummaryDelete(KeyId),
    /// `define_metric(...)`.
    Define(Box<crate::metric::MetricDef>),
    /// The run's metadata as JSON, for a collector's `run.json` (a run frame).
    RunMeta(Box<[u8]>),
}
