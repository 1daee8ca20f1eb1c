//! The pair's protocol floor: allocate + free with only the steps every
//! pool of this scheme takes, none of the contract's optional features, to
//! measure what the features cost and what bounds the pair without them.
//!
//! The floor's allocation finds the lowest subpool with a free block (the
//! availability map), loads it from its slot pinned, reserves and takes a
//! block from its free list, makes the block live, counts it and builds the
//! lease; its free splits the handle, loads the subpool pinned, releases the
//! block's state (the generation check and the one-winner CAS), returns the
//! block to its list and marks the subpool available if its count left zero.
//! It calls the pool's own functions for each step, so it measures the same
//! structures. Left out, each a test or more on every pool call: holds and
//! the clock, clients, clusters, homes, growth and its threshold, the
//! deletion rule, phantoms, and errors (a refusal is `None`).
//!
//! Test-only. `floor_pair_is_the_pools_pair` checks that the floor hands
//! out what the pool would; `make floor` times the floor, the pool's pair,
//! `ArrayQueue`'s and `Mutex<Slab>`'s side by side (`the_floor_timed`,
//! ignored by default), with a read of the monotonic clock beside them (a
//! held pair makes two: what bounds the hold-down's pair), and
//! `benches/notes.md` has its callgrind counts.

use crate::core::block::Release;
use crate::core::epoch;
use crate::core::free_list::Reserve;
use crate::core::handle::Handle;
use crate::core::pool::{Lease, Pool};

impl<T: Default + Send + Sync> Pool<T> {
    /// An allocation's protocol steps alone (`None`: no subpool with a free
    /// block, or the reservation lost a race; nothing is taken then).
    #[inline(never)]
    pub(super) fn floor_allocate(&self, data: T) -> Option<Lease> {
        let id = self.availability.first()?;
        epoch::pin(|guard| {
            let subpool = self.slots.get(id as usize)?.load(guard)?;
            let Some(Reserve::Taken {
                count, last, at, ..
            }) = subpool.free.try_reserve_up_to(1, &self.rng)
            else {
                return None;
            };
            self.tally.took(count);
            if last {
                self.refresh(subpool.id);
            }
            Some(self.take_reserved(subpool, at, data, None).lease())
        })
    }

