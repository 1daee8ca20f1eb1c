//! The generator of `order = "random"`: SplitMix64, exactly as the reference
//! model specifies it (`natpool/reference/reuse.py`).
//!
//! Its state after `k` draws is `seed + k * GAMMA` (mod 2^64), so a draw is
//! a load, an add of `GAMMA`, a store and a mix of the new state: no locked
//! instruction. Calls ordered one after another (one thread, a lock, the
//! GIL) see each other's stores, so they get the reference model's
//! sequence. Two draws that overlap in time may read the same state and
//! return the same number; each then picks a position in an array under
//! that array's lock (a draw always happens under its subpool's lock), so a
//! repeated number is a repeated choice, never a broken structure: the
//! order of overlapping calls is any order, as for every structure.

use std::io::Read;

use crate::core::sync::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 {
            state: AtomicU64::new(seed),
        }
    }

    /// The state now (a snapshot's generator field; [`new`](Self::new)
    /// continues from it).
    pub fn state(&self) -> u64 {
        self.state.load(Ordering::Relaxed)
    }

    /// The next output: the state advanced by a load and a store (see the
    /// module docs: overlapping draws may repeat one). `Relaxed`: the state
    /// carries no other data, and ordered calls are ordered by what orders
    /// them (the subpool's lock, the caller's lock, the thread).
    #[inline]
    pub fn next(&self) -> u64 {
        let state = self.state.load(Ordering::Relaxed).wrapping_add(GAMMA);
        self.state.store(state, Ordering::Relaxed);
        mix(state)
    }

    /// A draw mapped onto `0..n` by multiply-shift: `(next() * n) >> 64`.
    #[inline]
    pub fn below(&self, n: usize) -> usize {
        Self::map(self.next(), n)
    }

    /// What the `ahead`-th call of [`below`](Self::below)`(n)` from now
    /// would draw (1: the next), the state left as it is (a guess for a
    /// prefetch: other draws may come first, or with another `n`).
    #[inline]
    pub fn peek_below(&self, ahead: u64, n: usize) -> usize {
        let state = self
            .state
            .load(Ordering::Relaxed)
            .wrapping_add(GAMMA.wrapping_mul(ahead));
        Self::map(mix(state), n)
    }

    #[inline(always)]
    fn map(output: u64, n: usize) -> usize {
        ((u128::from(output) * n as u128) >> 64) as usize
    }
}

/// A seed from the operating system (`/dev/urandom`), for a pool made with
/// `order = "random"` and no seed from Rust. (The Python binding passes
/// `os.urandom(8)` instead, as the reference model does.) Where that file
/// cannot be read, std's per-process random hash keys stand in.
pub fn entropy_seed() -> u64 {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(std::process::id().into());
            hasher.finish()
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The reference model's outputs for seed 1234567 (computed by
    /// `natpool.reference.reuse.SplitMix64(1234567).next()`).
    #[test]
    fn matches_the_reference_model() {
        let rng = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| rng.next()).collect();
        assert_eq!(
            got,
            vec![
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
        let rng = SplitMix64::new(0);
        assert_eq!(
            rng.below(10),
            ((u128::from(mix(GAMMA)) * 10) >> 64) as usize
        );
    }

    /// A peek is the next draw, and leaves it to come.
    #[test]
    fn a_peek_is_the_draw_it_names() {
        let rng = SplitMix64::new(42);
        for n in [1, 2, 7, 1000, usize::MAX] {
            let peeked = rng.peek_below(1, n);
            assert_eq!(rng.peek_below(1, n), peeked);
            assert_eq!(rng.below(n), peeked);
        }
        // Further ahead: the draws after the next, whatever they are.
        let (third, fifth) = (rng.peek_below(3, 1000), rng.peek_below(5, 1000));
        let draws: Vec<usize> = (0..5).map(|_| rng.below(1000)).collect();
        assert_eq!((draws[2], draws[4]), (third, fifth));
    }
}
