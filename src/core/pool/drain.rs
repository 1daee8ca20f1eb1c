//! Draining an IP (`docs/shapes.md`, "Drain"): no new lease on it, live
//! leases stay valid and are freed normally, and its subpools go as they
//! empty; `undrain` puts it back.
//!
//! `drain` and `undrain` run under the writer lock, so they are serialised
//! with subpool creation and deletion. A subpool holding an address of a
//! drained IP is *drain-fenced*: its free list's `DRAINED` bit refuses every
//! reservation (as a cluster fence's `CLOSED` does, but `undrain` clears
//! it, leaving the free blocks in their order), and its availability bit is
//! cleared. It is deleted, whatever the keep rule says, as soon as none of
//! its blocks is live or held: by `drain` if that is so already, else by
//! the free (or the end of a hold) that returns its last block, which waits
//! for the writer lock for it (the deletion is not optional; only frees of
//! drain-fenced subpools ever wait). A port block of a drained IP is
//! released by its client's last free, as always.

use std::net::IpAddr;

use crate::core::error::Error;
use crate::core::pool::writer::Writer;
use crate::core::pool::Pool;
use crate::core::subpool::Subpool;
use crate::core::sync::{Arc, Ordering};

impl<T: Default + Send + Sync> Pool<T> {
    /// Hand out no new lease on `ip` (an IP of the pool's family with an
    /// address in the space, else [`Error::Argument`]). Draining a drained
    /// IP changes nothing.
    pub fn drain(&self, ip: impl Into<IpAddr>) -> Result<(), Error> {
        let (ip, run) = self.ip_argument(ip.into())?;
        let mut writer = self.lock_writer();
        let drained = self.drained_set();
        if drained.contains(ip) {
            return Ok(());
        }
        self.drained_ips
            .store(Some(Arc::new(drained.with(ip, run))));
        let mut touched: Vec<Arc<Subpool<T>>> = self
            .intervals
            .load()
            .subpools
            .iter()
            .filter(|s| s.start < run.1 && run.0 < s.end())
            .cloned()
            .collect();
        touched.sort_by_key(|s| s.id);
        for subpool in touched {
            if subpool.drain_fence() {
                self.drain_fenced_subpools.fetch_add(1, Ordering::AcqRel);
                self.fenced_subpools.fetch_add(1, Ordering::AcqRel);
            }
            self.availability.clear(subpool.id);
            if subpool.owner.is_none() && subpool.free.available() == u64::from(subpool.len()) {
                self.delete_drained(&mut writer, &subpool);
            }
        }
        Ok(())
    }

    /// Hand out `ip` again: every drain-fenced subpool that no drained IP
    /// touches any more serves again. Undraining an IP that is not drained
    /// changes nothing.
    pub fn undrain(&self, ip: impl Into<IpAddr>) -> Result<(), Error> {
        let (ip, _) = self.ip_argument(ip.into())?;
        let _writer = self.lock_writer();
        let drained = self.drained_set();
        if !drained.contains(ip) {
            return Ok(());
        }
        let left = drained.without(ip);
        for subpool in &self.intervals.load().subpools {
            if subpool.is_drain_fenced()
                && !left.touches(subpool.start, subpool.end())
                && subpool.drain_unfence()
            {
                self.drain_fenced_subpools.fetch_sub(1, Ordering::AcqRel);
                self.fenced_subpools.fetch_sub(1, Ordering::AcqRel);
                if subpool.owner.is_none() && subpool.free.has_free() {
                    self.availability.set(subpool.id);
                }
            }
        }
        self.drained_ips.store(Some(Arc::new(left)));
        Ok(())
    }

    /// The drained IPs, ascending.
    pub fn drained(&self) -> Vec<IpAddr> {
        let family = self.config.family();
        self.drained_set()
            .ips()
            .into_iter()
            .map(|ip| family.ip(ip))
            .collect()
    }

    /// An IP of the pool's family with an address in the space, and the
    /// indices of its addresses.
    fn ip_argument(&self, ip: IpAddr) -> Result<(u128, (u128, u128)), Error> {
        let value = self.own_family(ip)?;
        let run = self.config.space().ip_indices(value).ok_or_else(|| {
            Error::Argument(format!(
                "ip: {ip} has no address in pool {:?}",
                self.config.name()
            ))
        })?;
        Ok((value, run))
    }

    /// A free returned the last block of the drain-fenced shared `subpool`
    /// (its push saw the drained bit): delete it, waiting for the writer
    /// lock (the deletion is due, not optional). An undrain may have come
    /// first: then the subpool is an ordinary idle one, which stays (the
    /// next free that empties it applies the keep rule).
    pub(super) fn drained_subpool_emptied(&self, subpool: &Arc<Subpool<T>>) {
        let mut writer = self.lock_writer();
        if self.is_published(subpool) && subpool.is_drain_fenced() {
            self.delete_drained(&mut writer, subpool);
        }
    }

    /// Delete a drain-fenced shared subpool none of whose blocks is live or
    /// held (writer lock held): its list closes (a reservation that came
    /// first keeps it), then in a cluster its claim is returned (a lapsed
    /// claim's subpool is dropped instead; if the store fails, the subpool
    /// stays, and the next allocation's fencing step tries again).
    pub(super) fn delete_drained(&self, writer: &mut Writer, subpool: &Arc<Subpool<T>>) {
        let total = u64::from(subpool.len());
        if !subpool.free.try_close(total) {
            return;
        }
        if self.claim_lapsed(subpool) {
            self.drop_lapsed(writer, subpool); // not returned: lapsed
            return;
        }
        if !self.return_claim(subpool) {
            subpool.free.reopen(total);
            self.retry_fencing();
            return;
        }
        self.unpublish(writer, subpool);
    }

    /// Free blocks of shared subpools that a drained IP fences.
    pub(super) fn drain_fenced_free_blocks(&self) -> u64 {
        self.shared_free_where(&self.drain_fenced_subpools, Subpool::is_drain_fenced)
    }
}
