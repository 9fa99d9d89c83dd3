//! Histogram binning with `numpy.histogram`'s exact rules for equal-width bins: edges from
//! `linspace(min, max, n + 1)`, each element placed by the same float arithmetic and the same
//! edge corrections, so counts are identical to numpy's. NaN and ±Inf elements are left out
//! and counted apart (numpy raises on them).

use crate::error::{Error, Result};
use crate::value::Histogram;

/// Default number of bins.
pub const DEFAULT_BINS: usize = 64;
/// Largest number of bins accepted.
pub const MAX_BINS: usize = 512;

/// Checks `num_bins` against 1..=[`MAX_BINS`].
pub fn check_bins(num_bins: i64) -> Result<usize> {
    if (1..=MAX_BINS as i64).contains(&num_bins) {
        Ok(num_bins as usize)
    } else {
        Err(Error::Config {
            name: "num_bins".into(),
            value: num_bins.to_string(),
            reason: format!("expected an integer from 1 to {MAX_BINS}"),
        })
    }
}

macro_rules! float_binner {
    ($linspace:ident, $bin:ident, $t:ty) => {
        /// `numpy.linspace(first, last, n + 1)` computed in this float type, as numpy does for
        /// an array of this dtype.
        pub fn $linspace(first: $t, last: $t, n: usize) -> Vec<$t> {
            let div = n as $t;
            let delta = last - first;
            let step = delta / div;
            let mut edges: Vec<$t> = if step == 0.0 {
                (0..=n).map(|i| (i as $t / div) * delta + first).collect()
            } else {
                (0..=n).map(|i| (i as $t) * step + first).collect()
            };
            edges[n] = last;
            edges
        }

        /// Bins `data` into `n` equal-width bins over its finite range with
        /// `numpy.histogram`'s arithmetic for this dtype; non-finite elements are counted
        /// apart. `data` is walked twice (range, then counts), so it must be cheap to clone.
        pub fn $bin<I>(data: I, n: usize) -> Histogram
        where
            I: Iterator<Item = $t> + Clone,
        {
            let mut h = Histogram::default();
            let (mut lo, mut hi) = (<$t>::INFINITY, <$t>::NEG_INFINITY);
            let mut non_finite = 0u64;
            for x in data.clone() {
                if x < lo {
                    lo = x;
                }
                if x > hi {
                    hi = x;
                }
                non_finite += u64::from(!x.is_finite());
            }
            if non_finite > 0 {
                (lo, hi) = finite_range!(data.clone(), h, $t);
            }
            if lo > hi {
                return h; // no finite element: an empty histogram that still counts the others
            }
            let bins = Bins::<$t>::over(lo, hi, n);
            let mut counts = vec![0u64; n];
            for x in data {
                if non_finite == 0 || x.is_finite() {
                    counts[bins.index(x)] += 1;
                }
            }
            h.counts = counts;
            h.edges = bins.edges.into_iter().map(f64::from).collect();
            h
        }
    };
}

/// Range over finite elements, counting the others into `h`.
macro_rules! finite_range {
    ($data:expr, $h:ident, $t:ty) => {{
        let (mut lo, mut hi) = (<$t>::INFINITY, <$t>::NEG_INFINITY);
        for x in $data {
            if x.is_finite() {
                lo = if x < lo { x } else { lo };
                hi = if x > hi { x } else { hi };
            } else if x.is_nan() {
                $h.nan += 1;
            } else if x > 0.0 {
                $h.pos_inf += 1;
            } else {
                $h.neg_inf += 1;
            }
        }
        (lo, hi)
    }};
}

/// numpy's bin search for equal-width bins, in the data's float type.
struct Bins<T> {
    lo: T,
    denom: T,
    scale: T,
    last: usize,
    edges: Vec<T>,
}

macro_rules! bins_index {
    ($t:ty, $linspace:ident) => {
        impl Bins<$t> {
            /// `n` bins over `[lo, hi]` (the finite range), widened by 0.5 each way when the
            /// range is a single value, as numpy does.
            fn over(mut lo: $t, mut hi: $t, n: usize) -> Self {
                if lo == hi {
                    lo -= 0.5;
                    hi += 0.5;
                }
                Bins {
                    lo,
                    denom: hi - lo,
                    scale: n as $t,
                    last: n - 1,
                    edges: $linspace(lo, hi, n),
                }
            }

            /// The bin of finite `x`: `((x - lo) / denom) * n` truncated, then moved by one
            /// where float rounding put it on the wrong side of an edge, exactly as numpy does.
            #[inline(always)]
            fn index(&self, x: $t) -> usize {
                let f = ((x - self.lo) / self.denom) * self.scale;
                self.correct(x, f as usize)
            }

            /// numpy's corrections to the truncated float index `guess`.
            #[inline(always)]
            fn correct(&self, x: $t, guess: usize) -> usize {
                let mut i = guess.min(self.last);
                i -= usize::from(i > 0 && x < self.edges[i]);
                i += usize::from(i != self.last && x >= self.edges[i + 1]);
                i
            }
        }
    };
}

bins_index!(f32, linspace_f32);
bins_index!(f64, linspace_f64);

