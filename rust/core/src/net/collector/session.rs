//! An accepted connection's session: frames in, checked and appended; acks out.
//!
//! Invariants: a frame's length is trusted only after its header CRC matched and it is within
//! `--max-frame-bytes`; its payload is read only into memory taken from the global budget as
//! the payload arrives (`budget.rs`; the wait for room is the back-pressure), and it must
//! arrive whole by its deadline (`--frame-timeout-s` plus its size at `--min-frame-rate`,
//! time waiting for memory not counted), so a connection that declares a frame and stalls
//! holds next to nothing, and not for long; a frame is stored only when its seq is the next
//! one and its payload CRC matched; acks go out through their own task fed by a `watch`
//! holding only the latest `next_seq`, so a client that never reads acks cannot make the
//! collector buffer them or stop reading; every wait (between frames, within a frame, for
//! the last ack, after a shutdown) is bounded.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf,
    WriteHalf,
};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use super::budget::Held;
use super::conn::{log, Ctx, LINGER};
use super::shard_file::{write_run_json, Append, AppendError, Shard};
use super::stats::bump;
use crate::frame::{self, Damage, Kind, HEADER_LEN};
use crate::net::protocol;

/// After a shutdown, how long a connection may take to finish the frame it is reading.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// An ack goes out at least every this many stored frames...
const ACK_EVERY_FRAMES: u32 = 64;
/// ...or stored bytes, even while more bytes are waiting.
const ACK_EVERY_BYTES: usize = 1 << 20;
/// A frame's buffer starts at this size (or its own, when smaller) and doubles as it fills.
const FIRST_PIECE: usize = 64 << 10;

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum Close {
    /// The writer closed the connection between frames.
    Eof,
    /// The collector is stopping.
    Shutdown,
    /// Another connection took the shard over.
    TakenOver,
    /// Nothing arrived for `--idle-timeout-s`.
    Idle(Duration),
    /// A frame did not arrive whole within its deadline (`CollectorConfig::frame_deadline`).
    SlowFrame(Duration),
    /// The connection failed or ended mid-frame.
    Io(std::io::Error),
    /// The connection failed between frames (a writer that exits without reading its last
    /// acks resets it).
    Lost(std::io::Error),
    /// The writer sent something the protocol forbids.
    Protocol(String),
    /// The collector could not store a frame.
    Store(String),
}

impl fmt::Display for Close {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Close::Eof => f.write_str("the writer closed the connection"),
            Close::Shutdown => f.write_str("the collector is stopping"),
            Close::TakenOver => f.write_str("taken over by a newer connection"),
            Close::Idle(d) => write!(
                f,
                "sent nothing for {} s (--idle-timeout-s)",
                d.as_secs_f64()
            ),
            Close::SlowFrame(d) => write!(
                f,
                "a frame took over {:.3} s to arrive (--frame-timeout-s, --min-frame-rate)",
                d.as_secs_f64()
            ),
            Close::Io(e) => write!(f, "connection lost mid-frame: {e}"),
            Close::Lost(e) => write!(f, "connection lost between frames: {e}"),
            Close::Protocol(m) | Close::Store(m) => f.write_str(m),
        }
    }
}

/// What a session races each of its reads against.
struct Guard<'a> {
    kick: &'a Notify,
    shutdown: watch::Receiver<bool>,
    /// Set when the collector started stopping: the frame being read must be done by then.
    stop_by: Option<Instant>,
}

impl Guard<'_> {
    /// Awaits `fut` unless the shard is taken over, `deadline` passes (`on_late`), or the
    /// collector stops and the grace period runs out.
    async fn run<T>(
        &mut self,
        fut: impl Future<Output = T>,
        deadline: Instant,
        on_late: Close,
    ) -> Result<T, Close> {
        tokio::pin!(fut);
        let stopping = self.stop_by.is_some();
        let until = self.stop_by.map_or(deadline, |s| s.min(deadline));
        tokio::select! {
            biased;
            _ = self.kick.notified() => return Err(Close::TakenOver),
            r = &mut fut => return Ok(r),
            _ = sleep_until(until) => return Err(if stopping { Close::Shutdown } else { on_late }),
            _ = self.shutdown.wait_for(|s| *s), if !stopping => {}
        }
        let stop_by = Instant::now() + SHUTDOWN_GRACE;
        self.stop_by = Some(stop_by);
        match timeout_at(stop_by.min(deadline), &mut fut).await {
            Ok(r) => Ok(r),
            Err(_) => Err(Close::Shutdown),
        }
    }
}

type Reader<S> = BufReader<ReadHalf<S>>;

