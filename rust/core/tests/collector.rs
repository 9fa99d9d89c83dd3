//! The collector against plain blocking clients speaking the protocol byte by byte: the happy
//! path and its acks, exactly-once on resends, and every kind of bad client (wrong token,
//! malformed hello, oversized or garbage frames, gaps, idlers, one too many) being closed
//! alone while a good stream carries on.

use std::io::Write;
use std::time::Duration;

use steplog_core::net::collector::CollectorConfig;
use steplog_core::net::protocol::{self, Status};

#[path = "support/collector.rs"]
mod support;
use support::*;

#[test]
fn a_stream_is_stored_byte_for_byte_and_acked() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    let mut s = session(srv.addr, "run1", "p1-aa", 0);
    let sent = frames(0..200);
    for f in &sent {
        s.write_all(f).unwrap();
    }
    wait_ack(&mut s, 200);
    assert_eq!(
        std::fs::read(srv.shard_path("run1", "p1-aa")).unwrap(),
        concat(&sent)
    );
    drop(s);
    let stats = srv.stop();
    assert_eq!((stats.frames_stored, stats.sessions), (200, 1));
    assert_eq!(stats.bytes_stored, concat(&sent).len() as u64);
}

#[test]
fn resent_frames_are_stored_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    let all = frames(0..120);
    let mut s = session(srv.addr, "run1", "s", 0);
    for f in &all[..80] {
        s.write_all(f).unwrap();
    }
    wait_ack(&mut s, 80);
    drop(s);
    // A writer that reconnects resends from an older point; the REPLY says what is held.
    let mut s = session(srv.addr, "run1", "s", 80);
    for f in &all[50..] {
        s.write_all(f).unwrap();
    }
    wait_ack(&mut s, 120);
    assert_eq!(
        std::fs::read(srv.shard_path("run1", "s")).unwrap(),
        concat(&all)
    );
    drop(s);
    let stats = srv.stop();
    assert_eq!((stats.frames_stored, stats.duplicate_frames), (120, 30));
}

#[test]
fn a_gap_closes_the_connection_and_stores_nothing_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    let all = frames(0..10);
    let mut s = session(srv.addr, "r", "s", 0);
    s.write_all(&concat(&all[..3])).unwrap();
    wait_ack(&mut s, 3);
    s.write_all(&all[5]).unwrap();
    assert!(closed_by_server(&mut s));
    assert_eq!(
        std::fs::read(srv.shard_path("r", "s")).unwrap(),
        concat(&all[..3])
    );
    assert_eq!(srv.stop().closed_on_error, 1);
}

#[test]
fn a_wrong_token_is_refused_before_anything_reaches_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    for token in [&b"test-tokem"[..], b"test-token-longer", b"t"] {
        let mut s = connect(srv.addr);
        let (status, next) = hello_on(&mut s, token, "run1", "s");
        assert_eq!((status, next), (Status::BadToken, 0));
        assert!(closed_by_server(&mut s));
    }
    assert!(!tmp.path().join("run1").exists());
    assert_eq!(srv.stop().rejected_connections, 3);
}

#[test]
fn malformed_hellos_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    let good = protocol::encode_hello(TOKEN, "run1", "s");
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut bad_version = good.clone();
    bad_version[4] = 9;
    let bad_names = [
        protocol::encode_hello(TOKEN, "..", "s"),
        protocol::encode_hello(TOKEN, "run1", "a/b"),
        protocol::encode_hello(TOKEN, ".hidden", "s"),
    ];
    for hello in [bad_magic, bad_version].iter().chain(&bad_names) {
        let mut s = connect(srv.addr);
        s.write_all(hello).unwrap();
        let reply = read_msg(&mut s).expect("no reply");
        assert_eq!(
            protocol::decode_reply(&reply),
            Some((Ok(Status::BadHello), 0))
        );
        assert!(closed_by_server(&mut s));
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    srv.stop();
}

