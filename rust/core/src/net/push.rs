//! `steplog push`: sends a shard file (a network sink's spill file) to a collector, which
//! keeps one copy of each frame however often it is pushed.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::{self, HEADER_LEN};
use crate::net::conn::Conn;
use crate::net::target::Target;

/// Sends a shard file (a spill file, or any shard) to a collector and waits for the last
/// ACK. Returns how many frames the collector holds afterwards.
pub fn push_file(path: &Path, target: &Target, timeout: Duration) -> Result<u64> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let data = crate::reader::decode_shard(&bytes);
    let field = |k: &str| {
        data.info
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| match v {
                crate::reader::Meta::Str(s) => Some(s.clone()),
                _ => None,
            })
    };
    let (Some(run), Some(shard)) = (field("run_id"), field("shard")) else {
        return Err(Error::Corrupt {
            path: path.into(),
            reason: "no readable header frame (run id and shard name unknown)".into(),
        });
    };
    let io_err = |e: io::Error| Error::io("send", path, e);
    let (mut conn, next) = Conn::open(target, &run, &shard, timeout).map_err(|e| {
        Error::io(
            "connect",
            path,
            io::Error::other(format!("{}: {e}", target.url)),
        )
    })?;
    let mut end = 0;
    for ev in frame::Frames::new(&bytes) {
        if let frame::Event::Frame {
            offset,
            payload,
            header,
        } = ev
        {
            conn.send(&bytes[offset..offset + HEADER_LEN + payload.len()])
                .map_err(io_err)?;
            end = end.max(header.seq + 1);
        }
    }
    let deadline = Instant::now() + timeout;
    // NOTE: frames the collector already held are dropped without an ACK.
    let mut acked = next;
    while acked < end && Instant::now() < deadline {
        if let Some(a) = conn.read_acks(Duration::from_millis(50)).map_err(io_err)? {
            acked = acked.max(a);
        }
    }
    if acked < end {
        return Err(Error::Timeout {
            seconds: timeout.as_secs_f64(),
            pending: (end - acked) as usize,
        });
    }
    Ok(acked)
}
