//! The pool's client paths (issue 11, point 3): allocations for a client
//! (quota, paired IP, port blocks), the client side of a lease's end, and
//! the block log. The rules are the reference model's
//! (`natpool/reference/clients.py`); the states live in
//! `crate::core::clients`, under the pool's clients lock, which every call
//! here holds while it decides and takes (correctness first: client
//! allocations of one pool are serialised; leases without a client never
//! take the lock).

use crate::core::clients::{BlockEvent, BlockEventKind, Clients};
use crate::core::error::Error;
use crate::core::free_list::{At, Reserve};
use crate::core::pool::{Ended, Lease, Pool};
use crate::core::space::Family;
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, Ordering};

impl<T: Default + Send + Sync> Pool<T> {
    /// Lease a free address holding `data` for `client` (any key but
    /// `u64::MAX`): with a quota, `Error::QuotaExceeded` past it; paired, on
    /// the client's IP while it can; with port blocks, from the client's
    /// blocks. Without client settings, as [`allocate`](Self::allocate).
    pub fn allocate_for(&self, data: T, client: u64) -> Result<Lease, Error> {
        let now = self.now_for_allocation(true)?;
        self.allocate_for_at(data, client, now)
    }

    /// [`allocate_for`](Self::allocate_for) at time `now` (read by the
    /// caller as `now_for_allocation(true)` says).
    pub(crate) fn allocate_for_at(
        &self,
        data: T,
        client: u64,
        now: Option<f64>,
    ) -> Result<Lease, Error> {
        if !self.tracks_clients() {
            return self.allocate_at(data, now);
        }
        check_key(client)?;
        self.release_due(now);
        self.fence_if_due();
        let mut clients = self.lock_clients();
        self.check_quota(&clients, client, 1)?;
        if self.config.client_block().is_some() {
            self.check_blocks(&clients, client, 1)?;
            return self.take_from_blocks(&mut clients, client, data, now);
        }
        if self.shared_room() == 0 && self.shared_room_listed() == 0 {
            return Err(self.exhausted(1, now));
        }
        self.take_shared_for(&mut clients, client, data, now)
    }

    /// `n` leases for `client`, all or nothing, as `n` calls of
    /// [`allocate_for`](Self::allocate_for) would give them.
    pub fn allocate_many_for(
        &self,
        n: u64,
        data: impl FnMut() -> T,
        client: u64,
    ) -> Result<Vec<Lease>, Error> {
        let now = self.now_for_allocation(true)?;
        self.allocate_many_for_at(n, data, client, now)
    }

    /// [`allocate_many_for`](Self::allocate_many_for) at time `now`.
    pub(crate) fn allocate_many_for_at(
        &self,
        n: u64,
        mut data: impl FnMut() -> T,
        client: u64,
        now: Option<f64>,
    ) -> Result<Vec<Lease>, Error> {
        if !self.tracks_clients() {
            return self.allocate_many_at(n, data, now);
        }
        check_key(client)?;
        self.release_due(now);
        self.fence_if_due();
        let mut clients = self.lock_clients();
        self.check_quota(&clients, client, n)?;
        let blocks = self.config.client_block().is_some();
        if blocks {
            self.check_blocks(&clients, client, n)?;
        } else if n > self.shared_room() && n > self.shared_room_listed() {
            return Err(self.exhausted(n, now));
        }
        let mut leases = Vec::new();
        leases
            .try_reserve_exact(n as usize)
            .map_err(|_| Error::OutOfMemory(format!("cannot hold a batch of {n} leases")))?;
        for _ in 0..n {
            self.fence_if_due();
            let taken = if blocks {
                self.take_from_blocks(&mut clients, client, data(), now)
            } else {
                self.take_shared_for(&mut clients, client, data(), now)
            };
            match taken {
                Ok(lease) => leases.push(lease),
                Err(error) => {
                    // Under concurrency, or in a cluster (full, or the store
                    // failed): give back what we took, last first, without a
                    // hold. In a cluster the subpools this batch claimed stay,
                    // empty (as for `allocate_many`).
                    drop(clients);
                    let tidy = !self.has_store();
                    for lease in leases.iter().rev() {
                        let _ = self.free_tidy(lease.handle, 0.0, now, tidy);
                    }
                    return Err(error);
                }
            }
        }
        Ok(leases)
    }

