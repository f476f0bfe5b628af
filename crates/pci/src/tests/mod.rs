//! Host tests against the config-space model in [`crate::fake`].

mod access;
mod bars;
mod caps;
mod driver;
mod msi;
mod names;
mod prop;
mod scan;
mod topology;

use crate::fake::{FakeConfig, FakeFunction};
use crate::Bdf;

/// A q35-like machine: host bridge, VGA, e1000e, edu, a PCIe root port with a switch
/// (upstream + downstream port) and an LPSS UART behind it, and the ICH9 function 31
/// multi-function device.
pub(crate) fn q35() -> FakeConfig {
    let c = FakeConfig::new();
    c.add(
        Bdf::b(0, 0, 0),
        FakeFunction::endpoint(0x8086, 0x29c0, 0x06_0000, 0).subsystem(0x1af4, 0x1100),
    );
    c.add(
        Bdf::b(0, 1, 0),
        FakeFunction::endpoint(0x1234, 0x1111, 0x03_0000, 2)
            .bar32(0, 16 << 20, true, 0xFD00_0000)
            .bar32(2, 4096, false, 0xFEBF_0000)
            .command(0x0003),
    );
    c.add(
        Bdf::b(0, 2, 0),
        FakeFunction::endpoint(0x8086, 0x10d3, 0x02_0000, 0)
            .bar32(0, 128 << 10, false, 0xFEB8_0000)
            .bar_io(2, 32, 0xC000, false)
            .interrupt(10, 1)
            .command(0x0007),
    );
    c.add(
        Bdf::b(0, 3, 0),
        FakeFunction::endpoint(0x1234, 0x11e8, 0x00_FF00, 0x10)
            .bar32(0, 1 << 20, false, 0xFEA0_0000)
            .cap_ptr(0x40)
            .msi(0x40, 0, true, false, 0)
            .interrupt(11, 1)
            .command(0x0002),
    );
    c.add(
        Bdf::b(0, 0x1c, 0),
        FakeFunction::bridge(0x1b36, 0x000c, 0, 1, 3)
            .bar32(0, 4096, false, 0xFE80_0000)
            // I/O 0x1000-0x1fff, memory 0xfe800000-0xfe9fffff, prefetchable off.
            .set16(0x1c, 0x1010)
            .set32(0x20, 0xFE90_FE80)
            .set32(0x24, 0x0001_FFF1)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 4),
    );
    c.add(
        Bdf::b(0, 0x1f, 0),
        FakeFunction::endpoint(0x8086, 0x2918, 0x06_0100, 2).multifunction(),
    );
    c.add(
        Bdf::b(0, 0x1f, 2),
        FakeFunction::endpoint(0x8086, 0x2922, 0x01_0601, 2)
            .bar_io(4, 32, 0xC040, true)
            .bar32(5, 4096, false, 0xFEBD_1000)
            .multifunction(),
    );
    c.add(
        Bdf::b(0, 0x1f, 3),
        FakeFunction::endpoint(0x8086, 0x2930, 0x0c_0500, 2)
            .bar_io(4, 64, 0x0700, true)
            .multifunction(),
    );
    // Switch below the root port.
    c.add(
        Bdf::b(1, 0, 0),
        FakeFunction::bridge(0x8086, 0x1234, 1, 2, 3)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 5),
    );
    // Never found: below a root port only device 0 is scanned.
    c.add(
        Bdf::b(1, 5, 0),
        FakeFunction::endpoint(0xdead, 0xbeef, 0, 0),
    );
    c.add(
        Bdf::b(2, 0, 0),
        FakeFunction::bridge(0x8086, 0x1235, 2, 3, 3)
            .cap_ptr(0x40)
            .pcie(0x40, 0, 6),
    );
    c.add(
        Bdf::b(3, 0, 0),
        FakeFunction::endpoint(0x8086, 0x9d27, 0x07_8000, 0x21)
            .bar64(0, 4096, false, 0x1_2340_0000)
            .subsystem(0x17aa, 0x2245)
            .interrupt(0xFF, 1),
    );
    c
}
