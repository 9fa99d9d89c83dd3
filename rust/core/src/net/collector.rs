//! The collector, `steplog serve`: accepts writer connections (TCP or TLS) and writes the
//! frames they stream as ordinary shard files under its runs directory (`docs/NETWORK.md`).
//!
//! Layout: [`config`] (settings and validation), `budget` (the memory budget), `conn` (handshake and close of one
//! connection), `session` (frames in, acks out), `shard_file` (the shard registry and file
//! handling), `tls` (the rustls acceptor), [`stats`] (counters).
//!
//! Invariants: the collector runs on its own two-worker tokio runtime and returns only after
//! every connection has ended (each gets [`SHUTDOWN_GRACE`] to finish the frame it is
//! reading) and every written shard file was fsynced; payload memory across all connections
//! stays within `max_memory_bytes`, taken as frames arrive, never for a frame declared but
//! not sent; open connections stay within `max_connections` (the
//! next ones are answered "busy" within the handshake timeout).

mod budget;
mod config;
mod conn;
mod session;
mod shard_file;
mod stats;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use config::{
    CollectorConfig, TlsFiles, DEFAULT_FRAME_TIMEOUT, DEFAULT_FSYNC_INTERVAL,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MIN_FRAME_RATE,
};
pub use session::SHUTDOWN_GRACE;
pub use stats::CollectorStats;

use self::budget::Budget;
use self::conn::{log, Ctx, LINGER};
use self::shard_file::Registry;
use self::stats::bump;
use crate::error::{Error, Result};

/// Pause after a failed `accept` (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs a collector until `shutdown` completes, then stops gracefully and returns its
/// counters. `on_ready` is called once with the bound address (useful with port 0) before
/// the first connection is accepted. Blocks the calling thread.
pub fn serve<F>(
    config: CollectorConfig,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: F,
) -> Result<CollectorStats>
where
    F: Future<Output = ()>,
{
    serve_with(config, on_ready, move || Ok(shutdown))
}

/// [`serve`] until the process receives SIGTERM or SIGINT (what `steplog serve` runs).
/// The signal handlers stay installed after it returns.
pub fn serve_until_signal(
    config: CollectorConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<CollectorStats> {
    use tokio::signal::unix::{signal, SignalKind};
    serve_with(config, on_ready, || {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    })
}

fn serve_with<F, M>(
    config: CollectorConfig,
    on_ready: impl FnOnce(SocketAddr),
    make_shutdown: M,
) -> Result<CollectorStats>
where
    F: Future<Output = ()>,
    M: FnOnce() -> std::io::Result<F>,
{
    config.validate()?;
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("steplog-serve")
        .on_thread_start(crate::signals::block_in_this_thread)
        .build()
        .map_err(|e| Error::io("start the collector's runtime in", &config.dir, e))?;
    let shutdown = {
        let _in_runtime = rt.enter();
        make_shutdown().map_err(|e| Error::io("install signal handlers for", &config.dir, e))?
    };
    let listener = rt
        .block_on(TcpListener::bind(config.listen.as_str()))
        .map_err(|e| Error::io("listen on", &config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("listen on", &config.listen, e))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        registry: Registry::new(config.dir.clone()),
        budget: Budget::new(config.max_memory_bytes),
        counters: Default::default(),
        shutdown: stop_rx,
        active: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        config,
    });
    on_ready(addr);
    let stats = rt.block_on(run(ctx, listener, tls, shutdown, stop_tx));
    rt.shutdown_timeout(LINGER);
    Ok(stats)
}

async fn run<F: Future<Output = ()>>(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: F,
    stop_tx: watch::Sender<bool>,
) -> CollectorStats {
    tokio::pin!(shutdown);
    let me = listener
        .local_addr()
        .map_or_else(|_| "collector".to_string(), |a| a.to_string());
    let mut tasks = JoinSet::new();
    let fsyncs = tokio::spawn(fsync_loop(ctx.clone()));
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => reap(&ctx, &me, done),
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        log(&peer.to_string(), format_args!("could not set TCP_NODELAY: {e}"));
                    }
                    let (active, busy) = conn::ActiveGuard::new(&ctx);
                    tasks.spawn(conn::serve_conn(active, tcp, peer, tls.clone(), busy));
                }
                Err(e) => {
                    bump(&ctx.counters.io_errors, 1);
                    log(&me, format_args!("accept failed: {e}"));
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    let open = tasks.len();
    if open > 0 {
        log(
            &me,
            format_args!("stopping: {open} connections finish their frame"),
        );
    }
    let bound = SHUTDOWN_GRACE + LINGER + ctx.config.handshake_timeout.min(LINGER);
    let drained = tokio::time::timeout(bound, async {
        while let Some(done) = tasks.join_next().await {
            reap(&ctx, &me, done);
        }
    })
    .await;
    if drained.is_err() {
        log(
            &me,
            format_args!(
                "stopping: {} connections did not end in time; closed",
                tasks.len()
            ),
        );
        tasks.abort_all();
    }
    fsyncs.abort();
    let c = ctx.clone();
    let errors = match tokio::task::spawn_blocking(move || c.registry.sync_dirty()).await {
        Ok(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
        Err(e) => vec![format!("the final fsync failed: {e}")],
    };
    for e in &errors {
        bump(&ctx.counters.io_errors, 1);
        log(&me, format_args!("{e}"));
    }
    let stats = ctx.counters.snapshot();
    log(&me, format_args!("stopped: {stats}"));
    stats
}

fn reap(ctx: &Ctx, me: &str, done: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        bump(&ctx.counters.io_errors, 1);
        log(me, format_args!("a connection's task failed: {e}"));
    }
}

/// Fsyncs written shard files every `fsync_interval`, off the async workers.
async fn fsync_loop(ctx: Arc<Ctx>) {
    let mut every = tokio::time::interval(ctx.config.fsync_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let c = ctx.clone();
        let errors = match tokio::task::spawn_blocking(move || c.registry.sync_dirty()).await {
            Ok(errors) => errors.into_iter().map(|e| e.to_string()).collect(),
            Err(e) => vec![format!("the periodic fsync failed: {e}")],
        };
        for e in errors {
            bump(&ctx.counters.io_errors, 1);
            log("fsync", format_args!("{e}"));
        }
    }
}
