//! Clients (issue 11, point 3): what the pool knows of each client, the
//! block log, and where a port block goes, as the reference model's
//! `natpool/reference/clients.py` specifies. A client is an opaque `u64`
//! key (the Python binding interns hashable objects into keys).
//!
//! All of it lives under one mutex of the pool (`Pool::clients`), taken by
//! the allocations and frees of clients' leases (correctness first; the
//! leases of pools without client settings never take it). Lock order:
//! the clients lock, then the writer lock (a port block's creation and
//! release); the held queue's lock is never held with either.

use std::collections::{HashMap, VecDeque};

use crate::core::drained::Drained;
use crate::core::space::Space;
use crate::core::subpool::Subpool;
use crate::core::sync::Arc;

/// Whether a [`BlockEvent`] assigned or released a port block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEventKind {
    Assigned,
    Released,
}

/// A port block assigned to or released from a client (`Pool::events`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockEvent {
    /// The clock's value read by the call that made the change.
    pub time: f64,
    pub kind: BlockEventKind,
    pub client: u64,
    /// Index of the block's first address in the pool's address space.
    pub first: u128,
    /// How many addresses the block has.
    pub count: u64,
}

/// What the pool knows of one client.
pub(crate) struct ClientState<T> {
    pub live: u64,
    pub held: u64,
    /// Paired: the IP of its live leases (`None` with none live).
    pub ip: Option<u128>,
    /// Port blocks: its blocks, in the order they were assigned.
    pub blocks: Vec<Arc<Subpool<T>>>,
}

impl<T> ClientState<T> {
    fn idle(&self) -> bool {
        self.live == 0 && self.held == 0 && self.blocks.is_empty()
    }
}

/// The client states and the block log.
pub(crate) struct Clients<T> {
    states: HashMap<u64, ClientState<T>>,
    /// Events queued per client: a key is forgotten only with none queued.
    queued: HashMap<u64, u64>,
    events: VecDeque<BlockEvent>,
    limit: u64,
    /// Keys whose state went away, for the caller's interner.
    forgotten: Vec<u64>,
}

impl<T> Clients<T> {
    pub fn new(limit: u64) -> Self {
        Clients {
            states: HashMap::new(),
            queued: HashMap::new(),
            events: VecDeque::new(),
            limit,
            forgotten: Vec::new(),
        }
    }

    /// The table a snapshot restores: the client states by key, and the
    /// queued events, oldest first.
    pub fn restored(
        limit: u64,
        states: impl IntoIterator<Item = (u64, ClientState<T>)>,
        events: Vec<BlockEvent>,
    ) -> Self {
        let mut queued: HashMap<u64, u64> = HashMap::new();
        for event in &events {
            *queued.entry(event.client).or_insert(0) += 1;
        }
        Clients {
            states: states.into_iter().collect(),
            queued,
            events: events.into(),
            limit,
            forgotten: Vec::new(),
        }
    }

    /// Every client state, by key (in no order).
    pub fn states(&self) -> impl Iterator<Item = (u64, &ClientState<T>)> {
        self.states.iter().map(|(&key, state)| (key, state))
    }

    /// The queued events, oldest first.
    pub fn queued_events(&self) -> impl Iterator<Item = &BlockEvent> {
        self.events.iter()
    }

    /// (live, held) leases of `client`.
    pub fn counts(&self, client: u64) -> (u64, u64) {
        self.states
            .get(&client)
            .map_or((0, 0), |state| (state.live, state.held))
    }

    pub fn get(&self, client: u64) -> Option<&ClientState<T>> {
        self.states.get(&client)
    }

    pub fn get_mut(&mut self, client: u64) -> Option<&mut ClientState<T>> {
        self.states.get_mut(&client)
    }

    /// Whether `client` has a state or a queued event.
    pub fn knows(&self, client: u64) -> bool {
        self.states.contains_key(&client) || self.queued.contains_key(&client)
    }

    /// The state of `client`, made if it has none (and no longer forgotten).
    pub fn state(&mut self, client: u64) -> &mut ClientState<T> {
        if !self.states.contains_key(&client) {
            self.forgotten.retain(|&key| key != client);
        }
        self.states.entry(client).or_insert_with(|| ClientState {
            live: 0,
            held: 0,
            ip: None,
            blocks: Vec::new(),
        })
    }

    /// Forget the pairing IP with the last live lease, and an idle client.
    pub fn tidy(&mut self, client: u64) {
        let Some(state) = self.states.get_mut(&client) else {
            return;
        };
        if state.live == 0 {
            state.ip = None;
        }
        if state.idle() {
            self.states.remove(&client);
            self.forget(client);
        }
    }

    fn forget(&mut self, client: u64) {
        if !self.states.contains_key(&client) && !self.queued.contains_key(&client) {
            self.forgotten.push(client);
        }
    }

    /// Queue `event`; `false` when the queue is full (it is dropped).
    pub fn log(&mut self, event: BlockEvent) -> bool {
        if self.events.len() as u64 >= self.limit {
            return false;
        }
        *self.queued.entry(event.client).or_insert(0) += 1;
        self.events.push_back(event);
        true
    }

    /// The queued events, oldest first; the queue is emptied.
    pub fn drain(&mut self) -> Vec<BlockEvent> {
        let events: Vec<BlockEvent> = self.events.drain(..).collect();
        for event in &events {
            let left = self.queued.get_mut(&event.client).expect("counted");
            *left -= 1;
            if *left == 0 {
                self.queued.remove(&event.client);
                self.forget(event.client);
            }
        }
        events
    }

