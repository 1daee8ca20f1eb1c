//! Bytes of Rust heap memory natpool and its anchors hold, counted exactly
//! by a global allocator that wraps the system one (run by `cargo bench
//! --bench memory`; writes `target/bench-memory.json` for
//! `benches/report.py`).
//!
//! Measured:
//! * construction of a /16 and a /8 pool with ports 1024-65535: bytes and
//!   time of `Pool::new`, and after the first allocation (which creates the
//!   memory pool: one subpool of `initial_blocks` = 1024 blocks);
//! * 1,000,000 live leases: bytes per live lease (everything the pool holds
//!   beyond the empty pool, over the lease count), with `T = ()` and with an
//!   8-byte `T` (the slot the Python binding stores its `data` pointer in;
//!   the user's object itself is not counted);
//! * the anchors holding 1,000,000 entries: `ArrayQueue<u32>` of block ids,
//!   `slab::Slab<(u32, u16)>` and `sharded_slab::Slab<(u32, u16)>`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use std::net::Ipv4Addr;

use natpool::{Config, Pool, PoolSpec};

#[path = "common/shaped.rs"]
mod shaped;
use shaped::shaped_config;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LEASES: u64 = 1_000_000;

fn current() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Heap bytes `make` holds after it returns, and the peak above the start.
fn held<R>(make: impl FnOnce() -> R) -> (R, usize, usize) {
    let before = current();
    PEAK.store(before, Ordering::Relaxed);
    let value = make();
    (
        value,
        current() - before,
        PEAK.load(Ordering::Relaxed) - before,
    )
}

fn config(first: &str, last: &str, prefix: u8, max: u64) -> Config {
    let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
    PoolSpec::new("bench", ip(first), ip(last))
        .prefix(prefix)
        .initial_blocks(1024)
        .max_blocks(max)
        .build()
        .unwrap()
}

fn construction(out: &mut Vec<(String, f64)>, label: &str, make_config: impl Fn() -> Config) {
    let (pool, bytes, _) = held(|| Pool::<Option<NonZeroUsize>>::new(make_config()));
    let (lease, first_bytes, _) = held(|| pool.allocate(None).unwrap());
    black_box(lease);
    drop(pool);
    // Time: the fastest of 50 constructions (+ first allocation).
    let mut best = f64::INFINITY;
    let mut best_first = f64::INFINITY;
    for _ in 0..50 {
        let start = Instant::now();
        let pool = Pool::<Option<NonZeroUsize>>::new(make_config());
        let built = start.elapsed().as_secs_f64();
        black_box(pool.allocate(None).unwrap());
        best = best.min(built);
        best_first = best_first.min(start.elapsed().as_secs_f64());
    }
    out.push((format!("construct_{label}_bytes"), bytes as f64));
    out.push((
        format!("construct_{label}_first_allocation_bytes"),
        (bytes + first_bytes) as f64,
    ));
    out.push((format!("construct_{label}_seconds"), best));
    out.push((
        format!("construct_{label}_first_allocation_seconds"),
        best_first,
    ));
}

fn per_lease<T: Default + Send + Sync>(out: &mut Vec<(String, f64)>, label: &str) {
    let config = config("10.0.0.1", "10.0.255.254", 16, 1 << 40);
    let base = current();
    let pool = Pool::<T>::new(config);
    let empty = current() - base;
    let leases = pool.allocate_many(LEASES, T::default).unwrap();
    // The handles the caller keeps are the caller's memory, not the pool's.
    let count = leases.len();
    drop(leases);
    let full = current() - base;
    assert_eq!(pool.len(), LEASES);
    out.push((format!("natpool_{label}_pool_bytes"), full as f64));
    out.push((
        format!("natpool_{label}_bytes_per_lease"),
        (full - empty) as f64 / count as f64,
    ));
    drop(pool);
}

fn anchors(out: &mut Vec<(String, f64)>) {
    let n = LEASES as usize;
    let (queue, bytes, _) = held(|| {
        let queue = ArrayQueue::new(n);
        for id in 0..n as u32 {
            queue.push(id).unwrap();
        }
        queue
    });
    drop(queue);
    out.push((
        "array_queue_bytes_per_entry".into(),
        bytes as f64 / n as f64,
    ));
    let (slab, bytes, _) = held(|| {
        let mut slab = slab::Slab::new();
        for i in 0..n as u32 {
            slab.insert((i, 1024u16));
        }
        slab
    });
    drop(slab);
    out.push(("slab_bytes_per_entry".into(), bytes as f64 / n as f64));
    let (sharded, bytes, _) = held(|| {
        let slab = sharded_slab::Slab::new();
        for i in 0..n as u32 {
            slab.insert((i, 1024u16)).unwrap();
        }
        slab
    });
    drop(sharded);
    out.push((
        "sharded_slab_bytes_per_entry".into(),
        bytes as f64 / n as f64,
    ));
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not run this.
    let mut out = Vec::new();
    let max = 1 << 40;
    construction(&mut out, "16", || {
        config("10.0.0.1", "10.0.255.254", 16, max)
    });
    construction(&mut out, "8", || {
        config("10.0.0.1", "10.255.255.254", 8, max)
    });
    // Issue 12: an IPv6 /32 costs what an IPv4 /8 costs; 1,000 ranges and
    // 10,000 exclusions are built (validated, numbered) in milliseconds.
    construction(&mut out, "v6_32", || {
        let v6 = |text: &str| text.parse::<std::net::Ipv6Addr>().unwrap();
        PoolSpec::new(
            "bench",
            v6("2001:db8::"),
            v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
        )
        .prefix(32)
        .initial_blocks(1024)
        .max_blocks(max)
        .build()
        .unwrap()
    });
    construction(&mut out, "shaped", || shaped_config(1024, max));
    per_lease::<()>(&mut out, "unit");
    per_lease::<Option<NonZeroUsize>>(&mut out, "pointer");
    anchors(&mut out);
    let mut json = String::from("{\n");
    for (i, (key, value)) in out.iter().enumerate() {
        let comma = if i + 1 < out.len() { "," } else { "" };
        writeln!(json, "  \"{key}\": {value}{comma}").unwrap();
        println!("{key:48} {value}");
    }
    json.push_str("}\n");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-memory.json");
    std::fs::write(path, json).unwrap();
    println!("wrote {path}");
}
