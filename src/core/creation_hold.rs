//! Test-only: hold subpool creation stopped, with the writer lock held, and
//! show that allocation, freeing and lookup in existing subpools go on.

use std::sync::{Condvar, Mutex};

/// A gate in `Pool::create_subpool`. Disarmed it does nothing; armed, the
/// next creation reports that it entered and waits until released.
#[derive(Default)]
pub struct Hold {
    state: Mutex<HoldState>,
    changed: Condvar,
}

#[derive(Default)]
struct HoldState {
    armed: bool,
    entered: bool,
    released: bool,
}

impl Hold {
    pub fn arm(&self) {
        let mut state = self.state.lock().unwrap();
        *state = HoldState {
            armed: true,
            ..HoldState::default()
        };
    }

    /// Called by the creation path.
    pub fn pause(&self) {
        let mut state = self.state.lock().unwrap();
        if !state.armed {
            return;
        }
        state.armed = false;
        state.entered = true;
        self.changed.notify_all();
        while !state.released {
            state = self.changed.wait(state).unwrap();
        }
    }

    pub fn wait_entered(&self) {
        let mut state = self.state.lock().unwrap();
        while !state.entered {
            state = self.changed.wait(state).unwrap();
        }
    }

    pub fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::mpsc;
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use crate::core::{parse_ipv4, Config, Handle, Pool, PoolSpec};

    /// Only a guard against a hang: the workers need milliseconds.
    const HANG_GUARD: Duration = Duration::from_secs(120);

    #[test]
    fn lock_free_paths_finish_while_creation_is_held() {
        // 256 addresses; subpool 0 has 8 blocks, later subpools 4; growth
        // when an allocation leaves 2 or fewer free blocks.
        let pool: Arc<Pool<u64>> = Arc::new(Pool::new(
            Config::new(PoolSpec {
                name: "hold".into(),
                first_ip: parse_ipv4("10.0.0.1").unwrap(),
                last_ip: parse_ipv4("10.0.0.4").unwrap(),
                prefix: 24,
                ports: (1000, 1063),
                initial_blocks: 8,
                max_blocks: 256,
                subpool_blocks: Some(4),
                grow_threshold: 2,
            })
            .unwrap(),
        ));
        // 12 leases fill subpools 0 and 1; subpool 2 (4 free) exists.
        let mut subpool_zero: Vec<Handle> =
            (0..8).map(|i| pool.allocate(i).unwrap().handle).collect();
        let subpool_one: Vec<Handle> = (8..12).map(|i| pool.allocate(i).unwrap().handle).collect();
        assert_eq!(pool.stats().subpools, 3);

        // The creator's second allocation leaves 2 free blocks: it creates
        // subpool 3 and stops in the creation path, holding the writer lock.
        pool.creation_hold.arm();
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
        pool.creation_hold.wait_entered();
        // Growth is due again (1 free block left): skipped, not waited for.
        subpool_zero.push(pool.allocate(12).unwrap().handle);

        // Workers: one frees subpool 1's leases (allocated on this thread),
        // which empties it (deletion is due: skipped); then all allocate
        // (growth due), look up and free (subpool 1 empties again and again).
        let subpool_one = Arc::new(subpool_one);
        let (done, finished) = mpsc::channel();
        let workers: Vec<_> = (0..3u64)
            .map(|worker| {
                let pool = Arc::clone(&pool);
                let subpool_one = Arc::clone(&subpool_one);
                let done = done.clone();
                thread::spawn(move || {
                    if worker == 0 {
                        for handle in subpool_one.iter() {
                            assert!(pool.free(*handle).unwrap().is_some());
                        }
                    }
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

        pool.creation_hold.release();
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
