//! A disk that fills up: the writer writes what still fits (a batch that does not fit is
//! written again in smaller frames) and counts exactly the rows that did not, and the close
//! frame still lands in the room a sink keeps for it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

#[path = "support/series.rs"]
mod series;

use steplog_core::reader::{decode_shard, Meta};
use steplog_core::{Logger, Sink, Value, WriterConfig};

/// A disk of `quota` bytes: a write that does not fit fails with ENOSPC and leaves nothing
/// (a `FileSink` cuts a short write back). The close frame may use `reserve` more bytes.
#[derive(Clone)]
struct Disk {
    state: Arc<Mutex<DiskState>>,
}

struct DiskState {
    bytes: Vec<u8>,
    quota: usize,
    reserve: usize,
    closing: bool,
    failed_writes: u64,
}

impl Disk {
    fn new(quota: usize, reserve: usize) -> Self {
        Disk {
            state: Arc::new(Mutex::new(DiskState {
                bytes: Vec::new(),
                quota,
                reserve,
                closing: false,
                failed_writes: 0,
            })),
        }
    }
    fn bytes(&self) -> Vec<u8> {
        self.state.lock().bytes.clone()
    }
    fn set_quota(&self, quota: usize) {
        self.state.lock().quota = quota;
    }
}

impl Sink for Disk {
    fn write_frames(&mut self, bytes: &[u8], _rows: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        let room = s.quota + if s.closing { s.reserve } else { 0 };
        if s.bytes.len() + bytes.len() > room {
            s.failed_writes += 1;
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        s.bytes.extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn closing(&mut self) {
        self.state.lock().closing = true;
    }
    fn describe(&self) -> String {
        "quota disk".into()
    }
}

#[path = "support/shard.rs"]
mod shard;
use shard::info;

fn config() -> WriterConfig {
    WriterConfig {
        flush_interval_s: 1000.0,
        fsync_interval_s: 1000.0,
        batch_max_rows: 65_536,
        batch_max_bytes: 64 << 20,
        ..WriterConfig::default()
    }
}

/// Rows `range`: `x` is the row number, `noise` a value that does not compress.
fn log(logger: &Logger, range: std::ops::Range<i64>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in range {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = Value::F64(f64::from_bits(state >> 2));
        logger
            .log(None, None, vec![("x", Value::I64(i)), ("noise", noise)])
            .unwrap();
    }
}

fn close_field(close: &[(String, Meta)], name: &str) -> u64 {
    match close.iter().find(|(k, _)| k == name).map(|(_, v)| v) {
        Some(Meta::Int(n)) => *n as u64,
        other => panic!("close frame field {name}: {other:?}"),
    }
}

#[test]
fn a_batch_that_does_not_fit_is_written_in_smaller_frames_and_losses_are_exact() {
    let disk = Disk::new(1 << 30, 64 << 10);
    let logger = Logger::start(Box::new(disk.clone()), &info(), config()).unwrap();
    log(&logger, 0..100);
    logger.flush(Duration::from_secs(10)).unwrap();
    // About 200 KiB free: far less than the ~1 MiB batch of 60,000 rows, far more than zero.
    let used = disk.bytes().len();
    disk.set_quota(used + (200 << 10));
    log(&logger, 100..60_100);
    let stats = logger.finish().unwrap();
    let bytes = disk.bytes();
    let data = decode_shard(&bytes);
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    assert!(data.missing_frames.is_empty());
    // What fits is written: most of the free room holds rows, not nothing.
    let xs = series::i64s(&bytes, "x");
    assert!(
        xs.len() > 5_000,
        "only {} rows written into 200 KiB",
        xs.len()
    );
    assert!(
        bytes.len() - used > 150 << 10,
        "{} bytes",
        bytes.len() - used
    );
    // Written rows are the first ones, in order; the rest are counted exactly.
    assert_eq!(xs, (0..xs.len() as i64).collect::<Vec<_>>());
    assert_eq!(stats.rows_written, xs.len() as u64);
    assert_eq!(stats.rows_written + stats.rows_failed, 60_100);
    assert_eq!(data.rows, stats.rows_written);
    // The close frame fitted in the kept room and tells the reader what was lost.
    let close = data.close.expect("no close frame");
    assert_eq!(close_field(&close, "rows_written"), stats.rows_written);
    assert_eq!(close_field(&close, "rows_failed"), stats.rows_failed);
    assert!(stats.write_errors >= 1);
}

#[test]
fn on_a_disk_with_no_room_at_all_every_row_is_counted_and_the_close_frame_lands() {
    let disk = Disk::new(1 << 30, 64 << 10);
    let logger = Logger::start(Box::new(disk.clone()), &info(), config()).unwrap();
    log(&logger, 0..10);
    logger.flush(Duration::from_secs(10)).unwrap();
    disk.set_quota(disk.bytes().len());
    log(&logger, 10..5_010);
    let stats = logger.finish().unwrap();
    assert_eq!((stats.rows_written, stats.rows_failed), (10, 5_000));
    // A bounded number of attempts: halving down to one row, not one attempt per row.
    let attempts = disk.state.lock().failed_writes;
    assert!(attempts <= 40, "{attempts} failed writes");
    let data = decode_shard(&disk.bytes());
    assert_eq!(
        series::i64s(&disk.bytes(), "x"),
        (0..10).collect::<Vec<_>>()
    );
    let close = data.close.expect("no close frame");
    assert_eq!(close_field(&close, "rows_failed"), 5_000);
}

#[test]
fn a_file_shard_keeps_room_for_its_close_frame_while_open_and_gives_it_back() {
    use std::os::unix::fs::MetadataExt;
    use steplog_core::sink::CLOSE_RESERVE;
    use steplog_core::FileSink;

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s-1.steplog");
    let sink = FileSink::create(&path).unwrap();
    let logger = Logger::start(Box::new(sink), &info(), config()).unwrap();
    log(&logger, 0..10);
    logger.flush(Duration::from_secs(10)).unwrap();
    let open = std::fs::metadata(&path).unwrap();
    if open.blocks() * 512 < CLOSE_RESERVE {
        eprintln!("this filesystem does not preallocate; skipped");
        return;
    }
    assert!(open.len() < 4096, "{} bytes", open.len());
    logger.finish().unwrap();
    let closed = std::fs::metadata(&path).unwrap();
    assert!(
        closed.blocks() * 512 < CLOSE_RESERVE,
        "{} bytes still allocated for a {}-byte shard",
        closed.blocks() * 512,
        closed.len()
    );
    assert_eq!(decode_shard(&std::fs::read(&path).unwrap()).rows, 10);
}
