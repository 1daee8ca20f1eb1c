//! Held blocks (hold-down): blocks whose lease was freed with a hold, kept
//! out of use until the hold ends (the reference model's `held.py`).
//!
//! The queue is a binary heap ordered by `(end, sequence number)` under a
//! mutex. Beside it, two atomics let allocations skip the lock: `count`
//! (held blocks) and `earliest` (the bits of the earliest end, `+inf` when
//! none), both written under the lock. An allocation that read the clock
//! takes the lock only when `count > 0` and `now >= earliest`.
//!
//! A free with a hold ends the lease under the lock: the block's release
//! CAS and the queueing happen together. If lookups are reading the block,
//! the release is deferred to the last of them (`block.rs`), marked as a
//! held release, and its end is parked here; the reader that completes it
//! takes the lock and queues the block (it waits for the freer's unlock at
//! most, so it always finds the parked end).
//!
//! Counting: a held block stays in the pool's `taken` count (it is not in a
//! free list) and is added to `count`; `len() = taken - held`. Expiry lowers
//! `count` before the blocks are returned (and `taken` lowered), so `len()`
//! may briefly count a block being returned, never less than the leases
//! live.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

use crate::core::block::Release;
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};

/// A held block as a snapshot sees it: its subpool, offset and hold's end.
pub type HeldBlock<T> = (Arc<Subpool<T>>, u32, f64);

/// A held block: its subpool and offset, and when its hold ends.
pub struct Entry<T> {
    end: f64,
    sequence: u64,
    pub subpool: Arc<Subpool<T>>,
    pub offset: u32,
}

impl<T> Entry<T> {
    fn key(&self) -> (f64, u64) {
        (self.end, self.sequence)
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest end,
    /// then the lowest sequence number.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        let (end, sequence) = self.key();
        let (other_end, other_sequence) = other.key();
        other_end
            .total_cmp(&end)
            .then(other_sequence.cmp(&sequence))
    }
}

struct Queue<T> {
    heap: BinaryHeap<Entry<T>>,
    /// The next sequence number.
    sequence: u64,
    /// Holds whose release a lookup's reader will complete: (subpool id,
    /// offset, end). Short: one per free racing with a lookup.
    deferred: Vec<(u32, u32, f64)>,
}

pub struct Held<T> {
    count: AtomicU64,
    earliest: AtomicU64,
    queue: Mutex<Queue<T>>,
}

impl<T: Default> Held<T> {
    pub fn new() -> Self {
        Held {
            count: AtomicU64::new(0),
            earliest: AtomicU64::new(f64::INFINITY.to_bits()),
            queue: Mutex::new(Queue {
                heap: BinaryHeap::new(),
                sequence: 0,
                deferred: Vec::new(),
            }),
        }
    }

    /// The queue a snapshot restores: `entries` (subpool, offset, end) in
    /// release order, numbered in that order. The subpools' held counts and
    /// their blocks' states are the caller's.
    pub fn restored(entries: Vec<HeldBlock<T>>) -> Self {
        let count = entries.len() as u64;
        let heap: BinaryHeap<Entry<T>> = entries
            .into_iter()
            .enumerate()
            .map(|(sequence, (subpool, offset, end))| Entry {
                end,
                sequence: sequence as u64,
                subpool,
                offset,
            })
            .collect();
        let held = Held {
            count: AtomicU64::new(count),
            earliest: AtomicU64::new(f64::INFINITY.to_bits()),
            queue: Mutex::new(Queue {
                sequence: count,
                heap,
                deferred: Vec::new(),
            }),
        };
        held.publish_earliest(&held.lock());
        held
    }

    /// The held blocks in release order (`(end, sequence)`), as (subpool,
    /// offset, end); `None` while a release is parked for a lookup's reader
    /// (only under concurrency).
    pub fn entries(&self) -> Option<Vec<HeldBlock<T>>> {
        let queue = self.lock();
        if !queue.deferred.is_empty() {
            return None;
        }
        let mut entries: Vec<&Entry<T>> = queue.heap.iter().collect();
        entries.sort_by(|a, b| b.cmp(a)); // `Ord` is reversed: earliest last
        Some(
            entries
                .into_iter()
                .map(|entry| (Arc::clone(&entry.subpool), entry.offset, entry.end))
                .collect(),
        )
    }

    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // Every step under the lock leaves the queue consistent.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Held blocks now (a snapshot; includes holds that ended but were not
    /// released yet).
    #[inline]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// When the earliest hold ends, if any block is held.
    pub fn first_end(&self) -> Option<f64> {
        self.lock().heap.peek().map(|entry| entry.end)
    }

    /// End the lease `generation` of block `offset` and hold the block until
    /// `end`. `NotLive` and `Deferred` as [`ConnectionBlock::release`]
    /// (`crate::core::block`); on `Done` the block is held.
    pub fn release(
        &self,
        subpool: &Arc<Subpool<T>>,
        offset: u32,
        generation: u32,
        end: f64,
    ) -> Release<T> {
        let mut queue = self.lock();
        let outcome = subpool.blocks[offset as usize].release(generation, true);
        match outcome {
            Release::Done(_) => self.push(&mut queue, Arc::clone(subpool), offset, end),
            Release::Deferred => queue.deferred.push((subpool.id, offset, end)),
            Release::NotLive => {}
            Release::Listed(_) => unreachable!("a release with a hold is never listed"),
        }
        outcome
    }

    /// A lookup's reader completed a held release of block `offset`: hold it
    /// until the end its free parked.
    pub fn complete_deferred(&self, subpool: &Arc<Subpool<T>>, offset: u32) {
        let mut queue = self.lock();
        let position = queue
            .deferred
            .iter()
            .position(|&(id, parked, _)| id == subpool.id && parked == offset)
            .expect("a held release is parked before its block is marked");
        let (_, _, end) = queue.deferred.swap_remove(position);
        self.push(&mut queue, Arc::clone(subpool), offset, end);
    }

    fn push(&self, queue: &mut Queue<T>, subpool: Arc<Subpool<T>>, offset: u32, end: f64) {
        subpool.held.fetch_add(1, Ordering::Relaxed);
        let sequence = queue.sequence;
        queue.sequence += 1;
        queue.heap.push(Entry {
            end,
            sequence,
            subpool,
            offset,
        });
        self.publish_earliest(queue);
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn publish_earliest(&self, queue: &Queue<T>) {
        let earliest = queue.heap.peek().map_or(f64::INFINITY, |entry| entry.end);
        self.earliest.store(earliest.to_bits(), Ordering::Release);
    }

    /// Move the blocks whose hold ended by `now` to `out`, earliest first
    /// (`(end, sequence)` order). Takes the lock only when one is due.
    pub fn due(&self, now: f64, out: &mut Vec<Entry<T>>) {
        if self.count() == 0 || now < f64::from_bits(self.earliest.load(Ordering::Acquire)) {
            return;
        }
        let mut queue = self.lock();
        let before = out.len();
        while queue.heap.peek().is_some_and(|entry| entry.end <= now) {
            let entry = queue.heap.pop().expect("peeked");
            entry.subpool.held.fetch_sub(1, Ordering::Relaxed);
            out.push(entry);
        }
        self.publish_earliest(&queue);
        self.count
            .fetch_sub((out.len() - before) as u64, Ordering::AcqRel);
    }
}

#[cfg(all(loom, test))]
mod loom;
