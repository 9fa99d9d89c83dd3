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
    /// A short list of numbers (tensors of 2..=32 elements).
    List(Box<[f64]>),
    /// A binned distribution.
    Histogram(Box<Histogram>),
}

impl Value {
    /// Whether the value may hold NaN/Inf that must be counted (and perhaps replaced).
    #[inline]
    pub fn needs_policy(&self) -> bool {
        match self {
            Value::F64(v) => !v.is_finite(),
            Value::List(_) => true,
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
            Value::List(v) => v.len() * 8 + 8,
            Value::Histogram(h) => h.counts.len() * 8 + h.edges.len() * 8 + 32,
        }
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
