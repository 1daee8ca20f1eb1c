//! Client identities in a snapshot as Python values (`docs/shapes.md`,
//! "Client identities"): the binding's side of the split, since the core
//! keeps clients as `u64` keys. A client is written by its exact type
//! (`None` inside a tuple, `bool`, `int` of any size, `float` but NaN,
//! `str` but a lone surrogate, `bytes`, `tuple` at most 32 deep); any other
//! type is a `SnapshotError`. Reading gives back a value of the same type;
//! the core has already checked the encoding canonical
//! (`core/snapshot/identity.rs`).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString, PyTuple};

use crate::core::snapshot::identity::{
    BYTES, FALSE, FLOAT, INT, MAX_DEPTH, NONE, STR, TRUE, TUPLE,
};
use crate::core::Error;

fn refused(reason: impl Into<String>) -> PyErr {
    Error::Snapshot(reason.into()).into()
}

/// `value`'s canonical encoding.
pub fn encode(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out = Vec::new();
    write(value, 0, &mut out)?;
    Ok(out)
}

fn sized(out: &mut Vec<u8>, raw: &[u8]) -> PyResult<()> {
    let n = u32::try_from(raw.len())
        .map_err(|_| refused("a client's encoding is longer than 2**32 - 1 bytes"))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(raw);
    Ok(())
}

fn write(value: &Bound<'_, PyAny>, depth: u32, out: &mut Vec<u8>) -> PyResult<()> {
    if value.is_none() {
        out.push(NONE);
    } else if value.is_exact_instance_of::<PyBool>() {
        out.push(if value.is_truthy()? { TRUE } else { FALSE });
    } else if value.is_exact_instance_of::<PyInt>() {
        out.push(INT);
        match value.extract::<i64>() {
            Ok(small) => sized(out, shortest(&small.to_le_bytes()))?,
            Err(_) => {
                // Beyond 64 bits: Python's own two's complement, in
                // bit_length(x >= 0 ? x : ~x) // 8 + 1 bytes.
                let magnitude = if value.lt(0)? {
                    value.call_method0("__invert__")?
                } else {
                    value.clone()
                };
                let bits: u64 = magnitude.call_method0("bit_length")?.extract()?;
                let kwargs = PyDict::new(value.py());
                kwargs.set_item("signed", true)?;
                let raw = value.call_method("to_bytes", (bits / 8 + 1, "little"), Some(&kwargs))?;
                sized(out, raw.cast::<PyBytes>()?.as_bytes())?;
            }
        }
    } else if value.is_exact_instance_of::<PyFloat>() {
        let number: f64 = value.extract()?;
        if number.is_nan() {
            return Err(refused(
                "a client that is a NaN float cannot be written in a snapshot",
            ));
        }
        out.push(FLOAT);
        out.extend_from_slice(&number.to_le_bytes());
    } else if value.is_exact_instance_of::<PyString>() {
        let text = value.cast::<PyString>()?;
        let text = text.to_str().map_err(|_| {
            refused("a client str is not valid UTF-8 (a lone surrogate): it cannot be written")
        })?;
        out.push(STR);
        sized(out, text.as_bytes())?;
    } else if value.is_exact_instance_of::<PyBytes>() {
        out.push(BYTES);
        sized(out, value.cast::<PyBytes>()?.as_bytes())?;
    } else if value.is_exact_instance_of::<PyTuple>() {
        if depth == MAX_DEPTH {
            return Err(refused(format!(
                "a client's tuples nest deeper than {MAX_DEPTH}"
            )));
        }
        let tuple = value.cast::<PyTuple>()?;
        out.push(TUPLE);
        let n = u32::try_from(tuple.len()).map_err(|_| refused("a client tuple is too long"))?;
        out.extend_from_slice(&n.to_le_bytes());
        for item in tuple.iter() {
            write(&item, depth + 1, out)?;
        }
    } else {
        let kind = value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(refused(format!(
            "a client of type {kind} cannot be written in a snapshot \
             (clients must be None, bool, int, float, str, bytes or tuples of these)"
        )));
    }
    Ok(())
}

/// Two's complement little-endian bytes without the top bytes that only
/// repeat the sign.
fn shortest(bytes: &[u8]) -> &[u8] {
    let mut n = bytes.len();
    while n > 1 {
        let (top, below) = (bytes[n - 1], bytes[n - 2] & 0x80);
        if (top, below) == (0x00, 0) || (top, below) == (0xFF, 0x80) {
            n -= 1;
        } else {
            break;
        }
    }
    &bytes[..n]
}

/// The value of a canonical encoding (checked by the core).
pub fn decode<'py>(py: Python<'py>, encoded: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let mut at = 0;
    let value = read(py, encoded, &mut at)?;
    if at != encoded.len() {
        return Err(refused("a client identity has trailing bytes"));
    }
    Ok(value)
}

fn take<'a>(encoded: &'a [u8], at: &mut usize, n: usize) -> PyResult<&'a [u8]> {
    let end = at
        .checked_add(n)
        .filter(|&end| end <= encoded.len())
        .ok_or_else(|| refused("a client identity is truncated"))?;
    let bytes = &encoded[*at..end];
    *at = end;
    Ok(bytes)
}

fn length(encoded: &[u8], at: &mut usize) -> PyResult<usize> {
    let raw = take(encoded, at, 4)?;
    Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
}

fn read<'py>(py: Python<'py>, encoded: &[u8], at: &mut usize) -> PyResult<Bound<'py, PyAny>> {
    let tag = take(encoded, at, 1)?[0];
    Ok(match tag {
        NONE => py.None().into_bound(py),
        FALSE => PyBool::new(py, false).to_owned().into_any(),
        TRUE => PyBool::new(py, true).to_owned().into_any(),
        INT => {
            let n = length(encoded, at)?;
            let raw = take(encoded, at, n)?;
            if n <= 16 {
                let fill = if raw.last().is_some_and(|top| top & 0x80 != 0) {
                    0xFF
                } else {
                    0
                };
                let mut wide = [fill; 16];
                wide[..n].copy_from_slice(raw);
                i128::from_le_bytes(wide).into_pyobject(py)?.into_any()
            } else {
                let kwargs = PyDict::new(py);
                kwargs.set_item("signed", true)?;
                py.get_type::<PyInt>().call_method(
                    "from_bytes",
                    (PyBytes::new(py, raw), "little"),
                    Some(&kwargs),
                )?
            }
        }
        FLOAT => {
            let raw = take(encoded, at, 8)?;
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(raw);
            PyFloat::new(py, f64::from_le_bytes(bytes)).into_any()
        }
        STR => {
            let n = length(encoded, at)?;
            let text = std::str::from_utf8(take(encoded, at, n)?)
                .map_err(|_| refused("a client str is not valid UTF-8"))?;
            PyString::new(py, text).into_any()
        }
        BYTES => {
            let n = length(encoded, at)?;
            PyBytes::new(py, take(encoded, at, n)?).into_any()
        }
        TUPLE => {
            let n = length(encoded, at)?;
            let items = (0..n)
                .map(|_| read(py, encoded, at))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, items)?.into_any()
        }
        other => return Err(refused(format!("client tag {other} is not one of 0..7"))),
    })
}
