//! `order = "lifo"` for a subpool of more than `fused_stack::MAX` blocks: a
//! lock-free Treiber stack of block offsets with a tagged head (against
//! ABA). The reservation count in front of it (`free_list.rs`) guarantees
//! every pop a block. Smaller stacks fold that count into their head
//! (`fused_stack.rs`).

use crossbeam_utils::CachePadded;

use crate::core::error::Error;
use crate::core::free_list::{entries, CHAIN};
use crate::core::sync::{spin_wait, AtomicU32, AtomicU64, Backoff, Ordering};

pub struct Stack {
    /// `tag << 32 | (offset + 1)`; the low half is 0 when the stack is empty.
    head: CachePadded<AtomicU64>,
    /// For each block on the stack, the next one (`offset + 1`, 0 for none).
    links: Box<[AtomicU32]>,
}

impl Stack {
    /// A full stack of `n` blocks; pops return offsets 0, 1, 2, ... in order.
    pub fn new(n: u32) -> Result<Self, Error> {
        let links = entries(n, "a free list", |i| {
            AtomicU32::new(if i + 1 < n { i + 2 } else { 0 })
        })?;
        Ok(Stack {
            head: CachePadded::new(AtomicU64::new(if n > 0 { 1 } else { 0 })),
            links,
        })
    }

    /// A stack of `n` blocks holding `listed`, the top first.
    pub fn restored(n: u32, listed: &[u32]) -> Result<Self, Error> {
        let links = entries(n, "a free list", |_| AtomicU32::new(0))?;
        for pair in listed.windows(2) {
            links[pair[0] as usize].store(pair[1] + 1, Ordering::Relaxed);
        }
        let top = listed.first().map_or(0, |&offset| offset + 1);
        Ok(Stack {
            head: CachePadded::new(AtomicU64::new(u64::from(top))),
            links,
        })
    }

    /// The blocks on the stack, the top first (`None`: the walk did not end
    /// within the stack's size, a change in flight).
    pub fn entries(&self) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        let mut top = self.head.load(Ordering::Acquire) as u32;
        while top != 0 {
            if out.len() == self.links.len() {
                return None;
            }
            out.push(top - 1);
            top = self.links[top as usize - 1].load(Ordering::Relaxed);
        }
        Some(out)
    }

    /// Take the most recently pushed block. Only after a successful reserve.
    #[inline]
    pub fn pop(&self) -> u32 {
        let mut backoff = Backoff::new();
        loop {
            let head = self.head.load(Ordering::Acquire);
            let top = head as u32;
            if top == 0 {
                // A reservation guarantees a block; its push is still landing.
                backoff.wait();
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
    /// the order single pops would return them (at most [`CHAIN`], which
    /// bounds the walk).
    ///
    /// The chain from the head is walked before the CAS. Blocks on the stack
    /// keep their links until they are popped, and every pop or push moves
    /// the head's tag, so a CAS that succeeds proves the walk saw one
    /// consistent stack; a walk that raced with a change is simply retried.
    #[inline]
    pub fn pop_many(&self, count: u64, out: &mut Vec<u32>) {
        debug_assert!((1..=CHAIN).contains(&count));
        let start = out.len();
        let mut backoff = Backoff::new();
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
                backoff.wait();
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

    /// Whether block `offset` is on the stack: a walk from the head (at most
    /// one step per block), made an observation of one consistent stack by a
    /// CAS that bumps the head's tag and changes nothing else. Any pop of
    /// that entry comes later in the head's order, and its `Acquire` sees
    /// what this thread did before (this CAS's `Release`).
    pub fn listed(&self, offset: u32) -> bool {
        loop {
            let head = self.head.load(Ordering::Acquire);
            let found = chain_holds(&self.links, head as u32, offset);
            let tag = (head >> 32).wrapping_add(1);
            if self
                .head
                .compare_exchange(
                    head,
                    tag << 32 | (head & u64::from(u32::MAX)),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return found;
            }
            spin_wait();
        }
    }

    /// Push blocks with one CAS, leaving the stack as pushing them one by
    /// one in order would (`offsets` is not empty).
    #[inline]
    pub fn push_many(&self, offsets: &[u32]) {
        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
            return;
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
                Ok(_) => return,
                Err(seen) => head = seen,
            }
        }
    }
}

/// Whether block `offset` is on the chain of `links` from `top` (`offset +
/// 1` of its first block, 0 for none), walking at most `links.len()` links
/// (a walk racing with changes may not end; the caller validates it).
pub(super) fn chain_holds(links: &[AtomicU32], mut top: u32, offset: u32) -> bool {
    for _ in 0..links.len() {
        if top == 0 {
            return false;
        }
        if top - 1 == offset {
            return true;
        }
        top = links[top as usize - 1].load(Ordering::Relaxed);
    }
    false
}
