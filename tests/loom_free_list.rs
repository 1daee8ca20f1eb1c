//! loom models of a subpool's free list (`src/core/free_list.rs`): the
//! reservation count, the tagged Treiber stack and the close handshake.
//! Run with `make loom` (RUSTFLAGS="--cfg loom").
#![cfg(loom)]

mod loom_support;

use std::collections::HashSet;

use loom::sync::Arc;
use loom_support::spawn_with;
use natpool::core::free_list::{FreeList, Reserve};

fn take(list: &FreeList) -> Option<u32> {
    match list.reserve() {
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
            assert_eq!(list.reserve(), Reserve::Closed);
        } else {
            let mut all: HashSet<u32> = drain(&list).into_iter().collect();
            all.extend(taken);
            assert_eq!(all.len(), 2);
        }
    });
}
