//! The one choke point (Linux `kernel/dma/mapping.c` with dma-direct and swiotlb's map
//! and unmap): every streaming mapping, scatter-gather piece and coherent allocation is
//! made by [`DmaDevice::map_phys`] and torn down by [`DmaDevice::unmap_phys`], and the
//! raw layer (`map_single` & co.) is a thin, `unsafe` wrapper around them.
//!
//! Copy rules follow Linux `swiotlb.c` / `Documentation/core-api/dma-api-howto.rst`
//! (hw-facts §3.5):
//!
//! | dir | map | sync_for_cpu | sync_for_device | unmap |
//! |---|---|---|---|---|
//! | ToDevice | orig → bounce | — | orig → bounce | — |
//! | FromDevice | orig → bounce (pre-fill) | bounce → orig | — | bounce → orig |
//! | Bidirectional | orig → bounce | bounce → orig | orig → bounce | bounce → orig |
//!
//! Cache hooks (`DmaPlatform::cache_sync_*`) run only for non-coherent devices, on the
//! memory the device touches (the bounce slot when bouncing), in Linux's order: for the
//! device after the copy in, for the CPU before the copy out. The syncs are in
//! [`crate::sync`], the IOMMU backend in [`crate::dma_iommu`], the table of live
//! mappings in [`crate::maptable`].

use crate::debug::{MapType, MappingInfo, Via};
use crate::iommu::SharedDomain;
use crate::maptable::Taken;
use crate::swiotlb::{AllocFail, Slots, Swiotlb, MAX_MAPPING};
use crate::{DmaBackend, DmaDevice, DmaDirection, DmaError};
use alloc::sync::Arc;
use hal::{DmaAddr, PhysAddr};

/// How the device reaches a live mapping, and what unmap must undo.
#[derive(Clone)]
pub(crate) enum MapKind {
    Direct,
    Bounce {
        pool: Arc<Swiotlb>,
        slots: Slots,
    },
    Iommu {
        domain: SharedDomain,
        iova: DmaAddr,
        iova_len: u64,
        /// An untrusted device's sub-page buffer: the IOVA maps these
        /// page-aligned bounce slots (padding zeroed), not the buffer.
        bounce: Option<(Arc<Swiotlb>, Slots)>,
    },
    /// One piece of a scatter list mapped into a single IOVA range: the
    /// [`crate::SgMapping`] owns that range and unmaps it as one.
    IommuSg,
}

/// One live mapping: everything unmap and sync need (bounce slot, IOVA length), kept
/// in the device's [`MapTable`](crate::maptable::MapTable) under its bus address.
#[derive(Clone)]
pub(crate) struct Mapping {
    pub dma: DmaAddr,
    pub len: usize,
    pub dir: DmaDirection,
    pub phys: PhysAddr,
    pub map_type: MapType,
    pub kind: MapKind,
    /// Device snooped caches when mapped.
    pub coherent: bool,
}

impl Mapping {
    pub(crate) fn info(&self) -> MappingInfo {
        MappingInfo {
            addr: self.dma,
            size: self.len,
            dir: self.dir,
            map_type: self.map_type,
            phys: self.phys,
            via: match self.kind {
                MapKind::Direct => Via::Direct,
                MapKind::Bounce { .. } => Via::Bounce,
                MapKind::Iommu { .. } | MapKind::IommuSg => Via::Iommu,
            },
        }
    }

    /// The memory the device actually accesses for byte `off` of the mapping.
    pub(crate) fn device_phys(&self, off: usize) -> PhysAddr {
        match self.bounce_slots() {
            Some((_, slots)) => slots.tlb + off as u64,
            None => self.phys + off as u64,
        }
    }

    /// The bounce pool and slots, when the device sees a copy of the buffer
    /// (swiotlb for a mask, or an untrusted device's bounce under the IOMMU).
    pub(crate) fn bounce_slots(&self) -> Option<(&Arc<Swiotlb>, &Slots)> {
        match &self.kind {
            MapKind::Bounce { pool, slots } => Some((pool, slots)),
            MapKind::Iommu {
                bounce: Some((pool, slots)),
                ..
            } => Some((pool, slots)),
            _ => None,
        }
    }
}

/// Where a mapping's bus address comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// The device's backend decides: direct, bounce or a fresh IOVA.
    Backend,
    /// A scatter-gather piece already mapped at this bus address, inside an IOVA range
    /// its [`crate::SgMapping`] owns (`iommu_dma_map_sg`'s one range per list).
    InSgRange(DmaAddr),
}

/// Linux `dma_capable()`: can a device with DMA mask `mask` reach every byte of
/// `[phys, phys+len)` directly? (`len` is at least 1 and the range does not wrap: the
/// caller checked.)
// The mask is the highest bus address the device can drive.
fn dma_capable(phys: u64, len: usize, mask: u64) -> bool {
    // exercise(swiotlb): begin
    phys + (len as u64 - 1) <= mask
    // exercise(swiotlb): stub
    // let _ = (phys, len, mask);
    // todo!("exercise swiotlb: the mask check")
    // exercise(swiotlb): end
}

