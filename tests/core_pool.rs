//! Behaviour of the core pool through its public API (no Python).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use std::net::{IpAddr, Ipv4Addr};

use natpool::{Error, Handle, Interval, Pool, PoolSpec};

/// A pool spec on 10.0.0.1..=`last` (a /24) with the given ports and block counts.
fn spec(
    last: Ipv4Addr,
    ports: (u16, u16),
    initial: u32,
    max: u64,
    subpool: Option<u32>,
) -> PoolSpec {
    let spec = PoolSpec::new("t", FIRST, last)
        .prefix(24)
        .ports(ports.0, ports.1)
        .initial_blocks(initial)
        .max_blocks(max);
    match subpool {
        Some(blocks) => spec.subpool_blocks(blocks),
        None => spec,
    }
}

const FIRST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn pool(initial: u32, max: u64, subpool: Option<u32>) -> Pool<u32> {
    let last = Ipv4Addr::new(10, 0, 0, 2);
    Pool::new(
        spec(last, (1000, 1002), initial, max, subpool)
            .build()
            .unwrap(),
    )
}

/// The index of (ip, port) in a pool of `ports` ports per IP from FIRST.
fn index_of(ip: IpAddr, port: u16, ports: (u16, u16)) -> usize {
    let IpAddr::V4(ip) = ip else {
        panic!("an IPv4 pool leased {ip}")
    };
    let per_ip = usize::from(ports.1 - ports.0) + 1;
    (u32::from(ip) - u32::from(FIRST)) as usize * per_ip + usize::from(port - ports.0)
}

#[test]
fn no_memory_pool_before_the_first_allocation() {
    let p = pool(2, 5, None);
    assert_eq!(
        p.intervals(),
        vec![Interval {
            first: 0,
            count: 6,
            subpool: None
        }]
    );
    assert_eq!(p.stats().subpools, 0);
    assert_eq!(p.stats().capacity, 5);
}

#[test]
fn allocates_in_address_order_and_grows_eagerly() {
    let p = pool(2, 5, Some(2));
    let a = p.allocate(1).unwrap();
    let b = p.allocate(2).unwrap();
    assert_eq!((a.ip, a.port, b.port), (FIRST.into(), 1000, 1001));
    // Taking the last free block (threshold 0) created the next subpool.
    assert_eq!(p.stats().subpools, 2);
    assert_eq!(
        p.intervals(),
        vec![
            Interval {
                first: 0,
                count: 2,
                subpool: Some(0)
            },
            Interval {
                first: 2,
                count: 2,
                subpool: Some(1)
            },
            Interval {
                first: 4,
                count: 2,
                subpool: None
            },
        ]
    );
    let c = p.allocate(3).unwrap();
    assert_eq!(c.port, 1002);
    assert_eq!(c.handle, Handle(1 << 32));
}

#[test]
fn deletes_an_idle_subpool_but_keeps_the_initial_blocks() {
    let p = pool(2, 5, Some(2));
    let leases: Vec<_> = (0..3).map(|i| p.allocate(i).unwrap()).collect();
    assert_eq!(p.free(leases[0].handle), Ok(Some(0)));
    assert_eq!(p.free(leases[1].handle), Ok(Some(1)));
    // Subpool 0 is idle and 2 blocks remain (>= initial 2): deleted, merged.
    assert_eq!(p.stats().subpools, 1);
    assert_eq!(
        p.intervals()[0],
        Interval {
            first: 0,
            count: 2,
            subpool: None
        }
    );
    assert_eq!(p.free(leases[2].handle), Ok(Some(2)));
    // The last subpool stays: deleting it would leave 0 < 2 blocks.
    assert_eq!(p.stats().subpools, 1);
    assert_eq!(p.stats().live, 0);
}

#[test]
fn exhausts_exactly_at_capacity_and_changes_nothing() {
    let p = pool(1, 4, Some(3));
    let leases: Vec<_> = (0..4).map(|i| p.allocate(i).unwrap()).collect();
    let before = (p.intervals(), p.subpools(), p.stats());
    assert!(matches!(p.allocate(9), Err(Error::Exhausted(_))));
    assert!(matches!(p.allocate_many(1, || 0), Err(Error::Exhausted(_))));
    assert_eq!(before, (p.intervals(), p.subpools(), p.stats()));
    p.free(leases[3].handle).unwrap();
    assert!(p.allocate(5).is_ok());
}

#[test]
fn rejects_double_free_stale_and_bogus_handles() {
    let p = pool(1, 1, None);
    let a = p.allocate(1).unwrap();
    p.free(a.handle).unwrap();
    assert!(matches!(p.free(a.handle), Err(Error::NotLive(_))));
    let b = p.allocate(2).unwrap();
    assert_eq!((b.ip, b.port), (a.ip, a.port));
    assert_ne!(a.handle, b.handle);
    assert!(matches!(p.free(a.handle), Err(Error::NotLive(_))));
    assert!(matches!(p.free(Handle(1 << 100)), Err(Error::NotLive(_))));
    assert!(matches!(p.free(Handle(7 << 32)), Err(Error::NotLive(_))));
    assert_eq!(p.len(), 1);
}

