//! loom models of a subpool's free list (`src/core/free_list.rs`): the
//! reservation count and the close handshake, in front of the tagged
//! Treiber stack (LIFO of more than `fused_stack::MAX` blocks), the ring
//! (FIFO of more than `fused::MAX` blocks) and the locked array (random),
//! and folded into the fused stack's tagged head (LIFO) and the fused
//! ring's word (FIFO). Each model runs for every structure it names. Run
//! with `make loom` (RUSTFLAGS="--cfg loom").

use std::collections::HashSet;

use crate::core::free_list::{FreeList, Reserve};
use crate::core::loom_support::spawn_with;
use crate::core::policy::Order;
use crate::core::rng::SplitMix64;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;

/// A structure: the list of an order (FIFO: the fused ring, LIFO: the
/// fused stack, every model's list being small), or the ring or the stack
/// with its count in front (`Counted`, `CountedStack`).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Of(Order),
    Counted,
    CountedStack,
}

const FUSED: Kind = Kind::Of(Order::Fifo);
const FUSED_STACK: Kind = Kind::Of(Order::Lifo);
const FIFO: [Kind; 2] = [FUSED, Kind::Counted];
const LIFO: [Kind; 2] = [FUSED_STACK, Kind::CountedStack];
const LOCK_FREE: [Kind; 4] = [FUSED_STACK, Kind::CountedStack, FUSED, Kind::Counted];
const ALL: [Kind; 5] = [
    FUSED_STACK,
    Kind::CountedStack,
    FUSED,
    Kind::Counted,
    Kind::Of(Order::Random),
];

/// A free list and the generator its random takes draw from.
struct List {
    free: FreeList,
    rng: SplitMix64,
}

impl std::ops::Deref for List {
    type Target = FreeList;

    fn deref(&self) -> &FreeList {
        &self.free
    }
}

fn list(kind: Kind, n: u32) -> Arc<List> {
    Arc::new(List {
        free: match kind {
            Kind::Of(order) => FreeList::new(order, n).unwrap(),
            Kind::Counted => FreeList::counted_ring(n),
            Kind::CountedStack => FreeList::counted_stack(n),
        },
        rng: SplitMix64::new(7),
    })
}

fn take(list: &List) -> Option<u32> {
    match list.reserve_up_to(1, &list.rng) {
        Reserve::Taken { at, .. } => Some(list.pop(at, &list.rng)),
        Reserve::Empty | Reserve::Closed => None,
    }
}

/// Everything left on the list, popped single-threaded.
fn drain(list: &List) -> Vec<u32> {
    std::iter::from_fn(|| take(list)).collect()
}

/// Run `model` under loom once for each of `kinds`.
fn for_each(kinds: &[Kind], model: fn(Kind)) {
    for &kind in kinds {
        loom::model(move || model(kind));
    }
}

#[test]
fn two_threads_race_for_the_last_block() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let first = take(&list).unwrap();
        let racers: Vec<_> = (0..2).map(|_| spawn_with(&list, take)).collect();
        let won: Vec<u32> = racers
            .into_iter()
            .filter_map(|racer| racer.join().unwrap())
            .collect();
        assert_eq!(won.len(), 1, "exactly one thread gets the last block");
        assert_ne!(won[0], first);
        assert!(drain(&list).is_empty());
        assert_eq!(list.available(), 0);
    });
}

/// The classic ABA schedule: A reads head = x, next = y; B pops x and y and
/// pushes x back; A's CAS must not install y (which B holds).
#[test]
fn push_pop_interleavings_do_not_expose_aba() {
    for_each(&LOCK_FREE, |kind| {
        let list = list(kind, 3);
        let a = spawn_with(&list, take);
        let b = spawn_with(&list, move |list| {
            let x = take(list);
            let y = take(list);
            if let Some(x) = x {
                list.push(x);
            }
            y
        });
        let held: Vec<u32> = [a.join().unwrap(), b.join().unwrap()]
            .into_iter()
            .flatten()
            .collect();
        let rest = drain(&list);
        let mut all: Vec<u32> = held.iter().chain(&rest).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            vec![0, 1, 2],
            "every block exactly once: held {held:?}, free {rest:?}"
        );
    });
}

/// A reservation made while a push is landing always finds the block.
#[test]
fn a_reserved_pop_waits_only_for_a_committed_push() {
    for_each(&ALL, |kind| {
        let list = list(kind, 1);
        let block = take(&list).unwrap();
        let pusher = spawn_with(&list, move |list| list.push(block));
        let taker = spawn_with(&list, take);
        assert_eq!(pusher.join().unwrap(), 1);
        match taker.join().unwrap() {
            Some(taken) => {
                assert_eq!(taken, block);
                assert!(drain(&list).is_empty());
            }
            None => assert_eq!(drain(&list), vec![block]),
        }
    });
}

