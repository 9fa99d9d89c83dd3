//! The run summary, kept by the writer thread: per key, running statistics updated in O(1) per
//! logged value (never a history), the `run.summary[key] = value` override, and what each key
//! shows under its metric definition.
//!
//! Invariants: NaN never enters min, max, best or mean (they are NaN only while the key has no
//! other number); first and last are the values as logged, NaN included; every statistic is
//! kept for every key whatever its definition, so a definition made after a key was logged
//! shows the key's whole history; an override shows until the key is logged again. A key
//! deleted (`del run.summary[key]`) is out of the summary, its statistics forgotten, until it
//! is logged or set again; its history then starts at that value.

use std::borrow::Cow;

use crate::keys::KeyRegistry;
use crate::metric::{Goal, MetricDef, MetricDefs, Stat};
use crate::msgpack::Enc;
use crate::shard::encode_summary_value;
use crate::value::{KeyId, Value};

mod replay;
pub use replay::HistoryStats;

/// What the summary shows for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum SummaryValue {
    /// A single value: the last one logged, or the override.
    Plain(Value),
    /// The statistics a definition asked for, by name, in [`Stat::ALL`] order.
    Stats(Vec<(Cow<'static, str>, Value)>),
}

/// A number as logged, with its type. `Copy`, so keeping min and max never allocates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    F64(f64),
    I64(i64),
    Bool(bool),
}

impl Num {
    fn f64(self) -> f64 {
        match self {
            Num::F64(v) => v,
            Num::I64(v) => v as f64,
            Num::Bool(v) => f64::from(u8::from(v)),
        }
    }

    /// Orders two numbers: exactly for two integers, else as float64.
    fn less(self, other: Num) -> bool {
        match (self, other) {
            (Num::I64(a), Num::I64(b)) => a < b,
            _ => self.f64() < other.f64(),
        }
    }

    fn value(self) -> Value {
        match self {
            Num::F64(v) => Value::F64(v),
            Num::I64(v) => Value::I64(v),
            Num::Bool(v) => Value::Bool(v),
        }
    }
}

/// Running statistics of one key.
#[derive(Debug, Clone)]
pub struct KeyStats {
    first: Option<Value>,
    last: Option<Value>,
    /// Smallest and largest non-NaN number; meaningful once `count > 0`.
    min: Num,
    max: Num,
    /// Neumaier-compensated sum of the non-NaN numbers, and their count.
    sum: f64,
    compensation: f64,
    count: u64,
    overridden: Option<Value>,
}

impl Default for KeyStats {
    fn default() -> Self {
        KeyStats {
            first: None,
            last: None,
            min: Num::F64(f64::NAN),
            max: Num::F64(f64::NAN),
            sum: 0.0,
            compensation: 0.0,
            count: 0,
            overridden: None,
        }
    }
}

impl KeyStats {
    /// Takes one logged value. Lists and histograms have no summary and are ignored.
    pub fn observe(&mut self, value: &Value) {
        let num = match *value {
            Value::F64(v) => Some(Num::F64(v)),
            Value::I64(v) => Some(Num::I64(v)),
            Value::Bool(v) => Some(Num::Bool(v)),
            Value::Text(_) => None,
            Value::List(_) | Value::Histogram(_) => return,
        };
        if self.overridden.is_some() {
            self.overridden = None;
        }
        if self.first.is_none() {
            self.first = Some(value.clone());
        }
        match (&mut self.last, num) {
            (Some(Value::F64(last)), Some(Num::F64(v))) => *last = v,
            (last, _) => *last = Some(value.clone()),
        }
        let Some(n) = num else { return };
        let x = n.f64();
        if x.is_nan() {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (n, n);
        } else {
            if n.less(self.min) {
                self.min = n;
            }
            if self.max.less(n) {
                self.max = n;
            }
        }
        let t = self.sum + x;
        if t.is_finite() {
            self.compensation += if self.sum.abs() >= x.abs() {
                (self.sum - t) + x
            } else {
                (x - t) + self.sum
            };
        }
        self.sum = t;
        self.count += 1;
    }

