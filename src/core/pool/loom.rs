//! loom models of the pool's protocols (`src/core/pool/`) on tiny pools:
//! the last free block, a free that empties a subpool racing with an
//! allocation that found it, lookups racing with subpool creation and
//! deletion, and frees from another thread. Run with `make loom`.

use std::collections::HashSet;

use crate::core::loom_support::spawn_with;
use loom::sync::Arc;
use std::net::Ipv4Addr;

use crate::core::{Error, Lease, Pool, PoolSpec};

/// A pool on 10.0.0.1 ports 1000..: `capacity` addresses, `initial` blocks in
/// subpool 0, `subpool` blocks in each later one, no threshold growth.
fn pool(capacity: u16, initial: u32, subpool: u32) -> Arc<Pool<u64>> {
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let spec = PoolSpec::new("loom", ip, ip)
        .ports(1000, 1000 + capacity - 1)
        .initial_blocks(initial)
        .subpool_blocks(subpool)
        .seed(1);
    Arc::new(Pool::new(spec.build().unwrap()))
}

/// The pool's own account agrees with itself and with the leases we hold,
/// and every held lease is live, found by lookup and freed exactly once.
fn check_and_drain(pool: &Pool<u64>, held: &[(Lease, u64)]) {
    let addresses: HashSet<(std::net::IpAddr, u16)> =
        held.iter().map(|(l, _)| (l.ip, l.port)).collect();
    assert_eq!(addresses.len(), held.len(), "an address leased twice");
    let stats = pool.stats();
    assert_eq!(stats.live, held.len() as u64);
    let subpools = pool.subpools();
    let blocks: u64 = subpools.iter().map(|s| u64::from(s.blocks)).sum();
    assert_eq!(stats.blocks, blocks);
    let free: u64 = subpools.iter().map(|s| s.free).sum();
    assert_eq!(free, stats.free_blocks);
    let covered: u128 = pool.intervals().iter().map(|i| i.count).sum();
    assert_eq!(covered, stats.address_count);
    for (lease, data) in held {
        assert!(pool.is_live(lease.handle));
        let (seen, released) = pool.lookup_with(lease.ip, lease.port, |l, d| (l, *d));
        assert_eq!(seen, Some((*lease, *data)));
        assert_eq!(released, None);
        assert_eq!(pool.free(lease.handle).unwrap(), Some(*data));
    }
    assert!(pool.is_empty());
}

#[test]
fn two_allocations_race_for_the_last_address() {
    loom::model(|| {
        let pool = pool(1, 1, 1);
        // Create the memory pool (subpool 0, one block) before the race.
        let warm = pool.allocate(0).unwrap();
        pool.free(warm.handle).unwrap();
        let racers: Vec<_> = (1..=2u64)
            .map(|data| {
                spawn_with(&pool, move |pool| {
                    pool.allocate(data).map(|lease| (lease, data))
                })
            })
            .collect();
        let outcomes: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let won: Vec<(Lease, u64)> = outcomes.iter().filter_map(|o| o.clone().ok()).collect();
        assert_eq!(won.len(), 1, "exactly one allocation gets the address");
        assert!(outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::Exhausted(_)))));
        check_and_drain(&pool, &won);
    });
}

#[test]
fn the_loser_of_the_last_block_gets_the_next_subpool() {
    loom::model(|| {
        let pool = pool(2, 1, 1);
        let warm = pool.allocate(0).unwrap();
        pool.free(warm.handle).unwrap();
        let racers: Vec<_> = (1..=2u64)
            .map(|data| spawn_with(&pool, move |pool| (pool.allocate(data).unwrap(), data)))
            .collect();
        let won: Vec<(Lease, u64)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(pool.stats().subpools, 2);
        check_and_drain(&pool, &won);
    });
}

