//! Kernel memory management (Linux: mm/): the direct map of physical memory
//! (`direct`), the boot memory map (`memmap`), the zoned buddy frame allocator
//! built from it and our mapper working on the live page tables and the PAT
//! (here), `ioremap` regions for device registers (`ioremap`), and the kernel
//! heap (`heap`).

pub mod direct;
pub mod heap;
mod ioremap;
pub mod memmap;

pub use ioremap::{ioremap, ioremap_cache, ioremap_pages, ioremap_wc, ioremap_with, IoMem};

use core::fmt;

use hal::{PhysAddr, VirtAddr};
use mm::buddy::{AllocError, FrameAllocatorConfig, FreeError, ZoneKind, ZoneLimit, ZoneStats};
use mm::paging::{Invlpg, MapError, PageSize, PageTableFlags, Translation, UnmapError};
use mm::pat::{CacheType, IA32_PAT_MSR, PAT_MSR_VALUE};
use mm::{FrameAllocator, IoRemapError, IoRemapSpace, Mapper};
use x86_64::registers::control::Cr3;
use x86_64::registers::model_specific::Msr;

use hal::DirectMap;
use memmap::Kind;

use crate::sync::IrqSpinLock;

/// Virtual window for `ioremap`: one PML4 slot (512 GiB) in the higher half
/// that the bootloader leaves empty.
const IOREMAP_BASE: u64 = 0xFFFF_A000_0000_0000;
const IOREMAP_SIZE: u64 = 64 << 30;

struct Mm {
    frames: FrameAllocator<'static>,
    mapper: Mapper<DirectMap, Invlpg>,
    ioremap: IoRemapSpace,
}

static MM: IrqSpinLock<Option<Mm>> = IrqSpinLock::new(None);

fn with_mm<R>(f: impl FnOnce(&mut Mm) -> R) -> Option<R> {
    MM.lock().as_mut().map(f)
}

/// Programs IA32_PAT with our layout (crates/mm/src/pat.rs): entries 0–3 keep
/// their reset meaning (WB, WT, UC-, UC), so every mapping the bootloader made
/// keeps its type; 4–7 add WC and WP. SDM Vol. 3A §11.12.4: flush caches and
/// TLBs around the change.
fn program_pat() {
    // One writer of IA32_PAT at a time, with interrupts off from the first cache
    // flush to the TLB flush (the guard's job).
    static PAT: IrqSpinLock<()> = IrqSpinLock::new(());
    let _pat = PAT.lock();
    // SAFETY: IA32_PAT exists on every x86_64 CPU; the new value leaves
    // indices 0–3 (the only ones any existing PTE selects) unchanged, and
    // caches and TLBs are flushed around the write as the SDM requires.
    unsafe {
        core::arch::asm!("wbinvd", options(nostack));
        Msr::new(IA32_PAT_MSR).write(PAT_MSR_VALUE);
        core::arch::asm!("wbinvd", options(nostack));
    }
    x86_64::instructions::tlb::flush_all();
}

pub fn pat_msr() -> u64 {
    // SAFETY: reading IA32_PAT has no side effects.
    unsafe { Msr::new(IA32_PAT_MSR).read() }
}

