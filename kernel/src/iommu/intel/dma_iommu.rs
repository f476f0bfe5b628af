//! The DMA API on VT-d (Linux: drivers/iommu/dma-iommu.c): `VtdDomain`, the
//! dma crate's `IommuDomain` on one unit's domain, strict or lazy (the flush
//! queue, and its timer tick hook); the PCI windows every IOVA space leaves out.

use alloc::sync::Arc;
use alloc::vec::Vec;

use dma::{IommuDomain, IommuError, IommuPerm};
use hal::{DmaAddr, PhysAddr};
use iommu_vtd::policy::Mode;
use iommu_vtd::{DomainId, Perm};

use super::{get, with_unit, Unit};
use crate::arch::apic;
use crate::sync::IrqSpinLock;

/// A translated domain of one unit, as the DMA API sees it.
pub struct VtdDomain {
    pub(super) unit: Arc<IrqSpinLock<Unit>>,
    pub(super) did: DomainId,
    pub(super) strict: bool,
}

/// Logs a VT-d error of the map path and gives the DMA layer's for it.
fn iommu_err(e: iommu_vtd::Error) -> IommuError {
    log::warn!("iommu: {e}");
    iommu_error_of(e)
}

/// The DMA layer's error for a VT-d error, keeping its cause (a page-table
/// allocation failure is out of memory, not "beyond the address width").
/// Exhaustive, so a new VT-d error needs a decision here.
pub fn iommu_error_of(e: iommu_vtd::Error) -> IommuError {
    use iommu_vtd::Error as E;
    match e {
        E::NoMemory => IommuError::OutOfMemory,
        E::AlreadyMapped(_) => IommuError::AlreadyMapped,
        E::NotMapped(_) => IommuError::NotMapped,
        E::Misaligned => IommuError::Misaligned,
        E::BeyondAddressWidth(_) => IommuError::OutOfRange,
        E::Iova(_) => IommuError::IovaExhausted,
        E::Timeout(_) | E::QueueError(_) | E::InvalidationRejected => IommuError::FlushFailed,
        E::NoSuchDomain(_)
        | E::DomainBusy(_)
        | E::NotAttached(_)
        | E::NotTranslated(_)
        | E::UnsupportedLevels(_)
        | E::NoPassThrough
        | E::NoQueuedInvalidation
        | E::DomainIdsExhausted
        | E::NoUnit(_)
        | E::AliasInOtherDomain(..)
        | E::NoInterruptRemapping
        | E::InterruptRemappingOff
        | E::Irte(_)
        | E::WindowTooSmall { .. } => IommuError::DomainUnusable,
    }
}

fn vtd_perm(perm: IommuPerm) -> Perm {
    let mut p = Perm::empty();
    p.set(Perm::READ, perm.contains(IommuPerm::READ));
    p.set(Perm::WRITE, perm.contains(IommuPerm::WRITE));
    p
}

impl Drop for VtdDomain {
    /// A domain no device is attached to any more gives its ID back (client
    /// units have CAP.ND = 2: 256 IDs). One with devices stays (they still DMA
    /// through it; `destroy_domain` refuses and changes nothing).
    fn drop(&mut self) {
        with_unit(&self.unit, |u| {
            let _ = u.destroy_domain(self.did);
        });
    }
}

impl IommuDomain for VtdDomain {
    fn alloc_iova(&mut self, len: u64, mask: u64) -> Option<DmaAddr> {
        with_unit(&self.unit, |u| u.alloc_iova(self.did, len, mask))
            .ok()
            .map(DmaAddr::new)
    }

    fn free_iova(&mut self, iova: DmaAddr, _len: u64) {
        let now = apic::ticks();
        with_unit(&self.unit, |u| {
            if self.strict {
                // unmap and the IOTLB flush already happened (the DMA layer's
                // order): reusable at once.
                let _ = u.free_iova(self.did, iova.as_u64());
            } else {
                // Lazy: parked until the flush queue's domain flush.
                let _ = u.queue_iova(self.did, iova.as_u64(), now);
                let _ = u.flush_queue_tick(self.did, now);
            }
        })
    }

    fn map(
        &mut self,
        iova: DmaAddr,
        phys: PhysAddr,
        len: u64,
        perm: IommuPerm,
    ) -> Result<(), IommuError> {
        let p = vtd_perm(perm);
        with_unit(&self.unit, |u| u.map(self.did, iova.as_u64(), phys, len, p)).map_err(iommu_err)
    }

    fn unmap(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        with_unit(&self.unit, |u| u.unmap(self.did, iova.as_u64(), len))
            .map(|_| ())
            .map_err(iommu_err)
    }

