//! `steplog._core`: the thin binding over `steplog-core`. Nothing here owns logic that the
//! core could own; this crate converts values, maps errors and exposes the classes.

mod args;
mod array;
mod convert;
mod errors;
mod global;
mod histogram;
mod metric;
mod npscalar;
mod probe;
mod push;
mod read;
mod run;
mod serve;
mod summary;
mod topy;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use crate::errors::{ClosedError, CorruptRunError, FlushTimeout, SteplogError, SteplogWarning};
    #[pymodule_export]
    use crate::global::{current_run, log, set_reporting_inf_value, set_reporting_nan_value};
    #[pymodule_export]
    use crate::histogram::PyHistogram;
    #[pymodule_export]
    use crate::metric::PyMetric;
    #[pymodule_export]
    use crate::probe::EmptyCall;
    #[pymodule_export]
    use crate::push::push;
    #[pymodule_export]
    use crate::read::{glob_match, read_shard, PyHistorySummary};
    #[pymodule_export]
    use crate::run::PyRun;
    #[pymodule_export]
    use crate::serve::serve;
    #[pymodule_export]
    use crate::summary::{summary_delete, summary_get, summary_read, summary_version};

    use super::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("FORMAT_VERSION", steplog_core::shard::FORMAT_VERSION)?;
        let mut settings = steplog_core::config::SETTING_NAMES.to_vec();
        settings.extend(steplog_core::config::SINK_SETTING_NAMES);
        m.add("SETTING_NAMES", settings)?;
        Ok(())
    }
}
