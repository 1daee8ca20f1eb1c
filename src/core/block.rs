//! A connection block: one client NAT address, set when its subpool is
//! created, plus the lease state and the user's data.
//!
//! The state word is `generation << 32 | LIVE | RELEASING | HOLD | HELD |
//! RESERVED | PHANTOM | readers`:
//! * free: `LIVE` clear; the block is on its subpool's free list, in the
//!   held queue (`HELD`), or held by the allocator that popped it, which
//!   alone may write `data`;
//! * live: `LIVE` set; lookups may register as readers and read `data`;
//! * releasing: `free` found readers present; the last reader to leave
//!   completes the release (`HOLD`: the free had a hold, so the reader
//!   queues the block as held instead of returning it).
//!
//! Completing a release moves the state to free with the generation bumped,
//! and hands the data back to the completer, who returns the block to the
//! free list. So no reader ever sees `data` being replaced, and no lookup
//! ever waits.
//!
//! `reserve` (`docs/shapes.md`) takes a free block out of turn: its entry
//! stays in the free list as a *phantom* (`PHANTOM`: listed, not a free
//! entry). The reserver marks the block (`RESERVED | PHANTOM`, a CAS from
//! plain free), makes sure the entry is still listed (`FreeList::listed`)
//! or learns who took it, then writes `data` and sets `LIVE`. A take that
//! pops a phantom discards it (a CAS clearing `PHANTOM`) and takes again; a
//! lease of a reserved block that ends while its phantom is listed leaves
//! `PHANTOM` set, and whoever returns the block clears it with a CAS
//! ([`settle`](ConnectionBlock::settle)): the entry becomes a free entry
//! where it stands. The two CASes decide, once, whether the entry was
//! discarded (then the block is pushed as usual) or stands.

use crate::core::prefetch::prefetch;
use crate::core::snapshot::Standing;
use crate::core::sync::{AtomicU64, DataCell, Ordering};

const LIVE: u64 = 1 << 31;
const RELEASING: u64 = 1 << 30;
const HOLD: u64 = 1 << 29;
/// Free, in the held queue (its lease was freed with a hold not yet ended).
const HELD: u64 = 1 << 28;
/// Taken by `reserve`: set by the reserver's mark, gone when its lease ends.
const RESERVED: u64 = 1 << 27;
/// The block's entry is in its free list but is not a free entry.
const PHANTOM: u64 = 1 << 26;
const READERS: u64 = PHANTOM - 1;

fn generation(state: u64) -> u32 {
    (state >> 32) as u32
}

fn free_state(generation: u32) -> u64 {
    u64::from(generation) << 32
}

/// The free state a release leaves: the next generation, `HELD` with a
/// hold, and the phantom of a reserved block whose entry is still listed.
fn released(state: u64, hold: bool) -> u64 {
    let next = free_state(generation(state).wrapping_add(1)) | state & PHANTOM;
    if hold {
        next | HELD
    } else {
        next
    }
}

/// The outcome of [`ConnectionBlock::release`].
#[derive(Debug, PartialEq, Eq)]
pub enum Release<T> {
    /// The handle's generation does not name a live lease of this block.
    NotLive,
    /// Released; the caller must return the block to the free list (or hold it).
    Done(T),
    /// Released, without a hold, a reserved block whose phantom may still be
    /// listed: the caller returns it by [`settle`](ConnectionBlock::settle).
    Listed(T),
    /// Marked releasing; the last reader returns (or holds) the block.
    Deferred,
}

/// A release a reader completed ([`ConnectionBlock::read`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Completed<T> {
    pub data: T,
    /// The free had a hold: the block goes to the held queue, not back.
    pub hold: bool,
    /// (Without a hold) a reserved block whose phantom may still be listed.
    pub listed: bool,
}

/// What a reserver's mark ([`ConnectionBlock::mark`]) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Marked `RESERVED | PHANTOM`: the reserver owns the block unless a
    /// take that popped it before the mark stores `LIVE` over it.
    Marked,
    Live,
    Held,
    /// A release is returning the block right now: ask again.
    Busy,
}