impl DmaDevice {
    /// The one map path. Maps `[phys, phys+len)` for the device — direct, bounced, or
    /// through the IOMMU (bounced first for an untrusted device's sub-page buffer); a
    /// coherent allocation gets a Bidirectional mapping under the coherent mask and
    /// never bounces — runs the cache hook, and records the mapping in the device's
    /// table under its bus address.
    ///
    /// The caller owns `[phys, phys+len)` (a [`crate::DmaBuf`], a coherent allocation,
    /// or what an `unsafe` raw-layer caller vouched for) until [`unmap_phys`](Self::unmap_phys).
    pub(crate) fn map_phys(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
        place: Place,
    ) -> Result<DmaAddr, DmaError> {
        if len == 0 {
            return Err(DmaError::ZeroLength {
                device: self.name.clone(),
            });
        }
        phys.as_u64()
            .checked_add(len as u64 - 1)
            .ok_or(DmaError::AddressOverflow { phys, len })?;
        let p = self.params();
        let (dma, kind, coherent) = match (place, map_type) {
            (Place::InSgRange(dma), _) => (dma, MapKind::IommuSg, p.coherent),
            (Place::Backend, MapType::Coherent) => match self.backend() {
                DmaBackend::Iommu(domain) => {
                    let (dma, kind) =
                        self.map_iommu(domain, phys, len, dir, p.coherent_dma_mask)?;
                    (dma, kind, true)
                }
                // Already under the coherent mask: alloc_coherent chose the pages.
                _ => (DmaAddr::new(phys.as_u64()), MapKind::Direct, true),
            },
            (Place::Backend, _) => {
                let (dma, kind) = self.map_streaming(phys, len, dir, map_type, &p)?;
                (dma, kind, p.coherent)
            }
        };
        let m = Mapping {
            dma,
            len,
            dir,
            phys,
            map_type,
            kind,
            coherent,
        };
        // Coherent memory needs no cache maintenance (x86; hw-facts §3.3).
        if !m.coherent {
            self.platform
                .cache_sync_for_device(m.device_phys(0), len, dir);
        }
        self.maps.lock().insert(m);
        Ok(dma)
    }

    /// The backend's choice for a streaming mapping.
    fn map_streaming(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
        p: &crate::DmaParams,
    ) -> Result<(DmaAddr, MapKind), DmaError> {
        match self.backend() {
            DmaBackend::Iommu(domain) => match self.untrusted_pool() {
                Some(pool) if !Self::fills_pages(&domain, phys, len) => {
                    self.map_iommu_bounced(domain, pool, phys, len, dir, p)
                }
                _ => self.map_iommu(domain, phys, len, dir, p.dma_mask),
            },
            backend => {
                // dma_capable(): the last byte must be under the mask. Forced bouncing
                // only means something when there is a pool to bounce through.
                let bounce_forced = p.force_bounce && matches!(backend, DmaBackend::Swiotlb(_));
                if dma_capable(phys.as_u64(), len, p.dma_mask) && !bounce_forced {
                    Ok((DmaAddr::new(phys.as_u64()), MapKind::Direct))
                } else if let DmaBackend::Swiotlb(pool) = backend {
                    self.map_bounce(pool, phys, len, p)
                } else {
                    self.debug
                        .mask_violation(&self.name, phys, len, dir, map_type, p.dma_mask);
                    Err(DmaError::MaskViolation {
                        device: self.name.clone(),
                        phys,
                        len,
                        mask: p.dma_mask,
                    })
                }
            }
        }
    }

    /// The swiotlb's refusal as this device's error (one conversion for every bounce).
    pub(crate) fn bounce_error(&self, e: AllocFail, len: usize) -> DmaError {
        match e {
            AllocFail::TooLarge { size } => DmaError::MappingTooLarge {
                device: self.name.clone(),
                size,
                max: MAX_MAPPING,
            },
            AllocFail::Full { used, total } => {
                log::warn!(
                    "{}: swiotlb buffer is full (sz: {len} bytes), total {total} (slots), used {used} (slots)",
                    self.name
                );
                DmaError::SwiotlbFull {
                    device: self.name.clone(),
                    size: len,
                    used,
                    total,
                }
            }
        }
    }

    fn map_bounce(
        &self,
        pool: Arc<Swiotlb>,
        phys: PhysAddr,
        len: usize,
        p: &crate::DmaParams,
    ) -> Result<(DmaAddr, MapKind), DmaError> {
        let slots = pool
            .alloc(phys, len, p.min_align_mask, p.segment_boundary_mask)
            .map_err(|e| self.bounce_error(e, len))?;
        let tlb_end = slots.tlb.as_u64() + len as u64 - 1;
        if tlb_end > p.dma_mask {
            pool.release(slots);
            return Err(DmaError::BounceOutOfMask {
                device: self.name.clone(),
                tlb: slots.tlb,
                len,
                mask: p.dma_mask,
            });
        }
        // Always pre-fill, FromDevice included: a device that writes only part of the
        // buffer must not expose stale bounce bytes on the copy back.
        // exercise(swiotlb): begin
        pool.bounce(phys, slots.tlb, len, DmaDirection::ToDevice);
        // exercise(swiotlb): stub
        // let _ = Swiotlb::bounce; // todo (exercise swiotlb): fill the slots before the device sees them
        // exercise(swiotlb): end
        Ok((
            DmaAddr::new(slots.tlb.as_u64()),
            MapKind::Bounce { pool, slots },
        ))
    }

