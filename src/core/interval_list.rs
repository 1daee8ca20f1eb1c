//! The interval list (the patent's Figure 7), published as immutable
//! snapshots: the subpools in address order. Free intervals are the gaps
//! between them, so two free intervals are never adjacent by construction.
//! Writers (subpool creation and deletion, serialised by the pool's writer
//! lock) publish a new snapshot through an atomic pointer; readers
//! (`lookup`, `intervals()`) load the current one without a lock, and a
//! deleted subpool's memory lives until the last snapshot or guard holding
//! it is dropped.

use std::ops::Deref;

use crate::core::space::Space;
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, AtomicArc, Loaded};

/// One element of the interval list: `count` addresses from index `first`,
/// owned by subpool `subpool` or free (`None`). [`Pool::intervals`]
/// (`crate::Pool::intervals`) shows each element cut at the address
/// space's segment boundaries, so that no record spans a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub first: u128,
    pub count: u128,
    pub subpool: Option<u32>,
}

/// One published state of the list.
pub struct Snapshot<T> {
    /// The subpools, ordered by `start`.
    pub subpools: Vec<Arc<Subpool<T>>>,
    /// Each subpool's `start`, in the same order: `owner` searches this
    /// contiguous array instead of following one pointer per probe.
    starts: Box<[u128]>,
    /// How many records [`intervals`](Self::intervals) shows: the
    /// elements (owned plus free) cut at segment boundaries, counted by the
    /// writer that publishes the snapshot, so that `stats()` stays O(1).
    pub records: u64,
}

impl<T: Default> Snapshot<T> {
    fn new(subpools: Vec<Arc<Subpool<T>>>, space: &Space) -> Self {
        let records = elements(&subpools, space.address_count())
            .map(|(first, count, _)| space.pieces(first, count))
            .sum();
        let starts = subpools.iter().map(|s| s.start).collect();
        Snapshot {
            subpools,
            starts,
            records,
        }
    }

    /// The subpool holding address `index`, if any.
    #[inline]
    pub fn owner(&self, index: u128) -> Option<&Arc<Subpool<T>>> {
        let position = self.starts.partition_point(|&start| start <= index);
        let candidate = self.subpools.get(position.checked_sub(1)?)?;
        candidate.covers(index).then_some(candidate)
    }

    /// The whole list in address order, each element cut at the segment
    /// boundaries of `space`.
    pub fn intervals(&self, space: &Space) -> Vec<Interval> {
        let mut out = Vec::with_capacity(self.records as usize);
        for (first, count, subpool) in elements(&self.subpools, space.address_count()) {
            out.extend(space.split(first, count).map(|(first, count)| Interval {
                first,
                count,
                subpool,
            }));
        }
        out
    }

    /// The lowest free interval, as `(first, count)` (first fit).
    pub fn first_free(&self, address_count: u128) -> Option<(u128, u128)> {
        gaps(&self.subpools, address_count).next()
    }

    /// The free intervals, as `(first, count)` in address order.
    pub fn gaps(&self, address_count: u128) -> Vec<(u128, u128)> {
        gaps(&self.subpools, address_count).collect()
    }
}

/// The elements of the list, owned and free, as `(first, count, subpool)`.
fn elements<T: Default>(
    subpools: &[Arc<Subpool<T>>],
    address_count: u128,
) -> impl Iterator<Item = (u128, u128, Option<u32>)> + '_ {
    let mut free = gaps(subpools, address_count).peekable();
    let mut owned = subpools.iter().peekable();
    std::iter::from_fn(move || match (free.peek(), owned.peek()) {
        (Some(&(first, _)), Some(subpool)) if first < subpool.start => {
            free.next().map(|(first, count)| (first, count, None))
        }
        (_, Some(_)) => owned
            .next()
            .map(|s| (s.start, u128::from(s.len()), Some(s.id))),
        (Some(_), None) => free.next().map(|(first, count)| (first, count, None)),
        (None, None) => None,
    })
}

fn gaps<T: Default>(
    subpools: &[Arc<Subpool<T>>],
    address_count: u128,
) -> impl Iterator<Item = (u128, u128)> + '_ {
    let ends = subpools
        .iter()
        .map(|s| s.start)
        .chain(std::iter::once(address_count));
    let starts = std::iter::once(0).chain(subpools.iter().map(|s| s.start + u128::from(s.len())));
    starts
        .zip(ends)
        .filter(|(start, end)| end > start)
        .map(|(start, end)| (start, end - start))
}

/// A loaded snapshot; the subpools it names stay alive while it is held.
pub struct SnapshotGuard<T>(Loaded<Snapshot<T>>);

impl<T> Deref for SnapshotGuard<T> {
    type Target = Snapshot<T>;

    #[inline]
    fn deref(&self) -> &Snapshot<T> {
        self.0
            .as_ref()
            .expect("the interval list always has a snapshot")
    }
}

/// The published interval list.
pub struct IntervalList<T> {
    current: AtomicArc<Snapshot<T>>,
}

impl<T: Default> IntervalList<T> {
    /// One free interval covering the whole address space.
    pub fn new(space: &Space) -> Self {
        IntervalList {
            current: AtomicArc::new(Some(Arc::new(Snapshot::new(Vec::new(), space)))),
        }
    }

    /// The list of `subpools` (a restored pool's, in address order and
    /// disjoint), published at once.
    pub fn with_subpools(subpools: Vec<Arc<Subpool<T>>>, space: &Space) -> Self {
        IntervalList {
            current: AtomicArc::new(Some(Arc::new(Snapshot::new(subpools, space)))),
        }
    }

    /// The current snapshot (lock-free).
    #[inline]
    pub fn load(&self) -> SnapshotGuard<T> {
        SnapshotGuard(self.current.load())
    }

    /// Publish the list with `subpool` added. Writer lock held.
    pub fn insert(&self, subpool: Arc<Subpool<T>>, space: &Space) {
        let mut subpools = self.load().subpools.clone();
        let position = subpools.partition_point(|s| s.start < subpool.start);
        subpools.insert(position, subpool);
        self.publish(subpools, space);
    }

    /// Publish the list with subpool `id` removed (its interval merges with
    /// its free neighbours). Writer lock held.
    pub fn remove(&self, id: u32, space: &Space) {
        let mut subpools = self.load().subpools.clone();
        subpools.retain(|s| s.id != id);
        self.publish(subpools, space);
    }

    fn publish(&self, subpools: Vec<Arc<Subpool<T>>>, space: &Space) {
        let snapshot = Snapshot::new(subpools, space);
        self.current.store(Some(Arc::new(snapshot)));
    }
}
