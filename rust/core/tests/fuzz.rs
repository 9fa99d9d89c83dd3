//! Structure-aware fuzzing of the shard decoder (`reader::decode_shard`) with proptest.
//!
//! Each case builds a shard from random frames (random kinds, codecs, flags and sequence
//! numbers; msgpack payloads shaped like batches, metrics and metadata or arbitrary, with
//! oversized length declarations, deep nesting, long names and invalid bytes; honest, lying,
//! cut or junk zstd streams) whose header and payload CRC32Cs are recomputed, so the cases
//! reach zstd and msgpack decoding instead of stopping at a checksum. Good "sentinel" batches
//! sit between the random regions, which are then damaged (truncated, bit-flipped, zeroed,
//! duplicated). Every case must decode without a panic, decode every sentinel, and stay
//! within a memory budget proportional to the bytes it was given.
//!
//! `STEPLOG_FUZZ_CASES=200000 cargo test -p steplog-core --release --test fuzz` fuzzes longer
//! (the default, 2000 cases, keeps `cargo test` fast). Inputs that once failed are kept below
//! as regression tests.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use steplog_core::batch::DType;
use steplog_core::frame::{self, Event, Frames, Kind, HEADER_LEN, MAGIC};
use steplog_core::msgpack::Enc;
use steplog_core::reader::{decode_shard, Scalars, ShardData};

#[path = "support/peak.rs"]
mod peak;

#[path = "support/mp.rs"]
mod mp;

use mp::{batch, encode, metadata, value, Mv};

#[derive(Debug, Clone)]
enum Codec {
    Plain,
    /// zstd, with or without the content size in the frame, `raw_len` off by `lie`, and the
    /// stream cut to `cut` bytes when given.
    Zstd {
        size: bool,
        lie: i64,
        cut: Option<Index>,
    },
    /// Bytes that claim to be zstd.
    Junk(Vec<u8>, u32),
    /// A codec number this format does not define.
    Other(u8),
}

#[derive(Debug, Clone)]
struct FrameSpec {
    kind: u8,
    codec: Codec,
    flags: u16,
    seq: u64,
    payload: Mv,
    /// A byte of the msgpack changed before compression and checksums (reaches the decoder).
    raw_flip: Option<(Index, u8)>,
    fix_crc: bool,
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    let kind = prop_oneof![8 => 1u8..=6, 1 => any::<u8>()];
    let lie = prop_oneof![6 => Just(0i64), 1 => -3i64..3, 1 => any::<u32>().prop_map(i64::from)];
    let codec = prop_oneof![
        4 => Just(Codec::Plain),
        4 => (any::<bool>(), lie, proptest::option::weighted(0.1, any::<Index>()))
            .prop_map(|(size, lie, cut)| Codec::Zstd { size, lie, cut }),
        1 => (vec(any::<u8>(), 0..64), any::<u32>()).prop_map(|(b, n)| Codec::Junk(b, n)),
        1 => (2u8..=255).prop_map(Codec::Other),
    ];
    let payload = prop_oneof![3 => batch(), 1 => metadata(), 1 => value()];
    let raw_flip = proptest::option::weighted(0.2, (any::<Index>(), 1u8..=255));
    let fix_crc = prop::bool::weighted(0.95);
    (
        kind,
        codec,
        any::<u16>(),
        0u64..20,
        payload,
        raw_flip,
        fix_crc,
    )
        .prop_map(
            |(kind, codec, flags, seq, payload, raw_flip, fix_crc)| FrameSpec {
                kind,
                codec,
                flags: flags & 0x0101,
                seq,
                payload,
                raw_flip,
                fix_crc,
            },
        )
}

