//! Committed rows packed flat, the unit that crosses the ring: a few hundred rows per push
//! instead of one, so the queue's shared cache lines move once per chunk, and no row needs a
//! heap allocation of its own.
//!
//! Invariant: row `r` owns `cells[rows[r - 1].end..rows[r].end]` (from 0 for the first
//! row). Cells after the last end belong to the row still open on the caller's side.

use crate::value::Cell;

/// One committed row's header (its cells are in [`Chunk::cells`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// `_step`.
    pub step: i64,
    /// Raw clock reading at the commit (see [`crate::clock::Timebase`]).
    pub tick: u64,
    /// End (exclusive) of the row's cells.
    pub end: u32,
}

/// Rows gathered on the caller's side.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Chunk {
    /// One header per committed row (one push per commit on the hot path).
    pub rows: Vec<Row>,
    /// The cells of every row, in order.
    pub cells: Vec<Cell>,
}

impl Chunk {
    /// Committed rows.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Where the committed rows' cells end (and the open row's begin).
    pub fn committed_end(&self) -> usize {
        self.rows.last().map_or(0, |r| r.end as usize)
    }

    /// Empties it, keeping the allocations.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.cells.clear();
    }

    /// Row `r`: its step, clock tick and cells.
    pub fn row(&self, r: usize) -> (i64, u64, &[Cell]) {
        let start = if r == 0 {
            0
        } else {
            self.rows[r - 1].end as usize
        };
        let row = self.rows[r];
        (row.step, row.tick, &self.cells[start..row.end as usize])
    }

    /// Heap bytes held, to decide whether a recycled chunk is worth keeping.
    pub fn capacity_bytes(&self) -> usize {
        self.rows.capacity() * std::mem::size_of::<Row>()
            + self.cells.capacity() * std::mem::size_of::<Cell>()
    }
}
