//! `order = "fifo"` for a subpool of at most [`MAX`] blocks: the ring of
//! `ring.rs` with the reservation count folded into one word with its
//! positions, so that a take is one CAS and a return one `fetch_add`.
//!
//! The word (`u64`), for a ring of `n` cells and `b` = the bits of `n`:
//!
//! ```text
//! 63 CLOSED | 62 DRAINED | head: 62 - 2b | len: b | avail: b
//! ```
//!
//! * `head`: the next position to take, counted mod `M = n << laps`
//!   (position `p` lives in cell `p % n` on lap `p / n`, `laps` bits of lap:
//!   at least 14, at most 31);
//! * `len`: the positions claimed by returns and not by takes (`tail =
//!   head + len`), at most `n`: every entry in the ring is a distinct block;
//! * `avail`: the free blocks a take may claim: `len` less the phantoms
//!   (blocks `reserve` took out of turn, whose entries stay listed) and less
//!   the reservations of phantoms not settled yet.
//!
//! A take of up to `want` is one CAS from an open word with `avail > 0`:
//! `avail -= count, len -= count, head += count`, claiming the positions
//! `head..head + count`. A return of `k` blocks (`in_place` more settling
//! where they stand) is one `fetch_add` of `k << b | (k + in_place)`: `len`
//! and `avail` cannot carry (neither exceeds `n`), and the old word gives
//! the first position claimed, `head + len`. A take that meets a phantom
//! claims the next position with one more CAS (`head += 1, len -= 1`,
//! `avail` kept): the phantom's reservation paid for it (`len > avail`).
//! So `head + (len - avail)` never passes `tail`: a take claims only
//! positions a return has claimed.
//!
//! The cells and their handshake are `ring.rs`'s (a side whose cell is not
//! ready waits for the one committed step of the side that claimed the
//! position before it), with laps mod `2^laps`, in a cell of 4 bytes, not 8:
//!
//! ```text
//! lap: 15 | full: 1 | offset: 16
//! ```
//!
//! A cell can only be as many laps behind a claimed position as there are
//! threads stalled on that cell in turn (two per lap), so `2^laps >= 2^14`
//! laps cannot be confused (`laps` = min(15, 62 - 3b): at least 14).

use std::num::NonZeroU64;

use crossbeam_utils::CachePadded;

use crate::core::error::Error;
use crate::core::free_list::word::FusedWord;
use crate::core::free_list::{entries, At, Reserve, SHUT};
use crate::core::sync::{wait_for, AtomicU32, AtomicU64, Ordering};

/// The largest ring whose count folds into its word (`b = 16`, 14 lap bits).
pub const MAX: u32 = (1 << 16) - 1;

/// A cell's offset bits (an offset is below `MAX`).
const OFFSET: u32 = 0xFFFF;
/// A cell's full bit, above the offset.
const FULL: u32 = 1 << 16;
/// A cell's lap, above the full bit: 15 bits.
const LAP_SHIFT: u32 = 17;
/// The lap bits a cell holds, so the most `laps` may be.
const CELL_LAPS: u32 = 32 - LAP_SHIFT;

pub struct Fused {
    /// Written by every take and return: on a cache line of its own.
    word: CachePadded<AtomicU64>,
    cells: Box<[AtomicU32]>,
    /// `n`, the cells.
    n: NonZeroU64,
    /// `b`: the bits of `avail` and of `len` (`len`'s shift).
    bits: u32,
    /// `2b`: `head`'s shift.
    head_shift: u32,
    /// `2^b - 1`.
    mask: u64,
    /// `M = n << laps`: positions are counted mod `M`.
    modulus: u64,
    lap_mask: u64,
    /// What a take of one subtracts (`len` and `avail` one each) and adds
    /// (`head` one), and what a head's wrap at `M` subtracts.
    take_one: u64,
    head_one: u64,
    head_wrap: u64,
}

// The arithmetic below wraps where the layout's invariants rule overflow
// out (`avail <= len <= n < 2^b`, positions `< M`), so that the hot paths
// carry no overflow checks (the release profile has them on).