/// Builds the allocator and adopts the bootloader's page tables.
pub fn init() -> Result<(), &'static str> {
    program_pat();
    let usable = || {
        memmap::regions()
            .iter()
            .filter(|r| r.kind == Kind::Usable)
            .map(|r| r.start..r.end)
    };
    let need = mm::buddy::metadata_bytes(usable()) as u64;
    // Above 4 GiB if there is RAM there, else above the DMA zone: low memory
    // is precious to devices with small DMA masks.
    let meta = mm::buddy::place_metadata(usable(), core::iter::empty(), need as usize)
        .ok_or("no usable region large enough for the frame allocator's metadata")?;
    let (meta_start, meta_end) = (meta.start, meta.end);
    let va = direct::to_virt(meta_start).as_mut_ptr::<u8>();
    // SAFETY: [meta_start, meta_end) is usable RAM that nothing else has been
    // given (the heap is static, the bootloader's frames are not "usable"),
    // and it is passed as reserved so the allocator never hands it out.
    let meta: &'static mut [u8] = unsafe { core::slice::from_raw_parts_mut(va, need as usize) };
    let frames = FrameAllocator::new(
        usable(),
        core::iter::once(meta_start..meta_end),
        meta,
        FrameAllocatorConfig::default(),
    )
    .map_err(|_| "frame allocator could not be built from the memory map")?;
    let (pml4, _) = Cr3::read();
    let mut mapper = Mapper::new(direct::direct(), pml4.start_address(), Invlpg);
    uncache_direct_map_holes(&mut mapper);
    let ioremap = IoRemapSpace::new(VirtAddr::new(IOREMAP_BASE), IOREMAP_SIZE)
        .map_err(|_| "bad ioremap window")?;
    log::info!(
        "mm: {} pages managed, {} free; allocator metadata {} KiB at {meta_start:#x}; PAT {:#018x}",
        frames.managed_pages(),
        frames.free_pages(),
        need / 1024,
        pat_msr()
    );
    for s in frames.stats() {
        log::info!(
            "mm: zone {:<6} [{:#012x}-{:#012x}) {} pages, {} free",
            s.kind.name(),
            s.start.as_u64(),
            s.end.as_u64(),
            s.managed_pages,
            s.free_pages
        );
    }
    *MM.lock() = Some(Mm {
        frames,
        mapper,
        ioremap,
    });
    Ok(())
}

/// The bootloader maps all of physical address space write-back, device memory
/// included, so every `ioremap` (uncached) would have a cached alias: undefined
/// behaviour on real hardware (SDM Vol. 3A §11.12.4), harmless only in QEMU. Pages
/// of the direct map that hold no RAM become uncached, so both mappings agree.
/// Pages holding RAM, ACPI tables included, keep write-back.
fn uncache_direct_map_holes(mapper: &mut Mapper<DirectMap, Invlpg>) {
    let ram: alloc::vec::Vec<(u64, u64)> = memmap::regions()
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                Kind::Usable | Kind::Bootloader | Kind::AcpiReclaimable | Kind::AcpiNvs
            )
        })
        .map(|r| (r.start, r.end))
        .collect();
    let limit = direct::direct().limit();
    let changed = mapper.recache_range(direct::to_virt(0), limit, |frame, size| {
        let (s, e) = (frame.as_u64(), frame.as_u64() + size.bytes());
        (!ram.iter().any(|&(rs, re)| rs < e && s < re)).then_some(CacheType::Uncached)
    });
    // One full flush instead of one invlpg per page.
    x86_64::instructions::tlb::flush_all();
    log::info!(
        "mm: direct map: {changed} page(s) without RAM made uncached (no cached alias of device memory)"
    );
}

#[derive(Debug)]
pub enum MmError {
    NotReady,
    Alloc(AllocError),
    Free(FreeError),
    Map(MapError),
    Unmap(UnmapError),
    Space(IoRemapError),
    BadRange(&'static str),
    /// ioremap of RAM would alias cached memory with an uncached mapping.
    IsRam(u64),
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MmError::NotReady => f.write_str("memory manager not initialised"),
            MmError::Alloc(e) => write!(f, "{e}"),
            MmError::Free(e) => write!(f, "{e}"),
            MmError::Map(e) => write!(f, "{e}"),
            MmError::Unmap(e) => write!(f, "{e}"),
            MmError::Space(e) => write!(f, "{e}"),
            MmError::BadRange(e) => f.write_str(e),
            MmError::IsRam(pa) => write!(f, "{pa:#x} is RAM: ioremap is for device memory"),
        }
    }
}

/// 2^order contiguous frames from the zones `limit` allows.
pub fn alloc_frames(order: u8, limit: ZoneLimit) -> Result<PhysAddr, MmError> {
    with_mm(|m| m.frames.alloc(order, limit))
        .ok_or(MmError::NotReady)?
        .map_err(MmError::Alloc)
}

