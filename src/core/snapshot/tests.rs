//! The codec and its checks: a rich pool's snapshot round-trips byte for
//! byte and through a restored pool, and every refusal path refuses
//! (`Error::Snapshot`, naming what it found), without a panic.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::identity::{self, shortest};
use super::*;
use crate::core::{Clock, Exclusion, Pool, PoolSpec};

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn v4(last: u8) -> u128 {
    u128::from(u32::from(Ipv4Addr::new(10, 0, 0, last)))
}

/// A clock the test sets.
fn clock() -> (Arc<AtomicU64>, Clock) {
    let now = Arc::new(AtomicU64::new(10f64.to_bits()));
    let read = Arc::clone(&now);
    (
        now,
        Clock::Custom(Box::new(move || {
            f64::from_bits(read.load(Ordering::Relaxed))
        })),
    )
}

fn set(now: &AtomicU64, value: f64) {
    now.store(value.to_bits(), Ordering::Relaxed);
}

/// A pool with every section: ranges and an exclusion, clients with port
/// blocks and events, held blocks, a reserved block's phantom, a drained IP
/// fencing a subpool, a generation floor.
fn rich() -> (Pool<u32>, Arc<AtomicU64>) {
    let config = PoolSpec::with_ranges("rich", [(ip(1), ip(2)), (ip(4), ip(6))])
        .exclude([Exclusion::ports(ip(5), 2, 2)])
        .ports(1, 4)
        .initial_blocks(3)
        .max_blocks(19)
        .subpool_blocks(2)
        .hold_down(2.0)
        .client_block(2)
        .client_quota(4)
        .order(Order::Random)
        .seed(11)
        .event_queue(2)
        .build()
        .unwrap();
    let (now, clock) = clock();
    let pool = Pool::with_clock(config, clock);
    let first = pool.allocate_for(1, 7).unwrap(); // port block: 10.0.0.1 ports 1-2
    pool.allocate_for(2, 9).unwrap(); // another client's block
    let shared: Vec<_> = (0..7).map(|i| pool.allocate(10 + i).unwrap()).collect();
    // Empty one shared subpool of two: deleted, a floor for its id.
    let (_, id, _) = shared[3].handle.parts().unwrap();
    for lease in shared.iter().filter(|l| l.handle.parts().unwrap().1 == id) {
        pool.free_with_hold(lease.handle, 0.0).unwrap();
    }
    set(&now, 11.0);
    pool.free(shared[0].handle).unwrap(); // held until 13
    pool.free_with_hold(first.handle, 0.5).unwrap(); // held until 11.5
    let free = pool
        .subpools()
        .into_iter()
        .find(|s| s.owner.is_none() && s.free > 0)
        .unwrap();
    let (address, port) = pool.config().space().address(free.first + 1);
    let _ = pool.reserve(Family::V4.ip(address), port, 99); // a phantom, if that block was free
    pool.drain(ip(5)).unwrap(); // fences the subpool of the phantom
    set(&now, 12.0);
    (pool, now)
}

fn image_of(pool: &Pool<u32>) -> Image {
    Image::decode(&pool.snapshot().unwrap()).unwrap()
}

#[test]
fn the_rich_pool_has_every_section() {
    let (pool, _) = rich();
    let image = image_of(&pool);
    assert!(!image.clients.is_empty() && !image.events.is_empty());
    assert!(!image.held.is_empty() && !image.floors.is_empty());
    assert!(!image.drained.is_empty() && !image.config.excluded.is_empty());
    assert!(image.subpools.iter().any(|s| s.fenced));
    assert!(image.subpools.iter().any(|s| s.owner.is_some()));
    let phantoms = image.subpools.iter().any(|s| {
        s.listed
            .iter()
            .any(|&offset| s.states[offset as usize] != Standing::Free)
    });
    assert!(phantoms, "a reserved block's phantom is listed");
}

