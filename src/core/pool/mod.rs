//! The pool: the control block, the memory pool of subpools, and leases.
//!
//! The allocation order is the reference model's (`natpool/reference/pool.py`):
//! the lowest-id subpool with a free block, and within it the pool's reuse
//! order (FIFO, LIFO or random); growth when no block is free and after an
//! allocation that leaves `free_blocks <= grow_threshold`; deletion of a
//! subpool whose last block comes back free, unless fewer than
//! `initial_blocks` blocks would remain. A free with a hold keeps its block
//! in the held queue (`held.rs`) until an allocation finds the hold ended.
//!
//! The pool has two sides, one file each:
//! * [`lock_free`]: allocate, free, their batches and lookup. They take no
//!   lock: they find a subpool through the availability map and the slot
//!   table, reserve and pop (or push) on its free list, and flip the
//!   block's state.
//! * [`writer`]: subpool creation (with threshold growth) and deletion (with
//!   the keep rule), and the reuse of subpool ids and generations. Only they
//!   take the writer lock, and the lock-free side never waits for it.

mod clients;
mod cluster;
mod drain;
mod home;
mod reserve;
mod snapshot;

#[cfg(feature = "python")]
pub(crate) use cluster::check_store_space;
pub use cluster::Renewal;
#[cfg(feature = "python")]
pub(crate) use snapshot::Restorable;
mod lock_free;
mod writer;

pub(crate) use home::HomeCell;

#[cfg(all(test, not(loom)))]
mod floor;
#[cfg(all(loom, test))]
mod loom;
#[cfg(all(test, not(loom)))]
mod test_hook;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::core::availability::Availability;
use crate::core::clients::Clients;
use crate::core::config::Config;

use crate::core::drained::Drained;
use crate::core::epoch::{Retired, Slot};
use crate::core::error::Error;
use crate::core::handle::Handle;
use crate::core::held::Held;
use crate::core::interval_list::{Interval, IntervalList};
use crate::core::policy::Clock;
use crate::core::rng::{entropy_seed, SplitMix64};
use crate::core::segvec::SegVec;
use crate::core::space::Family;
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, AtomicArc, AtomicU64, Loaded, Mutex, MutexGuard, Ordering};
use crate::core::tally::Tally;

use writer::Writer;

/// A live lease: its handle and its client NAT address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    /// Names the lease in [`Pool::free`]; stale once the lease is freed.
    pub handle: Handle,
    pub ip: IpAddr,
    pub port: u16,
}

/// A lease as the take path hands it up: the address as aligned bits, made
/// an [`IpAddr`] by [`lease`](Self::lease) at the end. (The 17-byte,
/// byte-aligned `IpAddr` copied through the take's result layers stalled
/// on store forwarding: a copy's 16-byte load at an odd offset spanned the
/// smaller stores that had just written the address, `docs/design.md`.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken {
    pub(crate) handle: Handle,
    ip: u128,
    v6: bool,
    port: u16,
}

impl Taken {
    #[inline(always)]
    pub(crate) fn new(handle: Handle, ip: IpAddr, port: u16) -> Self {
        let (ip, v6) = match ip {
            IpAddr::V4(ip) => (u128::from(u32::from(ip)), false),
            IpAddr::V6(ip) => (u128::from(ip), true),
        };
        Taken {
            handle,
            ip,
            v6,
            port,
        }
    }

    #[inline(always)]
    pub(crate) fn lease(self) -> Lease {
        let ip = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.ip as u32))
        };
        Lease {
            handle: self.handle,
            ip,
            port: self.port,
        }
    }
}

/// A subpool as [`Pool::subpools`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubpoolInfo {
    pub id: u32,
    /// Index of its first address in the pool's address space.
    pub first: u128,
    pub blocks: u32,
    pub free: u64,
    /// Blocks freed with a hold that has not ended.
    pub held: u32,
    /// The client whose port block this is; `None` for a shared subpool.
    pub owner: Option<u64>,
}