/// Runs the session until it closes; returns why, and how many frames it stored.
pub(crate) async fn run<S>(
    ctx: &Arc<Ctx>,
    mut rd: Reader<S>,
    wr: WriteHalf<S>,
    shard: &Arc<Shard>,
    id: u64,
    kick: &Notify,
    next_seq: u64,
) -> (Close, u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ack_tx, ack_rx) = watch::channel(next_seq);
    let mut writer = tokio::spawn(ack_writer(wr, ack_rx));
    let mut guard = Guard {
        kick,
        shutdown: ctx.shutdown.clone(),
        stop_by: None,
    };
    let mut stored = 0u64;
    let close = frames(ctx, &mut rd, shard, id, &mut guard, &ack_tx, &mut stored).await;
    let last = shard.next_seq();
    ack_tx.send_if_modified(|v| std::mem::replace(v, last) != last);
    drop(ack_tx);
    // NOTE: the ack writer ends when the client stops reading or hangs up; either way the
    // session is over and its close reason was already decided, so its result only matters
    // in that it finished (else it is aborted after LINGER).
    if timeout(LINGER, &mut writer).await.is_err() {
        writer.abort();
    }
    (close, stored)
}

/// Sends the latest `next_seq` whenever it changes; ends (with a FIN) when the session does.
async fn ack_writer<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: watch::Receiver<u64>,
) -> std::io::Result<()> {
    while rx.changed().await.is_ok() {
        let next_seq = *rx.borrow_and_update();
        w.write_all(&protocol::encode_ack(next_seq)).await?;
        w.flush().await?;
    }
    w.shutdown().await
}

/// The header's declared payload length if its CRC matches (even when over the limit).
fn declared_len(h: &[u8; HEADER_LEN]) -> Option<u32> {
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (crc32c::crc32c(&h[..28]) == u32_at(28)).then(|| u32_at(16))
}

async fn frames<S>(
    ctx: &Arc<Ctx>,
    rd: &mut Reader<S>,
    shard: &Arc<Shard>,
    id: u64,
    guard: &mut Guard<'_>,
    ack_tx: &watch::Sender<u64>,
    stored: &mut u64,
) -> Close
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &ctx.config;
    let (mut unacked_frames, mut unacked_bytes) = (0u32, 0usize);
    loop {
        if guard.stop_by.is_some() {
            return Close::Shutdown;
        }
        // Between frames: the idle timeout applies, and a stop needs no grace.
        tokio::select! {
            biased;
            _ = guard.kick.notified() => return Close::TakenOver,
            _ = guard.shutdown.wait_for(|s| *s) => return Close::Shutdown,
            r = timeout(cfg.idle_timeout, rd.fill_buf()) => match r {
                Err(_) => return Close::Idle(cfg.idle_timeout),
                Ok(Err(e)) => return Close::Lost(e),
                Ok(Ok([])) => return Close::Eof,
                Ok(Ok(_)) => {}
            },
        }
        let started = Instant::now();
        let late = Close::SlowFrame(cfg.frame_deadline(0));
        let mut header = [0u8; HEADER_LEN];
        let deadline = started + cfg.frame_deadline(0);
        if let Err(e) = guard
            .run(rd.read_exact(&mut header), deadline, late)
            .await
            .and_then(|r| r.map_err(Close::Io))
        {
            return e;
        }
        let oversize = |n: u32| {
            Close::Protocol(format!(
                "frame declares {n} bytes, over --max-frame-bytes {}",
                cfg.max_frame_bytes
            ))
        };
        let h = match frame::parse_header(&header) {
            Ok(h) if h.payload_len as usize <= cfg.max_frame_bytes => h,
            Ok(h) => return oversize(h.payload_len),
            Err(d) => match declared_len(&header) {
                Some(n) if n as usize > cfg.max_frame_bytes => return oversize(n),
                _ => {
                    return Close::Protocol(format!(
                        "bad frame: {}",
                        match d {
                            Damage::Bad(m) => m,
                            Damage::TornTail => "frame cut short".into(),
                        }
                    ))
                }
            },
        };
        let len = h.payload_len as usize;
        let expected = shard.next_seq();
        if h.seq > expected {
            return Close::Protocol(format!(
                "frame {} arrived where {expected} was expected (a gap)",
                h.seq
            ));
        }
        let allowed = cfg.frame_deadline(len);
        let deadline = started + allowed;
        let late = || Close::SlowFrame(allowed);
        if h.seq < expected {
            // A resend of a stored frame: skip its payload without holding it.
            let (mut rest, mut sink) = ((&mut *rd).take(len as u64), tokio::io::sink());
            match guard
                .run(tokio::io::copy_buf(&mut rest, &mut sink), deadline, late())
                .await
            {
                Ok(Ok(n)) if n == len as u64 => {}
                Ok(Ok(_)) => return Close::Io(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(Err(e)) => return Close::Io(e),
                Err(c) => return c,
            }
            bump(&ctx.counters.duplicate_frames, 1);
            continue;
        }
        let mut held = ctx.budget.hold();
        let buf = match read_body(ctx, rd, guard, &mut held, header, len, deadline, late).await {
            Ok(buf) => buf,
            Err(c) => return c,
        };
        if crc32c::crc32c(&buf[HEADER_LEN..]) != h.payload_crc {
            return Close::Protocol(format!("frame {}: payload checksum mismatch", h.seq));
        }
        match shard.append(id, h.seq, &buf) {
            Ok(Append::Stored(next)) => {
                *stored += 1;
                bump(&ctx.counters.frames_stored, 1);
                bump(&ctx.counters.bytes_stored, buf.len() as u64);
                if h.kind == Kind::Run as u8 {
                    store_run_json(ctx, shard, id, &h, buf).await;
                }
                unacked_frames += 1;
                unacked_bytes += HEADER_LEN + len;
                let quiet = rd.buffer().is_empty();
                if quiet || unacked_frames >= ACK_EVERY_FRAMES || unacked_bytes >= ACK_EVERY_BYTES {
                    ack_tx.send_replace(next);
                    (unacked_frames, unacked_bytes) = (0, 0);
                }
            }
            Ok(Append::Duplicate) => bump(&ctx.counters.duplicate_frames, 1),
            Err(AppendError::TakenOver) => return Close::TakenOver,
            Err(AppendError::Gap { expected }) => {
                return Close::Protocol(format!(
                    "frame {} arrived where {expected} was expected (a gap)",
                    h.seq
                ))
            }
            Err(AppendError::Write(e)) => {
                bump(&ctx.counters.io_errors, 1);
                return Close::Store(format!("could not write {}: {e}", shard.path().display()));
            }
        }
        drop(held);
    }
}

