//! The collector's settings (`steplog serve` flags) and their validation.
//!
//! Invariant: a [`CollectorConfig`] that passed [`CollectorConfig::validate`] can hold every
//! frame it accepts within its memory budget (`max_frame_bytes <= max_memory_bytes`), never
//! accepts a frame the format forbids (`max_frame_bytes <= frame::MAX_PAYLOAD`), and has a
//! token the protocol can carry (1..=255 bytes).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::frame;
use crate::net::protocol;

/// PEM files that make the collector serve TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// Private key of the leaf certificate (`--tls-key`).
    pub key: PathBuf,
}

/// Everything `steplog serve` is told on its command line.
#[derive(Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Address to listen on, `HOST:PORT` (port 0 picks a free one).
    pub listen: String,
    /// Runs directory: frames go to `<dir>/<run id>/<shard>.steplog`.
    pub dir: PathBuf,
    /// The token every writer must present.
    pub token: Vec<u8>,
    /// Largest payload a frame may declare (`--max-frame-bytes`).
    pub max_frame_bytes: usize,
    /// Payload bytes all connections together may hold (`--max-memory-bytes`).
    pub max_memory_bytes: usize,
    /// Open connections; the next one is answered "busy" (`--max-connections`).
    pub max_connections: usize,
    /// How long a connection may send nothing between frames (`--idle-timeout-s`); also the
    /// most a single frame may take to arrive once it has started.
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this (`--frame-timeout-s`) plus its payload at
    /// `min_frame_rate`, from its first byte (time waiting for memory not counted).
    pub frame_timeout: Duration,
    /// Bytes per second a frame's payload must at least arrive at (`--min-frame-rate`).
    pub min_frame_rate: u64,
    /// How long a connection has to complete its HELLO (and TLS handshake).
    pub handshake_timeout: Duration,
    /// How often written shard files are fsynced (`--fsync-interval-s`).
    pub fsync_interval: Duration,
    /// Serve TLS with these files instead of plain TCP.
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for CollectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: the token is a secret; never print it.
        f.debug_struct("CollectorConfig")
            .field("listen", &self.listen)
            .field("dir", &self.dir)
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_memory_bytes", &self.max_memory_bytes)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("frame_timeout", &self.frame_timeout)
            .field("min_frame_rate", &self.min_frame_rate)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("fsync_interval", &self.fsync_interval)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Default `--max-frame-bytes`: the format's own limit.
pub const DEFAULT_MAX_FRAME_BYTES: usize = frame::MAX_PAYLOAD;
/// Default `--max-memory-bytes`.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 256 << 20;
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `--idle-timeout-s`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default `--frame-timeout-s`.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--min-frame-rate` (bytes per second): 1 MiB/s.
pub const DEFAULT_MIN_FRAME_RATE: u64 = 1 << 20;
/// Default `--handshake-timeout-s`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--fsync-interval-s`.
pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_secs(10);

impl CollectorConfig {
    /// A configuration with the documented defaults for everything but the three required
    /// settings.
    pub fn new(
        listen: impl Into<String>,
        dir: impl Into<PathBuf>,
        token: impl Into<Vec<u8>>,
    ) -> Self {
        CollectorConfig {
            listen: listen.into(),
            dir: dir.into(),
            token: token.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            frame_timeout: DEFAULT_FRAME_TIMEOUT,
            min_frame_rate: DEFAULT_MIN_FRAME_RATE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            fsync_interval: DEFAULT_FSYNC_INTERVAL,
            tls: None,
        }
    }

