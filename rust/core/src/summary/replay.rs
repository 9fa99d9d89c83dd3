//! The summary of a shard that has no summary frame (a crash tore it off), recomputed from
//! the shard's history with the writer's own [`KeyStats`]: every value of a key is observed
//! in step order, as the writer observed it, so the result equals what the live summary
//! showed for the same rows (text keys included; lists and histograms have no summary).
//!
//! Invariants: `_timestamp` is never a summary key; keys come in the shard's first-logged
//! order (the writer's key id order); values of one step keep a fixed order (scalar columns
//! by dtype, then other values in file order), so the result never depends on hash order.

use std::collections::HashMap;

use crate::batch::DType;
use crate::keys::TIMESTAMP_KEY;
use crate::metric::MetricDefs;
use crate::reader::{Scalars, ShardData};
use crate::value::Value;

use super::{KeyStats, SummaryValue};

/// Per key, the running statistics of its whole history in one shard.
#[derive(Debug, Clone, Default)]
pub struct HistoryStats {
    keys: Vec<(String, KeyStats)>,
}

fn dtype_rank(d: DType) -> u8 {
    match d {
        DType::F64 => 0,
        DType::I64 => 1,
        DType::Bool => 2,
    }
}

impl HistoryStats {
    /// Replays every scalar and text value of `data`, key by key, in step order.
    pub fn from_shard(data: &ShardData) -> Self {
        // Per key: (step, order within the step, value).
        let mut items: HashMap<&str, Vec<(i64, u8, Value)>> = HashMap::new();
        for ((name, dtype), s) in &data.series {
            let rank = dtype_rank(*dtype);
            let out = items.entry(name.as_str()).or_default();
            match &s.values {
                Scalars::F64(v) => {
                    out.extend((s.steps.iter().zip(v)).map(|(st, x)| (*st, rank, Value::F64(*x))))
                }
                Scalars::I64(v) => {
                    out.extend((s.steps.iter().zip(v)).map(|(st, x)| (*st, rank, Value::I64(*x))))
                }
                Scalars::Bool(v) => {
                    out.extend((s.steps.iter().zip(v)).map(|(st, x)| (*st, rank, Value::Bool(*x))))
                }
            }
        }
        for (step, key, v) in &data.others {
            if !matches!(v, Value::List(_) | Value::Histogram(_)) {
                items.entry(key).or_default().push((*step, 3, v.clone()));
            }
        }
        let mut keys = Vec::with_capacity(data.keys.len());
        for name in &data.keys {
            if name == TIMESTAMP_KEY {
                continue;
            }
            // None: only lists or histograms, which have no summary (as in the live one).
            let Some(mut values) = items.remove(name.as_str()) else {
                continue;
            };
            // Stable: values of one step and kind keep their file order.
            values.sort_by_key(|(step, rank, _)| (*step, *rank));
            let mut stats = KeyStats::default();
            for (_, _, v) in &values {
                stats.observe(v);
            }
            keys.push((name.clone(), stats));
        }
        HistoryStats { keys }
    }

    /// What the summary shows for each key under `defs` (the run's definitions), in
    /// first-logged order; keys with `summary="none"` are left out.
    pub fn summary(&self, defs: &MetricDefs) -> Vec<(String, SummaryValue)> {
        self.keys
            .iter()
            .filter_map(|(name, stats)| {
                let def = defs.resolve(name).and_then(|i| defs.get(i));
                Some((name.clone(), stats.present(def)?))
            })
            .collect()
    }

    /// Keys replayed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key has a summary.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
