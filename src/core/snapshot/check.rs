//! Step 3 of a restore: a snapshot's state against its configuration and
//! itself (`docs/shapes.md`, "What restore checks"; the reference model's
//! `_check`), so that no input builds a pool that breaks an invariant the
//! pool keeps. Every refusal is [`Error::Snapshot`]. Client identities are
//! opaque here: that no two are equal keys is their decoder's check.
//!
//! `snapshot()` runs the same check on what it read, so that it never
//! writes a snapshot `restore` would refuse.

use crate::core::config::Config;
use crate::core::drained::Drained;
use crate::core::error::Error;
use crate::core::policy::Order;
use crate::core::snapshot::{Image, Standing, SubpoolImage, NONE};
use crate::core::space::Space;

fn refused(reason: impl Into<String>) -> Error {
    Error::Snapshot(reason.into())
}

fn ascending<T: PartialOrd>(values: impl IntoIterator<Item = T>, what: &str) -> Result<(), Error> {
    let mut previous = None;
    for value in values {
        if previous.as_ref().is_some_and(|p| *p >= value) {
            return Err(refused(format!(
                "the {what} are not in strictly ascending order"
            )));
        }
        previous = Some(value);
    }
    Ok(())
}

/// The drained IPs (ascending, each with an address in `space`) as a set.
pub(crate) fn drained(space: &Space, ips: &[u128]) -> Result<Drained, Error> {
    ascending(ips.iter(), "drained IPs")?;
    let runs = ips
        .iter()
        .map(|&ip| {
            let (start, end) = space
                .ip_indices(ip)
                .ok_or_else(|| refused(format!("drained IP {ip:#x} has no address in the pool")))?;
            Ok((start, end, ip))
        })
        .collect::<Result<_, Error>>()?;
    Ok(Drained::from_runs(runs))
}

/// `Ok` if `image`'s state is one a pool of `config` can be in.
pub(crate) fn check(config: &Config, image: &Image) -> Result<(), Error> {
    let space = config.space();
    let tracks = config.policy.tracks_clients();
    if config.order() != Order::Random && image.generator != 0 {
        return Err(refused(format!(
            "a pool of order {:?} has a generator state",
            config.order().name()
        )));
    }
    let drained = drained(space, &image.drained)?;
    let clients = image.clients.len();
    if clients > 0 && !tracks {
        return Err(refused("a pool without client settings has client states"));
    }

    ascending(image.subpools.iter().map(|s| s.id), "subpool ids")?;
    let mut by_first: Vec<&SubpoolImage> = image.subpools.iter().collect();
    by_first.sort_by_key(|s| s.first);
    let mut cursor = 0u128;
    let mut blocks = 0u128;
    for subpool in by_first {
        let end = subpool.first.checked_add(subpool.len() as u128);
        if subpool.first < cursor || !end.is_some_and(|end| end <= space.address_count()) {
            return Err(refused(format!(
                "subpool {} overlaps another or runs past the address space",
                subpool.id
            )));
        }
        cursor = end.unwrap_or(u128::MAX);
        blocks += subpool.len() as u128;
    }
    if blocks > u128::from(config.capacity()) {
        return Err(refused(format!(
            "the subpools hold {blocks} blocks, more than the capacity {}",
            config.capacity()
        )));
    }
    let mut live = vec![0u64; clients];
    let mut held = vec![0u64; clients];
    for subpool in &image.subpools {
        check_subpool(config, &drained, subpool, &mut live, &mut held)?;
    }
    let live_blocks: usize = image
        .subpools
        .iter()
        .map(|s| {
            s.states
                .iter()
                .filter(|&&state| state == Standing::Live)
                .count()
        })
        .sum();
    if u64::try_from(live_blocks) != Ok(image.live) {
        return Err(refused(format!(
            "len() is {}, not the number of live blocks",
            image.live
        )));
    }
    if image.subpools.iter().any(|s| s.owner.is_none()) && !image.shared_created {
        return Err(refused("a shared subpool exists but shared_created is 0"));
    }
    check_clients(config, image, &live, &held)?;
    check_held(image)?;
    check_floors(image)?;
    check_events(config, image)
}

