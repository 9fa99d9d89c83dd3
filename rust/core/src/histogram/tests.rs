//! Unit tests of the binning: numpy cases, slice vs iterator paths, the exact fast path.
use super::*;
use crate::value::Histogram;

#[test]
fn simple_case_matches_numpy() {
    // numpy.histogram([0, 1, 2, 3, 4], bins=4) -> [1, 1, 1, 2], [0, 1, 2, 3, 4]
    let h = bin_f64(&[0.0, 1.0, 2.0, 3.0, 4.0], 4);
    assert_eq!(h.counts, [1, 1, 1, 2]);
    assert_eq!(h.edges, [0.0, 1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn all_equal_values_widen_by_half() {
    let h = bin_f64(&[3.0; 10], 2);
    assert_eq!(h.edges, [2.5, 3.0, 3.5]);
    assert_eq!(h.counts, [0, 10]);
}

#[test]
fn non_finite_values_are_counted_apart() {
    let h = bin_f64(
        &[
            f64::NAN,
            1.0,
            f64::INFINITY,
            2.0,
            f64::NEG_INFINITY,
            f64::NAN,
        ],
        1,
    );
    assert_eq!((h.nan, h.pos_inf, h.neg_inf), (2, 1, 1));
    assert_eq!(h.counts, [2]);
    let empty = bin_f64(&[f64::NAN], 8);
    assert!(empty.counts.is_empty() && empty.edges.is_empty() && empty.nan == 1);
}

#[test]
fn float32_uses_float32_arithmetic() {
    // numpy.histogram(np.array([0, 0.1, 0.7, 1], np.float32), bins=3) edges in float32
    let h = bin_f32(&[0.0, 0.1, 0.7, 1.0], 3);
    let third = 1.0f32 / 3.0;
    assert_eq!(
        h.edges,
        [0.0, f64::from(third), f64::from(2.0 * third), 1.0]
    );
    assert_eq!(h.counts, [2, 0, 2]);
}

#[test]
fn integers_bin_like_numpy() {
    // numpy.histogram(np.arange(10), bins=3) -> [3, 3, 4], [0, 3, 6, 9]
    let h = bin_int_iter((0..10).map(i128::from), 3);
    assert_eq!(h.counts, [3, 3, 4]);
    assert_eq!(h.edges, [0.0, 3.0, 6.0, 9.0]);
    let same = bin_int_iter([5i128; 4].into_iter(), 2);
    assert_eq!(same.edges, [4.5, 5.0, 5.5]);
    assert_eq!(same.counts, [0, 4]);
}

#[test]
fn slice_and_iterator_paths_agree() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for len in [0, 1, 15, 16, 17, 100, 1000, 4099] {
        let data: Vec<f64> = (0..len)
            .map(|i| (next() - 0.5) * f64::from(i % 7 + 1))
            .collect();
        let f32s: Vec<f32> = data.iter().map(|x| *x as f32).collect();
        for n in [1, 5, 64, 512] {
            assert_eq!(bin_f64(&data, n), bin_f64_iter(data.iter().copied(), n));
            assert_eq!(bin_f32(&f32s, n), bin_f32_iter(f32s.iter().copied(), n));
        }
    }
    let mut with_nan = vec![1.0f32; 40];
    with_nan[17] = f32::NAN;
    assert_eq!(
        bin_f32(&with_nan, 4),
        bin_f32_iter(with_nan.iter().copied(), 4)
    );
}

#[test]
fn every_element_lands_in_exactly_one_bin() {
    let data: Vec<f64> = (0..10_000)
        .map(|i| ((i * 7919) % 10_007) as f64 * 0.37 - 50.0)
        .collect();
    for n in [1, 3, 64, 512] {
        let h = bin_f64(&data, n);
        assert_eq!(h.counts.iter().sum::<u64>(), data.len() as u64);
        for &x in &data {
            assert!(x >= h.edges[0] && x <= h.edges[n]);
        }
    }
}

#[test]
fn bins_and_parts_are_validated() {
    assert!(check_bins(0).is_err() && check_bins(513).is_err());
    assert_eq!(check_bins(512).unwrap(), 512);
    assert!(from_parts(vec![1, 2], vec![0.0, 1.0]).is_err());
    assert!(from_parts(vec![1, 2], vec![0.0, 2.0, 1.0]).is_err());
    assert!(from_parts(vec![1], vec![0.0, f64::INFINITY]).is_err());
    assert!(from_parts(vec![1, 2], vec![0.0, 1.0, 2.0]).is_ok());
}

/// Finite values in `[lo, hi]` within `k` ulps of each of the `n + 1` edges, plus bin centres
/// and points just inside each bin, for `lo` and `hi` themselves to fix the range.
macro_rules! near_edges {
    ($name:ident, $t:ty, $bin:ident) => {
        fn $name(lo: $t, hi: $t, n: usize, k: usize) -> Vec<$t> {
            let edges = Bins::<$t>::over(lo, hi, n).edges;
            let (first, last) = (edges[0], edges[n]);
            let mut data = vec![lo, hi];
            for &e in &edges {
                let (mut up, mut down) = (e, e);
                for _ in 0..=k {
                    data.extend([up, down]);
                    (up, down) = (up.next_up(), down.next_down());
                }
            }
            for w in edges.windows(2) {
                let width = w[1] - w[0];
                data.extend([w[0] + width / 2.0, w[0] + width * 1e-3, w[1] - width * 1e-3]);
            }
            data.retain(|x| x.is_finite() && *x >= lo.min(first) && *x <= hi.max(last));
            data.retain(|x| *x >= lo && *x <= hi);
            data
        }
    };
}

near_edges!(near_edges_f32, f32, bin_f32);
near_edges!(near_edges_f64, f64, bin_f64);

/// Equal counts and bit-identical edges (a range that overflows the dtype has NaN edges).
fn same(a: &Histogram, b: &Histogram) -> bool {
    let bits = |h: &Histogram| h.edges.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
    a.counts == b.counts
        && bits(a) == bits(b)
        && (a.nan, a.pos_inf, a.neg_inf) == (b.nan, b.pos_inf, b.neg_inf)
}

const ADVERSARIAL_BINS: [usize; 10] = [1, 2, 3, 7, 10, 64, 100, 333, 511, 512];

#[test]
fn fast_path_is_exact_on_and_around_every_edge_f32() {
    let tiny = f32::from_bits(1);
    let ranges: &[(f32, f32)] = &[
        (0.0, 1.0),
        (-1.0, 1.0),
        (-5.3, 5.4),
        (-0.0, 1.0),
        (0.1, 0.7),
        (123.456, 123.457),
        (1e6, 1e6 + 1.0),
        (1.0, 1.0 + 64.0 * f32::EPSILON),
        (1.0, 1.0f32.next_up()),
        (-1e-30, 1e-30),
        (1e-40, 3e-38),
        (0.0, 100.0 * tiny),
        (-tiny, tiny),
        (1e30, 2e30),
        (0.0, 1e38),
        (-1.5e38, 1.5e38),
        (-3e38, 3e38),
        (3.0, 3.0),
        (1e30, 1e30),
        (-7.0, -2.0),
    ];
    for &(lo, hi) in ranges {
        for n in ADVERSARIAL_BINS {
            let data = near_edges_f32(lo, hi, n, 40);
            let want = bin_f32_iter(data.iter().copied(), n);
            assert!(
                same(&bin_f32(&data, n), &want),
                "[{lo:e}, {hi:e}] in {n} bins"
            );
            assert_eq!(want.counts.iter().sum::<u64>(), data.len() as u64);
        }
    }
}

#[test]
fn fast_path_is_exact_on_and_around_every_edge_f64() {
    let tiny = f64::from_bits(1);
    let ranges: &[(f64, f64)] = &[
        (0.0, 1.0),
        (-5.3, 5.4),
        (-0.0, 1.0),
        (0.1, 0.7),
        (1e15, 1e15 + 1.0),
        (1.0, 1.0f64.next_up()),
        (1e-310, 3e-308),
        (0.0, 100.0 * tiny),
        (1e300, 1.5e300),
        (0.0, 1e308),
        (-5e307, 1.2e308),
        (-1.7e308, 1.7e308),
        (3.0, 3.0),
        (-7.0, -2.0),
    ];
    for &(lo, hi) in ranges {
        for n in ADVERSARIAL_BINS {
            let data = near_edges_f64(lo, hi, n, 40);
            let want = bin_f64_iter(data.iter().copied(), n);
            assert!(
                same(&bin_f64(&data, n), &want),
                "[{lo:e}, {hi:e}] in {n} bins"
            );
        }
    }
}

#[test]
fn margin_is_used_for_ordinary_ranges_and_refused_for_loose_ones() {
    let used = |lo: f32, hi: f32, n| Bins::<f32>::over(lo, hi, n).exact_margin() < 0.25;
    assert!(used(-5.3, 5.4, 64) && used(0.0, 1.0, 512) && used(-1e-30, 1e-30, 64));
    // Edges far coarser than the float grid, a range of a few ulps, subnormal widths and a
    // width that overflows: every element gets numpy's corrections.
    assert!(!used(1e6, 1e6 + 1.0, 64) && !used(1.0, 1.0f32.next_up(), 2));
    assert!(!used(0.0, 100.0 * f32::from_bits(1), 7) && !used(-3e38, 3e38, 8));
    assert!(Bins::<f64>::over(-5.3, 5.4, 512).exact_margin() < 1e-10);
}

#[test]
fn random_ranges_and_offsets_agree_with_the_corrected_path() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let offset =
            f64::from((next() % 80) as i32 - 40).exp2() * if next() % 2 == 0 { 1.0 } else { -1.0 };
        let width = f64::from((next() % 120) as i32 - 100).exp2() * offset.abs().max(1e-300);
        let n = 1 + (next() % 512) as usize;
        let len = 16 * (next() % 40) as usize + (next() % 16) as usize;
        let grid = next() % 3 == 0; // values on a grid land on edges far more often
        let data: Vec<f64> = (0..len)
            .map(|_| {
                let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
                let u = if grid {
                    (u * n as f64).round() / n as f64
                } else {
                    u
                };
                offset + u * width
            })
            .collect();
        let f32s: Vec<f32> = data.iter().map(|x| *x as f32).collect();
        assert_eq!(bin_f64(&data, n), bin_f64_iter(data.iter().copied(), n));
        assert_eq!(bin_f32(&f32s, n), bin_f32_iter(f32s.iter().copied(), n));
    }
}

#[test]
fn large_arrays_with_non_finite_elements_agree_with_the_iterator_path() {
    // NaN only (the range pass's bounds stay finite), then NaN and infinities, then all NaN.
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    for (kinds, want) in [(1, (50, 0, 0)), (3, (17, 17, 16)), (1, (300_017, 0, 0))] {
        let mut data: Vec<f32> = (0..300_017u64)
            .map(|i| ((i * 7919) % 10_007) as f32 * 0.37 - 50.0)
            .collect();
        if want.0 == data.len() as u64 {
            data.fill(f32::NAN);
        }
        for (i, x) in specials[..kinds].iter().cycle().take(50).enumerate() {
            data[i * 6007 + i % 16] = *x;
        }
        for n in [1, 64, 512] {
            let h = bin_f32(&data, n);
            assert_eq!(h, bin_f32_iter(data.iter().copied(), n));
            assert_eq!((h.nan, h.pos_inf, h.neg_inf), want);
            let d64: Vec<f64> = data.iter().map(|x| f64::from(*x)).collect();
            assert_eq!(bin_f64(&d64, n), bin_f64_iter(d64.iter().copied(), n));
        }
    }
}