pub fn free_frames(pa: PhysAddr, order: u8) -> Result<(), MmError> {
    with_mm(|m| m.frames.free(pa, order))
        .ok_or(MmError::NotReady)?
        .map_err(MmError::Free)
}

pub fn zone_stats() -> alloc::vec::Vec<ZoneStats> {
    with_mm(|m| m.frames.stats().collect()).unwrap_or_default()
}

pub fn zone_of(pa: PhysAddr) -> ZoneKind {
    ZoneKind::of(pa.as_u64())
}

pub fn error_counts() -> Option<mm::buddy::ErrorCounts> {
    with_mm(|m| m.frames.error_counts())
}

/// Writes `/proc/buddyinfo` or `/proc/zoneinfo`-shaped text.
pub fn write_buddyinfo(out: &mut dyn fmt::Write) -> fmt::Result {
    with_mm(|m| write!(out, "{}", m.frames.buddyinfo())).unwrap_or(Ok(()))
}

pub fn write_zoneinfo(out: &mut dyn fmt::Write) -> fmt::Result {
    with_mm(|m| write!(out, "{}", m.frames.zoneinfo())).unwrap_or(Ok(()))
}

pub fn translate(va: VirtAddr) -> Option<Translation> {
    with_mm(|m| m.mapper.translate(va)).flatten()
}

/// Takes a 2 MiB block of frames and maps it write-back at `va` (4 KiB
/// pages), for the heap's growth. Uses `try_lock`: the heap grows from inside
/// an allocation, and that allocation may come from code holding the memory
/// manager's lock; then this returns `None` (the allocation fails) instead of
/// spinning forever. `None` too when out of frames or the range is taken.
pub fn try_map_fresh_2m(va: VirtAddr) -> Option<()> {
    let mut guard = MM.try_lock()?;
    let Mm { frames, mapper, .. } = guard.as_mut()?;
    let block = frames.alloc(9, ZoneLimit::Any).ok()?;
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    match mapper.map_range(
        va,
        block,
        2 << 20,
        PageSize::Size4K,
        flags,
        CacheType::WriteBack,
        frames,
    ) {
        Ok(()) => Some(()),
        Err(_) => {
            let _ = frames.free(block, 9);
            None
        }
    }
}

/// Runs `f` while holding the memory manager's lock, as code inside it does
/// (the kernel test that proves heap growth cannot deadlock uses it).
pub fn while_locked<R>(f: impl FnOnce() -> R) -> R {
    let _guard = MM.lock();
    f()
}

/// Maps one page of the kernel address space (frames for new tables come from
/// the buddy allocator).
pub fn map_page(
    va: VirtAddr,
    pa: PhysAddr,
    size: PageSize,
    writable: bool,
    cache: CacheType,
) -> Result<(), MmError> {
    let mut flags = PageTableFlags::NO_EXECUTE;
    if writable {
        flags |= PageTableFlags::WRITABLE;
    }
    with_mm(|m| {
        let Mm { frames, mapper, .. } = m;
        mapper.map(va, pa, size, flags, cache, frames)
    })
    .ok_or(MmError::NotReady)?
    .map_err(MmError::Map)?;
    Ok(())
}

pub fn unmap_page(va: VirtAddr) -> Result<(PhysAddr, PageSize), MmError> {
    with_mm(|m| m.mapper.unmap(va))
        .ok_or(MmError::NotReady)?
        .map_err(MmError::Unmap)
}

pub fn set_page_flags(
    va: VirtAddr,
    writable: bool,
    cache: CacheType,
) -> Result<Translation, MmError> {
    let mut flags = PageTableFlags::NO_EXECUTE;
    if writable {
        flags |= PageTableFlags::WRITABLE;
    }
    with_mm(|m| m.mapper.set_flags(va, flags, cache))
        .ok_or(MmError::NotReady)?
        .map_err(MmError::Unmap)
}