impl Fused {
    /// A ring of `n` (1 to [`MAX`]) blocks holding `listed` (the next taken
    /// first) of which `avail` are free (the rest phantoms), the cells past
    /// them empty on lap 0; `flags` are the closed and drained bits.
    pub fn new(n: u32, listed: Option<&[u32]>, avail: u64, flags: u64) -> Result<Self, Error> {
        debug_assert!((1..=MAX).contains(&n));
        let bits = 32 - n.leading_zeros();
        let laps = (62 - 3 * bits).min(CELL_LAPS);
        let cells = entries(n, "a free ring", |i| {
            AtomicU32::new(match listed {
                None => FULL | i,
                Some(listed) => match listed.get(i as usize) {
                    Some(&offset) => FULL | offset,
                    None => 0,
                },
            })
        })?;
        let len = listed.map_or(u64::from(n), |listed| listed.len() as u64);
        debug_assert!(avail <= len && len <= u64::from(n));
        Ok(Fused {
            word: CachePadded::new(AtomicU64::new(flags | len << bits | avail)),
            cells,
            n: NonZeroU64::from(std::num::NonZeroU32::new(n).expect("n >= 1")),
            bits,
            head_shift: 2 * bits,
            mask: (1 << bits) - 1,
            modulus: u64::from(n) << laps,
            lap_mask: (1 << laps) - 1,
            take_one: 1 << bits | 1,
            head_one: 1 << (2 * bits),
            head_wrap: (u64::from(n) << laps) << (2 * bits),
        })
    }

    #[inline(always)]
    fn avail(&self, word: u64) -> u64 {
        word & self.mask
    }

    #[inline(always)]
    fn len(&self, word: u64) -> u64 {
        word.wrapping_shr(self.bits) & self.mask
    }

    #[inline(always)]
    fn head(&self, word: u64) -> u64 {
        (word & !SHUT).wrapping_shr(self.head_shift)
    }

    /// `word`'s flags with the given fields.
    #[inline(always)]
    fn with(&self, word: u64, head: u64, len: u64, avail: u64) -> u64 {
        word & SHUT | head.wrapping_shl(self.head_shift) | len.wrapping_shl(self.bits) | avail
    }

    /// A cell's lap, full bit and offset (the lap's bits above `laps`
    /// dropped: `laps <= CELL_LAPS`).
    #[inline(always)]
    fn cell(&self, lap: u64, full: bool, offset: u32) -> u32 {
        ((lap & self.lap_mask) as u32) << LAP_SHIFT | if full { FULL } else { 0 } | offset
    }

    /// A cell's lap and full bit, for comparing with what a side waits for.
    #[inline(always)]
    fn turn(cell: u32) -> u32 {
        cell >> FULL.trailing_zeros()
    }

    /// A position's cell and lap.
    #[inline(always)]
    fn slot(&self, position: u64) -> (usize, u64) {
        ((position % self.n) as usize, position / self.n)
    }

    /// The cell and lap after (`i`, `lap`): no division per step of a
    /// chain (the lap is masked where it is stored, so the wrap at `M`
    /// needs nothing more).
    #[inline(always)]
    fn next_slot(&self, i: usize, lap: u64) -> (usize, u64) {
        if i + 1 == self.cells.len() {
            (0, lap.wrapping_add(1))
        } else {
            (i + 1, lap)
        }
    }

    /// `position + by` mod `M` (`by <= M`).
    #[inline(always)]
    fn step(&self, position: u64, by: u64) -> u64 {
        let next = position.wrapping_add(by);
        if next >= self.modulus {
            next.wrapping_sub(self.modulus)
        } else {
            next
        }
    }

    /// The take CAS from `word`: `Err` with the outcome when it is refused,
    /// else the word after it, the count taken, and whether it was the last.
    #[inline(always)]
    fn claim(&self, word: u64, want: u64) -> Result<(u64, u64, bool), Reserve> {
        if word & SHUT != 0 {
            return Err(Reserve::Closed);
        }
        let avail = self.avail(word);
        if avail == 0 {
            return Err(Reserve::Empty);
        }
        let count = avail.min(want);
        // `len - count, avail - count, head + count` (no flag set: the
        // head's carry into them, if any, is taken back by the wrap).
        let mut next = word
            .wrapping_sub(count.wrapping_mul(self.take_one))
            .wrapping_add(count.wrapping_mul(self.head_one));
        if self.head(word).wrapping_add(count) >= self.modulus {
            next = next.wrapping_sub(self.head_wrap);
        }
        Ok((next, count, count == avail))
    }

