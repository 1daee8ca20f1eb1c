//! A pool's counts of taken blocks and live leases, kept per thread, and
//! beside them each thread's activity count in a contended pool (how a
//! home's sampled call sees the other threads' calls, `pool/home.rs`).
//!
//! Every allocation adds to both counts and every free subtracts from them.
//! As two shared atomics they cost four locked read-modify-writes a pair,
//! on lines that two threads sharing the pool pass back and forth. Here a
//! thread changes a cell of its own instead (its epoch participant's index,
//! `epoch::thread_index`: no other thread has it while this one lives) with
//! a plain load and store; a reader sums the cells.
//!
//! * A cell's value is the sum of the changes made through it, wrapping: a
//!   lease allocated by one thread and freed by another leaves +1 in one
//!   cell and -1 in the other.
//! * Only the participant's holder writes its cell, so the load and store
//!   lose no change; a participant passes to another thread through the
//!   registry's lock, which orders the last holder's stores before the next
//!   holder's loads. Threads past the first `CELLS`, and a thread without a
//!   participant (before its first pin, or in a thread-local destructor),
//!   share one cell with atomic adds.
//! * The sum is exact when no call is changing it. Under concurrency each
//!   cell is read at its own instant: the sum may miss changes made during
//!   the read, and is clamped at 0. The pool does not decide exhaustion on
//!   it (`writer.rs` asks the free lists); growth and `len()` use it.
//!
//! The owner's stores are Release and a reader's loads Acquire (the owner
//! loads its own last store Relaxed): a reader that saw a lease
//! published (the block's Release store, after the allocation's add in
//! program order) and then sums, sees that add.

use crossbeam_utils::CachePadded;

use crate::core::epoch;
use crate::core::sync::{AtomicU64, Ordering};

/// Threads with a participant index below this count in a cell of their
/// own. Loom models run a few threads, and each loom atomic is costly.
#[cfg(not(loom))]
const CELLS: usize = 64;
#[cfg(loom)]
const CELLS: usize = 3;

#[derive(Default)]
struct Cell {
    taken: AtomicU64,
    live: AtomicU64,
    /// Raised by the thread's calls in a contended pool (`pool/home.rs`):
    /// only ever up, so that another thread sees calls that cancel out in
    /// `taken` and `live`. Unused under loom, where homes are off.
    #[cfg_attr(loom, allow(dead_code))]
    active: AtomicU64,
}

impl Cell {
    /// Atomic adds (wrapping): a cell several threads write.
    #[cold]
    fn add(&self, taken: u64, live: u64) {
        self.taken.fetch_add(taken, Ordering::AcqRel);
        self.live.fetch_add(live, Ordering::AcqRel);
    }
}

/// Taken blocks and live leases (see the module documentation).
pub(crate) struct Tally {
    own: Box<[CachePadded<Cell>]>,
    /// For participants past `CELLS` (atomic adds), and the counts a pool
    /// was restored with.
    shared: CachePadded<Cell>,
}

/// Add `delta` (wrapping) to `count`, which only this thread writes now.
#[inline(always)]
fn bump(count: &AtomicU64, delta: u64) {
    count.store(
        count.load(Ordering::Relaxed).wrapping_add(delta),
        Ordering::Release,
    );
}

impl Tally {
    /// Counts starting at `taken` and `live`.
    pub(crate) fn new(taken: u64, live: u64) -> Self {
        Tally {
            own: (0..CELLS).map(|_| CachePadded::default()).collect(),
            shared: CachePadded::new(Cell {
                taken: AtomicU64::new(taken),
                live: AtomicU64::new(live),
                active: AtomicU64::new(0),
            }),
        }
    }

    /// The calling thread's own cell, if it has one.
    #[inline(always)]
    fn own(&self) -> Option<&Cell> {
        epoch::thread_index().and_then(|index| self.own.get(index).map(|cell| &**cell))
    }

    /// `count` blocks taken and made live (an allocation).
    #[inline(always)]
    pub(crate) fn took(&self, count: u64) {
        match self.own() {
            Some(cell) => {
                bump(&cell.taken, count);
                bump(&cell.live, count);
            }
            None => self.shared.add(count, count),
        }
    }

    /// `count` blocks returned to their free lists.
    #[inline(always)]
    pub(crate) fn returned(&self, count: u64) {
        let minus = count.wrapping_neg();
        match self.own() {
            Some(cell) => bump(&cell.taken, minus),
            None => self.shared.add(minus, 0),
        }
    }

    /// `count` leases ended.
    #[inline(always)]
    pub(crate) fn ended(&self, count: u64) {
        let minus = count.wrapping_neg();
        match self.own() {
            Some(cell) => bump(&cell.live, minus),
            None => self.shared.add(0, minus),
        }
    }

    /// One call of this thread in a contended pool (home subpools): a plain
    /// store to the thread's own cell, no line another thread writes.
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn active(&self) {
        match self.own() {
            Some(cell) => bump(&cell.active, 1),
            None => {
                self.shared.active.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// The sum of every thread's [`active`](Self::active) calls (a
    /// snapshot, as [`taken`](Self::taken)'s), read by a home's sampled
    /// call.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn activity(&self) -> u64 {
        self.sum(|cell| &cell.active)
    }

    /// `count` leases ended and their blocks returned.
    #[inline(always)]
    pub(crate) fn ended_and_returned(&self, count: u64) {
        self.returned(count);
        self.ended(count);
    }

    fn sum(&self, count: impl Fn(&Cell) -> &AtomicU64) -> u64 {
        // Only the cells of indices that exist: a few, in most processes.
        let used = epoch::thread_count().min(CELLS);
        let total = self.own[..used]
            .iter()
            .map(|cell| &**cell)
            .chain(std::iter::once(&*self.shared))
            .fold(0u64, |total, cell| {
                total.wrapping_add(count(cell).load(Ordering::Acquire))
            });
        // Negative only while a change is missed (see the module notes).
        if (total as i64) < 0 {
            0
        } else {
            total
        }
    }

    /// Blocks taken from free lists and not returned.
    pub(crate) fn taken(&self) -> u64 {
        self.sum(|cell| &cell.taken)
    }

    /// Live leases.
    pub(crate) fn live(&self) -> u64 {
        self.sum(|cell| &cell.live)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn changes_made_on_other_threads_sum_exactly_once_they_are_done() {
        let tally = std::sync::Arc::new(Tally::new(3, 1));
        let threads: Vec<_> = (0..CELLS + 4)
            .map(|_| {
                let tally = std::sync::Arc::clone(&tally);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        tally.took(2);
                        tally.ended(1);
                        tally.returned(1);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let n = (CELLS as u64 + 4) * 100;
        assert_eq!((tally.taken(), tally.live()), (3 + n, 1 + n));
    }

    #[test]
    fn a_lease_freed_on_another_thread_cancels_out() {
        let tally = std::sync::Arc::new(Tally::new(0, 0));
        tally.took(1);
        let other = std::sync::Arc::clone(&tally);
        std::thread::spawn(move || other.ended_and_returned(1))
            .join()
            .unwrap();
        assert_eq!((tally.taken(), tally.live()), (0, 0));
        tally.ended(1); // more ended than taken: clamped, never 2^64 - 1
        assert_eq!(tally.live(), 0);
    }
}

#[cfg(all(loom, test))]
mod loom;
