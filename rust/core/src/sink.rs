//! Where encoded frames go. A sink receives whole frames; it never sees rows.
//!
//! `FileSink` appends to a new shard file and, when a write fails part-way, cuts the file back
//! to the end of the last whole frame so that no garbage is left in the middle of the file. Its
//! first sync also fsyncs the directory, so the new file's name is durable too. It keeps
//! [`CLOSE_RESERVE`] bytes allocated past the end of the file (`fallocate` with
//! `KEEP_SIZE`, where the filesystem has it): a write that would leave no room for them fails
//! as a full disk would, so the shard's close frame still fits on a disk that is full.
//! `MemorySink` keeps bytes in memory and can be paused, so tests reach "queue full" without
//! sleeping.
//!
//! TEST ONLY: two environment variables, read when a `FileSink` is created, let tests make the
//! disk slow or full from Python. They are not settings and may change without notice:
//! `STEPLOG_TEST_SINK_DELAY_MS=<ms>` makes every write after the shard header's wait that
//! long; `STEPLOG_TEST_SINK_FAIL=<after>:<count>[:ENOSPC|EIO]` lets `after` writes succeed
//! (the header's is the first), then makes the next `count` write half their bytes and fail.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::stats::Stats;

/// A destination for frames.
pub trait Sink: Send {
    /// Writes one or more whole frames, consecutive in `seq`, whose batches hold `rows` rows.
    fn write_frames(&mut self, bytes: &[u8], rows: u64) -> io::Result<()>;
    /// Makes what was written durable (fsync for files). Never waits on a network.
    fn sync(&mut self) -> io::Result<()>;
    /// Waits, at most `timeout`, until everything written has reached its destination (a
    /// collector's acknowledgement). Called for `run.sync()` only.
    fn deliver(&mut self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }
    /// Called once after the last write and sync: a network sink waits (bounded) for its last
    /// acknowledgements and keeps the rest in its spill file.
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Says that the next write is the shard's last (its close frame): it may use the space
    /// the sink kept for it.
    fn closing(&mut self) {}
    /// Gives the sink the shard's counters (a network sink reports delivery in them).
    fn attach_stats(&mut self, _stats: Arc<Stats>) {}
    /// A short description for messages ("file runs/abc/s-1.steplog").
    fn describe(&self) -> String;
}

/// Appends frames to a shard file that it created (never an existing one).
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: File,
    good_len: u64,
    dir_synced: bool,
    faults: TestFaults,
    /// Whether the close frame's room is kept past the end (the filesystem can preallocate).
    reserve: bool,
    /// The next write is the close frame: it may take the kept room.
    closing: bool,
}

/// Bytes a [`FileSink`] keeps allocated past the end of its file for the close frame.
pub const CLOSE_RESERVE: u64 = 64 << 10;

/// Whether `e` says the disk (or the user's quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
}

/// Injected slowness and failures (see the module's TEST ONLY note).
#[derive(Debug, Default, Clone, Copy)]
struct TestFaults {
    delay: Option<Duration>,
    fail_after: u64,
    fail_count: u64,
    errno: i32,
    writes: u64,
}

const DELAY_VAR: &str = "STEPLOG_TEST_SINK_DELAY_MS";
const FAIL_VAR: &str = "STEPLOG_TEST_SINK_FAIL";

impl TestFaults {
    fn from_env() -> Result<Self> {
        let mut f = TestFaults::default();
        let bad = |name: &str, value: &str, reason: &str| Error::Config {
            name: name.into(),
            value: value.into(),
            reason: reason.into(),
        };
        if let Ok(v) = std::env::var(DELAY_VAR) {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| bad(DELAY_VAR, &v, "expected ms"))?;
            f.delay = Some(Duration::from_millis(ms));
        }
        if let Ok(v) = std::env::var(FAIL_VAR) {
            let expected = "expected AFTER:COUNT[:ENOSPC|EIO] (test only)";
            let parts: Vec<&str> = v.trim().split(':').collect();
            let num = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
            let errno = match parts.get(2).copied() {
                None | Some("ENOSPC") => libc::ENOSPC,
                Some("EIO") => libc::EIO,
                Some(_) => return Err(bad(FAIL_VAR, &v, expected)),
            };
            match (num(0), num(1), parts.len() <= 3) {
                (Some(after), Some(count), true) => {
                    (f.fail_after, f.fail_count, f.errno) = (after, count, errno);
                }
                _ => return Err(bad(FAIL_VAR, &v, expected)),
            }
        }
        Ok(f)
    }

    /// Counts a write; returns the error it must fail with, after waiting if asked.
    fn on_write(&mut self) -> Option<io::Error> {
        self.writes += 1;
        if let (Some(d), true) = (self.delay, self.writes > 1) {
            std::thread::sleep(d);
        }
        let n = self.writes - 1;
        (n >= self.fail_after && n - self.fail_after < self.fail_count)
            .then(|| io::Error::from_raw_os_error(self.errno))
    }
}

