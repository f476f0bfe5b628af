//! ACPI namespace devices (VT-d spec §8.3.1.3 and §8.7): a DRHD's scope of type
//! 5 names a device that is no PCI function, such as an LPSS I2C or UART
//! controller the firmware runs in ACPI mode, by a device number that an ANDD
//! structure declares with the device's ACPI path. The scope's start bus and
//! first path entry are the requester ID the device's DMA carries (further
//! hops are ignored, as Linux's `dmar_acpi_insert_dev_scope` does).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{Dmar, ScopeType};

/// One type-5 scope of a DRHD, matched with the ANDD that declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDevice {
    /// The unit whose DRHD names it.
    pub drhd_base: u64,
    pub segment: u16,
    /// The scope's enumeration ID, the ANDD's device number.
    pub device_number: u8,
    /// The ACPI path the ANDD declares (`\_SB.PCI0.I2C0`); `None` when no ANDD
    /// declares this number.
    pub name: Option<String>,
    /// The requester ID `(bus, device, function)`; `None` for an empty path.
    pub requester: Option<(u8, u8, u8)>,
}

/// What is wrong with a namespace device's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceProblem {
    /// No ANDD declares the scope's device number.
    NoAndd(u8),
    /// The scope has no path, so no requester ID.
    EmptyPath(u8),
}

impl fmt::Display for NamespaceProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceProblem::NoAndd(n) => {
                write!(f, "no ANDD declares ACPI namespace device number {n}")
            }
            NamespaceProblem::EmptyPath(n) => write!(
                f,
                "the scope of ACPI namespace device number {n} has no path (no requester ID)"
            ),
        }
    }
}

impl NamespaceDevice {
    /// Why this device cannot be placed, if it cannot.
    pub fn problem(&self) -> Option<NamespaceProblem> {
        if self.name.is_none() {
            Some(NamespaceProblem::NoAndd(self.device_number))
        } else if self.requester.is_none() {
            Some(NamespaceProblem::EmptyPath(self.device_number))
        } else {
            None
        }
    }
}

impl Dmar {
    /// Every type-5 scope of every DRHD, in table order, with its ANDD's name.
    pub fn namespace_devices(&self) -> Vec<NamespaceDevice> {
        let mut out = Vec::new();
        for d in self.drhds() {
            for s in d
                .scopes
                .iter()
                .filter(|s| s.scope_type == ScopeType::AcpiNamespace)
            {
                out.push(NamespaceDevice {
                    drhd_base: d.register_base,
                    segment: d.segment,
                    device_number: s.enumeration_id,
                    name: self
                        .andds()
                        .find(|a| a.device_number == s.enumeration_id)
                        .map(|a| a.name_string()),
                    requester: s.path.first().map(|p| (s.start_bus, p.device, p.function)),
                });
            }
        }
        out
    }
}
