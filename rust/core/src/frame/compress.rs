//! Payload compression for frames: one zstd frame per payload, with a new zstd block at each
//! given cut (the byte planes of a batch), so that each part is entropy-coded on its own.

/// A payload compressor (zstd in the writer; tests inject failures through it).
pub trait Compress {
    /// Compresses `raw` into `out` (at least [`out_bound`] bytes) as one zstd frame that
    /// declares its content size, and returns the compressed length. `cuts` (ascending offsets
    /// into `raw`) are where parts of different statistics begin, such as the byte planes of a
    /// column: the compressor starts a new block there, so each part gets its own entropy
    /// tables (a batch of 4,000 rows is then smaller than one of 40,000 without them).
    fn compress(
        &mut self,
        raw: &[u8],
        cuts: &[usize],
        out: &mut [u8],
    ) -> std::result::Result<usize, String>;
}

/// Output capacity that [`Compress::compress`] needs for `raw_len` bytes cut at `cuts` places.
pub fn out_bound(raw_len: usize, cuts: usize) -> usize {
    zstd::zstd_safe::compress_bound(raw_len) + 8 * cuts + 64
}

impl Compress for zstd::bulk::Compressor<'_> {
    fn compress(
        &mut self,
        raw: &[u8],
        cuts: &[usize],
        out: &mut [u8],
    ) -> std::result::Result<usize, String> {
        if cuts.is_empty() {
            return self.compress_to_buffer(raw, out).map_err(|e| e.to_string());
        }
        let cx = self.context_mut();
        let result = compress_cut(cx, raw, cuts, out);
        if result.is_err() {
            // A failed frame stays open, and zstd refuses most setters mid-frame.
            let _ = cx.reset(zstd::zstd_safe::ResetDirective::SessionOnly);
        }
        result
    }
}

/// One zstd frame of `raw`, flushed (ending a block) at each of `cuts`.
fn compress_cut(
    cx: &mut zstd::zstd_safe::CCtx<'_>,
    raw: &[u8],
    cuts: &[usize],
    out: &mut [u8],
) -> std::result::Result<usize, String> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue;
    use zstd::zstd_safe::{get_error_name, InBuffer, OutBuffer};
    let err = |code: usize| get_error_name(code).to_string();
    let full = || "output buffer full".to_string();
    cx.set_pledged_src_size(Some(raw.len() as u64))
        .map_err(err)?;
    let mut ob = OutBuffer::around(out);
    let mut from = 0;
    let ends = cuts.iter().copied().filter(|c| *c < raw.len());
    for end in ends.chain(std::iter::once(raw.len())) {
        let part = &raw[from..end.max(from)];
        from = end.max(from);
        let mut ib = InBuffer::around(part);
        while ib.pos() < part.len() {
            let before = (ib.pos(), ob.pos());
            cx.compress_stream2(&mut ob, &mut ib, ZSTD_e_continue)
                .map_err(err)?;
            if (ib.pos(), ob.pos()) == before {
                return Err(full());
            }
        }
        let last = from == raw.len();
        loop {
            let at = ob.pos();
            let left = if last {
                cx.end_stream(&mut ob)
            } else {
                cx.flush_stream(&mut ob)
            }
            .map_err(err)?;
            if left == 0 {
                break;
            }
            if ob.pos() == at {
                return Err(full());
            }
        }
    }
    Ok(ob.pos())
}