    /// Claim up to `want` free blocks and their positions (one CAS;
    /// `Acquire`: a take sees what a return or a `listed` before it in the
    /// word's order did before them).
    #[inline(always)]
    pub fn reserve_up_to(&self, want: u64) -> Reserve {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let (next, count, last) = match self.claim(word, want) {
                Ok(claimed) => claimed,
                Err(refused) => return refused,
            };
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Reserve::Taken {
                        count,
                        last,
                        left: self.avail(word) - count,
                        at: At(self.head(word)),
                    }
                }
                Err(seen) => word = seen,
            }
        }
    }

    /// One attempt of [`reserve_up_to`](Self::reserve_up_to) with a strong
    /// CAS: `None` when another thread changed the word between the load
    /// and the CAS.
    #[inline(always)]
    pub fn try_reserve_up_to(&self, want: u64) -> Option<Reserve> {
        let word = self.word.load(Ordering::Relaxed);
        let (next, count, last) = match self.claim(word, want) {
            Ok(claimed) => claimed,
            Err(refused) => return Some(refused),
        };
        self.word
            .compare_exchange(word, next, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Reserve::Taken {
                count,
                last,
                left: self.avail(word) - count,
                at: At(self.head(word)),
            })
    }

    /// Take the block at the claimed `position`, waiting for its push to land.
    #[inline(always)]
    pub fn take_at(&self, position: u64) -> u32 {
        let (i, lap) = self.slot(position);
        self.take_cell(i, lap)
    }

    /// Take the block in cell `i` on `lap`, waiting for its push to land.
    #[inline(always)]
    fn take_cell(&self, i: usize, lap: u64) -> u32 {
        let cell_word = &self.cells[i];
        let wanted = Self::turn(self.cell(lap, true, 0));
        let landed =
            || Some(cell_word.load(Ordering::Acquire)).filter(|&c| Self::turn(c) == wanted);
        let current = landed().unwrap_or_else(|| wait_for(landed));
        cell_word.store(self.cell(lap.wrapping_add(1), false, 0), Ordering::Release);
        current & OFFSET
    }

    /// Take the `count` blocks claimed from `first`, appending them in order.
    #[inline]
    pub fn take_many(&self, first: u64, count: u64, out: &mut Vec<u32>) {
        let (mut i, mut lap) = self.slot(first);
        out.reserve(count as usize);
        for _ in 0..count {
            out.push(self.take_cell(i, lap));
            (i, lap) = self.next_slot(i, lap);
        }
    }

    /// Take one more block in place of a phantom a take met: claims the
    /// next position with `avail` kept (one CAS; the phantom's reservation
    /// pays for it).
    pub fn take_more(&self) -> u32 {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let len = self.len(word);
            debug_assert!(len > self.avail(word), "a phantom is listed");
            let head = self.head(word);
            let next = self.with(
                word,
                self.step(head, 1),
                len.wrapping_sub(1),
                self.avail(word),
            );
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return self.take_at(head),
                Err(seen) => word = seen,
            }
        }
    }

    /// Put `offset` in cell `i` on `lap` (a claimed position), waiting for
    /// the cell's last take to land.
    #[inline(always)]
    fn put_cell(&self, i: usize, lap: u64, offset: u32) {
        let cell_word = &self.cells[i];
        let wanted = Self::turn(self.cell(lap, false, 0));
        let taken = || (Self::turn(cell_word.load(Ordering::Acquire)) == wanted).then_some(());
        taken().unwrap_or_else(|| wait_for(taken));
        cell_word.store(self.cell(lap, true, offset), Ordering::Release);
    }

    /// Return `offsets` (appended in order) and count `in_place` phantoms
    /// that became free entries where they stand: one `fetch_add`
    /// (`Release`: a take that claims these blocks sees what this thread did
    /// before). Yields the count after it.
    #[inline(always)]
    pub fn give_back(&self, offsets: &[u32], in_place: u64) -> u64 {
        let pushed = offsets.len() as u64;
        let added = pushed.wrapping_add(in_place);
        let old = self
            .word
            .fetch_add(pushed.wrapping_shl(self.bits) | added, Ordering::Release);
        let (mut i, mut lap) = self.slot(self.step(self.head(old), self.len(old)));
        for &offset in offsets {
            self.put_cell(i, lap, offset);
            (i, lap) = self.next_slot(i, lap);
        }
        self.count(old).wrapping_add(added)
    }

    /// The entries from the head to the tail (`None`: a cell in that span
    /// is not full on its lap, a take or a return in flight).
    pub fn entries(&self) -> Option<Vec<u32>> {
        let word = self.word.load(Ordering::Acquire);
        (0..self.len(word))
            .map(|i| {
                let (cell, lap) = self.slot(self.step(self.head(word), i));
                let current = self.cells[cell].load(Ordering::Acquire);
                (Self::turn(current) == Self::turn(self.cell(lap, true, 0)))
                    .then_some(current & OFFSET)
            })
            .collect()
    }

    /// Whether block `offset` is in the ring at a position no take has
    /// claimed: a scan of the cells for it (full), then a `fetch_add(0)` on
    /// the word that places this observation in the takes' order: a take
    /// that claims the position later (`Acquire`) sees what this thread did
    /// before (`Release`).
    pub fn listed(&self, offset: u32) -> bool {
        let n = self.cells.len() as u64;
        let found = self.cells.iter().enumerate().find_map(|(i, cell)| {
            let current = cell.load(Ordering::Acquire);
            (current & FULL != 0 && current & OFFSET == offset)
                .then_some((i as u64, u64::from(current >> LAP_SHIFT)))
        });
        let word = self.word.fetch_add(0, Ordering::AcqRel);
        let Some((i, lap)) = found else {
            return false;
        };
        // The cell's position: on the head's lap or the next (laps mod
        // 2^laps); on the head's lap, not behind the head.
        let head = self.head(word);
        let head_lap = head / n;
        if lap == head_lap {
            i >= head % n
        } else {
            lap == (head_lap + 1) & self.lap_mask
        }
    }
}