#[test]
fn free_many_is_all_or_nothing() {
    let p = pool(4, 6, None);
    let leases: Vec<_> = (0..3).map(|i| p.allocate(i).unwrap()).collect();
    let handles: Vec<Handle> = leases.iter().map(|l| l.handle).collect();
    let mut released = Vec::new();
    assert!(p
        .free_many(&[handles[0], handles[0]], &mut released)
        .is_err());
    assert!(p
        .free_many(&[handles[0], Handle(99)], &mut released)
        .is_err());
    assert_eq!(p.len(), 3);
    assert!(released.is_empty());
    p.free_many(&handles, &mut released).unwrap();
    assert_eq!(released, vec![0, 1, 2]);
    assert_eq!(p.len(), 0);
}

#[test]
fn lookup_finds_the_live_lease_and_its_data() {
    let p = pool(2, 6, None);
    let a = p.allocate(41).unwrap();
    let (found, released) = p.lookup_with(a.ip, a.port, |lease, data| (lease, *data));
    assert_eq!(found, Some((a, 41)));
    assert!(released.is_none());
    assert_eq!(p.lookup_with(a.ip, a.port + 1, |_, d| *d).0, None);
    assert_eq!(p.lookup_with(a.ip, 999, |_, d| *d).0, None);
    p.free(a.handle).unwrap();
    assert_eq!(p.lookup_with(a.ip, a.port, |_, d| *d).0, None);
}

#[test]
fn threads_never_share_an_address() {
    let ports = (2000, 2063);
    let config = spec(Ipv4Addr::new(10, 0, 0, 4), ports, 8, 200, Some(8))
        .build()
        .unwrap();
    let address_count = config.address_count() as usize;
    let pool = Arc::new(Pool::<u64>::new(config));
    let owned: Arc<Vec<AtomicU8>> =
        Arc::new((0..address_count).map(|_| AtomicU8::new(0)).collect());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (pool, owned) = (Arc::clone(&pool), Arc::clone(&owned));
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut seed = t + 1;
                for step in 0..20_000u64 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    if seed % 3 != 0 || mine.is_empty() {
                        if let Ok(lease) = pool.allocate(step) {
                            let index = index_of(lease.ip, lease.port, ports);
                            assert_eq!(
                                owned[index].swap(1, Ordering::AcqRel),
                                0,
                                "address leased twice"
                            );
                            mine.push(lease);
                        }
                    } else {
                        let lease = mine.swap_remove((seed as usize / 3) % mine.len());
                        let index = index_of(lease.ip, lease.port, ports);
                        assert_eq!(owned[index].swap(0, Ordering::AcqRel), 1);
                        pool.free(lease.handle).unwrap();
                    }
                    if step % 7 == 0 {
                        let _ = pool.lookup_with(FIRST, 2000 + (seed % 64) as u16, |l, _| l.handle);
                    }
                }
                for lease in mine {
                    let index = index_of(lease.ip, lease.port, ports);
                    owned[index].store(0, Ordering::Release);
                    pool.free(lease.handle).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = pool.stats();
    assert_eq!(stats.live, 0);
    assert_eq!(stats.free_blocks, stats.blocks);
    let seen: HashSet<u32> = pool.subpools().iter().map(|s| s.id).collect();
    assert_eq!(seen.len() as u64, stats.subpools);
    assert!(stats.blocks >= 8);
}

#[test]
fn stale_handles_stay_stale_across_reuse_and_subpool_deletion() {
    // Capacity 2: subpool 1 (one block) is deleted by every free of its
    // lease and created again, under the same id, by the next allocation.
    let p = pool(1, 2, Some(1));
    let a = p.allocate(1).unwrap();
    let b = p.allocate(2).unwrap();
    assert_eq!(b.handle.parts().unwrap().1, 1);
    p.free(b.handle).unwrap();
    assert_eq!(p.stats().subpools, 1, "subpool 1 is deleted");
    // Recreated under the same id for the same address: the generation
    // continues from where the deleted subpool's blocks left off.
    let mut current = p.allocate(3).unwrap();
    assert_eq!((current.ip, current.port), (b.ip, b.port));
    assert_eq!(current.handle.parts().unwrap().1, 1);
    let mut stale = vec![b.handle];
    for round in 0..1000 {
        for handle in &stale {
            assert!(!p.is_live(*handle));
            assert!(matches!(p.free(*handle), Err(Error::NotLive(_))));
        }
        let (found, _) = p.lookup_with(b.ip, b.port, |lease, data| (lease, *data));
        assert_eq!(found.unwrap().0, current);
        p.free(current.handle).unwrap();
        stale.push(current.handle);
        assert_eq!(p.stats().subpools, 1);
        current = p.allocate(round).unwrap();
        assert_eq!((current.ip, current.port), (b.ip, b.port));
        assert_eq!(current.handle.parts().unwrap().1, 1);
    }
    let generations: HashSet<u32> = stale.iter().map(|h| h.parts().unwrap().0).collect();
    assert_eq!(
        generations.len(),
        stale.len(),
        "every reuse has its own generation"
    );
    p.free(current.handle).unwrap();
    p.free(a.handle).unwrap();
}

