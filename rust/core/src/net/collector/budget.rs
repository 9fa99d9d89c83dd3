//! The collector's memory budget: payload bytes held in memory by all connections together
//! (`--max-memory-bytes`), taken as a frame's body arrives rather than when its header
//! declares it.
//!
//! Invariants: the bytes held never exceed the budget; a connection holds memory only for
//! bytes it was sent (its buffer grows by doubling, so at most twice those, and never more
//! than its frame); more is given to a frame only while the whole rest of it fits in what is
//! free, so frames that started can always finish one after another (no set of half-read
//! frames can wait on each other forever), and a frame that was declared but whose body does
//! not come holds nothing that another connection waits for.

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Payload memory shared by every connection.
#[derive(Debug)]
pub(crate) struct Budget {
    free: Mutex<usize>,
    freed: Notify,
}

/// Bytes one frame holds; given back when dropped.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        Budget {
            free: Mutex::new(total),
            freed: Notify::new(),
        }
    }

    /// Bytes free now.
    pub fn free(&self) -> usize {
        *self.free.lock()
    }

    /// Nothing held yet, for a frame that is about to be read.
    pub fn hold(&self) -> Held<'_> {
        Held {
            budget: self,
            bytes: 0,
        }
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            *self.free.lock() += bytes;
            self.freed.notify_waiters();
        }
    }
}

impl Held<'_> {
    /// Takes `more` bytes for this frame, whose body still needs `rest` bytes (`more`
    /// included) it does not hold; waits until all of `rest` is free.
    pub async fn grow(&mut self, more: usize, rest: usize) {
        debug_assert!(more <= rest);
        loop {
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            // NOTE: registered before checking, so a release between the check and the
            // wait is not missed.
            freed.as_mut().enable();
            {
                let mut free = self.budget.free.lock();
                if *free >= rest {
                    *free -= more;
                    self.bytes += more;
                    return;
                }
            }
            freed.await;
        }
    }

    /// Bytes this frame holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_frame_takes_memory_only_while_its_whole_rest_fits() {
        rt().block_on(async {
            let b = Budget::new(100);
            let mut a = b.hold();
            a.grow(10, 60).await;
            assert_eq!((a.bytes(), b.free()), (10, 90));
            let mut c = b.hold();
            c.grow(40, 40).await;
            assert_eq!(b.free(), 50);
            // `a` still needs 50 and 50 are free: it may go on; 60 would not fit.
            a.grow(20, 50).await;
            assert_eq!(b.free(), 30);
            let waiting = tokio::time::timeout(Duration::from_millis(50), c.grow(1, 31)).await;
            assert!(waiting.is_err(), "took more than fits");
            drop(a);
            assert_eq!(b.free(), 60);
            c.grow(1, 31).await;
            drop(c);
            assert_eq!(b.free(), 100);
        });
    }

    #[test]
    fn a_waiting_frame_is_woken_when_memory_comes_back() {
        rt().block_on(async {
            let b = Budget::new(10);
            let mut first = b.hold();
            first.grow(8, 8).await;
            let mut second = b.hold();
            let wait = second.grow(5, 5);
            tokio::pin!(wait);
            assert!(futures_poll_once(wait.as_mut()).await.is_none());
            drop(first);
            wait.await;
            assert_eq!(b.free(), 5);
        });
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_millis(20), f)
            .await
            .ok()
    }
}
