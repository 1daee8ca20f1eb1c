//! A storage subpool: a fixed run of connection blocks, each initialized with
//! its client NAT address when the subpool is created, and its free list.

use crate::core::block::ConnectionBlock;
use crate::core::config::Config;
use crate::core::error::Error;
use crate::core::free_list::FreeList;
use crate::core::sync::AtomicU32;

pub struct Subpool<T> {
    /// The subpool's id: the lowest id not in use when it was created.
    pub id: u32,
    /// Index of its first address in the pool's address space.
    pub start: u64,
    pub blocks: Box<[ConnectionBlock<T>]>,
    pub free: FreeList,
    /// Blocks freed with a hold that has not ended (changed under the held
    /// queue's lock; read as a snapshot).
    pub held: AtomicU32,
}

impl<T: Default> Subpool<T> {
    /// Allocate `count` blocks for the addresses `start..start + count`, every
    /// block at `generation`.
    pub fn new(
        config: &Config,
        id: u32,
        start: u64,
        count: u32,
        generation: u32,
    ) -> Result<Self, Error> {
        let mut blocks = Vec::new();
        blocks.try_reserve_exact(count as usize).map_err(|_| {
            Error::OutOfMemory(format!("cannot allocate a subpool of {count} blocks"))
        })?;
        blocks.extend((0..u64::from(count)).map(|i| {
            let (ip, port) = config.address(start + i);
            ConnectionBlock::new(ip, port, generation)
        }));
        Ok(Subpool {
            id,
            start,
            blocks: blocks.into_boxed_slice(),
            free: FreeList::new(config.order(), count)?,
            held: AtomicU32::new(0),
        })
    }

    pub fn len(&self) -> u32 {
        self.blocks.len() as u32
    }

    /// Whether address `index` belongs to this subpool.
    pub fn covers(&self, index: u64) -> bool {
        index >= self.start && index - self.start < u64::from(self.len())
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
