//! Criterion benches of the core on training-curve data: the caller's side of a `log()` call
//! (Rust alone), a writer batch from rows to a compressed frame, the reader's decode of a
//! shard, and 64-bin histograms of 1M float32.
//!
//! `cargo bench -p steplog-core --bench storage`; throughput is in scalars (logged values,
//! `_timestamp` not counted) or elements.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use steplog_core::batch::Batch;
use steplog_core::frame::{self, Compress, Kind};
use steplog_core::keys::{Interner, KeyRegistry};
use steplog_core::msgpack::Enc;
use steplog_core::reader::decode_shard;
use steplog_core::value::{Cell, KeyId};
use steplog_core::{Logger, MemorySink, ShardInfo, Value, WriterConfig};

/// Rows per batch: the default `batch_max_bytes` cuts a batch of 5-scalar rows near here.
const ROWS: usize = 40_000;
const SCALARS_PER_ROW: usize = 5;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly standard normal (Irwin-Hall with 12 terms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

/// One row per step of a training run: float32 loss, accuracy and gradient norm (as Python
/// floats), a float64 cosine learning-rate schedule and an integer epoch, the way
/// `steplog demo` logs them; timestamps 50 ms apart with jitter.
struct Curve {
    keys: [KeyId; SCALARS_PER_ROW],
    cells: Vec<Cell>,
    times: Vec<f64>,
    registry: std::sync::Arc<KeyRegistry>,
}

fn curve(rows: usize, total: usize) -> Curve {
    let registry = KeyRegistry::new();
    let mut interner = Interner::new(registry.clone());
    let names = ["train/loss", "train/acc", "lr", "grad_norm", "epoch"];
    let mut keys = [0; SCALARS_PER_ROW];
    for (k, n) in keys.iter_mut().zip(names) {
        *k = interner.intern(n).expect("key");
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cells = Vec::with_capacity(rows * SCALARS_PER_ROW);
    let mut times = Vec::with_capacity(rows);
    let mut t = 1.7e9;
    for i in 0..rows {
        let x = i as f64;
        let loss = (2.5 * (-x / (total as f64 / 5.0)).exp() + 0.05 * rng.normal()) as f32;
        let acc = (1.0 - loss / 3.0).clamp(0.0, 1.0);
        let lr = 1e-3
            * (x / 1000.0).min(1.0)
            * 0.5
            * (1.0 + (std::f64::consts::PI * x / total as f64).cos());
        let grad = rng.normal().abs() as f32;
        let values = [
            Value::F64(f64::from(loss)),
            Value::F64(f64::from(acc)),
            Value::F64(lr),
            Value::F64(f64::from(grad)),
            Value::I64((i / (total / 10).max(1)) as i64),
        ];
        for (key, value) in keys.iter().zip(values) {
            cells.push(Cell { key: *key, value });
        }
        t += 0.05 + 0.003 * rng.normal();
        times.push(t);
    }
    Curve {
        keys,
        cells,
        times,
        registry,
    }
}

fn fill(batch: &mut Batch, c: &Curve, first_step: i64, cells: &mut [Cell]) {
    for (r, row) in cells.chunks_exact_mut(c.keys.len()).enumerate() {
        batch.add_row(first_step + r as i64, c.times[r], row.iter().cloned());
    }
}

/// Frames a filled batch as the writer does (frames of bounded rows and bytes); returns the
/// number of frames.
fn frames(
    batch: &mut Batch,
    c: &Curve,
    enc: &mut Enc,
    compressor: &mut zstd::bulk::Compressor<'static>,
    out: &mut Vec<u8>,
) -> u64 {
    let mut seq = 1;
    let z = Some(compressor as &mut dyn Compress);
    let framed = batch.write_frames(&c.registry, enc, z, &mut seq, out);
    assert_eq!(framed.error, None);
    framed.frames
}

fn writer(cr: &mut Criterion) {
    let c = curve(ROWS, ROWS);
    let mut g = cr.benchmark_group("writer");
    g.throughput(Throughput::Elements((ROWS * SCALARS_PER_ROW) as u64));
    g.sample_size(20);
    for level in [1, 3] {
        let mut compressor = zstd::bulk::Compressor::new(level).expect("zstd");
        let mut batch = Batch::default();
        let mut enc = Enc::default();
        let mut out = Vec::new();
        g.bench_function(format!("rows_to_frame/zstd{level}"), |b| {
            b.iter_batched_ref(
                || c.cells.clone(),
                |cells| {
                    fill(&mut batch, &c, 0, cells);
                    out.clear();
                    frames(&mut batch, &c, &mut enc, &mut compressor, &mut out);
                    black_box(out.len())
                },
                BatchSize::LargeInput,
            );
        });
        g.bench_function(format!("encode_compress/zstd{level}"), |b| {
            b.iter_batched_ref(
                || {
                    let mut cells = c.cells.clone();
                    let mut batch = Batch::default();
                    fill(&mut batch, &c, 0, &mut cells);
                    batch
                },
                |batch| {
                    out.clear();
                    frames(batch, &c, &mut enc, &mut compressor, &mut out);
                    black_box(out.len())
                },
                BatchSize::LargeInput,
            );
        });
        let mut cells = c.cells.clone();
        fill(&mut batch, &c, 0, &mut cells);
        out.clear();
        let n = frames(&mut batch, &c, &mut enc, &mut compressor, &mut out);
        eprintln!(
            "writer zstd{level}: {n} frames, {} framed bytes = {:.2} bytes per scalar",
            out.len(),
            out.len() as f64 / (ROWS * SCALARS_PER_ROW) as f64
        );
    }
    g.finish();
}

/// A shard of `batches` batch frames of training-curve rows, as the writer lays it out.
fn shard(batches: usize) -> Vec<u8> {
    let c = curve(ROWS * batches, ROWS * batches);
    let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd");
    let mut enc = Enc::default();
    let mut out = Vec::new();
    ShardInfo::default().encode(&mut enc);
    frame::append(&mut out, Kind::Header, 0, &enc.buf, None).expect("frame");
    let mut batch = Batch::default();
    let mut seq = 1;
    let mut cells = c.cells.clone();
    let per = ROWS * c.keys.len();
    for (i, chunk) in cells.chunks_mut(per).enumerate() {
        for (r, row) in chunk.chunks_exact_mut(c.keys.len()).enumerate() {
            let row_no = i * ROWS + r;
            batch.add_row(row_no as i64, c.times[row_no], row.iter().cloned());
        }
        let z = Some(&mut compressor as &mut dyn Compress);
        batch.write_frames(&c.registry, &mut enc, z, &mut seq, &mut out);
    }
    out
}

fn reader(cr: &mut Criterion) {
    let batches = 10;
    let bytes = shard(batches);
    let scalars = ROWS * batches * SCALARS_PER_ROW;
    eprintln!(
        "reader: shard of {scalars} scalars in {} bytes = {:.2} bytes per scalar",
        bytes.len(),
        bytes.len() as f64 / scalars as f64
    );
    let mut g = cr.benchmark_group("reader");
    g.throughput(Throughput::Elements(scalars as u64));
    g.sample_size(20);
    g.bench_function("decode_shard", |b| {
        b.iter(|| {
            let d = decode_shard(black_box(&bytes));
            assert!(d.problems.is_empty());
            black_box(d.rows)
        });
    });
    g.finish();
}

/// Calls timed per stretch before the writer is let to drain (untimed): fewer rows than the
/// queue holds, so the caller is measured, not the writer's pace behind a full queue.
const CALLER_STRETCH: u64 = 8_192;

/// Times `iters` runs of `one` in stretches of [`CALLER_STRETCH`], flushing between them.
fn caller_time(logger: &Logger, iters: u64, mut one: impl FnMut(u64)) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(CALLER_STRETCH);
        let t = Instant::now();
        for i in done..done + n {
            one(i);
        }
        total += t.elapsed();
        logger.flush(Duration::from_secs(10)).expect("flush");
        done += n;
    }
    total
}

