//! natpool: client NAT address pools for server load balancers.
//!
//! The allocator follows US patent 7,089,328: connection blocks are
//! pre-initialized with their client NAT address when their storage subpool
//! is created, and an interval list maps the address space to free ranges
//! and to the subpools that own them. Taking and returning a block is a
//! lock-free pop or push on the subpool's free list; `lookup` reads an
//! immutable snapshot of the interval list.
//!
//! The re-exports below are the whole Rust API: describe a pool with a
//! [`PoolSpec`], validate it into a [`Config`], and lease addresses from a
//! [`Pool`]:
//!
//! ```
//! use std::net::Ipv4Addr;
//! use natpool::{Pool, PoolSpec};
//!
//! let spec = PoolSpec::new("slb", Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 254))
//!     .prefix(24)
//!     .initial_blocks(256);
//! let pool: Pool<Option<u64>> = Pool::new(spec.build()?);
//! let leases = pool.allocate_many(1000, || None)?;
//! assert_eq!(pool.len(), 1000);
//! let mut released = Vec::new();
//! let handles: Vec<_> = leases.iter().map(|lease| lease.handle).collect();
//! pool.free_many(&handles, &mut released)?;
//! assert!(pool.is_empty());
//! # Ok::<(), natpool::Error>(())
//! ```
//!
//! The core (`src/core`) has no Python in it; the PyO3 binding
//! (`src/bindings`, behind the `python` cargo feature) is the thin layer
//! that `natpool._natpool` exposes.

mod core;

#[cfg(feature = "python")]
mod bindings;

pub use crate::core::{
    BlockEvent, BlockEventKind, ClaimAt, Clock, Config, Error, Exclusion, Grant, Handle, Interval,
    Lease, Membership, Order, Pool, PoolSpec, PoolStats, Renewal, Store, SubpoolInfo,
};
