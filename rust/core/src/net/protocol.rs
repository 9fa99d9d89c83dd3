//! The wire protocol between a writer and the collector (`docs/NETWORK.md`).
//!
//! ```text
//! client → server  HELLO   magic "SLN1", version, token_len, run_len, shard_len (8 bytes),
//!                          then the token, the run id and the shard name
//! server → client  REPLY   magic "SLNR", status, 3 reserved, next_seq u64 LE (16 bytes)
//! client → server  frames  exactly the shard-file frames (`frame.rs`), in seq order
//! server → client  ACK     magic "SLNA", 4 reserved, next_seq u64 LE (16 bytes)
//! ```
//!
//! Invariants: the server reads the token, and checks it in constant time, before it reads
//! any other byte the client chose; `next_seq` always means "every frame with a smaller seq is
//! stored in the collector's shard file", so a client may forget those frames and must resend
//! the others; names that reach the file system are checked by [`check_name`].

use std::fmt;

/// Opens a HELLO.
pub const HELLO_MAGIC: [u8; 4] = *b"SLN1";
/// Opens a REPLY.
pub const REPLY_MAGIC: [u8; 4] = *b"SLNR";
/// Opens an ACK.
pub const ACK_MAGIC: [u8; 4] = *b"SLNA";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Fixed part of a HELLO.
pub const HELLO_FIXED: usize = 8;
/// Size of a REPLY and of an ACK.
pub const MESSAGE_LEN: usize = 16;
/// Longest run id or shard name.
pub const MAX_NAME: usize = 128;
/// Longest token (it must also be at least one byte).
pub const MAX_TOKEN: usize = 255;
/// Environment variable that holds the token when `token=` is not given.
pub const TOKEN_ENV: &str = "STEPLOG_TOKEN";
/// Default port of `steplog serve`.
pub const DEFAULT_PORT: u16 = 7777;

/// The server's answer to a HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Accepted; frames may follow.
    Ok = 0,
    /// The token did not match.
    BadToken = 1,
    /// The HELLO was malformed (magic, version, lengths or names).
    BadHello = 2,
    /// The collector has as many connections as it allows.
    Busy = 3,
    /// The collector could not open the shard (its disk, its permissions).
    ServerError = 4,
}

impl Status {
    /// The status for a reply byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Status::Ok,
            1 => Status::BadToken,
            2 => Status::BadHello,
            3 => Status::Busy,
            4 => Status::ServerError,
            _ => return None,
        })
    }

    /// Whether retrying the same HELLO later can succeed.
    pub fn retryable(self) -> bool {
        matches!(self, Status::Busy | Status::ServerError)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "accepted",
            Status::BadToken => "the collector rejected the token",
            Status::BadHello => "the collector rejected the connection's greeting",
            Status::Busy => "the collector has too many connections",
            Status::ServerError => "the collector could not open the shard",
        })
    }
}

/// Whether `name` may name a run directory or a shard file: 1 to [`MAX_NAME`] bytes of ASCII
/// letters, digits, `_`, `-` and `.`, not starting with `.`.
pub fn check_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name[0] != b'.'
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A HELLO's fixed part, decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloLens {
    /// Token length.
    pub token: usize,
    /// Run id length.
    pub run: usize,
    /// Shard name length.
    pub shard: usize,
}

/// Encodes a HELLO. `token`, `run` and `shard` must satisfy the limits (checked by the caller).
pub fn encode_hello(token: &[u8], run: &str, shard: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HELLO_FIXED + token.len() + run.len() + shard.len());
    out.extend_from_slice(&HELLO_MAGIC);
    out.push(VERSION);
    out.push(token.len() as u8);
    out.push(run.len() as u8);
    out.push(shard.len() as u8);
    out.extend_from_slice(token);
    out.extend_from_slice(run.as_bytes());
    out.extend_from_slice(shard.as_bytes());
    out
}

