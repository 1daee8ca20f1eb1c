//! A subpool's free blocks: a count of free blocks that callers *reserve*
//! from before they take, in front of one of three structures chosen by the
//! pool's reuse order (`Order`): a lock-free stack (`stack.rs`, LIFO), a
//! lock-free ring (`ring.rs`, FIFO), an array under a lock bit of its word
//! (`shuffle.rs`, random).
//!
//! Protocol, whatever the structure: a return puts the blocks in, then
//! increments `available`; `reserve_up_to` decrements `available` (never
//! below zero); `pop`/`pop_many` take only what a reservation granted. So
//! `available` never exceeds the blocks in the structure not yet claimed,
//! and a reserved take always finds one. `try_close` swaps `available` from
//! "all blocks free" to closed in one CAS: after it, no reservation can
//! succeed, which is what makes deleting an empty subpool race-free against
//! allocators that already found it.
//!
//! A FIFO list of at most [`fused::MAX`] blocks folds the count into the
//! ring's word (`fused.rs`): the reservation is the take's claim of its
//! positions (one CAS) and a return's claim counts the blocks (one
//! `fetch_add`), with the same count, bits and decisions; `available` is
//! then unused.
//!
//! A LIFO list of at most [`fused_stack::MAX`] blocks folds it into the
//! stack's tagged head (`fused_stack.rs`): the reservation is the pop (one
//! CAS that walks the links from the top and claims them, the reservation's
//! [`At`] naming the first), a return the push (one CAS), with the same
//! count, bits and decisions; `available` is then unused too.
//!
//! A random list always folds it into its word, beside the array's lock bit
//! (`shuffle.rs`): a reservation of one is the lock (one CAS) and the
//! take, a return the lock (one CAS) and the append.

mod fused;
mod fused_stack;
mod ring;
mod shuffle;
mod stack;
mod word;

use crossbeam_utils::CachePadded;

use crate::core::error::Error;
use crate::core::policy::Order;
use crate::core::rng::SplitMix64;
use crate::core::sync::{AtomicU64, Ordering};

use fused::Fused;
use fused_stack::FusedStack;
use ring::Ring;
use shuffle::Shuffle;
use stack::Stack;
use word::FusedWord;

pub(crate) const CLOSED: u64 = 1 << 63;
/// The subpool holds an address of a drained IP (`drain`; `undrain` clears it).
const DRAINED: u64 = 1 << 62;
/// Either bit refuses every reservation.
pub(crate) const SHUT: u64 = CLOSED | DRAINED;
const COUNT: u64 = !SHUT;

/// The most blocks [`FreeList::pop_many`] takes at once.
pub const CHAIN: u64 = 64;

/// Where a reservation's takes start: the first position it claimed (a
/// fused ring's), the first block it popped (a fused stack's, the others
/// linked from it), the block it took (a random list's reservation of one,
/// as the offset plus 1), nothing for the other lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(u64);

/// The outcome of [`FreeList::reserve_up_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// `count` blocks are reserved (taken from `at`); `left` free blocks
    /// are left (`last` when none).
    Taken {
        count: u64,
        last: bool,
        left: u64,
        at: At,
    },
    Empty,
    Closed,
}

enum Blocks {
    Fused(Fused),
    FusedStack(FusedStack),
    Stack(Stack),
    Ring(Ring),
    Shuffle(Shuffle),
}

pub struct FreeList {
    /// Written by every reservation and return: on a cache line of its own.
    available: CachePadded<AtomicU64>,
    blocks: Blocks,
}

/// The `n` entries of a structure of `what`, allocated without aborting:
/// `OutOfMemory` when the memory cannot be had (the pool is unchanged).
fn entries<E>(n: u32, what: &str, entry: impl FnMut(u32) -> E) -> Result<Box<[E]>, Error> {
    let mut entries = Vec::new();
    entries
        .try_reserve_exact(n as usize)
        .map_err(|_| Error::OutOfMemory(format!("cannot reserve {what} of {n} blocks")))?;
    entries.extend((0..n).map(entry));
    Ok(entries.into_boxed_slice())
}

