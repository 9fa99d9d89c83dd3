//! Batch frames: the key table, scalar columns in either form (packed arrays, or encoded
//! with [`crate::column`]) and non-scalar values. A column joins its series only once all of
//! it decoded, so a damaged batch never leaves steps and values of different lengths.

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
            if let Err(reason) = result {
                self.out.problems.push(Problem {
                    offset: p.offset,
                    len: p.len,
                    torn_tail: false,
                    reason,
                    lost_frames: Some((p.seq, p.seq)),
                });
            }
        }
    }

    /// One entry of a batch's `cols`, appended to its series once all of it decoded.
    fn column(&mut self, col: &Mp<'_>) -> Result<(), String> {
        let Head {
            id,
            dtype,
            n,
            steps,
            values,
        } = head(col)?;
        let key = (self.lookup(id)?, dtype);
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
        let before = s.steps.len();
        if let Err(e) = append(s, n, steps, values) {
            // Nothing of a column that failed stays behind.
            s.steps.truncate(before);
            match &mut s.values {
                Scalars::F64(v) => v.truncate(before),
                Scalars::I64(v) => v.truncate(before),
                Scalars::Bool(v) => v.truncate(before),
            }
            if before == 0 {
                self.out.series.remove(&key);
            }
            return Err(format!("batch: {e}"));
        }
        self.name(id)?; // marks the key as having data
        if id == 0 {
            self.out.rows += n as u64;
        }
        Ok(())
    }

    pub(super) fn batch(&mut self, v: &Mp<'_>) -> Result<(), String> {
        let bad = |what: &str| format!("batch: {what}");
        for entry in v
            .get("keys")
            .and_then(Mp::as_array)
            .ok_or_else(|| bad("no keys"))?
        {
            let pair = entry.as_array().ok_or_else(|| bad("bad key entry"))?;
            let (Some(id), Some(name)) = (
                pair.first().and_then(Mp::as_i64),
                pair.get(1).and_then(Mp::as_str),
            ) else {
                return Err(bad("bad key entry"));
            };
            let id = u64::try_from(id).map_err(|_| bad("negative key id"))?;
            if id == 0 && name != TIMESTAMP_KEY {
                return Err(bad("key id 0 must be _timestamp"));
            }
            if name.is_empty() || name.len() > MAX_KEY_BYTES || name.contains('\0') {
                return Err(bad("key names are 1 to 1024 bytes with no NUL"));
            }
            let listed = self.names.get(&id).is_some_and(|(_, l)| *l);
            self.names.insert(id, (name.into(), listed));
        }
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
            self.column(col)?;
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
            let name = self.name(id)?;
            self.out.others.push((step, name, value));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode_shard;
    use super::*;
    use crate::frame::{append, Kind};
    use crate::msgpack::Enc;

    /// A shard of one batch frame whose `cols` `write_cols` writes (two rows, key 1 "x").
    fn shard(ncols: usize, write_cols: impl Fn(&mut Enc)) -> Vec<u8> {
        let mut e = Enc::default();
        e.map(4);
        e.str("rows");
        e.uint(2);
        e.str("keys");
        e.array(2);
        for (id, name) in [(0, TIMESTAMP_KEY), (1, "x")] {
            e.array(2);
            e.uint(id);
            e.str(name);
        }
        e.str("cols");
        e.array(ncols);
        write_cols(&mut e);
        e.str("vals");
        e.array(0);
        let mut out = Vec::new();
        append(&mut out, Kind::Batch, 0, &e.buf, None).unwrap();
        out
    }

    fn le(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    #[test]
    fn the_array_form_of_steplog_0_1_still_decodes() {
        let bytes = shard(2, |e| {
            for (id, dtype, values) in [
                (0, "f64", le(&[1.5f64.to_bits(), 2.5f64.to_bits()])),
                (1, "i64", le(&[(-7i64) as u64, 9])),
            ] {
                e.array(4);
                e.uint(id);
                e.str(dtype);
                e.bin(&le(&[3, 4]));
                e.bin(&values);
            }
        });
        let d = decode_shard(&bytes);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.rows, 2);
        let ts = &d.series[&(TIMESTAMP_KEY.to_string(), DType::F64)];
        assert_eq!(ts.steps, [3, 4]);
        assert_eq!(ts.values, Scalars::F64(vec![1.5, 2.5]));
        let x = &d.series[&("x".to_string(), DType::I64)];
        assert_eq!(x.values, Scalars::I64(vec![-7, 9]));
    }

    fn encoded_column(e: &mut Enc, id: u64, dtype: &str, n: u64, values: impl Fn(&mut Enc)) {
        e.array(5);
        e.uint(id);
        e.str(dtype);
        e.uint(n);
        column::write(
            e,
            &[0, 1],
            column::Plan::Trim { skip: 0 },
            false,
            &mut Vec::new(),
        );
        values(e);
    }

    #[test]
    fn a_column_that_fails_halfway_adds_nothing() {
        // Steps decode, values do not (a trim of 7 bytes per value holding 1 byte): the
        // batch is damaged, and no series gets steps without values.
        let bytes = shard(1, |e| {
            encoded_column(e, 1, "f64", 2, |e| {
                e.array(3);
                e.str("trim");
                e.uint(1);
                e.bin(&[0; 2]);
            });
        });
        let d = decode_shard(&bytes);
        assert_eq!(d.problems.len(), 1);
        assert!(d.problems[0].reason.contains("trim"), "{:?}", d.problems);
        assert!(d.series.is_empty());
    }

    #[test]
    fn declared_lengths_beyond_the_limit_are_refused_before_allocating() {
        let huge = column::MAX_BATCH_VALUES as u64 + 1;
        let bytes = shard(1, |e| {
            encoded_column(e, 1, "i64", huge, |e| {
                e.array(5);
                e.str("delta");
                e.int(0);
                e.int(1);
                e.uint(0);
                e.bin(&[]);
            });
        });
        let d = decode_shard(&bytes);
        assert_eq!(d.problems.len(), 1);
        assert!(d.series.is_empty());
        // Two columns within the limit each but over it together: refused as well.
        let half = column::MAX_BATCH_VALUES as u64 / 2 + 1;
        let delta = |e: &mut Enc| {
            e.array(5);
            e.str("delta");
            e.int(0);
            e.int(1);
            e.uint(0);
            e.bin(&[]);
        };
        let bytes = shard(2, |e| {
            for dtype in ["i64", "f64"] {
                e.array(5);
                e.uint(1);
                e.str(dtype);
                e.uint(half);
                delta(e);
                delta(e);
            }
        });
        let d = decode_shard(&bytes);
        assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
        assert!(d.problems[0].reason.contains("more values"));
    }

    #[test]
    fn bools_and_micros_keep_to_their_dtypes() {
        let micros = |e: &mut Enc| {
            column::write(
                e,
                &[1, 2],
                column::plan_delta(&[1, 2]),
                true,
                &mut Vec::new(),
            );
        };
        for dtype in ["i64", "bool"] {
            let bytes = shard(1, |e| encoded_column(e, 1, dtype, 2, micros));
            assert_eq!(decode_shard(&bytes).problems.len(), 1, "{dtype}");
        }
        let bytes = shard(1, |e| encoded_column(e, 1, "f64", 2, micros));
        let d = decode_shard(&bytes);
        assert!(d.problems.is_empty());
        let x = &d.series[&("x".to_string(), DType::F64)];
        assert_eq!(x.values, Scalars::F64(vec![1e-6, 2e-6]));
    }
}
