//! Encoded scalar columns (docs/FORMAT.md, "Encoded columns"): a column's steps and values as
//! 64-bit words, stored as byte planes that zstd compresses well, and decoded back.
//!
//! A sequence of `n` words is written as one msgpack array:
//!
//! - `["delta", first, base, width, planes]`: `x[0] = first`, `x[i] = x[i-1] + base + r[i-1]`
//!   (mod 2^64) with `n - 1` residuals `r` of `width` (0..=8) bytes each;
//! - `["micros", first, base, width, planes]`: the same, for `_timestamp`: the words are whole
//!   microseconds since the Unix epoch (i64), read back as `float64(x) / 1e6`;
//! - `["trim", skip, planes]`: `n` words of `8 - skip` bytes; their `skip` low bytes are zero.
//!
//! `planes` holds byte 0 of every stored word, then byte 1 of every word, and so on.
//! Invariants: encoding then decoding gives back every word bit for bit; the decoder checks
//! each length against `n` before it writes anything and never panics.

use crate::msgpack::{Enc, Mp};

/// Most values (summed over its columns) one batch may declare. A reader refuses more, so a
/// tiny frame cannot make it allocate without bound; 16 bytes per value is 512 MiB.
pub const MAX_BATCH_VALUES: usize = 1 << 25;

/// How a sequence of words is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// First word, then residuals of `width` bytes over the smallest difference `base`.
    Delta {
        /// The first word.
        first: u64,
        /// The smallest difference between consecutive words (as i64, stored mod 2^64).
        base: u64,
        /// Bytes per residual, 0..=8.
        width: usize,
    },
    /// The words with their `skip` low bytes (zero in every word) left out.
    Trim {
        /// Low bytes left out, 0..=8.
        skip: usize,
    },
}

/// What a decoded sequence holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Words as they were (`delta` or `trim`).
    Words,
    /// Microseconds since the Unix epoch (`micros`).
    Micros,
}

/// Nonzero bytes in `x`.
#[inline]
fn nonzero_bytes(x: u64) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    let mut t = x | (x >> 4);
    t |= t >> 2;
    t |= t >> 1;
    // Each byte of `t & LOW` is 0 or 1; the multiply sums them into the top byte.
    ((t & LOW).wrapping_mul(LOW)) >> 56
}

/// Bytes needed for `x`.
fn byte_width(x: u64) -> usize {
    (64 - x.leading_zeros() as usize).div_ceil(8)
}

/// The `delta` plan for `words`, and the estimated cost of each plan: the count of stored
/// bytes that differ from the same byte of the previous word, a good proxy for what zstd
/// makes of a byte plane. Returns `(delta, delta_cost, trim, trim_cost)`.
fn analyse(words: &[u64]) -> (Plan, u64, Plan, u64) {
    let Some(&first) = words.first() else {
        let zero = Plan::Delta {
            first: 0,
            base: 0,
            width: 0,
        };
        return (zero, 0, Plan::Trim { skip: 8 }, 0);
    };
    let (mut any, mut trim_cost, mut delta_cost) = (first, 0, 0);
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    let mut prev = first;
    let mut prev_d = words.get(1).map_or(0, |w| w.wrapping_sub(first));
    for &w in &words[1..] {
        let d = w.wrapping_sub(prev);
        any |= w;
        trim_cost += nonzero_bytes(w ^ prev);
        delta_cost += nonzero_bytes(d ^ prev_d);
        lo = lo.min(d as i64);
        hi = hi.max(d as i64);
        prev = w;
        prev_d = d;
    }
    let delta = if words.len() == 1 {
        Plan::Delta {
            first,
            base: 0,
            width: 0,
        }
    } else {
        Plan::Delta {
            first,
            base: lo as u64,
            width: byte_width(hi.wrapping_sub(lo) as u64),
        }
    };
    let skip = if any == 0 {
        8
    } else {
        any.trailing_zeros() as usize / 8
    };
    (delta, delta_cost, Plan::Trim { skip }, trim_cost)
}

