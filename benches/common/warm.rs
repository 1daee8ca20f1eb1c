//! The warm pool of the Rust benches, shared by `core.rs` and `threads.rs`:
//! 10.0.0.1-10.0.0.254, its first subpool created and resident.

use std::net::Ipv4Addr;

use natpool::{Pool, PoolSpec};

/// Blocks every anchor is preloaded with (and natpool's subpool size).
pub const BLOCKS: u32 = 4096;

pub const LAST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);

pub fn pool_with<T: Default + Send + Sync>(blocks: u32, subpool: u32, max: u64) -> Pool<T> {
    let spec = PoolSpec::new("bench", Ipv4Addr::new(10, 0, 0, 1), LAST_IP)
        .prefix(24)
        .initial_blocks(blocks)
        .max_blocks(max)
        .subpool_blocks(subpool);
    Pool::new(spec.build().unwrap())
}

/// A pool whose first subpool (BLOCKS blocks) exists and stays resident.
pub fn warm_pool() -> Pool<()> {
    let pool = pool_with(BLOCKS, BLOCKS, 1 << 20);
    let lease = pool.allocate(()).unwrap();
    pool.free(lease.handle).unwrap();
    pool
}
