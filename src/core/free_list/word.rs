//! What the two fused lists (`fused.rs`, `fused_stack.rs`) do alike on their
//! one word: the operations that touch only its free count (`avail`) and
//! the closed and drained bits, wherever each list keeps `avail` in it.

use crate::core::free_list::{At, Reserve, CLOSED, SHUT};
use crate::core::sync::{AtomicU64, Ordering};

pub(super) trait FusedWord {
    /// The list's word.
    fn word(&self) -> &AtomicU64;

    /// `avail` in `word`.
    fn avail_of(&self, word: u64) -> u64;

    /// One free block of `avail`, as a number added to the word.
    fn one(&self) -> u64;

    /// `word` as the free list's callers read a count: the closed and
    /// drained bits and `avail`.
    #[inline(always)]
    fn count(&self, word: u64) -> u64 {
        word & SHUT | self.avail_of(word)
    }

    /// The count now (a snapshot).
    #[inline]
    fn load(&self) -> u64 {
        self.count(self.word().load(Ordering::Acquire))
    }

    /// Reserve one free block without taking an entry (`reserve` takes a
    /// block out of turn; its entry stays listed, a phantom): `avail -= 1`,
    /// the rest of the word kept.
    fn reserve_in_place(&self) -> Reserve {
        let cell = self.word();
        let mut word = cell.load(Ordering::Relaxed);
        loop {
            if word & SHUT != 0 {
                return Reserve::Closed;
            }
            let avail = self.avail_of(word);
            if avail == 0 {
                return Reserve::Empty;
            }
            match cell.compare_exchange_weak(
                word,
                word.wrapping_sub(self.one()),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Reserve::Taken {
                        count: 1,
                        last: avail == 1,
                        left: avail - 1,
                        at: At(0),
                    }
                }
                Err(seen) => word = seen,
            }
        }
    }

    /// Give back a reservation that took no entry: `avail += 1`; the count
    /// after.
    fn unreserve(&self) -> u64 {
        self.count(self.word().fetch_add(self.one(), Ordering::Release))
            .wrapping_add(1)
    }

    /// Close the list if all `total` blocks are free: one CAS that sets
    /// `CLOSED` on a word whose `avail` is `total` (then no phantom and no
    /// reservation is out), open or drained. Decided on the value a CAS saw
    /// (the latest), never on a load alone: a word that does not qualify is
    /// CASed to itself, as the counted list's CAS from `total` fails on the
    /// latest count.
    fn try_close(&self, total: u64) -> bool {
        let cell = self.word();
        let mut word = cell.load(Ordering::Relaxed);
        loop {
            let closes = word & CLOSED == 0 && self.avail_of(word) == total;
            let next = if closes { word | CLOSED } else { word };
            match cell.compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return closes,
                Err(seen) => word = seen,
            }
        }
    }

    /// Clear `bits` (`fetch_and`); yields the count before.
    fn clear(&self, bits: u64) -> u64 {
        self.count(self.word().fetch_and(!bits, Ordering::AcqRel))
    }

    /// Set `bits` (`fetch_or`).
    fn set(&self, bits: u64) {
        self.word().fetch_or(bits, Ordering::AcqRel);
    }
}