/// Subpool 1 holds one lease; freeing it empties the subpool (deletion is
/// due) while another thread allocates and may find subpool 1's free block.
/// The subpool ends kept (holding the new lease) or deleted (the new lease
/// elsewhere), and no lease lives in a deleted subpool.
#[test]
fn a_free_that_empties_a_subpool_races_with_an_allocation() {
    loom::model(|| {
        let pool = pool(3, 1, 1);
        let a = pool.allocate(1).unwrap();
        let b = pool.allocate(2).unwrap();
        assert_eq!(b.handle.parts().unwrap().1, 1);
        let freer = spawn_with(&pool, move |pool| pool.free(b.handle).unwrap());
        let allocator = spawn_with(&pool, move |pool| pool.allocate(3).unwrap());
        assert_eq!(freer.join().unwrap(), Some(2));
        let c = allocator.join().unwrap();
        let ids: Vec<u32> = pool.subpools().iter().map(|s| s.id).collect();
        let (_, c_subpool, _) = c.handle.parts().unwrap();
        assert!(ids.contains(&c_subpool), "a lease in a deleted subpool");
        assert!(!pool.is_live(b.handle));
        check_and_drain(&pool, &[(a, 1), (c, 3)]);
    });
}

/// A lookup racing with the free that deletes the subpool it reads: it sees
/// the live lease with its data, or nothing; the data is handed back once.
#[test]
fn a_lookup_races_with_subpool_deletion() {
    loom::model(|| {
        let pool = pool(2, 1, 1);
        let a = pool.allocate(1).unwrap();
        let b = pool.allocate(2).unwrap();
        let reader = spawn_with(&pool, move |pool| {
            pool.lookup_with(b.ip, b.port, |l, d| (l, *d))
        });
        let freed = pool.free(b.handle).unwrap();
        let (seen, released) = reader.join().unwrap();
        if let Some(seen) = seen {
            assert_eq!(seen, (b, 2));
        }
        let returned: Vec<u64> = freed.into_iter().chain(released).collect();
        assert_eq!(returned, vec![2], "the data is handed back exactly once");
        assert_eq!(pool.subpools().len(), 1, "the idle subpool 1 is deleted");
        check_and_drain(&pool, &[(a, 1)]);
    });
}

/// A lookup of the address a concurrent allocation's new subpool will own:
/// nothing, or that allocation's lease with its data.
#[test]
fn a_lookup_races_with_subpool_creation() {
    loom::model(|| {
        let pool = pool(2, 1, 1);
        let a = pool.allocate(1).unwrap();
        let (ip, port) = (a.ip, a.port + 1);
        let allocator = spawn_with(&pool, move |pool| pool.allocate(2).unwrap());
        let (seen, released) = pool.lookup_with(ip, port, |l, d| (l, *d));
        let b = allocator.join().unwrap();
        assert_eq!((b.ip, b.port), (ip, port));
        if let Some(seen) = seen {
            assert_eq!(seen, (b, 2));
        }
        assert_eq!(released, None);
        check_and_drain(&pool, &[(a, 1), (b, 2)]);
    });
}

/// A lease freed by a thread other than the one that allocated it, while a
/// third allocates: the design has no per-thread lists, so this is the same
/// protocol as a local free; the model checks the handoff anyway.
#[test]
fn a_free_from_another_thread_races_with_an_allocation() {
    loom::model(|| {
        let pool = pool(2, 2, 1);
        let a = pool.allocate(1).unwrap();
        let freer = spawn_with(&pool, move |pool| pool.free(a.handle).unwrap());
        let allocator = spawn_with(&pool, move |pool| pool.allocate(2).unwrap());
        assert_eq!(freer.join().unwrap(), Some(1));
        let c = allocator.join().unwrap();
        assert!(!pool.is_live(a.handle), "a stale handle is not live");
        check_and_drain(&pool, &[(c, 2)]);
    });
}

/// Three threads on a two-address pool whose second subpool is created and
/// deleted as they go: two allocate and free, one looks up both addresses.
/// Every lookup sees a lease some thread held with its data, or nothing.
#[test]
fn churn_with_creation_deletion_and_lookups() {
    loom::model(|| {
        let pool = pool(2, 1, 1);
        let workers: Vec<_> = (1..=2u64)
            .map(|data| {
                spawn_with(&pool, move |pool| {
                    let lease = pool.allocate(data).unwrap();
                    let freed = pool.free(lease.handle).unwrap();
                    (lease, data, freed)
                })
            })
            .collect();
        let seen: Vec<_> = [1000u16, 1001]
            .iter()
            .map(|port| pool.lookup_with(Ipv4Addr::new(10, 0, 0, 1), *port, |l, d| (l, *d)))
            .collect();
        let done: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let mut returned: Vec<u64> = done.iter().filter_map(|(_, _, freed)| *freed).collect();
        for (found, released) in seen {
            if let Some(found) = found {
                assert!(done.iter().any(|(lease, data, _)| (*lease, *data) == found));
            }
            returned.extend(released);
        }
        returned.sort_unstable();
        assert_eq!(returned, vec![1, 2], "each lease's data handed back once");
        check_and_drain(&pool, &[]);
        assert!(
            pool.stats().subpools <= 1,
            "{:?} {:?}",
            pool.subpools(),
            done
        );
    });
}

