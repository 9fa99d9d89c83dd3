//! The step accumulator: wandb's step rules, applied on the caller's thread.
//!
//! - `log(d)` merges `d` into the current row and commits it as step `n`; the next row is `n+1`.
//! - `log(d, step=n)` with `n` equal to the current step merges without committing; a larger
//!   `n` first commits the open row, then opens step `n`; a smaller `n` is rejected (counted,
//!   nothing written).
//! - `commit=False` keeps the row open; `commit=True` commits it even with an explicit step.
//! - A committed row without cells (`log({})`) advances the step but is not written.
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

use crate::chunk::{Chunk, Row};
use crate::clock::Timebase;
use crate::keys::Interner;
use crate::value::{Cell, KeyId, Value};

/// Most cells reserved at once for a fresh chunk (2 MiB of cells).
const RESERVE_MAX_CELLS: usize = 1 << 16;

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
    /// Whether a staged value needs the NaN/Inf policy (a non-finite float or a list).
    staged_policy: bool,
    /// Whether the caller vouched that the staged keys are distinct.
    staged_distinct: bool,
    /// Committed rows that left the accumulator (handed to the writer or dropped), so a
    /// caller waiting for ring space can tell when its rows are gone.
    rows_out: u64,
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
            staged_policy: false,
            staged_distinct: false,
            rows_out: 0,
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

    /// A number that grows by one at each committed row (what changes a summary).
    pub fn commits(&self) -> u64 {
        self.generation
    }

    /// Calls rejected because their step was smaller than the current one.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Adds a value to the call being built.
    #[inline]
    pub fn stage(&mut self, key: KeyId, value: Value) {
        self.staged_policy |= value.needs_policy();
        self.chunk.cells.push(Cell { key, value });
    }

    /// [`Accumulator::stage`] for a float, the hot loop's value.
    #[inline(always)]
    pub fn stage_f64(&mut self, key: KeyId, value: f64) {
        self.staged_policy |= !value.is_finite();
        // NOTE: not `push`: a pushed cell is built on the stack first (it must be dropped if
        // growing panics) and then copied, and that copy stalls on a failed store forward. A
        // cell made by the closure, after the capacity check, is written in place.
        let cells = &mut self.chunk.cells;
        cells.resize_with(cells.len() + 1, || Cell {
            key,
            value: Value::F64(value),
        });
    }

    /// Declares that the keys staged by the current call are distinct (see
    /// [`Accumulator::apply`]).
    pub fn mark_staged_distinct(&mut self) {
        self.staged_distinct = true;
    }

    /// Whether a value staged by the current call may hold NaN/Inf (a non-finite float or a
    /// list), so that the policy must look at the staged cells.
    pub fn staged_needs_policy(&self) -> bool {
        self.staged_policy
    }

    /// What the current call staged so far.
    pub fn staged_mut(&mut self) -> &mut [Cell] {
        &mut self.chunk.cells[self.open_end..]
    }

    /// Drops what the current call staged (the call failed, or it was applied).
    #[inline]
    pub fn clear_staged(&mut self) {
        self.chunk.cells.truncate(self.open_end);
        self.staged_policy = false;
        self.staged_distinct = false;
    }

    /// Applies the step rule to the staged values. Returns whether the chunk is full and
    /// should be handed to the writer ([`Accumulator::swap_chunk`]).
    /// A call whose staged keys were declared distinct ([`Accumulator::mark_staged_distinct`],
    /// the keys of one flat dict) needs no merging at all when its row is committed at once.
    pub fn apply(&mut self, step: Option<i64>, commit: Option<bool>) -> Result<bool, StepRejected> {
        let distinct = self.staged_distinct;
        self.staged_policy = false;
        self.staged_distinct = false;
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
        // A chunk that was not recycled (the writer has not given any back yet) is sized at
        // once for what the chunk handed over held, instead of growing step by step in
        // `log()`. Sized from use, not capacity, and capped, so one huge row does not make
        // every later chunk huge.
        fresh
            .cells
            .reserve(self.chunk.cells.len().min(RESERVE_MAX_CELLS));
        fresh.rows.reserve(self.chunk.rows.len());
        let end = self.chunk.committed_end();
        fresh.cells.extend(self.chunk.cells.drain(end..));
        self.open_end -= end;
        self.rows_out += self.chunk.rows() as u64;
        Some(std::mem::replace(&mut self.chunk, fresh))
    }

    /// Committed rows waiting in the accumulator.
    pub fn committed_rows(&self) -> usize {
        self.chunk.rows()
    }

    /// Whether the chunk holds the rows of a full chunk (it grows past that while the ring
    /// is full under `block`).
    pub fn chunk_is_full(&self) -> bool {
        self.chunk.rows() >= self.chunk_rows
    }

    /// Committed rows that left the accumulator so far; with [`Accumulator::committed_rows`],
    /// the number of rows committed so far.
    pub fn rows_out(&self) -> u64 {
        self.rows_out
    }

    /// Puts back a chunk that [`Accumulator::take_committed`] returned and the ring could not
    /// take: its rows stay first, before the open row (and anything staged) of the current
    /// chunk, whose emptied allocation is returned.
    pub fn restore(&mut self, mut taken: Chunk) -> Chunk {
        let end = taken.cells.len();
        self.rows_out -= taken.rows() as u64;
        std::mem::swap(&mut self.chunk, &mut taken);
        // `taken` is now the current chunk: no committed rows, only the open row's cells.
        self.chunk.cells.append(&mut taken.cells);
        self.open_end += end;
        taken.clear();
        taken
    }

    /// Takes out the oldest `rows` committed rows (to be dropped: the ring stayed full for
    /// the whole bounded wait), keeping any later row and the open row.
    pub fn take_oldest(&mut self, rows: usize) -> Chunk {
        let rows = rows.min(self.chunk.rows());
        if rows == 0 {
            return Chunk::default();
        }
        let end = self.chunk.rows[rows - 1].end;
        let out = Chunk {
            rows: self.chunk.rows.drain(..rows).collect(),
            cells: self.chunk.cells.drain(..end as usize).collect(),
        };
        for row in &mut self.chunk.rows {
            row.end -= end;
        }
        self.open_end -= end as usize;
        self.rows_out += rows as u64;
        out
    }

    /// The open row, when a row is open and no call is in progress: its step and cells (the
    /// writer's provisional snapshot, taken under the lock).
    pub fn open_row(&self) -> Option<(i64, &[Cell])> {
        let start = self.chunk.committed_end();
        (self.open && self.chunk.cells.len() == self.open_end)
            .then(|| (self.step, &self.chunk.cells[start..self.open_end]))
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

    /// Commits the open row and advances the step. A row without cells (`log({})`) is not
    /// written: the step advances all the same, as in wandb.
    fn commit(&mut self) {
        let end = u32::try_from(self.open_end).unwrap_or(u32::MAX);
        if self.open_end != self.chunk.committed_end() {
            self.chunk.rows.push(Row {
                step: self.step,
                tick: self.clock.raw(),
                end,
            });
        }
        self.step += 1;
        self.open = false;
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests;
