//! The pool's writer side: subpool creation (on demand and by threshold
//! growth), deletion (with the keep rule), and the reuse of subpool ids and
//! block generations. Everything here runs under the writer lock; the
//! lock-free side calls in only with `try_lock`, except when no subpool has
//! a free block (then an allocation must wait for a creation anyway).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::core::clients::{carve, find_run};
use crate::core::epoch;
use crate::core::error::Error;
use crate::core::pool::Pool;
use crate::core::subpool::Subpool;
use crate::core::sync::{yield_now, Arc, MutexGuard, Ordering, TryLockError};

/// State only subpool creation and deletion touch (under the writer lock).
pub(super) struct Writer {
    /// MPA: whether the memory pool exists (the first subpool was created).
    pub(super) created: bool,
    /// Ids freed by deleted subpools (lowest first), and the next fresh id.
    free_ids: BinaryHeap<Reverse<u32>>,
    next_id: u32,
    /// Per id: the generation the next subpool with that id starts at.
    generation_floor: Vec<u32>,
}

impl Writer {
    pub(super) fn new() -> Self {
        Writer {
            created: false,
            free_ids: BinaryHeap::new(),
            next_id: 0,
            generation_floor: Vec::new(),
        }
    }

    /// The writer state a snapshot restores: `created` (a shared subpool
    /// was made), and the ids ever used and not in use with their floors
    /// (`floors`), which with the ids in use are `0..next_id`.
    pub(super) fn restored(created: bool, next_id: u32, floors: &[(u32, u32)]) -> Self {
        let mut generation_floor = vec![0; next_id as usize];
        for &(id, generation) in floors {
            generation_floor[id as usize] = generation;
        }
        Writer {
            created,
            free_ids: floors.iter().map(|&(id, _)| Reverse(id)).collect(),
            next_id,
            generation_floor,
        }
    }

    /// The ids ever used and not in use, ascending, with the generation a
    /// subpool made under each would start at (a snapshot's floors).
    pub(super) fn floors(&self) -> Vec<(u32, u32)> {
        let mut floors: Vec<(u32, u32)> = self
            .free_ids
            .iter()
            .map(|&Reverse(id)| (id, self.generation_for(id)))
            .collect();
        floors.sort_unstable();
        floors
    }

    /// The id the next subpool gets: the lowest one not in use.
    fn next_free_id(&self) -> u32 {
        self.free_ids.peek().map_or(self.next_id, |Reverse(id)| *id)
    }

    /// Mark [`next_free_id`](Self::next_free_id) as used.
    fn take_id(&mut self) {
        match self.free_ids.pop() {
            Some(_) => {}
            None => self.next_id += 1,
        }
    }

    /// The generation a subpool created under `id` starts its blocks at.
    fn generation_for(&self, id: u32) -> u32 {
        self.generation_floor.get(id as usize).copied().unwrap_or(0)
    }

    /// `id` is free again; its next holder starts at `generation`, so that
    /// no handle of the deleted subpool matches a block of the new one.
    fn release_id(&mut self, id: u32, generation: u32) {
        if self.generation_floor.len() <= id as usize {
            self.generation_floor.resize(id as usize + 1, 0);
        }
        self.generation_floor[id as usize] = generation;
        self.free_ids.push(Reverse(id));
    }
}

