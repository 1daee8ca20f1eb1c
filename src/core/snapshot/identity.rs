//! Client identities in a snapshot (`docs/shapes.md`, "Client identities"):
//! a tag byte and a payload, recursively: `None` (only inside a tuple),
//! `False`/`True`, an int (two's complement, little-endian, in the fewest
//! bytes), a float (not NaN), a str (UTF-8), bytes, a tuple (at most
//! [`MAX_DEPTH`] deep).
//!
//! The core keeps clients as `u64` keys; what a key stands for is its
//! caller's. So the core only checks that an encoding is canonical
//! ([`skip`]), and writes and reads the one kind of identity its own Rust
//! API has, a key as an int ([`int`], [`as_key`]); the Python binding
//! encodes and decodes Python values (`bindings/identity.rs`).

use crate::core::error::Error;
use crate::core::snapshot::In;

/// The deepest nesting of tuples.
pub(crate) const MAX_DEPTH: u32 = 32;

/// The tags.
pub(crate) const NONE: u8 = 0;
pub(crate) const FALSE: u8 = 1;
pub(crate) const TRUE: u8 = 2;
pub(crate) const INT: u8 = 3;
pub(crate) const FLOAT: u8 = 4;
pub(crate) const STR: u8 = 5;
pub(crate) const BYTES: u8 = 6;
pub(crate) const TUPLE: u8 = 7;

/// What an identity is at its top level (only `None` matters to callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    None,
    Other,
}

fn refused(reason: impl Into<String>) -> Error {
    Error::Snapshot(reason.into())
}

/// Read past one identity at tuple depth `depth`, refusing any encoding
/// that is not canonical.
pub(crate) fn skip(input: &mut In<'_>, depth: u32) -> Result<Tag, Error> {
    match input.u8()? {
        NONE => return Ok(Tag::None),
        FALSE | TRUE => {}
        INT => {
            let n = input.count(1, false)?;
            if !shortest(input.take(n)?) {
                return Err(refused("a client int is not in its shortest encoding"));
            }
        }
        FLOAT => {
            if input.f64()?.is_nan() {
                return Err(refused("a client float is NaN"));
            }
        }
        STR => {
            let n = input.count(1, false)?;
            if std::str::from_utf8(input.take(n)?).is_err() {
                return Err(refused("a client str is not valid UTF-8"));
            }
        }
        BYTES => {
            let n = input.count(1, false)?;
            input.take(n)?;
        }
        TUPLE => {
            if depth == MAX_DEPTH {
                return Err(refused(format!(
                    "a client's tuples nest deeper than {MAX_DEPTH}"
                )));
            }
            for _ in 0..input.count(1, false)? {
                skip(input, depth + 1)?;
            }
        }
        tag => return Err(refused(format!("client tag {tag} is not one of 0..7"))),
    }
    Ok(Tag::Other)
}

/// Whether `bytes` (two's complement, little-endian) is an int in the
/// fewest bytes: `bit_length(x >= 0 ? x : ~x) // 8 + 1` of them, so at
/// least one, and no top byte that only repeats the sign of the one below.
pub(crate) fn shortest(bytes: &[u8]) -> bool {
    match bytes {
        [] => false,
        [_] => true,
        [.., below, top] => !matches!((top, below & 0x80), (0x00, 0) | (0xFF, 0x80)),
    }
}

/// The identity of the int `value` (a Rust caller's client key).
pub(crate) fn int(value: u64) -> Vec<u8> {
    let bytes = value.to_le_bytes();
    let mut n = 8;
    while n > 1 && bytes[n - 1] == 0 && bytes[n - 2] & 0x80 == 0 {
        n -= 1;
    }
    let mut out = vec![INT];
    if n == 8 && bytes[7] & 0x80 != 0 {
        // 2^63 and above: a zero byte keeps the sign positive.
        out.extend_from_slice(&9u32.to_le_bytes());
        out.extend_from_slice(&bytes);
        out.push(0);
    } else {
        out.extend_from_slice(&(n as u32).to_le_bytes());
        out.extend_from_slice(&bytes[..n]);
    }
    out
}

/// The key of an identity that is an int in `0..u64::MAX` (a Rust
/// caller's client key; `u64::MAX` is no key), else `None`.
pub(crate) fn as_key(identity: &[u8]) -> Option<u64> {
    let (&tag, rest) = identity.split_first()?;
    if tag != INT || rest.len() < 4 {
        return None;
    }
    let (length, bytes) = rest.split_at(4);
    let n = u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize;
    if n != bytes.len() || n > 9 || bytes.last()? & 0x80 != 0 {
        return None; // longer than a u64, or negative
    }
    if n == 9 && bytes[8] != 0 {
        return None;
    }
    let mut value = [0u8; 8];
    let used = n.min(8);
    value[..used].copy_from_slice(&bytes[..used]);
    let key = u64::from_le_bytes(value);
    (key != u64::MAX).then_some(key)
}
