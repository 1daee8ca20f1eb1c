//! `order = "random"`: the free blocks as an array under a mutex; a take
//! draws from the pool's generator and swap-removes, exactly as the
//! reference model specifies (`natpool/reference/reuse.py`). Correctness
//! first: the lock is held for one draw and one swap per block.

use crate::core::error::Error;
use crate::core::free_list::entries;
use crate::core::rng::SplitMix64;
use crate::core::sync::Mutex;

pub struct Shuffle {
    array: Mutex<Vec<u32>>,
}

impl Shuffle {
    /// All `n` blocks free: the array `[0, 1, ..., n - 1]`.
    pub fn new(n: u32) -> Result<Self, Error> {
        let array = entries(n, "a free array", |offset| offset)?.into_vec();
        Ok(Shuffle {
            array: Mutex::new(array),
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
            array: Mutex::new(array),
        })
    }

    /// The array, from its first element.
    pub fn entries(&self) -> Vec<u32> {
        self.array().clone()
    }

    fn array(&self) -> crate::core::sync::MutexGuard<'_, Vec<u32>> {
        // The array is consistent between statements: a poisoned lock is usable.
        self.array
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take one reserved block: one draw.
    #[inline]
    pub fn pop(&self, rng: &SplitMix64) -> u32 {
        take(&mut self.array(), rng)
    }

    /// Take `count` reserved blocks, one draw each, appending them in order.
    #[inline]
    pub fn pop_many(&self, count: u64, out: &mut Vec<u32>, rng: &SplitMix64) {
        let mut array = self.array();
        out.extend((0..count).map(|_| take(&mut array, rng)));
    }

    /// Whether block `offset` is in the array (under the lock, which every
    /// later take of it acquires).
    pub fn listed(&self, offset: u32) -> bool {
        self.array().contains(&offset)
    }

    /// Append blocks in order.
    #[inline]
    pub fn push_many(&self, offsets: &[u32]) {
        self.array().extend_from_slice(offsets);
    }
}

/// Draw `j` in `0..len` and swap-remove `array[j]` (a reservation
/// guarantees the array is not empty).
fn take(array: &mut Vec<u32>, rng: &SplitMix64) -> u32 {
    let j = rng.below(array.len());
    array.swap_remove(j)
}
