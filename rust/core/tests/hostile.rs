//! Hand-made hostile shards with valid checksums: length and nesting bombs, decompression
//! bombs, and inputs that once made the reader allocate or compute far more than their bytes
//! justify (regressions of bugs found while building the fuzzer). Each must decode without a
//! panic, keep the good frames after it, and stay within a memory budget.

use std::time::Instant;

use steplog_core::batch::DType;
use steplog_core::frame::{self, Kind};
use steplog_core::msgpack::Enc;
use steplog_core::reader::{decode_shard, Scalars, ShardData};

#[path = "support/peak.rs"]
mod peak;

fn frame(kind: Kind, seq: u64, raw: &[u8], zstd: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    frame::append(&mut out, kind, seq, raw, zstd.then_some(&mut c)).unwrap();
    out
}

/// A batch defining `ids` (id, name) with the body `rest` written by the closure.
fn batch(keys: &[(u64, &str)], rest: impl FnOnce(&mut Enc)) -> Vec<u8> {
    let mut e = Enc::default();
    e.map(3);
    e.str("keys");
    e.array(keys.len());
    for (id, name) in keys {
        e.array(2);
        e.uint(*id);
        e.str(name);
    }
    rest(&mut e);
    e.buf
}

/// A good batch of one row: `good = 42` at step 7 (keys 0 and 1, so it is self-contained).
fn good_batch() -> Vec<u8> {
    let raw = batch(&[(0, "_timestamp"), (1, "good")], |e| {
        e.str("cols");
        e.array(2);
        for (id, dtype, v) in [(0u64, "f64", 1.5f64.to_bits()), (1, "i64", 42)] {
            e.array(4);
            e.uint(id);
            e.str(dtype);
            e.bin(&7i64.to_le_bytes());
            e.bin(&v.to_le_bytes());
        }
        e.str("vals");
        e.array(0);
    });
    frame(Kind::Batch, 99, &raw, true)
}

fn has_good(data: &ShardData) -> bool {
    let s = data.series.get(&("good".to_string(), DType::I64));
    s.is_some_and(|s| s.steps == [7] && s.values == Scalars::I64(vec![42]))
}

/// Decodes `bytes` followed by a good batch; checks the good batch survived and memory grew
/// by less than `budget`.
fn decode_then_good(mut bytes: Vec<u8>, budget: usize) -> ShardData {
    bytes.extend(good_batch());
    let (data, grew) = peak::measure(|| decode_shard(&bytes));
    assert!(
        has_good(&data),
        "the good frame after it was lost: {:?}",
        data.problems
    );
    if let Some(grew) = grew {
        assert!(grew < budget, "{} bytes grew memory by {grew}", bytes.len());
    }
    data
}

#[test]
fn key_ids_far_past_the_table_cost_no_memory() {
    let _serial = peak::serial();
    // Regression: each tiny batch defined a key id a million past the last, and the
    // dense id table grew by ~25 MB per frame (2.4 KB of frames took 1 GB).
    let mut bytes = Vec::new();
    for n in 1..=40u64 {
        let raw = batch(&[(n << 20, "k")], |e| {
            e.str("cols");
            e.array(0);
            e.str("vals");
            e.array(0);
        });
        bytes.extend(frame(Kind::Batch, n, &raw, false));
    }
    let data = decode_then_good(bytes, 16 << 20);
    assert!(data.problems.is_empty(), "{:?}", data.problems);
}

#[test]
fn many_values_under_a_long_name_share_it() {
    let _serial = peak::serial();
    // Regression: each value entry copied its key's name, so 8-byte entries under a
    // long name multiplied memory by the name's length.
    let name = "n".repeat(1024);
    let entries = 400_000;
    let raw = batch(&[(0, "_timestamp"), (1, &name)], |e| {
        e.str("cols");
        e.array(0);
        e.str("vals");
        e.array(entries);
        for _ in 0..entries {
            e.array(4);
            e.int(0);
            e.uint(1);
            e.str("i64");
            e.int(0);
        }
    });
    let z = frame(Kind::Batch, 1, &raw, true);
    let data = decode_then_good(z, 64 * raw.len());
    assert_eq!(data.others.len(), entries);
}

#[test]
fn key_names_outside_the_format_limits_are_refused() {
    let _serial = peak::serial();
    for name in ["k".repeat(1025), String::new(), "a\0b".into()] {
        let raw = batch(&[(0, "_timestamp"), (1, &name)], |e| {
            e.str("cols");
            e.array(0);
            e.str("vals");
            e.array(0);
        });
        let data = decode_then_good(frame(Kind::Batch, 1, &raw, false), 16 << 20);
        assert_eq!(data.problems.len(), 1, "{:?}", data.problems);
    }
}

fn metrics(names: impl Iterator<Item = String>, n: usize) -> Vec<u8> {
    let mut e = Enc::default();
    e.map(1);
    e.str("metrics");
    e.array(n);
    for name in names {
        e.map(1);
        e.str("name");
        e.str(&name);
    }
    e.buf
}

