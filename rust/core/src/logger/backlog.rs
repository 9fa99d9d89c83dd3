//! Waiting for ring space under the `block` policy, with nothing held: rows the full ring could
//! not take stay in the accumulator (after every older row, before every later one), the
//! caller releases the accumulator's lock (and, in the binding, the GIL) and waits here.
//!
//! Invariants: the wait is bounded by `block_timeout_s`; a row leaves the accumulator exactly
//! once, in commit order (handed to the ring, taken by the writer, or dropped and counted in
//! `rows_dropped` when the wait times out); only the waiter's own rows and older ones are
//! dropped by its timeout, never rows committed after them.

use std::sync::atomic::Ordering;

use crate::accumulator::Accumulator;
use crate::error::{Error, Result};
use crate::value::Item;

use super::Logger;

/// The rows a waiting caller must see leave the accumulator: every row committed up to and
/// including its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    rows: u64,
}

impl Backlog {
    /// Every row committed so far in `acc`.
    pub(super) fn after(acc: &Accumulator) -> Self {
        Backlog {
            rows: acc.rows_out() + acc.committed_rows() as u64,
        }
    }

    fn gone(self, acc: &Accumulator) -> bool {
        acc.rows_out() >= self.rows
    }
}

/// How often (in polls) the waiter looks at the accumulator although the ring is still full:
/// the writer may have taken the rows straight from it and the ring filled again since.
const LOOK_EVERY: u32 = 64;

impl Logger {
    /// Waits, holding nothing, until the rows of a [`super::Logged::Waiting`] call have left
    /// the callers' side: handed to the ring here once it has space (with every row committed
    /// before them), or taken by the writer or another caller. After `block_timeout_s` they
    /// (and any older row still waiting) are dropped and counted.
    pub fn wait(&self, backlog: Backlog) {
        let mut polls = 0u32;
        let done = self
            .ring
            .wait_for_space(self.ring.block_deadline(), |has_space| {
                polls = polls.wrapping_add(1);
                if !has_space && !polls.is_multiple_of(LOOK_EVERY) {
                    return false;
                }
                let mut acc = self.acc.lock();
                backlog.gone(&acc) || (has_space && self.try_hand_over(&mut acc))
            });
        if !done {
            let mut acc = self.acc.lock();
            let left = backlog.rows.saturating_sub(acc.rows_out());
            if left > 0 {
                let dropped = acc.take_oldest(usize::try_from(left).unwrap_or(usize::MAX));
                drop(acc);
                self.ring.drop_item(Item::Chunk(dropped));
            }
        }
    }

    /// Hands every committed row on the callers' side to the ring, waiting (bounded, holding
    /// nothing) for space under `block`.
    pub(super) fn hand_over_waiting(&self) {
        let backlog = {
            let mut acc = self.acc.lock();
            if self.try_hand_over(&mut acc) {
                return;
            }
            Backlog::after(&acc)
        };
        self.wait(backlog);
    }

    /// Hands the committed rows in `acc` to the ring without waiting. Returns `false` when
    /// the ring is full under `block`: the rows stay in `acc`, in order.
    pub(super) fn try_hand_over(&self, acc: &mut Accumulator) -> bool {
        let Some(chunk) = acc.take_committed(self.ring.spare()) else {
            return true;
        };
        match self.ring.offer(Item::Chunk(chunk)) {
            Ok(_) => true,
            Err(item) => {
                if let Item::Chunk(chunk) = item {
                    self.ring.recycle(acc.restore(chunk));
                }
                false
            }
        }
    }

    /// Queues a control item (a summary edit, a definition, run metadata) after every row
    /// committed before it (rows logged earlier must reach the writer first, or they would
    /// overwrite a summary set now), waiting for space (bounded) with nothing held.
    ///
    /// The item is queued only under the accumulator's lock with the run still open. `finish`
    /// sets `closed` under that lock before the writer's last drain, so an item queued here
    /// is always written; once the run is closed the call fails with [`Error::Closed`] and
    /// queues nothing.
    pub(super) fn push_control(&self, item: Item) -> Result<()> {
        let mut item = Some(item);
        let mut closed = false;
        let done = self.ring.wait_for_space(self.ring.block_deadline(), |_| {
            let mut acc = self.acc.lock();
            if self.closed.load(Ordering::Acquire) {
                closed = true;
                return true;
            }
            if !self.try_hand_over(&mut acc) {
                return false;
            }
            match item.take().map(|i| self.ring.try_push(i)) {
                Some(Err(back)) => {
                    item = Some(back);
                    false
                }
                _ => true,
            }
        });
        if closed {
            return Err(Error::Closed);
        }
        if !done {
            if let Some(item) = item {
                self.ring.drop_item(item);
            }
            return Err(Error::Timeout {
                seconds: self.config.block_timeout_s,
                pending: self.ring.len(),
            });
        }
        Ok(())
    }
}
