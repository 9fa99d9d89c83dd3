//! The step accumulator: wandb's step rules, applied on the caller's thread.
//!
//! - `log(d)` merges `d` into the current row and commits it as step `n`; the next row is `n+1`.
//! - `log(d, step=n)` with `n` equal to the current step merges without committing; a larger
//!   `n` first commits the open row, then opens step `n`; a smaller `n` is rejected (counted,
//!   nothing written).
//! - `commit=False` keeps the row open; `commit=True` commits it even with an explicit step.
//!
//! A call first stages its values ([`Accumulator::stage`]) straight into the chunk, after the
//! open row; [`Accumulator::apply`] then applies the step rule and merges them into the row,
//! and a call that fails is cut off again ([`Accumulator::clear_staged`]), so a call lands
//! whole or not at all. Values are moved once, into the cell they are written from. Committed
//! rows go into the current [`Chunk`]; the caller hands a full chunk to the ring.
//!
//! Layout of `chunk.cells`: committed rows, then the open row (up to `open_end`), then the
//! cells staged by the call in progress.
//!
//! Invariant: a row holds at most one cell per key (a later value for the same key in the same
//! step replaces the earlier one), and committed steps strictly increase.

use crate::chunk::Chunk;
use crate::clock::Timebase;
use crate::keys::Interner;
use crate::value::{Cell, KeyId, Value};

/// Why a `log()` call wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRejected {
    /// The step the caller asked for.
    pub step: i64,
    /// The current step, which it is smaller than.
    pub current: i64,
}

/// Per-run step state, the open row and the chunk of committed rows.
#[derive(Debug)]
pub struct Accumulator {
    interner: Interner,
    clock: Timebase,
    step: i64,
    open: bool,
    chunk: Chunk,
    chunk_rows: usize,
    /// key id → (row generation, index of its cell within the open row).
    slots: Vec<(u64, u32)>,
    generation: u64,
    rejected: u64,
    /// End of the open row in `chunk.cells`; staged cells follow it.
    open_end: usize,
}

impl Accumulator {
    /// A fresh accumulator starting at step 0 that fills chunks of `chunk_rows` rows.
    pub fn new(interner: Interner, clock: Timebase, chunk_rows: usize) -> Self {
        Accumulator {
            interner,
            clock,
            step: 0,
            open: false,
            chunk: Chunk::default(),
            chunk_rows: chunk_rows.max(1),
            slots: Vec::new(),
            generation: 1,
            rejected: 0,
            open_end: 0,
        }
    }

    /// The key interner.
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

    /// Adds a value to the call being built.
    #[inline]
    pub fn stage(&mut self, key: KeyId, value: Value) {
        self.chunk.cells.push(Cell { key, value });
    }

    /// What the current call staged so far.
    pub fn staged_mut(&mut self) -> &mut [Cell] {
        &mut self.chunk.cells[self.open_end..]
    }

    /// Drops what the current call staged (the call failed, or it was applied).
    #[inline]
    pub fn clear_staged(&mut self) {
        self.chunk.cells.truncate(self.open_end);
    }

    /// Applies the step rule to the staged values. Returns whether the chunk is full and
    /// should be handed to the writer ([`Accumulator::swap_chunk`]).
    pub fn apply(&mut self, step: Option<i64>, commit: Option<bool>) -> Result<bool, StepRejected> {
        self.apply_staged(step, commit, false)
    }

    /// [`Accumulator::apply`] for a call whose staged keys are known to be distinct (the keys
    /// of one flat dict): a row committed at once then needs no merging at all.
    pub fn apply_staged(
        &mut self,
        step: Option<i64>,
        commit: Option<bool>,
        distinct: bool,
    ) -> Result<bool, StepRejected> {
        if let Some(n) = step {
            if n < self.step {
                self.rejected += 1;
                self.clear_staged();
                return Err(StepRejected {
                    step: n,
                    current: self.step,
                });
            }
            if n > self.step {
                if self.open {
                    self.commit();
                }
                self.step = n;
            }
        }
        self.open = true;
        let commits = commit.unwrap_or(step.is_none());
        let row_start = self.chunk.committed_end();
        if commits
            && self.open_end == row_start
            && (distinct || self.chunk.cells.len() - row_start <= 1)
        {
            // A row committed at once from distinct keys (the hot loop's call): nothing to
            // merge with, and no later call of this step needs the keys' slots.
            self.open_end = self.chunk.cells.len();
        } else {
            self.merge_staged();
        }
        if commits {
            self.commit();
        }
        Ok(self.chunk.rows() >= self.chunk_rows)
    }

    /// Commits the open row, if any (used by `finish()`).
    pub fn commit_open(&mut self) {
        if self.open {
            self.commit();
        }
    }

