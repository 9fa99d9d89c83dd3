//! The collector's shard files: a process-wide registry from (run id, shard name) to the one
//! open file, its length and its `next_seq`, and who may append to it.
//!
//! Invariants: a shard file only ever holds whole frames with seq 0, 1, 2, … back to back
//! (a failed write is cut back; a torn tail left by a killed collector is cut when the file
//! is next opened; a file with damage before its end is refused, never truncated); only the
//! connection recorded as the shard's owner appends, and the owner check, the seq check and
//! the write happen under one lock, so a takeover can never interleave two streams.
//! `next_seq` is the number of frames in the file. The file is open only while some
//! connection owns the shard (and removed when that ends with no frame in it); entries stay in the registry (a few hundred bytes each) so a
//! reconnect skips the rescan when the file's length is what the collector left.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::frame::{self, Event, Frames, HEADER_LEN};

/// The connection that owns a shard, and how to tell it that it no longer does.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub id: u64,
    pub kick: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    file: Option<Arc<File>>,
    /// Bytes of whole frames in the file.
    len: u64,
    next_seq: u64,
    /// `len` and `next_seq` describe the file as this process last left it.
    known: bool,
    owner: Option<Owner>,
    /// Appended to since the last fsync.
    dirty: bool,
}

/// One shard file.
#[derive(Debug)]
pub(crate) struct Shard {
    path: PathBuf,
    run_dir: PathBuf,
    state: Mutex<State>,
}

/// What became of a frame handed to [`Shard::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Append {
    /// Appended; the shard now holds this many frames.
    Stored(u64),
    /// The shard already held it.
    Duplicate,
}

/// Why a frame was not stored.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Another connection owns the shard now.
    TakenOver,
    /// The frame's seq is past `expected`.
    Gap { expected: u64 },
    /// The write failed (and was cut back).
    Write(io::Error),
}

/// What [`Registry::acquire`] found.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opened {
    pub next_seq: u64,
    /// Another connection owned the shard and was told to stop.
    pub took_over: bool,
    /// Bytes of a torn last frame cut off the existing file.
    pub cut: u64,
}

/// All shards this collector has seen.
#[derive(Debug)]
pub(crate) struct Registry {
    dir: PathBuf,
    shards: Mutex<HashMap<(String, String), Arc<Shard>>>,
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

impl Registry {
    /// A registry writing under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Registry {
            dir,
            shards: Mutex::new(HashMap::new()),
        }
    }

    /// Opens (or resumes) a shard and makes `owner` its owner. Blocking: it may scan a file.
    pub fn acquire(&self, run: &str, shard: &str, owner: Owner) -> Result<(Arc<Shard>, Opened)> {
        let sh = {
            let mut map = self.shards.lock();
            let key = (run.to_owned(), shard.to_owned());
            let run_dir = self.dir.join(run);
            map.entry(key)
                .or_insert_with(|| {
                    Arc::new(Shard {
                        path: run_dir.join(format!("{shard}.steplog")),
                        run_dir,
                        state: Mutex::new(State::default()),
                    })
                })
                .clone()
        };
        let mut st = sh.state.lock();
        let cut = if st.file.is_none() {
            sh.open(&mut st, &self.dir)?
        } else {
            0
        };
        let took_over = st
            .owner
            .replace(owner)
            .map(|old| old.kick.notify_one())
            .is_some();
        let next_seq = st.next_seq;
        drop(st);
        Ok((
            sh,
            Opened {
                next_seq,
                took_over,
                cut,
            },
        ))
    }

    /// Fsyncs every shard written since its last fsync. Blocking. Returns the failures.
    pub fn sync_dirty(&self) -> Vec<Error> {
        let shards: Vec<Arc<Shard>> = self.shards.lock().values().cloned().collect();
        shards.iter().filter_map(|s| s.sync().err()).collect()
    }
}

