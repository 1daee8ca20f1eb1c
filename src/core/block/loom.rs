//! loom models of a connection block's lease state word
//! (`src/core/block.rs`): occupy/read publication, and a free racing with
//! lookups (the last reader out completes a deferred release, held or not).

use crate::core::block::{ConnectionBlock, Release};
use crate::core::loom_support::spawn_with;
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
            Release::NotLive => panic!("the lease was live"),
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