/// Who has a marked block, as the reserver learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still marked, its phantom listed or not yet known to be.
    Marked,
    /// A take popped the phantom and discarded it: the reserver's.
    Discarded,
    /// A take that had popped the block before the mark made it live.
    Lost,
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

    /// A block as a snapshot restores it: at `generation`, live holding
    /// `data`, held, or free; `listed`: its entry is in its subpool's free
    /// list (for a live or held block, a reserved block's phantom).
    pub fn restored(
        ip_slot: u32,
        port: u16,
        generation: u32,
        standing: Standing,
        listed: bool,
        data: T,
    ) -> Self {
        let phantom = if listed { PHANTOM } else { 0 };
        let state = match standing {
            Standing::Free => free_state(generation),
            Standing::Live => {
                free_state(generation) | LIVE | phantom | if listed { RESERVED } else { 0 }
            }
            Standing::Held => free_state(generation) | HELD | phantom,
        };
        ConnectionBlock {
            state: AtomicU64::new(state),
            ip_slot,
            port,
            data: DataCell::new(data),
        }
    }
}

impl<T> ConnectionBlock<T> {
    /// Bring the block's state into the caches, for a take expected to
    /// come (`prefetch.rs`: a hint).
    #[inline(always)]
    pub fn prefetch(&self) {
        prefetch(std::ptr::from_ref(&self.state));
    }

    /// The block's generation and whether it is free, live or held, for a
    /// snapshot; `None` while it is between states (a release waiting for
    /// its lookups, a reservation being made: only under concurrency).
    pub fn standing(&self) -> Option<(u32, Standing)> {
        let state = self.state.load(Ordering::Acquire);
        let standing = if state & RELEASING != 0 {
            return None;
        } else if state & LIVE != 0 {
            Standing::Live
        } else if state & HELD != 0 {
            Standing::Held
        } else if state & (RESERVED | PHANTOM) != 0 {
            return None; // marked by a reserver that has not made it live yet
        } else {
            Standing::Free
        };
        Some((generation(state), standing))
    }
}

impl<T: Default> ConnectionBlock<T> {
    /// The current generation (a snapshot).
    pub fn generation(&self) -> u32 {
        generation(self.state.load(Ordering::Relaxed))
    }

    /// Whether a live lease of `generation` holds the block (a snapshot).
    pub fn is_live(&self, generation_: u32) -> bool {
        let state = self.state.load(Ordering::Acquire);
        generation(state) == generation_ && state & (LIVE | RELEASING) == LIVE
    }

    /// Make the popped block live with `data` (after running `before`, the
    /// caller's own writes to publish with it); returns its generation, or
    /// `Err(data)` when its entry was a phantom, which this discards (the
    /// caller takes again; `before` does not run).
    ///
    /// The state is loaded with `Acquire`: a phantom that became a free entry
    /// where it stands was published by the [`settle`](Self::settle) CAS,
    /// after its old data was taken.
    ///
    /// # Safety
    /// The caller must own the block's entry: it popped it from the free
    /// list after a reservation, so no other take has it.
    #[inline]
    pub(crate) unsafe fn occupy(&self, data: T, before: impl FnOnce()) -> Result<u32, T> {
        let mut state = self.state.load(Ordering::Acquire);
        if state & PHANTOM != 0 {
            match self.discard(state) {
                None => return Err(data),
                Some(free) => state = free,
            }
        }
        debug_assert_eq!(
            state & (LIVE | RELEASING | HELD | RESERVED | PHANTOM | READERS),
            0
        );
        // SAFETY: the caller owns the block (see the contract above); a
        // reserver's mark on it is overwritten here and the reserver sees
        // it lost (`Verdict::Lost`) before it touches `data`.
        self.data.with_mut(|cell| unsafe { *cell = data });
        before();
        self.publish_live(state | LIVE);
        Ok(generation(state))
    }

    /// A take's `LIVE` store. Under loom a swap: loom orders a plain store
    /// and a racing RMW on the same word (a reserver's mark) only by
    /// causality, and so explores the RMW reading past the store and the
    /// store then lost for good, which the memory model forbids (one
    /// modification order per atomic, an RMW reads its latest value). The
    /// swap writes what the store writes; what it reads is ignored.
    #[inline]
    fn publish_live(&self, state: u64) {
        #[cfg(not(loom))]
        self.state.store(state, Ordering::Release);
        #[cfg(loom)]
        self.state.swap(state, Ordering::Release);
    }

    /// A store to a word no other thread writes now (`settle` of a held
    /// block): under loom a swap, as [`publish_live`](Self::publish_live),
    /// since loom would let a reserver's `fetch_or(0)` read past it.
    #[inline]
    fn store_alone(&self, state: u64) {
        #[cfg(not(loom))]
        self.state.store(state, Ordering::Release);
        #[cfg(loom)]
        self.state.swap(state, Ordering::Release);
    }

