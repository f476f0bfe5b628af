//! swiotlb: bounce buffering through a pool of low memory (Linux `kernel/dma/swiotlb.c`,
//! hw-facts §3.7).
//!
//! The kernel allocates the pool (as low as it can, below 256 MiB so the edu device's
//! 28-bit mask reaches it) and hands its physical range to [`Swiotlb::new`]. The pool is
//! cut into 2 KiB slots; a mapping takes a run of up to 128 slots that does not cross a
//! 128-slot segment, as Linux's free-slot lists never do.

use crate::platform::DmaPlatform;
use crate::DmaDirection;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use hal::PhysAddr;

/// log2 of the slot size (`IO_TLB_SHIFT`).
pub const IO_TLB_SHIFT: u32 = 11;
/// Slot size: 2 KiB (`IO_TLB_SIZE`).
pub const IO_TLB_SIZE: usize = 1 << IO_TLB_SHIFT;
/// Most contiguous slots one mapping may use (`IO_TLB_SEGSIZE`).
pub const IO_TLB_SEGSIZE: usize = 128;
/// Largest bounce mapping: 256 KiB (`swiotlb_max_mapping_size` before alignment padding).
pub const MAX_MAPPING: usize = IO_TLB_SIZE * IO_TLB_SEGSIZE;

/// Why a [`Swiotlb`] could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwiotlbInitError {
    /// Start not 2 KiB aligned.
    Misaligned(PhysAddr),
    /// Fewer than one slot.
    TooSmall(usize),
    /// The range wraps.
    Overflow,
}

impl fmt::Display for SwiotlbInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwiotlbInitError::Misaligned(p) => {
                write!(f, "swiotlb start {:#x} not 2 KiB aligned", p.as_u64())
            }
            SwiotlbInitError::TooSmall(s) => write!(f, "swiotlb of {s} bytes has no slot"),
            SwiotlbInitError::Overflow => f.write_str("swiotlb range wraps"),
        }
    }
}

/// Usage figures for a `dma` shell view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwiotlbStats {
    /// First byte of the pool.
    pub start: PhysAddr,
    /// Pool size in bytes.
    pub size: usize,
    /// Slots in the pool.
    pub total_slots: usize,
    /// Slots in use now.
    pub used_slots: usize,
    /// Most slots ever in use at once.
    pub high_water: usize,
    /// Live bounce mappings.
    pub mappings: usize,
    /// Mappings refused because no run of slots was free.
    pub full_failures: u64,
}

struct Inner {
    used: Vec<bool>,
    used_count: usize,
    high_water: usize,
    mappings: usize,
    full_failures: u64,
}

/// The bounce pool.
pub struct Swiotlb {
    platform: &'static dyn DmaPlatform,
    start: PhysAddr,
    nslabs: usize,
    inner: spin::Mutex<Inner>,
}

/// A run of slots handed out by [`Swiotlb::alloc`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slots {
    pub index: usize,
    pub nslots: usize,
    /// Bounce address of the first byte of the original buffer (slot start + kept offset).
    pub tlb: PhysAddr,
}

/// Why [`Swiotlb::alloc`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AllocFail {
    TooLarge { size: usize },
    Full { used: usize, total: usize },
}

impl Swiotlb {
    /// A pool over `[start, start+size)`, which the kernel has reserved for it. `size` is
    /// rounded down to whole slots.
    ///
    /// # Safety
    ///
    /// The pool copies buffers into `[start, start+size)` and lets devices read and
    /// write it. The caller must own that range (RAM the platform can reach through
    /// [`DmaPlatform::mem`], used by nothing else) for as long as the pool lives.
    #[allow(unsafe_code)]
    pub unsafe fn new(
        platform: &'static dyn DmaPlatform,
        start: PhysAddr,
        size: usize,
    ) -> Result<Swiotlb, SwiotlbInitError> {
        if !start.as_u64().is_multiple_of(IO_TLB_SIZE as u64) {
            return Err(SwiotlbInitError::Misaligned(start));
        }
        let nslabs = size / IO_TLB_SIZE;
        if nslabs == 0 {
            return Err(SwiotlbInitError::TooSmall(size));
        }
        if start
            .as_u64()
            .checked_add((nslabs * IO_TLB_SIZE) as u64)
            .is_none()
        {
            return Err(SwiotlbInitError::Overflow);
        }
        log::info!(
            "software IO TLB: mapped [mem {:#018x}-{:#018x}] ({}KB)",
            start.as_u64(),
            start.as_u64() + (nslabs * IO_TLB_SIZE) as u64 - 1,
            nslabs * IO_TLB_SIZE / 1024
        );
        Ok(Swiotlb {
            platform,
            start,
            nslabs,
            inner: spin::Mutex::new(Inner {
                used: vec![false; nslabs],
                used_count: 0,
                high_water: 0,
                mappings: 0,
                full_failures: 0,
            }),
        })
    }

    /// First byte of the pool.
    pub fn start(&self) -> PhysAddr {
        self.start
    }

    /// Last byte of the pool (inclusive), compared against masks.
    pub fn last(&self) -> u64 {
        self.start.as_u64() + (self.nslabs * IO_TLB_SIZE) as u64 - 1
    }

    /// Usage figures.
    pub fn stats(&self) -> SwiotlbStats {
        let g = self.inner.lock();
        SwiotlbStats {
            start: self.start,
            size: self.nslabs * IO_TLB_SIZE,
            total_slots: self.nslabs,
            used_slots: g.used_count,
            high_water: g.high_water,
            mappings: g.mappings,
            full_failures: g.full_failures,
        }
    }

