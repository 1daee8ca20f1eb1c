//! The address space (`docs/shapes.md`): the (ip, port) pairs of a pool's
//! ranges, less its exclusions, ordered ip-major and port-minor and numbered
//! contiguously from 0. Excluded addresses are not numbered.
//!
//! The space is kept as *segments*: maximal runs of consecutive addresses,
//! where (ip, `ports.high`) is followed by (ip + 1, `ports.low`). A gap
//! between ranges or an exclusion ends a segment. Memory is per segment,
//! never per address: a /16 excluded from a /8 is three segments at most.
//! `address` and `index` binary-search the segments by index and by
//! address. Indices and counts are `u128` and exact (an IPv6 /32 with 64,512
//! ports has 2^96 x 64,512 addresses); IPs are `u128` whatever the family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::core::error::Error;

/// The address family of a pool (one per pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family and the integer of an address.
    pub fn of(ip: IpAddr) -> (Family, u128) {
        match ip {
            IpAddr::V4(ip) => (Family::V4, u128::from(u32::from(ip))),
            IpAddr::V6(ip) => (Family::V6, u128::from(ip)),
        }
    }

    /// The address of this family whose integer is `value` (in range).
    pub fn ip(self, value: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }

    /// The address bits: 32 or 128.
    pub fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// 4 or 6.
    pub fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }
}

/// One exclusion as given, before validation: every port of
/// `first..=last`, or (`ports`) the ports `low..=high` of them. Port bounds
/// are wide so that out-of-range input is reported, not truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WideExclusion {
    pub family: Family,
    pub first: u128,
    pub last: u128,
    pub ports: Option<(i128, i128)>,
}

/// A maximal run of consecutive addresses: `count` indices from `start`,
/// from (`ip`, `port`) to (`last_ip`, `last_port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: u128,
    count: u128,
    ip: u128,
    port: u16,
    last_ip: u128,
    last_port: u16,
}

impl Segment {
    fn end(&self) -> u128 {
        self.start + self.count
    }
}

/// The validated address space of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Space {
    family: Family,
    low: u16,
    high: u16,
    /// The ranges, sorted, touching ones merged (before exclusions).
    ranges: Vec<(u128, u128)>,
    segments: Vec<Segment>,
    count: u128,
}

/// A run of addresses as (ip, port) bounds, inclusive.
type Run = ((u128, u16), (u128, u16));

