//! Epoch-based reclamation with an asymmetric barrier: how the lock-free
//! side reads a subpool slot without a per-call guard, and how the writer
//! side frees a deleted subpool without waiting for running calls.
//!
//! * A thread *pins* ([`pin`]) by storing the current global epoch into its
//!   own cache-padded participant slot, then a *light barrier*; it unpins by
//!   storing 0. Both are plain stores (no locked instruction). Pins nest: an
//!   inner pin finds its slot non-zero and leaves it alone.
//! * A [`Slot`] holds an `Arc` that readers borrow for as long as they are
//!   pinned ([`Slot::load`]). The writer (serialised by its caller's lock)
//!   replaces it ([`Slot::store`]) and hands the old value to a [`Retired`]
//!   list, tagged with the epoch it was retired in (the epoch is advanced
//!   right after the unpublish).
//! * [`Retired::collect`] issues the *heavy barrier*, then reads every
//!   participant's pin, and drops the values retired in an epoch older than
//!   every pin. It never waits: what is still pinned stays listed for the
//!   next writer pass (or the pool's drop).
//!
//! The barriers: on Linux the heavy barrier is
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`, which runs a full memory
//! barrier on every CPU running a thread of this process, so the light
//! barrier is only a compiler fence. Where membarrier is not available
//! (non-Linux, or the kernel refuses the registration: ENOSYS, EPERM,
//! EINVAL), both barriers are `fence(SeqCst)`; the choice is made once, when
//! the first participant registers, and the pin side reads it as a static.
//!
//! Why a reader never sees a freed value (the argument `docs/design.md`
//! spells out): the reader does *pin store; light barrier; load slot*, the
//! writer *unpublish; advance epoch; heavy barrier; read pins*. The two
//! barriers act as a pair of `SeqCst` fences (membarrier guarantees that
//! each other thread behaves as if it executed a full fence at some point
//! during the call), so either the writer's read sees the reader's pin (at
//! an epoch no newer than the retirement: the value stays listed), or the
//! reader's load comes after the unpublish and finds the new value. A pin
//! at a newer epoch read the advanced epoch (Acquire, against the
//! advance's Release), so its load comes after the unpublish as well. The
//! pin and unpin stores are Release: a writer whose read sees either one
//! (or any later pin of that thread) sees everything the earlier pinned
//! section did to the value happen before it drops the value.
//!
//! Under loom (`--cfg loom`) the light barrier is `fence(SeqCst)` and the
//! heavy barrier too: that is exactly what membarrier guarantees (the light
//! side behaves as if it had a full fence whenever the heavy barrier runs),
//! so the models (`epoch/loom.rs`) check the protocol as the Linux build
//! runs it.
//!
//! Participants: one per thread (a thread-local), in one global registry;
//! a thread's participant is released when the thread exits and reused by
//! the next thread that registers, so the registry's size is bounded by the
//! number of threads alive at once.

#[cfg(not(loom))]
use std::cell::Cell;
use std::cell::OnceCell;
use std::marker::PhantomData;
use std::ptr;

use crossbeam_utils::CachePadded;

use crate::core::sync::{
    fence, Arc, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering,
};

/// One thread's pin: 0 when not pinned, else the epoch it pinned at.
struct Participant {
    pin: CachePadded<AtomicU64>,
    /// Held by a live thread (a released participant is reused).
    in_use: AtomicBool,
    /// Its place in the registry, fixed ([`thread_index`]).
    index: usize,
}

impl Participant {
    /// The pin, read by its owner thread, the only one that writes it.
    #[inline(always)]
    fn own_pin(&self) -> u64 {
        #[cfg(not(loom))]
        return self.pin.load(Ordering::Relaxed);
        // SAFETY (loom's `unsync_load`: every write of the value happens
        // before the read): only the owner thread stores the pin, and a
        // reused participant's last store (its release) happens before the
        // registration that hands it over (the registry's mutex, and the
        // Acquire load of `in_use`). Under loom a plain read is not a
        // scheduling point: a nested pin adds nothing to the models.
        #[cfg(loom)]
        unsafe {
            self.pin.unsync_load()
        }
    }
}

/// The global epoch and the participants.
struct Domain {
    /// Starts at 1 (0 is "not pinned"); advanced once per retirement.
    epoch: CachePadded<AtomicU64>,
    participants: Mutex<Vec<Arc<Participant>>>,
    /// `participants.len()`, for readers without the lock ([`thread_count`]).
    registered: AtomicUsize,
}

impl Domain {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Domain {
            epoch: CachePadded::new(AtomicU64::new(1)),
            participants: Mutex::new(Vec::new()),
            registered: AtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Domain {
            epoch: CachePadded::new(AtomicU64::new(1)),
            participants: Mutex::new(Vec::new()),
            registered: AtomicUsize::new(0),
        }
    }

    /// A participant for the calling thread: a released one, or a new one.
    fn register(&self) -> Arc<Participant> {
        barrier::init();
        let mut participants = self
            .participants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Under the lock: only a registering thread sets `in_use`.
        if let Some(free) = participants
            .iter()
            .find(|p| !p.in_use.load(Ordering::Acquire))
        {
            free.in_use.store(true, Ordering::Relaxed);
            return Arc::clone(free);
        }
        let participant = Arc::new(Participant {
            pin: CachePadded::new(AtomicU64::new(0)),
            in_use: AtomicBool::new(true),
            index: participants.len(),
        });
        participants.push(Arc::clone(&participant));
        self.registered.store(participants.len(), Ordering::Release);
        participant
    }

    /// The oldest epoch any participant is pinned at (`u64::MAX`: none).
    fn oldest_pin(&self) -> u64 {
        let participants = self
            .participants
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        participants
            .iter()
            .map(|p| p.pin.load(Ordering::Acquire))
            .filter(|&pin| pin != 0)
            .min()
            .unwrap_or(u64::MAX)
    }
}

#[cfg(not(loom))]
static DOMAIN: Domain = Domain::new();

#[cfg(loom)]
::loom::lazy_static! {
    static ref DOMAIN: Domain = Domain::new();
}

/// The calling thread's participant, registered on its first pin and
/// released when the thread exits.
struct Local {
    participant: OnceCell<Arc<Participant>>,
}

impl Local {
    #[inline]
    fn participant(&self) -> &Participant {
        self.registered()
    }

    /// The thread's participant, registered on first use.
    fn registered(&self) -> &Arc<Participant> {
        self.participant.get_or_init(|| {
            let participant = DOMAIN.register();
            #[cfg(not(loom))]
            CURRENT.with(|current| current.set(Arc::as_ptr(&participant)));
            participant
        })
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(participant) = self.participant.get() {
            // Pins from now on (other thread-locals' destructors) take a
            // participant of their own: this one is about to be reused.
            #[cfg(not(loom))]
            CURRENT.with(|current| current.set(ptr::null()));
            release(participant);
        }
    }
}

/// Give a participant back (its thread is done with it).
fn release(participant: &Participant) {
    participant.pin.store(0, Ordering::Release);
    participant.in_use.store(false, Ordering::Release);
}

#[cfg(not(loom))]
thread_local! {
    static LOCAL: Local = const {
        Local {
            participant: OnceCell::new(),
        }
    };
}

#[cfg(loom)]
::loom::thread_local! {
    static LOCAL: Local = Local {
        participant: OnceCell::new(),
    };
}

// The hot path's view of `LOCAL`: its participant as a plain pointer, in a
// `const` thread-local without a destructor (one load, no state check);
// null before the thread registers and after its `Local` is dropped.
#[cfg(not(loom))]
thread_local! {
    static CURRENT: Cell<*const Participant> = const { Cell::new(ptr::null()) };
}

/// Proof that the calling thread is pinned: values loaded from a [`Slot`]
/// with it stay alive while it is borrowed. Only [`pin`] makes one.
pub struct Guard {
    /// Not `Send`: the pin is the thread's.
    _pinned: PhantomData<*const ()>,
}

/// Restores the participant's pin when the pinned section ends (also on a
/// panic): the outermost pin stores 0, an inner one leaves the pin as is.
struct Pinned<'a> {
    participant: &'a Participant,
    outermost: bool,
}

impl<'a> Pinned<'a> {
    #[inline]
    fn enter(participant: &'a Participant) -> Self {
        let outermost = participant.own_pin() == 0;
        if outermost {
            let epoch = DOMAIN.epoch.load(Ordering::Acquire);
            participant.pin.store(epoch, Ordering::Release);
            barrier::light();
        }
        Pinned {
            participant,
            outermost,
        }
    }
}

impl Drop for Pinned<'_> {
    #[inline]
    fn drop(&mut self) {
        if self.outermost {
            self.participant.pin.store(0, Ordering::Release);
        }
    }
}

/// The calling thread's participant index: a small number no other thread
/// has until this thread exits (then its participant, and the index, pass
/// to the next thread that registers, through the registry's lock, which
/// orders the last holder's writes before the next holder's reads).
/// Per-thread cells are indexed by it (`tally.rs`). `None` before the
/// thread's first pin, and in thread-local destructors after its own ran.
#[inline(always)]
pub fn thread_index() -> Option<usize> {
    #[cfg(not(loom))]
    {
        let current = CURRENT.with(Cell::get);
        if current.is_null() {
            return None;
        }
        // SAFETY: as in `pin`: a non-null `CURRENT` is this thread's live
        // participant (the registry never frees one).
        Some(unsafe { (*current).index })
    }
    #[cfg(loom)]
    LOCAL.try_with(|local| local.participant().index).ok()
}

/// How many participant indices exist: every [`thread_index`] is below it
/// (an index is registered before its thread uses it, Release; Acquire).
pub fn thread_count() -> usize {
    DOMAIN.registered.load(Ordering::Acquire)
}

/// Run `f` pinned: what it loads from a [`Slot`] is not dropped before it
/// returns. No locked instruction (see the module documentation). `f` is
/// called from one place, so that its captures are not gathered in memory
/// for a slow path.
#[inline]
pub fn pin<R>(f: impl FnOnce(&Guard) -> R) -> R {
    let holder = Holder::current();
    // Dropped before `holder` (declared after it): unpinned, then released.
    let _pinned = Pinned::enter(holder.participant());
    f(&Guard {
        _pinned: PhantomData,
    })
}

/// The participant a pin uses: the thread's own, or, for a call from
/// another thread-local's destructor after the thread's own `Local` was
/// dropped, one for this call only, released when the holder is dropped.
enum Holder {
    /// The thread's participant (see `CURRENT`).
    #[cfg(not(loom))]
    Own(*const Participant),
    #[cfg(loom)]
    Own(Arc<Participant>),
    Temporary(Arc<Participant>),
}

impl Holder {
    #[inline(always)]
    fn current() -> Self {
        #[cfg(not(loom))]
        {
            let current = CURRENT.with(Cell::get);
            if !current.is_null() {
                return Holder::Own(current);
            }
        }
        Self::slow()
    }

    /// Through the thread-local `Local`, registering the thread's
    /// participant on its first pin (always the path under loom); a
    /// temporary participant when the thread-local is gone.
    #[cfg_attr(not(loom), cold)]
    fn slow() -> Self {
        let own = LOCAL.try_with(|local| {
            #[cfg(not(loom))]
            return Holder::Own(local.participant());
            #[cfg(loom)]
            Holder::Own(Arc::clone(local.registered()))
        });
        own.unwrap_or_else(|_| Holder::Temporary(DOMAIN.register()))
    }

    #[inline(always)]
    fn participant(&self) -> &Participant {
        match self {
            // SAFETY: `CURRENT`, or `Local::participant`, gave this pointer:
            // the participant this thread's `Local` registered (an `Arc` the
            // static registry also holds and never removes, so it is never
            // freed), live and this thread's until `Local` is dropped, which
            // no pin outlives (a pin ends before its call returns).
            #[cfg(not(loom))]
            Holder::Own(participant) => unsafe { &**participant },
            #[cfg(loom)]
            Holder::Own(participant) => participant,
            Holder::Temporary(participant) => participant,
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Holder::Temporary(participant) = self {
            release(participant);
        }
    }
}

/// What a slot points to: the `Arc` is boxed so that a reader borrows it
/// as `&Arc<T>` (what the pool's calls take) through the slot's pointer,
/// without touching its count.
#[allow(clippy::redundant_allocation)]
type Owned<T> = Box<Arc<T>>;

/// An `Option<Arc<T>>` that pinned readers load without touching its count
/// and that one writer at a time (under the caller's lock) replaces.
pub struct Slot<T> {
    /// A `Box<Arc<T>>` from `Box::into_raw`, or null.
    ptr: AtomicPtr<Arc<T>>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

// SAFETY: the slot owns an `Arc<T>` and hands out `&Arc<T>` to any thread:
// exactly what `Arc<T>: Send + Sync` (`T: Send + Sync`) allows.
unsafe impl<T: Send + Sync> Send for Slot<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Slot<T> {}

impl<T> Slot<T> {
    /// The value, borrowed for as long as the caller is pinned.
    #[inline]
    pub fn load<'g>(&'g self, _guard: &'g Guard) -> Option<&'g Arc<T>> {
        let value = self.ptr.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here came from `Box::into_raw` in
        // `store` (Acquire: the box and its `Arc` are fully written). A box
        // taken out of the slot goes to a `Retired` list, which drops it
        // only when no participant is pinned at an epoch that could have
        // loaded it (the module documentation's argument); `_guard` proves
        // this thread is pinned for `'g`, so the box outlives the borrow.
        unsafe { value.as_ref() }
    }

    /// Publish `value`; the value it replaces goes to `retired`. The
    /// caller serialises the stores (the pool's writer lock).
    pub fn store(&self, value: Option<Arc<T>>, retired: &mut Retired<T>) {
        let new = value.map_or(ptr::null_mut(), |arc| Box::into_raw(Box::new(arc)));
        let old = self.ptr.swap(new, Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: `old` came from `Box::into_raw` in an earlier `store`
            // and is no longer reachable from the slot: this is its only
            // owner now (readers may still borrow it: `retire` defers the
            // drop past them).
            retired.retire(unsafe { Box::from_raw(old) });
        }
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        let value = self.ptr.load(Ordering::Acquire);
        if !value.is_null() {
            // SAFETY: from `Box::into_raw` in `store`; `&mut self`: no
            // reader borrows it any more.
            drop(unsafe { Box::from_raw(value) });
        }
    }
}

