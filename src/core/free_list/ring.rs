//! `order = "fifo"`: a bounded multi-producer multi-consumer ring of block
//! offsets, one cell per block of the subpool.
//!
//! Positions are 64-bit counters: `head` (the next position to take) and
//! `tail` (the next position to fill); position `p` lives in cell `p % n` on
//! lap `p / n`. A cell is one `AtomicU64`, `lap:31 | full:1 | offset:32`:
//! a push to position `p` waits for its cell to read (lap `p / n`, empty) and
//! stores (lap `p / n`, full, offset); a pop from `p` waits for (lap `p / n`,
//! full), reads the offset and stores (lap `p / n + 1`, empty). A fresh ring
//! holds offsets `0..n` in positions `0..n` (`tail = n`).
//!
//! The reservation count in front of the ring (`free_list.rs`) makes both
//! sides claim positions with a plain `fetch_add`: a pop runs only after a
//! reservation, so it claims a position some push has claimed (the pushes
//! counted never fall behind the reservations); a push never overruns the
//! ring, because a subpool never has more than `n` free blocks. Either side
//! may find its cell not yet ready: the other side has claimed the position
//! and is between its `fetch_add` and its store, and the wait is for that
//! one committed step (as the stack's pop waits for a landing push).
//!
//! Laps are counted mod 2^31: a thread would have to be preempted while the
//! ring went round 2^31 times for a stale cell to look current.

use crossbeam_utils::CachePadded;

use crate::core::error::Error;
use crate::core::free_list::entries;
use crate::core::sync::{wait_for, AtomicU64, Ordering};

const FULL: u64 = 1 << 32;
const LAP_MASK: u64 = (1 << 31) - 1;

fn cell(lap: u64, full: bool, offset: u32) -> u64 {
    (lap & LAP_MASK) << 33 | if full { FULL } else { 0 } | u64::from(offset)
}

/// The cell holding block `offset` (full), and its lap, if any: the scan
/// `listed` begins with.
fn find_full(cells: &[AtomicU64], offset: u32) -> Option<(u64, u64)> {
    cells.iter().enumerate().find_map(|(i, word)| {
        let current = word.load(Ordering::Acquire);
        (current & FULL != 0 && current as u32 == offset).then_some((i as u64, current >> 33))
    })
}

/// The cell's lap and full bit, for comparing with what a side waits for.
fn turn(cell: u64) -> u64 {
    cell >> 32
}

pub struct Ring {
    /// Written by takes and by returns: each on a cache line of its own.
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    cells: Box<[AtomicU64]>,
}

impl Ring {
    /// A full ring of `n` blocks; pops return offsets 0, 1, 2, ... in order.
    pub fn new(n: u32) -> Result<Self, Error> {
        let cells = entries(n, "a free ring", |offset| {
            AtomicU64::new(cell(0, true, offset))
        })?;
        Ok(Ring {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(u64::from(n))),
            cells,
        })
    }

    /// A ring of `n` blocks holding `listed` (at most `n`), the next taken
    /// first: positions `0..listed.len()`, the other cells empty on lap 0.
    pub fn restored(n: u32, listed: &[u32]) -> Result<Self, Error> {
        let cells = entries(n, "a free ring", |i| {
            AtomicU64::new(match listed.get(i as usize) {
                Some(&offset) => cell(0, true, offset),
                None => cell(0, false, 0),
            })
        })?;
        Ok(Ring {
            head: CachePadded::new(AtomicU64::new(0)),
            tail: CachePadded::new(AtomicU64::new(listed.len() as u64)),
            cells,
        })
    }

    /// The blocks from the head to the tail (`None`: a cell in that span
    /// is not full on its lap, a take or return in flight).
    pub fn entries(&self) -> Option<Vec<u32>> {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        let span = tail.checked_sub(head)?;
        if span > self.cells.len() as u64 {
            return None;
        }
        (head..tail)
            .map(|position| {
                let (cell_word, lap) = self.slot(position);
                let current = cell_word.load(Ordering::Acquire);
                (turn(current) == turn(cell(lap, true, 0))).then_some(current as u32)
            })
            .collect()
    }

    fn slot(&self, position: u64) -> (&AtomicU64, u64) {
        let n = self.cells.len() as u64;
        (&self.cells[(position % n) as usize], position / n)
    }

    /// Take the block at `position`, waiting for its push to land.
    #[inline]
    fn take_at(&self, position: u64) -> u32 {
        let (cell_word, lap) = self.slot(position);
        let wanted = turn(cell(lap, true, 0));
        let landed = || Some(cell_word.load(Ordering::Acquire)).filter(|&c| turn(c) == wanted);
        let current = landed().unwrap_or_else(|| wait_for(landed));
        cell_word.store(cell(lap + 1, false, 0), Ordering::Release);
        current as u32
    }

    /// Put `offset` at `position`, waiting for the cell's last pop to land.
    #[inline]
    fn put_at(&self, position: u64, offset: u32) {
        let (cell_word, lap) = self.slot(position);
        let wanted = turn(cell(lap, false, 0));
        let taken = || (turn(cell_word.load(Ordering::Acquire)) == wanted).then_some(());
        taken().unwrap_or_else(|| wait_for(taken));
        cell_word.store(cell(lap, true, offset), Ordering::Release);
    }

    /// Take the block freed longest ago. Only after a successful reserve.
    /// (`Acquire`: a claim of a position after a reserver's
    /// [`listed`](Self::listed) sees the reserver's mark on that block.)
    #[inline]
    pub fn pop(&self) -> u32 {
        self.take_at(self.head.fetch_add(1, Ordering::Acquire))
    }

    /// Take `count` reserved blocks, appending them in the order single pops
    /// would return them (one `fetch_add` for all of them).
    #[inline]
    pub fn pop_many(&self, count: u64, out: &mut Vec<u32>) {
        let first = self.head.fetch_add(count, Ordering::Acquire);
        out.extend((first..first + count).map(|position| self.take_at(position)));
    }

    /// Whether block `offset` is in the ring at a position no take has
    /// claimed: a scan of the cells for it (full), then a `fetch_add(0)` on
    /// `head` that places this observation in the takes' order: a take that
    /// claims the position later (`Acquire`) sees what this thread did
    /// before (`Release`).
    pub fn listed(&self, offset: u32) -> bool {
        let n = self.cells.len() as u64;
        let found = find_full(&self.cells, offset);
        let head = self.head.fetch_add(0, Ordering::AcqRel);
        let Some((i, lap)) = found else {
            return false;
        };
        // The cell's position: on the head's lap or the next (laps mod 2^31).
        let head_lap = head / n;
        let position = if lap == head_lap & LAP_MASK {
            head_lap * n + i
        } else if lap == (head_lap + 1) & LAP_MASK {
            (head_lap + 1) * n + i
        } else {
            return false;
        };
        position >= head
    }

    /// Append blocks in order (one `fetch_add` for all of them).
    #[inline]
    pub fn push_many(&self, offsets: &[u32]) {
        let first = self.tail.fetch_add(offsets.len() as u64, Ordering::Relaxed);
        for (position, &offset) in (first..).zip(offsets) {
            self.put_at(position, offset);
        }
    }
}
