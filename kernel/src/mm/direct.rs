//! Access to physical memory through the bootloader's direct map (all of
//! physical memory mapped at one offset, write-back cached), as a
//! `hal::DirectMap`. RAM only: device registers go through `ioremap`, which
//! maps them uncached.

use hal::{DirectMap, PhysAddr, VirtAddr};
use spin::Once;

static DIRECT: Once<DirectMap> = Once::new();

/// `offset`: where the bootloader mapped physical address 0; `limit`: the end
/// of the highest range in the memory map (the direct map stops there).
pub fn init(offset: u64, limit: u64) {
    // SAFETY: the bootloader maps every physical address below `limit` at
    // `offset` for the kernel's whole life (BOOTLOADER_CONFIG asks for it).
    DIRECT.call_once(|| unsafe { DirectMap::new(VirtAddr::new(offset), limit) });
}

/// The direct map; panics if used before `init`, which main calls first.
pub fn direct() -> DirectMap {
    *DIRECT.get().expect("direct map used before init")
}

/// Where physical address `pa` appears in the direct map.
pub fn to_virt(pa: u64) -> VirtAddr {
    direct().virt(PhysAddr::new(pa))
}

/// The direct map as a `'static` reference (for `PhysMemory` trait objects).
pub fn direct_ref() -> &'static DirectMap {
    DIRECT.get().expect("direct map used before init")
}
