//! Quick timing of histogram binning on 1M values (the criterion benches are the real ones):
//! the slice path for float32 in 64 and 512 bins and float64 in 64, and the iterator path.
use std::time::Instant;

/// Milliseconds per call of `f`, min and median over `reps` calls.
fn time(reps: usize, mut f: impl FnMut() -> u64) -> (f64, f64) {
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[0], ms[reps / 2])
}

fn main() {
    use steplog_core::histogram::{bin_f32, bin_f32_iter, bin_f64};
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
    let wide: Vec<f64> = data.iter().map(|x| f64::from(*x)).collect();
    let cases: [(&str, &dyn Fn() -> u64); 4] = [
        ("f32 slice, 64 bins ", &|| bin_f32(&data, 64).counts[10]),
        ("f32 slice, 512 bins", &|| bin_f32(&data, 512).counts[80]),
        ("f64 slice, 64 bins ", &|| bin_f64(&wide, 64).counts[10]),
        ("f32 iter, 64 bins  ", &|| {
            bin_f32_iter(data.iter().copied(), 64).counts[10]
        }),
    ];
    for (name, f) in cases {
        let (min, median) = time(100, f);
        println!("{name}: min {min:.3} ms, median {median:.3} ms per histogram");
    }
}
