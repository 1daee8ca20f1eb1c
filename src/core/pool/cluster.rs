//! The pool as one member of a cluster sharing its interval list through a
//! store (`core/store.rs`): subpools are created on claimed ranges and
//! return them when deleted; claims are renewed by a thread (or by the
//! owner's [`Pool::renew`]); a claim that was not renewed in time is fenced.
//!
//! The rules are the reference model's (`natpool/reference/pool.py`), call
//! for call:
//! * A claim's *deadline* is `claim_ttl` after the start of the request that
//!   granted or last renewed it, by this process's monotonic clock. The store
//!   set its expiry to its own clock during that request plus `claim_ttl`, so
//!   the member stops using a range before the store may hand it on.
//! * A claim is *lapsed* when it is fenced, lost (a renewal did not renew
//!   it) or past its deadline. Every allocation first fences the subpools of
//!   lapsed claims (they serve no allocation again; their leases stay valid
//!   and freeable) and drops those without live leases, without telling the
//!   store (which holds, or will hold, the range). A fenced subpool is dropped
//!   when its last lease is freed. The check costs one read of the coarse
//!   clock (`core/clock.rs`, 8 ns) and two atomic loads per allocation, and
//!   the same on a free that empties a subpool.
//! * A store call that fails sets `store_down`, one that succeeds clears it.
//!   While it is set the optional store work (threshold growth, deleting an
//!   idle subpool) is skipped, so an outage costs no store call per
//!   allocation or free; a creation an allocation needs is always tried.
//! * Creating a subpool claims a range; a grant that overlaps a subpool
//!   still here (its claim lapsed in the store while its leases lived on) is
//!   returned at once and the claim repeated. Deleting a subpool closes its
//!   free list, returns the claim, and reopens the list if the store fails.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex as StdMutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::core::clock;

use crate::core::error::Error;
use crate::core::pool::writer::Writer;
use crate::core::pool::Pool;
use crate::core::store::{ClaimAt, Grant, Membership, Store};
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering};

/// A claim behind one subpool.
struct ClaimState {
    /// By when the claim must have been renewed, on the coarse clock
    /// (`core/clock.rs`), already moved earlier by the clock's resolution.
    deadline: u64,
    /// The store did not renew it.
    lost: bool,
    /// Its subpool is fenced (no allocation serves from it any more).
    fenced: bool,
}

/// What the pool and its renewal thread share.
struct Shared {
    store: Box<dyn Store>,
    claim_ttl: Duration,
    /// The live claims (not yet returned or dropped), by epoch.
    claims: Mutex<HashMap<u64, ClaimState>>,
    /// The earliest deadline among the claims still serving (`u64::MAX`:
    /// none), and whether one was lost or a fenced subpool waits to be
    /// dropped: what the per-allocation check reads.
    earliest: AtomicU64,
    due: AtomicBool,
    store_down: AtomicBool,
    closed: AtomicBool,
    /// Wakes the renewal thread to stop.
    stop: (StdMutex<bool>, Condvar),
}

/// A pool's membership of its cluster.
pub(super) struct Cluster {
    shared: Arc<Shared>,
    renewer: StdMutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn lock_claims(&self) -> MutexGuard<'_, HashMap<u64, ClaimState>> {
        self.claims
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The deadline of a claim granted or renewed by a request that started
    /// at `start` (coarse clock): `claim_ttl` later, less the clock's
    /// resolution, so that a coarse reading never lets it pass unnoticed.
    fn deadline(&self, start: u64) -> u64 {
        let ttl = u64::try_from(self.claim_ttl.as_nanos()).unwrap_or(u64::MAX);
        start
            .saturating_add(ttl)
            .saturating_sub(clock::resolution())
    }