/// The `delta` plan for `words` (steps, timestamps).
pub fn plan_delta(words: &[u64]) -> Plan {
    analyse(words).0
}

/// The cheaper of `delta` and `trim` for `words` (f64 and i64 values): `delta` suits smooth
/// or counting sequences, `trim` noisy floats of less than float64 precision (a float32
/// value has 29 zero low bits as a float64). Each plan's estimate adds a 64th of its raw
/// bytes, so when both compress about as well the narrower one, faster to compress and to
/// decode, wins (a counter that rarely changes is 1-byte residuals, not 8-byte words).
pub fn plan_best(words: &[u64]) -> Plan {
    let (delta, delta_cost, trim, trim_cost) = analyse(words);
    let n = words.len() as u64;
    let cost = |p: Plan, changes: u64| match p {
        Plan::Delta { width, .. } => 64 * changes + width as u64 * n,
        Plan::Trim { skip } => 64 * changes + (8 - skip) as u64 * n,
    };
    if cost(delta, delta_cost) < cost(trim, trim_cost) {
        delta
    } else {
        trim
    }
}

/// Appends byte planes `lo..lo + width` of `words` to `out` as one msgpack bin.
fn write_planes(out: &mut Enc, words: &[u64], lo: usize, width: usize) {
    let m = words.len();
    out.bin_len(width * m);
    if width == 0 || m == 0 {
        return;
    }
    let start = out.buf.len();
    out.buf.resize(start + width * m, 0);
    for (j, plane) in out.buf[start..].chunks_exact_mut(m).enumerate() {
        let shift = 8 * (lo + j);
        for (b, w) in plane.iter_mut().zip(words) {
            *b = (w >> shift) as u8;
        }
    }
}

/// Writes `words` as a plain field: one bin of little-endian 8-byte words.
pub fn write_plain(out: &mut Enc, words: &[u64]) {
    out.bin_len(words.len() * 8);
    out.buf.extend(words.iter().flat_map(|w| w.to_le_bytes()));
}

/// Writes `words` as `plan` into `out`; `micros` names a `delta` plan `micros` instead.
/// `scratch` holds the residuals between calls.
pub fn write(out: &mut Enc, words: &[u64], plan: Plan, micros: bool, scratch: &mut Vec<u64>) {
    match plan {
        Plan::Delta { first, base, width } => {
            out.array(5);
            out.str(if micros { "micros" } else { "delta" });
            out.int(first as i64);
            out.int(base as i64);
            out.uint(width as u64);
            scratch.clear();
            scratch.extend(
                words
                    .windows(2)
                    .map(|p| p[1].wrapping_sub(p[0]).wrapping_sub(base)),
            );
            write_planes(out, scratch, 0, width);
        }
        Plan::Trim { skip } => {
            out.array(3);
            out.str("trim");
            out.uint(skip as u64);
            write_planes(out, words, skip, 8 - skip);
        }
    }
}

/// A 64-bit value a column decodes into; `f64` goes through its bit pattern, which costs
/// nothing, so planes are ORed straight into the output.
pub trait Word: Copy {
    /// The value whose word is `w`.
    fn from_word(w: u64) -> Self;
    /// This value's word.
    fn to_word(self) -> u64;
}

impl Word for u64 {
    #[inline]
    fn from_word(w: u64) -> Self {
        w
    }
    #[inline]
    fn to_word(self) -> u64 {
        self
    }
}

impl Word for i64 {
    #[inline]
    fn from_word(w: u64) -> Self {
        w as i64
    }
    #[inline]
    fn to_word(self) -> u64 {
        self as u64
    }
}

impl Word for f64 {
    #[inline]
    fn from_word(w: u64) -> Self {
        f64::from_bits(w)
    }
    #[inline]
    fn to_word(self) -> u64 {
        self.to_bits()
    }
}