/// The caller's side of `log()` in Rust alone: lock, stage, step rule, timestamp, and a chunk
/// handed to the ring every few hundred rows (the writer drains it on its own thread, between
/// the timed stretches).
fn caller(cr: &mut Criterion) {
    let logger = Logger::start(
        Box::new(MemorySink::new()),
        &ShardInfo::default(),
        WriterConfig::default(),
    )
    .expect("start");
    let names: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let key = logger.intern("loss").expect("intern");
    let mut g = cr.benchmark_group("caller");
    g.throughput(Throughput::Elements(1));
    g.bench_function("log_one_scalar", |b| {
        b.iter_custom(|iters| {
            caller_time(&logger, iters, |i| {
                let mut call = logger.call().expect("call");
                call.set_f64("loss", black_box(i as f64)).expect("set");
                black_box(call.commit(None, None));
            })
        });
    });
    g.bench_function("handle_one_scalar", |b| {
        b.iter_custom(|iters| {
            caller_time(&logger, iters, |i| {
                let mut call = logger.call().expect("call");
                call.set_id_f64(key, black_box(i as f64));
                black_box(call.commit(None, None));
            })
        });
    });
    g.throughput(Throughput::Elements(10));
    g.bench_function("log_ten_scalars", |b| {
        b.iter_custom(|iters| {
            caller_time(&logger, iters, |i| {
                let mut call = logger.call().expect("call");
                for name in &names {
                    call.set_f64(name, black_box(i as f64)).expect("set");
                }
                call.keys_are_distinct();
                black_box(call.commit(None, None));
            })
        });
    });
    g.finish();
    logger.finish().expect("finish");
}

fn histogram(cr: &mut Criterion) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let data: Vec<f32> = (0..1_000_000).map(|_| rng.normal() as f32).collect();
    let mut g = cr.benchmark_group("histogram");
    g.throughput(Throughput::Elements(data.len() as u64));
    g.bench_function("bin_f32_1m_64", |b| {
        b.iter(|| black_box(steplog_core::histogram::bin_f32(black_box(&data), 64)));
    });
    g.finish();
}

criterion_group!(benches, caller, writer, reader, histogram);
criterion_main!(benches);
