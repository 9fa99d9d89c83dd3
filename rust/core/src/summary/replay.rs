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
use crate::reader::{Scalars, Series, ShardData};
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

/// Where one key's values are: its scalar series (by dtype rank) and its other values.
#[derive(Default)]
struct Sources<'a> {
    series: Vec<(u8, &'a Series)>,
    others: Vec<(i64, &'a Value)>,
}

fn observe_all(stats: &mut KeyStats, values: &Scalars) {
    match values {
        Scalars::F64(v) => v.iter().for_each(|x| stats.observe(&Value::F64(*x))),
        Scalars::I64(v) => v.iter().for_each(|x| stats.observe(&Value::I64(*x))),
        Scalars::Bool(v) => v.iter().for_each(|x| stats.observe(&Value::Bool(*x))),
    }
}

impl Sources<'_> {
    fn replay(self) -> KeyStats {
        let mut stats = KeyStats::default();
        if let ([(_, s)], []) = (self.series.as_slice(), self.others.as_slice()) {
            if s.steps.windows(2).all(|w| w[0] <= w[1]) {
                // The usual case: one dtype, in step order already.
                observe_all(&mut stats, &s.values);
                return stats;
            }
        }
        // (step, order within the step, value); the sort is stable, so values of one step
        // and kind keep their file order.
        let mut items: Vec<(i64, u8, Value)> = Vec::new();
        for (rank, s) in self.series {
            let steps = s.steps.iter().copied();
            match &s.values {
                Scalars::F64(v) => {
                    items.extend(steps.zip(v).map(|(st, x)| (st, rank, Value::F64(*x))))
                }
                Scalars::I64(v) => {
                    items.extend(steps.zip(v).map(|(st, x)| (st, rank, Value::I64(*x))))
                }
                Scalars::Bool(v) => {
                    items.extend(steps.zip(v).map(|(st, x)| (st, rank, Value::Bool(*x))))
                }
            }
        }
        items.extend(self.others.into_iter().map(|(st, v)| (st, 3, v.clone())));
        items.sort_by_key(|(step, rank, _)| (*step, *rank));
        for (_, _, v) in &items {
            stats.observe(v);
        }
        stats
    }
}

impl HistoryStats {
    /// Replays every scalar and text value of `data`, key by key, in step order.
    pub fn from_shard(data: &ShardData) -> Self {
        let mut sources: HashMap<&str, Sources<'_>> = HashMap::new();
        for ((name, dtype), s) in &data.series {
            let src = sources.entry(name.as_str()).or_default();
            src.series.push((dtype_rank(*dtype), s));
        }
        for (step, key, v) in &data.others {
            if !matches!(v, Value::List(_) | Value::Histogram(_)) {
                sources.entry(key).or_default().others.push((*step, v));
            }
        }
        let mut keys = Vec::with_capacity(data.keys.len());
        for name in &data.keys {
            if name == TIMESTAMP_KEY {
                continue;
            }
            // None: only lists or histograms, which have no summary (as in the live one).
            let Some(src) = sources.remove(name.as_str()) else {
                continue;
            };
            keys.push((name.clone(), src.replay()));
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