    /// Replaces the chunk with `fresh` and returns its committed rows (an open row moves
    /// to `fresh`).
    pub fn swap_chunk(&mut self, fresh: Chunk) -> Chunk {
        self.take_committed(fresh).unwrap_or_default()
    }

    /// Takes the committed rows out, leaving the open row (if any) in `fresh`, which becomes
    /// the current chunk. `None` (and `fresh` dropped) when nothing is committed.
    pub fn take_committed(&mut self, mut fresh: Chunk) -> Option<Chunk> {
        if self.chunk.rows() == 0 {
            return None;
        }
        fresh.clear();
        let end = self.chunk.committed_end();
        fresh.cells.extend(self.chunk.cells.drain(end..));
        self.open_end -= end;
        Some(std::mem::replace(&mut self.chunk, fresh))
    }

    /// Merges the staged cells into the open row: a key already in the row (or staged twice)
    /// keeps one cell, with the latest value; the others stay where they were staged, which
    /// is already the end of the row.
    fn merge_staged(&mut self) {
        let row_start = self.chunk.committed_end();
        let staged_start = self.open_end;
        let mut keep = staged_start;
        for i in staged_start..self.chunk.cells.len() {
            let k = self.chunk.cells[i].key as usize;
            if self.slots.len() <= k {
                self.slots.resize(k + 1, (0, 0));
            }
            let (generation, index) = self.slots[k];
            if generation == self.generation {
                // NOTE: rare (a key logged twice in one step): the value moves into the key's
                // cell and the staged cell is dropped by the compaction below.
                let value = std::mem::replace(&mut self.chunk.cells[i].value, Value::Bool(false));
                self.chunk.cells[row_start + index as usize].value = value;
            } else {
                let index = u32::try_from(keep - row_start).unwrap_or(u32::MAX);
                self.slots[k] = (self.generation, index);
                if keep != i {
                    self.chunk.cells.swap(keep, i);
                }
                keep += 1;
            }
        }
        self.chunk.cells.truncate(keep);
        self.open_end = keep;
    }

    fn commit(&mut self) {
        let end = u32::try_from(self.open_end).unwrap_or(u32::MAX);
        self.chunk.steps.push(self.step);
        self.chunk.ticks.push(self.clock.raw());
        self.chunk.ends.push(end);
        self.step += 1;
        self.open = false;
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRegistry;

    struct Harness {
        acc: Accumulator,
        rows: Vec<(i64, Vec<(String, f64)>)>,
    }

    impl Harness {
        fn new() -> Self {
            Harness {
                acc: Accumulator::new(Interner::new(KeyRegistry::new()), Timebase::new(), 3),
                rows: Vec::new(),
            }
        }

        fn log(
            &mut self,
            kv: &[(&str, f64)],
            step: Option<i64>,
            commit: Option<bool>,
        ) -> Result<(), StepRejected> {
            for (k, v) in kv {
                let id = self.acc.interner().intern(k).unwrap();
                self.acc.stage(id, Value::F64(*v));
            }
            if self.acc.apply(step, commit)? {
                let full = self.acc.swap_chunk(Chunk::default());
                self.collect(&full);
            }
            Ok(())
        }

        fn collect(&mut self, chunk: &Chunk) {
            let reg = self.acc.interner.registry().clone();
            for r in 0..chunk.rows() {
                let (step, _, cells) = chunk.row(r);
                let cells = cells
                    .iter()
                    .map(|c| {
                        (
                            reg.name(c.key).unwrap().to_string(),
                            c.value.as_f64().unwrap(),
                        )
                    })
                    .collect();
                self.rows.push((step, cells));
            }
        }

        /// Everything committed so far, including rows still in the current chunk.
        fn table(&mut self) -> Vec<(i64, Vec<(String, f64)>)> {
            if let Some(c) = self.acc.take_committed(Chunk::default()) {
                self.collect(&c);
            }
            self.rows.clone()
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
        h.log(&[("acc", 0.8)], None, None).unwrap();
        assert_eq!(
            h.table(),
            vec![
                row(0, &[("loss", 1.0)]),
                row(1, &[("loss", 0.5)]),
                row(2, &[("acc", 0.9)]),
                row(3, &[("acc", 0.8)])
            ]
        );
        assert_eq!(h.acc.step(), 4);
    }

    #[test]
    fn same_explicit_step_merges_and_larger_step_commits() {
        let mut h = Harness::new();
        h.log(&[("loss", 1.0)], Some(10), None).unwrap();
        h.log(&[("acc", 0.5)], Some(10), None).unwrap();
        assert!(
            h.table().is_empty(),
            "explicit step must not commit by itself"
        );
        h.log(&[("loss", 0.8)], Some(12), None).unwrap();
        assert_eq!(h.table(), vec![row(10, &[("loss", 1.0), ("acc", 0.5)])]);
        h.acc.commit_open();
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
    fn a_key_staged_twice_in_one_call_keeps_its_last_value_and_the_order_of_the_rest() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], None, Some(false)).unwrap();
        // "b" twice, "a" again (already in the open row), then new keys after the duplicates.
        let kv = [("b", 2.0), ("a", 3.0), ("b", 4.0), ("c", 5.0), ("d", 6.0)];
        h.log(&kv, None, None).unwrap();
        h.log(&[("c", 7.0), ("c", 8.0)], None, None).unwrap();
        assert_eq!(
            h.table(),
            vec![
                row(0, &[("a", 3.0), ("b", 4.0), ("c", 5.0), ("d", 6.0)]),
                row(1, &[("c", 8.0)]),
            ]
        );
    }

