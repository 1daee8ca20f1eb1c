//! Criterion benches of the Rust core beside its anchors, in one run:
//! `crossbeam_queue::ArrayQueue<u32>` preloaded with block ids (one shared
//! lock-free free list), `sharded_slab::Slab` and `slab::Slab` behind a
//! `std::sync::Mutex`. `benches/report.py` reads the estimates criterion
//! writes under `target/criterion/` and states every natpool case as a
//! ratio to its anchors.
//!
//! Groups (each id is `group/case`):
//! * `pair`: one allocate + free on one thread.
//! * `threads`: pairs on 1 or 2 threads; the time per iteration is the wall
//!   time for one pair on *each* thread, so aggregate throughput is
//!   `threads / time`. `natpool_own_pools` gives each thread its own pool
//!   (its own subpools); `natpool_shared_pool` makes both threads allocate
//!   from one pool, where the allocation order (lowest subpool id with a
//!   free block) has them contend on one free-list head.
//! * `cross_thread`: one thread allocates, another frees (batches of 256
//!   handed over a bounded channel); time per lease.
//! * `subpool`: allocate + free that creates and deletes a subpool of 1024
//!   blocks each time.
//! * `lookup`: a hit on a random live lease with 10, 1,000 and 100,000
//!   subpools, and a miss outside every subpool.
//! * `policies`: the `pair` of natpool in each reuse order (`fifo`, the
//!   default, `lifo`, `random`) and in FIFO order with a hold-down
//!   (`fifo_hold`, holds of 100 µs on the monotonic clock), each a ratio to
//!   the default order's pair of the same run.
//! * `snapshot`: `snapshot()` of a pool with 1,000,000 live leases (a /16,
//!   16 subpools of 65,536 blocks: 9.6 MB), and `restore` of those bytes
//!   (issue 12's target: each under 1 s).

use std::hint::black_box;
use std::sync::mpsc::sync_channel;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use crossbeam_queue::ArrayQueue;
use std::net::Ipv4Addr;

use natpool::{Clock, Handle, Order, Pool, PoolSpec};

#[path = "common/shaped.rs"]
mod shaped;
#[path = "common/warm.rs"]
mod warm;
use warm::{pool_with, warm_pool, BLOCKS, LAST_IP};

const BATCH: usize = 256;

fn array_queue() -> ArrayQueue<u32> {
    let queue = ArrayQueue::new(BLOCKS as usize);
    for id in 0..BLOCKS {
        queue.push(id).unwrap();
    }
    queue
}

fn mutex_slab() -> Mutex<slab::Slab<u32>> {
    Mutex::new(slab::Slab::with_capacity(BLOCKS as usize))
}

fn natpool_pair(pool: &Pool<()>) {
    let lease = pool.allocate(()).unwrap();
    pool.free(black_box(lease.handle)).unwrap();
}

fn queue_pair(queue: &ArrayQueue<u32>) {
    let id = queue.pop().unwrap();
    queue.push(black_box(id)).unwrap();
}

fn mutex_slab_pair(slab: &Mutex<slab::Slab<u32>>) {
    let key = slab.lock().unwrap().insert(7);
    slab.lock().unwrap().remove(black_box(key));
}

fn sharded_pair(slab: &sharded_slab::Slab<u32>) {
    let key = slab.insert(7).unwrap();
    slab.remove(black_box(key));
}

fn pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("pair");
    let pool = warm_pool();
    group.bench_function("natpool", |b| b.iter(|| natpool_pair(&pool)));
    let queue = array_queue();
    group.bench_function("array_queue", |b| b.iter(|| queue_pair(&queue)));
    let slab = mutex_slab();
    group.bench_function("mutex_slab", |b| b.iter(|| mutex_slab_pair(&slab)));
    let sharded = sharded_slab::Slab::new();
    group.bench_function("sharded_slab", |b| b.iter(|| sharded_pair(&sharded)));
    group.finish();
}