/// Values taken out of [`Slot`]s, each with the epoch it was retired in,
/// until no pinned thread can hold them. Dropping the list drops them all:
/// its owner (the pool's writer state) is dropped only when no call on the
/// pool runs.
pub struct Retired<T> {
    values: Vec<(u64, Owned<T>)>,
}

impl<T> Default for Retired<T> {
    fn default() -> Self {
        Retired { values: Vec::new() }
    }
}

impl<T> Retired<T> {
    /// Values still listed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// List `value`, just unpublished, and advance the epoch past it.
    fn retire(&mut self, value: Owned<T>) {
        // AcqRel: a pin that reads the advanced epoch also sees the
        // unpublish, which came before.
        let epoch = DOMAIN.epoch.fetch_add(1, Ordering::AcqRel);
        self.values.push((epoch, value));
    }

    /// Drop the values no pinned thread can hold; never waits.
    pub fn collect(&mut self) {
        if self.values.is_empty() || !barrier::heavy() {
            return;
        }
        let oldest = DOMAIN.oldest_pin();
        self.values.retain(|&(epoch, _)| epoch >= oldest);
    }
}

/// The barrier pair (see the module documentation).
mod barrier {
    #[cfg(not(loom))]
    use std::sync::atomic::{compiler_fence, AtomicU8};

