//! Thin msgpack layer over `rmp`: an infallible encoder into a `Vec<u8>`, and a bounded decoder
//! into a borrowed tree. Invariants for the decoder: every declared length is checked against
//! the bytes that remain before anything is allocated, nesting is bounded, and `bin`/`str`
//! payloads are borrowed, never copied.

use rmp::Marker;

/// Deepest nesting the decoder accepts.
pub const MAX_DEPTH: usize = 32;

/// Writes msgpack into a growing buffer. Writing into a `Vec` cannot fail, so the methods
/// return nothing.
#[derive(Debug, Default)]
pub struct Enc {
    /// The encoded bytes.
    pub buf: Vec<u8>,
}

impl Enc {
    /// A map header of `n` pairs.
    pub fn map(&mut self, n: usize) {
        let _ = rmp::encode::write_map_len(&mut self.buf, n as u32);
    }
    /// An array header of `n` items.
    pub fn array(&mut self, n: usize) {
        let _ = rmp::encode::write_array_len(&mut self.buf, n as u32);
    }
    /// A string.
    pub fn str(&mut self, s: &str) {
        let _ = rmp::encode::write_str(&mut self.buf, s);
    }
    /// Binary data.
    pub fn bin(&mut self, b: &[u8]) {
        let _ = rmp::encode::write_bin(&mut self.buf, b);
    }
    /// A signed integer in its smallest encoding.
    pub fn int(&mut self, v: i64) {
        let _ = rmp::encode::write_sint(&mut self.buf, v);
    }
    /// The header of a bin of `n` bytes; the caller appends the bytes.
    pub fn bin_len(&mut self, n: usize) {
        let _ = rmp::encode::write_bin_len(&mut self.buf, n as u32);
    }
    /// An unsigned integer in its smallest encoding.
    pub fn uint(&mut self, v: u64) {
        let _ = rmp::encode::write_uint(&mut self.buf, v);
    }
    /// A float64.
    pub fn f64(&mut self, v: f64) {
        let _ = rmp::encode::write_f64(&mut self.buf, v);
    }
    /// A boolean.
    pub fn bool(&mut self, v: bool) {
        let _ = rmp::encode::write_bool(&mut self.buf, v);
    }
    /// Nil.
    pub fn nil(&mut self) {
        let _ = rmp::encode::write_nil(&mut self.buf);
    }
}