    /// The one unmap path: finds the record by bus address in the device's table (no
    /// registry, no scan), checks it (a different type is refused; a different size or
    /// direction is reported and the recorded ones are used — what was really mapped),
    /// and tears it down.
    pub(crate) fn unmap_phys(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
    ) -> Result<(), DmaError> {
        // Reports go out after the table lock is dropped.
        let taken = self.maps.lock().take(addr, len, dir, map_type);
        match taken {
            Taken::None => {
                self.debug
                    .unmap_not_mapped(&self.name, addr, len, dir, map_type);
                Err(DmaError::NotMapped {
                    device: self.name.clone(),
                    addr,
                    len,
                })
            }
            Taken::WrongType(o) => {
                self.debug
                    .unmap_wrong_type(&self.name, &o, addr, len, dir, map_type);
                Err(DmaError::WrongMapType {
                    device: self.name.clone(),
                    addr,
                    mapped: o.map_type,
                    given: map_type,
                })
            }
            Taken::Mapping(m) => {
                self.debug
                    .unmapped(&self.name, &m.info(), addr, len, dir, map_type);
                self.teardown(m);
                Ok(())
            }
        }
    }

    /// Undoes what [`map_phys`](Self::map_phys) did: cache hook, copy back, release
    /// slots; or IOMMU unmap, IOTLB flush, and only then the IOVA back to the allocator.
    fn teardown(&self, m: Mapping) {
        if !m.coherent {
            self.platform
                .cache_sync_for_cpu(m.device_phys(0), m.len, m.dir);
        }
        match m.kind {
            MapKind::Direct | MapKind::IommuSg => {}
            MapKind::Bounce { pool, slots } => {
                // Unmap: what the device may have written goes back to the original
                // buffer, then the slots are free again.
                // exercise(swiotlb): begin
                if m.dir.device_writes() {
                    pool.bounce(m.phys, slots.tlb, m.len, DmaDirection::FromDevice);
                }
                pool.release(slots);
                // exercise(swiotlb): stub
                // let _ = (pool, slots);
                // todo!("exercise swiotlb: unmap a bounced mapping")
                // exercise(swiotlb): end
            }
            MapKind::Iommu {
                domain,
                iova,
                iova_len,
                bounce,
            } => {
                let unmapped = self.iommu_unmap_range(&domain, iova, iova_len);
                if let Some((pool, slots)) = bounce {
                    if m.dir.device_writes() {
                        pool.bounce(m.phys, slots.tlb, m.len, DmaDirection::FromDevice);
                    }
                    // Slots the device may still reach (a failed unmap) are
                    // leaked with their IOVA, never handed to someone else.
                    if unmapped {
                        pool.release(slots);
                    }
                }
            }
        }
    }

    // ----- the raw layer (Linux dma_map_single & co.) -----

    /// `dma_map_single`: maps `[phys, phys+len)` for the device and returns the bus
    /// address to program. Bounces (swiotlb) or translates (IOMMU) as the backend and
    /// mask require. Safe code uses [`DmaStream`](crate::DmaStream) instead.
    ///
    /// # Safety
    ///
    /// The device may read (and, unless `dir` is `ToDevice`, write) `[phys, phys+len)`
    /// from now until [`unmap_single`](Self::unmap_single) of the returned address. The
    /// caller must own that memory for the whole time: RAM the platform handed out
    /// (not MMIO, not page tables, not memory another owner may reuse), kept allocated
    /// and not accessed by the CPU except between the `sync_single_for_cpu` /
    /// `sync_single_for_device` pair, and unmapped before it is freed.
    #[allow(unsafe_code)]
    pub unsafe fn map_single(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
    ) -> Result<DmaAddr, DmaError> {
        self.map_phys(phys, len, dir, MapType::Single, Place::Backend)
    }

    /// `dma_unmap_single`: must get the address, size and direction of the map; anything
    /// else is reported (dma-debug) — an unknown address is an error, a wrong size or
    /// direction is reported and the recorded ones are used.
    pub fn unmap_single(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
    ) -> Result<(), DmaError> {
        self.unmap_phys(addr, len, dir, MapType::Single)
    }

    /// `dma_sync_single_for_cpu` (`addr` may point inside a mapping, as with
    /// `dma_sync_single_range_for_cpu`): after it the CPU may read what the device wrote.
    pub fn sync_single_for_cpu(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
    ) -> Result<(), DmaError> {
        self.sync(addr, len, dir, true)
    }

    /// `dma_sync_single_for_device`: hands the buffer back to the device after CPU access.
    pub fn sync_single_for_device(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
    ) -> Result<(), DmaError> {
        self.sync(addr, len, dir, false)
    }
}
