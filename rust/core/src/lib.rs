//! steplog's engine, with no Python in it.
//!
//! Data path: [`Logger::log`] applies the step rules in the [`accumulator`] on the caller's
//! thread and pushes committed rows into the bounded, lock-free [`ring`]; one [`writer`] thread
//! per shard drains it, gathers a columnar [`batch`], encodes it as msgpack, compresses it with
//! zstd, [`frame`]s it with its length and CRC32C and hands it to a [`sink`]. The [`reader`]
//! decodes shard files back, resynchronising after damage.
//!
//! Ordering: rows from one thread keep their order; rows from several threads are ordered by
//! when they committed under the accumulator's lock. A flush covers what the calling thread
//! logged before it.
#![deny(missing_docs)]

pub mod accumulator;
pub mod batch;
pub mod chunk;
pub mod clock;
pub mod column;
pub mod config;
pub mod control;
pub mod error;
pub mod frame;
pub mod glob;
pub mod histogram;
pub mod keys;
pub mod logger;
pub mod metric;
pub mod msgpack;
pub mod net;
pub mod nonfinite;
pub mod open_row;
pub mod reader;
pub mod ring;
pub mod shard;
pub mod signals;
pub mod sink;
pub mod stats;
pub mod summary;
pub mod value;
pub mod writer;

pub use config::{OverflowPolicy, Setting, WriterConfig};
pub use error::{Error, Result};
pub use logger::{Logged, Logger};
pub use metric::MetricDef;
pub use shard::ShardInfo;
pub use sink::{FileSink, MemorySink, Sink};
pub use stats::StatsSnapshot;
pub use summary::SummaryValue;
pub use value::{Histogram, List, ListData, Value};
