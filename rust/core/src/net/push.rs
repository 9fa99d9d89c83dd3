//! `steplog push`: sends a shard file (a network sink's spill file, or an offline run's
//! shard) to a collector, which keeps one copy of each frame however often it is pushed. The
//! run's `run.json` goes with a closed shard as a run frame after its last frame, so the
//! collector writes the run's metadata too; a shard that is not closed may still grow, and a
//! frame appended in its sequence would collide with the writer's next one, so it goes without.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::frame::{self, HEADER_LEN};
use crate::net::conn::Conn;
use crate::net::target::Target;

/// What a push delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Frames of the shard the collector holds afterwards (the run frame included).
    pub frames: u64,
    /// Whether the run's metadata went with it (only with a closed shard).
    pub run_meta: bool,
}

/// Sends a shard file (a spill file, or any shard) to a collector and waits for the last
/// ACK. `run_meta`, the run's `run.json` (a JSON object), follows the shard's frames as a run
/// frame when the shard is closed.
pub fn push_file(
    path: &Path,
    target: &Target,
    timeout: Duration,
    run_meta: Option<&[u8]>,
) -> Result<Pushed> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    if let Some(json) = run_meta {
        let object = std::str::from_utf8(json).is_ok_and(|s| s.trim_start().starts_with('{'));
        if !object {
            return Err(Error::Corrupt {
                path: path.into(),
                reason: "the run metadata to push is not a JSON object".into(),
            });
        }
    }
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
    let run_meta = run_meta.filter(|_| data.close.is_some());
    if let Some(json) = run_meta {
        let mut run_frame = Vec::with_capacity(HEADER_LEN + json.len());
        frame::append(&mut run_frame, frame::Kind::Run, end, json, None)?;
        conn.send(&run_frame).map_err(io_err)?;
        end += 1;
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
    Ok(Pushed {
        frames: acked,
        run_meta: run_meta.is_some(),
    })
}