#[test]
fn a_snapshot_round_trips_byte_for_byte_and_through_a_pool() {
    let (pool, now) = rich();
    let bytes = pool.snapshot().unwrap();
    assert_eq!(Image::decode(&bytes).unwrap().encode(), bytes);
    let (restored_now, clock) = clock();
    set(&restored_now, 12.0);
    let restored: Pool<u32> = Pool::restore(&bytes, clock).unwrap();
    assert_eq!(restored.snapshot().unwrap(), bytes);
    assert_eq!(restored.stats(), pool.stats());
    assert_eq!(restored.intervals(), pool.intervals());
    // Both continue alike: holds end, blocks are drawn, clients get blocks.
    for step in 0..12u32 {
        let time = 12.0 + f64::from(step) * 0.5;
        set(&now, time);
        set(&restored_now, time);
        let a = (pool.allocate(0), restored.allocate(0));
        assert_eq!(a.0.as_ref().ok(), a.1.as_ref().ok(), "step {step}");
        let b = (pool.allocate_for(0, 3), restored.allocate_for(0, 3));
        assert_eq!(b.0.as_ref().ok(), b.1.as_ref().ok(), "step {step}");
    }
    assert_eq!(pool.events(), restored.events());
    assert_eq!(restored.snapshot().unwrap(), pool.snapshot().unwrap());
}

/// The snapshot's bytes with the header's length and the checksum made to
/// fit (`body` without its checksum).
fn reseal(mut body: Vec<u8>) -> Vec<u8> {
    let length = (body.len() + 4) as u64;
    body[12..20].copy_from_slice(&length.to_le_bytes());
    let checksum = crc32fast::hash(&body);
    body.extend_from_slice(&checksum.to_le_bytes());
    body
}

fn refused_bytes(bytes: &[u8], words: &str) {
    match Pool::<u32>::restore(bytes, Clock::Monotonic) {
        Err(Error::Snapshot(message)) => {
            assert!(
                message.contains(words),
                "{message:?} does not say {words:?}"
            )
        }
        Err(other) => panic!("{other:?} is not a snapshot error ({words})"),
        Ok(_) => panic!("accepted; expected {words:?}"),
    }
}

fn refused(image: &Image, words: &str) {
    refused_bytes(&image.encode(), words);
}

/// `bytes` (a snapshot) with `patch` applied at `at`, resealed.
fn patched(bytes: &[u8], at: usize, patch: &[u8]) -> Vec<u8> {
    let mut body = bytes[..bytes.len() - 4].to_vec();
    body[at..at + patch.len()].copy_from_slice(patch);
    reseal(body)
}

/// Where `marker` (unique) is in `bytes`.
fn find(bytes: &[u8], marker: &[u8]) -> usize {
    let found: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, window)| *window == marker)
        .map(|(at, _)| at)
        .collect();
    assert_eq!(found.len(), 1, "the marker is not unique");
    found[0]
}

#[test]
fn the_header_and_checksum_are_checked_first() {
    let (pool, _) = rich();
    let bytes = pool.snapshot().unwrap();
    refused_bytes(&[], "truncated");
    refused_bytes(&bytes[..23], "truncated");
    let mut wrong = bytes.clone();
    wrong[0] = b'X';
    refused_bytes(&wrong, "magic");
    refused_bytes(&patched(&bytes, 8, &2u32.to_le_bytes()), "version 2");
    refused_bytes(&bytes[..bytes.len() - 1], "truncated or extended");
    let mut longer = bytes.clone();
    longer.push(0);
    refused_bytes(&longer, "truncated or extended");
    let mut flipped = bytes.clone();
    flipped[30] ^= 1;
    refused_bytes(&flipped, "checksum");
    refused_bytes(&reseal(bytes[..bytes.len() - 5].to_vec()), "truncated");
    let mut trailing = bytes[..bytes.len() - 4].to_vec();
    trailing.push(0);
    refused_bytes(&reseal(trailing), "after the last field");
}

