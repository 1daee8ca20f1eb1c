//! A cluster's store for the core (`core::Store`), over a Python
//! `natpool.store.Store` object: each call attaches to the interpreter, makes
//! one store call, and turns a failure into `Error::Store` (`StoreError`).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::core::space::{text, Family, WideExclusion};
use crate::core::{ClaimAt, Config, Error, Grant, Store};

/// The store as one member of one pool uses it.
pub struct PyStore {
    pub store: Py<PyAny>,
    pub name: String,
    pub member: String,
    pub claim_ttl: f64,
    pub reclaim_delay: f64,
}

fn store_error(py: Python<'_>, error: PyErr) -> Error {
    let kind = error
        .get_type(py)
        .name()
        .map(|name| name.to_string())
        .unwrap_or_default();
    match kind.as_str() {
        "StoreError" => Error::Store(error.value(py).to_string()),
        _ => Error::Store(format!("{kind}: {}", error.value(py))),
    }
}

impl PyStore {
    fn call<R>(
        &self,
        method: &str,
        args: impl FnOnce(Python<'_>) -> PyResult<(Bound<'_, PyAny>, Option<Bound<'_, PyDict>>)>,
        answer: impl FnOnce(&Bound<'_, PyAny>) -> PyResult<R>,
    ) -> Result<R, Error> {
        Python::attach(|py| {
            let result = args(py).and_then(|(args, kwargs)| {
                let value = self.store.bind(py).call_method(
                    method,
                    args.cast_into::<pyo3::types::PyTuple>()?,
                    kwargs.as_ref(),
                )?;
                answer(&value)
            });
            result.map_err(|error| store_error(py, error))
        })
    }

    fn names<'py>(&self, py: Python<'py>) -> (Bound<'py, PyAny>, Bound<'py, PyAny>) {
        (
            self.name.clone().into_pyobject(py).expect("str").into_any(),
            self.member
                .clone()
                .into_pyobject(py)
                .expect("str")
                .into_any(),
        )
    }
}

impl Store for PyStore {
    fn claim(&self) -> Result<Option<Grant>, Error> {
        self.call(
            "claim",
            |py| {
                let (name, member) = self.names(py);
                let kwargs = PyDict::new(py);
                kwargs.set_item("ttl", self.claim_ttl)?;
                kwargs.set_item("reclaim_delay", self.reclaim_delay)?;
                Ok(((name, member).into_pyobject(py)?.into_any(), Some(kwargs)))
            },
            |grant| {
                if grant.is_none() {
                    return Ok(None);
                }
                Ok(Some(Grant {
                    first: grant.getattr("first")?.extract()?,
                    count: grant.getattr("count")?.extract()?,
                    epoch: grant.getattr("epoch")?.extract()?,
                }))
            },
        )
    }

    fn claim_at(&self, index: u64, within: (u64, u64)) -> Result<ClaimAt, Error> {
        self.call(
            "claim_at",
            |py| {
                let (name, member) = self.names(py);
                let kwargs = PyDict::new(py);
                kwargs.set_item("within", within)?;
                kwargs.set_item("ttl", self.claim_ttl)?;
                kwargs.set_item("reclaim_delay", self.reclaim_delay)?;
                Ok((
                    (name, member, index).into_pyobject(py)?.into_any(),
                    Some(kwargs),
                ))
            },
            |answer| {
                if let Ok(reason) = answer.extract::<&str>() {
                    return match reason {
                        "taken" => Ok(ClaimAt::Taken),
                        "full" => Ok(ClaimAt::Full),
                        _ => Err(pyo3::exceptions::PyValueError::new_err(format!(
                            "claim_at answered {reason:?}"
                        ))),
                    };
                }
                Ok(ClaimAt::Granted(Grant {
                    first: answer.getattr("first")?.extract()?,
                    count: answer.getattr("count")?.extract()?,
                    epoch: answer.getattr("epoch")?.extract()?,
                }))
            },
        )
    }