    /// Checks every setting once; the error names the flag, the value and what to pass.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, value: String, reason: String| Error::Config {
            name: name.into(),
            value,
            reason,
        };
        if self.listen.trim().is_empty() {
            return Err(bad(
                "--listen",
                self.listen.clone(),
                "expected HOST:PORT".into(),
            ));
        }
        if self.token.is_empty() || self.token.len() > protocol::MAX_TOKEN {
            return Err(bad(
                "token",
                format!("<{} bytes>", self.token.len()),
                format!(
                    "expected 1 to {} bytes (--token-file or {})",
                    protocol::MAX_TOKEN,
                    protocol::TOKEN_ENV
                ),
            ));
        }
        if self.max_frame_bytes == 0 || self.max_frame_bytes > frame::MAX_PAYLOAD {
            return Err(bad(
                "--max-frame-bytes",
                self.max_frame_bytes.to_string(),
                format!("expected 1 to {} (the format's limit)", frame::MAX_PAYLOAD),
            ));
        }
        // NOTE: one semaphore permit is one byte, and a semaphore holds at most MAX_PERMITS.
        let most = tokio::sync::Semaphore::MAX_PERMITS;
        if self.max_memory_bytes < self.max_frame_bytes || self.max_memory_bytes > most {
            return Err(bad(
                "--max-memory-bytes",
                self.max_memory_bytes.to_string(),
                format!(
                    "expected at least --max-frame-bytes ({}), so any accepted frame fits, \
                     and at most {most}",
                    self.max_frame_bytes
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(bad(
                "--max-connections",
                "0".into(),
                "expected at least 1".into(),
            ));
        }
        if self.min_frame_rate == 0 {
            return Err(bad(
                "--min-frame-rate",
                "0".into(),
                "expected at least 1 byte per second".into(),
            ));
        }
        for (name, d) in [
            ("--idle-timeout-s", self.idle_timeout),
            ("--frame-timeout-s", self.frame_timeout),
            ("--handshake-timeout-s", self.handshake_timeout),
            ("--fsync-interval-s", self.fsync_interval),
        ] {
            if d.is_zero() {
                return Err(bad(
                    name,
                    "0".into(),
                    "expected a positive number of seconds".into(),
                ));
            }
        }
        Ok(())
    }

    /// How long a frame of `payload_len` bytes may take to arrive from its first byte.
    pub fn frame_deadline(&self, payload_len: usize) -> Duration {
        let at_rate = Duration::from_secs_f64(payload_len as f64 / self.min_frame_rate as f64);
        (self.frame_timeout + at_rate).min(self.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_settings_name_their_flag() {
        let ok = CollectorConfig::new("127.0.0.1:0", "runs", b"t".to_vec());
        ok.validate().unwrap();
        let cases: Vec<(&str, CollectorConfig)> = vec![
            ("token", CollectorConfig::new("a:1", "d", Vec::new())),
            ("token", CollectorConfig::new("a:1", "d", vec![b'x'; 256])),
            (
                "--max-frame-bytes",
                CollectorConfig {
                    max_frame_bytes: frame::MAX_PAYLOAD + 1,
                    ..ok.clone()
                },
            ),
            (
                "--max-memory-bytes",
                CollectorConfig {
                    max_memory_bytes: ok.max_frame_bytes - 1,
                    ..ok.clone()
                },
            ),
            (
                "--max-connections",
                CollectorConfig {
                    max_connections: 0,
                    ..ok.clone()
                },
            ),
            (
                "--idle-timeout-s",
                CollectorConfig {
                    idle_timeout: Duration::ZERO,
                    ..ok.clone()
                },
            ),
            (
                "--frame-timeout-s",
                CollectorConfig {
                    frame_timeout: Duration::ZERO,
                    ..ok.clone()
                },
            ),
            (
                "--min-frame-rate",
                CollectorConfig {
                    min_frame_rate: 0,
                    ..ok.clone()
                },
            ),
        ];
        for (flag, c) in cases {
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.starts_with(flag), "{flag}: {msg}");
        }
    }

    #[test]
    fn a_frame_gets_its_timeout_plus_its_payload_at_the_minimum_rate() {
        let c = CollectorConfig::new("a:1", "d", b"t".to_vec());
        assert_eq!(c.frame_deadline(0), Duration::from_secs(10));
        assert_eq!(c.frame_deadline(60 << 20), Duration::from_secs(70));
        let short = CollectorConfig {
            idle_timeout: Duration::from_secs(30),
            ..c
        };
        assert_eq!(short.frame_deadline(60 << 20), Duration::from_secs(30));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = CollectorConfig::new("a:1", "d", b"sekrit".to_vec());
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
