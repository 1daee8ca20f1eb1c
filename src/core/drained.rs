//! Drained IPs (`docs/shapes.md`, "Drain"): the IPs no new lease may come
//! from. An IP's addresses are one run of consecutive indices of the address
//! space (`Space::ip_indices`), so the drained addresses are a few runs; the
//! pool asks here whether a range of indices touches one, where the lowest
//! index outside them lies, and how many drained addresses a range holds.
//! Runs are `[start, end)` and never overlap (they are distinct IPs').
//!
//! The set is immutable: `drain` and `undrain` (under the writer lock)
//! publish a new one, which the lock-free readers (`stats`, the room of an
//! allocation, port-block plans) load.

/// The drained IPs of a pool and their runs of indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    /// `(start, end, ip)`, ascending.
    runs: Vec<(u128, u128, u128)>,
    addresses: u128,
}

impl Drained {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn contains(&self, ip: u128) -> bool {
        self.runs.iter().any(|&(_, _, drained)| drained == ip)
    }

    /// This set with `ip`, whose indices are `[start, end)`.
    pub fn with(&self, ip: u128, (start, end): (u128, u128)) -> Drained {
        let mut runs = self.runs.clone();
        let position = runs.partition_point(|&(a, _, _)| a < start);
        runs.insert(position, (start, end, ip));
        Drained {
            runs,
            addresses: self.addresses + (end - start),
        }
    }

    /// The set of `runs`, `(start, end, ip)`, ascending and disjoint (a
    /// snapshot's drained IPs, whose runs are checked to be so).
    pub fn from_runs(runs: Vec<(u128, u128, u128)>) -> Drained {
        debug_assert!(runs.windows(2).all(|pair| pair[0].1 <= pair[1].0));
        let addresses = runs.iter().map(|&(a, b, _)| b - a).sum();
        Drained { runs, addresses }
    }

    /// This set without `ip`.
    pub fn without(&self, ip: u128) -> Drained {
        let runs: Vec<_> = self
            .runs
            .iter()
            .copied()
            .filter(|&(_, _, drained)| drained != ip)
            .collect();
        let addresses = runs.iter().map(|&(a, b, _)| b - a).sum();
        Drained { runs, addresses }
    }

    /// The drained IPs, ascending (runs are in address order, and so are
    /// their IPs).
    pub fn ips(&self) -> Vec<u128> {
        self.runs.iter().map(|&(_, _, ip)| ip).collect()
    }

    /// How many addresses of the space are on drained IPs.
    pub fn addresses(&self) -> u128 {
        self.addresses
    }

    /// The runs that meet `[first, end)`.
    fn meeting(&self, first: u128, end: u128) -> impl Iterator<Item = (u128, u128)> + '_ {
        let from = self.runs.partition_point(|&(_, b, _)| b <= first);
        self.runs[from..]
            .iter()
            .take_while(move |&&(a, _, _)| a < end)
            .map(|&(a, b, _)| (a, b))
    }

    /// Whether any index of `[first, end)` is on a drained IP.
    pub fn touches(&self, first: u128, end: u128) -> bool {
        self.meeting(first, end).next().is_some()
    }

    /// How many indices of `[first, end)` are on drained IPs.
    pub fn count_in(&self, first: u128, end: u128) -> u128 {
        self.meeting(first, end)
            .map(|(a, b)| b.min(end) - a.max(first))
            .sum()
    }

    /// The lowest index of `[first, end)` on no drained IP.
    pub fn lowest_free(&self, first: u128, end: u128) -> Option<u128> {
        let mut cursor = first;
        for (a, b) in self.meeting(first, end) {
            if a > cursor {
                break;
            }
            cursor = cursor.max(b);
        }
        (cursor < end).then_some(cursor)
    }

    /// The part of `[first, end)` around `index` (on no drained IP) that no
    /// drained run cuts.
    pub fn around(&self, index: u128, first: u128, end: u128) -> (u128, u128) {
        let (mut first, mut end) = (first, end);
        for (a, b) in self.meeting(first, end) {
            if b <= index {
                first = first.max(b);
            } else if a > index {
                end = end.min(a);
                break;
            }
        }
        (first, end)
    }

    /// Whether the run of one IP that starts at `start` is drained.
    pub fn starts_at(&self, start: u128) -> bool {
        self.runs
            .binary_search_by(|&(a, _, _)| a.cmp(&start))
            .is_ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn runs_answer_touches_counts_and_room() {
        let drained = Drained::default().with(7, (10, 14)).with(3, (2, 4));
        assert_eq!(drained.ips(), vec![3, 7]);
        assert_eq!(drained.addresses(), 6);
        assert!(drained.contains(7) && !drained.contains(8));
        assert!(drained.touches(13, 20) && !drained.touches(4, 10));
        assert_eq!(drained.count_in(3, 12), 3);
        assert_eq!(drained.lowest_free(2, 20), Some(4));
        assert_eq!(drained.lowest_free(10, 14), None);
        assert_eq!(drained.lowest_free(0, 20), Some(0));
        assert_eq!(drained.around(6, 0, 20), (4, 10));
        assert_eq!(drained.around(15, 0, 20), (14, 20));
        assert!(drained.starts_at(10) && !drained.starts_at(11));
        let fewer = drained.without(7);
        assert_eq!((fewer.ips(), fewer.addresses()), (vec![3], 2));
        assert!(fewer.without(3).is_empty());
    }
}
