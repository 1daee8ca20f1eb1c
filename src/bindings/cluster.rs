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
use pyo3::types::PyTuple;

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
    let module = py.import("natpool.store.member")?;
    let settings = module.call_method1("settings", PyTuple::new(py, arguments)?)?;
    if settings.is_none() {
        return Ok((Pool::new(config), None));
    }
    if config.client_block().is_some() {
        // Port blocks are not cluster-wide yet: refused before the store is
        // opened or joined (nothing is written), as the reference model does.
        return Err(Error::Config {
            field: "client_block",
            reason: "is not supported with a store yet".into(),
        }
        .into());
    }
    // The store's ledger counts in 64-bit integers (field `store`): checked
    // before anything is written (`docs/shapes.md`, as the reference model does).
    check_store_space(&config)?;
    let registered = registered_config(py, &config, exclusions)?;
    let (store, owns_store): (Py<PyAny>, bool) = module
        .call_method1("join", (&settings, registered))?
        .extract()?;
    let name: String = settings.getattr("member")?.extract()?;
    let claim_ttl: f64 = settings.getattr("claim_ttl")?.extract()?;
    let reclaim_delay: f64 = settings.getattr("reclaim_delay")?.extract()?;
    let renew_interval: f64 = settings.getattr("renew_interval")?.extract()?;
    let store_for_core = PyStore {
        store: store.clone_ref(py),
        name: config.name().to_owned(),
        member: name.clone(),
        claim_ttl,
        reclaim_delay,
    };
    let core = Pool::with_store(
        config,
        Membership {
            store: Box::new(store_for_core),
            claim_ttl: Duration::from_secs_f64(claim_ttl),
            renew_interval: Duration::ZERO,
        },
    )?;
    let renewal = Py::new(
        py,
        PyRenewal {
            inner: core.renewal().expect("a member of a cluster"),
        },
    )?;
    let renewer = if renew_interval > 0.0 {
        let renewer = module.getattr("Renewer")?;
        Some(renewer.call1((&renewal, renew_interval, &name))?.unbind())
    } else {
        None
    };
    let member = Member {
        name,
        store,
        owns_store,
        _renewal: renewal,
        renewer,
    };
    Ok((core, Some(member)))
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
