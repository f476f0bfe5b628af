//! Access to physical memory through the bootloader's direct map (all of
//! physical memory mapped at one offset, write-back cached). RAM only: device
//! registers go through `ioremap`, which maps them uncached.

use core::sync::atomic::{AtomicU64, Ordering};

use hal::{PhysAddr, PhysMemory, VirtAddr};

static OFFSET: AtomicU64 = AtomicU64::new(u64::MAX);

pub fn init(offset: u64) {
    OFFSET.store(offset, Ordering::Relaxed);
}

/// Where physical address `pa` appears in the direct map.
pub fn to_virt(pa: u64) -> VirtAddr {
    let off = OFFSET.load(Ordering::Relaxed);
    assert!(off != u64::MAX, "physmem used before init");
    VirtAddr::new(off + pa)
}

/// `PhysMemory` for kernel code: byte copies through the direct map.
#[derive(Clone, Copy, Default)]
pub struct DirectMap;

impl PhysMemory for DirectMap {
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        let src = to_virt(pa.as_u64()).as_ptr::<u8>();
        // SAFETY: the direct map covers all physical memory the firmware
        // reported; callers pass RAM ranges they own or tables the firmware
        // left for the OS, and `buf` cannot overlap the source range's
        // direct-map alias while borrowed mutably here.
        unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
    }

    fn write(&self, pa: PhysAddr, data: &[u8]) {
        let dst = to_virt(pa.as_u64()).as_mut_ptr::<u8>();
        // SAFETY: as in `read`; writers own the frames they write (allocator
        // frames, page-table frames, DMA buffers).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        // SAFETY: as in `read`; page-table entries and descriptors are
        // naturally aligned 8-byte words and may be changed by hardware, hence
        // the volatile access.
        unsafe { core::ptr::read_volatile(to_virt(pa.as_u64()).as_ptr::<u64>()) }
    }

    fn write_u64(&self, pa: PhysAddr, v: u64) {
        // SAFETY: as in `read_u64`.
        unsafe { core::ptr::write_volatile(to_virt(pa.as_u64()).as_mut_ptr::<u64>(), v) }
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        Some(to_virt(pa.as_u64()))
    }
}
