//! Cross-thread stress of the core pool near exhaustion, checked by an
//! independent atomic bitmap of live addresses: an address handed out while
//! its bit is set fails at once. Threads allocate (singly and in batches),
//! free their own leases (singly and in batches, with and without holds),
//! hand leases to other threads that free them, and look up random
//! addresses; at the end the accounting must be exact. With holds, the pool
//! is timed by a shared tick counter (one tick per operation of any thread)
//! and an address must never be handed out before the tick at which the test
//! recorded its hold to end.
//!
//! `cargo test` runs a short bounded run for N = 2, 4 and 8 threads, in each
//! reuse order; `make stress` runs it longer (`NATPOOL_STRESS_OPS`
//! operations per thread, release build). `NATPOOL_STRESS_SEED` picks the
//! random streams.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use std::net::{IpAddr, Ipv4Addr};

use natpool::{Clock, Error, Lease, Order, Pool, PoolSpec};

type Data = u64;

/// xorshift64*: a small deterministic stream per thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.replace('_', "").parse().expect(name))
        .unwrap_or(default)
}

/// Which addresses are live, kept by the test, not the pool.
struct LiveMap(Vec<AtomicU64>);

impl LiveMap {
    fn new(addresses: u64) -> Self {
        LiveMap(
            (0..addresses.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    fn set(&self, index: u64) {
        let bit = 1 << (index % 64);
        let before = self.0[(index / 64) as usize].fetch_or(bit, Ordering::AcqRel);
        assert_eq!(before & bit, 0, "address {index} handed out while live");
    }

    fn clear(&self, index: u64) {
        let bit = 1 << (index % 64);
        let before = self.0[(index / 64) as usize].fetch_and(!bit, Ordering::AcqRel);
        assert_ne!(before & bit, 0, "address {index} freed while not live");
    }

    fn get(&self, index: u64) -> bool {
        self.0[(index / 64) as usize].load(Ordering::Acquire) & 1 << (index % 64) != 0
    }

    fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|w| u64::from(w.load(Ordering::Acquire).count_ones()))
            .sum()
    }
}

struct Shared {
    pool: Pool<Data>,
    live: LiveMap,
    /// The pool's clock: one tick per operation.
    tick: Arc<AtomicU64>,
    /// Per address: the tick before which it must not be handed out again.
    ends: Vec<AtomicU64>,
    holds: bool,
    /// Leases handed from one thread to another, to be freed there.
    handoff: Mutex<Vec<(Lease, Data)>>,
    /// Data values handed back by `free`, `free_many`, or (counted at the
    /// end, from `completed`) a lookup that completed a deferred release.
    returned: AtomicU64,
    allocated: AtomicU64,
    exhausted: AtomicU64,
    /// Data a lookup got back by completing a deferred release. A failed
    /// `allocate_many` gives back the leases it took, which lookups could
    /// see meanwhile: a lookup may complete such a release and get data
    /// that was never handed out, so each is sorted out at the end, once
    /// `failed_batches` is complete.
    completed: Mutex<Vec<Data>>,
    /// One bit per (thread, operation): an `allocate_many` that failed.
    failed_batches: LiveMap,
    ops: u64,
}

impl Shared {
    fn batch_bit(&self, data: Data) -> u64 {
        (data >> 48) * self.ops + ((data >> 8) & ((1 << 40) - 1))
    }

    /// Whether `data` was made by an `allocate_many` that failed (a batch's
    /// data has a nonzero low byte, a single allocation's a zero one).
    fn made_by_failed_batch(&self, data: Data) -> bool {
        data & 0xff != 0 && self.failed_batches.get(self.batch_bit(data))
    }
}

impl Shared {
    fn index(&self, lease: &Lease) -> u64 {
        index_of(lease.ip, lease.port)
    }

    /// A lease handed out: its address is not live, and its hold ended.
    fn handed_out(&self, lease: &Lease) -> u64 {
        let index = self.index(lease);
        self.live.set(index);
        let now = self.tick.load(Ordering::Acquire);
        let end = self.ends[index as usize].load(Ordering::Acquire);
        assert!(
            now >= end,
            "address {index} handed out at tick {now}, held until {end}"
        );
        index
    }

    /// A hold for a free: none, or 1..64 ticks (with holds).
    fn hold(&self, rng: &mut Rng) -> u64 {
        if self.holds && rng.below(2) == 0 {
            1 + rng.below(64)
        } else {
            0
        }
    }

