//! A pool's shape from Python (`docs/shapes.md`): phase 1 of `ranges` and
//! `exclude` is `natpool.shapes`'s (`parse_ranges`, `parse_exclusions`),
//! which the reference model calls too, so both accept, normalise and refuse
//! an item alike; method arguments' addresses (`lookup`, `reserve`, `drain`)
//! go through `parse_address`, after a fast path for the forms that parse
//! the same in Rust.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyInt, PyString, PyTuple};

use crate::bindings::convert::is_int;
use crate::core::config::parse_ipv4;
use crate::core::space::{Family, WideExclusion};

static PARSE_RANGES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PARSE_EXCLUSIONS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PARSE_ADDRESS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static IPV4_ADDRESS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn function<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, "natpool.shapes", name)
}

fn family(number: u8) -> Family {
    if number == 6 {
        Family::V6
    } else {
        Family::V4
    }
}

/// A port bound of an exclusion, wide (a huge int saturates: it is outside
/// every pool's ports all the same).
fn port_bound(value: &Bound<'_, PyAny>) -> PyResult<i128> {
    Ok(value.extract::<i128>().unwrap_or(i128::MAX))
}

/// `(family, first, last)` per item of `ranges` (usable bounds applied).
pub fn ranges(value: &Bound<'_, PyAny>) -> PyResult<Vec<(Family, u128, u128)>> {
    let py = value.py();
    let parsed = function(py, &PARSE_RANGES, "parse_ranges")?.call1((value,))?;
    parsed
        .try_iter()?
        .map(|item| {
            let (number, first, last): (u8, u128, u128) = item?.extract()?;
            Ok((family(number), first, last))
        })
        .collect()
}

/// The items of `exclude` (`None`: none).
pub fn exclusions(value: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<WideExclusion>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let py = value.py();
    let parsed = function(py, &PARSE_EXCLUSIONS, "parse_exclusions")?.call1((value,))?;
    parsed
        .try_iter()?
        .map(|item| {
            let item = item?;
            let item = item.cast::<PyTuple>()?;
            let number: u8 = item.get_item(0)?.extract()?;
            let first: u128 = item.get_item(1)?.extract()?;
            let last: u128 = item.get_item(2)?.extract()?;
            let (low, high) = (item.get_item(3)?, item.get_item(4)?);
            let ports = if low.is_none() {
                None
            } else {
                Some((port_bound(&low)?, port_bound(&high)?))
            };
            Ok(WideExclusion {
                family: family(number),
                first,
                last,
                ports,
            })
        })
        .collect()
}

/// A method argument's address in a pool of `family`: `str`, an `ipaddress`
/// address, or an `int` of the pool's family; `ArgumentError` for another
/// family or an unparsable value, `TypeError` for another type
/// (`natpool.shapes.parse_address`, which this calls for anything but the
/// common forms it would accept).
pub fn address(value: &Bound<'_, PyAny>, pool: Family, field: &str) -> PyResult<u128> {
    let py = value.py();
    if pool == Family::V4 {
        if let Ok(text) = value.cast::<PyString>() {
            if let Some(ip) = parse_ipv4(&text.to_cow()?) {
                return Ok(u128::from(ip));
            }
        } else if value.is_instance_of::<PyInt>() && is_int(value) {
            if let Ok(ip) = value.extract::<u32>() {
                return Ok(u128::from(ip));
            }
        } else if value.is_instance(IPV4_ADDRESS.import(py, "ipaddress", "IPv4Address")?)? {
            return Ok(u128::from(value.call_method0("__int__")?.extract::<u32>()?));
        }
    }
    function(py, &PARSE_ADDRESS, "parse_address")?
        .call1((value, pool.number(), field))?
        .extract()
}
