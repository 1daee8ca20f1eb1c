//! A cluster's shared interval list, as the pool sees it: the store that
//! grants ranges of the address space (claims) to the pool instances
//! (members) of one pool name.
//!
//! Only subpool creation and deletion, the renewal of claims and leaving the
//! cluster talk to the store; allocate, free and lookup never do. The Python
//! binding implements [`Store`] over `natpool.store` (SQLite, PostgreSQL);
//! the member's rules (deadlines, self-fencing, what an outage skips) are the
//! pool's, in `pool/cluster.rs`, and follow the reference model
//! (`natpool/reference/pool.py` and `natpool/store/member.py`) call for call.

use std::time::Duration;

use crate::core::error::Error;

/// A claim just granted: `count` addresses from index `first`, and the
/// claim's epoch (its fencing token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub first: u64,
    pub count: u64,
    pub epoch: u64,
}

/// The store's answer to [`Store::claim_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimAt {
    /// The chunk holding the address, claimed.
    Granted(Grant),
    /// The address is in a range claimed or held in the cluster.
    Taken,
    /// The cluster's capacity is all claimed.
    Full,
}

/// The store as one member of one pool uses it (the pool's name, the
/// member's name, `claim_ttl` and `reclaim_delay` are the implementation's).
/// Every method is one transaction of the store; an `Err` (use
/// [`Error::Store`]) means the store changed nothing.
pub trait Store: Send + Sync {
    /// Claim the first addresses of the lowest free range of the cluster;
    /// `None` when the cluster has nothing left to claim.
    fn claim(&self) -> Result<Option<Grant>, Error>;
    /// Claim the chunk of the free range that holds address `index`, clipped
    /// to `within` (`first..end`, the member's own bounds), for
    /// `Pool::reserve` (`natpool.store.Store.claim_at` has the rule). A store
    /// that cannot answers [`Error::Unsupported`], the default.
    fn claim_at(&self, index: u64, within: (u64, u64)) -> Result<ClaimAt, Error> {
        let _ = (index, within);
        Err(Error::Unsupported(
            "this store cannot claim a given address".into(),
        ))
    }
    /// Claim exactly `ranges` (`(first, count)`, ascending) again for a
    /// member restored from a snapshot, all or nothing: the grants in the
    /// same order, or `None` if another member's range meets them or the
    /// capacity would be exceeded (`natpool.store.Store.reclaim` has the
    /// rule). A store that cannot answers [`Error::Unsupported`], the default.
    fn reclaim(&self, ranges: &[(u64, u64)]) -> Result<Option<Vec<Grant>>, Error> {
        let _ = ranges;
        Err(Error::Unsupported(
            "this store cannot claim given ranges again".into(),
        ))
    }
    /// Return a claim (the range is held `reclaim_delay` before anyone may
    /// claim it again).
    fn release(&self, epoch: u64) -> Result<(), Error>;
    /// Extend the claims `epochs` (and the member's heartbeat); returns the
    /// epochs renewed. One missing from the answer is lost.
    fn renew(&self, epochs: &[u64]) -> Result<Vec<u64>, Error>;
    /// Return the claims `epochs` and leave the cluster.
    fn leave(&self, epochs: &[u64]) -> Result<(), Error>;
}

/// How a pool takes part in a cluster.
pub struct Membership {
    pub store: Box<dyn Store>,
    /// How long a claim lasts unless renewed (by the store's clock). The pool
    /// stops allocating from a claim `claim_ttl` after the start of the last
    /// request that granted or renewed it, by its own monotonic clock, so
    /// before the store may consider it lapsed.
    pub claim_ttl: Duration,
    /// How often the pool's thread renews its claims; zero: no thread, the
    /// owner calls [`Pool::renew`](crate::Pool::renew).
    pub renew_interval: Duration,
}