    /// The port blocks assigned and released since the last call, oldest
    /// first (at most `event_queue` of them; see `stats().events_dropped`).
    pub fn events(&self) -> Vec<BlockEvent> {
        self.lock_clients().drain()
    }

    /// Client keys the pool no longer knows (no lease live or held, no
    /// block, no queued event) since the last call: a caller that maps
    /// its clients to keys may forget them.
    pub fn take_forgotten(&self) -> Vec<u64> {
        self.lock_clients().take_forgotten()
    }

    /// Whether the pool knows `client` (a state or a queued event).
    pub fn knows_client(&self, client: u64) -> bool {
        self.lock_clients().knows(client)
    }

    fn check_quota(&self, clients: &Clients<T>, client: u64, asked: u64) -> Result<(), Error> {
        let Some(quota) = self.config.client_quota() else {
            return Ok(());
        };
        let (live, held) = clients.counts(client);
        if live + held + asked > quota {
            return Err(Error::QuotaExceeded(format!(
                "client {client} of pool {:?} has {live} live and {held} held leases of its quota {quota}, {asked} asked",
                self.config.name()
            )));
        }
        Ok(())
    }

    /// `Exhausted` unless the client's blocks, and the blocks it would be
    /// assigned, hold `asked` more leases.
    fn check_blocks(&self, clients: &Clients<T>, client: u64, asked: u64) -> Result<(), Error> {
        let k = u64::from(self.config.client_block().expect("port blocks"));
        let state = clients.get(client);
        let free: u64 = state.map_or(0, |s| s.blocks.iter().map(|b| b.free.available()).sum());
        if asked <= free {
            return Ok(());
        }
        let count = (asked - free).div_ceil(k);
        match self.plan_blocks(self.last_block_ip(clients, client), count) {
            Some(_) => Ok(()),
            None => Err(self.no_room_for_blocks(client, count)),
        }
    }

    /// The IP of the client's most recently assigned block.
    fn last_block_ip(&self, clients: &Clients<T>, client: u64) -> Option<u128> {
        clients
            .get(client)
            .and_then(|state| state.blocks.last())
            .map(|block| self.config.space().ip_of(block.start))
    }

    /// A lease from the client's lowest-id block with a free block; a new
    /// block (logged) when none has one.
    fn take_from_blocks(
        &self,
        clients: &mut Clients<T>,
        client: u64,
        data: T,
        now: Option<f64>,
    ) -> Result<Lease, Error> {
        let mut blocks: Vec<Arc<Subpool<T>>> = clients
            .get(client)
            .map_or_else(Vec::new, |s| s.blocks.clone());
        blocks.sort_by_key(|block| block.id);
        let chosen = blocks
            .into_iter()
            .find_map(|block| self.reserve_one(&block).map(|at| (block, at)));
        let (block, at) = match chosen {
            Some(chosen) => chosen,
            None => {
                let block = self.create_block(client, self.last_block_ip(clients, client))?;
                clients.state(client).blocks.push(Arc::clone(&block));
                self.log(clients, BlockEventKind::Assigned, client, &block, now);
                let at = self.reserve_one(&block);
                (block, at.expect("a fresh block has free blocks"))
            }
        };
        let lease = self.take_reserved(&block, at, data, Some(client)).lease();
        let state = clients.state(client);
        state.live += 1;
        if self.config.paired() {
            // As for a shared lease: the IP of its latest live lease (which
            // only a snapshot shows, paired having no effect on port blocks).
            state.ip = Some(Family::of(lease.ip).1);
        }
        Ok(lease)
    }

