//! `reserve(ip, port)`: a lease of exactly that address (a static mapping,
//! port preservation), freed like any lease (`docs/shapes.md`).
//!
//! It runs under the writer lock (one reserve at a time, serialised with
//! creation, deletion and drains), so its only races are with the lock-free
//! takes and returns of the block's subpool:
//! * A free block of a subpool is taken out of turn: its free-list entry
//!   stays where it is as a *phantom* and the count drops by one (a
//!   reservation of one block). The reserver marks the block's state word
//!   (`RESERVED | PHANTOM`), then makes sure its entry is still listed
//!   (`FreeList::listed`, an observation every later take of the entry is
//!   ordered after, so that take sees the mark and discards the phantom);
//!   if it is not, a take popped the block: it either met the mark
//!   (discarded it: the block is the reserver's) or had loaded the state
//!   before and stores `LIVE` over the mark (the allocation won: the
//!   reserver gives its reservation back and reports the address live).
//!   The reserver waits for that one committed step, or for a return in
//!   flight to land the entry. `block.rs` has the rest of the protocol.
//! * An address in a free interval gets a shared subpool made for it (the
//!   chunk rule), whose block is taken before the subpool is published.
//!
//! `reserve` is not an allocation but for holds: like `allocate` it first
//! releases the holds that ended (reading the clock only if a block is
//! held); it does not apply the threshold growth.

use std::net::IpAddr;

use crate::core::block::{Mark, Verdict};
use crate::core::error::Error;
use crate::core::free_list::Reserve;
use crate::core::handle::Handle;
use crate::core::pool::writer::Writer;
use crate::core::pool::{Lease, Pool};
use crate::core::store::ClaimAt;
use crate::core::subpool::Subpool;
use crate::core::sync::{spin_wait, Arc, Ordering};

impl<T: Default + Send + Sync> Pool<T> {
    /// Lease exactly (`ip`, `port`) holding `data`. [`Error::Argument`] if
    /// the address is not in the pool (another family, outside the ranges,
    /// excluded, a port outside `ports`) or on a drained IP;
    /// [`Error::NotLive`] if it is live, held, or in a client's port block;
    /// [`Error::Exhausted`] if it is in a drain-fenced subpool, or no block
    /// may be made for it under `capacity`. With a store, an address in no
    /// subpool here is claimed from the cluster ([`Store::claim_at`]):
    /// [`Error::NotLive`] if another member claims or holds it,
    /// [`Error::Exhausted`] if the cluster's capacity is claimed,
    /// [`Error::Store`] if the store fails (nothing changed). Reads the clock if any block is held (and first releases the
    /// holds that ended).
    pub fn reserve(&self, ip: impl Into<IpAddr>, port: u16, data: T) -> Result<Lease, Error> {
        self.reserve_with(ip.into(), port, data, || self.now_if_held())
    }

    /// [`reserve`](Self::reserve), reading the time with `now` after the
    /// address is checked (the binding's Python clock).
    pub(crate) fn reserve_with<E: From<Error>>(
        &self,
        ip: IpAddr,
        port: u16,
        data: T,
        now: impl FnOnce() -> Result<Option<f64>, E>,
    ) -> Result<Lease, E> {
        let value = self.own_family(ip)?;
        let space = self.config.space();
        let name = self.config.name();
        let Some(index) = space.index(value, port) else {
            return Err(Error::Argument(format!(
                "ip: {ip} port {port} is not an address of pool {name:?}"
            ))
            .into());
        };
        if self.drained_set().contains(value) {
            return Err(Error::Argument(format!("ip: {ip} port {port} is on a drained IP")).into());
        }
        let now = now()?;
        self.release_due(now);
        Ok(self.reserve_index(index, (ip, port), data, now)?)
    }

    fn reserve_index(
        &self,
        index: u128,
        address: (IpAddr, u16),
        data: T,
        now: Option<f64>,
    ) -> Result<Lease, Error> {
        let mut writer = self.lock_writer();
        let owner = self.intervals.load().owner(index).cloned();
        match owner {
            Some(subpool) => self.reserve_in(&subpool, index, address, data, now),
            None => self.reserve_fresh(&mut writer, index, address, data, now),
        }
    }

