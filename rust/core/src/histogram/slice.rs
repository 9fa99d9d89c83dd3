//! The fast path for contiguous f32/f64 slices: a vectorised range pass, then a vectorised
//! index per element in blocks, with numpy's per-element edge corrections skipped where a
//! once-per-histogram error bound proves they cannot move the element. Counts and edges stay
//! identical to the iterator path (and so to `numpy.histogram`).
//!
//! # Why skipping the correction is exact
//!
//! Take the finite range `[lo, hi]` after numpy's widening, `D = hi - lo` (exact, real),
//! `w = D / n`, `M = max(|lo|, |hi|)`, `u` the dtype's unit roundoff (2^-24 or 2^-53) and `s`
//! its smallest subnormal; `fl` is one rounding to the dtype. For finite `x` in `[lo, hi]` the
//! exact real index is `t = (x - lo) / w`, in `[0, n]`, and the bin numpy ends in is the `g`
//! with `edge_g <= x < edge_{g+1}` (`g <= n - 1`) whenever such a `g` is within one of its
//! truncated float index, which holds below.
//!
//! * The fast path's index is `f = fl(fl(x - lo) * c)`, `c = fl(n / fl(D))` (no division per
//!   element; numpy's own `f` is only needed for the corrections). A subtraction with a
//!   subnormal result is exact; `c` is +inf (then `f` is inf or NaN, which fails the test
//!   below) or within `u·c + s/2` of `n / fl(D)` (subnormal when `D` is near the dtype's max),
//!   so `f = t·(1+δ1)(1+δ3)(1+δ4)/(1+δ2) + fl(x - lo)·η3 + η4` with `|δ| <= u`, `|η| <= s/2`,
//!   `fl(x - lo) <= fl(D)`: `|f - t| <= 4.001·u·n + 0.51·D·s + s/2 <= E_f := 5·u·n + D·s`.
//! * linspace's edge `i` (its non-zero-step branch) is `fl(fl(i · fl(fl(D) / n)) + lo)`;
//!   against `lo + i·w` the three roundings of `i·w <= D` cost `3.001·u·D + (n + 1)·s` and the
//!   addition `u·(M + …)`: `|edge_i - (lo + i·w)| <= E_e := 4·u·D + 2·u·M + (n + 2)·s`.
//! * `r = f - round(f)` is exact (Sterbenz) and `|r| <= 1/2`; `g = floor(f)`. If `|r| >= m`
//!   with `m > E_f + E_e / w`, then `g + m <= f <= g + 1 - m`, so `t - g >= m - E_f > 0` and
//!   `x - edge_g >= (t - g)·w - E_e > (m - E_f)·w - E_e > 0`; likewise `edge_{g+1} > x`, and
//!   `0 <= g < t <= n`. So `g` is the bin, and numpy's corrections would leave it alone.
//!
//! [`Bins::exact_margin`] computes `m = 2·(E_f + E_e / w)` in f64 (the factor 2 covers the
//! rounding of that computation and of `m` to the dtype) and refuses the fast path (margin 1,
//! which no `|r|` reaches) unless `m < 1/4`, `fl(D)` is finite and positive and linspace's step
//! is not zero. An element with `|r| < m` (or NaN, non-finite) gets numpy's arithmetic and
//! corrections ([`Bins::index`]); with ordinary data that is a few in 10^4.

use super::{bin_f32_iter, bin_f64_iter, Bins, MAX_BINS};
use crate::value::Histogram;

/// Lanes of the range pass (SIMD registers' worth of min/max accumulators).
const CHUNK: usize = 16;
/// Elements per block of the counting pass: indices are computed for a block in one SIMD loop
/// (short enough fixed loops get unrolled and vectorised far worse), then counted.
const BLOCK: usize = 64;
/// Sub-histograms counted into in turn, so runs of one bin don't wait on each other's stores.
const WAYS: usize = 4;

/// Each way's per-bin counts; `MAX_BINS` long so a masked index needs no bounds check.
type Tally = [[u32; MAX_BINS]; WAYS];

