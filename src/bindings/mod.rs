//! The Python binding: a thin layer over [`crate::core`] (cargo feature
//! `python`). It parses Python arguments, converts the core's one error type
//! into the exception classes defined in `natpool/errors.py` (errors.rs),
//! and builds the records of `natpool/records.py`.

mod clients;
mod cluster;
mod convert;
mod errors;
mod floor;
mod identity;
mod lease;
mod pool;
mod records;
mod shapes;
mod store;

use pyo3::prelude::*;

/// The native module `natpool._natpool`.
#[pymodule(gil_used = false)]
fn _natpool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<pool::PyPool>()?;
    m.add_class::<lease::PyLease>()?;
    m.add_class::<lease::LeaseContext>()?;
    m.add_class::<floor::Floor>()?;
    m.add_class::<cluster::PyRenewal>()?;
    Ok(())
}
