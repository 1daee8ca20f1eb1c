//! `order = "lifo"` for a subpool of at most [`MAX`] blocks: the Treiber
//! stack of `stack.rs` with the reservation count folded into its tagged
//! head, so that a reservation and its take are one CAS (the pop *is* the
//! reservation) and a return is one CAS.
//!
//! The word (`u64`), for a stack of `n` blocks and `b` = the bits of `n`:
//!
//! ```text
//! 63 CLOSED | 62 DRAINED | tag: 62 - 2b | avail: b | top: b
//! ```
//!
//! * `top`: the block on top of the stack, `offset + 1` (0: empty);
//! * `avail`: the free blocks a take may claim: the entries on the stack
//!   less the phantoms (blocks `reserve` took out of turn, whose entries
//!   stay listed) and less the reservations of phantoms not settled yet;
//! * `tag`: moved by every CAS that changes `top` (a pop or a push), mod
//!   `2^(62 - 2b)`, against ABA.
//!
//! Each block's link (`offset + 1` of the block under it, 0 for none) is
//! written only by the thread that pushes it, before the push's CAS, and
//! never while the block is on the stack.
//!
//! A take of up to `want` is one CAS from an open word with `avail > 0`:
//! `count = min(avail, want)` blocks walked from the top (their links read
//! after an `Acquire` load of the word), `avail -= count`, `top` = the link
//! of the last, the tag moved. The CAS succeeds only on the word the walk
//! started from, so the walk saw one consistent stack: a block popped and
//! pushed back meanwhile would have moved the tag. The entries never fall
//! below `avail` (a return links its blocks and counts them in one CAS), so
//! a walk of `count <= avail` links from a consistent word always finds
//! them; one that meets the bottom early raced with a change and starts
//! again. The reservation's [`At`] is the first block popped; the others
//! are linked from it, and their links stay put (the blocks are the
//! taker's until it returns them), so a chain is read again after the CAS.
//!
//! A return of `k` blocks (`in_place` more settling where they stand) links
//! them (last pushed on top) onto the top it read and CASes `avail += k +
//! in_place`, `top` = the last, the tag moved. A phantom reserved in place
//! only lowers `avail` (`entries > avail` from then on); a take that meets
//! it pops one more with `avail` kept (`pop_more`), which that gap pays
//! for. `unreserve` and an in-place settle only raise `avail`, and the
//! closed and drained bits are set and cleared alone: none of them moves
//! `top`, so none moves the tag, and a walk across them stays valid.
//!
//! The tag: a CAS that starts from a stale word wins only if the word came
//! back to the same top, count, bits *and* tag, i.e. after a multiple of
//! `2^(62 - 2b)` pops and pushes while the thread sat between its load and
//! its CAS (a walk of at most [`CHAIN`] links; `listed`'s, at most `n`). At
//! [`MAX`] (`b = 16`) that is `2^30` (over 10^9) locked RMWs on this one
//! word, tens of seconds of back-to-back allocations and frees of this one
//! subpool; smaller stacks have wider tags (`b = 13` for 4,096 blocks: 36
//! bits). `MAX` matches the fused ring's, and keeps the tag within two bits
//! of the counted stack's 32; a larger `MAX` would give up two tag bits per
//! bit of `n` (the counted stack serves larger subpools).

use crossbeam_utils::CachePadded;

use crate::core::error::Error;
use crate::core::free_list::stack::chain_holds;
use crate::core::free_list::word::FusedWord;
use crate::core::free_list::{entries, At, Reserve, CHAIN, SHUT};
use crate::core::sync::{spin_wait, AtomicU32, AtomicU64, Ordering};

/// The largest stack whose count folds into its head (`b = 16`, 30 tag bits).
pub const MAX: u32 = (1 << 16) - 1;

/// The bits below the closed and drained bits.
const FIELDS: u64 = !SHUT;

pub struct FusedStack {
    /// Written by every take and return: on a cache line of its own.
    word: CachePadded<AtomicU64>,
    /// For each block on the stack, the next one (`offset + 1`, 0 for none).
    links: Box<[AtomicU32]>,
    /// `b`: the bits of `top` and of `avail` (`avail`'s shift).
    bits: u32,
    /// `2^b - 1`.
    mask: u64,
    /// The tag's field in place, and its unit (`1 << 2b`).
    tag_field: u64,
    /// `!SHUT`, loaded with the other fields rather than made per use.
    fields: u64,
    tag_one: u64,
}

/// A refused take: the outcome, or `None` for a walk that raced with a change.
type Refused = Option<Reserve>;

// The arithmetic below wraps where the layout's invariants rule overflow
// out (`avail <= n < 2^b`, `top <= n`, the tag masked to its field), so
// that the hot paths carry no overflow checks.

