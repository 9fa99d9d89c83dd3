//! The core's one error type. Every variant carries the context a user needs to act on it
//! (path, setting, key); nothing here panics, and the writer thread records these instead of
//! raising them.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `steplog-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed on `path`.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("create", "write", "read", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A setting had a value that cannot be used.
    #[error("{name}={value:?}: {reason}")]
    Config {
        /// The setting's name (keyword argument or environment variable).
        name: String,
        /// The value as given.
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// A value logged under `key` cannot be stored.
    #[error("key '{key}': {reason}")]
    BadValue {
        /// The metric key.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An argument of an API call had a value that cannot be used.
    #[error("{context}: {arg}={value}: {reason}")]
    BadArgument {
        /// The call ("define_metric", ...).
        context: &'static str,
        /// The argument's name.
        arg: &'static str,
        /// The value as given, quoted (at most 80 characters), or `None`.
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// The background writer thread could not be started.
    #[error("could not start the steplog writer thread: {0}")]
    SpawnThread(#[source] io::Error),
    /// The run was already finished.
    #[error("the run is finished; start a new one with steplog.init()")]
    Closed,
    /// A flush or finish did not complete in time.
    #[error("the writer did not finish within {seconds:.1} s ({pending} rows still queued)")]
    Timeout {
        /// How long was waited.
        seconds: f64,
        /// Rows that were still in the queue.
        pending: usize,
    },
    /// A file could not be decoded.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// `Result` with the core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
