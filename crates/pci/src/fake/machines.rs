//! Configuration spaces shaped like the QEMU topologies of the `pcie-switch`
//! and `pci-bridge` profiles (and a conventional bridge one level further),
//! for tests of topology, scope and alias logic here and in crates above.

use super::{FakeConfig, FakeFunction};
use crate::Bdf;

const EDU: (u16, u16, u32) = (0x1234, 0x11e8, 0x00_FF00);

fn edu() -> FakeFunction {
    FakeFunction::endpoint(EDU.0, EDU.1, EDU.2, 0x10)
}

fn host(c: &FakeConfig) {
    c.add(
        Bdf::b(0, 0, 0),
        FakeFunction::endpoint(0x8086, 0x29c0, 0x06_0000, 0),
    );
    c.add(Bdf::b(0, 3, 0), edu());
}

/// q35 with an edu at 00:03.0 and a root port 00:04.0 → switch upstream
/// port 01:00.0 → downstream port 02:00.0 → edu 03:00.0 (all PCIe ports:
/// requester IDs pass unchanged).
pub fn pcie_switch() -> FakeConfig {
    let c = FakeConfig::new();
    host(&c);
    c.add(
        Bdf::b(0, 4, 0),
        FakeFunction::bridge(0x1b36, 0x000c, 0, 1, 3)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 4),
    );
    c.add(
        Bdf::b(1, 0, 0),
        FakeFunction::bridge(0x104c, 0x8232, 1, 2, 3)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 5),
    );
    c.add(
        Bdf::b(2, 0, 0),
        FakeFunction::bridge(0x104c, 0x8233, 2, 3, 3)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 6),
    );
    c.add(Bdf::b(3, 0, 0), edu());
    c
}

/// q35 with an edu at 00:03.0 and a root port 00:04.0 → PCIe-to-PCI bridge
/// 01:00.0 (secondary bus 2) → conventional edus at 02:03.0 and 02:05.0,
/// and a conventional PCI-to-PCI bridge 02:07.0 (secondary bus 3) with an
/// edu at 03:01.0.
pub fn pcie_to_pci_bridge() -> FakeConfig {
    let c = FakeConfig::new();
    host(&c);
    c.add(
        Bdf::b(0, 4, 0),
        FakeFunction::bridge(0x1b36, 0x000c, 0, 1, 3)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 4),
    );
    c.add(
        Bdf::b(1, 0, 0),
        FakeFunction::bridge(0x1b36, 0x000e, 1, 2, 3)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 7),
    );
    c.add(Bdf::b(2, 3, 0), edu());
    c.add(Bdf::b(2, 5, 0), edu());
    c.add(
        Bdf::b(2, 7, 0),
        FakeFunction::bridge(0x1b36, 0x0001, 2, 3, 3),
    );
    c.add(Bdf::b(3, 1, 0), edu());
    c
}
