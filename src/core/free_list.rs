//! A subpool's free list: a lock-free LIFO stack of block offsets with a
//! tagged head (against ABA), and a count of free blocks that callers
//! *reserve* from before they pop.
//!
//! Protocol: `push` links the block, swings the head, then increments
//! `available`; `reserve_up_to` decrements `available` (never below zero);
//! `pop`/`pop_many` take only what a reservation granted. So `available` never exceeds the
//! blocks on the stack not yet claimed, and a reserved pop always finds one.
//! `try_close` swaps `available` from "all blocks free" to closed in one CAS:
//! after it, no reservation can succeed, which is what makes deleting an
//! empty subpool race-free against allocators that already found it.

use crate::core::sync::{spin_wait, AtomicU32, AtomicU64, Ordering};

use crate::core::error::Error;

const CLOSED: u64 = 1 << 63;

/// The most blocks [`FreeList::pop_many`] takes with one CAS.
pub const CHAIN: u64 = 64;

/// The outcome of [`FreeList::reserve_up_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    /// `count` blocks are reserved; `last` when no free block is left.
    Taken {
        count: u64,
        last: bool,
    },
    Empty,
    Closed,
}

pub struct FreeList {
    /// `tag << 32 | (offset + 1)`; the low half is 0 when the stack is empty.
    head: AtomicU64,
    available: AtomicU64,
    /// For each block on the stack, the next one (`offset + 1`, 0 for none).
    links: Box<[AtomicU32]>,
}

impl FreeList {
    /// A full list of `n` blocks; pops return offsets 0, 1, 2, ... in order.
    pub fn new(n: u32) -> Result<Self, Error> {
        let mut links = Vec::new();
        links
            .try_reserve_exact(n as usize)
            .map_err(|_| Error::OutOfMemory(format!("cannot reserve a free list of {n} blocks")))?;
        links.extend((1..=n).map(|i| AtomicU32::new(if i < n { i + 1 } else { 0 })));
        Ok(FreeList {
            head: AtomicU64::new(if n > 0 { 1 } else { 0 }),
            available: AtomicU64::new(u64::from(n)),
            links: links.into_boxed_slice(),
        })
    }

