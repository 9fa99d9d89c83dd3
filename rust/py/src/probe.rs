//! `steplog._core._EmptyCall`: a method that does nothing, with the signature of `Run.log` and
//! `Metric.log` (one positional value, then `step=None, commit=None`). `steplog bench` times it
//! next to steplog so that a user sees what calling into this binding costs before steplog does
//! any work: the part of each ratio that no change inside steplog can remove.

use pyo3::prelude::*;

/// An object whose `log` accepts `log()`'s arguments and ignores them.
#[pyclass(name = "_EmptyCall", module = "steplog._core", frozen)]
pub struct EmptyCall;

#[pymethods]
impl EmptyCall {
    #[new]
    fn new() -> Self {
        EmptyCall
    }

    /// Takes `log()`'s arguments, converted as `log()` converts them, and does nothing.
    #[pyo3(signature = (value, step=None, commit=None))]
    fn log(&self, value: &Bound<'_, PyAny>, step: Option<i64>, commit: Option<bool>) {
        let _ = (value, step, commit);
    }
}
