//! Batch frames: the key table, scalar columns in either form (packed arrays, or encoded
//! with [`crate::column`]) and non-scalar values. A column joins its series only once all of
//! it decoded, so a damaged batch never leaves steps and values of different lengths.

use std::sync::Arc;

use super::{Decoder, Problem, Scalars, Series};
use crate::batch::DType;
use crate::column::{self, Tag};
use crate::keys::{MAX_KEY_BYTES, TIMESTAMP_KEY};
use crate::msgpack::{self, Mp};
use crate::value::{Histogram, List, ListData, Value, MAX_LIST_DIMS};

fn le_i64(b: &[u8]) -> impl Iterator<Item = i64> + '_ {
    b.chunks_exact(8).map(|c| {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        i64::from_le_bytes(a)
    })
}

fn le_f64(b: &[u8]) -> impl Iterator<Item = f64> + '_ {
    le_i64(b).map(|v| f64::from_bits(v as u64))
}

/// Decodes a non-scalar value from its kind name and payload.
pub fn decode_other(kind: &str, payload: &Mp<'_>) -> Result<Value, String> {
    let bad = || format!("bad payload for a {kind} value");
    Ok(match kind {
        "text" => Value::Text(payload.as_str().ok_or_else(bad)?.into()),
        "list" => {
            let b = payload.as_bin().ok_or_else(bad)?;
            if b.len() % 8 != 0 {
                return Err(bad());
            }
            Value::List(Box::new(List::flat_f64(le_f64(b).collect::<Vec<_>>())))
        }
        "array" => Value::List(Box::new(decode_array(payload).ok_or_else(bad)?)),
        "hist" => {
            let counts = payload.get("counts").and_then(Mp::as_bin).ok_or_else(bad)?;
            let edges = payload.get("edges").and_then(Mp::as_bin).ok_or_else(bad)?;
            if counts.len() % 8 != 0 || edges.len() % 8 != 0 {
                return Err(bad());
            }
            let n = |k| payload.get(k).and_then(Mp::as_i64).unwrap_or(0) as u64;
            Value::Histogram(Box::new(Histogram {
                counts: le_i64(counts).map(|c| c as u64).collect(),
                edges: le_f64(edges).collect(),
                nan: n("nan"),
                pos_inf: n("pos_inf"),
                neg_inf: n("neg_inf"),
            }))
        }
        "f64" => match payload {
            Mp::F64(v) => Value::F64(*v),
            _ => return Err(bad()),
        },
        "i64" => Value::I64(payload.as_i64().ok_or_else(bad)?),
        "bool" => match payload {
            Mp::Bool(v) => Value::Bool(*v),
            _ => return Err(bad()),
        },
        other => return Err(format!("unknown value kind {other:?}")),
    })
}

