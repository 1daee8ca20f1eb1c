//! Builds the records of `natpool/records.py` from the core's values.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyType};

use crate::core::{BlockEvent, BlockEventKind, Config, Interval, PoolStats, SubpoolInfo};

static INTERVAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static SUBPOOL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static POOL_STATS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static BLOCK_EVENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn bounds(config: &Config, first: u128, count: u128) -> (String, u16, String, u16) {
    let space = config.space();
    let (first_ip, first_port) = space.address(first);
    let (last_ip, last_port) = space.address(first + count - 1);
    (
        space.text(first_ip),
        first_port,
        space.text(last_ip),
        last_port,
    )
}

pub fn intervals<'py>(
    py: Python<'py>,
    config: &Config,
    list: &[Interval],
) -> PyResult<Bound<'py, PyList>> {
    let class = INTERVAL.import(py, "natpool.records", "Interval")?;
    let items = list
        .iter()
        .map(|i| {
            let (a, b, c, d) = bounds(config, i.first, i.count);
            class.call1((a, b, c, d, i.count, i.subpool))
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// `client` maps a client key to its Python object.
pub fn subpools<'py>(
    py: Python<'py>,
    config: &Config,
    list: &[SubpoolInfo],
    client: impl Fn(u64) -> Py<PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let class = SUBPOOL.import(py, "natpool.records", "Subpool")?;
    let items = list
        .iter()
        .map(|s| {
            let (a, b, c, d) = bounds(config, s.first, u128::from(s.blocks));
            let owner = s.owner.map_or_else(|| py.None(), &client);
            class.call1((s.id, a, b, c, d, s.blocks, s.free, s.held, owner))
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// `client` maps a client key to its Python object.
pub fn events<'py>(
    py: Python<'py>,
    config: &Config,
    list: &[BlockEvent],
    client: impl Fn(u64) -> Py<PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let class = BLOCK_EVENT.import(py, "natpool.records", "BlockEvent")?;
    let items = list
        .iter()
        .map(|e| {
            let (a, b, c, d) = bounds(config, e.first, u128::from(e.count));
            let kind = match e.kind {
                BlockEventKind::Assigned => "assigned",
                BlockEventKind::Released => "released",
            };
            class.call1((e.time, kind, client(e.client), a, b, c, d))
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

pub fn stats<'py>(py: Python<'py>, s: &PoolStats) -> PyResult<Bound<'py, PyAny>> {
    POOL_STATS
        .import(py, "natpool.records", "PoolStats")?
        .call1((
            s.live,
            s.free_blocks,
            s.blocks,
            s.subpools,
            s.intervals,
            s.free_addresses,
            s.address_count,
            s.capacity,
            s.held,
            s.events_dropped,
            s.drained,
        ))
}
