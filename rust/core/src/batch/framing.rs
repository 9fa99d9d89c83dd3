//! Cutting a batch into batch frames of at most [`FRAME_MAX_ROWS`] rows and [`FRAME_MAX_BYTES`]
//! bytes, each naming every key it uses, so that one damaged frame costs only its own rows.
//!
//! Rows are cut by step (steps strictly increase within a batch, so each column's entries of
//! a row range are a contiguous run). The rows of the next frame are planned from the stored
//! bytes per row of the last one; a frame that still comes out too large is encoded again
//! with fewer rows.

use super::{encode_column, encode_other, Batch, Part};
use crate::frame::{self, Compress, FrameError, Kind};
use crate::keys::KeyRegistry;
use crate::msgpack::Enc;

/// Most rows in one batch frame: one damaged byte costs at most this many rows.
pub const FRAME_MAX_ROWS: usize = 8192;
/// Most bytes of file (header included) that a batch frame of more than one row takes: one
/// damaged byte costs at most this much of the file.
pub const FRAME_MAX_BYTES: usize = 64 << 10;
/// The stored size frames are planned for; the margin below [`FRAME_MAX_BYTES`] absorbs the
/// error of the bytes-per-row estimate, so that frames are rarely encoded twice.
const FRAME_PLAN_BYTES: usize = 60 << 10;

/// What [`Batch::write_frames`] framed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Framed {
    /// Batch frames appended.
    pub frames: u64,
    /// Rows in them.
    pub rows: u64,
    /// Scalars in them (`_timestamp` not counted).
    pub scalars: u64,
    /// Rows not framed because a single row is over the format's frame limits.
    pub too_large_rows: u64,
    /// Rows not framed because compression failed.
    pub failed_rows: u64,
    /// The first error met.
    pub error: Option<String>,
}