/// Batches are exactly their single operations: the same leases in the same
/// order, the same growth and deletion, the same interval list.
#[test]
fn batches_equal_their_single_operations() {
    let state = |p: &Pool<u32>| (p.intervals(), p.subpools(), p.stats());
    for initial in 1..=4 {
        for subpool in 1..=5 {
            for threshold in [0, 1, 3, 7] {
                for n in [1, 2, 5, 17, 40, 70, 130] {
                    let make = || {
                        let last = Ipv4Addr::new(10, 0, 0, 2);
                        let s = spec(last, (1000, 1099), initial, 150, Some(subpool))
                            .grow_threshold(threshold);
                        Pool::<u32>::new(s.build().unwrap())
                    };
                    let (batch, single) = (make(), make());
                    // Some churn first, so that ids and intervals have holes.
                    for p in [&batch, &single] {
                        let warm: Vec<_> = (0..9).map(|i| p.allocate(i).unwrap()).collect();
                        for lease in warm.iter().step_by(2) {
                            p.free(lease.handle).unwrap();
                        }
                    }
                    let mut counter = 100;
                    let batched = batch
                        .allocate_many(n, || {
                            counter += 1;
                            counter
                        })
                        .unwrap();
                    let singles: Vec<_> = (101..101 + n as u32)
                        .map(|data| single.allocate(data).unwrap())
                        .collect();
                    assert_eq!(
                        batched, singles,
                        "initial {initial} subpool {subpool} threshold {threshold} n {n}"
                    );
                    assert_eq!(state(&batch), state(&single));
                    // Free them in two batches, in an order rotated by a third.
                    let mut order: Vec<_> = batched.iter().map(|l| l.handle).collect();
                    let third = order.len() / 3;
                    order.rotate_left(third);
                    let (first, rest) = order.split_at(order.len() / 2);
                    for part in [first, rest] {
                        let mut data = Vec::new();
                        batch.free_many(part, &mut data).unwrap();
                        let single_data: Vec<u32> = part
                            .iter()
                            .map(|h| single.free(*h).unwrap().unwrap())
                            .collect();
                        assert_eq!(data, single_data);
                        assert_eq!(state(&batch), state(&single));
                    }
                }
            }
        }
    }
}

/// Issue 11 through the Rust API: hold-down with a custom clock, the
/// reuse orders, and clients (quota, port blocks and their log, forgotten
/// keys).
mod policies {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use natpool::{BlockEventKind, Clock, Error, Order, Pool, PoolSpec};

    use super::FIRST;