/// Closing an idle list races with a reservation: one of them wins.
#[test]
fn close_and_reserve_exclude_each_other() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let closer = spawn_with(&list, move |list| list.try_close(2));
        let taker = spawn_with(&list, take);
        let closed = closer.join().unwrap();
        let taken = taker.join().unwrap();
        assert!(
            closed != taken.is_some(),
            "closed {closed}, taken {taken:?}"
        );
        if closed {
            assert_eq!(list.reserve_up_to(1, &list.rng), Reserve::Closed);
        } else {
            let mut all: HashSet<u32> = drain(&list).into_iter().collect();
            all.extend(taken);
            assert_eq!(all.len(), 2);
        }
    });
}

fn take_chain(list: &List, want: u64) -> Vec<u32> {
    let mut out = Vec::new();
    if let Reserve::Taken { count, at, .. } = list.reserve_up_to(want, &list.rng) {
        list.pop_many(at, count, &mut out, &list.rng);
    }
    out
}

/// A chain pop (one CAS after walking the links) races with single pops and
/// a push of a popped block: the walk must never install a stale link.
#[test]
fn a_chain_pop_races_with_pops_and_pushes() {
    for_each(&LOCK_FREE, |kind| {
        let list = list(kind, 4);
        let chain = spawn_with(&list, |list| take_chain(list, 2));
        let other = spawn_with(&list, |list| {
            let x = take(list);
            let y = take(list);
            if let Some(x) = x {
                list.push(x);
            }
            y
        });
        let chained = chain.join().unwrap();
        let held: Vec<u32> = chained
            .iter()
            .copied()
            .chain(other.join().unwrap())
            .collect();
        let rest = drain(&list);
        let mut all: Vec<u32> = held.iter().chain(&rest).copied().collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3], "held {held:?}, free {rest:?}");
    });
}

/// A chain push races with a chain pop: every block exactly once, and the
/// count matches the stack.
#[test]
fn a_chain_push_races_with_a_chain_pop() {
    for_each(&LOCK_FREE, |kind| {
        let list = list(kind, 4);
        assert_eq!(take_chain(&list, 3), vec![0, 1, 2]);
        let pusher = spawn_with(&list, |list| list.push_many(&[0, 1]));
        let popper = spawn_with(&list, |list| take_chain(list, 2));
        let after_push = pusher.join().unwrap();
        assert!((2..=3).contains(&after_push));
        let popped = popper.join().unwrap();
        let rest = drain(&list);
        let mut all: Vec<u32> = popped.iter().chain(&rest).copied().collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 3], "popped {popped:?}, free {rest:?}");
        assert_eq!(list.available(), 0);
    });
}

/// Two threads take and return the one block of a one-cell ring (or the
/// stack, or the array) twice each: the cell goes round four laps while
/// pops wait for pushes and pushes for pops. The block is never taken twice
/// at once and is free at the end.
#[test]
fn blocks_cycle_through_a_one_block_list() {
    for_each(&ALL, |kind| {
        let list = list(kind, 1);
        let cycle = |list: &List| {
            let mut taken = 0;
            for _ in 0..2 {
                if let Some(block) = take(list) {
                    assert_eq!(block, 0);
                    taken += 1;
                    list.push(block);
                }
            }
            taken
        };
        let a = spawn_with(&list, cycle);
        let b = spawn_with(&list, cycle);
        let _ = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(drain(&list), vec![0]);
        assert_eq!(list.available(), 0);
    });
}

/// FIFO: pushes of two threads race with a pop into an emptied ring whose
/// cells are on their second lap; each block comes out once, and a block
/// returned before another was returned comes out first.
#[test]
fn fifo_pushes_race_with_a_pop_on_the_next_lap() {
    for_each(&FIFO, |kind| {
        let list = list(kind, 2);
        let (x, y) = (take(&list).unwrap(), take(&list).unwrap());
        let pusher = spawn_with(&list, move |list| {
            list.push(x);
            list.push(y);
        });
        let taker = spawn_with(&list, take);
        pusher.join().unwrap();
        let taken = taker.join().unwrap();
        let rest = drain(&list);
        match taken {
            Some(first) => {
                assert_eq!(first, x, "x was pushed first");
                assert_eq!(rest, vec![y]);
            }
            None => assert_eq!(rest, vec![x, y]),
        }
    });
}

