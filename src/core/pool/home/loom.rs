//! loom models of a home subpool's claim cell (`src/core/pool/home.rs`):
//! two threads claiming one subpool, and the handshake between a home's
//! release and a free that empties the subpool while it is claimed (one of
//! them must try the deletion). Run with `make loom`.

use crate::core::free_list::{FreeList, Reserve};
use crate::core::loom_support::spawn_with;
use crate::core::policy::Order;
use crate::core::pool::HomeCell;
use crate::core::rng::SplitMix64;
use loom::sync::Arc;

/// Two threads claim one subpool as their home: exactly one gets it; only
/// the owner's release frees it for the other.
#[test]
fn one_of_two_claims_wins() {
    loom::model(|| {
        let cell = Arc::new(HomeCell::new());
        let claimers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|token| spawn_with(&cell, move |cell| (token, cell.claim(token))))
            .collect();
        let won: Vec<u64> = claimers
            .into_iter()
            .map(|c| c.join().unwrap())
            .filter_map(|(token, won)| won.then_some(token))
            .collect();
        assert_eq!(won.len(), 1, "exactly one claim wins");
        let (winner, loser) = (won[0], 3 - won[0]);
        assert!(cell.owned_by(winner));
        // The loser's release changes nothing; the owner's frees the cell.
        cell.release_then(loser, || false);
        assert!(cell.owned_by(winner));
        cell.release_then(winner, || false);
        assert!(cell.claim(loser));
    });
}

/// Subpool of one block, taken, in its owner's home. The free that brings
/// the block back skips the deletion if it sees the claim; the owner's
/// release (racing) then sees the block back and tries it. One of the two
/// always tries, so the emptied, unclaimed subpool is deleted (its list
/// closed) whatever the interleaving; and a closed list is one with every
/// block free.
#[test]
fn a_release_and_an_emptying_free_never_both_skip_the_deletion() {
    struct Subpool {
        free: FreeList,
        home: HomeCell,
    }
    loom::model(|| {
        let subpool = Arc::new(Subpool {
            free: FreeList::new(Order::Lifo, 1).unwrap(),
            home: HomeCell::new(),
        });
        assert!(subpool.home.claim(1));
        let Reserve::Taken {
            count: 1,
            last: true,
            at,
            ..
        } = subpool.free.reserve_up_to(1, &SplitMix64::new(1))
        else {
            panic!("the one block is free")
        };
        let offset = subpool.free.pop(at, &SplitMix64::new(1));
        let free = spawn_with(&subpool, move |s| {
            let after = s.free.give_back(&[offset], 0);
            after == 1 && s.home.unclaimed_after_push() && s.free.try_close(1)
        });
        let release = spawn_with(&subpool, move |s| {
            let idle = s
                .home
                .release_then(1, || s.free.has_free() && s.free.available() == 1);
            idle && s.free.try_close(1)
        });
        let closed_by_free = free.join().unwrap();
        let closed_by_release = release.join().unwrap();
        assert!(
            closed_by_free || closed_by_release,
            "the emptied subpool was left undeleted"
        );
        assert!(!(closed_by_free && closed_by_release), "closed twice");
        assert!(!subpool.free.has_free());
        assert_eq!(subpool.free.available(), 1);
    });
}