    /// Record that `lease` is freed with `hold`: its live bit is cleared
    /// and its hold's end set first, since the address may be handed out
    /// again as soon as the free lands. (The pool's end is at least this
    /// one: it reads the clock later.)
    fn freeing(&self, lease: &Lease, hold: u64) {
        let index = self.index(lease);
        let now = self.tick.load(Ordering::Acquire);
        self.ends[index as usize].store(now + hold, Ordering::Release);
        self.live.clear(index);
    }

    /// Free a lease this thread owns, holding it `hold` ticks.
    fn free(&self, lease: &Lease, data: Data, hold: u64) {
        self.freeing(lease, hold);
        match self.pool.free_with_hold(lease.handle, hold as f64) {
            Ok(Some(returned)) => {
                assert_eq!(returned, data);
                self.returned.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {} // a lookup in flight hands the data back
            Err(error) => panic!("freeing a live lease failed: {error:?}"),
        }
    }
}

const FIRST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const FIRST_PORT: u16 = 2000;
const PORTS: u64 = 64;

fn new_pool(order: Order, tick: &Arc<AtomicU64>) -> Pool<Data> {
    // 4 IPs x 64 ports = 256 addresses; subpools of 8 after an initial 16.
    let spec = PoolSpec::new("stress", FIRST_IP, Ipv4Addr::new(10, 0, 0, 4))
        .prefix(24)
        .ports(FIRST_PORT, FIRST_PORT + PORTS as u16 - 1)
        .initial_blocks(16)
        .max_blocks(256)
        .subpool_blocks(8)
        .grow_threshold(4)
        .order(order)
        .seed(7);
    let tick = Arc::clone(tick);
    let clock = Clock::Custom(Box::new(move || tick.load(Ordering::Acquire) as f64));
    Pool::with_clock(spec.build().unwrap(), clock)
}

/// The index of (ip, port) in the pool's address space (ip-major).
fn index_of(ip: IpAddr, port: u16) -> u64 {
    let IpAddr::V4(ip) = ip else {
        panic!("an IPv4 pool leased {ip}")
    };
    u64::from(u32::from(ip) - u32::from(FIRST_IP)) * PORTS + u64::from(port - FIRST_PORT)
}

/// The (ip, port) at `index` of the pool's address space.
fn address_of(index: u64) -> (IpAddr, u16) {
    let ip = Ipv4Addr::from(u32::from(FIRST_IP) + (index / PORTS) as u32);
    (ip.into(), FIRST_PORT + (index % PORTS) as u16)
}

fn worker(
    shared: &Shared,
    id: u64,
    threads: u64,
    ops: u64,
    seed: u64,
) -> HashMap<u64, (Lease, Data)> {
    let mut rng = Rng::new(seed ^ id);
    let mut mine: HashMap<u64, (Lease, Data)> = HashMap::new();
    let addresses = shared.pool.config().address_count() as u64;
    let target = shared.pool.config().capacity() / threads;
    for op in 0..ops {
        shared.tick.fetch_add(1, Ordering::AcqRel);
        let roll = rng.below(100);
        // Lean towards allocating until this thread holds its share, so the
        // pool runs near exhaustion with several threads.
        let allocate_bias = if (mine.len() as u64) < target { 55 } else { 35 };
        if roll < allocate_bias {
            let data = id << 48 | op << 8;
            match shared.pool.allocate(data) {
                Ok(lease) => {
                    let index = shared.handed_out(&lease);
                    shared.allocated.fetch_add(1, Ordering::Relaxed);
                    assert!(mine.insert(index, (lease, data)).is_none());
                }
                Err(Error::Exhausted(_)) => {
                    shared.exhausted.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => panic!("allocate: {error:?}"),
            }
        } else if roll < 75 {
            if let Some(&index) = mine
                .keys()
                .nth(rng.below(mine.len().max(1) as u64) as usize)
            {
                let (lease, data) = mine.remove(&index).unwrap();
                let hold = shared.hold(&mut rng);
                shared.free(&lease, data, hold);
            }
        } else if roll < 82 {
            if let Some(&index) = mine.keys().next() {
                let held = mine.remove(&index).unwrap();
                shared.handoff.lock().unwrap().push(held);
            }
        } else if roll < 92 {
            let handed = shared.handoff.lock().unwrap().pop();
            if let Some((lease, data)) = handed {
                let hold = shared.hold(&mut rng);
                shared.free(&lease, data, hold);
            }
        } else if roll < 95 {
            let n = 1 + rng.below(8);
            let first = id << 48 | op << 8;
            let mut next = first;
            let data = || {
                next += 1;
                next
            };
            match shared.pool.allocate_many(n, data) {
                Ok(leases) => {
                    for (k, lease) in (1..).zip(leases) {
                        let index = shared.handed_out(&lease);
                        shared.allocated.fetch_add(1, Ordering::Relaxed);
                        assert!(mine.insert(index, (lease, first + k)).is_none());
                    }
                }
                Err(Error::Exhausted(_)) => {
                    shared.exhausted.fetch_add(1, Ordering::Relaxed);
                    shared.failed_batches.set(shared.batch_bit(first + 1));
                }
                Err(error) => panic!("allocate_many: {error:?}"),
            }
        } else if roll < 97 {
            let chosen: Vec<u64> = mine
                .keys()
                .take(1 + rng.below(8) as usize)
                .copied()
                .collect();
            let batch: Vec<(Lease, Data)> =
                chosen.iter().map(|i| mine.remove(i).unwrap()).collect();
            let hold = shared.hold(&mut rng);
            for (lease, _) in &batch {
                shared.freeing(lease, hold);
            }
            let handles: Vec<_> = batch.iter().map(|(lease, _)| lease.handle).collect();
            let mut returned = Vec::new();
            shared
                .pool
                .free_many_with_hold(&handles, hold as f64, &mut returned)
                .expect("free_many of live leases");
            for data in &returned {
                assert!(batch.iter().any(|(_, d)| d == data));
            }
            shared
                .returned
                .fetch_add(returned.len() as u64, Ordering::Relaxed);
        } else {
            let (ip, port) = address_of(rng.below(addresses));
            let (seen, released) = shared.pool.lookup_with(ip, port, |l, d| (l, *d));
            if let Some(data) = released {
                shared.completed.lock().unwrap().push(data);
            }
            if let Some((lease, data)) = seen {
                assert_eq!((lease.ip, lease.port), (ip, port));
                let index = index_of(ip, port);
                if let Some(held) = mine.get(&index) {
                    assert_eq!(*held, (lease, data), "lookup of our own lease");
                }
            }
        }
    }
    mine
}

fn stress(threads: u64, ops: u64, order: Order, holds: bool) {
    let seed = env_u64("NATPOOL_STRESS_SEED", 0x5eed);
    let tick = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        pool: new_pool(order, &tick),
        live: LiveMap::new(256),
        ends: (0..256).map(|_| AtomicU64::new(0)).collect(),
        tick,
        holds,
        handoff: Mutex::new(Vec::new()),
        completed: Mutex::new(Vec::new()),
        failed_batches: LiveMap::new(threads * ops),
        ops,
        returned: AtomicU64::new(0),
        allocated: AtomicU64::new(0),
        exhausted: AtomicU64::new(0),
    });
    let start = Arc::new(Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let shared = Arc::clone(&shared);
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                worker(&shared, id, threads, ops, seed)
            })
        })
        .collect();
    let mut held: Vec<(Lease, Data)> = Vec::new();
    for handle in handles {
        held.extend(handle.join().unwrap().into_values());
    }
    held.extend(shared.handoff.lock().unwrap().drain(..));

    // Exact accounting: the pool, the bitmap and the ledgers agree.
    let pool = &shared.pool;
    assert_eq!(pool.len(), held.len() as u64);
    assert_eq!(shared.live.count(), held.len() as u64);
    let allocated = shared.allocated.load(Ordering::Relaxed);
    let completed = std::mem::take(&mut *shared.completed.lock().unwrap());
    let rolled_back = completed
        .iter()
        .filter(|&&data| shared.made_by_failed_batch(data))
        .count() as u64;
    let returned = shared.returned.load(Ordering::Relaxed) + completed.len() as u64 - rolled_back;
    assert_eq!(
        allocated,
        returned + held.len() as u64,
        "data handed back once each"
    );
    let stats = pool.stats();
    let subpools = pool.subpools();
    assert_eq!(
        stats.blocks,
        subpools.iter().map(|s| u64::from(s.blocks)).sum::<u64>()
    );
    assert_eq!(
        stats.free_blocks,
        subpools.iter().map(|s| s.free).sum::<u64>()
    );
    assert_eq!(
        stats.held,
        subpools.iter().map(|s| u64::from(s.held)).sum::<u64>()
    );
    assert_eq!(stats.live + stats.held + stats.free_blocks, stats.blocks);
    for (lease, data) in &held {
        let (seen, _) = pool.lookup_with(lease.ip, lease.port, |l, d| (l, *d));
        assert_eq!(seen, Some((*lease, *data)));
        shared.free(lease, *data, 0);
    }
    assert!(pool.is_empty());
    // Every hold ends: the next allocation releases them all.
    shared.tick.fetch_add(1 << 20, Ordering::AcqRel);
    let probe = pool.allocate(0).unwrap();
    shared.handed_out(&probe);
    assert_eq!(pool.held(), 0);
    shared.free(&probe, 0, 0);
    assert!(pool
        .subpools()
        .iter()
        .all(|s| s.free == u64::from(s.blocks)));

    // Nothing leaked: every address can be leased once more, then no more.
    let all: Vec<(Lease, Data)> = (0..pool.config().capacity())
        .map(|i| {
            let lease = pool.allocate(i).unwrap();
            shared.handed_out(&lease);
            (lease, i)
        })
        .collect();
    assert!(matches!(pool.allocate(0), Err(Error::Exhausted(_))));
    for (lease, data) in &all {
        shared.free(lease, *data, 0);
    }
    assert_eq!(shared.live.count(), 0);
    eprintln!(
        "stress: {threads} threads x {ops} ops, {order:?}, holds {holds} (seed {seed:#x}): {allocated} allocations, {} exhaustion events, {rolled_back} data of failed batches given back through lookups",
        shared.exhausted.load(Ordering::Relaxed)
    );
}

