//! What the fused lists (`fused.rs`, `fused_stack.rs`, `shuffle.rs`) do
//! alike on their one word: the operations that touch only its free count
//! (`avail`) and the closed and drained bits, wherever each list keeps
//! `avail` in it.
//!
//! A list whose word carries a lock bit ([`LOCK`](FusedWord::LOCK), the
//! random order's array) is changed only by the lock's holder, which
//! releases it with a plain store of the whole word: these operations then
//! wait for the bit to be clear and change the word with a CAS from a word
//! without it, never with a `fetch_*` that a holder's store would undo. For
//! the lock-free lists `LOCK` is 0 and the waits compile away.

use crate::core::free_list::{At, Reserve, CLOSED, SHUT};
use crate::core::sync::{AtomicU64, Backoff, Ordering};

pub(super) trait FusedWord {
    /// The bit of the word that a lock holder sets (0: the list has none).
    const LOCK: u64 = 0;

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

    /// `word`, or once its lock bit is clear the word then (loaded again,
    /// `Relaxed`: a CAS from it decides and orders).
    #[inline(always)]
    fn unlocked(&self, mut word: u64) -> u64 {
        if Self::LOCK != 0 && word & Self::LOCK != 0 {
            let mut backoff = Backoff::new();
            while word & Self::LOCK != 0 {
                backoff.wait_for_holder();
                word = self.word().load(Ordering::Relaxed);
            }
        }
        word
    }

    /// Change the word by `f` with a CAS from an unlocked word (`ordering`
    /// on success); the word before.
    #[inline]
    fn update(&self, f: impl Fn(u64) -> u64, ordering: Ordering) -> u64 {
        let cell = self.word();
        let mut word = cell.load(Ordering::Relaxed);
        loop {
            word = self.unlocked(word);
            match cell.compare_exchange_weak(word, f(word), ordering, Ordering::Relaxed) {
                Ok(before) => return before,
                Err(seen) => word = seen,
            }
        }
    }

    /// Reserve one free block without taking an entry (`reserve` takes a
    /// block out of turn; its entry stays listed, a phantom): `avail -= 1`,
    /// the rest of the word kept.
    fn reserve_in_place(&self) -> Reserve {
        let cell = self.word();
        let mut word = cell.load(Ordering::Relaxed);
        loop {
            word = self.unlocked(word);
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
        let before = if Self::LOCK == 0 {
            self.word().fetch_add(self.one(), Ordering::Release)
        } else {
            self.update(|word| word.wrapping_add(self.one()), Ordering::Release)
        };
        self.count(before).wrapping_add(1)
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
            word = self.unlocked(word);
            let closes = word & CLOSED == 0 && self.avail_of(word) == total;
            let next = if closes { word | CLOSED } else { word };
            match cell.compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return closes,
                Err(seen) => word = seen,
            }
        }
    }

    /// Clear `bits` (`fetch_and`, or with a lock bit a CAS from an unlocked
    /// word); yields the count before.
    fn clear(&self, bits: u64) -> u64 {
        let before = if Self::LOCK == 0 {
            self.word().fetch_and(!bits, Ordering::AcqRel)
        } else {
            self.update(|word| word & !bits, Ordering::AcqRel)
        };
        self.count(before)
    }

    /// Set `bits` (`fetch_or`, or with a lock bit a CAS from an unlocked
    /// word).
    fn set(&self, bits: u64) {
        if Self::LOCK == 0 {
            self.word().fetch_or(bits, Ordering::AcqRel);
        } else {
            self.update(|word| word | bits, Ordering::AcqRel);
        }
    }
}
