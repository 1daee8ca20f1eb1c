//! `natpool.Pool`: the control block and its methods, over the core pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyString, PyType};

use crate::bindings::clients::Clients;
use crate::bindings::cluster::{self, CorePool, Member};
use crate::bindings::convert::{self, Context, Given};
use crate::bindings::identity;
use crate::bindings::lease::{LeaseContext, PyLease};
use crate::bindings::records;
use crate::bindings::shapes;

use crate::core::config::{WideShape, WideSpec};
use crate::core::policy::{check_hold, check_now};
use crate::core::pool::Restorable;
use crate::core::space::Family;
use crate::core::{Clock, Config, Error, Handle, Lease, Order};

/// A client NAT address pool (the Rust core).
#[pyclass(frozen, name = "Pool", module = "natpool")]
pub struct PyPool {
    pub(crate) core: CorePool,
    /// The Python clock; `None`: the core's monotonic clock.
    clock: Option<Py<PyAny>>,
    /// Python clients and the core's keys for them.
    clients: Clients,
    /// With a store: the pool's membership of its cluster.
    member: Option<Member>,
    closed: AtomicBool,
}

#[inline(always)]
pub(crate) fn lease_object(
    pool: &Bound<'_, PyPool>,
    lease: Lease,
    data: Option<Py<PyAny>>,
) -> PyResult<Py<PyLease>> {
    Py::new(
        pool.py(),
        PyLease {
            pool: pool.clone().unbind(),
            handle: lease.handle.0,
            ip: lease.ip,
            port: lease.port,
            data: data.unwrap_or_else(|| pool.py().None()),
        },
    )
}

impl PyPool {
    /// `NatPoolError` once the pool is closed: every call checks this first.
    #[inline]
    pub(crate) fn open(&self) -> PyResult<&CorePool> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        Ok(&self.core)
    }

    /// The error of a call on a closed pool, out of the calls' way.
    #[cold]
    #[inline(never)]
    fn closed_error(&self) -> PyErr {
        Error::Closed(format!("pool {:?} is closed", self.core.config().name())).into()
    }

    pub(crate) fn allocate_lease(
        slf: &Bound<'_, Self>,
        data: Option<Py<PyAny>>,
        client: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyLease>> {
        let py = slf.py();
        let pool = slf.get();
        let core = pool.open()?;
        let tracked = pool.check_client(client)?;
        let now = pool.now_for_allocation(py, client.is_some())?;
        let copy = data.as_ref().map(|d| d.clone_ref(py));
        let lease = match (tracked, client) {
            (true, Some(client)) => {
                let mut interner = pool.clients.lock(py);
                let key = interner.intern(client)?;
                let lease = core.allocate_for_at(data, key, now);
                interner.tidy(py, core, Some(key))?;
                lease?
            }
            _ => core.allocate_at(data, now)?,
        };
        lease_object(slf, lease, copy)
    }

    /// `client` is hashable (`TypeError` otherwise, before anything else);
    /// whether the pool keeps client states for it.
    #[inline]
    fn check_client(&self, client: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let Some(client) = client else {
            return Ok(false);
        };
        client.hash()?;
        Ok(self.core.config().client_quota().is_some()
            || self.core.config().paired()
            || self.core.config().client_block().is_some())
    }

    /// The clock's time for an allocation call, if the reference model's
    /// rule says it reads it (a block held; port blocks and a client).
    #[inline]
    fn now_for_allocation(&self, py: Python<'_>, for_client: bool) -> PyResult<Option<f64>> {
        if !self.core.allocation_reads_clock(for_client) {
            return Ok(None);
        }
        self.now(py).map(Some)
    }

    /// The clock's time, checked as the reference model checks it.
    fn now(&self, py: Python<'_>) -> PyResult<f64> {
        let Some(clock) = &self.clock else {
            return Ok(self.core.clock().now()?);
        };
        let value = clock.bind(py).call0()?;
        Ok(check_now(convert::real(&value, "clock must return")?)?)
    }

    /// A free's effective hold: `hold`, or the pool's `hold_down` when None.
    #[inline]
    fn hold_seconds(&self, hold: Option<&Bound<'_, PyAny>>) -> PyResult<f64> {
        match hold {
            None => Ok(self.core.config().hold_down()),
            Some(hold) => Ok(check_hold(convert::real(hold, "hold must be")?)?),
        }
    }

    /// The clock's time for a free call with a hold of `seconds`: read for
    /// a hold, and with port blocks (the reference model's rule).
    #[inline]
    pub(crate) fn now_for_free(&self, py: Python<'_>, seconds: f64) -> PyResult<Option<f64>> {
        if seconds > 0.0 || self.core.config().client_block().is_some() {
            Ok(Some(self.now(py)?))
        } else {
            Ok(None)
        }
    }

    /// The handle of a Lease of this pool or of an int (inlined into
    /// `free` and the loops of `free_many`; its errors are out of line).
    #[inline(always)]
    fn handle_of(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>) -> PyResult<Handle> {
        // The int test first (a flag of the type): an int never fails a
        // cast to Lease, which builds an error to throw away.
        if convert::is_int(item) {
            // Negative or over-wide ints name no lease: 1 << 96 is never live.
            return Ok(Handle(item.extract::<u128>().unwrap_or(1 << 96)));
        }
        if let Ok(lease) = item.cast::<PyLease>() {
            let lease = lease.get();
            if !lease.pool.is(slf) {
                return Err(not_handle(item));
            }
            return Ok(Handle(lease.handle));
        }
        Err(not_handle(item))
    }
}

