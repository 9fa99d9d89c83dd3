//! `steplog._core.push`: sends a shard file (a network sink's spill file) to a collector.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::prelude::*;
use steplog_core::net::push::push_file;
use steplog_core::net::target::Target;

use crate::errors::IntoPy;

/// Sends the shard file at `path` to the collector at `sink` (`tcp://HOST:PORT` or
/// `tls://HOST:PORT`) and waits, at most `timeout_s`, for its acknowledgement of the last
/// frame. Frames the collector already holds are skipped by it. `run_meta` (the run's
/// `run.json` text) goes along when the shard is closed, so the collector writes the run's
/// `run.json`. Returns how many frames of the shard the collector holds, and whether the run
/// metadata went along.
#[pyfunction]
#[pyo3(signature = (path, sink, token, tls_ca=None, timeout_s=30.0, run_meta=None))]
pub fn push(
    py: Python<'_>,
    path: PathBuf,
    sink: &str,
    token: &str,
    tls_ca: Option<PathBuf>,
    timeout_s: f64,
    run_meta: Option<String>,
) -> PyResult<(u64, bool)> {
    let target = Target::parse(sink, token.trim().as_bytes(), tls_ca).py()?;
    let timeout = Duration::from_secs_f64(timeout_s.max(0.0));
    let meta = run_meta.as_deref().map(str::as_bytes);
    let pushed = py
        .detach(|| push_file(&path, &target, timeout, meta))
        .py()?;
    Ok((pushed.frames, pushed.run_meta))
}