/// A decoded msgpack value borrowing from the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Mp<'a> {
    /// nil
    Nil,
    /// true / false
    Bool(bool),
    /// Any integer that fits an i64.
    Int(i64),
    /// An unsigned integer above i64::MAX.
    UInt(u64),
    /// float32 or float64.
    F64(f64),
    /// UTF-8 text.
    Str(&'a str),
    /// Binary data.
    Bin(&'a [u8]),
    /// An array.
    Array(Vec<Mp<'a>>),
    /// A map, in encoded order.
    Map(Vec<(Mp<'a>, Mp<'a>)>),
}

impl<'a> Mp<'a> {
    /// The value for string key `key` in a map.
    pub fn get(&self, key: &str) -> Option<&Mp<'a>> {
        match self {
            Mp::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| matches!(k, Mp::Str(s) if *s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    /// As an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Mp::Int(v) => Some(v),
            _ => None,
        }
    }
    /// As a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Mp::Str(s) => Some(s),
            _ => None,
        }
    }
    /// As binary data.
    pub fn as_bin(&self) -> Option<&'a [u8]> {
        match *self {
            Mp::Bin(b) => Some(b),
            _ => None,
        }
    }
    /// As an array.
    pub fn as_array(&self) -> Option<&[Mp<'a>]> {
        match self {
            Mp::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// Decodes exactly one value filling all of `buf`.
pub fn decode(buf: &[u8]) -> Result<Mp<'_>, String> {
    let mut d = Dec { buf, pos: 0 };
    let v = d.value(0)?;
    if d.pos != buf.len() {
        return Err(format!(
            "{} trailing bytes after the msgpack value",
            buf.len() - d.pos
        ));
    }
    Ok(v)
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() - self.pos < n {
            return Err(format!(
                "declared length {n} exceeds the {} bytes that remain",
                self.buf.len() - self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn be(&mut self, n: usize) -> Result<u64, String> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
    fn value(&mut self, depth: usize) -> Result<Mp<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("msgpack nested deeper than {MAX_DEPTH}"));
        }
        let m = Marker::from_u8(self.take(1)?[0]);
        Ok(match m {
            Marker::Null => Mp::Nil,
            Marker::True => Mp::Bool(true),
            Marker::False => Mp::Bool(false),
            Marker::FixPos(v) => Mp::Int(i64::from(v)),
            Marker::FixNeg(v) => Mp::Int(i64::from(v)),
            Marker::U8 => Mp::Int(self.be(1)? as i64),
            Marker::U16 => Mp::Int(self.be(2)? as i64),
            Marker::U32 => Mp::Int(self.be(4)? as i64),
            Marker::U64 => {
                let v = self.be(8)?;
                i64::try_from(v).map_or(Mp::UInt(v), Mp::Int)
            }
            Marker::I8 => Mp::Int(i64::from(self.be(1)? as u8 as i8)),
            Marker::I16 => Mp::Int(i64::from(self.be(2)? as u16 as i16)),
            Marker::I32 => Mp::Int(i64::from(self.be(4)? as u32 as i32)),
            Marker::I64 => Mp::Int(self.be(8)? as i64),
            Marker::F32 => Mp::F64(f64::from(f32::from_bits(self.be(4)? as u32))),
            Marker::F64 => Mp::F64(f64::from_bits(self.be(8)?)),
            Marker::FixStr(n) => self.str(n as usize)?,
            Marker::Str8 => {
                let n = self.be(1)? as usize;
                self.str(n)?
            }
            Marker::Str16 => {
                let n = self.be(2)? as usize;
                self.str(n)?
            }
            Marker::Str32 => {
                let n = self.be(4)? as usize;
                self.str(n)?
            }
            Marker::Bin8 => {
                let n = self.be(1)? as usize;
                Mp::Bin(self.take(n)?)
            }
            Marker::Bin16 => {
                let n = self.be(2)? as usize;
                Mp::Bin(self.take(n)?)
            }
            Marker::Bin32 => {
                let n = self.be(4)? as usize;
                Mp::Bin(self.take(n)?)
            }
            Marker::FixArray(n) => self.array(n as usize, depth)?,
            Marker::Array16 => {
                let n = self.be(2)? as usize;
                self.array(n, depth)?
            }
            Marker::Array32 => {
                let n = self.be(4)? as usize;
                self.array(n, depth)?
            }
            Marker::FixMap(n) => self.map(n as usize, depth)?,
            Marker::Map16 => {
                let n = self.be(2)? as usize;
                self.map(n, depth)?
            }
            Marker::Map32 => {
                let n = self.be(4)? as usize;
                self.map(n, depth)?
            }
            other => return Err(format!("unsupported msgpack marker {other:?}")),
        })
    }
    fn str(&mut self, n: usize) -> Result<Mp<'a>, String> {
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(Mp::Str)
            .map_err(|_| "invalid UTF-8 in a msgpack str".into())
    }
    fn array(&mut self, n: usize, depth: usize) -> Result<Mp<'a>, String> {
        // Every element takes at least one byte, so a count larger than what remains is a lie.
        if n > self.buf.len() - self.pos {
            return Err(format!(
                "array declares {n} items but only {} bytes remain",
                self.buf.len() - self.pos
            ));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.value(depth + 1)?);
        }
        Ok(Mp::Array(v))
    }
    fn map(&mut self, n: usize, depth: usize) -> Result<Mp<'a>, String> {
        if n.saturating_mul(2) > self.buf.len() - self.pos {
            return Err(format!(
                "map declares {n} pairs but only {} bytes remain",
                self.buf.len() - self.pos
            ));
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.value(depth + 1)?;
            v.push((k, self.value(depth + 1)?));
        }
        Ok(Mp::Map(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_kind() {
        let mut e = Enc::default();
        e.map(8);
        e.str("i");
        e.int(-5);
        e.str("big");
        e.uint(u64::MAX);
        e.str("f");
        e.f64(1.5);
        e.str("b");
        e.bool(true);
        e.str("n");
        e.nil();
        e.str("bin");
        e.bin(&[1, 2, 3]);
        e.str("arr");
        e.array(2);
        e.int(300);
        e.int(-70000);
        e.str("s");
        e.str(&"x".repeat(300));
        let v = decode(&e.buf).unwrap();
        assert_eq!(v.get("i"), Some(&Mp::Int(-5)));
        assert_eq!(v.get("big"), Some(&Mp::UInt(u64::MAX)));
        assert_eq!(v.get("f"), Some(&Mp::F64(1.5)));
        assert_eq!(v.get("b"), Some(&Mp::Bool(true)));
        assert_eq!(v.get("n"), Some(&Mp::Nil));
        assert_eq!(v.get("bin").and_then(Mp::as_bin), Some(&[1u8, 2, 3][..]));
        assert_eq!(
            v.get("arr"),
            Some(&Mp::Array(vec![Mp::Int(300), Mp::Int(-70000)]))
        );
        assert_eq!(v.get("s").and_then(Mp::as_str).map(str::len), Some(300));
    }

    #[test]
    fn length_bombs_are_refused_without_allocating() {
        // array32 declaring 4 billion items, then nothing.
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff])
            .unwrap_err()
            .contains("declares"));
        assert!(decode(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2])
            .unwrap_err()
            .contains("exceeds"));
        let deep = vec![0x91u8; 100];
        assert!(decode(&deep).unwrap_err().contains("deeper"));
    }

    #[test]
    fn truncations_never_panic() {
        let mut e = Enc::default();
        e.array(3);
        e.str("hello");
        e.bin(&[9; 40]);
        e.f64(2.0);
        for cut in 0..e.buf.len() {
            assert!(decode(&e.buf[..cut]).is_err());
        }
    }
}