#[test]
fn every_field_is_read_within_its_range() {
    let (pool, _) = rich();
    let image = image_of(&pool);
    let bytes = image.encode();
    let name = 20 + 4 + image.config.name.len();
    refused_bytes(&patched(&bytes, 20, &u32::MAX.to_le_bytes()), "truncated");
    refused_bytes(&patched(&bytes, 24, &[0xFF]), "not valid UTF-8");
    refused_bytes(&patched(&bytes, name, &[5]), "family 5");
    refused_bytes(&patched(&bytes, name + 1, &[2]), "the shape's form is 2");
    refused_bytes(&patched(&bytes, name + 2, &[1]), "nonzero legacy fields");
    let ranges = name + 2 + 33 + 4;
    refused_bytes(
        &patched(&bytes, ranges, &u64::MAX.to_le_bytes()),
        "truncated",
    );
    let after_ranges = ranges + 8 + 32 * image.config.ranges.len();
    let hold_down = after_ranges + 8 + 36 * image.config.excluded.len() + 24;
    refused_bytes(
        &patched(&bytes, hold_down, &(-0.0f64).to_le_bytes()),
        "-0.0",
    );
    refused_bytes(&patched(&bytes, hold_down + 8, &[3]), "order 3");
    refused_bytes(
        &patched(&bytes, hold_down + 9, &[0x10 | 8 | 2 | 1]),
        "unknown bits",
    );
    let options = hold_down + 9;
    refused_bytes(&patched(&bytes, options, &[8 | 2]), "seed is not set");
    refused_bytes(
        &patched(&bytes, options, &[8 | 1]),
        "client_quota is not set",
    );
    refused_bytes(
        &patched(&bytes, options, &[2 | 1]),
        "client_block is not set",
    );
    let shared = options + 1 + 28 + 16;
    refused_bytes(&patched(&bytes, shared, &[2]), "shared_created is 2");
    // A subpool's states, flags and block count.
    let marker = 0xDEAD_BEEF;
    let mut marked = image.clone();
    marked.subpools[0].generations[0] = marker;
    let marked_bytes = marked.encode();
    let generations = find(&marked_bytes, &marker.to_le_bytes());
    let n = marked.subpools[0].len();
    refused_bytes(
        &patched(&marked_bytes, generations + 4 * n, &[3]),
        "a block state is not",
    );
    refused_bytes(&patched(&marked_bytes, generations - 1, &[2]), "flags is 2");
    refused_bytes(
        &patched(&marked_bytes, generations - 9, &[0; 4]),
        "has 0 blocks",
    );
    refused_bytes(
        &patched(&marked_bytes, generations - 9, &u32::MAX.to_le_bytes()),
        "more than the body holds",
    );
    // A client's IP flag and an IP without its flag.
    let mut client = image.clone();
    let last = client.clients.len() - 1;
    client.clients[last].identity = identity::int(0xFEED_F00D);
    let client_bytes = client.encode();
    let flag = find(&client_bytes, &0xFEED_F00Du32.to_le_bytes()) + 5 + 16;
    refused_bytes(&patched(&client_bytes, flag, &[2]), "IP flag is 2");
    refused_bytes(&patched(&client_bytes, flag + 1, &[1]), "nonzero IP field");
    // An event's kind.
    let mut event = image.clone();
    event.events[0].time = 1234.5;
    let event_bytes = event.encode();
    let kind = find(&event_bytes, &1234.5f64.to_le_bytes()) + 8;
    refused_bytes(&patched(&event_bytes, kind, &[2]), "event kind 2");
}

#[test]
fn floats_are_finite_and_ips_of_the_family() {
    let (pool, _) = rich();
    let image = image_of(&pool);
    let mut bad = image.clone();
    bad.held[0].remaining = f64::NAN;
    refused(&bad, "remaining time is not a finite number");
    let mut bad = image.clone();
    bad.events[0].time = f64::INFINITY;
    refused(&bad, "event's time is not a finite number");
    let mut bad = image.clone();
    bad.config.ranges[0].0 = 1 << 32;
    refused(&bad, "not an IPv4 address");
    let mut bad = image.clone();
    bad.config.excluded[0].1 .0 = 1 << 40;
    refused(&bad, "not an IPv4 address");
}

