//! The network sink: hands a shard's frames to a sender thread that streams them to a
//! collector, and keeps every frame until the collector acknowledges it.
//!
//! The writer thread never waits on the network: `write_frames` queues the frames in memory
//! (up to `net_buffer_bytes`) or, past that, appends them to a local spill file. The sender
//! thread ("steplog-net") connects, learns the collector's `next_seq`, sends what it lacks in
//! `seq` order, reads ACKs and forgets acknowledged frames; when the connection fails it
//! reconnects with exponential backoff (100 ms doubling to 5 s) and resends from the new
//! `next_seq`. At close it waits up to `net_timeout_s` for the last ACK, then writes whatever
//! is still unacknowledged into the spill file, which is a readable shard (`stats.spill_path`).
//!
//! Invariants: memory units are always older than spilled ones (once a spill file exists,
//! every new write goes there until it is wholly acknowledged); a unit leaves the sink only
//! when the collector's `next_seq` passes its last frame; no network I/O happens under the
//! queue's lock.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::frame::{self, HEADER_LEN};
use crate::net::sender::Sender;
use crate::net::spill::{Span, Spill};
use crate::net::target::Target;
use crate::sink::Sink;
use crate::stats::Stats;

/// How a network sink is set up.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// The collector and the token.
    pub target: Target,
    /// The run id and shard name sent in the HELLO.
    pub run: String,
    /// See `run`.
    pub shard: String,
    /// Where unacknowledged frames go when memory is full, and at close.
    pub spill_path: PathBuf,
    /// Bytes of frames kept in memory before spilling.
    pub buffer_bytes: usize,
    /// Connect/write timeout, and how long close waits for the last ACK.
    pub timeout: Duration,
}

pub(super) struct Unit {
    pub(super) span: Span,
    pub(super) bytes: Arc<[u8]>,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) mem: VecDeque<Unit>,
    pub(super) mem_bytes: usize,
    pub(super) spill: Option<Spill>,
    /// The collector's latest `next_seq`.
    pub(super) acked: u64,
    /// One past the last frame handed to the sink.
    pub(super) end: u64,
    pub(super) unacked_rows: u64,
    pub(super) header: Option<Arc<[u8]>>,
    pub(super) stop: bool,
    /// Set when resending cannot work any more (the collector lost acknowledged frames, or
    /// TLS cannot be set up): frames stay local.
    pub(super) fatal: Option<String>,
}

pub(super) struct Shared {
    pub(super) queue: Mutex<Queue>,
    /// Signalled on new frames, on ACKs and on stop.
    pub(super) cv: Condvar,
    pub(super) stats: Mutex<Option<Arc<Stats>>>,
    pub(super) opts: NetOptions,
}

impl Shared {
    pub(super) fn stats(&self) -> Option<Arc<Stats>> {
        self.stats.lock().clone()
    }

    pub(super) fn note_error(&self, message: String) {
        if let Some(s) = self.stats() {
            s.record_net_error(message);
        }
    }

    /// Forgets everything the collector holds (`seq < acked`).
    pub(super) fn prune(&self, q: &mut Queue, acked: u64) {
        if acked <= q.acked {
            return;
        }
        q.acked = acked;
        while q.mem.front().is_some_and(|u| u.span.end <= acked) {
            if let Some(u) = q.mem.pop_front() {
                q.mem_bytes -= u.bytes.len();
                q.unacked_rows -= u.span.rows;
            }
        }
        if let Some(spill) = q.spill.as_mut() {
            let before: u64 = spill.index.iter().map(|(s, _, _)| s.rows).sum();
            spill.prune(acked);
            let after: u64 = spill.index.iter().map(|(s, _, _)| s.rows).sum();
            q.unacked_rows -= before - after;
            if spill.index.is_empty() && q.fatal.is_none() {
                if let Some(spill) = q.spill.take() {
                    if let Err(e) = spill.remove() {
                        self.note_error(format!("removing the emptied spill file: {e}"));
                    }
                    if let Some(s) = self.stats() {
                        *s.spill_path.lock() = None;
                    }
                }
            }
        }
        if let Some(s) = self.stats() {
            s.rows_unacked.store(q.unacked_rows, Relaxed);
        }
        self.cv.notify_all();
    }
}

/// A sink that streams frames to a collector (see the module documentation).
pub struct NetSink {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl NetSink {
    /// Starts the sender thread. Nothing is sent until the first frames arrive.
    pub fn start(opts: NetOptions) -> Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            stats: Mutex::new(None),
            opts,
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("steplog-net".into())
            .spawn(move || {
                crate::signals::block_in_this_thread();
                Sender::new(s).run();
            })
            .map_err(Error::SpawnThread)?;
        Ok(NetSink {
            shared,
            thread: Some(thread),
        })
    }