/// Two frees empty subpool 1 in turn: the first is preempted between its
/// push and its deletion attempt while another thread allocates, frees and
/// deletes the subpool; the late attempt must find it gone and do nothing.
#[test]
fn a_late_deletion_attempt_finds_the_subpool_gone() {
    loom::model(|| {
        // Subpool 0 has 1 block, subpool 1 (created eagerly) has 2.
        let pool = pool(3, 1, 2);
        let a = pool.allocate(1).unwrap();
        let b = pool.allocate(2).unwrap();
        assert_eq!(b.handle.parts().unwrap().1, 1);
        let freer = spawn_with(&pool, move |pool| pool.free(b.handle).unwrap());
        let churner = spawn_with(&pool, |pool| {
            let c = pool.allocate(3).unwrap();
            pool.free(c.handle).unwrap()
        });
        assert_eq!(freer.join().unwrap(), Some(2));
        assert_eq!(churner.join().unwrap(), Some(3));
        check_and_drain(&pool, &[(a, 1)]);
    });
}

/// A batch allocation (chains from two subpools) races with a single one.
#[test]
fn a_batch_allocation_races_with_a_single_one() {
    loom::model(|| {
        let pool = pool(3, 1, 2);
        let batch = spawn_with(&pool, |pool| pool.allocate_many(2, || 7).unwrap());
        let single = spawn_with(&pool, |pool| pool.allocate(8).unwrap());
        let mut held: Vec<(Lease, u64)> =
            batch.join().unwrap().into_iter().map(|l| (l, 7)).collect();
        held.push((single.join().unwrap(), 8));
        check_and_drain(&pool, &held);
    });
}

/// A batch free that empties a subpool races with an allocation (which may
/// come first and find the pool full) and a lookup of a freed address.
#[test]
fn a_batch_free_races_with_an_allocation_and_a_lookup() {
    loom::model(|| {
        let pool = pool(3, 1, 2);
        let a = pool.allocate(1).unwrap();
        let b = pool.allocate(2).unwrap();
        let c = pool.allocate(3).unwrap();
        let freer = spawn_with(&pool, move |pool| {
            let mut released = Vec::new();
            pool.free_many(&[b.handle, c.handle], &mut released)
                .unwrap();
            released
        });
        let allocator = spawn_with(&pool, |pool| pool.allocate(4));
        let (seen, released) = pool.lookup_with(c.ip, c.port, |l, d| (l, *d));
        let mut returned = freer.join().unwrap();
        let d = match allocator.join().unwrap() {
            Ok(d) => Some(d),
            Err(Error::Exhausted(_)) => None,
            Err(error) => panic!("{error:?}"),
        };
        if let Some(seen) = seen {
            assert!(
                seen == (c, 3) || Some(seen) == d.map(|d| (d, 4)),
                "{seen:?}"
            );
        }
        returned.extend(released);
        returned.sort_unstable();
        assert_eq!(
            returned,
            vec![2, 3],
            "each freed lease's data handed back once"
        );
        let mut held = vec![(a, 1)];
        held.extend(d.map(|d| (d, 4)));
        check_and_drain(&pool, &held);
    });
}

/// A lease is counted before it is published: another thread that looks
/// it up and frees it at once never finds `len()` without it (it would
/// wrap below zero), whether it came from a single or a batch allocation.
#[test]
fn a_lease_freed_as_soon_as_it_is_published_was_counted() {
    for batch in [false, true] {
        loom::model(move || {
            let pool = pool(1, 1, 1);
            let allocator = spawn_with(&pool, move |pool| {
                if batch {
                    pool.allocate_many(1, || 5).unwrap()[0]
                } else {
                    pool.allocate(5).unwrap()
                }
            });
            let ip = Ipv4Addr::new(10, 0, 0, 1);
            let (seen, released) = pool.lookup_with(ip, 1000, |lease, _| lease);
            assert_eq!(released, None);
            assert!(pool.len() <= 1, "len {}", pool.len());
            let freed_here = match seen {
                Some(lease) => pool.free(lease.handle).unwrap().is_some(),
                None => false,
            };
            assert!(pool.len() <= 1, "len {}", pool.len());
            let lease = allocator.join().unwrap();
            if !freed_here {
                assert_eq!(pool.free(lease.handle).unwrap(), Some(5));
            }
            assert!(pool.is_empty());
        });
    }
}

