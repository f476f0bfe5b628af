//! What an entry holds (SDM Vol. 3A Tables 4-14 to 4-20): the address bits of each
//! entry kind, the present and page-size bits, and the leaf sizes.

use x86_64::structures::paging::PageTableFlags;

/// Entries per table.
pub(super) const ENTRIES: u64 = 512;
/// Physical address bits 12..51 of an entry pointing to a table or a 4 KiB page.
pub(super) const ADDR_4K: u64 = 0x000f_ffff_ffff_f000;
/// Physical address bits 21..51 of a 2 MiB leaf.
pub(super) const ADDR_2M: u64 = 0x000f_ffff_ffe0_0000;
/// Physical address bits 30..51 of a 1 GiB leaf.
pub(super) const ADDR_1G: u64 = 0x000f_ffff_c000_0000;

pub(super) const P: u64 = PageTableFlags::PRESENT.bits();
pub(super) const PS: u64 = PageTableFlags::HUGE_PAGE.bits();

/// Page sizes a leaf can map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB, a PTE in a level-1 table.
    Size4K,
    /// 2 MiB, a PDE with PS=1.
    Size2M,
    /// 1 GiB, a PDPTE with PS=1 (recognised by `translate`/`unmap`; not created).
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// Level of the table holding a leaf of this size (1 = PT, 2 = PD, 3 = PDPT).
    pub(super) const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }

    pub(super) const fn addr_mask(self) -> u64 {
        match self {
            PageSize::Size4K => ADDR_4K,
            PageSize::Size2M => ADDR_2M,
            PageSize::Size1G => ADDR_1G,
        }
    }
}
