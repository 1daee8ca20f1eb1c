//! Held blocks (hold-down): blocks whose lease was freed with a hold, kept
//! out of use until the hold ends (the reference model's `held.py`).
//!
//! The queue is ordered by `(end, sequence number)`, under a mutex. It is
//! kept in two parts: a FIFO run (`VecDeque`) of the holds queued in that
//! order (each new hold whose end is not before the run's last is appended:
//! with one hold length and a clock that does not go back, every hold), and
//! a binary heap of the others (a shorter hold after a longer one). The
//! earliest hold is the earlier of the two fronts, so the order is the one
//! a heap alone would give, at O(1) a hold instead of O(log held).
//!
//! Beside the queue, two atomics let allocations skip the lock: `count`
//! (held blocks) and `earliest` (the bits of the earliest end, `+inf` when
//! none), both written under the lock only (plain stores: the lock orders
//! the writers, so `count` needs no locked RMW; nor does a subpool's
//! `held`). An allocation that read the clock
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
//! free list) and is added to `count` (the pool's `live` count was lowered
//! when its lease ended). Expiry lowers `count` before the blocks are
//! returned (and `taken` lowered). An allocation takes the ended holds in
//! chunks of `DUE_CHUNK` a lock, into an array on its stack (no allocation
//! per call).

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};

use crate::core::block::Release;
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, AtomicU64, Mutex, MutexGuard, Ordering};

/// How many ended holds an allocation takes from the queue per lock (it
/// takes the lock again while there are more).
pub const DUE_CHUNK: usize = 4;

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
    /// Holds in `(end, sequence)` order, each appended at the back.
    run: VecDeque<Entry<T>>,
    /// The holds that came out of order (ends before the run's last).
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
                run: VecDeque::new(),
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
        // In release order already: all of them go to the run.
        let run: VecDeque<Entry<T>> = entries
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
                run,
                heap: BinaryHeap::new(),
                sequence: count,
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
        let mut entries: Vec<&Entry<T>> = queue.run.iter().chain(queue.heap.iter()).collect();
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
        self.lock().earliest().map(|entry| entry.end)
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
        // `held` and `count` are written only under the lock, which orders
        // the writers: a load and a store each, no locked RMW.
        let held = subpool.held.load(Ordering::Relaxed);
        subpool.held.store(held + 1, Ordering::Relaxed);
        let sequence = queue.sequence;
        queue.sequence += 1;
        let entry = Entry {
            end,
            sequence,
            subpool,
            offset,
        };
        // `Entry`'s order is reversed: `<=` is "not before".
        let in_order = match queue.run.back() {
            Some(last) => entry <= *last,
            None => true,
        };
        if in_order {
            queue.run.push_back(entry);
        } else {
            queue.heap.push(entry);
        }
        self.publish_earliest(queue);
        let count = self.count.load(Ordering::Relaxed);
        self.count.store(count + 1, Ordering::Release);
    }

    fn publish_earliest(&self, queue: &Queue<T>) {
        let earliest = queue.earliest().map_or(f64::INFINITY, |entry| entry.end);
        self.earliest.store(earliest.to_bits(), Ordering::Release);
    }

    /// Move up to `out.len()` of the blocks whose hold ended by `now` into
    /// `out`'s first places, earliest first (`(end, sequence)` order), and
    /// say how many; the caller asks again while it gets a full `out`.
    /// Takes the lock only when one is due.
    pub fn due(&self, now: f64, out: &mut [Option<Entry<T>>]) -> usize {
        if self.count() == 0 || now < f64::from_bits(self.earliest.load(Ordering::Acquire)) {
            return 0;
        }
        let mut queue = self.lock();
        let mut moved = 0;
        while moved < out.len() && queue.earliest().is_some_and(|entry| entry.end <= now) {
            let entry = queue.pop_earliest().expect("peeked");
            // Written under the lock only (see `push`).
            let held = entry.subpool.held.load(Ordering::Relaxed);
            entry.subpool.held.store(held - 1, Ordering::Relaxed);
            out[moved] = Some(entry);
            moved += 1;
        }
        self.publish_earliest(&queue);
        let count = self.count.load(Ordering::Relaxed);
        self.count.store(count - moved as u64, Ordering::Release);
        moved
    }
}

impl<T> Queue<T> {
    /// Whether the earliest hold is the heap's (else the run's, if any).
    fn heap_first(&self) -> bool {
        match (self.run.front(), self.heap.peek()) {
            // `Entry`'s order is reversed: the greater ends earlier.
            (Some(run), Some(heap)) => heap > run,
            (None, Some(_)) => true,
            _ => false,
        }
    }

    /// The hold that ends first (by `(end, sequence)`).
    fn earliest(&self) -> Option<&Entry<T>> {
        if self.heap_first() {
            self.heap.peek()
        } else {
            self.run.front()
        }
    }

    fn pop_earliest(&mut self) -> Option<Entry<T>> {
        if self.heap_first() {
            self.heap.pop()
        } else {
            self.run.pop_front()
        }
    }
}

#[cfg(all(loom, test))]
mod loom;
