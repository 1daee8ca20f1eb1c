//! Held blocks (hold-down): blocks whose lease was freed with a hold, kept
//! out of use until the hold ends (the reference model's `held.py`).
//!
//! The queue is ordered by `(end, sequence number)`, under a spin lock
//! (`spin_lock.rs`: a CAS to take, a plain store to release). It is
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
//!
//! What runs under the lock (short: waiters spin, then yield): a free's
//! release CAS and one push (O(1) to the run; O(log held) to the heap, for
//! a hold out of order; the run's and the heap's buffers grow by doubling,
//! so a push reallocates only when the queue is longer than ever before); a
//! free deferred by a lookup parks its end (a `Vec`, grown the same way);
//! a completed deferred release's search of the parked ends (one per free
//! racing with a lookup) and push; at most `DUE_CHUNK` pops and slot loads
//! an allocation; a snapshot's copy of the queue into an array allocated
//! before the lock (sorted after it). No syscall, and nothing is dropped
//! under it (a release's data is returned to the caller).

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};

use crate::core::block::Release;
use crate::core::spin_lock::{SpinGuard, SpinLock};
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, AtomicU64, Ordering};

/// How many ended holds an allocation takes from the queue per lock (it
/// takes the lock again while there are more).
pub const DUE_CHUNK: usize = 4;

/// A held block as a snapshot sees it: its subpool's id, offset and hold's
/// end.
pub type HeldBlock = (u32, u32, f64);

/// A held block of a subpool, resolved by the caller's pinned slot load.
pub type Due<'g, T> = Option<(&'g Arc<Subpool<T>>, u32)>;

/// A held block: its subpool's id and offset, and when its hold ends.
///
/// The subpool is named by its id, not an `Arc`: a held block is in no
/// free list, so its subpool is never full and never deleted (deletion
/// closes only a full list) while the block is held, and its slot keeps
/// it; the allocation that ends the hold loads the slot pinned. No count
/// is taken or dropped per hold.
#[derive(Clone, Copy)]
struct Entry {
    end: f64,
    sequence: u64,
    id: u32,
    offset: u32,
}