/// Wall time for `iters` calls of `work(thread_index)` on each of
/// `threads` threads started together.
fn on_threads(threads: usize, iters: u64, work: &(dyn Fn(usize) + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    thread::scope(|scope| {
        for index in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    work(index);
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Leaving the scope joins every thread.
        start
    })
    .elapsed()
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    // Boxed apart, so the two pools' counters share no cache line.
    let pools = [Box::new(warm_pool()), Box::new(warm_pool())];
    for n in [1, 2] {
        group.bench_function(format!("natpool_own_pools_{n}"), |b| {
            b.iter_custom(|iters| on_threads(n, iters, &|i| natpool_pair(&pools[i])))
        });
    }
    let shared = warm_pool();
    group.bench_function("natpool_shared_pool_2", |b| {
        b.iter_custom(|iters| on_threads(2, iters, &|_| natpool_pair(&shared)))
    });
    let queue = array_queue();
    let slab = mutex_slab();
    let sharded = sharded_slab::Slab::new();
    for n in [1, 2] {
        group.bench_function(format!("array_queue_{n}"), |b| {
            b.iter_custom(|iters| on_threads(n, iters, &|_| queue_pair(&queue)))
        });
        group.bench_function(format!("mutex_slab_{n}"), |b| {
            b.iter_custom(|iters| on_threads(n, iters, &|_| mutex_slab_pair(&slab)))
        });
        group.bench_function(format!("sharded_slab_{n}"), |b| {
            b.iter_custom(|iters| on_threads(n, iters, &|_| sharded_pair(&sharded)))
        });
    }
    group.finish();
}

/// `iters` items taken by `take` on one thread and given back by `give` on
/// another, in batches of BATCH over a bounded channel.
fn hand_over<K: Send>(
    iters: u64,
    take: impl Fn() -> K + Sync,
    give: impl Fn(K) + Sync,
) -> Duration {
    let (sender, receiver) = sync_channel::<Vec<K>>(4);
    let start = Instant::now();
    thread::scope(|scope| {
        scope.spawn(|| {
            for batch in receiver {
                for item in batch {
                    give(item);
                }
            }
        });
        let mut left = iters;
        while left > 0 {
            let n = left.min(BATCH as u64);
            sender.send((0..n).map(|_| take()).collect()).unwrap();
            left -= n;
        }
        drop(sender);
    });
    start.elapsed()
}

fn cross_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_thread");
    let pool = warm_pool();
    group.bench_function("natpool", |b| {
        b.iter_custom(|iters| {
            hand_over(
                iters,
                || pool.allocate(()).unwrap().handle,
                |h: Handle| assert!(pool.free(h).is_ok()),
            )
        })
    });
    let queue = array_queue();
    group.bench_function("array_queue", |b| {
        b.iter_custom(|iters| {
            hand_over(iters, || queue.pop().unwrap(), |id| queue.push(id).unwrap())
        })
    });
    let slab = mutex_slab();
    group.bench_function("mutex_slab", |b| {
        b.iter_custom(|iters| {
            hand_over(
                iters,
                || slab.lock().unwrap().insert(7),
                |key| assert_eq!(slab.lock().unwrap().remove(key), 7),
            )
        })
    });
    let sharded = sharded_slab::Slab::new();
    group.bench_function("sharded_slab", |b| {
        b.iter_custom(|iters| {
            hand_over(
                iters,
                || sharded.insert(7u32).unwrap(),
                |key| assert!(sharded.remove(key)),
            )
        })
    });
    group.finish();
}

fn subpool(c: &mut Criterion) {
    let mut group = c.benchmark_group("subpool");
    // Subpool 0 (1024 blocks) is full and stays resident; each allocate
    // creates subpool 1 (1024 blocks, pre-initialized with addresses) and
    // each free deletes it again.
    let pool: Pool<()> = pool_with(1024, 1024, 1 << 20);
    let resident = pool.allocate_many(1024, || ()).unwrap();
    let lease = pool.allocate(()).unwrap();
    pool.free(lease.handle).unwrap();
    assert_eq!(
        pool.stats().subpools,
        1,
        "the pair deletes the subpool it created"
    );
    group.bench_function("create_delete_1024", |b| {
        b.iter(|| {
            let lease = pool.allocate(()).unwrap();
            pool.free(black_box(lease.handle)).unwrap();
        })
    });
    assert_eq!(pool.stats().subpools, 1);
    drop(resident);
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    const SUBPOOL: u32 = 16;
    for subpools in [10u32, 1_000, 100_000] {
        let blocks = u64::from(subpools * SUBPOOL);
        let pool: Pool<()> = pool_with(SUBPOOL, SUBPOOL, blocks);
        let leases = pool.allocate_many(blocks, || ()).unwrap();
        assert_eq!(pool.stats().subpools, u64::from(subpools));
        // A fixed pseudo-random walk over the live leases (an LCG).
        let mut x = 1u64;
        let probes: Vec<(std::net::IpAddr, u16)> = (0..4096)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let lease = leases[(x >> 33) as usize % leases.len()];
                (lease.ip, lease.port)
            })
            .collect();
        let mut i = 0;
        group.bench_function(format!("hit_{subpools}"), |b| {
            b.iter(|| {
                i = (i + 1) % probes.len();
                let (ip, port) = probes[i];
                let (found, _) =
                    pool.lookup_with(black_box(ip), black_box(port), |lease, _| lease.port);
                assert!(found.is_some());
            })
        });
        if subpools == 100_000 {
            let last = (LAST_IP, 65535); // the last address of the space, in no subpool
            group.bench_function(format!("miss_{subpools}"), |b| {
                b.iter(|| {
                    let (found, _) =
                        pool.lookup_with(black_box(last.0), black_box(last.1), |l, _| l.port);
                    assert!(found.is_none());
                })
            });
        }
    }
    group.finish();
}

