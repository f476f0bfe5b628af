//! Coherent DMA memory (Linux `dma_alloc_coherent`, hw-facts §3.3), in two phases as in
//! Rust-for-Linux: a [`CoherentBox`] the CPU owns (ordinary `&mut` access, no bus address
//! yet, so no device can be told about it), then a [`Coherent`] the device may access at
//! any time, so the CPU only uses volatile accessors. Freed on drop.
//!
//! The zone comes from the device's `coherent_dma_mask`; the memory is zeroed; sizes
//! are rounded up to a power-of-two number of pages, which are aligned to their size.
#![allow(unsafe_code)]

use crate::debug::MapType;
use crate::mapping::Place;
use crate::platform::{alloc_below, order_for};
use crate::{DmaBackend, DmaDevice, DmaDirection, DmaError, PAGE_SIZE};
use alloc::sync::Arc;
use core::fmt;
use hal::{DmaAddr, PhysAddr};

/// Plain old data: any bit pattern is a valid value and there is no padding, so bytes
/// written by a device can be read as `Self`.
///
/// # Safety
/// Implement only for types for which every bit pattern of `size_of::<Self>()` bytes is
/// a valid value and that contain no padding, references or pointers to be trusted.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: primitive integers: every bit pattern is valid, no padding.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
// SAFETY: an array of Pod has no padding between elements and every element is Pod.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The allocation shared by both phases.
struct Alloc {
    dev: Arc<DmaDevice>,
    pa: PhysAddr,
    dma: DmaAddr,
    len: usize,
    order: u32,
    va: *mut u8,
}

// SAFETY: `va` points into pages this allocation owns exclusively (DmaPlatform's
// contract); moving or sharing the owner between threads is as safe as for a Box<[u8]>.
// Shared (&) access only happens through volatile reads/writes in `Coherent`.
unsafe impl Send for Alloc {}
// SAFETY: see above.
unsafe impl Sync for Alloc {}

impl Drop for Alloc {
    fn drop(&mut self) {
        match self.dev.unmap_phys(
            self.dma,
            self.len,
            DmaDirection::Bidirectional,
            MapType::Coherent,
        ) {
            Ok(()) => self.dev.platform.free_pages(self.pa, self.order),
            Err(e) => log::error!("dma_free_coherent: {e}; pages kept"),
        }
    }
}

impl DmaDevice {
    /// `dma_alloc_coherent`: `size` bytes of zeroed memory below the coherent mask (or
    /// anywhere, with an IOVA below it, through an IOMMU).
    pub fn alloc_coherent(self: &Arc<Self>, size: usize) -> Result<CoherentBox, DmaError> {
        if size == 0 {
            return Err(DmaError::ZeroLength {
                device: self.name.clone(),
            });
        }
        let order = order_for(size);
        let bytes = PAGE_SIZE << order;
        let mask = self.params().coherent_dma_mask;
        let pa = match self.backend() {
            DmaBackend::Iommu(_) => self.platform.alloc_pages(order, u64::MAX),
            _ => alloc_below(self.platform, order, mask),
        }
        .ok_or_else(|| DmaError::OutOfMemory {
            device: self.name.clone(),
            size,
            limit: mask,
        })?;
        let mem = self.platform.mem();
        let Some(va) = mem.phys_to_virt(pa) else {
            self.platform.free_pages(pa, order);
            return Err(DmaError::NoCpuMapping { phys: pa });
        };
        // Always zeroed (Linux ≥ 5.0).
        mem.fill(pa, 0, bytes);
        let dma = match self.map_phys(
            pa,
            size,
            DmaDirection::Bidirectional,
            MapType::Coherent,
            Place::Backend,
        ) {
            Ok(d) => d,
            Err(e) => {
                self.platform.free_pages(pa, order);
                return Err(e);
            }
        };
        Ok(CoherentBox {
            alloc: Alloc {
                dev: self.clone(),
                pa,
                dma,
                len: size,
                order,
                va: va.as_mut_ptr(),
            },
        })
    }
}

/// Coherent memory in its CPU-owned phase: the device does not know its address yet.
pub struct CoherentBox {
    alloc: Alloc,
}

impl CoherentBox {
    /// Bytes usable (as asked for).
    pub fn len(&self) -> usize {
        self.alloc.len
    }

