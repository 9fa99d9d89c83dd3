//! One client connection to a collector: parsing the sink URL, connecting (plain TCP or TLS),
//! the HELLO/REPLY handshake, sending bytes and reading ACKs.
//!
//! Invariants: every blocking operation has a timeout (connect, each write, each ack read), so
//! the thread that owns a connection is never stuck on a dead collector; the token is never
//! written to messages or errors.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::net::protocol::{self, Status, MESSAGE_LEN};

/// Where a network sink sends its frames, and how it proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given (`tcp://host:port` or `tls://host:port`), for messages.
    pub url: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
    /// The shared secret.
    pub token: Vec<u8>,
    /// PEM bundle of certificate authorities to trust for TLS (else the built-in roots).
    pub tls_ca: Option<PathBuf>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: never the token.
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("tls_ca", &self.tls_ca)
            .finish_non_exhaustive()
    }
}

fn bad(name: &str, value: &str, reason: &str) -> Error {
    Error::Config {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

impl Target {
    /// Parses `tcp://HOST:PORT` or `tls://HOST:PORT` (IPv6 hosts in brackets).
    pub fn parse(url: &str, token: &[u8], tls_ca: Option<PathBuf>) -> Result<Self> {
        let expected = "expected tcp://HOST:PORT or tls://HOST:PORT";
        let (tls, rest) = if let Some(r) = url.strip_prefix("tcp://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("tls://") {
            (true, r)
        } else {
            return Err(bad("sink", url, expected));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("sink", url, expected))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("sink", url, "the port must be a number from 1 to 65535"))?;
        if host.is_empty() {
            return Err(bad("sink", url, expected));
        }
        if token.is_empty() || token.len() > protocol::MAX_TOKEN {
            return Err(bad(
                "token",
                "",
                "a network sink needs a token of 1 to 255 bytes: pass token= or set \
                 STEPLOG_TOKEN to the collector's token",
            ));
        }
        Ok(Target {
            url: url.to_string(),
            host: host.to_string(),
            port,
            tls,
            token: token.to_vec(),
            tls_ca,
        })
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The network or the collector's process failed; worth retrying.
    Io(io::Error),
    /// The collector answered with a status other than accepted.
    Refused(Status),
    /// The collector said something that is not this protocol.
    Protocol(String),
    /// TLS could not be set up (a bad CA file): retrying will not help.
    Tls(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Io(e) => write!(f, "{e}"),
            ConnectError::Refused(s) => write!(f, "{s}"),
            ConnectError::Protocol(m) | ConnectError::Tls(m) => f.write_str(m),
        }
    }
}

impl ConnectError {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ConnectError::Io(_) | ConnectError::Protocol(_) => true,
            ConnectError::Refused(s) => s.retryable(),
            ConnectError::Tls(_) => false,
        }
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        ConnectError::Io(e)
    }
}

fn tls_config(target: &Target) -> std::result::Result<Arc<rustls::ClientConfig>, ConnectError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match &target.tls_ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    ConnectError::Tls(format!("tls_ca={}: not a PEM file ({e})", path.display()))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ConnectError::Tls(format!(
                    "tls_ca={}: no usable certificate in it",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An accepted connection to a collector.
pub struct Conn {
    stream: Stream,
    ack_buf: [u8; MESSAGE_LEN],
    ack_filled: usize,
}

impl Conn {
    /// Connects, says HELLO for `run`/`shard` and returns the connection and the collector's
    /// `next_seq`. Each step waits at most `timeout`.
    pub fn open(
        target: &Target,
        run: &str,
        shard: &str,
        timeout: Duration,
    ) -> std::result::Result<(Conn, u64), ConnectError> {
        if !protocol::check_name(run.as_bytes()) || !protocol::check_name(shard.as_bytes()) {
            return Err(ConnectError::Protocol(format!(
                "run id {run:?} or shard name {shard:?} cannot be sent to a collector"
            )));
        }
        let timeout = timeout.max(Duration::from_millis(1));
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
        let mut tcp = None;
        for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let stream = if target.tls {
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| ConnectError::Tls(format!("{}: {e}", target.url)))?;
            let conn = rustls::ClientConnection::new(tls_config(target)?, name)
                .map_err(|e| ConnectError::Tls(e.to_string()))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        } else {
            Stream::Plain(tcp)
        };
        let mut conn = Conn {
            stream,
            ack_buf: [0; MESSAGE_LEN],
            ack_filled: 0,
        };
        conn.stream
            .write_all(&protocol::encode_hello(&target.token, run, shard))?;
        conn.stream.flush()?;
        let mut reply = [0u8; MESSAGE_LEN];
        match conn.stream.read_exact(&mut reply) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ConnectError::Protocol(format!(
                    "the collector closed the connection before answering the greeting ({}; \
                     a TLS collector needs tls://, a plain one tcp://)",
                    if target.tls { "TLS" } else { "plain TCP" }
                )))
            }
            r => r?,
        }
        match protocol::decode_reply(&reply) {
            Some((Ok(Status::Ok), next)) => Ok((conn, next)),
            Some((Ok(status), _)) => Err(ConnectError::Refused(status)),
            Some((Err(b), _)) => Err(ConnectError::Protocol(format!(
                "the collector answered with unknown status {b}"
            ))),
            None => Err(ConnectError::Protocol(
                "the peer is not a steplog collector (bad reply)".into(),
            )),
        }
    }

    /// Sends `bytes` whole (a timeout or error leaves the connection unusable).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads ACKs for at most `wait`; returns the largest `next_seq` read, if any. An error
    /// (including the collector closing the connection) leaves the connection unusable.
    pub fn read_acks(&mut self, wait: Duration) -> io::Result<Option<u64>> {
        let normal = self.stream.tcp().read_timeout()?;
        self.stream
            .tcp()
            .set_read_timeout(Some(wait.max(Duration::from_micros(100))))?;
        let mut best = None;
        let result = loop {
            match self.stream.read(&mut self.ack_buf[self.ack_filled..]) {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the collector closed the connection",
                    ))
                }
                Ok(n) => {
                    self.ack_filled += n;
                    if self.ack_filled == MESSAGE_LEN {
                        self.ack_filled = 0;
                        match protocol::decode_ack(&self.ack_buf) {
                            Some(seq) => best = best.max(Some(seq)),
                            None => {
                                break Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    "the collector sent something that is not an ACK",
                                ))
                            }
                        }
                        // Drain what else is already there without waiting again.
                        self.stream
                            .tcp()
                            .set_read_timeout(Some(Duration::from_micros(100)))?;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break Ok(best)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        self.stream.tcp().set_read_timeout(normal)?;
        result
    }
}