    /// Claim up to `want` (at least 1) free blocks, to be taken with
    /// [`pop`](Self::pop) (one) or [`pop_many`](Self::pop_many).
    #[inline]
    pub fn reserve_up_to(&self, want: u64) -> Reserve {
        debug_assert!(want > 0);
        let mut current = self.available.load(Ordering::Relaxed);
        loop {
            if current & CLOSED != 0 {
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
                    }
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Take the most recently pushed block. Only after a successful reserve.
    #[inline]
    pub fn pop(&self) -> u32 {
        loop {
            let head = self.head.load(Ordering::Acquire);
            let top = head as u32;
            if top == 0 {
                // A reservation guarantees a block; its push is still landing.
                spin_wait();
                continue;
            }
            let next = self.links[top as usize - 1].load(Ordering::Relaxed);
            let tag = (head >> 32).wrapping_add(1);
            if self
                .head
                .compare_exchange_weak(
                    head,
                    tag << 32 | u64::from(next),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return top - 1;
            }
        }
    }

    /// Take `count` reserved blocks with one CAS, appending them to `out` in
    /// the order single pops would return them. Only after `reserve_up_to`
    /// granted `count` (at most [`CHAIN`] at a time, which bounds the walk).
    ///
    /// The chain from the head is walked before the CAS. Blocks on the stack
    /// keep their links until they are popped, and every pop or push moves
    /// the head's tag, so a CAS that succeeds proves the walk saw one
    /// consistent stack; a walk that raced with a change is simply retried.
    #[inline]
    pub fn pop_many(&self, count: u64, out: &mut Vec<u32>) {
        debug_assert!((1..=CHAIN).contains(&count));
        let start = out.len();
        loop {
            out.truncate(start);
            let head = self.head.load(Ordering::Acquire);
            let mut top = head as u32;
            while top != 0 && ((out.len() - start) as u64) < count {
                out.push(top - 1);
                top = self.links[top as usize - 1].load(Ordering::Relaxed);
            }
            if ((out.len() - start) as u64) < count {
                // Reserved blocks whose pushes are still landing, or a walk
                // that raced with a change: look again.
                spin_wait();
                continue;
            }
            let tag = (head >> 32).wrapping_add(1);
            if self
                .head
                .compare_exchange_weak(
                    head,
                    tag << 32 | u64::from(top),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
        }
    }

    /// Return a block; yields the number of free blocks after it.
    #[cfg(test)]
    pub fn push(&self, offset: u32) -> u64 {
        self.push_many(&[offset])
    }

    /// Return blocks with one CAS, leaving the stack as pushing them one by
    /// one in order would; yields the number of free blocks after them (with
    /// the closed bit set if the list is closed).
    #[inline]
    pub fn push_many(&self, offsets: &[u32]) -> u64 {
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return self.available();
        };
        // Link the chain last -> ... -> first; then first -> the old head.
        for pair in offsets.windows(2) {
            self.links[pair[1] as usize].store(pair[0] + 1, Ordering::Relaxed);
        }
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            self.links[first as usize].store(head as u32, Ordering::Relaxed);
            let tag = (head >> 32).wrapping_add(1);
            match self.head.compare_exchange_weak(
                head,
                tag << 32 | u64::from(last + 1),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => head = seen,
            }
        }
        self.available
            .fetch_add(offsets.len() as u64, Ordering::Release)
            + offsets.len() as u64
    }

    /// Close the list if all `total` blocks are free; no reservation succeeds after.
    pub fn try_close(&self, total: u64) -> bool {
        self.available
            .compare_exchange(total, CLOSED | total, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Undo a [`try_close`](Self::try_close) of a list of `total` blocks (a
    /// deletion that could not go ahead). Nothing can have changed a closed
    /// list with every block free: no reservation succeeds, and no block is
    /// out to be pushed.
    pub fn reopen(&self, total: u64) {
        let reopened = self.available.compare_exchange(
            CLOSED | total,
            total,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
        debug_assert!(reopened.is_ok());
    }

    /// Close the list whatever its count (a fenced subpool): no reservation
    /// succeeds after it; pushes still count the blocks that come back.
    pub fn fence(&self) {
        self.available.fetch_or(CLOSED, Ordering::AcqRel);
    }

    /// Whether a push that returned `after` (from [`push_many`](Self::push_many))
    /// left a closed list of `total` blocks with every block free.
    pub fn closed_and_full(after: u64, total: u64) -> bool {
        after == CLOSED | total
    }

    /// Whether a reservation could succeed now: open, with a free block (a
    /// snapshot). A closed list never reopens, so `false` stays `false`.
    #[inline]
    pub fn has_free(&self) -> bool {
        let available = self.available.load(Ordering::Acquire);
        available & CLOSED == 0 && available > 0
    }

    /// Free blocks now (a snapshot).
    #[inline]
    pub fn available(&self) -> u64 {
        self.available.load(Ordering::Acquire) & !CLOSED
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_then_lifo() {
        let list = FreeList::new(3).unwrap();
        let take = || {
            assert!(matches!(list.reserve_up_to(1), Reserve::Taken { .. }));
            list.pop()
        };
        assert_eq!((take(), take()), (0, 1));
        assert_eq!(list.push(0), 2);
        assert_eq!(
            list.reserve_up_to(1),
            Reserve::Taken {
                count: 1,
                last: false
            }
        );
        assert_eq!(list.pop(), 0);
        assert_eq!(
            list.reserve_up_to(1),
            Reserve::Taken {
                count: 1,
                last: true
            }
        );
        assert_eq!(list.pop(), 2);
        assert_eq!(list.reserve_up_to(1), Reserve::Empty);
    }

    #[test]
    fn batches_match_single_operations() {
        let single = FreeList::new(6).unwrap();
        let batch = FreeList::new(6).unwrap();
        let mut popped = Vec::new();
        for _ in 0..4 {
            assert!(matches!(single.reserve_up_to(1), Reserve::Taken { .. }));
            popped.push(single.pop());
        }
        assert_eq!(
            batch.reserve_up_to(4),
            Reserve::Taken {
                count: 4,
                last: false
            }
        );
        let mut chained = Vec::new();
        batch.pop_many(4, &mut chained);
        assert_eq!(chained, popped);
        for offset in [2, 0, 3] {
            single.push(offset);
        }
        assert_eq!(batch.push_many(&[2, 0, 3]), 5);
        assert_eq!(
            batch.reserve_up_to(9),
            Reserve::Taken {
                count: 5,
                last: true
            }
        );
        let mut rest = Vec::new();
        batch.pop_many(5, &mut rest);
        let single_rest: Vec<u32> = (0..5)
            .map(|_| {
                single.reserve_up_to(1);
                single.pop()
            })
            .collect();
        assert_eq!(rest, single_rest);
        assert_eq!(batch.reserve_up_to(1), Reserve::Empty);
    }

    #[test]
    fn closes_only_when_full() {
        let list = FreeList::new(2).unwrap();
        assert!(matches!(list.reserve_up_to(1), Reserve::Taken { .. }));
        let offset = list.pop();
        assert!(!list.try_close(2));
        list.push(offset);
        assert!(list.try_close(2));
        assert_eq!(list.reserve_up_to(1), Reserve::Closed);
        assert_eq!(list.available(), 2);
    }
}

#[cfg(all(loom, test))]
mod loom;