    #[test]
    fn a_larger_step_commits_the_open_row_before_the_new_values_join_the_next() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0), ("b", 2.0)], Some(3), None).unwrap();
        h.log(&[("a", 9.0), ("c", 4.0)], Some(5), None).unwrap();
        h.log(&[("a", 10.0)], Some(5), Some(true)).unwrap();
        assert_eq!(
            h.table(),
            vec![
                row(3, &[("a", 1.0), ("b", 2.0)]),
                row(5, &[("a", 10.0), ("c", 4.0)]),
            ]
        );
    }

    #[test]
    fn distinct_keys_committed_at_once_skip_the_merge_but_an_open_row_still_merges() {
        let mut h = Harness::new();
        let stage = |h: &mut Harness, kv: &[(&str, f64)]| {
            for (k, v) in kv {
                let id = h.acc.interner().intern(k).unwrap();
                h.acc.stage(id, Value::F64(*v));
            }
        };
        stage(&mut h, &[("a", 1.0), ("b", 2.0)]);
        h.acc.apply_staged(None, None, true).unwrap();
        stage(&mut h, &[("a", 3.0)]);
        h.acc.apply_staged(None, Some(false), true).unwrap();
        // The open row holds "a": the distinct keys of this call must still merge into it.
        stage(&mut h, &[("a", 4.0), ("c", 5.0)]);
        h.acc.apply_staged(None, None, true).unwrap();
        assert_eq!(
            h.table(),
            vec![
                row(0, &[("a", 1.0), ("b", 2.0)]),
                row(1, &[("a", 4.0), ("c", 5.0)]),
            ]
        );
    }

    #[test]
    fn a_failed_call_on_an_open_row_leaves_the_row_as_it_was() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], Some(2), None).unwrap();
        let id = h.acc.interner().intern("b").unwrap();
        h.acc.stage(id, Value::F64(5.0));
        h.acc.clear_staged();
        assert!(h.log(&[("a", 7.0)], Some(1), None).is_err(), "smaller step");
        h.log(&[("c", 3.0)], None, None).unwrap();
        assert_eq!(h.table(), vec![row(2, &[("a", 1.0), ("c", 3.0)])]);
    }

    #[test]
    fn commit_false_accumulates_until_a_committing_call() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], None, Some(false)).unwrap();
        h.log(&[("b", 2.0)], None, Some(false)).unwrap();
        assert!(h.table().is_empty());
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
    fn the_open_row_survives_taking_committed_rows() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], None, None).unwrap();
        h.log(&[("b", 2.0)], None, Some(false)).unwrap();
        assert_eq!(h.table(), vec![row(0, &[("a", 1.0)])]);
        h.log(&[("b", 5.0), ("c", 3.0)], None, None).unwrap();
        assert_eq!(h.table()[1], row(1, &[("b", 5.0), ("c", 3.0)]));
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
        h.acc.commit_open();
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
    fn a_failed_call_leaves_nothing_behind() {
        let mut h = Harness::new();
        let id = h.acc.interner().intern("a").unwrap();
        h.acc.stage(id, Value::F64(1.0));
        h.acc.clear_staged();
        h.log(&[("b", 2.0)], None, None).unwrap();
        assert_eq!(h.table(), vec![row(0, &[("b", 2.0)])]);
    }

    #[test]
    fn commits_carry_a_clock_tick() {
        let mut h = Harness::new();
        h.log(&[("a", 1.0)], None, None).unwrap();
        h.log(&[("a", 1.0)], None, None).unwrap();
        let c = h.acc.take_committed(Chunk::default()).unwrap();
        assert!(c.ticks[0] <= c.ticks[1]);
    }
}
