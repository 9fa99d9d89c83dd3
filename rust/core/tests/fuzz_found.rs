//! Findings of the coverage-guided fuzzer (`fuzz/`, docs/FUZZING.md), each reduced to a small
//! shard that fails the fuzz targets' checks (`fuzz/src/lib.rs`, shared here): the reader must
//! not panic, and its views of a shard must agree with each other. Each failed on the reader
//! it was found on.

use steplog_core::reader::decode_shard;
use steplog_core::{Logger, MemorySink, ShardInfo, Value, WriterConfig};

#[path = "../../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

/// A small, well-formed shard with three rows of `keys`: histograms (40 values) for names
/// ending in `_hist`, floats for the others.
fn shard(shard: &str, keys: &[&str]) -> Vec<u8> {
    let sink = MemorySink::new();
    let info = ShardInfo {
        run_id: "r1".into(),
        shard: shard.into(),
        pid: 7,
        host: "h".into(),
        ..ShardInfo::default()
    };
    let logger = Logger::start(Box::new(sink.clone()), &info, WriterConfig::default()).unwrap();
    for i in 0..3 {
        let x = f64::from(i);
        let cells: Vec<_> = keys
            .iter()
            .map(|&k| {
                let v = if k.ends_with("_hist") {
                    Value::Histogram(Box::new(steplog_core::histogram::bin_f64(&[x; 40], 4)))
                } else {
                    Value::F64(x)
                };
                (k, v)
            })
            .collect();
        logger.log(None, None, cells).unwrap();
    }
    logger.finish().unwrap();
    sink.bytes()
}

#[test]
fn the_shards_used_below_pass_the_checks_alone() {
    for keys in [&["a", "a_hist"][..], &["b", "b_hist"], &["x", "y"], &["y"]] {
        let d = checks::decode_and_check(&shard("s-1", keys));
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.keys, keys);
    }
}

/// Found by `decode_shard` on its first input (two shards concatenated, a seed): each shard's
/// key table gives its own names to the same ids, and the reader keeps the last name of each
/// id for `keys` while the data of the first shard keeps the first names, so `keys` lists
/// `b` and `b_hist` but neither `a` (its values are in `series`) nor `a_hist` (in `others`):
/// in Python, `r.keys()` omits keys whose `r.history()` works. This is issue 11 §4's
/// "conflicting key tables", reached through a shard appended to another.
#[test]
fn concatenated_shards_keep_keys_and_data_in_agreement() {
    let mut bytes = shard("s-1", &["a", "a_hist"]);
    bytes.extend(shard("s-2", &["b", "b_hist"]));
    checks::decode_and_check(&bytes);
}

/// The same cause, the other symptom the fuzzer found (5 of 70 findings of this kind): the
/// second shard gives `y` the id the first gave `x`, so `keys` lists `y` twice and not `x`.
#[test]
fn a_second_key_table_does_not_list_a_key_twice() {
    let mut bytes = shard("s-1", &["x", "y"]);
    bytes.extend(shard("s-2", &["y"]));
    checks::decode_and_check(&bytes);
}

/// Found by `decode_shard_crc` within seconds: `decode_shard` computes `header.seq + 1`
/// (reader.rs, `next_seq = next_seq.max(header.seq + 1)`), which overflows for a frame whose
/// sequence number is `u64::MAX`: a panic where overflow checks are on (debug builds, this
/// test), and in release builds a silent wrap to 0, after which the frame numbering checks
/// run from the wrong place.
#[test]
fn a_frame_numbered_u64_max_does_not_overflow() {
    let mut bytes = shard("s-1", &["a"]);
    // The first frame's sequence number (bytes 8..16 of its header, docs/FORMAT.md).
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    checks::fix_checksums(&mut bytes);
    let d = decode_shard(&bytes);
    assert!(d.keys.contains(&"a".to_string()));
}

/// The same finding as the fuzzer minimised it (37 bytes: junk, then a batch frame header with
/// sequence number `u64::MAX`), through what `decode_shard_crc` does to every input.
#[test]
fn the_minimised_u64_max_input_does_not_overflow() {
    let mut bytes = include_bytes!("data/fuzz/decode_shard_crc-seq-u64-max").to_vec();
    checks::fix_checksums(&mut bytes);
    checks::decode_and_check(&bytes);
}
