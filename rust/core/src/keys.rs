//! Key interning. The accumulator maps names to dense ids on the caller's thread; the writer
//! reads the names back from the shared, append-only registry when it first meets an id.
//! Invariant: ids are never reused or renamed, and id 0 is `_timestamp`.

use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::value::KeyId;

/// The reserved key holding each row's wall-clock time.
pub const TIMESTAMP_KEY: &str = "_timestamp";
/// The reserved key name for the step (never stored as a column; each column has steps).
pub const STEP_KEY: &str = "_step";
/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Append-only id → name table shared by the accumulator and the writer.
#[derive(Debug, Default)]
pub struct KeyRegistry {
    names: RwLock<Vec<Arc<str>>>,
}

impl KeyRegistry {
    /// A registry with the reserved keys already in it.
    pub fn new() -> Arc<Self> {
        let reg = KeyRegistry::default();
        reg.names.write().push(Arc::from(TIMESTAMP_KEY));
        Arc::new(reg)
    }

    /// The name of `id`, if it was registered.
    pub fn name(&self, id: KeyId) -> Option<Arc<str>> {
        self.names.read().get(id as usize).cloned()
    }

    /// Number of registered keys.
    pub fn len(&self) -> usize {
        self.names.read().len()
    }

    /// Whether only the reserved keys exist.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    fn push(&self, name: &Arc<str>) -> KeyId {
        let mut names = self.names.write();
        names.push(Arc::clone(name));
        KeyId::try_from(names.len() - 1).unwrap_or(KeyId::MAX)
    }
}

/// Entries of the interner's cache (256 = 2^8, in pairs).
const CACHE_SLOTS: usize = 256;
/// Names up to this many bytes are kept inside their cache entry and compared there.
const SHORT_NAME: usize = 16;

/// One entry of the interner's cache.
#[derive(Debug, Clone, Copy, Default)]
struct CacheEntry {
    /// Address of the name's bytes when it was cached.
    addr: usize,
    /// The id; 0 marks an empty entry.
    id: KeyId,
    /// The name's length in bytes.
    len: u32,
    /// The name's bytes, zero-padded, when it is at most [`SHORT_NAME`] long.
    head: [u8; SHORT_NAME],
}

/// Whether `a` (of length `n` ≤ [`SHORT_NAME`]) equals the first `n` bytes of `b`: two
/// overlapping loads per side instead of a call into `memcmp`, which costs more than the
/// compare itself for names this short.
#[inline]
fn short_eq(a: &[u8], b: &[u8; SHORT_NAME]) -> bool {
    let n = a.len();
    fn word<const W: usize>(s: &[u8]) -> [u8; W] {
        s[..W].try_into().unwrap_or([0; W])
    }
    if n >= 8 {
        n <= SHORT_NAME
            && word::<8>(a) == word::<8>(b)
            && word::<8>(&a[n - 8..]) == word::<8>(&b[n - 8..])
    } else if n >= 4 {
        word::<4>(a) == word::<4>(b) && word::<4>(&a[n - 4..]) == word::<4>(&b[n - 4..])
    } else if n >= 2 {
        word::<2>(a) == word::<2>(b) && a[n - 1] == b[n - 1]
    } else {
        n == 0 || a[0] == b[0]
    }
}

/// Name → id map owned by one accumulator.
///
/// In front of the map sits a small direct-mapped cache keyed by the address of the name's
/// bytes: a hot loop passes the same key strings (Python's interned literals) on every call,
/// so a hit costs an address compare and a short byte compare instead of hashing. The bytes
/// are always compared, so an address reused by another string can never return a wrong id.
#[derive(Debug)]
pub struct Interner {
    registry: Arc<KeyRegistry>,
    ids: FxHashMap<Arc<str>, KeyId>,
    /// Names by id (index 0 is the reserved timestamp key).
    names: Vec<Arc<str>>,
    cache: Box<[CacheEntry]>,
}

impl Interner {
    /// An interner over `registry`.
    pub fn new(registry: Arc<KeyRegistry>) -> Self {
        let mut ids = FxHashMap::default();
        let ts: Arc<str> = Arc::from(TIMESTAMP_KEY);
        ids.insert(Arc::clone(&ts), 0);
        Interner {
            registry,
            ids,
            names: vec![ts],
            cache: vec![CacheEntry::default(); CACHE_SLOTS].into_boxed_slice(),
        }
    }

