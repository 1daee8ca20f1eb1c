//! The synchronisation primitives the core uses, in one place, so that the
//! loom models (`RUSTFLAGS="--cfg loom"`, `make loom`) run the core's own
//! atomic protocols under the model checker.
//!
//! * Atomics, `Arc`, `Mutex`, the data cell and the spin hint are loom's
//!   under `cfg(loom)` and std's otherwise: every protocol built from them
//!   (the free list, the block state word, the availability map, the pool's
//!   counters and its reserve/close handshake) is checked by loom as written.
//! * [`AtomicArc`] publishes an `Arc` for lock-free readers: `arc-swap` in a
//!   normal build. arc-swap's internal protocol is not ours and is not
//!   loom-aware, so under loom it is replaced by a mutex around the `Arc`:
//!   the models then check what the core relies on (a reader keeps the
//!   snapshot it loaded alive; a store publishes a fully built value; a
//!   replaced value is reclaimed when its last holder drops it, which loom's
//!   `Arc` checks for leaks), not arc-swap's own implementation.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
#[cfg(loom)]
pub use loom::sync::{Arc, Mutex, MutexGuard};
pub use std::sync::atomic::Ordering;
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};
pub use std::sync::TryLockError;
#[cfg(not(loom))]
pub use std::sync::{Arc, Mutex, MutexGuard};

/// Let another thread run: used where a thread waits for a step another
/// thread has already committed to (loom must be told, or it would spin).
#[inline]
pub fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// A wait for a step another thread has committed to and not yet made
/// (a push or a take that claimed its place in a ring and has not written
/// it): [`SPINS`](Backoff::SPINS) short spins, then the processor given up
/// each round. The other thread may be preempted (more runnable threads
/// than cores): it cannot finish while this one spins, and a wait that only
/// spun burnt the rest of its time slice (a fifth of the time of two
/// threads sharing one ring, on this loaded 2-core machine, in `perf`).
/// Under loom every round yields.
pub struct Backoff {
    spins: u32,
}

impl Backoff {
    /// About a microsecond of `pause` instructions: far longer than the
    /// few stores a running thread needs to finish its step.
    pub const SPINS: u32 = 64;

    #[inline]
    pub fn new() -> Self {
        Backoff { spins: 0 }
    }

    /// One round of the wait.
    #[inline]
    pub fn wait(&mut self) {
        if self.spins < Self::SPINS {
            self.spins += 1;
            spin_wait();
        } else {
            yield_now();
        }
    }

    /// Under loom, the rounds a wait for a lock's holder is explored for.
    #[cfg(loom)]
    const EXPLORED: u32 = 2;

    /// One round of a wait for a lock's holder to release it (the random
    /// order's lock bit, `free_list/shuffle.rs`). Under loom, a waiter's
    /// third round stops the exploration of the rest of the execution
    /// (`loom::skip_branch`; it runs on, checked, on loom's default
    /// schedule, which runs the holder): with two waiters, loom would
    /// otherwise explore the schedule in which they yield to each other
    /// forever while the holder, runnable, never runs, which no fair
    /// scheduler makes, and never finish.
    #[inline]
    pub fn wait_for_holder(&mut self) {
        #[cfg(loom)]
        if self.spins == Self::EXPLORED {
            loom::skip_branch();
        }
        self.wait();
    }
}

/// Wait (with a [`Backoff`]) until `ready` gives a value. Out of line: the
/// callers try once inline, and most never wait.
#[cold]
#[inline(never)]
pub fn wait_for<R>(mut ready: impl FnMut() -> Option<R>) -> R {
    let mut backoff = Backoff::new();
    loop {
        backoff.wait();
        if let Some(value) = ready() {
            return value;
        }
    }
}

/// Give up the processor (a retry that is not a short spin).
#[inline]
pub fn yield_now() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// A cell whose accesses the caller serialises by a protocol (the block's
/// state word); loom checks that they really are serialised.
#[derive(Debug)]
pub struct DataCell<T> {
    #[cfg(loom)]
    inner: loom::cell::UnsafeCell<T>,
    #[cfg(not(loom))]
    inner: std::cell::UnsafeCell<T>,
}

