//! A growable array whose elements never move: segment `k` holds `2^k`
//! elements and is created once, under the caller's lock, then read without
//! one. Used for subpool slots and availability bitmaps, which grow with the
//! number of subpools and are read on every allocation.
//!
//! A segment is published once through std's `OnceLock`. Under loom (which
//! has no `OnceLock`) the first [`LOOM_SEGMENTS`] segments exist from the
//! start, which is all the models' tiny pools use: the models check the
//! protocols on the elements, not `OnceLock`'s.

#[cfg(not(loom))]
use std::sync::OnceLock;

#[cfg(not(loom))]
const SEGMENTS: usize = 34;

#[cfg(loom)]
pub const LOOM_SEGMENTS: usize = 4;

pub struct SegVec<T> {
    #[cfg(not(loom))]
    segments: [OnceLock<Box<[T]>>; SEGMENTS],
    #[cfg(loom)]
    segments: Vec<Box<[T]>>,
}

fn locate(index: usize) -> (usize, usize) {
    let k = (usize::BITS - 1 - (index + 1).leading_zeros()) as usize;
    (k, index + 1 - (1 << k))
}

#[cfg(not(loom))]
impl<T: Default> SegVec<T> {
    pub fn new() -> Self {
        SegVec {
            segments: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Make `index` addressable. Call with the writer's lock held.
    pub fn ensure(&self, index: usize) {
        let (last, _) = locate(index);
        for (k, segment) in self.segments.iter().enumerate().take(last + 1) {
            segment.get_or_init(|| (0..1usize << k).map(|_| T::default()).collect());
        }
    }

    /// The element at `index`, if its segment exists.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        let (k, offset) = locate(index);
        self.segments.get(k)?.get().map(|segment| &segment[offset])
    }
}

#[cfg(loom)]
impl<T: Default> SegVec<T> {
    pub fn new() -> Self {
        let segments = (0..LOOM_SEGMENTS)
            .map(|k| (0..1usize << k).map(|_| T::default()).collect())
            .collect();
        SegVec { segments }
    }

    pub fn ensure(&self, index: usize) {
        assert!(
            locate(index).0 < LOOM_SEGMENTS,
            "loom models use at most {LOOM_SEGMENTS} segments"
        );
    }

    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        let (k, offset) = locate(index);
        self.segments.get(k).map(|segment| &segment[offset])
    }
}

impl<T: Default> Default for SegVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_indices_without_gaps() {
        let mut seen = 0;
        for i in 0..1000 {
            let (k, off) = locate(i);
            assert!(off < 1 << k);
            assert_eq!((1 << k) - 1 + off, i);
            seen += 1;
        }
        assert_eq!(seen, 1000);
    }

    #[test]
    fn grows_on_demand_and_keeps_values() {
        let v: SegVec<std::sync::atomic::AtomicU32> = SegVec::new();
        assert!(v.get(0).is_none());
        v.ensure(5);
        v.get(5)
            .unwrap()
            .store(7, std::sync::atomic::Ordering::Relaxed);
        v.ensure(100);
        assert_eq!(
            v.get(5).unwrap().load(std::sync::atomic::Ordering::Relaxed),
            7
        );
        assert!(v.get(100).is_some());
        assert!(v.get(1000).is_none());
    }
}