impl Space {
    /// The space of `ranges` (validated: sorted, disjoint, merged, of
    /// `family`) and ports `low..=high` (valid) less `exclusions`, which are
    /// checked here (field `exclude`). A space of more than `u128::MAX`
    /// addresses is an error naming `count_field`.
    pub(crate) fn new(
        family: Family,
        (low, high): (u16, u16),
        ranges: Vec<(u128, u128)>,
        exclusions: &[WideExclusion],
        count_field: &'static str,
    ) -> Result<Space, Error> {
        debug_assert!(low <= high && !ranges.is_empty());
        let mut whole: Vec<(u128, u128)> = Vec::new();
        let mut partial: Vec<(u128, u16, u16)> = Vec::new();
        for item in exclusions {
            let ports = check_exclusion(family, (low, high), &ranges, item)?;
            match ports {
                Some((lo, hi)) if (lo, hi) != (low, high) => {
                    if item.first != item.last {
                        return Err(Error::config(
                            "exclude",
                            format!(
                                "{}-{}: an exclusion of some ports names one IP",
                                text(family, item.first),
                                text(family, item.last)
                            ),
                        ));
                    }
                    partial.push((item.first, lo, hi));
                }
                _ => whole.push((item.first, item.last)),
            }
        }
        // Port exclusions of one IP: their union, or the whole IP.
        partial.sort_unstable();
        let mut holes: Vec<(u128, Vec<(u16, u16)>)> = Vec::new();
        for (ip, lo, hi) in partial {
            match holes.last_mut() {
                Some((last, ports)) if *last == ip => push_merged(ports, lo, hi),
                _ => holes.push((ip, vec![(lo, hi)])),
            }
        }
        holes.retain(|(ip, ports)| {
            let all = ports.as_slice() == [(low, high)];
            if all {
                whole.push((*ip, *ip));
            }
            !all
        });
        let kept = subtract(&ranges, merge(whole));
        let runs = runs(&kept, &holes, low, high);
        let segments = segments(runs, low, high).ok_or_else(|| too_many(count_field))?;
        let count = segments.last().map_or(0, Segment::end);
        if count == 0 {
            return Err(Error::config("exclude", "the exclusions leave no address"));
        }
        Ok(Space {
            family,
            low,
            high,
            ranges,
            segments,
            count,
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// The ports of each IP, `(low, high)`.
    pub fn ports(&self) -> (u16, u16) {
        (self.low, self.high)
    }

    pub fn ports_per_ip(&self) -> u64 {
        u64::from(self.high - self.low) + 1
    }

    /// How many addresses the space has.
    pub fn address_count(&self) -> u128 {
        self.count
    }

    /// The normalised ranges (sorted, touching ones merged), inclusive.
    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    /// The addresses of the ranges that are not in the space: within each
    /// range, each maximal run of them, ascending, as its first and last
    /// (ip, port) — the exclusions as normalised, whatever items made them.
    pub fn excluded(&self) -> Vec<((u128, u16), (u128, u16))> {
        let mut runs = Vec::new();
        let mut segments = self.segments.iter().peekable();
        for &(first, last) in &self.ranges {
            // The next address of the range not yet accounted for.
            let mut cursor = Some((first, self.low));
            while let Some(segment) = segments.next_if(|s| s.ip <= last) {
                let start = (segment.ip, segment.port);
                if let Some(from) = cursor.filter(|&from| from < start) {
                    runs.push((from, self.before(start)));
                }
                cursor = self.after((segment.last_ip, segment.last_port));
            }
            if let Some(from) = cursor.filter(|&from| from <= (last, self.high)) {
                runs.push((from, (last, self.high)));
            }
        }
        runs
    }

    /// The address before (ip, port) in (ip, port) order (not the lowest).
    fn before(&self, (ip, port): (u128, u16)) -> (u128, u16) {
        if port > self.low {
            (ip, port - 1)
        } else {
            (ip - 1, self.high)
        }
    }

    /// The address after (ip, port), if any.
    fn after(&self, (ip, port): (u128, u16)) -> Option<(u128, u16)> {
        if port < self.high {
            Some((ip, port + 1))
        } else {
            ip.checked_add(1).map(|ip| (ip, self.low))
        }
    }

    /// How many segments the space has.
    #[cfg(all(test, not(loom)))]
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segment holding index `index` (`index < address_count`).
    #[inline]
    fn segment_of(&self, index: u128) -> usize {
        if self.segments.len() == 1 {
            return 0;
        }
        self.segments.partition_point(|s| s.start <= index) - 1
    }

    /// The address `offset` places after (ip, port), within one segment.
    #[inline]
    fn step(&self, (ip, port): (u128, u16), offset: u128) -> (u128, u16) {
        let per_ip = u128::from(self.ports_per_ip());
        let (ips, ports) = (offset / per_ip, (offset % per_ip) as u16);
        let column = (port - self.low) + ports; // < 2 * per_ip: no overflow
        if u64::from(column) >= self.ports_per_ip() {
            (
                ip + ips + 1,
                self.low + (column - self.ports_per_ip() as u16),
            )
        } else {
            (ip + ips, self.low + column)
        }
    }

    /// The (ip, port) at `index` (`index < address_count`).
    pub fn address(&self, index: u128) -> (u128, u16) {
        let segment = &self.segments[self.segment_of(index)];
        self.step((segment.ip, segment.port), index - segment.start)
    }

    /// The index of (ip, port), or `None` when it is not in the space.
    #[inline]
    pub fn index(&self, ip: u128, port: u16) -> Option<u128> {
        if !(self.low..=self.high).contains(&port) {
            return None;
        }
        let position = self
            .segments
            .partition_point(|s| (s.ip, s.port) <= (ip, port));
        let segment = &self.segments[position.checked_sub(1)?];
        if (ip, port) > (segment.last_ip, segment.last_port) {
            return None;
        }
        Some(segment.start + self.distance((segment.ip, segment.port), (ip, port)))
    }

    /// How many addresses lie from `a` up to `b` (`a <= b`, one segment).
    fn distance(&self, a: (u128, u16), b: (u128, u16)) -> u128 {
        let per_ip = u128::from(self.ports_per_ip());
        if a.0 == b.0 {
            return u128::from(b.1 - a.1);
        }
        // (b.ip - a.ip - 1) full IPs, the rest of a's, and b's up to b.port:
        // never above the segment's count, so never overflows.
        (b.0 - a.0 - 1) * per_ip + u128::from(self.high - a.1) + 1 + u128::from(b.1 - self.low)
    }

    /// The IP of the address at `index`.
    pub fn ip_of(&self, index: u128) -> u128 {
        self.address(index).0
    }

    /// The indices of the IP of the address at `index`: `[start, end)`.
    /// They are consecutive indices (one IP's addresses may span several
    /// segments only where port exclusions cut holes in it).
    pub fn ip_run(&self, index: u128) -> (u128, u128) {
        let (ip, port) = self.address(index);
        let at = self.segment_of(index);
        let segment = &self.segments[at];
        let below = u128::from(port - self.low);
        let mut start = if segment.ip == ip {
            segment.start
        } else {
            index - below
        };
        let mut before = at;
        while start == self.segments[before].start
            && before > 0
            && self.segments[before - 1].last_ip == ip
        {
            before -= 1;
            let previous = &self.segments[before];
            start = if previous.ip == ip {
                previous.start
            } else {
                previous.end() - 1 - u128::from(previous.last_port - self.low)
            };
        }
        let above = u128::from(self.high - port);
        let mut end = if segment.last_ip == ip {
            segment.end()
        } else {
            index + above + 1
        };
        let mut after = at;
        while end == self.segments[after].end()
            && after + 1 < self.segments.len()
            && self.segments[after + 1].ip == ip
        {
            after += 1;
            let next = &self.segments[after];
            end = if next.last_ip == ip {
                next.end()
            } else {
                next.start + 1 + u128::from(self.high - next.port)
            };
        }
        (start, end)
    }

    /// The indices of `ip`, `[start, end)`, or `None` when it has no
    /// address in the space.
    pub fn ip_indices(&self, ip: u128) -> Option<(u128, u128)> {
        // The first segment that ends at or after (ip, low).
        let position = self
            .segments
            .partition_point(|s| (s.last_ip, s.last_port) < (ip, self.low));
        let segment = self.segments.get(position)?;
        let first = if (segment.ip, segment.port) >= (ip, self.low) {
            (segment.ip, segment.port)
        } else {
            (ip, self.low)
        };
        if first.0 != ip {
            return None;
        }
        let index = segment.start + self.distance((segment.ip, segment.port), first);
        Some(self.ip_run(index))
    }

    /// How many segments the indices `first..first + count` touch
    /// (`count > 0`): the records `intervals()` shows for them.
    pub fn pieces(&self, first: u128, count: u128) -> u64 {
        (self.segment_of(first + count - 1) - self.segment_of(first)) as u64 + 1
    }

    /// The indices `first..first + count` cut at segment boundaries, as
    /// `(first, count)` pieces in order.
    pub fn split(&self, first: u128, count: u128) -> impl Iterator<Item = (u128, u128)> + '_ {
        let end = first + count;
        let from = self.segment_of(first);
        let to = self.segment_of(end - 1);
        self.segments[from..=to].iter().map(move |segment| {
            let a = segment.start.max(first);
            let b = segment.end().min(end);
            (a, b - a)
        })
    }

    /// The addresses from index `start` on, in order, as runs of
    /// consecutive ports of one IP: `(ip, first port, ports)` (for filling
    /// a subpool: no division per address, and a loop over ports).
    pub fn runs(&self, start: u128) -> impl Iterator<Item = (u128, u16, u32)> + '_ {
        let mut at = self.segment_of(start);
        let (mut ip, mut port) = self.address(start);
        // The addresses of segment `at` from (ip, port) on.
        let mut left = self.segments[at].end() - start;
        std::iter::from_fn(move || {
            if left == 0 {
                at += 1;
                let segment = self.segments.get(at)?;
                (ip, port, left) = (segment.ip, segment.port, segment.count);
            }
            let on_ip = u128::from(self.high - port) + 1;
            let ports = on_ip.min(left);
            let run = (ip, port, ports as u32); // ports <= 65,536
            left -= ports;
            if left > 0 {
                // The run took the rest of this IP's ports (`ports ==
                // on_ip`): the segment goes on at the next IP's first.
                (ip, port) = (ip + 1, self.low);
            }
            Some(run)
        })
    }

    /// The addresses from index `start` on, in order, one by one.
    #[cfg(all(test, not(loom)))] // the tests of this file
    pub fn walk(&self, start: u128) -> impl Iterator<Item = (u128, u16)> + '_ {
        self.runs(start)
            .flat_map(|(ip, port, ports)| (0..ports).map(move |i| (ip, port + i as u16)))
    }