    /// Recompute what the per-allocation check reads from the claims still
    /// serving: the earliest deadline, and whether one was lost.
    fn refresh_earliest(&self, claims: &HashMap<u64, ClaimState>) {
        let serving = || claims.values().filter(|claim| !claim.fenced);
        let earliest = serving()
            .filter(|claim| !claim.lost)
            .map(|claim| claim.deadline)
            .min()
            .unwrap_or(u64::MAX);
        self.earliest.store(earliest, Ordering::Release);
        if serving().any(|claim| claim.lost) {
            self.due.store(true, Ordering::Release);
        }
    }

    /// Track claims just granted by a request that started at `start`.
    fn track(&self, epochs: &[u64], start: u64) {
        let deadline = self.deadline(start);
        let mut claims = self.lock_claims();
        for &epoch in epochs {
            claims.insert(
                epoch,
                ClaimState {
                    deadline,
                    lost: false,
                    fenced: false,
                },
            );
        }
        self.refresh_earliest(&claims);
    }

    /// Set or clear `due` under the claims' lock (see `Pool::fence_lapsed`).
    fn set_due(&self, due: bool) {
        let _claims = self.lock_claims();
        self.due.store(due, Ordering::Release);
    }

    /// One store call, keeping `store_down` up to date.
    fn call<R>(&self, call: impl FnOnce(&dyn Store) -> Result<R, Error>) -> Result<R, Error> {
        let result = call(&*self.store);
        self.store_down.store(result.is_err(), Ordering::Release);
        result
    }

    fn lapsed(&self, epoch: u64, now: u64) -> bool {
        self.lock_claims()
            .get(&epoch)
            .map_or(true, |claim| claim.lost || now >= claim.deadline)
    }

    /// Renew every claim not lost; mark lost the ones the store did not
    /// renew. The claims' lock is never held while the store is asked.
    fn renew(&self) -> Result<(), Error> {
        let epochs: Vec<u64> = {
            let claims = self.lock_claims();
            let mut epochs: Vec<u64> = claims
                .iter()
                .filter(|(_, claim)| !claim.lost)
                .map(|(epoch, _)| *epoch)
                .collect();
            epochs.sort_unstable();
            epochs
        };
        let start = clock::now();
        let renewed = self.call(|store| store.renew(&epochs))?;
        let mut claims = self.lock_claims();
        for epoch in epochs {
            if let Some(claim) = claims.get_mut(&epoch) {
                if renewed.contains(&epoch) {
                    claim.deadline = claim.deadline.max(self.deadline(start));
                } else {
                    claim.lost = true;
                }
            }
        }
        self.refresh_earliest(&claims);
        Ok(())
    }

    /// Wait `interval` unless told to stop; true to go on.
    fn wait(&self, interval: Duration) -> bool {
        let (stopped, wake) = &self.stop;
        let guard = stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = wake
            .wait_timeout_while(guard, interval, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        !*guard
    }

    fn stop(&self) {
        let (stopped, wake) = &self.stop;
        *stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
    }
}

impl Cluster {
    pub(super) fn new(membership: Membership) -> Self {
        let shared = Arc::new(Shared {
            store: membership.store,
            claim_ttl: membership.claim_ttl,
            claims: Mutex::new(HashMap::new()),
            earliest: AtomicU64::new(u64::MAX),
            due: AtomicBool::new(false),
            store_down: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop: (StdMutex::new(false), Condvar::new()),
        });
        let renewer = (!membership.renew_interval.is_zero()).then(|| {
            let shared = Arc::clone(&shared);
            let interval = membership.renew_interval;
            std::thread::Builder::new()
                .name("natpool-renew".into())
                .spawn(move || {
                    while shared.wait(interval) {
                        // A failure sets store_down; the deadlines fence
                        // the claims if it goes on.
                        let _ = shared.renew();
                    }
                })
                .expect("spawn the renewal thread")
        });
        Cluster {
            shared,
            renewer: StdMutex::new(renewer),
        }
    }