impl FusedWord for Fused {
    fn word(&self) -> &AtomicU64 {
        &self.word
    }

    fn avail_of(&self, word: u64) -> u64 {
        self.avail(word)
    }

    fn one(&self) -> u64 {
        1
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// The positions wrap at `n << laps`: the take and return positions,
    /// the laps, `listed` and `entries` stay right across the wrap.
    #[test]
    fn positions_wrap_round_the_lap_count() {
        let n = MAX;
        let ring = Fused::new(n, None, u64::from(n), 0).unwrap();
        assert_eq!(ring.modulus, u64::from(n) << 14, "14 lap bits");
        // The head 5 positions before the wrap, the cells as a ring that
        // went round to there holds them (offset = position - near).
        let near = ring.modulus - 5;
        for (i, cell) in ring.cells.iter().enumerate() {
            let i = i as u64;
            let n = u64::from(n);
            let position = near + (i + n - near % n) % n;
            let lap = position / n;
            cell.store(
                ring.cell(lap, true, (position - near) as u32),
                Ordering::Relaxed,
            );
        }
        let word = ring.word.load(Ordering::Relaxed);
        let len = ring.len(word);
        ring.word
            .store(ring.with(word, near, len, len), Ordering::Relaxed);
        let mut expected: VecDeque<u32> = (0..n).collect();
        for round in 0..4 {
            let Reserve::Taken { count: 10, at, .. } = ring.reserve_up_to(10) else {
                panic!("free blocks")
            };
            let mut taken = Vec::new();
            ring.take_many(at.0, 10, &mut taken);
            let want: Vec<u32> = expected.drain(..10).collect();
            assert_eq!(taken, want, "round {round}");
            assert!(ring.listed(expected[0]) && !ring.listed(want[0]));
            assert_eq!(ring.give_back(&taken, 0), u64::from(n));
            expected.extend(taken);
        }
        assert!(
            ring.head(ring.word.load(Ordering::Relaxed)) < 100,
            "wrapped"
        );
        assert_eq!(ring.entries().unwrap(), Vec::from(expected));
    }

    /// A small ring's cells keep 15 lap bits (their most): it goes round
    /// the whole count of positions several times, one take and one return
    /// at a time, and stays in FIFO order, `listed` right, throughout.
    #[test]
    fn a_small_ring_stays_in_order_round_its_fifteen_lap_bits() {
        let n = 3;
        let ring = Fused::new(n, None, u64::from(n), 0).unwrap();
        assert_eq!(ring.modulus, u64::from(n) << 15, "15 lap bits");
        let mut expected: VecDeque<u32> = (0..n).collect();
        for step in 0..3 * ring.modulus {
            let Reserve::Taken { count: 1, at, .. } = ring.reserve_up_to(1) else {
                panic!("a free block at step {step}")
            };
            let taken = ring.take_at(at.0);
            assert_eq!(Some(taken), expected.pop_front(), "step {step}");
            assert!(!ring.listed(taken) && ring.listed(expected[0]));
            ring.give_back(&[taken], 0);
            expected.push_back(taken);
        }
        assert_eq!(ring.entries().unwrap(), Vec::from(expected));
    }
}