    /// The text of an address of the pool's family.
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // the binding's records
    pub fn text(&self, ip: u128) -> String {
        text(self.family, ip)
    }
}

/// The text of an address of `family`.
pub(crate) fn text(family: Family, ip: u128) -> String {
    family.ip(ip).to_string()
}

fn too_many(field: &'static str) -> Error {
    Error::config(
        field,
        format!("the address space has more than {} addresses", u128::MAX),
    )
}

/// Check one exclusion against the family, the ports and the ranges;
/// returns its ports (`None`: all).
fn check_exclusion(
    family: Family,
    (low, high): (u16, u16),
    ranges: &[(u128, u128)],
    item: &WideExclusion,
) -> Result<Option<(u16, u16)>, Error> {
    let name = || {
        if item.first == item.last {
            text(item.family, item.first)
        } else {
            format!(
                "{}-{}",
                text(item.family, item.first),
                text(item.family, item.last)
            )
        }
    };
    if item.family != family {
        return Err(Error::config(
            "exclude",
            format!(
                "{} is IPv{}, the pool is IPv{}",
                name(),
                item.family.number(),
                family.number()
            ),
        ));
    }
    if item.first > item.last {
        return Err(Error::config("exclude", format!("{} is reversed", name())));
    }
    let ports = match item.ports {
        None => None,
        Some((lo, hi)) => {
            let inside = |p: i128| (i128::from(low)..=i128::from(high)).contains(&p);
            if lo > hi || !inside(lo) || !inside(hi) {
                return Err(Error::config(
                    "exclude",
                    format!(
                        "{}: ports {lo}-{hi} are not within the pool's ports {low}-{high}",
                        name()
                    ),
                ));
            }
            Some((lo as u16, hi as u16))
        }
    };
    // The first range that ends at or after the item's first address.
    let position = ranges.partition_point(|&(_, last)| last < item.first);
    let overlaps = ranges
        .get(position)
        .is_some_and(|&(first, _)| first <= item.last);
    if !overlaps {
        return Err(Error::config(
            "exclude",
            format!("{} has no address in the pool's ranges", name()),
        ));
    }
    Ok(ports)
}

