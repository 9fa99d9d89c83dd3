//! A batch of rows being gathered by the writer, and its msgpack encoding.
//!
//! Scalars are columnar: one column per (key, dtype), its steps and values kept as 64-bit
//! words and written as byte planes (`delta`, `trim`, `micros`: see [`crate::column`]). Text,
//! lists (`list`, or `array` with a shape and element type) and histograms go in `vals`, one
//! entry each. A batch is framed as one or more batch frames of at most [`FRAME_MAX_ROWS`] rows
//! and [`FRAME_MAX_BYTES`] bytes, each carrying the names of every key id it uses, so that one
//! damaged frame costs only its own rows. The exact layout is in `docs/FORMAT.md`.

mod split;

use std::time::Instant;

use crate::column::{self, Plan};
use crate::msgpack::Enc;
use crate::value::{Cell, Histogram, KeyId, List, ListData, Value};

mod framing;
pub use framing::{Framed, FRAME_MAX_BYTES, FRAME_MAX_ROWS};

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

/// Rows gathered for the next batch frames.
#[derive(Debug, Default)]
pub struct Batch {
    cols: Vec<Column>,
    /// key id → column index + 1 per dtype (0: none yet).
    slots: Vec<[u32; 3]>,
    others: Vec<(i64, KeyId, Value)>,
    rows: usize,
    bytes: usize,
    scalars: usize,
    started: Option<Instant>,
    /// Stored bytes per row of the last planned frame (0: none yet), to size the next one.
    bytes_per_row: f64,
    /// (column, first entry, end) of the frame being encoded.
    ranges: Vec<(usize, usize, usize)>,
    /// Key ids of the frame being encoded.
    ids: Vec<KeyId>,
    /// Where the byte planes of the frame being encoded start (compression block cuts).
    cuts: Vec<usize>,
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

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
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

/// The entries of one column that go into one frame.
struct Part<'a> {
    key: KeyId,
    dtype: DType,
    steps: &'a [u64],
    values: &'a [u64],
}

/// Planes shorter than this share a compression block with their neighbours: a block's own
/// entropy tables would cost more than they save.
const MIN_BLOCK: usize = 1024;

/// Records the compression block cuts of the encoded field just written with `plan` over
/// `n` words: one at each of its byte planes and one after the last.
fn cut_planes(out: &Enc, n: usize, plan: Plan, cuts: &mut Vec<usize>) {
    let (m, w) = match plan {
        Plan::Delta { width, .. } => (n.saturating_sub(1), width),
        Plan::Trim { skip } => (n, 8 - skip),
    };
    let end = out.buf.len();
    let start = end.saturating_sub(m * w);
    for at in (0..=w).map(|j| start + j * m) {
        if at.saturating_sub(cuts.last().copied().unwrap_or(0)) >= MIN_BLOCK {
            cuts.push(at);
        }
    }
}

/// Writes one column as `[id, dtype, n, steps, values]`, the fields encoded (see
/// [`column`]), except that a single entry is packed plain: fewer bytes than any encoding.
/// Records the compression block cuts of its encoded fields in `cuts`.
fn encode_column(col: &Part<'_>, out: &mut Enc, scratch: &mut Vec<u64>, cuts: &mut Vec<usize>) {
    let n = col.steps.len();
    let single = col.steps.len() == 1;
    out.array(5);
    out.uint(u64::from(col.key));
    out.str(col.dtype.name());
    out.uint(col.steps.len() as u64);
    if single {
        column::write_plain(out, col.steps);
    } else {
        let plan = column::plan_delta(col.steps);
        column::write(out, col.steps, plan, false, scratch);
        cut_planes(out, n, plan, cuts);
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
            let plan = column::plan_delta(col.values);
            column::write(out, col.values, plan, true, scratch);
            cut_planes(out, n, plan, cuts);
        }
        DType::F64 | DType::I64 if single => column::write_plain(out, col.values),
        DType::F64 | DType::I64 => {
            let plan: Plan = column::plan_best(col.values);
            column::write(out, col.values, plan, false, scratch);
            cut_planes(out, n, plan, cuts);
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
