//! One client connection to a collector: connecting (plain TCP or TLS), the HELLO/REPLY
//! handshake, sending bytes and reading ACKs.
//!
//! Invariants: every blocking operation has a timeout (connect, each write, each ack read), so
//! the thread that owns a connection is never stuck on a dead collector; the token is never
//! written to messages or errors.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::net::protocol::{self, Status, MESSAGE_LEN};
use crate::net::target::Target;

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
