//! Untrusted devices (Linux's `pci_dev->untrusted`): the functions the user
//! names with `pci.untrusted=<bdf>[,<bdf>...]`, and every function below a
//! PCIe root port whose ACPI `_DSD` says `ExternalFacingPort` (Linux:
//! `pci_acpi_set_external_facing` marks the port, `set_pcie_untrusted` in
//! drivers/pci/probe.c marks what is below it; the port itself stays
//! trusted). The IOMMU gives an untrusted device strict invalidation and no
//! pass-through, and the DMA API bounces its sub-page buffers.

use alloc::string::String;
use alloc::vec::Vec;

use pci::{Bdf, ConfigAccess, PciDevice, Topology};
use spin::Once;

use crate::acpi::aml::property;

/// (function, the external-facing root port above it), set once at boot
/// before any driver binds.
static BELOW_EXTERNAL: Once<Vec<(Bdf, Bdf)>> = Once::new();

/// Whether `bdf` is untrusted: named by `pci.untrusted=`, or below an
/// external-facing root port.
pub fn is_untrusted(bdf: Bdf) -> bool {
    named_untrusted(bdf) || external_port_above(bdf).is_some()
}

/// The external-facing root port `bdf` sits below, if any.
fn external_port_above(bdf: Bdf) -> Option<Bdf> {
    BELOW_EXTERNAL
        .get()?
        .iter()
        .find(|(d, _)| *d == bdf)
        .map(|(_, port)| *port)
}

/// Whether the user named `bdf` in `pci.untrusted=`.
fn named_untrusted(bdf: Bdf) -> bool {
    crate::cmdline::boot_cmdline()
        .get("pci.untrusted")
        .is_some_and(|list| {
            list.split(',')
                .filter_map(|b| b.trim().parse::<Bdf>().ok())
                .any(|b| b == bdf)
        })
}

/// The `pci.untrusted=` entries that do not parse as bus:device.function.
pub fn bad_untrusted_entries() -> Vec<String> {
    crate::cmdline::boot_cmdline()
        .get("pci.untrusted")
        .map(|list| {
            list.split(',')
                .filter(|b| b.trim().parse::<Bdf>().is_err())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// PCIe Device/Port Type of a root port (PCIe base spec §7.5.3.2).
const ROOT_PORT: u8 = pci::topology::port_type::ROOT_PORT;

/// The root ports among `devices` (on a root bus, PCIe capability says Root
/// Port): the only functions Linux reads `ExternalFacingPort` on.
pub(super) fn root_ports(cfg: &dyn ConfigAccess, devices: &[PciDevice]) -> Vec<Bdf> {
    devices
        .iter()
        .filter(|d| d.parent.is_none() && d.bridge.is_some())
        .filter(|d| pci::topology::pcie_port_type(cfg, d) == Some(ROOT_PORT))
        .map(|d| d.bdf)
        .collect()
}

/// Asks the AML which of `ports` are external-facing and marks every
/// function below one (at any depth) untrusted. Runs once, after the AML is
/// loaded and before drivers bind; must not hold the PCI lock (the AML may
/// read configuration space through it).
pub(super) fn mark_below_external_ports(ports: &[Bdf], topology: &Topology) {
    let mut external = Vec::new();
    for &port in ports {
        match property::root_port_external_facing(port.bus, port.device, port.function) {
            Ok(true) => {
                log::info!("pci {port}: ACPI ExternalFacingPort: devices below it are untrusted");
                external.push(port);
            }
            Ok(false) => {}
            Err(e) if e.is_firmware_bug() => {
                log::warn!("pci {port}: not external-facing: {e}");
            }
            Err(e) => log::debug!("pci {port}: no ExternalFacingPort: {e}"),
        }
    }
    let mut below = Vec::new();
    for n in topology.nodes() {
        if let Some(port) = topology
            .ancestors(n.bdf)
            .into_iter()
            .find(|a| external.contains(a))
        {
            log::info!(
                "pci {}: untrusted: below external-facing port {port}",
                n.bdf
            );
            below.push((n.bdf, port));
        }
    }
    BELOW_EXTERNAL.call_once(|| below);
}
