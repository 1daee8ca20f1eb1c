//! loom models of the availability map (`src/core/availability.rs`): a
//! clear that empties a word (and its summary bit) racing with a set in the
//! same word or another one; a set bit is never lost.

use crate::core::availability::Availability;
use crate::core::loom_support::spawn_with;
use loom::sync::Arc;

fn two_level_map(ids: &[u32]) -> Arc<Availability> {
    let map = Availability::new(4096);
    for id in ids {
        map.ensure(*id);
    }
    Arc::new(map)
}

fn clear_races_with_set(cleared: u32, set: u32) {
    loom::model(move || {
        let map = two_level_map(&[cleared, set]);
        map.set(cleared);
        let clearer = spawn_with(&map, move |map| map.clear(cleared));
        let setter = spawn_with(&map, move |map| map.set(set));
        clearer.join().unwrap();
        setter.join().unwrap();
        assert_eq!(map.first(), Some(set));
        map.clear(set);
        assert_eq!(map.first(), None);
    });
}

// Ids from 64 up: `first` answers ids 0..64 from the first word without
// reading the summaries, and the summaries are what these models check.
#[test]
fn a_set_in_the_word_being_emptied_is_kept() {
    clear_races_with_set(64, 65);
}

#[test]
fn a_set_in_another_word_is_kept() {
    clear_races_with_set(64, 128);
}

#[test]
fn a_set_below_64_is_found_without_the_summaries() {
    clear_races_with_set(0, 1);
}

/// A clear and a set of a set id race with a `first` that may find (and
/// repair) a stale summary bit. Whatever the bit ends as, the summary must
/// agree with it: a later set is always found, a later clear always hides it.
/// (Id 65 is in the second word: ids 0..64 are answered from the first word
/// without the summaries.)
#[test]
fn a_summary_repair_never_loses_a_set() {
    loom::model(|| {
        let map = two_level_map(&[65]);
        map.set(65);
        let setter = spawn_with(&map, move |map| map.set(65));
        let clearer = spawn_with(&map, move |map| map.clear(65));
        let seen = map.first();
        assert!(seen.is_none() || seen == Some(65));
        setter.join().unwrap();
        clearer.join().unwrap();
        map.set(65);
        assert_eq!(map.first(), Some(65), "a set bit hidden by its summary");
        map.clear(65);
        assert_eq!(map.first(), None);
    });
}
