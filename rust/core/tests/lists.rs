//! List values: shape and element type survive the writer and the reader; the reader refuses
//! an `array` whose shape and data disagree; old flat `list` values still read.

use steplog_core::batch::encode_other;
use steplog_core::msgpack::{decode, Enc};
use steplog_core::reader::{decode_other, decode_shard};
use steplog_core::{List, ListData, Logger, MemorySink, ShardInfo, Value, WriterConfig};

fn list(shape: &[usize], data: ListData) -> Value {
    Value::List(Box::new(List::new(shape, data).unwrap()))
}

#[test]
fn lists_keep_their_shape_and_element_type_through_the_writer() {
    let sink = MemorySink::new();
    let logger = Logger::start(
        Box::new(sink.clone()),
        &ShardInfo::default(),
        WriterConfig::default(),
    )
    .unwrap();
    let values = vec![
        (
            "ints",
            list(&[2, 2], ListData::I64(vec![1, -2, 3, i64::MAX].into())),
        ),
        (
            "flat",
            list(&[3], ListData::F64(vec![0.5, -0.0, f64::NAN].into())),
        ),
        (
            "bools",
            list(&[1, 2], ListData::Bool(vec![true, false].into())),
        ),
        (
            "cube",
            list(&[2, 1, 2], ListData::F64(vec![1.0, 2.0, 3.0, 4.0].into())),
        ),
        ("empty", list(&[0], ListData::F64(Vec::new().into()))),
    ];
    logger.log(None, None, values.clone()).unwrap();
    logger.finish().unwrap();
    let data = decode_shard(&sink.bytes());
    assert!(data.problems.is_empty(), "{:?}", data.problems);
    assert_eq!(data.others.len(), values.len());
    for ((step, key, got), (name, want)) in data.others.iter().zip(&values) {
        assert_eq!((*step, key.as_ref()), (0, *name));
        match (got, want) {
            (Value::List(g), Value::List(w)) => {
                assert_eq!(g.shape(), w.shape(), "{name}");
                match (g.data(), w.data()) {
                    (ListData::F64(a), ListData::F64(b)) => assert!(a
                        .iter()
                        .zip(b.iter())
                        .all(|(x, y)| x.to_bits() == y.to_bits())),
                    (a, b) => assert_eq!(a, b, "{name}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_one_dimensional_float_list_keeps_the_old_list_form() {
    let mut out = Enc::default();
    out.array(2);
    encode_other(&list(&[2], ListData::F64(vec![1.0, 2.0].into())), &mut out);
    let mp = decode(&out.buf).unwrap();
    let items = mp.as_array().unwrap();
    assert_eq!(items[0].as_str(), Some("list"));
    assert_eq!(items[1].as_bin().map(<[u8]>::len), Some(16));
}

/// An `array` payload with the given fields.
fn array(dtype: &str, shape: &[i64], data: &[u8]) -> Vec<u8> {
    let mut out = Enc::default();
    out.map(3);
    out.str("dtype");
    out.str(dtype);
    out.str("shape");
    out.array(shape.len());
    for d in shape {
        out.int(*d);
    }
    out.str("data");
    out.bin(data);
    out.buf
}

#[test]
fn arrays_whose_shape_and_data_disagree_are_refused() {
    let eight = 7i64.to_le_bytes();
    let sixteen = [eight, eight].concat();
    let ok = array("i64", &[2, 1], &sixteen);
    let v = decode_other("array", &decode(&ok).unwrap()).unwrap();
    assert_eq!(v, list(&[2, 1], ListData::I64(vec![7, 7].into())));
    for bad in [
        array("i64", &[3], &sixteen),                  // count mismatch
        array("i64", &[2], &sixteen[..12]),            // not whole elements
        array("f32", &[2], &sixteen),                  // unknown dtype
        array("bool", &[2], &[0, 2]),                  // a bool that is not 0/1
        array("i64", &[-2], &sixteen),                 // negative dimension
        array("f64", &[1 << 40, 0], &[]),              // an empty array must be the empty list
        array("i64", &[1; 33], &eight),                // too many dimensions
        array("i64", &[i64::MAX, i64::MAX], &sixteen), // overflowing product
    ] {
        let mp = decode(&bad).unwrap();
        assert!(decode_other("array", &mp).is_err(), "{mp:?}");
    }
}