    fn timed(spec: PoolSpec) -> (Pool<u32>, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(0));
        let clock = {
            let now = Arc::clone(&now);
            Clock::Custom(Box::new(move || now.load(Ordering::Relaxed) as f64))
        };
        (Pool::with_clock(spec.build().unwrap(), clock), now)
    }

    fn one_ip(ports: u16, initial: u32) -> PoolSpec {
        PoolSpec::new("p", FIRST, FIRST)
            .ports(1, ports)
            .initial_blocks(initial)
            .max_blocks(u64::from(initial))
    }

    #[test]
    fn a_held_block_comes_back_when_its_hold_ends() {
        let (pool, now) = timed(one_ip(2, 2).hold_down(5.0));
        let a = pool.allocate(1).unwrap();
        let b = pool.allocate(2).unwrap();
        assert_eq!(pool.free(a.handle).unwrap(), Some(1));
        assert_eq!((pool.len(), pool.held()), (1, 1));
        assert!(matches!(pool.allocate(3), Err(Error::Exhausted(_))));
        now.store(5, Ordering::Relaxed);
        assert_eq!(pool.allocate(3).unwrap().port, a.port);
        assert_eq!(pool.free_with_hold(b.handle, 0.0).unwrap(), Some(2));
        assert!(matches!(
            pool.free_with_hold(b.handle, -1.0),
            Err(Error::Argument(_))
        ));
        assert_eq!(pool.stats().held, 0);
    }

    /// Holds of mixed lengths end in `(end, free order)` order, also when
    /// more of them end at once than an allocation takes per lock.
    #[test]
    fn mixed_holds_end_earliest_first() {
        let (pool, now) = timed(one_ip(40, 40));
        let leases: Vec<_> = (0..40).map(|i| pool.allocate(i).unwrap()).collect();
        let hold = |i: usize| ((i * 7) % 5) as f64 + 1.0;
        for (i, lease) in leases.iter().enumerate() {
            pool.free_with_hold(lease.handle, hold(i)).unwrap();
        }
        now.store(2, Ordering::Relaxed);
        let early: Vec<u16> = (0..16).map(|i| pool.allocate(i).unwrap().port).collect();
        let mut expected: Vec<usize> = (0..40).collect();
        expected.sort_by(|&a, &b| hold(a).total_cmp(&hold(b)).then(a.cmp(&b)));
        let port = |i: usize| leases[i].port;
        let ports: Vec<u16> = expected[..16].iter().map(|&i| port(i)).collect();
        assert_eq!(early, ports);
        assert_eq!(pool.held(), 24);
        now.store(10, Ordering::Relaxed);
        let late: Vec<u16> = (0..24).map(|i| pool.allocate(i).unwrap().port).collect();
        let ports: Vec<u16> = expected[16..].iter().map(|&i| port(i)).collect();
        assert_eq!(late, ports);
    }

    #[test]
    fn each_order_reuses_as_specified() {
        for (order, expected) in [(Order::Fifo, [3, 1, 2]), (Order::Lifo, [2, 1, 3])] {
            let pool: Pool<u32> = Pool::new(one_ip(3, 3).order(order).build().unwrap());
            let leases: Vec<_> = (0..2).map(|i| pool.allocate(i).unwrap()).collect();
            pool.free(leases[0].handle).unwrap();
            pool.free(leases[1].handle).unwrap();
            let ports: Vec<u16> = (0..3).map(|i| pool.allocate(i).unwrap().port).collect();
            assert_eq!(ports, expected, "{order:?}");
        }
        let random = |seed| {
            let pool: Pool<u32> = Pool::new(
                one_ip(64, 64)
                    .order(Order::Random)
                    .seed(seed)
                    .build()
                    .unwrap(),
            );
            (0..64)
                .map(|i| pool.allocate(i).unwrap().port)
                .collect::<Vec<_>>()
        };
        assert_eq!(random(9), random(9));
        assert_ne!(random(9), random(10));
    }

    #[test]
    fn quota_port_blocks_and_their_log() {
        let spec = PoolSpec::new("c", FIRST, std::net::Ipv4Addr::new(10, 0, 0, 2))
            .prefix(24)
            .ports(1, 4)
            .initial_blocks(2)
            .client_block(2)
            .client_quota(3);
        let (pool, now) = timed(spec);
        let leases = pool.allocate_many_for(3, || 0, 7).unwrap();
        assert!(matches!(
            pool.allocate_for(0, 7),
            Err(Error::QuotaExceeded(_))
        ));
        let blocks: Vec<_> = pool.subpools().iter().map(|s| (s.owner, s.first)).collect();
        assert_eq!(blocks, vec![(Some(7), 0), (Some(7), 2)]);
        now.store(3, Ordering::Relaxed);
        for lease in &leases {
            pool.free(lease.handle).unwrap();
        }
        let events: Vec<_> = pool
            .events()
            .iter()
            .map(|e| (e.kind, e.first, e.time))
            .collect();
        assert_eq!(
            events,
            vec![
                (BlockEventKind::Assigned, 0, 0.0),
                (BlockEventKind::Assigned, 2, 0.0),
                (BlockEventKind::Released, 0, 3.0),
                (BlockEventKind::Released, 2, 3.0),
            ]
        );
        assert!(pool.subpools().is_empty());
        assert_eq!(pool.take_forgotten(), vec![7]);
        assert!(!pool.knows_client(7));
        assert!(matches!(
            pool.allocate_for(0, u64::MAX),
            Err(Error::Argument(_))
        ));
    }
}

