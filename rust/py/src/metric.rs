//! `steplog.Metric`: a pre-bound handle for the hottest loops. `loss = run.metric("loss")`
//! then `loss.log(x)` is `run.log({"loss": x})` without building a dict or hashing a key.
//!
//! The handle caches the key's id together with the serial number of the shard it belongs
//! to; after a fork the child's shard has another serial, so the id is looked up again there.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyFloat;
use steplog_core::logger::Call;
use steplog_core::value::KeyId;
use steplog_core::Logged;

use crate::convert::to_value;
use crate::errors::IntoPy;
use crate::run::{warn_rejected, PyRun, Shard};

/// A handle on one key of a run.
#[pyclass(name = "Metric", module = "steplog", frozen)]
pub struct PyMetric {
    run: Py<PyRun>,
    name: String,
    /// `(shard serial << 32) | key id`, or 0 before the first use.
    cached: AtomicU64,
}

impl PyMetric {
    pub fn new(run: Py<PyRun>, name: String) -> Self {
        PyMetric {
            run,
            name,
            cached: AtomicU64::new(0),
        }
    }

    /// Stages this handle's value in `shard` (through `stage`) and commits it with the step
    /// rules.
    #[inline]
    fn commit_one(
        &self,
        py: Python<'_>,
        shard: &Shard,
        step: Option<i64>,
        commit: Option<bool>,
        stage: impl FnOnce(&mut Call<'_>, KeyId) -> PyResult<()>,
    ) -> PyResult<()> {
        let serial = u64::from(shard.serial);
        let cached = self.cached.load(Ordering::Relaxed);
        let key = if cached >> 32 == serial && cached != 0 {
            cached as u32
        } else {
            let key = shard.logger.intern(&self.name).py()?;
            self.cached
                .store((serial << 32) | u64::from(key), Ordering::Relaxed);
            key
        };
        let mut call = shard.logger.call().py()?;
        stage(&mut call, key)?;
        match call.commit(step, commit) {
            Logged::Accepted => Ok(()),
            Logged::Waiting(backlog) => {
                crate::run::wait_for_ring(py, &shard.logger, backlog);
                Ok(())
            }
            Logged::Rejected { rejected, first } => {
                warn_rejected(py, rejected, first, &format!("'{}'", self.name))
            }
        }
    }
}

#[pymethods]
impl PyMetric {
    /// Logs `value` under this handle's key, with `run.log`'s step rules.
    #[pyo3(signature = (value, step=None, commit=None))]
    fn log(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = crate::args::metric_step)] step: Option<i64>,
        commit: Option<bool>,
    ) -> PyResult<()> {
        let run = self.run.bind(py);
        // NOTE: a float (the hot loop's value) is staged from a plain `f64`. Wrapped in a
        // `Value` first, it would be copied into the closure's captures with wide loads over
        // narrow stores, a failed store forward on every call.
        if let Ok(f) = value.cast::<PyFloat>() {
            let float = f.value();
            return PyRun::with_shard(run, |shard| {
                self.commit_one(py, shard, step, commit, |call, key| {
                    call.set_id_f64(key, float);
                    Ok(())
                })
            });
        }
        // `None` logs nothing under the key, as `run.log({key: None})` does.
        if value.is_none() {
            return PyRun::with_shard(run, |shard| {
                self.commit_one(py, shard, step, commit, |_, _| Ok(()))
            });
        }
        // Anything else is converted first, outside the accumulator's lock (conversion may
        // run Python code). The error keeps its type (TypeError or ValueError).
        let value = to_value(value).map_err(|e| {
            let new = PyErr::from_type(
                e.get_type(py),
                format!("steplog.Metric('{}').log: {}", self.name, e.value(py)),
            );
            new.set_cause(py, Some(e));
            new
        })?;
        PyRun::with_shard(run, |shard| {
            self.commit_one(py, shard, step, commit, |call, key| {
                call.set_id(key, value).py()
            })
        })
    }

    /// The key this handle logs.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!("steplog.Metric({:?})", self.name)
    }
}