    fn reclaim(&self, ranges: &[(u64, u64)]) -> Result<Option<Vec<Grant>>, Error> {
        self.call(
            "reclaim",
            |py| {
                let (name, member) = self.names(py);
                let kwargs = PyDict::new(py);
                kwargs.set_item("ttl", self.claim_ttl)?;
                kwargs.set_item("reclaim_delay", self.reclaim_delay)?;
                let ranges = PyList::new(py, ranges)?;
                Ok((
                    (name, member, ranges).into_pyobject(py)?.into_any(),
                    Some(kwargs),
                ))
            },
            |grants| {
                if grants.is_none() {
                    return Ok(None);
                }
                let mut out = Vec::new();
                for grant in grants.try_iter()? {
                    let grant = grant?;
                    out.push(Grant {
                        first: grant.getattr("first")?.extract()?,
                        count: grant.getattr("count")?.extract()?,
                        epoch: grant.getattr("epoch")?.extract()?,
                    });
                }
                Ok(Some(out))
            },
        )
    }

    fn release(&self, epoch: u64) -> Result<(), Error> {
        self.call(
            "release",
            |py| {
                let (name, member) = self.names(py);
                Ok(((name, member, epoch).into_pyobject(py)?.into_any(), None))
            },
            |_| Ok(()),
        )
    }

    fn renew(&self, epochs: &[u64]) -> Result<Vec<u64>, Error> {
        self.call(
            "renew",
            |py| {
                let (name, member) = self.names(py);
                let epochs = PyList::new(py, epochs)?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("ttl", self.claim_ttl)?;
                Ok((
                    (name, member, epochs).into_pyobject(py)?.into_any(),
                    Some(kwargs),
                ))
            },
            |renewed| {
                renewed
                    .try_iter()?
                    .map(|epoch| epoch?.extract::<u64>())
                    .collect()
            },
        )
    }

    fn leave(&self, epochs: &[u64]) -> Result<(), Error> {
        self.call(
            "leave",
            |py| {
                let (name, member) = self.names(py);
                let epochs = PyList::new(py, epochs)?;
                Ok(((name, member, epochs).into_pyobject(py)?.into_any(), None))
            },
            |_| Ok(()),
        )
    }
}

/// The pool's configuration as the store registers it (the canonical form
/// of `natpool.store.space.config_of`). A legacy IPv4 pool without
/// exclusions is built here, field by field; any other shape is given as its
/// normalised ranges and its exclusions (as given, parsed), and canonicalised
/// by `natpool.store.space.canonical_config`, the reference model's code.
pub fn registered_config<'py>(
    py: Python<'py>,
    config: &Config,
    exclusions: &[WideExclusion],
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("name", config.name())?;
    let legacy = if config.is_legacy_shape() && !config.is_ipv6() {
        config.legacy()
    } else {
        None
    };
    if let Some((first, last, _)) = legacy {
        // The legacy range as given (the store's canonical form).
        dict.set_item("first_ip", first.to_string())?;
        dict.set_item("last_ip", last.to_string())?;
        let netmask = config.netmask().expect("the legacy form has a netmask");
        dict.set_item("netmask", netmask.to_string())?;
    } else {
        let ranges = PyList::empty(py);
        for (first, last) in config.ranges() {
            ranges.append(PyList::new(py, [first.to_string(), last.to_string()])?)?;
        }
        dict.set_item("ranges", ranges)?;
        let exclude = PyList::empty(py);
        for exclusion in exclusions {
            let (first, last) = (
                text(exclusion.family, exclusion.first),
                text(exclusion.family, exclusion.last),
            );
            let item = match exclusion.ports {
                None => format!("{first}-{last}"),
                // An exclusion of ports names one IP.
                Some((low, high)) if exclusion.family == Family::V6 => {
                    format!("[{first}]:{low}-{high}")
                }
                Some((low, high)) => format!("{first}:{low}-{high}"),
            };
            exclude.append(item)?;
        }
        dict.set_item("exclude", exclude)?;
    }
    let (low, high) = config.ports();
    dict.set_item("ports", PyList::new(py, [low, high])?)?;
    dict.set_item("initial_blocks", config.initial_blocks())?;
    dict.set_item("max_blocks", config.max_blocks())?;
    dict.set_item("subpool_blocks", config.subpool_blocks())?;
    dict.set_item("grow_threshold", config.grow_threshold())?;
    if legacy.is_some() {
        return Ok(dict);
    }
    py.import("natpool.store.space")?
        .call_method1("canonical_config", (dict,))?
        .cast_into::<PyDict>()
        .map_err(Into::into)
}
