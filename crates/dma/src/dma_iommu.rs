//! The IOMMU backend of the map path (Linux `drivers/iommu/dma-iommu.c`): IOVA
//! ranges allocated under the mask, mapped, and on unmap removed, invalidated and only
//! then freed; an untrusted device's sub-page buffers bounced into whole pages first.
//! Single mappings and scatter lists both allocate and free their ranges here.

use crate::iommu::{IommuError, IommuPerm, SharedDomain};
use crate::mapping::MapKind;
use crate::swiotlb::Swiotlb;
use crate::{DmaDevice, DmaDirection, DmaError};
use alloc::sync::Arc;
use alloc::vec::Vec;
use hal::{DmaAddr, PhysAddr};

impl DmaDevice {
    /// Allocates one IOVA range whose last byte is under `mask` and maps `runs` into it
    /// back to back (each a granule-aligned `(phys, span)`); returns the range's start
    /// and length. On error nothing stays mapped or allocated, except a range whose
    /// undo failed, which is leaked on purpose (the device might still reach it).
    pub(crate) fn iommu_map_runs(
        &self,
        domain: &SharedDomain,
        runs: &[(PhysAddr, u64)],
        mask: u64,
        perm: IommuPerm,
    ) -> Result<(DmaAddr, u64), DmaError> {
        let total = runs
            .iter()
            .try_fold(0u64, |t, &(_, span)| t.checked_add(span));
        let exhausted = |len| DmaError::IovaExhausted {
            device: self.name.clone(),
            len,
            mask,
        };
        let Some(total) = total else {
            return Err(exhausted(u64::MAX));
        };
        let iommu = |error| DmaError::Iommu {
            device: self.name.clone(),
            error,
        };
        // Physically contiguous runs are one map call (Linux `__iommu_map_sg`
        // does the same): one page-table walk instead of one per entry. The
        // IOVA layout is the same, since the runs lie back to back there too.
        let mut merged: Vec<(PhysAddr, u64)> = Vec::with_capacity(runs.len());
        for &(page, span) in runs {
            match merged.last_mut() {
                Some(last) if last.0.as_u64().checked_add(last.1) == Some(page.as_u64()) => {
                    last.1 += span
                }
                _ => merged.push((page, span)),
            }
        }
        let runs = &merged[..];
        let mut d = domain.lock();
        let iova = match runs {
            // One run: the domain's one-step path (VT-d does it under one lock).
            [(page, span)] => match d.alloc_and_map(*span, mask, *page, perm) {
                Ok(iova) => iova,
                Err(IommuError::IovaExhausted) => return Err(exhausted(total)),
                Err(error) => return Err(iommu(error)),
            },
            _ => {
                let iova = d.alloc_iova(total, mask).ok_or_else(|| exhausted(total))?;
                let mut at = 0u64;
                for &(page, span) in runs {
                    if let Err(error) = d.map(DmaAddr::new(iova.as_u64() + at), page, span, perm) {
                        // Undo what is mapped; a failed undo leaks the range.
                        if at == 0 || (d.unmap(iova, at).is_ok() && d.flush_iotlb(iova, at).is_ok())
                        {
                            d.free_iova(iova, total);
                        }
                        return Err(iommu(error));
                    }
                    at += span;
                }
                iova
            }
        };
        // Trust but check: an IOVA above the mask would be silently truncated by the
        // device (edu clamps to 28 bits before translation).
        if iova.as_u64().saturating_add(total - 1) > mask {
            if let Err(e) = d.unmap_and_free(iova, total) {
                log::error!(
                    "{}: IOVA {iova:#x} above the mask; undoing it failed ({e})",
                    self.name
                );
            }
            return Err(exhausted(total));
        }
        Ok((iova, total))
    }

