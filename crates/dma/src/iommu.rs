//! The IOMMU backend trait, implemented by the VT-d layer (another crate) and glued to a
//! device by the kernel.
//!
//! IOVA allocation lives behind the trait so the VT-d crate owns its allocator. The DMA
//! layer's only rule for callers is the order on unmap (DESIGN.md §4): `unmap` the page
//! tables, `flush_iotlb`, and only then `free_iova` — otherwise a stale IOTLB entry could
//! let the device reach the old page through a reused IOVA (the gap Asterinas has).

use alloc::sync::Arc;
use bitflags::bitflags;
use core::fmt;
use hal::{DmaAddr, PhysAddr};

bitflags! {
    /// Access the device gets through a mapping (Linux `IOMMU_READ`/`IOMMU_WRITE`, from
    /// `dma_info_to_prot`: `ToDevice` → READ, `FromDevice` → WRITE, both → both).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct IommuPerm: u8 {
        /// The device may read memory.
        const READ = 1 << 0;
        /// The device may write memory.
        const WRITE = 1 << 1;
    }
}

impl IommuPerm {
    /// Permission for a streaming direction.
    pub const fn for_direction(dir: crate::DmaDirection) -> IommuPerm {
        match dir {
            crate::DmaDirection::ToDevice => IommuPerm::READ,
            crate::DmaDirection::FromDevice => IommuPerm::WRITE,
            crate::DmaDirection::Bidirectional => IommuPerm::READ.union(IommuPerm::WRITE),
        }
    }
}

/// What an IOMMU domain can refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuError {
    /// No memory for page tables.
    OutOfMemory,
    /// Part of the IOVA range is already mapped.
    AlreadyMapped,
    /// Part of the IOVA range is not mapped.
    NotMapped,
    /// Address or size not aligned to the domain's granule.
    Misaligned,
    /// Beyond the domain's address width.
    OutOfRange,
    /// An invalidation did not complete (e.g. a queued-invalidation timeout or error).
    FlushFailed,
    /// No free IOVA range of the size under the mask (from [`IommuDomain::alloc_and_map`]).
    IovaExhausted,
    /// The domain cannot take mappings (gone, or not a page-table domain).
    DomainUnusable,
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IommuError::OutOfMemory => "out of memory for page tables",
            IommuError::AlreadyMapped => "IOVA range already mapped",
            IommuError::NotMapped => "IOVA range not mapped",
            IommuError::Misaligned => "address or size not granule-aligned",
            IommuError::OutOfRange => "beyond the domain's address width",
            IommuError::FlushFailed => "IOTLB invalidation did not complete",
            IommuError::IovaExhausted => "no free IOVA range under the mask",
            IommuError::DomainUnusable => "the domain cannot take mappings",
        })
    }
}

/// One IOMMU translation domain (a set of devices sharing I/O page tables).
pub trait IommuDomain: Send {
    /// Mapping granule in bytes (4 KiB for VT-d second-level tables).
    fn granule(&self) -> u64 {
        4096
    }

    /// Allocates `len` bytes (a granule multiple) of IOVA space, aligned to the granule,
    /// whose last byte is at or below `mask`.
    fn alloc_iova(&mut self, len: u64, mask: u64) -> Option<DmaAddr>;

    /// Gives IOVA space back. The DMA layer calls it only after `unmap` and `flush_iotlb`.
    /// A domain with deferred invalidation (see `flush_iotlb`) must not hand the range
    /// out again before the deferred invalidation covering it has completed.
    fn free_iova(&mut self, iova: DmaAddr, len: u64);

    /// Maps `[iova, iova+len)` to `[phys, phys+len)` (granule-aligned) with `perm`.
    fn map(
        &mut self,
        iova: DmaAddr,
        phys: PhysAddr,
        len: u64,
        perm: IommuPerm,
    ) -> Result<(), IommuError>;

    /// Removes the translations for `[iova, iova+len)` from the page tables.
    fn unmap(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError>;

    /// Invalidates the IOTLB (and any paging-structure caches) for `[iova, iova+len)`;
    /// returns when the invalidation has completed. May flush more than asked. On
    /// error the DMA layer never frees the IOVA (a stale translation may remain).
    ///
    /// Deferred invalidation (Linux's lazy mode, `iommu.strict=0`): a domain may
    /// instead only note that the range needs invalidating and return `Ok` at once;
    /// the invalidation then happens later, batched (a domain-wide flush when its
    /// flush queue is full or old). Until it has, the device may still reach the
    /// old pages through a cached translation, so such a domain keeps the range
    /// out of `alloc_iova` until then (see `free_iova`). That window is the price
    /// of lazy mode; strict domains never have it.
    fn flush_iotlb(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError>;

    /// `alloc_iova` then `map` as one step (the DMA layer's map path): a domain
    /// that can do both under one lock and one table lookup overrides it. On a
    /// map error nothing stays allocated.
    fn alloc_and_map(
        &mut self,
        len: u64,
        mask: u64,
        phys: PhysAddr,
        perm: IommuPerm,
    ) -> Result<DmaAddr, IommuError> {
        let iova = self
            .alloc_iova(len, mask)
            .ok_or(IommuError::IovaExhausted)?;
        if let Err(e) = self.map(iova, phys, len, perm) {
            self.free_iova(iova, len);
            return Err(e);
        }
        Ok(iova)
    }

    /// `unmap`, `flush_iotlb`, then `free_iova`, in that order, as one step
    /// (the DMA layer's unmap path). If the unmap or the flush fails the IOVA
    /// is not freed: the device might still reach the old pages through it.
    /// An override may defer the flush (a lazy flush queue) as long as the IOVA
    /// is not handed out again before it.
    fn unmap_and_free(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        if let Err(e) = self.unmap(iova, len) {
            let _ = self.flush_iotlb(iova, len);
            return Err(e);
        }
        self.flush_iotlb(iova, len)?;
        self.free_iova(iova, len);
        Ok(())
    }

    /// Whether IOVAs under `mask` can be handed out at all (for `set_mask`).
    fn supports_mask(&self, mask: u64) -> bool {
        mask >= self.granule().saturating_sub(1)
    }
}

/// A domain shared by the devices attached to it.
pub type SharedDomain = Arc<spin::Mutex<dyn IommuDomain>>;