#[test]
fn oversized_declarations_close_the_connection_without_waiting_for_the_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CollectorConfig {
        max_frame_bytes: 4096,
        max_memory_bytes: 8192,
        ..config(tmp.path())
    };
    let srv = start(cfg);
    // Within the format's limit but over --max-frame-bytes, and over the format's limit.
    for len in [1 << 20, 999_999_999] {
        let mut s = session(srv.addr, "r", "s", 0);
        s.write_all(&header_declaring(0, len)).unwrap();
        // Only the header was sent: a server that tried to read (or allocate) the payload
        // would wait here instead of closing.
        assert!(closed_by_server(&mut s), "{len}");
    }
    assert_eq!(srv.stop().closed_on_error, 2);
}

#[test]
fn hostile_clients_are_closed_while_a_good_stream_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    let addr = srv.addr;
    let all = frames(0..3000);
    let mut good = session(addr, "good", "s", 0);
    let expected = concat(&all);
    let writer = std::thread::spawn(move || {
        for (i, chunk) in all.chunks(100).enumerate() {
            good.write_all(&concat(chunk)).unwrap();
            wait_ack(&mut good, (i as u64 + 1) * 100);
        }
    });
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut garbage = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    for round in 0..20 {
        // Garbage instead of a hello.
        let mut s = connect(addr);
        s.write_all(&garbage(600)).unwrap();
        assert!(closed_by_server(&mut s), "round {round}");
        // Garbage instead of frames.
        let mut s = session(addr, "bad", &format!("s{round}"), 0);
        s.write_all(&garbage(5000)).unwrap();
        assert!(closed_by_server(&mut s), "round {round}");
        // A frame whose payload does not match its checksum.
        let mut f = frames(0..1).remove(0);
        let last = f.len() - 1;
        f[last] ^= 1;
        let mut s = session(addr, "bad", &format!("crc{round}"), 0);
        s.write_all(&f).unwrap();
        assert!(closed_by_server(&mut s), "round {round}");
    }
    writer.join().unwrap();
    assert_eq!(
        std::fs::read(srv.shard_path("good", "s")).unwrap(),
        expected
    );
    let stats = srv.stop();
    // Sessions that stored nothing leave no file behind.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("bad")).unwrap().count(),
        0
    );
    assert_eq!(stats.frames_stored, 3000);
    assert_eq!(stats.closed_on_error, 40);
}

#[test]
fn connections_over_the_limit_are_answered_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CollectorConfig {
        max_connections: 2,
        ..config(tmp.path())
    };
    let srv = start(cfg);
    let a = session(srv.addr, "r", "a", 0);
    let _b = session(srv.addr, "r", "b", 0);
    let (mut c, status, _) = hello(srv.addr, "r", "c");
    assert_eq!(status, Status::Busy);
    assert!(closed_by_server(&mut c));
    drop(a);
    // Once a connection ends there is room again (the server notices the close shortly).
    eventually("room for a new connection", || {
        hello(srv.addr, "r", "c").1 == Status::Ok
    });
    srv.stop();
}

#[test]
fn idle_connections_and_slow_frames_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CollectorConfig {
        idle_timeout: Duration::from_millis(300),
        handshake_timeout: Duration::from_millis(300),
        ..config(tmp.path())
    };
    let srv = start(cfg);
    let mut idle = session(srv.addr, "r", "idle", 0);
    let mut slow = session(srv.addr, "r", "slow", 0);
    slow.write_all(&frames(0..1)[0][..40]).unwrap();
    let mut mute = connect(srv.addr);
    mute.write_all(&protocol::encode_hello(TOKEN, "r", "mute")[..5])
        .unwrap();
    for s in [&mut idle, &mut slow, &mut mute] {
        assert!(closed_by_server(s));
    }
    let stats = srv.stop();
    assert_eq!((stats.closed_on_error, stats.rejected_connections), (2, 1));
}