/// A fence (a subpool whose claim lapsed) closes the list whatever its
/// count, racing with a reservation and a push, for each structure: the
/// reservation either came first (its block comes back later, counted) or
/// fails; pushes keep counting under the closed bit and land in the
/// structure; no reservation succeeds after the fence, and a full fenced
/// list is recognised as such.
#[test]
fn a_fence_races_with_a_reservation_and_a_push() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let out = take(&list).unwrap();
        let taker = spawn_with(&list, take);
        let fencer = spawn_with(&list, |list| list.fence());
        list.push_many(&[out]);
        let took = taker.join().unwrap();
        fencer.join().unwrap();
        assert_eq!(list.reserve_up_to(1, &list.rng), Reserve::Closed);
        assert!(!list.has_free());
        let last = match took {
            Some(offset) => list.push_many(&[offset]),
            None => {
                assert_eq!(list.available(), 2);
                return;
            }
        };
        assert!(FreeList::shut_and_full(last, 2));
        assert_eq!(list.available(), 2);
    });
}

/// FIFO: a fence lands while a chain pop that reserved before it is still
/// taking its cells and another thread returns a block: the chain completes
/// with the blocks it reserved, the return lands in the ring under the
/// closed bit, and once every block is back the fenced ring is closed and
/// full with each block in it exactly once.
#[test]
fn a_fence_on_the_ring_races_with_a_chain_pop_and_a_return() {
    for_each(&FIFO, |kind| {
        let list = list(kind, 3);
        let out = take(&list).unwrap();
        let Reserve::Taken { count: 2, at, .. } = list.reserve_up_to(2, &list.rng) else {
            panic!("two free blocks")
        };
        let popper = spawn_with(&list, move |list| {
            let mut chain = Vec::new();
            list.pop_many(at, 2, &mut chain, &list.rng);
            chain
        });
        let fencer = spawn_with(&list, |list| list.fence());
        let pusher = spawn_with(&list, move |list| list.push_many(&[out]));
        let chain = popper.join().unwrap();
        fencer.join().unwrap();
        pusher.join().unwrap();
        assert_eq!(list.reserve_up_to(1, &list.rng), Reserve::Closed);
        let last = list.push_many(&chain);
        assert!(FreeList::shut_and_full(last, 3));
        let mut all = vec![out];
        all.extend(&chain);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2]);
    });
}

/// A deletion closes a full list, then the store refuses the release and
/// the deletion reopens it, racing with a reservation: the reservation
/// either fails (closed) or finds the list open again; nothing is lost.
#[test]
fn a_reopen_after_a_refused_deletion_races_with_a_reservation() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let taker = spawn_with(&list, take);
        let deleter = spawn_with(&list, |list| {
            if list.try_close(2) {
                list.reopen(2);
            }
        });
        deleter.join().unwrap();
        let took = taker.join().unwrap();
        let mut all: Vec<u32> = took.into_iter().chain(drain(&list)).collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1]);
        assert_eq!(list.available(), 0);
    });
}

/// `reserve`'s observation: after a reserver marked block 0 (a relaxed
/// store, standing in for the block's state word) and `listed(0)` said yes,
/// the take that pops block 0 sees the mark; and `listed` single-threaded
/// after the race is exact. A one-block list whose block is out: a push of
/// it is landing meanwhile (so the stack walk, the ring's laps and the
/// array all meet a moving target), and a take races for it.
#[test]
fn listed_orders_a_mark_before_every_later_take() {
    for_each(&ALL, |kind| {
        let list = list(kind, 1);
        let mark = Arc::new(AtomicBool::new(false));
        let out = take(&list).unwrap();
        let pusher = spawn_with(&list, move |list| list.push(out));
        let seen = Arc::clone(&mark);
        let taker = spawn_with(&list, move |list| {
            take(list).map(|offset| (offset, seen.load(Ordering::Relaxed)))
        });
        mark.store(true, Ordering::Relaxed);
        let listed = list.listed(out);
        pusher.join().unwrap();
        match taker.join().unwrap() {
            Some((offset, saw)) => {
                assert_eq!(offset, out);
                if listed {
                    assert!(saw, "a take after `listed` missed the mark");
                }
                assert!(!list.listed(out), "taken: not listed");
                list.push(offset);
            }
            None => assert!(
                list.listed(out),
                "its entry is listed and the list is quiet"
            ),
        }
        assert_eq!(drain(&list), vec![out]);
    });
}

