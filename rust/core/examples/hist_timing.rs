//! Quick timing of histogram binning on 1M float32 (the criterion benches are the real ones).
use std::time::Instant;

fn main() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<f32> = (0..1_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            let v = ((state >> 16) & 0xFF_FFFF) as f32 / (1u64 << 24) as f32;
            (u + v - 1.0) * 3.0
        })
        .collect();
    for _ in 0..3 {
        let t = Instant::now();
        let mut total = 0;
        for _ in 0..50 {
            total += steplog_core::histogram::bin_f32(&data, 64).counts[10];
        }
        println!(
            "slice: {:.3} ms/hist ({total})",
            t.elapsed().as_secs_f64() * 1e3 / 50.0
        );
        let t = Instant::now();
        for _ in 0..50 {
            total += steplog_core::histogram::bin_f32_iter(data.iter().copied(), 64).counts[10];
        }
        println!(
            "iter:  {:.3} ms/hist ({total})",
            t.elapsed().as_secs_f64() * 1e3 / 50.0
        );
    }
}