/// Appends the frame; returns the bytes it may honestly decode to.
fn build_frame(f: &FrameSpec, out: &mut Vec<u8>) -> usize {
    let mut e = Enc::default();
    encode(&f.payload, &mut e);
    let mut raw = e.buf;
    if let (Some((at, x)), false) = (f.raw_flip, raw.is_empty()) {
        let i = at.index(raw.len());
        raw[i] ^= x;
    }
    let (codec, stored, raw_len) = match &f.codec {
        Codec::Plain => (0u8, raw.clone(), raw.len() as u32),
        Codec::Zstd { size, lie, cut } => {
            let mut c = zstd::bulk::Compressor::new(1).unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(*size))
                .unwrap();
            let mut z = c.compress(&raw).unwrap();
            if let Some(cut) = cut {
                z.truncate(cut.index(z.len() + 1));
            }
            let declared = (raw.len() as i64 + lie).clamp(0, i64::from(u32::MAX));
            (1, z, declared as u32)
        }
        Codec::Junk(bytes, n) => (1, bytes.clone(), *n % (1 << 20)),
        Codec::Other(c) => (*c, raw.clone(), raw.len() as u32),
    };
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[f.kind, codec]);
    out.extend_from_slice(&f.flags.to_le_bytes());
    out.extend_from_slice(&f.seq.to_le_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&raw_len.to_le_bytes());
    let pcrc = crc32c::crc32c(&stored) ^ u32::from(!f.fix_crc);
    out.extend_from_slice(&pcrc.to_le_bytes());
    let hcrc = crc32c::crc32c(&out[start..start + 28]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&stored);
    raw.len().max(stored.len())
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    Flip(Index, u8),
    Zero(Index, u8),
    Duplicate(Index, u16),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Damage::Zero(i, n)),
        (any::<Index>(), any::<u16>()).prop_map(|(i, n)| Damage::Duplicate(i, n)),
    ]
}

fn apply(d: &Damage, region: &mut Vec<u8>) {
    if region.is_empty() {
        return;
    }
    match d {
        Damage::Truncate(at) => region.truncate(at.index(region.len())),
        Damage::Flip(at, x) => {
            let i = at.index(region.len());
            region[i] ^= x;
        }
        Damage::Zero(at, n) => {
            let i = at.index(region.len());
            let end = (i + usize::from(*n)).min(region.len());
            region[i..end].fill(0);
        }
        Damage::Duplicate(at, n) => {
            let i = at.index(region.len());
            let end = (i + usize::from(*n)).min(region.len());
            let copy = region[i..end].to_vec();
            region.splice(end..end, copy);
        }
    }
}

type Region = (Vec<FrameSpec>, Vec<Damage>);

const SENTINEL_ID: u64 = 900;

/// A good batch of one row whose key `sentinel/<i>` no random frame can name.
fn sentinel(i: u64, out: &mut Vec<u8>) -> usize {
    let mut e = Enc::default();
    e.map(4);
    e.str("rows");
    e.uint(1);
    e.str("keys");
    e.array(2);
    for (id, name) in [
        (0, "_timestamp".to_string()),
        (SENTINEL_ID + i, format!("sentinel/{i}")),
    ] {
        e.array(2);
        e.uint(id);
        e.str(&name);
    }
    e.str("cols");
    e.array(2);
    for (id, dtype, v) in [
        (0, "f64", 1.5f64.to_bits()),
        (SENTINEL_ID + i, "i64", i * 7919),
    ] {
        e.array(4);
        e.uint(id);
        e.str(dtype);
        e.bin(&i.to_le_bytes());
        e.bin(&v.to_le_bytes());
    }
    e.str("vals");
    e.array(0);
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    frame::append(out, Kind::Batch, 1000 + i, &e.buf, Some(&mut c)).unwrap();
    e.buf.len()
}

struct Shard {
    bytes: Vec<u8>,
    /// Bytes the payloads may honestly decode to.
    raw: usize,
    /// Where each sentinel lies.
    sentinels: Vec<(usize, usize)>,
}

