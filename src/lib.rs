//! natpool: client NAT address pools for server load balancers.
//!
//! The allocator follows US patent 7,089,328: connection blocks are
//! pre-initialized with their client NAT address when their storage subpool
//! is created, and an interval list maps the address space to free ranges
//! and to the subpools that own them. Taking and returning a block is a
//! lock-free pop or push on the subpool's free list; `lookup` reads an
//! immutable snapshot of the interval list.
//!
//! [`core`] is the allocator (no Python); `bindings` (behind the `python`
//! cargo feature) is the thin PyO3 layer that `natpool._natpool` exposes.

pub mod core;

#[cfg(feature = "python")]
mod bindings;

pub use crate::core::{
    Config, Error, Handle, Interval, Lease, Pool, PoolSpec, PoolStats, SubpoolInfo,
};
