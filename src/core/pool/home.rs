//! Home subpools: threads that share one pool stop contending on one free
//! list (issue 13, item 2).
//!
//! The rule. Every allocation call first tries the exact order: the
//! lowest-id shared subpool with a free block, reserved with one strong CAS
//! on its free list's count (`FreeList::try_reserve_up_to`, which never
//! fails spuriously). Only a *lost* CAS, i.e. another thread changed that
//! count between our load and our CAS, which needs two calls that overlap
//! in time, gives the thread a home subpool; so a history whose calls never
//! overlap gets exactly the reference model's order (no CAS is ever lost in
//! it, no thread gets a home). The home is kept across calls, so that a
//! contending thread does not claim and create subpools over and over. A
//! thread holding a home takes from it in every call but one in [`SAMPLE`]
//! (writing no line another thread writes, the subpool loaded pinned, no
//! count touched); the sampled call registers in the pool's in-flight count
//! and takes from the home only if it overlaps another allocation, or the
//! pool's activity counts show another thread's calls since the previous
//! sample, else from the exact place. Holders, and threads without a home,
//! raise their own activity count in one call of [`BUMP`]: a cell of the
//! pool's per-thread tally (`tally.rs`), which no other thread writes; the
//! sampled call sums the cells. The home is released
//! after [`CALM_SAMPLES`] sampled calls in a row whose exact attempt met no
//! contention ("it stopped contending"), when it has no free block left,
//! when its subpool is gone, and when the thread exits.
//!
//! Claim and release. A subpool's [`HomeCell`] holds 0 (no home) or the
//! token of the thread whose home it is (tokens are unique, nonzero, one
//! per thread). A claim is a CAS 0 -> token; a release a CAS token -> 0;
//! only the owner releases (a thread that exits releases its claims from
//! its thread-local destructor, through the cell's `Arc`, which needs no
//! pool). The thread keeps (pool address, subpool id, cell) and validates
//! it on every use like any id: the slot must hold a subpool with that very
//! cell, still claimed by the thread; a deleted subpool, or a new one under
//! the same id, fails it and the entry is dropped.
//!
//! A claimed subpool is kept by the deletion rule (a free that empties it
//! leaves it), else a home would be deleted after each of its thread's
//! allocate + free pairs. So the release and a free that empties the
//! subpool shake hands, Dekker-style: the free pushes (the count's
//! `fetch_add`), then a `SeqCst` fence, then reads the cell; the release
//! CASes the cell to 0, then a `SeqCst` fence, then reads the count. One of
//! them sees the other's write, so an emptied, unclaimed subpool always
//! meets a deletion attempt (both may try: `try_close` lets one win). The
//! loom model `loom::home` checks it.
//!
//! Where a home comes from: the thread's current one if it has a free
//! block; else the first shared subpool (in address order, among the first
//! [`SCAN`]) other than the contended one that has a free block and that
//! no thread claims; else, without a cluster store and below `capacity`
//! (`max_blocks`), a new subpool created for it (writer lock by `try_lock`
//! only: a busy writer means no home this time), claimed before it is
//! published. If none, the call goes back to the exact loop, retrying the
//! lowest-id subpool; that loop is unchanged, and reports `Exhausted` only
//! when no subpool has a free block under the writer lock, so exhaustion
//! stays exact: a home only ever *adds* a place to take from.
//!
//! Under loom the thread-local part is off (homes are never used): the
//! pool's loom models keep their state space, and `loom::home` models the
//! cell's handshake itself.

// Under loom only the cell is used (by its model).
#![cfg_attr(loom, allow(dead_code))]

use crate::core::sync::{Arc, AtomicU64, Ordering};

#[cfg(all(loom, test))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(loom)]
use ::loom::sync::atomic::fence;
#[cfg(not(loom))]
use std::sync::atomic::fence;

