//! The bounded, lock-free hand-off between callers and the writer: crossbeam's `ArrayQueue`
//! (Vyukov's bounded MPMC queue) of owned chunks of rows, plus a pool that returns the
//! writer's emptied chunks to callers so steady-state logging does not allocate.
//!
//! Invariants: producers never do I/O and never take a lock; every row that does not reach
//! the writer is counted in `Stats::rows_dropped`; a `block` wait is bounded.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::sync::Unparker;
use crossbeam_utils::Backoff;

use crate::chunk::Chunk;
use crate::config::OverflowPolicy;
use crate::stats::Stats;
use crate::value::Item;

/// Capacity of the pool of recycled chunks.
const POOL_CAPACITY: usize = 64;
/// Largest chunk allocation worth recycling.
const POOL_MAX_BYTES: usize = 4 << 20;

/// Bounded queue from the callers to the writer thread.
#[derive(Debug)]
pub struct Ring {
    items: ArrayQueue<Item>,
    pool: ArrayQueue<Chunk>,
    policy: OverflowPolicy,
    block_timeout: Duration,
    wake_at: usize,
    writer: Unparker,
    stats: Arc<Stats>,
}

impl Ring {
    /// A ring of `capacity` chunks that wakes `writer` when it is a quarter full.
    pub fn new(
        capacity: usize,
        policy: OverflowPolicy,
        block_timeout: Duration,
        writer: Unparker,
        stats: Arc<Stats>,
    ) -> Self {
        Ring {
            items: ArrayQueue::new(capacity.max(2)),
            pool: ArrayQueue::new(POOL_CAPACITY),
            policy,
            block_timeout,
            wake_at: (capacity / 4).max(1),
            writer,
            stats,
        }
    }

    /// Queues `item` under the overflow policy, waiting for space under `block` (callers
    /// that hold a lock use [`Ring::offer`] instead). Returns `false` when it was dropped.
    pub fn push(&self, item: Item) -> bool {
        match self.offer(item) {
            Ok(kept) => kept,
            Err(item) => {
                let rows = rows_of(&item);
                self.push_blocking(item, rows)
            }
        }
    }

    /// Queues `item` under the overflow policy without ever waiting: `Ok(false)` when a drop
    /// policy dropped it, `Err(item)` (the writer woken) when the ring is full under `block`,
    /// so that the caller can wait for space with nothing held ([`Ring::wait_for_space`]).
    pub fn offer(&self, item: Item) -> Result<bool, Item> {
        let rows = rows_of(&item);
        let item = match self.items.push(item) {
            Ok(()) => {
                self.stats.rows_queued.fetch_add(rows, Relaxed);
                if self.items.len() >= self.wake_at {
                    self.writer.unpark();
                }
                return Ok(true);
            }
            Err(item) => item,
        };
        self.writer.unpark();
        match self.policy {
            OverflowPolicy::DropNew => {
                self.drop_item(item);
                Ok(false)
            }
            OverflowPolicy::DropOldest => {
                self.stats.rows_queued.fetch_add(rows, Relaxed);
                if let Some(old) = self.items.force_push(item) {
                    // Evicted before the writer saw it: dropped, so no longer queued (a
                    // finish would otherwise count these rows as unwritten too).
                    self.stats.rows_queued.fetch_sub(rows_of(&old), Relaxed);
                    self.drop_item(old);
                }
                Ok(true)
            }
            OverflowPolicy::Block => Err(item),
        }
    }

    /// Whether a push now would find no space (a hint: the writer may pop meanwhile).
    pub fn is_full(&self) -> bool {
        self.items.is_full()
    }

    /// Whether full rows wait for space under this ring's policy (`block`) rather than
    /// being dropped at once.
    pub fn blocks(&self) -> bool {
        self.policy == OverflowPolicy::Block
    }

    /// Polls `ready(has_space)` (with backoff, holding nothing) until it returns `true`, at
    /// most until `deadline`, waking the writer at each poll. Returns whether it did.
    pub fn wait_for_space(&self, deadline: Instant, mut ready: impl FnMut(bool) -> bool) -> bool {
        let backoff = Backoff::new();
        loop {
            if ready(!self.items.is_full()) {
                return true;
            }
            self.writer.unpark();
            if Instant::now() >= deadline {
                return false;
            }
            if backoff.is_completed() {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                backoff.snooze();
            }
        }
    }

    /// The bounded wait under `block`, from now.
    pub fn block_deadline(&self) -> Instant {
        Instant::now() + self.block_timeout
    }

    /// Queues `item` if there is space, whatever the overflow policy (control items are never
    /// dropped for speed); `Err(item)`, the writer woken, when the ring is full.
    pub fn try_push(&self, item: Item) -> Result<(), Item> {
        let rows = rows_of(&item);
        match self.items.push(item) {
            Ok(()) => {
                self.stats.rows_queued.fetch_add(rows, Relaxed);
                if self.items.len() >= self.wake_at {
                    self.writer.unpark();
                }
                Ok(())
            }
            Err(item) => {
                self.writer.unpark();
                Err(item)
            }
        }
    }

