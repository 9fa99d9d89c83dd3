//! The collector across sessions: takeover of a shard by a newer connection, restart on a
//! directory with a torn last frame (and refusal of one damaged in the middle), run frames
//! becoming `run.json`, TLS, and a writer that never reads its acks.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use steplog_core::frame::Kind;
use steplog_core::net::collector::{CollectorConfig, TlsFiles};
use steplog_core::net::protocol::Status;

#[path = "support/collector.rs"]
mod support;
use support::*;

#[test]
fn a_newer_connection_takes_the_shard_over_and_the_older_one_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    let all = frames(0..40);
    let mut old = session(srv.addr, "r", "s", 0);
    old.write_all(&concat(&all[..10])).unwrap();
    wait_ack(&mut old, 10);
    let mut new = session(srv.addr, "r", "s", 10);
    assert!(
        closed_by_server(&mut old),
        "the older connection must be closed"
    );
    // Whatever the older connection still sends is not stored (it may fail to send at all).
    let _ = old.write_all(&concat(&all[10..20]));
    new.write_all(&concat(&all[10..])).unwrap();
    wait_ack(&mut new, 40);
    assert_eq!(
        std::fs::read(srv.shard_path("r", "s")).unwrap(),
        concat(&all)
    );
    drop(new);
    assert_eq!(srv.stop().frames_stored, 40);
}

#[test]
fn a_restarted_collector_cuts_a_torn_tail_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let all = frames(0..60);
    let srv = start(config(tmp.path()));
    let path = srv.shard_path("r", "s");
    let mut s = session(srv.addr, "r", "s", 0);
    s.write_all(&concat(&all[..30])).unwrap();
    wait_ack(&mut s, 30);
    drop(s);
    srv.stop();
    // The collector was killed while writing frame 30.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&all[30][..all[30].len() / 2]).unwrap();
    drop(f);

    let srv = start(config(tmp.path()));
    let mut s = session(srv.addr, "r", "s", 30);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        concat(&all[..30]),
        "torn tail cut"
    );
    // The writer resends everything it has; only the missing frames are stored.
    s.write_all(&concat(&all)).unwrap();
    wait_ack(&mut s, 60);
    drop(s);
    let stats = srv.stop();
    assert_eq!((stats.frames_stored, stats.duplicate_frames), (30, 30));
    assert_eq!(std::fs::read(&path).unwrap(), concat(&all));
}

#[test]
fn a_shard_file_damaged_in_the_middle_is_refused_not_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let all = frames(0..10);
    let mut bytes = concat(&all);
    let mid = all[0].len() * 4 + 40;
    bytes[mid] ^= 0xFF;
    std::fs::create_dir_all(tmp.path().join("r")).unwrap();
    let path = tmp.path().join("r").join("s.steplog");
    std::fs::write(&path, &bytes).unwrap();
    let srv = start(config(tmp.path()));
    let (mut s, status, _) = hello(srv.addr, "r", "s");
    assert_eq!(status, Status::ServerError);
    assert!(closed_by_server(&mut s));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file must be left as it was"
    );
    srv.stop();
}

#[test]
fn a_run_frame_becomes_run_json() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = start(config(tmp.path()));
    let first = br#"{"id": "r", "status": "running"}"#;
    let last = br#"{"id": "r", "status": "finished"}"#;
    let sent = [
        frame_with(Kind::Run, 0, first),
        frames(1..2).remove(0),
        frame_with(Kind::Run, 2, b"not json"),
        frame_with(Kind::Run, 3, last),
    ];
    let mut s = session(srv.addr, "r", "s", 0);
    s.write_all(&concat(&sent[..3])).unwrap();
    wait_ack(&mut s, 3);
    let run_json = tmp.path().join("r").join("run.json");
    assert_eq!(
        std::fs::read(&run_json).unwrap(),
        first,
        "a bad run frame keeps the last good one"
    );
    s.write_all(&sent[3]).unwrap();
    wait_ack(&mut s, 4);
    assert_eq!(std::fs::read(&run_json).unwrap(), last);
    assert_eq!(
        std::fs::read(srv.shard_path("r", "s")).unwrap(),
        concat(&sent)
    );
    drop(s);
    let stats = srv.stop();
    assert_eq!((stats.run_json_written, stats.io_errors), (2, 1));
}

#[test]
fn tls_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let runs = tmp.path().join("runs");
    let cfg = CollectorConfig {
        tls: Some(TlsFiles { cert, key }),
        ..config(&runs)
    };
    let srv = start(cfg);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect(srv.addr));
    assert_eq!(hello_on(&mut tls, TOKEN, "r", "s"), (Status::Ok, 0));
    let all = frames(0..50);
    tls.write_all(&concat(&all)).unwrap();
    wait_ack(&mut tls, 50);
    assert_eq!(
        std::fs::read(srv.shard_path("r", "s")).unwrap(),
        concat(&all)
    );

    // A plain-TCP client gets no reply from a TLS collector.
    let mut plain = connect(srv.addr);
    plain
        .write_all(&steplog_core::net::protocol::encode_hello(TOKEN, "r", "t"))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(plain.read_exact(&mut b).is_err() || &b[..4] != b"SLNR");
    drop(tls);
    srv.stop();
}

#[test]
fn a_writer_that_never_reads_acks_is_still_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CollectorConfig {
        max_frame_bytes: 64 << 10,
        max_memory_bytes: 256 << 10,
        ..config(tmp.path())
    };
    let srv = start(cfg);
    let payload = vec![7u8; 40 << 10];
    let all: Vec<Vec<u8>> = (0..2000)
        .map(|seq| frame_with(Kind::Batch, seq, &payload))
        .collect();
    let expected_len: u64 = all.iter().map(|f| f.len() as u64).sum();
    let mut s = session(srv.addr, "r", "s", 0);
    // The acks are never read while sending: storing must not depend on the client taking
    // them (the server keeps only the latest unsent next_seq).
    for f in &all {
        s.write_all(f).unwrap();
    }
    let path = srv.shard_path("r", "s");
    eventually("all frames stored", || {
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) == expected_len
    });
    // Still a live session: the acks are there to be read, the newest one last.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    wait_ack(&mut s, 2000);
    drop(s);
    assert_eq!(srv.stop().frames_stored, 2000);
}
