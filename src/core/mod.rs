//! The allocator core: pure Rust, no Python.
//!
//! | module | the patent's term |
//! |---|---|
//! | [`config`] | the control block (Figure 3) and the ordered address space |
//! | [`block`] | a connection block and its lease state |
//! | [`free_list`] | a subpool's lock-free free list of blocks |
//! | [`subpool`] | a storage subpool: blocks pre-initialized with addresses |
//! | [`availability`] | which subpools have a free block, lowest id first, in O(1) |
//! | [`interval_list`] | the interval list (Figure 7), published as snapshots |
//! | [`pool`] | the pool: memory pool, growth and deletion, leases |
//! | [`sync`] | the atomics and cells, std's or loom's (`--cfg loom`) |

pub mod availability;
pub mod block;
pub mod config;
pub mod error;
pub mod free_list;
pub mod handle;
pub mod interval_list;
pub mod pool;
pub mod segvec;
pub mod subpool;
pub mod sync;

#[cfg(all(test, not(loom)))]
mod creation_hold;

pub use config::{parse_ipv4, parse_netmask, Config, PoolSpec};
pub use error::Error;
pub use handle::Handle;
pub use interval_list::Interval;
pub use pool::{Lease, Pool, PoolStats, SubpoolInfo};