/// A port block: the free of its client's last lease (which releases the
/// block) races with an allocation for the same client (which may take a
/// block of it). The allocation ends in a block that still exists and is
/// the client's; a released block is logged once and gone.
#[test]
fn a_port_block_release_races_with_its_clients_allocation() {
    use crate::core::BlockEventKind;
    loom::model(|| {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let spec = PoolSpec::new("loom", ip, ip)
            .ports(1000, 1001)
            .initial_blocks(1)
            .client_block(1)
            .seed(1);
        let pool = Arc::new(Pool::<u64>::new(spec.build().unwrap()));
        let x = pool.allocate_for_at(1, 7, Some(0.0)).unwrap();
        let freer = spawn_with(&pool, move |pool| pool.free_at(x.handle, 0.0, Some(1.0)));
        let allocator = spawn_with(&pool, |pool| pool.allocate_for_at(2, 7, Some(1.0)));
        assert_eq!(freer.join().unwrap().unwrap(), Some(1));
        let y = allocator.join().unwrap().unwrap();
        let subpools = pool.subpools();
        let (_, id, _) = y.handle.parts().unwrap();
        let home = subpools
            .iter()
            .find(|s| s.id == id)
            .expect("y's block exists");
        assert_eq!(home.owner, Some(7));
        assert_eq!(pool.stats().live, 1);
        let events = pool.events();
        let assigned = events
            .iter()
            .filter(|e| e.kind == BlockEventKind::Assigned)
            .count();
        let released: Vec<u128> = events
            .iter()
            .filter(|e| e.kind == BlockEventKind::Released)
            .map(|e| e.first)
            .collect();
        assert_eq!(assigned, 1 + released.len(), "{events:?}");
        for first in released {
            assert!(subpools.iter().all(|s| s.first != first || s.id == id));
        }
        assert_eq!(pool.free(y.handle).unwrap(), Some(2));
        assert!(pool.subpools().is_empty());
    });
}

/// A store for the cluster models: one-address claims handed out in order,
/// every renewal lost.
struct LosingStore {
    next: loom::sync::atomic::AtomicU64,
    size: u64,
}

impl crate::core::Store for LosingStore {
    fn claim(&self) -> Result<Option<crate::core::Grant>, Error> {
        let epoch = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Ok((epoch <= self.size).then_some(crate::core::Grant {
            first: epoch - 1,
            count: 1,
            epoch,
        }))
    }
    fn release(&self, _: u64) -> Result<(), Error> {
        Ok(())
    }
    fn renew(&self, _: &[u64]) -> Result<Vec<u64>, Error> {
        Ok(Vec::new())
    }
    fn leave(&self, _: &[u64]) -> Result<(), Error> {
        Ok(())
    }
}

/// Two addresses (10.0.0.1, ports 1000-1001), one block per subpool, as the
/// one member of a `LosingStore` with room for both; no renewal thread.
fn losing_cluster_pool() -> Arc<Pool<u64>> {
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let spec = PoolSpec::new("loom", ip, ip)
        .ports(1000, 1001)
        .initial_blocks(1);
    let store = LosingStore {
        next: loom::sync::atomic::AtomicU64::new(0),
        size: 2,
    };
    Arc::new(
        Pool::with_store(
            spec.build().unwrap(),
            crate::core::Membership {
                store: Box::new(store),
                claim_ttl: std::time::Duration::from_secs(3600),
                renew_interval: std::time::Duration::ZERO,
            },
        )
        .unwrap(),
    )
}