impl<T: Default + Send + Sync> Pool<T> {
    pub(super) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while the lock was held leaves the writer state consistent
        // at every await-free step we take, so a poisoned lock is usable.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writer lock if no other thread holds it. The lock-free side uses
    /// this for its optional writer work (threshold growth, deleting an idle
    /// subpool), so that it never waits for a creation or deletion.
    pub(super) fn try_lock_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// No subpool showed a free block: create one, or report exhaustion
    /// (at `now`, for the message).
    pub(super) fn grow_when_empty(&self, now: Option<f64>) -> Result<(), Error> {
        let mut writer = self.lock_writer();
        if self.availability.first().is_some() {
            return Ok(()); // a block was freed or a subpool created meanwhile
        }
        if self.has_store() {
            // The cluster decides: a claim, or none left (exhaustion).
            if self.shared_room_listed() == 0 {
                return Err(self.exhausted(1, now));
            }
            return match self.create_subpool(&mut writer, true)? {
                true => Ok(()),
                false => Err(self.cluster_exhausted()),
            };
        }
        if self.blocks.load(Ordering::Acquire) < self.config.capacity()
            && self.create_subpool(&mut writer, true)?
        {
            return Ok(());
        }
        // Every block exists, or every free address is on a drained IP.
        // Exhaustion is decided on the free lists themselves, not on the
        // summed counts (`tally.rs`): a shared subpool that serves with a
        // free block is a concurrent free that landed, or a bit between its
        // clear and its re-check. Re-derive the map from the lists (rare:
        // only at full occupancy) and retry; none: exhausted.
        let mut found = false;
        for subpool in &self.intervals.load().subpools {
            if subpool.owner.is_none() && subpool.free.has_free() {
                self.availability.set(subpool.id);
                found = true;
            }
        }
        if !found {
            return Err(self.exhausted(1, now));
        }
        drop(writer);
        yield_now();
        Ok(())
    }

    /// Whether the threshold rule asks for one more subpool now: the free
    /// blocks that can serve (not those of fenced subpools) are at most
    /// `grow_threshold`. In a cluster, not while the store is down.
    #[inline]
    fn below_threshold(&self) -> bool {
        self.blocks.load(Ordering::Acquire) < self.config.capacity()
            && self.shared_free().saturating_sub(self.fenced_free_blocks())
                <= self.config.grow_threshold()
            && !self.store_down()
    }

    /// After an allocation: grow ahead of need when the threshold rule says
    /// so. Best effort: if another thread holds the writer lock, it is
    /// creating or deleting a subpool; the next allocation checks again.
    #[inline]
    pub(super) fn grow_if_below_threshold(&self) {
        if self.below_threshold() {
            self.grow_below_threshold();
        }
    }

    /// [`grow_if_below_threshold`](Self::grow_if_below_threshold) once the
    /// rule asked: under the writer lock, if free, and asked again there.
    #[cold]
    fn grow_below_threshold(&self) {
        if let Some(mut writer) = self.try_lock_writer() {
            if self.below_threshold() {
                let _ = self.create_subpool(&mut writer, false);
            }
        }
    }

    /// How many allocations in a row leave the threshold rule silent but for
    /// the last: after allocation `i` of a chain, `free - i` blocks are free,
    /// and growth is due at the first `i` with `free - i <= grow_threshold`.
    pub(super) fn allocations_before_growth(&self) -> u64 {
        let blocks = self.blocks.load(Ordering::Acquire);
        if blocks >= self.config.capacity() {
            return u64::MAX; // no growth is possible
        }
        let free = self.shared_free().saturating_sub(self.fenced_free_blocks());
        free.saturating_sub(self.config.grow_threshold()).max(1)
    }

    fn cluster_exhausted(&self) -> Error {
        Error::Exhausted(format!(
            "pool {:?}: this member has no free block and the cluster has no address left to claim \
             (capacity {})",
            self.config.name(),
            self.config.capacity()
        ))
    }

    /// Exhaustion: every address is live or held. With held blocks, the
    /// message says how many and when the first hold ends (from `now`).
    pub(super) fn exhausted(&self, asked: u64, now: Option<f64>) -> Error {
        let left = self.shared_room();
        let mut message = format!(
            "pool {:?} has {left} of {} addresses left, {asked} asked",
            self.config.name(),
            self.config.capacity()
        );
        if let (Some(end), Some(now)) = (self.held.first_end(), now) {
            message += &format!(
                "; {} held, the first hold ends at {end:?} (in {:.3} s)",
                self.held(),
                end - now
            );
        }
        Error::Exhausted(message)
    }

