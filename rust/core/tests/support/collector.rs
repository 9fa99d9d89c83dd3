//! Test helpers for the collector: one started on 127.0.0.1:0 in a thread, and a plain
//! blocking client that speaks the protocol byte by byte (`docs/NETWORK.md`).
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use steplog_core::frame::{self, Kind};
use steplog_core::net::collector::{serve, CollectorConfig, CollectorStats};
use steplog_core::net::protocol::{self, Status};

pub const TOKEN: &[u8] = b"test-token";

/// A running collector; stopped (and joined) by [`Server::stop`] or on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<steplog_core::Result<CollectorStats>>>,
}

pub fn config(dir: &Path) -> CollectorConfig {
    CollectorConfig::new("127.0.0.1:0", dir, TOKEN.to_vec())
}

pub fn start(cfg: CollectorConfig) -> Server {
    let dir = cfg.dir.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        serve(cfg, move |a| addr_tx.send(a).unwrap(), async move {
            let _ = stop_rx.await;
        })
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the collector did not start");
    Server {
        addr,
        dir,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

impl Server {
    pub fn stop(mut self) -> CollectorStats {
        self.stop.take().unwrap().send(()).unwrap();
        self.thread.take().unwrap().join().unwrap().unwrap()
    }

    pub fn shard_path(&self, run: &str, shard: &str) -> PathBuf {
        self.dir.join(run).join(format!("{shard}.steplog"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let (Some(tx), Some(t)) = (self.stop.take(), self.thread.take()) {
            let _ = tx.send(());
            let _ = t.join();
        }
    }
}

/// Frames numbered `seqs`, each with a payload that names its seq (and some filler).
pub fn frames(seqs: Range<u64>) -> Vec<Vec<u8>> {
    seqs.map(|seq| {
        frame_with(
            Kind::Batch,
            seq,
            format!("frame {seq} {}", "x".repeat(300)).as_bytes(),
        )
    })
    .collect()
}

pub fn frame_with(kind: Kind, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::append(&mut out, kind, seq, payload, None).unwrap();
    out
}

pub fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// A header with a valid header CRC that declares `len` payload bytes.
pub fn header_declaring(seq: u64, len: u32) -> Vec<u8> {
    let mut h = frames(seq..seq + 1).remove(0);
    h.truncate(frame::HEADER_LEN);
    h[16..20].copy_from_slice(&len.to_le_bytes());
    h[20..24].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads one 16-byte message; `None` on EOF or a reset.
pub fn read_msg(s: &mut impl Read) -> Option<[u8; protocol::MESSAGE_LEN]> {
    let mut b = [0u8; protocol::MESSAGE_LEN];
    match s.read_exact(&mut b) {
        Ok(()) => Some(b),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            None
        }
        Err(e) => panic!("reading a message: {e}"),
    }
}

/// Sends a HELLO and returns the connection with the REPLY's status and next_seq.
pub fn hello_on<S: Read + Write>(s: &mut S, token: &[u8], run: &str, shard: &str) -> (Status, u64) {
    s.write_all(&protocol::encode_hello(token, run, shard))
        .unwrap();
    let reply = read_msg(s).expect("no reply");
    let (status, next) = protocol::decode_reply(&reply).expect("not a REPLY");
    (status.expect("unknown status"), next)
}

pub fn hello(addr: SocketAddr, run: &str, shard: &str) -> (TcpStream, Status, u64) {
    let mut s = connect(addr);
    let (status, next) = hello_on(&mut s, TOKEN, run, shard);
    (s, status, next)
}

/// A session the collector accepted.
pub fn session(addr: SocketAddr, run: &str, shard: &str, want_next: u64) -> TcpStream {
    let (s, status, next) = hello(addr, run, shard);
    assert_eq!((status, next), (Status::Ok, want_next));
    s
}

/// Reads ACKs until one says `want`; panics on anything else or a close.
pub fn wait_ack(s: &mut impl Read, want: u64) {
    loop {
        let m = read_msg(s).expect("closed before the ack");
        let next = protocol::decode_ack(&m).expect("not an ACK");
        assert!(next <= want, "ack {next} past {want}");
        if next == want {
            return;
        }
    }
}

/// Whether the collector closes `s` (EOF or reset) within the read timeout; ACKs are skipped.
pub fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut scratch = [0u8; 4096];
    loop {
        match s.read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Polls `f` until it is true or 20 s pass.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