#[test]
fn client_identities_must_be_canonical() {
    let (pool, _) = rich();
    let image = image_of(&pool);
    let with = |identity: Vec<u8>, words: &str| {
        let mut bad = image.clone();
        let last = bad.clients.len() - 1;
        bad.clients[last].identity = identity;
        refused(&bad, words);
    };
    with(vec![identity::NONE], "a client is None");
    with(vec![8], "client tag 8");
    with(vec![identity::INT, 2, 0, 0, 0, 5, 0], "shortest");
    with(vec![identity::INT, 2, 0, 0, 0, 0xFF, 0xFF], "shortest");
    with(vec![identity::INT, 0, 0, 0, 0], "shortest");
    let mut nan = vec![identity::FLOAT];
    nan.extend_from_slice(&f64::NAN.to_le_bytes());
    with(nan, "NaN");
    with(
        vec![identity::STR, 2, 0, 0, 0, 0xED, 0xA0],
        "not valid UTF-8",
    );
    let mut deep = [identity::TUPLE, 1, 0, 0, 0].repeat(33);
    deep.push(identity::TRUE);
    with(deep, "nest deeper than 32");
    let mut deepest = [identity::TUPLE, 1, 0, 0, 0].repeat(32);
    deepest.push(identity::NONE);
    let mut nested = image.clone();
    let last = nested.clients.len() - 1;
    nested.clients[last].identity = deepest;
    // Canonical, so the format reads it; a Rust pool's keys are ints.
    refused(&nested, "a Rust pool's key");
    let mut event = image.clone();
    event.events[0].identity = vec![identity::NONE];
    refused(&event, "a client is None");
    let mut event = image.clone();
    let last = event.events.len() - 1;
    event.events[last].identity = vec![identity::BYTES, 0xFF, 0xFF, 0, 0];
    refused(&event, "truncated");
    let mut order = image.clone();
    order.clients.swap(0, 1);
    refused(&order, "strictly ascending order of their encoding");
}

#[test]
fn ints_are_written_in_the_fewest_bytes() {
    assert!(shortest(&[0x7F]) && shortest(&[0x80, 0x00]) && shortest(&[0x80]));
    assert!(!shortest(&[0x7F, 0x00]) && !shortest(&[0x80, 0xFF]) && !shortest(&[]));
    for key in [
        0,
        1,
        127,
        128,
        255,
        256,
        1 << 40,
        (1 << 63) - 1,
        1 << 63,
        u64::MAX - 1,
    ] {
        let encoded = identity::int(key);
        let n = u32::from_le_bytes(encoded[1..5].try_into().unwrap()) as usize;
        assert_eq!(encoded.len(), 5 + n);
        assert!(shortest(&encoded[5..]), "{key}");
        assert_eq!(identity::as_key(&encoded), Some(key));
    }
    assert_eq!(identity::as_key(&identity::int(u64::MAX)), None);
    assert_eq!(identity::as_key(&[identity::INT, 1, 0, 0, 0, 0xFF]), None); // -1
    assert_eq!(identity::as_key(&[identity::STR, 0, 0, 0, 0]), None);
}