    /// Keys forgotten since the last call (no state, no queued event).
    pub fn take_forgotten(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.forgotten)
    }
}

/// The lowest address index `p` such that `p .. p + k` lies in one of the
/// free intervals `free` (`(first, count)` in address order) and in the
/// indices of one IP of `space`; within the indices `ip` (one IP's run,
/// `[start, end)`) when given. An IP with fewer than `k` addresses (port
/// exclusions) holds no run; only such IPs are skipped one by one.
pub(crate) fn find_run(
    free: &[(u128, u128)],
    k: u128,
    space: &Space,
    drained: &Drained,
    ip: Option<(u128, u128)>,
) -> Option<u128> {
    if ip.is_some_and(|(low, _)| drained.starts_at(low)) {
        return None;
    }
    free.iter().find_map(|&(first, count)| {
        let (mut start, mut end) = (first, first + count);
        if let Some((low, high)) = ip {
            start = start.max(low);
            end = end.min(high);
        }
        while start < end && end - start >= k {
            let (ip_start, ip_end) = space.ip_run(start);
            if ip_end - start >= k && !drained.starts_at(ip_start) {
                return Some(start);
            }
            start = ip_end;
        }
        None
    })
}

/// `free` without the addresses `first .. first + count` (in one of them).
pub(crate) fn carve(free: &mut Vec<(u128, u128)>, first: u128, count: u128) {
    let Some(position) = free
        .iter()
        .position(|&(start, length)| start <= first && first < start + length)
    else {
        return;
    };
    let (start, length) = free.remove(position);
    let mut rest = Vec::with_capacity(2);
    if first > start {
        rest.push((start, first - start));
    }
    if first + count < start + length {
        rest.push((first + count, start + length - first - count));
    }
    free.splice(position..position, rest);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::core::space::{Family, WideExclusion};

    fn space(ips: u128, exclude: &[WideExclusion]) -> Space {
        Space::new(Family::V4, (1, 8), vec![(1, ips)], exclude, "ranges").unwrap()
    }

    #[test]
    fn runs_stay_on_one_ip_and_prefer_the_given_one() {
        // Two IPs of 8 ports: addresses 0..8 and 8..16.
        let s = space(2, &[]);
        let none = Drained::default();
        let free = vec![(2, 3), (6, 10)];
        let (first, second) = (Some((0, 8)), Some((8, 16)));
        assert_eq!(find_run(&free, 3, &s, &none, None), Some(2));
        assert_eq!(find_run(&free, 4, &s, &none, None), Some(8)); // 6..10 crosses an IP
        assert_eq!(find_run(&free, 2, &s, &none, first), Some(2));
        assert_eq!(find_run(&free, 2, &s, &none, second), Some(8));
        assert_eq!(find_run(&free, 8, &s, &none, None), Some(8));
        assert_eq!(find_run(&free, 8, &s, &none, first), None);
        let mut carved = free.clone();
        carve(&mut carved, 9, 3);
        assert_eq!(carved, vec![(2, 3), (6, 3), (12, 4)]);
    }

    #[test]
    fn an_ip_with_too_few_addresses_holds_no_run() {
        // IPs 1, 2, 3 of 8 ports; IP 2 keeps ports 1..=3 and 7..=8 only:
        // indices 0..8, 8..13, 13..21.
        let hole = WideExclusion {
            family: Family::V4,
            first: 2,
            last: 2,
            ports: Some((4, 6)),
        };
        let s = space(3, &[hole]);
        let none = Drained::default();
        let all = vec![(0, 21)];
        assert_eq!(find_run(&all, 6, &s, &none, None), Some(0));
        assert_eq!(find_run(&[(4, 17)], 6, &s, &none, None), Some(13));
        assert_eq!(find_run(&[(4, 17)], 5, &s, &none, None), Some(8));
        assert_eq!(find_run(&[(9, 3)], 4, &s, &none, None), None); // 9..12 on IP 2
        assert_eq!(find_run(&[(9, 12)], 4, &s, &none, None), Some(9)); // 9..13 on IP 2
        assert_eq!(find_run(&all, 5, &s, &none, Some((8, 13))), Some(8));
        // A drained IP holds no run: 10.0.0.1 (indices 0..8) is skipped.
        let drained = none.with(1, (0, 8));
        assert_eq!(find_run(&all, 5, &s, &drained, None), Some(8));
        assert_eq!(find_run(&all, 5, &s, &drained, Some((0, 8))), None);
    }

    #[test]
    fn a_client_is_forgotten_when_idle_and_its_events_are_drained() {
        let mut clients: Clients<()> = Clients::new(1);
        clients.state(7).live = 1;
        let event = BlockEvent {
            time: 0.0,
            kind: BlockEventKind::Released,
            client: 7,
            first: 0,
            count: 1,
        };
        assert!(clients.log(event));
        assert!(!clients.log(event), "the queue holds one");
        clients.state(7).live = 0;
        clients.tidy(7);
        assert!(clients.take_forgotten().is_empty(), "an event is queued");
        assert_eq!(clients.drain(), vec![event]);
        assert_eq!(clients.take_forgotten(), vec![7]);
    }
}