    /// Waits until every frame handed over so far is acknowledged, at most `timeout`.
    fn wait_acked(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.queue.lock();
        while q.acked < q.end && q.fatal.is_none() {
            if self.shared.cv.wait_until(&mut q, deadline).timed_out() {
                break;
            }
        }
        q.acked >= q.end
    }

    /// Writes every unacknowledged frame, in order, into the spill file, after the header.
    fn spill_everything(&self, q: &mut Queue) -> io::Result<Option<PathBuf>> {
        if q.acked >= q.end {
            return Ok(None);
        }
        let path = &self.shared.opts.spill_path;
        let header = q.header.clone().unwrap_or_else(|| Arc::from(&[][..]));
        // NOTE: memory units are older than spilled ones, so they go first; with an existing
        // spill file, a new file is written beside it and renamed over it.
        let tmp = path.with_extension("steplog.tmp");
        let target_path = if q.spill.is_some() { &tmp } else { path };
        let mut out = Spill::create(target_path, &header)?;
        for u in q.mem.drain(..) {
            out.append(u.span, &u.bytes)?;
        }
        q.mem_bytes = 0;
        if let Some(old) = q.spill.take() {
            for (span, offset, len) in old.index.iter().copied() {
                out.append(span, &old.read(offset, len)?)?;
            }
            std::fs::rename(&tmp, path)?;
        }
        out.sync()?;
        Ok(Some(path.clone()))
    }
}

impl Sink for NetSink {
    fn write_frames(&mut self, bytes: &[u8], rows: u64) -> io::Result<()> {
        let (first, end) = seq_span(bytes)?;
        let span = Span { first, end, rows };
        let sh = &self.shared;
        let mut q = sh.queue.lock();
        if first == 0 && q.header.is_none() {
            let len = HEADER_LEN + frame::parse_header(bytes).map_or(0, |h| h.payload_len as usize);
            q.header = Some(Arc::from(&bytes[..len]));
        }
        let over = q.mem_bytes + bytes.len() > sh.opts.buffer_bytes;
        if q.spill.is_some() || over || q.fatal.is_some() {
            if q.spill.is_none() {
                let header = q.header.clone().unwrap_or_else(|| Arc::from(&[][..]));
                q.spill = Some(Spill::create(&sh.opts.spill_path, &header)?);
                if let Some(s) = sh.stats() {
                    *s.spill_path.lock() = Some(sh.opts.spill_path.display().to_string());
                }
            }
            if let Some(spill) = q.spill.as_mut() {
                spill.append(span, bytes)?;
            }
        } else {
            q.mem_bytes += bytes.len();
            q.mem.push_back(Unit {
                span,
                bytes: Arc::from(bytes),
            });
        }
        q.end = end;
        q.unacked_rows += rows;
        if let Some(s) = sh.stats() {
            s.rows_unacked.store(q.unacked_rows, Relaxed);
        }
        sh.cv.notify_all();
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        match &self.shared.queue.lock().spill {
            Some(spill) => spill.sync(),
            None => Ok(()),
        }
    }

    fn deliver(&mut self, timeout: Duration) -> io::Result<()> {
        if self.wait_acked(timeout) {
            return Ok(());
        }
        let q = self.shared.queue.lock();
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} rows not acknowledged by {} within {:.1} s{}",
                q.unacked_rows,
                self.shared.opts.target.url,
                timeout.as_secs_f64(),
                q.fatal
                    .as_ref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            ),
        ))
    }

    fn close(&mut self) -> io::Result<()> {
        let delivered = self.wait_acked(self.shared.opts.timeout);
        {
            self.shared.queue.lock().stop = true;
            self.shared.cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            // The sender checks `stop` between bounded operations.
            let _ = t.join();
        }
        let mut q = self.shared.queue.lock();
        if delivered {
            return Ok(());
        }
        let path = self.spill_everything(&mut q)?;
        if let (Some(s), Some(p)) = (self.shared.stats(), path) {
            *s.spill_path.lock() = Some(p.display().to_string());
            s.rows_unacked.store(q.unacked_rows, Relaxed);
        }
        Ok(())
    }

    fn attach_stats(&mut self, stats: Arc<Stats>) {
        *self.shared.stats.lock() = Some(stats);
    }

    fn describe(&self) -> String {
        format!("collector {}", self.shared.opts.target.url)
    }
}

/// The `seq` of the first frame in `bytes` and one past the last one's.
fn seq_span(bytes: &[u8]) -> io::Result<(u64, u64)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut at = 0;
    let mut span = None;
    while at < bytes.len() {
        let h = frame::parse_header(&bytes[at..]).map_err(|_| bad("not a whole frame"))?;
        at += HEADER_LEN + h.payload_len as usize;
        span = Some(span.map_or((h.seq, h.seq + 1), |(f, _)| (f, h.seq + 1)));
    }
    if at != bytes.len() {
        return Err(bad("frames cut short"));
    }
    span.ok_or_else(|| bad("no frames"))
}
