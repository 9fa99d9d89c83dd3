//! One collector connection, from the TLS handshake and the HELLO to the close: the checks
//! in the order `docs/NETWORK.md` gives them, the REPLY, then the session (frames in, acks
//! out; see `session.rs`) and the shard's release.
//!
//! Invariants: the token is read and compared (in constant time) before any other byte the
//! client chose; the whole handshake (TLS and HELLO) is bounded by `handshake_timeout`; a
//! rejected connection gets its REPLY, a FIN, and a bounded drain of what it already sent
//! (so the reply is not lost to a reset); every close is one line on stderr and a counter.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

use super::budget::Budget;
use super::config::CollectorConfig;
use super::session::{self, Close};
use super::shard_file::{Owner, Registry};
use super::stats::{bump, Counters};
use crate::net::protocol::{self, Status};

/// Read buffer per connection (the spec's "64 KiB read buffer").
pub(crate) const READ_BUFFER: usize = 64 << 10;
/// How long a closing connection is given to take its last REPLY or ACK.
pub(crate) const LINGER: Duration = Duration::from_secs(1);
/// At most this much is read and discarded after a rejection, so the REPLY is not reset.
const DRAIN_BYTES: usize = 64 << 10;

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub config: CollectorConfig,
    pub registry: Registry,
    /// Payload bytes held in memory by all connections together.
    pub budget: Budget,
    pub counters: Counters,
    /// Becomes `true` when the collector stops.
    pub shutdown: watch::Receiver<bool>,
    /// Open connections (including those being turned away).
    pub active: AtomicUsize,
    pub next_id: AtomicU64,
}

/// Writes one line on stderr for a notable event (never per frame).
pub(crate) fn log(who: &str, msg: std::fmt::Arguments<'_>) {
    eprintln!("steplog serve: {who}: {msg}");
}

/// One open connection: counted when accepted, uncounted when its task ends, panics or is
/// dropped unpolled.
pub(crate) struct ActiveGuard(Arc<Ctx>);

