//! `order = "random"`: the free blocks as an array; a take draws from the
//! pool's generator and swap-removes, exactly as the reference model
//! specifies (`natpool/reference/reuse.py`).
//!
//! The array is guarded by a lock bit in the list's one word, beside the
//! free count and the closed and drained bits:
//!
//! ```text
//! 63 CLOSED | 62 DRAINED | 61 LOCK | avail: 61
//! ```
//!
//! A take of one is one CAS from an open, unlocked word with `avail > 0` to
//! `avail - 1` with `LOCK` set (the reservation and the lock at once), the
//! draw and swap-remove, then a plain `Release` store of the word without
//! `LOCK`. A return is one CAS that sets `LOCK`, the append, then a store
//! of the word with `avail + k`. So a take or a return costs one locked
//! instruction, where a count in front of a spin lock cost two each (the
//! count's RMW and the lock's CAS).
//!
//! Only the lock's holder changes a locked word (its release is a store,
//! which would undo any other change): every other change of the word is a
//! CAS from an unlocked word (`word.rs`), waiting while the bit is set. A
//! reservation of more than one (a batch) is such a CAS (`avail -= count`,
//! no lock), and its takes lock once for all of them (at most `CHAIN`).
//!
//! Under the lock, O(1) work only: a take's draw and swap-remove, a
//! return's append (the array has room for every block from the start, so
//! it never reallocates), a batch's takes (into room reserved before the
//! lock), a snapshot's copy into an array allocated before the lock. The
//! one exception is [`listed`](Shuffle::listed), a scan of the array (no
//! allocation, no syscall), made only by `reserve`'s out-of-turn take of
//! one address.
//!
//! Orderings: the locking CAS is `Acquire` and reads the previous holder's
//! `Release` store (or an RMW after it in its release sequence), so each
//! section happens after the one before; the other CASes are those of
//! `word.rs`. The loom models (`loom.rs`, every model run on this list)
//! check it.

use std::mem::ManuallyDrop;

use crossbeam_utils::CachePadded;

use crate::core::error::Error;
use crate::core::free_list::word::FusedWord;
use crate::core::free_list::{At, Reserve, SHUT};
use crate::core::prefetch::prefetch;
use crate::core::rng::SplitMix64;
use crate::core::sync::{AtomicU64, CellAccess, DataCell, Ordering};

const LOCK: u64 = 1 << 61;
const AVAIL: u64 = LOCK - 1;

pub struct Shuffle {
    /// Written by every take and return: on a cache line of its own.
    word: CachePadded<AtomicU64>,
    /// Never longer than `n`, the room reserved for all blocks at creation.
    array: DataCell<Vec<u32>>,
    n: usize,
}

// SAFETY: the array is reached only through a `Held`, and one exists only
// while its thread holds the word's lock bit (set by a CAS that saw it
// clear, cleared by the holder's store), so the array passes from thread to
// thread but is never shared.
unsafe impl Sync for Shuffle {}

/// The lock, held: the array, and the word its release stores.
struct Held<'a> {
    list: &'a Shuffle,
    /// The word to store on release (without `LOCK`): the word the lock
    /// was taken from, as the holder changes it.
    word: u64,
    /// Ends (dropped by hand) before the releasing store: under loom the
    /// access must be over before the next holder's begins.
    access: ManuallyDrop<CellAccess<Vec<u32>>>,
}

impl Held<'_> {
    #[inline(always)]
    fn array(&mut self) -> &mut Vec<u32> {
        // SAFETY: this holder has the lock, so no other access to the array
        // exists while the reference (bounded by `&mut self`) lives.
        unsafe { &mut *self.access.as_ptr() }
    }

    /// Draw `j` in `0..len` and swap-remove `array[j]` (a reservation
    /// guarantees the array is not empty); then prefetch the slot that the
    /// third draw from now reads if takes and returns of one alternate
    /// (each take then sees this take's `len`), which the return after the
    /// next take reads for its hint (`give_back_hinted`): a pair's time
    /// ahead, so that the line is in by then.
    #[inline(always)]
    fn take(&mut self, rng: &SplitMix64) -> u32 {
        let array = self.array();
        let len = array.len();
        let taken = array.swap_remove(rng.below(len));
        prefetch(array.as_ptr().wrapping_add(rng.peek_below(3, len)));
        taken
    }
}

impl Drop for Held<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and not used after (no reference made
        // through the holder outlives `&mut self`).
        unsafe { ManuallyDrop::drop(&mut self.access) };
        self.list.word.store(self.word, Ordering::Release);
    }
}

impl Shuffle {
    /// An array of room `n` holding `listed` (all `n` blocks in order when
    /// `None`), of which `avail` are free (the rest phantoms); `flags` are
    /// the closed and drained bits.
    pub fn new(n: u32, listed: Option<&[u32]>, avail: u64, flags: u64) -> Result<Self, Error> {
        let mut array = Vec::new();
        array.try_reserve_exact(n as usize).map_err(|_| {
            Error::OutOfMemory(format!("cannot reserve a free array of {n} blocks"))
        })?;
        match listed {
            Some(listed) => array.extend_from_slice(listed),
            None => array.extend(0..n),
        }
        debug_assert!(avail <= array.len() as u64);
        Ok(Shuffle {
            word: CachePadded::new(AtomicU64::new(flags | avail)),
            array: DataCell::new(array),
            n: n as usize,
        })
    }

