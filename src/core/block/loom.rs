//! loom models of a connection block's lease state word
//! (`src/core/block.rs`): occupy/read publication, and a free racing with
//! lookups (the last reader out completes a deferred release).

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
        assert_eq!(unsafe { block.occupy(42) }, 7);
        match reader.join().unwrap() {
            None => {}
            Some((seen, released)) => {
                assert_eq!(seen, (7, 42));
                assert_eq!(released, None);
            }
        }
        assert_eq!(block.release(7), Release::Done(42));
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
        unsafe { block.occupy(5) };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                spawn_with(&block, move |block| {
                    block.read(|generation, data| (generation, *data))
                })
            })
            .collect();
        let freed = block.release(0);
        let mut returned = Vec::new();
        match freed {
            Release::Done(data) => returned.push(data),
            Release::Deferred => {}
            Release::NotLive => panic!("the lease was live"),
        }
        for reader in readers {
            if let Some((seen, released)) = reader.join().unwrap() {
                assert_eq!(seen, (0, 5));
                returned.extend(released);
            }
        }
        assert_eq!(returned, vec![5], "released exactly once");
        assert_eq!(block.generation(), 1);
        assert!(!block.is_live(0));
        assert_eq!(block.release(0), Release::NotLive);
    });
}

/// Two frees of the same lease (a double free from two threads): one wins.
#[test]
fn a_double_free_releases_once() {
    loom::model(|| {
        let block = Arc::new(ConnectionBlock::<u64>::new(1, 2, 3));
        // SAFETY: the block is fresh and owned by this thread.
        unsafe { block.occupy(9) };
        let other = spawn_with(&block, move |block| block.release(3));
        let mine = block.release(3);
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