/// ORs byte planes into `dst`: plane `j` of `planes` becomes byte `lo + j` of each word.
fn or_planes<T: Word>(dst: &mut [T], planes: &[u8], lo: usize) {
    if dst.is_empty() {
        return;
    }
    for (j, plane) in planes.chunks_exact(dst.len()).enumerate() {
        let shift = 8 * (lo + j);
        for (w, b) in dst.iter_mut().zip(plane) {
            *w = T::from_word(w.to_word() | (u64::from(*b) << shift));
        }
    }
}

/// An integer field of an encoded sequence, taken mod 2^64.
fn word(v: Option<&Mp<'_>>) -> Option<u64> {
    match v? {
        Mp::Int(i) => Some(*i as u64),
        Mp::UInt(u) => Some(*u),
        _ => None,
    }
}

/// A byte count field, 0..=8.
fn small(v: Option<&Mp<'_>>) -> Option<usize> {
    v?.as_i64()
        .and_then(|i| usize::try_from(i).ok())
        .filter(|&i| i <= 8)
}

/// Appends the `n` words (`n >= 1`) of an encoded sequence to `out`. Everything is checked
/// before `out` grows, so on an error it is left as it was.
pub fn decode<T: Word>(seq: &Mp<'_>, n: usize, out: &mut Vec<T>) -> Result<Tag, String> {
    let items = seq.as_array().unwrap_or(&[]);
    let tag = items.first().and_then(Mp::as_str).unwrap_or("");
    let bad = |what: &str| format!("column encoding {tag:?}: {what}");
    if n == 0 || n > MAX_BATCH_VALUES {
        return Err(bad("needs 1 to 2^25 values"));
    }
    let start = out.len();
    match tag {
        "delta" | "micros" => {
            let (Some(first), Some(base), Some(width), Some(planes)) = (
                word(items.get(1)),
                word(items.get(2)),
                small(items.get(3)),
                items.get(4).and_then(Mp::as_bin),
            ) else {
                return Err(bad("bad fields"));
            };
            if planes.len() != width * (n - 1) {
                return Err(bad("planes do not hold n - 1 residuals"));
            }
            out.resize(start + n, T::from_word(0));
            let dst = &mut out[start..];
            or_planes(&mut dst[1..], planes, 0);
            let mut x = first;
            dst[0] = T::from_word(first);
            for w in &mut dst[1..] {
                x = x.wrapping_add(base).wrapping_add(w.to_word());
                *w = T::from_word(x);
            }
            Ok(if tag == "micros" {
                Tag::Micros
            } else {
                Tag::Words
            })
        }
        "trim" => {
            let (Some(skip), Some(planes)) =
                (small(items.get(1)), items.get(2).and_then(Mp::as_bin))
            else {
                return Err(bad("bad fields"));
            };
            if planes.len() != (8 - skip) * n {
                return Err(bad("planes do not hold n values"));
            }
            out.resize(start + n, T::from_word(0));
            or_planes(&mut out[start..], planes, skip);
            Ok(Tag::Words)
        }
        _ => Err(format!("unknown column encoding {tag:?}")),
    }
}

/// Appends a column's `steps` or `values` field of `n` entries to `out`: a plain bin of `n`
/// little-endian 8-byte words, or an encoded sequence. On an error `out` is left as it was.
pub fn decode_field<T: Word>(v: &Mp<'_>, n: usize, out: &mut Vec<T>) -> Result<Tag, String> {
    if n > MAX_BATCH_VALUES {
        return Err("a column declares more than 2^25 values".into());
    }
    match v {
        Mp::Bin(b) => {
            if b.len() != n * 8 {
                return Err("column lengths disagree".into());
            }
            out.extend(b.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                T::from_word(u64::from_le_bytes(a))
            }));
            Ok(Tag::Words)
        }
        v => decode(v, n, out),
    }
}

/// A `_timestamp` in seconds as whole microseconds, the unit `micros` stores.
pub fn to_micros(seconds: f64) -> i64 {
    (seconds * 1e6).round() as i64
}