/// A renewal that loses every claim (and so fences their subpools) races
/// with the free that empties one of them: whichever way it goes, a fenced
/// subpool without live leases does not stay behind unnoticed — the next
/// allocation's check drops it.
#[test]
fn a_fence_races_with_the_free_that_empties_the_subpool() {
    loom::model(|| {
        let pool = losing_cluster_pool();
        // Subpool 0 holds the lease; the threshold growth made subpool 1.
        let lease = pool.allocate(1).unwrap();
        let renewer = spawn_with(&pool, |pool| pool.renew().unwrap());
        let freer = spawn_with(&pool, move |pool| pool.free(lease.handle).unwrap());
        renewer.join().unwrap();
        assert_eq!(freer.join().unwrap(), Some(1));
        pool.fence_if_due();
        assert!(pool.is_empty());
        let left = pool.subpools();
        assert!(
            left.iter().all(|s| s.free < u64::from(s.blocks)),
            "an idle subpool stayed: {left:?}"
        );
    });
}

/// Hold-down in a cluster: a renewal that loses every claim (fencing their
/// subpools) races with an allocation whose first step ends the hold of
/// the one block of subpool 0 (the hold's end returns the block, which
/// empties the subpool). Whichever way it goes, a subpool with a held block
/// is neither deleted nor dropped before the hold ends; the allocation gets
/// a block of a subpool that served, or exhaustion when the renewal fenced
/// both (the store has no third address); and no subpool whose blocks are
/// all free stays behind once the next allocation's check ran.
#[test]
fn a_fence_races_with_the_end_of_a_hold_that_empties_the_subpool() {
    loom::model(|| {
        let pool = losing_cluster_pool();
        // Subpool 0 holds the lease; the threshold growth made subpool 1.
        let lease = pool.allocate_at(1, None).unwrap();
        assert_eq!(pool.free_at(lease.handle, 5.0, Some(0.0)).unwrap(), Some(1));
        assert_eq!((pool.held(), pool.subpools().len()), (1, 2));
        let renewer = spawn_with(&pool, |pool| pool.renew().unwrap());
        let allocator = spawn_with(&pool, |pool| pool.allocate_at(2, Some(10.0)));
        renewer.join().unwrap();
        let taken = allocator.join().unwrap();
        assert_eq!(pool.held(), 0);
        pool.fence_if_due();
        let left = pool.subpools();
        assert!(
            left.iter().all(|s| s.free < u64::from(s.blocks)),
            "an idle subpool stayed: {left:?}"
        );
        match taken {
            Ok(lease) => {
                let (_, id, _) = lease.handle.parts().unwrap();
                assert!(left.iter().any(|s| s.id == id), "{left:?}");
                assert_eq!(pool.free(lease.handle).unwrap(), Some(2));
            }
            Err(error) => {
                assert!(matches!(error, Error::Exhausted(_)), "{error:?}");
                assert!(left.is_empty(), "{left:?}");
            }
        }
    });
}

/// One IP, ports 1000..=1001, one subpool of both blocks (made by a warm
/// allocation and free), in `order`.
fn two_block_pool(order: crate::core::Order) -> Arc<Pool<u64>> {
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let spec = PoolSpec::new("loom", ip, ip)
        .ports(1000, 1001)
        .initial_blocks(2)
        .order(order)
        .seed(1);
    let pool = Arc::new(Pool::new(spec.build().unwrap()));
    let warm = pool.allocate(0).unwrap();
    pool.free(warm.handle).unwrap();
    pool
}

const ORDERS: [crate::core::Order; 3] = [
    crate::core::Order::Fifo,
    crate::core::Order::Lifo,
    crate::core::Order::Random,
];

/// `reserve` races with an allocation for the block it names (whichever
/// block a fresh take gets first): the reserve wins (its phantom is
/// discarded by the take, which takes the other block) or loses with
/// `NotLive` (the allocation made it live); the address is never leased
/// twice, and afterwards both addresses are leasable exactly once.
#[test]
fn a_reserve_races_with_an_allocation_for_its_block() {
    for order in ORDERS {
        loom::model(move || {
            let pool = two_block_pool(order);
            let allocator = spawn_with(&pool, |pool| pool.allocate(1).unwrap());
            let ip = Ipv4Addr::new(10, 0, 0, 1);
            let reserved = pool.reserve(ip, 1000, 2);
            let allocated = allocator.join().unwrap();
            let mut held = vec![(allocated, 1)];
            match reserved {
                Ok(lease) => {
                    assert_eq!(allocated.port, 1001, "the take discarded the phantom");
                    held.push((lease, 2));
                }
                Err(Error::NotLive(_)) => assert_eq!(allocated.port, 1000),
                Err(other) => panic!("{other:?}"),
            }
            check_and_drain(&pool, &held);
            let all = pool.allocate_many(2, || 3).unwrap();
            assert_ne!(all[0].port, all[1].port);
        });
    }
}