#[test]
fn the_configuration_goes_through_the_constructors_checks() {
    let (pool, _) = rich();
    let image = image_of(&pool);
    for (mutate, words) in [
        (
            (|c: &mut ConfigImage| c.initial_blocks = 0) as fn(&mut ConfigImage),
            "initial_blocks",
        ),
        (|c| c.hold_down = -1.0, "hold_down"),
        (|c| c.client_quota = Some(0), "client_quota"),
        (|c| c.client_block = Some(5), "client_block"),
        (|c| c.ports = (0, 4), "ports"),
        (|c| c.name = String::new(), "name"),
        (|c| c.ranges = Vec::new(), "ranges"),
        (|c| c.ranges.swap(0, 1), "ranges"),
        (
            |c| c.legacy = Some((u128::from(u32::MAX) - 1, 0, 40)),
            "netmask",
        ),
        (|c| c.excluded[0].0 .1 = 9, "exclude"),
    ] {
        let mut bad = image.clone();
        mutate(&mut bad.config);
        refused(&bad, words);
    }
    let mut split = image.clone();
    split.config.ranges = vec![(v4(1), v4(1)), (v4(2), v4(2)), (v4(4), v4(6))];
    refused(&split, "not normalised");
    let mut excluded = image.clone();
    let run = excluded.config.excluded[0];
    excluded.config.excluded = vec![run, run];
    refused(&excluded, "not normalised");
}