    /// Reserve one block of `subpool` and count it (where its take starts);
    /// `None` when it has none.
    fn reserve_one(&self, subpool: &Subpool<T>) -> Option<At> {
        match subpool.free.reserve_up_to(1, &self.rng) {
            Reserve::Taken {
                count, last, at, ..
            } => {
                self.reserved(subpool, count, last);
                Some(at)
            }
            Reserve::Empty | Reserve::Closed => None,
        }
    }

    /// A lease from a shared subpool for `client`: paired, from the lowest-id
    /// shared subpool wholly on its IP with a free block, if any; else as any
    /// lease. Then the threshold rule.
    fn take_shared_for(
        &self,
        clients: &mut Clients<T>,
        client: u64,
        data: T,
        now: Option<f64>,
    ) -> Result<Lease, Error> {
        let paired = self.config.paired();
        let on_ip = if paired {
            clients
                .get(client)
                .and_then(|state| state.ip)
                .and_then(|ip| self.reserve_on_ip(ip))
        } else {
            None
        };
        let lease = match on_ip {
            Some((subpool, at)) => self.take_reserved(&subpool, at, data, Some(client)),
            None => self.take_block(data, now, Some(client), &mut 0)?,
        }
        .lease();
        self.grow_if_below_threshold();
        let ip = Family::of(lease.ip).1;
        let state = clients.state(client);
        state.live += 1;
        if paired {
            state.ip = Some(ip);
        }
        Ok(lease)
    }

    /// Reserve a block of the lowest-id shared subpool whose addresses all
    /// lie on IP `ip` and that has a free block.
    fn reserve_on_ip(&self, ip: u128) -> Option<(Arc<Subpool<T>>, At)> {
        let (low, high) = self.config.space().ip_indices(ip)?;
        let snapshot = self.intervals.load();
        let mut candidates: Vec<&Arc<Subpool<T>>> = snapshot
            .subpools
            .iter()
            .filter(|s| s.owner.is_none() && s.start >= low && s.end() <= high)
            .collect();
        candidates.sort_by_key(|s| s.id);
        candidates
            .into_iter()
            .find_map(|s| self.reserve_one(s).map(|at| (Arc::clone(s), at)))
    }

    /// The client side of leases of `subpool` that ended (`how`): their
    /// clients' counts, and a port block all free is released (logged).
    pub(super) fn clients_ended(
        &self,
        subpool: &Arc<Subpool<T>>,
        offsets: &[u32],
        how: Ended,
        now: Option<f64>,
    ) {
        let mut clients = self.lock_clients();
        let mut touched: Vec<u64> = Vec::new();
        for &offset in offsets {
            let Some(client) = subpool.client(offset) else {
                continue;
            };
            let state = clients.state(client);
            match how {
                Ended::Freed => state.live -= 1,
                Ended::Held => {
                    state.live -= 1;
                    state.held += 1;
                }
                Ended::HoldOver => state.held -= 1,
            }
            if !touched.contains(&client) {
                touched.push(client);
            }
        }
        if let (Some(owner), false) = (subpool.owner, how == Ended::Held) {
            if subpool.free.available() == u64::from(subpool.len()) && self.release_block(subpool) {
                if let Some(state) = clients.get_mut(owner) {
                    state.blocks.retain(|block| !Arc::ptr_eq(block, subpool));
                }
                self.log(&mut clients, BlockEventKind::Released, owner, subpool, now);
                touched.push(owner);
            }
        }
        for client in touched {
            clients.tidy(client);
        }
    }

    fn log(
        &self,
        clients: &mut Clients<T>,
        kind: BlockEventKind,
        client: u64,
        block: &Subpool<T>,
        now: Option<f64>,
    ) {
        let event = BlockEvent {
            time: now.unwrap_or_else(|| self.last_time()),
            kind,
            client,
            first: block.start,
            count: u64::from(block.len()),
        };
        if !clients.log(event) {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `u64::MAX` is not a client key (the blocks store keys plus one).
fn check_key(client: u64) -> Result<(), Error> {
    if client == u64::MAX {
        return Err(Error::Argument(format!(
            "client: {client} is not a client key"
        )));
    }
    Ok(())
}
