//! The background writer: one thread per shard that drains the ring, batches rows by count,
//! bytes and age, encodes, compresses, frames and writes them, keeps the summary and the
//! metric definitions, and fsyncs on its own schedule.
//!
//! Invariants: the thread never panics on I/O (it counts the error and keeps the first
//! message); every wait on it is bounded; a flush or sync covers every item pushed before it
//! was requested; fsync happens only here, never on a caller's thread; the thread never needs
//! the GIL. Frames of a failed write are never in the file, so their sequence numbers are used
//! again by the next write (whose gap frame records the lost rows). A panic on the thread is
//! caught, recorded in the stats (`writer_panic`) and ends the thread as an exit would, so no
//! wait on it outlasts it.

mod full;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::sync::Parker;
use parking_lot::Mutex;

use crate::accumulator::Accumulator;
use crate::batch::Batch;
use crate::chunk::Chunk;
use crate::clock::{unix_now as now_unix_s, Timebase};
use crate::config::WriterConfig;
use crate::control::{Acks, Control, Ticket};
use crate::error::{Error, Result};
use crate::frame::{self, Kind};
use crate::keys::KeyRegistry;
use crate::msgpack::Enc;
use crate::nonfinite::SharedCounts;
use crate::open_row::OpenRows;
use crate::ring::Ring;
use crate::shard::{encode_gap, CloseInfo, ShardInfo};
use crate::sink::{is_full, Sink};
use crate::stats::Stats;
use crate::summary::{Summaries, SummaryValue};
use crate::value::{Item, KeyId};

mod callers;
mod thread;
use callers::encode_summary_map;
use thread::{panic_text, PANIC_VAR};
mod batching;

/// The latest summary values, published by the writer after each write.
pub type SharedSummary = Arc<Mutex<Vec<(KeyId, SummaryValue)>>>;

/// What the writer shares with the callers' side.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The ring it drains.
    pub ring: Arc<Ring>,
    /// Key names.
    pub registry: Arc<KeyRegistry>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Where it publishes the summary.
    pub summary: SharedSummary,
    /// NaN/Inf counts per key, written into the close frame.
    pub nonfinite: SharedCounts,
    /// The callers' accumulator, whose committed rows the writer takes at each tick.
    pub acc: Arc<Mutex<Accumulator>>,
    /// Turns row clock ticks into Unix time.
    pub timebase: Timebase,
}

/// A running writer thread.
#[derive(Debug)]
pub struct Writer {
    control: Arc<Control>,
    ring: Arc<Ring>,
    stats: Arc<Stats>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    ring: Arc<Ring>,
    sink: Box<dyn Sink>,
    registry: Arc<KeyRegistry>,
    stats: Arc<Stats>,
    control: Arc<Control>,
    config: WriterConfig,
    parker: Parker,
    batch: Batch,
    enc: Enc,
    out: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    seq: u64,
    summaries: Summaries,
    /// When a summary override or a definition arrived that no write has carried yet.
    pending_since: Option<Instant>,
    shared_summary: SharedSummary,
    nonfinite: SharedCounts,
    acc: Arc<Mutex<Accumulator>>,
    timebase: Timebase,
    dropped_reported: u64,
    failed_unreported: u64,
    /// The header frame's payload, kept until a write of it succeeds.
    header: Option<Vec<u8>>,
    /// The latest run metadata not yet written (a run frame).
    run_meta: Option<Box<[u8]>>,
    unsynced: bool,
    last_sync: Instant,
    /// The open row as last written (open-row frames), and when it was last looked at.
    open_rows: OpenRows,
    last_open_check: Instant,
    /// TEST ONLY (`STEPLOG_TEST_WRITER_PANIC`): panic at the first flush, sync or shutdown.
    panic_on_request: bool,
}

