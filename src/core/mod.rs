//! The allocator core: pure Rust, no Python.
//!
//! | module | the patent's term |
//! |---|---|
//! | `config` | the control block (Figure 3): validation of a pool's configuration |
//! | `space` | the ordered address space: ranges less exclusions, as segments, numbered |
//! | `block` | a connection block and its lease state |
//! | `free_list` | a subpool's free blocks in the reuse order: lock-free stack (LIFO) or ring (FIFO), array under a lock bit of its count's word (random) |
//! | `held` | blocks freed with a hold, until the hold ends (hold-down) |
//! | `policy` | the reuse order, hold-down settings and the clock |
//! | `rng` | SplitMix64, the generator of the random order |
//! | `subpool` | a storage subpool: blocks pre-initialized with addresses |
//! | `clients` | client states (quota, paired IP, port blocks) and the block log |
//! | `drained` | drained IPs as runs of indices of the address space |
//! | `availability` | which subpools have a free block, lowest id first, in O(1) |
//! | `interval_list` | the interval list (Figure 7), published as snapshots |
//! | `pool` | the pool: its lock-free side (allocate, free, lookup) and its writer side (creation, deletion, growth) |
//! | `store` | a cluster's shared interval list: the store a member claims ranges from |
//! | `clock` | a cheap monotonic clock for the cluster's deadline checks |
//! | `epoch` | epoch-based reclamation of subpool slots (pin: two plain stores; deletion: membarrier) |
//! | `segvec` | a growable array whose elements never move |
//! | `prefetch` | a prefetch hint, for the random order's takes to come |
//! | `snapshot` | the snapshot format: a pool's state as bytes, read back with every check |
//! | `handle` | lease handles: generation, subpool id, offset |
//! | `error` | the core's one error type |
//! | `spin_lock` | the lock of short critical sections (the held queue): a CAS to take, a store to release |
//! | `sync` | the atomics and cells, std's or loom's (`--cfg loom`) |
//!
//! Every module is crate-private: the crate root re-exports the API. The
//! loom models (`--cfg loom`, `make loom`) are `loom` submodules next to
//! the code they check.

pub(crate) mod availability;
pub(crate) mod block;
pub(crate) mod clients;
pub(crate) mod clock;
pub(crate) mod config;
pub(crate) mod drained;
pub(crate) mod epoch;
pub(crate) mod error;
pub(crate) mod free_list;
pub(crate) mod handle;
pub(crate) mod held;
pub(crate) mod interval_list;
pub(crate) mod policy;
pub(crate) mod pool;
pub(crate) mod prefetch;
pub(crate) mod rng;
pub(crate) mod segvec;
pub(crate) mod snapshot;
pub(crate) mod space;
pub(crate) mod spin_lock;
pub(crate) mod store;
pub(crate) mod subpool;
pub(crate) mod sync;
pub(crate) mod tally;

#[cfg(all(loom, test))]
mod loom_support;

pub use clients::{BlockEvent, BlockEventKind};
pub use config::{Config, Exclusion, PoolSpec};
pub use error::Error;
pub use handle::Handle;
pub use interval_list::Interval;
pub use policy::{Clock, Order};
pub use pool::{Lease, Pool, PoolStats, Renewal, SubpoolInfo};
pub use store::{ClaimAt, Grant, Membership, Store};