/// The lease of a reserved block (its phantom listed) is freed while an
/// allocation pops that phantom: the allocation gets a block and the freed
/// one is back exactly once (settled in place or pushed), in every order.
#[test]
fn a_reserved_lease_freed_races_with_an_allocation_popping_its_phantom() {
    for order in ORDERS {
        loom::model(move || {
            let pool = two_block_pool(order);
            let ip = Ipv4Addr::new(10, 0, 0, 1);
            let reserved = pool.reserve(ip, 1000, 2).unwrap();
            let freer = spawn_with(&pool, move |pool| pool.free(reserved.handle).unwrap());
            let allocator = spawn_with(&pool, |pool| pool.allocate(1).unwrap());
            assert_eq!(freer.join().unwrap(), Some(2));
            let allocated = allocator.join().unwrap();
            check_and_drain(&pool, &[(allocated, 1)]);
            let all = pool.allocate_many(2, || 3).unwrap();
            assert_ne!(all[0].port, all[1].port, "a block listed twice");
            assert!(matches!(pool.allocate(4), Err(Error::Exhausted(_))));
        });
    }
}

/// Two IPs of one port each, one block per subpool.
fn two_ip_pool() -> Arc<Pool<u64>> {
    let spec = PoolSpec::with_ranges(
        "loom",
        [(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))],
    )
    .ports(1000, 1000)
    .initial_blocks(1)
    .subpool_blocks(1)
    .seed(1);
    Arc::new(Pool::new(spec.build().unwrap()))
}

/// A drain of 10.0.0.1 races with the free that empties its subpool: the
/// subpool is deleted exactly once (by the drain, or by the free, which
/// waits for the writer lock), and never serves again while drained.
#[test]
fn a_drain_races_with_the_free_that_empties_its_subpool() {
    loom::model(|| {
        let pool = two_ip_pool();
        let a = pool.allocate(1).unwrap(); // subpool 0, 10.0.0.1
        let b = pool.allocate(2).unwrap(); // subpool 1, 10.0.0.2
        let first = Ipv4Addr::new(10, 0, 0, 1);
        let freer = spawn_with(&pool, move |pool| pool.free(a.handle).unwrap());
        pool.drain(first).unwrap();
        assert_eq!(freer.join().unwrap(), Some(1));
        let ids: Vec<u32> = pool.subpools().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![1], "the drained, empty subpool is gone");
        assert!(matches!(pool.allocate(3), Err(Error::Exhausted(_))));
        pool.undrain(first).unwrap();
        let again = pool.allocate(3).unwrap();
        assert_eq!(again.ip, std::net::IpAddr::V4(first));
        check_and_drain(&pool, &[(b, 2), (again, 3)]);
    });
}

/// An undrain races with an allocation. One subpool holds both addresses
/// (10.0.0.1 live, 10.0.0.2 free); draining 10.0.0.2 fences it, so the
/// allocation finds nothing to serve (`Exhausted`, before the undrain) or
/// the reopened subpool's free block (after it); nothing is lost.
#[test]
fn an_undrain_races_with_an_allocation() {
    loom::model(|| {
        let spec = PoolSpec::with_ranges(
            "loom",
            [(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))],
        )
        .ports(1000, 1000)
        .initial_blocks(2)
        .seed(1);
        let pool = Arc::new(Pool::<u64>::new(spec.build().unwrap()));
        let a = pool.allocate(1).unwrap();
        let second = Ipv4Addr::new(10, 0, 0, 2);
        pool.drain(second).unwrap();
        let allocator = spawn_with(&pool, |pool| pool.allocate(2));
        pool.undrain(second).unwrap();
        match allocator.join().unwrap() {
            Ok(lease) => {
                assert_eq!(lease.ip, std::net::IpAddr::V4(second));
                check_and_drain(&pool, &[(a, 1), (lease, 2)]);
            }
            Err(Error::Exhausted(_)) => check_and_drain(&pool, &[(a, 1)]),
            Err(other) => panic!("{other:?}"),
        }
    });
}