    /// Create a subpool: the lowest unused id, the first addresses of the
    /// lowest free interval (`initial_blocks` of them for the first subpool,
    /// `subpool_blocks` later), clipped to the interval and to `capacity`.
    /// In a cluster the range is a claim, which the store picks by the same
    /// rule over the whole cluster; then `Ok(false)` means the cluster has
    /// nothing left, and an optional (`!required`) creation also gives up on
    /// a store error.
    fn create_subpool(&self, writer: &mut Writer, required: bool) -> Result<bool, Error> {
        #[cfg(all(test, not(loom)))]
        super::test_hook::creation_started(self);
        let (first, count, epoch) = if self.has_store() {
            match self.claim_range() {
                Ok(Some(grant)) => (
                    u128::from(grant.first),
                    grant.count as u32,
                    Some(grant.epoch),
                ),
                Ok(None) => return Ok(false),
                Err(error) if required => return Err(error),
                Err(_) => return Ok(false),
            }
        } else {
            let blocks = self.blocks.load(Ordering::Acquire);
            let wanted = if writer.created {
                self.config.subpool_blocks()
            } else {
                self.config.initial_blocks()
            };
            let Some((first, free)) = self.first_fit() else {
                return Ok(false); // every free address is on a drained IP
            };
            let count = u128::from(wanted)
                .min(free)
                .min(u128::from(self.config.capacity() - blocks)) as u32;
            (first, count, None)
        };
        let subpool = self.publish(writer, first, count, None, epoch)?;
        writer.created = true;
        self.availability.set(subpool.id);
        Ok(true)
    }

    /// First fit: the lowest free address on no drained IP, and how many
    /// free addresses follow it before the next owned or drained one.
    pub(super) fn first_fit(&self) -> Option<(u128, u128)> {
        let snapshot = self.intervals.load();
        let drained = self.drained_set();
        if drained.is_empty() {
            return snapshot.first_free(self.config.address_count());
        }
        snapshot
            .gaps(self.config.address_count())
            .iter()
            .find_map(|&(first, count)| {
                let end = first + count;
                let lowest = drained.lowest_free(first, end)?;
                let (first, end) = drained.around(lowest, lowest, end);
                Some((first, end - first))
            })
    }

    /// Make and publish a subpool of `count` blocks from address `first`
    /// under the lowest unused id (`owner`: a client's port block; `epoch`:
    /// the claim its addresses come from): its slot, interval and blocks.
    /// The caller sets its availability bit.
    fn publish(
        &self,
        writer: &mut Writer,
        first: u128,
        count: u32,
        owner: Option<u64>,
        epoch: Option<u64>,
    ) -> Result<Arc<Subpool<T>>, Error> {
        self.publish_with(writer, first, count, owner, epoch, |_| ())
            .map(|(subpool, ())| subpool)
    }

    /// [`publish`](Self::publish), running `prepare` on the subpool before
    /// any other thread can see it (`reserve` takes its block there).
    pub(super) fn publish_with<R>(
        &self,
        writer: &mut Writer,
        first: u128,
        count: u32,
        owner: Option<u64>,
        epoch: Option<u64>,
        prepare: impl FnOnce(&Subpool<T>) -> R,
    ) -> Result<(Arc<Subpool<T>>, R), Error> {
        let id = writer.next_free_id();
        let generation = writer.generation_for(id);
        let subpool = Arc::new(Subpool::new(
            &self.config,
            id,
            first,
            count,
            generation,
            owner,
            epoch,
        )?);
        let prepared = prepare(&subpool);
        writer.take_id();
        self.slots.ensure(id as usize);
        self.availability.ensure(id);
        let mut retired = self.lock_retired();
        self.slots
            .get(id as usize)
            .expect("slot ensured")
            .store(Some(Arc::clone(&subpool)), &mut retired);
        // A writer pass: drop what deletions retired before (never waits).
        retired.collect();
        drop(retired);
        // In the interval list after its slot: a subpool found in the list
        // (a home's scan) is one its id loads (deletion empties the slot
        // first, after closing the list, so a scan meets it closed).
        self.intervals
            .insert(Arc::clone(&subpool), self.config.space());
        if owner.is_some() {
            self.client_blocks
                .fetch_add(u64::from(count), Ordering::AcqRel);
        }
        self.blocks.fetch_add(u64::from(count), Ordering::AcqRel);
        Ok((subpool, prepared))
    }