    /// The id for `name`, registering it on first use. Rejects empty, oversized and reserved
    /// names with an error that names the key.
    // NOTE: only the cache hit is inlined (into every caller's per-key loop); a miss goes out
    // of line.
    #[inline(always)]
    pub fn intern(&mut self, name: &str) -> Result<KeyId> {
        let addr = name.as_ptr() as usize;
        // Fibonacci hashing of the address picks a pair of slots (two-way associative, so
        // two hot keys that hash alike do not evict each other on every call).
        let slot = (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - 8)) & !1;
        for s in [slot, slot + 1] {
            let e = &self.cache[s];
            if e.addr == addr && e.id != 0 && e.len as usize == name.len() {
                let same = if name.len() <= SHORT_NAME {
                    short_eq(name.as_bytes(), &e.head)
                } else {
                    *self.names[e.id as usize] == *name
                };
                if same {
                    return Ok(e.id);
                }
            }
        }
        self.intern_miss(name, slot)
    }

    /// [`Interner::intern`] past the cache: looks `name` up (registering it) and caches it in
    /// the pair at `slot`.
    #[inline(never)]
    fn intern_miss(&mut self, name: &str, slot: usize) -> Result<KeyId> {
        let addr = name.as_ptr() as usize;
        let id = self.intern_slow(name)?;
        let mut head = [0; SHORT_NAME];
        if name.len() <= SHORT_NAME {
            head[..name.len()].copy_from_slice(name.as_bytes());
        }
        // The newer entry goes first; the older one moves to the pair's second slot.
        self.cache[slot + 1] = self.cache[slot];
        self.cache[slot] = CacheEntry {
            addr,
            id,
            // Names are at most `MAX_KEY_BYTES` long (checked by `intern_slow`).
            len: name.len() as u32,
            head,
        };
        Ok(id)
    }

    fn intern_slow(&mut self, name: &str) -> Result<KeyId> {
        if let Some(&id) = self.ids.get(name) {
            if id != 0 {
                return Ok(id);
            }
        }
        validate_key(name)?;
        let name: Arc<str> = Arc::from(name);
        let id = self.registry.push(&name);
        debug_assert_eq!(
            id as usize,
            self.names.len(),
            "only this interner registers keys"
        );
        self.ids.insert(Arc::clone(&name), id);
        self.names.push(name);
        Ok(id)
    }

    /// The shared registry.
    pub fn registry(&self) -> &Arc<KeyRegistry> {
        &self.registry
    }
}

/// Checks a key name for the rules every key must meet.
pub fn validate_key(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "keys must not be empty".to_string()
    } else if name == TIMESTAMP_KEY || name == STEP_KEY {
        format!("{name} is reserved for the row's own step and time; choose another key")
    } else if name.len() > MAX_KEY_BYTES {
        format!(
            "keys are limited to {MAX_KEY_BYTES} bytes, this one has {}",
            name.len()
        )
    } else if name.contains('\0') {
        "keys must not contain NUL characters".to_string()
    } else {
        return Ok(());
    };
    let shown: String = name.chars().take(80).collect();
    Err(Error::BadValue { key: shown, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_eq_compares_every_byte_of_every_short_length() {
        for n in 0..=SHORT_NAME {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i).collect();
            let mut b = [0u8; SHORT_NAME];
            b[..n].copy_from_slice(&a);
            assert!(short_eq(&a, &b), "length {n}");
            for i in 0..n {
                let mut c = b;
                c[i] ^= 0x20;
                assert!(!short_eq(&a, &c), "length {n}, byte {i} differs");
            }
        }
        // Bytes past the name's length do not matter (the length is compared apart).
        let mut b = *b"abcXXXXXXXXXXXXX";
        assert!(short_eq(b"abc", &b));
        b[2] = b'd';
        assert!(!short_eq(b"abc", &b));
        // Longer than an entry holds: never equal here (compared against the full name).
        assert!(!short_eq(&[b'a'; SHORT_NAME + 1], &[b'a'; SHORT_NAME]));
    }

    #[test]
    fn the_cache_never_answers_for_different_bytes_at_the_same_address() {
        let mut int = Interner::new(KeyRegistry::new());
        let mut buf = String::from("loss");
        let a = int.intern(&buf).unwrap();
        assert_eq!(int.intern(&buf).unwrap(), a, "a hit");
        // Same address, other bytes (as when Python frees a key string and reuses its memory).
        buf.make_ascii_uppercase();
        let b = int.intern(&buf).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            int.intern("LOSS").unwrap(),
            b,
            "another address, same bytes"
        );
        assert_eq!(int.intern("loss").unwrap(), a);
        assert!(
            int.intern("_timestamp").is_err(),
            "the reserved key stays reserved"
        );
        assert_eq!(int.registry().name(b).as_deref(), Some("LOSS"));

        // Names longer than a cache entry holds: the last byte differs at the same address.
        let mut long = String::from("train/some/long/metric/name/0");
        let x = int.intern(&long).unwrap();
        assert_eq!(int.intern(&long).unwrap(), x, "a hit");
        long.pop();
        long.push('1');
        let y = int.intern(&long).unwrap();
        assert_ne!(x, y);
        // Same address, a shorter name that is a prefix of the cached one.
        long.truncate(5);
        let z = int.intern(&long).unwrap();
        assert_eq!(int.registry().name(z).as_deref(), Some("train"));
        assert_ne!(z, x);
    }

    #[test]
    fn ids_are_dense_stable_and_shared() {
        let reg = KeyRegistry::new();
        let mut interner = Interner::new(reg.clone());
        let a = interner.intern("loss").unwrap();
        let b = interner.intern("acc").unwrap();
        assert_eq!((a, b), (1, 2));
        assert_eq!(interner.intern("loss").unwrap(), 1);
        assert_eq!(reg.name(2).as_deref(), Some("acc"));
        assert_eq!(reg.name(0).as_deref(), Some(TIMESTAMP_KEY));
        assert_eq!(reg.len(), 3);
    }

    #[test]
    fn bad_keys_are_rejected_with_the_key_named() {
        let mut interner = Interner::new(KeyRegistry::new());
        for bad in ["", "_step", "_timestamp", "a\0b"] {
            assert!(interner.intern(bad).is_err(), "{bad:?} accepted");
        }
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let msg = interner.intern(&long).unwrap_err().to_string();
        assert!(msg.contains("1024 bytes"), "{msg}");
        let msg = interner.intern("_step").unwrap_err().to_string();
        assert!(msg.contains("_step"), "{msg}");
    }
}