/// Why `item` names no lease of the pool given it (`handle_of`): a Lease of
/// another pool, or not a Lease or an int. Out of the frees' way.
#[cold]
#[inline(never)]
fn not_handle(item: &Bound<'_, PyAny>) -> PyErr {
    if let Ok(lease) = item.cast::<PyLease>() {
        return Error::NotLive(format!(
            "{} belongs to another pool",
            lease_repr(lease.get())
        ))
        .into();
    }
    PyTypeError::new_err(format!(
        "expected a Lease or an int handle, not {}",
        item.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    ))
}

/// `restore`'s `snapshot`: `bytes`, `bytearray` or `memoryview` (copied
/// into `bytes`), else `TypeError`.
fn snapshot_bytes<'py>(snapshot: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(bytes) = snapshot.cast::<PyBytes>() {
        return Ok(bytes.clone());
    }
    if snapshot.is_instance_of::<PyByteArray>() || snapshot.is_instance_of::<PyMemoryView>() {
        let copied = snapshot.py().get_type::<PyBytes>().call1((snapshot,))?;
        return Ok(copied.cast_into::<PyBytes>()?);
    }
    Err(PyTypeError::new_err(format!(
        "snapshot must be bytes, not {}",
        snapshot.get_type().name()?
    )))
}

/// An optional argument as given, or its default.
fn given_or<'py>(
    value: Option<&Bound<'py, PyAny>>,
    default: Bound<'py, PyAny>,
) -> Bound<'py, PyAny> {
    value.cloned().unwrap_or(default)
}

fn lease_repr(lease: &PyLease) -> String {
    format!(
        "Lease(ip='{}', port={}, handle={:#x})",
        lease.ip, lease.port, lease.handle
    )
}