    /// A take popped a phantom: clear `PHANTOM` (`None`: discarded), unless
    /// a release made it a free entry first (`Some`: the free state, ours).
    #[cold]
    fn discard(&self, mut state: u64) -> Option<u64> {
        loop {
            if state & PHANTOM == 0 {
                return Some(state);
            }
            match self.state.compare_exchange_weak(
                state,
                state & !PHANTOM,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return None,
                Err(seen) => state = seen,
            }
        }
    }

    /// Return a released block: clear `HELD` (a hold that ended) and
    /// `PHANTOM`; `true` when its phantom was still listed (it is now a free
    /// entry where it stands: count it back, do not push it), `false` when a
    /// take discarded it (push it). `Release`: publishes the data taken
    /// before, to the take that finds the entry free.
    ///
    /// A held block without a phantom (a hold's end, the common case) is
    /// settled by a plain store: nothing else writes its word (a mark
    /// refuses `HELD`, reads and releases need `LIVE`, a discard needs
    /// `PHANTOM`, and no take can pop it: it is in no free list), so no
    /// RMW is needed. Its push publishes it after.
    pub fn settle(&self) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        if state & (HELD | PHANTOM) == HELD {
            self.store_alone(state & !HELD);
            return false;
        }
        loop {
            let next = state & !(HELD | PHANTOM);
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return state & PHANTOM != 0,
                Err(seen) => state = seen,
            }
        }
    }

    /// The state, read by an RMW that changes nothing: the latest value in
    /// the word's order, for the reserver's waits (a plain load would do on
    /// hardware; loom lets a load in a wait loop read an old value forever).
    fn latest(&self) -> u64 {
        self.state.fetch_or(0, Ordering::AcqRel)
    }

    /// What [`mark`](Self::mark) would find now, without marking
    /// (`Marked`: a plain free block).
    pub fn mark_check(&self) -> Mark {
        let state = self.latest();
        if state & LIVE != 0 {
            Mark::Live
        } else if state & HELD != 0 {
            Mark::Held
        } else if state & (RESERVED | PHANTOM) != 0 {
            Mark::Busy
        } else {
            Mark::Marked
        }
    }

    /// `reserve`: mark a plain free block `RESERVED | PHANTOM`.
    pub fn mark(&self) -> Mark {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & LIVE != 0 {
                return Mark::Live;
            }
            if state & HELD != 0 {
                return Mark::Held;
            }
            if state & (RESERVED | PHANTOM) != 0 {
                return Mark::Busy;
            }
            match self.state.compare_exchange_weak(
                state,
                state | RESERVED | PHANTOM,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Mark::Marked,
                Err(seen) => state = seen,
            }
        }
    }

    /// Who has a block this thread marked (`Acquire`: a take's store of
    /// `LIVE` over the mark, or its discard).
    pub fn verdict(&self) -> Verdict {
        let state = self.latest();
        if state & RESERVED == 0 {
            Verdict::Lost
        } else if state & PHANTOM == 0 {
            Verdict::Discarded
        } else {
            Verdict::Marked
        }
    }

    /// Make a block this thread marked and owns live with `data`; returns
    /// its generation.
    ///
    /// # Safety
    /// The caller marked the block and learnt it owns it: its phantom was
    /// listed after the mark (`FreeList::listed`) or discarded
    /// (`Verdict::Discarded`), so no take will write `data`.
    pub(crate) unsafe fn occupy_reserved(&self, data: T) -> u32 {
        // SAFETY: the caller owns the block (see the contract above).
        self.data.with_mut(|cell| unsafe { *cell = data });
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            debug_assert_eq!(state & (LIVE | RESERVED), RESERVED);
            // A take may discard the phantom meanwhile: keep its bit as it is.
            match self.state.compare_exchange_weak(
                state,
                state | LIVE,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return generation(state),
                Err(seen) => state = seen,
            }
        }
    }

    /// Free the lease of `generation`; `hold` marks a deferred release as
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
                released(state, hold)
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
                // to free, and it is on no free list yet (or only as a
                // phantom, which no take uses).
                Ok(_) if done => {
                    let data = unsafe { self.take_data() };
                    return if state & PHANTOM != 0 && !hold {
                        Release::Listed(data)
                    } else {
                        Release::Done(data)
                    };
                }
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
                released(state, state & HOLD != 0)
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
                    let listed = state & PHANTOM != 0 && !hold;
                    let completed = Completed { data, hold, listed };
                    return Some((result, Some(completed)));
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

    /// A reserved block: its phantom is discarded by the take that pops it,
    /// or (its lease ended first) settles into a free entry.
    #[test]
    fn a_reserved_blocks_phantom_is_discarded_or_settles() {
        let block: ConnectionBlock<u32> = ConnectionBlock::new(0, 2, 3);
        assert_eq!(block.mark(), Mark::Marked);
        assert_eq!(block.mark(), Mark::Busy);
        assert_eq!(block.verdict(), Verdict::Marked);
        // SAFETY: marked by this test, no take has it.
        assert_eq!(unsafe { block.occupy_reserved(7) }, 3);
        assert_eq!(block.mark(), Mark::Live);
        assert!(block.is_live(3));
        // Its lease ends while the phantom is listed: settled in place.
        assert_eq!(block.release(3, false), Release::Listed(7));
        assert!(block.settle());
        // Marked again; a take pops the phantom and discards it.
        assert_eq!(block.mark(), Mark::Marked);
        // SAFETY: the take owns the entry it popped.
        assert_eq!(unsafe { block.occupy(9, || ()) }, Err(9));
        assert_eq!(block.verdict(), Verdict::Discarded);
        // SAFETY: the reserver owns the discarded block.
        assert_eq!(unsafe { block.occupy_reserved(8) }, 4);
        assert_eq!(block.release(4, false), Release::Done(8));
        assert!(!block.settle());
        // A take that popped the block before a mark stores over it.
        assert_eq!(block.mark(), Mark::Marked);
        block.state.store(free_state(5) | LIVE, Ordering::Release);
        assert_eq!(block.verdict(), Verdict::Lost);
    }

    #[test]
    fn a_held_block_cannot_be_marked_and_settles_at_its_hold_end() {
        let block: ConnectionBlock<u32> = ConnectionBlock::new(0, 2, 0);
        assert_eq!(block.mark(), Mark::Marked);
        // SAFETY: marked by this test, no take has it.
        unsafe { block.occupy_reserved(1) };
        assert_eq!(block.release(0, true), Release::Done(1));
        assert_eq!(block.mark(), Mark::Held);
        assert!(block.settle(), "its phantom was listed all along");
        assert_eq!(block.mark(), Mark::Marked);
    }

    #[test]
    fn occupy_release_bumps_generation() {
        let block: ConnectionBlock<u32> = ConnectionBlock::new(1, 2, 5);
        // SAFETY: the block is fresh and owned by this test.
        let generation_ = unsafe { block.occupy(9, || ()) }.unwrap();
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
            assert_eq!(unsafe { block.occupy((), || ()) }, Ok(generation_));
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
        unsafe { block.occupy(3, || ()) }.unwrap();
        let outcome = block.read(|generation_, data| {
            assert_eq!(block.release(generation_, false), Release::Deferred);
            assert_eq!(block.release(generation_, false), Release::NotLive);
            *data
        });
        let completed = Completed {
            data: 3,
            hold: false,
            listed: false,
        };
        assert_eq!(outcome, Some((3, Some(completed))));
        assert_eq!(block.generation(), 1);
        assert!(!block.is_live(0));
    }

    #[test]
    fn a_reader_completing_a_held_release_is_told_so() {
        let block: ConnectionBlock<u32> = ConnectionBlock::new(1, 2, 0);
        // SAFETY: owned by this test.
        unsafe { block.occupy(4, || ()) }.unwrap();
        let outcome = block.read(|generation_, _| {
            assert_eq!(block.release(generation_, true), Release::Deferred);
        });
        let completed = Completed {
            data: 4,
            hold: true,
            listed: false,
        };
        assert_eq!(outcome, Some(((), Some(completed))));
        // The hold ends (no phantom: pushed), and the block is reused: a
        // later release without a hold is not marked.
        assert!(!block.settle());
        // SAFETY: free again, owned by this test.
        unsafe { block.occupy(5, || ()) }.unwrap();
        let outcome = block.read(|generation_, _| block.release(generation_, false));
        let (released, completed) = outcome.unwrap();
        assert_eq!(released, Release::Deferred);
        assert!(!completed.unwrap().hold);
    }
}

#[cfg(all(loom, test))]
mod loom;
