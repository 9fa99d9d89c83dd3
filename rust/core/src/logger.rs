//! One shard's logging front: the accumulator behind a short, uncontended lock on the caller's
//! side, the ring, and the writer thread. This is what a Python `Run` wraps.
//!
//! Invariants: `log()` never does I/O and never raises because of I/O; a call either lands
//! whole or not at all (keys are checked before anything is merged); after `finish()` every
//! call fails with `Error::Closed`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::sync::Parker;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::accumulator::{Accumulator, StepRejected};
use crate::config::WriterConfig;
use crate::error::{Error, Result};
use crate::keys::{Interner, KeyRegistry};
use crate::metric::{MetricDef, MetricDefs};
use crate::ring::Ring;
use crate::shard::ShardInfo;
use crate::sink::Sink;
use crate::stats::{Stats, StatsSnapshot};
use crate::summary::SummaryValue;
use crate::value::{Item, KeyId, Value};
use crate::writer::{Shared, SharedSummary, Writer};

/// Longest text value accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// What happened to one `log()` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Merged (and committed, if the call committed).
    Accepted,
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
    acc: Mutex<Accumulator>,
    ring: Arc<Ring>,
    registry: Arc<KeyRegistry>,
    stats: Arc<Stats>,
    writer: Writer,
    summary: SharedSummary,
    /// A copy of the definitions sent to the writer, for a process that starts another shard.
    defs: Mutex<MetricDefs>,
    config: WriterConfig,
    closed: AtomicBool,
}

impl Logger {
    /// Starts a shard on `sink`: writes its header and starts the writer thread.
    pub fn start(sink: Box<dyn Sink>, info: &ShardInfo, config: WriterConfig) -> Result<Self> {
        let stats = Arc::new(Stats::default());
        let registry = KeyRegistry::new();
        let parker = Parker::new();
        let ring = Arc::new(Ring::new(
            config.queue_capacity,
            config.overflow,
            Duration::from_secs_f64(config.block_timeout_s),
            parker.unparker().clone(),
            stats.clone(),
        ));
        let summary = SharedSummary::default();
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
            },
        )?;
        Ok(Logger {
            acc: Mutex::new(Accumulator::new(Interner::new(registry.clone()))),
            ring,
            registry,
            stats,
            writer,
            summary,
            defs: Mutex::new(MetricDefs::default()),
            config,
            closed: AtomicBool::new(false),
        })
    }

    /// The resolved settings.
    pub fn config(&self) -> &WriterConfig {
        &self.config
    }

    /// Applies one `log()` call: `cells` are flattened key names and converted values.
    pub fn log<'a>(
        &self,
        step: Option<i64>,
        commit: Option<bool>,
        cells: impl IntoIterator<Item = (&'a str, Value)>,
    ) -> Result<Logged> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut acc = self.acc.lock();
        let mut interned: SmallVec<[(KeyId, Value); 16]> = SmallVec::new();
        for (name, value) in cells {
            if let Value::Text(t) = &value {
                if t.len() > MAX_TEXT_BYTES {
                    return Err(Error::BadValue {
                        key: name.chars().take(80).collect(),
                        reason: format!(
                            "text of {} bytes is over the {MAX_TEXT_BYTES}-byte limit",
                            t.len()
                        ),
                    });
                }
            }
            interned.push((acc.interner().intern(name)?, value));
        }
        let ring = &self.ring;
        let result = acc.log(step, commit, interned, &mut || ring.spare(), &mut |row| {
            ring.push(Item::Row(row));
        });
        Ok(match result {
            Ok(()) => Logged::Accepted,
            Err(rejected) => {
                let n = self.stats.steps_rejected.fetch_add(1, Ordering::Relaxed);
                Logged::Rejected {
                    rejected,
                    first: n == 0,
                }
            }
        })
    }

    /// The step the next committing `log()` without `step=` writes.
    pub fn step(&self) -> i64 {
        self.acc.lock().step()
    }

    /// Sets a summary value (`run.summary[key] = value`); later logs of the key replace it.
    pub fn set_summary(&self, key: &str, value: Value) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let id = self.acc.lock().interner().intern(key)?;
        self.push_control(Item::SummarySet(id, value))
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
        Ok(())
    }

    /// The metric definitions made so far, oldest first (to carry them into another shard).
    pub fn metric_definitions(&self) -> MetricDefs {
        self.defs.lock().clone()
    }

    fn push_control(&self, item: Item) -> Result<()> {
        if self.ring.push_waiting(item) {
            Ok(())
        } else {
            Err(Error::Timeout {
                seconds: self.config.block_timeout_s,
                pending: self.ring.len(),
            })
        }
    }

    /// The summary as of the last write (call [`Logger::flush`] first for an exact view).
    pub fn summary(&self) -> Vec<(Arc<str>, SummaryValue)> {
        self.summary
            .lock()
            .iter()
            .filter_map(|(k, v)| self.registry.name(*k).map(|n| (n, v.clone())))
            .collect()
    }

    /// Writes everything logged before this call (from this thread), waiting at most
    /// `timeout`. Background errors are reported by [`Logger::stats`], not here.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.writer.flush(timeout)
    }

    /// Commits the open row, writes everything and the close frame, and stops the writer.
    /// Idempotent: later calls return the same counters at once.
    pub fn finish(&self) -> Result<StatsSnapshot> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            {
                let mut acc = self.acc.lock();
                let ring = &self.ring;
                acc.flush_open(&mut |row| {
                    ring.push(Item::Row(row));
                });
            }
            self.writer
                .shutdown(Duration::from_secs_f64(self.config.finish_timeout_s))?;
        }
        Ok(self.stats())
    }

    /// Whether `finish()` was called.
    pub fn is_finished(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}