float_binner!(linspace_f64, bin_f64_iter, f64);
float_binner!(linspace_f32, bin_f32_iter, f32);

/// `numpy.linspace(first, last, n + 1)` for float64 (kept for callers that bin on a device).
pub fn linspace_edges(first: f64, last: f64, n: usize) -> Vec<f64> {
    linspace_f64(first, last, n)
}

/// Lanes the slice paths work in, so the compiler can use SIMD for the range pass and
/// several count arrays hide the latency of repeated increments of one bin.
const LANES: usize = 16;

macro_rules! slice_binner {
    ($bin:ident, $iter:ident, $t:ty) => {
        /// Bins a contiguous slice: the same result as the iterator version, faster.
        pub fn $bin(data: &[$t], n: usize) -> Histogram {
            let chunks = data.chunks_exact(LANES);
            let tail = chunks.remainder();
            let mut lo = [<$t>::INFINITY; LANES];
            let mut hi = [<$t>::NEG_INFINITY; LANES];
            let mut bad = [0u32; LANES];
            for c in chunks.clone() {
                for j in 0..LANES {
                    let x = c[j];
                    lo[j] = if x < lo[j] { x } else { lo[j] };
                    hi[j] = if x > hi[j] { x } else { hi[j] };
                    bad[j] += u32::from(!x.is_finite());
                }
            }
            let bad = bad.iter().map(|b| u64::from(*b)).sum::<u64>()
                + tail.iter().filter(|x| !x.is_finite()).count() as u64;
            if bad > 0 || data.len() >= (u32::MAX as usize) {
                return $iter(data.iter().copied(), n);
            }
            let lo = lo
                .iter()
                .chain(tail)
                .fold(<$t>::INFINITY, |a, &b| if b < a { b } else { a });
            let hi = hi
                .iter()
                .chain(tail)
                .fold(<$t>::NEG_INFINITY, |a, &b| if b > a { b } else { a });
            if lo > hi {
                return Histogram::default();
            }
            let bins = Bins::<$t>::over(lo, hi, n);
            let mut lanes = vec![[0u32; 4]; n];
            for c in chunks {
                // The float part of numpy's index for 16 elements at once (SIMD), then the
                // edge corrections and the counting one by one.
                let mut guess = [0i32; LANES];
                for j in 0..LANES {
                    guess[j] = (((c[j] - bins.lo) / bins.denom) * bins.scale) as i32;
                }
                for j in 0..LANES {
                    lanes[bins.correct(c[j], guess[j] as usize)][j & 3] += 1;
                }
            }
            let mut counts: Vec<u64> = lanes
                .iter()
                .map(|l| l.iter().map(|c| u64::from(*c)).sum())
                .collect();
            for &x in tail {
                counts[bins.index(x)] += 1;
            }
            Histogram {
                counts,
                edges: bins.edges.into_iter().map(f64::from).collect(),
                ..Histogram::default()
            }
        }
    };
}

slice_binner!(bin_f64, bin_f64_iter, f64);
slice_binner!(bin_f32, bin_f32_iter, f32);

/// Bins integers as numpy does for integer arrays: float64 edges, and the range divided as an
/// exact unsigned difference.
pub fn bin_int_iter<I>(data: I, n: usize) -> Histogram
where
    I: Iterator<Item = i128> + Clone,
{
    let (mut lo, mut hi) = (i128::MAX, i128::MIN);
    for x in data.clone() {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo > hi {
        return Histogram::default();
    }
    if lo == hi {
        return bin_f64_iter(data.map(|x| x as f64), n);
    }
    let (first, last) = (lo as f64, hi as f64);
    let edges = linspace_f64(first, last, n);
    let denom = (hi - lo) as f64;
    let scale = n as f64;
    let mut counts = vec![0u64; n];
    let top = n - 1;
    for x in data {
        let x = x as f64;
        let f = ((x - first) / denom) * scale;
        let mut i = (f as usize).min(top);
        if i > 0 && x < edges[i] {
            i -= 1;
        }
        if i != top && x >= edges[i + 1] {
            i += 1;
        }
        counts[i] += 1;
    }
    Histogram {
        counts,
        edges,
        ..Histogram::default()
    }
}

/// Checks a caller-supplied `(counts, edges)` pair (`np_histogram=`).
pub fn from_parts(counts: Vec<u64>, edges: Vec<f64>) -> Result<Histogram> {
    let bad = |reason: String| Error::Config {
        name: "np_histogram".into(),
        value: format!("({} counts, {} edges)", counts.len(), edges.len()),
        reason,
    };
    if counts.is_empty() || counts.len() > MAX_BINS {
        return Err(bad(format!("expected 1 to {MAX_BINS} bins")));
    }
    if edges.len() != counts.len() + 1 {
        return Err(bad("edges must be one longer than counts".into()));
    }
    if edges.iter().any(|e| !e.is_finite()) {
        return Err(bad("edges must be finite".into()));
    }
    if edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("edges must be strictly increasing".into()));
    }
    Ok(Histogram {
        counts,
        edges,
        ..Histogram::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
