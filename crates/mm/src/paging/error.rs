//! Why a map, unmap or flag change failed.

use core::fmt;

use hal::{PhysAddr, VirtAddr};

use super::PageSize;

/// Mapping errors. On error nothing was changed (a failed `map_range` undoes its part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The virtual or physical address (or length) is not aligned to the page size.
    Misaligned,
    /// A leaf already maps this page (`existing` is the frame it maps).
    AlreadyMapped {
        /// The virtual address in the way.
        va: VirtAddr,
        /// What it maps.
        existing: PhysAddr,
    },
    /// A 4 KiB mapping inside a region already mapped by a 2 MiB/1 GiB page.
    HugePageOverlap {
        /// Start of the huge page in the way.
        huge_va: VirtAddr,
    },
    /// A 2 MiB mapping where a page table already exists (it may hold 4 KiB mappings).
    TableInTheWay {
        /// Start of the 2 MiB region.
        va: VirtAddr,
    },
    /// The frame source ran out of frames for an intermediate table.
    OutOfFrames,
    /// 1 GiB leaves are not created by this mapper.
    UnsupportedSize,
    /// The virtual range wraps around the end of the address space.
    RangeOverflow,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Misaligned => f.write_str("address not aligned to the page size"),
            MapError::AlreadyMapped { va, existing } => write!(
                f,
                "{:#x} is already mapped to {:#x}",
                va.as_u64(),
                existing.as_u64()
            ),
            MapError::HugePageOverlap { huge_va } => {
                write!(f, "overlaps the huge page at {:#x}", huge_va.as_u64())
            }
            MapError::TableInTheWay { va } => write!(
                f,
                "a page table already covers the 2 MiB region at {:#x}",
                va.as_u64()
            ),
            MapError::OutOfFrames => f.write_str("out of frames for page tables"),
            MapError::UnsupportedSize => f.write_str("page size not supported for mapping"),
            MapError::RangeOverflow => f.write_str("virtual range wraps around"),
        }
    }
}

/// Errors of `unmap` and `set_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmapError {
    /// Nothing is mapped at this address.
    NotMapped(VirtAddr),
    /// The address is inside a mapped page but not at its start.
    NotPageStart {
        /// Address given.
        va: VirtAddr,
        /// Size of the page containing it.
        size: PageSize,
    },
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmapError::NotMapped(va) => write!(f, "{:#x} is not mapped", va.as_u64()),
            UnmapError::NotPageStart { va, size } => write!(
                f,
                "{:#x} is inside a {size:?} page, not at its start",
                va.as_u64()
            ),
        }
    }
}
