//! The writer's framing of its pending batch: frames of bounded rows and bytes, and gap frames
//! for the rows that could not be framed.
//!
//! TEST ONLY: `STEPLOG_TEST_COMPRESS_FAIL=<n>`, read once per process, makes the compression
//! of every n-th batch frame fail, so tests see what a compression failure costs. It is not a
//! setting and may change without notice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::State;
use crate::frame::{Compress, Kind};
use crate::shard::encode_gap;

/// A compressor that fails every `every`-th call (the TEST ONLY hook).
struct Failing<'a> {
    inner: &'a mut dyn Compress,
    every: u64,
}

static CALLS: AtomicU64 = AtomicU64::new(0);

impl Compress for Failing<'_> {
    fn compress(&mut self, raw: &[u8], cuts: &[usize], out: &mut [u8]) -> Result<usize, String> {
        let n = self.inner.compress(raw, cuts, out)?;
        if (CALLS.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.every) {
            return Err("injected by STEPLOG_TEST_COMPRESS_FAIL".into());
        }
        Ok(n)
    }
}

fn fail_every() -> Option<u64> {
    static EVERY: OnceLock<Option<u64>> = OnceLock::new();
    *EVERY.get_or_init(|| {
        let v = std::env::var("STEPLOG_TEST_COMPRESS_FAIL").ok()?;
        v.trim().parse().ok().filter(|n| *n > 0)
    })
}

impl State {
    /// Frames the pending rows into `self.out`; returns the rows and scalars framed. Rows that
    /// could not be framed (a single row over the format's limits, a compression failure) are
    /// counted as failed and recorded in a gap frame: no byte of them reaches the file.
    pub(super) fn frame_batch(&mut self) -> (u64, u64) {
        if self.batch.rows() == 0 {
            return (0, 0);
        }
        let mut failing;
        let mut compressor = self.compressor.as_mut().map(|c| c as &mut dyn Compress);
        if let Some(every) = fail_every() {
            if let Some(inner) = compressor.take() {
                failing = Failing { inner, every };
                compressor = Some(&mut failing);
            }
        }
        let framed = self.batch.write_frames_kept(
            &self.registry,
            &mut self.enc,
            compressor,
            &mut self.seq,
            &mut self.out,
        );
        self.stats
            .frames_written
            .fetch_add(framed.frames, Ordering::Relaxed);
        if let Some(e) = framed.error {
            self.stats.record_error(e);
        }
        for (lost, reason) in [
            (framed.too_large_rows, "frame_too_large"),
            (framed.failed_rows, "compress_error"),
        ] {
            if lost > 0 {
                self.stats.rows_failed.fetch_add(lost, Ordering::Relaxed);
                encode_gap(lost, reason, &mut self.enc);
                self.frame(Kind::Gap, false);
            }
        }
        (framed.rows, framed.scalars)
    }
}
