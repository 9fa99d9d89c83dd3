//! Framing: every unit in a shard file is a 32-byte header followed by its payload.
//!
//! ```text
//! offset size field
//!   0     4  magic        b"SLG1"
//!   4     1  kind         1 header, 2 batch, 3 summary, 4 gap, 5 close, 6 metrics, 7 run,
//!                         8 open row
//!   5     1  codec        0 none, 1 zstd
//!   6     2  flags        0 (reserved)
//!   8     8  seq          frame number in this shard, from 0, +1 per frame (u64 LE)
//!  16     4  payload_len  bytes after the header (u32 LE)
//!  20     4  raw_len      payload length after decompression (u32 LE)
//!  24     4  payload_crc  CRC32C of the payload bytes (u32 LE)
//!  28     4  header_crc   CRC32C of bytes 0..28 (u32 LE)
//! ```
//!
//! Invariant: a length is trusted only after the header CRC matched and it is within the
//! limits below; a payload is decoded only after its CRC matched. A reader that meets a bad
//! frame scans forward for the next magic whose header CRC matches.

use crate::error::{Error, Result};

/// Bytes that open every frame.
pub const MAGIC: [u8; 4] = *b"SLG1";
/// Size of a frame header.
pub const HEADER_LEN: usize = 32;
/// Largest payload a reader accepts.
pub const MAX_PAYLOAD: usize = 64 << 20;
/// Largest decompressed payload a reader accepts.
pub const MAX_RAW: usize = 256 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Shard identity; the first frame of every shard.
    Header = 1,
    /// A batch of rows.
    Batch = 2,
    /// A snapshot of the summary.
    Summary = 3,
    /// Rows that were lost before reaching the file, and why.
    Gap = 4,
    /// The shard was closed cleanly.
    Close = 5,
    /// A snapshot of the metric definitions (`define_metric`).
    Metrics = 6,
    /// The run's metadata (`run.json`) as uncompressed JSON; written by network writers so the
    /// collector can write the run's `run.json`.
    Run = 7,
    /// A provisional copy of the row still open on the callers' side (see `open_row`).
    Open = 8,
}

impl Kind {
    /// The kind for a header byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Header,
            2 => Kind::Batch,
            3 => Kind::Summary,
            4 => Kind::Gap,
            5 => Kind::Close,
            6 => Kind::Metrics,
            7 => Kind::Run,
            8 => Kind::Open,
            _ => return None,
        })
    }
}

/// Payload compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is.
    None = 0,
    /// zstd, one independent frame.
    Zstd = 1,
}

/// A decoded, checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Kind byte (may be unknown to this reader).
    pub kind: u8,
    /// Codec byte.
    pub codec: u8,
    /// Frame sequence number.
    pub seq: u64,
    /// Payload length.
    pub payload_len: u32,
    /// Decompressed length.
    pub raw_len: u32,
    /// CRC32C of the payload.
    pub payload_crc: u32,
}

mod compress;
pub use compress::{out_bound, Compress};

/// Why a payload could not be framed. `out` is left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The payload (raw, or compressed) is over the format's limits.
    TooLarge(usize),
    /// The compressor failed.
    Compression(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the format's limit"),
            FrameError::Compression(e) => write!(f, "zstd compression failed: {e}"),
        }
    }
}

/// Compresses `raw` with `compressor` (when given) and appends one frame to `out`.
pub fn append(
    out: &mut Vec<u8>,
    kind: Kind,
    seq: u64,
    raw: &[u8],
    compressor: Option<&mut zstd::bulk::Compressor<'_>>,
) -> Result<()> {
    let compressor = compressor.map(|c| c as &mut dyn Compress);
    append_with(out, kind, seq, raw, &[], compressor).map_err(|e| Error::Corrupt {
        path: "<memory>".into(),
        reason: e.to_string(),
    })
}

/// [`append`] with any [`Compress`], given the block `cuts` (see [`Compress::compress`]). On
/// error nothing is appended: `out` keeps exactly the bytes it had, so no partial frame can
/// reach a file.
pub fn append_with(
    out: &mut Vec<u8>,
    kind: Kind,
    seq: u64,
    raw: &[u8],
    cuts: &[usize],
    compressor: Option<&mut (dyn Compress + '_)>,
) -> std::result::Result<(), FrameError> {
    if raw.len() > MAX_RAW {
        return Err(FrameError::TooLarge(raw.len()));
    }
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let codec = match compressor {
        Some(c) => {
            let bound = out_bound(raw.len(), cuts.len());
            let body_start = out.len();
            out.resize(body_start + bound, 0);
            match c.compress(raw, cuts, &mut out[body_start..]) {
                Ok(n) if n <= bound => out.truncate(body_start + n),
                Ok(n) => {
                    out.truncate(start);
                    return Err(FrameError::Compression(format!(
                        "reported {n} bytes written into {bound}"
                    )));
                }
                Err(e) => {
                    // NOTE: the header placeholder and the scratch space are cut off again, so
                    // the caller never writes them (junk in the middle of a shard).
                    out.truncate(start);
                    return Err(FrameError::Compression(e));
                }
            }
            Codec::Zstd
        }
        None => {
            out.extend_from_slice(raw);
            Codec::None
        }
    };
    let payload_len = out.len() - start - HEADER_LEN;
    if payload_len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(FrameError::TooLarge(raw.len()));
    }
    let payload_crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    let h = &mut out[start..start + HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4] = kind as u8;
    h[5] = codec as u8;
    h[6..8].copy_from_slice(&0u16.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..20].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h[20..24].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    h[24..28].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&header_crc.to_le_bytes());
    Ok(())
}