/// Decodes a HELLO's fixed part; `None` when it is not a HELLO this version accepts.
pub fn decode_hello_fixed(b: &[u8; HELLO_FIXED]) -> Option<HelloLens> {
    let lens = HelloLens {
        token: b[5] as usize,
        run: b[6] as usize,
        shard: b[7] as usize,
    };
    let ok = b[0..4] == HELLO_MAGIC
        && b[4] == VERSION
        && lens.token >= 1
        && (1..=MAX_NAME).contains(&lens.run)
        && (1..=MAX_NAME).contains(&lens.shard);
    ok.then_some(lens)
}

/// Compares a presented token with the expected one in time that depends only on their
/// lengths.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
}

fn message(magic: [u8; 4], byte4: u8, seq: u64) -> [u8; MESSAGE_LEN] {
    let mut out = [0u8; MESSAGE_LEN];
    out[0..4].copy_from_slice(&magic);
    out[4] = byte4;
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    out
}

/// Encodes a REPLY.
pub fn encode_reply(status: Status, next_seq: u64) -> [u8; MESSAGE_LEN] {
    message(REPLY_MAGIC, status as u8, next_seq)
}

/// Encodes an ACK.
pub fn encode_ack(next_seq: u64) -> [u8; MESSAGE_LEN] {
    message(ACK_MAGIC, 0, next_seq)
}

fn seq_of(b: &[u8; MESSAGE_LEN]) -> u64 {
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[8..16]);
    u64::from_le_bytes(seq)
}

/// Decodes a REPLY: its status (`Err` with the raw byte when unknown) and `next_seq`.
pub fn decode_reply(b: &[u8; MESSAGE_LEN]) -> Option<(Result<Status, u8>, u64)> {
    (b[0..4] == REPLY_MAGIC).then(|| (Status::from_u8(b[4]).ok_or(b[4]), seq_of(b)))
}

/// Decodes an ACK's `next_seq`.
pub fn decode_ack(b: &[u8; MESSAGE_LEN]) -> Option<u64> {
    (b[0..4] == ACK_MAGIC).then(|| seq_of(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_bad_lengths() {
        let h = encode_hello(b"secret", "run1", "p12-ab");
        let fixed: [u8; HELLO_FIXED] = h[..HELLO_FIXED].try_into().unwrap();
        let lens = decode_hello_fixed(&fixed).unwrap();
        assert_eq!((lens.token, lens.run, lens.shard), (6, 4, 6));
        assert_eq!(&h[HELLO_FIXED..HELLO_FIXED + 6], b"secret");
        let mut bad = fixed;
        bad[5] = 0;
        assert_eq!(decode_hello_fixed(&bad), None, "empty token");
        let mut bad = fixed;
        bad[6] = (MAX_NAME + 1) as u8;
        assert_eq!(decode_hello_fixed(&bad), None, "run id too long");
        let mut bad = fixed;
        bad[4] = 2;
        assert_eq!(decode_hello_fixed(&bad), None, "unknown version");
    }

    #[test]
    fn names_that_could_escape_the_run_directory_are_refused() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a b", "ü", "a\0"] {
            assert!(!check_name(bad.as_bytes()), "{bad:?}");
        }
        for good in ["abc123", "p12-ab.c", "a_b"] {
            assert!(check_name(good.as_bytes()), "{good:?}");
        }
        assert!(!check_name(&[b'a'; MAX_NAME + 1]));
    }

    #[test]
    fn messages_round_trip() {
        let r = encode_reply(Status::Busy, 7);
        assert_eq!(decode_reply(&r), Some((Ok(Status::Busy), 7)));
        assert_eq!(decode_ack(&r), None);
        let a = encode_ack(u64::MAX);
        assert_eq!(decode_ack(&a), Some(u64::MAX));
        let mut odd = encode_reply(Status::Ok, 1);
        odd[4] = 99;
        assert_eq!(decode_reply(&odd), Some((Err(99), 1)));
    }

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
    }
}
