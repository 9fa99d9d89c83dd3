//! Sinks that fail, wedge or are full: the writer counts and records, never raises into
//! `log()`, keeps the file whole, resumes when the sink does, and every wait on it is bounded.
//! Also `Logger::sync`, the explicit fsync on the writer thread.

use std::time::{Duration, Instant};

#[path = "support/series.rs"]
mod series;

use steplog_core::frame::{Event, Frames, Kind};
use steplog_core::reader::decode_shard;
use steplog_core::{FileSink, Logger, MemorySink, Value, WriterConfig};

#[path = "support/shard.rs"]
mod shard;
use shard::info;

fn config() -> WriterConfig {
    WriterConfig {
        flush_interval_s: 1000.0,
        fsync_interval_s: 1000.0,
        ..WriterConfig::default()
    }
}

fn start(config: WriterConfig) -> (Logger, MemorySink) {
    let sink = MemorySink::new();
    let logger = Logger::start(Box::new(sink.clone()), &info(), config).unwrap();
    (logger, sink)
}

fn log(logger: &Logger, range: std::ops::Range<i64>) {
    for i in range {
        logger.log(None, None, vec![("x", Value::I64(i))]).unwrap();
    }
}

fn xs(bytes: &[u8]) -> Vec<i64> {
    series::i64s(bytes, "x")
}

fn seqs(bytes: &[u8]) -> Vec<(u64, u8)> {
    Frames::new(bytes)
        .map(|e| match e {
            Event::Frame { header, .. } => (header.seq, header.kind),
            Event::Damaged { .. } => panic!("damage in {bytes:?}"),
        })
        .collect()
}

#[test]
fn finish_with_a_wedged_sink_returns_in_time_and_reports_unwritten_rows() {
    let (logger, sink) = start(WriterConfig {
        finish_timeout_s: 0.3,
        ..config()
    });
    log(&logger, 0..10);
    logger.flush(Duration::from_secs(10)).unwrap();
    sink.pause();
    log(&logger, 10..110);
    let t = Instant::now();
    let (stats, unwritten) = logger.finish_bounded();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "finish took {took:?}");
    assert!(
        took >= Duration::from_millis(250),
        "finish returned before its timeout"
    );
    assert_eq!((stats.rows_written, unwritten), (10, 100));
    assert!(logger.log(None, None, vec![("x", Value::I64(0))]).is_err());
    sink.resume(); // the writer thread finishes the shard in the background
}

#[test]
fn flush_and_sync_with_a_wedged_sink_time_out_instead_of_hanging() {
    let (logger, sink) = start(config());
    sink.pause();
    log(&logger, 0..5);
    let t = Instant::now();
    assert!(logger.flush(Duration::from_millis(200)).is_err());
    assert!(logger.sync(Duration::from_millis(200)).is_err());
    assert!(t.elapsed() < Duration::from_secs(3));
    sink.resume();
    logger.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(xs(&sink.bytes()), (0..5).collect::<Vec<_>>());
    logger.finish().unwrap();
}

#[test]
fn sync_writes_then_fsyncs_on_the_writer_thread() {
    let (logger, sink) = start(config());
    let before = sink.syncs();
    log(&logger, 0..100);
    logger.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(sink.syncs(), before + 1);
    assert_eq!(xs(&sink.bytes()).len(), 100, "written before the fsync");
    logger.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(sink.syncs(), before + 2, "each request is an fsync");
    logger.finish().unwrap();
    let after_finish = sink.syncs();
    logger.sync(Duration::from_secs(10)).unwrap(); // finished: nothing left to sync
    assert_eq!(sink.syncs(), after_finish);
}

#[test]
fn fsync_interval_zero_syncs_after_every_write() {
    let (logger, sink) = start(WriterConfig {
        fsync_interval_s: 0.0,
        ..config()
    });
    for i in 0..3 {
        log(&logger, i..i + 1);
        logger.flush(Duration::from_secs(10)).unwrap();
    }
    // The writer syncs after each write before it acknowledges the flush that asked for it.
    assert!(sink.syncs() >= 3, "{} syncs", sink.syncs());
    logger.finish().unwrap();
}

#[test]
fn a_failed_write_leaves_no_hole_in_the_sequence_and_its_rows_are_recorded() {
    let (logger, sink) = start(config());
    log(&logger, 0..3);
    logger.flush(Duration::from_secs(10)).unwrap();
    sink.fail_with(Some(std::io::ErrorKind::StorageFull));
    log(&logger, 3..7);
    logger.flush(Duration::from_secs(10)).unwrap();
    sink.fail_with(None);
    log(&logger, 7..9);
    let stats = logger.finish().unwrap();
    assert_eq!((stats.rows_written, stats.rows_failed), (5, 4));
    let bytes = sink.bytes();
    let frames = seqs(&bytes);
    let numbers: Vec<u64> = frames.iter().map(|f| f.0).collect();
    assert_eq!(numbers, (0..frames.len() as u64).collect::<Vec<_>>());
    let data = decode_shard(&bytes);
    assert!(data.problems.is_empty() && data.missing_frames.is_empty());
    assert_eq!(data.gaps, vec![(4, "write_error".to_string())]);
    assert_eq!(xs(&bytes), [0, 1, 2, 7, 8]);
}

#[test]
fn a_header_that_could_not_be_written_is_written_with_the_next_write() {
    let sink = MemorySink::new();
    sink.fail_with(Some(std::io::ErrorKind::StorageFull));
    let logger = Logger::start(Box::new(sink.clone()), &info(), config()).unwrap();
    assert_eq!(logger.stats().write_errors, 1);
    sink.fail_with(None);
    log(&logger, 0..2);
    logger.finish().unwrap();
    let bytes = sink.bytes();
    assert_eq!(seqs(&bytes)[0], (0, Kind::Header as u8));
    let data = decode_shard(&bytes);
    assert!(data.info.iter().any(|(k, _)| k == "run_id"));
    assert_eq!(xs(&bytes), [0, 1]);
}

#[test]
fn a_full_device_is_counted_never_raised() {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here; skipped");
        return;
    };
    let sink = FileSink::from_file(file, std::path::Path::new("/dev/full")).unwrap();
    let logger = Logger::start(Box::new(sink), &info(), config()).unwrap();
    log(&logger, 0..1000);
    logger.flush(Duration::from_secs(10)).unwrap();
    log(&logger, 1000..1010);
    logger.sync(Duration::from_secs(10)).unwrap();
    let stats = logger.finish().unwrap();
    assert_eq!(stats.rows_written, 0);
    assert_eq!(stats.rows_failed, 1010);
    assert!(stats.write_errors >= 3, "{stats:?}");
    let first = stats.first_error.unwrap_or_default();
    assert!(
        first.contains("/dev/full") && first.contains("os error 28"),
        "{first}"
    );
}
