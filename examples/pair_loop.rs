//! A fixed loop for callgrind (`benches/notes.md`): 1,048,576 operations of
//! one kind, so instruction counts per operation can be compared.
//!
//! ```text
//! cargo build --release --example pair_loop
//! valgrind --tool=callgrind target/release/examples/pair_loop natpool|queue|slab|batch
//! ```
//!
//! `natpool`: allocate + free (FIFO, the default order); `lifo`, `random`:
//! the same in those orders; `hold`: FIFO with a 100 µs hold-down, timed by
//! a custom clock that advances 50 ns a read (deterministic, so the counts
//! repeat: about 1,000 blocks held in the steady state); `queue`:
//! `ArrayQueue<u32>` pop + push; `slab`: `Mutex<Slab>` insert + remove;
//! `batch`: `allocate_many(1024)` + `free_many`, per lease; `subpool`: the
//! pair of `benches/core.rs`'s `subpool` group, in which each allocation
//! creates a subpool of 1024 blocks and each free deletes it (65,536 pairs,
//! not `OPS`: a pair is some microseconds).
//!
//! A second argument sets the blocks of the pair modes' pool (default
//! 4096): `pair_loop random 65536` is the random order over a pool whose
//! blocks outgrow the caches, as `benches/bench_pair.py`'s pool.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_queue::ArrayQueue;
use std::net::Ipv4Addr;

use natpool::{Clock, Order, Pool, PoolSpec};

const OPS: u64 = 1 << 20;
const BLOCKS: u32 = 4096;

fn pool() -> Pool<()> {
    Pool::new(spec(Order::Fifo, 0.0))
}

/// The pair modes' blocks: the second argument, else `BLOCKS`.
fn blocks() -> u32 {
    std::env::args()
        .nth(2)
        .map_or(BLOCKS, |blocks| blocks.parse().expect("blocks: a number"))
}

fn spec(order: Order, hold_down: f64) -> natpool::Config {
    let spec = PoolSpec::new(
        "loop",
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 254),
    )
    .prefix(24)
    .initial_blocks(blocks())
    .max_blocks(1 << 20)
    .order(order)
    .hold_down(hold_down);
    spec.build().unwrap()
}

fn pairs(pool: &Pool<()>) {
    for _ in 0..OPS {
        let lease = pool.allocate(()).unwrap();
        pool.free(black_box(lease.handle)).unwrap();
    }
}

fn main() {
    let kind = std::env::args().nth(1).unwrap_or_default();
    match kind.as_str() {
        "natpool" => pairs(&pool()),
        "lifo" => pairs(&Pool::new(spec(Order::Lifo, 0.0))),
        "random" => pairs(&Pool::new(spec(Order::Random, 0.0))),
        "hold" => {
            static READS: AtomicU64 = AtomicU64::new(0);
            let clock = Clock::Custom(Box::new(|| {
                // One thread reads it: a load and a store, no locked instruction.
                let reads = READS.load(Ordering::Relaxed);
                READS.store(reads + 1, Ordering::Relaxed);
                reads as f64 * 50e-9
            }));
            pairs(&Pool::with_clock(spec(Order::Fifo, 100e-6), clock));
        }
        "batch" => {
            let pool = pool();
            for _ in 0..OPS / 1024 {
                let leases = pool.allocate_many(1024, || ()).unwrap();
                let handles: Vec<_> = leases.iter().map(|lease| lease.handle).collect();
                let mut released = Vec::with_capacity(handles.len());
                pool.free_many(&handles, &mut released).unwrap();
                black_box(released);
            }
        }
        "queue" => {
            let queue = ArrayQueue::new(BLOCKS as usize);
            for id in 0..BLOCKS {
                queue.push(id).unwrap();
            }
            for _ in 0..OPS {
                let id = queue.pop().unwrap();
                queue.push(black_box(id)).unwrap();
            }
        }
        "slab" => {
            let slab = Mutex::new(slab::Slab::with_capacity(BLOCKS as usize));
            for _ in 0..OPS {
                let key = slab.lock().unwrap().insert(7u32);
                slab.lock().unwrap().remove(black_box(key));
            }
        }
        "subpool" => {
            let spec = PoolSpec::new(
                "loop",
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 254),
            )
            .prefix(24)
            .initial_blocks(1024)
            .subpool_blocks(1024)
            .max_blocks(1 << 20);
            let pool: Pool<()> = Pool::new(spec.build().unwrap());
            let resident = pool.allocate_many(1024, || ()).unwrap();
            for _ in 0..OPS / 16 {
                let lease = pool.allocate(()).unwrap();
                pool.free(black_box(lease.handle)).unwrap();
            }
            assert_eq!(pool.stats().subpools, 1, "each free deleted the subpool");
            drop(resident);
        }
        _ => {
            eprintln!("usage: pair_loop natpool|lifo|random|hold|batch|queue|slab|subpool");
            std::process::exit(2);
        }
    }
}
