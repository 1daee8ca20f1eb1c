//! `order = "random"`: the free blocks as an array under a spin lock
//! (`spin_lock.rs`); a take draws from the pool's generator and
//! swap-removes, exactly as the reference model specifies
//! (`natpool/reference/reuse.py`).
//!
//! The lock is held for O(1) work: a take's draw and swap-remove, a
//! return's append (the array has room for every block from the start, so
//! it never reallocates), a chain's takes (at most `CHAIN`, into room
//! reserved before the lock), a snapshot's copy into an array allocated before
//! the lock is taken. The one exception is [`listed`](Shuffle::listed), a
//! scan of the array (no allocation, no syscall), made only by `reserve`'s
//! out-of-turn take of one address.

use crate::core::error::Error;
use crate::core::free_list::entries;
use crate::core::rng::SplitMix64;
use crate::core::spin_lock::{SpinGuard, SpinLock};

pub struct Shuffle {
    /// Never longer than its capacity, reserved for all blocks at creation.
    array: SpinLock<Vec<u32>>,
}

impl Shuffle {
    /// All `n` blocks free: the array `[0, 1, ..., n - 1]`.
    pub fn new(n: u32) -> Result<Self, Error> {
        let array = entries(n, "a free array", |offset| offset)?.into_vec();
        Ok(Shuffle {
            array: SpinLock::new(array),
        })
    }

    /// The array `listed`, with room for all `n` blocks.
    pub fn restored(n: u32, listed: &[u32]) -> Result<Self, Error> {
        let mut array = Vec::new();
        array.try_reserve_exact(n as usize).map_err(|_| {
            Error::OutOfMemory(format!("cannot reserve a free array of {n} blocks"))
        })?;
        array.extend_from_slice(listed);
        Ok(Shuffle {
            array: SpinLock::new(array),
        })
    }

    /// The array, from its first element (copied under the lock into an
    /// array allocated before it).
    pub fn entries(&self) -> Vec<u32> {
        let capacity = self.array().capacity();
        let mut entries = Vec::with_capacity(capacity);
        entries.extend_from_slice(&self.array());
        entries
    }

    #[inline]
    fn array(&self) -> SpinGuard<'_, Vec<u32>> {
        self.array.lock()
    }

    /// Take one reserved block: one draw.
    #[inline]
    pub fn pop(&self, rng: &SplitMix64) -> u32 {
        take(&mut self.array(), rng)
    }

    /// Take `count` reserved blocks, one draw each, appending them in order.
    #[inline]
    pub fn pop_many(&self, count: u64, out: &mut Vec<u32>, rng: &SplitMix64) {
        // Any growth of `out` before the lock, not under it.
        out.reserve(count as usize);
        let mut array = self.array();
        out.extend((0..count).map(|_| take(&mut array, rng)));
    }

    /// Whether block `offset` is in the array (under the lock, which every
    /// later take of it acquires). A scan of the array: the one section of
    /// this lock that is not O(1).
    pub fn listed(&self, offset: u32) -> bool {
        self.array().contains(&offset)
    }

    /// Append blocks in order (within the capacity: no reallocation).
    #[inline]
    pub fn push_many(&self, offsets: &[u32]) {
        let mut array = self.array();
        debug_assert!(array.len() + offsets.len() <= array.capacity());
        array.extend_from_slice(offsets);
    }
}

/// Draw `j` in `0..len` and swap-remove `array[j]` (a reservation
/// guarantees the array is not empty).
#[inline]
fn take(array: &mut Vec<u32>, rng: &SplitMix64) -> u32 {
    let j = rng.below(array.len());
    array.swap_remove(j)
}