impl<T> DataCell<T> {
    pub fn new(value: T) -> Self {
        #[cfg(loom)]
        let inner = loom::cell::UnsafeCell::new(value);
        #[cfg(not(loom))]
        let inner = std::cell::UnsafeCell::new(value);
        DataCell { inner }
    }

    /// Run `f` on a shared pointer to the value.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(loom)]
        return self.inner.with(f);
        #[cfg(not(loom))]
        f(self.inner.get())
    }

    /// Run `f` on an exclusive pointer to the value.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(loom)]
        return self.inner.with_mut(f);
        #[cfg(not(loom))]
        f(self.inner.get())
    }
}

/// Exclusive access to a [`DataCell`]'s value for as long as it is held
/// (what a lock's guard keeps): under loom the access spans its whole life,
/// so loom checks every use made through it, not one closure's.
#[derive(Debug)]
pub struct CellAccess<T> {
    #[cfg(loom)]
    inner: loom::cell::MutPtr<T>,
    #[cfg(not(loom))]
    inner: *mut T,
}

impl<T> CellAccess<T> {
    /// The value's address (valid while the cell lives; the holder of the
    /// access serialises its uses of it).
    #[inline]
    pub fn as_ptr(&self) -> *mut T {
        #[cfg(loom)]
        return self.inner.with(|pointer| pointer);
        #[cfg(not(loom))]
        self.inner
    }
}

impl<T> DataCell<T> {
    /// Start an exclusive access to the value, which lasts until the
    /// returned [`CellAccess`] drops (the caller serialises accesses).
    #[inline]
    pub fn access(&self) -> CellAccess<T> {
        #[cfg(loom)]
        let inner = self.inner.get_mut();
        #[cfg(not(loom))]
        let inner = self.inner.get();
        CellAccess { inner }
    }
}

#[cfg(not(loom))]
mod publish {
    use std::sync::Arc;

    /// An atomically replaceable `Option<Arc<T>>` with lock-free loads.
    pub struct AtomicArc<T>(arc_swap::ArcSwapOption<T>);

    /// What [`AtomicArc::load`] returns: keeps the value alive while held.
    pub type Loaded<T> = arc_swap::Guard<Option<Arc<T>>>;

    impl<T> AtomicArc<T> {
        pub fn new(value: Option<Arc<T>>) -> Self {
            AtomicArc(arc_swap::ArcSwapOption::new(value))
        }

        #[inline]
        pub fn load(&self) -> Loaded<T> {
            self.0.load()
        }

        pub fn store(&self, value: Option<Arc<T>>) {
            self.0.store(value);
        }
    }
}

#[cfg(loom)]
mod publish {
    use loom::sync::{Arc, Mutex};

    /// Under loom: a mutex around the `Arc` (see the module documentation).
    pub struct AtomicArc<T>(Mutex<Option<Arc<T>>>);

    /// A clone of the published `Arc`, which keeps the value alive.
    pub struct Loaded<T>(Option<Arc<T>>);

    impl<T> std::ops::Deref for Loaded<T> {
        type Target = Option<Arc<T>>;

        fn deref(&self) -> &Option<Arc<T>> {
            &self.0
        }
    }

    impl<T> AtomicArc<T> {
        pub fn new(value: Option<Arc<T>>) -> Self {
            AtomicArc(Mutex::new(value))
        }

        pub fn load(&self) -> Loaded<T> {
            Loaded(self.0.lock().unwrap().clone())
        }

        pub fn store(&self, value: Option<Arc<T>>) {
            // The guard is a temporary: the old value drops after the unlock.
            let previous = std::mem::replace(&mut *self.0.lock().unwrap(), value);
            drop(previous);
        }
    }
}

pub use publish::{AtomicArc, Loaded};

impl<T> Default for AtomicArc<T> {
    fn default() -> Self {
        AtomicArc::new(None)
    }
}
