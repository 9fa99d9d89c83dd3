//! A batch of rows being gathered by the writer, and its msgpack encoding.
//!
//! Scalars are columnar: one column per (key, dtype), its steps and values kept as 64-bit
//! words and written as byte planes (`delta`, `trim`, `micros`: see [`crate::column`]). Text,
//! lists (`list`, or `array` with a shape and element type) and histograms go in `vals`, one
//! entry each. The key table carries only ids not written in an earlier batch of the shard.
//! The exact layout is in `docs/FORMAT.md`.

use std::time::Instant;

use crate::column::{self, Plan};
use crate::keys::KeyRegistry;
use crate::msgpack::Enc;
use crate::value::{Cell, Histogram, KeyId, List, ListData, Value};

/// Scalar column types, as written in the `dtype` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// float64, 8 bytes LE.
    F64 = 0,
    /// int64, 8 bytes LE.
    I64 = 1,
    /// bool, 1 byte (0 or 1).
    Bool = 2,
}

impl DType {
    /// The name stored in the file.
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f64" => Some(DType::F64),
            "i64" => Some(DType::I64),
            "bool" => Some(DType::Bool),
            _ => None,
        }
    }

    /// Bytes per value.
    pub fn width(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }
}

/// One (key, dtype) column. `values` holds f64 bit patterns, i64 two's complement or 0/1 for
/// bools; for `_timestamp` (key 0) whole microseconds since the Unix epoch.
#[derive(Debug)]
struct Column {
    key: KeyId,
    dtype: DType,
    steps: Vec<u64>,
    values: Vec<u64>,
}

/// Rows gathered for the next batch frame.
#[derive(Debug, Default)]
pub struct Batch {
    cols: Vec<Column>,
    /// key id → column index + 1 per dtype (0: none yet).
    slots: Vec<[u32; 3]>,
    others: Vec<(i64, KeyId, Value)>,
    rows: usize,
    bytes: usize,
    scalars: usize,
    max_key: KeyId,
    started: Option<Instant>,
    /// Residuals of the column being encoded.
    scratch: Vec<u64>,
    /// Emptied columns of earlier batches, kept for their allocations.
    spare: Vec<Column>,
}

impl Batch {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Approximate uncompressed bytes of values.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// Scalar values in the batch (`_timestamp` not counted).
    pub fn scalars(&self) -> usize {
        self.scalars
    }
    /// When the first row of the batch arrived.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    fn push_scalar(&mut self, step: i64, key: KeyId, dtype: DType, word: u64) {
        let k = key as usize;
        if self.slots.len() <= k {
            self.slots.resize(k + 1, [0; 3]);
        }
        let slot = &mut self.slots[k][dtype as usize];
        if *slot == 0 {
            let col = match self.spare.pop() {
                Some(c) => Column { key, dtype, ..c },
                None => Column {
                    key,
                    dtype,
                    steps: Vec::new(),
                    values: Vec::new(),
                },
            };
            self.cols.push(col);
            *slot = self.cols.len() as u32;
        }
        let col = &mut self.cols[*slot as usize - 1];
        col.steps.push(step as u64);
        col.values.push(word);
        self.bytes += 16;
    }

    /// Adds one row at Unix time `time` (kept to the microsecond), taking the values out of
    /// `cells`.
    pub fn add_row(&mut self, step: i64, time: f64, cells: impl Iterator<Item = Cell>) {
        self.add_row_micros(step, column::to_micros(time), cells);
    }

    /// [`Batch::add_row`] with the row's time already in whole microseconds since the epoch.
    pub fn add_row_micros(&mut self, step: i64, micros: i64, cells: impl Iterator<Item = Cell>) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        self.rows += 1;
        self.push_scalar(step, 0, DType::F64, micros as u64);
        for cell in cells {
            self.add_cell(step, cell.key, cell.value);
        }
    }

    fn add_cell(&mut self, step: i64, key: KeyId, value: Value) {
        self.max_key = self.max_key.max(key);
        match value {
            Value::F64(v) => {
                self.scalars += 1;
                self.push_scalar(step, key, DType::F64, v.to_bits());
            }
            Value::I64(v) => {
                self.scalars += 1;
                self.push_scalar(step, key, DType::I64, v as u64);
            }
            Value::Bool(v) => {
                self.scalars += 1;
                self.push_scalar(step, key, DType::Bool, u64::from(v));
            }
            other => {
                self.bytes += other.approx_bytes() + 16;
                self.others.push((step, key, other));
            }
        }
    }

    /// Encodes the batch as one msgpack map and empties it. `keys_written` is the number of
    /// key ids the shard's earlier batches defined; it is advanced past this batch's keys.
    pub fn encode(&mut self, keys_written: &mut u32, registry: &KeyRegistry, out: &mut Enc) {
        out.buf.clear();
        out.map(4);
        out.str("rows");
        out.uint(self.rows as u64);
        out.str("keys");
        let first_new = *keys_written;
        let end = (self.max_key + 1).max(first_new).max(1);
        out.array((end - first_new) as usize);
        for id in first_new..end {
            out.array(2);
            out.uint(u64::from(id));
            out.str(registry.name(id).as_deref().unwrap_or(""));
        }
        *keys_written = end;
        out.str("cols");
        out.array(self.cols.len());
        for col in &self.cols {
            encode_column(col, out, &mut self.scratch);
        }
        out.str("vals");
        out.array(self.others.len());
        for (step, key, value) in &self.others {
            out.array(4);
            out.int(*step);
            out.uint(u64::from(*key));
            encode_other(value, out);
        }
        self.clear();
    }

    fn clear(&mut self) {
        for mut col in self.cols.drain(..) {
            col.steps.clear();
            col.values.clear();
            self.spare.push(col);
        }
        self.slots.iter_mut().for_each(|s| *s = [0; 3]);
        self.others.clear();
        self.rows = 0;
        self.bytes = 0;
        self.scalars = 0;
        self.started = None;
    }
}