/// Seconds for microseconds stored by `micros`.
pub fn from_micros(micros: i64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::decode as mp_decode;
    use proptest::prelude::*;

    fn round_trip(words: &[u64], plan: Plan) -> Vec<u64> {
        let mut enc = Enc::default();
        let mut scratch = Vec::new();
        write(&mut enc, words, plan, false, &mut scratch);
        let v = mp_decode(&enc.buf).unwrap();
        let mut out = vec![7u64; 3];
        assert_eq!(decode(&v, words.len(), &mut out).unwrap(), Tag::Words);
        assert_eq!(out[..3], [7, 7, 7]);
        out.split_off(3)
    }

    #[test]
    fn steps_in_a_row_take_no_bytes() {
        let steps: Vec<u64> = (1000..2000).collect();
        let plan = plan_delta(&steps);
        assert_eq!(
            plan,
            Plan::Delta {
                first: 1000,
                base: 1,
                width: 0
            }
        );
        assert_eq!(round_trip(&steps, plan), steps);
    }

    #[test]
    fn float32_values_drop_their_zero_low_bytes() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let words: Vec<u64> = (0..100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f64::from((x >> 40) as f32 / 1e5 + 0.5).to_bits()
            })
            .collect();
        assert_eq!(plan_best(&words), Plan::Trim { skip: 3 });
        assert_eq!(round_trip(&words, plan_best(&words)), words);
    }

    #[test]
    fn a_smooth_float64_schedule_is_delta_encoded() {
        let words: Vec<u64> = (0..5000)
            .map(|i| (1e-3 * (1.0 + (f64::from(i) * 1e-4).cos())).to_bits())
            .collect();
        assert!(matches!(plan_best(&words), Plan::Delta { .. }));
        assert_eq!(round_trip(&words, plan_best(&words)), words);
    }

    #[test]
    fn nonzero_bytes_counts_bytes() {
        assert_eq!(nonzero_bytes(0), 0);
        assert_eq!(nonzero_bytes(0x0100_0000_0000_0080), 2);
        assert_eq!(nonzero_bytes(u64::MAX), 8);
    }

    #[test]
    fn micros_round_trip_to_the_microsecond() {
        let t = 1_767_225_600.123_456_7;
        let back = from_micros(to_micros(t));
        assert!((back - t).abs() <= 1e-6, "{back} {t}");
        assert_eq!(to_micros(back), to_micros(t));
    }

    #[test]
    fn lying_lengths_are_refused() {
        let mut enc = Enc::default();
        enc.array(5);
        enc.str("delta");
        enc.int(0);
        enc.int(1);
        enc.uint(0);
        enc.bin(&[]);
        let v = mp_decode(&enc.buf).unwrap();
        let mut out: Vec<u64> = Vec::new();
        assert!(decode(&v, MAX_BATCH_VALUES + 1, &mut out).is_err());
        assert!(out.is_empty());
        assert_eq!(decode(&v, 4, &mut out), Ok(Tag::Words));
        assert_eq!(out, [0, 1, 2, 3]);
        let mut enc = Enc::default();
        enc.array(3);
        enc.str("trim");
        enc.uint(9);
        enc.bin(&[]);
        assert!(decode(&mp_decode(&enc.buf).unwrap(), 1, &mut out).is_err());
        out.clear();
        for n in [0, 2, 5] {
            let mut e = Enc::default();
            write(
                &mut e,
                &[1, 2, 3],
                Plan::Trim { skip: 0 },
                false,
                &mut Vec::new(),
            );
            let r = decode(&mp_decode(&e.buf).unwrap(), n, &mut out);
            assert!(r.is_err(), "n={n}");
        }
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn any_words_round_trip_under_every_plan(words in proptest::collection::vec(any::<u64>(), 1..300), small_range in any::<bool>()) {
            let words: Vec<u64> = if small_range { words.iter().map(|w| w % 1000).collect() } else { words };
            for plan in [plan_delta(&words), plan_best(&words), analyse(&words).2] {
                prop_assert_eq!(round_trip(&words, plan), words.clone());
            }
        }
    }
}
