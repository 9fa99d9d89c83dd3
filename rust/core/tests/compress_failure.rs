//! A compression failure in the writer: no byte of the failed frame reaches the sink, its rows
//! are counted as failed and recorded in a gap frame, and every other frame is intact. Alone
//! in its test binary: the failure is injected through a TEST ONLY variable read once per
//! process.

use std::time::Duration;

use steplog_core::batch::{DType, Framed};
use steplog_core::frame::{Compress, Event, Frames, Kind};
use steplog_core::keys::{Interner, KeyRegistry};
use steplog_core::msgpack::Enc;
use steplog_core::reader::decode_shard;
use steplog_core::value::Cell;
use steplog_core::{Logger, MemorySink, ShardInfo, Value};

/// Fails its second call, after scribbling over the output, as a broken codec might.
struct SecondFails(zstd::bulk::Compressor<'static>, u32);

impl Compress for SecondFails {
    fn compress(&mut self, raw: &[u8], cuts: &[usize], out: &mut [u8]) -> Result<usize, String> {
        self.1 += 1;
        if self.1 == 2 {
            out.fill(0xEE);
            return Err("injected".into());
        }
        Compress::compress(&mut self.0, raw, cuts, out)
    }
}

fn steps(bytes: &[u8]) -> Vec<i64> {
    let d = decode_shard(bytes);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    d.series[&("_timestamp".to_string(), DType::F64)]
        .steps
        .clone()
}

#[test]
fn a_failed_compression_leaves_no_junk_and_counts_its_rows() {
    // The batch's framing, with the failure injected directly.
    let registry = KeyRegistry::new();
    let x = Interner::new(registry.clone()).intern("x").unwrap();
    let mut batch = steplog_core::batch::Batch::default();
    for i in 0..20_000 {
        let cell = Cell {
            key: x,
            value: Value::I64(i),
        };
        batch.add_row(i, 1.7e9, std::iter::once(cell));
    }
    let mut z = SecondFails(zstd::bulk::Compressor::new(3).unwrap(), 0);
    let (mut seq, mut out, mut enc) = (1, Vec::new(), Enc::default());
    let framed = batch.write_frames(&registry, &mut enc, Some(&mut z), &mut seq, &mut out);
    let Framed {
        frames,
        rows,
        failed_rows,
        too_large_rows,
        ref error,
        ..
    } = framed;
    assert_eq!((frames, failed_rows, too_large_rows), (2, 8192, 0));
    assert_eq!(rows, 20_000 - 8192);
    assert!(error.as_deref().unwrap().contains("injected"), "{error:?}");
    assert_eq!(seq, 3, "the failed frame takes no number");
    assert!(Frames::new(&out).all(|ev| matches!(ev, Event::Frame { .. })));
    let want: Vec<i64> = (0..8192).chain(16_384..20_000).collect();
    assert_eq!(steps(&out), want);

    // The writer: the failed frame's rows are counted and recorded, nothing of it written.
    std::env::set_var("STEPLOG_TEST_COMPRESS_FAIL", "2");
    let sink = MemorySink::new();
    let lg = Logger::start(
        Box::new(sink.clone()),
        &ShardInfo::default(),
        Default::default(),
    )
    .unwrap();
    for i in 0..20_000 {
        lg.log(None, None, vec![("x", Value::I64(i))]).unwrap();
    }
    lg.flush(Duration::from_secs(30)).unwrap();
    let stats = lg.finish().unwrap();
    let bytes = sink.bytes();
    assert!(Frames::new(&bytes).all(|ev| matches!(ev, Event::Frame { .. })));
    let d = decode_shard(&bytes);
    let failed: u64 = d.gaps.iter().map(|(n, _)| n).sum();
    assert!(failed > 0 && d.gaps.iter().all(|(_, r)| r == "compress_error"));
    assert_eq!(stats.rows_failed, failed);
    assert_eq!(stats.rows_written + stats.rows_failed, 20_000);
    assert_eq!(d.rows, stats.rows_written);
    assert!(stats
        .first_error
        .as_deref()
        .unwrap()
        .contains("compression failed"));
    let batches = Frames::new(&bytes)
        .filter(|ev| matches!(ev, Event::Frame { header, .. } if header.kind == Kind::Batch as u8))
        .count();
    assert!(batches >= 1, "the other frames are written");
    assert_eq!(stats.frames_written, Frames::new(&bytes).count() as u64);
}
