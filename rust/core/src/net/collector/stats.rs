//! The collector's counters: bumped with relaxed atomics by every connection, read once as a
//! [`CollectorStats`] snapshot when the collector stops (and for its final log line).
//!
//! Invariant: every rejected connection, dropped frame and failed background operation
//! (fsync, run.json) is counted here, so nothing the collector refuses or fails at is silent.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a collector did, from start to stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CollectorStats {
    /// Connections accepted by the listener (including those later rejected).
    pub connections: u64,
    /// Connections that completed a HELLO and were answered status 0.
    pub sessions: u64,
    /// Connections answered with a status other than 0, or closed before a whole HELLO.
    pub rejected_connections: u64,
    /// Sessions closed because of what their writer sent (bad frame, oversize, gap, timeout).
    pub closed_on_error: u64,
    /// Sessions closed because a frame did not arrive in time (`--frame-timeout-s`,
    /// `--min-frame-rate`); also counted in `closed_on_error`.
    pub slow_frames: u64,
    /// Frames appended to shard files.
    pub frames_stored: u64,
    /// Frames dropped because the shard already held them (resends).
    pub duplicate_frames: u64,
    /// Bytes (headers and payloads) appended to shard files.
    pub bytes_stored: u64,
    /// `run.json` files written from run frames.
    pub run_json_written: u64,
    /// Writes, fsyncs and `run.json` updates that failed (each one is also logged).
    pub io_errors: u64,
}

impl fmt::Display for CollectorStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections ({} sessions, {} rejected, {} closed on error, {} for slow frames), \
             {} frames stored ({} bytes), {} duplicate frames dropped, {} run.json written, \
             {} I/O errors",
            self.connections,
            self.sessions,
            self.rejected_connections,
            self.closed_on_error,
            self.slow_frames,
            self.frames_stored,
            self.bytes_stored,
            self.duplicate_frames,
            self.run_json_written,
            self.io_errors
        )
    }
}

/// The live counters behind [`CollectorStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub sessions: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub closed_on_error: AtomicU64,
    pub slow_frames: AtomicU64,
    pub frames_stored: AtomicU64,
    pub duplicate_frames: AtomicU64,
    pub bytes_stored: AtomicU64,
    pub run_json_written: AtomicU64,
    pub io_errors: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// The counters as they are now.
    pub fn snapshot(&self) -> CollectorStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CollectorStats {
            connections: g(&self.connections),
            sessions: g(&self.sessions),
            rejected_connections: g(&self.rejected_connections),
            closed_on_error: g(&self.closed_on_error),
            slow_frames: g(&self.slow_frames),
            frames_stored: g(&self.frames_stored),
            duplicate_frames: g(&self.duplicate_frames),
            bytes_stored: g(&self.bytes_stored),
            run_json_written: g(&self.run_json_written),
            io_errors: g(&self.io_errors),
        }
    }
}
