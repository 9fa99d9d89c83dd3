//! The writer thread's start and end: a panic on it is caught, recorded in the stats
//! (`writer_panic`) and ends it as an exit does, so `finish()` reports it and never waits
//! for a thread that is gone. Also a test-only way to cause such a panic.

use std::thread::JoinHandle;

use super::State;

/// TEST ONLY: set (to anything) when a shard starts, makes its writer thread panic when it
/// is first asked to flush, sync or finish, so tests see how a panic is reported. Not a
/// setting; may change without notice.
pub(super) const PANIC_VAR: &str = "STEPLOG_TEST_WRITER_PANIC";

/// The text of a panic's payload.
pub(super) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Starts the thread running `state`.
pub(super) fn spawn(state: State) -> std::io::Result<JoinHandle<()>> {
    let (stats, control) = (state.stats.clone(), state.control.clone());
    std::thread::Builder::new()
        .name("steplog-writer".into())
        .spawn(move || {
            crate::signals::block_in_this_thread();
            // NOTE: the state (sink included) is dropped while unwinding; what the thread
            // had not written is counted by `finish()` as unwritten.
            let run = std::panic::AssertUnwindSafe(move || state.run());
            if let Err(payload) = std::panic::catch_unwind(run) {
                stats.record_panic(panic_text(&*payload));
                control.exited();
            }
        })
}