impl FileSink {
    /// Creates `path`; fails if it exists, so nothing is ever truncated.
    pub fn create(path: &Path) -> Result<Self> {
        let faults = TestFaults::from_env()?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        let mut sink = FileSink {
            path: path.to_path_buf(),
            file,
            good_len: 0,
            dir_synced: false,
            faults,
            reserve: true,
            closing: false,
        };
        // NOTE: a disk already full shows at the header's write; nothing to report here.
        let _ = sink.keep_reserve();
        Ok(sink)
    }

    /// Appends to a file the caller opened for writing (a device such as `/dev/full`), after
    /// what it holds. Its directory is not synced.
    pub fn from_file(file: File, path: &Path) -> Result<Self> {
        let good_len = file
            .metadata()
            .map_err(|e| Error::io("stat", path, e))?
            .len();
        Ok(FileSink {
            path: path.to_path_buf(),
            file,
            good_len,
            dir_synced: true,
            faults: TestFaults::default(),
            reserve: false,
            closing: false,
        })
    }

    /// Allocates [`CLOSE_RESERVE`] bytes past the end of the file. Fails only for a full
    /// disk; a filesystem without preallocation turns the reserve off.
    fn keep_reserve(&mut self) -> io::Result<()> {
        if !self.reserve {
            return Ok(());
        }
        let keep = rustix::fs::FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, keep, self.good_len, CLOSE_RESERVE) {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = io::Error::from(e);
                if !is_full(&e) {
                    self.reserve = false;
                    return Ok(());
                }
                Err(e)
            }
        }
    }

    /// Cuts the file back to its last whole frame (and keeps the reserve again).
    fn cut_back(&mut self) {
        // NOTE: if even this fails, readers still skip the partial frame by its checksum.
        let _ = self.file.set_len(self.good_len);
        let _ = self.file.seek(SeekFrom::Start(self.good_len));
        let _ = self.keep_reserve();
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    fn write_frames(&mut self, bytes: &[u8], _rows: u64) -> io::Result<()> {
        let result = match self.faults.on_write() {
            Some(e) => self.file.write_all(&bytes[..bytes.len() / 2]).and(Err(e)),
            None => self.file.write_all(bytes),
        };
        let before = self.good_len;
        match result {
            Ok(()) => {
                self.good_len += bytes.len() as u64;
                if self.closing {
                    return Ok(());
                }
                if let Err(e) = self.keep_reserve() {
                    // These frames took the close frame's room: undo them, as for a full disk.
                    self.good_len = before;
                    self.cut_back();
                    return Err(e);
                }
                Ok(())
            }
            Err(e) => {
                // NOTE: a short write leaves part of a frame behind; cut it off so the next
                // frame starts at a frame boundary.
                self.cut_back();
                Err(e)
            }
        }
    }

    fn closing(&mut self) {
        self.closing = true;
    }

    fn close(&mut self) -> io::Result<()> {
        if self.reserve {
            // Give the kept room back (it lies past the end, so no byte of the file changes).
            // ext4 punches no hole past the end, but a truncate to the same size frees it.
            let punch =
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE;
            let _ = rustix::fs::fallocate(&self.file, punch, self.good_len, CLOSE_RESERVE);
            self.file.set_len(self.good_len)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        if !self.dir_synced {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            self.dir_synced = true;
        }
        Ok(())
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
    fn write_frames(&mut self, bytes: &[u8], _rows: u64) -> io::Result<()> {
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
