//! Threads against the writer: a caller waiting for ring space holds no lock (other threads
//! keep logging and reading), rows keep their order through the wait and none is lost or
//! doubled; rows committed while another thread finishes are written or counted; a panic on
//! the writer thread is reported by `finish()`, not swallowed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

#[path = "support/series.rs"]
mod series;

use steplog_core::reader::decode_shard;
use steplog_core::{
    Logged, Logger, MemorySink, OverflowPolicy, ShardInfo, Sink, Value, WriterConfig,
};

fn info() -> ShardInfo {
    ShardInfo {
        run_id: "r1".into(),
        shard: "s-1".into(),
        ..ShardInfo::default()
    }
}

/// A tiny ring (chunks of 2 rows, 4 chunks) under `block` that waits long, and a writer that
/// writes every 4 rows (so a paused sink stops it at once).
fn tiny_blocking() -> WriterConfig {
    WriterConfig {
        queue_capacity: 8,
        batch_max_rows: 4,
        overflow: OverflowPolicy::Block,
        block_timeout_s: 60.0,
        flush_interval_s: 1000.0,
        fsync_interval_s: 1000.0,
        ..WriterConfig::default()
    }
}

/// Waits (polling, bounded) until `counter` stops moving: the threads bumping it are stuck.
fn until_stalled(counter: &AtomicU64, below: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = u64::MAX;
    loop {
        let now = counter.load(Ordering::SeqCst);
        assert!(now < below, "the callers never had to wait ({now} calls)");
        if now == last && now > 0 {
            return now;
        }
        assert!(Instant::now() < deadline, "the callers never stalled");
        last = now;
        std::thread::sleep(Duration::from_millis(100)); // ok-sleep: polling a counter
    }
}

/// Runs `f` on another thread and says whether it returned within `limit`.
fn returns_within(limit: Duration, f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(limit).is_ok()
}