/// Writes one column as a map: `id`, `dtype`, `n`, then `steps` and `values` encoded.
/// Writes one column as `[id, dtype, n, steps, values]`, the fields encoded (see
/// [`column`]), except that a single entry is packed plain: fewer bytes than any encoding.
fn encode_column(col: &Column, out: &mut Enc, scratch: &mut Vec<u64>) {
    let single = col.steps.len() == 1;
    out.array(5);
    out.uint(u64::from(col.key));
    out.str(col.dtype.name());
    out.uint(col.steps.len() as u64);
    if single {
        column::write_plain(out, &col.steps);
    } else {
        let plan = column::plan_delta(&col.steps);
        column::write(out, &col.steps, plan, false, scratch);
    }
    match col.dtype {
        DType::Bool => {
            out.bin_len(col.values.len());
            out.buf.extend(col.values.iter().map(|v| *v as u8));
        }
        DType::F64 if col.key == 0 && single => {
            // The same value `micros` would give: the time to the microsecond, in seconds.
            let seconds = column::from_micros(col.values[0] as i64);
            column::write_plain(out, &[seconds.to_bits()]);
        }
        DType::F64 if col.key == 0 => {
            let plan = column::plan_delta(&col.values);
            column::write(out, &col.values, plan, true, scratch);
        }
        DType::F64 | DType::I64 if single => column::write_plain(out, &col.values),
        DType::F64 | DType::I64 => {
            let plan: Plan = column::plan_best(&col.values);
            column::write(out, &col.values, plan, false, scratch);
        }
    }
}

/// Writes the kind name and payload of a non-scalar value (two msgpack items).
pub fn encode_other(value: &Value, out: &mut Enc) {
    match value {
        Value::Text(s) => {
            out.str("text");
            out.str(s);
        }
        Value::List(l) => encode_list(l, out),
        Value::Histogram(h) => {
            out.str("hist");
            encode_histogram(h, out);
        }
        Value::F64(v) => {
            out.str("f64");
            out.f64(*v);
        }
        Value::I64(v) => {
            out.str("i64");
            out.int(*v);
        }
        Value::Bool(v) => {
            out.str("bool");
            out.bool(*v);
        }
    }
}

/// A one-dimensional float64 list keeps the `list` form every reader knows; any other shape
/// or element type is an `array`: `{"dtype", "shape", "data"}` (see `docs/FORMAT.md`).
fn encode_list(l: &List, out: &mut Enc) {
    if let (true, ListData::F64(v)) = (l.is_flat_f64(), l.data()) {
        out.str("list");
        out.bin(&f64_le(v));
        return;
    }
    out.str("array");
    out.map(3);
    out.str("dtype");
    out.str(l.data().dtype_name());
    out.str("shape");
    out.array(l.shape().len());
    for d in l.shape() {
        out.uint(u64::from(*d));
    }
    out.str("data");
    match l.data() {
        ListData::F64(v) => out.bin(&f64_le(v)),
        ListData::I64(v) => {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.bin(&b);
        }
        ListData::Bool(v) => {
            let b: Vec<u8> = v.iter().map(|x| u8::from(*x)).collect();
            out.bin(&b);
        }
    }
}

fn encode_histogram(h: &Histogram, out: &mut Enc) {
    out.map(5);
    out.str("counts");
    let counts: Vec<u8> = h.counts.iter().flat_map(|c| c.to_le_bytes()).collect();
    out.bin(&counts);
    out.str("edges");
    out.bin(&f64_le(&h.edges));
    out.str("nan");
    out.uint(h.nan);
    out.str("pos_inf");
    out.uint(h.pos_inf);
    out.str("neg_inf");
    out.uint(h.neg_inf);
}

/// Packs floats as little-endian bytes.
pub fn f64_le(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