    /// Take the lock (waiting while another thread holds it): the CAS
    /// that sets the bit on an unlocked word (`Acquire`).
    #[inline]
    fn lock(&self) -> Held<'_> {
        self.held(self.update(|word| word | LOCK, Ordering::Acquire))
    }

    /// The holder of a lock just taken, to release it as `word`.
    #[inline(always)]
    fn held(&self, word: u64) -> Held<'_> {
        Held {
            list: self,
            word,
            access: ManuallyDrop::new(self.array.access()),
        }
    }

    /// One attempt to reserve up to `want` blocks from `word` (with a
    /// strong CAS if `strong`). A reservation of one takes its block at once
    /// under the lock it sets (the block in the [`At`]); of more, it only
    /// counts. `Err(seen)`: the word was locked or the CAS lost to `seen`.
    #[inline(always)]
    fn attempt(
        &self,
        word: u64,
        want: u64,
        rng: &SplitMix64,
        strong: bool,
    ) -> Result<Reserve, u64> {
        if word & SHUT != 0 {
            return Ok(Reserve::Closed);
        }
        let avail = word & AVAIL;
        if avail == 0 {
            return Ok(Reserve::Empty);
        }
        if word & LOCK != 0 {
            return Err(word);
        }
        let count = avail.min(want);
        let after = word.wrapping_sub(count);
        let next = if want == 1 { after | LOCK } else { after };
        let swapped = if strong {
            self.word
                .compare_exchange(word, next, Ordering::Acquire, Ordering::Relaxed)
        } else {
            self.word
                .compare_exchange_weak(word, next, Ordering::Acquire, Ordering::Relaxed)
        };
        swapped?;
        let at = if want == 1 {
            At(u64::from(self.held(after).take(rng)) + 1)
        } else {
            At(0)
        };
        Ok(Reserve::Taken {
            count,
            last: count == avail,
            left: avail - count,
            at,
        })
    }

    /// Reserve up to `want` (at least 1) free blocks; one is taken at once.
    #[inline(always)]
    pub fn reserve_up_to(&self, want: u64, rng: &SplitMix64) -> Reserve {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            match self.attempt(word, want, rng, false) {
                Ok(reserve) => return reserve,
                Err(seen) => word = self.unlocked(seen),
            }
        }
    }

    /// One attempt of [`reserve_up_to`](Self::reserve_up_to), with a strong
    /// CAS: `None` when the word was locked or changed by another thread.
    #[inline(always)]
    pub fn try_reserve_up_to(&self, want: u64, rng: &SplitMix64) -> Option<Reserve> {
        self.attempt(self.word.load(Ordering::Relaxed), want, rng, true)
            .ok()
    }

    /// Take one reserved block: the one the reservation took, or one draw.
    #[inline(always)]
    pub fn take_at(&self, at: At, rng: &SplitMix64) -> u32 {
        match at.0.checked_sub(1) {
            Some(offset) => offset as u32,
            None => self.lock().take(rng),
        }
    }

    /// Take `count` reserved blocks (a reservation's, from `at`), one draw
    /// each, appending them in order.
    #[inline]
    pub fn take_many(&self, at: At, count: u64, out: &mut Vec<u32>, rng: &SplitMix64) {
        if at.0 != 0 {
            debug_assert_eq!(count, 1);
            out.push(self.take_at(at, rng));
            return;
        }
        // Any growth of `out` before the lock, not under it.
        out.reserve(count as usize);
        let mut held = self.lock();
        out.extend((0..count).map(|_| held.take(rng)));
    }

    /// Return `offsets` and count `in_place` more blocks settled where they
    /// stand (phantoms become free entries); the count after.
    #[inline]
    pub fn give_back(&self, offsets: &[u32], in_place: u64) -> u64 {
        self.give_back_hinted(offsets, in_place, None).0
    }

    /// [`give_back`](Self::give_back), and, with `rng`, the block the take
    /// after next would draw if takes and returns of one alternate until
    /// then (read under the lock; `None` when the array has no such slot):
    /// the caller prefetches it, a pair's time before that take. (A take's
    /// swap-remove moves the last entry; so when the next take draws that
    /// slot or the last, the guess is another block: a wasted prefetch.)
    #[inline(always)]
    pub fn give_back_hinted(
        &self,
        offsets: &[u32],
        in_place: u64,
        rng: Option<&SplitMix64>,
    ) -> (u64, Option<u32>) {
        let mut held = self.lock();
        let array = held.array();
        debug_assert!(array.len() + offsets.len() <= self.n);
        array.extend_from_slice(offsets);
        let next = rng.and_then(|rng| array.get(rng.peek_below(2, array.len())).copied());
        held.word = held
            .word
            .wrapping_add(offsets.len() as u64)
            .wrapping_add(in_place);
        (self.count(held.word), next)
    }

    /// The array, from its first element (copied under the lock into an
    /// array allocated before it).
    pub fn entries(&self) -> Vec<u32> {
        let mut entries = Vec::with_capacity(self.n);
        entries.extend_from_slice(self.lock().array());
        entries
    }

    /// Whether block `offset` is in the array (under the lock, which every
    /// later take of it acquires). A scan of the array: the one section of
    /// this lock that is not O(1).
    pub fn listed(&self, offset: u32) -> bool {
        self.lock().array().contains(&offset)
    }
}

impl FusedWord for Shuffle {
    const LOCK: u64 = LOCK;

    fn word(&self) -> &AtomicU64 {
        &self.word
    }

    fn avail_of(&self, word: u64) -> u64 {
        word & AVAIL
    }

    fn one(&self) -> u64 {
        1
    }
}
