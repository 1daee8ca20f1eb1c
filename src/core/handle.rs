//! Lease handles: `generation << 64 | subpool_id << 32 | offset`.
//!
//! A block's generation (32 bits, wrapping) is bumped each time the block is
//! freed, so a handle kept after its lease was freed no longer matches once
//! the block is reused; it would match again only after 2^32 further reuses
//! of that one block. A subpool created under an id used before starts its
//! blocks at the highest generation the previous holder of the id reached.

/// An opaque lease handle (96 significant bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u128);

impl Handle {
    pub(crate) fn new(generation: u32, subpool: u32, offset: u32) -> Self {
        Handle(u128::from(generation) << 64 | u128::from(subpool) << 32 | u128::from(offset))
    }

    /// `(generation, subpool id, offset)`, or `None` for a value no handle has.
    pub fn parts(self) -> Option<(u32, u32, u32)> {
        if self.0 >> 96 != 0 {
            return None;
        }
        Some(((self.0 >> 64) as u32, (self.0 >> 32) as u32, self.0 as u32))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let h = Handle::new(7, 3, 11);
        assert_eq!(h.0, 7 << 64 | 3 << 32 | 11);
        assert_eq!(h.parts(), Some((7, 3, 11)));
        assert_eq!(Handle(1 << 96).parts(), None);
    }
}