impl Writer {
    /// Starts the writer thread for `sink`, writing the shard header first.
    pub fn start(
        sink: Box<dyn Sink>,
        info: &ShardInfo,
        config: WriterConfig,
        parker: Parker,
        shared: Shared,
    ) -> Result<Self> {
        let shared_stats = Arc::clone(&shared.stats);
        let Shared {
            ring,
            registry,
            stats,
            summary: shared_summary,
            nonfinite,
            acc,
            timebase,
        } = shared;
        let control = Arc::new(Control::default());
        let mut sink = sink;
        sink.attach_stats(Arc::clone(&stats));
        let compressor = zstd::bulk::Compressor::new(config.zstd_level).ok();
        let mut state = State {
            ring: ring.clone(),
            sink,
            registry,
            stats,
            control: control.clone(),
            config,
            parker,
            batch: Batch::default(),
            enc: Enc::default(),
            out: Vec::new(),
            compressor,
            seq: 0,
            summaries: Summaries::default(),
            pending_since: None,
            shared_summary,
            nonfinite,
            acc,
            timebase,
            dropped_reported: 0,
            failed_unreported: 0,
            header: None,
            run_meta: None,
            unsynced: false,
            last_sync: Instant::now(),
            open_rows: OpenRows::default(),
            last_open_check: Instant::now(),
            panic_on_request: std::env::var_os(PANIC_VAR).is_some(),
        };
        info.encode(&mut state.enc);
        state.header = Some(state.enc.buf.clone());
        state.write_header();
        if !state.write_out(0) {
            state.seq = 0; // the header is framed again, as frame 0, by the next write
        }
        let thread = thread::spawn(state).map_err(Error::SpawnThread)?;
        Ok(Writer {
            control,
            ring,
            stats: shared_stats,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Waits until everything pushed before this call is written, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.wait(self.control.request_flush(), timeout)
    }

    /// Waits until everything pushed before this call is written and fsynced by the writer
    /// thread, at most `timeout`. A failed fsync is counted in the stats, not returned.
    pub fn sync(&self, timeout: Duration) -> Result<()> {
        self.wait(self.control.request_sync(), timeout)
    }

    /// Drains, writes the close frame, syncs and stops the thread, waiting at most `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        self.wait(self.control.request_shutdown(), timeout)?;
        if let Some(t) = self.thread.lock().take() {
            // A panic is caught on the thread; one that escaped (a panic while unwinding
            // aborts, so this is only a safety net) is recorded here, never swallowed.
            if let Err(payload) = t.join() {
                self.stats.record_panic(panic_text(&*payload));
            }
        }
        Ok(())
    }

    fn wait(&self, ticket: Ticket, timeout: Duration) -> Result<()> {
        self.ring.wake();
        self.control.wait(ticket, timeout, || self.ring.len())
    }
}

impl State {
    fn run(mut self) {
        let tick = self
            .config
            .flush_interval()
            .div_f64(4.0)
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        loop {
            // Read the requests before draining, so each covers what was pushed before it.
            let pending = self.control.pending();
            let acks = self.control.acks();
            let flushing = pending.flush > acks.flushed;
            let syncing = pending.sync > acks.synced;
            if self.panic_on_request && (flushing || syncing || pending.shutdown) {
                panic!("injected by {PANIC_VAR} (test only)");
            }
            // The open row is looked at about once per flush interval (a change waits at most
            // that long), and on sync.
            let look =
                syncing || self.last_open_check.elapsed() + tick >= self.config.flush_interval();
            self.drain();
            let open = self.steal(syncing, look);
            let due = [self.batch.started(), self.pending_since]
                .into_iter()
                .flatten()
                .any(|t| t.elapsed() >= self.config.flush_interval());
            if due || flushing || syncing || pending.shutdown || open.is_some() {
                self.write_batch();
            }
            if let Some(row) = open {
                self.write_open_row(&row);
            }
            if syncing {
                self.deliver();
            }
            if syncing
                || (self.unsynced
                    && self.last_sync.elapsed().as_secs_f64() >= self.config.fsync_interval_s)
            {
                self.sync();
            }
            if pending.shutdown {
                self.close();
                self.control.exited();
                return;
            }
            if flushing || syncing {
                self.control.acknowledge(Acks {
                    flushed: pending.flush,
                    synced: pending.sync,
                });
            }
            self.parker.park_timeout(tick);
        }
    }

    fn drain(&mut self) {
        while let Some(item) = self.ring.pop() {
            self.take_item(item);
        }
    }

