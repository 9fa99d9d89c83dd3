//! Open-row frames (kind 8) on reading: provisional copies of the row still open when they
//! were written. The rule (`docs/FORMAT.md`, "Open rows"): open rows of one step merge in file
//! order (a later cell of a key replaces an earlier one; the keys are the union), and a merged
//! open row becomes a row of the shard only when its step is greater than every committed step
//! of the shard (else the committed row, which holds every cell the step got, stands).

use std::collections::{BTreeMap, HashMap};

use super::batch::decode_other;
use super::{Decoder, Pending, Scalars, Series};
use crate::batch::DType;
use crate::keys::{MAX_KEY_BYTES, TIMESTAMP_KEY};
use crate::msgpack::{self, Mp};
use crate::value::Value;

/// One open-row frame, decoded.
struct OpenRow {
    step: i64,
    time: f64,
    cells: Vec<(String, Value)>,
}

fn decode(raw: &[u8]) -> Result<OpenRow, String> {
    let bad = |what: &str| format!("open row: {what}");
    let v = msgpack::decode(raw)?;
    let step = v
        .get("step")
        .and_then(Mp::as_i64)
        .ok_or_else(|| bad("no step"))?;
    let time = match v.get("time") {
        Some(Mp::F64(t)) => *t,
        Some(Mp::Int(t)) => *t as f64,
        _ => return Err(bad("no time")),
    };
    let entries = v
        .get("cells")
        .and_then(Mp::as_array)
        .ok_or_else(|| bad("no cells"))?;
    let mut cells = Vec::with_capacity(entries.len());
    for entry in entries {
        let e = entry.as_array().ok_or_else(|| bad("bad cell"))?;
        let (Some(name), Some(kind), Some(payload)) = (
            e.first().and_then(Mp::as_str),
            e.get(1).and_then(Mp::as_str),
            e.get(2),
        ) else {
            return Err(bad("bad cell"));
        };
        if name.is_empty() || name.len() > MAX_KEY_BYTES || name.contains('\0') {
            return Err(bad("key names are 1 to 1024 bytes with no NUL"));
        }
        if name == TIMESTAMP_KEY {
            return Err(bad("_timestamp is not a key of a row's cells"));
        }
        cells.push((name.to_string(), decode_other(kind, payload)?));
    }
    Ok(OpenRow { step, time, cells })
}

/// A step's merged open row: the time of its latest copy, its cells, and the index of each
/// key name in the cells.
#[derive(Default)]
struct Merged {
    time: f64,
    cells: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

/// Appends `(step, value)` to the series of `(name, dtype)`, creating it.
fn push_scalar(d: &mut Decoder, name: &str, step: i64, value: Value) {
    let (dtype, empty) = match value {
        Value::F64(_) => (DType::F64, Scalars::F64(Vec::new())),
        Value::I64(_) => (DType::I64, Scalars::I64(Vec::new())),
        _ => (DType::Bool, Scalars::Bool(Vec::new())),
    };
    let s = d
        .out
        .series
        .entry((name.to_string(), dtype))
        .or_insert_with(|| Series {
            steps: Vec::new(),
            values: empty,
        });
    s.steps.push(step);
    match (&mut s.values, value) {
        (Scalars::F64(v), Value::F64(x)) => v.push(x),
        (Scalars::I64(v), Value::I64(x)) => v.push(x),
        (Scalars::Bool(v), Value::Bool(x)) => v.push(x),
        _ => {
            s.steps.pop(); // unreachable: the dtype was chosen from the value
        }
    }
}

impl Decoder {
    /// Applies the shard's open-row frames (after its batches and key list are decoded).
    pub(super) fn open_rows(&mut self, pending: &[Pending]) {
        if pending.is_empty() {
            return;
        }
        let last_committed = self
            .out
            .series
            .get(&(TIMESTAMP_KEY.to_string(), DType::F64))
            .and_then(|s| s.steps.iter().max().copied());
        let mut rows: BTreeMap<i64, Merged> = BTreeMap::new();
        for p in pending {
            let row = match decode(&p.raw) {
                Ok(row) => row,
                Err(reason) => {
                    self.out.problems.push(p.lost(reason));
                    continue;
                }
            };
            if last_committed.is_some_and(|c| row.step <= c) {
                continue; // committed: the committed row stands
            }
            let merged = rows.entry(row.step).or_default();
            merged.time = row.time;
            for (name, value) in row.cells {
                match merged.index.get(&name) {
                    Some(&i) => merged.cells[i].1 = value,
                    None => {
                        merged.index.insert(name.clone(), merged.cells.len());
                        merged.cells.push((name, value));
                    }
                }
            }
        }
        for (step, Merged { time, cells, .. }) in rows {
            push_scalar(self, TIMESTAMP_KEY, step, Value::F64(time));
            for (name, value) in cells {
                if !self.out.keys.contains(&name) {
                    self.out.keys.push(name.clone());
                }
                match value {
                    Value::F64(_) | Value::I64(_) | Value::Bool(_) => {
                        push_scalar(self, &name, step, value);
                    }
                    other => self.out.others.push((step, name.as_str().into(), other)),
                }
            }
            self.out.rows += 1;
        }
        self.out.problems.sort_by_key(|p| p.offset);
    }
}
