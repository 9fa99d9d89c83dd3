//! Writing the writer's pending frames out, and what it does when the disk is full: a batch
//! that did not fit is written again in smaller frames before any row is counted as lost.
//!
//! Invariant: every row of a batch is counted exactly once, as written or as failed.

use std::sync::atomic::Ordering;

use super::State;
use crate::batch::Batch;

impl State {
    /// The batch did not fit on a full disk, yet a smaller frame may: writes it in halves,
    /// halves of those and so on. Rows are counted as failed only once a piece that cannot
    /// be split (one row, or one step) did not fit; then so are the rows after it.
    pub(super) fn write_in_pieces(&mut self) {
        let mut pieces = vec![std::mem::take(&mut self.batch)];
        while let Some(piece) = pieces.pop() {
            self.batch = piece;
            if self.write_batch_once(true) {
                continue;
            }
            let half = self.batch.rows() / 2;
            match self.batch.split_off(half) {
                Some(back) => {
                    pieces.push(back);
                    pieces.push(std::mem::take(&mut self.batch));
                }
                None => {
                    self.write_batch_once(false);
                    let rest: u64 = pieces.iter().map(|p| p.rows() as u64).sum();
                    self.stats.rows_failed.fetch_add(rest, Ordering::Relaxed);
                    self.failed_unreported += rest;
                    break;
                }
            }
        }
        self.batch = Batch::default();
    }

    /// Writes the pending frames; counts `rows` as written or failed. Returns success.
    pub(super) fn write_out(&mut self, rows: u64) -> bool {
        match self.try_write_out(rows) {
            Ok(()) => true,
            Err(e) => {
                self.count_failed(rows, &e);
                false
            }
        }
    }

    /// Writes the pending frames; counts `rows` as written when they were.
    pub(super) fn try_write_out(&mut self, rows: u64) -> std::io::Result<()> {
        let result = self.sink.write_frames(&self.out, rows);
        if result.is_ok() {
            self.header = None;
            self.stats.rows_written.fetch_add(rows, Ordering::Relaxed);
            self.stats
                .bytes_written
                .fetch_add(self.out.len() as u64, Ordering::Relaxed);
            self.unsynced = true;
        }
        self.out.clear();
        result
    }

    /// Counts `rows` as failed, for the next write's gap frame too, and the error.
    pub(super) fn count_failed(&mut self, rows: u64, e: &std::io::Error) {
        self.stats.rows_failed.fetch_add(rows, Ordering::Relaxed);
        self.failed_unreported += rows;
        self.stats
            .record_error(format!("writing {}: {e}", self.sink.describe()));
    }
}