    /// The keep rule: a subpool of `size` blocks stays if deleting it would
    /// leave fewer than `initial_blocks` blocks.
    ///
    /// `saturating_sub`: a thread whose push emptied the subpool may get
    /// here after another thread already deleted it (loom model
    /// `a_late_deletion_attempt_finds_the_subpool_gone`); then `blocks` may
    /// be below `size`, and the closed list refuses a second close.
    fn keeps(&self, size: u64) -> bool {
        let shared = self.blocks.load(Ordering::Acquire)
            - self
                .client_blocks
                .load(Ordering::Acquire)
                .min(self.blocks.load(Ordering::Acquire));
        shared.saturating_sub(size) < u64::from(self.config.initial_blocks())
    }

    /// Delete `subpool` (all of its blocks free) unless the keep rule keeps
    /// it. A free never waits for the writer: if another thread holds the
    /// lock, the idle subpool stays (its blocks remain allocatable) and is
    /// deleted the next time a free empties it. In a cluster: a subpool
    /// whose claim lapsed is fenced and dropped; otherwise deletion returns
    /// the claim first, and the subpool stays if the store is down or fails.
    #[inline(always)]
    pub(super) fn delete_if_idle(&self, subpool: &Arc<Subpool<T>>) {
        if self.claim_lapsed(subpool) {
            self.fence(subpool);
            self.fenced_subpool_emptied(subpool);
            return;
        }
        let size = u64::from(subpool.len());
        // Checked before the lock too: a subpool that must stay (typically
        // the initial one, emptied by every free of a lone lease) costs no
        // lock operation.
        if self.keeps(size) || self.store_down() {
            return;
        }
        self.delete_idle(subpool, size);
    }

    /// [`delete_if_idle`](Self::delete_if_idle) past its checks without
    /// the lock (out of line: the common free only runs those checks).
    #[cold]
    fn delete_idle(&self, subpool: &Arc<Subpool<T>>, size: u64) {
        // A thread's home stays; its release re-checks (`home.rs`).
        if !subpool.home.unclaimed_after_push() {
            return;
        }
        let Some(mut writer) = self.try_lock_writer() else {
            return;
        };
        if self.keeps(size) || !subpool.free.try_close(size) {
            return;
        }
        if !self.return_claim(subpool) {
            // The store kept the claim: so does this member, subpool and all.
            subpool.free.reopen(size);
            self.availability.set(subpool.id);
            return;
        }
        self.unpublish(&mut writer, subpool);
    }

    /// Take a subpool out of the pool: its slot, its availability bit, its
    /// interval and its blocks; its id is free for the next subpool (writer
    /// lock held, its free list closed).
    pub(super) fn unpublish(&self, writer: &mut Writer, subpool: &Arc<Subpool<T>>) {
        let id = subpool.id;
        let slot = self
            .slots
            .get(id as usize)
            .expect("a live subpool's slot exists");
        let mut retired = self.lock_retired();
        slot.store(None, &mut retired);
        self.availability.clear(id);
        self.intervals.remove(id, self.config.space());
        let size = u64::from(subpool.len());
        if subpool.owner.is_some() {
            self.client_blocks.fetch_sub(size, Ordering::AcqRel);
        }
        if subpool.is_drain_fenced() {
            self.drain_fenced_subpools.fetch_sub(1, Ordering::AcqRel);
            self.fenced_subpools.fetch_sub(1, Ordering::AcqRel);
        }
        self.blocks.fetch_sub(size, Ordering::AcqRel);
        writer.release_id(id, subpool.highest_generation());
        // Drops the subpools retired before that no pinned call can hold
        // (this one stays listed if this thread is pinned: a free that
        // emptied it); never waits.
        retired.collect();
    }

    /// A port block of `client_block` addresses for `owner`: the lowest run
    /// of free addresses on one IP, on IP `ip` when it has one
    /// (`clients.rs`); `Exhausted` when none fits under `capacity`. Not in
    /// the availability map: only its client's allocations take from it.
    pub(super) fn create_block(
        &self,
        owner: u64,
        ip: Option<u128>,
    ) -> Result<Arc<Subpool<T>>, Error> {
        let k = self.config.client_block().expect("port blocks");
        let mut writer = self.lock_writer();
        let first = self
            .plan_blocks(ip, 1)
            .and_then(|plan| plan.first().copied())
            .ok_or_else(|| self.no_room_for_blocks(owner, 1))?;
        self.publish(&mut writer, first, k, Some(owner), None)
    }

