//! The one choke point: every streaming mapping, sg piece and coherent allocation is
//! recorded here, and every unmap and sync looks its record up here.
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
//! device after the copy in, for the CPU before the copy out.

use crate::debug::{DebugEvent, DebugKind, MapType, MappingInfo, Via, RECENT_UNMAPS};
use crate::iommu::{IommuError, IommuPerm, SharedDomain};
use crate::swiotlb::{AllocFail, Slots, Swiotlb, MAX_MAPPING};
use crate::{DmaBackend, DmaDevice, DmaDirection, DmaError, DMA_MAPPING_ERROR};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use hal::{DmaAddr, PhysAddr};

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

/// One live mapping.
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
    fn device_phys(&self, off: usize) -> PhysAddr {
        match self.bounce_slots() {
            Some((_, slots)) => slots.tlb + off as u64,
            None => self.phys + off as u64,
        }
    }

    /// The bounce pool and slots, when the device sees a copy of the buffer
    /// (swiotlb for a mask, or an untrusted device's bounce under the IOMMU).
    fn bounce_slots(&self) -> Option<(&Arc<Swiotlb>, &Slots)> {
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

/// Live records and a short memory of unmapped ones.
#[derive(Default)]
pub(crate) struct MapState {
    pub live: Vec<Mapping>,
    pub recent: VecDeque<MappingInfo>,
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
    fn event(&self, kind: DebugKind, addr: DmaAddr, size: usize) -> DebugEvent {
        DebugEvent {
            kind,
            device: self.name.clone(),
            addr,
            size,
            dir: None,
            map_type: None,
            original: None,
            mask: None,
            count: 0,
        }
    }

    /// Maps `[phys, phys+len)` for the device: direct, bounce or IOMMU. Records it.
    pub(crate) fn prepare(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
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
        let m = match self.backend() {
            DmaBackend::Iommu(domain) => match self.untrusted_pool() {
                Some(pool) if !Self::fills_pages(&domain, phys, len) => {
                    self.map_iommu_bounced(domain, pool, phys, len, dir, &p)?
                }
                _ => self.map_iommu(domain, phys, len, dir, p.dma_mask, p.coherent)?,
            },
            backend => {
                // dma_capable(): the last byte must be under the mask. Forced bouncing
                // only means something when there is a pool to bounce through.
                let bounce_forced = p.force_bounce && matches!(backend, DmaBackend::Swiotlb(_));
                if dma_capable(phys.as_u64(), len, p.dma_mask) && !bounce_forced {
                    Mapping {
                        dma: DmaAddr::new(phys.as_u64()),
                        len,
                        dir,
                        phys,
                        map_type,
                        kind: MapKind::Direct,
                        coherent: p.coherent,
                    }
                } else if let DmaBackend::Swiotlb(pool) = backend {
                    self.map_bounce(pool, phys, len, dir, &p)?
                } else {
                    let mut ev =
                        self.event(DebugKind::MaskViolation, DmaAddr::new(phys.as_u64()), len);
                    ev.dir = Some(dir);
                    ev.map_type = Some(map_type);
                    ev.mask = Some(p.dma_mask);
                    self.debug.report(ev);
                    return Err(DmaError::MaskViolation {
                        device: self.name.clone(),
                        phys,
                        len,
                        mask: p.dma_mask,
                    });
                }
            }
        };
        let m = Mapping { map_type, ..m };
        if !m.coherent {
            self.platform
                .cache_sync_for_device(m.device_phys(0), len, dir);
        }
        let dma = m.dma;
        self.maps.lock().live.push(m);
        Ok(dma)
    }

    fn map_bounce(
        &self,
        pool: Arc<Swiotlb>,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        p: &crate::DmaParams,
    ) -> Result<Mapping, DmaError> {
        let slots = pool
            .alloc(phys, len, p.min_align_mask, p.segment_boundary_mask)
            .map_err(|e| match e {
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
            })?;
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
        Ok(Mapping {
            dma: DmaAddr::new(slots.tlb.as_u64()),
            len,
            dir,
            phys,
            map_type: MapType::Single,
            kind: MapKind::Bounce { pool, slots },
            coherent: p.coherent,
        })
    }

    pub(crate) fn map_iommu(
        &self,
        domain: SharedDomain,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        mask: u64,
        coherent: bool,
    ) -> Result<Mapping, DmaError> {
        let mut d = domain.lock();
        let granule = d.granule().max(1);
        let offset = phys.as_u64() % granule;
        let iova_len = (offset + len as u64).div_ceil(granule) * granule;
        let exhausted = || DmaError::IovaExhausted {
            device: self.name.clone(),
            len: iova_len,
            mask,
        };
        let page = PhysAddr::new(phys.as_u64() - offset);
        let iova = match d.alloc_and_map(iova_len, mask, page, IommuPerm::for_direction(dir)) {
            Ok(iova) => iova,
            Err(IommuError::IovaExhausted) => return Err(exhausted()),
            Err(error) => {
                return Err(DmaError::Iommu {
                    device: self.name.clone(),
                    error,
                })
            }
        };
        // Trust but check: an IOVA above the mask would be silently truncated by the
        // device (edu clamps to 28 bits before translation).
        if iova.as_u64().saturating_add(iova_len - 1) > mask {
            if let Err(e) = d.unmap_and_free(iova, iova_len) {
                log::error!(
                    "{}: IOVA {iova:#x} above the mask; undoing it failed ({e})",
                    self.name
                );
            }
            return Err(exhausted());
        }
        drop(d);
        Ok(Mapping {
            dma: DmaAddr::new(iova.as_u64() + offset),
            len,
            dir,
            phys,
            map_type: MapType::Single,
            kind: MapKind::Iommu {
                domain,
                iova,
                iova_len,
                bounce: None,
            },
            coherent,
        })
    }

    /// Whether `[phys, phys+len)` is whole IOMMU pages (nothing else shares them).
    fn fills_pages(domain: &SharedDomain, phys: PhysAddr, len: usize) -> bool {
        let granule = domain.lock().granule().max(1);
        phys.as_u64().is_multiple_of(granule) && (len as u64).is_multiple_of(granule)
    }

    /// An untrusted device's sub-page buffer (Linux `iommu_dma_map_page` with
    /// `dev_use_swiotlb`): copied into page-aligned bounce slots whose padding
    /// is zeroed, and those slots mapped. The buffer is copied in whatever the
    /// direction, so the slots never show the device what they held before.
    fn map_iommu_bounced(
        &self,
        domain: SharedDomain,
        pool: Arc<Swiotlb>,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
        p: &crate::DmaParams,
    ) -> Result<Mapping, DmaError> {
        let granule = domain.lock().granule().max(1) as usize;
        let padded = len.div_ceil(granule) * granule;
        // A page or more with no min-align mask: the pool hands out page-aligned
        // slots (Swiotlb::alloc's historical guarantee).
        let slots = pool
            .alloc(PhysAddr::new(0), padded, 0, p.segment_boundary_mask)
            .map_err(|e| match e {
                AllocFail::TooLarge { size } => DmaError::MappingTooLarge {
                    device: self.name.clone(),
                    size,
                    max: MAX_MAPPING,
                },
                AllocFail::Full { used, total } => DmaError::SwiotlbFull {
                    device: self.name.clone(),
                    size: len,
                    used,
                    total,
                },
            })?;
        debug_assert!(slots.tlb.as_u64().is_multiple_of(granule as u64));
        pool.bounce(phys, slots.tlb, len, DmaDirection::ToDevice);
        self.platform
            .mem()
            .fill(slots.tlb + len as u64, 0, padded - len);
        match self.map_iommu(domain, slots.tlb, len, dir, p.dma_mask, p.coherent) {
            Ok(m) => Ok(Mapping {
                phys,
                kind: match m.kind {
                    MapKind::Iommu {
                        domain,
                        iova,
                        iova_len,
                        ..
                    } => MapKind::Iommu {
                        domain,
                        iova,
                        iova_len,
                        bounce: Some((pool, slots)),
                    },
                    k => k,
                },
                ..m
            }),
            Err(e) => {
                pool.release(slots);
                Err(e)
            }
        }
    }

    /// Records a coherent allocation at `[phys, phys+len)` (already under the coherent
    /// mask when direct) and returns its bus address; through the IOMMU it gets an IOVA
    /// under the coherent mask, readable and writable.
    pub(crate) fn record_coherent(&self, phys: PhysAddr, len: usize) -> Result<DmaAddr, DmaError> {
        let p = self.params();
        let m = match self.backend() {
            DmaBackend::Iommu(domain) => self.map_iommu(
                domain,
                phys,
                len,
                DmaDirection::Bidirectional,
                p.coherent_dma_mask,
                true,
            )?,
            _ => Mapping {
                dma: DmaAddr::new(phys.as_u64()),
                len,
                dir: DmaDirection::Bidirectional,
                phys,
                map_type: MapType::Coherent,
                kind: MapKind::Direct,
                coherent: true,
            },
        };
        // Coherent memory needs no cache maintenance (x86; hw-facts §3.3).
        let m = Mapping {
            map_type: MapType::Coherent,
            coherent: true,
            ..m
        };
        let dma = m.dma;
        self.maps.lock().live.push(m);
        Ok(dma)
    }

    /// Tears a mapping down: cache hook, copy back, release slots; or IOMMU unmap, IOTLB
    /// flush, and only then the IOVA back to the allocator.
    pub(crate) fn unprepare(&self, m: Mapping) {
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
                // Order matters (DESIGN.md §4): remove the translation, invalidate the
                // IOTLB, and only then let the IOVA be handed out again. If either step
                // fails the device might still reach the old page through this IOVA, so
                // it is never freed (leaked on purpose). `unmap_and_free` keeps that
                // order (or a flush queue's equivalent).
                let unmapped = domain.lock().unmap_and_free(iova, iova_len);
                if let Err(e) = &unmapped {
                    log::error!(
                        "{}: IOMMU unmap of {iova:#x}+{iova_len:#x} failed ({e}); IOVA leaked",
                        self.name
                    );
                }
                if let Some((pool, slots)) = bounce {
                    if m.dir.device_writes() {
                        pool.bounce(m.phys, slots.tlb, m.len, DmaDirection::FromDevice);
                    }
                    // Slots the device may still reach (a failed unmap) are
                    // leaked with their IOVA, never handed to someone else.
                    if unmapped.is_ok() {
                        pool.release(slots);
                    }
                }
            }
        }
    }

    /// Looks up, checks and removes the record for an unmap; reports misuse.
    pub(crate) fn take_mapping(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
    ) -> Result<Mapping, DmaError> {
        let mut events = Vec::new();
        let result = {
            let mut g = self.maps.lock();
            let score = |m: &Mapping| {
                (m.map_type == map_type) as u8 * 4 + (m.len == len) as u8 * 2 + (m.dir == dir) as u8
            };
            let best = g
                .live
                .iter()
                .enumerate()
                .filter(|(_, m)| m.dma == addr)
                .max_by_key(|(_, m)| score(m))
                .map(|(i, _)| i);
            match best {
                None => {
                    let kind;
                    let mut original = None;
                    if addr == DMA_MAPPING_ERROR {
                        kind = DebugKind::UnmapInvalidAddress;
                    } else if let Some(o) = g.recent.iter().rev().find(|o| o.addr == addr) {
                        kind = DebugKind::DoubleUnmap;
                        original = Some(*o);
                    } else {
                        kind = DebugKind::UnmapNotMapped;
                    }
                    let mut ev = self.event(kind, addr, len);
                    ev.dir = Some(dir);
                    ev.map_type = Some(map_type);
                    ev.original = original;
                    events.push(ev);
                    Err(DmaError::NotMapped {
                        device: self.name.clone(),
                        addr,
                        len,
                    })
                }
                Some(i) if g.live[i].map_type != map_type => {
                    let o = g.live[i].info();
                    let mut ev = self.event(DebugKind::UnmapWrongType, addr, len);
                    ev.dir = Some(dir);
                    ev.map_type = Some(map_type);
                    ev.original = Some(o);
                    events.push(ev);
                    Err(DmaError::WrongMapType {
                        device: self.name.clone(),
                        addr,
                        mapped: o.map_type,
                        given: map_type,
                    })
                }
                Some(i) => {
                    let m = g.live.swap_remove(i);
                    let o = m.info();
                    for (bad, kind) in [
                        (m.len != len, DebugKind::UnmapSizeMismatch),
                        (m.dir != dir, DebugKind::UnmapDirectionMismatch),
                    ] {
                        if bad {
                            let mut ev = self.event(kind, addr, len);
                            ev.dir = Some(dir);
                            ev.map_type = Some(map_type);
                            ev.original = Some(o);
                            events.push(ev);
                        }
                    }
                    if g.recent.len() == RECENT_UNMAPS {
                        g.recent.pop_front();
                    }
                    g.recent.push_back(o);
                    Ok(m)
                }
            }
        };
        for ev in events {
            self.debug.report(ev);
        }
        result
    }

    /// Unmaps a mapping made through the choke point. A size or direction different from
    /// the map's is reported, and the recorded ones are used (what was really mapped).
    pub(crate) fn release(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        map_type: MapType,
    ) -> Result<(), DmaError> {
        let m = self.take_mapping(addr, len, dir, map_type)?;
        self.unprepare(m);
        Ok(())
    }

    /// Shared body of both syncs. Follows Linux's `check_sync` for reports; the sync is
    /// done with the caller's direction as Linux does.
    pub(crate) fn sync(
        &self,
        addr: DmaAddr,
        len: usize,
        dir: DmaDirection,
        for_cpu: bool,
    ) -> Result<(), DmaError> {
        let mut events = Vec::new();
        let found = {
            let g = self.maps.lock();
            // Several live mappings may contain `addr` (the same buffer mapped twice
            // direct): prefer the one that starts there and has the caller's direction.
            g.live
                .iter()
                .filter(|m| {
                    addr.as_u64() >= m.dma.as_u64() && addr.as_u64() - m.dma.as_u64() < m.len as u64
                })
                .max_by_key(|m| (m.dma == addr) as u8 * 2 + (m.dir == dir) as u8)
                .cloned()
        };
        let Some(m) = found else {
            let mut ev = self.event(DebugKind::SyncNotMapped, addr, len);
            ev.dir = Some(dir);
            self.debug.report(ev);
            return Err(DmaError::NotMapped {
                device: self.name.clone(),
                addr,
                len,
            });
        };
        let off = (addr.as_u64() - m.dma.as_u64()) as usize;
        let o = m.info();
        let mk = |kind| {
            let mut ev = self.event(kind, addr, len);
            ev.dir = Some(dir);
            ev.original = Some(o);
            ev
        };
        if off + len > m.len {
            self.debug.report(mk(DebugKind::SyncOutOfRange));
            return Err(DmaError::SyncOutOfRange {
                device: self.name.clone(),
                addr,
                len,
                map_len: m.len,
            });
        }
        if m.dir != DmaDirection::Bidirectional {
            if dir != m.dir {
                events.push(mk(DebugKind::SyncDirectionMismatch));
            }
            if for_cpu && m.dir != DmaDirection::FromDevice && dir != DmaDirection::ToDevice {
                events.push(mk(DebugKind::SyncReadOnlyForCpu));
            }
            if !for_cpu && m.dir != DmaDirection::ToDevice && dir != DmaDirection::FromDevice {
                events.push(mk(DebugKind::SyncWriteOnlyForDevice));
            }
        }
        for ev in events {
            self.debug.report(ev);
        }
        if for_cpu {
            if !m.coherent {
                self.platform
                    .cache_sync_for_cpu(m.device_phys(off), len, dir);
            }
            if let Some((pool, slots)) = m.bounce_slots() {
                // sync_for_cpu: `len` bytes at offset `off` of the mapping.
                // exercise(swiotlb): begin
                if dir.device_writes() {
                    pool.bounce(
                        m.phys + off as u64,
                        slots.tlb + off as u64,
                        len,
                        DmaDirection::FromDevice,
                    );
                }
                // exercise(swiotlb): stub
                // let _ = (pool, slots, off);
                // todo!("exercise swiotlb: sync a bounced range for the CPU")
                // exercise(swiotlb): end
            }
        } else {
            if let Some((pool, slots)) = m.bounce_slots() {
                // sync_for_device: `len` bytes at offset `off` of the mapping.
                // exercise(swiotlb): begin
                if dir.device_reads() {
                    pool.bounce(
                        m.phys + off as u64,
                        slots.tlb + off as u64,
                        len,
                        DmaDirection::ToDevice,
                    );
                }
                // exercise(swiotlb): stub
                // let _ = (pool, slots, off);
                // todo!("exercise swiotlb: sync a bounced range for the device")
                // exercise(swiotlb): end
            }
            if !m.coherent {
                self.platform
                    .cache_sync_for_device(m.device_phys(off), len, dir);
            }
        }
        Ok(())
    }

    // ----- the raw layer (Linux dma_map_single & co.) -----

    /// `dma_map_single`: maps `[phys, phys+len)` for the device and returns the bus
    /// address to program. Bounces (swiotlb) or translates (IOMMU) as the backend and
    /// mask require. The caller keeps the memory alive and untouched until unmap.
    pub fn map_single(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
    ) -> Result<DmaAddr, DmaError> {
        self.prepare(phys, len, dir, MapType::Single)
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
        self.release(addr, len, dir, MapType::Single)
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