#[test]
fn a_caller_waiting_for_ring_space_holds_no_lock_and_rows_keep_their_order() {
    let sink = MemorySink::new();
    let logger = Arc::new(Logger::start(Box::new(sink.clone()), &info(), tiny_blocking()).unwrap());
    sink.pause();
    let calls = Arc::new(AtomicU64::new(0));
    let (threads, per_thread) = (4usize, 300i64);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (logger, calls) = (logger.clone(), calls.clone());
            std::thread::spawn(move || {
                let key = format!("t{t}");
                for i in 0..per_thread {
                    let logged = logger.log(None, None, vec![(key.as_str(), Value::I64(i))]);
                    assert_eq!(logged.unwrap(), Logged::Accepted);
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    until_stalled(&calls, threads as u64 * per_thread as u64);
    // Every logging thread is waiting for the paused writer: the accumulator's lock is free.
    let l = logger.clone();
    assert!(
        returns_within(Duration::from_secs(5), move || {
            l.step();
            l.intern("other").unwrap();
        }),
        "the lock was held by a waiting caller"
    );
    sink.resume();
    for w in workers {
        w.join().unwrap();
    }
    let stats = logger.finish().unwrap();
    let total = threads as u64 * per_thread as u64;
    assert_eq!((stats.rows_dropped, stats.rows_written), (0, total));
    let data = decode_shard(&sink.bytes());
    assert_eq!(data.rows, total);
    let mut all_steps = Vec::new();
    for t in 0..threads {
        let key = (format!("t{t}"), steplog_core::batch::DType::I64);
        let s = &data.series[&key];
        let steplog_core::reader::Scalars::I64(values) = &s.values else {
            panic!("t{t} is not i64");
        };
        // Values in step order are the thread's own order, each once.
        let mut by_step: Vec<(i64, i64)> = s.steps.iter().copied().zip(values.clone()).collect();
        by_step.sort();
        let in_order: Vec<i64> = by_step.iter().map(|p| p.1).collect();
        assert_eq!(in_order, (0..per_thread).collect::<Vec<_>>(), "thread {t}");
        all_steps.extend(s.steps.iter().copied());
    }
    all_steps.sort();
    assert_eq!(
        all_steps,
        (0..total as i64).collect::<Vec<_>>(),
        "one row per step"
    );
}

#[test]
fn flush_waiting_for_ring_space_does_not_hold_the_lock() {
    let sink = MemorySink::new();
    let logger = Arc::new(Logger::start(Box::new(sink.clone()), &info(), tiny_blocking()).unwrap());
    sink.pause();
    let calls = Arc::new(AtomicU64::new(0));
    let w = {
        let (logger, calls) = (logger.clone(), calls.clone());
        std::thread::spawn(move || {
            for i in 0..200 {
                logger.log(None, None, vec![("x", Value::I64(i))]).unwrap();
                calls.fetch_add(1, Ordering::SeqCst);
            }
            logger.flush(Duration::from_secs(60)).unwrap();
        })
    };
    until_stalled(&calls, 200);
    let l = logger.clone();
    assert!(returns_within(Duration::from_secs(5), move || {
        l.step();
    }));
    sink.resume();
    w.join().unwrap();
    logger.finish().unwrap();
    assert_eq!(
        series::i64s(&sink.bytes(), "x").len(),
        calls.load(Ordering::SeqCst) as usize
    );
}

#[test]
fn a_wait_that_times_out_drops_only_the_waiters_rows_and_counts_them() {
    let sink = MemorySink::new();
    let logger = Logger::start(
        Box::new(sink.clone()),
        &info(),
        WriterConfig {
            block_timeout_s: 0.05,
            ..tiny_blocking()
        },
    )
    .unwrap();
    sink.pause();
    for i in 0..40 {
        logger.log(None, None, vec![("x", Value::I64(i))]).unwrap();
    }
    sink.resume();
    logger
        .log(None, None, vec![("x", Value::I64(1000))])
        .unwrap();
    let stats = logger.finish().unwrap();
    let xs = series::i64s(&sink.bytes(), "x");
    assert!(stats.rows_dropped > 0, "{stats:?}");
    assert_eq!(xs.len() as u64 + stats.rows_dropped, 41);
    assert_eq!(stats.rows_written, xs.len() as u64);
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "in order: {xs:?}");
    assert_eq!(xs.last(), Some(&1000), "logging resumes with the writer");
}

#[test]
fn rows_committed_while_another_thread_finishes_are_written_or_counted() {
    // Wide rows keep a caller inside its call (holding the lock) for a while, so that
    // finish() and the writer's close meet callers in every phase of a call.
    let names: Arc<Vec<String>> = Arc::new((0..400).map(|k| format!("k{k}")).collect());
    for round in 0..30 {
        let sink = MemorySink::new();
        let config = WriterConfig {
            flush_interval_s: 0.001,
            ..WriterConfig::default()
        };
        let logger = Arc::new(Logger::start(Box::new(sink.clone()), &info(), config).unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let go = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (logger, accepted, names, go) =
                    (logger.clone(), accepted.clone(), names.clone(), go.clone());
                std::thread::spawn(move || {
                    while !go.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    loop {
                        let Ok(mut call) = logger.call() else { return };
                        for (k, name) in names.iter().enumerate() {
                            call.set_f64(name, k as f64).unwrap();
                        }
                        match call.commit(None, None) {
                            Logged::Accepted => {}
                            Logged::Waiting(backlog) => logger.wait(backlog),
                            Logged::Rejected { .. } => panic!("no step was given"),
                        }
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        go.store(true, Ordering::Release);
        while accepted.load(Ordering::SeqCst) < 5 {
            std::hint::spin_loop();
        }
        let (stats, unwritten) = logger.finish_bounded();
        for w in workers {
            w.join().unwrap();
        }
        let accepted = accepted.load(Ordering::SeqCst);
        let data = decode_shard(&sink.bytes());
        assert_eq!(unwritten, 0, "round {round}");
        assert_eq!(
            (data.rows, stats.rows_written + stats.rows_dropped),
            (accepted, accepted),
            "round {round}: every accepted row is read back"
        );
    }
}

/// A sink whose first write of rows panics (the shard header, written at start, passes).
struct PanickingSink;

impl Sink for PanickingSink {
    fn write_frames(&mut self, _bytes: &[u8], rows: u64) -> std::io::Result<()> {
        assert!(rows == 0, "injected sink panic");
        Ok(())
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "panicking".into()
    }
}

#[test]
fn summary_edits_accepted_while_another_thread_finishes_are_all_written() {
    // An override that `set_summary` accepted is in the shard's last summary; one refused
    // after the close is not: none is accepted and then lost in the writer's last drain.
    for round in 0..30 {
        let sink = MemorySink::new();
        let logger =
            Arc::new(Logger::start(Box::new(sink.clone()), &info(), tiny_blocking()).unwrap());
        let go = Arc::new(AtomicBool::new(false));
        let setters: Vec<_> = (0..3)
            .map(|t| {
                let (logger, go) = (logger.clone(), go.clone());
                std::thread::spawn(move || {
                    while !go.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    let mut accepted = Vec::new();
                    for i in 0.. {
                        let key = format!("t{t}/k{i}");
                        match logger.set_summary(&key, Value::I64(i)) {
                            Ok(()) => accepted.push(key),
                            Err(_) => return accepted,
                        }
                    }
                    accepted
                })
            })
            .collect();
        go.store(true, Ordering::Release);
        // Not a synchronisation: a varying head start, so finish() meets the setters at
        // different points of their calls.
        std::thread::sleep(Duration::from_micros(200 * (round % 5)));
        logger.finish().unwrap();
        let accepted: Vec<String> = setters
            .into_iter()
            .flat_map(|s| s.join().unwrap())
            .collect();
        let summary: std::collections::HashSet<String> = decode_shard(&sink.bytes())
            .summary
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let lost: Vec<_> = accepted.iter().filter(|k| !summary.contains(*k)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: accepted but not written: {lost:?}"
        );
    }
}

#[test]
fn a_panic_on_the_writer_thread_is_reported_by_finish() {
    let config = WriterConfig {
        finish_timeout_s: 30.0,
        ..WriterConfig::default()
    };
    let logger = Logger::start(Box::new(PanickingSink), &info(), config).unwrap();
    for i in 0..10 {
        logger.log(None, None, vec![("x", Value::I64(i))]).unwrap();
    }
    let t = Instant::now();
    let (stats, unwritten) = logger.finish_bounded();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "finish waited for a dead thread"
    );
    let panic = stats.writer_panic.clone().unwrap_or_default();
    assert!(panic.contains("injected sink panic"), "{stats:?}");
    assert_eq!((stats.rows_written, unwritten), (0, 10));
    assert!(
        logger.flush(Duration::from_secs(1)).is_ok(),
        "finished: nothing to flush"
    );
}
