//! `natpool.Pool(…, store=…)`: the pool as one member of a cluster. The
//! store arguments are validated and the cluster joined by
//! `natpool.store.member` (the code the reference model uses too, so both
//! raise the same errors and make the same store calls); the core
//! (`core/pool/cluster.rs`) then claims, returns, renews and fences through
//! `PyStore`. The renewal runs on a Python daemon thread
//! (`natpool.store.member.Renewer`), never on a Rust thread, which would
//! have to attach to the interpreter while it may be finalizing.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::bindings::store::{registered_config, PyStore};
use crate::core::pool::check_store_space;
use crate::core::space::WideExclusion;
use crate::core::{Config, Error, Membership, Pool, Renewal};

/// Renews a pool's claims; held weakly by the renewal thread, so that a
/// pool dropped without `close()` stops being renewed.
#[pyclass(frozen, weakref, name = "_Renewal", module = "natpool._natpool")]
pub struct PyRenewal {
    inner: Renewal,
}

#[pymethods]
impl PyRenewal {
    /// Renew the pool's claims now (the next allocation fences what lapsed).
    fn renew(&self) -> PyResult<()> {
        Ok(self.inner.renew()?)
    }
}

/// The core pool the binding instantiates: a Python object per lease.
pub type CorePool = Pool<Option<Py<PyAny>>>;

/// What the binding keeps of a pool's membership.
pub struct Member {
    pub name: String,
    store: Py<PyAny>,
    owns_store: bool,
    /// Kept alive here; the renewal thread holds it weakly.
    _renewal: Py<PyRenewal>,
    renewer: Option<Py<PyAny>>,
}

/// Validate the store arguments (always, as the reference model does) and,
/// with a store, join the cluster: the core pool and its membership.
/// `exclusions` are the pool's as given (parsed), for the configuration the
/// store registers.
pub fn join(
    py: Python<'_>,
    config: Config,
    exclusions: &[WideExclusion],
    arguments: [&Bound<'_, PyAny>; 5],
) -> PyResult<(CorePool, Option<Member>)> {
    let Some(settings) = settings(py, arguments)? else {
        return Ok((Pool::new(config), None));
    };
    let joined = join_cluster(py, &config, exclusions, &settings)?;
    let (membership, parts) = joined.split(py);
    let core = Pool::with_store(config, membership)?;
    let member = parts.member(py, &core)?;
    Ok((core, Some(member)))
}

/// The store arguments validated by `natpool.store.member.settings` (in the
/// order store, member, claim_ttl, reclaim_delay, renew_interval); `None`
/// without a store.
pub fn settings<'py>(
    py: Python<'py>,
    arguments: [&Bound<'py, PyAny>; 5],
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let module = py.import("natpool.store.member")?;
    let settings = module.call_method1("settings", PyTuple::new(py, arguments)?)?;
    Ok((!settings.is_none()).then_some(settings))
}

/// A cluster joined, before the core pool is made.
pub struct Joined {
    store_for_core: PyStore,
    claim_ttl: f64,
    parts: MemberParts,
}

/// What the binding keeps of a membership once the core has its store.
pub struct MemberParts {
    name: String,
    pool: String,
    store: Py<PyAny>,
    owns_store: bool,
    renew_interval: f64,
}

/// Check what a store does not take, then open the store (a URL) and join
/// the cluster with `config`'s registered form (`natpool.store.member.join`).
pub fn join_cluster(
    py: Python<'_>,
    config: &Config,
    exclusions: &[WideExclusion],
    settings: &Bound<'_, PyAny>,
) -> PyResult<Joined> {
    if config.client_block().is_some() {
        return Err(Error::Config {
            field: "client_block",
            reason: "is not supported with a store yet".into(),
        }
        .into());
    }
    check_store_space(config)?;
    let module = py.import("natpool.store.member")?;
    let registered = registered_config(py, config, exclusions)?;
    let (store, owns_store): (Py<PyAny>, bool) = module
        .call_method1("join", (settings, registered))?
        .extract()?;
    let name: String = settings.getattr("member")?.extract()?;
    let claim_ttl: f64 = settings.getattr("claim_ttl")?.extract()?;
    let reclaim_delay: f64 = settings.getattr("reclaim_delay")?.extract()?;
    let renew_interval: f64 = settings.getattr("renew_interval")?.extract()?;
    Ok(Joined {
        store_for_core: PyStore {
            store: store.clone_ref(py),
            name: config.name().to_owned(),
            member: name.clone(),
            claim_ttl,
            reclaim_delay,
        },
        claim_ttl,
        parts: MemberParts {
            name,
            pool: config.name().to_owned(),
            store,
            owns_store,
            renew_interval,
        },
    })
}

impl Joined {
    /// The core's membership (its store; the renewal runs on a Python
    /// thread) and what the binding keeps.
    pub fn split(self, _py: Python<'_>) -> (Membership, MemberParts) {
        let membership = Membership {
            store: Box::new(self.store_for_core),
            claim_ttl: Duration::from_secs_f64(self.claim_ttl),
            renew_interval: Duration::ZERO,
        };
        (membership, self.parts)
    }
}

impl MemberParts {
    /// The member of a pool made with the membership: its renewal started.
    pub fn member(self, py: Python<'_>, core: &CorePool) -> PyResult<Member> {
        let module = py.import("natpool.store.member")?;
        let renewal = Py::new(
            py,
            PyRenewal {
                inner: core.renewal().expect("a member of a cluster"),
            },
        )?;
        let renewer = if self.renew_interval > 0.0 {
            let renewer = module.getattr("Renewer")?;
            Some(
                renewer
                    .call1((&renewal, self.renew_interval, &self.name))?
                    .unbind(),
            )
        } else {
            None
        };
        Ok(Member {
            name: self.name,
            store: self.store,
            owns_store: self.owns_store,
            _renewal: renewal,
            renewer,
        })
    }

    /// Leave the cluster joined for a pool that was not made (no claim to
    /// return), closing a store opened here; a failing store is ignored
    /// (the heartbeat lapses).
    pub fn abandon(self, py: Python<'_>) {
        let empty = PyList::empty(py);
        let _ = self
            .store
            .call_method1(py, "leave", (&self.pool, &self.name, empty));
        if self.owns_store {
            let _ = self.store.call_method0(py, "close");
        }
    }
}

impl Member {
    /// Stop the renewal, leave the cluster (returning the idle claims), and
    /// close the store if the pool opened it (from a URL), whatever happens.
    pub fn close(&self, py: Python<'_>, core: &CorePool) -> PyResult<()> {
        let stopped = self
            .renewer
            .as_ref()
            .map_or(Ok(()), |renewer| renewer.call_method0(py, "stop").map(drop));
        let left = core.close();
        let closed = if self.owns_store {
            self.store.call_method0(py, "close").map(drop)
        } else {
            Ok(())
        };
        stopped?;
        left?;
        closed
    }
}
