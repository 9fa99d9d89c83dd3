//! Peak resident memory of a closure, from Linux's `VmHWM` after resetting it through
//! `/proc/self/clear_refs`; `None` where that is unavailable. The resident set is the whole
//! process's, so a test that measures holds [`serial`] for its whole run (building its input
//! included), and tests of one binary do not measure each other.

use std::sync::{Mutex, MutexGuard};

static LOCK: Mutex<()> = Mutex::new(());

/// Held by each test of the binary for its whole run.
pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `f`; returns its result and by how many bytes the resident set grew at its peak.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Option<usize>) {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_bytes("VmRSS:");
    let out = f();
    let peak = status_bytes("VmHWM:");
    let grew = match (reset, before, peak) {
        (true, Some(b), Some(p)) => Some(p.saturating_sub(b)),
        _ => None,
    };
    (out, grew)
}
