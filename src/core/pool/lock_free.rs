//! The pool's lock-free side: allocate, free, their batches, and lookup.
//!
//! None of these takes a lock, but for the random order's array (a short
//! lock per take) and the held queue (a free with a hold; an allocation
//! when a hold is due). Growth and deletion that they make due are the
//! writer side's (`writer.rs`), which they only try: a busy writer lock
//! means another thread is creating or deleting a subpool, and the work is
//! skipped, never waited for (the next allocation or emptying free checks
//! again).
//!
//! Each public call reads the pool's clock where the reference model does
//! (`natpool/reference/policy.py`); the `*_at` and `*_until` forms take the
//! time from their caller (the Python binding reads a Python clock itself).

use std::net::IpAddr;

use crate::core::block::{Completed, Release};
use crate::core::epoch;
use crate::core::error::Error;
use crate::core::free_list::{At, FreeList, Reserve, CHAIN};
use crate::core::handle::Handle;
use crate::core::held::{Due, DUE_CHUNK};
use crate::core::policy::check_hold;
use crate::core::pool::{Ended, Lease, Pool, Taken};
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, Ordering};

impl<T: Default + Send + Sync> Pool<T> {
    /// Lease a free address holding `data`. [`Error::Exhausted`] only when
    /// all `capacity` addresses are leased or held. Reads the clock if any
    /// block is held, and first releases the holds that have ended.
    pub fn allocate(&self, data: T) -> Result<Lease, Error> {
        let now = self.now_if_held()?;
        self.allocate_at(data, now)
    }

    /// [`allocate`](Self::allocate) at time `now` (`None`: the caller saw
    /// nothing held and did not read the clock).
    pub(crate) fn allocate_at(&self, data: T, now: Option<f64>) -> Result<Lease, Error> {
        self.release_due(now);
        self.fence_if_due();
        let mut left = 0;
        let taken = self.take_block(data, now, None, &mut left)?;
        // The pool has at least the `left` free blocks of the subpool it
        // took from: above the threshold, the rule is silent (no sum read).
        if left <= self.config.grow_threshold() {
            self.grow_if_below_threshold();
        }
        Ok(taken.lease())
    }

    /// Return the held blocks whose hold ended by `now`, earliest first, as
    /// frees without a hold would (`None`: nothing held, the clock unread).
    /// Inline: an allocation with nothing held pays one test, not a call
    /// into the release's stack frame.
    #[inline(always)]
    pub(super) fn release_due(&self, now: Option<f64>) {
        if let Some(now) = now {
            self.release_due_at(now);
        }
    }

