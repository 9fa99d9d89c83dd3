//! Tests of batch decoding: both column forms, columns that fail halfway, declared limits.

use super::super::decode_shard;
use super::*;
use crate::frame::{append, Kind};
use crate::msgpack::Enc;

/// A shard of one batch frame whose `cols` `write_cols` writes (two rows, key 1 "x").
fn shard(ncols: usize, write_cols: impl Fn(&mut Enc)) -> Vec<u8> {
    let mut e = Enc::default();
    e.map(4);
    e.str("rows");
    e.uint(2);
    e.str("keys");
    e.array(2);
    for (id, name) in [(0, TIMESTAMP_KEY), (1, "x")] {
        e.array(2);
        e.uint(id);
        e.str(name);
    }
    e.str("cols");
    e.array(ncols);
    write_cols(&mut e);
    e.str("vals");
    e.array(0);
    let mut out = Vec::new();
    append(&mut out, Kind::Batch, 0, &e.buf, None).unwrap();
    out
}

fn le(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn the_array_form_of_steplog_0_1_still_decodes() {
    let bytes = shard(2, |e| {
        for (id, dtype, values) in [
            (0, "f64", le(&[1.5f64.to_bits(), 2.5f64.to_bits()])),
            (1, "i64", le(&[(-7i64) as u64, 9])),
        ] {
            e.array(4);
            e.uint(id);
            e.str(dtype);
            e.bin(&le(&[3, 4]));
            e.bin(&values);
        }
    });
    let d = decode_shard(&bytes);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.rows, 2);
    let ts = &d.series[&(TIMESTAMP_KEY.to_string(), DType::F64)];
    assert_eq!(ts.steps, [3, 4]);
    assert_eq!(ts.values, Scalars::F64(vec![1.5, 2.5]));
    let x = &d.series[&("x".to_string(), DType::I64)];
    assert_eq!(x.values, Scalars::I64(vec![-7, 9]));
}

fn encoded_column(e: &mut Enc, id: u64, dtype: &str, n: u64, values: impl Fn(&mut Enc)) {
    e.array(5);
    e.uint(id);
    e.str(dtype);
    e.uint(n);
    column::write(
        e,
        &[0, 1],
        column::Plan::Trim { skip: 0 },
        false,
        &mut Vec::new(),
    );
    values(e);
}

#[test]
fn a_column_that_fails_halfway_adds_nothing() {
    // Steps decode, values do not (a trim of 7 bytes per value holding 1 byte): the
    // batch is damaged, and no series gets steps without values.
    let bytes = shard(1, |e| {
        encoded_column(e, 1, "f64", 2, |e| {
            e.array(3);
            e.str("trim");
            e.uint(1);
            e.bin(&[0; 2]);
        });
    });
    let d = decode_shard(&bytes);
    assert_eq!(d.problems.len(), 1);
    assert!(d.problems[0].reason.contains("trim"), "{:?}", d.problems);
    assert!(d.series.is_empty());
}

#[test]
fn declared_lengths_beyond_the_limit_are_refused_before_allocating() {
    let huge = column::MAX_BATCH_VALUES as u64 + 1;
    let bytes = shard(1, |e| {
        encoded_column(e, 1, "i64", huge, |e| {
            e.array(5);
            e.str("delta");
            e.int(0);
            e.int(1);
            e.uint(0);
            e.bin(&[]);
        });
    });
    let d = decode_shard(&bytes);
    assert_eq!(d.problems.len(), 1);
    assert!(d.series.is_empty());
    // Two columns within the limit each but over it together: refused as well.
    let half = column::MAX_BATCH_VALUES as u64 / 2 + 1;
    let delta = |e: &mut Enc| {
        e.array(5);
        e.str("delta");
        e.int(0);
        e.int(1);
        e.uint(0);
        e.bin(&[]);
    };
    let bytes = shard(2, |e| {
        for dtype in ["i64", "f64"] {
            e.array(5);
            e.uint(1);
            e.str(dtype);
            e.uint(half);
            delta(e);
            delta(e);
        }
    });
    let d = decode_shard(&bytes);
    assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
    assert!(d.problems[0].reason.contains("more values"));
}

#[test]
fn bools_and_micros_keep_to_their_dtypes() {
    let micros = |e: &mut Enc| {
        column::write(
            e,
            &[1, 2],
            column::plan_delta(&[1, 2]),
            true,
            &mut Vec::new(),
        );
    };
    for dtype in ["i64", "bool"] {
        let bytes = shard(1, |e| encoded_column(e, 1, dtype, 2, micros));
        assert_eq!(decode_shard(&bytes).problems.len(), 1, "{dtype}");
    }
    let bytes = shard(1, |e| encoded_column(e, 1, "f64", 2, micros));
    let d = decode_shard(&bytes);
    assert!(d.problems.is_empty());
    let x = &d.series[&("x".to_string(), DType::F64)];
    assert_eq!(x.values, Scalars::F64(vec![1e-6, 2e-6]));
}