#[pymethods]
impl PyPool {
    #[new]
    #[pyo3(
        signature = (name, first_ip=None, last_ip=None, netmask=None, initial_blocks=None, max_blocks=None, *, ranges=None, exclude=None, ports=None, subpool_blocks=None, grow_threshold=None, hold_down=None, clock=None, order=None, seed=None, client_quota=None, paired=None, client_block=None, event_queue=None, store=None, member=None, claim_ttl=Given::Default, reclaim_delay=Given::Default, renew_interval=None),
        text_signature = "(name, first_ip=None, last_ip=None, netmask=None, initial_blocks=None, max_blocks=None, *, ranges=None, exclude=None, ports=(1024, 65535), subpool_blocks=None, grow_threshold=0, hold_down=0.0, clock=None, order='fifo', seed=None, client_quota=None, paired=False, client_block=None, event_queue=65536, store=None, member=None, claim_ttl=30.0, reclaim_delay=120.0, renew_interval=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        first_ip: Option<&Bound<'py, PyAny>>,
        last_ip: Option<&Bound<'py, PyAny>>,
        netmask: Option<&Bound<'py, PyAny>>,
        initial_blocks: Option<&Bound<'_, PyAny>>,
        max_blocks: Option<&Bound<'_, PyAny>>,
        ranges: Option<&Bound<'_, PyAny>>,
        exclude: Option<&Bound<'_, PyAny>>,
        ports: Option<&Bound<'_, PyAny>>,
        subpool_blocks: Option<&Bound<'_, PyAny>>,
        grow_threshold: Option<&Bound<'_, PyAny>>,
        hold_down: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        order: Option<&Bound<'_, PyAny>>,
        seed: Option<&Bound<'_, PyAny>>,
        client_quota: Option<&Bound<'_, PyAny>>,
        paired: Option<&Bound<'_, PyAny>>,
        client_block: Option<&Bound<'_, PyAny>>,
        event_queue: Option<&Bound<'_, PyAny>>,
        store: Option<&Bound<'_, PyAny>>,
        member: Option<&Bound<'_, PyAny>>,
        claim_ttl: Given<'_>,
        reclaim_delay: Given<'_>,
        renew_interval: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        // Phase 1, in the reference model's order; phases 2 and 3 in Config::new.
        let name = name
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("name must be str"))?
            .to_cow()?
            .into_owned();
        let none = py.None().into_bound(py);
        let legacy = first_ip.is_some() || last_ip.is_some() || netmask.is_some();
        let shape = match (legacy, ranges) {
            (true, Some(_)) => {
                return Err(Error::config(
                    "ranges",
                    "give ranges or first_ip, last_ip and netmask, not both",
                )
                .into())
            }
            (false, None) => {
                return Err(Error::config(
                    "ranges",
                    "give ranges, or first_ip, last_ip and netmask",
                )
                .into())
            }
            (false, Some(ranges)) => WideShape::Ranges(shapes::ranges(ranges)?),
            (true, None) => {
                let given =
                    |value: Option<&Bound<'py, PyAny>>| value.cloned().unwrap_or(none.clone());
                let first = convert::ip(&given(first_ip), "first_ip", Context::Config, Family::V4)?;
                let last = convert::ip(&given(last_ip), "last_ip", Context::Config, Family::V4)?;
                if first.0 != last.0 {
                    return Err(Error::config(
                        "first_ip",
                        format!(
                            "first_ip is IPv{}, last_ip is IPv{}",
                            first.0.number(),
                            last.0.number()
                        ),
                    )
                    .into());
                }
                let netmask = convert::netmask(&given(netmask), first.0)?;
                WideShape::Legacy {
                    first,
                    last,
                    netmask,
                }
            }
        };
        let exclude = shapes::exclusions(exclude)?;
        // Kept for a store's registered configuration (`registered_config`).
        let exclusions = exclude.clone();
        let ports = convert::ports(ports)?;
        let initial_blocks = convert::count(initial_blocks.unwrap_or(&none), "initial_blocks")?;
        let max_blocks = convert::count(max_blocks.unwrap_or(&none), "max_blocks")?;
        let subpool_blocks = subpool_blocks
            .map(|v| convert::count(v, "subpool_blocks"))
            .transpose()?;
        let grow_threshold =
            grow_threshold.map_or(Ok(0), |v| convert::count(v, "grow_threshold"))?;
        let mut config = Config::validate(WideSpec {
            name,
            shape,
            exclude,
            ports,
            initial_blocks,
            max_blocks,
            subpool_blocks,
            grow_threshold,
        })?;
        // The policies, after the control block, each type then value.
        if let Some(seconds) = hold_down {
            let seconds = convert::real(seconds, "hold_down must be")?;
            config.policy.set_hold_down(seconds)?;
        }
        if let Some(clock) = clock {
            if !clock.is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "clock must be callable or None, not {}",
                    clock.get_type().name()?
                )));
            }
        }
        if let Some(order) = order {
            let name = order
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("order must be str"))?;
            config.policy.order = Order::from_name(&name.to_cow()?)?;
        }
        config.policy.seed = convert::seed(seed)?;
        let quota = client_quota
            .map(|q| convert::optional_count(q, "client_quota"))
            .transpose()?;
        config.policy.set_client_quota(quota)?;
        if let Some(paired) = paired {
            config.policy.paired = paired
                .cast::<pyo3::types::PyBool>()
                .map_err(|_| PyTypeError::new_err("paired must be bool"))?
                .is_true();
        }
        let block = client_block
            .map(|b| convert::optional_count(b, "client_block"))
            .transpose()?;
        config.set_client_block(block)?;
        if let Some(events) = event_queue {
            config
                .policy
                .set_event_queue(convert::count(events, "event_queue")?)?;
        }
        if config.policy.order == Order::Random && config.policy.seed.is_none() {
            // As the reference model: 8 bytes of os.urandom, little-endian.
            let bytes: [u8; 8] = py
                .import("os")?
                .call_method1("urandom", (8,))?
                .extract::<Vec<u8>>()?
                .try_into()
                .expect("os.urandom(8) is 8 bytes");
            config.policy.drawn_seed = Some(u64::from_le_bytes(bytes));
        }
        // Then the store arguments, and the cluster joined (natpool.store.member).
        let none = || py.None().into_bound(py);
        let arguments = [
            &given_or(store, none()),
            &given_or(member, none()),
            &claim_ttl.or(|| Ok(30.0f64.into_pyobject(py)?.into_any()))?,
            &reclaim_delay.or(|| Ok(120.0f64.into_pyobject(py)?.into_any()))?,
            &given_or(renew_interval, none()),
        ];
        let (core, member) = cluster::join(py, config, &exclusions, arguments)?;
        Ok(PyPool {
            core,
            clock: clock.map(|clock| clock.clone().unbind()),
            clients: Clients::new(py),
            member,
            closed: AtomicBool::new(false),
        })
    }

    #[getter]
    fn name(&self) -> &str {
        self.core.config().name()
    }
    /// The legacy form's ``first_ip`` as configured; with ``ranges``, the first usable address.
    #[getter]
    fn first_ip(&self) -> String {
        let config = self.core.config();
        config
            .legacy()
            .map_or(config.first_ip(), |(first, _, _)| first)
            .to_string()
    }
    /// The legacy form's ``last_ip`` as configured; with ``ranges``, the last usable address.
    #[getter]
    fn last_ip(&self) -> String {
        let config = self.core.config();
        config
            .legacy()
            .map_or(config.last_ip(), |(_, last, _)| last)
            .to_string()
    }
    /// The legacy netmask (IPv4: dotted; IPv6: the prefix length), or None for ``ranges``.
    #[getter]
    fn netmask<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let config = self.core.config();
        Ok(match (config.netmask(), config.prefix()) {
            (Some(mask), Some(_)) if !config.is_ipv6() => {
                Some(mask.to_string().into_pyobject(py)?.into_any())
            }
            (_, Some(prefix)) => Some(prefix.into_pyobject(py)?.into_any()),
            _ => None,
        })
    }
    /// The normalised ranges, ``(first_ip, last_ip)`` text pairs (exclusions not taken out).
    #[getter]
    fn ranges(&self) -> Vec<(String, String)> {
        self.core
            .config()
            .ranges()
            .iter()
            .map(|(first, last)| (first.to_string(), last.to_string()))
            .collect()
    }
    /// 4 or 6.
    #[getter]
    fn family(&self) -> u8 {
        self.core.config().family().number()
    }
    #[getter]
    fn initial_blocks(&self) -> u32 {
        self.core.config().initial_blocks()
    }
    #[getter]
    fn max_blocks(&self) -> u64 {
        self.core.config().max_blocks()
    }
    #[getter]
    fn ports(&self) -> (u16, u16) {
        self.core.config().ports()
    }
    #[getter]
    fn subpool_blocks(&self) -> u32 {
        self.core.config().subpool_blocks()
    }
    #[getter]
    fn grow_threshold(&self) -> u64 {
        self.core.config().grow_threshold()
    }
    #[getter]
    fn address_count(&self) -> u128 {
        self.core.config().address_count()
    }
    #[getter]
    fn capacity(&self) -> u64 {
        self.core.config().capacity()
    }
    #[getter]
    fn hold_down(&self) -> f64 {
        self.core.config().hold_down()
    }
    #[getter]
    fn order(&self) -> &'static str {
        self.core.config().order().name()
    }
    #[getter]
    fn client_quota(&self) -> Option<u64> {
        self.core.config().client_quota()
    }
    #[getter]
    fn paired(&self) -> bool {
        self.core.config().paired()
    }
    #[getter]
    fn client_block(&self) -> Option<u32> {
        self.core.config().client_block()
    }
    #[getter]
    fn event_queue(&self) -> u64 {
        self.core.config().event_queue()
    }

    fn __len__(&self) -> usize {
        self.core.len() as usize
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let pool = slf.get();
        let name = PyString::new(slf.py(), pool.core.config().name()).repr()?;
        Ok(format!(
            "Pool(name={name}, live={}, capacity={})",
            pool.core.len(),
            pool.core.config().capacity()
        ))
    }

    /// Lease a free client NAT address; ``PoolExhausted`` when every address is live or held
    /// (``QuotaExceeded`` past the client's quota).
    #[pyo3(signature = (data=None, *, client=None))]
    fn allocate(
        slf: &Bound<'_, Self>,
        data: Option<Py<PyAny>>,
        client: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyLease>> {
        Self::allocate_lease(slf, data, client)
    }

    /// Lease ``n`` addresses (``data=None``), all or nothing. Releases the GIL.
    #[pyo3(signature = (n, *, client=None))]
    fn allocate_many<'py>(
        slf: &Bound<'py, Self>,
        n: &Bound<'py, PyAny>,
        client: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let py = slf.py();
        let n = convert::count(n, "n")?;
        if n < 0 {
            return Err(Error::Argument(format!("n: {n} is negative")).into());
        }
        // More than u64::MAX leases is more than any pool holds: exhaustion.
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let pool = slf.get();
        let core = pool.open()?;
        let tracked = pool.check_client(client)?;
        let now = pool.now_for_allocation(py, client.is_some())?;
        let leases = match (tracked, client) {
            (true, Some(client)) => {
                let mut interner = pool.clients.lock(py);
                let key = interner.intern(client)?;
                let leases = py.detach(|| core.allocate_many_for_at(n, || None, key, now));
                interner.tidy(py, core, Some(key))?;
                leases?
            }
            _ => py.detach(|| core.allocate_many_at(n, || None, now))?,
        };
        // A plain loop into a Vec of the right size (a collect through
        // `PyResult` cannot size it).
        let mut objects = Vec::with_capacity(leases.len());
        for lease in leases {
            objects.push(lease_object(slf, lease, None)?);
        }
        PyList::new(py, objects)
    }

    /// A context manager that allocates on entry and frees on exit.
    #[pyo3(signature = (data=None, *, client=None))]
    fn lease(
        slf: &Bound<'_, Self>,
        data: Option<Py<PyAny>>,
        client: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<LeaseContext> {
        slf.get().open()?;
        if let Some(client) = client {
            client.hash()?;
        }
        Ok(LeaseContext {
            pool: slf.clone().unbind(),
            data,
            client: client.map(|c| c.clone().unbind()),
            lease: Mutex::new(None),
        })
    }

    /// Return a live lease, held for ``hold`` seconds (None: ``hold_down``)
    /// before reuse; ``LeaseError`` (and no change) for anything but a live lease.
    #[pyo3(signature = (lease_or_handle, *, hold=None))]
    fn free(
        slf: &Bound<'_, Self>,
        lease_or_handle: &Bound<'_, PyAny>,
        hold: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let pool = slf.get();
        let core = pool.open()?;
        let seconds = pool.hold_seconds(hold)?;
        let handle = Self::handle_of(slf, lease_or_handle)?;
        let now = pool.now_for_free(slf.py(), seconds)?;
        drop(core.free_at(handle, seconds, now)?);
        Ok(())
    }

    /// Free a batch, all or nothing: if any item is not a live lease of this
    /// pool (or appears twice), ``LeaseError`` is raised and nothing is freed.
    /// ``hold`` as for ``free``. Releases the GIL.
    #[pyo3(signature = (leases, *, hold=None))]
    fn free_many(
        slf: &Bound<'_, Self>,
        leases: &Bound<'_, PyAny>,
        hold: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let pool = slf.get();
        let core = pool.open()?;
        let seconds = pool.hold_seconds(hold)?;
        // A list (what `allocate_many` returns) is read by index, without
        // the iterator protocol; any other iterable through it.
        let handles = if let Ok(list) = leases.cast::<PyList>() {
            let mut handles = Vec::with_capacity(list.len());
            for item in list.iter() {
                handles.push(Self::handle_of(slf, &item)?);
            }
            handles
        } else {
            leases
                .try_iter()?
                .map(|item| Self::handle_of(slf, &item?))
                .collect::<PyResult<Vec<_>>>()?
        };
        let now = pool.now_for_free(slf.py(), seconds)?;
        let mut released = Vec::new();
        let result = slf
            .py()
            .detach(|| core.free_many_at(&handles, seconds, now, &mut released));
        // The released data objects are dropped here, attached, on success
        // and on error alike: a `Py` dropped while detached would be queued
        // for PyO3's deferred decrefs (finalizers run late, and every later
        // call into the extension takes that queue's lock).
        drop(released);
        Ok(result?)
    }

    /// The live lease holding (ip, port), with its data, or None.
    fn lookup(
        slf: &Bound<'_, Self>,
        ip: &Bound<'_, PyAny>,
        port: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyLease>>> {
        let py = slf.py();
        let core = slf.get().open()?;
        let family = core.config().family();
        let ip = shapes::address(ip, family, "ip")?;
        let port = convert::port(port)?;
        let (found, released) = core.lookup_with(family.ip(ip), port, |lease, data| {
            (lease, data.as_ref().map(|d| d.clone_ref(py)))
        });
        drop(released);
        found
            .map(|(lease, data)| lease_object(slf, lease, data))
            .transpose()
    }

    /// A lease of exactly (ip, port) holding ``data`` (a static mapping), freed like any lease:
    /// ``ArgumentError`` if the address is not in the pool or on a drained IP, ``LeaseError`` if it
    /// is live, held or in a client's port block, ``PoolExhausted`` if no block may be made for it.
    #[pyo3(signature = (ip, port, data=None))]
    fn reserve(
        slf: &Bound<'_, Self>,
        ip: &Bound<'_, PyAny>,
        port: &Bound<'_, PyAny>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyLease>> {
        let py = slf.py();
        let pool = slf.get();
        let core = pool.open()?;
        let family = core.config().family();
        let value = shapes::address(ip, family, "ip")?;
        let port = convert::count(port, "port")?;
        let ip = family.ip(value);
        // A port outside 0..65535 is in no pool.
        let Ok(port) = u16::try_from(port) else {
            return Err(Error::Argument(format!(
                "ip: {ip} port {port} is not an address of pool {:?}",
                core.config().name()
            ))
            .into());
        };
        let copy = data.as_ref().map(|d| d.clone_ref(py));
        let lease = core.reserve_with(ip, port, data, || pool.now_for_allocation(py, false))?;
        lease_object(slf, lease, copy)
    }

    /// No new lease on ``ip`` from now on; live leases stay valid.
    fn drain(&self, ip: &Bound<'_, PyAny>) -> PyResult<()> {
        let core = self.open()?;
        let family = core.config().family();
        let value = shapes::address(ip, family, "ip")?;
        Ok(core.drain(family.ip(value))?)
    }

    /// ``ip`` may be handed out again.
    fn undrain(&self, ip: &Bound<'_, PyAny>) -> PyResult<()> {
        let core = self.open()?;
        let family = core.config().family();
        let value = shapes::address(ip, family, "ip")?;
        Ok(core.undrain(family.ip(value))?)
    }

    /// The drained IPs, ascending.
    fn drained(&self) -> PyResult<Vec<String>> {
        Ok(self
            .open()?
            .drained()
            .iter()
            .map(ToString::to_string)
            .collect())
    }

    /// The interval list, in address order.
    fn intervals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        records::intervals(py, self.core.config(), &self.open()?.intervals())
    }

    /// The subpools, in address order.
    fn subpools<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let subpools = self.open()?.subpools();
        let interner = self.clients.lock(py);
        records::subpools(py, self.core.config(), &subpools, |key| {
            interner.object(py, key)
        })
    }

    /// The port blocks assigned and released since the last call, oldest first.
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let core = self.open()?;
        let mut interner = self.clients.lock(py);
        let events = core.events();
        let list = records::events(py, core.config(), &events, |key| interner.object(py, key))?;
        interner.tidy(py, core, None)?;
        Ok(list)
    }

    /// The pool's counters, in O(threads) (``live`` and ``free_blocks`` as ``len``).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        records::stats(py, &self.open()?.stats())
    }

    /// The pool's state as bytes (``docs/shapes.md``, "Snapshot format"); changes nothing.
    /// Reads the clock if, and only if, a block is held. ``SnapshotError`` for a pool with a
    /// store, or a client the format cannot write (both before the clock is read).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let core = self.open()?;
        let export = py.detach(|| core.export())?;
        // Every identity is encoded (and may be refused) before the clock is
        // read, and outside the interner's lock (the clock is Python code).
        let encoded = {
            let interner = self.clients.lock(py);
            export
                .client_keys()
                .map(|key| Ok((key, identity::encode(interner.object(py, key).bind(py))?)))
                .collect::<PyResult<HashMap<u64, Vec<u8>>>>()?
        };
        let bytes = export.finish(
            |key| {
                encoded.get(&key).cloned().ok_or_else(|| {
                    PyErr::from(Error::Snapshot(format!("client {key} has no identity")))
                })
            },
            || self.now(py),
        )?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The pool a snapshot holds: every lease live with its handle and address, ``data``
    /// (handle -> object) attached, holds running on ``clock`` (as the constructor's) with
    /// the time they had left. ``SnapshotError`` for bytes that are not a snapshot this
    /// version reads, or corrupt, truncated or inconsistent ones; nothing is built then.
    /// With ``store``, the pool joins the cluster and claims its subpools' ranges again
    /// (``Store.reclaim``): ``SnapshotError`` if they are another member's now.
    #[classmethod]
    #[pyo3(
        signature = (snapshot, *, data=None, clock=None, store=None, member=None, claim_ttl=Given::Default, reclaim_delay=Given::Default, renew_interval=None),
        text_signature = "(snapshot, *, data=None, clock=None, store=None, member=None, claim_ttl=30.0, reclaim_delay=120.0, renew_interval=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn restore<'py>(
        _cls: &Bound<'py, PyType>,
        snapshot: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        clock: Option<&Bound<'py, PyAny>>,
        store: Option<&Bound<'py, PyAny>>,
        member: Option<&Bound<'py, PyAny>>,
        claim_ttl: Given<'py>,
        reclaim_delay: Given<'py>,
        renew_interval: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Py<PyPool>> {
        let py = snapshot.py();
        let bytes = snapshot_bytes(snapshot)?;
        let data = data.filter(|data| !data.is_none());
        if let Some(data) = data {
            let mapping = py.import("collections.abc")?.getattr("Mapping")?;
            if !data.is_instance(&mapping)? {
                return Err(PyTypeError::new_err(format!(
                    "data must be a mapping of handles or None, not {}",
                    data.get_type().name()?
                )));
            }
        }
        let clock = clock.filter(|clock| !clock.is_none());
        if let Some(clock) = clock {
            if !clock.is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "clock must be callable or None, not {}",
                    clock.get_type().name()?
                )));
            }
        }
        let none = py.None().into_bound(py);
        let settings = cluster::settings(
            py,
            [
                store.unwrap_or(&none),
                member.unwrap_or(&none),
                &claim_ttl.or(|| Ok(30.0f64.into_pyobject(py)?.into_any()))?,
                &reclaim_delay.or(|| Ok(120.0f64.into_pyobject(py)?.into_any()))?,
                renew_interval.unwrap_or(&none),
            ],
        )?;
        let raw: &[u8] = bytes.as_bytes();
        let restorable = py.detach(|| Restorable::read(raw))?;
        let decode = |encoded: &[u8]| identity::decode(py, encoded);
        let clients = restorable
            .client_identities()
            .map(decode)
            .collect::<PyResult<Vec<_>>>()?;
        let events = restorable
            .event_identities()
            .map(decode)
            .collect::<PyResult<Vec<_>>>()?;
        let (interner, client_keys, event_keys) = Clients::restored(py, clients, events)?;
        let mut attached: HashMap<u128, Py<PyAny>> = HashMap::new();
        if let Some(data) = data {
            for item in data.call_method0("items")?.try_iter()? {
                let (handle, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
                if !convert::is_int(&handle) {
                    return Err(PyTypeError::new_err(format!(
                        "data: a key must be an int handle, not {}",
                        handle.get_type().name()?
                    )));
                }
                let live = handle
                    .extract::<u128>()
                    .is_ok_and(|h| restorable.is_live(Handle(h)));
                if !live {
                    return Err(Error::NotLive(format!(
                        "data: handle {} is not a live lease of the snapshot",
                        handle.call_method1("__format__", ("#x",))?
                    ))
                    .into());
                }
                attached.insert(handle.extract::<u128>()?, value.unbind());
            }
        }
        let now = if restorable.holds() {
            Some(match clock {
                Some(clock) => check_now(convert::real(&clock.call0()?, "clock must return")?)?,
                None => Clock::Monotonic.now()?,
            })
        } else {
            None
        };
        let (membership, parts) = match &settings {
            None => (None, None),
            Some(settings) => {
                let config = restorable.config();
                let exclusions = crate::core::snapshot::exclusions(config);
                let joined = cluster::join_cluster(py, config, &exclusions, settings)?;
                let (membership, parts) = joined.split(py);
                (Some(membership), Some(parts))
            }
        };
        let build = || {
            restorable.build(
                Clock::Monotonic,
                now,
                &client_keys,
                &event_keys,
                |handle| attached.remove(&handle.0),
                membership,
            )
        };
        // Detached only without data: a build that failed detached would
        // drop the attached objects there.
        let built = if data.is_none() {
            py.detach(build)
        } else {
            build()
        };
        let core = match built {
            Ok(core) => core,
            Err(error) => {
                if let Some(parts) = parts {
                    parts.abandon(py);
                }
                return Err(error.into());
            }
        };
        let member = match parts {
            Some(parts) => Some(parts.member(py, &core)?),
            None => None,
        };
        Py::new(
            py,
            PyPool {
                core,
                clock: clock.map(|clock| clock.clone().unbind()),
                clients: interner,
                member,
                closed: AtomicBool::new(false),
            },
        )
    }

    /// This pool instance's name in the cluster (``None`` without a store).
    #[getter]
    fn member(&self) -> Option<&str> {
        self.member.as_ref().map(|member| member.name.as_str())
    }

    /// Renew this member's claims now, then fence the lapsed ones; nothing
    /// without a store. ``StoreError`` if the store fails.
    fn renew(&self) -> PyResult<()> {
        Ok(self.open()?.renew()?)
    }

    /// Close the pool (idempotent); later calls raise ``NatPoolError``. With
    /// a store: stop the renewal, return the claims of the subpools without
    /// live leases and leave the cluster (``StoreError`` if the store fails:
    /// the pool is closed all the same).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        match &self.member {
            Some(member) => member.close(py, &self.core),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}