/// Add `lo..=hi` to sorted port intervals (items arrive sorted by `lo`).
fn push_merged(ports: &mut Vec<(u16, u16)>, lo: u16, hi: u16) {
    match ports.last_mut() {
        Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
        _ => ports.push((lo, hi)),
    }
}

/// Sort IP intervals and merge the overlapping and touching ones.
fn merge(mut intervals: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    intervals.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(intervals.len());
    for (first, last) in intervals {
        match merged.last_mut() {
            Some(previous) if previous.1 == u128::MAX || first <= previous.1 + 1 => {
                previous.1 = previous.1.max(last)
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// `ranges` less `excluded` (both sorted and disjoint).
fn subtract(ranges: &[(u128, u128)], excluded: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    let mut kept = Vec::with_capacity(ranges.len());
    let mut cut = excluded.into_iter().peekable();
    for &(first, last) in ranges {
        let mut from = Some(first);
        while let (Some(start), Some(&(a, b))) = (from, cut.peek()) {
            if b < start {
                cut.next();
                continue;
            }
            if a > last {
                break;
            }
            if a > start {
                kept.push((start, a - 1));
            }
            from = b.checked_add(1).filter(|&next| next <= last);
            if b <= last {
                cut.next();
            }
        }
        if let Some(start) = from {
            kept.push((start, last));
        }
    }
    kept
}

/// The address runs of whole IPs `kept`, cut by the port holes of single
/// IPs (`holes`, sorted by IP, each inside a kept interval or not).
fn runs(kept: &[(u128, u128)], holes: &[(u128, Vec<(u16, u16)>)], low: u16, high: u16) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::with_capacity(kept.len() + holes.len() * 2);
    let mut hole = 0;
    for &(first, last) in kept {
        while hole < holes.len() && holes[hole].0 < first {
            hole += 1;
        }
        let mut cursor = Some(first);
        while hole < holes.len() && holes[hole].0 <= last {
            let (ip, ports) = &holes[hole];
            if let Some(from) = cursor.filter(|from| from < ip) {
                runs.push(((from, low), (ip - 1, high)));
            }
            let mut port = low;
            for &(lo, hi) in ports {
                if lo > port {
                    runs.push(((*ip, port), (*ip, lo - 1)));
                }
                port = hi.saturating_add(1);
                if hi == high {
                    break;
                }
            }
            if ports.last().is_some_and(|&(_, hi)| hi < high) {
                runs.push(((*ip, port), (*ip, high)));
            }
            cursor = ip.checked_add(1).filter(|&next| next <= last);
            hole += 1;
        }
        if let Some(from) = cursor {
            runs.push(((from, low), (last, high)));
        }
    }
    runs
}

/// Merge consecutive runs into segments and number them; `None` when the
/// space has more than `u128::MAX` addresses.
fn segments(runs: Vec<Run>, low: u16, high: u16) -> Option<Vec<Segment>> {
    let per_ip = u128::from(high - low) + 1;
    let follows = |(ip, port): (u128, u16), next: (u128, u16)| {
        if port < high {
            next == (ip, port + 1)
        } else {
            ip.checked_add(1).is_some_and(|ip| next == (ip, low))
        }
    };
    let mut merged: Vec<Run> = Vec::with_capacity(runs.len());
    for run in runs {
        match merged.last_mut() {
            Some(previous) if follows(previous.1, run.0) => previous.1 = run.1,
            _ => merged.push(run),
        }
    }
    let mut segments = Vec::with_capacity(merged.len());
    let mut start: u128 = 0;
    for ((ip, port), (last_ip, last_port)) in merged {
        // (last_ip - ip) * per_ip + last_port - port + 1, without a negative step.
        let count = (last_ip - ip)
            .checked_mul(per_ip)?
            .checked_add(u128::from(last_port - low) + 1)?
            - u128::from(port - low);
        segments.push(Segment {
            start,
            count,
            ip,
            port,
            last_ip,
            last_port,
        });
        start = start.checked_add(count)?;
    }
    Some(segments)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const V4: Family = Family::V4;

    fn v4(text: &str) -> u128 {
        u128::from(u32::from(text.parse::<Ipv4Addr>().unwrap()))
    }

    fn v6(text: &str) -> u128 {
        u128::from(text.parse::<Ipv6Addr>().unwrap())
    }

    fn whole(first: u128, last: u128) -> WideExclusion {
        WideExclusion {
            family: V4,
            first,
            last,
            ports: None,
        }
    }

    fn ports(ip: u128, lo: i128, hi: i128) -> WideExclusion {
        WideExclusion {
            family: V4,
            first: ip,
            last: ip,
            ports: Some((lo, hi)),
        }
    }

    fn space(ranges: &[(u128, u128)], ports: (u16, u16), exclude: &[WideExclusion]) -> Space {
        Space::new(V4, ports, ranges.to_vec(), exclude, "ranges").unwrap()
    }

    fn field(result: Result<Space, Error>) -> &'static str {
        match result {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    /// Every index maps to an address and back, in ascending address
    /// order, and every address not listed has no index.
    fn check_bijection(space: &Space, addresses: &[(u128, u16)]) {
        assert_eq!(space.address_count(), addresses.len() as u128);
        for (index, &(ip, port)) in addresses.iter().enumerate() {
            assert_eq!(space.address(index as u128), (ip, port), "index {index}");
            assert_eq!(space.index(ip, port), Some(index as u128));
        }
        let walked: Vec<_> = space.walk(0).collect();
        assert_eq!(walked, addresses);
        // Runs are whole: a run ends at the IP's last port or before a gap.
        let runs: Vec<_> = space.runs(0).collect();
        for pair in runs.windows(2) {
            let ((ip, port, ports), (next_ip, next_port, _)) = (pair[0], pair[1]);
            let last = port + (ports - 1) as u16;
            assert!(last == space.high || (next_ip, next_port) != (ip, last + 1));
        }
        for (start, &address) in addresses.iter().enumerate() {
            assert_eq!(space.walk(start as u128).next(), Some(address));
        }
    }

    /// The addresses of `ips` x `ports`, less `gone`, by brute force.
    fn brute(
        ips: &[u128],
        ports: (u16, u16),
        gone: &dyn Fn(u128, u16) -> bool,
    ) -> Vec<(u128, u16)> {
        ips.iter()
            .flat_map(|&ip| (ports.0..=ports.1).map(move |port| (ip, port)))
            .filter(|&(ip, port)| !gone(ip, port))
            .collect()
    }

    /// The excluded runs: per range, the maximal runs of its addresses not
    /// in the space, whatever items excluded them (here overlapping ones).
    #[test]
    fn excluded_runs_are_the_gaps_within_each_range() {
        let s = space(
            &[(10, 14), (20, 21)],
            (100, 102),
            &[
                whole(12, 12),
                ports(11, 102, 102),
                ports(13, 100, 100),
                ports(12, 101, 101),
                ports(20, 100, 101),
                ports(21, 102, 102),
            ],
        );
        assert_eq!(
            s.excluded(),
            vec![
                ((11, 102), (13, 100)),
                ((20, 100), (20, 101)),
                ((21, 102), (21, 102)),
            ]
        );
        assert!(space(&[(10, 14), (20, 21)], (100, 102), &[])
            .excluded()
            .is_empty());
        let top = space(
            &[(u128::MAX - 1, u128::MAX)],
            (1, 2),
            &[ports(u128::MAX, 2, 2)],
        );
        assert_eq!(top.excluded(), vec![((u128::MAX, 2), (u128::MAX, 2))]);
        let first = space(&[(0, 1)], (1, 2), &[ports(0, 1, 1)]);
        assert_eq!(first.excluded(), vec![((0, 1), (0, 1))]);
    }

    #[test]
    fn one_range_is_one_segment() {
        let s = space(&[(10, 12)], (100, 102), &[]);
        assert_eq!(s.segment_count(), 1);
        check_bijection(&s, &brute(&[10, 11, 12], (100, 102), &|_, _| false));
        assert_eq!(s.index(13, 100), None);
        assert_eq!(s.index(10, 103), None);
        assert_eq!(s.index(9, 102), None);
        assert_eq!(s.ip_run(4), (3, 6));
        assert_eq!(s.ip_indices(12), Some((6, 9)));
        assert_eq!(s.ip_indices(13), None);
    }

    #[test]
    fn ranges_and_exclusions_number_what_is_left() {
        // Ranges 10..=14 and 20..=21; 12 excluded whole; ports 101 of 11
        // and 100..=101 of 20 excluded.
        let s = space(
            &[(10, 14), (20, 21)],
            (100, 102),
            &[whole(12, 12), ports(11, 101, 101), ports(20, 100, 101)],
        );
        let gone =
            |ip: u128, port: u16| ip == 12 || (ip, port) == (11, 101) || (ip == 20 && port <= 101);
        let expected = brute(&[10, 11, 12, 13, 14, 20, 21], (100, 102), &gone);
        check_bijection(&s, &expected);
        // Segments: 10:100..11:100 | 11:102 | 13:100..14:102 | 20:102..21:102.
        assert_eq!(s.segment_count(), 4);
        assert_eq!(s.index(12, 100), None);
        assert_eq!(s.index(11, 101), None);
        assert_eq!(s.index(15, 100), None);
        // IP 11 keeps ports 100 and 102: indices 3 and 4, two segments.
        assert_eq!(s.ip_run(3), (3, 5));
        assert_eq!(s.ip_run(4), (3, 5));
        assert_eq!(s.ip_indices(11), Some((3, 5)));
        assert_eq!(s.ip_indices(12), None);
        assert_eq!(s.ip_indices(20), Some((11, 12)));
        assert_eq!(s.ip_indices(21), Some((12, 15)));
        for index in 0..s.address_count() {
            let (start, end) = s.ip_run(index);
            let ip = s.ip_of(index);
            assert!((start..end).all(|i| s.ip_of(i) == ip));
            assert!(start == 0 || s.ip_of(start - 1) != ip);
            assert!(end == s.address_count() || s.ip_of(end) != ip);
        }
        // Splitting at segment boundaries.
        let pieces: Vec<_> = s.split(2, 8).collect();
        assert_eq!(pieces, vec![(2, 2), (4, 1), (5, 5)]);
        assert_eq!(s.pieces(2, 8), 3);
        assert_eq!(s.pieces(5, 6), 1);
    }

    #[test]
    fn a_middle_hole_splits_an_ip_into_two_segments() {
        let s = space(&[(1, 3)], (10, 14), &[ports(2, 11, 12)]);
        let gone = |ip: u128, port: u16| ip == 2 && (11..=12).contains(&port);
        check_bijection(&s, &brute(&[1, 2, 3], (10, 14), &gone));
        assert_eq!(s.segment_count(), 2);
        assert_eq!(s.ip_indices(2), Some((5, 8)));
        assert_eq!(s.ip_run(6), (5, 8));
    }

    #[test]
    fn port_exclusions_covering_every_port_remove_the_ip() {
        let s = space(&[(1, 3)], (10, 12), &[ports(2, 10, 10), ports(2, 11, 12)]);
        assert_eq!(s.ip_indices(2), None);
        assert_eq!(s.segment_count(), 2);
        check_bijection(&s, &brute(&[1, 3], (10, 12), &|_, _| false));
    }

    #[test]
    fn overlapping_exclusions_exclude_their_union() {
        let s = space(
            &[(0, 99)],
            (1, 1),
            &[whole(10, 20), whole(15, 30), whole(31, 31), whole(0, 0)],
        );
        assert_eq!(s.address_count(), 100 - 23); // 0 and 10..=31
        assert_eq!(s.segment_count(), 2);
        assert_eq!(s.address(0), (1, 1));
        assert_eq!(s.address(9), (32, 1));
    }

    #[test]
    fn bad_exclusions_name_the_field() {
        let ranges = [(10u128, 20u128)];
        let bad = |item: WideExclusion| {
            field(Space::new(
                V4,
                (100, 200),
                ranges.to_vec(),
                &[item],
                "ranges",
            ))
        };
        assert_eq!(bad(whole(30, 40)), "exclude"); // outside every range
        assert_eq!(bad(whole(5, 9)), "exclude");
        assert_eq!(bad(whole(12, 11)), "exclude"); // reversed
        assert_eq!(bad(ports(12, 99, 100)), "exclude"); // port outside ports
        assert_eq!(bad(ports(12, 150, 201)), "exclude");
        assert_eq!(bad(ports(12, 160, 150)), "exclude"); // lo > hi
        let mut v6_item = whole(12, 12);
        v6_item.family = Family::V6;
        assert_eq!(bad(v6_item), "exclude"); // family mix
                                             // A partial overlap is fine; so is an item only on excluded addresses.
        assert!(Space::new(V4, (1, 1), ranges.to_vec(), &[whole(5, 12)], "ranges").is_ok());
        let twice = [whole(12, 12), whole(12, 12)];
        assert!(Space::new(V4, (1, 1), ranges.to_vec(), &twice, "ranges").is_ok());
        // Nothing left.
        assert_eq!(
            field(Space::new(
                V4,
                (1, 1),
                ranges.to_vec(),
                &[whole(0, 30)],
                "ranges"
            )),
            "exclude"
        );
        assert_eq!(
            field(Space::new(
                V4,
                (1, 2),
                vec![(10, 10)],
                &[ports(10, 1, 1), ports(10, 2, 2)],
                "ranges"
            )),
            "exclude"
        );
    }

    #[test]
    fn ipv6_arithmetic_is_exact_for_a_slash_48() {
        // 2001:db8:1::/48, every address, ports 1024..=65535.
        let first = v6("2001:db8:1::");
        let last = v6("2001:db8:1:ffff:ffff:ffff:ffff:ffff");
        let s = Space::new(
            Family::V6,
            (1024, 65535),
            vec![(first, last)],
            &[],
            "ranges",
        )
        .unwrap();
        let per_ip: u128 = 64512;
        assert_eq!(s.address_count(), (1u128 << 80) * per_ip);
        assert_eq!(s.segment_count(), 1);
        let end = s.address_count() - 1;
        assert_eq!(s.address(end), (last, 65535));
        assert_eq!(s.index(last, 65535), Some(end));
        let middle = (1u128 << 79) * per_ip + 7;
        assert_eq!(s.address(middle), (first + (1 << 79), 1031));
        assert_eq!(s.index(first + (1 << 79), 1031), Some(middle));
        assert_eq!(s.ip_run(middle), (middle - 7, middle - 7 + per_ip));
        assert_eq!(s.ip_indices(last), Some((end + 1 - per_ip, end + 1)));
        let walked: Vec<_> = s.walk(end - 1).collect();
        assert_eq!(walked, vec![(last, 65534), (last, 65535)]);
        // Excluding a /64 in the middle: the space keeps its exact count.
        let hole = v6("2001:db8:1:8000::");
        let cut = WideExclusion {
            family: Family::V6,
            first: hole,
            last: hole + (1 << 64) - 1,
            ports: None,
        };
        let s = Space::new(
            Family::V6,
            (1024, 65535),
            vec![(first, last)],
            &[cut],
            "ranges",
        )
        .unwrap();
        assert_eq!(s.address_count(), ((1u128 << 80) - (1 << 64)) * per_ip);
        assert_eq!(s.segment_count(), 2);
        let after = (hole - first) * per_ip;
        assert_eq!(s.address(after), (hole + (1 << 64), 1024));
        assert_eq!(s.index(hole + 5, 2000), None);
        assert_eq!(s.pieces(after - 1, 2), 2);
    }

    #[test]
    fn more_than_u128_addresses_is_an_error_naming_the_field() {
        let everything = (0, u128::MAX);
        let result = Space::new(Family::V6, (1, 2), vec![everything], &[], "first_ip");
        assert_eq!(field(result), "first_ip");
        // One port per IP: 2^128 addresses is one too many as well.
        let result = Space::new(Family::V6, (1, 1), vec![everything], &[], "ranges");
        assert_eq!(field(result), "ranges");
        // One address less fits exactly.
        let s = Space::new(Family::V6, (1, 1), vec![(1, u128::MAX)], &[], "ranges").unwrap();
        assert_eq!(s.address_count(), u128::MAX);
        assert_eq!(s.address(u128::MAX - 1), (u128::MAX, 1));
        assert_eq!(s.index(u128::MAX, 1), Some(u128::MAX - 1));
        assert_eq!(s.ip_indices(u128::MAX), Some((u128::MAX - 1, u128::MAX)));
    }

    #[test]
    fn a_thousand_ranges_and_ten_thousand_exclusions_build_in_milliseconds() {
        // 1,000 /24s two apart; 10 exclusions in each: one IP, and nine
        // single ports of other IPs.
        let base = v4("10.0.0.0");
        let ranges: Vec<(u128, u128)> = (0..1000u128)
            .map(|i| (base + i * 512 + 1, base + i * 512 + 254))
            .collect();
        let mut exclude = Vec::new();
        for (first, _) in &ranges {
            exclude.push(whole(first + 100, first + 100));
            for k in 0..9u128 {
                exclude.push(ports(first + 10 + k, 2000 + k as i128, 2000 + k as i128));
            }
        }
        exclude.reverse(); // any order
        let started = std::time::Instant::now();
        let s = Space::new(V4, (1024, 65535), ranges, &exclude, "ranges").unwrap();
        let took = started.elapsed();
        assert_eq!(s.address_count(), 1000 * (253 * 64512 - 9));
        assert_eq!(s.segment_count(), 1000 * (2 + 9));
        // Generous for a loaded debug build; the release target is 10 ms.
        assert!(took.as_millis() < 200, "took {took:?}");
    }
}