impl FreeList {
    /// All `n` blocks free, in `order`.
    pub fn new(order: Order, n: u32) -> Result<Self, Error> {
        let blocks = match order {
            Order::Lifo if (1..=fused_stack::MAX).contains(&n) => {
                Blocks::FusedStack(FusedStack::new(n, None, u64::from(n), 0)?)
            }
            Order::Lifo => Blocks::Stack(Stack::new(n)?),
            Order::Fifo if (1..=fused::MAX).contains(&n) => {
                Blocks::Fused(Fused::new(n, None, u64::from(n), 0)?)
            }
            Order::Fifo => Blocks::Ring(Ring::new(n)?),
            Order::Random => Blocks::Shuffle(Shuffle::new(n, None, u64::from(n), 0)?),
        };
        Ok(FreeList {
            available: CachePadded::new(AtomicU64::new(u64::from(n))),
            blocks,
        })
    }

    /// A FIFO list of `n` blocks with the count in front of the ring (as
    /// for more than [`fused::MAX`] blocks), for the models and tests of it.
    #[cfg(test)]
    pub fn counted_ring(n: u32) -> Self {
        FreeList {
            available: CachePadded::new(AtomicU64::new(u64::from(n))),
            blocks: Blocks::Ring(Ring::new(n).unwrap()),
        }
    }

    /// A LIFO list of `n` blocks with the count in front of the stack (as
    /// for more than [`fused_stack::MAX`] blocks), for the models and tests
    /// of it.
    #[cfg(test)]
    pub fn counted_stack(n: u32) -> Self {
        FreeList {
            available: CachePadded::new(AtomicU64::new(u64::from(n))),
            blocks: Blocks::Stack(Stack::new(n).unwrap()),
        }
    }

    /// The list a snapshot restores: of `n` blocks, holding the entries
    /// `listed` in the order [`entries`](Self::entries) gives them, of
    /// which `free` are free entries (the rest phantoms), refusing
    /// reservations if `drained`.
    pub fn restored(
        order: Order,
        n: u32,
        listed: &[u32],
        free: u64,
        drained: bool,
    ) -> Result<Self, Error> {
        let flags = if drained { DRAINED } else { 0 };
        let blocks = match order {
            Order::Fifo if (1..=fused::MAX).contains(&n) => {
                Blocks::Fused(Fused::new(n, Some(listed), free, flags)?)
            }
            Order::Lifo if (1..=fused_stack::MAX).contains(&n) => {
                Blocks::FusedStack(FusedStack::new(n, Some(listed), free, flags)?)
            }
            Order::Lifo => Blocks::Stack(Stack::restored(n, listed)?),
            Order::Fifo => Blocks::Ring(Ring::restored(n, listed)?),
            Order::Random => Blocks::Shuffle(Shuffle::new(n, Some(listed), free, flags)?),
        };
        Ok(FreeList {
            available: CachePadded::new(AtomicU64::new(free | flags)),
            blocks,
        })
    }

    /// The entries (phantoms included) as a snapshot writes them: FIFO and
    /// LIFO in the order they would be taken, random as the array from its
    /// first element. `None` when a take or a return is in flight (the
    /// structure is not one consistent list).
    pub fn entries(&self) -> Option<Vec<u32>> {
        match &self.blocks {
            Blocks::Fused(fused) => fused.entries(),
            Blocks::FusedStack(stack) => stack.entries(),
            Blocks::Stack(stack) => stack.entries(),
            Blocks::Ring(ring) => ring.entries(),
            Blocks::Shuffle(shuffle) => Some(shuffle.entries()),
        }
    }

    /// Claim up to `want` (at least 1) free blocks, to be taken with
    /// [`pop`](Self::pop) (one) or [`pop_many`](Self::pop_many) (a random
    /// list takes a reservation of one at once, drawing from `rng`).
    #[inline(always)]
    pub fn reserve_up_to(&self, want: u64, rng: &SplitMix64) -> Reserve {
        debug_assert!(want > 0);
        if let Blocks::Fused(fused) = &self.blocks {
            return fused.reserve_up_to(want);
        }
        if let Blocks::FusedStack(stack) = &self.blocks {
            return stack.reserve_up_to(want);
        }
        if let Blocks::Shuffle(shuffle) = &self.blocks {
            return shuffle.reserve_up_to(want, rng);
        }
        self.reserve_counted(want)
    }

