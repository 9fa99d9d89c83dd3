//! Decodes shard files back into columns. Never panics and never allocates beyond what the
//! bytes justify: frames are checked by CRC and size limits, payloads are decompressed into
//! their declared (bounded) size, msgpack lengths are checked against what remains. Damage is
//! skipped and reported in [`ShardData::problems`]; a torn last frame is reported as such.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::batch::DType;
use crate::error::{Error, Result};
use crate::frame::{self, Damage, Event, Kind};
use crate::metric::MetricDefs;
use crate::msgpack::{self, Mp};
use crate::shard::FORMAT_VERSION;
use crate::summary::SummaryValue;
use crate::value::Value;

mod batch;
mod open;
pub use batch::decode_other;
use batch::Pending;

/// A small metadata value (header and close frames).
#[derive(Debug, Clone, PartialEq)]
pub enum Meta {
    /// nil
    Nil,
    /// bool
    Bool(bool),
    /// integer
    Int(i64),
    /// float
    F64(f64),
    /// text
    Str(String),
}

/// Values of one scalar series.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalars {
    /// float64 values.
    F64(Vec<f64>),
    /// int64 values.
    I64(Vec<i64>),
    /// bool values.
    Bool(Vec<bool>),
}

/// All values of one key with one dtype in a shard, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Steps, one per value.
    pub steps: Vec<i64>,
    /// The values.
    pub values: Scalars,
}

/// Something wrong found while reading, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Byte offset where it starts.
    pub offset: usize,
    /// Bytes skipped.
    pub len: usize,
    /// Whether it is the torn end of the file (expected after a crash).
    pub torn_tail: bool,
    /// What was wrong.
    pub reason: String,
    /// Frame sequence numbers lost in this damage (first, last), when frames followed it.
    pub lost_frames: Option<(u64, u64)>,
}

/// Everything decoded from one shard.
#[derive(Debug, Default)]
pub struct ShardData {
    /// The header frame's fields.
    pub info: Vec<(String, Meta)>,
    /// Scalar series by key name and dtype (`_timestamp` included).
    pub series: HashMap<(String, DType), Series>,
    /// Keys that have data, in first-seen order (without `_timestamp`).
    pub keys: Vec<String>,
    /// Non-scalar values: (step, key, value) in file order.
    pub others: Vec<(i64, Arc<str>, Value)>,
    /// The last summary snapshot.
    pub summary: Vec<(String, SummaryValue)>,
    /// Whether the shard holds a summary frame (an empty last snapshot is still one: every
    /// key deleted or left out, not "no summary written").
    pub has_summary: bool,
    /// The last snapshot of the metric definitions, oldest first.
    pub metrics: MetricDefs,
    /// Rows lost before reaching the file: (rows, reason).
    pub gaps: Vec<(u64, String)>,
    /// The close frame's fields, if the shard was closed cleanly.
    pub close: Option<Vec<(String, Meta)>>,
    /// NaN, +Inf and -Inf counts per key, from the close frame.
    pub nonfinite: Vec<(String, [u64; 3])>,
    /// Damage found, in file order.
    pub problems: Vec<Problem>,
    /// Frame sequence numbers missing with no damage to explain them: (first, last).
    pub missing_frames: Vec<(u64, u64)>,
    /// Rows decoded.
    pub rows: u64,
}

/// Reads and decodes the shard file at `path`.
pub fn read_shard(path: &Path) -> Result<ShardData> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    Ok(decode_shard(&bytes))
}

