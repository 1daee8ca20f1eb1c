//! The pool: the control block, the memory pool of subpools, and leases.
//!
//! The allocation order is the reference model's (`natpool/reference/pool.py`):
//! the lowest-id subpool with a free block, most recently freed block first;
//! growth when no block is free and after an allocation that leaves
//! `free_blocks <= grow_threshold`; deletion of a subpool whose last lease is
//! freed, unless fewer than `initial_blocks` blocks would remain.
//!
//! Allocation and freeing take no lock: they find a subpool through the
//! availability map and the slot table (both lock-free), reserve and pop (or
//! push) on its free list, and flip the block's state. Only subpool creation
//! and deletion take the writer lock; they never block the lock-free paths.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::core::availability::Availability;
use crate::core::block::Release;
use crate::core::config::Config;
use crate::core::error::Error;
use crate::core::free_list::{Reserve, CHAIN};
use crate::core::handle::Handle;
use crate::core::interval_list::{Interval, IntervalList};
use crate::core::segvec::SegVec;
use crate::core::subpool::Subpool;
use crate::core::sync::{
    yield_now, Arc, AtomicArc, AtomicU64, Mutex, MutexGuard, Ordering, TryLockError,
};

/// A live lease as the core reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub handle: Handle,
    pub ip: u32,
    pub port: u16,
}

/// A subpool as `subpools()` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubpoolInfo {
    pub id: u32,
    pub first: u64,
    pub blocks: u32,
    pub free: u64,
}

/// The pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub live: u64,
    pub free_blocks: u64,
    pub blocks: u64,
    pub subpools: u64,
    pub intervals: u64,
    pub free_addresses: u64,
    pub address_count: u64,
    pub capacity: u64,
}

/// State only subpool creation and deletion touch (under the writer lock).
struct Writer {
    /// MPA: whether the memory pool exists (the first subpool was created).
    created: bool,
    /// Ids freed by deleted subpools (lowest first), and the next fresh id.
    free_ids: BinaryHeap<Reverse<u32>>,
    next_id: u32,
    /// Per id: the generation the next subpool with that id starts at.
    generation_floor: Vec<u32>,
}

/// A client NAT address pool holding a `T` for each live lease.
pub struct Pool<T> {
    config: Config,
    live: AtomicU64,
    blocks: AtomicU64,
    slots: SegVec<AtomicArc<Subpool<T>>>,
    availability: Availability,
    intervals: IntervalList<T>,
    writer: Mutex<Writer>,
    /// Test-only: stops subpool creation on demand (see `creation_hold.rs`).
    #[cfg(all(test, not(loom)))]
    pub(crate) creation_hold: crate::core::creation_hold::Hold,
}