    fn push_blocking(&self, mut item: Item, rows: u64) -> bool {
        let deadline = Instant::now() + self.block_timeout;
        let backoff = Backoff::new();
        loop {
            match self.items.push(item) {
                Ok(()) => {
                    self.stats.rows_queued.fetch_add(rows, Relaxed);
                    return true;
                }
                Err(back) => item = back,
            }
            self.writer.unpark();
            if Instant::now() >= deadline {
                self.drop_item(item);
                return false;
            }
            if backoff.is_completed() {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                backoff.snooze();
            }
        }
    }

    /// Drops `item`, counting its rows in `rows_dropped` (or a summary item in
    /// `summary_dropped`).
    pub fn drop_item(&self, item: Item) {
        match item {
            Item::Chunk(chunk) => {
                self.stats
                    .rows_dropped
                    .fetch_add(chunk.rows() as u64, Relaxed);
                self.recycle(chunk);
            }
            Item::SummarySet(..) | Item::SummaryDelete(_) | Item::Define(_) | Item::RunMeta(_) => {
                self.stats.summary_dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// The next item for the writer.
    pub fn pop(&self) -> Option<Item> {
        self.items.pop()
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Returns a chunk to the pool (the writer calls this once it has taken the values).
    pub fn recycle(&self, mut chunk: Chunk) {
        let bytes = chunk.capacity_bytes();
        if bytes > 0 && bytes <= POOL_MAX_BYTES {
            chunk.clear();
            let _ = self.pool.push(chunk);
        }
    }

    /// An empty chunk, recycled when one is available.
    pub fn spare(&self) -> Chunk {
        self.pool.pop().unwrap_or_default()
    }

    /// Wakes the writer.
    pub fn wake(&self) {
        self.writer.unpark();
    }
}

fn rows_of(item: &Item) -> u64 {
    match item {
        Item::Chunk(c) => c.rows() as u64,
        Item::SummarySet(..) | Item::SummaryDelete(_) | Item::Define(_) | Item::RunMeta(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Cell, Value};
    use crossbeam_utils::sync::Parker;

    fn row(step: i64) -> Item {
        Item::Chunk(Chunk {
            rows: vec![crate::chunk::Row {
                step,
                tick: 0,
                end: 1,
            }],
            cells: vec![Cell {
                key: 1,
                value: Value::F64(step as f64),
            }],
        })
    }

    fn ring(cap: usize, policy: OverflowPolicy) -> (Ring, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let parker = Parker::new();
        let r = Ring::new(
            cap,
            policy,
            Duration::from_millis(20),
            parker.unparker().clone(),
            stats.clone(),
        );
        (r, stats)
    }

    fn steps(r: &Ring) -> Vec<i64> {
        std::iter::from_fn(|| r.pop())
            .map(|i| match i {
                Item::Chunk(c) => c.rows[0].step,
                _ => -1,
            })
            .collect()
    }

    #[test]
    fn drop_new_keeps_the_oldest_and_counts() {
        let (r, stats) = ring(4, OverflowPolicy::DropNew);
        let kept: Vec<bool> = (0..6).map(|s| r.push(row(s))).collect();
        assert_eq!(kept, [true, true, true, true, false, false]);
        assert_eq!(steps(&r), [0, 1, 2, 3]);
        assert_eq!(stats.rows_dropped.load(Relaxed), 2);
        assert_eq!(stats.rows_queued.load(Relaxed), 4);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts() {
        let (r, stats) = ring(4, OverflowPolicy::DropOldest);
        for s in 0..6 {
            r.push(row(s));
        }
        assert_eq!(steps(&r), [2, 3, 4, 5]);
        assert_eq!(stats.rows_dropped.load(Relaxed), 2);
        assert_eq!(
            stats.rows_queued.load(Relaxed),
            4,
            "evicted rows are not queued"
        );
    }

    #[test]
    fn block_waits_a_bounded_time_then_drops() {
        let (r, stats) = ring(2, OverflowPolicy::Block);
        assert!(r.push(row(0)) && r.push(row(1)));
        let start = Instant::now();
        assert!(!r.push(row(2)), "nobody drains, so the push must give up");
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(stats.rows_dropped.load(Relaxed), 1);
    }

    #[test]
    fn block_succeeds_once_a_consumer_drains() {
        let (r, _stats) = ring(2, OverflowPolicy::Block);
        let r = Arc::new(Ring {
            block_timeout: Duration::from_secs(30),
            ..Arc::try_unwrap(Arc::new(r)).unwrap()
        });
        r.push(row(0));
        r.push(row(1));
        let consumer = {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while seen.len() < 3 {
                    if let Some(Item::Chunk(c)) = r.pop() {
                        seen.push(c.rows[0].step);
                    }
                }
                seen
            })
        };
        assert!(r.push(row(2)));
        assert_eq!(consumer.join().unwrap(), [0, 1, 2]);
    }

    #[test]
    fn recycled_chunks_come_back_empty_with_their_capacity() {
        let (r, _) = ring(4, OverflowPolicy::Block);
        let Item::Chunk(c) = row(3) else {
            unreachable!()
        };
        r.recycle(c);
        let back = r.spare();
        assert_eq!(back.rows(), 0);
        assert!(back.cells.is_empty() && back.cells.capacity() >= 1);
    }
}
