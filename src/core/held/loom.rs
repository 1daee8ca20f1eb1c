//! loom models of hold-down (`src/core/held.rs`) in a tiny pool: a free
//! with a hold racing with an allocation that releases due holds, a lookup
//! that completes a held release, and `len()` while holds come and go. The
//! times are passed explicitly (`allocate_at`, `free_at`): the clock is
//! not what is checked. Run with `make loom`.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::core::loom_support::spawn_with;
use crate::core::policy::Order;
use crate::core::{Error, Lease, Pool, PoolSpec};
use loom::sync::Arc;

/// One subpool of `capacity` blocks on 10.0.0.1, ports 1000..
fn pool(capacity: u16, order: Order) -> Arc<Pool<u64>> {
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let spec = PoolSpec::new("loom", ip, ip)
        .ports(1000, 1000 + capacity - 1)
        .initial_blocks(u32::from(capacity))
        .order(order)
        .seed(1);
    Arc::new(Pool::new(spec.build().unwrap()))
}

/// Free `handle` with a hold ending at `end` (a hold of 1 s taken at `end - 1`).
fn free_until(
    pool: &Pool<u64>,
    handle: crate::core::Handle,
    end: f64,
) -> Result<Option<u64>, Error> {
    pool.free_at(handle, 1.0, Some(end - 1.0))
}

/// The pool's counters agree with the leases we hold and the held count.
fn check(pool: &Pool<u64>, live: &[Lease], held: u64) {
    let addresses: HashSet<(std::net::IpAddr, u16)> = live.iter().map(|l| (l.ip, l.port)).collect();
    assert_eq!(addresses.len(), live.len(), "an address leased twice");
    let stats = pool.stats();
    assert_eq!((stats.live, stats.held), (live.len() as u64, held));
    let subpools = pool.subpools();
    let free: u64 = subpools.iter().map(|s| s.free).sum();
    let held_blocks: u64 = subpools.iter().map(|s| u64::from(s.held)).sum();
    assert_eq!(free, stats.free_blocks);
    assert_eq!(held_blocks, held);
    assert_eq!(stats.live + stats.held + stats.free_blocks, stats.blocks);
}

/// `a` is held (its hold ended at 0); an allocation at time 1 releases it
/// and takes a block while `b` is freed with a hold ending at `b_end`. Every
/// outcome leaves each block live, held or free exactly once; a hold ending
/// after 1 is never released by that allocation.
#[test]
fn a_free_with_a_hold_races_with_an_allocation_releasing_due_holds() {
    for (order, b_end) in [(Order::Fifo, 5.0), (Order::Fifo, 0.5), (Order::Lifo, 0.5)] {
        loom::model(move || {
            let pool = pool(3, order);
            let a = pool.allocate_at(1, None).unwrap();
            let b = pool.allocate_at(2, None).unwrap();
            assert_eq!(free_until(&pool, a.handle, 0.0).unwrap(), Some(1));
            let allocator = spawn_with(&pool, |pool| pool.allocate_at(3, Some(1.0)).unwrap());
            let freer = spawn_with(&pool, move |pool| free_until(pool, b.handle, b_end));
            let c = allocator.join().unwrap();
            assert_eq!(freer.join().unwrap().unwrap(), Some(2));
            let b_held = pool.held();
            // a's hold was due: it is released; b's is released only when due.
            assert!(b_held <= 1);
            if b_end > 1.0 {
                assert_eq!(b_held, 1);
            }
            check(&pool, &[c], b_held);
            // Everything comes back at a late enough time.
            let rest = pool.allocate_many_at(2, || 0, Some(9.0)).unwrap();
            let mut all: Vec<Lease> = rest;
            all.push(c);
            check(&pool, &all, 0);
        });
    }
}

/// A free with a hold races with a lookup of the same lease: the data comes
/// back exactly once (to the free or to the lookup that completes the
/// release), and the block ends held either way, not free.
#[test]
fn a_lookup_completes_a_held_release() {
    loom::model(|| {
        let pool = pool(1, Order::Fifo);
        let x = pool.allocate_at(7, None).unwrap();
        let reader = spawn_with(&pool, move |pool| {
            pool.lookup_with(x.ip, x.port, |lease, data| (lease, *data))
        });
        let freed = free_until(&pool, x.handle, 5.0).unwrap();
        let (seen, released) = reader.join().unwrap();
        if let Some(seen) = seen {
            assert_eq!(seen, (x, 7));
        }
        let returned: Vec<u64> = freed.into_iter().chain(released).collect();
        assert_eq!(returned, vec![7], "released exactly once");
        check(&pool, &[], 1);
        assert!(matches!(
            pool.allocate_at(8, Some(1.0)),
            Err(Error::Exhausted(_))
        ));
        let again = pool.allocate_at(8, Some(5.0)).unwrap();
        assert_eq!((again.ip, again.port), (x.ip, x.port));
        check(&pool, &[again], 0);
    });
}

/// `len()` never counts fewer than the leases live while another thread
/// allocates, holds and re-allocates a block (its hold released by its own
/// next allocation): `p` is live throughout.
#[test]
fn len_counts_every_live_lease_while_holds_come_and_go() {
    loom::model(|| {
        let pool = pool(2, Order::Fifo);
        let p = pool.allocate_at(1, None).unwrap();
        let churn = spawn_with(&pool, |pool| {
            let y = pool.allocate_at(2, None).unwrap();
            free_until(pool, y.handle, 0.0).unwrap();
            pool.allocate_at(3, Some(1.0)).unwrap()
        });
        let reader = spawn_with(&pool, |pool| {
            let stats = pool.stats();
            (pool.len(), stats.live, stats.held)
        });
        let (len, live, held) = reader.join().unwrap();
        assert!(len >= 1 && live >= 1, "len {len}, live {live}");
        assert!(held <= 1);
        let z = churn.join().unwrap();
        check(&pool, &[p, z], 0);
    });
}