impl<T: Default + Send + Sync> Pool<T> {
    pub fn new(config: Config) -> Self {
        Pool {
            live: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            slots: SegVec::new(),
            availability: Availability::new(config.capacity.max(1)),
            intervals: IntervalList::new(config.address_count),
            writer: Mutex::new(Writer {
                created: false,
                free_ids: BinaryHeap::new(),
                next_id: 0,
                generation_floor: Vec::new(),
            }),
            config,
            #[cfg(all(test, not(loom)))]
            creation_hold: Default::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Live leases now.
    pub fn len(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while the lock was held leaves the writer state consistent
        // at every await-free step we take, so a poisoned lock is usable.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer lock if no other thread holds it. The lock-free paths use
    /// this for their optional writer work (threshold growth, deleting an
    /// idle subpool), so that they never wait for a creation or deletion.
    fn try_lock_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Lease a free address holding `data`.
    pub fn allocate(&self, data: T) -> Result<Lease, Error> {
        let lease = self.take_block(data)?;
        self.grow_if_below_threshold();
        Ok(lease)
    }

    fn take_block(&self, data: T) -> Result<Lease, Error> {
        self.with_reserved(1, |subpool, _| {
            let offset = subpool.free.pop();
            let lease = Self::occupy(subpool, offset, data);
            self.live.fetch_add(1, Ordering::AcqRel);
            lease
        })
    }

    /// Take up to `want` (at most `CHAIN`) blocks from the lowest-id subpool
    /// with a free block, in the order single allocations would take them.
    fn take_blocks(
        &self,
        want: u64,
        data: &mut impl FnMut() -> T,
        out: &mut Vec<Lease>,
        offsets: &mut Vec<u32>,
    ) -> Result<(), Error> {
        self.with_reserved(want, |subpool, count| {
            offsets.clear();
            subpool.free.pop_many(count, offsets);
            out.extend(
                offsets
                    .iter()
                    .map(|&offset| Self::occupy(subpool, offset, data())),
            );
            self.live.fetch_add(count, Ordering::AcqRel);
        })
    }

    /// Find the lowest-id subpool with a free block, reserve up to `want`
    /// blocks in it and run `take` on it with the count reserved. Creates a
    /// subpool, or reports exhaustion, when no subpool has a free block.
    fn with_reserved<R>(
        &self,
        want: u64,
        take: impl FnOnce(&Subpool<T>, u64) -> R,
    ) -> Result<R, Error> {
        loop {
            let Some(id) = self.availability.first() else {
                self.grow_when_empty()?;
                continue;
            };
            let slot = self.slots.get(id as usize).map(AtomicArc::load);
            let Some(subpool) = slot.as_ref().and_then(|guard| guard.as_ref()) else {
                self.refresh(id);
                continue;
            };
            match subpool.free.reserve_up_to(want) {
                Reserve::Taken { count, last } => {
                    if last {
                        self.refresh(id);
                    }
                    return Ok(take(subpool, count));
                }
                Reserve::Empty | Reserve::Closed => self.refresh(id),
            }
        }
    }

    /// Make the popped block `offset` live with `data`.
    #[inline]
    fn occupy(subpool: &Subpool<T>, offset: u32, data: T) -> Lease {
        let block = &subpool.blocks[offset as usize];
        // SAFETY: `offset` was just popped from the free list after a
        // reservation, so this thread alone owns the block.
        let generation = unsafe { block.occupy(data) };
        Lease {
            handle: Handle::new(generation, subpool.id, offset),
            ip: block.ip,
            port: block.port,
        }
    }

    /// Re-derive the availability bit of `id` from its subpool's count.
    fn refresh(&self, id: u32) {
        self.availability.clear(id);
        let has_free = self
            .slots
            .get(id as usize)
            .is_some_and(|slot| slot.load().as_ref().is_some_and(|s| s.free.has_free()));
        if has_free {
            self.availability.set(id);
        }
    }

    /// No subpool showed a free block: create one, or report exhaustion.
    fn grow_when_empty(&self) -> Result<(), Error> {
        let mut writer = self.lock_writer();
        if self.availability.first().is_some() {
            return Ok(()); // a block was freed or a subpool created meanwhile
        }
        if self.blocks.load(Ordering::Acquire) < self.config.capacity {
            return self.create_subpool(&mut writer);
        }
        if self.len() >= self.config.capacity {
            return Err(self.exhausted(1));
        }
        // Every block exists and some are not live: a concurrent free is
        // landing, or a bit is between its clear and its re-check. Re-derive
        // the map from the counts (rare: only at full occupancy) and retry.
        drop(writer);
        for subpool in &self.intervals.load().subpools {
            if subpool.free.has_free() {
                self.availability.set(subpool.id);
            }
        }
        yield_now();
        Ok(())
    }

    fn grow_if_below_threshold(&self) {
        let below = |pool: &Self| {
            let blocks = pool.blocks.load(Ordering::Acquire);
            blocks < pool.config.capacity
                && blocks.saturating_sub(pool.live.load(Ordering::Acquire))
                    <= pool.config.grow_threshold
        };
        if !below(self) {
            return;
        }
        // Best effort: the allocation has succeeded. If another thread holds
        // the writer lock, it is creating or deleting a subpool; the next
        // allocation checks again. So an allocation never waits here.
        if let Some(mut writer) = self.try_lock_writer() {
            if below(self) {
                let _ = self.create_subpool(&mut writer);
            }
        }
    }

    fn exhausted(&self, asked: u64) -> Error {
        let left = self.config.capacity.saturating_sub(self.len());
        Error::Exhausted(format!(
            "pool {:?} has {left} of {} addresses left, {asked} asked",
            self.config.name, self.config.capacity
        ))
    }

    fn create_subpool(&self, writer: &mut Writer) -> Result<(), Error> {
        #[cfg(all(test, not(loom)))]
        self.creation_hold.pause();
        let blocks = self.blocks.load(Ordering::Acquire);
        let wanted = if writer.created {
            self.config.subpool_blocks
        } else {
            self.config.initial_blocks
        };
        let (first, free) = self
            .intervals
            .load()
            .first_free(self.config.address_count)
            .expect("blocks < capacity");
        let count = u64::from(wanted)
            .min(free)
            .min(self.config.capacity - blocks) as u32;
        let id = writer
            .free_ids
            .peek()
            .map_or(writer.next_id, |Reverse(id)| *id);
        let generation = writer
            .generation_floor
            .get(id as usize)
            .copied()
            .unwrap_or(0);
        let subpool = Arc::new(Subpool::new(&self.config, id, first, count, generation)?);
        match writer.free_ids.peek() {
            Some(_) => {
                writer.free_ids.pop();
            }
            None => writer.next_id += 1,
        }
        self.slots.ensure(id as usize);
        self.availability.ensure(id);
        self.intervals.insert(Arc::clone(&subpool));
        self.slots
            .get(id as usize)
            .expect("slot ensured")
            .store(Some(subpool));
        self.blocks.fetch_add(u64::from(count), Ordering::AcqRel);
        writer.created = true;
        self.availability.set(id);
        Ok(())
    }

    /// Free the lease `handle`; returns its data when this call completed the
    /// release (`None` when a concurrent lookup will complete it).
    pub fn free(&self, handle: Handle) -> Result<Option<T>, Error> {
        let not_live = || self.not_live(handle);
        let (generation, id, offset) = handle.parts().ok_or_else(not_live)?;
        let slot = self.slots.get(id as usize).ok_or_else(not_live)?.load();
        let subpool = slot.as_ref().ok_or_else(not_live)?;
        let block = subpool.blocks.get(offset as usize).ok_or_else(not_live)?;
        match block.release(generation) {
            Release::NotLive => Err(not_live()),
            Release::Deferred => Ok(None),
            Release::Done(data) => {
                self.return_blocks(subpool, &[offset]);
                Ok(Some(data))
            }
        }
    }

    /// Put released blocks of one subpool back (in the order given, as
    /// single frees would) and apply the deletion rule.
    #[inline]
    fn return_blocks(&self, subpool: &Arc<Subpool<T>>, offsets: &[u32]) {
        let count = offsets.len() as u64;
        let available = subpool.free.push_many(offsets);
        if available == count {
            self.availability.set(subpool.id); // the count left zero
        }
        self.live.fetch_sub(count, Ordering::AcqRel);
        if available == u64::from(subpool.len()) {
            self.delete_if_idle(subpool);
        }
    }

    /// Delete `subpool` (all of its blocks free) unless fewer than
    /// `initial_blocks` blocks would remain. A free never waits for the
    /// writer: if another thread holds the lock, the idle subpool stays
    /// (its blocks remain allocatable) and is deleted the next time a free
    /// empties it.
    fn delete_if_idle(&self, subpool: &Arc<Subpool<T>>) {
        let size = u64::from(subpool.len());
        // `saturating_sub`: a thread whose push emptied the subpool may get
        // here after another thread already deleted it (loom model
        // `a_late_deletion_attempt_finds_the_subpool_gone`); then `blocks`
        // may be below `size`, and the closed list refuses a second close.
        let keep = |pool: &Self| {
            pool.blocks.load(Ordering::Acquire).saturating_sub(size)
                < u64::from(pool.config.initial_blocks)
        };
        // Checked before the lock too: a subpool that must stay (typically
        // the initial one, emptied by every free of a lone lease) costs no
        // lock operation.
        if keep(self) {
            return;
        }
        let Some(mut writer) = self.try_lock_writer() else {
            return;
        };
        if keep(self) || !subpool.free.try_close(size) {
            return;
        }
        let id = subpool.id;
        let slot = self
            .slots
            .get(id as usize)
            .expect("a live subpool's slot exists");
        slot.store(None);
        self.availability.clear(id);
        self.intervals.remove(id);
        self.blocks.fetch_sub(size, Ordering::AcqRel);
        if writer.generation_floor.len() <= id as usize {
            writer.generation_floor.resize(id as usize + 1, 0);
        }
        writer.generation_floor[id as usize] = subpool.highest_generation();
        writer.free_ids.push(Reverse(id));
    }

    /// Lease `n` addresses, all or nothing; `data` makes each lease's data.
    /// The leases, growth and everything else are exactly those of `n`
    /// single allocations; the blocks are taken in chains of up to `CHAIN`
    /// from one subpool, with one reservation and one pop CAS per chain.
    pub fn allocate_many(&self, n: u64, mut data: impl FnMut() -> T) -> Result<Vec<Lease>, Error> {
        if n > self.config.capacity.saturating_sub(self.len()) {
            return Err(self.exhausted(n));
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
            if let Err(error) = self.take_blocks(want, &mut data, &mut leases, &mut offsets) {
                // Another thread took the rest: give back what we took.
                for lease in leases.iter().rev() {
                    let _ = self.free(lease.handle);
                }
                return Err(error);
            }
            self.grow_if_below_threshold();
        }
        Ok(leases)
    }

    /// How many allocations in a row leave the threshold rule silent but for
    /// the last: after allocation `i` of a chain, `free - i` blocks are free,
    /// and growth is due at the first `i` with `free - i <= grow_threshold`.
    fn allocations_before_growth(&self) -> u64 {
        let blocks = self.blocks.load(Ordering::Acquire);
        if blocks >= self.config.capacity {
            return u64::MAX; // no growth is possible
        }
        let free = blocks.saturating_sub(self.len());
        free.saturating_sub(self.config.grow_threshold).max(1)
    }

    /// Whether `handle` names a live lease now (a snapshot).
    pub fn is_live(&self, handle: Handle) -> bool {
        let Some((generation, id, offset)) = handle.parts() else {
            return false;
        };
        let Some(slot) = self.slots.get(id as usize) else {
            return false;
        };
        let guard = slot.load();
        guard
            .as_ref()
            .and_then(|subpool| subpool.blocks.get(offset as usize))
            .is_some_and(|block| block.is_live(generation))
    }

    /// Free a batch, all or nothing against invalid input: if any handle is
    /// not live or appears twice, nothing is freed. (A lease that another
    /// thread frees between the check and the free is reported and the rest
    /// are still freed.) Returns the data of the released blocks. Each run
    /// of handles in one subpool is pushed back with one CAS.
    pub fn free_many(&self, handles: &[Handle]) -> Result<Vec<T>, Error> {
        self.check_batch(handles)?;
        let mut released = Vec::with_capacity(handles.len());
        let mut offsets = Vec::new();
        let mut first_error = None;
        for run in handles.chunk_by(|a, b| subpool_of(a) == subpool_of(b)) {
            if let Err(error) = self.free_run(run, &mut released, &mut offsets) {
                first_error = first_error.or(Some(error));
            }
        }
        first_error.map_or(Ok(released), Err)
    }

    fn not_live(&self, handle: Handle) -> Error {
        Error::NotLive(format!(
            "handle {:#x} is not a live lease of pool {:?}",
            handle.0, self.config.name
        ))
    }

    /// Every handle names a live lease, and no block twice (one slot load
    /// per run of handles in the same subpool).
    fn check_batch(&self, handles: &[Handle]) -> Result<(), Error> {
        let mut blocks = Vec::with_capacity(handles.len());
        for run in handles.chunk_by(|a, b| subpool_of(a) == subpool_of(b)) {
            let id = subpool_of(&run[0]).ok_or_else(|| self.not_live(run[0]))?;
            let slot = self.slots.get(id as usize).map(AtomicArc::load);
            let subpool = slot.as_ref().and_then(|guard| guard.as_ref());
            for handle in run {
                let (generation, _, offset) = handle.parts().expect("in a run of valid handles");
                let live = subpool
                    .and_then(|s| s.blocks.get(offset as usize))
                    .is_some_and(|block| block.is_live(generation));
                if !live {
                    return Err(self.not_live(*handle));
                }
                blocks.push(u64::from(id) << 32 | u64::from(offset));
            }
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

    /// Free a run of handles in one subpool.
    fn free_run(
        &self,
        run: &[Handle],
        released: &mut Vec<T>,
        offsets: &mut Vec<u32>,
    ) -> Result<(), Error> {
        let id = subpool_of(&run[0]).ok_or_else(|| self.not_live(run[0]))?;
        let slot = self.slots.get(id as usize).map(AtomicArc::load);
        let subpool = slot
            .as_ref()
            .and_then(|guard| guard.as_ref())
            .ok_or_else(|| self.not_live(run[0]))?;
        offsets.clear();
        let mut first_error = None;
        for handle in run {
            let (generation, _, offset) = handle.parts().expect("in a run of valid handles");
            let outcome = subpool
                .blocks
                .get(offset as usize)
                .map_or(Release::NotLive, |block| block.release(generation));
            match outcome {
                Release::NotLive => first_error = first_error.or(Some(self.not_live(*handle))),
                Release::Deferred => {}
                Release::Done(data) => {
                    released.push(data);
                    offsets.push(offset);
                }
            }
        }
        if !offsets.is_empty() {
            self.return_blocks(subpool, offsets);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Run `read` on the live lease at (ip, port) and its data, if any.
    /// `read` must not panic. Also returns data released by this call (when
    /// it was the last reader of a lease freed meanwhile), to be dropped by
    /// the caller.
    pub fn lookup_with<R>(
        &self,
        ip: u32,
        port: u16,
        read: impl FnOnce(Lease, &T) -> R,
    ) -> (Option<R>, Option<T>) {
        let Some(index) = self.config.index(ip, port) else {
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
                    ip: block.ip,
                    port: block.port,
                },
                data,
            )
        }) {
            None => (None, None),
            Some((result, None)) => (Some(result), None),
            Some((result, Some(data))) => {
                self.return_blocks(subpool, &[offset]);
                (Some(result), Some(data))
            }
        }
    }

    /// The interval list in address order.
    pub fn intervals(&self) -> Vec<Interval> {
        self.intervals.load().intervals(self.config.address_count)
    }

    /// The subpools in address order.
    pub fn subpools(&self) -> Vec<SubpoolInfo> {
        let snapshot = self.intervals.load();
        snapshot
            .subpools
            .iter()
            .map(|s| SubpoolInfo {
                id: s.id,
                first: s.start,
                blocks: s.len(),
                free: s.free.available(),
            })
            .collect()
    }

    /// The counters, in O(1).
    pub fn stats(&self) -> PoolStats {
        let snapshot = self.intervals.load();
        let blocks = self.blocks.load(Ordering::Acquire);
        let live = self.len();
        PoolStats {
            live,
            free_blocks: blocks.saturating_sub(live),
            blocks,
            subpools: snapshot.subpools.len() as u64,
            intervals: snapshot.length,
            free_addresses: self.config.address_count - blocks,
            address_count: self.config.address_count,
            capacity: self.config.capacity,
        }
    }
}

/// The subpool id a handle names, or `None` for a value no handle has.
fn subpool_of(handle: &Handle) -> Option<u32> {
    handle.parts().map(|(_, id, _)| id)
}
