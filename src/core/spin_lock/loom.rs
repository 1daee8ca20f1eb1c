//! loom models of the spin lock (`src/core/spin_lock.rs`): mutual exclusion
//! of threads incrementing a plain (non-atomic) counter, the lock's own
//! value and a cell beside it. loom reports any two accesses to a cell that
//! are not ordered by happens-before: with either ordering of the lock
//! weakened to `Relaxed` (the acquiring CAS, the releasing store), these
//! models fail. Run with `make loom`.

use crate::core::loom_support::spawn_with;
use crate::core::spin_lock::SpinLock;
use crate::core::sync::DataCell;
use loom::sync::Arc;

/// Two threads (one spawned, the main one) each add one to the lock's
/// value, a read then a write under the lock: the sections never overlap,
/// each sees the one before it, and no increment is lost. (Two contenders:
/// with three, the model exceeded loom's branch limit, its scheduler able
/// to keep running the waiters, cf. tokio-rs/loom#53.)
#[test]
fn two_threads_increment_the_locked_value() {
    fn add(lock: &SpinLock<u64>) -> u64 {
        let mut value = lock.lock();
        let seen = *value;
        *value = seen + 1;
        seen
    }

    loom::model(|| {
        let lock = Arc::new(SpinLock::new(0u64));
        let other = spawn_with(&lock, add);
        let mine = add(&lock);
        let theirs = other.join().unwrap();
        let mut seen = [mine, theirs];
        seen.sort_unstable();
        assert_eq!(seen, [0, 1], "each section saw the one before it");
        assert_eq!(*lock.lock(), 2);
    });
}

/// The lock guards data outside it: two threads increment a separate cell
/// twice each, under a `SpinLock<()>`, releasing in between.
#[test]
fn two_threads_increment_a_cell_beside_the_lock() {
    struct Shared {
        lock: SpinLock<()>,
        counter: DataCell<u64>,
    }
    // SAFETY: `counter` is accessed only under `lock`.
    unsafe impl Sync for Shared {}

    fn add(shared: &Shared) {
        let _held = shared.lock.lock();
        // SAFETY: under the lock, the only access to the counter.
        shared.counter.with_mut(|counter| unsafe { *counter += 1 });
    }

    loom::model(|| {
        let shared = Arc::new(Shared {
            lock: SpinLock::new(()),
            counter: DataCell::new(0),
        });
        let other = spawn_with(&shared, |shared| {
            add(shared);
            add(shared);
        });
        add(&shared);
        add(&shared);
        other.join().unwrap();
        let _held = shared.lock.lock();
        // SAFETY: under the lock.
        assert_eq!(shared.counter.with(|counter| unsafe { *counter }), 4);
    });
}