    /// Join with the claims of a restored member: claim exactly `ranges`
    /// (ascending) again; their epochs in the same order. [`Error::Snapshot`]
    /// if the store refuses (another member's range meets them, or the
    /// capacity).
    pub(super) fn reclaim(&self, ranges: &[(u64, u64)]) -> Result<Vec<u64>, Error> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let shared = &self.shared;
        let start = clock::now();
        let Some(grants) = shared.call(|store| store.reclaim(ranges))? else {
            return Err(Error::Snapshot(
                "the cluster has given addresses of the snapshot's subpools to other members \
                 (or has no capacity left for them)"
                    .into(),
            ));
        };
        let by_first: HashMap<u64, u64> = grants.iter().map(|g| (g.first, g.epoch)).collect();
        let epochs = ranges
            .iter()
            .map(|(first, _)| {
                by_first
                    .get(first)
                    .copied()
                    .ok_or_else(|| Error::Store(format!("reclaim granted no range at {first}")))
            })
            .collect::<Result<Vec<u64>, Error>>()?;
        shared.track(&epochs, start);
        Ok(epochs)
    }

    /// Whether an allocation must first fence lapsed claims.
    #[inline]
    fn fence_due(&self) -> bool {
        let shared = &self.shared;
        shared.due.load(Ordering::Acquire)
            || clock::now() >= shared.earliest.load(Ordering::Acquire)
    }