    fn release_due_at(&self, now: f64) {
        self.note_time(now);
        if !self.held.may_be_due(now) {
            return;
        }
        // Pinned: the held blocks' subpools are loaded from their slots (a
        // subpool with a held block is never deleted, see `held.rs`). In
        // chunks on the stack: no allocation per call.
        epoch::pin(|guard| {
            let subpool = |id: u32| {
                self.slots
                    .get(id as usize)
                    .and_then(|slot| slot.load(guard))
                    .expect("a subpool with a held block is not deleted")
            };
            let mut due: [Due<'_, T>; DUE_CHUNK] = [None; DUE_CHUNK];
            loop {
                let moved = self.held.due(now, &mut due, subpool);
                for &(subpool, offset) in due[..moved].iter().flatten() {
                    self.release_held(subpool, offset, now);
                }
                if moved < DUE_CHUNK {
                    return;
                }
            }
        });
    }

    /// Return a held block whose hold ended (at `now`).
    fn release_held(&self, subpool: &Arc<Subpool<T>>, offset: u32, now: f64) {
        // A reserved block's phantom may still be listed: it settles into a
        // free entry where it stands, else the block is pushed.
        if subpool.blocks[offset as usize].settle() {
            self.return_blocks(subpool, &[], 1, true);
        } else {
            self.return_blocks(subpool, &[offset], 0, true);
        }
        if self.tracks_clients() {
            self.clients_ended(subpool, &[offset], Ended::HoldOver, Some(now));
        }
    }

    /// A block from the lowest-id shared subpool with a free block, for
    /// `client` (recorded in the block with client settings); `left`: the
    /// free blocks its subpool had left (see [`with_reserved`](Self::with_reserved)).
    pub(super) fn take_block(
        &self,
        data: T,
        now: Option<f64>,
        client: Option<u64>,
        left: &mut u64,
    ) -> Result<Taken, Error> {
        self.with_reserved(1, now, left, |subpool, _, at| {
            self.take_reserved(subpool, at, data, client)
        })
    }

    /// Take the block a reservation granted in `subpool` (from `at`), in
    /// the list's order, and make it live: a phantom met on the way (a block `reserve`
    /// took) is discarded and the take repeated, by the same rule.
    #[inline]
    pub(super) fn take_reserved(
        &self,
        subpool: &Subpool<T>,
        at: At,
        data: T,
        client: Option<u64>,
    ) -> Taken {
        let mut offset = subpool.free.pop(at, &self.rng);
        let mut data = data;
        let generation = loop {
            match Self::occupy(subpool, offset, data, client) {
                Ok(generation) => break generation,
                Err(back) => {
                    data = back;
                    offset = subpool.free.pop_more(&self.rng);
                }
            }
        };
        Self::taken(subpool, offset, generation)
    }

    /// Take up to `want` (at most `CHAIN`) blocks from the lowest-id subpool
    /// with a free block, in the order single allocations would take them.
    fn take_blocks(
        &self,
        want: u64,
        data: &mut impl FnMut() -> T,
        out: &mut Vec<Lease>,
        offsets: &mut Vec<u32>,
        now: Option<f64>,
    ) -> Result<(), Error> {
        self.with_reserved(want, now, &mut 0, |subpool, count, at| {
            offsets.clear();
            subpool.free.pop_many(at, count, offsets, &self.rng);
            let mut spare = None;
            for i in 0.. {
                let Some(&offset) = offsets.get(i) else { break };
                match Self::occupy(
                    subpool,
                    offset,
                    spare.take().unwrap_or_else(&mut *data),
                    None,
                ) {
                    Ok(generation) => out.push(Self::taken(subpool, offset, generation).lease()),
                    Err(back) => {
                        // A phantom: discarded; one more take, in order.
                        spare = Some(back);
                        offsets.push(subpool.free.pop_more(&self.rng));
                    }
                }
            }
        })
    }

    /// Find the lowest-id subpool with a free block, reserve up to `want`
    /// blocks in it, count them in `taken`, and run `take` on it with the
    /// count reserved and where its takes start; its result, with the free
    /// blocks the subpool had left after the reservation in `left_out`. Creates a subpool, or reports exhaustion (at
    /// `now`, for its message), when no subpool has a free block.
    ///
    /// The blocks are counted before `take` publishes them as live: a lease
    /// can be looked up and freed by another thread as soon as it is
    /// published, and its free must never find the count without it.
    #[inline(always)]
    fn with_reserved<R>(
        &self,
        want: u64,
        now: Option<f64>,
        left_out: &mut u64,
        take: impl FnOnce(&Subpool<T>, u64, At) -> R,
    ) -> Result<R, Error> {
        /// One attempt of the loop below.
        enum Step<R> {
            Done(R),
            Refresh,
            Lost,
        }
        let mut take = Some(take);
        // Exact unless the call overlaps another: a call that loses its
        // reservation CAS, or a thread holding a home whose call overlaps
        // another allocation, takes from its home subpool (`home.rs`). One
        // call site of `take`, so that it is inlined.
        // A home reservation names its subpool by id: it was made in a
        // subpool its slot held (a new subpool enters the interval list,
        // where a home's scan finds it, only after its slot), and the
        // reservation keeps it published (deletion closes only a list whose
        // blocks are all free and unreserved), so the slot still holds it.
        let visit = self.home_visit();
        let mut home = if visit.overlaps {
            self.home_reserve(want, visit.home, None, visit.sticky)
        } else {
            None
        };
        let mut exact = true;
        loop {
            let id = if let Some((id, ..)) = home {
                id
            } else {
                let Some(id) = self.availability.first() else {
                    self.grow_when_empty(now)?;
                    continue;
                };
                id
            };
            // Pinned: the subpool is not dropped while this uses it, even if
            // another thread deletes it meanwhile.
            let step = epoch::pin(|guard| {
                let Some(subpool) = self
                    .slots
                    .get(id as usize)
                    .and_then(|slot| slot.load(guard))
                else {
                    debug_assert!(home.is_none(), "a reservation keeps its subpool");
                    return Step::Refresh;
                };
                let (count, at, left) = match home {
                    Some((_, count, at, left)) => (count, at, left),
                    None => {
                        let reserved = if exact {
                            subpool.free.try_reserve_up_to(want, &self.rng)
                        } else {
                            Some(subpool.free.reserve_up_to(want, &self.rng))
                        };
                        match reserved {
                            Some(Reserve::Taken {
                                count,
                                last,
                                left,
                                at,
                            }) => {
                                self.reserved(subpool, count, last);
                                if exact && visit.registered() && !visit.overlaps {
                                    self.home_calm();
                                }
                                (count, at, left)
                            }
                            Some(Reserve::Empty | Reserve::Closed) => return Step::Refresh,
                            None => return Step::Lost,
                        }
                    }
                };
                let take = take.take().expect("taken once");
                *left_out = left;
                Step::Done(take(subpool, count, at))
            });
            match step {
                Step::Done(result) => return Ok(result),
                Step::Refresh => self.refresh(id),
                Step::Lost => {
                    exact = false;
                    home = self.home_reserve(want, None, Some(id), false);
                }
            }
        }
    }

    /// Count `count` blocks just reserved in `subpool` (`last`: it has no
    /// free block left), before they are published.
    #[inline]
    pub(super) fn reserved(&self, subpool: &Subpool<T>, count: u64, last: bool) {
        self.tally.took(count);
        if subpool.owner.is_some() {
            self.client_taken.fetch_add(count, Ordering::AcqRel);
        } else if last {
            self.refresh(subpool.id);
        }
    }

    /// Make the popped block `offset` live with `data`, for `client`;
    /// its generation, or `Err(data)` when it was a phantom (discarded).
    #[inline]
    fn occupy(subpool: &Subpool<T>, offset: u32, data: T, client: Option<u64>) -> Result<u32, T> {
        let block = &subpool.blocks[offset as usize];
        // SAFETY: `offset` was just popped from the free list after a
        // reservation, so this thread alone owns the entry.
        unsafe { block.occupy(data, || subpool.set_client(offset, client)) }
    }

    /// The lease of block `offset`, live at `generation`, as the take path
    /// hands it up ([`Taken::lease`] makes it a `Lease`).
    #[inline]
    fn taken(subpool: &Subpool<T>, offset: u32, generation: u32) -> Taken {
        let block = &subpool.blocks[offset as usize];
        Taken::new(
            Handle::new(generation, subpool.id, offset),
            subpool.ips[block.ip_slot as usize],
            block.port,
        )
    }

    /// Re-derive the availability bit of `id` from its subpool's count
    /// (shared subpools only: a port block is never in the map).
    pub(super) fn refresh(&self, id: u32) {
        self.availability.clear(id);
        let has_free = self.slots.get(id as usize).is_some_and(|slot| {
            epoch::pin(|guard| {
                slot.load(guard)
                    .is_some_and(|s| s.owner.is_none() && s.free.has_free())
            })
        });
        if has_free {
            self.availability.set(id);
        }
    }

    /// Free the lease `handle`, holding its block for the pool's
    /// `hold_down`; returns its data when this call completed the release
    /// (`None` when a concurrent lookup will complete it).
    pub fn free(&self, handle: Handle) -> Result<Option<T>, Error> {
        // The configuration's hold was checked when it was built.
        let seconds = self.config.hold_down();
        let now = self.now_for_free(seconds)?;
        self.free_at(handle, seconds, now)
    }

    /// Free the lease `handle`, holding its block for `seconds` (finite,
    /// `>= 0`; 0: no hold) before any allocation may return it. Reads the
    /// clock when `seconds > 0` (or with port blocks, see
    /// [`now_for_free`](Self::now_for_free)).
    pub fn free_with_hold(&self, handle: Handle, seconds: f64) -> Result<Option<T>, Error> {
        let seconds = check_hold(seconds)?;
        let now = self.now_for_free(seconds)?;
        self.free_at(handle, seconds, now)
    }

    /// The clock's time for a free call with a hold of `seconds`: read when
    /// the hold is above 0 or the pool has port blocks (a block may be
    /// released), as the reference model specifies; else `None`.
    pub(crate) fn now_for_free(&self, seconds: f64) -> Result<Option<f64>, Error> {
        if seconds > 0.0 || self.config.client_block().is_some() {
            self.clock.now().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Free the lease `handle` at time `now` (read by the caller as
    /// [`now_for_free`](Self::now_for_free) says), holding its block for
    /// `seconds` after `now`.
    pub(crate) fn free_at(
        &self,
        handle: Handle,
        seconds: f64,
        now: Option<f64>,
    ) -> Result<Option<T>, Error> {
        self.free_tidy(handle, seconds, now, true)
    }

    /// [`free_at`](Self::free_at); `tidy`: apply the deletion rule if the
    /// subpool empties (a batch's rollback in a cluster does not).
    pub(super) fn free_tidy(
        &self,
        handle: Handle,
        seconds: f64,
        now: Option<f64>,
        tidy: bool,
    ) -> Result<Option<T>, Error> {
        let end = hold_end(seconds, now);
        let not_live = || self.not_live(handle);
        let (generation, id, offset) = handle.parts().ok_or_else(not_live)?;
        let slot = self.slots.get(id as usize).ok_or_else(not_live)?;
        epoch::pin(|guard| {
            let subpool = slot.load(guard).ok_or_else(not_live)?;
            if offset as usize >= subpool.blocks.len() {
                return Err(not_live());
            }
            match self.release(subpool, offset, generation, end) {
                Release::NotLive => Err(not_live()),
                Release::Deferred => Ok(None),
                Release::Done(data) => {
                    self.ended(subpool, &[offset], end.is_some(), now, tidy);
                    Ok(Some(data))
                }
                Release::Listed(data) => {
                    self.ended_listed(subpool, offset, now, tidy);
                    Ok(Some(data))
                }
            }
        })
    }

    /// Leases of `subpool` ended (their blocks released): return the blocks
    /// unless `held`, uncount the leases, and update their clients.
    #[inline]
    fn ended(
        &self,
        subpool: &Arc<Subpool<T>>,
        offsets: &[u32],
        held: bool,
        now: Option<f64>,
        tidy: bool,
    ) {
        if !held {
            self.return_blocks(subpool, offsets, 0, tidy);
        }
        self.tally.ended(offsets.len() as u64);
        if self.tracks_clients() {
            let how = if held { Ended::Held } else { Ended::Freed };
            self.clients_ended(subpool, offsets, how, now);
        }
    }

    /// The lease of a reserved block ended without a hold while its
    /// phantom may be listed: it settles into a free entry where it stands
    /// (counted back, not pushed), or, a take having discarded it, is pushed.
    #[cold]
    fn ended_listed(&self, subpool: &Arc<Subpool<T>>, offset: u32, now: Option<f64>, tidy: bool) {
        if !subpool.blocks[offset as usize].settle() {
            self.ended(subpool, &[offset], false, now, tidy);
            return;
        }
        self.return_blocks(subpool, &[], 1, tidy);
        self.tally.ended(1);
        if self.tracks_clients() {
            self.clients_ended(subpool, &[offset], Ended::Freed, now);
        }
    }

    /// End the lease `generation` of block `offset`: without `end`, as the
    /// block's release; with it, under the held queue's lock, queueing the
    /// block (`Done`) or parking its end for the last reader (`Deferred`).
    #[inline]
    fn release(
        &self,
        subpool: &Arc<Subpool<T>>,
        offset: u32,
        generation: u32,
        end: Option<f64>,
    ) -> Release<T> {
        match end {
            None => subpool.blocks[offset as usize].release(generation, false),
            Some(end) => self.held.release(subpool, offset, generation, end),
        }
    }

    /// Put blocks of one subpool back (in the order given, as single frees
    /// would), uncount them from `taken`, and (`tidy`) apply the deletion
    /// rule to a shared subpool (a port block's release is `clients_ended`'s).
    /// The callers that end leases lower `live` themselves; a hold's end does
    /// not. A fenced subpool's list is closed: its count carries the closed
    /// bit, so it is never marked available, and it goes when it is full
    /// (no lease live, no block held).
    #[inline]
    pub(super) fn return_blocks(
        &self,
        subpool: &Arc<Subpool<T>>,
        offsets: &[u32],
        in_place: u64,
        tidy: bool,
    ) {
        let count = offsets.len() as u64 + in_place;
        let (available, next) = subpool.free.give_back_hinted(offsets, in_place, &self.rng);
        if let Some(next) = next {
            subpool.blocks[next as usize].prefetch();
        }
        if subpool.owner.is_some() {
            self.client_taken.fetch_sub(count, Ordering::AcqRel);
            self.tally.returned(count);
            return;
        }
        if available == count {
            self.availability.set(subpool.id); // the count left zero
        }
        self.tally.returned(count);
        if !tidy {
            return;
        }
        let total = u64::from(subpool.len());
        if available == total {
            self.delete_if_idle(subpool);
        } else if FreeList::shut_and_full(available, total) {
            // The bits this push saw say why (not the subpool's flags, which
            // this thread may not see yet): closed by a fence, or drained.
            if FreeList::is_closed(available) {
                self.fenced_subpool_emptied(subpool);
            } else {
                self.drained_subpool_emptied(subpool);
            }
        }
    }

    /// Lease `n` addresses, all or nothing; `data` makes each lease's data.
    /// The leases, growth and everything else are exactly those of `n`
    /// single allocations; the blocks are taken in chains of up to `CHAIN`
    /// from one subpool, with one reservation and one pop CAS per chain.
    pub fn allocate_many(&self, n: u64, data: impl FnMut() -> T) -> Result<Vec<Lease>, Error> {
        let now = self.now_if_held()?;
        self.allocate_many_at(n, data, now)
    }

    /// [`allocate_many`](Self::allocate_many) at time `now` (see
    /// [`allocate_at`](Self::allocate_at)).
    /// Pinned once for the whole batch: the chains' slot loads nest (a
    /// nested pin is one load of the thread's own pin).
    pub(crate) fn allocate_many_at(
        &self,
        n: u64,
        data: impl FnMut() -> T,
        now: Option<f64>,
    ) -> Result<Vec<Lease>, Error> {
        epoch::pin(|_| self.allocate_many_pinned(n, data, now))
    }

    fn allocate_many_pinned(
        &self,
        n: u64,
        mut data: impl FnMut() -> T,
        now: Option<f64>,
    ) -> Result<Vec<Lease>, Error> {
        self.release_due(now);
        // The summed counts first (O(1)), the free lists to refuse.
        if n > self.shared_room() && n > self.shared_room_listed() {
            return Err(self.exhausted(n, now));
        }
        let mut leases = Vec::new();
        leases
            .try_reserve_exact(n as usize)
            .map_err(|_| Error::OutOfMemory(format!("cannot hold a batch of {n} leases")))?;
        let mut offsets = Vec::with_capacity(CHAIN as usize);
        while (leases.len() as u64) < n {
            let want = (n - leases.len() as u64)
                .min(CHAIN)
                .min(self.allocations_before_growth());
            self.fence_if_due();
            if let Err(error) = self.take_blocks(want, &mut data, &mut leases, &mut offsets, now) {
                // Another thread took the rest (or, in a cluster, the cluster
                // is full or the store failed): give back what we took, last
                // first, without a hold (these leases were never handed out).
                // In a cluster the subpools this batch claimed stay, empty,
                // for the next allocations (the reference model's rule).
                let tidy = !self.has_store();
                for lease in leases.iter().rev() {
                    let _ = self.free_tidy(lease.handle, 0.0, None, tidy);
                }
                return Err(error);
            }
            self.grow_if_below_threshold();
        }
        Ok(leases)
    }

    /// Whether `handle` names a live lease now (a snapshot).
    pub fn is_live(&self, handle: Handle) -> bool {
        let Some((generation, id, offset)) = handle.parts() else {
            return false;
        };
        let Some(slot) = self.slots.get(id as usize) else {
            return false;
        };
        epoch::pin(|guard| {
            slot.load(guard)
                .and_then(|subpool| subpool.blocks.get(offset as usize))
                .is_some_and(|block| block.is_live(generation))
        })
    }

    /// Free a batch, all or nothing against invalid input: if any handle is
    /// not live or appears twice, nothing is freed. (A lease that another
    /// thread frees between the check and the free is reported and the rest
    /// are still freed.) The data of the released blocks is appended to
    /// `released`, on success and on that error alike, so that the caller
    /// decides where it is dropped. Each run of handles in one subpool is
    /// returned with one push. The blocks are held for the pool's
    /// `hold_down`.
    pub fn free_many(&self, handles: &[Handle], released: &mut Vec<T>) -> Result<(), Error> {
        self.free_many_with_hold(handles, self.config.hold_down(), released)
    }

    /// [`free_many`](Self::free_many), holding the blocks for `seconds`
    /// (one clock read for the batch, as for one free).
    pub fn free_many_with_hold(
        &self,
        handles: &[Handle],
        seconds: f64,
        released: &mut Vec<T>,
    ) -> Result<(), Error> {
        let seconds = check_hold(seconds)?;
        let now = self.now_for_free(seconds)?;
        self.free_many_at(handles, seconds, now, released)
    }

    /// [`free_many`](Self::free_many) at time `now`, holding the blocks for
    /// `seconds` after it (see [`free_at`](Self::free_at)).
    pub(crate) fn free_many_at(
        &self,
        handles: &[Handle],
        seconds: f64,
        now: Option<f64>,
        released: &mut Vec<T>,
    ) -> Result<(), Error> {
        // Pinned once for the batch: the runs' slot loads nest.
        epoch::pin(|_| {
            self.check_batch(handles)?;
            self.free_checked(handles, hold_end(seconds, now), now, released)
        })
    }

    /// The freeing part of [`free_many`](Self::free_many), after its check.
    fn free_checked(
        &self,
        handles: &[Handle],
        end: Option<f64>,
        now: Option<f64>,
        released: &mut Vec<T>,
    ) -> Result<(), Error> {
        released.reserve(handles.len());
        let mut offsets = Vec::new();
        let mut first_error = None;
        for run in handles.chunk_by(|a, b| subpool_of(a) == subpool_of(b)) {
            if let Err(error) = self.free_run(run, end, now, released, &mut offsets) {
                first_error = first_error.or(Some(error));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub(super) fn not_live(&self, handle: Handle) -> Error {
        Error::NotLive(format!(
            "handle {:#x} is not a live lease of pool {:?}",
            handle.0,
            self.config.name()
        ))
    }

    /// Every handle names a live lease, and no block twice (one slot load
    /// per run of handles in the same subpool).
    fn check_batch(&self, handles: &[Handle]) -> Result<(), Error> {
        let mut blocks = Vec::with_capacity(handles.len());
        for run in handles.chunk_by(|a, b| subpool_of(a) == subpool_of(b)) {
            let id = subpool_of(&run[0]).ok_or_else(|| self.not_live(run[0]))?;
            let slot = self.slots.get(id as usize);
            epoch::pin(|guard| {
                let subpool = slot.and_then(|slot| slot.load(guard));
                for handle in run {
                    let (generation, _, offset) =
                        handle.parts().expect("in a run of valid handles");
                    let live = subpool
                        .and_then(|s| s.blocks.get(offset as usize))
                        .is_some_and(|block| block.is_live(generation));
                    if !live {
                        return Err(self.not_live(*handle));
                    }
                    blocks.push(u64::from(id) << 32 | u64::from(offset));
                }
                Ok(())
            })?;
        }
        blocks.sort_unstable();
        if let Some(twice) = blocks.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::NotLive(format!(
                "the batch names the lease of subpool {} block {} twice",
                twice[0] >> 32,
                twice[0] as u32
            )));
        }
        Ok(())
    }

    /// Free a run of handles in one subpool (held until `end`, if given).
    fn free_run(
        &self,
        run: &[Handle],
        end: Option<f64>,
        now: Option<f64>,
        released: &mut Vec<T>,
        offsets: &mut Vec<u32>,
    ) -> Result<(), Error> {
        let id = subpool_of(&run[0]).ok_or_else(|| self.not_live(run[0]))?;
        let slot = self.slots.get(id as usize);
        epoch::pin(|guard| {
            let subpool = slot
                .and_then(|slot| slot.load(guard))
                .ok_or_else(|| self.not_live(run[0]))?;
            self.free_pinned_run(subpool, run, end, now, released, offsets)
        })
    }

    /// [`free_run`](Self::free_run) on its subpool, loaded pinned.
    fn free_pinned_run(
        &self,
        subpool: &Arc<Subpool<T>>,
        run: &[Handle],
        end: Option<f64>,
        now: Option<f64>,
        released: &mut Vec<T>,
        offsets: &mut Vec<u32>,
    ) -> Result<(), Error> {
        offsets.clear();
        let mut first_error = None;
        for handle in run {
            let (generation, _, offset) = handle.parts().expect("in a run of valid handles");
            let outcome = if (offset as usize) < subpool.blocks.len() {
                self.release(subpool, offset, generation, end)
            } else {
                Release::NotLive
            };
            match outcome {
                Release::NotLive => first_error = first_error.or(Some(self.not_live(*handle))),
                Release::Deferred => {}
                Release::Done(data) => {
                    released.push(data);
                    offsets.push(offset);
                }
                Release::Listed(data) => {
                    // Rare (a reserved lease): returned on its own.
                    released.push(data);
                    self.ended_listed(subpool, offset, now, true);
                }
            }
        }
        if !offsets.is_empty() {
            self.ended(subpool, offsets, end.is_some(), now, true);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Run `read` on the live lease at (ip, port) and its data, if any.
    /// `read` must not panic. Also returns data released by this call (when
    /// it was the last reader of a lease freed meanwhile), to be dropped by
    /// the caller. Such a lease may be one an [`allocate_many`](Self::allocate_many)
    /// that failed took and gave back: its leases are published as they are
    /// taken, so a lookup can see them, and the data then comes back here,
    /// not through the failed call.
    pub fn lookup_with<R>(
        &self,
        ip: impl Into<IpAddr>,
        port: u16,
        read: impl FnOnce(Lease, &T) -> R,
    ) -> (Option<R>, Option<T>) {
        let ip = ip.into();
        let Some(index) = self.config.index_of(ip, port) else {
            return (None, None);
        };
        let snapshot = self.intervals.load();
        let Some(subpool) = snapshot.owner(index) else {
            return (None, None);
        };
        let offset = (index - subpool.start) as u32;
        let block = &subpool.blocks[offset as usize];
        let id = subpool.id;
        match block.read(|generation, data| {
            read(
                Lease {
                    handle: Handle::new(generation, id, offset),
                    ip,
                    port,
                },
                data,
            )
        }) {
            None => (None, None),
            Some((result, None)) => (Some(result), None),
            Some((result, Some(Completed { data, hold, listed }))) => {
                // A lookup reads no clock: a port block this releases is
                // logged at the last time the pool saw.
                let now = Some(self.last_time());
                if hold {
                    self.held.complete_deferred(subpool, offset);
                    self.ended(subpool, &[offset], true, now, true);
                } else if listed {
                    self.ended_listed(subpool, offset, now, true);
                } else {
                    self.ended(subpool, &[offset], false, now, true);
                }
                (Some(result), Some(data))
            }
        }
    }
}

/// When a hold of `seconds` from `now` ends (`None`: no hold).
fn hold_end(seconds: f64, now: Option<f64>) -> Option<f64> {
    now.filter(|_| seconds > 0.0).map(|now| now + seconds)
}

/// The subpool id a handle names, or `None` for a value no handle has.
fn subpool_of(handle: &Handle) -> Option<u32> {
    handle.parts().map(|(_, id, _)| id)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::HashSet;
    use std::net::Ipv4Addr;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use crate::core::pool::test_hook::CreationHold;
    use crate::core::{Error, Handle, Pool, PoolSpec};

    /// Only a guard against a hang: the workers need milliseconds.
    const HANG_GUARD: Duration = Duration::from_secs(120);

    fn pool(ports: u16, initial: u32, subpool: u32, threshold: u64) -> Pool<u64> {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        Pool::new(
            PoolSpec::new("t", ip, ip)
                .ports(1000, 1000 + ports - 1)
                .initial_blocks(initial)
                .subpool_blocks(subpool)
                .grow_threshold(threshold)
                .build()
                .unwrap(),
        )
    }

    /// A lease freed by another thread between `free_many`'s check and its
    /// free is reported, and the data of the leases it did free is handed
    /// to the caller all the same (the binding must drop Python objects
    /// while attached, never inside the core).
    #[test]
    fn free_many_hands_back_released_data_on_its_error_path() {
        let pool = pool(8, 4, 4, 0);
        let leases: Vec<_> = (10..13).map(|d| pool.allocate(d).unwrap()).collect();
        let handles: Vec<Handle> = leases.iter().map(|l| l.handle).collect();
        pool.check_batch(&handles).unwrap();
        // The race, made deterministic: another thread's free lands now.
        assert_eq!(pool.free(handles[1]).unwrap(), Some(11));
        let mut released = Vec::new();
        let result = pool.free_checked(&handles, None, None, &mut released);
        assert!(matches!(result, Err(Error::NotLive(_))));
        assert_eq!(released, vec![10, 12]);
        assert!(pool.is_empty());
    }

    #[test]
    fn free_many_is_all_or_nothing_against_invalid_input() {
        let pool = pool(8, 4, 4, 0);
        let a = pool.allocate(1).unwrap();
        let b = pool.allocate(2).unwrap();
        let mut released = Vec::new();
        let twice = pool.free_many(&[a.handle, b.handle, a.handle], &mut released);
        assert!(matches!(twice, Err(Error::NotLive(_))));
        let stale = pool.free_many(&[a.handle, Handle(1 << 96)], &mut released);
        assert!(matches!(stale, Err(Error::NotLive(_))));
        assert!(released.is_empty());
        assert_eq!(pool.len(), 2);
        pool.free_many(&[b.handle, a.handle], &mut released)
            .unwrap();
        assert_eq!(released, vec![2, 1]);
        assert!(pool.is_empty());
    }

    /// With subpool creation held (the writer lock taken), allocation,
    /// lookup and free in existing subpools finish: threshold growth and
    /// idle-subpool deletion are skipped, not waited for. The workers never
    /// hold more leases together than the existing subpools have free
    /// blocks, so none of them ever needs the held creation.
    #[test]
    fn lock_free_paths_finish_while_creation_is_held() {
        // 64 addresses; subpool 0 has 8 blocks, later subpools 4; growth
        // when an allocation leaves 2 or fewer free blocks.
        let pool: Arc<Pool<u64>> = Arc::new(pool(64, 8, 4, 2));
        // 12 leases fill subpools 0 and 1; subpool 2 (4 free) exists.
        let mut subpool_zero: Vec<Handle> =
            (0..8).map(|i| pool.allocate(i).unwrap().handle).collect();
        let subpool_one: Vec<Handle> = (8..12).map(|i| pool.allocate(i).unwrap().handle).collect();
        assert_eq!(pool.stats().subpools, 3);

        // The creator's second allocation leaves 2 free blocks: it creates
        // subpool 3 and stops in the creation path, holding the writer lock.
        let hold = CreationHold::arm(&*pool);
        let creator = {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                let mut leases = Vec::new();
                while pool.stats().subpools < 4 {
                    leases.push(pool.allocate(100).unwrap().handle);
                }
                leases
            })
        };
        hold.wait_entered();
        // Growth is due again (1 free block left): skipped, not waited for.
        subpool_zero.push(pool.allocate(12).unwrap().handle);
        // Subpool 1 empties (deletion is due): skipped, not waited for.
        for handle in &subpool_one {
            assert!(pool.free(*handle).unwrap().is_some());
        }
        assert_eq!(pool.stats().free_blocks, 5);

        // Three workers, one lease each at a time (5 blocks are free):
        // allocate (growth due), look up and free (subpool 1 empties again
        // and again: deletion due).
        let (done, finished) = mpsc::channel();
        let workers: Vec<_> = (0..3u64)
            .map(|worker| {
                let pool = Arc::clone(&pool);
                let done = done.clone();
                thread::spawn(move || {
                    for round in 0..2_000u64 {
                        let data = worker << 32 | round;
                        let lease = pool.allocate(data).unwrap();
                        let (seen, _) = pool.lookup_with(lease.ip, lease.port, |l, d| (l, *d));
                        assert_eq!(seen, Some((lease, data)));
                        assert_eq!(pool.free(lease.handle).unwrap(), Some(data));
                    }
                    done.send(worker).unwrap();
                })
            })
            .collect();
        let mut finished_workers = HashSet::new();
        for _ in 0..3 {
            let worker = finished
                .recv_timeout(HANG_GUARD)
                .expect("a worker waited for the held subpool creation");
            finished_workers.insert(worker);
        }
        assert_eq!(finished_workers.len(), 3);
        for worker in workers {
            worker.join().unwrap();
        }
        // Still held: subpool 3 is not there, and the idle subpool 1 was kept.
        let ids: Vec<u32> = pool.subpools().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![0, 1, 2]);

        drop(hold);
        let mut held = subpool_zero;
        held.extend(creator.join().unwrap());
        assert_eq!(pool.stats().subpools, 4);
        assert_eq!(pool.len(), held.len() as u64);

        // The kept idle subpool is deleted the next time a free empties it.
        let lease = pool.allocate(7).unwrap();
        assert_eq!(lease.handle.parts().unwrap().1, 1);
        pool.free(lease.handle).unwrap();
        let ids: Vec<u32> = pool.subpools().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![0, 2, 3]);

        for handle in held {
            assert!(pool.free(handle).unwrap().is_some());
        }
        assert!(pool.is_empty());
    }
}