/// Decodes a shard's bytes.
pub fn decode_shard(bytes: &[u8]) -> ShardData {
    let mut d = Decoder::default();
    let mut next_seq = 0u64;
    let mut after_damage = false;
    let mut batches = Vec::new();
    let mut open_rows = Vec::new();
    // Good frames read, by content, and where: a frame read again (a copied block, a shard
    // appended to itself) is dropped. A frame that reuses a number with other content is the
    // next write after a failed one (see FORMAT.md), and is read.
    let mut seen: HashMap<FrameId, usize> = HashMap::new();
    for ev in frame::Frames::new(bytes) {
        match ev {
            Event::Frame {
                offset,
                header,
                payload,
            } => {
                let len = frame::HEADER_LEN + payload.len();
                if let Some(first) = seen.insert(frame_id(&header), offset) {
                    seen.insert(frame_id(&header), first);
                    if header.kind == Kind::Header as u8 {
                        // A copy of the header frame holds no rows, and a network writer's
                        // spill file may legitimately hold two: dropped without a report.
                        continue;
                    }
                    d.out.problems.push(Problem {
                        offset,
                        len,
                        torn_tail: false,
                        reason: format!(
                            "frame {} repeats the frame at offset {first} (a duplicated copy); \
                             dropped, so its rows are read once",
                            header.seq
                        ),
                        lost_frames: None,
                    });
                    after_damage = false;
                    continue;
                }
                if header.seq > next_seq {
                    let lost = (next_seq, header.seq - 1);
                    match d.out.problems.last_mut() {
                        Some(p) if after_damage => p.lost_frames = Some(lost),
                        _ => d.out.missing_frames.push(lost),
                    }
                }
                after_damage = false;
                next_seq = next_seq.max(header.seq.saturating_add(1));
                if matches!(Kind::from_u8(header.kind), None | Some(Kind::Run)) {
                    // A newer writer's frame kind is skipped undecoded, on purpose; the run
                    // frame's JSON is the collector's business (it becomes run.json).
                    continue;
                }
                let result = frame::decode_payload(&header, payload).and_then(|raw| {
                    if header.kind == Kind::Batch as u8 || header.kind == Kind::Open as u8 {
                        let seq = header.seq;
                        let pending = Pending {
                            offset,
                            len,
                            seq,
                            raw,
                        };
                        match header.kind == Kind::Batch as u8 {
                            true => batches.push(pending),
                            false => open_rows.push(pending),
                        }
                        return Ok(());
                    }
                    let v = msgpack::decode(&raw)?;
                    d.frame(header.kind, &v)
                });
                if let Err(reason) = result {
                    d.out.problems.push(Problem {
                        offset,
                        len,
                        torn_tail: false,
                        reason,
                        lost_frames: Some((header.seq, header.seq)),
                    });
                }
            }
            Event::Damaged {
                offset,
                len,
                damage,
            } => {
                let (torn_tail, reason) = match damage {
                    Damage::TornTail => (true, "the last frame is incomplete (torn write)".into()),
                    Damage::Bad(r) => (false, r),
                };
                d.out.problems.push(Problem {
                    offset,
                    len,
                    torn_tail,
                    reason,
                    lost_frames: None,
                });
                after_damage = true;
            }
        }
    }
    d.batches(&batches);
    d.out.problems.sort_by_key(|p| p.offset);
    // Keys in first-logged order (within a batch, id order is first-logged order), and only
    // keys that hold data: every key listed has a series or values under its name.
    let mut keys: Vec<_> = std::mem::take(&mut d.listed).into_iter().collect();
    keys.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    d.out.keys = keys.into_iter().map(|(name, _)| name.to_string()).collect();
    d.open_rows(&open_rows);
    d.out
}

/// What identifies a frame's content: two good frames alike in all of it are copies.
type FrameId = (u64, u8, u8, u32, u32, u32);

fn frame_id(h: &frame::Header) -> FrameId {
    (
        h.seq,
        h.kind,
        h.codec,
        h.payload_len,
        h.raw_len,
        h.payload_crc,
    )
}

