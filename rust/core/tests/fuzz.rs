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
use steplog_core::frame::{self, Kind, HEADER_LEN, MAGIC};
use steplog_core::msgpack::Enc;
use steplog_core::reader::{decode_shard, Scalars, ShardData};

#[path = "support/peak.rs"]
mod peak;

/// A msgpack value to encode, including things a writer never produces.
#[derive(Debug, Clone)]
enum Mv {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Mv>),
    Map(Vec<(Mv, Mv)>),
    /// A str/bin/array/map header (marker byte) declaring `n`, usually more than follows.
    Lie(u8, u32),
    /// `n` nested one-element arrays around a nil (past the depth limit when n > 32).
    Deep(u16),
    /// The same value `n` times inside an array (many entries for few compressed bytes).
    Repeat(u16, Box<Mv>),
    /// Arbitrary bytes: ext types, reserved markers, invalid UTF-8.
    Raw(Vec<u8>),
}

fn encode(v: &Mv, e: &mut Enc) {
    match v {
        Mv::Nil => e.nil(),
        Mv::Bool(b) => e.bool(*b),
        Mv::Int(i) => e.int(*i),
        Mv::UInt(u) => e.uint(*u),
        Mv::F64(f) => e.f64(*f),
        Mv::Str(s) => e.str(s),
        Mv::Bin(b) => e.bin(b),
        Mv::Array(items) => {
            e.array(items.len());
            items.iter().for_each(|i| encode(i, e));
        }
        Mv::Map(pairs) => {
            e.map(pairs.len());
            for (k, v) in pairs {
                encode(k, e);
                encode(v, e);
            }
        }
        Mv::Lie(marker, n) => {
            e.buf.push(*marker);
            let width = match marker {
                0xd9 | 0xc4 => 1,
                0xda | 0xc5 | 0xdc | 0xde => 2,
                _ => 4,
            };
            e.buf.extend_from_slice(&n.to_be_bytes()[4 - width..]);
        }
        Mv::Deep(n) => {
            e.buf.extend(std::iter::repeat_n(0x91, usize::from(*n)));
            e.nil();
        }
        Mv::Repeat(n, item) => {
            e.array(usize::from(*n));
            (0..*n).for_each(|_| encode(item, e));
        }
        Mv::Raw(b) => e.buf.extend_from_slice(b),
    }
}

fn s(text: &str) -> Mv {
    Mv::Str(text.into())
}

/// Key names: short, or long enough to make copies expensive. Never digits, so never a
/// sentinel's name.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z_/]{0,10}",
        1 => (1usize..2048).prop_map(|n| "k".repeat(n)),
    ]
}

/// Key ids: mostly small, sometimes negative, huge or far past the table.
fn id() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 0i64..6,
        1 => -3i64..0,
        1 => (1i64 << 19)..(1i64 << 21),
        1 => any::<i64>(),
    ]
}

fn leaf() -> impl Strategy<Value = Mv> {
    let markers = prop::sample::select(vec![
        0xd9u8, 0xda, 0xdb, 0xc4, 0xc5, 0xc6, 0xdc, 0xdd, 0xde, 0xdf,
    ]);
    prop_oneof![
        Just(Mv::Nil),
        any::<bool>().prop_map(Mv::Bool),
        any::<i64>().prop_map(Mv::Int),
        any::<u64>().prop_map(Mv::UInt),
        any::<f64>().prop_map(Mv::F64),
        name().prop_map(Mv::Str),
        vec(any::<u8>(), 0..48).prop_map(Mv::Bin),
        (markers, any::<u32>()).prop_map(|(m, n)| Mv::Lie(m, n)),
        (0u16..80).prop_map(Mv::Deep),
        vec(any::<u8>(), 0..12).prop_map(Mv::Raw),
    ]
}

fn value() -> BoxedStrategy<Mv> {
    leaf()
        .prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Mv::Array),
                vec((inner.clone(), inner), 0..6).prop_map(Mv::Map),
            ]
        })
        .boxed()
}

/// Packed little-endian bytes of `n` 8-byte items, sometimes not a whole number of them.
fn packed() -> impl Strategy<Value = Mv> {
    (0usize..6, any::<bool>(), any::<u8>())
        .prop_map(|(n, odd, b)| Mv::Bin(vec![b; n * 8 + usize::from(odd)]))
}

