//! The shaped pool of issue 12's benchmarks, shared by `core.rs` and
//! `memory.rs`: 1,000 ranges and 10,000 exclusions.

use std::net::Ipv4Addr;

use natpool::{Config, Exclusion, PoolSpec};

/// 1,000 ranges of 14 IPs (10.x.y.1-14, one per /24), each with 10
/// single-port exclusions on its first IP: 10,000 exclusions.
pub fn shaped_config(initial_blocks: u32, max_blocks: u64) -> Config {
    let range = |i: u32| {
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (i << 8);
        (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 14))
    };
    let exclusions = (0..1000u32).flat_map(|i| {
        let (first, _) = range(i);
        (0..10u16).map(move |j| Exclusion::ports(first, 2000 + j, 2000 + j))
    });
    PoolSpec::with_ranges("bench", (0..1000).map(range))
        .exclude(exclusions)
        .initial_blocks(initial_blocks)
        .max_blocks(max_blocks)
        .build()
        .unwrap()
}
