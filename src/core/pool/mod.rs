//! The pool: the control block, the memory pool of subpools, and leases.
//!
//! The allocation order is the reference model's (`natpool/reference/pool.py`):
//! the lowest-id subpool with a free block, most recently freed block first;
//! growth when no block is free and after an allocation that leaves
//! `free_blocks <= grow_threshold`; deletion of a subpool whose last lease is
//! freed, unless fewer than `initial_blocks` blocks would remain.
//!
//! The pool has two sides, one file each:
//! * [`lock_free`]: allocate, free, their batches and lookup. They take no
//!   lock: they find a subpool through the availability map and the slot
//!   table, reserve and pop (or push) on its free list, and flip the
//!   block's state.
//! * [`writer`]: subpool creation (with threshold growth) and deletion (with
//!   the keep rule), and the reuse of subpool ids and generations. Only they
//!   take the writer lock, and the lock-free side never waits for it.

mod cluster;

pub use cluster::Renewal;
mod lock_free;
mod writer;

#[cfg(all(loom, test))]
mod loom;
#[cfg(all(test, not(loom)))]
mod test_hook;

use std::net::Ipv4Addr;

use crate::core::availability::Availability;
use crate::core::config::Config;
use crate::core::handle::Handle;
use crate::core::interval_list::{Interval, IntervalList};
use crate::core::segvec::SegVec;
use crate::core::subpool::Subpool;
use crate::core::sync::{AtomicArc, AtomicU64, Mutex, Ordering};

use writer::Writer;

/// A live lease: its handle and its client NAT address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Names the lease in [`Pool::free`]; stale once the lease is freed.
    pub handle: Handle,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// A subpool as [`Pool::subpools`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubpoolInfo {
    pub id: u32,
    /// Index of its first address in the pool's address space.
    pub first: u64,
    pub blocks: u32,
    pub free: u64,
}

/// The pool's counters (see [`Pool::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub live: u64,
    pub free_blocks: u64,
    pub blocks: u64,
    pub subpools: u64,
    pub intervals: u64,
    pub free_addresses: u64,
    pub address_count: u64,
    pub capacity: u64,
}

/// A client NAT address pool holding a `T` for each live lease.
///
/// Every method takes `&self` and may be called from any thread.
///
/// ```
/// use std::net::Ipv4Addr;
/// use natpool::{Error, Pool, PoolSpec};
///
/// let ip = Ipv4Addr::new(192, 0, 2, 1);
/// let pool: Pool<u32> = Pool::new(PoolSpec::new("edge", ip, ip).ports(5000, 5001).build()?);
/// let a = pool.allocate(1)?;
/// let b = pool.allocate(2)?;
/// assert!(matches!(pool.allocate(3), Err(Error::Exhausted(_))));
/// let (found, _) = pool.lookup_with(b.ip, b.port, |lease, data| (lease.handle, *data));
/// assert_eq!(found, Some((b.handle, 2)));
/// assert_eq!(pool.free(a.handle)?, Some(1));
/// assert!(pool.free(a.handle).is_err()); // a stale handle
/// assert_eq!(pool.len(), 1);
/// # Ok::<(), Error>(())
/// ```
pub struct Pool<T> {
    config: Config,
    /// Blocks taken from free lists and not yet returned: every live lease,
    /// plus allocations and frees in progress (see `docs/design.md`).
    live: AtomicU64,
    blocks: AtomicU64,
    slots: SegVec<AtomicArc<Subpool<T>>>,
    availability: Availability,
    intervals: IntervalList<T>,
    writer: Mutex<Writer>,
    /// In a cluster: the membership (claims, renewal, fencing).
    cluster: Option<cluster::Cluster>,
    /// How many subpools are fenced (their claim lapsed).
    fenced_subpools: AtomicU64,
}

impl<T: Default + Send + Sync> Pool<T> {
    /// An empty pool: no subpool exists until the first allocation.
    pub fn new(config: Config) -> Self {
        Pool {
            live: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            slots: SegVec::new(),
            availability: Availability::new(config.capacity().max(1)),
            intervals: IntervalList::new(config.address_count()),
            writer: Mutex::new(Writer::new()),
            cluster: None,
            fenced_subpools: AtomicU64::new(0),
            config,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live leases now. Under concurrency it also counts the allocations
    /// and frees in progress (see `docs/design.md`); it never counts fewer
    /// than the leases live.
    pub fn len(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The interval list in address order.
    pub fn intervals(&self) -> Vec<Interval> {
        self.intervals.load().intervals(self.config.address_count())
    }

    /// The subpools in address order.
    pub fn subpools(&self) -> Vec<SubpoolInfo> {
        let snapshot = self.intervals.load();
        snapshot
            .subpools
            .iter()
            .map(|s| SubpoolInfo {
                id: s.id,
                first: s.start,
                blocks: s.len(),
                free: s.free.available(),
            })
            .collect()
    }

    /// The counters, in O(1).
    pub fn stats(&self) -> PoolStats {
        let snapshot = self.intervals.load();
        let blocks = self.blocks.load(Ordering::Acquire);
        let live = self.len();
        PoolStats {
            live,
            free_blocks: blocks.saturating_sub(live),
            blocks,
            subpools: snapshot.subpools.len() as u64,
            intervals: snapshot.length,
            free_addresses: self.config.address_count() - blocks,
            address_count: self.config.address_count(),
            capacity: self.config.capacity(),
        }
    }
}