/// Issue 12's shapes: several ranges, exclusions, IPv6 (`docs/shapes.md`).
mod shapes {
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv6Addr};

    use natpool::{Error, Exclusion, Interval, Pool, PoolSpec};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Two ranges, 10.0.0.1-10.0.0.3 and 10.0.1.7, ports 1..=4, without
    /// 10.0.0.2 and port 3 of 10.0.0.3: 11 addresses in 4 segments.
    fn shaped(initial: u32) -> Pool<u32> {
        let spec = PoolSpec::with_ranges(
            "shapes",
            [
                (ip("10.0.1.7"), ip("10.0.1.7")),
                (ip("10.0.0.1"), ip("10.0.0.3")),
            ],
        )
        .ports(1, 4)
        .exclude([
            Exclusion::ip(ip("10.0.0.2")),
            Exclusion::ports(ip("10.0.0.3"), 3, 3),
        ])
        .initial_blocks(initial);
        Pool::new(spec.build().unwrap())
    }

    fn address(ip_text: &str, port: u16) -> (IpAddr, u16) {
        (ip(ip_text), port)
    }

    #[test]
    fn a_shaped_pool_hands_out_exactly_its_addresses_in_order() {
        let pool = shaped(3);
        assert_eq!(pool.config().address_count(), 11);
        let leases: Vec<_> = (0..11).map(|i| pool.allocate(i).unwrap()).collect();
        let got: Vec<(IpAddr, u16)> = leases.iter().map(|l| (l.ip, l.port)).collect();
        let expected = vec![
            address("10.0.0.1", 1),
            address("10.0.0.1", 2),
            address("10.0.0.1", 3),
            address("10.0.0.1", 4),
            address("10.0.0.3", 1),
            address("10.0.0.3", 2),
            address("10.0.0.3", 4),
            address("10.0.1.7", 1),
            address("10.0.1.7", 2),
            address("10.0.1.7", 3),
            address("10.0.1.7", 4),
        ];
        assert_eq!(got, expected);
        assert!(matches!(pool.allocate(99), Err(Error::Exhausted(_))));
        for (i, lease) in leases.iter().enumerate() {
            let (found, _) = pool.lookup_with(lease.ip, lease.port, |l, d| (l, *d));
            assert_eq!(found, Some((*lease, i as u32)));
        }
        // Excluded addresses and other families are in no subpool.
        assert_eq!(pool.lookup_with(ip("10.0.0.2"), 1, |_, d| *d).0, None);
        assert_eq!(pool.lookup_with(ip("10.0.0.3"), 3, |_, d| *d).0, None);
        assert_eq!(pool.lookup_with(ip("::1"), 1, |_, d| *d).0, None);
        for lease in leases {
            pool.free(lease.handle).unwrap();
        }
        assert!(pool.is_empty());
    }

    #[test]
    fn intervals_never_span_a_gap_and_stats_count_the_records() {
        let pool = shaped(6);
        let a = pool.allocate(0).unwrap(); // subpool 0: indices 0..6
        let records = pool.intervals();
        assert_eq!(
            records,
            vec![
                Interval {
                    first: 0,
                    count: 4,
                    subpool: Some(0)
                },
                Interval {
                    first: 4,
                    count: 2,
                    subpool: Some(0)
                },
                Interval {
                    first: 6,
                    count: 1,
                    subpool: None
                },
                Interval {
                    first: 7,
                    count: 4,
                    subpool: None
                },
            ]
        );
        let stats = pool.stats();
        assert_eq!(stats.intervals, records.len() as u64);
        assert_eq!(
            (stats.subpools, stats.free_addresses, stats.address_count),
            (1, 5, 11)
        );
        pool.free(a.handle).unwrap();
    }

    #[test]
    fn an_ipv6_slash_48_is_a_few_interval_elements_and_exact() {
        let first: Ipv6Addr = "2001:db8:7::".parse().unwrap();
        let last: Ipv6Addr = "2001:db8:7:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let spec = PoolSpec::new("six", first, last)
            .prefix(48)
            .initial_blocks(1024);
        let pool: Pool<u8> = Pool::new(spec.build().unwrap());
        let per_ip: u128 = 64512;
        // The subnet-router anycast address 2001:db8:7:: is left out.
        assert_eq!(pool.config().address_count(), ((1u128 << 80) - 1) * per_ip);
        assert_eq!(pool.config().first_ip(), ip("2001:db8:7::1"));
        let leases = pool.allocate_many(2000, || 1).unwrap();
        assert_eq!(
            (leases[0].ip, leases[0].port),
            address("2001:db8:7::1", 1024)
        );
        assert_eq!(
            (leases[1999].ip, leases[1999].port),
            address("2001:db8:7::1", 3023)
        );
        assert_eq!(pool.intervals().len(), 3); // two subpools and the rest
        let stats = pool.stats();
        assert_eq!(stats.free_addresses, pool.config().address_count() - 2048);
        assert_eq!(stats.capacity, u64::MAX);
        let (found, _) = pool.lookup_with(leases[7].ip, leases[7].port, |l, _| l);
        assert_eq!(found, Some(leases[7]));
        let mut released = Vec::new();
        let handles: Vec<_> = leases.iter().map(|l| l.handle).collect();
        pool.free_many(&handles, &mut released).unwrap();
    }

    #[test]
    fn port_blocks_lie_on_one_ip_of_the_space() {
        // 10.0.0.1 keeps 2 of its 4 ports: too few for a block of 3.
        let spec = PoolSpec::with_ranges("blocks", [(ip("10.0.0.1"), ip("10.0.0.3"))])
            .ports(1, 4)
            .exclude([Exclusion::ports(ip("10.0.0.1"), 2, 3)])
            .initial_blocks(2)
            .client_block(3);
        let pool: Pool<u32> = Pool::new(spec.build().unwrap());
        let a = pool.allocate_for(1, 7).unwrap();
        assert_eq!((a.ip, a.port), address("10.0.0.2", 1));
        let leases = pool.allocate_many_for(3, || 1, 7).unwrap();
        let ips: HashSet<IpAddr> = leases.iter().map(|l| l.ip).collect();
        // Block 1 is 10.0.0.2:1-3; block 2 the lowest 3 on one IP: 10.0.0.3:1-3
        // (10.0.0.2:4 is free but alone on its IP).
        assert_eq!(ips, [ip("10.0.0.2"), ip("10.0.0.3")].into_iter().collect());
        let firsts: Vec<u128> = pool.subpools().iter().map(|s| s.first).collect();
        assert_eq!(firsts, vec![2, 6]);
    }

    #[test]
    fn a_paired_client_stays_on_its_ip_across_an_exclusion_hole() {
        // 10.0.0.1 keeps ports 1 and 4: indices 0 and 1, two segments, one
        // IP; subpool 0 holds both.
        let spec = PoolSpec::with_ranges("paired", [(ip("10.0.0.1"), ip("10.0.0.2"))])
            .ports(1, 4)
            .exclude([Exclusion::ports(ip("10.0.0.1"), 2, 3)])
            .initial_blocks(2)
            .subpool_blocks(1)
            .paired(true);
        let pool: Pool<u32> = Pool::new(spec.build().unwrap());
        let other = pool.allocate(0).unwrap(); // 10.0.0.1:1
        let a = pool.allocate_for(1, 5).unwrap(); // 10.0.0.1:4; subpool 1 grows
        assert_eq!((a.ip, a.port), address("10.0.0.1", 4));
        pool.free(other.handle).unwrap();
        // Subpool 0 lies wholly on the client's IP: it serves, not subpool 1.
        let b = pool.allocate_for(1, 5).unwrap();
        assert_eq!((b.ip, b.port), address("10.0.0.1", 1));
    }

    #[test]
    fn a_store_numbers_at_most_two_to_the_63_minus_1_addresses() {
        use natpool::{Grant, Membership, Store};
        struct Never;
        impl Store for Never {
            fn claim(&self) -> Result<Option<Grant>, Error> {
                Ok(None)
            }
            fn release(&self, _: u64) -> Result<(), Error> {
                Ok(())
            }
            fn renew(&self, epochs: &[u64]) -> Result<Vec<u64>, Error> {
                Ok(epochs.to_vec())
            }
            fn leave(&self, _: &[u64]) -> Result<(), Error> {
                Ok(())
            }
        }
        let membership = || Membership {
            store: Box::new(Never),
            claim_ttl: std::time::Duration::from_secs(60),
            renew_interval: std::time::Duration::ZERO,
        };
        let big =
            PoolSpec::with_ranges("big", [(ip("2001:db8::"), ip("2001:db8::ffff:ffff:ffff"))])
                .initial_blocks(1)
                .build()
                .unwrap();
        let result = Pool::<u8>::with_store(big, membership());
        assert!(matches!(result, Err(Error::Config { field: "store", .. })));
        let small = PoolSpec::with_ranges("small", [(ip("2001:db8::"), ip("2001:db8::ff"))])
            .initial_blocks(1)
            .build()
            .unwrap();
        assert!(Pool::<u8>::with_store(small, membership()).is_ok());
    }
}