/// Each check of the state refuses what it guards against.
#[test]
fn the_state_is_checked_against_the_configuration_and_itself() {
    let (pool, _) = rich();
    let image = image_of(&pool);
    let shared = image
        .subpools
        .iter()
        .position(|s| s.owner.is_none() && !s.fenced)
        .unwrap();
    let block = image
        .subpools
        .iter()
        .position(|s| s.owner.is_some())
        .unwrap();
    let fenced = image.subpools.iter().position(|s| s.fenced).unwrap();
    type Mutation = (fn(&mut Image, usize, usize, usize), &'static str);
    let cases: Vec<Mutation> = vec![
        (
            |i, _, _, _| i.config.order = Order::Fifo,
            "has a generator state",
        ),
        (|i, _, _, _| i.drained = vec![v4(6), v4(5)], "drained IPs"),
        (|i, _, _, _| i.drained.push(v4(9)), "no address in the pool"),
        (|i, _, _, _| i.subpools.swap(0, 1), "subpool ids"),
        (|i, s, _, _| i.subpools[s].first = 1 << 100, "runs past"),
        (
            |i, s, b, _| i.subpools[s].first = i.subpools[b].first,
            "overlaps",
        ),
        (
            |i, _, _, _| i.config.max_blocks = 3,
            "more than the capacity",
        ),
        (|i, s, _, _| i.subpools[s].fenced = true, "drain fence"),
        (|i, _, _, f| i.subpools[f].fenced = false, "drain fence"),
        (
            |i, _, b, _| i.subpools[b].owner = Some(40),
            "unknown client",
        ),
        (|i, s, _, _| i.subpools[s].clients[0] = 40, "cannot have"),
        (
            |i, _, b, _| i.subpools[b].clients[0] = NONE,
            "not its client's",
        ),
        (
            |i, s, _, _| i.subpools[s].listed.extend([0, 0]),
            "repeats an offset",
        ),
        (
            |i, s, _, _| i.subpools[s].listed.push(90),
            "repeats an offset",
        ),
        (
            |i, _, b, _| i.subpools[b].listed.clear(),
            "free block is not in the free list",
        ),
        (|i, _, _, _| i.live += 1, "not the number of live blocks"),
        (|i, _, _, _| i.shared_created = false, "shared_created is 0"),
        (|i, _, _, _| i.clients[0].live += 1, "not its blocks'"),
        (
            |i, _, _, _| i.clients[0].blocks.push(0),
            "exactly the subpools they own",
        ),
        (|i, _, _, _| i.clients[0].ip = Some(v4(1)), "has an IP"),
        (|i, _, _, _| i.held.clear(), "every held block"),
        (|i, _, _, _| i.held[0].offset = 90, "not a held block"),
        (|i, _, _, _| i.held[1] = i.held[0], "twice"),
        (|i, _, _, _| i.held[0].remaining = 99.0, "release order"),
        (|i, _, _, _| i.floors.clear(), "0..N-1"),
        (|i, _, _, _| i.floors.insert(0, (0, 1)), "in use"),
        (
            |i, _, _, _| i.floors.insert(0, (90, 1)),
            "generation floors",
        ),
        (
            |i, _, _, _| i.config.event_queue = 0,
            "more than event_queue",
        ),
        (
            |i, _, _, _| i.events[0].first.1 = 3,
            "port block of the pool",
        ),
    ];
    for (mutate, words) in cases {
        let mut bad = image.clone();
        mutate(&mut bad, shared, block, fenced);
        refused(&bad, words);
    }
}

#[test]
fn more_state_checks() {
    let (pool, _) = rich();
    let image = image_of(&pool);
    // A fresh pool without client settings has no clients nor events.
    let plain: Pool<u32> = Pool::new(
        PoolSpec::new("p", ip(1), ip(1))
            .prefix(32)
            .ports(1, 4)
            .initial_blocks(2)
            .build()
            .unwrap(),
    );
    let lease = plain.allocate(1).unwrap();
    let mut plain_image = image_of(&plain);
    plain_image.clients = image.clients.clone();
    refused(&plain_image, "without client settings");
    let mut plain_image = image_of(&plain);
    plain_image.events_dropped = 1;
    refused(&plain_image, "without client_block");
    // A phantom in a port block, and a subpool all free that must be gone.
    let mut plain_image = image_of(&plain);
    plain_image.subpools[0].listed.insert(0, 0);
    assert!(Pool::<u32>::restore(&plain_image.encode(), Clock::Monotonic).is_ok());
    plain.free(lease.handle).unwrap();
    let block = image
        .subpools
        .iter()
        .position(|s| s.owner.is_some())
        .unwrap();
    let mut phantom = image.clone();
    let live = phantom.subpools[block]
        .states
        .iter()
        .position(|&s| s != Standing::Free)
        .unwrap() as u32;
    phantom.subpools[block].listed.push(live);
    refused(&phantom, "phantom");
    let mut empty = image.clone();
    let subpool = &mut empty.subpools[block];
    subpool.states.iter_mut().for_each(|s| *s = Standing::Free);
    subpool.clients.iter_mut().for_each(|c| *c = NONE);
    subpool.listed = (0..subpool.len() as u32).collect();
    refused(&empty, "all free");
    // A client with nothing, and a paired IP out of the space.
    let mut idle = image.clone();
    idle.clients.push(ClientImage {
        identity: identity::int(u64::MAX - 1),
        live: 0,
        held: 0,
        ip: None,
        blocks: Vec::new(),
    });
    refused(&idle, "no lease and no block");
    let mut unpaired = image.clone();
    unpaired.config.paired = true;
    refused(
        &unpaired,
        "has an IP without paired live leases, or none with them",
    );
    // A hold of -0.0, and a hold whose end the clock cannot reach.
    let mut zero = image.clone();
    let last = zero.held.len() - 1;
    zero.held[last].remaining = -0.0;
    zero.held
        .iter_mut()
        .for_each(|h| h.remaining = h.remaining.min(-0.0));
    refused(&zero, "-0.0");
    let mut far = image.clone();
    far.held.iter_mut().for_each(|h| h.remaining = f64::MAX);
    let (now, clock) = clock();
    set(&now, f64::MAX);
    match Pool::<u32>::restore(&far.encode(), clock) {
        Err(Error::Snapshot(message)) => assert!(message.contains("beyond the range")),
        _ => panic!("a hold past f64::MAX was accepted"),
    }
}

#[test]
fn a_fresh_pool_round_trips() {
    let fresh: Pool<u32> = Pool::new(
        PoolSpec::new("f", ip(1), ip(2))
            .prefix(24)
            .ports(1, 2)
            .initial_blocks(1)
            .build()
            .unwrap(),
    );
    let bytes = fresh.snapshot().unwrap();
    let restored: Pool<u32> = Pool::restore(&bytes, Clock::Monotonic).unwrap();
    assert_eq!(restored.snapshot().unwrap(), bytes);
    assert_eq!(restored.stats(), fresh.stats());
}
