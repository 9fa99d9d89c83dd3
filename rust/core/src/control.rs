//! Requests from callers to the writer thread (flush, sync, shutdown) and its
//! acknowledgements. Each request is a ticket from a counter; the writer reads the counters
//! before it drains the ring, so a request covers every item pushed before it was made, and
//! acknowledges the tickets it read once the work is done.
//!
//! Invariants: every wait is bounded by its caller's timeout; a request made after the writer
//! exited fails with [`Error::Closed`] instead of waiting.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// Tickets the writer has completed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Acks {
    /// Flush tickets written (`u64::MAX` once the writer closed the shard).
    pub flushed: u64,
    /// Sync tickets written and fsynced.
    pub synced: u64,
}

/// The writer's side of a request: the tickets it read at the start of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Highest flush ticket requested.
    pub flush: u64,
    /// Highest sync ticket requested.
    pub sync: u64,
    /// Whether a shutdown was requested.
    pub shutdown: bool,
}

/// Shared between the callers and the writer thread.
#[derive(Debug, Default)]
pub struct Control {
    flush_requested: AtomicU64,
    sync_requested: AtomicU64,
    acks: Mutex<Acks>,
    acks_cv: Condvar,
    shutdown: AtomicBool,
    exited: AtomicBool,
}

/// What a caller waits for.
#[derive(Debug, Clone, Copy)]
pub enum Ticket {
    /// A flush ticket.
    Flush(u64),
    /// A sync ticket.
    Sync(u64),
    /// The writer's exit.
    Exit,
}

impl Control {
    /// A new flush ticket.
    pub fn request_flush(&self) -> Ticket {
        Ticket::Flush(self.flush_requested.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// A new sync ticket (a flush followed by an fsync).
    pub fn request_sync(&self) -> Ticket {
        Ticket::Sync(self.sync_requested.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Asks the writer to close the shard and exit.
    pub fn request_shutdown(&self) -> Ticket {
        self.shutdown.store(true, Ordering::Release);
        Ticket::Exit
    }

    /// The writer reads what is pending (before draining the ring).
    pub fn pending(&self) -> Pending {
        Pending {
            shutdown: self.shutdown.load(Ordering::Acquire),
            flush: self.flush_requested.load(Ordering::Acquire),
            sync: self.sync_requested.load(Ordering::Acquire),
        }
    }

    /// What the writer has acknowledged so far.
    pub fn acks(&self) -> Acks {
        *self.acks.lock()
    }

    /// The writer acknowledges tickets up to these.
    pub fn acknowledge(&self, upto: Acks) {
        let mut acks = self.acks.lock();
        acks.flushed = acks.flushed.max(upto.flushed);
        acks.synced = acks.synced.max(upto.synced);
        self.acks_cv.notify_all();
    }

    /// The writer has exited; every later request fails at once.
    pub fn exited(&self) {
        self.exited.store(true, Ordering::Release);
        self.acknowledge(Acks {
            flushed: u64::MAX,
            synced: u64::MAX,
        });
    }

    /// Waits until `ticket` is done, at most `timeout`; `pending` is reported on a timeout.
    pub fn wait(
        &self,
        ticket: Ticket,
        timeout: Duration,
        pending: impl Fn() -> usize,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut acks = self.acks.lock();
        loop {
            let done = match ticket {
                Ticket::Flush(t) => acks.flushed >= t,
                Ticket::Sync(t) => acks.synced >= t,
                Ticket::Exit => self.exited.load(Ordering::Acquire),
            };
            if done {
                return Ok(());
            }
            if self.exited.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            if self.acks_cv.wait_until(&mut acks, deadline).timed_out() {
                return Err(Error::Timeout {
                    seconds: timeout.as_secs_f64(),
                    pending: pending(),
                });
            }
        }
    }
}
