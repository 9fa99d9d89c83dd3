//! The summary as callers read and edit it beyond `run.summary[key] = value`: deleting a key,
//! looking one key up without copying the whole summary, and the version that tells a reader
//! whether its last snapshot is still current (so reads need not flush the writer each time).

use std::sync::atomic::Ordering;

use super::Logger;
use crate::error::{Error, Result};
use crate::summary::SummaryValue;
use crate::value::Item;

/// What the summary depends on: rows committed and edits queued. Equal versions mean equal
/// summaries once the writer has taken everything queued before the version was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SummaryVersion {
    /// Rows committed in this shard (see [`crate::accumulator::Accumulator::commits`]).
    pub commits: u64,
    /// Overrides, deletions and metric definitions queued.
    pub edits: u64,
}

impl Logger {
    /// `del run.summary[key]`: the key leaves the summary (and the summary frames written from
    /// now on) until it is logged or set again. Queued after every row committed before it.
    pub fn delete_summary(&self, key: &str) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let id = self.acc.lock().interner().intern(key)?;
        self.push_control(Item::SummaryDelete(id))?;
        self.note_summary_edit();
        Ok(())
    }

    /// Counts a queued summary edit. Called after the item is queued, so a reader that saw
    /// the old count and flushed afterwards has the edit.
    pub(super) fn note_summary_edit(&self) {
        self.stats.summary_edits.fetch_add(1, Ordering::Release);
    }

    /// The summary's current version. A reader reads it *before* flushing; when it later reads
    /// the same version again, nothing that could change the summary happened in between.
    pub fn summary_version(&self) -> SummaryVersion {
        let commits = self.acc.lock().commits();
        SummaryVersion {
            commits,
            edits: self.stats.summary_edits.load(Ordering::Acquire),
        }
    }

    /// One key of the summary as of the last write (call [`Logger::flush`] first for an exact
    /// view), without copying the others.
    pub fn summary_get(&self, key: &str) -> Option<SummaryValue> {
        let live = self.summary.lock();
        live.iter()
            .find(|(id, _)| self.registry.name(*id).as_deref() == Some(key))
            .map(|(_, v)| v.clone())
    }
}