/// One subpool against the configuration; counts its blocks' live and held
/// leases per client.
fn check_subpool(
    config: &Config,
    drained: &Drained,
    subpool: &SubpoolImage,
    live: &mut [u64],
    held: &mut [u64],
) -> Result<(), Error> {
    let space = config.space();
    let n = subpool.len();
    let at = |reason: &str| refused(format!("subpool {}: {reason}", subpool.id));
    // The subpool lies in the space (checked before this): no overflow.
    let end = subpool.first + n as u128;
    if subpool.fenced != drained.touches(subpool.first, end) {
        return Err(at("its drain fence does not match the drained IPs"));
    }
    let all_free = subpool.states.iter().all(|&state| state == Standing::Free);
    if all_free && (subpool.fenced || subpool.owner.is_some()) {
        return Err(at(
            "it is all free, drain-fenced or a port block (the pool would have deleted it)",
        ));
    }
    if let Some(owner) = subpool.owner {
        if owner as usize >= live.len() || config.client_block() != u32::try_from(n).ok() {
            return Err(at(
                "a port block of an unknown client, or not of client_block addresses",
            ));
        }
        if space.ip_of(subpool.first) != space.ip_of(end - 1) {
            return Err(at("a port block on more than one IP"));
        }
    }
    let tracks = config.policy.tracks_clients();
    for (offset, (&state, &client)) in subpool.states.iter().zip(&subpool.clients).enumerate() {
        if client == NONE {
            if state != Standing::Free && subpool.owner.is_some() {
                return Err(at("a lease in a port block is not its client's"));
            }
            continue;
        }
        if state == Standing::Free || !tracks || client as usize >= live.len() {
            return Err(at(&format!("block {offset} names a client it cannot have")));
        }
        if subpool.owner.is_some_and(|owner| owner != client) {
            return Err(at("a lease in a port block is not its client's"));
        }
        match state {
            Standing::Live => live[client as usize] += 1,
            _ => held[client as usize] += 1,
        }
    }
    let mut listed = vec![false; n];
    for &offset in &subpool.listed {
        match listed.get_mut(offset as usize) {
            Some(seen) if !*seen => *seen = true,
            _ => {
                return Err(at(
                    "the free list repeats an offset or names one past its blocks",
                ))
            }
        }
    }
    for (offset, &state) in subpool.states.iter().enumerate() {
        let phantom = listed[offset] && state != Standing::Free;
        if state == Standing::Free && !listed[offset] {
            return Err(at("a free block is not in the free list"));
        }
        if phantom && (subpool.owner.is_some() || subpool.clients[offset] != NONE) {
            return Err(at(
                "a phantom (reserved) entry in a port block, or of a client's lease",
            ));
        }
    }
    Ok(())
}

/// Each client's counts, IP and port blocks against the blocks.
fn check_clients(config: &Config, image: &Image, live: &[u64], held: &[u64]) -> Result<(), Error> {
    let space = config.space();
    let mut owners: Vec<(u32, u32)> = image
        .subpools
        .iter()
        .filter_map(|s| s.owner.map(|owner| (owner, s.id)))
        .collect();
    owners.sort_unstable();
    let mut listed: Vec<(u32, u32)> = image
        .clients
        .iter()
        .enumerate()
        .flat_map(|(n, client)| client.blocks.iter().map(move |&id| (n as u32, id)))
        .collect();
    listed.sort_unstable();
    if owners != listed {
        return Err(refused(
            "the clients' port blocks are not exactly the subpools they own",
        ));
    }
    for (n, client) in image.clients.iter().enumerate() {
        if (client.live, client.held) != (live[n], held[n]) {
            return Err(refused(format!(
                "client {n} counts {} live and {} held leases, not its blocks'",
                client.live, client.held
            )));
        }
        if client.live == 0 && client.held == 0 && client.blocks.is_empty() {
            return Err(refused(format!(
                "client {n} has no lease and no block (the pool forgets such a client)"
            )));
        }
        if client.ip.is_some() != (config.paired() && client.live > 0) {
            return Err(refused(format!(
                "client {n} has an IP without paired live leases, or none with them"
            )));
        }
        if client.ip.is_some_and(|ip| space.ip_indices(ip).is_none()) {
            return Err(refused(format!(
                "client {n}'s IP has no address in the pool"
            )));
        }
    }
    Ok(())
}

