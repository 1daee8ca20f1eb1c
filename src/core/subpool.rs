//! A storage subpool: a fixed run of connection blocks, each initialized with
//! its client NAT address when the subpool is created, and its free list.

use std::net::IpAddr;

use crate::core::block::ConnectionBlock;
use crate::core::config::Config;
use crate::core::error::Error;
use crate::core::free_list::FreeList;
use crate::core::pool::HomeCell;
use crate::core::snapshot::Standing;
use crate::core::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};

pub struct Subpool<T> {
    /// The subpool's id: the lowest id not in use when it was created.
    pub id: u32,
    /// Index of its first address in the pool's address space.
    pub start: u128,
    pub blocks: Box<[ConnectionBlock<T>]>,
    /// The IPs of its blocks, ascending, each once: a block holds the slot
    /// of its IP here (`ConnectionBlock::ip_slot`). Usually one or two.
    pub ips: Box<[IpAddr]>,
    pub free: FreeList,
    /// Blocks freed with a hold that has not ended (changed under the held
    /// queue's lock; read as a snapshot).
    pub held: AtomicU32,
    /// The client whose port block this is; `None`: a shared subpool.
    pub owner: Option<u64>,
    /// With client settings: per block, the client of its lease plus one (0:
    /// none), written by the allocator before it publishes the lease and
    /// read after the lease's release (the block's state orders both).
    clients: Option<Box<[AtomicU64]>>,
    /// In a cluster: the epoch of the claim its addresses come from.
    pub epoch: Option<u64>,
    /// In a cluster: the claim lapsed and the subpool serves no allocation
    /// (its free list is closed); it goes when its last lease is freed.
    fenced: AtomicBool,
    /// It holds an address of a drained IP: it serves no allocation (its
    /// free list is drained) and goes when none of its blocks is live or
    /// held. Changed under the writer lock.
    drain_fenced: AtomicBool,
    /// Whose home subpool it is, if anybody's (`pool/home.rs`).
    pub(crate) home: HomeCell,
}

impl<T: Default> Subpool<T> {
    /// Allocate `count` blocks for the addresses `start..start + count`, every
    /// block at `generation`.
    pub fn new(
        config: &Config,
        id: u32,
        start: u128,
        count: u32,
        generation: u32,
        owner: Option<u64>,
        epoch: Option<u64>,
    ) -> Result<Self, Error> {
        let (blocks, ips) = Self::blocks(config, start, count, |_, ip_slot, port| {
            ConnectionBlock::new(ip_slot, port, generation)
        })?;
        Ok(Subpool {
            id,
            start,
            blocks,
            ips,
            free: FreeList::new(config.order(), count)?,
            held: AtomicU32::new(0),
            owner,
            clients: config.policy.tracks_clients().then(|| {
                (0..count)
                    .map(|_| AtomicU64::new(0))
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            }),
            epoch,
            fenced: AtomicBool::new(false),
            drain_fenced: AtomicBool::new(false),
            home: HomeCell::new(),
        })
    }

    /// A subpool a snapshot restores (its parts checked against each other
    /// and `config`, `snapshot/check.rs`): per block, its generation,
    /// standing and client key; its free list's entries in their order
    /// (live and held ones are reserved blocks' phantoms); `data` gives a
    /// live block at `offset` of `generation` its data.
    #[allow(clippy::too_many_arguments)]
    pub fn restored(
        config: &Config,
        id: u32,
        start: u128,
        parts: (&[u32], &[Standing], &[Option<u64>]),
        listed: &[u32],
        owner: Option<u64>,
        drain_fenced: bool,
        mut data: impl FnMut(u32, u32) -> T,
    ) -> Result<Self, Error> {
        let (generations, standings, clients) = parts;
        let count = standings.len() as u32;
        let mut in_list = vec![false; standings.len()];
        for &offset in listed {
            in_list[offset as usize] = true;
        }
        let (blocks, ips) = Self::blocks(config, start, count, |offset, ip_slot, port| {
            let at = offset as usize;
            let (generation, standing) = (generations[at], standings[at]);
            let data = match standing {
                Standing::Live => data(offset, generation),
                Standing::Free | Standing::Held => T::default(),
            };
            ConnectionBlock::restored(ip_slot, port, generation, standing, in_list[at], data)
        })?;
        let free = standings.iter().filter(|&&s| s == Standing::Free).count() as u64;
        let held = standings.iter().filter(|&&s| s == Standing::Held).count() as u32;
        Ok(Subpool {
            id,
            start,
            blocks,
            ips,
            free: FreeList::restored(config.order(), count, listed, free, drain_fenced)?,
            held: AtomicU32::new(held),
            owner,
            clients: config.policy.tracks_clients().then(|| {
                clients
                    .iter()
                    .map(|client| AtomicU64::new(client.map_or(0, |c| c + 1)))
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            }),
            epoch: None,
            fenced: AtomicBool::new(false),
            drain_fenced: AtomicBool::new(drain_fenced),
            home: HomeCell::new(),
        })
    }

