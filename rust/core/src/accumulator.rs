//! The step accumulator: wandb's step rules, applied on the caller's thread.
//!
//! - `log(d)` merges `d` into the current row and commits it as step `n`; the next row is `n+1`.
//! - `log(d, step=n)` with `n` equal to the current step merges without committing; a larger
//!   `n` first commits the open row, then opens step `n`; a smaller `n` is rejected (counted,
//!   nothing written).
//! - `commit=False` keeps the row open; `commit=True` commits it even with an explicit step.
//!
//! Invariant: a row holds at most one cell per key (a later value for the same key in the same
//! step replaces the earlier one), and committed steps strictly increase.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::keys::Interner;
use crate::value::{Cell, KeyId, Row, Value};

/// Why a `log()` call wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRejected {
    /// The step the caller asked for.
    pub step: i64,
    /// The current step, which it is smaller than.
    pub current: i64,
}

/// Per-run step state plus the open row.
#[derive(Debug)]
pub struct Accumulator {
    interner: Interner,
    step: i64,
    open: bool,
    cells: Vec<Cell>,
    /// key id → (row generation, index in `cells`); a slot is live when its generation matches.
    slots: Vec<(u64, u32)>,
    generation: u64,
    rejected: u64,
}

impl Accumulator {
    /// A fresh accumulator starting at step 0.
    pub fn new(interner: Interner) -> Self {
        Accumulator {
            interner,
            step: 0,
            open: false,
            cells: Vec::new(),
            slots: Vec::new(),
            generation: 1,
            rejected: 0,
        }
    }

    /// The key interner (to resolve names before [`Accumulator::log`]).
    pub fn interner(&mut self) -> &mut Interner {
        &mut self.interner
    }

    /// The step the next committing `log()` without `step=` writes.
    pub fn step(&self) -> i64 {
        self.step
    }

    /// Calls rejected because their step was smaller than the current one.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Applies one `log()` call. `cells` are already interned and converted. Committed rows
    /// are handed to `emit` (at most two: the row a larger step closes, and the new one when
    /// it commits at once). `spare` supplies an empty vector for the next row, so that steady
    /// state does not allocate.
    pub fn log(
        &mut self,
        step: Option<i64>,
        commit: Option<bool>,
        cells: impl IntoIterator<Item = (KeyId, Value)>,
        spare: &mut dyn FnMut() -> Vec<Cell>,
        emit: &mut dyn FnMut(Row),
    ) -> Result<(), StepRejected> {
        if let Some(n) = step {
            if n < self.step {
                self.rejected += 1;
                return Err(StepRejected {
                    step: n,
                    current: self.step,
                });
            }
            if n > self.step {
                if self.open {
                    self.commit(spare, emit);
                }
                self.step = n;
            }
        }
        self.open = true;
        for (key, value) in cells {
            self.merge(key, value);
        }
        if commit.unwrap_or(step.is_none()) {
            self.commit(spare, emit);
        }
        Ok(())
    }

    /// Commits the open row, if any (used by `finish()`).
    pub fn flush_open(&mut self, emit: &mut dyn FnMut(Row)) {
        if self.open {
            self.commit(&mut Vec::new, emit);
        }
    }

    fn merge(&mut self, key: KeyId, value: Value) {
        let k = key as usize;
        if self.slots.len() <= k {
            self.slots.resize(k + 1, (0, 0));
        }
        let (generation, index) = self.slots[k];
        if generation == self.generation {
            self.cells[index as usize].value = value;
        } else {
            let index = u32::try_from(self.cells.len()).unwrap_or(u32::MAX);
            self.slots[k] = (self.generation, index);
            self.cells.push(Cell { key, value });
        }
    }

    fn commit(&mut self, spare: &mut dyn FnMut() -> Vec<Cell>, emit: &mut dyn FnMut(Row)) {
        let cells = std::mem::replace(&mut self.cells, spare());
        emit(Row {
            step: self.step,
            time: now_unix_s(),
            cells,
        });
        self.step += 1;
        self.open = false;
        self.generation += 1;
    }
}