/// The pool's counters (see [`Pool::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub live: u64,
    pub free_blocks: u64,
    pub blocks: u64,
    pub subpools: u64,
    /// The records [`Pool::intervals`] returns (O(1): counted per snapshot).
    pub intervals: u64,
    /// Addresses in no subpool.
    pub free_addresses: u128,
    pub address_count: u128,
    pub capacity: u64,
    /// Blocks freed with a hold that has not ended (neither live nor free).
    pub held: u64,
    /// Block events dropped because their queue was full.
    pub events_dropped: u64,
    /// Addresses of the space on drained IPs.
    pub drained: u128,
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
    /// Blocks taken from free lists and not yet returned (every live lease
    /// and held block), and live leases (`len()`): per-thread cells, summed
    /// (`tally.rs`). Growth is decided on `taken`; exhaustion on the free
    /// lists (`writer.rs`).
    tally: Tally,
    blocks: AtomicU64,
    /// The subpool of each id, read pinned (`epoch.rs`): no count touched.
    slots: SegVec<Slot<Subpool<T>>>,
    /// Subpools taken out of their slot, dropped once no pinned call can
    /// hold them (locked only with the writer lock held).
    retired: Mutex<Retired<Subpool<T>>>,
    availability: Availability,
    intervals: IntervalList<T>,
    writer: Mutex<Writer>,
    held: Held,
    /// Draws for `Order::Random` (unused by the other orders).
    rng: SplitMix64,
    clock: Clock,
    /// Client states and the block log (only with client settings).
    clients: Mutex<Clients<T>>,
    /// Blocks in port blocks, and those of them taken: the shared subpools'
    /// blocks and free blocks are the rest.
    client_blocks: AtomicU64,
    client_taken: AtomicU64,
    events_dropped: AtomicU64,
    /// The last time a call gave the pool (f64 bits), for a port block a
    /// lookup's reader releases (it reads no clock).
    last_time: AtomicU64,
    /// In a cluster: the membership (claims, renewal, fencing).
    cluster: Option<cluster::Cluster>,
    /// Fence marks on subpools that serve no allocation: a lapsed claim's,
    /// a drained IP's (a subpool with both counts twice). Zero: the
    /// threshold check needs no scan (one load per allocation).
    fenced_subpools: AtomicU64,
    /// The drained IPs (`drain`), published by the writer side.
    drained_ips: AtomicArc<Drained>,
    /// How many subpools hold an address of a drained IP.
    drain_fenced_subpools: AtomicU64,
    /// Home subpools' pool-wide part: allocations in flight (`home.rs`).
    homes: home::PoolHomes,
}

/// A loaded set of drained IPs.
pub(crate) struct DrainedGuard(Loaded<Drained>);

impl std::ops::Deref for DrainedGuard {
    type Target = Drained;

    fn deref(&self) -> &Drained {
        self.0
            .as_ref()
            .expect("the drained set is always published")
    }
}

/// How leases ended, for their clients (`clients.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Freed without a hold: the block is free again.
    Freed,
    /// Freed with a hold: the block is held.
    Held,
    /// A held block's hold ended: it is free again.
    HoldOver,
}

impl<T: Default + Send + Sync> Pool<T> {
    /// An empty pool timed by the monotonic clock: no subpool exists until
    /// the first allocation.
    pub fn new(config: Config) -> Self {
        Self::with_clock(config, Clock::Monotonic)
    }

