//! ACPI namespace devices (Linux: `dmar_acpi_insert_dev_scope` in
//! drivers/iommu/intel/dmar.c and `probe_acpi_namespace_devices` in iommu.c):
//! a DRHD's type-5 scope names a device that is no PCI function, typically an
//! LPSS I2C or UART controller the firmware runs in ACPI mode, and the
//! requester ID its DMA carries. No driver here drives such a device, so it is
//! placed like a PCI function without a driver: in the unit's blocking domain
//! with translation on, in pass-through with `iommu=pt`. Without this its
//! requester ID would have no context entry at all (its DMA would fault as
//! "context entry not present" rather than be shown as blocked).

use alloc::string::String;
use alloc::vec::Vec;

use acpi_tables::dmar::{Dmar, NamespaceProblem};
use iommu_vtd::DomainId;
use spin::Mutex;

use super::default_domain::{attach_passthrough, attach_unclaimed};
use super::{with_unit, Iommu, Mode, Unused};

/// Where a namespace device ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    /// In this domain of the unit at `base` (blocking, or pass-through).
    Domain {
        base: u64,
        did: DomainId,
        passthrough: bool,
    },
    /// A PCI function has the same requester ID (the firmware shows the
    /// controller in PCI mode too): it is placed as that function.
    AsPciFunction,
    /// The DRHD naming it has no working unit.
    UnitUnused(u64, Unused),
    /// The description is broken.
    Problem(NamespaceProblem),
    /// The unit refused the attach.
    Failed(iommu_vtd::Error),
    /// The attach returned but the unit has no domain for it.
    NotAttached,
}

/// One ACPI namespace device of the DMAR and where it went.
#[derive(Clone, Debug)]
pub struct NamespaceDev {
    /// The ANDD's ACPI path (`\_SB.PCI0.I2C0`), or `#<number>` without one.
    pub name: String,
    pub requester: Option<pci::Bdf>,
    pub placed: Placed,
}

static DEVICES: Mutex<Vec<NamespaceDev>> = Mutex::new(Vec::new());

/// The DMAR's namespace devices, once the units are set up.
pub fn devices() -> Vec<NamespaceDev> {
    DEVICES.lock().clone()
}

/// Places every namespace device of the DMAR (before translation comes on).
pub(super) fn place(io: &Iommu, dmar: &Dmar, pci_devices: &[pci::PciDevice]) {
    let mut out = Vec::new();
    for n in dmar.namespace_devices() {
        let name = n
            .name
            .clone()
            .unwrap_or_else(|| alloc::format!("#{}", n.device_number));
        let requester = n
            .requester
            .and_then(|(b, d, f)| pci::Bdf::new(n.segment, b, d, f));
        let placed = match (n.problem(), requester) {
            (Some(p), _) => Placed::Problem(p),
            (None, None) => Placed::Problem(NamespaceProblem::EmptyPath(n.device_number)),
            (None, Some(rid)) => place_one(io, n.drhd_base, n.segment, rid, pci_devices),
        };
        match &placed {
            Placed::Domain {
                base,
                did,
                passthrough,
            } => log::info!(
                "iommu: ACPI namespace device {name} as requester {}: {did} ({}) on unit {base:#x}",
                requester.map_or(String::new(), |r| alloc::format!("{}", r.short())),
                if *passthrough {
                    "pass-through"
                } else {
                    "blocked: no driver"
                }
            ),
            Placed::AsPciFunction => log::info!(
                "iommu: ACPI namespace device {name}: its requester ID is an enumerated PCI function; placed as that function"
            ),
            Placed::UnitUnused(base, why) => log::info!(
                "iommu: ACPI namespace device {name}: its unit {base:#x} is not in use ({})",
                why.reason()
            ),
            Placed::Problem(p) => log::warn!("iommu: ACPI namespace device {name}: {p}; ignored"),
            Placed::Failed(e) => log::warn!("iommu: ACPI namespace device {name}: attach failed: {e}"),
            Placed::NotAttached => log::warn!("iommu: ACPI namespace device {name}: not attached"),
        }
        out.push(NamespaceDev {
            name,
            requester,
            placed,
        });
    }
    *DEVICES.lock() = out;
}

fn place_one(
    io: &Iommu,
    base: u64,
    segment: u16,
    rid: pci::Bdf,
    pci_devices: &[pci::PciDevice],
) -> Placed {
    if pci_devices.iter().any(|d| d.bdf == rid) {
        return Placed::AsPciFunction;
    }
    let Some(drhd) = io
        .drhds
        .iter()
        .find(|d| d.base == base && d.segment == segment)
    else {
        return Placed::UnitUnused(base, Unused::Failed);
    };
    let Some(ui) = drhd.unit else {
        return Placed::UnitUnused(base, drhd.unused);
    };
    let entry = &io.units[ui];
    let passthrough = io.mode == Mode::PassThrough;
    let r = with_unit(&entry.unit, |u| {
        if passthrough {
            attach_passthrough(u, entry, &[rid])?;
        } else {
            attach_unclaimed(u, entry, &[rid], false)?;
        }
        Ok(u.domain_of(rid))
    });
    match r {
        Ok(Some(did)) => Placed::Domain {
            base,
            did,
            passthrough,
        },
        Ok(None) => Placed::NotAttached,
        Err(e) => Placed::Failed(e),
    }
}
