//! Which subpools have a free block: a 64-ary hierarchy of bitmaps over
//! subpool ids, so the lowest such id is found in a constant number of loads
//! (one per level) and a free address is never searched for.
//!
//! Level 0 has one bit per subpool id; a bit of level `k + 1` is set when the
//! corresponding word of level `k` may be non-zero. All operations are
//! lock-free (`fetch_or`/`fetch_and`, SeqCst). The bits are hints that the
//! pool keeps exact in single-threaded use: a bit is set after a subpool's
//! count goes from 0 to 1 and cleared (then re-checked) when it reaches 0.
//! Under concurrency a set bit may be stale, never missing for long: every
//! clear is followed by a re-check that sets the bit again if a concurrent
//! setter raced with it, and [`Availability::first`] repairs stale summaries.

use crate::core::sync::{AtomicU64, Ordering::SeqCst};

use crate::core::segvec::SegVec;

pub struct Availability {
    /// Level 0's first word (ids 0..64), outside the segments: `first`
    /// reads it with one load.
    low: AtomicU64,
    /// Every other word; level 0's word 0 is `low`, its slot here unused.
    levels: Vec<SegVec<AtomicU64>>,
}

impl Availability {
    /// A map for ids below `max_ids` (at least one level).
    pub fn new(max_ids: u64) -> Self {
        let mut depth = 1;
        let mut covered: u128 = 64;
        while covered < u128::from(max_ids) {
            depth += 1;
            covered *= 64;
        }
        let levels: Vec<SegVec<AtomicU64>> = (0..depth).map(|_| SegVec::new()).collect();
        levels[depth - 1].ensure(0);
        Availability {
            low: AtomicU64::new(0),
            levels,
        }
    }

    /// Make `id` usable. Call with the pool's writer lock held.
    pub fn ensure(&self, id: u32) {
        let mut index = id as usize;
        for level in &self.levels {
            index /= 64;
            level.ensure(index);
        }
    }

    /// The word of `level` holding bit `index`.
    fn word(&self, level: usize, index: usize) -> &AtomicU64 {
        self.word_at(level, index / 64)
            .expect("availability word ensured before use")
    }

    /// Word `at` of `level`, if made.
    fn word_at(&self, level: usize, at: usize) -> Option<&AtomicU64> {
        if level == 0 && at == 0 {
            return Some(&self.low);
        }
        self.levels[level].get(at)
    }

    /// Mark `id` as having a free block.
    pub fn set(&self, id: u32) {
        self.set_at(0, id as usize);
    }

    fn set_at(&self, level: usize, index: usize) {
        let bit = 1u64 << (index % 64);
        let previous = self.word(level, index).fetch_or(bit, SeqCst);
        if previous == 0 && level + 1 < self.levels.len() {
            self.set_at(level + 1, index / 64);
        }
    }

    /// Mark `id` as having no free block.
    pub fn clear(&self, id: u32) {
        self.clear_at(0, id as usize);
    }

    fn clear_at(&self, level: usize, index: usize) {
        let bit = 1u64 << (index % 64);
        let word = self.word(level, index);
        if word.fetch_and(!bit, SeqCst) != bit || level + 1 == self.levels.len() {
            return;
        }
        // The word went to zero: clear its summary bit, then re-check, since
        // a concurrent `set_at` may have found the word zero and set it.
        self.clear_at(level + 1, index / 64);
        if word.load(SeqCst) != 0 {
            self.set_at(level + 1, index / 64);
        }
    }

    /// The lowest id whose bit is set. Inline: the common case, a set bit
    /// among ids 0..64, is one load; the search is a call.
    #[inline(always)]
    pub fn first(&self) -> Option<u32> {
        // Ids 0..64 are the lowest: if one of them is set, no summary needs
        // to be read. (Most pools have fewer than 64 subpools at a time.)
        let word = self.low.load(SeqCst);
        if word != 0 {
            return Some(word.trailing_zeros());
        }
        self.search()
    }

    /// [`first`](Self::first) past ids 0..64: down the summary levels.
    #[inline(never)]
    fn search(&self) -> Option<u32> {
        'search: loop {
            let mut index = 0usize;
            for level in (0..self.levels.len()).rev() {
                let word = self
                    .word_at(level, index)
                    .expect("summary implies word")
                    .load(SeqCst);
                if word == 0 {
                    if level + 1 == self.levels.len() {
                        return None;
                    }
                    // A stale summary bit: repair it and search again.
                    self.clear_at(level + 1, index);
                    if self
                        .word_at(level, index)
                        .is_some_and(|w| w.load(SeqCst) != 0)
                    {
                        self.set_at(level + 1, index);
                    }
                    continue 'search;
                }
                index = index * 64 + word.trailing_zeros() as usize;
            }
            return Some(index as u32);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn finds_the_lowest_set_id_across_levels() {
        let map = Availability::new(1 << 20);
        for id in [70_000, 5_000, 64, 3] {
            map.ensure(id);
        }
        assert_eq!(map.first(), None);
        map.set(70_000);
        assert_eq!(map.first(), Some(70_000));
        map.set(5_000);
        map.set(64);
        assert_eq!(map.first(), Some(64));
        map.set(3);
        assert_eq!(map.first(), Some(3));
        map.clear(3);
        map.clear(64);
        assert_eq!(map.first(), Some(5_000));
        map.clear(5_000);
        map.clear(70_000);
        assert_eq!(map.first(), None);
    }

    #[test]
    fn single_level_map() {
        let map = Availability::new(10);
        map.ensure(9);
        map.set(9);
        map.set(2);
        assert_eq!(map.first(), Some(2));
        map.clear(2);
        map.clear(2);
        assert_eq!(map.first(), Some(9));
    }
}

#[cfg(all(loom, test))]
mod loom;
