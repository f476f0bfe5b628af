//! `ioremap`: device registers mapped with an explicit cache type into a
//! virtual window of their own, unmapped on drop (Linux: mm/ioremap.c,
//! arch/x86/mm/ioremap.c).

use hal::VirtAddr;
use mm::page_span;
use mm::paging::{PageSize, PageTableFlags};
use mm::pat::CacheType;

use super::memmap::{self, Kind};
use super::{with_mm, Mm, MmError};

/// A device-memory mapping from [`ioremap`]: volatile accessors, unmapped and
/// its virtual range freed on drop.
pub struct IoMem {
    base: VirtAddr,
    /// Start of the page-rounded mapping (what gets unmapped).
    map_start: VirtAddr,
    pages: u64,
    phys: u64,
    size: u64,
    cache: CacheType,
}

impl IoMem {
    pub fn virt(&self) -> VirtAddr {
        self.base
    }
    pub fn phys(&self) -> u64 {
        self.phys
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn cache(&self) -> CacheType {
        self.cache
    }

    /// The address of `offset` if a `width`-byte access there stays inside the
    /// region and is naturally aligned.
    fn at(&self, offset: usize, width: usize) -> Option<*mut u8> {
        let end = offset.checked_add(width)?;
        (end as u64 <= self.size
            && (self.base.as_u64() + offset as u64).is_multiple_of(width as u64))
        .then(|| (self.base.as_u64() + offset as u64) as *mut u8)
    }

    fn bad(&self, offset: usize, width: usize) {
        log::warn!(
            "ioremap {:#x}+{:#x}: {width}-byte access at offset {offset:#x} outside the region or misaligned; ignored",
            self.phys,
            self.size
        );
    }
}

macro_rules! io_accessors {
    ($read:ident, $write:ident, $t:ty) => {
        impl IoMem {
            /// Volatile read; out of range or misaligned reads return all ones
            /// (what a bus master abort gives) and log a warning.
            pub fn $read(&self, offset: usize) -> $t {
                match self.at(offset, core::mem::size_of::<$t>()) {
                    // SAFETY: `at` checked the access lies inside this live,
                    // mapped region and is naturally aligned.
                    Some(p) => unsafe { core::ptr::read_volatile(p as *const $t) },
                    None => {
                        self.bad(offset, core::mem::size_of::<$t>());
                        <$t>::MAX
                    }
                }
            }

            /// Volatile write; out of range or misaligned writes are dropped
            /// with a warning.
            pub fn $write(&self, offset: usize, value: $t) {
                match self.at(offset, core::mem::size_of::<$t>()) {
                    // SAFETY: as for the read.
                    Some(p) => unsafe { core::ptr::write_volatile(p as *mut $t, value) },
                    None => self.bad(offset, core::mem::size_of::<$t>()),
                }
            }
        }
    };
}

io_accessors!(read8, write8, u8);
io_accessors!(read16, write16, u16);
io_accessors!(read32, write32, u32);
io_accessors!(read64, write64, u64);

impl hal::RegisterAccess for IoMem {
    fn read8(&self, offset: usize) -> u8 {
        IoMem::read8(self, offset)
    }
    fn read16(&self, offset: usize) -> u16 {
        IoMem::read16(self, offset)
    }
    fn read32(&self, offset: usize) -> u32 {
        IoMem::read32(self, offset)
    }
    fn read64(&self, offset: usize) -> u64 {
        IoMem::read64(self, offset)
    }
    fn write8(&self, offset: usize, value: u8) {
        IoMem::write8(self, offset, value)
    }
    fn write16(&self, offset: usize, value: u16) {
        IoMem::write16(self, offset, value)
    }
    fn write32(&self, offset: usize, value: u32) {
        IoMem::write32(self, offset, value)
    }
    fn write64(&self, offset: usize, value: u64) {
        IoMem::write64(self, offset, value)
    }
}

impl Drop for IoMem {
    fn drop(&mut self) {
        let (start, pages) = (self.map_start, self.pages);
        with_mm(|m| {
            for i in 0..pages {
                let _ = m.mapper.unmap(start + i * 4096);
            }
            let _ = m.ioremap.free(start);
        });
    }
}

fn overlaps_ram(start: u64, end: u64) -> Option<u64> {
    memmap::regions()
        .iter()
        .filter(|r| matches!(r.kind, Kind::Usable | Kind::Bootloader))
        .find(|r| r.start < end && start < r.end)
        .map(|r| r.start.max(start))
}

/// Maps `size` bytes of device memory at `phys` (any alignment) with `cache`.
pub fn ioremap_with(phys: u64, size: u64, cache: CacheType) -> Result<IoMem, MmError> {
    let span = page_span(phys, size)
        .map_err(|_| MmError::BadRange("empty or overflowing physical range"))?;
    let span_end = span.base.as_u64() + span.pages * 4096;
    if let Some(ram) = overlaps_ram(span.base.as_u64(), span_end) {
        return Err(MmError::IsRam(ram));
    }
    with_mm(|m| {
        let va = m.ioremap.alloc(span.pages).map_err(MmError::Space)?;
        let Mm {
            frames,
            mapper,
            ioremap,
        } = m;
        let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        if let Err(e) = mapper.map_range(
            va,
            span.base,
            span.pages * 4096,
            PageSize::Size4K,
            flags,
            cache,
            frames,
        ) {
            let _ = ioremap.free(va);
            return Err(MmError::Map(e));
        }
        Ok(IoMem {
            base: va + span.offset,
            map_start: va,
            pages: span.pages,
            phys,
            size,
            cache,
        })
    })
    .ok_or(MmError::NotReady)?
}

/// Uncached (UC): registers, where every access must reach the device in order.
pub fn ioremap(phys: u64, size: u64) -> Result<IoMem, MmError> {
    ioremap_with(phys, size, CacheType::Uncached)
}

/// Write-combining: framebuffers and other write-mostly device memory.
pub fn ioremap_wc(phys: u64, size: u64) -> Result<IoMem, MmError> {
    ioremap_with(phys, size, CacheType::WriteCombining)
}

/// Write-back cached: device memory that behaves like RAM.
pub fn ioremap_cache(phys: u64, size: u64) -> Result<IoMem, MmError> {
    ioremap_with(phys, size, CacheType::WriteBack)
}

/// Pages currently handed out by the ioremap window.
pub fn ioremap_pages() -> u64 {
    with_mm(|m| m.ioremap.allocated_pages()).unwrap_or(0)
}
