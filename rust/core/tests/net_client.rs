//! The network sink against a small, independent, thread-per-connection collector written
//! here from `docs/NETWORK.md`: delivery exactly once, a collector that is down at the start,
//! one that drops connections mid-stream, spilling past the memory buffer, a collector that
//! never comes (everything kept in the spill file, then `push_file`), and a wrong token.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/series.rs"]
mod series;

use steplog_core::frame::{self, HEADER_LEN};
use steplog_core::net::client::{NetOptions, NetSink};
use steplog_core::net::protocol::{self, Status, HELLO_FIXED};
use steplog_core::net::push::push_file;
use steplog_core::net::target::Target;
use steplog_core::reader::decode_shard;
use steplog_core::{Logger, ShardInfo, Value, WriterConfig};

const TOKEN: &[u8] = b"s3cret";

/// What the fake collector stores: one shard's bytes and its next seq.
#[derive(Default)]
struct Store {
    bytes: Vec<u8>,
    next: u64,
    frames_received: u64,
}

struct Fake {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Fake {
    /// Serves on `addr` ("127.0.0.1:0" for any port). `cut_after`: close each connection
    /// after that many frames, before acknowledging the last one.
    fn start(addr: &str, store: Arc<Mutex<Store>>, cut_after: Option<u64>) -> Fake {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, st, c, a) = (store.clone(), stop.clone(), conns.clone(), accepted.clone());
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                c.lock().unwrap().push(stream.try_clone().unwrap());
                let s = s.clone();
                thread::spawn(move || serve(stream, s, cut_after));
            }
        });
        Fake {
            addr,
            stop,
            conns,
            accepted,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn serve(mut s: TcpStream, store: Arc<Mutex<Store>>, cut_after: Option<u64>) {
    let mut fixed = [0u8; HELLO_FIXED];
    if s.read_exact(&mut fixed).is_err() {
        return;
    }
    let Some(lens) = protocol::decode_hello_fixed(&fixed) else {
        let _ = s.write_all(&protocol::encode_reply(Status::BadHello, 0));
        return;
    };
    let mut token = vec![0u8; lens.token];
    let mut names = vec![0u8; lens.run + lens.shard];
    if s.read_exact(&mut token).is_err() {
        return;
    }
    if !protocol::token_matches(&token, TOKEN) {
        let _ = s.write_all(&protocol::encode_reply(Status::BadToken, 0));
        return;
    }
    if s.read_exact(&mut names).is_err() {
        return;
    }
    let next = store.lock().unwrap().next;
    if s.write_all(&protocol::encode_reply(Status::Ok, next))
        .is_err()
    {
        return;
    }
    let mut here = 0u64;
    loop {
        let mut head = [0u8; HEADER_LEN];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let h = frame::parse_header(&head).expect("a good frame header");
        let mut payload = vec![0u8; h.payload_len as usize];
        if s.read_exact(&mut payload).is_err() {
            return;
        }
        here += 1;
        let mut st = store.lock().unwrap();
        st.frames_received += 1;
        if cut_after.is_some_and(|n| here >= n) {
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
        assert!(
            h.seq <= st.next,
            "gap: got {} while expecting {}",
            h.seq,
            st.next
        );
        if h.seq == st.next {
            st.bytes.extend_from_slice(&head);
            st.bytes.extend_from_slice(&payload);
            st.next += 1;
        }
        let ack = protocol::encode_ack(st.next);
        drop(st);
        if s.write_all(&ack).is_err() {
            return;
        }
    }
}

fn free_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn sink(addr: &str, spill: &Path, buffer_bytes: usize, timeout_s: f64, token: &[u8]) -> NetSink {
    NetSink::start(NetOptions {
        target: Target::parse(&format!("tcp://{addr}"), token, None).unwrap(),
        run: "r1".into(),
        shard: "s-1".into(),
        spill_path: spill.to_path_buf(),
        buffer_bytes,
        timeout: Duration::from_secs_f64(timeout_s),
    })
    .unwrap()
}

fn logger(sink: NetSink, net_timeout_s: f64) -> Logger {
    let info = ShardInfo {
        run_id: "r1".into(),
        shard: "s-1".into(),
        ..ShardInfo::default()
    };
    let config = WriterConfig {
        batch_max_rows: 500,
        flush_interval_s: 0.05,
        net_timeout_s,
        ..WriterConfig::default()
    };
    Logger::start(Box::new(sink), &info, config).unwrap()
}

fn log(logger: &Logger, range: std::ops::Range<i64>) {
    for i in range {
        logger.log(None, None, vec![("x", Value::I64(i))]).unwrap();
    }
}

fn xs(bytes: &[u8]) -> Vec<i64> {
    let problems = decode_shard(bytes).problems;
    assert!(problems.is_empty(), "{problems:?}");
    series::i64s(bytes, "x")
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn delivers_every_row_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Mutex::new(Store::default()));
    let fake = Fake::start("127.0.0.1:0", store.clone(), None);
    let spill = dir.path().join("s-1.steplog");
    let lg = logger(
        sink(&fake.addr.to_string(), &spill, 64 << 20, 10.0, TOKEN),
        10.0,
    );
    log(&lg, 0..20_000);
    lg.sync(Duration::from_secs(10)).unwrap();
    assert_eq!(
        lg.stats().rows_unacked,
        0,
        "sync waits for the collector's ack"
    );
    log(&lg, 20_000..30_000);
    let stats = lg.finish().unwrap();
    assert_eq!((stats.rows_unacked, stats.spill_path), (0, None));
    assert_eq!(
        xs(&store.lock().unwrap().bytes),
        (0..30_000).collect::<Vec<_>>()
    );
    assert!(!spill.exists(), "nothing was spilled");
    let closed = decode_shard(&store.lock().unwrap().bytes).close.is_some();
    assert!(closed, "the close frame reached the collector");
    fake.stop();
}

#[test]
fn a_collector_that_starts_late_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let lg = logger(
        sink(
            &addr,
            &dir.path().join("s-1.steplog"),
            64 << 20,
            20.0,
            TOKEN,
        ),
        20.0,
    );
    log(&lg, 0..5_000);
    lg.flush(Duration::from_secs(10)).unwrap();
    let store = Arc::new(Mutex::new(Store::default()));
    let fake = Fake::start(&addr, store.clone(), None);
    log(&lg, 5_000..10_000);
    let stats = lg.finish().unwrap();
    assert_eq!(stats.rows_unacked, 0);
    assert!(stats.net_errors >= 1, "the refused connection was counted");
    assert!(stats
        .first_net_error
        .unwrap()
        .contains("connecting to tcp://"));
    assert!(stats.reconnects >= 1);
    assert_eq!(
        xs(&store.lock().unwrap().bytes),
        (0..10_000).collect::<Vec<_>>()
    );
    fake.stop();
}