impl FusedStack {
    /// A stack of `n` (1 to [`MAX`]) blocks holding `listed` (the top
    /// first; `None`: `0..n`, 0 on top) of which `avail` are free (the rest
    /// phantoms); `flags` are the closed and drained bits.
    pub fn new(n: u32, listed: Option<&[u32]>, avail: u64, flags: u64) -> Result<Self, Error> {
        debug_assert!((1..=MAX).contains(&n));
        let bits = 32 - n.leading_zeros();
        let links = entries(n, "a free stack", |i| {
            AtomicU32::new(match listed {
                None if i + 1 < n => i + 2,
                _ => 0,
            })
        })?;
        let top = match listed {
            None => 1,
            Some(listed) => {
                for pair in listed.windows(2) {
                    links[pair[0] as usize].store(pair[1] + 1, Ordering::Relaxed);
                }
                listed.first().map_or(0, |&offset| u64::from(offset) + 1)
            }
        };
        debug_assert!(avail <= listed.map_or(u64::from(n), |listed| listed.len() as u64));
        Ok(FusedStack {
            word: CachePadded::new(AtomicU64::new(flags | avail << bits | top)),
            links,
            bits,
            mask: (1 << bits) - 1,
            tag_field: FIELDS & !((1 << (2 * bits)) - 1),
            tag_one: 1 << (2 * bits),
            fields: FIELDS,
        })
    }

    #[inline(always)]
    fn top(&self, word: u64) -> u32 {
        (word & self.mask) as u32
    }

    #[inline(always)]
    fn avail(&self, word: u64) -> u64 {
        word.wrapping_shr(self.bits) & self.mask
    }

    /// `word` with the next tag, `avail` raised by `up` less `down` (the
    /// result in `0..=n`) and `top`: one addition to the word with the
    /// bits set, so that the tag's carry out of its field runs through them
    /// and off the word (`avail` neither carries nor borrows), then the
    /// bits put back.
    #[inline(always)]
    fn moved(&self, word: u64, up: u64, down: u64, top: u32) -> u64 {
        let step = self
            .tag_one
            .wrapping_add(up.wrapping_shl(self.bits))
            .wrapping_sub(down.wrapping_shl(self.bits));
        let next = (word & !self.mask | SHUT).wrapping_add(step);
        next & self.fields | word & SHUT | u64::from(top)
    }

    /// The link under `top` (`offset + 1`, not 0).
    #[inline(always)]
    fn link(&self, top: u32) -> u32 {
        self.links[top.wrapping_sub(1) as usize].load(Ordering::Relaxed)
    }

    /// The take CAS from `word` (loaded `Acquire`): the word after it, the
    /// count taken, and the first block's `top`.
    #[inline(always)]
    fn claim(&self, word: u64, want: u64) -> Result<(u64, u64, u32), Refused> {
        if word & SHUT != 0 {
            return Err(Some(Reserve::Closed));
        }
        let avail = self.avail(word);
        if avail == 0 {
            return Err(Some(Reserve::Empty));
        }
        let count = avail.min(want);
        // `avail > 0` entries: the top is a block (one atomic word).
        let first = self.top(word);
        debug_assert!(first != 0);
        let mut top = self.link(first);
        for _ in 1..count {
            if top == 0 {
                // The bottom before `count` links: a block popped and
                // pushed back during the walk (the word has moved on).
                return Err(None);
            }
            top = self.link(top);
        }
        Ok((self.moved(word, 0, count, top), count, first))
    }

    /// The outcome of a take CAS from `word` that succeeded.
    #[inline(always)]
    fn taken(&self, word: u64, count: u64, first: u32) -> Reserve {
        let avail = self.avail(word);
        Reserve::Taken {
            count,
            last: count == avail,
            left: avail.wrapping_sub(count),
            at: At(u64::from(first.wrapping_sub(1))),
        }
    }

