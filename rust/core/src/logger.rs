//! One shard's logging front: the accumulator behind a short, uncontended lock on the caller's
//! side, the ring, and the writer thread. This is what a Python `Run` wraps.
//!
//! A `log()` call is a [`Call`]: it takes the lock, stages each value ([`Call::set`]), and
//! [`Call::commit`] applies the step rule. Dropping a call without committing discards what it
//! staged, so a call lands whole or not at all.
//!
//! Invariants: `log()` never does I/O and never raises because of I/O; nothing waits for ring
//! space while holding the accumulator's lock ([`Logged::Waiting`]: the caller waits after the
//! call, with the GIL released); `closed` is set and checked under that lock, so every row is
//! committed before `finish()` takes the open row and counted by it, or refused with
//! `Error::Closed`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::sync::Parker;
use parking_lot::{Mutex, MutexGuard};

use crate::accumulator::{Accumulator, StepRejected};
use crate::clock::Timebase;
use crate::config::WriterConfig;
use crate::error::{Error, Result};
use crate::keys::{Interner, KeyRegistry};
use crate::metric::{MetricDef, MetricDefs};
use crate::nonfinite::SharedCounts;
use crate::ring::Ring;
use crate::shard::ShardInfo;
use crate::sink::Sink;
use crate::stats::{Stats, StatsSnapshot};
use crate::summary::SummaryValue;
use crate::value::{Item, KeyId, Value};
use crate::writer::{Shared, SharedSummary, Writer};

mod backlog;
mod summary_view;
pub use backlog::Backlog;
pub use summary_view::SummaryVersion;

/// Longest text value accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// Rows per chunk handed to the writer (fewer for tiny queues).
pub const CHUNK_ROWS: usize = 256;

/// What happened to one `log()` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Merged (and committed, if the call committed).
    Accepted,
    /// Accepted, but the ring was full under the `block` policy: the committed rows wait on
    /// the callers' side, in order. The caller must now call [`Logger::wait`] holding nothing
    /// (no call, no GIL), which waits at most `block_timeout_s` for the writer.
    Waiting(Backlog),
    /// Not written: the step was smaller than the current one. `first` is true for the first
    /// rejection of the run, so that the caller warns once.
    Rejected {
        /// The rejection.
        rejected: StepRejected,
        /// Whether this is the run's first rejection.
        first: bool,
    },
}

/// A shard being written.
#[derive(Debug)]
pub struct Logger {
    acc: Arc<Mutex<Accumulator>>,
    ring: Arc<Ring>,
    registry: Arc<KeyRegistry>,
    stats: Arc<Stats>,
    writer: Writer,
    summary: SharedSummary,
    /// A copy of the definitions sent to the writer, for a process that starts another shard.
    defs: Mutex<MetricDefs>,
    config: WriterConfig,
    closed: AtomicBool,
    nonfinite: SharedCounts,
}

/// Fails when a text value is over [`MAX_TEXT_BYTES`]; `key` names it for the message.
#[inline]
fn check_text(value: &Value, key: impl FnOnce() -> String) -> Result<()> {
    match value {
        Value::Text(t) if t.len() > MAX_TEXT_BYTES => Err(Error::BadValue {
            key: key(),
            reason: format!(
                "text of {} bytes is over the {MAX_TEXT_BYTES}-byte limit",
                t.len()
            ),
        }),
        _ => Ok(()),
    }
}

/// One `log()` call in progress; holds the accumulator's lock.
pub struct Call<'a> {
    logger: &'a Logger,
    // NOTE: the call's flags live in the accumulator, not here: a call is moved between
    // frames, and a bool stored next to these pointers and then copied with them was a
    // failed store-to-load forward on every call (the hottest instruction of `log()` in perf).
    acc: MutexGuard<'a, Accumulator>,
}

