//! The interval list (the patent's Figure 7), published as immutable
//! snapshots: the subpools in address order. Free intervals are the gaps
//! between them, so two free intervals are never adjacent by construction.
//! Writers (subpool creation and deletion, serialised by the pool's writer
//! lock) publish a new snapshot through an atomic pointer; readers
//! (`lookup`, `intervals()`) load the current one without a lock, and a
//! deleted subpool's memory lives until the last snapshot or guard holding
//! it is dropped.

use std::ops::Deref;

use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, AtomicArc, Loaded};

/// One element of the interval list: `count` addresses from index `first`,
/// owned by subpool `subpool` or free (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub first: u64,
    pub count: u64,
    pub subpool: Option<u32>,
}

/// One published state of the list.
pub struct Snapshot<T> {
    /// The subpools, ordered by `start`.
    pub subpools: Vec<Arc<Subpool<T>>>,
    /// Each subpool's `start`, in the same order: `owner` searches this
    /// contiguous array instead of following one pointer per probe.
    starts: Box<[u64]>,
    /// How many elements the list has (owned plus free).
    pub length: u64,
}

impl<T: Default> Snapshot<T> {
    fn new(subpools: Vec<Arc<Subpool<T>>>, address_count: u64) -> Self {
        let length = gaps(&subpools, address_count).count() as u64 + subpools.len() as u64;
        let starts = subpools.iter().map(|s| s.start).collect();
        Snapshot {
            subpools,
            starts,
            length,
        }
    }

    /// The subpool holding address `index`, if any.
    #[inline]
    pub fn owner(&self, index: u64) -> Option<&Arc<Subpool<T>>> {
        let position = self.starts.partition_point(|&start| start <= index);
        let candidate = self.subpools.get(position.checked_sub(1)?)?;
        candidate.covers(index).then_some(candidate)
    }

    /// The whole list in address order.
    pub fn intervals(&self, address_count: u64) -> Vec<Interval> {
        let mut out = Vec::with_capacity(self.length as usize);
        let mut cursor = 0;
        for subpool in &self.subpools {
            if subpool.start > cursor {
                out.push(Interval {
                    first: cursor,
                    count: subpool.start - cursor,
                    subpool: None,
                });
            }
            out.push(Interval {
                first: subpool.start,
                count: u64::from(subpool.len()),
                subpool: Some(subpool.id),
            });
            cursor = subpool.start + u64::from(subpool.len());
        }
        if cursor < address_count {
            out.push(Interval {
                first: cursor,
                count: address_count - cursor,
                subpool: None,
            });
        }
        out
    }

    /// The lowest free interval, as `(first, count)` (first fit).
    pub fn first_free(&self, address_count: u64) -> Option<(u64, u64)> {
        gaps(&self.subpools, address_count).next()
    }

    /// The free intervals, as `(first, count)` in address order.
    pub fn gaps(&self, address_count: u64) -> Vec<(u64, u64)> {
        gaps(&self.subpools, address_count).collect()
    }
}

fn gaps<T: Default>(
    subpools: &[Arc<Subpool<T>>],
    address_count: u64,
) -> impl Iterator<Item = (u64, u64)> + '_ {
    let ends = subpools
        .iter()
        .map(|s| s.start)
        .chain(std::iter::once(address_count));
    let starts = std::iter::once(0).chain(subpools.iter().map(|s| s.start + u64::from(s.len())));
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
    address_count: u64,
}

impl<T: Default> IntervalList<T> {
    /// One free interval covering the whole address space.
    pub fn new(address_count: u64) -> Self {
        IntervalList {
            current: AtomicArc::new(Some(Arc::new(Snapshot::new(Vec::new(), address_count)))),
            address_count,
        }
    }

    /// The current snapshot (lock-free).
    #[inline]
    pub fn load(&self) -> SnapshotGuard<T> {
        SnapshotGuard(self.current.load())
    }

    /// Publish the list with `subpool` added. Writer lock held.
    pub fn insert(&self, subpool: Arc<Subpool<T>>) {
        let mut subpools = self.load().subpools.clone();
        let position = subpools.partition_point(|s| s.start < subpool.start);
        subpools.insert(position, subpool);
        self.publish(subpools);
    }

    /// Publish the list with subpool `id` removed (its interval merges with
    /// its free neighbours). Writer lock held.
    pub fn remove(&self, id: u32) {
        let mut subpools = self.load().subpools.clone();
        subpools.retain(|s| s.id != id);
        self.publish(subpools);
    }

    fn publish(&self, subpools: Vec<Arc<Subpool<T>>>) {
        let snapshot = Snapshot::new(subpools, self.address_count);
        self.current.store(Some(Arc::new(snapshot)));
    }
}
