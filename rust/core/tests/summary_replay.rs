//! The summary recomputed from a shard's history (for a shard whose summary frames were
//! lost) equals the live summary the writer kept for the same rows.

use std::time::Duration;

use steplog_core::frame::{Event, Frames, Kind, HEADER_LEN};
use steplog_core::reader::decode_shard;
use steplog_core::summary::HistoryStats;
use steplog_core::{Histogram, List, Value};

#[path = "support/shard.rs"]
mod shard;
use shard::{define, start};

/// The shard without its summary frames (as if each write had been torn before them).
fn without_summaries(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in Frames::new(bytes) {
        if let Event::Frame {
            offset,
            header,
            payload,
        } = ev
        {
            if header.kind != Kind::Summary as u8 {
                out.extend_from_slice(&bytes[offset..offset + HEADER_LEN + payload.len()]);
            }
        }
    }
    out
}

#[test]
fn the_recomputed_summary_equals_the_live_one() {
    let (logger, sink) = start();
    define(&logger, "val/*", Some("min,max,mean,first,last"), None);
    define(&logger, "acc", Some("best"), Some("maximize"));
    define(&logger, "loss", Some("best,last"), Some("minimize"));
    define(&logger, "hidden", Some("none"), None);
    define(&logger, "phase", Some("first,last,min"), None);
    define(&logger, "mixed", Some("min,max,mean,first,last"), None);
    let hist = Value::Histogram(Box::new(Histogram {
        counts: vec![1, 2],
        edges: vec![0.0, 1.0, 2.0],
        nan: 0,
        pos_inf: 0,
        neg_inf: 0,
    }));
    for i in 0..3000i64 {
        let x = i as f64;
        let mut cells = vec![
            (
                "loss",
                Value::F64(if i % 7 == 0 {
                    f64::NAN
                } else {
                    1.0 / (x + 1.0)
                }),
            ),
            ("acc", Value::F64((x / 3000.0).sin())),
            ("val/loss", Value::F64(2.0 - x / 1500.0)),
            ("val/n", Value::I64(i * 3 - 4000)),
            ("epoch", Value::I64(i / 100)),
            ("ok", Value::Bool(i % 2 == 0)),
            ("hidden", Value::F64(x)),
            (
                "list_only",
                Value::List(Box::new(List::flat_f64(vec![x, x + 1.0]))),
            ),
            ("hist_only", hist.clone()),
            // Two dtypes in one key: its series are merged by step.
            (
                "mixed",
                if i % 3 == 0 {
                    Value::I64(3000 - i)
                } else {
                    Value::F64(x * 0.5)
                },
            ),
        ];
        if i % 500 == 0 {
            cells.push(("phase", Value::Text(format!("phase-{}", i / 500).into())));
            cells.push(("note", Value::Text("plain text".into())));
        }
        logger.log(None, None, cells).unwrap();
        if i % 1000 == 999 {
            logger.flush(Duration::from_secs(10)).unwrap(); // several batches
        }
    }
    logger.flush(Duration::from_secs(10)).unwrap();
    let live = logger.summary();
    logger.finish().unwrap();

    let bytes = sink.bytes();
    let data = decode_shard(&bytes);
    assert!(data.has_summary);
    let stripped = decode_shard(&without_summaries(&bytes));
    assert!(!stripped.has_summary && stripped.summary.is_empty());
    assert!(stripped.problems.is_empty(), "{:?}", stripped.problems);
    let replayed = HistoryStats::from_shard(&stripped).summary(&stripped.metrics);
    // Debug text compares NaN with NaN, and keeps the order and the value types.
    let live: Vec<String> = live.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
    let replayed: Vec<String> = replayed
        .iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    assert_eq!(replayed, live);
    assert!(replayed.iter().any(|s| s.starts_with("phase: Stats")));
    assert!(replayed.iter().any(|s| s.starts_with("note: Plain(Text")));
    assert!(!replayed.iter().any(|s| s.starts_with("hidden")));
    assert!(!replayed.iter().any(|s| s.contains("_only")));
}
