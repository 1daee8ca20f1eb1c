//! The one conversion from the core's [`Error`] into Python exceptions. The
//! classes live in `natpool/errors.py` and are shared with the reference model.

use pyo3::exceptions::PyMemoryError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::core::Error;

static NAT_POOL_CLASSES: [PyOnceLock<Py<PyType>>; 8] = [
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
];

fn class<'py>(py: Python<'py>, which: usize, name: &str) -> PyResult<&'py Bound<'py, PyType>> {
    NAT_POOL_CLASSES[which].import(py, "natpool.errors", name)
}

fn convert(py: Python<'_>, error: Error) -> PyResult<PyErr> {
    let instance = match error {
        Error::Config { field, reason } => {
            class(py, 0, "PoolConfigError")?.call1((field, reason))?
        }
        Error::Argument(message) => class(py, 1, "ArgumentError")?.call1((message,))?,
        Error::Exhausted(message) => class(py, 2, "PoolExhausted")?.call1((message,))?,
        Error::NotLive(message) => class(py, 3, "LeaseError")?.call1((message,))?,
        Error::QuotaExceeded(message) => class(py, 4, "QuotaExceeded")?.call1((message,))?,
        Error::Store(message) => class(py, 5, "StoreError")?.call1((message,))?,
        Error::Closed(message) | Error::Unsupported(message) => {
            class(py, 6, "NatPoolError")?.call1((message,))?
        }
        Error::Snapshot(message) => class(py, 7, "SnapshotError")?.call1((message,))?,
        Error::OutOfMemory(message) => return Ok(PyMemoryError::new_err(message)),
    };
    Ok(PyErr::from_value(instance))
}

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        Python::attach(|py| convert(py, error).unwrap_or_else(|failed| failed))
    }
}