impl Entry {
    fn key(&self) -> (f64, u64) {
        (self.end, self.sequence)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
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

struct Queue {
    /// Holds in `(end, sequence)` order, each appended at the back.
    run: VecDeque<Entry>,
    /// The holds that came out of order (ends before the run's last).
    heap: BinaryHeap<Entry>,
    /// The next sequence number.
    sequence: u64,
    /// Holds whose release a lookup's reader will complete: (subpool id,
    /// offset, end). Short: one per free racing with a lookup.
    deferred: Vec<(u32, u32, f64)>,
}

pub struct Held {
    count: AtomicU64,
    earliest: AtomicU64,
    queue: SpinLock<Queue>,
}

impl Held {
    pub fn new() -> Self {
        Held {
            count: AtomicU64::new(0),
            earliest: AtomicU64::new(f64::INFINITY.to_bits()),
            queue: SpinLock::new(Queue {
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
    pub fn restored(entries: Vec<HeldBlock>) -> Self {
        let count = entries.len() as u64;
        // In release order already: all of them go to the run.
        let run: VecDeque<Entry> = entries
            .into_iter()
            .enumerate()
            .map(|(sequence, (id, offset, end))| Entry {
                end,
                sequence: sequence as u64,
                id,
                offset,
            })
            .collect();
        let held = Held {
            count: AtomicU64::new(count),
            earliest: AtomicU64::new(f64::INFINITY.to_bits()),
            queue: SpinLock::new(Queue {
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
    pub fn entries(&self) -> Option<Vec<HeldBlock>> {
        // Copied under the lock into an array allocated before it (again,
        // larger, if holds came meanwhile), sorted after it.
        let mut room = self.count() as usize;
        let mut entries: Vec<Entry> = loop {
            let mut entries = Vec::with_capacity(room);
            let queue = self.lock();
            if !queue.deferred.is_empty() {
                return None;
            }
            let len = queue.run.len() + queue.heap.len();
            if len <= room {
                entries.extend(queue.run.iter().chain(queue.heap.iter()));
                break entries;
            }
            room = len + len / 2;
        };
        entries.sort_by(|a, b| b.cmp(a)); // `Ord` is reversed: earliest last
        Some(
            entries
                .into_iter()
                .map(|entry| (entry.id, entry.offset, entry.end))
                .collect(),
        )
    }

    /// The queue, locked. Every step under the lock leaves it consistent
    /// (the spin lock has no poisoning, see `spin_lock.rs`).
    #[inline]
    fn lock(&self) -> SpinGuard<'_, Queue> {
        self.queue.lock()
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
    pub fn release<T: Default>(
        &self,
        subpool: &Subpool<T>,
        offset: u32,
        generation: u32,
        end: f64,
    ) -> Release<T> {
        let mut queue = self.lock();
        let outcome = subpool.blocks[offset as usize].release(generation, true);
        match outcome {
            Release::Done(_) => self.push(&mut queue, subpool, offset, end),
            Release::Deferred => queue.deferred.push((subpool.id, offset, end)),
            Release::NotLive => {}
            Release::Listed(_) => unreachable!("a release with a hold is never listed"),
        }
        outcome
    }

    /// A lookup's reader completed a held release of block `offset`: hold it
    /// until the end its free parked.
    pub fn complete_deferred<T>(&self, subpool: &Subpool<T>, offset: u32) {
        let mut queue = self.lock();
        let position = queue
            .deferred
            .iter()
            .position(|&(id, parked, _)| id == subpool.id && parked == offset)
            .expect("a held release is parked before its block is marked");
        let (_, _, end) = queue.deferred.swap_remove(position);
        self.push(&mut queue, subpool, offset, end);
    }

    fn push<T>(&self, queue: &mut Queue, subpool: &Subpool<T>, offset: u32, end: f64) {
        // `held` and `count` are written only under the lock, which orders
        // the writers: a load and a store each, no locked RMW.
        let held = subpool.held.load(Ordering::Relaxed);
        subpool.held.store(held + 1, Ordering::Relaxed);
        let sequence = queue.sequence;
        queue.sequence += 1;
        let entry = Entry {
            end,
            sequence,
            id: subpool.id,
            offset,
        };
        // Appended to the run when its end is not before the run's last
        // (the sequence numbers grow: `(end, sequence)` is then not before).
        let in_order = match queue.run.back() {
            Some(last) => last.end.total_cmp(&end).is_le(),
            None => true,
        };
        if in_order {
            queue.run.push_back(entry);
        } else {
            queue.heap.push(entry);
        }
        // The earliest end changes only when the entry may be the earliest:
        // it went to the heap, or it is the run's only one.
        if !in_order || queue.run.len() == 1 {
            self.publish_earliest(queue);
        }
        let count = self.count.load(Ordering::Relaxed);
        self.count.store(count + 1, Ordering::Release);
    }

    fn publish_earliest(&self, queue: &Queue) {
        self.earliest
            .store(queue.earliest_end().to_bits(), Ordering::Release);
    }

    /// Whether a hold may have ended by `now`: some block is held and the
    /// earliest end is not after `now` (two loads, no lock).
    #[inline]
    pub fn may_be_due(&self, now: f64) -> bool {
        self.count() != 0 && now >= f64::from_bits(self.earliest.load(Ordering::Acquire))
    }

    /// Move up to `out.len()` of the blocks whose hold ended by `now` into
    /// `out`'s first places, earliest first (`(end, sequence)` order), and
    /// say how many; the caller asks again while it gets a full `out`.
    /// The caller tested [`may_be_due`](Self::may_be_due) (the lock is
    /// taken only when one may be due). `subpool` resolves a held block's subpool id (a pinned slot load:
    /// the subpool of a held block is not deleted, see [`Entry`]).
    pub fn due<'g, T>(
        &self,
        now: f64,
        out: &mut [Due<'g, T>],
        subpool: impl Fn(u32) -> &'g Arc<Subpool<T>>,
    ) -> usize {
        let mut queue = self.lock();
        let mut moved = 0;
        while moved < out.len() {
            let Some(entry) = queue.pop_due(now) else {
                break;
            };
            let subpool = subpool(entry.id);
            // Written under the lock only (see `push`).
            let held = subpool.held.load(Ordering::Relaxed);
            subpool.held.store(held - 1, Ordering::Relaxed);
            out[moved] = Some((subpool, entry.offset));
            moved += 1;
        }
        self.publish_earliest(&queue);
        let count = self.count.load(Ordering::Relaxed);
        self.count.store(count - moved as u64, Ordering::Release);
        moved
    }
}

impl Queue {
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
    fn earliest(&self) -> Option<&Entry> {
        if self.heap_first() {
            self.heap.peek()
        } else {
            self.run.front()
        }
    }

    /// When the earliest hold ends (`+inf` when none): the earlier of the
    /// two fronts' ends (equal ends are the same end, whichever is first).
    fn earliest_end(&self) -> f64 {
        let run = self.run.front().map_or(f64::INFINITY, |entry| entry.end);
        match self.heap.peek() {
            Some(entry) if entry.end.total_cmp(&run).is_lt() => entry.end,
            _ => run,
        }
    }

    /// Take the hold that ends first if it ended by `now`.
    #[inline]
    fn pop_due(&mut self, now: f64) -> Option<Entry> {
        if self.heap.is_empty() {
            // The common case (one hold length): the run alone.
            return if self.run.front()?.end <= now {
                self.run.pop_front()
            } else {
                None
            };
        }
        if self.heap_first() {
            if self.heap.peek()?.end <= now {
                self.heap.pop()
            } else {
                None
            }
        } else if self.run.front()?.end <= now {
            self.run.pop_front()
        } else {
            None
        }
    }
}

#[cfg(all(loom, test))]
mod loom;
