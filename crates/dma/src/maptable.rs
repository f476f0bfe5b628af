//! A device's live mappings, keyed by bus address (Linux keeps this knowledge in the
//! swiotlb's `io_tlb_orig_addr` and the IOVA rbtree; here one ordered table per device):
//! unmap and sync find their record in O(log n), with or without dma-debug.

use crate::debug::{MapType, MappingInfo};
use crate::mapping::Mapping;
use crate::DmaDirection;
use alloc::collections::BTreeMap;
use hal::DmaAddr;

/// Live mappings by (bus address, sequence number): the same buffer mapped twice
/// directly has one bus address twice.
#[derive(Default)]
pub(crate) struct MapTable {
    live: BTreeMap<(u64, u64), Mapping>,
    next: u64,
}

/// What an unmap found.
pub(crate) enum Taken {
    /// Nothing at that address.
    None,
    /// A mapping made another way (left in place).
    WrongType(MappingInfo),
    /// The mapping, removed from the table.
    Mapping(Mapping),
}

impl MapTable {
    pub(crate) fn insert(&mut self, m: Mapping) {
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        self.live.insert((m.dma.as_u64(), seq), m);
    }

    /// Mappings that start at `addr`.
    fn starting_at(&self, addr: DmaAddr) -> impl Iterator<Item = (&(u64, u64), &Mapping)> {
        let a = addr.as_u64();
        self.live.range((a, 0)..=(a, u64::MAX))
    }

    /// Removes the record an unmap of `addr` means: among the mappings starting there,
    /// the one that matches the caller's type, then length, then direction best.
    pub(crate) fn take(
        &mut self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
    ) -> Taken {
        let score = |m: &Mapping| {
            (m.map_type == map_type) as u8 * 4 + (m.len == len) as u8 * 2 + (m.dir == dir) as u8
        };
        let best = self
            .starting_at(addr)
            .max_by_key(|(_, m)| score(m))
            .map(|(k, m)| (*k, m.map_type == map_type, m.info()));
        match best {
            None => Taken::None,
            Some((_, false, info)) => Taken::WrongType(info),
            Some((key, true, _)) => match self.live.remove(&key) {
                Some(m) => Taken::Mapping(m),
                None => Taken::None,
            },
        }
    }

    /// The mapping a sync at `addr` (possibly inside it) means: one that starts there,
    /// else one of those starting at the nearest address below that contains `addr`;
    /// among several, the one with the caller's direction. (Mappings do not overlap
    /// except when one buffer is mapped more than once directly, and then they share
    /// their start.)
    pub(crate) fn containing(&self, addr: DmaAddr, dir: DmaDirection) -> Option<Mapping> {
        let a = addr.as_u64();
        let start = match self.starting_at(addr).next() {
            Some(_) => a,
            None => self.live.range(..(a, 0)).next_back()?.0 .0,
        };
        self.starting_at(DmaAddr::new(start))
            .map(|(_, m)| m)
            .filter(|m| a - start < m.len as u64)
            .max_by_key(|m| (m.dir == dir) as u8)
            .cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// The mapping made first among those still live (what a leak report names).
    pub(crate) fn oldest(&self) -> Option<MappingInfo> {
        self.live
            .iter()
            .min_by_key(|((_, seq), _)| *seq)
            .map(|(_, m)| m.info())
    }

    pub(crate) fn infos(&self) -> impl Iterator<Item = MappingInfo> + '_ {
        self.live.values().map(Mapping::info)
    }
}