/// Sampled calls in a row whose exact attempt met no contention after
/// which a thread releases its home.
pub(crate) const CALM_SAMPLES: u32 = 16;

/// In a contended pool, a thread that holds a home there looks at the pool
/// (registers in the in-flight count, tries the exact order) in one call of
/// this many; the others take from its home and write no shared line.
pub(crate) const SAMPLE: u32 = 64;

/// A thread in a contended pool, with a home there or without, adds one
/// to its activity count in the pool (`Tally::active`) every this many
/// calls there, so that the others' sampled calls see it active though it
/// registers nowhere.
pub(crate) const BUMP: u32 = 16;

/// Subpools a thread looks at (address order) for an unclaimed home before
/// it creates one.
const SCAN: usize = 64;

/// An atomic alone on its cache line (pair): the allocations' in-flight
/// count is written by every allocation of a contended pool.
#[repr(align(128))]
struct Padded(AtomicU64);

/// The pool-wide part of homes.
pub(crate) struct PoolHomes {
    /// Nonzero from the pool's first lost reservation CAS on: from then on
    /// allocations look at homes (never before, so a pool used by one
    /// thread at a time pays one load per allocation).
    contended: Padded,
    /// Allocations inside their reservation and take (registered ones: the
    /// sampled calls of threads holding a home).
    in_flight: Padded,
}

impl PoolHomes {
    pub(crate) fn new() -> Self {
        PoolHomes {
            contended: Padded(AtomicU64::new(0)),
            in_flight: Padded(AtomicU64::new(0)),
        }
    }
}

/// An allocation's registration in the in-flight count, for its
/// reservation and take; `overlaps`: another registered allocation was in
/// flight when it registered (their calls overlap in time), or the call is
/// one of a home's unsampled calls (`sticky`, not registered); `home`: the
/// thread's home in the pool, if it holds one.
pub(crate) struct Visit<'a> {
    in_flight: Option<&'a AtomicU64>,
    pub(crate) overlaps: bool,
    pub(crate) sticky: bool,
    pub(crate) home: Option<HomeRef>,
}

/// A thread's home in a pool as one call sees it: the subpool's id, the
/// address of its claim cell (the thread's entry keeps the cell alive, so
/// no other cell has that address meanwhile) and the thread's token.
#[derive(Clone, Copy)]
pub(crate) struct HomeRef {
    id: u32,
    cell: usize,
    token: u64,
}

impl Visit<'_> {
    /// Whether the call registered: a sampled call of a thread holding a
    /// home in the pool, the only calls that count calm.
    #[inline(always)]
    pub(crate) fn registered(&self) -> bool {
        self.in_flight.is_some()
    }
}

