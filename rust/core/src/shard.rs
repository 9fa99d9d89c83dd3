//! Shard identity and the small control frames (header, summary, gap, close): their msgpack
//! maps are encoded here and decoded by the reader.

use crate::msgpack::Enc;
use crate::value::Value;

/// Version of the file format written by this crate.
pub const FORMAT_VERSION: i64 = 1;

/// Who wrote a shard. Recorded in its first frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardInfo {
    /// The run's id.
    pub run_id: String,
    /// The shard's name (file stem), unique within the run.
    pub shard: String,
    /// Writing process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// Global rank (`RANK`, `SLURM_PROCID`, ...), when known.
    pub rank: Option<i64>,
    /// Local rank, when known.
    pub local_rank: Option<i64>,
    /// World size, when known.
    pub world_size: Option<i64>,
    /// DataLoader worker id, when known.
    pub worker: Option<i64>,
    /// Creation time, seconds since the Unix epoch.
    pub started: f64,
    /// The Python and steplog versions, or any other label the front end sets.
    pub writer: String,
}

impl ShardInfo {
    /// The header frame's payload.
    pub fn encode(&self, out: &mut Enc) {
        out.buf.clear();
        out.map(12);
        out.str("format");
        out.str("steplog");
        out.str("version");
        out.int(FORMAT_VERSION);
        out.str("run_id");
        out.str(&self.run_id);
        out.str("shard");
        out.str(&self.shard);
        out.str("pid");
        out.uint(u64::from(self.pid));
        out.str("host");
        out.str(&self.host);
        for (name, v) in [
            ("rank", self.rank),
            ("local_rank", self.local_rank),
            ("world_size", self.world_size),
            ("worker", self.worker),
        ] {
            out.str(name);
            match v {
                Some(v) => out.int(v),
                None => out.nil(),
            }
        }
        out.str("started");
        out.f64(self.started);
        out.str("writer");
        out.str(&self.writer);
    }
}

/// Encodes a scalar or text value for a summary; lists and histograms have no summary.
pub fn encode_summary_value(value: &Value, out: &mut Enc) -> bool {
    match value {
        Value::F64(v) => out.f64(*v),
        Value::I64(v) => out.int(*v),
        Value::Bool(v) => out.bool(*v),
        Value::Text(s) => out.str(s),
        Value::List(_) | Value::Histogram(_) => return false,
    }
    true
}

/// The payload of a gap frame: `rows` rows lost before reaching the file, and why.
pub fn encode_gap(rows: u64, reason: &str, out: &mut Enc) {
    out.buf.clear();
    out.map(2);
    out.str("rows");
    out.uint(rows);
    out.str("reason");
    out.str(reason);
}

/// Counters written into the close frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloseInfo {
    /// Rows written to this shard.
    pub rows_written: u64,
    /// Rows dropped because the ring was full.
    pub rows_dropped: u64,
    /// Rows lost to sink errors.
    pub rows_failed: u64,
    /// Calls rejected for a smaller step.
    pub steps_rejected: u64,
    /// Close time, seconds since the Unix epoch.
    pub ended: f64,
    /// NaN, +Inf and -Inf values logged, per key (only keys that had any).
    pub nonfinite: Vec<(String, [u64; 3])>,
}

impl CloseInfo {
    /// The close frame's payload.
    pub fn encode(&self, out: &mut Enc) {
        out.buf.clear();
        out.map(6);
        out.str("rows_written");
        out.uint(self.rows_written);
        out.str("rows_dropped");
        out.uint(self.rows_dropped);
        out.str("rows_failed");
        out.uint(self.rows_failed);
        out.str("steps_rejected");
        out.uint(self.steps_rejected);
        out.str("ended");
        out.f64(self.ended);
        out.str("nonfinite");
        out.map(self.nonfinite.len());
        for (key, counts) in &self.nonfinite {
            out.str(key);
            out.array(3);
            for c in counts {
                out.uint(*c);
            }
        }
    }
}