/// Reads a frame's payload after its `header`, taking memory from the budget as it arrives
/// (the buffer doubles, from [`FIRST_PIECE`]); waiting for memory moves `deadline` back.
#[allow(clippy::too_many_arguments)]
async fn read_body<S>(
    ctx: &Ctx,
    rd: &mut Reader<S>,
    guard: &mut Guard<'_>,
    held: &mut Held<'_>,
    header: [u8; HEADER_LEN],
    len: usize,
    mut deadline: Instant,
    late: impl Fn() -> Close,
) -> Result<Vec<u8>, Close>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let total = HEADER_LEN + len;
    let mut buf = header.to_vec();
    let mut filled = HEADER_LEN;
    // NOTE: the wait for room is bounded by the other connections' frame deadlines.
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    while filled < total {
        if filled == buf.len() {
            let grow_to = (buf.len() * 2).max(FIRST_PIECE).min(total);
            let waited = Instant::now();
            let more = grow_to - buf.len();
            guard
                .run(held.grow(more, total - buf.len()), far, Close::Shutdown)
                .await?;
            deadline += waited.elapsed();
            // NOTE: exact, so the allocation is what the budget gave (no amortised doubling).
            buf.reserve_exact(more);
            buf.resize(grow_to, 0);
        }
        match guard
            .run(rd.read(&mut buf[filled..]), deadline, late())
            .await?
        {
            Ok(0) => return Err(Close::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(e) => return Err(Close::Io(e)),
        }
    }
    debug_assert!(held.bytes() <= len && ctx.budget.free() <= ctx.config.max_memory_bytes);
    Ok(buf)
}

/// Writes a stored run frame's payload as the run's `run.json` when it is uncompressed UTF-8
/// JSON; anything else is logged and counted, and the frame stays stored either way.
async fn store_run_json(
    ctx: &Arc<Ctx>,
    shard: &Arc<Shard>,
    id: u64,
    h: &frame::Header,
    buf: Vec<u8>,
) {
    let json = &buf[HEADER_LEN..];
    let looks_like_json = std::str::from_utf8(json).is_ok_and(|s| s.trim_start().starts_with('{'));
    let who = shard.path().display().to_string();
    if h.codec != 0 || !looks_like_json {
        bump(&ctx.counters.io_errors, 1);
        log(
            &who,
            format_args!(
                "run frame {} is not uncompressed JSON; run.json not written",
                h.seq
            ),
        );
        return;
    }
    let dir = shard.run_dir().to_path_buf();
    match tokio::task::spawn_blocking(move || write_run_json(&dir, id, &buf[HEADER_LEN..])).await {
        Ok(Ok(())) => bump(&ctx.counters.run_json_written, 1),
        Ok(Err(e)) => {
            bump(&ctx.counters.io_errors, 1);
            log(&who, format_args!("{e}"));
        }
        Err(e) => {
            bump(&ctx.counters.io_errors, 1);
            log(&who, format_args!("writing run.json failed: {e}"));
        }
    }
}
