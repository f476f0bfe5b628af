//! What the `iommu` shell views read (Linux: drivers/iommu/intel/debugfs.c):
//! the domain a device is in, a table walk as the hardware would do it.

use iommu_vtd::policy::Mode;
use iommu_vtd::DomainId;

use super::dmar::{dma_aliases, unit_for};
use super::{get, with_unit, Error};

/// The domain a device is in, if it has one of its own.
pub fn domain_of(bdf: pci::Bdf) -> Option<(usize, DomainId)> {
    get()?
        .attached
        .lock()
        .iter()
        .find(|a| a.0 == bdf)
        .map(|a| (a.1, a.2))
}

/// Walks the unit's tables for `bdf` as the hardware would for a read: with
/// the requester ID its DMA reaches the unit with (a bridge's, behind a
/// PCIe-to-PCI bridge).
pub fn translate(bdf: pci::Bdf, iova: u64) -> Result<iommu_vtd::Translation, Error> {
    walk(bdf, iova, false)
}

/// [`translate`] for a DMA write: a missing mapping or write permission gives
/// the reason the unit records for a write (0x5), not a read's (0x6).
pub fn translate_write(bdf: pci::Bdf, iova: u64) -> Result<iommu_vtd::Translation, Error> {
    walk(bdf, iova, true)
}

fn walk(bdf: pci::Bdf, iova: u64, write: bool) -> Result<iommu_vtd::Translation, Error> {
    let io = get().ok_or(Error::NoIommu)?;
    let ui = unit_for(bdf, None).ok_or(Error::NoUnit(bdf))?;
    let rid = dma_aliases(bdf).last().copied().unwrap_or(bdf);
    with_unit(&io.units[ui].unit, |u| {
        if write {
            u.translate_write(rid, iova)
        } else {
            u.translate(rid, iova)
        }
    })
    .map_err(Error::Walk)
}

/// The unit index and domain `bdf` is attached to now (`None`: no working
/// unit covers it, or it is attached nowhere).
pub fn attachment_of(bdf: pci::Bdf) -> Option<(usize, DomainId)> {
    let io = get()?;
    if io.mode == Mode::Off {
        return None;
    }
    let ui = unit_for(bdf, None)?;
    let aliases = dma_aliases(bdf);
    with_unit(&io.units[ui].unit, |u| u.group_domain(&aliases)).map(|d| (ui, d))
}
