//! `natpool._natpool._Floor`: the PyO3 floor for the benchmarks, a frozen
//! pyclass with an empty method. Timing `floor.noop()` beside
//! `pool.allocate()` shows how much of a call is the call itself, and
//! `floor.lease()` how much more a `Lease` object's life adds. Not API.

use std::net::{IpAddr, Ipv4Addr};

use pyo3::prelude::*;

use crate::bindings::lease::PyLease;
use crate::bindings::pool::{lease_object, PyPool};
use crate::core::{Handle, Lease};

#[pyclass(frozen, name = "_Floor", module = "natpool._natpool")]
pub struct Floor {
    /// The pool `lease()` makes its leases of.
    pool: Option<Py<PyPool>>,
}

#[pymethods]
impl Floor {
    #[new]
    #[pyo3(signature = (pool=None))]
    fn new(pool: Option<Py<PyPool>>) -> Self {
        Floor { pool }
    }

    /// Does nothing: one method call through PyO3 (with up to two optional
    /// positional arguments, like `allocate`, `free` and `lookup`) and no
    /// work.
    #[pyo3(signature = (first=None, second=None, /))]
    fn noop(&self, first: Option<&Bound<'_, PyAny>>, second: Option<&Bound<'_, PyAny>>) {
        let _ = (first, second);
    }

    /// A `Lease` of the floor's pool, made as `allocate()` makes one
    /// (`data=None`) but with no allocation: its handle names no block, so
    /// it is never live. One method call and a `Lease` object's creation;
    /// its end is the caller's last reference.
    #[pyo3(signature = (data=None, *, client=None))]
    fn lease(
        &self,
        py: Python<'_>,
        data: Option<Py<PyAny>>,
        client: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyLease>> {
        let _ = client;
        let Some(pool) = &self.pool else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "_Floor(pool) makes leases; this floor has no pool",
            ));
        };
        let never = Lease {
            handle: Handle(1 << 96),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            port: 1024,
        };
        lease_object(pool.bind(py), never, data)
    }
}
