//! The home rule's sampling, on one thread, so deterministic: once a lost
//! CAS gave the thread a home, it takes from it in all but one call of
//! `SAMPLE`; each sampled call that meets no contention takes the exact
//! place and counts as calm; `CALM_SAMPLES` of them give the home back,
//! and every call is exact again. A thread without a home is seen by the
//! holder's sampled calls through its activity count: its calls keep the
//! home.

use std::net::Ipv4Addr;

use crate::core::config::PoolSpec;
use crate::core::pool::home::{CALM_SAMPLES, SAMPLE};
use crate::core::pool::{Lease, Pool};

fn subpool_of(pool: &Pool<u64>) -> u32 {
    let lease = pool.allocate(0).unwrap();
    let (_, id, _) = lease.handle.parts().unwrap();
    pool.free(lease.handle).unwrap();
    id
}

/// A pool of one IP and 256 ports in subpools of 64.
fn pool() -> Pool<u64> {
    let ip = Ipv4Addr::new(10, 0, 0, 1);
    let spec = PoolSpec::new("homes", ip, ip)
        .ports(1000, 1255)
        .initial_blocks(64)
        .subpool_blocks(64)
        .seed(1);
    Pool::<u64>::new(spec.build().unwrap())
}

/// One lease kept live in subpool 0 of `pool` (so that it never empties:
/// the deletion rule would drop it, the home being enough to keep
/// `initial_blocks`), and this thread's home in `pool` (homes are keyed by
/// the pool's address: the pool must not move after), made as another
/// thread's overlapping call would make it: this thread lost the
/// reservation CAS in subpool 0. The kept lease and the home's id.
fn keep_one_and_take_a_home(pool: &Pool<u64>) -> (Lease, u32) {
    let kept = pool.allocate(0).unwrap();
    assert_eq!(kept.handle.parts().unwrap().1, 0);
    let (id, count, at, _) = pool
        .home_reserve(1, None, Some(0), false)
        .expect("a home is created");
    assert_ne!(id, 0);
    assert_eq!(count, 1);
    let home = pool.subpool_at(id).unwrap();
    let lease = pool.take_reserved(&home, at, 0, None);
    pool.free(lease.handle).unwrap();
    (kept, id)
}

#[test]
fn a_home_serves_unsampled_calls_until_calm_samples_give_it_back() {
    let pool = pool();
    let (kept, home) = keep_one_and_take_a_home(&pool);
    let calls = u64::from(SAMPLE * CALM_SAMPLES);
    for call in 1..=calls {
        let expected = if call % u64::from(SAMPLE) == 0 {
            0 // sampled: no other call in flight, the exact place
        } else {
            home
        };
        assert_eq!(subpool_of(&pool), expected, "call {call}");
    }
    // Given back after the last calm sample: exact from now on.
    for call in 0..2 * u64::from(SAMPLE) {
        assert_eq!(subpool_of(&pool), 0, "call {call} after the release");
    }
    pool.free(kept.handle).unwrap();
}

#[test]
fn calls_of_a_thread_without_a_home_keep_the_home_of_another() {
    let pool = pool();
    let (kept, home) = keep_one_and_take_a_home(&pool);

    // Between every two sampled calls of this thread, another thread
    // (without a home: it takes the exact place) makes as many calls.
    let calls = u64::from(2 * SAMPLE * CALM_SAMPLES);
    for call in 1..=calls {
        if call % u64::from(SAMPLE) == 1 {
            let other = std::thread::scope(|scope| {
                scope
                    .spawn(|| (0..SAMPLE).map(|_| subpool_of(&pool)).collect::<Vec<_>>())
                    .join()
                    .unwrap()
            });
            assert!(other.iter().all(|&id| id == 0), "the other thread is exact");
        }
        // The first sample has no earlier one to compare with: calm.
        let expected = if call == u64::from(SAMPLE) { 0 } else { home };
        assert_eq!(subpool_of(&pool), expected, "call {call}");
    }
    pool.free(kept.handle).unwrap();
}
