//! Counters shared by the caller side and the writer thread, read without locks (the first
//! error message is the one exception, kept behind a mutex that only errors touch).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

/// Live counters of one shard.
#[derive(Debug, Default)]
pub struct Stats {
    /// Rows handed to the writer: accepted into the ring and not evicted from it. Every
    /// committed row is either queued or dropped.
    pub rows_queued: AtomicU64,
    /// Rows dropped because the ring was full (by policy or after the bounded wait).
    pub rows_dropped: AtomicU64,
    /// Rows written to the sink.
    pub rows_written: AtomicU64,
    /// `run.summary[k] = v` updates and metric definitions dropped because the ring was full.
    pub summary_dropped: AtomicU64,
    /// `run.summary` overrides, deletions and metric definitions queued: with the rows
    /// committed, what tells a summary reader that its last snapshot is out of date.
    pub summary_edits: AtomicU64,
    /// Rows the sink failed to take (I/O errors).
    pub rows_failed: AtomicU64,
    /// `log()` calls rejected because their step was smaller than the current one.
    pub steps_rejected: AtomicU64,
    /// Frames written.
    pub frames_written: AtomicU64,
    /// Bytes written to the sink.
    pub bytes_written: AtomicU64,
    /// Write or sync errors seen.
    pub write_errors: AtomicU64,
    /// Scalar values (not rows) written.
    pub scalars_written: AtomicU64,
    /// Rows handed to a network sink that its collector has not acknowledged yet.
    pub rows_unacked: AtomicU64,
    /// Times a network sink connected again after losing its collector.
    pub reconnects: AtomicU64,
    /// Network failures (connect, send, receive) seen.
    pub net_errors: AtomicU64,
    /// The network sink's spill file while it has one (`None` again once all of it was
    /// acknowledged and the file removed).
    pub spill_path: Mutex<Option<String>>,
    first_error: Mutex<Option<String>>,
    first_net_error: Mutex<Option<String>>,
    writer_panic: Mutex<Option<String>>,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::rows_queued`].
    pub rows_queued: u64,
    /// See [`Stats::rows_dropped`].
    pub rows_dropped: u64,
    /// See [`Stats::rows_written`].
    pub rows_written: u64,
    /// See [`Stats::summary_dropped`].
    pub summary_dropped: u64,
    /// See [`Stats::rows_failed`].
    pub rows_failed: u64,
    /// See [`Stats::steps_rejected`].
    pub steps_rejected: u64,
    /// See [`Stats::frames_written`].
    pub frames_written: u64,
    /// See [`Stats::bytes_written`].
    pub bytes_written: u64,
    /// See [`Stats::write_errors`].
    pub write_errors: u64,
    /// See [`Stats::scalars_written`].
    pub scalars_written: u64,
    /// See [`Stats::rows_unacked`].
    pub rows_unacked: u64,
    /// See [`Stats::reconnects`].
    pub reconnects: u64,
    /// See [`Stats::net_errors`].
    pub net_errors: u64,
    /// See [`Stats::spill_path`].
    pub spill_path: Option<String>,
    /// The first background error, if any.
    pub first_error: Option<String>,
    /// The first network error, if any.
    pub first_net_error: Option<String>,
    /// The message of a panic that stopped the writer thread, if one did (the rows it had
    /// not written are lost; `finish()` counts them as unwritten).
    pub writer_panic: Option<String>,
}

impl Stats {
    /// Records a background error: counts it, keeps the first message.
    pub fn record_error(&self, message: String) {
        self.write_errors.fetch_add(1, Relaxed);
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(message);
        }
    }

    /// Records a network failure: counts it, keeps the first message. Network failures are
    /// not write errors: the frames stay queued and are resent.
    pub fn record_net_error(&self, message: String) {
        self.net_errors.fetch_add(1, Relaxed);
        let mut first = self.first_net_error.lock();
        if first.is_none() {
            *first = Some(message);
        }
    }

    /// Records that the writer thread panicked with `message` (kept once).
    pub fn record_panic(&self, message: String) {
        let mut panic = self.writer_panic.lock();
        if panic.is_none() {
            *panic = Some(message);
        }
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            rows_queued: self.rows_queued.load(Relaxed),
            rows_dropped: self.rows_dropped.load(Relaxed),
            rows_written: self.rows_written.load(Relaxed),
            summary_dropped: self.summary_dropped.load(Relaxed),
            rows_failed: self.rows_failed.load(Relaxed),
            steps_rejected: self.steps_rejected.load(Relaxed),
            frames_written: self.frames_written.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            scalars_written: self.scalars_written.load(Relaxed),
            rows_unacked: self.rows_unacked.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            net_errors: self.net_errors.load(Relaxed),
            spill_path: self.spill_path.lock().clone(),
            first_error: self.first_error.lock().clone(),
            first_net_error: self.first_net_error.lock().clone(),
            writer_panic: self.writer_panic.lock().clone(),
        }
    }
}