#[test]
fn a_metrics_frame_decodes_in_linear_time_with_define_semantics() {
    let _serial = peak::serial();
    // Regression: each definition was `define`d in turn, quadratic in the number of
    // distinct names (300,000 took many minutes).
    let n = 300_000;
    let raw = metrics((0..n).map(|i| format!("m{i}")), n);
    let t = Instant::now();
    let data = decode_then_good(frame(Kind::Metrics, 1, &raw, true), 64 * raw.len());
    assert_eq!(data.metrics.as_slice().len(), n);
    assert!(t.elapsed().as_secs() < 30, "took {:?}", t.elapsed());

    let raw = metrics(["a", "b", "a", "c", "b"].map(String::from).into_iter(), 5);
    let data = decode_shard(&frame(Kind::Metrics, 1, &raw, false));
    let names: Vec<&str> = data.metrics.as_slice().iter().map(|d| &*d.name).collect();
    assert_eq!(
        names,
        ["a", "c", "b"],
        "a redefinition moves a name to the end"
    );
}

#[test]
fn msgpack_length_and_nesting_bombs_are_refused() {
    let _serial = peak::serial();
    let mut bombs: Vec<Vec<u8>> = vec![
        vec![0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4 billion items
        vec![0xdf, 0xff, 0xff, 0xff, 0xff], // map32 of 4 billion pairs
        vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'x'], // str32 of 4 GiB
        vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0], // bin32 of 4 GiB
        vec![0xc7, 0x01, 0x05, 0x00],       // an ext type
        vec![0x91; 100_000],                // nested 100,000 deep
    ];
    // A map of a million one-byte keys and values: real, so decoded, and bounded.
    let mut big = vec![0xdf, 0x00, 0x0f, 0x42, 0x40];
    big.extend(std::iter::repeat_n([0x01u8, 0x02], 1_000_000).flatten());
    bombs.push(big);
    for (n, raw) in bombs.iter().enumerate() {
        for kind in [
            Kind::Batch,
            Kind::Summary,
            Kind::Metrics,
            Kind::Gap,
            Kind::Close,
        ] {
            let budget = (16 << 20) + 48 * raw.len();
            let data = decode_then_good(frame(kind, 1, raw, n % 2 == 0), budget);
            assert!(data.problems.len() <= 1, "{:?}", data.problems);
        }
    }
}

#[test]
fn decompression_bombs_are_refused_without_allocating_their_size() {
    let _serial = peak::serial();
    let zeros = vec![0u8; 100 << 20];
    let z = zstd::bulk::compress(&zeros, 3).unwrap();
    let mut lying = Vec::new();
    // The header says 64 KiB; the stream (declaring 100 MiB) expands to 100 MiB.
    frame::append(&mut lying, Kind::Batch, 1, &z, None).unwrap();
    lying[5] = 1; // codec zstd
    lying[20..24].copy_from_slice(&(64u32 << 10).to_le_bytes());
    let crc = crc32c::crc32c(&lying[0..28]);
    lying[28..32].copy_from_slice(&crc.to_le_bytes());
    drop(zeros);
    let data = decode_then_good(lying, 16 << 20);
    assert_eq!(data.problems.len(), 1, "{:?}", data.problems);
    assert!(
        data.problems[0].reason.contains("zstd"),
        "{:?}",
        data.problems
    );
}

#[test]
fn resynchronising_over_crafted_headers_takes_linear_time() {
    let _serial = peak::serial();
    // Every 32 bytes a header with a valid checksum whose payload runs to the end of the file
    // with a wrong payload checksum: each resynchronisation candidate costs a checksum of the
    // rest of the file unless that work is bounded.
    let len = 4 << 20;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() + 32 <= len {
        let at = bytes.len();
        let payload_len = (len - at - 32) as u32;
        bytes.extend_from_slice(b"SLG1");
        bytes.extend_from_slice(&[2, 0, 0, 0]);
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&payload_len.to_le_bytes());
        bytes.extend_from_slice(&payload_len.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[at..at + 28]);
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    let t = Instant::now();
    let data = decode_then_good(bytes, 16 << 20);
    assert!(
        data.rows == 1 && t.elapsed().as_secs() < 30,
        "took {:?}",
        t.elapsed()
    );
}

/// Found by the fuzzer: a frame cut by one byte, whose last payload byte was `S`, followed by
/// a good frame. Its header and the next frame's first byte form a frame with valid checksums
/// again, so it is decoded (and reported for its unknown codec) and the next frame is lost.
const OVERLAP: [&str; 8] = [
    "534c473102010000e8030000000000005d0000006b000000d28df38bde39f6a628b52ffd206ba502",
    "00840484a4726f777301a46b657973929200aa5f74696d657374616d7092cd0384aa73656e74696e",
    "656c2f30a4636f6c73929400a3663634c40800f83f94cd0384a3690000a476616c739003003f29b7",
    "bc802e8002534c473101020000000000000000000006000000060000005730e355049b9175c40400",
    "0000534c473102010000e903000000000000640000006b000000ae6e64c014b5ec3c28b52ffd206b",
    "dd0200e40484a4726f777301a46b657973929200aa5f74696d657374616d7092cd0385aa73656e74",
    "696e656c2f31a4636f6c73929400a3663634c4080100c40800f83f94cd0385a369ef1e0000a47661",
    "6c7390040020c03f250762e400a0",
];

#[test]
fn a_cut_frame_that_ends_on_the_next_magic_is_a_good_frame() {
    let _serial = peak::serial();
    let hex: String = OVERLAP.concat();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let data = decode_shard(&bytes);
    let reasons: Vec<(usize, &str)> = data
        .problems
        .iter()
        .map(|p| (p.offset, p.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (125, "unknown codec 2"),
            (163, "bytes that are not a frame")
        ]
    );
    assert_eq!(data.keys, ["sentinel/0"]);
}