    /// Removes `[iova, iova+len)`, invalidates the IOTLB, and only then lets the IOVA
    /// be handed out again (DESIGN.md §4; `unmap_and_free` keeps that order, or a flush
    /// queue's equivalent). If a step fails the device might still reach the old pages
    /// through this IOVA, so it is never freed (leaked on purpose): returns false.
    pub(crate) fn iommu_unmap_range(&self, domain: &SharedDomain, iova: DmaAddr, len: u64) -> bool {
        match domain.lock().unmap_and_free(iova, len) {
            Ok(()) => true,
            Err(e) => {
                log::error!(
                    "{}: IOMMU unmap of {iova:#x}+{len:#x} failed ({e}); IOVA leaked",
                    self.name
                );
                false
            }
        }
    }

    /// A fresh IOVA for `[phys, phys+len)` under `mask`, with the permissions `dir`
    /// needs; the bus address keeps `phys`'s offset in its page.
    pub(crate) fn map_iommu(
        &self,
        domain: SharedDomain,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        mask: u64,
    ) -> Result<(DmaAddr, MapKind), DmaError> {
        let (dma, iova, iova_len) = self.iommu_map_one(&domain, phys, len, dir, mask)?;
        let kind = MapKind::Iommu {
            domain,
            iova,
            iova_len,
            bounce: None,
        };
        Ok((dma, kind))
    }

    /// The range for one buffer: (bus address, range start, range length).
    fn iommu_map_one(
        &self,
        domain: &SharedDomain,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        mask: u64,
    ) -> Result<(DmaAddr, DmaAddr, u64), DmaError> {
        let granule = domain.lock().granule().max(1);
        let offset = phys.as_u64() % granule;
        let span = (offset + len as u64).div_ceil(granule) * granule;
        let page = PhysAddr::new(phys.as_u64() - offset);
        let perm = IommuPerm::for_direction(dir);
        let (iova, iova_len) = self.iommu_map_runs(domain, &[(page, span)], mask, perm)?;
        Ok((DmaAddr::new(iova.as_u64() + offset), iova, iova_len))
    }

    /// Whether `[phys, phys+len)` is whole IOMMU pages (nothing else shares them).
    pub(crate) fn fills_pages(domain: &SharedDomain, phys: PhysAddr, len: usize) -> bool {
        let granule = domain.lock().granule().max(1);
        phys.as_u64().is_multiple_of(granule) && (len as u64).is_multiple_of(granule)
    }

    /// An untrusted device's sub-page buffer (Linux `iommu_dma_map_page` with
    /// `dev_use_swiotlb`): copied into page-aligned bounce slots whose padding
    /// is zeroed, and those slots mapped. The buffer is copied in whatever the
    /// direction, so the slots never show the device what they held before.
    pub(crate) fn map_iommu_bounced(
        &self,
        domain: SharedDomain,
        pool: Arc<Swiotlb>,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        p: &crate::DmaParams,
    ) -> Result<(DmaAddr, MapKind), DmaError> {
        let granule = domain.lock().granule().max(1) as usize;
        let padded = len.div_ceil(granule) * granule;
        // A page or more with no min-align mask: the pool hands out page-aligned
        // slots (Swiotlb::alloc's historical guarantee).
        let slots = pool
            .alloc(PhysAddr::new(0), padded, 0, p.segment_boundary_mask)
            .map_err(|e| self.bounce_error(e, len))?;
        debug_assert!(slots.tlb.as_u64().is_multiple_of(granule as u64));
        pool.bounce(phys, slots.tlb, len, DmaDirection::ToDevice);
        self.platform
            .mem()
            .fill(slots.tlb + len as u64, 0, padded - len);
        match self.iommu_map_one(&domain, slots.tlb, len, dir, p.dma_mask) {
            Ok((dma, iova, iova_len)) => Ok((
                dma,
                MapKind::Iommu {
                    domain,
                    iova,
                    iova_len,
                    bounce: Some((pool, slots)),
                },
            )),
            Err(e) => {
                pool.release(slots);
                Err(e)
            }
        }
    }
}
