//! The strict/lazy IOTLB flush policy above the hardware driver (Linux keeps it in
//! `drivers/iommu/dma-iommu.c`, as the flush queue `iova_fq`), and the DMA API's
//! map/unmap path that applies it. Only calls the [`RemappingUnit`]'s own
//! operations (map, unmap, invalidate, and the domain's IOVA space); no register
//! is touched here.
//!
//! * strict: unmap, invalidate the range, wait, [`free_iova`](RemappingUnit::free_iova)
//!   the range at once;
//! * lazy: unmap, [`queue_iova`](RemappingUnit::queue_iova) the range, and when the
//!   domain's queue is full or its oldest entry old, one domain-selective
//!   invalidation, then [`iotlb_flushed`](RemappingUnit::iotlb_flushed) releases
//!   every queued range. No IOVA is reused before the invalidation covering it
//!   completed (spec §6.5), in either mode.

use crate::frames::FrameAlloc;
use crate::inval::IotlbInval;
use crate::tables::Perm;
use crate::unit::{DomainId, Error, RemappingUnit};
use hal::{PhysAddr, PhysMemory, RegisterAccess, PAGE_SIZE};

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    /// Lazy mode: flushes the domain's IOTLB and releases its queued IOVAs if the
    /// flush queue is full or old at `now`; returns whether it flushed.
    #[inline]
    pub fn flush_queue_tick(&mut self, d: DomainId, now: u64) -> Result<bool, Error> {
        if !self.iova_allocator(d)?.flush_needed(now) {
            return Ok(false);
        }
        self.flush_iotlb(IotlbInval::Domain(d.0))?;
        self.iotlb_flushed(d)?;
        Ok(true)
    }

    /// Lazy mode's delay bound without waiting for the next unmap (a timer calls
    /// it): every domain whose flush queue is full or old at `now` gets its
    /// domain-selective invalidation and its queued IOVAs back. Returns how many
    /// domains were flushed.
    pub fn flush_queues_due(&mut self, now: u64) -> Result<usize, Error> {
        let mut n = 0;
        for id in 0..self.domain_id_limit() {
            let d = DomainId(id);
            let due = self
                .iova_allocator_of(d)
                .is_some_and(|iova| iova.pending() > 0 && iova.flush_needed(now));
            if due && self.flush_queue_tick(d, now)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The DMA API's map path in one call: allocates an IOVA range below `dma_mask`
    /// for `[pa, pa + size)` (any alignment) and maps it with `perm`. Returns the IOVA
    /// of `pa` itself (with its offset in the page).
    #[inline]
    pub fn map_dma(
        &mut self,
        d: DomainId,
        pa: PhysAddr,
        size: u64,
        perm: Perm,
        dma_mask: u64,
    ) -> Result<u64, Error> {
        let off = pa.as_u64() & (PAGE_SIZE - 1);
        let len = (off + size.max(1)).next_multiple_of(PAGE_SIZE);
        let iova = self.alloc_iova(d, len, dma_mask)?;
        if let Err(e) = self.map(d, iova, PhysAddr::new(pa.as_u64() - off), len, perm) {
            // Never mapped, so nothing can be cached: free at once.
            let _ = self.free_iova(d, iova);
            return Err(e);
        }
        Ok(iova + off)
    }

    /// The DMA API's unmap path: unmaps what [`RemappingUnit::map_dma`] mapped for
    /// `size` bytes at `iova`, and frees the IOVA range. `strict`: invalidate the IOTLB
    /// for this range now and release just this range; otherwise (lazy) the range
    /// waits in the domain's flush queue, and a domain-wide flush happens when the
    /// queue is full or old at `now` (Linux's flush queue, spec §6.5 still obeyed:
    /// no reuse before invalidation).
    #[inline]
    pub fn unmap_dma(
        &mut self,
        d: DomainId,
        iova: u64,
        size: u64,
        now: u64,
        strict: bool,
    ) -> Result<(), Error> {
        let base = iova & !(PAGE_SIZE - 1);
        let len = (iova - base + size.max(1)).next_multiple_of(PAGE_SIZE);
        if strict {
            let info = self.unmap(d, base, len)?;
            // Queued first: if the invalidation fails, the range stays out of
            // reach until a later flush of the domain releases it.
            self.queue_iova(d, base, now)?;
            self.flush_unmap(&info)?;
            self.free_iova(d, base)?;
        } else {
            // Lazy: no invalidation request to build; queue and check the
            // bounds on one domain lookup.
            let pgd = self.pgd(d)?;
            self.clear_range(d, pgd, base, len)?;
            let iova = self.iova_allocator(d)?;
            iova.queue_iova(hal::DmaAddr::new(base), now)?;
            if iova.flush_needed(now) {
                self.flush_iotlb(IotlbInval::Domain(d.0))?;
                self.iotlb_flushed(d)?;
            }
        }
        Ok(())
    }
}