impl Shard {
    /// Opens the file under the state lock: creates it, or scans it and cuts a torn tail.
    fn open(&self, st: &mut State, dir: &Path) -> Result<u64> {
        if !self.run_dir.is_dir() {
            fs::create_dir_all(&self.run_dir)
                .map_err(|e| Error::io("create directory", &self.run_dir, e))?;
            sync_dir(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| Error::io("open", &self.path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len();
        let mut cut = 0;
        if size == 0 {
            sync_dir(&self.run_dir)?;
            (st.len, st.next_seq) = (0, 0);
        } else if !(st.known && size == st.len) {
            let (good, next_seq) = scan(&file, &self.path, size)?;
            if good < size {
                file.set_len(good)
                    .map_err(|e| Error::io("truncate the torn tail of", &self.path, e))?;
                file.sync_data()
                    .map_err(|e| Error::io("fsync", &self.path, e))?;
                cut = size - good;
            }
            (st.len, st.next_seq) = (good, next_seq);
        }
        st.known = true;
        st.dirty = false;
        st.file = Some(Arc::new(file));
        Ok(cut)
    }

    /// The number of frames the file holds now.
    pub fn next_seq(&self) -> u64 {
        self.state.lock().next_seq
    }

    /// The run directory (where `run.json` goes).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The shard file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one whole frame (`bytes`, header and payload) whose header says `seq`, if
    /// `owner` still owns the shard and `seq` is the next one.
    pub fn append(
        &self,
        owner: u64,
        seq: u64,
        bytes: &[u8],
    ) -> std::result::Result<Append, AppendError> {
        let mut st = self.state.lock();
        if st.owner.as_ref().map(|o| o.id) != Some(owner) {
            return Err(AppendError::TakenOver);
        }
        if seq < st.next_seq {
            return Ok(Append::Duplicate);
        }
        if seq > st.next_seq {
            return Err(AppendError::Gap {
                expected: st.next_seq,
            });
        }
        let Some(file) = st.file.clone() else {
            return Err(AppendError::Write(io::Error::other(
                "the file was closed after an earlier failed write",
            )));
        };
        if let Err(e) = (&*file).write_all(bytes) {
            // NOTE: cut a partial frame off so the file still ends at a frame boundary; if
            // even that fails, close it so the next connection rescans and cuts the tail.
            if file.set_len(st.len).is_err() {
                st.file = None;
                st.known = false;
            }
            return Err(AppendError::Write(e));
        }
        st.len += bytes.len() as u64;
        st.next_seq += 1;
        st.dirty = true;
        Ok(Append::Stored(st.next_seq))
    }

    /// Fsyncs the file if it was written since the last fsync. Blocking.
    pub fn sync(&self) -> Result<()> {
        let file = {
            let mut st = self.state.lock();
            match st.file.clone() {
                Some(f) if st.dirty => {
                    st.dirty = false;
                    f
                }
                _ => return Ok(()),
            }
        };
        file.sync_data().map_err(|e| {
            self.state.lock().dirty = true;
            Error::io("fsync", &self.path, e)
        })
    }

    /// Gives the shard up if `owner` still owns it: fsyncs and closes the file, and removes
    /// it when it holds no frame (a writer that said HELLO and nothing else leaves nothing).
    /// Blocking.
    pub fn release(&self, owner: u64) -> Result<()> {
        let (file, dirty) = {
            let mut st = self.state.lock();
            if st.owner.as_ref().map(|o| o.id) != Some(owner) {
                return Ok(());
            }
            st.owner = None;
            if st.len == 0 && st.file.take().is_some() {
                st.known = false;
                return fs::remove_file(&self.path).map_err(|e| Error::io("remove", &self.path, e));
            }
            let dirty = std::mem::take(&mut st.dirty);
            (st.file.take(), dirty)
        };
        match file {
            Some(f) if dirty => f.sync_data().map_err(|e| Error::io("fsync", &self.path, e)),
            _ => Ok(()),
        }
    }
}

/// Writes `json` as the run's `run.json`, atomically (temporary file, fsync, rename).
pub(crate) fn write_run_json(run_dir: &Path, conn: u64, json: &[u8]) -> Result<()> {
    let tmp = run_dir.join(format!("run.json.tmp-collector-{conn}"));
    let target = run_dir.join("run.json");
    let written = File::create(&tmp)
        .and_then(|mut f| f.write_all(json).and_then(|()| f.sync_data()))
        .and_then(|()| fs::rename(&tmp, &target));
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("write", target, e)
    })
}

/// Walks the file from the start; returns the length of its longest prefix of good frames
/// numbered 0, 1, 2, … and the number of those frames. Memory: one 64 KiB buffer, plus the
/// tail (at most one frame) when something follows the prefix. A tail that holds no whole
/// good frame is torn and may be cut; anything else is damage the caller must not cut.
fn scan(file: &File, path: &Path, size: u64) -> Result<(u64, u64)> {
    let read_err = |e| Error::io("read", path, e);
    let mut r = BufReader::with_capacity(64 << 10, file);
    let mut chunk = vec![0u8; 64 << 10];
    let mut header = [0u8; HEADER_LEN];
    let (mut pos, mut seq) = (0u64, 0u64);
    while size - pos >= HEADER_LEN as u64 {
        r.read_exact(&mut header).map_err(read_err)?;
        let Ok(h) = frame::parse_header(&header) else {
            break;
        };
        let end = pos + (HEADER_LEN as u64) + u64::from(h.payload_len);
        if h.seq != seq || end > size {
            break;
        }
        let (mut left, mut crc) = (h.payload_len as usize, 0u32);
        while left > 0 {
            let n = left.min(chunk.len());
            r.read_exact(&mut chunk[..n]).map_err(read_err)?;
            crc = crc32c::crc32c_append(crc, &chunk[..n]);
            left -= n;
        }
        if crc != h.payload_crc {
            break;
        }
        (pos, seq) = (end, seq + 1);
    }
    if pos < size {
        check_tail(file, path, pos, size, seq)?;
    }
    Ok((pos, seq))
}

/// Refuses a file whose bytes after the good prefix are more than one torn frame.
fn check_tail(file: &File, path: &Path, pos: u64, size: u64, expected: u64) -> Result<()> {
    let damaged = |reason: String| Error::Corrupt {
        path: path.to_path_buf(),
        reason: format!(
            "damaged at byte {pos} ({reason}), not just a torn last frame; the collector does \
             not cut it: move the file aside to continue this shard in a new file"
        ),
    };
    let rest = size - pos;
    if rest > (HEADER_LEN + frame::MAX_PAYLOAD) as u64 {
        return Err(damaged(format!(
            "{rest} bytes follow the last good frame {expected}"
        )));
    }
    let mut buf = vec![0u8; rest as usize];
    file.read_exact_at(&mut buf, pos)
        .map_err(|e| Error::io("read", path, e))?;
    for ev in Frames::new(&buf) {
        if let Event::Frame { offset, header, .. } = ev {
            return Err(damaged(if offset == 0 {
                format!("frame {} where frame {expected} was expected", header.seq)
            } else {
                format!("{offset} bad bytes followed by whole frames")
            }));
        }
    }
    Ok(())
}
