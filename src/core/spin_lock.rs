//! A spin lock for short critical sections: a flag taken with one CAS
//! (`Acquire`) and released with one plain store (`Release`), so one locked
//! instruction a lock/unlock pair. std's `Mutex` (a futex word) costs two
//! locked RMWs a lock/unlock pair (a `lock cmpxchg` to lock, an `xchg` to unlock, which
//! must see whether a waiter sleeps); this lock has no sleepers to wake, so
//! its release needs no RMW.
//!
//! For short sections only: O(1) work (the users' module docs list what
//! runs under theirs, and the exceptions), never a syscall or a sleep, no
//! reallocation but an occasional amortised growth. A waiter waits on a
//! load of the flag with a [`Backoff`]: [`Backoff::SPINS`] spins, then the
//! processor yielded each round, so a holder that was descheduled gets it
//! back; nobody sleeps.
//!
//! No poisoning: the users keep their data consistent between statements
//! (a panic under the lock leaves a usable value), so a guard dropped by an
//! unwind just releases the lock.
//!
//! Orderings: the acquiring CAS reads the releasing store of the previous
//! holder (`Acquire` on `Release`), so each critical section happens after
//! the one before it. The loom model (`spin_lock/loom.rs`) checks the
//! mutual exclusion, and fails if either ordering is weakened to `Relaxed`.

use std::ops::{Deref, DerefMut};

use crate::core::sync::{AtomicBool, Backoff, CellAccess, DataCell, Ordering};

pub struct SpinLock<T> {
    locked: AtomicBool,
    data: DataCell<T>,
}

// SAFETY: the value is reached only through a guard, and at most one guard
// exists at a time (the flag), so sharing the lock hands `T` from thread to
// thread (hence `T: Send`) but never shares it.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            data: DataCell::new(value),
        }
    }

    /// Take the lock: one CAS when it is free.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard {
            lock: self,
            access: std::mem::ManuallyDrop::new(self.data.access()),
        }
    }

    /// Wait for the flag to be clear (a load, no RMW, while it is set), then
    /// try the CAS again.
    #[cold]
    fn lock_contended(&self) {
        let mut backoff = Backoff::new();
        loop {
            while self.locked.load(Ordering::Relaxed) {
                backoff.wait();
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// The lock, held: the value through `Deref`/`DerefMut`; dropping it
/// releases the lock.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// Ends (dropped by hand) before the releasing store: under loom the
    /// access must be over before the next holder's begins.
    access: std::mem::ManuallyDrop<CellAccess<T>>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock, so no other access to the value
        // exists while the reference (bounded by the guard's borrow) lives.
        unsafe { &*self.access.as_ptr() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the guard is borrowed mutably, so this is
        // the only reference made through it.
        unsafe { &mut *self.access.as_ptr() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and not used after (no reference made
        // through the guard outlives `&mut self`).
        unsafe { std::mem::ManuallyDrop::drop(&mut self.access) };
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(all(loom, test))]
mod loom;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::SpinLock;

    /// Two threads add to the locked value: no increment is lost.
    #[test]
    fn increments_are_not_lost() {
        let lock = SpinLock::new(0u64);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), 20_000);
    }
}
