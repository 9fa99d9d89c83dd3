//! What the shard-reader fuzz targets share: the checks every decoded shard must pass, and a
//! pass that gives every frame found in the input valid checksums (so mutations reach the
//! zstd and msgpack decoders instead of stopping at a CRC).

use std::collections::HashSet;
use std::sync::OnceLock;

use steplog_core::frame::{HEADER_LEN, MAGIC};
use steplog_core::reader::{decode_shard, Scalars, ShardData};

/// Decodes `bytes` and checks that the reader's views of the result agree with each other.
/// Panics (a finding) when they do not; a panic inside the reader is a finding too.
pub fn decode_and_check(bytes: &[u8]) -> ShardData {
    let d = decode_shard(bytes);
    check(&d, bytes.len());
    d
}

/// Whether a known, unfixed finding is to be stepped around so that fuzzing finds others:
/// `STEPLOG_FUZZ_SKIP=views,seq` (see docs/FUZZING.md). `views`: do not check that `keys`
/// and the data agree. `seq`: never give a frame the sequence number `u64::MAX`.
pub fn skip(finding: &str) -> bool {
    static SKIP: OnceLock<Vec<String>> = OnceLock::new();
    SKIP.get_or_init(|| {
        std::env::var("STEPLOG_FUZZ_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    })
    .iter()
    .any(|s| s == finding)
}

/// The invariants of a decoded shard, whatever bytes it came from.
pub fn check(d: &ShardData, input_len: usize) {
    for ((key, _), s) in &d.series {
        let n = match &s.values {
            Scalars::F64(v) => v.len(),
            Scalars::I64(v) => v.len(),
            Scalars::Bool(v) => v.len(),
        };
        assert_eq!(
            s.steps.len(),
            n,
            "series {key:?}: steps and values differ in length"
        );
    }
    for p in &d.problems {
        assert!(
            p.offset <= input_len && p.len <= input_len - p.offset,
            "problem beyond the input ({input_len} bytes): {p:?}"
        );
    }
    if skip("views") {
        return;
    }
    let listed: HashSet<&str> = d.keys.iter().map(String::as_str).collect();
    assert_eq!(
        listed.len(),
        d.keys.len(),
        "keys lists a key twice: {:?}",
        d.keys
    );
    let mut with_data: HashSet<&str> = d.others.iter().map(|(_, k, _)| &**k).collect();
    for ((key, _), s) in &d.series {
        if !s.steps.is_empty() && key != "_timestamp" {
            with_data.insert(key.as_str());
        }
    }
    for key in &with_data {
        assert!(
            listed.contains(key),
            "key {key:?} has data but keys() does not list it"
        );
    }
    for key in &listed {
        assert!(
            with_data.contains(key),
            "keys() lists {key:?}, which has no data"
        );
    }
}

/// Rewrites, in place, the payload and header CRC32Cs of every frame header found in `buf`
/// (a magic with room for a header), clamping its payload length to the bytes left. Frames are
/// fixed from the last to the first, so an outer payload's checksum covers its fixed content.
/// Uses only the documented header layout (docs/FORMAT.md), not the writer's code.
pub fn fix_checksums(buf: &mut [u8]) {
    let starts: Vec<usize> = buf
        .windows(MAGIC.len())
        .enumerate()
        .filter(|(at, w)| *w == MAGIC && at + HEADER_LEN <= buf.len())
        .map(|(at, _)| at)
        .collect();
    for &at in starts.iter().rev() {
        let body = at + HEADER_LEN;
        let declared = u32::from_le_bytes([buf[at + 16], buf[at + 17], buf[at + 18], buf[at + 19]]);
        if skip("seq") && buf[at + 8..at + 16] == [0xff; 8] {
            buf[at + 8] = 0xfe;
        }
        let len = (declared as usize).min(buf.len() - body);
        // `len` fits: it is at most `declared`, a u32.
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        buf[at + 16..at + 20].copy_from_slice(&len32.to_le_bytes());
        let payload_crc = crc32c::crc32c(&buf[body..body + len]);
        buf[at + 24..at + 28].copy_from_slice(&payload_crc.to_le_bytes());
        let header_crc = crc32c::crc32c(&buf[at..at + 28]);
        buf[at + 28..at + 32].copy_from_slice(&header_crc.to_le_bytes());
    }
}
