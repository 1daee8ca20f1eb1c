//! Threads that share one pool (issue 13, item 2): a call that loses a
//! reservation CAS may take from a home subpool of its own (see
//! `src/core/pool/home.rs`). Overlapping calls must still never hand out an
//! address twice, and `Exhausted` comes only when every address is leased.
//!
//! Each test repeats its race many times (`NATPOOL_HOME_ROUNDS`, default
//! 100) on fresh pools.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::thread;

use natpool::{Error, Lease, Order, Pool, PoolSpec};

fn rounds() -> u64 {
    std::env::var("NATPOOL_HOME_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("NATPOOL_HOME_ROUNDS"))
        .unwrap_or(100)
}

/// `ports` addresses on one IP; `initial` blocks in subpool 0, `subpool` in
/// the later ones; no threshold growth.
fn pool(ports: u16, initial: u32, subpool: u32, order: Order) -> Arc<Pool<u64>> {
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let spec = PoolSpec::new("home", ip, ip)
        .ports(1000, 1000 + ports - 1)
        .initial_blocks(initial)
        .subpool_blocks(subpool)
        .order(order)
        .seed(3);
    Arc::new(Pool::new(spec.build().unwrap()))
}

/// Every thread allocates (singly, or in batches of `batch` when above 1)
/// until `Exhausted`; the leases of all threads together are returned.
fn fill_from(pool: &Arc<Pool<u64>>, threads: u64, batch: u64) -> Vec<Lease> {
    let start = Arc::new(Barrier::new(threads as usize));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let pool = Arc::clone(pool);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                let mut mine = Vec::new();
                start.wait();
                loop {
                    let got = if batch > 1 {
                        pool.allocate_many(batch, || t)
                    } else {
                        pool.allocate(t).map(|lease| vec![lease])
                    };
                    match got {
                        Ok(leases) => mine.extend(leases),
                        // A batch larger than what is left is refused whole:
                        // finish singly.
                        Err(Error::Exhausted(_)) if batch > 1 => {
                            while let Ok(lease) = pool.allocate(t) {
                                mine.push(lease);
                            }
                            return mine;
                        }
                        Err(Error::Exhausted(_)) => return mine,
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect()
}

fn check_full(pool: &Pool<u64>, leases: &[Lease], capacity: u64) {
    assert_eq!(leases.len() as u64, capacity, "Exhausted below capacity");
    let addresses: HashSet<(IpAddr, u16)> = leases.iter().map(|l| (l.ip, l.port)).collect();
    assert_eq!(addresses.len(), leases.len(), "an address leased twice");
    assert_eq!(pool.len(), capacity);
    assert!(matches!(pool.allocate(99), Err(Error::Exhausted(_))));
    let stats = pool.stats();
    assert_eq!(stats.free_blocks, 0);
    assert_eq!(stats.blocks, capacity);
}

fn free_all(pool: &Pool<u64>, leases: &[Lease]) {
    for lease in leases {
        assert!(pool.free(lease.handle).unwrap().is_some());
    }
    assert!(pool.is_empty());
}

/// 2 to 4 threads fill a pool from empty, with subpools created on the
/// way: exactly `capacity` leases, all distinct, then `Exhausted`; and
/// again after every lease was freed (homes left from the first fill).
#[test]
fn concurrent_fills_get_exactly_capacity() {
    for round in 0..rounds() {
        for order in [Order::Fifo, Order::Lifo, Order::Random] {
            let threads = 2 + round % 3;
            let pool = pool(512, 64, 32, order);
            let leases = fill_from(&pool, threads, 1);
            check_full(&pool, &leases, 512);
            free_all(&pool, &leases);
            let leases = fill_from(&pool, threads, 1);
            check_full(&pool, &leases, 512);
            free_all(&pool, &leases);
        }
    }
}

/// The same with batches (`allocate_many`: chains of up to 64 blocks per
/// reservation) racing with single allocations.
#[test]
fn concurrent_batch_fills_get_exactly_capacity() {
    for round in 0..rounds() {
        let threads = 2 + round % 3;
        let pool = pool(1000, 100, 50, Order::Fifo);
        let leases = fill_from(&pool, threads, 1 + round % 7);
        check_full(&pool, &leases, 1000);
        free_all(&pool, &leases);
    }
}

/// Threads churn (allocate, free) on one pool, where homes are claimed,
/// created and released; then they fill it: never a duplicate, exactly
/// capacity, and the pool's account agrees with the subpools it reports.
#[test]
fn churn_then_fill_stays_exact() {
    for round in 0..rounds() {
        let threads = 2 + round % 3;
        let pool = pool(256, 32, 16, Order::Fifo);
        let start = Arc::new(Barrier::new(threads as usize));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let pool = Arc::clone(&pool);
                let start = Arc::clone(&start);
                thread::spawn(move || {
                    start.wait();
                    let mut kept = Vec::new();
                    for i in 0..2_000u64 {
                        let lease = pool.allocate(t).unwrap();
                        if i % 50 == 0 {
                            kept.push(lease);
                        } else {
                            assert_eq!(pool.free(lease.handle).unwrap(), Some(t));
                        }
                    }
                    kept
                })
            })
            .collect();
        let kept: Vec<Lease> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        let stats = pool.stats();
        assert_eq!(stats.live, kept.len() as u64);
        let free: u64 = pool.subpools().iter().map(|s| s.free).sum();
        assert_eq!(free, stats.free_blocks);
        let mut leases = fill_from(&pool, threads, 1);
        leases.extend(kept);
        check_full(&pool, &leases, 256);
        free_all(&pool, &leases);
    }
}