    fn slot_addr(&self, index: usize) -> u64 {
        self.start.as_u64() + (index * IO_TLB_SIZE) as u64
    }

    /// Finds and takes slots for `len` bytes at `orig` (Linux `swiotlb_find_slots`).
    ///
    /// * The bits of `orig` under `min_align_mask` are kept: the low bits (within a slot)
    ///   as an offset into the first slot, the higher ones by choosing a slot whose
    ///   address has the same bits (`dma_set_min_align_mask`, e.g. NVMe's 4 KiB).
    /// * Without a min-align mask, mappings of a page or more start page-aligned (the
    ///   historical guarantee Linux keeps for streaming mappings).
    /// * The run stays inside one 128-slot segment and does not cross the device's
    ///   segment boundary (`boundary_mask`).
    pub(crate) fn alloc(
        &self,
        orig: PhysAddr,
        len: usize,
        min_align_mask: u64,
        boundary_mask: u64,
    ) -> Result<Slots, AllocFail> {
        let slot_mask = IO_TLB_SIZE as u64 - 1;
        let offset = (orig.as_u64() & min_align_mask & slot_mask) as usize;
        let iotlb_align_mask = min_align_mask & !slot_mask;
        let alloc_size = len + offset;
        let nslots = alloc_size.div_ceil(IO_TLB_SIZE);
        if nslots > IO_TLB_SEGSIZE {
            return Err(AllocFail::TooLarge { size: alloc_size });
        }
        let align_mask = if iotlb_align_mask == 0 && alloc_size >= crate::PAGE_SIZE {
            crate::PAGE_SIZE as u64 - 1
        } else {
            0
        };
        // The search: walk candidate first slots `i` from the bottom of the pool. A run of
        // `nslots` slots starting at `i` fits when it stays inside one IO_TLB_SEGSIZE
        // segment, its address has the bits `align_mask` and `iotlb_align_mask` ask for,
        // it does not cross the device's segment boundary (`boundary_mask`) and none of its
        // slots is in use. Take it (mark used, update used_count, high_water, mappings) or,
        // when nothing fits, count a full failure and say how full the pool is.
        // exercise(swiotlb): begin
        let mut g = self.inner.lock();
        let mut i = 0;
        while i + nslots <= self.nslabs {
            let addr = self.slot_addr(i);
            let seg_ok = i / IO_TLB_SEGSIZE == (i + nslots - 1) / IO_TLB_SEGSIZE;
            let align_ok = addr & align_mask == 0
                && addr & iotlb_align_mask == orig.as_u64() & iotlb_align_mask;
            let end = addr + (nslots * IO_TLB_SIZE) as u64 - 1;
            let boundary_ok = addr & !boundary_mask == end & !boundary_mask;
            if !(seg_ok && align_ok && boundary_ok) {
                i += 1;
                continue;
            }
            // Skip past the last used slot of the candidate run.
            if let Some(k) = g.used[i..i + nslots].iter().rposition(|&u| u) {
                i += k + 1;
                continue;
            }
            for s in &mut g.used[i..i + nslots] {
                *s = true;
            }
            g.used_count += nslots;
            g.high_water = g.high_water.max(g.used_count);
            g.mappings += 1;
            return Ok(Slots {
                index: i,
                nslots,
                tlb: PhysAddr::new(addr + offset as u64),
            });
        }
        g.full_failures += 1;
        Err(AllocFail::Full {
            used: g.used_count,
            total: self.nslabs,
        })
        // exercise(swiotlb): stub
        // let _ = (orig, offset, iotlb_align_mask, align_mask, boundary_mask, self.slot_addr(0));
        // let _ = (&self.inner.lock().used, AllocFail::Full { used: 0, total: self.nslabs });
        // todo!("exercise swiotlb: find {nslots} free slots in one segment, aligned, inside the boundary")
        // exercise(swiotlb): end
    }

    /// Gives slots back (Linux `swiotlb_release_slots`).
    pub(crate) fn release(&self, slots: Slots) {
        // Undo what alloc did: the slots become free, used_count and mappings drop.
        // exercise(swiotlb): begin
        let mut g = self.inner.lock();
        for s in &mut g.used[slots.index..slots.index + slots.nslots] {
            debug_assert!(*s, "swiotlb: releasing a free slot");
            *s = false;
        }
        g.used_count -= slots.nslots;
        g.mappings -= 1;
        // exercise(swiotlb): stub
        // let _ = slots;
        // todo!("exercise swiotlb: give the slots back")
        // exercise(swiotlb): end
    }

    /// Copies between the original buffer and its bounce slot (Linux `swiotlb_bounce`):
    /// `ToDevice` = orig → bounce, `FromDevice` = bounce → orig.
    pub(crate) fn bounce(&self, orig: PhysAddr, tlb: PhysAddr, len: usize, way: DmaDirection) {
        // Which way does the copy go? `self.platform.mem().copy(src, dst, len)` copies
        // through the platform's linear map: the cost of bouncing should be the copy,
        // nothing more.
        // exercise(swiotlb): begin
        let (src, dst) = match way {
            DmaDirection::FromDevice => (tlb, orig),
            _ => (orig, tlb),
        };
        self.platform.mem().copy(src, dst, len);
        // exercise(swiotlb): stub
        // let _ = (orig, tlb, len, way, self.platform);
        // todo!("exercise swiotlb: copy between the original buffer and its bounce slots")
        // exercise(swiotlb): end
    }
}

impl fmt::Debug for Swiotlb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        write!(
            f,
            "Swiotlb([{:#x}, {:#x}] {}/{} slots, high water {})",
            self.start.as_u64(),
            self.last(),
            s.used_slots,
            s.total_slots,
            s.high_water
        )
    }
}
