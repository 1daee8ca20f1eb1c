//! Test-only: stop one pool's next subpool creation, with the writer lock
//! held, to show that the lock-free side goes on meanwhile. Production
//! types carry nothing for it: the creation path calls
//! [`creation_started`] only in `cfg(test)` builds, and the hook is armed
//! for one pool, named by its address, so tests running in parallel on
//! other pools never meet it.

use std::sync::{Condvar, Mutex, MutexGuard};

use crate::core::pool::Pool;

struct State {
    /// The armed pool's address; 0 when disarmed.
    pool: usize,
    entered: bool,
    released: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    pool: 0,
    entered: false,
    released: false,
});
static CHANGED: Condvar = Condvar::new();

fn state() -> MutexGuard<'static, State> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn address<T>(pool: &Pool<T>) -> usize {
    pool as *const Pool<T> as usize
}

/// Called by `Pool::create_subpool`: if `pool` is armed, report that the
/// creation entered and wait until the hold is released.
pub(super) fn creation_started<T>(pool: &Pool<T>) {
    let mut state = state();
    if state.pool == 0 || state.pool != address(pool) {
        return;
    }
    state.pool = 0;
    state.entered = true;
    CHANGED.notify_all();
    while !state.released {
        state = CHANGED
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// An armed hold on one pool's next creation; released when dropped.
pub(crate) struct CreationHold(());

impl CreationHold {
    /// Arm the hook for `pool`'s next subpool creation (one pool at a time).
    pub(crate) fn arm<T>(pool: &Pool<T>) -> Self {
        let mut state = state();
        assert_eq!(state.pool, 0, "one creation hold at a time");
        *state = State {
            pool: address(pool),
            entered: false,
            released: false,
        };
        CreationHold(())
    }

    /// Wait until the creation has entered the hold.
    pub(crate) fn wait_entered(&self) {
        let mut state = state();
        while !state.entered {
            state = CHANGED
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

impl Drop for CreationHold {
    fn drop(&mut self) {
        let mut state = state();
        state.pool = 0;
        state.released = true;
        CHANGED.notify_all();
    }
}