    /// A free's protocol steps alone (`None`: `handle` is not live, or a
    /// reader completes the release; phantoms are left out, so a block
    /// `reserve` took is not returned here).
    #[inline(never)]
    pub(super) fn floor_free(&self, handle: Handle) -> Option<T> {
        let (generation, id, offset) = handle.parts()?;
        let slot = self.slots.get(id as usize)?;
        epoch::pin(|guard| {
            let subpool = slot.load(guard)?;
            let Release::Done(data) = subpool
                .blocks
                .get(offset as usize)?
                .release(generation, false)
            else {
                return None;
            };
            let available = subpool.free.give_back(&[offset], 0);
            if available == 1 {
                self.availability.set(subpool.id);
            }
            self.tally.returned(1);
            self.tally.ended(1);
            Some(data)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;
    use std::net::Ipv4Addr;
    use std::sync::Mutex;
    use std::time::Instant;

    use crossbeam_queue::ArrayQueue;

    use super::*;
    use crate::core::config::{Config, PoolSpec};
    use crate::core::policy::{Clock, Order};

    /// A pool whose first subpool exists (a pool creates it on its first
    /// allocation, which the floor does not do).
    fn pool<T: Default + Send + Sync>(order: Order, blocks: u32) -> Pool<T> {
        let pool = Pool::new(config(order, blocks));
        let lease = pool.allocate(T::default()).unwrap();
        pool.free(lease.handle).unwrap();
        pool
    }

    fn config(order: Order, blocks: u32) -> Config {
        PoolSpec::new(
            "floor",
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 254),
        )
        .prefix(24)
        .initial_blocks(blocks)
        .max_blocks(1 << 20)
        .order(order)
        .seed(1)
        .build()
        .unwrap()
    }

    #[test]
    fn floor_pair_is_the_pools_pair() {
        // Two pools in the same state: the floor's pairs on one and the
        // pool's on the other hand out the same leases (handle, address) in
        // the same order, and both end as they began.
        // Seeded: the random order's draws are the same in both.
        for order in [Order::Fifo, Order::Lifo, Order::Random] {
            let floor = pool::<u32>(order, 64);
            let pool = pool::<u32>(order, 64);
            let mut held = Vec::new();
            for i in 0..1_000u32 {
                let a = floor.floor_allocate(i).expect("a free block");
                let b = pool.allocate(i).unwrap();
                assert_eq!((a.handle, a.ip, a.port), (b.handle, b.ip, b.port));
                // Keep up to 20 leases live for a while, so the lists turn.
                held.push((a.handle, b.handle, i));
                if i % 3 != 0 || held.len() > 20 {
                    let (a, b, data) = held.remove(0);
                    assert_eq!(floor.floor_free(a), Some(data));
                    assert_eq!(pool.free(b).unwrap(), Some(data));
                    assert_eq!(floor.floor_free(a), None, "a stale handle");
                }
            }
            for (a, b, data) in held {
                assert_eq!(floor.floor_free(a), Some(data));
                assert_eq!(pool.free(b).unwrap(), Some(data));
            }
            assert_eq!((floor.len(), pool.len()), (0, 0));
            // The floor left the pool whole: the pool's own calls go on.
            let lease = floor.allocate(7).unwrap();
            assert_eq!(floor.free(lease.handle).unwrap(), Some(7));
        }
    }

    #[test]
    fn the_floor_refuses_without_taking() {
        let pool = pool::<()>(Order::Fifo, 2);
        let a = pool.floor_allocate(()).unwrap();
        let b = pool.floor_allocate(()).unwrap();
        assert!(
            pool.floor_allocate(()).is_none(),
            "no free block: no growth"
        );
        assert_eq!(pool.len(), 2);
        assert!(pool.floor_free(Handle(1 << 96)).is_none());
        pool.floor_free(a.handle).unwrap();
        pool.floor_free(b.handle).unwrap();
        assert_eq!(pool.len(), 0);
    }

    /// Pairs a timed loop runs (as `examples/pair_loop.rs`).
    const OPS: u32 = 1 << 20;

    #[inline(never)]
    fn floor_pairs(pool: &Pool<()>) {
        for _ in 0..OPS {
            let lease = pool.floor_allocate(()).unwrap();
            pool.floor_free(black_box(lease.handle)).unwrap();
        }
    }

    #[inline(never)]
    fn pool_pairs(pool: &Pool<()>) {
        for _ in 0..OPS {
            let lease = pool.allocate(()).unwrap();
            pool.free(black_box(lease.handle)).unwrap();
        }
    }

    #[inline(never)]
    fn queue_pairs(queue: &ArrayQueue<u32>) {
        for _ in 0..OPS {
            let id = queue.pop().unwrap();
            queue.push(black_box(id)).unwrap();
        }
    }

    /// `OPS` reads of the clock a pool reads by default.
    #[inline(never)]
    fn clock_reads(clock: &Clock) {
        for _ in 0..OPS {
            black_box(clock.now().unwrap());
        }
    }

    #[inline(never)]
    fn mutex_slab_pairs(slab: &Mutex<slab::Slab<u32>>) {
        for _ in 0..OPS {
            let key = slab.lock().unwrap().insert(7);
            slab.lock().unwrap().remove(black_box(key));
        }
    }

    /// The floor's pair, the pool's and the anchors' of `benches/core.rs`'s
    /// `pair` group (`ArrayQueue` pop + push, `Mutex<Slab>` insert +
    /// remove) and a read of the monotonic clock, in interleaved rounds (each
    /// round times them in turn, the order rotated): the
    /// median time of each and the median of the per-round ratios with
    /// their middle half, printed, and with `NATPOOL_FLOOR_OUT` set written
    /// there as JSON for `benches/report.py` (`make bench`). A measurement,
    /// never a check on time: `make floor` runs it alone.
    #[test]
    #[ignore = "a measurement: make floor"]
    fn the_floor_timed() {
        let floor = pool::<()>(Order::Fifo, 4096);
        let pool = pool::<()>(Order::Fifo, 4096);
        let queue = ArrayQueue::new(4096);
        for id in 0..4096 {
            queue.push(id).unwrap();
        }
        let slab = Mutex::new(slab::Slab::with_capacity(4096));
        let clock = Clock::Monotonic;
        let cases: [(&str, &dyn Fn()); 5] = [
            ("floor", &|| floor_pairs(&floor)),
            ("natpool", &|| pool_pairs(&pool)),
            ("array_queue", &|| queue_pairs(&queue)),
            ("mutex_slab", &|| mutex_slab_pairs(&slab)),
            ("clock_read", &|| clock_reads(&clock)),
        ];
        // `NATPOOL_FLOOR_ROUNDS=1` for callgrind (`benches/notes.md`).
        let rounds: usize =
            std::env::var("NATPOOL_FLOOR_ROUNDS").map_or(21, |n| n.parse().expect("a count"));
        let mut ns = vec![Vec::new(); cases.len()];
        for round in 0..rounds {
            for k in 0..cases.len() {
                let case = (round + k) % cases.len();
                let start = Instant::now();
                (cases[case].1)();
                ns[case].push(start.elapsed().as_secs_f64() * 1e9 / f64::from(OPS));
            }
        }
        // The median and the quartiles.
        let spread = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let at = |q: usize| v[(v.len() - 1) * q / 4];
            [at(2), at(1), at(3)]
        };
        // `times` times case `a`'s per round over case `b`'s.
        let ratio = |a: usize, b: usize, times: f64| {
            spread((0..rounds).map(|r| times * ns[a][r] / ns[b][r]).collect())
        };
        let json = |v: [f64; 3]| format!("[{:.4}, {:.4}, {:.4}]", v[0], v[1], v[2]);
        let times: Vec<String> = cases
            .iter()
            .zip(&ns)
            .map(|((name, _), ns)| format!("\"{name}\": {:.3}", spread(ns.clone())[0]))
            .collect();
        let ratios = [
            ("floor_over_queue", 0, 2, 1.0),
            ("natpool_over_queue", 1, 2, 1.0),
            ("floor_over_mutex_slab", 0, 3, 1.0),
            ("natpool_over_mutex_slab", 1, 3, 1.0),
            ("natpool_over_floor", 1, 0, 1.0),
            ("two_clock_reads_over_natpool", 4, 1, 2.0),
        ];
        let ratios: Vec<String> = ratios
            .iter()
            .map(|&(name, a, b, times)| format!("\"{name}\": {}", json(ratio(a, b, times))))
            .collect();
        let out = format!(
            "{{\"rounds\": {rounds}, \"ops\": {OPS}, \"ns\": {{{}}}, {}}}\n",
            times.join(", "),
            ratios.join(", ")
        );
        print!("{out}");
        if let Ok(path) = std::env::var("NATPOOL_FLOOR_OUT") {
            std::fs::write(path, out).expect("the floor's results written");
        }
    }
}