    /// Reserve and pop up to `want` free blocks (one CAS; `Acquire`, also
    /// on failure: the walk from the word seen reads the links its pushes
    /// wrote, and a take sees what a return or a `listed` before it in the
    /// word's order did before them).
    #[inline(always)]
    pub fn reserve_up_to(&self, want: u64) -> Reserve {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let (next, count, first) = match self.claim(word, want) {
                Ok(claimed) => claimed,
                Err(Some(refused)) => return refused,
                Err(None) => {
                    spin_wait();
                    word = self.word.load(Ordering::Acquire);
                    continue;
                }
            };
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return self.taken(word, count, first),
                Err(seen) => word = seen,
            }
        }
    }

    /// One attempt of [`reserve_up_to`](Self::reserve_up_to) with a strong
    /// CAS: `None` when another thread changed the word between the load
    /// and the CAS (or during the walk, which then meets the bottom early).
    #[inline(always)]
    pub fn try_reserve_up_to(&self, want: u64) -> Option<Reserve> {
        let word = self.word.load(Ordering::Acquire);
        let (next, count, first) = match self.claim(word, want) {
            Ok(claimed) => claimed,
            Err(refused) => return refused,
        };
        self.word
            .compare_exchange(word, next, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| self.taken(word, count, first))
    }

    /// The first block a reservation popped.
    #[inline(always)]
    pub fn take_at(&self, at: At) -> u32 {
        at.0 as u32
    }

    /// The `count` blocks a reservation popped from `at`, appended in order:
    /// their links, as the reservation's walk read them (nobody writes a
    /// popped block's link but the thread that pushes it back).
    #[inline]
    pub fn take_many(&self, at: At, count: u64, out: &mut Vec<u32>) {
        debug_assert!((1..=CHAIN).contains(&count));
        let mut top = at.0 as u32 + 1;
        out.push(top - 1);
        for _ in 1..count {
            top = self.link(top);
            out.push(top.wrapping_sub(1));
        }
    }

    /// Pop one more block in place of a phantom a take met, `avail` kept
    /// (one CAS; the phantom's reservation pays for it: `entries > avail`).
    pub fn take_more(&self) -> u32 {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let top = self.top(word);
            debug_assert!(top != 0, "a phantom's gap leaves an entry");
            let next = self.moved(word, 0, 0, self.link(top));
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return top - 1,
                Err(seen) => word = seen,
            }
        }
    }

    /// Push `offsets` (the last on top, as pushing them one by one would
    /// leave them) and count `in_place` phantoms that became free entries
    /// where they stand: one CAS (`Release`: a take that pops these blocks,
    /// or any take after, sees what this thread did before). Yields the
    /// count after it.
    #[inline(always)]
    pub fn give_back(&self, offsets: &[u32], in_place: u64) -> u64 {
        let added = (offsets.len() as u64).wrapping_add(in_place);
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            // Nothing to link: `avail` alone (no carry, `avail <= n`).
            let old = self
                .word
                .fetch_add(in_place.wrapping_shl(self.bits), Ordering::Release);
            return self.count(old).wrapping_add(in_place);
        };
        // Link the chain last -> ... -> first; then first -> the old top.
        for pair in offsets.windows(2) {
            self.links[pair[1] as usize].store(pair[0] + 1, Ordering::Relaxed);
        }
        let link = &self.links[first as usize];
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            link.store(self.top(word), Ordering::Relaxed);
            let next = self.moved(word, added, 0, last.wrapping_add(1));
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return self.count(word).wrapping_add(added),
                Err(seen) => word = seen,
            }
        }
    }

    /// The part of `word` a walk depends on: the top and the tag.
    #[inline]
    fn stack_of(&self, word: u64) -> u64 {
        word & (self.tag_field | self.mask)
    }

    /// The blocks on the stack, the top first (`None`: the stack changed
    /// during the walk).
    pub fn entries(&self) -> Option<Vec<u32>> {
        let word = self.word.load(Ordering::Acquire);
        let mut out = Vec::new();
        let mut top = self.top(word);
        while top != 0 {
            if out.len() == self.links.len() {
                return None;
            }
            out.push(top - 1);
            top = self.link(top);
        }
        let again = self.word.load(Ordering::Acquire);
        (self.stack_of(again) == self.stack_of(word)).then_some(out)
    }

    /// Whether block `offset` is on the stack: a walk from the top (at most
    /// one step per block), made an observation of one consistent stack by
    /// a CAS of the word to itself: it succeeds only if the top and tag are
    /// the walk's (a change of the count or bits alone is retried without a
    /// new walk). Any pop of that entry comes later in the word's order, and
    /// its `Acquire` sees what this thread did before (this CAS's `Release`).
    pub fn listed(&self, offset: u32) -> bool {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let found = chain_holds(&self.links, self.top(word), offset);
            loop {
                match self
                    .word
                    .compare_exchange(word, word, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return found,
                    Err(seen) => {
                        let same = self.stack_of(seen) == self.stack_of(word);
                        word = seen;
                        if !same {
                            break;
                        }
                    }
                }
            }
            spin_wait();
        }
    }
}

impl FusedWord for FusedStack {
    fn word(&self) -> &AtomicU64 {
        &self.word
    }

    fn avail_of(&self, word: u64) -> u64 {
        self.avail(word)
    }

    fn one(&self) -> u64 {
        1 << self.bits
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The tag wraps within its field: a stack at `MAX` has 30 tag bits,
    /// and a push or pop at the last tag value leaves the bits alone.
    #[test]
    fn the_tag_wraps_within_its_field() {
        let stack = FusedStack::new(MAX, None, u64::from(MAX), 0).unwrap();
        assert_eq!(stack.tag_field.count_ones(), 30);
        let word = stack.word.load(Ordering::Relaxed);
        stack.word.store(
            word | stack.tag_field | super::super::DRAINED,
            Ordering::Relaxed,
        );
        stack.clear(super::super::DRAINED);
        let Reserve::Taken { count: 3, at, .. } = stack.reserve_up_to(3) else {
            panic!("free blocks")
        };
        let word = stack.word.load(Ordering::Relaxed);
        assert_eq!(word & stack.tag_field, 0, "wrapped to 0");
        assert_eq!(word & SHUT, 0, "no carry into the bits");
        let mut out = Vec::new();
        stack.take_many(at, 3, &mut out);
        assert_eq!(out, vec![0, 1, 2]);
        assert_eq!(stack.give_back(&out, 0), u64::from(MAX));
        assert_eq!(stack.entries().unwrap()[..4], [2, 1, 0, 3]);
        assert!(stack.listed(MAX - 1) && !stack.listed(MAX));
    }
}
