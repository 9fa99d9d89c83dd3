//! The local spill file of a network sink: frames that did not fit the in-memory buffer, in
//! `seq` order, after a copy of the shard's header frame, so the file is itself a readable
//! shard and can be sent later with `steplog push`.
//!
//! Invariant: an entry is added to the index only after its bytes are wholly in the file.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Frames of one write, as the network sink tracks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// `seq` of the first frame.
    pub first: u64,
    /// One past the `seq` of the last frame.
    pub end: u64,
    /// Rows in its batch frames.
    pub rows: u64,
}

/// An open spill file and what it holds.
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    file: File,
    len: u64,
    /// Each spilled write: its span, offset and length in the file.
    pub index: VecDeque<(Span, u64, u64)>,
}

impl Spill {
    /// Creates the file at `path` (never an existing one) and writes `header` (frame 0) first.
    pub fn create(path: &Path, header: &[u8]) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)?;
        file.write_all(header)?;
        Ok(Spill {
            path: path.to_path_buf(),
            file,
            len: header.len() as u64,
            index: VecDeque::new(),
        })
    }

    /// Appends one write's frames. On failure the file is cut back to its previous length.
    pub fn append(&mut self, span: Span, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.file.write_all(bytes) {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.index.push_back((span, self.len, bytes.len() as u64));
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Reads back the bytes of a spilled write.
    pub fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    /// Forgets writes the collector acknowledged (`end <= acked`).
    pub fn prune(&mut self, acked: u64) {
        while self.index.front().is_some_and(|(s, _, _)| s.end <= acked) {
            self.index.pop_front();
        }
    }

    /// Makes the file durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the file (everything in it was acknowledged).
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}