impl Drop for Visit<'_> {
    fn drop(&mut self) {
        if let Some(in_flight) = self.in_flight {
            in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Whose home a subpool is: 0 nobody's, else the owner's thread token.
pub(crate) struct HomeCell(Arc<AtomicU64>);

impl HomeCell {
    pub(crate) fn new() -> Self {
        HomeCell(Arc::new(AtomicU64::new(0)))
    }

    /// Claim the subpool as the home of `token` (nonzero) if nobody's.
    pub(crate) fn claim(&self, token: u64) -> bool {
        self.0
            .compare_exchange(0, token, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether `token` claims it (only `token`'s thread writes `token`).
    pub(crate) fn owned_by(&self, token: u64) -> bool {
        self.0.load(Ordering::Relaxed) == token
    }

    /// Release `token`'s claim, then (after a `SeqCst` fence) whether
    /// `idle()`: the releaser's half of the handshake with a free that
    /// emptied the subpool while it was claimed (see the module docs).
    pub(crate) fn release_then(&self, token: u64, idle: impl FnOnce() -> bool) -> bool {
        release_cell(&self.0, token);
        fence(Ordering::SeqCst);
        idle()
    }

    /// The free's half: called after the push that left every block free;
    /// whether nobody claims the subpool (then the free may delete it).
    /// The pushing thread's own home needs no handshake: only this thread
    /// releases it, later in its own order, and that release re-checks (a
    /// thread always sees its own last write to the cell, and no other
    /// thread writes a cell it claims), so the fence is skipped.
    pub(crate) fn unclaimed_after_push(&self) -> bool {
        let own = own_token();
        if own != 0 && self.0.load(Ordering::Relaxed) == own {
            return false;
        }
        fence(Ordering::SeqCst);
        self.0.load(Ordering::SeqCst) == 0
    }

    /// Whether `cell` is this subpool's cell.
    fn is(&self, cell: &Arc<AtomicU64>) -> bool {
        Arc::ptr_eq(&self.0, cell)
    }

    /// Whether this is the cell `home` names, claimed by its thread: the
    /// subpool loaded from the home's slot is still that home.
    #[inline(always)]
    fn serves(&self, home: HomeRef) -> bool {
        Arc::as_ptr(&self.0) as usize == home.cell && self.owned_by(home.token)
    }
}

/// Release `token`'s claim on `cell`, if it still holds it.
fn release_cell(cell: &AtomicU64, token: u64) {
    let _ = cell.compare_exchange(token, 0, Ordering::SeqCst, Ordering::Relaxed);
}

#[cfg(not(loom))]
mod local {
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// The most pools a thread keeps a home in; the oldest goes first.
    pub(super) const MAX_HOMES: usize = 8;

    static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

    /// A home a thread holds: in the pool at address `pool`, subpool `id`
    /// with claim cell `cell`; `calm`: calls since its last contention.
    pub(super) struct Home {
        pub(super) pool: usize,
        pub(super) id: u32,
        pub(super) cell: Arc<AtomicU64>,
        pub(super) calm: u32,
        /// Calls since the home was claimed (one in `SAMPLE` is sampled).
        pub(super) calls: u32,
        /// The sum of the pool's activity counts at the last sampled call
        /// (0: none yet; the sum then includes this thread's own raise).
        pub(super) seen: u64,
    }

    pub(super) struct Homes {
        pub(super) token: u64,
        pub(super) homes: Vec<Home>,
    }

    impl Drop for Homes {
        /// The thread exits: its claims are released (the subpools stay
        /// until a free empties them again; they serve allocations).
        fn drop(&mut self) {
            for home in &self.homes {
                super::release_cell(&home.cell, self.token);
            }
        }
    }

    thread_local! {
        pub(super) static HOMES: RefCell<Homes> = RefCell::new(Homes {
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
            homes: Vec::new(),
        });
        /// Whether `HOMES` holds any home: one load on the hot path.
        pub(super) static ANY: Cell<bool> = const { Cell::new(false) };
        /// Calls of this thread without a home in a contended pool.
        pub(super) static CALLS: Cell<u32> = const { Cell::new(0) };
        /// `HOMES`' token once the thread claimed a home (0 before).
        pub(super) static TOKEN: Cell<u64> = const { Cell::new(0) };
    }
}

/// The calling thread's home token, 0 if it never claimed a home (always
/// 0 under loom, where homes are off).
fn own_token() -> u64 {
    #[cfg(not(loom))]
    return local::TOKEN.try_with(|token| token.get()).unwrap_or(0);
    #[cfg(loom)]
    0
}

#[cfg(not(loom))]
mod pool_side {
    use super::local::{Home, ANY, CALLS, HOMES, MAX_HOMES, TOKEN};
    use super::{release_cell, HomeRef, Visit, BUMP, CALM_SAMPLES, SAMPLE, SCAN};

    /// What a call of a thread in a contended pool is (`home_tick`).
    enum Tick {
        /// No home here.
        Homeless,
        /// Unsampled: it takes from the home.
        Sticky(HomeRef),
        /// Sampled; `others`: another thread holding a home here called
        /// since this thread's previous sample.
        Sampled { others: bool, home: HomeRef },
    }
    use crate::core::epoch;
    use crate::core::free_list::{At, Reserve};
    use crate::core::pool::Pool;
    use crate::core::subpool::Subpool;
    use crate::core::sync::{Arc, Ordering};

    impl<T: Default + Send + Sync> Pool<T> {
        fn home_key(&self) -> usize {
            self as *const Self as usize
        }

        /// Reserve up to `want` blocks in this thread's home in the pool,
        /// counted as taken: the home `pinned` (a call's [`Visit`]) if it still
        /// has a free block, else the cold way ([`home_reserve_cold`], below).
        /// The subpool's id, the count, where its takes start and the free
        /// blocks left; `None`: no home serves (the caller takes the exact
        /// order).
        ///
        /// [`home_reserve_cold`]: Self::home_reserve_cold
        #[inline(always)]
        pub(crate) fn home_reserve(
            &self,
            want: u64,
            pinned: Option<HomeRef>,
            contended: Option<u32>,
            sticky: bool,
        ) -> Option<(u32, u64, At, u64)> {
            if let Some(home) = pinned {
                if let Some(reserved) = self.home_reserve_pinned(home, want) {
                    return Some(reserved);
                }
            }
            self.home_reserve_cold(want, contended, sticky)
        }

        /// Reserve up to `want` blocks in the home subpool `home`, counted as
        /// taken, loaded pinned: no count of the subpool or its cell is
        /// touched. `None` when the slot no longer holds that home, or it has
        /// no free block (the cold path then lets the home go).
        #[inline(always)]
        fn home_reserve_pinned(&self, home: HomeRef, want: u64) -> Option<(u32, u64, At, u64)> {
            let slot = self.slots.get(home.id as usize)?;
            epoch::pin(|guard| {
                let subpool = slot.load(guard)?;
                if !subpool.home.serves(home) {
                    return None;
                }
                match subpool.free.reserve_up_to(want, &self.rng) {
                    Reserve::Taken {
                        count,
                        last,
                        left,
                        at,
                    } => {
                        self.reserved(subpool, count, last);
                        Some((home.id, count, at, left))
                    }
                    Reserve::Empty | Reserve::Closed => None,
                }
            })
        }

        /// The subpool published under `id`, as an owned reference (for the
        /// cold paths, which work across pins).
        pub(super) fn subpool_at(&self, id: u32) -> Option<Arc<Subpool<T>>> {
            let slot = self.slots.get(id as usize)?;
            epoch::pin(|guard| slot.load(guard).cloned())
        }

        /// Register an allocation's reservation and take in the in-flight
        /// count, once the pool was contended (see [`Visit`]).
        #[inline(always)]
        pub(crate) fn home_visit(&self) -> Visit<'_> {
            if self.homes.contended.0.load(Ordering::Relaxed) == 0 {
                return Visit {
                    in_flight: None,
                    overlaps: false,
                    sticky: false,
                    home: None,
                };
            }
            self.home_visit_contended()
        }

        /// [`home_visit`](Self::home_visit) in a pool that was contended:
        /// a thread holding a home here takes from it without registering,
        /// but in one call of [`SAMPLE`], which registers (and so counts
        /// towards the home's release when calm).
        #[inline(never)]
        fn home_visit_contended(&self) -> Visit<'_> {
            let (others, home) = match self.home_tick() {
                Tick::Sticky(home) => {
                    return Visit {
                        in_flight: None,
                        overlaps: true,
                        sticky: true,
                        home: Some(home),
                    }
                }
                Tick::Sampled { others, home } => (others, Some(home)),
                Tick::Homeless => {
                    self.homeless_tick();
                    return Visit {
                        in_flight: None,
                        overlaps: false,
                        sticky: false,
                        home: None,
                    };
                }
            };
            let in_flight = &self.homes.in_flight.0;
            // The count's RMWs are totally ordered: a nonzero count before
            // ours is a call that registered before us and has not left,
            // so ours overlaps it in time (no other ordering needed).
            let before = in_flight.fetch_add(1, Ordering::Relaxed);
            let overlaps = before > 0 || others;
            if overlaps && home.is_some() {
                self.home_contended();
            }
            Visit {
                in_flight: Some(in_flight),
                overlaps,
                sticky: false,
                home,
            }
        }

        /// A call of a thread without a home here, in a contended pool: it
        /// registers nowhere (it takes the exact order whatever the others
        /// do), but raises its activity count in one call of [`BUMP`], so
        /// that the sampled calls of threads holding a home see it.
        #[inline(always)]
        fn homeless_tick(&self) {
            let calls = CALLS.with(|calls| {
                let n = calls.get().wrapping_add(1);
                calls.set(n);
                n
            });
            if calls % BUMP == 0 {
                self.tally.active();
            }
        }

        /// A sampled call overlapped another: this thread's home in this
        /// pool restarts its calm count.
        #[cold]
        fn home_contended(&self) {
            let key = self.home_key();
            let _ = HOMES.try_with(|homes| {
                let mut homes = homes.borrow_mut();
                if let Some(home) = homes.homes.iter_mut().find(|h| h.pool == key) {
                    home.calm = 0;
                }
            });
        }

        /// Count a call of this thread's home in this pool, if it holds
        /// one (one in [`BUMP`] raises its activity count); a sampled call
        /// compares the sum of the pool's activity counts with the sum at
        /// the previous sample, less this thread's own raises: more means
        /// another thread called meanwhile (it registers in no in-flight
        /// count while unsampled, so this is how it is seen).
        fn home_tick(&self) -> Tick {
            if !ANY.with(|any| any.get()) {
                return Tick::Homeless;
            }
            let key = self.home_key();
            HOMES
                .try_with(|homes| {
                    let homes = &mut *homes.borrow_mut();
                    let Some(home) = homes.homes.iter_mut().find(|h| h.pool == key) else {
                        return Tick::Homeless;
                    };
                    let here = HomeRef {
                        id: home.id,
                        cell: Arc::as_ptr(&home.cell) as usize,
                        token: homes.token,
                    };
                    home.calls = home.calls.wrapping_add(1);
                    if home.calls % BUMP != 0 {
                        return Tick::Sticky(here);
                    }
                    self.tally.active();
                    if home.calls % SAMPLE != 0 {
                        return Tick::Sticky(here);
                    }
                    // Each cell only grows, and each is read after this
                    // thread's last read of it: the sum never goes back.
                    let now = self.tally.activity();
                    let own = u64::from(SAMPLE / BUMP);
                    let others = home.seen != 0 && now.wrapping_sub(home.seen) > own;
                    home.seen = now;
                    Tick::Sampled { others, home: here }
                })
                .unwrap_or(Tick::Homeless)
        }

        /// A call's exact attempt met no contention: count it towards the
        /// release of this thread's home in this pool.
        #[inline(always)]
        pub(crate) fn home_calm(&self) {
            if ANY.with(|any| any.get()) {
                self.home_calm_slow();
            }
        }

        #[cold]
        fn home_calm_slow(&self) {
            let key = self.home_key();
            // `try_with`: a call from a thread-local destructor, after this
            // one's ran, finds no homes (and needs none).
            let released = HOMES.try_with(|homes| {
                let mut homes = homes.borrow_mut();
                let token = homes.token;
                let i = homes.homes.iter().position(|h| h.pool == key)?;
                homes.homes[i].calm += 1;
                if homes.homes[i].calm < CALM_SAMPLES {
                    return None;
                }
                let home = homes.homes.swap_remove(i);
                ANY.with(|any| any.set(!homes.homes.is_empty()));
                Some((home, token))
            });
            if let Ok(Some((home, token))) = released {
                self.release_home(&home, token);
            }
        }

        /// Release `home`; if its subpool is there and every block of it
        /// is free, apply the deletion rule a free that emptied it skipped.
        fn release_home(&self, home: &Home, token: u64) {
            // Cold: an owned reference, not a pin across the release.
            let slot = self.subpool_at(home.id);
            match slot.as_ref() {
                Some(subpool) if subpool.home.is(&home.cell) => {
                    let total = u64::from(subpool.len());
                    let idle = subpool.home.release_then(token, || {
                        subpool.free.has_free() && subpool.free.available() == total
                    });
                    if idle {
                        self.delete_if_idle(subpool);
                    }
                }
                _ => release_cell(&home.cell, token),
            }
        }

        /// Reserve up to `want` blocks in this thread's home, counted as
        /// taken (the subpool's id, and as [`home_reserve`]). `contended`:
        /// the reservation of the exact order lost its CAS in that subpool,
        /// and a thread without a home (or whose home has no free block)
        /// claims one, or creates it; `None`: the call overlaps another, or
        /// is unsampled (`sticky`), and only a home the thread holds serves.
        /// A lost CAS or a proven overlap restarts the home's calm count; an
        /// unsampled call does not. `None` back: no home has a free block
        /// (the caller takes the exact order).
        ///
        /// [`home_reserve`]: Pool::home_reserve
        #[cold]
        pub(super) fn home_reserve_cold(
            &self,
            want: u64,
            contended: Option<u32>,
            sticky: bool,
        ) -> Option<(u32, u64, At, u64)> {
            // No home for a call from a thread-local destructor after this
            // thread's homes were dropped (their `with` would panic).
            if self.has_store() || HOMES.try_with(|_| ()).is_err() {
                return None;
            }
            if contended.is_some() && self.homes.contended.0.load(Ordering::Relaxed) == 0 {
                self.homes.contended.0.store(1, Ordering::Relaxed);
            }
            let key = self.home_key();
            let (token, current) = HOMES.with(|homes| {
                let mut homes = homes.borrow_mut();
                let token = homes.token;
                let i = homes.homes.iter().position(|h| h.pool == key);
                let current = i.map(|i| {
                    if !sticky {
                        homes.homes[i].calm = 0;
                    }
                    (homes.homes[i].id, Arc::clone(&homes.homes[i].cell))
                });
                (token, current)
            });
            if let Some((id, cell)) = current {
                if let Some(subpool) = self.subpool_at(id).as_ref() {
                    if subpool.home.is(&cell) && subpool.home.owned_by(token) {
                        if let Some((count, at, left)) = self.reserve_home(subpool, want) {
                            return Some((subpool.id, count, at, left));
                        }
                    }
                }
                // Gone, or nothing free in it: released; another is sought.
                let home = self.forget_home(key);
                if let Some(home) = home {
                    self.release_home(&home, token);
                }
            }
            let contended = contended?;
            let snapshot = self.intervals.load();
            for subpool in snapshot.subpools.iter().take(SCAN) {
                if subpool.owner.is_some()
                    || subpool.id == contended
                    || !subpool.free.has_free()
                    || !subpool.home.claim(token)
                {
                    continue;
                }
                let home = self.remember_home(key, subpool);
                if let Some((count, at, left)) = self.reserve_home(subpool, want) {
                    return Some((subpool.id, count, at, left));
                }
                self.forget_home(key);
                self.release_home(&home, token);
            }
            drop(snapshot);
            let subpool = self.create_home(token)?;
            let home = self.remember_home(key, &subpool);
            if let Some((count, at, left)) = self.reserve_home(&subpool, want) {
                return Some((subpool.id, count, at, left));
            }
            self.forget_home(key);
            self.release_home(&home, token);
            None
        }

        /// Reserve up to `want` blocks of the home `subpool`, counted (the
        /// count, where its takes start, and the free blocks left).
        fn reserve_home(&self, subpool: &Subpool<T>, want: u64) -> Option<(u64, At, u64)> {
            match subpool.free.reserve_up_to(want, &self.rng) {
                Reserve::Taken {
                    count,
                    last,
                    at,
                    left,
                } => {
                    self.reserved(subpool, count, last);
                    Some((count, at, left))
                }
                Reserve::Empty | Reserve::Closed => {
                    self.refresh(subpool.id);
                    None
                }
            }
        }

        /// Note `subpool` (just claimed) as this thread's home in the pool
        /// at `key`; a copy of the entry for its release.
        fn remember_home(&self, key: usize, subpool: &Subpool<T>) -> Home {
            let cell = Arc::clone(&subpool.home.0);
            HOMES.with(|homes| {
                let mut homes = homes.borrow_mut();
                let token = homes.token;
                if homes.homes.len() >= MAX_HOMES {
                    // The oldest pool's claim goes without its pool at hand:
                    // that subpool stays until a free empties it again.
                    let oldest = homes.homes.remove(0);
                    release_cell(&oldest.cell, token);
                }
                homes.homes.push(Home {
                    pool: key,
                    id: subpool.id,
                    cell: Arc::clone(&cell),
                    calm: 0,
                    calls: 0,
                    seen: 0,
                });
                ANY.with(|any| any.set(true));
                TOKEN.with(|own| own.set(token));
            });
            Home {
                pool: key,
                id: subpool.id,
                cell,
                calm: 0,
                calls: 0,
                seen: 0,
            }
        }

        /// Drop this thread's entry for the pool at `key`, if any.
        fn forget_home(&self, key: usize) -> Option<Home> {
            HOMES.with(|homes| {
                let mut homes = homes.borrow_mut();
                let i = homes.homes.iter().position(|h| h.pool == key)?;
                let home = homes.homes.swap_remove(i);
                ANY.with(|any| any.set(!homes.homes.is_empty()));
                Some(home)
            })
        }

        /// A new shared subpool claimed by `token` before it is published:
        /// made as threshold growth makes one (the lowest free addresses,
        /// `subpool_blocks` of them, within `capacity`), only if the writer
        /// lock is free and the memory pool exists.
        fn create_home(&self, token: u64) -> Option<Arc<Subpool<T>>> {
            let capacity = self.config.capacity();
            if self.blocks.load(Ordering::Acquire) >= capacity {
                return None;
            }
            let mut writer = self.try_lock_writer()?;
            let blocks = self.blocks.load(Ordering::Acquire);
            if !writer.created || blocks >= capacity {
                return None;
            }
            let (first, free) = self.first_fit()?;
            let count = u128::from(self.config.subpool_blocks())
                .min(free)
                .min(u128::from(capacity - blocks)) as u32;
            let (subpool, claimed) = self
                .publish_with(&mut writer, first, count, None, None, |subpool| {
                    subpool.home.claim(token)
                })
                .ok()?;
            self.availability.set(subpool.id);
            debug_assert!(claimed, "nobody else sees a subpool before it is published");
            Some(subpool)
        }
    }
}

#[cfg(loom)]
impl<T: Default + Send + Sync> crate::core::pool::Pool<T> {
    /// Homes are off under loom (see the module docs).
    #[inline(always)]
    pub(crate) fn home_calm(&self) {}

    pub(crate) fn home_reserve(
        &self,
        _want: u64,
        _pinned: Option<HomeRef>,
        _contended: Option<u32>,
        _sticky: bool,
    ) -> Option<(u32, u64, crate::core::free_list::At, u64)> {
        None
    }

    #[inline(always)]
    pub(crate) fn home_visit(&self) -> Visit<'_> {
        let _ = &self.homes;
        Visit {
            in_flight: None,
            overlaps: false,
            sticky: false,
            home: None,
        }
    }
}
