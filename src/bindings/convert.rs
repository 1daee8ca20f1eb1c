//! Phase 1 of validation (see `natpool/reference/config.py`): argument types
//! and syntax, in the order the reference model checks them.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

use crate::core::config::{parse_ipv4, parse_netmask, Netmask};
use crate::core::space::Family;
use crate::core::Error;

static IPV4_ADDRESS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static IPV6_ADDRESS: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// Where a bad value is reported: constructor fields raise `PoolConfigError`,
/// method arguments `ArgumentError`.
#[derive(Clone, Copy)]
pub enum Context {
    Config,
    Argument,
}

fn invalid(context: Context, field: &'static str, reason: String) -> PyErr {
    match context {
        Context::Config => Error::Config { field, reason }.into(),
        Context::Argument => Error::Argument(format!("{field}: {reason}")).into(),
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

pub fn is_int(value: &Bound<'_, PyAny>) -> bool {
    value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>()
}

/// A Python int as i128, saturating beyond i128's range.
fn wide_int(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    match value.extract::<i128>() {
        Ok(v) => Ok(v),
        Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => {
            Ok(if value.lt(0)? { i128::MIN } else { i128::MAX })
        }
        Err(err) => Err(err),
    }
}

/// An IP address given as `str`, `int`, `ipaddress.IPv4Address` or
/// `ipaddress.IPv6Address`, as its family and integer. An `int` is an
/// address of `int_family` (the legacy constructor: IPv4; a method: the
/// pool's family). A `str` is parsed as IPv4, or as IPv6 (by Python's
/// `ipaddress`, so both implementations accept the same text) if it has a
/// colon.
pub fn ip(
    value: &Bound<'_, PyAny>,
    field: &'static str,
    context: Context,
    int_family: Family,
) -> PyResult<(Family, u128)> {
    let py = value.py();
    if value.is_instance(IPV4_ADDRESS.import(py, "ipaddress", "IPv4Address")?)? {
        let ip = value.call_method0("__int__")?.extract::<u32>()?;
        return Ok((Family::V4, u128::from(ip)));
    }
    let ipv6 = IPV6_ADDRESS.import(py, "ipaddress", "IPv6Address")?;
    if value.is_instance(ipv6)? {
        return Ok((
            Family::V6,
            value.call_method0("__int__")?.extract::<u128>()?,
        ));
    }
    if is_int(value) {
        let fits = match int_family {
            Family::V4 => u32::try_from(wide_int(value)?).ok().map(u128::from),
            Family::V6 => value.extract::<u128>().ok(),
        };
        return fits.map(|ip| (int_family, ip)).ok_or_else(|| {
            let family = int_family.number();
            invalid(
                context,
                field,
                format!("{value} is not an IPv{family} address"),
            )
        });
    }
    if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_cow()?;
        if !text.contains(':') {
            return parse_ipv4(&text)
                .map(|ip| (Family::V4, u128::from(ip)))
                .ok_or_else(|| invalid(context, field, format!("{text:?} is not an IP address")));
        }
        return match ipv6.call1((&*text,)) {
            Ok(parsed) => Ok((
                Family::V6,
                parsed.call_method0("__int__")?.extract::<u128>()?,
            )),
            Err(error) if error.is_instance_of::<pyo3::exceptions::PyValueError>(py) => Err(
                invalid(context, field, format!("{text:?} is not an IP address")),
            ),
            Err(error) => Err(error),
        };
    }
    Err(PyTypeError::new_err(format!(
        "{field} must be str, int, IPv4Address or IPv6Address, not {}",
        type_name(value)
    )))
}

/// A netmask as a dotted string or a prefix length (0..32, or 0..128 when
/// `first_ip` is IPv6).
pub fn netmask(value: &Bound<'_, PyAny>, family: Family) -> PyResult<Netmask> {
    if is_int(value) {
        let prefix = wide_int(value)?;
        let bits = family.bits();
        return u8::try_from(prefix)
            .ok()
            .filter(|p| u32::from(*p) <= bits)
            .map(Netmask::Prefix)
            .ok_or_else(|| {
                invalid(
                    Context::Config,
                    "netmask",
                    format!("prefix length {prefix} is outside 0..{bits}"),
                )
            });
    }
    if family == Family::V6 {
        if value.is_instance_of::<PyString>() {
            return Err(invalid(
                Context::Config,
                "netmask",
                "an IPv6 pool's netmask is a prefix length (an int)".into(),
            ));
        }
        return Err(PyTypeError::new_err(format!(
            "netmask must be int, not {}",
            type_name(value)
        )));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Netmask::Dotted(parse_netmask(&text.to_cow()?)?));
    }
    Err(PyTypeError::new_err(format!(
        "netmask must be str or int, not {}",
        type_name(value)
    )))
}