impl Batch {
    /// Frames the batch as batch frames appended to `out`, numbered from `*seq` on (advanced
    /// past them), and empties it. A frame holds at most [`FRAME_MAX_ROWS`] rows and, unless
    /// it is a single row, at most [`FRAME_MAX_BYTES`] bytes. On error nothing of the failed
    /// frame is appended: its rows are counted in the result instead.
    pub fn write_frames(
        &mut self,
        registry: &KeyRegistry,
        enc: &mut Enc,
        compressor: Option<&mut (dyn Compress + '_)>,
        seq: &mut u64,
        out: &mut Vec<u8>,
    ) -> Framed {
        let framed = self.write_frames_kept(registry, enc, compressor, seq, out);
        self.clear();
        framed
    }

    /// [`Batch::write_frames`] without emptying the batch, so that the writer can frame it
    /// again in smaller pieces ([`Batch::split_off`]) when the disk was full; [`Batch::clear`]
    /// after.
    pub fn write_frames_kept(
        &mut self,
        registry: &KeyRegistry,
        enc: &mut Enc,
        mut compressor: Option<&mut (dyn Compress + '_)>,
        seq: &mut u64,
        out: &mut Vec<u8>,
    ) -> Framed {
        let mut done = Framed::default();
        let rows = self.rows;
        // Frames are cut by the rows' steps, which strictly increase in a batch; were they
        // not, the batch goes out whole, as one frame.
        let splittable = self.cols.first().is_some_and(|ts| {
            ts.key == 0
                && ts.steps.len() == rows
                && ts.steps.windows(2).all(|w| (w[0] as i64) < (w[1] as i64))
        });
        let mut pos = 0;
        while pos < rows {
            let left = rows - pos;
            let planned = self.plan_rows();
            let mut n = if splittable { planned.min(left) } else { left };
            let mut reduced = false;
            loop {
                let scalars = self.encode_rows(pos, pos + n, splittable, registry, enc);
                let start = out.len();
                let c = compressor.as_deref_mut();
                match frame::append_with(out, Kind::Batch, *seq, &enc.buf, &self.cuts, c) {
                    Ok(()) => {
                        let size = out.len() - start;
                        if size > FRAME_MAX_BYTES && n > 1 && splittable {
                            out.truncate(start);
                            n = (n * FRAME_PLAN_BYTES / size).clamp(1, n - 1);
                            reduced = true;
                            continue;
                        }
                        // A batch's short last frame would skew the estimate (fixed costs
                        // over few rows), so only planned and re-planned frames set it.
                        if n == planned || reduced || self.bytes_per_row == 0.0 {
                            self.bytes_per_row = size as f64 / n as f64;
                        }
                        *seq += 1;
                        done.frames += 1;
                        done.rows += n as u64;
                        done.scalars += scalars;
                    }
                    Err(FrameError::TooLarge(_)) if n > 1 && splittable => {
                        n /= 2;
                        reduced = true;
                        continue;
                    }
                    Err(e) => {
                        match e {
                            FrameError::TooLarge(_) => done.too_large_rows += n as u64,
                            FrameError::Compression(_) => done.failed_rows += n as u64,
                        }
                        done.error.get_or_insert_with(|| e.to_string());
                    }
                }
                break;
            }
            pos += n;
        }
        done
    }

    /// Rows for the next frame, from the size of the last one.
    fn plan_rows(&self) -> usize {
        if self.bytes_per_row > 0.0 {
            ((FRAME_PLAN_BYTES as f64 / self.bytes_per_row) as usize).clamp(1, FRAME_MAX_ROWS)
        } else {
            FRAME_MAX_ROWS
        }
    }

    /// Encodes rows `lo..hi` as one batch frame's msgpack map into `out`; returns their
    /// scalars. With `split` false, `lo..hi` must be all rows.
    fn encode_rows(
        &mut self,
        lo: usize,
        hi: usize,
        split: bool,
        registry: &KeyRegistry,
        out: &mut Enc,
    ) -> u64 {
        self.ranges.clear();
        let (mut va, mut vb) = (0, self.others.len());
        if split {
            let ts = &self.cols[0];
            let (first, last) = (ts.steps[lo] as i64, ts.steps[hi - 1] as i64);
            for (i, c) in self.cols.iter().enumerate() {
                let a = c.steps.partition_point(|s| (*s as i64) < first);
                let b = c.steps.partition_point(|s| (*s as i64) <= last);
                if a < b {
                    self.ranges.push((i, a, b));
                }
            }
            va = self.others.partition_point(|o| o.0 < first);
            vb = self.others.partition_point(|o| o.0 <= last);
        } else {
            self.ranges.extend(
                self.cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i, 0, c.steps.len())),
            );
        }
        let others = &self.others[va..vb];
        self.ids.clear();
        self.ids.push(0);
        self.ids
            .extend(self.ranges.iter().map(|&(i, _, _)| self.cols[i].key));
        self.ids.extend(others.iter().map(|o| o.1));
        self.ids.sort_unstable();
        self.ids.dedup();
        out.buf.clear();
        out.map(4);
        out.str("rows");
        out.uint((hi - lo) as u64);
        out.str("keys");
        out.array(self.ids.len());
        for &id in &self.ids {
            out.array(2);
            out.uint(u64::from(id));
            out.str(registry.name(id).as_deref().unwrap_or(""));
        }
        out.str("cols");
        out.array(self.ranges.len());
        self.cuts.clear();
        let mut scalars = 0;
        for &(i, a, b) in &self.ranges {
            let col = &self.cols[i];
            if col.key != 0 {
                scalars += (b - a) as u64;
            }
            let part = Part {
                key: col.key,
                dtype: col.dtype,
                steps: &col.steps[a..b],
                values: &col.values[a..b],
            };
            encode_column(&part, out, &mut self.scratch, &mut self.cuts);
        }
        out.str("vals");
        out.array(others.len());
        for (step, key, value) in others {
            out.array(4);
            out.int(*step);
            out.uint(u64::from(*key));
            encode_other(value, out);
        }
        scalars
    }
}
