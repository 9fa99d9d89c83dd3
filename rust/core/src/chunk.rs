//! Committed rows packed flat, the unit that crosses the ring: a few hundred rows per push
//! instead of one, so the queue's shared cache lines move once per chunk, and no row needs a
//! heap allocation of its own.
//!
//! Invariant: `steps`, `ticks` and `ends` have one entry per committed row; row `r` owns
//! `cells[ends[r - 1]..ends[r]]` (from 0 for the first row). Cells after the last end belong
//! to the row still open on the caller's side.

use crate::value::Cell;

/// Rows gathered on the caller's side.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Chunk {
    /// `_step` of each row.
    pub steps: Vec<i64>,
    /// Raw clock reading at each row's commit (see [`crate::clock::Timebase`]).
    pub ticks: Vec<u64>,
    /// End (exclusive) of each row's cells.
    pub ends: Vec<u32>,
    /// The cells of every row, in order.
    pub cells: Vec<Cell>,
}

impl Chunk {
    /// Committed rows.
    pub fn rows(&self) -> usize {
        self.steps.len()
    }

    /// Where the committed rows' cells end (and the open row's begin).
    pub fn committed_end(&self) -> usize {
        self.ends.last().map_or(0, |e| *e as usize)
    }

    /// Empties it, keeping the allocations.
    pub fn clear(&mut self) {
        self.steps.clear();
        self.ticks.clear();
        self.ends.clear();
        self.cells.clear();
    }

    /// Row `r`: its step, clock tick and cells.
    pub fn row(&self, r: usize) -> (i64, u64, &[Cell]) {
        let start = if r == 0 { 0 } else { self.ends[r - 1] as usize };
        let end = self.ends[r] as usize;
        (self.steps[r], self.ticks[r], &self.cells[start..end])
    }

    /// Heap bytes held, to decide whether a recycled chunk is worth keeping.
    pub fn capacity_bytes(&self) -> usize {
        self.steps.capacity() * 8
            + self.ticks.capacity() * 8
            + self.ends.capacity() * 4
            + self.cells.capacity() * std::mem::size_of::<Cell>()
    }
}
