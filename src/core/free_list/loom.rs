//! loom models of a subpool's free list (`src/core/free_list.rs`): the
//! reservation count, the tagged Treiber stack and the close handshake.
//! Run with `make loom` (RUSTFLAGS="--cfg loom").

use std::collections::HashSet;

use crate::core::free_list::{FreeList, Reserve};
use crate::core::loom_support::spawn_with;
use loom::sync::Arc;

fn take(list: &FreeList) -> Option<u32> {
    match list.reserve_up_to(1) {
        Reserve::Taken { .. } => Some(list.pop()),
        Reserve::Empty | Reserve::Closed => None,
    }
}

/// Everything left on the list, popped single-threaded.
fn drain(list: &FreeList) -> Vec<u32> {
    std::iter::from_fn(|| take(list)).collect()
}

#[test]
fn two_threads_race_for_the_last_block() {
    loom::model(|| {
        let list = Arc::new(FreeList::new(2).unwrap());
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
    loom::model(|| {
        let list = Arc::new(FreeList::new(3).unwrap());
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
    loom::model(|| {
        let list = Arc::new(FreeList::new(1).unwrap());
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
    loom::model(|| {
        let list = Arc::new(FreeList::new(2).unwrap());
        let closer = spawn_with(&list, move |list| list.try_close(2));
        let taker = spawn_with(&list, take);
        let closed = closer.join().unwrap();
        let taken = taker.join().unwrap();
        assert!(
            closed != taken.is_some(),
            "closed {closed}, taken {taken:?}"
        );
        if closed {
            assert_eq!(list.reserve_up_to(1), Reserve::Closed);
        } else {
            let mut all: HashSet<u32> = drain(&list).into_iter().collect();
            all.extend(taken);
            assert_eq!(all.len(), 2);
        }
    });
}

fn take_chain(list: &FreeList, want: u64) -> Vec<u32> {
    let mut out = Vec::new();
    if let Reserve::Taken { count, .. } = list.reserve_up_to(want) {
        list.pop_many(count, &mut out);
    }
    out
}

/// A chain pop (one CAS after walking the links) races with single pops and
/// a push of a popped block: the walk must never install a stale link.
#[test]
fn a_chain_pop_races_with_pops_and_pushes() {
    loom::model(|| {
        let list = Arc::new(FreeList::new(4).unwrap());
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
    loom::model(|| {
        let list = Arc::new(FreeList::new(4).unwrap());
        let mut mine = Vec::new();
        list.reserve_up_to(3);
        list.pop_many(3, &mut mine);
        assert_eq!(mine, vec![0, 1, 2]);
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

/// A fence (a subpool whose claim lapsed) closes the list whatever its
/// count, racing with a reservation and a push: the reservation either came
/// first (its block comes back later, counted) or fails; pushes keep
/// counting under the closed bit; no reservation succeeds after the fence,
/// and a full fenced list is recognised as such.
#[test]
fn a_fence_races_with_a_reservation_and_a_push() {
    loom::model(|| {
        let list = Arc::new(FreeList::new(2).unwrap());
        let out = take(&list).unwrap();
        let taker = spawn_with(&list, take);
        let fencer = spawn_with(&list, |list| list.fence());
        list.push_many(&[out]);
        let took = taker.join().unwrap();
        fencer.join().unwrap();
        assert_eq!(list.reserve_up_to(1), Reserve::Closed);
        assert!(!list.has_free());
        let last = match took {
            Some(offset) => list.push_many(&[offset]),
            None => {
                assert_eq!(list.available(), 2);
                return;
            }
        };
        assert!(FreeList::closed_and_full(last, 2));
        assert_eq!(list.available(), 2);
    });
}
