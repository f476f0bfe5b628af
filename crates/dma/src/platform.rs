//! The platform trait the kernel implements.

use crate::{DmaDirection, ZONE_DMA32_LIMIT, ZONE_DMA_LIMIT};
use hal::{PhysAddr, PhysMemory};

/// What the DMA layer needs from the machine. The kernel implements it once (a
/// `'static` value) over its zoned buddy allocator and direct map; host tests implement
/// it over `hal::Arena`.
///
/// # Safety
/// Implementors promise:
/// * a block returned by [`alloc_pages`](Self::alloc_pages) is `PAGE_SIZE << order`
///   bytes, aligned to its size, RAM, and owned exclusively by the caller until it is
///   given back with [`free_pages`](Self::free_pages) (nothing else reads or writes it);
/// * [`mem`](Self::mem)`().phys_to_virt(pa)`, where it returns `Some` for the first
///   byte of such a block, gives a CPU virtual address at which the *whole* block is
///   mapped linearly, readable and writable, for as long as the block is allocated.
///
/// Coherent memory hands out `&mut [u8]` into such blocks on the strength of this.
#[allow(unsafe_code)] // an unsafe trait: implementors vouch for the contract above
pub unsafe trait DmaPlatform: Sync {
    /// Byte access to physical memory (the kernel's direct map).
    fn mem(&self) -> &dyn PhysMemory;

    /// Allocates `2^order` contiguous pages, preferably entirely at or below `limit`
    /// (inclusive). The kernel maps the limit to a zone with [`DmaZone::for_limit`]
    /// (`Dma` → its `ZoneLimit::Dma`, …); a result above `limit` is allowed (a zone may
    /// reach higher than the mask): the caller checks and retries with a lower limit,
    /// as Linux's `__dma_direct_alloc_pages` does.
    fn alloc_pages(&self, order: u32, limit: u64) -> Option<PhysAddr>;

    /// Gives back a block from [`alloc_pages`](Self::alloc_pages) with the same order.
    fn free_pages(&self, pa: PhysAddr, order: u32);

    /// The highest RAM address (inclusive): a mask covering it needs no bouncing.
    fn max_phys_addr(&self) -> u64;

    /// Cache maintenance before the device accesses `[pa, pa+len)` (Linux
    /// `arch_sync_dma_for_device`). Called only for devices marked non-coherent
    /// ([`DmaParams::coherent`](crate::DmaParams::coherent) = false); x86 is coherent,
    /// so normally never. The default writes back and invalidates the lines.
    fn cache_sync_for_device(&self, pa: PhysAddr, len: usize, dir: DmaDirection) {
        let _ = dir;
        if let Some(va) = self.mem().phys_to_virt(pa) {
            hal::clflush_range(va, len);
        }
    }

    /// Cache maintenance before the CPU reads what the device wrote (Linux
    /// `arch_sync_dma_for_cpu`). Only for non-coherent devices, and only when the device
    /// may have written (`FromDevice` / `Bidirectional`).
    fn cache_sync_for_cpu(&self, pa: PhysAddr, len: usize, dir: DmaDirection) {
        let _ = dir;
        if let Some(va) = self.mem().phys_to_virt(pa) {
            hal::clflush_range(va, len);
        }
    }
}

/// The allocation zone a physical limit needs (Linux `dma_direct_optimal_gfp_mask`,
/// hw-facts §3.2). The kernel maps it 1:1 to `mm::ZoneLimit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaZone {
    /// Below 16 MiB (`GFP_DMA`).
    Dma,
    /// Below 4 GiB (`GFP_DMA32`).
    Dma32,
    /// Anywhere.
    Any,
}

impl DmaZone {
    /// The zone for an inclusive physical limit: ≤ 16 MiB−1 → `Dma`, ≤ 4 GiB−1 →
    /// `Dma32`, else `Any`.
    pub const fn for_limit(limit: u64) -> DmaZone {
        if limit <= ZONE_DMA_LIMIT {
            DmaZone::Dma
        } else if limit <= ZONE_DMA32_LIMIT {
            DmaZone::Dma32
        } else {
            DmaZone::Any
        }
    }

    /// The zone's own highest address (inclusive).
    pub const fn limit(self) -> u64 {
        match self {
            DmaZone::Dma => ZONE_DMA_LIMIT,
            DmaZone::Dma32 => ZONE_DMA32_LIMIT,
            DmaZone::Any => u64::MAX,
        }
    }

    /// The next zone down, for the retry when a block came back above the mask.
    pub const fn lower(self) -> Option<DmaZone> {
        match self {
            DmaZone::Any => Some(DmaZone::Dma32),
            DmaZone::Dma32 => Some(DmaZone::Dma),
            DmaZone::Dma => None,
        }
    }
}

/// Smallest `order` with `PAGE_SIZE << order >= len` (`len` > 0).
pub(crate) fn order_for(len: usize) -> u32 {
    let pages = len.div_ceil(crate::PAGE_SIZE).max(1);
    pages.next_power_of_two().trailing_zeros()
}

/// Allocates `2^order` pages entirely at or below `mask`, retrying in lower zones like
/// Linux's dma-direct (hw-facts §3.2 step 4). Returns the block's address.
pub(crate) fn alloc_below(platform: &dyn DmaPlatform, order: u32, mask: u64) -> Option<PhysAddr> {
    let size = (crate::PAGE_SIZE as u64) << order;
    let mut zone = DmaZone::for_limit(mask);
    let mut limit = mask;
    loop {
        if let Some(pa) = platform.alloc_pages(order, limit) {
            let fits = pa
                .as_u64()
                .checked_add(size - 1)
                .is_some_and(|end| end <= mask);
            if fits {
                return Some(pa);
            }
            platform.free_pages(pa, order);
        }
        zone = zone.lower()?;
        limit = zone.limit().min(mask);
    }
}
