//! A shard logged into memory for the core's integration tests: its header, a logger whose
//! writer only writes when asked (a flush interval of 1,000 s), and `define_metric` in one call.

#![allow(dead_code)]

use steplog_core::{Logger, MemorySink, MetricDef, ShardInfo, WriterConfig};

/// The header of shard `s-1` of run `r1`.
pub fn info() -> ShardInfo {
    ShardInfo {
        run_id: "r1".into(),
        shard: "s-1".into(),
        ..ShardInfo::default()
    }
}

/// A logger writing shard `s-1` of run `r1` into the returned in-memory sink.
pub fn start() -> (Logger, MemorySink) {
    let sink = MemorySink::new();
    let info = info();
    let config = WriterConfig {
        flush_interval_s: 1000.0,
        ..WriterConfig::default()
    };
    let logger = Logger::start(Box::new(sink.clone()), &info, config).unwrap();
    (logger, sink)
}

/// `define_metric(name, summary=, goal=)`.
pub fn define(logger: &Logger, name: &str, summary: Option<&str>, goal: Option<&str>) {
    let def = MetricDef::parse(name, None, summary, goal).unwrap();
    logger.define_metric(def).unwrap();
}