    /// `run.summary[key] = value`: shown instead of the statistics until the next log.
    pub fn set(&mut self, value: Value) {
        self.overridden = Some(value);
    }

    /// The mean of the non-NaN numbers (NaN when there are none).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let total = if self.sum.is_finite() {
            self.sum + self.compensation
        } else {
            self.sum
        };
        total / self.count as f64
    }

    fn stat(&self, stat: Stat, goal: Option<Goal>) -> Option<Value> {
        let number = |n: Num| {
            if self.count == 0 {
                Value::F64(f64::NAN)
            } else {
                n.value()
            }
        };
        Some(match stat {
            Stat::Min => number(self.min),
            Stat::Max => number(self.max),
            Stat::Mean => Value::F64(self.mean()),
            Stat::First => self.first.clone()?,
            Stat::Last => self.last.clone()?,
            Stat::Best => match goal? {
                Goal::Minimize => number(self.min),
                Goal::Maximize => number(self.max),
            },
        })
    }

    /// What the summary shows for this key under `def`; `None` leaves the key out.
    pub fn present(&self, def: Option<&MetricDef>) -> Option<SummaryValue> {
        if let Some(v) = &self.overridden {
            return Some(SummaryValue::Plain(v.clone()));
        }
        self.last.as_ref()?;
        match def.and_then(|d| d.summary.as_ref().map(|s| (s, d.goal))) {
            None => self.last.clone().map(SummaryValue::Plain),
            Some((stats, _)) if stats.is_empty() => None,
            Some((stats, goal)) => Some(SummaryValue::Stats(
                stats
                    .iter()
                    .filter_map(|&s| Some((Cow::Borrowed(s.name()), self.stat(s, goal)?)))
                    .collect(),
            )),
        }
    }
}

/// Every key's statistics and the metric definitions, owned by the writer thread.
#[derive(Debug, Default, Clone)]
pub struct Summaries {
    keys: Vec<KeyStats>,
    /// Per key id: its definition's index, once resolved (`Some(None)`: no definition).
    resolved: Vec<Option<Option<usize>>>,
    defs: MetricDefs,
    /// The summary changed since it was last encoded.
    pub dirty: bool,
    /// The definitions changed since they were last encoded.
    pub defs_dirty: bool,
}

impl Summaries {
    fn slot(&mut self, key: KeyId) -> &mut KeyStats {
        let k = key as usize;
        if self.keys.len() <= k {
            self.keys.resize_with(k + 1, KeyStats::default);
        }
        &mut self.keys[k]
    }

    /// A logged value of `key`.
    pub fn observe(&mut self, key: KeyId, value: &Value) {
        if matches!(value, Value::List(_) | Value::Histogram(_)) {
            return;
        }
        self.slot(key).observe(value);
        self.dirty = true;
    }

    /// `run.summary[key] = value`.
    pub fn set(&mut self, key: KeyId, value: Value) {
        if matches!(value, Value::List(_) | Value::Histogram(_)) {
            return; // summaries hold scalars and text only
        }
        self.slot(key).set(value);
        self.dirty = true;
    }

    /// `del run.summary[key]`: the key leaves the summary and its statistics are forgotten;
    /// a later log or override of it starts them again.
    pub fn delete(&mut self, key: KeyId) {
        if let Some(stats) = self.keys.get_mut(key as usize) {
            *stats = KeyStats::default();
            self.dirty = true;
        }
    }

    /// Adds a definition; it applies to keys already logged and to later ones.
    pub fn define(&mut self, def: MetricDef) {
        self.defs.define(def);
        self.resolved.clear();
        self.dirty = true;
        self.defs_dirty = true;
    }

    /// The definitions.
    pub fn defs(&self) -> &MetricDefs {
        &self.defs
    }