    use super::{fence, Ordering};

    #[cfg(not(loom))]
    const UNDECIDED: u8 = 0;
    #[cfg(not(loom))]
    const MEMBARRIER: u8 = 1;
    #[cfg(not(loom))]
    const FENCES: u8 = 2;

    /// How the barriers are made: decided once, by [`init`].
    #[cfg(not(loom))]
    static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

    #[cfg(not(loom))]
    static INIT: std::sync::Once = std::sync::Once::new();

    /// Decide the mode (registering for membarrier where it exists). Every
    /// participant calls it before its first pin, the writer before its
    /// first heavy barrier (`Once`: both then read the decided mode).
    pub(super) fn init() {
        #[cfg(not(loom))]
        INIT.call_once(|| {
            let mode = if membarrier::register() {
                MEMBARRIER
            } else {
                FENCES
            };
            MODE.store(mode, Ordering::Relaxed);
        });
    }

    /// The pin side's barrier, after the pin store.
    #[inline(always)]
    pub(super) fn light() {
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        #[cfg(not(loom))]
        if MODE.load(Ordering::Relaxed) == MEMBARRIER {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The writer side's barrier, before it reads the pins. `false` if it
    /// failed (then nothing may be reclaimed this time).
    pub(super) fn heavy() -> bool {
        #[cfg(loom)]
        {
            fence(Ordering::SeqCst);
            true
        }
        #[cfg(not(loom))]
        {
            init();
            if MODE.load(Ordering::Relaxed) == MEMBARRIER {
                membarrier::run()
            } else {
                fence(Ordering::SeqCst);
                true
            }
        }
    }

    #[cfg(all(not(loom), target_os = "linux"))]
    mod membarrier {
        // The kernel's ABI (linux/membarrier.h).
        const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

        fn call(command: libc::c_long) -> bool {
            // SAFETY: membarrier takes (cmd, flags, cpu_id) integers and
            // touches no memory of ours; an unknown command fails cleanly.
            unsafe { libc::syscall(libc::SYS_membarrier, command, 0 as libc::c_long, 0) == 0 }
        }

        /// Register the process for private expedited barriers.
        pub(super) fn register() -> bool {
            call(CMD_REGISTER_PRIVATE_EXPEDITED)
        }

        /// A full barrier on every CPU running a thread of this process.
        /// Refused for want of registration (a forked child might be): the
        /// process registers and the barrier is retried once; if it still
        /// fails, nothing is reclaimed this time.
        pub(super) fn run() -> bool {
            call(CMD_PRIVATE_EXPEDITED)
                || (call(CMD_REGISTER_PRIVATE_EXPEDITED) && call(CMD_PRIVATE_EXPEDITED))
        }
    }

    #[cfg(all(not(loom), not(target_os = "linux")))]
    mod membarrier {
        pub(super) fn register() -> bool {
            false
        }

        pub(super) fn run() -> bool {
            false
        }
    }
}

#[cfg(all(loom, test))]
mod loom;

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread;

    use super::{pin, Retired, Slot, DOMAIN};

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_value_retired_while_pinned_is_dropped_by_a_later_collect() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = Slot::default();
        let mut retired = Retired::default();
        slot.store(Some(Arc::new(Counted(Arc::clone(&drops)))), &mut retired);
        pin(|guard| {
            let value = slot.load(guard).expect("published");
            slot.store(None, &mut retired);
            retired.collect();
            // Still borrowed by this pinned thread: kept.
            assert_eq!(value.0.load(Ordering::SeqCst), 0);
            assert_eq!(retired.len(), 1);
            // Nested pins keep the outer pin.
            pin(|_| ());
            retired.collect();
            assert_eq!(retired.len(), 1);
        });
        // Other tests' threads share the epoch and may be pinned a moment.
        for _ in 0..10_000 {
            retired.collect();
            if retired.len() == 0 {
                break;
            }
            thread::yield_now();
        }
        assert_eq!(retired.len(), 0);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    /// A pin from a thread-local destructor that runs after the thread's
    /// own `Local` was dropped (registered before it, so destroyed after
    /// it): a temporary participant, which sees the value and is released.
    #[test]
    fn a_pin_from_a_late_thread_local_destructor_uses_a_temporary_participant() {
        struct Late(Arc<Slot<u64>>, Arc<AtomicUsize>);
        impl Drop for Late {
            fn drop(&mut self) {
                let seen = pin(|guard| self.0.load(guard).map(|value| **value));
                let local_gone = super::LOCAL.try_with(|_| ()).is_err();
                if seen == Some(7) && local_gone {
                    self.1.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
        }
        let slot = Arc::new(Slot::default());
        let mut retired = Retired::default();
        slot.store(Some(Arc::new(7)), &mut retired);
        let done = Arc::new(AtomicUsize::new(0));
        let (slot2, done2) = (Arc::clone(&slot), Arc::clone(&done));
        thread::spawn(move || {
            // `LATE`'s destructor is registered first, so it runs last.
            LATE.with(|late| *late.borrow_mut() = Some(Late(slot2, done2)));
            pin(|_| ());
        })
        .join()
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 1);
        slot.store(None, &mut retired);
        retired.collect();
    }

    #[test]
    fn an_exited_thread_releases_its_participant() {
        let participant = thread::spawn(|| {
            pin(|_| ());
            super::LOCAL.with(|local| Arc::clone(local.participant.get().unwrap()))
        })
        .join()
        .unwrap();
        // Released (unpinned; the registry's and this test's references
        // are left), unless another test's thread registered it since.
        let reused = participant.in_use.load(Ordering::SeqCst);
        assert!(reused || participant.pin.load(Ordering::SeqCst) == 0);
        assert!(reused || Arc::strong_count(&participant) == 2);
        assert!(DOMAIN.participants.lock().unwrap().len() < 1024);
    }
}
