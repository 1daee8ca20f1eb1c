//! A connection block: one client NAT address, set when its subpool is
//! created, plus the lease state and the user's data.
//!
//! The state word is `generation << 32 | LIVE | RELEASING | HOLD | readers`:
//! * free: `LIVE` clear; the block is on its subpool's free list, in the
//!   held queue, or held by the allocator that popped it, which alone may
//!   write `data`;
//! * live: `LIVE` set; lookups may register as readers and read `data`;
//! * releasing: `free` found readers present; the last reader to leave
//!   completes the release (`HOLD`: the free had a hold, so the reader
//!   queues the block as held instead of returning it).
//!
//! Completing a release moves the state to free with the generation bumped,
//! and hands the data back to the completer, who returns the block to the
//! free list. So no reader ever sees `data` being replaced, and no lookup
//! ever waits.

use crate::core::sync::{AtomicU64, DataCell, Ordering};

const LIVE: u64 = 1 << 31;
const RELEASING: u64 = 1 << 30;
const HOLD: u64 = 1 << 29;
const READERS: u64 = HOLD - 1;

fn generation(state: u64) -> u32 {
    (state >> 32) as u32
}

fn free_state(generation: u32) -> u64 {
    u64::from(generation) << 32
}

/// The outcome of [`ConnectionBlock::release`].
#[derive(Debug, PartialEq, Eq)]
pub enum Release<T> {
    /// The handle's generation does not name a live lease of this block.
    NotLive,
    /// Released; the caller must return the block to the free list (or hold it).
    Done(T),
    /// Marked releasing; the last reader returns (or holds) the block.
    Deferred,
}

/// A release a reader completed ([`ConnectionBlock::read`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Completed<T> {
    pub data: T,
    /// The free had a hold: the block goes to the held queue, not back.
    pub hold: bool,
}

pub struct ConnectionBlock<T> {
    state: AtomicU64,
    /// The block's IP: its slot in its subpool's IPs (`Subpool::ips`), so
    /// that a block is no bigger for IPv6 than for IPv4.
    pub ip_slot: u32,
    pub port: u16,
    data: DataCell<T>,
}

// SAFETY: `data` is moved between threads (written by the allocating thread,
// taken by the releasing one), so `T: Send` is needed to send a block, and
// concurrent readers share `&T`, so `T: Sync` is needed to share one. The
// state protocol above serialises every write to `data` against all reads.
unsafe impl<T: Send> Send for ConnectionBlock<T> {}
// SAFETY: see above.
unsafe impl<T: Send + Sync> Sync for ConnectionBlock<T> {}

impl<T: Default> ConnectionBlock<T> {
    pub fn new(ip_slot: u32, port: u16, generation: u32) -> Self {
        ConnectionBlock {
            state: AtomicU64::new(free_state(generation)),
            ip_slot,
            port,
            data: DataCell::new(T::default()),
        }
    }

    /// The current generation (a snapshot).
    pub fn generation(&self) -> u32 {
        generation(self.state.load(Ordering::Relaxed))
    }

    /// Whether a live lease of `generation` holds the block (a snapshot).
    pub fn is_live(&self, generation_: u32) -> bool {
        let state = self.state.load(Ordering::Acquire);
        generation(state) == generation_ && state & (LIVE | RELEASING) == LIVE
    }

    /// Make the block live with `data`; returns its generation.
    ///
    /// # Safety
    /// The caller must own the block: it popped it from the free list and has
    /// not published it, so no other thread reads or writes `data`.
    #[inline]
    pub(crate) unsafe fn occupy(&self, data: T) -> u32 {
        let state = self.state.load(Ordering::Relaxed);
        debug_assert_eq!(state & (LIVE | RELEASING | READERS), 0);
        // SAFETY: the caller owns the block (see the contract above).
        self.data.with_mut(|cell| unsafe { *cell = data });
        self.state.store(state | LIVE, Ordering::Release);
        generation(state)
    }