/// A drain (the `DRAINED` bit) and an undrain race with a reservation and a
/// push: a reservation after the drain fails, the blocks keep their count
/// and order under the bit, and after the undrain every block is there.
#[test]
fn a_drain_and_an_undrain_race_with_a_reservation_and_a_push() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let out = take(&list).unwrap();
        let taker = spawn_with(&list, take);
        let drainer = spawn_with(&list, |list| {
            list.drain();
            assert_eq!(list.reserve_up_to(1, &list.rng), Reserve::Closed);
            assert!(!list.has_free());
            list.undrain();
        });
        let pushed = list.push_many(&[out]);
        drainer.join().unwrap();
        let took = taker.join().unwrap();
        assert!(pushed & !(1 << 62) <= 2);
        let mut all: Vec<u32> = took.into_iter().chain(drain(&list)).collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1]);
        // A drained list that fills up is recognised as shut and full.
        list.push_many(&all[1..]);
        let first = all[0];
        list.drain();
        assert!(FreeList::shut_and_full(list.push_many(&[first]), 2));
        assert!(
            list.try_close(2),
            "a drained, full list closes for deletion"
        );
    });
}

/// A phantom (a block reserved in place, its entry left listed) is met by
/// a take, which takes one more in its place while a return lands: the
/// fused ring's extra claim (`avail` kept) and the return's claim (from
/// the old word's head and length) never overlap, and the count stays the
/// free blocks.
#[test]
fn a_take_meets_a_phantom_while_a_return_lands() {
    for_each(&ALL, |kind| {
        let list = list(kind, 3);
        let out = take(&list).unwrap();
        assert!(matches!(
            list.reserve_in_place(),
            Reserve::Taken { count: 1, .. }
        ));
        assert_eq!(list.available(), 1);
        let taker = spawn_with(&list, |list| {
            take(list).map(|first| (first, list.pop_more(&list.rng)))
        });
        let pusher = spawn_with(&list, move |list| list.push(out));
        let after = pusher.join().unwrap();
        assert!((1..=2).contains(&after), "pushed: {after}");
        let (first, more) = taker.join().unwrap().expect("a free block");
        assert_eq!(list.available(), 1);
        let mut all = vec![first, more];
        all.extend(drain(&list));
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2], "each block once");
    });
}

/// A reservation in place and a take race for the last free block (and a
/// close for the idle list would be refused): exactly one of them gets it.
#[test]
fn a_reservation_in_place_races_with_a_take_for_the_last_block() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let out = take(&list).unwrap();
        let reserver = spawn_with(&list, |list| list.reserve_in_place());
        let taker = spawn_with(&list, take);
        let closer = spawn_with(&list, |list| list.try_close(2));
        let reserved = matches!(reserver.join().unwrap(), Reserve::Taken { .. });
        let taken = taker.join().unwrap();
        assert!(!closer.join().unwrap(), "a block is out");
        assert!(reserved != taken.is_some(), "{reserved} {taken:?}");
        assert_eq!(list.available(), 0);
        assert_eq!(list.reserve_in_place(), Reserve::Empty);
        if reserved {
            // The phantom is still listed; given back, the list is full.
            assert!(list.listed(1 - out));
            assert_eq!(list.unreserve(), 1);
            assert_eq!(list.push(out), 2);
            assert!(list.try_close(2));
        }
    });
}

/// A phantom settles where it stands (`give_back` with an in-place count,
/// no push) while a take claims it: the take sees what the settling thread
/// did before (the return's `Release`, the take's `Acquire` on the one
/// word; no cell carries it, the cell was filled long before).
#[test]
fn a_settle_in_place_is_seen_by_the_take_that_claims_it() {
    for_each(&ALL, |kind| {
        let list = list(kind, 1);
        let payload = Arc::new(AtomicU64::new(0));
        assert!(matches!(list.reserve_in_place(), Reserve::Taken { .. }));
        let written = Arc::clone(&payload);
        let settler = spawn_with(&list, move |list| {
            written.store(1, Ordering::Relaxed);
            list.give_back(&[], 1)
        });
        let taker = spawn_with(&list, move |list| {
            take(list).map(|block| (block, payload.load(Ordering::Relaxed)))
        });
        assert_eq!(settler.join().unwrap() & !(3 << 62), 1);
        match taker.join().unwrap() {
            Some((block, seen)) => {
                assert_eq!(block, 0);
                assert_eq!(
                    seen, 1,
                    "{kind:?}: the take missed what the settle did before"
                );
            }
            None => assert_eq!(drain(&list), vec![0]),
        }
    });
}

