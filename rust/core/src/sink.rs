//! Where encoded frames go. A sink receives whole frames; it never sees rows.
//!
//! `FileSink` appends to a new shard file and, when a write fails part-way, cuts the file back
//! to the end of the last whole frame so that no garbage is left in the middle of the file.
//! `MemorySink` keeps bytes in memory and can be paused, so tests reach "queue full" without
//! sleeping.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// A destination for frames.
pub trait Sink: Send {
    /// Writes one or more whole frames.
    fn write_frames(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was written durable (fsync for files).
    fn sync(&mut self) -> io::Result<()>;
    /// A short description for messages ("file runs/abc/s-1.steplog").
    fn describe(&self) -> String;
}

/// Appends frames to a shard file that it created (never an existing one).
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
    good_len: u64,
}

impl FileSink {
    /// Creates `path`; fails if it exists, so nothing is ever truncated.
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file,
            good_len: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    fn write_frames(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.good_len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // NOTE: a short write leaves part of a frame behind; cut it off so the next
                // frame starts at a frame boundary. If even that fails, readers still skip it
                // by checksum.
                let _ = self.file.set_len(self.good_len);
                let _ = self.file.seek(SeekFrom::Start(self.good_len));
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    bytes: Vec<u8>,
    paused: bool,
    fail: Option<io::ErrorKind>,
    syncs: u64,
}

/// An in-memory sink for tests: shareable, pausable, and able to fail on demand.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    state: Arc<(Mutex<MemoryState>, Condvar)>,
}

impl MemorySink {
    /// An empty, running sink.
    pub fn new() -> Self {
        Self::default()
    }
    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.state.0.lock().bytes.clone()
    }
    /// Number of `sync()` calls.
    pub fn syncs(&self) -> u64 {
        self.state.0.lock().syncs
    }
    /// Makes writes wait until [`MemorySink::resume`].
    pub fn pause(&self) {
        self.state.0.lock().paused = true;
    }
    /// Lets waiting writes through.
    pub fn resume(&self) {
        self.state.0.lock().paused = false;
        self.state.1.notify_all();
    }
    /// Makes every write fail with `kind` (or succeed again with `None`).
    pub fn fail_with(&self, kind: Option<io::ErrorKind>) {
        self.state.0.lock().fail = kind;
    }
}

impl Sink for MemorySink {
    fn write_frames(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock();
        while s.paused {
            cv.wait(&mut s);
        }
        if let Some(kind) = s.fail {
            return Err(io::Error::new(kind, "injected failure"));
        }
        s.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.state.0.lock().syncs += 1;
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}
