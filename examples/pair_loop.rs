//! A fixed loop for callgrind (`benches/notes.md`): 1,048,576 operations of
//! one kind, so instruction counts per operation can be compared.
//!
//! ```text
//! cargo build --release --example pair_loop
//! valgrind --tool=callgrind target/release/examples/pair_loop natpool|queue|slab|batch
//! ```
//!
//! `natpool`: allocate + free; `queue`: `ArrayQueue<u32>` pop + push;
//! `slab`: `Mutex<Slab>` insert + remove; `batch`: `allocate_many(1024)` +
//! `free_many`, per lease.

use std::hint::black_box;
use std::sync::Mutex;

use crossbeam_queue::ArrayQueue;
use std::net::Ipv4Addr;

use natpool::{Pool, PoolSpec};

const OPS: u64 = 1 << 20;
const BLOCKS: u32 = 4096;

fn pool() -> Pool<()> {
    let spec = PoolSpec::new(
        "loop",
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 254),
    )
    .prefix(24)
    .initial_blocks(BLOCKS)
    .max_blocks(1 << 20);
    Pool::new(spec.build().unwrap())
}

fn main() {
    let kind = std::env::args().nth(1).unwrap_or_default();
    match kind.as_str() {
        "natpool" => {
            let pool = pool();
            for _ in 0..OPS {
                let lease = pool.allocate(()).unwrap();
                pool.free(black_box(lease.handle)).unwrap();
            }
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
        _ => {
            eprintln!("usage: pair_loop natpool|batch|queue|slab");
            std::process::exit(2);
        }
    }
}