/// A close races with a reservation in place and a return that makes the
/// list full: the close wins only from all blocks free, after which the
/// reservation is refused; a reservation first leaves the list unclosable.
#[test]
fn a_close_races_with_a_reservation_in_place_and_a_return() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let out = take(&list).unwrap();
        let pusher = spawn_with(&list, move |list| list.push(out));
        let reserver = spawn_with(&list, |list| list.reserve_in_place());
        let closed = list.try_close(2);
        let after = pusher.join().unwrap();
        let reserved = reserver.join().unwrap();
        if closed {
            assert_eq!(reserved, Reserve::Closed);
            assert_eq!(after, 2, "the return came first");
            assert_eq!(list.available(), 2);
        } else {
            assert!(matches!(reserved, Reserve::Taken { .. }));
            assert_eq!(list.available(), 1);
            assert!(!list.try_close(2));
        }
    });
}

/// LIFO ABA with the count restored too: a chain take walks 0 -> 1 -> 2
/// while another thread takes 0, 1 and 2 and returns them as 1, 2, 0 (the
/// stack 0, 2, 1, 3, ...: the same top and, for the fused stack, the same
/// count and bits as the walk's word). Only the tag refuses the stale walk,
/// which would hand out 0 and 1 and leave 1 reachable under 2.
#[test]
fn a_walk_across_a_reshuffle_of_the_stack_is_refused() {
    for_each(&LIFO, |kind| {
        let list = list(kind, 5);
        let chain = spawn_with(&list, |list| take_chain(list, 2));
        let shuffler = spawn_with(&list, |list| {
            let taken = take_chain(list, 3);
            // Back as b, c, a (pushed in that order: a on top, c under
            // it): 1, 2, 0 when the chain take has not taken 0 and 1 yet.
            let order: Vec<u32> = match taken.as_slice() {
                [a, b, c] => vec![*b, *c, *a],
                other => other.to_vec(),
            };
            list.push_many(&order);
        });
        let chained = chain.join().unwrap();
        shuffler.join().unwrap();
        let rest = drain(&list);
        let mut all: Vec<u32> = chained.iter().chain(&rest).copied().collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3, 4], "chain {chained:?}, free {rest:?}");
    });
}

/// `listed` validates its walk on the top and the tag: changes of the
/// count alone (a reservation in place given back) and of the bits (a
/// drain and an undrain) while it walks do not make it wrong, and it
/// returns (no retry forever). Nothing is popped: every block is listed.
#[test]
fn listed_holds_across_changes_of_the_count_and_the_bits() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let reserver = spawn_with(&list, |list| {
            if let Reserve::Taken { .. } = list.reserve_in_place() {
                list.unreserve();
            }
        });
        let drainer = spawn_with(&list, |list| {
            list.drain();
            list.undrain();
        });
        assert!(list.listed(1) && list.listed(0));
        reserver.join().unwrap();
        drainer.join().unwrap();
        assert_eq!(list.available(), 2);
        assert_eq!(drain(&list).len(), 2);
    });
}

/// The strong reservation (`try_reserve_up_to`) fails (`None`) only when
/// another thread changed the list: two racing attempts never both fail,
/// and the blocks they take are distinct.
#[test]
fn a_strong_reservation_fails_only_for_another_change() {
    for_each(&ALL, |kind| {
        let list = list(kind, 3);
        let out = take(&list).unwrap();
        let attempt = |list: &List| match list.try_reserve_up_to(1, &list.rng) {
            None => None,
            Some(Reserve::Taken { at, .. }) => Some(Some(list.pop(at, &list.rng))),
            Some(_) => Some(None),
        };
        let a = spawn_with(&list, attempt);
        let b = spawn_with(&list, attempt);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.is_some() || b.is_some(), "both lost: a change by neither");
        let mut all: Vec<u32> = [a, b].into_iter().flatten().flatten().collect();
        all.push(out);
        all.extend(drain(&list));
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2]);
    });
}

/// A drain (a bit set by a CAS from an unlocked word) races with a take and
/// a return, each of which, on the random list, holds the word's lock bit
/// and releases it with a plain store of the word it locked: the bit must
/// outlive both releases (set only on an unlocked word, never undone), and
/// the count must keep every block.
#[test]
fn a_drain_outlives_the_releases_of_a_take_and_a_return() {
    for_each(&ALL, |kind| {
        let list = list(kind, 2);
        let out = take(&list).unwrap();
        let taker = spawn_with(&list, take);
        let returner = spawn_with(&list, move |list| list.push(out));
        list.drain();
        let took = taker.join().unwrap();
        returner.join().unwrap();
        assert_eq!(list.reserve_up_to(1, &list.rng), Reserve::Closed);
        assert_eq!(list.available(), 2 - u64::from(took.is_some()));
        list.undrain();
        let mut all: Vec<u32> = took.into_iter().chain(drain(&list)).collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1]);
    });
}