impl ActiveGuard {
    /// Counts a new connection; also says whether it is over `--max-connections`.
    pub fn new(ctx: &Arc<Ctx>) -> (Self, bool) {
        let before = ctx.active.fetch_add(1, Ordering::Relaxed);
        (
            ActiveGuard(ctx.clone()),
            before >= ctx.config.max_connections,
        )
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A HELLO that was turned away: the status to answer (none when the client never finished
/// it) and the reason to log.
struct Rejected(Option<Status>, String);

struct Hello {
    run: String,
    shard: String,
}

/// Serves one accepted connection; `busy` when it is over `--max-connections`.
pub(crate) async fn serve_conn(
    active: ActiveGuard,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    busy: bool,
) {
    let ctx = active.0.clone();
    bump(&ctx.counters.connections, 1);
    let deadline = Instant::now() + ctx.config.handshake_timeout;
    let who = peer.to_string();
    match tls {
        None => handle(&ctx, tcp, &who, deadline, busy).await,
        Some(acceptor) => match timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => handle(&ctx, stream, &who, deadline, busy).await,
            Ok(Err(e)) => reject_quietly(&ctx, &who, format_args!("TLS handshake failed: {e}")),
            Err(_) => reject_quietly(
                &ctx,
                &who,
                format_args!("no TLS handshake within the handshake timeout"),
            ),
        },
    }
}

fn reject_quietly(ctx: &Ctx, who: &str, why: std::fmt::Arguments<'_>) {
    bump(&ctx.counters.rejected_connections, 1);
    log(who, format_args!("closed: {why}"));
}

async fn read_hello<R: AsyncRead + Unpin>(r: &mut R, token: &[u8]) -> Result<Hello, Rejected> {
    let lost = |e: std::io::Error| Rejected(None, format!("connection lost during the hello: {e}"));
    let mut fixed = [0u8; protocol::HELLO_FIXED];
    r.read_exact(&mut fixed).await.map_err(lost)?;
    let malformed = || Rejected(Some(Status::BadHello), "malformed hello".into());
    let lens = protocol::decode_hello_fixed(&fixed).ok_or_else(malformed)?;
    let mut presented = vec![0u8; lens.token];
    r.read_exact(&mut presented).await.map_err(lost)?;
    if !protocol::token_matches(&presented, token) {
        return Err(Rejected(Some(Status::BadToken), "wrong token".into()));
    }
    let mut names = vec![0u8; lens.run + lens.shard];
    r.read_exact(&mut names).await.map_err(lost)?;
    let (run, shard) = names.split_at(lens.run);
    if !protocol::check_name(run) || !protocol::check_name(shard) {
        return Err(Rejected(
            Some(Status::BadHello),
            "malformed hello (run id or shard name is not 1-128 of [A-Za-z0-9_.-])".into(),
        ));
    }
    // NOTE: check_name admits only ASCII, so these conversions cannot lose anything.
    Ok(Hello {
        run: String::from_utf8_lossy(run).into_owned(),
        shard: String::from_utf8_lossy(shard).into_owned(),
    })
}

async fn handle<S>(ctx: &Arc<Ctx>, stream: S, who: &str, deadline: Instant, busy: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(READ_BUFFER, rd);
    let hello = match timeout_at(deadline, read_hello(&mut rd, &ctx.config.token)).await {
        Ok(Ok(_)) if busy => Err(Rejected(
            Some(Status::Busy),
            format!(
                "too many connections (--max-connections {})",
                ctx.config.max_connections
            ),
        )),
        Ok(r) => r,
        Err(_) => Err(Rejected(
            None,
            "no whole hello within the handshake timeout".into(),
        )),
    };
    let hello = match hello {
        Ok(h) => h,
        Err(Rejected(status, why)) => {
            return reject(ctx, who, &mut rd, &mut wr, status, &why).await
        }
    };
    let who = format!("{who} run {} shard {}", hello.run, hello.shard);
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let kick = Arc::new(Notify::new());
    let owner = Owner {
        id,
        kick: kick.clone(),
    };
    let c = ctx.clone();
    let opened =
        tokio::task::spawn_blocking(move || c.registry.acquire(&hello.run, &hello.shard, owner))
            .await;
    let (shard, opened) = match opened {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let why = format!("could not open the shard: {e}");
            return reject(ctx, &who, &mut rd, &mut wr, Some(Status::ServerError), &why).await;
        }
        Err(e) => {
            let why = format!("could not open the shard: its task failed: {e}");
            return reject(ctx, &who, &mut rd, &mut wr, Some(Status::ServerError), &why).await;
        }
    };
    let reply = protocol::encode_reply(Status::Ok, opened.next_seq);
    let sent = timeout_at(deadline.max(Instant::now() + LINGER), wr.write_all(&reply)).await;
    if !matches!(sent, Ok(Ok(()))) {
        bump(&ctx.counters.rejected_connections, 1);
        log(&who, format_args!("closed: could not send the reply"));
        return release(ctx, &who, &shard, id).await;
    }
    bump(&ctx.counters.sessions, 1);
    let took = if opened.took_over {
        ", took over from an older connection"
    } else {
        ""
    };
    let cut = if opened.cut > 0 {
        format!(", cut a torn last frame of {} bytes", opened.cut)
    } else {
        String::new()
    };
    log(
        &who,
        format_args!("accepted (next seq {}{took}{cut})", opened.next_seq),
    );

    let (outcome, stored) = session::run(ctx, rd, wr, &shard, id, &kick, opened.next_seq).await;
    match outcome {
        Close::Eof => log(
            &who,
            format_args!(
                "closed by the writer ({stored} frames stored, next seq {})",
                shard.next_seq()
            ),
        ),
        Close::Shutdown => log(
            &who,
            format_args!("closed: the collector is stopping ({stored} frames stored)"),
        ),
        Close::Lost(e) => log(
            &who,
            format_args!("closed: connection lost between frames: {e} ({stored} frames stored)"),
        ),
        Close::TakenOver => log(
            &who,
            format_args!("closed: taken over by a newer connection for the same shard"),
        ),
        other => {
            bump(&ctx.counters.closed_on_error, 1);
            if matches!(other, Close::SlowFrame(_)) {
                bump(&ctx.counters.slow_frames, 1);
            }
            log(
                &who,
                format_args!("closed: {other} ({stored} frames stored)"),
            );
        }
    }
    release(ctx, &who, &shard, id).await;
}

async fn release(ctx: &Arc<Ctx>, who: &str, shard: &Arc<super::shard_file::Shard>, id: u64) {
    let s = shard.clone();
    match tokio::task::spawn_blocking(move || s.release(id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            bump(&ctx.counters.io_errors, 1);
            log(who, format_args!("{e}"));
        }
        Err(e) => {
            bump(&ctx.counters.io_errors, 1);
            log(who, format_args!("releasing the shard failed: {e}"));
        }
    }
}

/// Answers `status` (when the client finished its HELLO), closes our side, and reads what
/// the client already sent for a moment, so that closing does not reset the reply away.
async fn reject<R, W>(
    ctx: &Ctx,
    who: &str,
    rd: &mut R,
    wr: &mut W,
    status: Option<Status>,
    why: &str,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    bump(&ctx.counters.rejected_connections, 1);
    log(who, format_args!("closed: {why}"));
    let Some(status) = status else { return };
    let linger = async {
        wr.write_all(&protocol::encode_reply(status, 0)).await?;
        wr.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            match rd.read(&mut scratch).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    // NOTE: best effort by design: a client that hung up or will not read has been told all
    // it can be told; the close itself was logged and counted above.
    let _ = timeout(LINGER, linger).await;
}