    fn take_item(&mut self, item: Item) {
        match item {
            Item::Chunk(chunk) => self.take_chunk(chunk),
            Item::SummarySet(key, value) => {
                self.summaries.set(key, value);
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Item::SummaryDelete(key) => {
                self.summaries.delete(key);
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Item::Define(def) => {
                self.summaries.define(*def);
                self.pending_since.get_or_insert_with(Instant::now);
            }
            Item::RunMeta(json) => {
                self.run_meta = Some(json);
                self.pending_since.get_or_insert_with(Instant::now);
            }
        }
    }

    fn take_chunk(&mut self, mut chunk: Chunk) {
        for cell in &chunk.cells {
            self.summaries.observe(cell.key, &cell.value);
        }
        let mut start = 0;
        // NOTE: values are moved out by reading (drain), never by writing into the chunk, so
        // its memory is not dirtied on this core before the callers' side refills it.
        let mut cells = std::mem::take(&mut chunk.cells);
        let mut values = cells.drain(..);
        for row in &chunk.rows {
            let end = row.end as usize;
            // A row that would push the batch past its byte limit starts a new batch, so one
            // huge row never takes ordinary rows down with it.
            if self.batch.rows() > 0 {
                let row = &values.as_slice()[..end - start];
                let bytes: usize = row.iter().map(|c| c.value.approx_bytes() + 16).sum();
                if self.batch.bytes() + bytes > self.config.batch_max_bytes {
                    self.write_batch();
                }
            }
            let micros = self.timebase.unix_micros(row.tick);
            self.batch
                .add_row_micros(row.step, micros, values.by_ref().take(end - start));
            start = end;
            if self.batch.rows() >= self.config.batch_max_rows
                || self.batch.bytes() >= self.config.batch_max_bytes
            {
                self.write_batch();
            }
        }
        drop(values);
        chunk.cells = cells;
        self.ring.recycle(chunk);
    }

    /// Encodes the payload in `self.enc` as a frame appended to `self.out`. Returns whether
    /// it fit the format's limits.
    fn frame(&mut self, kind: Kind, compress: bool) -> bool {
        let compressor = if compress {
            self.compressor.as_mut()
        } else {
            None
        };
        match frame::append(&mut self.out, kind, self.seq, &self.enc.buf, compressor) {
            Ok(()) => {
                self.seq += 1;
                self.stats.frames_written.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.stats.record_error(e.to_string());
                false
            }
        }
    }

    /// Frames the shard header again when no write of it has succeeded yet.
    fn write_header(&mut self) {
        if let Some(header) = &self.header {
            self.enc.buf.clone_from(header);
            self.frame(Kind::Header, false);
        }
    }

    fn write_batch(&mut self) {
        if !self.write_batch_once(true) {
            self.write_in_pieces();
        }
    }

    /// Frames and writes what is pending and the batch. Returns `false`, with nothing
    /// counted and the batch kept, when `retry_full` and the write of rows failed for a full
    /// disk (the caller writes them in smaller pieces).
    fn write_batch_once(&mut self, retry_full: bool) -> bool {
        let seq_before = self.seq;
        self.write_header();
        let run_meta = self.run_meta.take();
        if let Some(json) = &run_meta {
            self.enc.buf.clear();
            self.enc.buf.extend_from_slice(json);
            self.frame(Kind::Run, false);
        }
        let dropped = self.stats.rows_dropped.load(Ordering::Relaxed);
        if dropped > self.dropped_reported {
            encode_gap(dropped - self.dropped_reported, "queue_full", &mut self.enc);
            self.frame(Kind::Gap, false);
        }
        if self.failed_unreported > 0 {
            encode_gap(self.failed_unreported, "write_error", &mut self.enc);
            self.frame(Kind::Gap, false);
        }
        let (rows, scalars) = self.frame_batch();
        let defs_written = self.summaries.defs_dirty;
        if defs_written {
            self.summaries.defs().encode(&mut self.enc);
            self.frame(Kind::Metrics, false);
            self.summaries.defs_dirty = false;
        }
        if self.summaries.dirty {
            self.encode_summary();
            self.frame(Kind::Summary, true);
        }
        self.pending_since = None;
        if self.out.is_empty() {
            return true;
        }
        let result = self.try_write_out(rows);
        let full = matches!(&result, Err(e) if is_full(e));
        if let Err(e) = result {
            if retry_full && full && rows > 0 && self.batch.rows() > 0 {
                self.stats
                    .record_error(format!("writing {}: {e}", self.sink.describe()));
            } else {
                self.count_failed(rows, &e);
                self.batch.clear();
            }
            self.seq = seq_before;
            self.run_meta = self.run_meta.take().or(run_meta);
            self.summaries.dirty = true;
            self.summaries.defs_dirty |= defs_written;
            return self.batch.rows() == 0;
        }
        self.batch.clear();
        self.stats
            .scalars_written
            .fetch_add(scalars, Ordering::Relaxed);
        self.dropped_reported = dropped;
        self.failed_unreported = 0;
        true
    }

    fn encode_summary(&mut self) {
        let live = self.summaries.snapshot(&self.registry);
        encode_summary_map(&live, &self.registry, &mut self.enc);
        *self.shared_summary.lock() = live;
        self.summaries.dirty = false;
    }

    fn sync(&mut self) {
        if let Err(e) = self.sink.sync() {
            self.stats
                .record_error(format!("syncing {}: {e}", self.sink.describe()));
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
    }

    /// Waits (bounded) until a network sink's collector acknowledged everything written.
    fn deliver(&mut self) {
        let timeout = Duration::from_secs_f64(self.config.net_timeout_s);
        if let Err(e) = self.sink.deliver(timeout) {
            self.stats.record_net_error(e.to_string());
        }
    }

    fn close(&mut self) {
        self.drain();
        self.steal(true, false);
        self.write_batch();
        let s = self.stats.snapshot();
        let nonfinite = self
            .nonfinite
            .lock()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != [0; 3])
            .filter_map(|(k, c)| self.registry.name(k as KeyId).map(|n| (n.to_string(), *c)))
            .collect();
        CloseInfo {
            rows_written: s.rows_written,
            rows_dropped: s.rows_dropped,
            rows_failed: s.rows_failed,
            steps_rejected: s.steps_rejected,
            ended: now_unix_s(),
            nonfinite,
        }
        .encode(&mut self.enc);
        self.frame(Kind::Close, false);
        self.sink.closing();
        self.write_out(0);
        self.sync();
        if let Err(e) = self.sink.close() {
            self.stats
                .record_error(format!("closing {}: {e}", self.sink.describe()));
        }
    }
}