/// Seconds since the Unix epoch as a float (`_timestamp`).
pub fn now_unix_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRegistry;

    struct Harness {
        acc: Accumulator,
        rows: Vec<Row>,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                acc: Accumulator::new(Interner::new(KeyRegistry::new())),
                rows: Vec::new(),
            }
        }

        fn log(
            &mut self,
            kv: &[(&str, f64)],
            step: Option<i64>,
            commit: Option<bool>,
        ) -> Result<(), StepRejected> {
            let cells: Vec<(KeyId, Value)> = kv
                .iter()
                .map(|(k, v)| (self.acc.interner().intern(k).unwrap(), Value::F64(*v)))
                .collect();
            let rows = &mut self.rows;
            self.acc
                .log(step, commit, cells, &mut Vec::new, &mut |r| rows.push(r))
        }

        /// (step, [(key name, value)]) per committed row.
        fn table(&self) -> Vec<(i64, Vec<(String, f64)>)> {
            let reg = self.acc.interner.registry().clone();
            self.rows
                .iter()
                .map(|r| {
                    let cells = r
                        .cells
                        .iter()
                        .map(|c| {
                            (
                                reg.name(c.key).unwrap().to_string(),
                                c.value.as_f64().unwrap(),
                            )
                        })
                        .collect();
                    (r.step, cells)
                })
                .collect()
        }
    }

    fn row(step: i64, kv: &[(&str, f64)]) -> (i64, Vec<(String, f64)>) {
        (step, kv.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn each_log_without_step_is_a_new_step() {
        let mut h = Harness::new();
        h.log(&[("loss", 1.0)], None, None).unwrap();
        h.log(&[("loss", 0.5)], None, None).unwrap();
        h.log(&[("acc", 0.9)], None, None).unwrap();
        assert_eq!(
            h.table(),
            vec![
                row(0, &[("loss", 1.0)]),
                row(1, &[("loss", 0.5)]),
                row(2, &[("acc", 0.9)])
            ]
        );
        assert_eq!(h.acc.step(), 3);
    }

    #[test]
    fn same_explicit_step_merges_and_larger_step_commits() {
        let mut h = Harness::new();
        h.log(&[("loss", 1.0)], Some(10), None).unwrap();
        h.log(&[("acc", 0.5)], Some(10), None).unwrap();
        assert!(h.rows.is_empty(), "explicit step must not commit by itself");
        h.log(&[("loss", 0.8)], Some(12), None).unwrap();
        assert_eq!(h.table(), vec![row(10, &[("loss", 1.0), ("acc", 0.5)])]);
        h.acc.flush_open(&mut |r| h.rows.push(r));
        assert_eq!(h.table()[1], row(12, &[("loss", 0.8)]));
    }

    #[test]
    fn later_value_for_the_same_key_in_a_step_wins() {
        let mut h = Harness::new();
        h.log(&[("loss", 1.0)], None, Some(false)).unwrap();
        h.log(&[("loss", 2.0), ("acc", 3.0)], None, Some(false))
            .unwrap();
        h.log(&[("loss", 4.0)], None, None).unwrap();
        assert_eq!(h.table(), vec![row(0, &[("loss", 4.0), ("acc", 3.0)])]);
    }

    #[test]
    fn commit_false_accumulates_until_a_committing_call() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], None, Some(false)).unwrap();
        h.log(&[("b", 2.0)], None, Some(false)).unwrap();
        assert!(h.rows.is_empty());
        h.log(&[("c", 3.0)], None, None).unwrap();
        h.log(&[("a", 4.0)], None, None).unwrap();
        assert_eq!(
            h.table(),
            vec![
                row(0, &[("a", 1.0), ("b", 2.0), ("c", 3.0)]),
                row(1, &[("a", 4.0)])
            ]
        );
    }

    #[test]
    fn explicit_commit_true_with_a_step_commits_at_once() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], Some(5), Some(true)).unwrap();
        assert_eq!(h.table(), vec![row(5, &[("a", 1.0)])]);
        assert_eq!(h.acc.step(), 6);
        h.log(&[("a", 2.0)], None, None).unwrap();
        assert_eq!(h.table()[1], row(6, &[("a", 2.0)]));
    }

    #[test]
    fn smaller_step_is_rejected_counted_and_not_written() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], Some(5), None).unwrap();
        let err = h.log(&[("a", 9.0)], Some(3), None).unwrap_err();
        assert_eq!(
            err,
            StepRejected {
                step: 3,
                current: 5
            }
        );
        assert_eq!(h.acc.rejected(), 1);
        h.acc.flush_open(&mut |r| h.rows.push(r));
        assert_eq!(h.table(), vec![row(5, &[("a", 1.0)])]);
    }

    #[test]
    fn step_less_log_after_explicit_step_lands_in_that_step() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], Some(7), None).unwrap();
        h.log(&[("b", 2.0)], None, None).unwrap();
        h.log(&[("a", 3.0)], None, None).unwrap();
        assert_eq!(
            h.table(),
            vec![row(7, &[("a", 1.0), ("b", 2.0)]), row(8, &[("a", 3.0)])]
        );
    }

    #[test]
    fn empty_log_still_makes_a_step() {
        let mut h = Harness::new();
        h.log(&[], None, None).unwrap();
        h.log(&[("a", 1.0)], None, None).unwrap();
        assert_eq!(h.table(), vec![row(0, &[]), row(1, &[("a", 1.0)])]);
    }

    #[test]
    fn commits_carry_a_wall_clock_time() {
        let mut h = Harness::new();
        let before = now_unix_s();
        h.log(&[("a", 1.0)], None, None).unwrap();
        let t = h.rows[0].time;
        assert!(t >= before && t <= now_unix_s(), "{t}");
    }
}
