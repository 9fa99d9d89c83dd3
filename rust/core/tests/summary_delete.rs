//! `del run.summary[key]` end to end: the deletion travels the ring after the rows before it,
//! the summary frames written after it omit the key, and a later log brings the key back.

use std::time::Duration;

use steplog_core::reader::decode_shard;
use steplog_core::{Logger, MemorySink, MetricDef, SummaryValue, Value};

#[path = "support/shard.rs"]
mod shard;
use shard::start;

fn keys(logger: &Logger, sink: &MemorySink) -> (Vec<String>, Vec<String>, bool) {
    logger.flush(Duration::from_secs(10)).unwrap();
    let live = logger.summary().into_iter().map(|(k, _)| k.to_string());
    let data = decode_shard(&sink.bytes());
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    let read = data.summary.into_iter().map(|(k, _)| k);
    (live.collect(), read.collect(), data.has_summary)
}

#[test]
fn a_deleted_key_is_absent_from_the_live_and_the_written_summary() {
    let (logger, sink) = start();
    let log = |k: &str, v: f64| logger.log(None, None, vec![(k, Value::F64(v))]).unwrap();
    log("a", 1.0);
    log("b", 2.0);
    logger.delete_summary("a").unwrap();
    let (live, read, _) = keys(&logger, &sink);
    assert_eq!((live, read), (vec!["b".to_string()], vec!["b".to_string()]));

    // Logged again, it is back, its statistics starting afresh.
    logger
        .define_metric(MetricDef::parse("a", None, Some("max"), None).unwrap())
        .unwrap();
    log("a", 0.5);
    let (live, read, _) = keys(&logger, &sink);
    assert_eq!(live, ["a", "b"]);
    assert_eq!(read, ["a", "b"]);
    assert_eq!(
        logger.summary_get("a"),
        Some(SummaryValue::Stats(vec![("max".into(), Value::F64(0.5))]))
    );

    // Every key deleted: the last frame is an empty summary, not "no summary".
    logger.delete_summary("a").unwrap();
    logger.delete_summary("b").unwrap();
    let (live, read, has_summary) = keys(&logger, &sink);
    assert!(live.is_empty() && read.is_empty() && has_summary);
    assert_eq!(logger.summary_get("b"), None);
    logger.finish().unwrap();
    assert!(logger.delete_summary("b").is_err(), "closed");
}

#[test]
fn the_version_moves_with_commits_and_edits_only() {
    let (logger, _sink) = start();
    let v0 = logger.summary_version();
    assert_eq!(logger.summary_version(), v0, "reading changes nothing");
    logger
        .log(None, Some(false), vec![("x", Value::F64(1.0))])
        .unwrap();
    assert_eq!(
        logger.summary_version(),
        v0,
        "an open row is not in the summary"
    );
    logger
        .log(None, None, vec![("y", Value::F64(1.0))])
        .unwrap();
    let v1 = logger.summary_version();
    assert_ne!(v1, v0);
    logger.set_summary("z", Value::I64(1)).unwrap();
    let v2 = logger.summary_version();
    assert_ne!(v2, v1);
    logger.delete_summary("z").unwrap();
    let v3 = logger.summary_version();
    assert_ne!(v3, v2);
    logger
        .define_metric(MetricDef::parse("x", None, Some("min"), None).unwrap())
        .unwrap();
    assert_ne!(logger.summary_version(), v3);
    logger.finish().unwrap();
}