/// An `array` payload: `{"dtype", "shape", "data"}`, checked against [`List::new`]'s
/// invariant (the shape's product is the element count; at most [`MAX_LIST_DIMS`] dims).
fn decode_array(payload: &Mp<'_>) -> Option<List> {
    let b = payload.get("data").and_then(Mp::as_bin)?;
    let dims = payload.get("shape").and_then(Mp::as_array)?;
    if dims.len() > MAX_LIST_DIMS {
        return None;
    }
    let shape = dims
        .iter()
        .map(|d| d.as_i64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()?;
    let data = match payload.get("dtype").and_then(Mp::as_str)? {
        "f64" if b.len() % 8 == 0 => ListData::F64(le_f64(b).collect()),
        "i64" if b.len() % 8 == 0 => ListData::I64(le_i64(b).collect()),
        "bool" if b.iter().all(|x| *x <= 1) => ListData::Bool(b.iter().map(|x| *x == 1).collect()),
        _ => return None,
    };
    if data.is_empty() && shape != [0] {
        return None;
    }
    List::new(&shape, data)
}

/// A batch frame's payload, decompressed, held until every batch of the shard is counted.
pub(super) struct Pending {
    pub offset: usize,
    pub len: usize,
    pub seq: u64,
    pub raw: Vec<u8>,
}

impl Pending {
    /// The problem of this frame failing to decode: its rows, and only its, are lost.
    pub(super) fn lost(&self, reason: String) -> Problem {
        Problem {
            offset: self.offset,
            len: self.len,
            torn_tail: false,
            reason,
            lost_frames: Some((self.seq, self.seq)),
        }
    }
}

/// What identifies a column and its two fields, before anything is decoded.
struct Head<'m, 'a> {
    id: i64,
    dtype: DType,
    n: usize,
    steps: &'m Mp<'a>,
    values: &'m Mp<'a>,
}

/// Reads an entry of `cols`: `[id, dtype, steps, values]` with plain packed arrays (the
/// form of steplog 0.1.0), or `[id, dtype, n, steps, values, ...]` whose fields are plain or
/// encoded (see [`column`]); the int `n` in third place tells them apart.
fn head<'m, 'a>(col: &'m Mp<'a>) -> Result<Head<'m, 'a>, String> {
    let bad = || "batch: bad column".to_string();
    let c = col.as_array().ok_or_else(bad)?;
    let (Some(id), Some(dtype)) = (
        c.first().and_then(Mp::as_i64),
        c.get(1).and_then(Mp::as_str).and_then(DType::parse),
    ) else {
        return Err(bad());
    };
    let (n, steps, values) = match (c.get(2), c.get(3), c.get(4)) {
        (Some(Mp::Int(n)), Some(steps), Some(values)) => {
            (usize::try_from(*n).map_err(|_| bad())?, steps, values)
        }
        (Some(steps @ Mp::Bin(b)), Some(values @ Mp::Bin(_)), _) if b.len() % 8 == 0 => {
            (b.len() / 8, steps, values)
        }
        _ => return Err(bad()),
    };
    Ok(Head {
        id,
        dtype,
        n,
        steps,
        values,
    })
}

/// Appends a column's `n` steps and values to its series, straight from the column's fields.
fn append(s: &mut Series, n: usize, steps: &Mp<'_>, values: &Mp<'_>) -> Result<(), String> {
    column::decode_field(steps, n, &mut s.steps)?;
    match &mut s.values {
        Scalars::F64(v) => {
            let start = v.len();
            if column::decode_field(values, n, v)? == Tag::Micros {
                for x in &mut v[start..] {
                    *x = column::from_micros(x.to_bits() as i64);
                }
            }
        }
        Scalars::I64(v) => {
            if column::decode_field(values, n, v)? == Tag::Micros {
                return Err("micros values in a column that is not f64".into());
            }
        }
        Scalars::Bool(v) => match values {
            Mp::Bin(b) if b.len() == n => v.extend(b.iter().map(|x| *x != 0)),
            _ => return Err("bool values must be a plain bin of n bytes".into()),
        },
    }
    Ok(())
}

impl Decoder {
    /// Decodes the shard's batch frames, in file order. Every column is counted first, so
    /// each series is allocated once at its full length instead of growing batch by batch.
    pub(super) fn batches(&mut self, pending: &[Pending]) {
        let trees: Vec<_> = pending.iter().map(|p| msgpack::decode(&p.raw)).collect();
        for v in trees.iter().flatten() {
            let cols = v.get("cols").and_then(Mp::as_array).unwrap_or(&[]);
            let heads: Vec<Head<'_, '_>> = cols.iter().filter_map(|c| head(c).ok()).collect();
            if heads.iter().map(|h| h.n).sum::<usize>() <= column::MAX_BATCH_VALUES {
                for h in heads {
                    *self.sizes.entry((h.id, h.dtype)).or_default() += h.n;
                }
            }
        }
        for (p, tree) in pending.iter().zip(&trees) {
            let result = match tree {
                Ok(v) => self.batch(v),
                Err(e) => Err(e.clone()),
            };
            for reason in std::mem::take(&mut self.notes) {
                self.out.problems.push(Problem {
                    offset: p.offset,
                    len: p.len,
                    torn_tail: false,
                    reason,
                    lost_frames: None,
                });
            }
            if let Err(reason) = result {
                self.out.problems.push(p.lost(reason));
            }
        }
    }

    /// One entry of a batch's `cols`, appended to its series (and recorded in `undo`).
    fn column(&mut self, col: &Mp<'_>, table: &Table, undo: &mut Undo) -> Result<(), String> {
        let Head {
            id,
            dtype,
            n,
            steps,
            values,
        } = head(col)?;
        let name = self.resolve(table, id)?;
        if n == 0 {
            return Ok(());
        }
        let key = (name.to_string(), dtype);
        let size = self.sizes.get(&(id, dtype)).copied().unwrap_or(0);
        let s = self
            .out
            .series
            .entry(key.clone())
            .or_insert_with(|| Series {
                steps: Vec::with_capacity(size),
                values: match dtype {
                    DType::F64 => Scalars::F64(Vec::with_capacity(size)),
                    DType::I64 => Scalars::I64(Vec::with_capacity(size)),
                    DType::Bool => Scalars::Bool(Vec::with_capacity(size)),
                },
            });
        undo.series.push((key, s.steps.len()));
        append(s, n, steps, values).map_err(|e| format!("batch: {e}"))?;
        if id == 0 {
            self.out.rows += n as u64;
        } else {
            undo.seen.push((name, id as u64));
        }
        Ok(())
    }

    /// Decodes one batch frame: all of it, or (on any error) nothing.
    pub(super) fn batch(&mut self, v: &Mp<'_>) -> Result<(), String> {
        let table = self.key_table(v)?;
        let mut undo = Undo {
            others: self.out.others.len(),
            rows: self.out.rows,
            series: Vec::new(),
            seen: Vec::new(),
        };
        let result = self.batch_body(v, &table, &mut undo);
        self.batch_no += 1;
        match result {
            Ok(()) => {
                for (name, id) in undo.seen {
                    self.listed.entry(name).or_insert((self.batch_no, id));
                }
            }
            Err(_) => {
                // Nothing of a damaged batch stays behind: its rows are lost together.
                for (key, before) in undo.series.iter().rev() {
                    if let Some(s) = self.out.series.get_mut(key) {
                        s.truncate(*before);
                    }
                }
                for (key, _) in &undo.series {
                    if self.out.series.get(key).is_some_and(|s| s.steps.is_empty()) {
                        self.out.series.remove(key);
                    }
                }
                self.out.others.truncate(undo.others);
                self.out.rows = undo.rows;
            }
        }
        result
    }

    /// The batch's own key table, checked, sorted by id; merged into the shard's table (for
    /// batches of writers that listed each id only once, in the batch that first used it).
    fn key_table(&mut self, v: &Mp<'_>) -> Result<Table, String> {
        let bad = |what: &str| format!("batch: {what}");
        let entries = v
            .get("keys")
            .and_then(Mp::as_array)
            .ok_or_else(|| bad("no keys"))?;
        let mut table: Table = Vec::with_capacity(entries.len());
        for entry in entries {
            let pair = entry.as_array().ok_or_else(|| bad("bad key entry"))?;
            let (Some(id), Some(name)) = (
                pair.first().and_then(Mp::as_i64),
                pair.get(1).and_then(Mp::as_str),
            ) else {
                return Err(bad("bad key entry"));
            };
            let id = u64::try_from(id).map_err(|_| bad("negative key id"))?;
            if (id == 0) != (name == TIMESTAMP_KEY) {
                return Err(bad("key id 0 must be _timestamp, and only it"));
            }
            if name.is_empty() || name.len() > MAX_KEY_BYTES || name.contains('\0') {
                return Err(bad("key names are 1 to 1024 bytes with no NUL"));
            }
            table.push((id, name.into()));
        }
        table.sort_by_key(|(id, _)| *id);
        if table.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(bad("a key id listed twice"));
        }
        for (id, name) in &table {
            match self.names.insert(*id, name.clone()) {
                Some(old) if old != *name => self.notes.push(format!(
                    "batch: key id {id} is {name:?} here but {old:?} in an earlier batch \
                     (each batch's values are named by its own key table)"
                )),
                _ => {}
            }
        }
        Ok(table)
    }

    fn batch_body(&mut self, v: &Mp<'_>, table: &Table, undo: &mut Undo) -> Result<(), String> {
        let bad = |what: &str| format!("batch: {what}");
        let cols = v
            .get("cols")
            .and_then(Mp::as_array)
            .ok_or_else(|| bad("no cols"))?;
        let total = cols
            .iter()
            .map(|c| head(c).map_or(0, |h| h.n))
            .fold(0, usize::saturating_add);
        if total > column::MAX_BATCH_VALUES {
            return Err(bad("more values than a batch may hold"));
        }
        for col in cols {
            self.column(col, table, undo)?;
        }
        for entry in v
            .get("vals")
            .and_then(Mp::as_array)
            .ok_or_else(|| bad("no vals"))?
        {
            let e = entry.as_array().ok_or_else(|| bad("bad value entry"))?;
            let (Some(step), Some(id), Some(kind), Some(payload)) = (
                e.first().and_then(Mp::as_i64),
                e.get(1).and_then(Mp::as_i64),
                e.get(2).and_then(Mp::as_str),
                e.get(3),
            ) else {
                return Err(bad("bad value entry"));
            };
            let value = decode_other(kind, payload)?;
            let name = self.resolve(table, id)?;
            if id == 0 {
                return Err(bad("a value under _timestamp"));
            }
            self.out.others.push((step, name.clone(), value));
            undo.seen.push((name, id as u64));
        }
        Ok(())
    }

    /// The name of key id `id` in a batch: from the batch's own table, or else from an
    /// earlier batch's (files whose batches list only the ids they define).
    fn resolve(&self, table: &Table, id: i64) -> Result<Arc<str>, String> {
        let id = u64::try_from(id).map_err(|_| format!("batch: negative key id {id}"))?;
        match table.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(i) => Ok(table[i].1.clone()),
            Err(_) => {
                self.names.get(&id).cloned().ok_or_else(|| {
                    format!("batch: key id {id} is not defined (its frame was lost)")
                })
            }
        }
    }
}

/// A batch's key table: (id, name), sorted by id.
type Table = Vec<(u64, Arc<str>)>;

/// What a batch added, to take it back if the batch turns out damaged.
struct Undo {
    others: usize,
    rows: u64,
    /// (series, its length before) for every column appended, in order.
    series: Vec<((String, DType), usize)>,
    /// Keys that got data: (name, id).
    seen: Vec<(Arc<str>, u64)>,
}

impl Series {
    fn truncate(&mut self, len: usize) {
        self.steps.truncate(len);
        match &mut self.values {
            Scalars::F64(v) => v.truncate(len),
            Scalars::I64(v) => v.truncate(len),
            Scalars::Bool(v) => v.truncate(len),
        }
    }
}

#[cfg(test)]
mod tests;
