//! `natpool.Lease` and the context manager behind `Pool.lease()`.

use std::net::IpAddr;
use std::sync::Mutex;

use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString, PyTuple};

use crate::bindings::pool::PyPool;
use crate::core::{Error, Handle};

/// A client NAT address held by one connection.
// `pool` and `data` are `Py` fields of a frozen class, read with
// `#[pyo3(get)]`: Python reads them as struct members, without a call into
// Rust (`data` holds None when none was given).
#[pyclass(frozen, name = "Lease", module = "natpool")]
pub struct PyLease {
    /// The pool that issued the lease.
    #[pyo3(get)]
    pub(crate) pool: Py<PyPool>,
    pub(crate) handle: u128,
    pub(crate) ip: IpAddr,
    pub(crate) port: u16,
    /// The object given to allocate().
    #[pyo3(get)]
    pub(crate) data: Py<PyAny>,
}

#[pymethods]
impl PyLease {
    /// The lease's handle (an int).
    #[getter]
    fn handle<'py>(&self, py: Python<'py>) -> Bound<'py, PyInt> {
        // Generation 0 (a block's first lease) fits a u64: CPython's C
        // conversion, not the byte-array one a u128 takes.
        match u64::try_from(self.handle) {
            Ok(handle) => handle.into_pyobject(py),
            Err(_) => self.handle.into_pyobject(py),
        }
        .unwrap_or_else(|never| match never {})
    }

    /// The NAT IP as text (IPv4 dotted, IPv6 compressed).
    #[getter]
    fn ip<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        ip_text(py, self.ip)
    }

    /// The NAT port.
    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    /// ``(ip, port)``, as ``socket.bind`` takes it (an ``AF_INET6`` socket for IPv6).
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (ip_text(py, self.ip), self.port).into_pyobject(py)
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> Py<PyAny> {
        let py = other.py();
        let Ok(other) = other.cast::<PyLease>() else {
            return py.NotImplemented();
        };
        let other = other.get();
        let equal = self.pool.is(&other.pool) && self.handle == other.handle;
        match op {
            CompareOp::Eq => PyBool::new(py, equal).to_owned().into_any().unbind(),
            CompareOp::Ne => PyBool::new(py, !equal).to_owned().into_any().unbind(),
            _ => py.NotImplemented(),
        }
    }

    fn __hash__(&self) -> u64 {
        let pool = self.pool.as_ptr() as u64;
        let mixed = (self.handle as u64) ^ ((self.handle >> 64) as u64).rotate_left(29);
        (pool.rotate_left(17) ^ mixed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1
    }

    fn __repr__(&self) -> String {
        format!(
            "Lease(ip='{}', port={}, handle={:#x})",
            self.ip, self.port, self.handle
        )
    }
}

/// Allocates on ``__enter__`` and frees on ``__exit__`` (unless already freed).
#[pyclass(frozen, module = "natpool")]
pub struct LeaseContext {
    pub(crate) pool: Py<PyPool>,
    pub(crate) data: Option<Py<PyAny>>,
    pub(crate) client: Option<Py<PyAny>>,
    pub(crate) lease: Mutex<Option<Py<PyLease>>>,
}

#[pymethods]
impl LeaseContext {
    fn __enter__(&self, py: Python<'_>) -> PyResult<Py<PyLease>> {
        let data = self.data.as_ref().map(|d| d.clone_ref(py));
        let client = self.client.as_ref().map(|c| c.bind(py));
        let lease = PyPool::allocate_lease(self.pool.bind(py), data, client)?;
        let mut slot = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(lease.clone_ref(py));
        Ok(lease)
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(lease) = lease {
            // One attempt, no check first: a check then a free would let
            // another thread's free land in between. `NotLive` means the
            // lease was freed already (inside the block), which is allowed.
            // The pool's hold_down applies, as to `free(lease)`.
            let pool = self.pool.get();
            let core = pool.open()?;
            let seconds = core.config().hold_down();
            let now = pool.now_for_free(py, seconds)?;
            match core.free_at(Handle(lease.get().handle), seconds, now) {
                Ok(data) => drop(data),
                Err(Error::NotLive(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(false)
    }
}

/// The text of `ip` as a Python str: an IPv4 address's dotted quad written
/// on the stack (the same text as `Ipv4Addr`'s `Display`, without `fmt` or
/// a heap `String`), an IPv6 address's through `Display`.
#[inline]
fn ip_text(py: Python<'_>, ip: IpAddr) -> Bound<'_, PyString> {
    let IpAddr::V4(ip) = ip else {
        return PyString::new(py, &ip.to_string());
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    let text = std::str::from_utf8(&text[..len]).expect("digits and dots are ASCII");
    PyString::new(py, text)
}