#[derive(Default)]
struct Decoder {
    out: ShardData,
    /// Key names by id from the batches' key tables (the latest wins), for batches that do not
    /// list an id they use. Sparse: an id far past the others costs one entry.
    names: BTreeMap<u64, Arc<str>>,
    /// Keys that have data, with the (batch number, id) where they first got it.
    listed: HashMap<Arc<str>, (usize, u64)>,
    /// Batches decoded so far.
    batch_no: usize,
    /// Problems of the batch being decoded that do not make it damaged.
    notes: Vec<String>,
    /// Values per (key id, dtype) in the shard's batches, to size each series once.
    sizes: HashMap<(i64, DType), usize>,
}

fn meta_map(v: &Mp<'_>) -> Vec<(String, Meta)> {
    let Mp::Map(pairs) = v else { return Vec::new() };
    pairs
        .iter()
        .filter_map(|(k, v)| {
            let k = k.as_str()?.to_string();
            let m = match v {
                Mp::Nil => Meta::Nil,
                Mp::Bool(b) => Meta::Bool(*b),
                Mp::Int(i) => Meta::Int(*i),
                Mp::UInt(u) => Meta::F64(*u as f64),
                Mp::F64(f) => Meta::F64(*f),
                Mp::Str(s) => Meta::Str((*s).to_string()),
                _ => return None,
            };
            Some((k, m))
        })
        .collect()
}

fn summary_value(v: &Mp<'_>) -> Option<SummaryValue> {
    match v {
        Mp::Map(pairs) => Some(SummaryValue::Stats(
            pairs
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string().into(), summary_scalar(v)?)))
                .collect(),
        )),
        v => summary_scalar(v).map(SummaryValue::Plain),
    }
}

fn summary_scalar(v: &Mp<'_>) -> Option<Value> {
    Some(match v {
        Mp::F64(f) => Value::F64(*f),
        Mp::Int(i) => Value::I64(*i),
        Mp::UInt(u) => Value::F64(*u as f64),
        Mp::Bool(b) => Value::Bool(*b),
        Mp::Str(s) => Value::Text((*s).into()),
        _ => return None,
    })
}

impl Decoder {
    fn frame(&mut self, kind: u8, v: &Mp<'_>) -> std::result::Result<(), String> {
        match Kind::from_u8(kind) {
            Some(Kind::Header) => {
                self.out.info = meta_map(v);
                let version = v.get("version").and_then(Mp::as_i64).unwrap_or(0);
                if v.get("format").and_then(Mp::as_str) != Some("steplog") {
                    return Err("the header frame does not say format \"steplog\"".into());
                }
                if version > FORMAT_VERSION {
                    return Err(format!(
                        "written in format version {version}; this steplog reads up to \
                         {FORMAT_VERSION} and decodes what it can (upgrade steplog)"
                    ));
                }
            }
            Some(Kind::Close) => {
                self.out.close = Some(meta_map(v));
                if let Some(Mp::Map(pairs)) = v.get("nonfinite") {
                    self.out.nonfinite = pairs
                        .iter()
                        .filter_map(|(k, c)| {
                            let c = c.as_array()?;
                            let n = |i: usize| c.get(i).and_then(Mp::as_i64).unwrap_or(0) as u64;
                            Some((k.as_str()?.to_string(), [n(0), n(1), n(2)]))
                        })
                        .collect();
                }
            }
            Some(Kind::Batch) => self.batch(v)?,
            Some(Kind::Summary) => {
                let Mp::Map(pairs) = v else {
                    return Err("summary is not a map".into());
                };
                self.out.has_summary = true;
                self.out.summary = pairs
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), summary_value(v)?)))
                    .collect();
                self.out.has_summary = true;
            }
            Some(Kind::Metrics) => self.out.metrics = MetricDefs::decode(v)?,
            Some(Kind::Gap) => {
                let rows = v.get("rows").and_then(Mp::as_i64).unwrap_or(0) as u64;
                let reason = v.get("reason").and_then(Mp::as_str).unwrap_or("unknown");
                self.out.gaps.push((rows, reason.to_string()));
            }
            Some(Kind::Run | Kind::Open) | None => {}
        }
        Ok(())
    }
}