/// `reserve`, `drain`, `undrain` (`docs/shapes.md`) through the Rust API;
/// the Python suite (test_shapes.py) holds both implementations to the
/// rules in detail.
mod reserve_and_drain {
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;

    use natpool::{Error, Order, Pool, PoolSpec};

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

    /// Rounds per thread of the race (`NATPOOL_RESERVE_ROUNDS` for more).
    fn rounds() -> u64 {
        std::env::var("NATPOOL_RESERVE_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000)
    }

    fn one_ip(ports: u16, initial: u32, order: Order) -> Pool<u32> {
        let spec = PoolSpec::with_ranges("r", [(IP, IP)])
            .ports(1, ports)
            .initial_blocks(initial)
            .order(order)
            .seed(3);
        Pool::new(spec.build().unwrap())
    }

    #[test]
    fn a_reserved_address_is_leased_once_and_its_phantom_skipped() {
        for order in [Order::Fifo, Order::Lifo, Order::Random] {
            let pool = one_ip(8, 4, order);
            let a = pool.allocate(0).unwrap();
            let port = if a.port == 3 { 2 } else { 3 };
            let reserved = pool.reserve(IP, port, 7).unwrap();
            assert_eq!((reserved.ip, reserved.port), (IpAddr::V4(IP), port));
            assert!(matches!(pool.reserve(IP, port, 8), Err(Error::NotLive(_))));
            assert!(matches!(
                pool.reserve(IP, a.port, 8),
                Err(Error::NotLive(_))
            ));
            assert!(matches!(pool.reserve(IP, 9, 8), Err(Error::Argument(_))));
            let (found, _) = pool.lookup_with(IP, port, |lease, data| (lease, *data));
            assert_eq!(found, Some((reserved, 7)));
            // The other six addresses, never the reserved one.
            let rest = pool.allocate_many(6, || 1).unwrap();
            let ports: HashSet<u16> = rest.iter().map(|l| l.port).collect();
            assert_eq!(ports.len(), 6);
            assert!(
                !ports.contains(&port) && !ports.contains(&a.port),
                "{order:?}"
            );
            assert!(matches!(pool.allocate(2), Err(Error::Exhausted(_))));
            assert_eq!(pool.free(reserved.handle).unwrap(), Some(7));
            assert_eq!(pool.allocate(3).unwrap().port, port);
        }
    }

    #[test]
    fn a_drained_ip_is_fenced_deleted_when_empty_and_comes_back() {
        let last = Ipv4Addr::new(10, 0, 0, 3);
        let spec = PoolSpec::with_ranges("d", [(IP, last)])
            .ports(1, 4)
            .initial_blocks(4);
        let pool: Pool<u32> = Pool::new(spec.build().unwrap());
        let a = pool.allocate(1).unwrap(); // subpool 0: 10.0.0.1, all of it
        pool.drain(IP).unwrap();
        pool.drain(IP).unwrap(); // again: nothing changes
        assert_eq!(pool.drained(), vec![IpAddr::V4(IP)]);
        assert_eq!(pool.stats().drained, 4);
        let b = pool.allocate(2).unwrap();
        assert_eq!(b.ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(matches!(pool.reserve(IP, 2, 0), Err(Error::Argument(_))));
        pool.free(a.handle).unwrap(); // subpool 0 goes, whatever the keep rule
        assert!(pool.subpools().iter().all(|s| s.id != 0));
        pool.undrain(IP).unwrap();
        assert!(pool.drained().is_empty());
        assert!(matches!(
            pool.drain(Ipv4Addr::new(10, 0, 0, 9)),
            Err(Error::Argument(_))
        ));
        assert!(matches!(
            pool.drain("::1".parse::<IpAddr>().unwrap()),
            Err(Error::Argument(_))
        ));
        // Every address drained: exhausted, whatever len() says.
        for ip in 1..=3 {
            pool.drain(Ipv4Addr::new(10, 0, 0, ip)).unwrap();
        }
        assert!(matches!(pool.allocate(3), Err(Error::Exhausted(_))));
        assert!(matches!(
            pool.allocate_many(1, || 3),
            Err(Error::Exhausted(_))
        ));
        pool.free(b.handle).unwrap();
        assert_eq!(pool.stats().subpools, 0);
    }

    /// Threads allocate and free (singly and in batches) while another
    /// reserves given addresses and frees them, and a third drains and
    /// undrains an IP: an address is never held twice (an independent
    /// bitmap), and at the end every address can be leased exactly once.
    #[test]
    fn reserves_and_drains_race_with_allocations() {
        for order in [Order::Fifo, Order::Lifo, Order::Random] {
            let last = Ipv4Addr::new(10, 0, 0, 4);
            let spec = PoolSpec::with_ranges("race", [(IP, last)])
                .ports(1, 16)
                .initial_blocks(8)
                .order(order)
                .seed(11);
            let pool: Arc<Pool<u64>> = Arc::new(Pool::new(spec.build().unwrap()));
            let count = pool.config().address_count() as usize;
            let held: Arc<Vec<AtomicU8>> = Arc::new((0..count).map(|_| AtomicU8::new(0)).collect());
            let index = |lease: &natpool::Lease| {
                let IpAddr::V4(ip) = lease.ip else { panic!() };
                (u32::from(ip) - u32::from(IP)) as usize * 16 + usize::from(lease.port - 1)
            };
            let take = |held: &[AtomicU8], lease: &natpool::Lease| {
                assert_eq!(
                    held[index(lease)].swap(1, Ordering::AcqRel),
                    0,
                    "held twice: {lease:?}"
                );
            };
            let give = |held: &[AtomicU8], lease: &natpool::Lease| {
                assert_eq!(held[index(lease)].swap(0, Ordering::AcqRel), 1);
            };
            let rounds = rounds();
            std::thread::scope(|scope| {
                for worker in 0..2u64 {
                    let (pool, held) = (&pool, &held);
                    scope.spawn(move || {
                        let mut mine = Vec::new();
                        for round in 0..rounds {
                            if round % 7 == 0 {
                                if let Ok(batch) = pool.allocate_many(3, || worker) {
                                    batch.iter().for_each(|l| take(held, l));
                                    mine.extend(batch);
                                }
                            } else if let Ok(lease) = pool.allocate(worker) {
                                take(held, &lease);
                                mine.push(lease);
                            }
                            if mine.len() > 20 || (round % 3 == 0 && !mine.is_empty()) {
                                let lease = mine.swap_remove((round as usize * 7) % mine.len());
                                give(held, &lease);
                                pool.free(lease.handle).unwrap();
                            }
                        }
                        for lease in mine {
                            give(held, &lease);
                            pool.free(lease.handle).unwrap();
                        }
                    });
                }
                let (pool, held) = (&pool, &held);
                scope.spawn(move || {
                    for round in 0..rounds {
                        let ip = Ipv4Addr::new(10, 0, 0, 1 + (round % 4) as u8);
                        match pool.reserve(ip, 1 + (round % 16) as u16, 99) {
                            Ok(lease) => {
                                take(held, &lease);
                                give(held, &lease);
                                pool.free(lease.handle).unwrap();
                            }
                            Err(Error::NotLive(_) | Error::Exhausted(_) | Error::Argument(_)) => {}
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                });
                scope.spawn(move || {
                    let ip = Ipv4Addr::new(10, 0, 0, 3);
                    for _ in 0..500 {
                        pool.drain(ip).unwrap();
                        std::thread::yield_now();
                        pool.undrain(ip).unwrap();
                    }
                });
            });
            assert!(pool.is_empty(), "{order:?}");
            let all = pool.allocate_many(count as u64, || 0).unwrap();
            let distinct: HashSet<_> = all.iter().map(|l| (l.ip, l.port)).collect();
            assert_eq!(distinct.len(), count, "{order:?}");
        }
    }
}

/// Issue 12, point 6, through the Rust API: a snapshot restores a pool that
/// writes the same bytes, keeps its leases (handles, addresses), stale
/// handles, holds, clients and reuse order, and continues as the original.
mod snapshots {
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use natpool::{Clock, Error, Order, Pool, PoolSpec};

    use super::FIRST;

    fn clock(now: &Arc<AtomicU64>) -> Clock {
        let now = Arc::clone(now);
        Clock::Custom(Box::new(move || now.load(Ordering::Relaxed) as f64))
    }

    #[test]
    fn a_restored_pool_continues_as_the_original() {
        let now = Arc::new(AtomicU64::new(100));
        let spec = PoolSpec::new("s", FIRST, Ipv4Addr::new(10, 0, 0, 3))
            .prefix(24)
            .ports(1, 6)
            .initial_blocks(4)
            .subpool_blocks(3)
            .hold_down(2.0)
            .order(Order::Random)
            .seed(5)
            .client_quota(3);
        let pool: Pool<u32> = Pool::with_clock(spec.build().unwrap(), clock(&now));
        let leases: Vec<_> = (0..10)
            .map(|i| pool.allocate_for(i, u64::from(i % 4)).unwrap())
            .collect();
        pool.free(leases[1].handle).unwrap(); // held until 102
        pool.free_with_hold(leases[4].handle, 0.0).unwrap();
        let bytes = pool.snapshot().unwrap();

        let restored: Pool<u32> = Pool::restore(&bytes, clock(&now)).unwrap();
        assert_eq!(restored.snapshot().unwrap(), bytes);
        assert_eq!((restored.len(), restored.held()), (8, 1));
        assert_eq!(restored.subpools(), pool.subpools());
        for lease in leases.iter().filter(|l| pool.is_live(l.handle)) {
            let (found, _) = restored.lookup_with(lease.ip, lease.port, |l, _| l.handle);
            assert_eq!(found, Some(lease.handle));
        }
        for stale in [leases[1].handle, leases[4].handle] {
            assert!(matches!(restored.free(stale), Err(Error::NotLive(_))));
        }
        // The same calls give the same results on both.
        now.store(103, Ordering::Relaxed);
        for i in 0..8 {
            let (a, b) = (pool.allocate_for(0, i % 4), restored.allocate_for(0, i % 4));
            assert_eq!(a.as_ref().ok(), b.as_ref().ok());
            assert_eq!(a.is_err(), b.is_err());
        }
        assert_eq!(restored.snapshot().unwrap(), pool.snapshot().unwrap());
    }

    /// While other threads allocate and free, a snapshot is some state
    /// `restore` accepts (or, if the pool never held still, a refusal): see
    /// `docs/design.md`, "Snapshot and restore".
    #[test]
    fn a_snapshot_of_a_pool_in_use_is_one_restore_accepts() {
        let spec = PoolSpec::new("c", FIRST, Ipv4Addr::new(10, 0, 0, 2))
            .prefix(24)
            .ports(1, 64)
            .initial_blocks(16)
            .subpool_blocks(8)
            .order(Order::Lifo);
        let pool: Arc<Pool<u32>> = Arc::new(Pool::new(spec.build().unwrap()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..2)
            .map(|worker| {
                let (pool, stop) = (Arc::clone(&pool), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(lease) = pool.allocate(worker) {
                            held.push(lease.handle);
                        }
                        if held.len() > 20 {
                            pool.free(held.swap_remove(0)).unwrap();
                        }
                    }
                })
            })
            .collect();
        let (mut written, mut refused) = (std::collections::HashSet::new(), 0);
        // Until two states were written (the workers move between two
        // snapshots), however fast the snapshots run against the workers.
        for _ in 0..100_000 {
            if written.len() > 1 && refused + written.len() >= 200 {
                break;
            }
            std::thread::yield_now();
            match pool.snapshot() {
                Ok(bytes) => {
                    let restored: Pool<u32> = Pool::restore(&bytes, Clock::Monotonic).unwrap();
                    assert_eq!(restored.snapshot().unwrap(), bytes);
                    written.insert(bytes);
                }
                Err(Error::Snapshot(_)) => refused += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            worker.join().unwrap();
        }
        assert!(
            written.len() > 1,
            "{refused} refused, {} states written",
            written.len()
        );
    }

    #[test]
    fn bad_bytes_are_refused_and_build_nothing() {
        let pool: Pool<u32> = Pool::new(
            PoolSpec::new("s", FIRST, FIRST)
                .ports(1, 2)
                .build()
                .unwrap(),
        );
        pool.allocate(1).unwrap();
        let bytes = pool.snapshot().unwrap();
        for bad in [
            &bytes[..bytes.len() - 1],
            &bytes[1..],
            b"NATPSNAP".as_slice(),
        ] {
            assert!(matches!(
                Pool::<u32>::restore(bad, Clock::Monotonic),
                Err(Error::Snapshot(_))
            ));
        }
    }
}
