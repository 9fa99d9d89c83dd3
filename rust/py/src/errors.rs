//! The Python exception hierarchy and the mapping from core errors to it. `CoreErr` is the
//! local newtype the orphan rule requires for `From<steplog_core::Error> for PyErr`.

use std::io::ErrorKind;

use pyo3::create_exception;
use pyo3::exceptions::{
    PyException, PyFileExistsError, PyFileNotFoundError, PyNotADirectoryError, PyOSError,
    PyPermissionError, PyUserWarning, PyValueError,
};
use pyo3::PyErr;

create_exception!(
    steplog,
    SteplogError,
    PyException,
    "Root of steplog's own exceptions."
);
create_exception!(
    steplog,
    ClosedError,
    SteplogError,
    "The run is finished; start a new one with steplog.init()."
);
create_exception!(
    steplog,
    FlushTimeout,
    SteplogError,
    "The writer did not finish within the allowed time."
);
create_exception!(
    steplog,
    CorruptRunError,
    SteplogError,
    "A run file is damaged (raised by the reader in strict mode)."
);
create_exception!(
    steplog,
    SteplogWarning,
    PyUserWarning,
    "Something was not logged as asked; the run goes on."
);

/// A core error on its way into Python.
pub struct CoreErr(pub steplog_core::Error);

impl From<steplog_core::Error> for CoreErr {
    fn from(e: steplog_core::Error) -> Self {
        CoreErr(e)
    }
}

impl From<CoreErr> for PyErr {
    fn from(CoreErr(e): CoreErr) -> PyErr {
        use steplog_core::Error as E;
        let msg = e.to_string();
        match &e {
            E::Io { source, .. } => match source.kind() {
                ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
                ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
                ErrorKind::AlreadyExists => PyFileExistsError::new_err(msg),
                ErrorKind::NotADirectory => PyNotADirectoryError::new_err(msg),
                _ => PyOSError::new_err(msg),
            },
            E::SpawnThread(_) => PyOSError::new_err(msg),
            E::Config { .. } | E::BadValue { .. } | E::BadArgument { .. } => {
                PyValueError::new_err(msg)
            }
            E::Closed => ClosedError::new_err(msg),
            E::Timeout { .. } => FlushTimeout::new_err(msg),
            E::Corrupt { .. } => CorruptRunError::new_err(msg),
        }
    }
}

/// `?`-friendly conversion of core results.
pub trait IntoPy<T> {
    /// Converts the error side into a Python exception.
    fn py(self) -> pyo3::PyResult<T>;
}

impl<T> IntoPy<T> for steplog_core::Result<T> {
    fn py(self) -> pyo3::PyResult<T> {
        self.map_err(|e| PyErr::from(CoreErr(e)))
    }
}