#[test]
fn connections_cut_mid_stream_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Mutex::new(Store::default()));
    // Every connection dies after 3 frames, the last of them received but not acknowledged.
    let fake = Fake::start("127.0.0.1:0", store.clone(), Some(3));
    let lg = logger(
        sink(
            &fake.addr.to_string(),
            &dir.path().join("s-1.steplog"),
            64 << 20,
            30.0,
            TOKEN,
        ),
        30.0,
    );
    log(&lg, 0..20_000);
    let stats = lg.finish().unwrap();
    assert_eq!(stats.rows_unacked, 0);
    let st = store.lock().unwrap();
    assert!(st.frames_received > st.next, "some frames were sent twice");
    assert_eq!(xs(&st.bytes), (0..20_000).collect::<Vec<_>>());
    assert!(fake.accepted.load(Ordering::SeqCst) > 3);
    drop(st);
    fake.stop();
}

#[test]
fn past_the_buffer_frames_spill_and_are_sent_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let spill = dir.path().join("s-1.steplog");
    // No memory buffer at all: every write goes through the spill file.
    let lg = logger(sink(&addr, &spill, 0, 20.0, TOKEN), 20.0);
    log(&lg, 0..5_000);
    lg.flush(Duration::from_secs(10)).unwrap();
    assert!(spill.exists());
    let s = lg.stats();
    assert_eq!(s.spill_path.as_deref(), Some(spill.to_str().unwrap()));
    assert_eq!(s.rows_unacked, 5_000);
    let on_disk = std::fs::read(&spill).unwrap();
    assert_eq!(
        xs(&on_disk),
        (0..5_000).collect::<Vec<_>>(),
        "the spill file is a shard"
    );
    let store = Arc::new(Mutex::new(Store::default()));
    let fake = Fake::start(&addr, store.clone(), None);
    // Drained, the file is removed and the stats forget it.
    wait_for("the spill to drain", || {
        !spill.exists() && lg.stats().spill_path.is_none()
    });
    log(&lg, 5_000..6_000);
    let stats = lg.finish().unwrap();
    assert_eq!(stats.rows_unacked, 0);
    assert_eq!(
        xs(&store.lock().unwrap().bytes),
        (0..6_000).collect::<Vec<_>>()
    );
    fake.stop();
}

