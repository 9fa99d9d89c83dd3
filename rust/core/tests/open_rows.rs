//! The open row is durable: with `log(d, step=n)` the row of the last step is written as an
//! open-row frame at the flush interval (and on sync) while it stays open, read back once
//! whether or not it was committed later, and never counted twice by the summary.

use std::time::{Duration, Instant};

use steplog_core::batch::DType;
use steplog_core::frame::{Event, Frames, Kind};
use steplog_core::reader::{decode_shard, Scalars, ShardData};
use steplog_core::{Logger, MemorySink, MetricDef, ShardInfo, SummaryValue, Value, WriterConfig};

fn info() -> ShardInfo {
    ShardInfo {
        run_id: "r1".into(),
        shard: "s-1".into(),
        ..ShardInfo::default()
    }
}

fn start(flush_interval_s: f64) -> (Logger, MemorySink) {
    let sink = MemorySink::new();
    let config = WriterConfig {
        flush_interval_s,
        fsync_interval_s: 1000.0,
        ..WriterConfig::default()
    };
    (
        Logger::start(Box::new(sink.clone()), &info(), config).unwrap(),
        sink,
    )
}

fn log(logger: &Logger, step: i64, cells: Vec<(&str, Value)>) {
    logger.log(Some(step), None, cells).unwrap();
}

/// Polls the sink (bounded) until its bytes satisfy `done`; returns what it decoded.
fn until(sink: &MemorySink, done: impl Fn(&ShardData) -> bool) -> ShardData {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let data = decode_shard(&sink.bytes());
        if done(&data) {
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "never written: {:?}",
            data.series.keys()
        );
        std::thread::sleep(Duration::from_millis(5)); // ok-sleep: polling the sink
    }
}

fn i64s(data: &ShardData, key: &str) -> (Vec<i64>, Vec<i64>) {
    match data.series.get(&(key.to_string(), DType::I64)) {
        Some(s) => match &s.values {
            Scalars::I64(v) => (s.steps.clone(), v.clone()),
            _ => unreachable!(),
        },
        None => (Vec::new(), Vec::new()),
    }
}

fn open_frames(bytes: &[u8]) -> usize {
    Frames::new(bytes)
        .filter(|e| matches!(e, Event::Frame { header, .. } if header.kind == Kind::Open as u8))
        .count()
}

#[test]
fn the_open_row_is_written_at_the_flush_interval_and_read_back_once() {
    let (logger, sink) = start(0.02);
    for i in 0..100 {
        log(&logger, i, vec![("x", Value::I64(i))]);
    }
    // Step 99 is still open: nothing commits it but a larger step or finish().
    let data = until(&sink, |d| d.rows == 100);
    assert_eq!(i64s(&data, "x"), ((0..100).collect(), (0..100).collect()));
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    // More cells for the open step: written again, merged, still one row.
    log(
        &logger,
        99,
        vec![("x", Value::I64(-99)), ("note", Value::Text("late".into()))],
    );
    let data = until(&sink, |d| !d.others.is_empty());
    assert_eq!(data.rows, 100);
    assert_eq!(i64s(&data, "x").1.last(), Some(&-99), "the later cell wins");
    assert_eq!(data.others.len(), 1);
    assert_eq!(data.keys, ["x", "note"]);
    // Committed by a larger step: the committed row replaces the provisional one.
    log(&logger, 100, vec![("x", Value::I64(100))]);
    logger.finish().unwrap();
    let bytes = sink.bytes();
    assert!(open_frames(&bytes) >= 2);
    let data = decode_shard(&bytes);
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    assert_eq!(data.rows, 101);
    let (steps, xs) = i64s(&data, "x");
    assert_eq!(steps, (0..=100).collect::<Vec<_>>(), "no step twice");
    assert_eq!((xs[99], xs[100]), (-99, 100));
    let notes: Vec<_> = data
        .others
        .iter()
        .map(|(s, k, v)| (*s, k.to_string(), v.clone()))
        .collect();
    assert_eq!(
        notes,
        [(99, "note".to_string(), Value::Text("late".into()))]
    );
}

#[test]
fn sync_writes_the_open_row_and_an_unchanged_row_is_not_written_again() {
    let (logger, sink) = start(1000.0);
    log(&logger, 0, vec![("x", Value::I64(1))]);
    log(&logger, 1, vec![("x", Value::F64(f64::NAN))]);
    logger.sync(Duration::from_secs(10)).unwrap();
    let bytes = sink.bytes();
    assert_eq!(open_frames(&bytes), 1);
    let data = decode_shard(&bytes);
    assert_eq!(data.rows, 2, "the committed row and the open one");
    let nan = &data.series[&("x".to_string(), DType::F64)];
    assert_eq!(nan.steps, [1]);
    logger.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(
        open_frames(&sink.bytes()),
        1,
        "unchanged (NaN included): not written again"
    );
    logger.finish().unwrap();
    let data = decode_shard(&sink.bytes());
    assert_eq!(data.rows, 2);
    assert_eq!(data.series[&("x".to_string(), DType::F64)].steps, [1]);
}

#[test]
fn a_provisional_row_is_counted_once_by_the_summary() {
    let (logger, sink) = start(1000.0);
    logger
        .define_metric(MetricDef::parse("x", None, Some("mean,first,last"), None).unwrap())
        .unwrap();
    log(&logger, 0, vec![("x", Value::I64(1))]);
    logger.sync(Duration::from_secs(10)).unwrap();
    log(&logger, 0, vec![("x", Value::I64(3))]);
    logger.sync(Duration::from_secs(10)).unwrap();
    log(&logger, 1, vec![("x", Value::I64(5))]);
    logger.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(open_frames(&sink.bytes()), 3);
    let expect = SummaryValue::Stats(vec![
        ("mean".into(), Value::F64(4.0)),
        ("first".into(), Value::I64(3)),
        ("last".into(), Value::I64(5)),
    ]);
    // Were the process killed now, the file's summary counts the open row once.
    let data = decode_shard(&sink.bytes());
    assert_eq!(data.summary, [("x".to_string(), expect.clone())]);
    logger.finish().unwrap();
    let live: Vec<_> = logger
        .summary()
        .into_iter()
        .filter(|(k, _)| &**k == "x")
        .collect();
    assert_eq!(live[0].1, expect, "rows 0 (x=3) and 1 (x=5), each once");
    let data = decode_shard(&sink.bytes());
    assert_eq!(data.summary, [("x".to_string(), expect)]);
    assert_eq!(i64s(&data, "x"), (vec![0, 1], vec![3, 5]));
}
