//! The threads steplog starts (the writer, the network sender, the collector's workers) never
//! take the process's asynchronous signals.
//!
//! A signal sent to the process (`kill`, Ctrl-C, `Pool.terminate()`) goes to any one thread
//! that does not block it. Python runs its handlers only on the main thread, woken when the
//! signal interrupts what that thread waits on; delivered to a steplog thread instead, the
//! signal only sets Python's flag and a main thread blocked in a wait without timeout (a
//! multiprocessing `Event().wait()`, a queue) never runs its handler: the process ignored its
//! SIGTERM. So every thread steplog starts blocks these signals first, and the kernel delivers
//! them to a thread that takes them, the main one.
//!
//! Synchronous signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGPIPE) are left alone: they belong
//! to the thread that caused them.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The asynchronous signals a steplog thread blocks.
pub const BLOCKED: [Signal; 11] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGCHLD,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGTSTP,
];

/// Blocks [`BLOCKED`] in the calling thread; the first thing each thread steplog starts does.
/// A failure (which POSIX allows only for bad arguments) leaves the mask as it was.
pub fn block_in_this_thread() {
    let mut set = SigSet::empty();
    for s in BLOCKED {
        set.add(s);
    }
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_that_blocks_keeps_its_mask_and_others_are_untouched() {
        let blocked = std::thread::spawn(|| {
            block_in_this_thread();
            SigSet::thread_get_mask().unwrap()
        })
        .join()
        .unwrap();
        for s in BLOCKED {
            assert!(blocked.contains(s), "{s:?} not blocked");
        }
        assert!(!blocked.contains(Signal::SIGSEGV));
        let plain = std::thread::spawn(|| SigSet::thread_get_mask().unwrap())
            .join()
            .unwrap();
        assert!(!plain.contains(Signal::SIGTERM));
    }
}