#[test]
fn without_a_collector_finish_keeps_everything_in_the_spill_file_for_push() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();
    let spill = dir.path().join("s-1.steplog");
    let lg = logger(sink(&addr, &spill, 64 << 20, 0.3, TOKEN), 0.3);
    log(&lg, 0..3_000);
    let started = Instant::now();
    let stats = lg.finish().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "finish is bounded"
    );
    assert_eq!(stats.rows_unacked, 3_000);
    assert_eq!(stats.spill_path.as_deref(), Some(spill.to_str().unwrap()));
    assert_eq!(
        xs(&std::fs::read(&spill).unwrap()),
        (0..3_000).collect::<Vec<_>>()
    );

    let store = Arc::new(Mutex::new(Store::default()));
    let fake = Fake::start(&addr, store.clone(), None);
    let target = Target::parse(&format!("tcp://{addr}"), TOKEN, None).unwrap();
    let meta = br#"{"id": "r1", "name": "pushed", "status": "finished"}"#;
    let held = push_file(&spill, &target, Duration::from_secs(10), Some(meta)).unwrap();
    assert!(held.run_meta, "a closed shard carries the run's metadata");
    // Pushing twice stores nothing twice.
    assert_eq!(
        push_file(&spill, &target, Duration::from_secs(10), Some(meta)).unwrap(),
        held
    );
    let st = store.lock().unwrap();
    assert_eq!(st.next, held.frames);
    assert_eq!(xs(&st.bytes), (0..3_000).collect::<Vec<_>>());
    assert!(decode_shard(&st.bytes).close.is_some());
    // The run frame comes last, after the close frame, with the JSON as it was given.
    let last = frame::Frames::new(&st.bytes).last();
    match last {
        Some(frame::Event::Frame {
            header, payload, ..
        }) => {
            assert_eq!(header.kind, frame::Kind::Run as u8);
            assert_eq!((header.seq, payload), (held.frames - 1, &meta[..]));
        }
        other => panic!("expected the run frame last, got {other:?}"),
    }
    drop(st);
    let bad = push_file(&spill, &target, Duration::from_secs(10), Some(b"not json"));
    assert!(bad.unwrap_err().to_string().contains("not a JSON object"));
    fake.stop();
}

#[test]
fn a_wrong_token_is_reported_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Mutex::new(Store::default()));
    let fake = Fake::start("127.0.0.1:0", store.clone(), None);
    let spill = dir.path().join("s-1.steplog");
    let lg = logger(
        sink(&fake.addr.to_string(), &spill, 64 << 20, 5.0, b"wrong"),
        5.0,
    );
    log(&lg, 0..1_000);
    let stats = lg.finish().unwrap();
    let err = stats.first_net_error.unwrap();
    assert!(err.contains("rejected the token"), "{err}");
    assert_eq!(stats.rows_unacked, 1_000);
    assert_eq!(
        xs(&std::fs::read(&spill).unwrap()),
        (0..1_000).collect::<Vec<_>>()
    );
    assert!(store.lock().unwrap().bytes.is_empty());
    fake.stop();
}
