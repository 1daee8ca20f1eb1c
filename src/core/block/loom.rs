//! loom models of a connection block's lease state word
//! (`src/core/block.rs`): occupy/read publication, a free racing with
//! lookups (the last reader out completes a deferred release, held or not),
//! and the phantom protocol of `reserve`: a take that popped a block racing
//! with a reserver's mark, and a take that pops a phantom racing with the
//! end of the reserved lease (or of its hold).

use crate::core::block::{ConnectionBlock, Mark, Release, Verdict};
use crate::core::loom_support::spawn_with;
use crate::core::sync::spin_wait;
use loom::sync::Arc;

/// A reader racing with `occupy` sees nothing or the new data, never the old.
#[test]
fn a_lookup_sees_a_block_only_after_its_data() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(1, 2, 7));
        let reader = spawn_with(&block, move |block| {
            block.read(|generation, data| (generation, *data))
        });
        // SAFETY: the block is fresh and this thread alone occupies it.
        assert_eq!(unsafe { block.occupy(42, || ()).unwrap() }, 7);
        match reader.join().unwrap() {
            None => {}
            Some((seen, released)) => {
                assert_eq!(seen, (7, 42));
                assert_eq!(released, None);
            }
        }
        assert_eq!(block.release(7, false), Release::Done(42));
    });
}

/// A free racing with two lookups: the data is handed back exactly once (to
/// the free or to the last reader out), readers only ever see the live data,
/// and the generation moves on by one.
#[test]
fn a_free_racing_with_lookups_releases_exactly_once() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(1, 2, 0));
        // SAFETY: the block is fresh and owned by this thread.
        unsafe { block.occupy(5, || ()).unwrap() };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                spawn_with(&block, move |block| {
                    block.read(|generation, data| (generation, *data))
                })
            })
            .collect();
        let freed = block.release(0, false);
        let mut returned = Vec::new();
        match freed {
            Release::Done(data) => returned.push(data),
            Release::Deferred => {}
            Release::NotLive | Release::Listed(_) => panic!("the lease was live, not reserved"),
        }
        for reader in readers {
            if let Some((seen, released)) = reader.join().unwrap() {
                assert_eq!(seen, (0, 5));
                returned.extend(released.map(|completed| completed.data));
            }
        }
        assert_eq!(returned, vec![5], "released exactly once");
        assert_eq!(block.generation(), 1);
        assert!(!block.is_live(0));
        assert_eq!(block.release(0, false), Release::NotLive);
    });
}

/// Two frees of the same lease (a double free from two threads): one wins.
#[test]
fn a_double_free_releases_once() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(1, 2, 3));
        // SAFETY: the block is fresh and owned by this thread.
        unsafe { block.occupy(9, || ()).unwrap() };
        let other = spawn_with(&block, move |block| block.release(3, false));
        let mine = block.release(3, false);
        let theirs = other.join().unwrap();
        let outcomes = [mine, theirs];
        assert_eq!(
            outcomes.iter().filter(|o| **o == Release::Done(9)).count(),
            1
        );
        assert_eq!(
            outcomes.iter().filter(|o| **o == Release::NotLive).count(),
            1
        );
    });
}

/// A free with a hold racing with a lookup: the data comes back exactly
/// once; when the reader completes the release it is told the release was
/// held (so it queues the block instead of returning it).
#[test]
fn a_held_free_racing_with_a_lookup_marks_the_deferred_release() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(1, 2, 0));
        // SAFETY: the block is fresh and owned by this thread.
        unsafe { block.occupy(6, || ()).unwrap() };
        let reader = spawn_with(&block, move |block| block.read(|_, data| *data));
        let freed = block.release(0, true);
        let read = reader.join().unwrap();
        match (freed, read) {
            (Release::Done(data), read) => {
                assert_eq!(data, 6);
                if let Some((seen, completed)) = read {
                    assert_eq!((seen, completed), (6, None));
                }
            }
            (Release::Deferred, Some((seen, Some(completed)))) => {
                assert_eq!(seen, 6);
                assert_eq!((completed.data, completed.hold), (6, true));
            }
            (freed, read) => panic!("free {freed:?}, read {read:?}"),
        }
        assert_eq!(block.generation(), 1);
        assert_eq!(block.release(0, true), Release::NotLive);
    });
}

