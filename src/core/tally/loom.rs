//! loom models of the per-thread counts (`src/core/tally.rs`): two threads
//! change the counts at once, and a lease is taken on one thread and ended
//! on another, whose cell may be the first thread's own, handed over
//! through the epoch registry when that thread exits. No change is lost,
//! and a reader never sees a count wrap below 0.
//! Run with `make loom`.

use crate::core::loom_support::spawn_with;
use crate::core::sync::{spin_wait, AtomicBool, Ordering};
use crate::core::tally::Tally;
use loom::sync::Arc;

struct Shared {
    tally: Tally,
    /// Set by the thread that took the lease: the handle, handed over.
    handed: AtomicBool,
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        tally: Tally::new(0, 0),
        handed: AtomicBool::new(false),
    })
}

/// Take a lease, then hand it over.
fn take_and_hand(shared: &Shared) {
    shared.tally.took(1);
    shared.handed.store(true, Ordering::Release);
}

/// Two threads take a lease each at the same time; one hands its lease to
/// the other, which ends it. The second may register after the first
/// exits, and then writes the first one's cell. No change is lost (two
/// threads writing one cell would lose one), and a reader in between never
/// sees a count wrap below 0.
#[test]
fn concurrent_changes_and_a_handed_cell_lose_nothing() {
    loom::model(|| {
        let shared = shared();
        let taker = spawn_with(&shared, take_and_hand);
        let freer = spawn_with(&shared, |shared| {
            shared.tally.took(1);
            while !shared.handed.load(Ordering::Acquire) {
                spin_wait();
            }
            shared.tally.ended_and_returned(1);
        });
        let (taken, live) = (shared.tally.taken(), shared.tally.live());
        assert!(taken <= 2 && live <= 2, "saw {taken} taken, {live} live");
        taker.join().unwrap();
        freer.join().unwrap();
        assert_eq!((shared.tally.taken(), shared.tally.live()), (1, 1));
    });
}

/// A reader that saw the lease handed over (published) counts it, unless
/// it was ended meanwhile: the taker's add is ordered before the handover.
#[test]
fn a_reader_that_saw_the_lease_counts_it() {
    loom::model(|| {
        let shared = shared();
        let taker = spawn_with(&shared, take_and_hand);
        if shared.handed.load(Ordering::Acquire) {
            assert_eq!(shared.tally.live(), 1);
        }
        taker.join().unwrap();
        assert_eq!(shared.tally.taken(), 1);
    });
}