    /// The `count` blocks of the addresses from `start`, made by `block`
    /// (offset, IP slot, port), and their IPs; `OutOfMemory` rather than
    /// an abort.
    #[allow(clippy::type_complexity)]
    fn blocks(
        config: &Config,
        start: u128,
        count: u32,
        mut block: impl FnMut(u32, u32, u16) -> ConnectionBlock<T>,
    ) -> Result<(Box<[ConnectionBlock<T>]>, Box<[IpAddr]>), Error> {
        let out_of_memory =
            |_| Error::OutOfMemory(format!("cannot allocate a subpool of {count} blocks"));
        let mut blocks = Vec::new();
        blocks
            .try_reserve_exact(count as usize)
            .map_err(out_of_memory)?;
        let mut ips: Vec<u128> = Vec::new();
        // A run of one IP's ports at a time: the blocks' loop is over ports.
        let mut runs = config.space().runs(start);
        while blocks.len() < count as usize {
            let Some((ip, port, ports)) = runs.next() else {
                break;
            };
            if ips.last() != Some(&ip) {
                ips.try_reserve(1).map_err(out_of_memory)?;
                ips.push(ip);
            }
            let (offset, ip_slot) = (blocks.len() as u32, (ips.len() - 1) as u32);
            let ports = ports.min(count - offset);
            blocks.extend((0..ports).map(|i| block(offset + i, ip_slot, port + i as u16)));
        }
        let family = config.family();
        Ok((
            blocks.into_boxed_slice(),
            ips.into_iter().map(|ip| family.ip(ip)).collect(),
        ))
    }

    /// Record the client of the lease block `offset` now holds (the
    /// allocator, before it publishes the lease).
    #[inline]
    pub fn set_client(&self, offset: u32, client: Option<u64>) {
        if let Some(clients) = &self.clients {
            clients[offset as usize].store(client.map_or(0, |c| c + 1), Ordering::Relaxed);
        }
    }

    /// The client of the lease block `offset` held (after its release).
    #[inline]
    pub fn client(&self, offset: u32) -> Option<u64> {
        let clients = self.clients.as_ref()?;
        clients[offset as usize]
            .load(Ordering::Relaxed)
            .checked_sub(1)
    }

    pub fn len(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// Whether address `index` belongs to this subpool.
    pub fn covers(&self, index: u128) -> bool {
        index >= self.start && index - self.start < u128::from(self.len())
    }

    /// The index after its last address.
    pub fn end(&self) -> u128 {
        self.start + u128::from(self.len())
    }

    /// Whether the subpool was fenced (see [`fence`](Self::fence)).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Stop allocations from the subpool for good (its claim lapsed); true
    /// for the call that fenced it. Frees still return blocks.
    pub fn fence(&self) -> bool {
        if self.fenced.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.free.fence();
        true
    }

    /// Whether a drained IP fences the subpool.
    pub fn is_drain_fenced(&self) -> bool {
        self.drain_fenced.load(Ordering::Acquire)
    }

    /// Whether it serves allocations as far as fencing goes (neither its
    /// claim lapsed nor a drained IP fences it).
    pub fn serves(&self) -> bool {
        !self.is_fenced() && !self.is_drain_fenced()
    }

    /// A drained IP fences it (writer lock held); true if it was not yet.
    pub fn drain_fence(&self) -> bool {
        if self.drain_fenced.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.free.drain();
        true
    }

    /// No drained IP fences it any more (writer lock held); true if one did.
    pub fn drain_unfence(&self) -> bool {
        if !self.drain_fenced.swap(false, Ordering::AcqRel) {
            return false;
        }
        self.free.undrain();
        true
    }

    /// The highest generation among the blocks (for the id's next holder).
    pub fn highest_generation(&self) -> u32 {
        self.blocks
            .iter()
            .map(ConnectionBlock::generation)
            .max()
            .unwrap_or(0)
    }
}
