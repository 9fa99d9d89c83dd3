//! What the writer takes from the callers' side, under the accumulator's lock and never
//! waiting on it except at close: committed rows that have not filled a chunk yet, and copies
//! of the open row (`crate::open_row`) written with a summary frame that counts the row once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::State;
use crate::clock::unix_now as now_unix_s;
use crate::frame::Kind;
use crate::keys::KeyRegistry;
use crate::msgpack::Enc;
use crate::open_row::{self, OpenRow};
use crate::summary::{encode_value, SummaryValue};
use crate::value::KeyId;

impl State {
    /// Takes rows committed on the callers' side that have not filled a chunk yet, so that
    /// they reach the file within the flush interval. Skipped when a caller holds the lock,
    /// unless `wait` (at close: callers hold it only briefly, and never while waiting).
    /// With `look`, also returns a copy of the open row when it changed since the last one.
    pub(super) fn steal(&mut self, wait: bool, look: bool) -> Option<OpenRow> {
        let acc = Arc::clone(&self.acc);
        let mut guard = if wait { acc.lock() } else { acc.try_lock()? };
        // A chunk pushed since `drain` holds rows older than those still on the callers'
        // side, so it goes first (callers push chunks only under this lock). Popped here,
        // processed after the lock is released: callers never wait on the writer's I/O.
        let mut older = Vec::new();
        while let Some(item) = self.ring.pop() {
            older.push(item);
        }
        let taken = guard.take_committed(self.ring.spare());
        if let Some(chunk) = &taken {
            // Counted under the lock, so that `finish_bounded` counts each row once.
            self.stats
                .rows_queued
                .fetch_add(chunk.rows() as u64, Ordering::Relaxed);
        }
        let open = if look {
            self.last_open_check = Instant::now();
            self.open_rows.changed(&guard)
        } else {
            None
        };
        drop(guard);
        for item in older {
            self.take_item(item);
        }
        if let Some(chunk) = taken {
            self.take_chunk(chunk);
        }
        open
    }

    /// Writes a copy of the open row as an open-row frame (after the batch holding every row
    /// committed before it), then a summary frame as if the row were committed: what a
    /// reader shows if the process dies now. Neither touches the summary the writer keeps
    /// (the committed row is observed once, when it comes), and no row is counted.
    pub(super) fn write_open_row(&mut self, row: &OpenRow) {
        let seq_before = self.seq;
        let time = now_unix_s();
        open_row::encode(row, time, &self.registry, &mut self.enc);
        let mut with_row = self.summaries.clone();
        for cell in &row.cells {
            with_row.observe(cell.key, &cell.value);
        }
        let framed = self.frame(Kind::Open, true) && {
            let live = with_row.snapshot(&self.registry);
            encode_summary_map(&live, &self.registry, &mut self.enc);
            self.frame(Kind::Summary, true)
        };
        if !framed {
            self.out.clear();
            self.seq = seq_before;
            return;
        }
        if !self.write_out(0) {
            self.seq = seq_before;
            self.open_rows.forget();
        }
    }
}

/// Encodes a summary frame's payload: key name → entry.
pub(super) fn encode_summary_map(
    live: &[(KeyId, SummaryValue)],
    registry: &KeyRegistry,
    enc: &mut Enc,
) {
    enc.buf.clear();
    enc.map(live.len());
    for (key, value) in live {
        let name = registry.name(*key).unwrap_or_else(|| Arc::from(""));
        enc.str(&name);
        encode_value(value, enc);
    }
}