    fn stop_renewing(&self) {
        self.shared.stop();
        let handle = self
            .renewer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// A handle that renews a pool's claims from anywhere (a thread of the
/// caller's: the Python binding runs its renewal on a Python thread). It
/// renews only; the pool's next allocation fences what lapsed.
pub struct Renewal(Arc<Shared>);

impl Renewal {
    /// Renew the claims now; [`Error::Store`] if the store fails,
    /// [`Error::Closed`] after the pool was closed.
    pub fn renew(&self) -> Result<(), Error> {
        if self.0.closed.load(Ordering::Acquire) {
            return Err(Error::Closed("the pool was closed".into()));
        }
        self.0.renew()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A pool dropped without close(): its claims are not renewed any
        // more, and lapse. The thread is told to stop, not waited for (it may
        // be inside a store call).
        self.shared.stop();
    }
}

/// The largest address space a store can number (its ledger's integers).
pub(crate) const STORE_ADDRESSES: u128 = (1 << 63) - 1;

/// `Error::Config { field: "store" }` unless the store can number the
/// pool's addresses.
pub(crate) fn check_store_space(config: &crate::core::Config) -> Result<(), Error> {
    if config.address_count() > STORE_ADDRESSES {
        return Err(Error::config(
            "store",
            format!(
                "the pool has {} addresses; a store numbers at most {STORE_ADDRESSES}",
                config.address_count()
            ),
        ));
    }
    Ok(())
}

impl<T: Default + Send + Sync> Pool<T> {
    /// A pool that is one member of a cluster: its subpools are created on
    /// ranges claimed from `membership.store` (see the module docs). The
    /// caller has joined the cluster already. The store's ledger counts
    /// addresses in 64-bit integers: a space of more than 2^63 - 1
    /// addresses is an error (field `store`).
    pub fn with_store(config: crate::core::Config, membership: Membership) -> Result<Self, Error> {
        check_store_space(&config)?;
        let mut pool = Pool::new(config);
        pool.cluster = Some(Cluster::new(membership));
        Ok(pool)
    }

    /// Whether the pool is a member of a cluster.
    pub fn has_store(&self) -> bool {
        self.cluster.is_some()
    }

    /// A handle to renew this member's claims from another thread (`None`
    /// without a store); for callers that run the renewal themselves
    /// (`renew_interval` zero).
    pub fn renewal(&self) -> Option<Renewal> {
        self.cluster
            .as_ref()
            .map(|cluster| Renewal(Arc::clone(&cluster.shared)))
    }

    /// At the start of an allocation: fence the subpools of lapsed claims.
    #[inline]
    pub(super) fn fence_if_due(&self) {
        if let Some(cluster) = &self.cluster {
            if cluster.fence_due() {
                self.fence_lapsed(cluster);
            }
        }
    }

    /// Fence every subpool whose claim lapsed, in id order, and drop those
    /// without live leases. Skipped if another thread holds the writer lock
    /// (the next allocation checks again).
    #[cold]
    fn fence_lapsed(&self, cluster: &Cluster) {
        let Some(mut writer) = self.try_lock_writer() else {
            return;
        };
        let shared = &cluster.shared;
        // Cleared first, under the claims' lock: a free that empties a
        // fenced subpool while this runs, and finds the writer lock taken,
        // sets it again under that lock. Either its setting comes after this
        // clearing in the lock's order, or it came before, and then so did
        // its push, which the scan below sees (the lock orders them). (Found
        // by the loom model `a_fence_races_with_the_free_that_empties_the_subpool`:
        // with plain stores, the clearing could land after the setting.)
        shared.set_due(false);
        let now = clock::now();
        let mut subpools: Vec<Arc<Subpool<T>>> = self.intervals.load().subpools.clone();
        subpools.sort_by_key(|subpool| subpool.id);
        for subpool in subpools {
            let Some(epoch) = subpool.epoch else { continue };
            if !subpool.is_fenced() && shared.lapsed(epoch, now) {
                self.fence(&subpool);
            }
            let idle = subpool.free.available() == u64::from(subpool.len());
            if subpool.is_fenced() && idle {
                self.drop_fenced(&mut writer, &subpool, epoch);
            } else if subpool.is_drain_fenced() && idle && subpool.owner.is_none() {
                // Drained and empty, but its claim could not be returned then.
                self.delete_drained(&mut writer, &subpool);
            }
        }
        let claims = shared.lock_claims();
        shared.refresh_earliest(&claims);
    }

    /// Stop allocations from `subpool` for good.
    pub(super) fn fence(&self, subpool: &Subpool<T>) {
        if subpool.fence() {
            self.availability.clear(subpool.id);
            self.fenced_subpools.fetch_add(1, Ordering::AcqRel);
            if let (Some(cluster), Some(epoch)) = (&self.cluster, subpool.epoch) {
                if let Some(claim) = cluster.shared.lock_claims().get_mut(&epoch) {
                    claim.fenced = true;
                }
            }
        }
    }

    /// Remove a fenced subpool without live leases; the store is not told
    /// (it holds, or will hold, the range).
    fn drop_fenced(&self, writer: &mut Writer, subpool: &Arc<Subpool<T>>, epoch: u64) {
        if let Some(cluster) = &self.cluster {
            cluster.shared.lock_claims().remove(&epoch);
        }
        self.fenced_subpools.fetch_sub(1, Ordering::AcqRel);
        self.unpublish(writer, subpool);
        if let Some(cluster) = &self.cluster {
            let claims = cluster.shared.lock_claims();
            cluster.shared.refresh_earliest(&claims);
        }
    }

    /// A free left the fenced `subpool` with every block free: drop it (or,
    /// if the writer lock is busy, let the next allocation's check do it).
    pub(super) fn fenced_subpool_emptied(&self, subpool: &Arc<Subpool<T>>) {
        let (Some(cluster), Some(epoch)) = (&self.cluster, subpool.epoch) else {
            return;
        };
        match self.try_lock_writer() {
            Some(mut writer) if self.is_published(subpool) => {
                self.drop_fenced(&mut writer, subpool, epoch)
            }
            Some(_) => {}
            None => cluster.shared.set_due(true),
        }
    }

    /// [`fenced_subpool_emptied`](Self::fenced_subpool_emptied) for a
    /// subpool whose claim lapsed, with the writer lock held.
    pub(super) fn drop_lapsed(&self, writer: &mut Writer, subpool: &Arc<Subpool<T>>) {
        self.fence(subpool);
        if let Some(epoch) = subpool.epoch {
            self.drop_fenced(writer, subpool, epoch);
        }
    }

    /// Let the next allocation run the fencing step (a drained subpool's
    /// claim could not be returned).
    pub(super) fn retry_fencing(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.shared.set_due(true);
        }
    }

    /// Free blocks of shared subpools that serve no allocation: fenced (their
    /// claim lapsed) or drain-fenced.
    #[inline]
    pub(super) fn fenced_free_blocks(&self) -> u64 {
        self.shared_free_where(&self.fenced_subpools, |subpool| !subpool.serves())
    }

    /// Free blocks of the shared subpools that `which` picks, when `count`
    /// (of such subpools) is not zero: one load, else a scan.
    #[inline]
    pub(super) fn shared_free_where(
        &self,
        count: &AtomicU64,
        which: impl Fn(&Subpool<T>) -> bool,
    ) -> u64 {
        if count.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.shared_free_counted(which)
    }

    /// [`shared_free_where`](Self::shared_free_where) when some subpool is
    /// counted: summed over the snapshot.
    #[cold]
    fn shared_free_counted(&self, which: impl Fn(&Subpool<T>) -> bool) -> u64 {
        self.intervals
            .load()
            .subpools
            .iter()
            .filter(|subpool| subpool.owner.is_none() && which(subpool))
            .map(|subpool| subpool.free.available())
            .sum()
    }

    /// Whether the optional store work is to be skipped now.
    pub(super) fn store_down(&self) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.shared.store_down.load(Ordering::Acquire))
    }

    /// Claim a range for a new subpool: `Ok(None)` when the cluster has none
    /// left. A grant overlapping a subpool still here (or a drained IP) is
    /// returned at once and the claim repeated; a grant of a range this call
    /// already returned ends the call with `Ok(None)` rather than a loop (the
    /// store offers nothing else usable now: `reclaim_delay` near 0), as the
    /// reference model's `Member.claim` does.
    pub(super) fn claim_range(&self) -> Result<Option<Grant>, Error> {
        let cluster = self.cluster.as_ref().expect("a cluster member");
        let shared = &cluster.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let mut returned: Vec<(u128, u128)> = Vec::new();
        loop {
            let start = clock::now();
            let Some(grant) = shared.call(|store| store.claim())? else {
                return Ok(None);
            };
            let (first, count) = (u128::from(grant.first), u128::from(grant.count));
            // Drained IPs are this member's own: a grant holding one is
            // handed back as one that is not free here.
            if self.locally_free(first, count) && !self.drained_set().touches(first, first + count)
            {
                self.track_claim(grant.epoch, start);
                return Ok(Some(grant));
            }
            shared.call(|store| store.release(grant.epoch))?;
            if returned.contains(&(first, count)) {
                return Ok(None);
            }
            returned.push((first, count));
        }
    }

    /// Claim the chunk of the cluster's free range holding `index`, within
    /// this member's bounds `within` (`reserve`; the store has the rule).
    pub(super) fn claim_index(&self, index: u128, within: (u128, u128)) -> Result<ClaimAt, Error> {
        let cluster = self.cluster.as_ref().expect("a cluster member");
        let shared = &cluster.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        // A store numbers at most 2^63 - 1 addresses (the pool checked).
        let narrow = |value: u128| u64::try_from(value).expect("a store's index fits 64 bits");
        let start = clock::now();
        let answer = shared
            .call(|store| store.claim_at(narrow(index), (narrow(within.0), narrow(within.1))))?;
        if let ClaimAt::Granted(grant) = answer {
            self.track_claim(grant.epoch, start);
        }
        Ok(answer)
    }

    /// Track a claim just granted by a request that started at `start`.
    fn track_claim(&self, epoch: u64, start: u64) {
        let cluster = self.cluster.as_ref().expect("a cluster member");
        cluster.shared.track(&[epoch], start);
    }

    /// Whether no subpool here holds any of `first..first + count`.
    fn locally_free(&self, first: u128, count: u128) -> bool {
        let snapshot = self.intervals.load();
        let end = first + count;
        !snapshot
            .subpools
            .iter()
            .any(|s| s.start < end && first < s.end())
    }

    /// Return the claim of an idle subpool being deleted (its free list is
    /// closed). False: the store is down or failed, and the subpool stays.
    pub(super) fn return_claim(&self, subpool: &Subpool<T>) -> bool {
        let (Some(cluster), Some(epoch)) = (&self.cluster, subpool.epoch) else {
            return true;
        };
        let shared = &cluster.shared;
        if shared.store_down.load(Ordering::Acquire) {
            return false;
        }
        if shared.call(|store| store.release(epoch)).is_err() {
            return false;
        }
        let mut claims = shared.lock_claims();
        claims.remove(&epoch);
        shared.refresh_earliest(&claims);
        true
    }

    /// Whether the claim of `subpool` lapsed (the free path asks when a free
    /// empties a subpool).
    pub(super) fn claim_lapsed(&self, subpool: &Subpool<T>) -> bool {
        match (&self.cluster, subpool.epoch) {
            // The per-allocation check first: while it is quiet, no serving
            // claim is lost or past its deadline (the earliest one).
            (Some(cluster), Some(epoch)) => {
                cluster.fence_due() && cluster.shared.lapsed(epoch, clock::now())
            }
            _ => false,
        }
    }

    /// Renew this member's claims now, then fence the lapsed ones; nothing
    /// without a store. The renewal thread does the renewal every
    /// `renew_interval` (the next allocation fences); with no thread the
    /// owner calls this before `claim_ttl` runs out. [`Error::Store`] if the
    /// store fails (claims whose deadline passes meanwhile are fenced).
    pub fn renew(&self) -> Result<(), Error> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        if cluster.shared.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        let result = cluster.shared.renew();
        self.fence_lapsed(cluster);
        result
    }

    /// Close the pool (idempotent): without a store nothing else happens.
    /// With one: stop the renewal, return the claims of the subpools without
    /// live leases and leave the cluster, in one store call. If that fails
    /// the pool is closed all the same and the error returned: its claims
    /// lapse and are held as a dead member's are. The Python binding refuses
    /// every call after this; in Rust a closed member creates no subpool.
    pub fn close(&self) -> Result<(), Error> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let shared = &cluster.shared;
        if shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        cluster.stop_renewing();
        let now = clock::now();
        let mut subpools: Vec<Arc<Subpool<T>>> = self.intervals.load().subpools.clone();
        subpools.sort_by_key(|subpool| subpool.id);
        let idle: Vec<u64> = subpools
            .iter()
            .filter(|s| !s.is_fenced() && s.free.available() == u64::from(s.len()))
            .filter_map(|s| s.epoch)
            .filter(|epoch| !shared.lapsed(*epoch, now))
            .collect();
        // No allocation after close, from any subpool: their claims are
        // returned or left to lapse.
        for subpool in &subpools {
            self.fence(subpool);
        }
        let result = shared.call(|store| store.leave(&idle));
        shared.lock_claims().clear();
        result
    }

    pub(super) fn closed_error(&self) -> Error {
        Error::Closed(format!("pool {:?} is closed", self.config.name()))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::core::store::{Grant, Membership, Store};
    use crate::core::{Error, Pool, PoolSpec};

    /// An in-memory store: first fit over `size` addresses, claims by epoch.
    #[derive(Default)]
    struct Ranges {
        size: u64,
        block: u64,
        epoch: u64,
        claims: BTreeMap<u64, (u64, u64, &'static str)>, // epoch -> (first, count, member)
        held: Vec<(u64, u64)>,
        down: bool,
        calls: Vec<String>,
        lose_on_renew: bool,
    }

    struct Member {
        ranges: Arc<Mutex<Ranges>>,
        name: &'static str,
    }

    impl Store for Member {
        fn claim(&self) -> Result<Option<Grant>, Error> {
            let mut r = self.ranges.lock().unwrap();
            r.calls.push(format!("{} claim", self.name));
            if r.down {
                return Err(Error::Store("down".into()));
            }
            let mut taken: Vec<(u64, u64)> = r.claims.values().map(|c| (c.0, c.1)).collect();
            taken.extend(r.held.iter().copied());
            taken.sort_unstable();
            let mut cursor = 0;
            for (first, count) in taken {
                if first > cursor {
                    break;
                }
                cursor = cursor.max(first + count);
            }
            if cursor >= r.size {
                return Ok(None);
            }
            let count = r.block.min(r.size - cursor);
            r.epoch += 1;
            let epoch = r.epoch;
            r.claims.insert(epoch, (cursor, count, self.name));
            Ok(Some(Grant {
                first: cursor,
                count,
                epoch,
            }))
        }

        fn release(&self, epoch: u64) -> Result<(), Error> {
            let mut r = self.ranges.lock().unwrap();
            r.calls.push(format!("{} release {epoch}", self.name));
            if r.down {
                return Err(Error::Store("down".into()));
            }
            if let Some((first, count, _)) = r.claims.remove(&epoch) {
                r.held.push((first, count));
            }
            Ok(())
        }

        fn renew(&self, epochs: &[u64]) -> Result<Vec<u64>, Error> {
            let mut r = self.ranges.lock().unwrap();
            r.calls.push(format!("{} renew {epochs:?}", self.name));
            if r.down {
                return Err(Error::Store("down".into()));
            }
            if r.lose_on_renew {
                return Ok(Vec::new());
            }
            Ok(epochs.to_vec())
        }

        fn leave(&self, epochs: &[u64]) -> Result<(), Error> {
            let mut r = self.ranges.lock().unwrap();
            r.calls.push(format!("{} leave {epochs:?}", self.name));
            for epoch in epochs {
                if let Some((first, count, _)) = r.claims.remove(epoch) {
                    r.held.push((first, count));
                }
            }
            Ok(())
        }
    }

    /// 16 addresses (10.0.0.1, ports 1000..=1015), claims of 4.
    fn cluster() -> Arc<Mutex<Ranges>> {
        Arc::new(Mutex::new(Ranges {
            size: 16,
            block: 4,
            ..Ranges::default()
        }))
    }

    fn member(ranges: &Arc<Mutex<Ranges>>, name: &'static str, threshold: u64) -> Pool<u32> {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let spec = PoolSpec::new("c", ip, ip)
            .ports(1000, 1015)
            .initial_blocks(4)
            .grow_threshold(threshold);
        let store = Member {
            ranges: Arc::clone(ranges),
            name,
        };
        Pool::with_store(
            spec.build().unwrap(),
            Membership {
                store: Box::new(store),
                claim_ttl: Duration::from_secs(3600),
                renew_interval: Duration::ZERO,
            },
        )
        .unwrap()
    }

    fn calls(ranges: &Arc<Mutex<Ranges>>) -> Vec<String> {
        std::mem::take(&mut ranges.lock().unwrap().calls)
    }

    #[test]
    fn members_share_the_address_space_until_the_cluster_is_full() {
        let ranges = cluster();
        let (a, b) = (member(&ranges, "a", 0), member(&ranges, "b", 0));
        let mut seen = std::collections::HashSet::new();
        for i in 0..8 {
            for pool in [&a, &b] {
                match pool.allocate(i) {
                    Ok(lease) => assert!(seen.insert((lease.ip, lease.port)), "{lease:?}"),
                    Err(error) => panic!("{error:?}"),
                }
            }
        }
        assert_eq!(seen.len(), 16);
        assert!(matches!(a.allocate(99), Err(Error::Exhausted(_))));
        assert!(matches!(b.allocate(99), Err(Error::Exhausted(_))));
        // a's subpools are on the ranges it claimed: 0..4 and 8..12.
        let firsts: Vec<u128> = a.subpools().iter().map(|s| s.first).collect();
        assert_eq!(firsts, vec![0, 8]);
    }

    #[test]
    fn deletion_returns_the_claim_and_a_store_failure_keeps_the_subpool() {
        let ranges = cluster();
        let a = member(&ranges, "a", 0);
        let first: Vec<_> = (0..4).map(|i| a.allocate(i).unwrap()).collect(); // claim 1, then 2
        let second = a.allocate(4).unwrap();
        assert_eq!(calls(&ranges), vec!["a claim", "a claim"]);
        ranges.lock().unwrap().down = true;
        for lease in &first {
            a.free(lease.handle).unwrap(); // the subpool empties; the release fails
        }
        assert_eq!(calls(&ranges), vec!["a release 1"]);
        assert_eq!(a.subpools().len(), 2, "the subpool stays with its claim");
        // While the store is down, optional work is skipped: no store call.
        let again = a.allocate(5).unwrap();
        a.free(again.handle).unwrap();
        assert_eq!(calls(&ranges), Vec::<String>::new());
        ranges.lock().unwrap().down = false;
        a.renew().unwrap(); // a successful call clears store_down
        let again = a.allocate(6).unwrap();
        a.free(again.handle).unwrap(); // empties subpool 0 again: now returned
        assert_eq!(calls(&ranges), vec!["a renew [1, 2]", "a release 1"]);
        assert_eq!(a.subpools().len(), 1);
        a.free(second.handle).unwrap(); // the keep rule keeps the last 4 blocks
        assert_eq!(calls(&ranges), Vec::<String>::new());
    }

    #[test]
    fn a_required_creation_reports_the_store_failure_and_changes_nothing() {
        let ranges = cluster();
        let a = member(&ranges, "a", 0);
        ranges.lock().unwrap().down = true;
        assert!(matches!(a.allocate(1), Err(Error::Store(_))));
        assert!(matches!(a.allocate_many(2, || 1), Err(Error::Store(_))));
        assert!(a.is_empty());
        assert_eq!(a.subpools().len(), 0);
        ranges.lock().unwrap().down = false;
        assert!(a.allocate(1).is_ok());
    }

    #[test]
    fn lost_claims_are_fenced_and_their_subpools_go_when_idle() {
        let ranges = cluster();
        let a = member(&ranges, "a", 0);
        let held: Vec<_> = (0..5).map(|i| a.allocate(i).unwrap()).collect(); // subpools 0 and 1
        let spare = a.allocate(5).unwrap(); // subpool 1
        a.free(spare.handle).unwrap();
        calls(&ranges);
        ranges.lock().unwrap().lose_on_renew = true;
        a.renew().unwrap();
        // Both claims are lost: both subpools are fenced and serve nothing;
        // their leases stay live and can be freed and looked up.
        assert_eq!(a.stats().subpools, 2);
        let lease = &held[0];
        assert!(a.lookup_with(lease.ip, lease.port, |_, d| *d).0.is_some());
        ranges.lock().unwrap().lose_on_renew = false;
        let fresh = a.allocate(9).unwrap(); // a new claim, not the fenced ranges
        assert_eq!(calls(&ranges), vec!["a renew [1, 2]", "a claim"]);
        assert_eq!((fresh.handle.parts().unwrap().1, fresh.port), (2, 1008));
        for lease in held {
            a.free(lease.handle).unwrap();
        }
        // The fenced subpools were dropped without a release.
        assert_eq!(calls(&ranges), Vec::<String>::new());
        let ids: Vec<u32> = a.subpools().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![2]);
        a.free(fresh.handle).unwrap();
    }

    #[test]
    fn close_returns_the_idle_claims_and_leaves() {
        let ranges = cluster();
        let a = member(&ranges, "a", 0);
        // Subpool 0 (claim 1) full; the threshold growth claimed subpool 1 (claim 2), idle.
        let leases: Vec<_> = (0..4).map(|i| a.allocate(i).unwrap()).collect();
        assert_eq!(calls(&ranges), vec!["a claim", "a claim"]);
        a.close().unwrap();
        a.close().unwrap(); // idempotent
        assert_eq!(calls(&ranges), vec!["a leave [2]"]);
        // Closed: no allocation from any subpool, no claim; frees still work.
        assert!(matches!(a.allocate(9), Err(Error::Closed(_))));
        assert!(matches!(a.renew(), Err(Error::Closed(_))));
        assert_eq!(calls(&ranges), Vec::<String>::new());
        for lease in leases {
            a.free(lease.handle).unwrap();
        }
        assert!(a.is_empty());
    }
}