fn ops() -> u64 {
    env_u64("NATPOOL_STRESS_OPS", 20_000)
}

#[test]
fn stress_two_threads() {
    stress(2, ops(), Order::Fifo, false);
    stress(2, ops(), Order::Lifo, true);
}

#[test]
fn stress_four_threads() {
    stress(4, ops(), Order::Lifo, false);
    stress(4, ops(), Order::Fifo, true);
}

#[test]
fn stress_eight_threads() {
    stress(8, ops(), Order::Fifo, false);
    stress(8, ops(), Order::Random, true);
}

#[test]
fn stress_four_threads_random_order() {
    stress(4, ops(), Order::Random, false);
}

/// Clients under threads: 4 threads allocate for 3 shared client keys in a
/// pool of port blocks with a quota, and free. A lease always lies in a
/// block its client owns; a client never has more than its quota live (the
/// test counts a lease after its allocation and uncounts it before its
/// free); at the end every block was released, once.
#[test]
fn stress_clients_with_port_blocks() {
    use natpool::BlockEventKind;
    const QUOTA: u64 = 6;
    let spec = PoolSpec::new("clients", FIRST_IP, Ipv4Addr::new(10, 0, 0, 4))
        .prefix(24)
        .ports(FIRST_PORT, FIRST_PORT + PORTS as u16 - 1)
        .initial_blocks(16)
        .subpool_blocks(8)
        .client_block(4)
        .client_quota(QUOTA)
        .seed(3);
    let pool: Arc<Pool<Data>> = Arc::new(Pool::new(spec.build().unwrap()));
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let ops = ops() / 4;
    let workers: Vec<_> = (0..4u64)
        .map(|id| {
            let (pool, counts) = (Arc::clone(&pool), Arc::clone(&counts));
            thread::spawn(move || {
                let mut rng = Rng::new(0xc11e ^ id);
                let mut mine: Vec<(Lease, u64)> = Vec::new();
                for op in 0..ops {
                    let client = rng.below(3);
                    if rng.below(2) == 0 || mine.is_empty() {
                        match pool.allocate_for(id << 32 | op, client) {
                            Ok(lease) => {
                                let live =
                                    counts[client as usize].fetch_add(1, Ordering::AcqRel) + 1;
                                assert!(live <= QUOTA, "client {client} has {live} leases");
                                let (_, subpool, _) = lease.handle.parts().unwrap();
                                let owner = pool
                                    .subpools()
                                    .iter()
                                    .find(|s| s.id == subpool)
                                    .map(|s| s.owner);
                                assert_eq!(
                                    owner,
                                    Some(Some(client)),
                                    "a lease outside its client's blocks"
                                );
                                mine.push((lease, client));
                            }
                            Err(Error::QuotaExceeded(_) | Error::Exhausted(_)) => {}
                            Err(error) => panic!("allocate_for: {error:?}"),
                        }
                    } else {
                        let (lease, client) =
                            mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        counts[client as usize].fetch_sub(1, Ordering::AcqRel);
                        pool.free(lease.handle).unwrap();
                    }
                }
                for (lease, client) in mine {
                    counts[client as usize].fetch_sub(1, Ordering::AcqRel);
                    pool.free(lease.handle).unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert!(pool.is_empty());
    assert!(pool.subpools().iter().all(|s| s.owner.is_none()));
    let events = pool.events();
    let assigned = events
        .iter()
        .filter(|e| e.kind == BlockEventKind::Assigned)
        .count();
    let released = events
        .iter()
        .filter(|e| e.kind == BlockEventKind::Released)
        .count();
    if pool.stats().events_dropped == 0 {
        assert_eq!(assigned, released, "every block released once");
    }
    assert!((0..3).all(|client| !pool.knows_client(client)));
}
