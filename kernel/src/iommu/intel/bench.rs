//! Domains and attachments for the benches: a spare translated domain for
//! `dmabench`, and for `blkbench` a device moved between pass-through and a
//! bench domain while its driver is quiesced.

use alloc::sync::Arc;

use core::sync::atomic::Ordering;
use dma::SharedDomain;
use iommu_vtd::policy::Mode;
use iommu_vtd::{DomainId, DomainKind};
use spin::Mutex;

use super::default_domain::usable_ram;
use super::dma_iommu::VtdDomain;
use super::dmar::{dma_aliases, unit_for};
use super::{get, with_unit, Error};

/// A domain with no device attached, for timing map+unmap through the real
/// unit (its invalidations included) in `dmabench`: on the unit that
/// translates for the first driver-bound device (on a laptop the first DRHD
/// is the graphics unit, which may lack page-selective invalidation), else
/// the first unit. Dropped, it gives its domain ID back.
pub fn bench_domain(strict: bool) -> Option<SharedDomain> {
    bench_domain_id(strict).map(|(d, _, _)| d)
}

/// [`bench_domain`] with its unit index and domain ID (for tests).
pub fn bench_domain_id(strict: bool) -> Option<(SharedDomain, usize, DomainId)> {
    let io = get().filter(|io| io.mode == Mode::Translate)?;
    let ui = io.attached.lock().first().map_or(0, |a| a.1);
    let entry = io
        .units
        .get(ui)
        .filter(|e| e.enabled.load(Ordering::Acquire))?;
    let did = with_unit(&entry.unit, |u| u.create_domain(DomainKind::Translated)).ok()?;
    let d: SharedDomain = Arc::new(Mutex::new(VtdDomain {
        unit: entry.unit.clone(),
        did,
        strict,
    }));
    Some((d, ui, did))
}

/// Where `blkbench` puts a device's requester IDs for one of its modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTarget {
    /// The unit's pass-through (or, without ECAP.PT, identity) domain: bus
    /// address = physical address, as for devices without a driver.
    PassThrough,
    /// A domain of the unit (a bench domain, or the device's own to restore).
    Domain(DomainId),
}

/// Why a translated bench domain cannot be had for `bdf` this boot, or `None`
/// when it can.
pub fn why_no_translation(bdf: pci::Bdf) -> Option<Error> {
    let Some(io) = get() else {
        return Some(Error::NoIommu);
    };
    if io.mode == Mode::Off {
        return Some(Error::Off);
    }
    if unit_for(bdf, None).is_none() {
        return Some(Error::NoUnit(bdf));
    }
    None
}

/// A translated domain with no device yet, on the unit that covers `bdf`, for
/// `blkbench` (which attaches the device to it with [`bench_attach`] while the
/// driver is quiesced). Offered when the units are up (iommu=on or pt).
/// Dropped after the device has left it, it gives its domain ID back.
pub fn bench_domain_for(bdf: pci::Bdf, strict: bool) -> Result<(SharedDomain, DomainId), Error> {
    if let Some(why) = why_no_translation(bdf) {
        return Err(why);
    }
    let io = get().ok_or(Error::NoIommu)?;
    let ui = unit_for(bdf, None).ok_or(Error::NoUnit(bdf))?;
    let entry = &io.units[ui];
    let did = with_unit(&entry.unit, |u| u.create_domain(DomainKind::Translated))?;
    let d: SharedDomain = Arc::new(Mutex::new(VtdDomain {
        unit: entry.unit.clone(),
        did,
        strict,
    }));
    Ok((d, did))
}

/// Re-points every context entry of `bdf` (each requester ID its DMA can
/// carry) at `target`, with the invalidations `attach` does. The caller must
/// have quiesced the device: DMA in flight would land in the new domain.
/// A pass-through domain is made on first use when the unit has none yet.
pub fn bench_attach(bdf: pci::Bdf, target: BenchTarget) -> Result<DomainId, Error> {
    let io = get().ok_or(Error::NoIommu)?;
    let ui = unit_for(bdf, None).ok_or(Error::NoUnit(bdf))?;
    let entry = &io.units[ui];
    let aliases = dma_aliases(bdf);
    with_unit(&entry.unit, |u| {
        let did = match target {
            BenchTarget::Domain(d) => d,
            BenchTarget::PassThrough => {
                let mut pt = entry.passthrough.lock();
                match *pt {
                    Some(d) => d,
                    None => {
                        let d = if u.ecap().pt {
                            u.create_domain(DomainKind::PassThrough)?
                        } else {
                            u.create_identity_domain(&usable_ram())?
                        };
                        *pt = Some(d);
                        d
                    }
                }
            }
        };
        // The aliases move together: detach the device's own entries first so
        // attach_aliases does not see them as "in another domain".
        for a in &aliases {
            if u.domain_of(*a).is_some_and(|d| d != did) {
                u.detach(*a)?;
            }
        }
        u.attach_aliases(&aliases, did).map(|_| did)
    })
    .map_err(Error::Vtd)
}