impl Call<'_> {
    /// Stages `value` under `name`. Fails (naming the key) on a bad key or an oversized text;
    /// nothing of the call is logged then.
    #[inline]
    pub fn set(&mut self, name: &str, value: Value) -> Result<()> {
        check_text(&value, || name.chars().take(80).collect())?;
        let key = self.acc.interner().intern(name)?;
        self.acc.stage(key, value);
        Ok(())
    }

    /// [`Call::set`] for a float, the hot loop's value.
    #[inline(always)]
    pub fn set_f64(&mut self, name: &str, value: f64) -> Result<()> {
        let key = self.acc.interner().intern(name)?;
        self.acc.stage_f64(key, value);
        Ok(())
    }

    /// Stages `value` under a key already interned in this logger ([`Logger::intern`]): the
    /// pre-bound handle's path, with no name to hash. Fails (naming the key) on an oversized
    /// text.
    #[inline]
    pub fn set_id(&mut self, key: KeyId, value: Value) -> Result<()> {
        check_text(&value, || {
            let name = self.logger.registry.name(key).unwrap_or_else(|| "?".into());
            name.chars().take(80).collect()
        })?;
        self.acc.stage(key, value);
        Ok(())
    }

    /// [`Call::set_id`] for a float.
    #[inline]
    pub fn set_id_f64(&mut self, key: KeyId, value: f64) {
        self.acc.stage_f64(key, value);
    }

    /// Declares that the names staged by this call are distinct (the keys of one flat dict),
    /// which spares the merge of a row committed at once. Names that are not distinct would
    /// leave two cells of one key in a row, so only callers that know it may say so.
    pub fn keys_are_distinct(&mut self) {
        self.acc.mark_staged_distinct();
    }

    /// Applies the step rule to what was staged and hands a full chunk to the writer. On
    /// [`Logged::Waiting`] the caller calls [`Logger::wait`] next, holding nothing.
    pub fn commit(mut self, step: Option<i64>, commit: Option<bool>) -> Logged {
        if self.acc.staged_needs_policy() && step.is_none_or(|n| n >= self.acc.step()) {
            // Counted here, once per call that lands, then substituted if asked.
            let (global_nan, global_inf) = crate::nonfinite::global();
            let nan = self.logger.config.nan_value.or(global_nan);
            let inf = self.logger.config.inf_value.or(global_inf);
            let counts = &self.logger.nonfinite;
            for cell in self.acc.staged_mut() {
                crate::nonfinite::apply(&mut cell.value, cell.key, nan, inf, counts);
            }
        }
        match self.acc.apply(step, commit) {
            Ok(full) => {
                if full {
                    return self.hand_over_full();
                }
                Logged::Accepted
            }
            Err(rejected) => {
                let n = self
                    .logger
                    .stats
                    .steps_rejected
                    .fetch_add(1, Ordering::Relaxed);
                Logged::Rejected {
                    rejected,
                    first: n == 0,
                }
            }
        }
    }
}

impl Call<'_> {
    /// Hands the full chunk to the ring; under `block` with the ring full, keeps its rows in
    /// the accumulator (they go first, in order, once there is space) and has the caller wait.
    #[cold]
    #[inline(never)]
    fn hand_over_full(&mut self) -> Logged {
        let ring = &self.logger.ring;
        let target = Backlog::after(&self.acc);
        if ring.blocks() && ring.is_full() {
            ring.wake();
            return Logged::Waiting(target);
        }
        let chunk = self.acc.swap_chunk(ring.spare());
        match ring.offer(Item::Chunk(chunk)) {
            Ok(_) => Logged::Accepted,
            Err(item) => {
                if let Item::Chunk(chunk) = item {
                    ring.recycle(self.acc.restore(chunk));
                }
                Logged::Waiting(target)
            }
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.acc.clear_staged();
    }
}

impl Logger {
    /// Starts a shard on `sink`: writes its header and starts the writer thread.
    pub fn start(sink: Box<dyn Sink>, info: &ShardInfo, config: WriterConfig) -> Result<Self> {
        let stats = Arc::new(Stats::default());
        let registry = KeyRegistry::new();
        let parker = Parker::new();
        let chunk_rows = CHUNK_ROWS.min((config.queue_capacity / 4).max(1));
        let ring = Arc::new(Ring::new(
            (config.queue_capacity / chunk_rows).max(2),
            config.overflow,
            Duration::from_secs_f64(config.block_timeout_s),
            parker.unparker().clone(),
            stats.clone(),
        ));
        let timebase = Timebase::new();
        let acc = Arc::new(Mutex::new(Accumulator::new(
            Interner::new(registry.clone()),
            timebase.clone(),
            chunk_rows,
        )));
        let summary = SharedSummary::default();
        let nonfinite = SharedCounts::default();
        let writer = Writer::start(
            sink,
            info,
            config,
            parker,
            Shared {
                ring: ring.clone(),
                registry: registry.clone(),
                stats: stats.clone(),
                summary: summary.clone(),
                nonfinite: nonfinite.clone(),
                acc: acc.clone(),
                timebase,
            },
        )?;
        Ok(Logger {
            acc,
            ring,
            registry,
            stats,
            writer,
            summary,
            defs: Mutex::new(MetricDefs::default()),
            config,
            closed: AtomicBool::new(false),
            nonfinite,
        })
    }

    /// The resolved settings.
    pub fn config(&self) -> &WriterConfig {
        &self.config
    }

