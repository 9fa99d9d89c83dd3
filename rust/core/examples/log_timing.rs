//! Quick timing of the caller's side of `log()` in Rust alone (no Python).
use std::time::Instant;

use steplog_core::{Logger, MemorySink, ShardInfo, Value, WriterConfig};

fn main() {
    let logger = Logger::start(
        Box::new(MemorySink::new()),
        &ShardInfo::default(),
        WriterConfig::default(),
    )
    .expect("start");
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let only = std::env::args().nth(2);
    for (label, commit) in [("no commit", Some(false)), ("commit", None)] {
        if only
            .as_deref()
            .is_some_and(|o| o != label.split(' ').next().unwrap_or(""))
        {
            continue;
        }
        let t = Instant::now();
        for i in 0..n {
            let mut call = logger.call().expect("call");
            call.set("loss", Value::F64(i as f64)).expect("set");
            call.commit(None, commit);
        }
        println!(
            "{label}: {:.1} ns/call",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
    if only.is_some() {
        logger.finish().expect("finish");
        return;
    }
    let key = logger.intern("loss").expect("intern");
    let t = Instant::now();
    for i in 0..n {
        let mut call = logger.call().expect("call");
        call.set_id(key, Value::F64(i as f64)).expect("set_id");
        call.commit(None, None);
    }
    println!(
        "set_id + commit: {:.1} ns/call",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let call = logger.call().expect("call");
        drop(call);
    }
    println!(
        "call + drop: {:.1} ns/call",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    logger.finish().expect("finish");
}
