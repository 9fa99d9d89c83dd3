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

mod slice;
pub use slice::{bin_f32, bin_f64};

/// `numpy.linspace(first, last, n + 1)` for float64 (kept for callers that bin on a device).
pub fn linspace_edges(first: f64, last: f64, n: usize) -> Vec<f64> {
    linspace_f64(first, last, n)
}

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
mod tests;