    /// Never true (zero-sized allocations are refused).
    pub fn is_empty(&self) -> bool {
        self.alloc.len == 0
    }

    /// The memory as bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `va` maps `len` bytes owned by this allocation (DmaPlatform contract);
        // in this phase nothing else (no device: it has no address) accesses them, and
        // the borrow of `self` keeps the pages alive and unaliased.
        unsafe { core::slice::from_raw_parts(self.alloc.va, self.alloc.len) }
    }

    /// The memory as mutable bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes the access exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.alloc.va, self.alloc.len) }
    }

    /// A `T` at byte `offset`, if it fits and is aligned.
    pub fn pod_mut<T: Pod>(&mut self, offset: usize) -> Option<&mut T> {
        let size = core::mem::size_of::<T>();
        let end = offset.checked_add(size)?;
        if end > self.alloc.len
            || !(self.alloc.va as usize + offset).is_multiple_of(core::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: in bounds and aligned (checked), exclusively borrowed, and any bit
        // pattern is a valid `T` (Pod).
        Some(unsafe { &mut *self.alloc.va.add(offset).cast::<T>() })
    }

    /// Ends the CPU phase: the memory becomes device-visible and gets its bus address.
    pub fn into_device(self) -> Coherent {
        // Make CPU stores visible before the address can reach a device register.
        hal::dma_wmb();
        Coherent { alloc: self.alloc }
    }
}

impl fmt::Debug for CoherentBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CoherentBox({} bytes)", self.alloc.len)
    }
}

/// Coherent memory in its device-visible phase: the device may read or write it at any
/// time, so the CPU uses volatile accesses only and never holds a reference into it.
pub struct Coherent {
    alloc: Alloc,
}

impl Coherent {
    /// Bus address for the device.
    pub fn dma_addr(&self) -> DmaAddr {
        self.alloc.dma
    }

    /// Bytes usable.
    pub fn len(&self) -> usize {
        self.alloc.len
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.alloc.len == 0
    }

    /// The device this memory belongs to.
    pub fn device(&self) -> &Arc<DmaDevice> {
        &self.alloc.dev
    }

    #[track_caller]
    fn ptr<T>(&self, offset: usize) -> *mut T {
        let size = core::mem::size_of::<T>();
        let ok = offset
            .checked_add(size)
            .is_some_and(|e| e <= self.alloc.len);
        assert!(
            ok,
            "coherent access [{offset:#x}+{size}] outside {} bytes",
            self.alloc.len
        );
        let p = self.alloc.va.wrapping_add(offset);
        assert!(
            (p as usize).is_multiple_of(core::mem::align_of::<T>()),
            "coherent access at {offset:#x} misaligned for {size}-byte value"
        );
        p.cast()
    }

    /// Volatile read of a `T` at byte `offset`.
    ///
    /// # Panics
    /// If out of bounds or misaligned (like slice indexing: a driver bug, not data).
    #[track_caller]
    pub fn read<T: Pod>(&self, offset: usize) -> T {
        let p = self.ptr::<T>(offset);
        // SAFETY: in bounds and aligned (checked by `ptr`), the pages are owned and
        // mapped (DmaPlatform contract), and `T` is Pod.
        unsafe { p.read_volatile() }
    }

    /// Volatile write of a `T` at byte `offset`.
    ///
    /// # Panics
    /// As [`read`](Self::read).
    #[track_caller]
    pub fn write<T: Pod>(&self, offset: usize, value: T) {
        let p = self.ptr::<T>(offset);
        // SAFETY: as for `read`; no reference into the memory exists in this phase.
        unsafe { p.write_volatile(value) }
    }

    /// Volatile byte-wise copy out of `[offset, offset+buf.len())`.
    #[track_caller]
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.read::<u8>(offset + i);
        }
    }

    /// Volatile byte-wise copy into `[offset, offset+data.len())`.
    #[track_caller]
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.write::<u8>(offset + i, *b);
        }
    }

    /// Physical address: for the pool, which carves blocks, and for drivers that build
    /// descriptor rings through a `PhysMemory` (the iDMA64 driver writes its LLIs).
    pub fn phys(&self) -> PhysAddr {
        self.alloc.pa
    }
}

impl fmt::Debug for Coherent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Coherent({} bytes at {:#x})",
            self.alloc.len, self.alloc.dma
        )
    }
}