    /// An empty pool whose holds are timed by `clock`.
    pub fn with_clock(config: Config, clock: Clock) -> Self {
        Pool {
            tally: Tally::new(0, 0),
            blocks: AtomicU64::new(0),
            slots: SegVec::new(),
            retired: Mutex::new(Retired::default()),
            availability: Availability::new(config.capacity().max(1)),
            intervals: IntervalList::new(config.space()),
            writer: Mutex::new(Writer::new()),
            held: Held::new(),
            rng: SplitMix64::new(
                config
                    .seed()
                    .or(config.policy.drawn_seed)
                    .unwrap_or_else(entropy_seed),
            ),
            clock,
            clients: Mutex::new(Clients::new(config.event_queue())),
            client_blocks: AtomicU64::new(0),
            client_taken: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            last_time: AtomicU64::new(0f64.to_bits()),
            cluster: None,
            fenced_subpools: AtomicU64::new(0),
            drained_ips: AtomicArc::new(Some(Arc::new(Drained::default()))),
            drain_fenced_subpools: AtomicU64::new(0),
            homes: home::PoolHomes::new(),
            config,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock that times holds.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Live leases now: exact when no call is in progress. Under
    /// concurrency it is a sum of per-thread counts read one after another
    /// (see `docs/design.md`): it may miss the calls made while it reads.
    pub fn len(&self) -> u64 {
        self.tally.live()
    }

    /// Blocks freed with a hold, not yet released (a snapshot; it includes
    /// holds that ended and that no allocation has released yet).
    pub fn held(&self) -> u64 {
        self.held.count()
    }

    /// The clock's time if any block is held: an allocation call without a
    /// client reads the clock then, and only then (the reference model's rule).
    pub(crate) fn now_if_held(&self) -> Result<Option<f64>, Error> {
        self.now_for_allocation(false)
    }

    /// Whether an allocation call reads the clock: if any block is held, or
    /// (port blocks) it is for a client.
    pub(crate) fn allocation_reads_clock(&self, for_client: bool) -> bool {
        self.held() > 0 || (for_client && self.config.client_block().is_some())
    }

    /// The clock's time for an allocation call, if it reads it.
    pub(crate) fn now_for_allocation(&self, for_client: bool) -> Result<Option<f64>, Error> {
        if !self.allocation_reads_clock(for_client) {
            return Ok(None);
        }
        self.clock.now().map(Some)
    }

    /// Whether the pool keeps client states (quota, paired or port blocks).
    #[inline]
    pub(crate) fn tracks_clients(&self) -> bool {
        self.config.policy.tracks_clients()
    }

    /// The retired subpools (call with the writer lock held).
    fn lock_retired(&self) -> MutexGuard<'_, Retired<Subpool<T>>> {
        // Every step under the lock leaves the list consistent.
        self.retired
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_clients(&self) -> MutexGuard<'_, Clients<T>> {
        // Every step under the lock leaves the states consistent.
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remember `now` as the last time the pool saw.
    pub(crate) fn note_time(&self, now: f64) {
        self.last_time.store(now.to_bits(), Ordering::Relaxed);
    }

    pub(crate) fn last_time(&self) -> f64 {
        f64::from_bits(self.last_time.load(Ordering::Relaxed))
    }

    /// Free blocks of shared subpools (a snapshot).
    pub(crate) fn shared_free(&self) -> u64 {
        let blocks = self.blocks.load(Ordering::Acquire);
        let client_blocks = self.client_blocks.load(Ordering::Acquire);
        let taken = self.tally.taken();
        let client_taken = self.client_taken.load(Ordering::Acquire);
        (blocks.saturating_sub(client_blocks)).saturating_sub(taken.saturating_sub(client_taken))
    }

    /// Free blocks of shared subpools counted on their free lists: exact at
    /// each list's read (the summed counts may miss calls in progress), for
    /// a refusal. O(subpools).
    pub(crate) fn shared_free_listed(&self) -> u64 {
        self.intervals
            .load()
            .subpools
            .iter()
            .filter(|subpool| subpool.owner.is_none())
            .map(|subpool| subpool.free.available())
            .sum()
    }

    /// Leases a shared allocation may still get: free blocks of shared
    /// subpools no drained IP fences, and the blocks not yet made that the
    /// free addresses on no drained IP can hold.
    pub(crate) fn shared_room(&self) -> u64 {
        self.shared_room_with(self.shared_free())
    }

    /// [`shared_room`](Self::shared_room) with the free blocks counted on
    /// the free lists (`shared_free_listed`): what a refusal is decided on.
    pub(crate) fn shared_room_listed(&self) -> u64 {
        self.shared_room_with(self.shared_free_listed())
    }

    fn shared_room_with(&self, shared_free: u64) -> u64 {
        let mut unmade = self
            .config
            .capacity()
            .saturating_sub(self.blocks.load(Ordering::Acquire));
        let drained = self.drained_set();
        if !drained.is_empty() {
            let snapshot = self.intervals.load();
            let undrained: u128 = snapshot
                .gaps(self.config.address_count())
                .iter()
                .map(|&(first, count)| count - drained.count_in(first, first + count))
                .sum();
            unmade = unmade.min(u64::try_from(undrained).unwrap_or(u64::MAX));
        }
        shared_free
            .saturating_sub(self.drain_fenced_free_blocks())
            .saturating_add(unmade)
    }

    /// The integer of `ip`, an address of the pool's family (a method
    /// argument: `reserve`, `drain`, `undrain`); [`Error::Argument`] for
    /// the other family's.
    pub(crate) fn own_family(&self, ip: IpAddr) -> Result<u128, Error> {
        let (family, value) = Family::of(ip);
        let pool = self.config.family();
        if family != pool {
            return Err(Error::Argument(format!(
                "ip: {ip} is not an IPv{} address",
                pool.number()
            )));
        }
        Ok(value)
    }

    /// The drained IPs now (a snapshot).
    #[inline]
    pub(crate) fn drained_set(&self) -> DrainedGuard {
        DrainedGuard(self.drained_ips.load())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The interval list in address order, each element cut at the
    /// boundaries of the address space's segments (no record spans a gap
    /// between ranges or an exclusion).
    pub fn intervals(&self) -> Vec<Interval> {
        self.intervals.load().intervals(self.config.space())
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
                held: s.held.load(Ordering::Relaxed),
                owner: s.owner,
            })
            .collect()
    }

    /// The counters, in O(threads): `live` and `free_blocks` sum the
    /// per-thread counts (exact when no call is in progress, see `len`).
    pub fn stats(&self) -> PoolStats {
        let snapshot = self.intervals.load();
        let blocks = self.blocks.load(Ordering::Acquire);
        let taken = self.tally.taken();
        PoolStats {
            live: self.len(),
            free_blocks: blocks.saturating_sub(taken),
            blocks,
            subpools: snapshot.subpools.len() as u64,
            intervals: snapshot.records,
            free_addresses: self.config.address_count() - u128::from(blocks),
            address_count: self.config.address_count(),
            capacity: self.config.capacity(),
            held: self.held(),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            drained: self.drained_set().addresses(),
        }
    }
}
