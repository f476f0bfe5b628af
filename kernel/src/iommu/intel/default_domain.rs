//! Where a PCI function without a driver goes (the default-domain policy of
//! Linux's drivers/iommu/intel/iommu.c): with translation on, the unit's
//! blocking domain, a domain of its RMRRs alone, the ISA window, or its
//! group's domain; with `iommu=pt`, the pass-through (or identity) domain.

use alloc::vec::Vec;

use hal::PhysAddr;
use iommu_vtd::{DomainId, DomainKind, Perm};

use super::{Iommu, Unit, UnitEntry};

/// Where a function no driver claimed was put when translation came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unclaimed {
    /// In the unit's blocking domain, bus mastering switched off.
    Blocked,
    /// In a domain of its own holding only its RMRR ranges (identity-mapped):
    /// the firmware keeps using that memory, so bus mastering stays as it was.
    RmrrOnly,
    /// In the same domain as a driver-bound function it shares a requester ID with.
    SharesGroup,
    /// The ISA (LPC) bridge: ISA DMA (the i8237, third-party) reaches memory
    /// with the bridge's requester ID, so the low 16 MiB, all an ISA channel can
    /// address, stay identity-mapped for it (Linux's floppy workaround).
    IsaDma,
}

/// What an ISA DMA channel can address: the low 16 MiB.
const ISA_DMA_LIMIT: u64 = 16 << 20;
/// Usable RAM as page-aligned (start, length) ranges, for identity domains.
pub(super) fn usable_ram() -> Vec<(PhysAddr, u64)> {
    crate::mm::memmap::regions()
        .iter()
        .filter(|r| r.kind == crate::mm::memmap::Kind::Usable)
        .map(|r| {
            (
                PhysAddr::new(r.start & !0xFFF),
                (r.end - (r.start & !0xFFF)) & !0xFFF,
            )
        })
        .collect()
}

/// `iommu=pt`: the unit's pass-through domain (an identity one without ECAP.PT).
pub(super) fn attach_passthrough(
    u: &mut Unit,
    entry: &UnitEntry,
    aliases: &[pci::Bdf],
) -> Result<Option<(DomainId, Unclaimed)>, iommu_vtd::Error> {
    // In a group already placed: the same domain (one ID).
    if let Some(did) = u.group_domain(aliases) {
        u.attach_aliases(aliases, did)?;
        return Ok(None);
    }
    let mut pt = entry.passthrough.lock();
    let did = match *pt {
        Some(did) => did,
        None => {
            // Identity over RAM when the unit has no pass-through.
            let did = u.create_default_domain(&usable_ram())?;
            *pt = Some(did);
            did
        }
    };
    u.attach_aliases(aliases, did)?;
    Ok(None)
}

/// Translation on: a function without a driver (yet) gets the blocking
/// domain, or its RMRRs alone, or the ISA window, or its group's domain (see
/// `enable` in `iommu.rs`). These domains take IDs from the top, so drivers' domains are
/// numbered 1, 2, ... in bind order.
pub(super) fn attach_unclaimed(
    u: &mut Unit,
    entry: &UnitEntry,
    aliases: &[pci::Bdf],
    isa_bridge: bool,
) -> Result<Option<(DomainId, Unclaimed)>, iommu_vtd::Error> {
    if let Some(did) = u.group_domain(aliases) {
        u.attach_aliases(aliases, did)?;
        let how = if Some(did) == *entry.blocked.lock() {
            Unclaimed::Blocked
        } else {
            Unclaimed::SharesGroup
        };
        return Ok(Some((did, how)));
    }
    if isa_bridge {
        let did = u.create_domain_top(DomainKind::Translated)?;
        let r = u
            .map(
                did,
                0,
                PhysAddr::new(0),
                ISA_DMA_LIMIT,
                Perm::READ | Perm::WRITE,
            )
            .and_then(|()| u.attach_aliases(aliases, did));
        if let Err(e) = r {
            let _ = u.destroy_domain(did);
            return Err(e);
        }
        return Ok(Some((did, Unclaimed::IsaDma)));
    }
    if aliases.iter().any(|a| u.has_rmrr(*a)) {
        let did = u.create_domain_top(DomainKind::Translated)?;
        if let Err(e) = u.attach_aliases(aliases, did) {
            let _ = u.destroy_domain(did);
            return Err(e);
        }
        return Ok(Some((did, Unclaimed::RmrrOnly)));
    }
    let mut blocked = entry.blocked.lock();
    let did = match *blocked {
        Some(did) => did,
        None => {
            let did = u.create_domain_top(DomainKind::Translated)?;
            *blocked = Some(did);
            did
        }
    };
    u.attach_aliases(aliases, did)?;
    Ok(Some((did, Unclaimed::Blocked)))
}

/// Whether `did` on unit `ui` is a default domain of functions without a
/// driver (blocking, RMRR-only or ISA): a driver that binds must leave it for
/// a domain of its own.
pub(super) fn is_unclaimed_domain(io: &Iommu, ui: usize, did: DomainId) -> bool {
    io.unclaimed
        .lock()
        .iter()
        .any(|u| u.1 == ui && u.2 == did && u.3 != Unclaimed::SharesGroup)
        || io
            .units
            .get(ui)
            .is_some_and(|e| *e.blocked.lock() == Some(did))
}