/// A take that popped a free block (and has not made it live yet) races
/// with a reserver marking it. The entry is not listed any more, so the
/// reserver waits for the take's verdict: the take either discards the
/// phantom it met (the block is the reserver's) or stores `LIVE` over the
/// mark (the allocation's). Exactly one of them writes `data` (loom's cell
/// checks that the writes never overlap), and the winner's data is what a
/// release hands back.
#[test]
fn a_take_and_a_reserver_agree_on_a_popped_block() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(0, 2, 4));
        // SAFETY (in the thread): the take owns the entry it popped.
        let taker = spawn_with(&block, |block| unsafe { block.occupy(1, || ()) });
        let reserved = match block.mark() {
            Mark::Marked => loop {
                match block.verdict() {
                    Verdict::Marked => spin_wait(),
                    Verdict::Lost => break None,
                    Verdict::Discarded => {
                        // SAFETY: the take discarded our phantom: ours.
                        break Some(unsafe { block.occupy_reserved(2) });
                    }
                }
            },
            Mark::Live => None,
            other => panic!("a popped free block marked {other:?}"),
        };
        let took = taker.join().unwrap();
        match (took, reserved) {
            (Ok(generation), None) => {
                assert_eq!(block.release(generation, false), Release::Done(1))
            }
            (Err(1), Some(generation)) => {
                // Its entry was discarded: the release pushes it (Done).
                assert_eq!(block.release(generation, false), Release::Done(2));
            }
            (took, reserved) => panic!("take {took:?}, reserve {reserved:?}"),
        }
        assert!(!block.settle(), "no phantom is left behind");
    });
}

/// The lease of a reserved block ends (a free, no hold) while a take pops
/// the block's phantom: the take discards it and the free pushes the block,
/// or the free settles it into a free entry and the take makes it live with
/// its own data. Never both, never neither.
#[test]
fn a_reserved_lease_ends_while_a_take_pops_its_phantom() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(0, 2, 0));
        assert_eq!(block.mark(), Mark::Marked);
        // SAFETY: marked by this thread; its phantom is listed.
        let generation = unsafe { block.occupy_reserved(5) };
        // SAFETY (in the thread): the take owns the entry it popped.
        let taker = spawn_with(&block, |block| unsafe { block.occupy(6, || ()) });
        let pushed = match block.release(generation, false) {
            Release::Listed(5) => !block.settle(),
            Release::Done(5) => true, // the take discarded the phantom first
            other => panic!("{other:?}"),
        };
        let took = taker.join().unwrap();
        match (took, pushed) {
            (Ok(next), false) => {
                assert_eq!(next, 1);
                assert_eq!(block.release(next, false), Release::Done(6));
            }
            (Err(6), true) => assert_eq!(block.generation(), 1),
            (took, pushed) => panic!("take {took:?}, pushed {pushed}"),
        }
    });
}

/// The hold of a reserved block ends while a take pops its phantom (still
/// listed): the same agreement, through `settle` at the hold's end.
#[test]
fn a_reserved_blocks_hold_ends_while_a_take_pops_its_phantom() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(0, 2, 0));
        assert_eq!(block.mark(), Mark::Marked);
        // SAFETY: marked by this thread; its phantom is listed.
        let generation = unsafe { block.occupy_reserved(5) };
        assert_eq!(block.release(generation, true), Release::Done(5));
        assert_eq!(block.mark(), Mark::Held);
        // SAFETY (in the thread): the take owns the entry it popped.
        let taker = spawn_with(&block, |block| unsafe { block.occupy(6, || ()) });
        let pushed = !block.settle();
        match (taker.join().unwrap(), pushed) {
            (Ok(next), false) => assert_eq!(block.release(next, false), Release::Done(6)),
            (Err(6), true) => assert_eq!(block.mark(), Mark::Marked),
            (took, pushed) => panic!("take {took:?}, pushed {pushed}"),
        }
    });
}

/// The hold of a block without a phantom ends (`settle`: a plain store,
/// nothing else writing the word) while a reserver marks the block: the
/// mark is refused while the block is held and succeeds after the store,
/// and is never lost to it.
#[test]
fn a_hold_ends_while_a_reserver_marks_the_block() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(0, 2, 0));
        // SAFETY: the block is fresh and owned by this thread.
        let generation = unsafe { block.occupy(5, || ()).unwrap() };
        assert_eq!(block.release(generation, true), Release::Done(5));
        let reserver = spawn_with(&block, |block| block.mark());
        assert!(!block.settle(), "no phantom: the block is pushed");
        match reserver.join().unwrap() {
            Mark::Held => assert_eq!(block.mark(), Mark::Marked),
            Mark::Marked => assert_eq!(block.verdict(), Verdict::Marked, "the mark stands"),
            other => panic!("mark {other:?}"),
        }
    });
}