/// `(low, high)` from a tuple or list of two ints.
pub fn ports(value: Option<&Bound<'_, PyAny>>) -> PyResult<(i128, i128)> {
    let Some(value) = value else {
        return Ok((1024, 65535));
    };
    let items: Vec<Bound<'_, PyAny>> = if let Ok(tuple) = value.cast::<PyTuple>() {
        tuple.iter().collect()
    } else if let Ok(list) = value.cast::<PyList>() {
        list.iter().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "ports must be a (low, high) tuple, not {}",
            type_name(value)
        )));
    };
    if !items.iter().all(is_int) {
        return Err(PyTypeError::new_err("ports must hold two ints"));
    }
    if items.len() != 2 {
        return Err(invalid(
            Context::Config,
            "ports",
            format!("expected (low, high), got {} values", items.len()),
        ));
    }
    Ok((wide_int(&items[0])?, wide_int(&items[1])?))
}

/// An int argument (not a bool).
pub fn count(value: &Bound<'_, PyAny>, field: &'static str) -> PyResult<i128> {
    if !is_int(value) {
        return Err(PyTypeError::new_err(format!(
            "{field} must be int, not {}",
            type_name(value)
        )));
    }
    wide_int(value)
}

/// A port argument of `lookup`.
pub fn port(value: &Bound<'_, PyAny>) -> PyResult<u16> {
    let wide = count(value, "port")?;
    u16::try_from(wide).map_err(|_| {
        invalid(
            Context::Argument,
            "port",
            format!("{wide} is outside 0..65535"),
        )
    })
}

/// A number of seconds (or a clock's value): an int or float, not a bool.
/// `TypeError` (naming `what`) otherwise; an int beyond a float's range is
/// infinite, which the caller rejects as not finite.
pub fn real(value: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    if !(is_int(value) || value.is_instance_of::<PyFloat>()) {
        return Err(PyTypeError::new_err(format!(
            "{what} int or float, not {}",
            type_name(value)
        )));
    }
    match value.extract::<f64>() {
        Ok(number) => Ok(number),
        Err(err) if err.is_instance_of::<PyOverflowError>(value.py()) => Ok(if value.lt(0)? {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }),
        Err(err) => Err(err),
    }
}

/// `seed`: `None` or an int (not a bool), taken mod 2^64.
pub fn seed(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(value) = value else { return Ok(None) };
    if !is_int(value) {
        return Err(PyTypeError::new_err(format!(
            "seed must be int or None, not {}",
            type_name(value)
        )));
    }
    Ok(Some(value.bitand(u64::MAX)?.extract::<u64>()?))
}

/// An int argument that may also be `None` at its call site (the message
/// says so).
pub fn optional_count(value: &Bound<'_, PyAny>, field: &'static str) -> PyResult<i128> {
    if !is_int(value) {
        return Err(PyTypeError::new_err(format!(
            "{field} must be int or None, not {}",
            type_name(value)
        )));
    }
    wide_int(value)
}

/// A keyword argument whose default is not `None`, kept as the object the
/// caller passed (an explicit `None` included) so that the shared Python
/// validation sees exactly what the reference model sees.
pub enum Given<'py> {
    Value(Bound<'py, PyAny>),
    Default,
}

impl<'a, 'py> FromPyObject<'a, 'py> for Given<'py> {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Given::Value(obj.to_owned()))
    }
}

impl<'py> Given<'py> {
    /// The object given, or `default`.
    pub fn or(
        self,
        default: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Given::Value(value) => Ok(value),
            Given::Default => default(),
        }
    }
}