    /// Where `count` new port blocks would go, one after the other, the
    /// first on IP `ip` when it has room (`None`: they do not fit).
    pub(super) fn plan_blocks(&self, mut ip: Option<u128>, count: u64) -> Option<Vec<u128>> {
        let k = self.config.client_block().expect("port blocks");
        let blocks = self.blocks.load(Ordering::Acquire);
        if blocks.saturating_add(count.saturating_mul(u64::from(k))) > self.config.capacity() {
            return None;
        }
        let space = self.config.space();
        let drained = self.drained_set();
        let k = u128::from(k);
        let mut free = self.intervals.load().gaps(space.address_count());
        let mut plan = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let first = ip
                .and_then(|ip| space.ip_indices(ip))
                .and_then(|run| find_run(&free, k, space, &drained, Some(run)))
                .or_else(|| find_run(&free, k, space, &drained, None))?;
            plan.push(first);
            ip = Some(space.ip_of(first));
            carve(&mut free, first, k);
        }
        Some(plan)
    }

    pub(super) fn no_room_for_blocks(&self, client: u64, count: u64) -> Error {
        Error::Exhausted(format!(
            "pool {:?} has no room for {count} more port block(s) of {} addresses for client {client}",
            self.config.name(),
            self.config.client_block().unwrap_or(0)
        ))
    }

    /// Release a client's port block whose blocks are all free: close it
    /// (no reservation can succeed after) and remove it. `false` when it was
    /// not all free or already released. Waits for the writer lock: the
    /// release is not optional (it is logged).
    pub(super) fn release_block(&self, subpool: &Arc<Subpool<T>>) -> bool {
        let mut writer = self.lock_writer();
        if !subpool.free.try_close(u64::from(subpool.len())) {
            return false;
        }
        self.unpublish(&mut writer, subpool);
        true
    }

    /// Whether `subpool` is still the one published under its id.
    pub(super) fn is_published(&self, subpool: &Arc<Subpool<T>>) -> bool {
        let Some(slot) = self.slots.get(subpool.id as usize) else {
            return false;
        };
        epoch::pin(|guard| {
            slot.load(guard)
                .is_some_and(|current| Arc::ptr_eq(current, subpool))
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::net::Ipv4Addr;

    use crate::core::{Pool, PoolSpec};

    /// 10.0.0.1, ports 1000..=1000+ports-1.
    fn pool(ports: u16, initial: u32, subpool: u32, threshold: u64) -> Pool<u32> {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let spec = PoolSpec::new("w", ip, ip)
            .ports(1000, 1000 + ports - 1)
            .initial_blocks(initial)
            .subpool_blocks(subpool)
            .grow_threshold(threshold);
        Pool::new(spec.build().unwrap())
    }

    fn layout(pool: &Pool<u32>) -> Vec<(u32, u128, u32)> {
        pool.subpools()
            .iter()
            .map(|s| (s.id, s.first, s.blocks))
            .collect()
    }

    #[test]
    fn the_first_subpool_has_initial_blocks_and_later_ones_subpool_blocks() {
        let pool = pool(10, 3, 2, 0);
        let leases: Vec<_> = (0..6).map(|i| pool.allocate(i).unwrap()).collect();
        // Taking the last free block creates the next subpool (threshold 0).
        assert_eq!(layout(&pool), vec![(0, 0, 3), (1, 3, 2), (2, 5, 2)]);
        assert_eq!(leases[5].port, 1005);
    }

    #[test]
    fn growth_is_clipped_to_the_free_interval_and_to_capacity() {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let spec = PoolSpec::new("w", ip, ip)
            .ports(1000, 1006)
            .initial_blocks(4)
            .max_blocks(6);
        let pool: Pool<u32> = Pool::new(spec.build().unwrap());
        let _leases: Vec<_> = (0..6).map(|i| pool.allocate(i).unwrap()).collect();
        assert_eq!(layout(&pool), vec![(0, 0, 4), (1, 4, 2)]);
        assert_eq!(pool.stats().blocks, 6);
    }

    #[test]
    fn the_keep_rule_keeps_what_initial_blocks_needs() {
        let pool = pool(16, 2, 2, 0);
        let a: Vec<_> = (0..2).map(|i| pool.allocate(i).unwrap()).collect();
        let b: Vec<_> = (2..4).map(|i| pool.allocate(i).unwrap()).collect();
        assert_eq!(layout(&pool), vec![(0, 0, 2), (1, 2, 2), (2, 4, 2)]);
        // Emptying subpool 0 leaves 4 blocks, not fewer than 2: deleted.
        for lease in &a {
            pool.free(lease.handle).unwrap();
        }
        assert_eq!(layout(&pool), vec![(1, 2, 2), (2, 4, 2)]);
        // Emptying subpool 1 leaves 2 blocks, not fewer than 2: deleted.
        for lease in &b {
            pool.free(lease.handle).unwrap();
        }
        assert_eq!(layout(&pool), vec![(2, 4, 2)]);
        // Emptying subpool 2 would leave none: kept.
        let c = pool.allocate(4).unwrap();
        pool.free(c.handle).unwrap();
        assert_eq!(layout(&pool), vec![(2, 4, 2)]);
    }

    /// A subpool deleted by a free is retired (the freeing thread is still
    /// pinned) and dropped by a later writer pass: the retired list stays
    /// bounded however many subpools come and go. (Other tests' threads
    /// share the epoch and may be pinned during a pass: a few more passes.)
    #[test]
    fn deleted_subpools_are_reclaimed_by_later_writer_passes() {
        let pool = pool(16, 1, 1, 0);
        let keep = pool.allocate(0).unwrap(); // subpool 0 stays
        let pass = |data| {
            let lease = pool.allocate(data).unwrap(); // creates a subpool
            pool.free(lease.handle).unwrap(); // deletes it
        };
        for round in 0..100 {
            pass(round);
        }
        let deleted = {
            let lease = pool.allocate(7).unwrap();
            let (_, id, _) = lease.handle.parts().unwrap();
            let snapshot = pool.intervals.load();
            let subpool = snapshot.subpools.iter().find(|s| s.id == id).cloned();
            pool.free(lease.handle).unwrap();
            subpool.unwrap()
        };
        let mut passes = 0;
        while pool.lock_retired().len() > 1 || std::sync::Arc::strong_count(&deleted) > 1 {
            assert!(passes < 10_000, "never reclaimed");
            passes += 1;
            std::thread::yield_now();
            pass(passes);
        }
        pool.free(keep.handle).unwrap();
    }

    #[test]
    fn a_reused_id_is_the_lowest_and_starts_past_its_old_generations() {
        let pool = pool(16, 1, 1, 0);
        let a = pool.allocate(0).unwrap(); // subpool 0
        let b = pool.allocate(1).unwrap(); // subpool 1
        let c = pool.allocate(2).unwrap(); // subpool 2
        let (generation, id, _) = b.handle.parts().unwrap();
        assert_eq!((generation, id), (0, 1));
        pool.free(b.handle).unwrap(); // subpool 1 deleted; id 1 free
        pool.free(c.handle).unwrap(); // subpool 2 deleted; id 2 free
        assert_eq!(layout(&pool), vec![(0, 0, 1), (3, 3, 1)]);
        // Subpool 3 serves; taking its last block grows a subpool under the
        // lowest free id, on the lowest free interval.
        let d = pool.allocate(3).unwrap();
        assert_eq!(d.handle.parts().unwrap().1, 3);
        assert_eq!(layout(&pool), vec![(0, 0, 1), (1, 1, 1), (3, 3, 1)]);
        let e = pool.allocate(4).unwrap();
        let (generation, id, _) = e.handle.parts().unwrap();
        assert_eq!((id, e.port), (1, 1001), "the lowest free id");
        assert_eq!(generation, 1, "past the deleted holder's generation");
        assert!(pool.free(b.handle).is_err(), "the old handle stays stale");
        for lease in [a, d, e] {
            pool.free(lease.handle).unwrap();
        }
    }
}