    /// [`reserve_up_to`](Self::reserve_up_to) from the count in front of
    /// the structure.
    #[inline(always)]
    fn reserve_counted(&self, want: u64) -> Reserve {
        let mut current = self.available.load(Ordering::Relaxed);
        loop {
            if current & SHUT != 0 {
                return Reserve::Closed;
            }
            if current == 0 {
                return Reserve::Empty;
            }
            let count = current.min(want);
            match self.available.compare_exchange_weak(
                current,
                current - count,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Reserve::Taken {
                        count,
                        last: count == current,
                        left: current - count,
                        at: At(0),
                    }
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// One attempt of [`reserve_up_to`](Self::reserve_up_to), with a strong
    /// CAS: `None` when it lost, i.e. another thread changed the count
    /// between this load and the CAS (never a spurious failure, so never
    /// without a call that overlaps this one).
    #[inline(always)]
    pub fn try_reserve_up_to(&self, want: u64, rng: &SplitMix64) -> Option<Reserve> {
        debug_assert!(want > 0);
        if let Blocks::Fused(fused) = &self.blocks {
            return fused.try_reserve_up_to(want);
        }
        if let Blocks::FusedStack(stack) = &self.blocks {
            return stack.try_reserve_up_to(want);
        }
        if let Blocks::Shuffle(shuffle) = &self.blocks {
            return shuffle.try_reserve_up_to(want, rng);
        }
        let current = self.available.load(Ordering::Relaxed);
        if current & SHUT != 0 {
            return Some(Reserve::Closed);
        }
        if current == 0 {
            return Some(Reserve::Empty);
        }
        let count = current.min(want);
        self.available
            .compare_exchange(
                current,
                current - count,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| Reserve::Taken {
                count,
                last: count == current,
                left: current - count,
                at: At(0),
            })
    }

    /// Reserve one free block whose entry stays listed, a phantom (`reserve`
    /// takes that block out of turn): no position is claimed.
    pub fn reserve_in_place(&self) -> Reserve {
        match &self.blocks {
            Blocks::Fused(fused) => fused.reserve_in_place(),
            Blocks::FusedStack(stack) => stack.reserve_in_place(),
            Blocks::Shuffle(shuffle) => shuffle.reserve_in_place(),
            Blocks::Stack(_) | Blocks::Ring(_) => self.reserve_counted(1),
        }
    }

    /// Take one reserved block, in the list's order (`rng` draws for random):
    /// the reservation's, from `at`.
    #[inline(always)]
    pub fn pop(&self, at: At, rng: &SplitMix64) -> u32 {
        match &self.blocks {
            Blocks::Fused(fused) => fused.take_at(at.0),
            Blocks::FusedStack(stack) => stack.take_at(at),
            Blocks::Stack(stack) => stack.pop(),
            Blocks::Ring(ring) => ring.pop(),
            Blocks::Shuffle(shuffle) => shuffle.take_at(at, rng),
        }
    }

    /// Take `count` reserved blocks (at most [`CHAIN`]; a reservation's,
    /// from `at`), appending them to `out` in the order single pops would
    /// return them.
    #[inline(always)]
    pub fn pop_many(&self, at: At, count: u64, out: &mut Vec<u32>, rng: &SplitMix64) {
        debug_assert!((1..=CHAIN).contains(&count));
        match &self.blocks {
            Blocks::Fused(fused) => fused.take_many(at.0, count, out),
            Blocks::FusedStack(stack) => stack.take_many(at, count, out),
            Blocks::Stack(stack) => stack.pop_many(count, out),
            Blocks::Ring(ring) => ring.pop_many(count, out),
            Blocks::Shuffle(shuffle) => shuffle.take_many(at, count, out, rng),
        }
    }

    /// Take one more block in place of a phantom a take met (the phantom's
    /// reservation pays for it), in the list's order.
    #[inline]
    pub fn pop_more(&self, rng: &SplitMix64) -> u32 {
        match &self.blocks {
            Blocks::Fused(fused) => fused.take_more(),
            Blocks::FusedStack(stack) => stack.take_more(),
            _ => self.pop(At(0), rng),
        }
    }

    /// Return a block; yields the number of free blocks after it.
    #[cfg(test)]
    pub fn push(&self, offset: u32) -> u64 {
        self.push_many(&[offset])
    }

    /// Return blocks, leaving the list as returning them one by one in order
    /// would; yields the number of free blocks after them (with the closed
    /// and drained bits as they are).
    #[cfg(test)]
    pub fn push_many(&self, offsets: &[u32]) -> u64 {
        self.give_back(offsets, 0)
    }

    /// [`give_back`](Self::give_back), and, for a random list, the block the
    /// take after next would draw if takes and returns of one alternate
    /// until then (`rng`: the pool's; `shuffle.rs`): a random take goes to
    /// a block no recent call touched, which the caller may prefetch.
    #[inline(always)]
    pub fn give_back_hinted(
        &self,
        offsets: &[u32],
        listed: u64,
        rng: &SplitMix64,
    ) -> (u64, Option<u32>) {
        match &self.blocks {
            Blocks::Shuffle(shuffle) if offsets.len() as u64 + listed > 0 => {
                shuffle.give_back_hinted(offsets, listed, Some(rng))
            }
            _ => (self.give_back(offsets, listed), None),
        }
    }

    /// [`push_many`](Self::push_many), and count `listed` more blocks whose
    /// phantom entry became a free entry where it stands (no push).
    #[inline(always)]
    pub fn give_back(&self, offsets: &[u32], listed: u64) -> u64 {
        let count = offsets.len() as u64 + listed;
        if count == 0 {
            return self.load();
        }
        if let Blocks::Fused(fused) = &self.blocks {
            return fused.give_back(offsets, listed);
        }
        if let Blocks::FusedStack(stack) = &self.blocks {
            return stack.give_back(offsets, listed);
        }
        if let Blocks::Shuffle(shuffle) = &self.blocks {
            return shuffle.give_back(offsets, listed);
        }
        if !offsets.is_empty() {
            match &self.blocks {
                Blocks::Fused(_) | Blocks::FusedStack(_) | Blocks::Shuffle(_) => {
                    unreachable!("returned above")
                }
                Blocks::Stack(stack) => stack.push_many(offsets),
                Blocks::Ring(ring) => ring.push_many(offsets),
            }
        }
        self.available.fetch_add(count, Ordering::Release) + count
    }

    /// Close the list if all `total` blocks are free (and no reservation is
    /// outstanding); no reservation succeeds after. A drained list closes
    /// too (a drain-fenced subpool's deletion, a port block's release).
    pub fn try_close(&self, total: u64) -> bool {
        match &self.blocks {
            Blocks::Fused(fused) => return fused.try_close(total),
            Blocks::FusedStack(stack) => return stack.try_close(total),
            Blocks::Shuffle(shuffle) => return shuffle.try_close(total),
            Blocks::Stack(_) | Blocks::Ring(_) => {}
        }
        // One CAS from "all free" (an open list, or a drained one), so that
        // no reservation can slip between a look at the count and the close.
        match self.available.compare_exchange(
            total,
            CLOSED | total,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => true,
            Err(seen) if seen == DRAINED | total => self
                .available
                .compare_exchange(seen, CLOSED | seen, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Undo a [`try_close`](Self::try_close) of a list of `total` blocks (a
    /// deletion that could not go ahead). Nothing can have changed a closed
    /// list with every block free: no reservation succeeds, and no block is
    /// out to be pushed.
    pub fn reopen(&self, total: u64) {
        let reopened = match &self.blocks {
            Blocks::Fused(fused) => fused.clear(CLOSED),
            Blocks::FusedStack(stack) => stack.clear(CLOSED),
            Blocks::Shuffle(shuffle) => shuffle.clear(CLOSED),
            Blocks::Stack(_) | Blocks::Ring(_) => {
                self.available.fetch_and(!CLOSED, Ordering::AcqRel)
            }
        };
        debug_assert_eq!(reopened & (CLOSED | COUNT), CLOSED | total);
    }

    /// Close the list whatever its count (a fenced subpool): no reservation
    /// succeeds after it; pushes still count the blocks that come back.
    pub fn fence(&self) {
        self.set(CLOSED);
    }

    /// Refuse reservations while the subpool holds an address of a drained
    /// IP; pushes still count the blocks that come back.
    pub fn drain(&self) {
        self.set(DRAINED);
    }

    fn set(&self, bits: u64) {
        match &self.blocks {
            Blocks::Fused(fused) => fused.set(bits),
            Blocks::FusedStack(stack) => stack.set(bits),
            Blocks::Shuffle(shuffle) => shuffle.set(bits),
            Blocks::Stack(_) | Blocks::Ring(_) => {
                self.available.fetch_or(bits, Ordering::AcqRel);
            }
        }
    }

    /// Serve again (the drain is over); the free blocks stay in their order.
    pub fn undrain(&self) {
        match &self.blocks {
            Blocks::Fused(fused) => {
                fused.clear(DRAINED);
            }
            Blocks::FusedStack(stack) => {
                stack.clear(DRAINED);
            }
            Blocks::Shuffle(shuffle) => {
                shuffle.clear(DRAINED);
            }
            Blocks::Stack(_) | Blocks::Ring(_) => {
                self.available.fetch_and(!DRAINED, Ordering::AcqRel);
            }
        }
    }

    /// Whether a push that returned `after` (from [`push_many`](Self::push_many))
    /// left a closed or drained list of `total` blocks with every block free.
    pub fn shut_and_full(after: u64, total: u64) -> bool {
        after & SHUT != 0 && after & COUNT == total
    }

    /// Whether `after` (a push's result) has the closed bit: a fence (or a
    /// deletion); only the drained bit otherwise.
    pub fn is_closed(after: u64) -> bool {
        after & CLOSED != 0
    }

    /// Whether a reservation could succeed now: open, with a free block (a
    /// snapshot).
    #[inline]
    pub fn has_free(&self) -> bool {
        let available = self.load();
        available & SHUT == 0 && available > 0
    }

    /// Give back one reservation that took no entry (a reserve that lost its
    /// block to an allocation).
    pub fn unreserve(&self) -> u64 {
        match &self.blocks {
            Blocks::Fused(fused) => fused.unreserve(),
            Blocks::FusedStack(stack) => stack.unreserve(),
            Blocks::Shuffle(shuffle) => shuffle.unreserve(),
            Blocks::Stack(_) | Blocks::Ring(_) => {
                self.available.fetch_add(1, Ordering::Release) + 1
            }
        }
    }

    /// Whether block `offset`'s entry is in the structure now. `true` is an
    /// observation that every later take of that entry is ordered after (it
    /// then sees what this thread did before the call: a reserver's mark);
    /// `false` may be a stale view, to be asked again.
    pub fn listed(&self, offset: u32) -> bool {
        match &self.blocks {
            Blocks::Fused(fused) => fused.listed(offset),
            Blocks::FusedStack(stack) => stack.listed(offset),
            Blocks::Stack(stack) => stack.listed(offset),
            Blocks::Ring(ring) => ring.listed(offset),
            Blocks::Shuffle(shuffle) => shuffle.listed(offset),
        }
    }

    /// Free blocks now (a snapshot).
    #[inline]
    pub fn available(&self) -> u64 {
        self.load() & COUNT
    }

    /// The count with the closed and drained bits (a snapshot).
    #[inline(always)]
    fn load(&self) -> u64 {
        match &self.blocks {
            Blocks::Fused(fused) => fused.load(),
            Blocks::FusedStack(stack) => stack.load(),
            Blocks::Shuffle(shuffle) => shuffle.load(),
            Blocks::Stack(_) | Blocks::Ring(_) => self.available.load(Ordering::Acquire),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const ORDERS: [Order; 3] = [Order::Lifo, Order::Fifo, Order::Random];

    fn take(list: &FreeList, rng: &SplitMix64) -> u32 {
        let Reserve::Taken { at, .. } = list.reserve_up_to(1, rng) else {
            panic!("a free block")
        };
        list.pop(at, rng)
    }

    /// Reserve up to `want` and take them.
    fn take_chain(list: &FreeList, want: u64, rng: &SplitMix64) -> Vec<u32> {
        let mut out = Vec::new();
        if let Reserve::Taken { count, at, .. } = list.reserve_up_to(want, rng) {
            list.pop_many(at, count, &mut out, rng);
        }
        out
    }

    #[test]
    fn lifo_pops_in_order_then_most_recent_first() {
        let rng = SplitMix64::new(0);
        for list in [
            FreeList::new(Order::Lifo, 3).unwrap(),
            FreeList::counted_stack(3),
        ] {
            assert_eq!((take(&list, &rng), take(&list, &rng)), (0, 1));
            assert_eq!(list.push(0), 2);
            let Reserve::Taken {
                count: 1,
                last: false,
                at,
                ..
            } = list.reserve_up_to(1, &rng)
            else {
                panic!("two free blocks")
            };
            assert_eq!(list.pop(at, &rng), 0);
            let Reserve::Taken {
                count: 1,
                last: true,
                at,
                ..
            } = list.reserve_up_to(1, &rng)
            else {
                panic!("one free block")
            };
            assert_eq!(list.pop(at, &rng), 2);
            assert_eq!(list.reserve_up_to(1, &rng), Reserve::Empty);
        }
    }

    /// Large LIFO lists keep the separate count in front of the stack.
    #[test]
    fn a_large_lifo_list_is_counted() {
        let rng = SplitMix64::new(0);
        let small = FreeList::new(Order::Lifo, fused_stack::MAX).unwrap();
        assert!(matches!(small.blocks, Blocks::FusedStack(_)));
        let list = FreeList::new(Order::Lifo, fused_stack::MAX + 1).unwrap();
        assert!(matches!(list.blocks, Blocks::Stack(_)));
        assert_eq!(take_chain(&list, 3, &rng), vec![0, 1, 2]);
        assert_eq!(list.push_many(&[1, 0]), u64::from(fused_stack::MAX));
        assert_eq!(take(&list, &rng), 0);
    }

    #[test]
    fn fifo_pops_in_order_then_longest_freed_first_across_laps() {
        let rng = SplitMix64::new(0);
        let list = FreeList::new(Order::Fifo, 3).unwrap();
        assert!(matches!(list.blocks, Blocks::Fused(_)));
        assert_eq!((take(&list, &rng), take(&list, &rng)), (0, 1));
        list.push(1);
        list.push(0);
        // 2 was never taken: it is ahead of 1 and 0.
        let order: Vec<u32> = (0..3).map(|_| take(&list, &rng)).collect();
        assert_eq!(order, vec![2, 1, 0]);
        // Many laps round a ring of 3.
        for lap in 0..10u32 {
            let offsets = [lap % 3, (lap + 1) % 3, (lap + 2) % 3];
            assert_eq!(list.push_many(&offsets), 3);
            assert_eq!(take_chain(&list, 3, &rng), offsets);
        }
    }

    /// Large FIFO lists keep the separate count in front of the ring.
    #[test]
    fn a_large_fifo_list_is_counted() {
        let rng = SplitMix64::new(0);
        let list = FreeList::new(Order::Fifo, fused::MAX + 1).unwrap();
        assert!(matches!(list.blocks, Blocks::Ring(_)));
        assert_eq!(take_chain(&list, 3, &rng), vec![0, 1, 2]);
        assert_eq!(list.push_many(&[1, 0]), u64::from(fused::MAX));
        assert_eq!(take(&list, &rng), 3);
    }

    /// The fused ring and the counted ring agree, operation by operation,
    /// over many laps, with phantoms, closes and drains.
    #[test]
    fn the_fused_ring_matches_the_counted_ring() {
        let fused = FreeList::new(Order::Fifo, 5).unwrap();
        assert!(matches!(fused.blocks, Blocks::Fused(_)));
        fused_matches_counted(fused, FreeList::counted_ring(5));
    }

    /// The fused stack and the counted stack agree likewise.
    #[test]
    fn the_fused_stack_matches_the_counted_stack() {
        let fused = FreeList::new(Order::Lifo, 5).unwrap();
        assert!(matches!(fused.blocks, Blocks::FusedStack(_)));
        fused_matches_counted(fused, FreeList::counted_stack(5));
    }

    /// `fused` and `counted` (of 5 blocks) agree, operation by operation,
    /// over a random run of takes, returns, phantoms and closes.
    fn fused_matches_counted(fused: FreeList, counted: FreeList) {
        let rng = SplitMix64::new(0);
        let draw = SplitMix64::new(11);
        let mut out: Vec<u32> = Vec::new();
        let (mut phantoms, mut taken) = (0, 0);
        for step in 0..2000 {
            let lists = [&fused, &counted];
            let (op, want) = (draw.below(6), 1 + draw.below(3) as u64);
            let results = match op {
                0 | 1 => lists.map(|list| (take_chain(list, want, &rng), 0)),
                2 | 3 if !out.is_empty() => {
                    let back: Vec<u32> = out.drain(..out.len().min(want as usize)).collect();
                    lists.map(|list| (vec![], list.push_many(&back)))
                }
                4 => lists.map(|list| match list.reserve_in_place() {
                    Reserve::Taken { last, .. } => (vec![], 1 + u64::from(last)),
                    _ => (vec![], 0),
                }),
                5 if phantoms > 0 => {
                    phantoms -= 1;
                    lists.map(|list| (vec![], list.unreserve()))
                }
                _ => lists.map(|list| {
                    let closed = list.try_close(5);
                    if closed {
                        list.reopen(5);
                    }
                    (vec![], u64::from(closed))
                }),
            };
            assert_eq!(results[0], results[1], "step {step}");
            if op == 4 && results[0].1 > 0 {
                phantoms += 1;
            }
            taken += results[0].0.len();
            out.extend(&results[0].0);
            assert_eq!(fused.available(), counted.available(), "step {step}");
            assert_eq!(fused.entries(), counted.entries(), "step {step}");
        }
        assert!(taken > 400, "many laps round the ring: {taken} taken");
    }

    /// A phantom (a block reserved in place) stays listed: a take that meets
    /// it takes one more in its place; `give_back`'s in-place count and
    /// `unreserve` count it back.
    #[test]
    fn phantoms_are_skipped_by_a_take_in_every_order() {
        for order in ORDERS {
            let rng = SplitMix64::new(3);
            let list = FreeList::new(order, 3).unwrap();
            assert!(matches!(
                list.reserve_in_place(),
                Reserve::Taken {
                    count: 1,
                    last: false,
                    ..
                }
            ));
            assert_eq!(list.available(), 2);
            assert!(list.listed(0) && list.listed(1) && list.listed(2));
            // Two free blocks, three entries: a chain of 2 and one more.
            let mut out = take_chain(&list, 5, &rng);
            assert_eq!(out.len(), 2);
            out.push(list.pop_more(&rng));
            out.sort_unstable();
            assert_eq!(out, vec![0, 1, 2], "{order:?}");
            assert_eq!(list.reserve_up_to(1, &rng), Reserve::Empty);
            assert_eq!(list.entries().unwrap(), Vec::<u32>::new());
            assert_eq!(list.push_many(&[2, 0]), 2);
            // In place: the phantom of 1 settles where it stands... here a
            // reservation of one given back.
            assert!(matches!(list.reserve_in_place(), Reserve::Taken { .. }));
            assert_eq!(list.unreserve(), 2);
            assert!(matches!(list.reserve_in_place(), Reserve::Taken { .. }));
            assert_eq!(list.give_back(&[1], 1), 3);
            assert!(list.try_close(3));
            list.reopen(3);
            assert_eq!(list.entries().unwrap().len(), 3);
        }
    }

    #[test]
    fn random_swap_removes_the_drawn_index() {
        let list = FreeList::new(Order::Random, 5).unwrap();
        let expected = SplitMix64::new(9);
        let rng = SplitMix64::new(9);
        let mut array: Vec<u32> = (0..5).collect();
        for _ in 0..5 {
            let j = expected.below(array.len());
            assert_eq!(take(&list, &rng), array.swap_remove(j));
        }
        assert_eq!(list.reserve_up_to(1, &rng), Reserve::Empty);
    }

    /// A return to a random list names the block that the take after next
    /// draws when takes and returns of one alternate, unless the take
    /// between them drew that slot or the take after next draws the last
    /// one (a swap-remove moves the last entry, and a return appends); it
    /// leaves the draws as they were, and names nothing for the other orders.
    #[test]
    fn a_return_to_a_random_list_names_the_take_after_next() {
        const N: u32 = 64;
        let list = FreeList::new(Order::Random, N).unwrap();
        let (rng, twin) = (SplitMix64::new(3), SplitMix64::new(3));
        let plain = FreeList::new(Order::Random, N).unwrap();
        // Per round: the slot the take drew (all N blocks free before each
        // take), the block it took, and the block the return named.
        let mut rounds: Vec<(usize, u32, Option<u32>)> = Vec::new();
        for round in 0..300 {
            let slot = rng.peek_below(1, N as usize);
            let taken = take(&list, &rng);
            assert_eq!(take(&plain, &twin), taken, "round {round}");
            let (count, named) = list.give_back_hinted(&[taken], 0, &rng);
            assert_eq!(plain.give_back(&[taken], 0), count);
            rounds.push((slot, taken, named));
        }
        let mut checked = 0;
        for k in 2..rounds.len() {
            let (between, ..) = rounds[k - 1];
            let (slot, taken, _) = rounds[k];
            if slot != between && slot != N as usize - 1 {
                assert_eq!(rounds[k - 2].2, Some(taken), "round {k}");
                checked += 1;
            }
        }
        assert!(checked > 280, "{checked} rounds checked");
        for order in [Order::Fifo, Order::Lifo] {
            let list = FreeList::new(order, 4).unwrap();
            let taken = take(&list, &rng);
            assert_eq!(list.give_back_hinted(&[taken], 0, &rng), (4, None));
        }
    }

    #[test]
    fn batches_match_single_operations_in_every_order() {
        for order in ORDERS {
            let (rng_single, rng_batch) = (SplitMix64::new(5), SplitMix64::new(5));
            let single = FreeList::new(order, 6).unwrap();
            let batch = FreeList::new(order, 6).unwrap();
            let popped: Vec<u32> = (0..4).map(|_| take(&single, &rng_single)).collect();
            assert_eq!(take_chain(&batch, 4, &rng_batch), popped, "{order:?}");
            for offset in [popped[2], popped[0], popped[3]] {
                single.push(offset);
            }
            assert_eq!(batch.push_many(&[popped[2], popped[0], popped[3]]), 5);
            let rest = take_chain(&batch, 9, &rng_batch);
            let single_rest: Vec<u32> = (0..5).map(|_| take(&single, &rng_single)).collect();
            assert_eq!(rest, single_rest, "{order:?}");
            assert_eq!(batch.reserve_up_to(1, &rng_batch), Reserve::Empty);
        }
    }

    #[test]
    fn closes_only_when_full() {
        for order in ORDERS {
            let rng = SplitMix64::new(1);
            let list = FreeList::new(order, 2).unwrap();
            let offset = take(&list, &rng);
            assert!(!list.try_close(2));
            list.push(offset);
            assert!(list.try_close(2));
            assert_eq!(list.reserve_up_to(1, &rng), Reserve::Closed);
            assert_eq!(list.available(), 2);
        }
    }
}

#[cfg(all(loom, test))]
mod loom;