/// The network target chosen by the `sink`, `token` and `tls_ca` settings (keyword arguments,
/// then `STEPLOG_SINK`, `STEPLOG_TOKEN`, `STEPLOG_TLS_CA`); `None` for the file sink (no
/// `sink`, or `sink="file"`).
pub fn target_from(
    given: &[(String, crate::config::Setting)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Target>> {
    use crate::config::Setting;
    let text = |name: &str| -> Result<Option<String>> {
        match given.iter().find(|(n, _)| n == name) {
            Some((_, Setting::Text(s))) => Ok(Some(s.clone())),
            Some((_, Setting::Num(n))) => Err(bad(name, &n.to_string(), "expected a string")),
            None => Ok(env(&crate::config::env_name(name)).filter(|s| !s.is_empty())),
        }
    };
    let Some(url) = text("sink")? else {
        return Ok(None);
    };
    let url = url.trim().to_string();
    if url == "file" {
        return Ok(None);
    }
    let token = text("token")?.unwrap_or_default();
    let ca = text("tls_ca")?.map(PathBuf::from);
    Target::parse(&url, token.trim().as_bytes(), ca).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Setting;

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, Setting)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Setting::Text(v.to_string())))
            .collect()
    }

    #[test]
    fn urls_parse_and_bad_ones_name_the_setting() {
        let t = Target::parse("tcp://127.0.0.1:7777", b"t", None).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 7777, false));
        let t = Target::parse("tls://[::1]:9/", b"t", None).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 9, true));
        for bad in [
            "http://h:1",
            "tcp://h",
            "tcp://:1",
            "tcp://h:0",
            "tcp://h:99999",
        ] {
            let e = Target::parse(bad, b"t", None).unwrap_err().to_string();
            assert!(e.starts_with("sink="), "{bad}: {e}");
        }
        let e = Target::parse("tcp://h:1", b"", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("STEPLOG_TOKEN"), "{e}");
        assert!(!format!("{t:?}").contains('t') || !format!("{t:?}").contains("token: "));
    }

    #[test]
    fn settings_then_environment() {
        let none = |_: &str| None;
        assert!(target_from(&[], none).unwrap().is_none());
        assert!(target_from(&given(&[("sink", "file")]), none)
            .unwrap()
            .is_none());
        let env = |k: &str| match k {
            "STEPLOG_SINK" => Some("tcp://envhost:1".to_string()),
            "STEPLOG_TOKEN" => Some(" envtoken\n".to_string()),
            _ => None,
        };
        let t = target_from(&[], env).unwrap().unwrap();
        assert_eq!(
            (t.host.as_str(), t.token.as_slice()),
            ("envhost", &b"envtoken"[..])
        );
        let t = target_from(&given(&[("sink", "tcp://kw:2"), ("token", "kwt")]), env)
            .unwrap()
            .unwrap();
        assert_eq!((t.host.as_str(), t.token.as_slice()), ("kw", &b"kwt"[..]));
        let e = target_from(&given(&[("sink", "tcp://kw:2")]), none).unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
    }
}