    /// Free the lease of `generation_`; `hold` marks a deferred release as
    /// held (the free had a hold).
    #[inline]
    pub fn release(&self, generation_: u32, hold: bool) -> Release<T> {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if generation(state) != generation_ || state & (LIVE | RELEASING) != LIVE {
                return Release::NotLive;
            }
            let done = state & READERS == 0;
            let next = if done {
                free_state(generation_.wrapping_add(1))
            } else if hold {
                state | RELEASING | HOLD
            } else {
                state | RELEASING
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: our CAS moved the block from live with no reader
                // to free, and it is on no free list yet.
                Ok(_) if done => return Release::Done(unsafe { self.take_data() }),
                Ok(_) => return Release::Deferred,
                Err(seen) => state = seen,
            }
        }
    }

    /// Run `read` on a live block's generation and data. Returns `None` when
    /// the block is not live; otherwise `read`'s result and, when this reader
    /// was the last one out of a block being released, the released data
    /// (the caller must then return the block to the free list, or hold it
    /// when the free had a hold). `read` must not panic.
    #[inline]
    pub fn read<R>(&self, read: impl FnOnce(u32, &T) -> R) -> Option<(R, Option<Completed<T>>)> {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & (LIVE | RELEASING) != LIVE || state & READERS == READERS {
                return None;
            }
            match self.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => state = seen,
            }
        }
        let generation_ = generation(state);
        // SAFETY: we are a registered reader of a live block: no release can
        // complete (and so nothing can write `data`) until we leave.
        let result = self.data.with(|cell| read(generation_, unsafe { &*cell }));
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let last_out = state & RELEASING != 0 && state & READERS == 1;
            let next = if last_out {
                free_state(generation_.wrapping_add(1))
            } else {
                state - 1
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                // SAFETY: our CAS moved the block from releasing, with us
                // its last reader, to free; it is on no free list yet.
                Ok(_) if last_out => {
                    let data = unsafe { self.take_data() };
                    let hold = state & HOLD != 0;
                    return Some((result, Some(Completed { data, hold })));
                }
                Ok(_) => return Some((result, None)),
                Err(seen) => state = seen,
            }
        }
    }

    /// Move the data out, leaving `T::default()`.
    ///
    /// # Safety
    /// Only the thread whose CAS just moved the block out of live (or
    /// releasing) into free, with no reader left, may call this, once, and
    /// before it returns the block to the free list: then no reader can
    /// register (`LIVE` is clear) and no allocator can pop the block, so
    /// this thread alone accesses `data`.
    unsafe fn take_data(&self) -> T {
        // SAFETY: the caller alone accesses `data` (see the contract above).
        self.data
            .with_mut(|cell| unsafe { std::mem::take(&mut *cell) })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The block keeps a slot into its subpool's IPs, not the IP: IPv6
    /// blocks are no bigger than IPv4 ones.
    #[test]
    fn a_block_is_small_whatever_the_family() {
        assert_eq!(std::mem::size_of::<ConnectionBlock<Option<Box<u8>>>>(), 24);
        assert_eq!(std::mem::size_of::<ConnectionBlock<()>>(), 16);
    }

    #[test]
    fn occupy_release_bumps_generation() {
        let block: ConnectionBlock<u32> = ConnectionBlock::new(1, 2, 5);
        // SAFETY: the block is fresh and owned by this test.
        let generation_ = unsafe { block.occupy(9) };
        assert_eq!(generation_, 5);
        assert!(block.is_live(5));
        assert_eq!(block.release(4, false), Release::NotLive);
        assert_eq!(block.release(5, false), Release::Done(9));
        assert_eq!(block.release(5, false), Release::NotLive);
        assert_eq!(block.generation(), 6);
        assert!(block.read(|_, _| ()).is_none());
    }

    /// Each reuse moves the generation on by one, modulo 2^32: a stale
    /// handle is rejected until its block has been reused 2^32 times.
    #[test]
    fn generation_wraps_after_two_to_the_32_reuses() {
        let start = u32::MAX - 1;
        let block: ConnectionBlock<()> = ConnectionBlock::new(1, 2, start);
        for reuse in 1..=3u32 {
            let generation_ = block.generation();
            // SAFETY: owned by this test.
            assert_eq!(unsafe { block.occupy(()) }, generation_);
            assert_eq!(block.release(generation_, false), Release::Done(()));
            assert_eq!(block.generation(), start.wrapping_add(reuse));
            assert_eq!(block.release(start, false), Release::NotLive);
            assert!(!block.is_live(start));
        }
        assert_eq!(block.generation(), 1, "wrapped past u32::MAX to 0, then 1");
    }

    #[test]
    fn last_reader_completes_a_deferred_release() {
        let block: ConnectionBlock<u32> = ConnectionBlock::new(1, 2, 0);
        // SAFETY: owned by this test.
        unsafe { block.occupy(3) };
        let outcome = block.read(|generation_, data| {
            assert_eq!(block.release(generation_, false), Release::Deferred);
            assert_eq!(block.release(generation_, false), Release::NotLive);
            *data
        });
        let completed = Completed {
            data: 3,
            hold: false,
        };
        assert_eq!(outcome, Some((3, Some(completed))));
        assert_eq!(block.generation(), 1);
        assert!(!block.is_live(0));
    }

    #[test]
    fn a_reader_completing_a_held_release_is_told_so() {
        let block: ConnectionBlock<u32> = ConnectionBlock::new(1, 2, 0);
        // SAFETY: owned by this test.
        unsafe { block.occupy(4) };
        let outcome = block.read(|generation_, _| {
            assert_eq!(block.release(generation_, true), Release::Deferred);
        });
        let completed = Completed {
            data: 4,
            hold: true,
        };
        assert_eq!(outcome, Some(((), Some(completed))));
        // Reused: a later release without a hold is not marked.
        // SAFETY: free again, owned by this test.
        unsafe { block.occupy(5) };
        let outcome = block.read(|generation_, _| block.release(generation_, false));
        let (released, completed) = outcome.unwrap();
        assert_eq!(released, Release::Deferred);
        assert!(!completed.unwrap().hold);
    }
}

#[cfg(all(loom, test))]
mod loom;