    /// What the summary shows now, key by key in id order.
    pub fn snapshot(&mut self, registry: &KeyRegistry) -> Vec<(KeyId, SummaryValue)> {
        if self.resolved.len() < self.keys.len() {
            self.resolved.resize(self.keys.len(), None);
        }
        let mut out = Vec::new();
        for (k, stats) in self.keys.iter().enumerate() {
            let def = *self.resolved[k].get_or_insert_with(|| {
                let name = registry.name(k as KeyId)?;
                self.defs.resolve(&name)
            });
            if let Some(v) = stats.present(def.and_then(|i| self.defs.get(i))) {
                out.push((k as KeyId, v));
            }
        }
        out
    }
}

/// Encodes a summary value: a scalar or text, or a map of statistic name to scalar or text.
pub fn encode_value(value: &SummaryValue, out: &mut Enc) {
    match value {
        SummaryValue::Plain(v) => {
            encode_summary_value(v, out);
        }
        SummaryValue::Stats(stats) => {
            out.map(stats.len());
            for (name, v) in stats {
                out.str(name);
                encode_summary_value(v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(summary: &str, goal: Option<&str>) -> MetricDef {
        MetricDef::parse("k", None, Some(summary), goal).unwrap()
    }

    fn stats_of(v: Option<SummaryValue>) -> Vec<(String, Value)> {
        match v {
            Some(SummaryValue::Stats(s)) => s.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            other => panic!("expected statistics, got {other:?}"),
        }
    }

    fn f(v: f64) -> Value {
        Value::F64(v)
    }

    #[test]
    fn statistics_skip_nan_but_first_and_last_keep_it() {
        let mut s = KeyStats::default();
        for v in [f64::NAN, 3.0, 1.0, f64::NAN, 2.0, f64::NAN] {
            s.observe(&f(v));
        }
        let got = stats_of(s.present(Some(&def("min,max,mean,first,last", None))));
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["min", "max", "mean", "first", "last"]);
        assert_eq!(got[0].1, f(1.0));
        assert_eq!(got[1].1, f(3.0));
        assert_eq!(got[2].1, f(2.0));
        assert!(matches!(got[3].1, Value::F64(x) if x.is_nan()));
        assert!(matches!(got[4].1, Value::F64(x) if x.is_nan()));
        let best_min = stats_of(s.present(Some(&def("best", Some("minimize")))));
        let best_max = stats_of(s.present(Some(&def("best", Some("max")))));
        assert_eq!(
            (best_min[0].1.clone(), best_max[0].1.clone()),
            (f(1.0), f(3.0))
        );
    }

    #[test]
    fn only_nan_gives_nan_statistics_and_infinities_count() {
        let mut s = KeyStats::default();
        s.observe(&f(f64::NAN));
        let got = stats_of(s.present(Some(&def("min,max,mean,best", Some("max")))));
        assert!(got
            .iter()
            .all(|(_, v)| matches!(v, Value::F64(x) if x.is_nan())));
        s.observe(&f(f64::INFINITY));
        s.observe(&f(1.0));
        let got = stats_of(s.present(Some(&def("min,max,mean", None))));
        assert_eq!(got[0].1, f(1.0));
        assert_eq!(got[1].1, f(f64::INFINITY));
        assert_eq!(got[2].1, f(f64::INFINITY));
        s.observe(&f(f64::NEG_INFINITY));
        assert!(s.mean().is_nan(), "+inf and -inf make the mean NaN");
    }

    #[test]
    fn integers_keep_their_type_and_compare_exactly() {
        let mut s = KeyStats::default();
        let big = (1i64 << 60) + 1;
        for v in [big, big - 1, big + 1] {
            s.observe(&Value::I64(v));
        }
        let got = stats_of(s.present(Some(&def("min,max,first,last", None))));
        let vals: Vec<Value> = got.into_iter().map(|(_, v)| v).collect();
        // Equal values of other types do not replace the first one: min stays an int.
        let mut m = KeyStats::default();
        for v in [
            Value::I64(1),
            Value::F64(1.5),
            Value::Bool(true),
            Value::F64(1.0),
        ] {
            m.observe(&v);
        }
        let got = stats_of(m.present(Some(&def("min,max", None))));
        assert_eq!(
            (got[0].1.clone(), got[1].1.clone()),
            (Value::I64(1), f(1.5))
        );
        assert_eq!(
            vals,
            [big - 1, big + 1, big, big + 1].map(Value::I64).to_vec()
        );
    }

    #[test]
    fn the_mean_is_compensated() {
        let mut s = KeyStats::default();
        s.observe(&f(1e16));
        for _ in 0..1000 {
            s.observe(&f(1.0));
        }
        s.observe(&f(-1e16));
        assert_eq!(s.mean(), 1000.0 / 1002.0);
        let mut b = KeyStats::default();
        for v in [true, false, true, true] {
            b.observe(&Value::Bool(v));
        }
        assert_eq!(b.mean(), 0.75);
    }

    #[test]
    fn defaults_none_text_and_overrides() {
        let mut s = KeyStats::default();
        assert_eq!(s.present(None), None, "never logged: not in the summary");
        s.observe(&f(2.0));
        s.observe(&f(1.0));
        assert_eq!(s.present(None), Some(SummaryValue::Plain(f(1.0))));
        let plain = MetricDef::parse("k", Some("epoch"), None, None).unwrap();
        assert_eq!(s.present(Some(&plain)), Some(SummaryValue::Plain(f(1.0))));
        assert_eq!(s.present(Some(&def("none", None))), None);
        // An override shows until the key is logged again; the statistics keep counting.
        s.set(f(9.0));
        assert_eq!(
            s.present(Some(&def("max", None))),
            Some(SummaryValue::Plain(f(9.0)))
        );
        s.observe(&f(0.5));
        let got = stats_of(s.present(Some(&def("max,min", None))));
        assert_eq!((got[0].1.clone(), got[1].1.clone()), (f(0.5), f(2.0)));
        // Text has first and last, and no numbers.
        let mut t = KeyStats::default();
        t.observe(&Value::Text("a".into()));
        t.observe(&Value::Text("b".into()));
        let got = stats_of(t.present(Some(&def("first,last,min", None))));
        assert_eq!(got[1].1, Value::Text("a".into()));
        assert_eq!(got[2].1, Value::Text("b".into()));
        assert!(matches!(got[0].1, Value::F64(x) if x.is_nan()));
        // A key only set, never logged, shows its override.
        let mut o = KeyStats::default();
        o.set(Value::I64(3));
        assert_eq!(
            o.present(Some(&def("min", None))),
            Some(SummaryValue::Plain(Value::I64(3)))
        );
    }

    #[test]
    fn a_deleted_key_leaves_the_snapshot_until_logged_again() {
        let registry = KeyRegistry::new();
        let mut interner = crate::keys::Interner::new(std::sync::Arc::clone(&registry));
        let (a, b) = (interner.intern("a").unwrap(), interner.intern("b").unwrap());
        let mut s = Summaries::default();
        s.define(MetricDef::parse("a", None, Some("min,max"), None).unwrap());
        for v in [5.0, 1.0] {
            s.observe(a, &f(v));
        }
        s.observe(b, &f(2.0));
        s.dirty = false;
        s.delete(a);
        assert!(s.dirty, "a deletion must be written");
        let ids = |s: &mut Summaries| -> Vec<KeyId> {
            s.snapshot(&registry).into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(ids(&mut s), [b]);
        // Logged again, it comes back with statistics of the values since the deletion.
        s.observe(a, &f(3.0));
        let got = s.snapshot(&registry);
        assert_eq!(got[0].0, a);
        assert_eq!(
            stats_of(Some(got[0].1.clone())),
            [("min".to_string(), f(3.0)), ("max".to_string(), f(3.0))]
        );
        // An override brings it back too; deleting an id never seen is a no-op.
        s.delete(a);
        s.set(a, Value::I64(7));
        assert_eq!(ids(&mut s), [a, b]);
        s.dirty = false;
        s.delete(999);
        assert!(!s.dirty);
    }
}
