//! The collector's memory budget against clients that declare big frames and then stall or
//! trickle: they hold only what they sent, never starve a good writer, and are closed once
//! their frame's deadline (`frame_timeout` plus the payload at `min_frame_rate`) passes.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use steplog_core::frame::Kind;
use steplog_core::net::collector::CollectorConfig;

#[path = "support/collector.rs"]
mod support;
use support::*;

const FRAME_TIMEOUT: Duration = Duration::from_secs(6);

/// Whether the collector still holds `s` open (nothing to read, no EOF).
fn still_open(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let open = loop {
        match s.read(&mut b) {
            Ok(0) => break false,
            Ok(_) => continue, // an ACK
            Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
            Err(_) => break false,
        }
    };
    s.set_nonblocking(false).unwrap();
    open
}

#[test]
fn stalled_big_frames_neither_starve_a_good_writer_nor_stay_connected() {
    let tmp = tempfile::tempdir().unwrap();
    // The default budget (256 MiB) and frame limit: five 60 MiB declarations are more than
    // the whole budget.
    let cfg = CollectorConfig {
        frame_timeout: FRAME_TIMEOUT,
        min_frame_rate: 1 << 30,
        ..config(tmp.path())
    };
    let srv = start(cfg);
    let declared = 60u32 << 20;
    // Before the first byte of any stalled frame, so that the deadlines end after t0 + 6 s.
    let t0 = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..5)
        .map(|i| {
            let mut s = session(srv.addr, "bad", &format!("s{i}"), 0);
            s.write_all(&header_declaring(0, declared)).unwrap();
            s
        })
        .collect();
    // One more sends 1 MiB of its body, then stalls too.
    let mut partial = session(srv.addr, "bad", "partial", 0);
    partial.write_all(&header_declaring(0, declared)).unwrap();
    partial.write_all(&vec![0u8; 1 << 20]).unwrap();
    stalled.push(partial);

    let mut good = session(srv.addr, "good", "s", 0);
    let sent = frames(0..1000);
    for (i, chunk) in sent.chunks(50).enumerate() {
        good.write_all(&concat(chunk)).unwrap();
        wait_ack(&mut good, (i as u64 + 1) * 50);
    }
    let good_done = t0.elapsed();
    assert!(
        good_done < FRAME_TIMEOUT,
        "the good writer took {good_done:?}, past the stalled frames' deadline"
    );
    // Everything was acknowledged while every stalled client was still connected.
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(
            still_open(s),
            "stalled client {i} closed before its deadline"
        );
    }
    for (i, s) in stalled.iter_mut().enumerate() {
        assert!(closed_by_server(s), "stalled client {i} never closed");
    }
    let closed_after = t0.elapsed();
    assert!(closed_after >= FRAME_TIMEOUT, "{closed_after:?}");
    assert_eq!(
        std::fs::read(srv.shard_path("good", "s")).unwrap(),
        concat(&sent)
    );
    drop(good);
    let stats = srv.stop();
    assert_eq!((stats.slow_frames, stats.closed_on_error), (6, 6));
    assert_eq!(stats.frames_stored, 1000);
}

#[test]
fn a_trickling_frame_is_closed_at_its_deadline_though_never_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CollectorConfig {
        frame_timeout: Duration::from_millis(500),
        min_frame_rate: 1 << 20,
        ..config(tmp.path())
    };
    let srv = start(cfg);
    let s = session(srv.addr, "r", "slow", 0);
    let mut w = s.try_clone().unwrap();
    let t0 = Instant::now();
    let trickle = std::thread::spawn(move || {
        w.write_all(&header_declaring(0, 64 << 10)).unwrap();
        for _ in 0..400 {
            if w.write_all(&[0]).is_err() {
                return;
            }
            // ok-sleep: this client is slow on purpose (one byte every 20 ms).
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let mut r = s;
    assert!(closed_by_server(&mut r));
    // 0.5 s plus 64 KiB at 1 MiB/s: 0.5625 s; a trickle that never idles is still cut.
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(550) && took < Duration::from_secs(5),
        "{took:?}"
    );
    trickle.join().unwrap();
    let stats = srv.stop();
    assert_eq!((stats.slow_frames, stats.frames_stored), (1, 0));
}

#[test]
fn big_frames_arriving_together_all_finish_within_a_small_budget() {
    let tmp = tempfile::tempdir().unwrap();
    // Room for one frame and a half: frames read in parallel must not wait on each other.
    let cfg = CollectorConfig {
        max_frame_bytes: 700 << 10,
        max_memory_bytes: 1 << 20,
        ..config(tmp.path())
    };
    let srv = start(cfg);
    let payload = vec![5u8; 600 << 10];
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let mut s = session(srv.addr, "r", &format!("w{i}"), 0);
            let all: Vec<Vec<u8>> = (0..4)
                .map(|seq| frame_with(Kind::Batch, seq, &payload))
                .collect();
            std::thread::spawn(move || {
                for f in &all {
                    // Half, then the rest, so that several frames are part-read at once.
                    let (a, b) = f.split_at(f.len() / 2);
                    s.write_all(a).unwrap();
                    s.flush().unwrap();
                    s.write_all(b).unwrap();
                }
                wait_ack(&mut s, 4);
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let stats = srv.stop();
    assert_eq!((stats.frames_stored, stats.closed_on_error), (16, 0));
}
