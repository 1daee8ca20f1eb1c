//! Two threads against one, measured in interleaved rounds (run by `cargo
//! bench --bench threads`; writes `target/bench-threads.json` for
//! `benches/report.py`).
//!
//! Criterion's `threads` group times each case for about two seconds, one
//! case after the other; on a shared machine the two cores it gets change
//! from one second to the next, so a ratio of two cases timed seconds apart
//! measures the machine as much as the pool. Here the cases take turns in
//! rounds of a few milliseconds each, and each round's ratios compare
//! cases timed next to each other; the report gives their median.
//!
//! Two worker threads live for the whole run (as a daemon's workers do:
//! a home subpool a worker takes in the shared pool is kept across rounds).
//! The cases, rotated in each round so that none always runs first:
//! * `one`: worker 0 alone on its own pool;
//! * `own`: each worker on its own pool (no line shared between them: the
//!   machine's ceiling for two threads);
//! * `shared`: both workers on one pool.
//!
//! The time of a case is the wall time from the workers' start to the last
//! one's end, over the pairs each worker makes; a ratio is `2 x one /
//! case` (the aggregate throughput of two threads over one's).

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::Instant;

use natpool::Pool;

#[path = "common/warm.rs"]
mod warm;
use warm::warm_pool;

/// Pairs each worker makes in one case of one round (a few milliseconds).
const PAIRS: u64 = 400_000;
const ROUNDS: usize = 40;

const CASES: [&str; 3] = ["one", "own", "shared"];

fn pairs(pool: &Pool<()>) {
    for _ in 0..PAIRS {
        let lease = pool.allocate(()).unwrap();
        pool.free(black_box(lease.handle)).unwrap();
    }
}

/// The pool worker `worker` uses in `case`, if it works in it.
fn pool_for<'a>(
    case: usize,
    worker: usize,
    own: &'a [Pool<()>; 2],
    shared: &'a Pool<()>,
) -> Option<&'a Pool<()>> {
    match (CASES[case], worker) {
        ("one", 0) => Some(&own[0]),
        ("one", _) => None,
        ("own", w) => Some(&own[w]),
        _ => Some(shared),
    }
}

/// The median and the quartiles of `values`.
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |quarter: usize| sorted[sorted.len() * quarter / 4];
    (at(2), at(1), at(3))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not:
    // then one short round, to keep the code building and running.
    let bench = std::env::args().any(|arg| arg == "--bench");
    let rounds = if bench { ROUNDS } else { 1 };
    let own = [warm_pool(), warm_pool()];
    let shared = warm_pool();
    // The case of the current step, for the workers (set before `start`).
    let case = AtomicUsize::new(0);
    let start = Barrier::new(3);
    let end = Barrier::new(3);
    let mut times = vec![Vec::with_capacity(rounds); CASES.len()];
    thread::scope(|scope| {
        for worker in 0..2 {
            let (case, start, end, own, shared) = (&case, &start, &end, &own, &shared);
            scope.spawn(move || loop {
                start.wait();
                let current = case.load(Ordering::Acquire);
                if current == usize::MAX {
                    return;
                }
                if let Some(pool) = pool_for(current, worker, own, shared) {
                    pairs(pool);
                }
                end.wait();
            });
        }
        for round in 0..rounds {
            for step in 0..CASES.len() {
                let current = (round + step) % CASES.len();
                case.store(current, Ordering::Release);
                start.wait();
                let began = Instant::now();
                end.wait();
                times[current].push(began.elapsed().as_secs_f64() * 1e9 / PAIRS as f64);
            }
        }
        case.store(usize::MAX, Ordering::Release);
        start.wait();
    });
    let ratios = |case: usize| -> Vec<f64> {
        (0..rounds)
            .map(|r| 2.0 * times[0][r] / times[case][r])
            .collect()
    };
    let own_ratios = ratios(1);
    let shared_ratios = ratios(2);
    let summary = |values: &[f64]| {
        let (median, low, high) = spread(values);
        format!("{{\"median\": {median:.4}, \"q1\": {low:.4}, \"q3\": {high:.4}}}")
    };
    let ns = |case: usize| spread(&times[case]).0;
    let json = format!(
        "{{\"rounds\": {rounds}, \"pairs_per_worker\": {PAIRS}, \"one_ns\": {:.2}, \"own_ns\": {:.2}, \
         \"shared_ns\": {:.2}, \"own_scaling\": {}, \"shared_scaling\": {}, \"shared_over_own\": {}}}\n",
        ns(0),
        ns(1),
        ns(2),
        summary(&own_ratios),
        summary(&shared_ratios),
        summary(&(0..rounds).map(|r| times[2][r] / times[1][r]).collect::<Vec<_>>()),
    );
    print!("{json}");
    if bench {
        std::fs::create_dir_all("target").unwrap();
        std::fs::write("target/bench-threads.json", json).unwrap();
    }
}