/// The held queue names every held block once, in release order.
fn check_held(image: &Image) -> Result<(), Error> {
    let mut seen: Vec<Vec<bool>> = image
        .subpools
        .iter()
        .map(|s| vec![false; s.len()])
        .collect();
    for entry in &image.held {
        let found = image
            .subpools
            .binary_search_by_key(&entry.id, |s| s.id)
            .ok()
            .filter(|&at| {
                image.subpools[at].states.get(entry.offset as usize) == Some(&Standing::Held)
            });
        let Some(at) = found else {
            return Err(refused(format!(
                "held entry ({}, {}) is not a held block",
                entry.id, entry.offset
            )));
        };
        let mark = &mut seen[at][entry.offset as usize];
        if *mark {
            return Err(refused("the held queue names a held block twice"));
        }
        *mark = true;
    }
    let held_blocks: usize = image
        .subpools
        .iter()
        .map(|s| {
            s.states
                .iter()
                .filter(|&&state| state == Standing::Held)
                .count()
        })
        .sum();
    if held_blocks != image.held.len() {
        return Err(refused(
            "the held queue does not name every held block exactly once",
        ));
    }
    let out_of_order = image
        .held
        .windows(2)
        .any(|pair| pair[0].remaining > pair[1].remaining);
    let negative_zero = image
        .held
        .iter()
        .any(|entry| entry.remaining == 0.0 && entry.remaining.is_sign_negative());
    if out_of_order || negative_zero {
        return Err(refused(
            "the held queue is not in release order (or holds -0.0)",
        ));
    }
    Ok(())
}

/// Floors are of ids not in use, ascending, and with the ids in use make up
/// `0..N` (the ids ever given).
fn check_floors(image: &Image) -> Result<(), Error> {
    ascending(image.floors.iter().map(|&(id, _)| id), "generation floors")?;
    let mut floors = image.floors.iter().map(|&(id, _)| id).peekable();
    let mut used = image.subpools.iter().map(|s| s.id).peekable();
    let mut next = 0u32;
    loop {
        let id = match (floors.peek(), used.peek()) {
            (Some(&floor), Some(&id)) if floor == id => {
                return Err(refused(format!(
                    "generation floor of id {floor}, which is in use"
                )))
            }
            (Some(&floor), Some(&id)) if floor < id => floors.next(),
            (Some(_), None) => floors.next(),
            (_, Some(_)) => used.next(),
            (None, None) => return Ok(()),
        };
        if id != Some(next) {
            return Err(refused(
                "the subpool ids and the generation floors' ids are not 0..N-1 (the ids ever used)",
            ));
        }
        next = next.wrapping_add(1);
    }
}

fn check_events(config: &Config, image: &Image) -> Result<(), Error> {
    let space = config.space();
    let Some(k) = config.client_block() else {
        if !image.events.is_empty() || image.events_dropped != 0 {
            return Err(refused("a pool without client_block has block events"));
        }
        return Ok(());
    };
    if !u64::try_from(image.events.len()).is_ok_and(|n| n <= config.event_queue()) {
        return Err(refused(format!(
            "{} events is more than event_queue {}",
            image.events.len(),
            config.event_queue()
        )));
    }
    for event in &image.events {
        let first = space.index(event.first.0, event.first.1);
        let last = space.index(event.last.0, event.last.1);
        let count = first
            .zip(last)
            .and_then(|(first, last)| last.checked_sub(first))
            .and_then(|span| span.checked_add(1));
        if count != Some(u128::from(k)) {
            return Err(refused(
                "an event is not of a client's port block of the pool",
            ));
        }
    }
    Ok(())
}