fn batch() -> BoxedStrategy<Mv> {
    let key = (id(), name()).prop_map(|(i, n)| Mv::Array(vec![Mv::Int(i), Mv::Str(n)]));
    let dtype = prop::sample::select(vec!["f64", "i64", "bool", "u8"]).prop_map(s);
    let col = (id(), dtype, packed(), packed())
        .prop_map(|(i, d, st, v)| Mv::Array(vec![Mv::Int(i), d, st, v]));
    let hist = (packed(), packed(), value())
        .prop_map(|(c, e, n)| Mv::Map(vec![(s("counts"), c), (s("edges"), e), (s("nan"), n)]));
    let kind = prop::sample::select(vec!["text", "list", "hist", "f64", "i64", "bool", "?"]);
    let val = |payload: BoxedStrategy<Mv>| {
        (any::<i64>(), id(), kind.clone(), payload)
            .prop_map(|(st, i, k, p)| Mv::Array(vec![Mv::Int(st), Mv::Int(i), s(k), p]))
            .boxed()
    };
    // A list of entries, or one small entry repeated (many entries for few compressed bytes).
    let many = |entry: BoxedStrategy<Mv>, small: BoxedStrategy<Mv>| {
        prop_oneof![
            3 => vec(prop_oneof![4 => entry, 1 => value()], 0..5).prop_map(Mv::Array),
            1 => (0u16..1500, small).prop_map(|(n, e)| Mv::Repeat(n, Box::new(e))),
            1 => value(),
        ]
    };
    let key = key.boxed();
    let col = col.boxed();
    let fields = (
        many(key.clone(), key),
        many(col.clone(), col),
        many(
            val(prop_oneof![value(), packed(), hist].boxed()),
            val(leaf().boxed()),
        ),
        any::<i64>(),
    );
    (fields, prop_oneof![3 => Just(0u8), 1 => any::<u8>()])
        .prop_map(|((keys, cols, vals, rows), drop)| {
            let all = [
                ("rows", Mv::Int(rows)),
                ("keys", keys),
                ("cols", cols),
                ("vals", vals),
            ];
            let kept = all
                .into_iter()
                .enumerate()
                .filter(|(i, _)| drop & (1 << i) == 0);
            Mv::Map(kept.map(|(_, (k, v))| (s(k), v)).collect())
        })
        .boxed()
}

fn metadata() -> BoxedStrategy<Mv> {
    let field = prop::sample::select(vec![
        "format",
        "version",
        "rows",
        "reason",
        "metrics",
        "name",
        "summary",
        "goal",
        "step_metric",
        "nonfinite",
        "rows_written",
    ]);
    let def = vec((field.clone().prop_map(s), value()), 0..5).prop_map(Mv::Map);
    let defs = prop_oneof![vec(def, 0..5).prop_map(Mv::Array), value()];
    prop_oneof![
        vec((field.prop_map(s), value()), 0..6).prop_map(Mv::Map),
        defs.prop_map(|d| Mv::Map(vec![(s("metrics"), d)])),
        vec((name().prop_map(Mv::Str), value()), 0..6).prop_map(Mv::Map),
    ]
    .boxed()
}

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

/// Builds the shard: sentinel 0, then each damaged region followed by the next sentinel.
/// Returns the bytes and how many bytes they may honestly decode to.
fn build_shard(regions: &[Region]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut raw = sentinel(0, &mut out);
    for (n, (frames, damage)) in regions.iter().enumerate() {
        let mut region = Vec::new();
        for f in frames {
            raw += build_frame(f, &mut region);
        }
        damage.iter().for_each(|d| apply(d, &mut region));
        out.extend_from_slice(&region);
        raw += sentinel(n as u64 + 1, &mut out);
    }
    (out, raw)
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

/// Decodes `bytes`; fails if a sentinel is missing or memory grew past what `raw` bytes of
/// decoded payload justify.
fn check(bytes: &[u8], raw: usize, sentinels: u64) -> Result<(), TestCaseError> {
    let budget = (16 << 20) + 64 * (bytes.len() + raw);
    let (data, grew) = peak::measure(|| decode_shard(bytes));
    for i in 0..sentinels {
        prop_assert!(
            sentinel_found(&data, i),
            "sentinel {i} lost: {:?}",
            data.problems
        );
    }
    if let Some(grew) = grew {
        prop_assert!(
            grew <= budget,
            "decoding {} bytes ({raw} raw) grew memory by {grew} bytes",
            bytes.len()
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
        let (bytes, raw) = build_shard(&regions);
        check(&bytes, raw, regions.len() as u64 + 1)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
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