    /// Take block `index` of a published subpool out of turn.
    fn reserve_in(
        &self,
        subpool: &Arc<Subpool<T>>,
        index: u128,
        (ip, port): (IpAddr, u16),
        data: T,
        now: Option<f64>,
    ) -> Result<Lease, Error> {
        let offset = (index - subpool.start) as u32;
        let block = &subpool.blocks[offset as usize];
        let name = self.config.name();
        let taken =
            |how: &str| Error::NotLive(format!("{ip} port {port} is {how} in pool {name:?}"));
        // The checks in the reference model's order; a release returning
        // the block right now is one committed step away: wait for it.
        loop {
            match block.mark_check() {
                Mark::Live => return Err(taken("live")),
                Mark::Held => return Err(taken("held")),
                Mark::Busy => spin_wait(),
                Mark::Marked => break,
            }
        }
        if let Some(client) = subpool.owner {
            return Err(Error::NotLive(format!(
                "{ip} port {port} is in a port block of client {client}"
            )));
        }
        if subpool.is_drain_fenced() || subpool.is_fenced() {
            return Err(Error::Exhausted(format!(
                "{ip} port {port} is in a subpool fenced by a drained IP of pool {name:?}"
            )));
        }
        if self.len() >= self.config.capacity() {
            return Err(self.exhausted(1, now));
        }
        // One free block fewer: the reservation of one.
        match subpool.free.reserve_in_place() {
            Reserve::Taken { count, last, .. } => self.reserved(subpool, count, last),
            // Every free block is promised to allocations in flight, this
            // one among them: they take it.
            Reserve::Empty => return Err(taken("being allocated")),
            Reserve::Closed => return Err(self.exhausted(1, now)),
        }
        loop {
            match block.mark() {
                Mark::Marked => break,
                Mark::Busy => spin_wait(),
                Mark::Live => {
                    self.unreserved(subpool);
                    return Err(taken("live"));
                }
                Mark::Held => {
                    self.unreserved(subpool);
                    return Err(taken("held"));
                }
            }
        }
        // Is the phantom still listed, or did a take pop the block?
        loop {
            let listed = subpool.free.listed(offset);
            match block.verdict() {
                Verdict::Lost => {
                    self.unreserved(subpool);
                    return Err(taken("live"));
                }
                Verdict::Discarded => break,
                Verdict::Marked if listed => break,
                Verdict::Marked => spin_wait(),
            }
        }
        subpool.set_client(offset, None);
        // SAFETY: this thread marked the block and its phantom was listed
        // after the mark, or a take discarded it: no take writes its data.
        let generation = unsafe { block.occupy_reserved(data) };
        Ok(Lease {
            handle: Handle::new(generation, subpool.id, offset),
            ip,
            port,
        })
    }

    /// Give back the reservation of a reserve that lost its block to an
    /// allocation (it took no entry).
    fn unreserved(&self, subpool: &Subpool<T>) {
        let available = subpool.free.unreserve();
        if available == 1 && subpool.owner.is_none() && subpool.serves() {
            self.availability.set(subpool.id); // the count left zero
        }
        self.tally.ended_and_returned(1);
    }

    /// An address in a free interval: a shared subpool for it by the chunk
    /// rule, its block taken before the subpool is published.
    fn reserve_fresh(
        &self,
        writer: &mut Writer,
        index: u128,
        address: (IpAddr, u16),
        data: T,
        now: Option<f64>,
    ) -> Result<Lease, Error> {
        let (gap_first, gap_count) = self
            .intervals
            .load()
            .gaps(self.config.address_count())
            .into_iter()
            .find(|&(first, count)| first <= index && index - first < count)
            .expect("an index in no subpool lies in a free interval");
        let (first, end, epoch) = if self.has_store() {
            let within = self
                .drained_set()
                .around(index, gap_first, gap_first + gap_count);
            match self.claim_index(index, within)? {
                ClaimAt::Granted(grant) => {
                    let first = u128::from(grant.first);
                    (first, first + u128::from(grant.count), Some(grant.epoch))
                }
                ClaimAt::Taken => {
                    return Err(Error::NotLive(format!(
                        "{} port {} is in a range another member of the cluster claims or holds",
                        address.0, address.1
                    )))
                }
                ClaimAt::Full => return Err(self.exhausted(1, now)),
            }
        } else {
            let (first, end) = self.chunk_for(writer, index, gap_first, gap_count, now)?;
            (first, end, None)
        };
        let offset = (index - first) as u32;
        let (subpool, generation) = self.publish_with(
            writer,
            first,
            (end - first) as u32,
            None,
            epoch,
            |subpool| {
                // Nobody else sees the subpool yet: reserve, mark, occupy.
                let Reserve::Taken { count, last, .. } = subpool.free.reserve_in_place() else {
                    unreachable!("a fresh subpool has every block free")
                };
                self.reserved(subpool, count, last);
                let block = &subpool.blocks[offset as usize];
                assert_eq!(block.mark(), Mark::Marked, "a fresh block is free");
                // SAFETY: marked by this thread; the subpool is not published.
                unsafe { block.occupy_reserved(data) }
            },
        )?;
        writer.created = true;
        if subpool.free.has_free() {
            self.availability.set(subpool.id);
        }
        let block = &subpool.blocks[offset as usize];
        Ok(Lease {
            handle: Handle::new(generation, subpool.id, offset),
            ip: subpool.ips[block.ip_slot as usize],
            port: block.port,
        })
    }

    /// The chunk rule without a store: the `first..end` of a subpool for
    /// `index` in the free interval `gap_first..+gap_count`.
    fn chunk_for(
        &self,
        writer: &Writer,
        index: u128,
        gap_first: u128,
        gap_count: u128,
        now: Option<f64>,
    ) -> Result<(u128, u128), Error> {
        let size = u128::from(if writer.created {
            self.config.subpool_blocks()
        } else {
            self.config.initial_blocks()
        });
        let first = gap_first + (index - gap_first) / size * size;
        let end = (first + size).min(gap_first + gap_count);
        let (mut first, mut end) = self.drained_set().around(index, first, end);
        let room = self
            .config
            .capacity()
            .saturating_sub(self.blocks.load(Ordering::Acquire));
        if room == 0 {
            return Err(self.exhausted(1, now));
        }
        if end - first > u128::from(room) {
            (first, end) = (index, (index + u128::from(room)).min(end));
        }
        Ok((first, end))
    }
}
