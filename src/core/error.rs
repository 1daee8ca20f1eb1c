//! The core's one error type. The Python binding converts it, in one place,
//! into the exception classes of `natpool.errors`.

use std::fmt;

/// Everything the core reports as a failure. A call that returns an error
/// has changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The pool's configuration is invalid; `field` names the parameter.
    Config { field: &'static str, reason: String },
    /// A method argument has an unusable value (an unparsable address, n < 0).
    Argument(String),
    /// Every address the pool may hand out is leased or held.
    Exhausted(String),
    /// The client already has its quota of leases live or held.
    QuotaExceeded(String),
    /// The handle is not a live lease of this pool.
    NotLive(String),
    /// Memory for a new subpool could not be reserved.
    OutOfMemory(String),
    /// The cluster's store is unreachable or failed (it changed nothing).
    Store(String),
    /// The pool was closed.
    Closed(String),
    /// The call is not supported for this pool (yet): `reserve` with a store.
    Unsupported(String),
    /// A snapshot that cannot be written (a pool with a store, a client the
    /// format cannot hold) or read (corrupt, truncated, of another version,
    /// or a state no pool of its configuration can be in).
    Snapshot(String),
}

impl Error {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { field, reason } => write!(f, "{field}: {reason}"),
            Error::Argument(m)
            | Error::Exhausted(m)
            | Error::QuotaExceeded(m)
            | Error::NotLive(m)
            | Error::OutOfMemory(m)
            | Error::Store(m)
            | Error::Closed(m)
            | Error::Unsupported(m)
            | Error::Snapshot(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