/// Builds the shard: sentinel 0, then each damaged region followed by the next sentinel.
fn build_shard(regions: &[Region]) -> Shard {
    let mut out = Vec::new();
    let mut raw = sentinel(0, &mut out);
    let mut sentinels = vec![(0, out.len())];
    for (n, (frames, damage)) in regions.iter().enumerate() {
        let mut region = Vec::new();
        for f in frames {
            raw += build_frame(f, &mut region);
        }
        damage.iter().for_each(|d| apply(d, &mut region));
        out.extend_from_slice(&region);
        let start = out.len();
        raw += sentinel(n as u64 + 1, &mut out);
        sentinels.push((start, out.len()));
    }
    Shard {
        bytes: out,
        raw,
        sentinels,
    }
}

/// Whether damage ahead of a sentinel forms a frame with valid checksums (checked here, not
/// trusted from the walker) that overlaps it: then the sentinel is rightly lost. (Found by the
/// fuzzer: a frame cut by one byte whose last byte was `S` ended on the sentinel's magic.)
fn overlapped(bytes: &[u8], (start, end): (usize, usize)) -> bool {
    Frames::new(bytes).any(|e| match e {
        Event::Frame {
            offset, payload, ..
        } => {
            let h = &bytes[offset..offset + HEADER_LEN];
            let crc = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
            let valid = crc32c::crc32c(&h[..28]) == crc(28) && crc32c::crc32c(payload) == crc(24);
            let frame_end = offset + HEADER_LEN + payload.len();
            valid && offset != start && offset < end && frame_end > start
        }
        Event::Damaged { .. } => false,
    })
}

fn sentinel_found(data: &ShardData, i: u64) -> bool {
    let Some(series) = data.series.get(&(format!("sentinel/{i}"), DType::I64)) else {
        return false;
    };
    let Scalars::I64(values) = &series.values else {
        return false;
    };
    let want = (i as i64, (i * 7919) as i64);
    series
        .steps
        .iter()
        .zip(values)
        .any(|(s, v)| (*s, *v) == want)
}

/// Decodes the shard; fails if a sentinel that no good frame overlaps is missing, or memory
/// grew past what the decoded payloads justify.
fn check(shard: &Shard) -> Result<(), TestCaseError> {
    let bytes = &shard.bytes;
    let budget = (16 << 20) + 64 * (bytes.len() + shard.raw);
    let (data, grew) = peak::measure(|| decode_shard(bytes));
    for (i, range) in shard.sentinels.iter().enumerate() {
        prop_assert!(
            sentinel_found(&data, i as u64) || overlapped(bytes, *range),
            "sentinel {i} lost: {:?} in {}",
            data.problems,
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
    // The reader's views agree: a key is listed once, if and only if it has values.
    let listed: std::collections::HashSet<&str> = data.keys.iter().map(String::as_str).collect();
    prop_assert_eq!(listed.len(), data.keys.len(), "a key listed twice");
    for (name, _) in data.series.keys() {
        prop_assert!(
            name == "_timestamp" || listed.contains(name.as_str()),
            "{name} unlisted"
        );
    }
    for (_, name, _) in &data.others {
        prop_assert!(listed.contains(&**name), "{name} unlisted");
    }
    for k in &data.keys {
        let has = data.series.keys().any(|(n, _)| n == k) || data.others.iter().any(|o| &*o.1 == k);
        prop_assert!(has, "{k} listed without values");
    }
    if let Some(grew) = grew {
        prop_assert!(
            grew <= budget,
            "decoding {} bytes ({} raw) grew memory by {grew} bytes",
            bytes.len(),
            shard.raw
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("STEPLOG_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_frames_never_panic_and_spare_good_frames(
        regions in vec((vec(frame_spec(), 0..5), vec(damage(), 0..3)), 1..4),
    ) {
        let _serial = peak::serial();
        check(&build_shard(&regions))?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
        let _serial = peak::serial();
        let mut with_magic = bytes.clone();
        for at in (0..with_magic.len().saturating_sub(4)).step_by(97) {
            with_magic[at..at + 4].copy_from_slice(&MAGIC);
        }
        decode_shard(&bytes);
        decode_shard(&with_magic);
        for cut in [HEADER_LEN.min(bytes.len()), bytes.len() / 2] {
            decode_shard(&bytes[..cut]);
        }
    }
}
