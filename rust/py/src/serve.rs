//! `steplog._core.serve`: runs the collector (`steplog serve`) with the GIL released until
//! SIGTERM or SIGINT, then returns its counters as a dict. Invariant: the "listening on"
//! line reaches stdout (flushed) before the first connection can be accepted, so a parent
//! process can read the bound port from it.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use steplog_core::net::collector::{serve_until_signal, CollectorConfig, TlsFiles};

use crate::errors::IntoPy;

fn seconds(name: &str, v: Option<f64>, default: Duration) -> PyResult<Duration> {
    match v {
        None => Ok(default),
        Some(s) => Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                PyValueError::new_err(format!("{name}={s}: expected a positive number of seconds"))
            }),
    }
}

/// Runs the collector on `listen` (`HOST:PORT`), writing under `dir`, until SIGTERM/SIGINT.
#[pyfunction]
#[pyo3(signature = (
    listen, dir, token, *, max_frame_bytes=None, max_memory_bytes=None, max_connections=None,
    idle_timeout_s=None, handshake_timeout_s=None, fsync_interval_s=None, tls_cert=None,
    tls_key=None, frame_timeout_s=None, min_frame_rate=None
))]
#[allow(clippy::too_many_arguments)]
pub fn serve<'py>(
    py: Python<'py>,
    listen: String,
    dir: PathBuf,
    token: &Bound<'py, PyAny>,
    max_frame_bytes: Option<usize>,
    max_memory_bytes: Option<usize>,
    max_connections: Option<usize>,
    idle_timeout_s: Option<f64>,
    handshake_timeout_s: Option<f64>,
    fsync_interval_s: Option<f64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    frame_timeout_s: Option<f64>,
    min_frame_rate: Option<u64>,
) -> PyResult<Bound<'py, PyDict>> {
    let token: Vec<u8> = if let Ok(s) = token.cast::<PyString>() {
        s.to_str()?.as_bytes().to_vec()
    } else if let Ok(b) = token.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else {
        return Err(PyValueError::new_err("token: expected str or bytes"));
    };
    let mut c = CollectorConfig::new(listen, dir, token);
    c.max_frame_bytes = max_frame_bytes.unwrap_or(c.max_frame_bytes);
    c.max_memory_bytes = max_memory_bytes.unwrap_or(c.max_memory_bytes);
    c.max_connections = max_connections.unwrap_or(c.max_connections);
    c.idle_timeout = seconds("idle_timeout_s", idle_timeout_s, c.idle_timeout)?;
    c.handshake_timeout = seconds(
        "handshake_timeout_s",
        handshake_timeout_s,
        c.handshake_timeout,
    )?;
    c.fsync_interval = seconds("fsync_interval_s", fsync_interval_s, c.fsync_interval)?;
    c.frame_timeout = seconds("frame_timeout_s", frame_timeout_s, c.frame_timeout)?;
    c.min_frame_rate = min_frame_rate.unwrap_or(c.min_frame_rate);
    c.tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "tls_cert and tls_key: give both or neither",
            ))
        }
    };
    let tls = c.tls.is_some();
    let stats = py
        .detach(move || {
            serve_until_signal(c, |addr| {
                let scheme = if tls { " (TLS)" } else { "" };
                let mut out = std::io::stdout().lock();
                // NOTE: a closed stdout must not stop the collector; the line is a courtesy
                // for whoever started it, and the same address is in the stderr log.
                let _ = writeln!(out, "steplog serve: listening on {addr}{scheme}")
                    .and_then(|()| out.flush());
                eprintln!("steplog serve: listening on {addr}{scheme}");
            })
        })
        .py()?;
    let d = PyDict::new(py);
    d.set_item("connections", stats.connections)?;
    d.set_item("sessions", stats.sessions)?;
    d.set_item("rejected_connections", stats.rejected_connections)?;
    d.set_item("closed_on_error", stats.closed_on_error)?;
    d.set_item("slow_frames", stats.slow_frames)?;
    d.set_item("frames_stored", stats.frames_stored)?;
    d.set_item("duplicate_frames", stats.duplicate_frames)?;
    d.set_item("bytes_stored", stats.bytes_stored)?;
    d.set_item("run_json_written", stats.run_json_written)?;
    d.set_item("io_errors", stats.io_errors)?;
    Ok(d)
}
