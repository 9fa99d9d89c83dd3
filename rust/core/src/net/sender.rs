//! The network sink's sender thread ("steplog-net"): connects, learns the collector's
//! `next_seq`, sends the queued writes it lacks in `seq` order (memory first, then the spill
//! file), reads ACKs and forgets what they cover; on failure it reconnects with exponential
//! backoff (100 ms doubling to 5 s, with jitter) and resends from the new `next_seq`.
//!
//! Invariants: no network I/O under the queue's lock; every connect, write and ack read is
//! bounded, so `stop` is seen within a few seconds.

use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::client::{Queue, Shared};
use crate::net::conn::Conn;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const IDLE_WAIT: Duration = Duration::from_millis(200);
const ACK_WAIT: Duration = Duration::from_millis(20);
/// Longest a connect, the handshake or one write may go without progress, so that stopping
/// the sender (at close) never waits long on a dead network.
const OP_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// The sender thread's state.
pub(super) struct Sender {
    sh: Arc<Shared>,
    conn: Option<Conn>,
    /// One past the last frame sent on this connection.
    sent: u64,
    backoff: Duration,
    retry_at: Option<Instant>,
    failing: bool,
}

impl Sender {
    pub(super) fn new(sh: Arc<Shared>) -> Self {
        Sender {
            sh,
            conn: None,
            sent: 0,
            backoff: BACKOFF_MIN,
            retry_at: None,
            failing: false,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let next = {
                let mut q = self.sh.queue.lock();
                if q.stop {
                    return;
                }
                let idle = q.acked >= q.end || q.fatal.is_some();
                let waiting = self.retry_at.is_some_and(|t| Instant::now() < t);
                if self.conn.is_none() && (idle || waiting) {
                    let until = self
                        .retry_at
                        .filter(|_| !idle)
                        .unwrap_or_else(|| Instant::now() + IDLE_WAIT);
                    self.sh.cv.wait_until(&mut q, until);
                    continue;
                }
                if self.conn.is_some() {
                    Some(self.next_unit(&q))
                } else {
                    None
                }
            };
            match next {
                None => self.connect(),
                Some(Ok(Some((end, bytes)))) => self.send(end, &bytes),
                Some(Ok(None)) => self.await_acks(),
                Some(Err(e)) => {
                    self.sh.note_error(format!("reading the spill file: {e}"));
                    self.sh.queue.lock().fatal = Some(format!("spill file unreadable: {e}"));
                }
            }
        }
    }

    /// The next write to send on this connection: its end seq and bytes.
    fn next_unit(&self, q: &Queue) -> io::Result<Option<(u64, Arc<[u8]>)>> {
        if let Some(u) = q.mem.iter().find(|u| u.span.end > self.sent) {
            return Ok(Some((u.span.end, Arc::clone(&u.bytes))));
        }
        if let Some(spill) = &q.spill {
            if let Some((span, offset, len)) =
                spill.index.iter().find(|(s, _, _)| s.end > self.sent)
            {
                return Ok(Some((span.end, Arc::from(spill.read(*offset, *len)?))));
            }
        }
        Ok(None)
    }

    fn connect(&mut self) {
        let o = &self.sh.opts;
        match Conn::open(&o.target, &o.run, &o.shard, o.timeout.min(OP_TIMEOUT_MAX)) {
            Ok((conn, next)) => {
                let mut q = self.sh.queue.lock();
                let forgotten = q.mem.front().map(|u| u.span.first).or_else(|| {
                    q.spill
                        .as_ref()
                        .and_then(|s| s.index.front().map(|(sp, _, _)| sp.first))
                });
                if next < q.acked && forgotten.is_none_or(|f| next < f) {
                    let msg = format!(
                        "{} holds {next} frames of this shard but had acknowledged {}; \
                         the frames between are not kept here, so the rest stays local",
                        o.target.url, q.acked
                    );
                    q.fatal = Some(msg.clone());
                    drop(q);
                    self.sh.note_error(msg);
                    return;
                }
                self.sh.prune(&mut q, next);
                drop(q);
                self.sent = next;
                self.conn = Some(conn);
                if self.failing {
                    if let Some(s) = self.sh.stats() {
                        s.reconnects.fetch_add(1, Relaxed);
                    }
                }
                self.failing = false;
                self.backoff = BACKOFF_MIN;
                self.retry_at = None;
            }
            Err(e) => {
                let message = format!("connecting to {}: {e}", o.target.url);
                if !e.retryable() {
                    self.sh.queue.lock().fatal = Some(message.clone());
                }
                self.failed(message);
            }
        }
    }

    fn failed(&mut self, message: String) {
        self.conn = None;
        if !self.failing {
            self.sh.note_error(message);
        } else if let Some(s) = self.sh.stats() {
            s.net_errors.fetch_add(1, Relaxed);
        }
        self.failing = true;
        // Jitter from the clock's low bits spreads the reconnects of many workers.
        let jitter = u64::from(Instant::now().elapsed().subsec_nanos() % 1000);
        let wait = self.backoff + self.backoff.mul_f64(jitter as f64 / 4000.0);
        self.retry_at = Some(Instant::now() + wait);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn send(&mut self, end: u64, bytes: &[u8]) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match conn.send(bytes) {
            Ok(()) => {
                self.sent = end;
                self.read_acks(Duration::ZERO);
            }
            Err(e) => self.failed(format!("sending to {}: {e}", self.sh.opts.target.url)),
        }
    }

    fn await_acks(&mut self) {
        let outstanding = {
            let q = self.sh.queue.lock();
            q.acked < self.sent
        };
        if outstanding {
            self.read_acks(ACK_WAIT);
        } else {
            let mut q = self.sh.queue.lock();
            if !q.stop && q.end <= self.sent {
                self.sh.cv.wait_for(&mut q, IDLE_WAIT);
            }
        }
    }

    fn read_acks(&mut self, wait: Duration) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match conn.read_acks(wait) {
            Ok(Some(next)) => {
                let mut q = self.sh.queue.lock();
                self.sh.prune(&mut q, next);
            }
            Ok(None) => {}
            Err(e) => self.failed(format!("reading from {}: {e}", self.sh.opts.target.url)),
        }
    }
}