/// The hold of `policies/fifo_hold`: at about 100 ns a pair, some 1,000
/// blocks are held at once, within the resident subpool (no subpool is
/// created), so the case measures the holds themselves: a clock read in each
/// free and allocation, the held queue, the release of the holds that ended.
const HOLD_DOWN: f64 = 100e-6;

/// A warm pool (as `warm_pool`) in `order`, with `hold_down`.
fn policy_pool(order: Order, hold_down: f64) -> Pool<()> {
    let spec = PoolSpec::new("bench", Ipv4Addr::new(10, 0, 0, 1), LAST_IP)
        .prefix(24)
        .initial_blocks(BLOCKS)
        .max_blocks(1 << 20)
        .subpool_blocks(BLOCKS)
        .order(order)
        .seed(1)
        .hold_down(hold_down);
    let pool = Pool::new(spec.build().unwrap());
    let lease = pool.allocate(()).unwrap();
    pool.free(lease.handle).unwrap();
    pool
}

fn policies(c: &mut Criterion) {
    let mut group = c.benchmark_group("policies");
    for (name, order, hold_down) in [
        ("fifo", Order::Fifo, 0.0),
        ("lifo", Order::Lifo, 0.0),
        ("random", Order::Random, 0.0),
        ("fifo_hold", Order::Fifo, HOLD_DOWN),
    ] {
        let pool = policy_pool(order, hold_down);
        group.bench_function(name, |b| b.iter(|| natpool_pair(&pool)));
    }
    group.finish();
}

/// Issue 12: the pair on a pool of 1,000 ranges and 10,000 exclusions
/// against the same pair on one range (the first subpool resident in both).
fn shapes(c: &mut Criterion) {
    let mut group = c.benchmark_group("shapes");
    let single = warm_pool();
    group.bench_function("single_range", |b| b.iter(|| natpool_pair(&single)));
    let shaped: Pool<()> = Pool::new(shaped::shaped_config(BLOCKS, 1 << 20));
    let lease = shaped.allocate(()).unwrap();
    shaped.free(lease.handle).unwrap();
    group.bench_function("shaped", |b| b.iter(|| natpool_pair(&shaped)));
    group.finish();
}

/// Live leases in the `snapshot` cases.
const SNAPSHOT_LEASES: u64 = 1_000_000;

fn snapshot(c: &mut Criterion) {
    let spec = PoolSpec::new(
        "bench",
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 255, 254),
    )
    .prefix(16)
    .initial_blocks(65_536)
    .max_blocks(1 << 40);
    let pool: Pool<()> = Pool::new(spec.build().unwrap());
    pool.allocate_many(SNAPSHOT_LEASES, || ()).unwrap();
    let bytes = pool.snapshot().unwrap();
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.bench_function("write_1m", |b| {
        b.iter(|| black_box(pool.snapshot().unwrap()))
    });
    group.bench_function("restore_1m", |b| {
        b.iter_with_large_drop(|| Pool::<()>::restore(&bytes, Clock::Monotonic).unwrap())
    });
    group.finish();
}

fn config() -> Criterion {
    // Short runs: `make bench` runs every case of both suites in one go.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = pair, threads, cross_thread, subpool, lookup, shapes, policies, snapshot
}
criterion_main!(benches);
