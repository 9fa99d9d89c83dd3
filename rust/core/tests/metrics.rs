//! Metric definitions and summaries end to end: define → ring → writer → metrics and summary
//! frames → reader.

use std::collections::HashMap;
use std::time::Duration;

use steplog_core::frame::{Event, Frames, Kind};
use steplog_core::metric::Stat;
use steplog_core::reader::{decode_shard, ShardData};
use steplog_core::{MetricDef, SummaryValue, Value};

#[path = "support/shard.rs"]
mod shard;
use shard::{define, start};

fn summary(data: &ShardData) -> HashMap<String, SummaryValue> {
    data.summary.iter().cloned().collect()
}

fn stats(v: &SummaryValue) -> HashMap<String, Value> {
    match v {
        SummaryValue::Stats(s) => s.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        other => panic!("expected statistics, got {other:?}"),
    }
}

fn kinds(bytes: &[u8]) -> Vec<u8> {
    Frames::new(bytes)
        .filter_map(|e| match e {
            Event::Frame { header, .. } => Some(header.kind),
            Event::Damaged { .. } => None,
        })
        .collect()
}

#[test]
fn summaries_follow_definitions_through_the_file() {
    let (logger, sink) = start();
    let log = |k: &str, v: Value| logger.log(None, None, vec![(k, v)]).unwrap();
    log("val/loss", Value::F64(2.0));
    define(&logger, "val/*", Some("min,max,mean,first,last"), None);
    for v in [f64::NAN, 0.5, 1.5] {
        log("val/loss", Value::F64(v));
    }
    log("val/acc", Value::I64(7)); // logged after the glob was defined
    define(&logger, "acc", Some("best"), Some("max"));
    for v in [0.2, 0.9, 0.4] {
        log("acc", Value::F64(v));
    }
    log("hidden", Value::F64(1.0));
    define(&logger, "hidden", Some("none"), None);
    log("plain", Value::F64(3.0));
    logger.flush(Duration::from_secs(10)).unwrap();

    let data = decode_shard(&sink.bytes());
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    let s = summary(&data);
    let loss = stats(&s["val/loss"]);
    assert_eq!(loss["min"], Value::F64(0.5));
    assert_eq!(loss["max"], Value::F64(2.0));
    assert_eq!(loss["mean"], Value::F64(4.0 / 3.0));
    assert_eq!(loss["first"], Value::F64(2.0));
    assert_eq!(loss["last"], Value::F64(1.5));
    assert_eq!(stats(&s["val/acc"])["min"], Value::I64(7));
    assert_eq!(
        stats(&s["acc"]),
        HashMap::from([("best".into(), Value::F64(0.9))])
    );
    assert!(!s.contains_key("hidden"));
    assert_eq!(s["plain"], SummaryValue::Plain(Value::F64(3.0)));
    // The live view matches the file.
    let live: HashMap<String, SummaryValue> = logger
        .summary()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(live, s);
    // The definitions reach the reader, in order.
    let names: Vec<&str> = data.metrics.as_slice().iter().map(|d| &*d.name).collect();
    assert_eq!(names, ["val/*", "acc", "hidden"]);
    assert_eq!(data.metrics.as_slice()[1].summary, Some(vec![Stat::Best]));
    assert_eq!(logger.metric_definitions(), data.metrics);
    logger.finish().unwrap();
}

#[test]
fn overrides_show_until_the_next_log_and_persist() {
    let (logger, sink) = start();
    define(&logger, "loss", Some("min"), None);
    logger
        .log(None, None, vec![("loss", Value::F64(1.0))])
        .unwrap();
    logger
        .set_summary("loss", Value::Text("diverged".into()))
        .unwrap();
    logger.set_summary("note", Value::I64(5)).unwrap();
    logger.flush(Duration::from_secs(10)).unwrap();
    let s = summary(&decode_shard(&sink.bytes()));
    assert_eq!(
        s["loss"],
        SummaryValue::Plain(Value::Text("diverged".into()))
    );
    assert_eq!(s["note"], SummaryValue::Plain(Value::I64(5)));
    logger
        .log(None, None, vec![("loss", Value::F64(3.0))])
        .unwrap();
    logger.finish().unwrap();
    let s = summary(&decode_shard(&sink.bytes()));
    assert_eq!(stats(&s["loss"])["min"], Value::F64(1.0));
}

#[test]
fn a_definition_alone_is_written_by_flush_and_resent_after_a_write_error() {
    let (logger, sink) = start();
    sink.fail_with(Some(std::io::ErrorKind::StorageFull));
    define(&logger, "x", Some("max"), None);
    logger.flush(Duration::from_secs(10)).unwrap();
    assert!(!kinds(&sink.bytes()).contains(&(Kind::Metrics as u8)));
    sink.fail_with(None);
    logger.log(None, None, vec![("y", Value::I64(1))]).unwrap();
    logger.flush(Duration::from_secs(10)).unwrap();
    let data = decode_shard(&sink.bytes());
    assert_eq!(data.metrics.as_slice().len(), 1);
    // Nothing new: no new metrics frame.
    define(&logger, "z", None, None);
    logger.flush(Duration::from_secs(10)).unwrap();
    logger.finish().unwrap();
    let all = kinds(&sink.bytes());
    assert_eq!(all.iter().filter(|&&k| k == Kind::Metrics as u8).count(), 2);
    assert_eq!(decode_shard(&sink.bytes()).metrics.as_slice().len(), 2);
}

#[test]
fn the_writers_table_applies_definitions_to_keys_logged_before_and_after() {
    use steplog_core::keys::{Interner, KeyRegistry};
    use steplog_core::summary::Summaries;
    let f = Value::F64;
    let registry = KeyRegistry::new();
    let mut interner = Interner::new(registry.clone());
    let loss = interner.intern("val/loss").unwrap();
    let acc = interner.intern("train/acc").unwrap();
    let mut s = Summaries::default();
    for v in [3.0, 1.0, 2.0] {
        s.observe(loss, &f(v));
        s.observe(acc, &f(v / 10.0));
    }
    s.define(MetricDef::parse("val/*", None, Some("min,max"), None).unwrap());
    let late = interner.intern("val/acc").unwrap();
    s.observe(late, &f(0.5));
    let snap = s.snapshot(&registry);
    assert_eq!(snap.len(), 3);
    assert_eq!(stats(&snap[0].1)["min"], f(1.0));
    assert_eq!(snap[1].1, SummaryValue::Plain(f(0.2)));
    assert_eq!(stats(&snap[2].1)["max"], f(0.5));
    // A more recent, more general definition wins over the older one.
    s.define(MetricDef::parse("*", None, Some("none"), None).unwrap());
    assert!(s.snapshot(&registry).is_empty());
    s.define(MetricDef::parse("val/loss", None, Some("first"), None).unwrap());
    let snap = s.snapshot(&registry);
    assert_eq!(snap.len(), 1);
    assert_eq!(stats(&snap[0].1)["first"], f(3.0));
    assert!(s.defs_dirty && s.dirty);
}