/// Why bytes at an offset are not a usable frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside this frame (a torn last write).
    TornTail,
    /// Header CRC, payload CRC, a limit or decompression failed.
    Bad(String),
}

/// Parses and checks the header at the start of `buf`.
pub fn parse_header(buf: &[u8]) -> std::result::Result<Header, Damage> {
    if buf.len() < HEADER_LEN {
        return Err(if MAGIC.starts_with(&buf[..buf.len().min(4)]) {
            Damage::TornTail
        } else {
            Damage::Bad("bytes that are not a frame".into())
        });
    }
    if buf[0..4] != MAGIC {
        return Err(Damage::Bad("bytes that are not a frame".into()));
    }
    let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    if crc32c::crc32c(&buf[0..28]) != u32_at(28) {
        return Err(Damage::Bad("frame header checksum mismatch".into()));
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&buf[8..16]);
    let h = Header {
        kind: buf[4],
        codec: buf[5],
        seq: u64::from_le_bytes(seq),
        payload_len: u32_at(16),
        raw_len: u32_at(20),
        payload_crc: u32_at(24),
    };
    if h.payload_len as usize > MAX_PAYLOAD || h.raw_len as usize > MAX_RAW {
        return Err(Damage::Bad(format!(
            "frame declares {} bytes ({} decompressed), over the limit",
            h.payload_len, h.raw_len
        )));
    }
    Ok(h)
}

/// One step of walking a shard's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A frame whose header and payload checksums matched.
    Frame {
        /// Byte offset of the header.
        offset: usize,
        /// The header.
        header: Header,
        /// The (possibly compressed) payload.
        payload: &'a [u8],
    },
    /// Bytes skipped: `len` bytes at `offset` were not a good frame.
    Damaged {
        /// Where the damage starts.
        offset: usize,
        /// How many bytes were skipped.
        len: usize,
        /// What was wrong.
        damage: Damage,
    },
}

/// Walks the frames in `buf`, resynchronising after damage.
#[derive(Debug)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Payload bytes that resynchronisation may still checksum. Real frames do not overlap,
    /// so a real file never needs more than its length; crafted headers (valid header CRC,
    /// payload to the end of the file) would otherwise make the scan quadratic.
    resync_budget: usize,
}

impl<'a> Frames<'a> {
    /// A walker from the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Frames {
            buf,
            pos: 0,
            resync_budget: 2 * buf.len() + (1 << 20),
        }
    }

    fn check(&self, at: usize) -> std::result::Result<(Header, &'a [u8]), Damage> {
        let rest = &self.buf[at..];
        let h = parse_header(rest)?;
        let end = HEADER_LEN + h.payload_len as usize;
        if rest.len() < end {
            return Err(Damage::TornTail);
        }
        let payload = &rest[HEADER_LEN..end];
        if crc32c::crc32c(payload) != h.payload_crc {
            return Err(Damage::Bad("frame payload checksum mismatch".into()));
        }
        Ok((h, payload))
    }

    /// The next offset after `from` where a whole good frame starts.
    fn resync(&mut self, from: usize) -> usize {
        let mut at = from;
        while at + 4 <= self.buf.len() {
            match self.buf[at..].windows(4).position(|w| w == MAGIC) {
                None => break,
                Some(i) => {
                    at += i;
                    let paid = match parse_header(&self.buf[at..]) {
                        Ok(h) if h.payload_len as usize <= self.resync_budget => {
                            self.resync_budget -= h.payload_len as usize;
                            true
                        }
                        _ => false,
                    };
                    if paid && self.check(at).is_ok() {
                        return at;
                    }
                    at += 1;
                }
            }
        }
        self.buf.len()
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let offset = self.pos;
        match self.check(offset) {
            Ok((header, payload)) => {
                self.pos = offset + HEADER_LEN + payload.len();
                Some(Event::Frame {
                    offset,
                    header,
                    payload,
                })
            }
            Err(damage) => {
                let next = self.resync(offset + 1);
                // A torn tail is only a tail if nothing good follows it.
                let damage = match damage {
                    Damage::TornTail if next < self.buf.len() => {
                        Damage::Bad("frame cut short".into())
                    }
                    d => d,
                };
                self.pos = next;
                Some(Event::Damaged {
                    offset,
                    len: next - offset,
                    damage,
                })
            }
        }
    }
}

/// Decompresses a checked payload, never producing more than its declared `raw_len`.
pub fn decode_payload(header: &Header, payload: &[u8]) -> std::result::Result<Vec<u8>, String> {
    match header.codec {
        0 => {
            if payload.len() != header.raw_len as usize {
                return Err("stored payload length does not match raw_len".into());
            }
            Ok(payload.to_vec())
        }
        1 => {
            let want = header.raw_len as usize;
            let mut d = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
            // NOTE: the output capacity is the declared raw_len (bounded by MAX_RAW), never
            // the size zstd itself declares, so a bomb cannot make us allocate more.
            let out = d
                .decompress(payload, want)
                .map_err(|e| format!("zstd: {e}"))?;
            if out.len() != want {
                return Err(format!(
                    "decompressed to {} bytes, header says {want}",
                    out.len()
                ));
            }
            Ok(out)
        }
        c => Err(format!("unknown codec {c}")),
    }
}

#[cfg(test)]
mod tests;
