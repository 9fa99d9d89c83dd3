//! NaN and Inf: counted per key, and optionally replaced before they are written (ClearML's
//! `set_reporting_nan_value` / `set_reporting_inf_value`). By default they are kept exactly.
//!
//! Invariant: a run's own setting beats the process-wide one, which beats "keep".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::value::{KeyId, Value};

/// Bit pattern meaning "no process-wide replacement" (a NaN payload no caller can set, since
/// replacements must be finite).
const UNSET: u64 = u64::MAX;

static GLOBAL_NAN: AtomicU64 = AtomicU64::new(UNSET);
static GLOBAL_INF: AtomicU64 = AtomicU64::new(UNSET);

fn load(a: &AtomicU64) -> Option<f64> {
    match a.load(Ordering::Relaxed) {
        UNSET => None,
        bits => Some(f64::from_bits(bits)),
    }
}

fn store(a: &AtomicU64, v: Option<f64>) {
    a.store(v.map_or(UNSET, f64::to_bits), Ordering::Relaxed);
}

/// Sets (or clears with `None`) the process-wide NaN replacement.
pub fn set_global_nan(v: Option<f64>) {
    store(&GLOBAL_NAN, v);
}

/// Sets (or clears with `None`) the process-wide Inf replacement (negated for -Inf).
pub fn set_global_inf(v: Option<f64>) {
    store(&GLOBAL_INF, v);
}

/// The process-wide replacements.
pub fn global() -> (Option<f64>, Option<f64>) {
    (load(&GLOBAL_NAN), load(&GLOBAL_INF))
}

/// NaN, +Inf and -Inf counts of one key.
pub type Counts = [u64; 3];

/// Per-key counts, shared with the writer (which writes them into the close frame). Locked
/// only when a non-finite value is seen.
pub type SharedCounts = Arc<Mutex<Vec<Counts>>>;

/// Applies the policy to one value in place, counting what it saw into `counts[key]`.
pub fn apply(
    value: &mut Value,
    key: KeyId,
    nan: Option<f64>,
    inf: Option<f64>,
    counts: &SharedCounts,
) {
    let mut seen: Counts = [0; 3];
    let mut fix = |x: &mut f64| {
        if x.is_finite() {
            return;
        }
        if x.is_nan() {
            seen[0] += 1;
            if let Some(v) = nan {
                *x = v;
            }
        } else if *x > 0.0 {
            seen[1] += 1;
            if let Some(v) = inf {
                *x = v;
            }
        } else {
            seen[2] += 1;
            if let Some(v) = inf {
                *x = -v;
            }
        }
    };
    match value {
        Value::F64(x) => fix(x),
        Value::List(l) => match l.f64_mut() {
            Some(xs) => xs.iter_mut().for_each(fix),
            None => return,
        },
        _ => return,
    }
    if seen != [0; 3] {
        let mut c = counts.lock();
        let k = key as usize;
        if c.len() <= k {
            c.resize(k + 1, [0; 3]);
        }
        for (total, n) in c[k].iter_mut().zip(seen) {
            *total += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{List, ListData};

    #[test]
    fn keeps_by_default_and_counts() {
        let counts = SharedCounts::default();
        let mut v = Value::List(Box::new(List::flat_f64(vec![
            f64::NAN,
            1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ])));
        apply(&mut v, 2, None, None, &counts);
        let Value::List(l) = &v else { panic!() };
        let ListData::F64(xs) = l.data() else {
            panic!()
        };
        assert!(xs[0].is_nan() && xs[2] == f64::INFINITY && xs[3] == f64::NEG_INFINITY);
        assert_eq!(counts.lock()[2], [1, 1, 1]);
    }

    #[test]
    fn replaces_and_negates_for_minus_inf() {
        let counts = SharedCounts::default();
        let mut v = Value::List(Box::new(List::flat_f64(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            2.0,
        ])));
        apply(&mut v, 0, Some(0.0), Some(1e30), &counts);
        assert_eq!(
            v,
            Value::List(Box::new(List::flat_f64(vec![0.0, 1e30, -1e30, 2.0])))
        );
        let mut s = Value::F64(f64::NAN);
        apply(&mut s, 0, Some(-1.0), None, &counts);
        assert_eq!(s, Value::F64(-1.0));
        assert_eq!(counts.lock()[0], [2, 1, 1]);
    }

    #[test]
    fn finite_values_take_no_lock_and_count_nothing() {
        let counts = SharedCounts::default();
        let mut v = Value::F64(1.5);
        let _guard = counts.lock(); // would deadlock if apply locked for a finite value
        apply(&mut v, 0, Some(0.0), Some(0.0), &counts);
        assert_eq!(v, Value::F64(1.5));
    }
}