macro_rules! slice_binner {
    ($bin:ident, $iter:ident, $count:ident, $t:ty, $u:ty, $magic:expr) => {
        impl Bins<$t> {
            /// The proven margin `m` for these bins (see the module comment), or 1 (which no
            /// `|r| <= 1/2` reaches: every element is corrected) when the bound is too loose.
            pub(super) fn exact_margin(&self) -> $t {
                let (lo, hi) = (f64::from(self.lo), f64::from(self.edges[self.last + 1]));
                let n = (self.last + 1) as f64;
                let u = f64::from(<$t>::EPSILON) / 2.0;
                let s = f64::from(<$t>::from_bits(1));
                let d = hi - lo;
                let e_f = 5.0 * u * n + d * s;
                let e_e = 4.0 * u * d + 2.0 * u * lo.abs().max(hi.abs()) + (n + 2.0) * s;
                let m = 2.0 * (e_f + e_e / (d / n));
                let step = self.denom / self.scale;
                if m < 0.25 && self.denom.is_finite() && self.denom > 0.0 && step > 0.0 {
                    m as $t
                } else {
                    1.0
                }
            }
        }

        /// Counts `data` (any values; non-finite ones are skipped) into `tally`.
        fn $count(bins: &Bins<$t>, data: &[$t], tally: &mut Tally) {
            let (lo, per, margin) = (bins.lo, bins.scale / bins.denom, bins.exact_margin());
            let blocks = data.chunks_exact(BLOCK);
            let tail = blocks.remainder();
            for c in blocks {
                let mut idx = [0; BLOCK];
                let mut fast = 1;
                for (i, &x) in idx.iter_mut().zip(c) {
                    let f = (x - lo) * per;
                    // floor(f) without a (scalarised) saturating cast: the low bits of `y`
                    // hold f rounded to an integer (f <= 513 on the fast path), one too many
                    // when `r = f - round(f)` is negative (its sign bit is set; -0 fails the
                    // margin test, as do NaN and inf).
                    let y = f + $magic;
                    let r = f - (y - $magic);
                    *i = y
                        .to_bits()
                        .wrapping_sub(<$t>::to_bits($magic))
                        .wrapping_sub(r.to_bits() >> (<$u>::BITS - 1));
                    fast &= <$u>::from(r.abs() >= margin);
                }
                if fast == 1 {
                    for q in idx.chunks_exact(WAYS) {
                        for (w, &i) in q.iter().enumerate() {
                            tally[w][i as usize & (MAX_BINS - 1)] += 1;
                        }
                    }
                } else {
                    // numpy's corrections for the elements near an edge (or not finite) only
                    for (j, (&x, &i)) in c.iter().zip(&idx).enumerate() {
                        let f = (x - lo) * per;
                        let i = match (f - (f + $magic - $magic)).abs() >= margin {
                            true => i as usize,
                            false if x.is_finite() => bins.index(x),
                            false => continue,
                        };
                        tally[j % WAYS][i & (MAX_BINS - 1)] += 1;
                    }
                }
            }
            count_each!(bins, tail, tally);
        }

        /// Bins a contiguous slice: the same result as the iterator version, faster.
        pub fn $bin(data: &[$t], n: usize) -> Histogram {
            if data.len() >= u32::MAX as usize {
                return $iter(data.iter().copied(), n);
            }
            let mut h = Histogram::default();
            let (lo, hi, bad) = range(data);
            let (lo, hi) = if bad {
                finite_range!(data.iter().copied(), h, $t)
            } else {
                (lo, hi)
            };
            if lo > hi {
                return h;
            }
            let bins = Bins::<$t>::over(lo, hi, n);
            let mut tally: Tally = [[0; MAX_BINS]; WAYS];
            $count(&bins, data, &mut tally);
            h.counts = (0..n)
                .map(|i| tally.iter().map(|w| u64::from(w[i])).sum())
                .collect();
            h.edges = bins.edges.into_iter().map(f64::from).collect();
            h
        }
    };
}

/// Counts the finite elements of `$c` one by one with numpy's corrections.
macro_rules! count_each {
    ($bins:expr, $c:expr, $tally:expr) => {
        for (j, &x) in $c.iter().enumerate() {
            if x.is_finite() {
                $tally[j % WAYS][$bins.index(x) & (MAX_BINS - 1)] += 1;
            }
        }
    };
}

/// Min and max over the elements other than NaN and whether any element is not finite (NaN,
/// or an infinity as the min or max), in SIMD-sized lanes.
/// Shaped for LLVM's SLP vectoriser (minps/maxps and a NaN mask per lane group); small changes
/// here have cost 60% (select chains and shuffles instead), so measure with `hist_timing`.
fn range<T: Float>(data: &[T]) -> (T, T, bool) {
    let chunks = data.chunks_exact(CHUNK);
    let tail = chunks.remainder();
    let mut lo = [T::INF; CHUNK];
    let mut hi = [T::NEG_INF; CHUNK];
    let mut nan = [0u32; CHUNK];
    for c in chunks {
        for j in 0..CHUNK {
            let x = c[j];
            lo[j] = if x < lo[j] { x } else { lo[j] };
            hi[j] = if x > hi[j] { x } else { hi[j] };
            #[allow(clippy::eq_op)] // the NaN test that vectorises
            let not_a_number = x != x;
            nan[j] |= u32::from(not_a_number);
        }
    }
    let mut any_nan = nan.iter().any(|b| *b != 0);
    let (mut lo, mut hi) = lo
        .iter()
        .zip(&hi)
        .fold((T::INF, T::NEG_INF), |(l, h), (&a, &b)| {
            (if a < l { a } else { l }, if b > h { b } else { h })
        });
    for &x in tail {
        lo = if x < lo { x } else { lo };
        hi = if x > hi { x } else { hi };
        any_nan |= x.is_nan();
    }
    (lo, hi, any_nan || lo == T::NEG_INF || hi == T::INF)
}

/// What [`range`] needs of a float type.
trait Float: Copy + PartialOrd {
    const INF: Self;
    const NEG_INF: Self;
    fn is_nan(self) -> bool;
}

macro_rules! float {
    ($t:ty) => {
        impl Float for $t {
            const INF: Self = <$t>::INFINITY;
            const NEG_INF: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

float!(f32);
float!(f64);

slice_binner!(
    bin_f64,
    bin_f64_iter,
    count_f64,
    f64,
    u64,
    4_503_599_627_370_496.0
); // 2^52
slice_binner!(bin_f32, bin_f32_iter, count_f32, f32, u32, 8_388_608.0); // 2^23