    /// One lock and one call into the unit for the whole map path.
    fn alloc_and_map(
        &mut self,
        len: u64,
        mask: u64,
        phys: PhysAddr,
        perm: IommuPerm,
    ) -> Result<DmaAddr, IommuError> {
        let p = vtd_perm(perm);
        with_unit(&self.unit, |u| u.map_dma(self.did, phys, len, p, mask))
            .map(DmaAddr::new)
            .map_err(|e| match e {
                iommu_vtd::Error::Iova(_) => IommuError::IovaExhausted,
                e => iommu_err(e),
            })
    }

    /// Unmap, then (strict) a page-selective invalidation and the IOVA back at
    /// once, or (lazy) the IOVA into the flush queue, which invalidates the
    /// domain before any of its IOVAs is reused.
    fn unmap_and_free(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        let now = apic::ticks();
        with_unit(&self.unit, |u| {
            u.unmap_dma(self.did, iova.as_u64(), len, now, self.strict)
        })
        .map_err(iommu_err)
    }

    /// Strict: a page-selective invalidation, complete on return. Lazy: deferred
    /// (the trait's "deferred invalidation"): the flush queue invalidates the
    /// domain in batches, and `free_iova` parks the range in that queue, so it is
    /// not reused before the flush.
    fn flush_iotlb(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        if !self.strict {
            return Ok(());
        }
        with_unit(&self.unit, |u| {
            u.flush_iotlb_range(self.did, iova.as_u64(), len)
        })
        .map_err(iommu_err)
    }
}

/// Runs every lazily freed IOVA's invalidation now (one domain-selective
/// flush per queue) instead of leaving it to the timer: for a driver that
/// unmapped a batch at start-up and does not want the flush to land in the
/// middle of whatever runs next.
pub fn flush_lazy_queues() {
    let Some(io) = get() else { return };
    for e in &io.units {
        if let Err(err) = e.unit.lock().flush_queues_due(u64::MAX) {
            log::warn!("iommu {:#x}: flush queue: {err}", e.base);
        }
    }
}

/// The timer tick hook (registered by `init` in lazy mode): every 10th tick
/// (100 ms), lazy mode's flush queues are flushed when their oldest IOVA has
/// waited its delay, even if no further unmap comes to check (the delay bound
/// of the flush queue). In interrupt context: a failure is only recorded here
/// and logged by the next `collect_faults`.
pub(super) fn flush_queue_timer(now: u64) {
    if !now.is_multiple_of(10) {
        return;
    }
    let Some(io) = get() else { return };
    if io.strict || io.mode != Mode::Translate {
        return;
    }
    for e in &io.units {
        // Every holder of a unit lock keeps interrupts off, so on this CPU the
        // lock is free here; try_lock all the same (never spin in an IRQ).
        if let Some(mut u) = e.unit.try_lock() {
            if let Err(err) = u.flush_queues_due(now) {
                super::fault::record_flush_queue_error(e.base, err);
            }
        }
    }
}

/// The IOVA ranges no domain may hand out (issue #17 item 3). The kernel
/// parses neither the MCFG's nor the DSDT's `_CRS` host-bridge windows, so
/// it takes what it knows: the whole 32-bit hole from the end of the RAM
/// below 4 GiB (from the memory map) to 4 GiB (on q35 that covers the MCFG
/// at 0xb000_0000, the BARs SeaBIOS/OVMF place from 0xc000_0000 or
/// 0x8000_0000 up, the IOAPIC, HPET, the VT-d registers and the interrupt
/// window; on a laptop the 32-bit window from TOLUD), plus every memory BAR
/// and bridge memory window the enumeration saw (the 64-bit window's
/// resources, 0x40_0000_0000 and up on Ice/Tiger/Alder Lake). Merged.
pub(super) fn pci_windows(devices: &[pci::PciDevice]) -> Vec<(u64, u64)> {
    const FOUR_GIB: u64 = 1 << 32;
    let low_ram_top = crate::mm::memmap::regions()
        .iter()
        .filter(|r| r.kind == crate::mm::memmap::Kind::Usable && r.start < FOUR_GIB)
        .map(|r| r.end.min(FOUR_GIB))
        .max()
        .unwrap_or(0);
    let mut w: Vec<(u64, u64)> = Vec::new();
    if low_ram_top < FOUR_GIB {
        w.push((low_ram_top, FOUR_GIB - low_ram_top));
    }
    for d in devices {
        for b in d
            .bars
            .iter()
            .filter(|b| b.is_memory() && b.size > 0 && b.address != 0)
        {
            w.push((b.address, b.size));
        }
        if let Some(bw) = d.bridge_windows {
            for win in [bw.memory, bw.prefetchable].into_iter().flatten() {
                w.push((win.base, win.size()));
            }
        }
    }
    w.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, l) in w {
        let e = s.saturating_add(l);
        match merged.last_mut() {
            Some((ms, ml)) if s <= ms.saturating_add(*ml) => {
                *ml = e.max(ms.saturating_add(*ml)) - *ms;
            }
            _ => merged.push((s, l)),
        }
    }
    merged
}