    /// Starts a `log()` call (takes the accumulator's lock until the call ends).
    #[inline]
    pub fn call(&self) -> Result<Call<'_>> {
        let acc = self.acc.lock();
        // NOTE: checked under the lock, which `finish()` holds when it sets the flag: a call
        // that passed it commits before `finish()` takes the open row and the committed rows.
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(Call { logger: self, acc })
    }

    /// The id of key `name` in this shard, registering it (for pre-bound handles).
    pub fn intern(&self, name: &str) -> Result<KeyId> {
        self.acc.lock().interner().intern(name)
    }

    /// Applies one `log()` call: `cells` are flattened key names and converted values.
    pub fn log<'a>(
        &self,
        step: Option<i64>,
        commit: Option<bool>,
        cells: impl IntoIterator<Item = (&'a str, Value)>,
    ) -> Result<Logged> {
        let mut call = self.call()?;
        for (name, value) in cells {
            call.set(name, value)?;
        }
        match call.commit(step, commit) {
            Logged::Waiting(backlog) => {
                self.wait(backlog);
                Ok(Logged::Accepted)
            }
            logged => Ok(logged),
        }
    }

    /// The step the next committing `log()` without `step=` writes.
    pub fn step(&self) -> i64 {
        self.acc.lock().step()
    }

    /// Hands the rows committed so far on the callers' side to the writer (before a fork),
    /// waiting for ring space (bounded) with the accumulator's lock released.
    pub fn hand_over(&self) {
        self.hand_over_waiting();
    }

    /// Sets a summary value (`run.summary[key] = value`); later logs of the key replace it.
    pub fn set_summary(&self, key: &str, value: Value) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let id = self.acc.lock().interner().intern(key)?;
        self.push_control(Item::SummarySet(id, value))?;
        self.note_summary_edit();
        Ok(())
    }

    /// Defines a metric (`define_metric`): its summary statistics and goal apply to the keys
    /// it matches, logged before or after; the most recent matching definition wins.
    pub fn define_metric(&self, def: MetricDef) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut defs = self.defs.lock();
        self.push_control(Item::Define(Box::new(def.clone())))?;
        defs.define(def);
        self.note_summary_edit();
        Ok(())
    }

    /// Queues the run's metadata (JSON) as a run frame, for a collector's `run.json`.
    pub fn put_run_meta(&self, json: &[u8]) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.push_control(Item::RunMeta(Box::from(json)))
    }

    /// The metric definitions made so far, oldest first (to carry them into another shard).
    pub fn metric_definitions(&self) -> MetricDefs {
        self.defs.lock().clone()
    }

    /// The summary as of the last write (call [`Logger::flush`] first for an exact view).
    pub fn summary(&self) -> Vec<(Arc<str>, SummaryValue)> {
        self.summary
            .lock()
            .iter()
            .filter_map(|(k, v)| self.registry.name(*k).map(|n| (n, v.clone())))
            .collect()
    }

    /// Writes every row committed before this call, waiting at most `timeout`. Background
    /// errors are reported by [`Logger::stats`], not here.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.hand_over_waiting();
        self.writer.flush(timeout)
    }

    /// Writes every row committed before this call and has the writer thread fsync the shard,
    /// waiting at most `timeout`; the caller's thread never fsyncs. A failed write or fsync is
    /// counted in [`Logger::stats`], not returned (as for [`Logger::flush`]).
    pub fn sync(&self, timeout: Duration) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(()); // finish() synced
        }
        self.hand_over_waiting();
        self.writer.sync(timeout)
    }

    /// Commits the open row, writes everything and the close frame, and stops the writer.
    /// Idempotent: later calls return the same counters at once.
    pub fn finish(&self) -> Result<StatsSnapshot> {
        let first = {
            let mut acc = self.acc.lock();
            let first = !self.closed.swap(true, Ordering::AcqRel);
            if first {
                acc.commit_open();
                // Never waits: rows the full ring cannot take stay here, and the writer's
                // close takes them (under this lock) after everything queued before them.
                self.try_hand_over(&mut acc);
            }
            first
        };
        if first {
            self.writer
                .shutdown(Duration::from_secs_f64(self.config.finish_timeout_s))?;
        }
        Ok(self.stats())
    }

    /// [`Logger::finish`] that never fails: when the writer cannot finish within
    /// `finish_timeout_s` (a wedged disk or collector), returns at the deadline with the
    /// counters and the number of rows not written (they may still be written later by the
    /// writer thread if the process lives on).
    pub fn finish_bounded(&self) -> (StatsSnapshot, u64) {
        let _ = self.finish();
        // Read under the lock: the writer moves rows from the accumulator to `rows_queued`
        // under it, so none is counted twice or not at all.
        let (s, waiting) = {
            let acc = self.acc.lock();
            (self.stats(), acc.committed_rows() as u64)
        };
        let unwritten = (s.rows_queued + waiting)
            .saturating_sub(s.rows_written)
            .saturating_sub(s.rows_failed);
        (s, unwritten)
    }

    /// Whether `finish()` was called.
    pub fn is_finished(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// NaN, +Inf and -Inf values seen so far, per key name.
    pub fn nonfinite(&self) -> Vec<(Arc<str>, crate::nonfinite::Counts)> {
        self.nonfinite
            .lock()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != [0; 3])
            .filter_map(|(k, c)| self.registry.name(k as KeyId).map(|n| (n, *c)))
            .collect()
    }
}
