use alloc::vec::Vec;

use crate::fake::*;
use crate::*;

fn bdfs(e: &Enumeration) -> Vec<alloc::string::String> {
    e.devices
        .iter()
        .map(|d| alloc::format!("{}", d.bdf.short()))
        .collect()
}

#[test]
fn q35_through_two_levels_of_bridges() {
    let cfg = super::q35();
    let e = enumerate(&cfg, &ScanOptions::default());
    assert_eq!(
        bdfs(&e),
        [
            "00:00.0", "00:01.0", "00:02.0", "00:03.0", "00:1c.0", "00:1f.0", "00:1f.2", "00:1f.3",
            "01:00.0", "02:00.0", "03:00.0"
        ]
    );
    assert_eq!(e.buses, [0, 1, 2, 3]);
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    let get = |b| e.get(b).unwrap();
    // Parent links follow the bridges.
    assert_eq!(get(Bdf::b(0, 3, 0)).parent, None);
    assert_eq!(get(Bdf::b(1, 0, 0)).parent, Some(Bdf::b(0, 0x1c, 0)));
    assert_eq!(get(Bdf::b(2, 0, 0)).parent, Some(Bdf::b(1, 0, 0)));
    assert_eq!(get(Bdf::b(3, 0, 0)).parent, Some(Bdf::b(2, 0, 0)));
    // Identity fields.
    let edu = get(Bdf::b(0, 3, 0));
    assert_eq!(
        (edu.vendor_id, edu.device_id, edu.revision),
        (0x1234, 0x11e8, 0x10)
    );
    assert_eq!(
        edu.class,
        ClassCode {
            base: 0,
            sub: 0xff,
            prog_if: 0
        }
    );
    assert_eq!((edu.interrupt_line, edu.interrupt_pin), (11, 1));
    assert_eq!(edu.header_type(), pci_types::HeaderType::Endpoint);
    let uart = get(Bdf::b(3, 0, 0));
    assert_eq!(uart.subsystem, Some((0x17aa, 0x2245)));
    assert_eq!(uart.class.as_u32(), 0x07_8000);
    let rp = get(Bdf::b(0, 0x1c, 0));
    assert!(rp.is_bridge());
    assert_eq!(rp.subsystem, None);
    assert_eq!(
        rp.bridge,
        Some(BridgeBuses {
            primary: 0,
            secondary: 1,
            subordinate: 3
        })
    );
    assert_eq!(rp.header_type(), pci_types::HeaderType::PciPciBridge);
    // Multi-function: function 0 has bit 7, 1f.1 absent, 1f.2/1f.3 present.
    let lpc = get(Bdf::b(0, 0x1f, 0));
    assert!(lpc.multifunction);
    assert!(e.get(Bdf::b(0, 0x1f, 1)).is_none());
    assert_eq!(
        get(Bdf::b(0, 0x1f, 2)).class.device_type(),
        pci_types::device_type::DeviceType::SataController
    );
    // Only device 0 below a root port.
    assert!(e.get(Bdf::b(1, 5, 0)).is_none());
    // Default DMA parameters.
    assert_eq!(edu.dma, DmaParams::default());
    assert_eq!(edu.dma.dma_mask, 0xFFFF_FFFF);
    assert_eq!(edu.dma.max_segment_size, 65536);
}

#[test]
fn scan_all_pcie_devices_when_asked() {
    let cfg = super::q35();
    let opts = ScanOptions {
        pcie_only_one_child: false,
        ..ScanOptions::default()
    };
    let e = enumerate(&cfg, &opts);
    assert!(e.get(Bdf::b(1, 5, 0)).is_some());
}

#[test]
fn enumeration_never_enables_bus_master() {
    let cfg = super::q35();
    let before: Vec<_> = enumerate(&cfg, &ScanOptions::default())
        .devices
        .iter()
        .map(|d| (d.bdf, cfg.peek16(d.bdf, 4).unwrap()))
        .collect();
    for (bdf, cmd) in before {
        // Commands are as the fake set them: only 00:02.0 had BME from "firmware".
        assert_eq!(cmd & 4 != 0, bdf == Bdf::b(0, 2, 0), "{bdf}");
    }
}

#[test]
fn function_zero_absent_means_no_device() {
    let cfg = FakeConfig::new();
    cfg.add(Bdf::b(0, 2, 1), FakeFunction::endpoint(0x8086, 1, 0, 0));
    cfg.add(Bdf::b(0, 3, 0), FakeFunction::endpoint(0x8086, 2, 0, 0));
    // Not multi-function: function 1 is not looked at.
    cfg.add(Bdf::b(0, 3, 1), FakeFunction::endpoint(0x8086, 3, 0, 0));
    // Vendor 0 is not a device either.
    cfg.add(Bdf::b(0, 4, 0), FakeFunction::endpoint(0x0000, 0, 0, 0));
    let e = enumerate(&cfg, &ScanOptions::default());
    assert_eq!(bdfs(&e), ["00:03.0"]);
}

#[test]
fn aliased_functions_keep_function_zero() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 5, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x10ec, 0x8139, 0x02_0000, 0).multifunction(),
    );
    cfg.alias_functions(b);
    let e = enumerate(&cfg, &ScanOptions::default());
    assert_eq!(bdfs(&e), ["00:05.0"]);
    assert_eq!(
        e.warnings,
        [Warning {
            bdf: b,
            kind: WarningKind::FunctionsAliased
        }]
    );
}

#[test]
fn odd_bridges_are_not_followed() {
    let cfg = FakeConfig::new();
    // Secondary bus 0: would rescan the root bus.
    cfg.add(Bdf::b(0, 1, 0), FakeFunction::bridge(0x8086, 1, 0, 0, 0));
    // Proper bridge to bus 1..=2.
    cfg.add(Bdf::b(0, 2, 0), FakeFunction::bridge(0x8086, 2, 0, 1, 2));
    // Second bridge claiming bus 1 too.
    cfg.add(Bdf::b(0, 3, 0), FakeFunction::bridge(0x8086, 3, 0, 1, 1));
    // Inverted range: scanned as [5, 5].
    cfg.add(Bdf::b(0, 4, 0), FakeFunction::bridge(0x8086, 4, 0, 5, 4));
    cfg.add(Bdf::b(5, 0, 0), FakeFunction::endpoint(0x8086, 0x55, 0, 0));
    // On bus 1: a bridge back to bus 0 (loop), one to bus 1 (itself), one outside
    // its parent's window, one to bus 2.
    cfg.add(Bdf::b(1, 0, 0), FakeFunction::bridge(0x8086, 10, 1, 0, 9));
    cfg.add(Bdf::b(1, 1, 0), FakeFunction::bridge(0x8086, 11, 1, 1, 1));
    cfg.add(Bdf::b(1, 2, 0), FakeFunction::bridge(0x8086, 12, 1, 7, 7));
    cfg.add(Bdf::b(1, 3, 0), FakeFunction::bridge(0x8086, 13, 1, 2, 2));
    cfg.add(Bdf::b(7, 0, 0), FakeFunction::endpoint(0x8086, 0x77, 0, 0));
    // Bus 2 bridge back to bus 1 (already visited).
    cfg.add(Bdf::b(2, 0, 0), FakeFunction::bridge(0x8086, 20, 2, 1, 2));
    let e = enumerate(&cfg, &ScanOptions::default());
    assert_eq!(e.buses, [0, 1, 2, 5]);
    assert!(e.get(Bdf::b(5, 0, 0)).is_some());
    assert!(e.get(Bdf::b(7, 0, 0)).is_none());
    let kinds: Vec<_> = e.warnings.iter().map(|w| (w.bdf, w.kind)).collect();
    use WarningKind::*;
    assert_eq!(
        kinds,
        [
            (Bdf::b(0, 1, 0), BridgeSecondaryNotAbove { secondary: 0 }),
            (Bdf::b(0, 3, 0), BridgeBusAlreadyVisited { bus: 1 }),
            (
                Bdf::b(0, 4, 0),
                BridgeSubordinateBelowSecondary {
                    secondary: 5,
                    subordinate: 4
                }
            ),
            (Bdf::b(1, 0, 0), BridgeSecondaryNotAbove { secondary: 0 }),
            (Bdf::b(1, 1, 0), BridgeSecondaryNotAbove { secondary: 1 }),
            (
                Bdf::b(1, 2, 0),
                BridgeOutsideParentWindow {
                    secondary: 7,
                    start: 1,
                    end: 2
                }
            ),
            (Bdf::b(2, 0, 0), BridgeSecondaryNotAbove { secondary: 1 }),
        ]
    );
    for w in &e.warnings {
        assert!(alloc::format!("{w}").starts_with("pci 0000:"));
    }
}

#[test]
fn function_bound_stops_the_scan() {
    let cfg = super::q35();
    let opts = ScanOptions {
        max_functions: 3,
        ..ScanOptions::default()
    };
    let e = enumerate(&cfg, &opts);
    assert_eq!(e.devices.len(), 3);
    assert_eq!(
        e.warnings.last().map(|w| w.kind),
        Some(WarningKind::TooManyFunctions { limit: 3 })
    );
}

#[test]
fn unknown_header_layout_is_reported() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 0, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x8086, 1, 0, 0)
            .set8(0x0e, 0x05)
            .bar32(0, 4096, false, 0x1000),
    );
    let e = enumerate(&cfg, &ScanOptions::default());
    assert_eq!(e.devices.len(), 1);
    assert!(e.devices[0].bars.is_empty());
    assert_eq!(
        e.warnings[0].kind,
        WarningKind::UnknownHeaderType { layout: 5 }
    );
    assert!(cfg.bar_writes().is_empty());
}

#[test]
fn scan_without_bar_sizing_writes_nothing() {
    let cfg = super::q35();
    let opts = ScanOptions {
        size_bars: false,
        ..ScanOptions::default()
    };
    let e = enumerate(&cfg, &opts);
    assert_eq!(e.devices.len(), 11);
    assert!(cfg.bar_writes().is_empty());
    assert!(e.devices.iter().all(|d| d.bars.is_empty()));
}

#[test]
fn bridge_window_decoding() {
    // 32-bit I/O, 64-bit prefetchable window above 4 GiB.
    let w = BridgeWindows::decode(0x2121, 0x0001_0001, 0xFE90_FE80, 0x0031_0021, 0x8, 0x8);
    assert_eq!(
        w.io,
        Some(Window {
            base: 0x1_2000,
            limit: 0x1_2FFF
        })
    );
    assert_eq!(
        w.memory,
        Some(Window {
            base: 0xFE80_0000,
            limit: 0xFE9F_FFFF
        })
    );
    assert_eq!(
        w.prefetchable,
        Some(Window {
            base: 0x8_0020_0000,
            limit: 0x8_003F_FFFF
        })
    );
    assert_eq!(w.prefetchable.map(|w| w.size()), Some(2 << 20));
    // 16-bit I/O decode ignores the upper registers; 32-bit prefetchable too.
    let w = BridgeWindows::decode(0x2020, 0xFFFF_FFFF, 0, 0x0030_0020, 0xFF, 0xFF);
    assert_eq!(
        w.io,
        Some(Window {
            base: 0x2000,
            limit: 0x2FFF
        })
    );
    assert_eq!(
        w.prefetchable,
        Some(Window {
            base: 0x0020_0000,
            limit: 0x003F_FFFF
        })
    );
    // Base above limit: window off.
    let off = BridgeWindows::decode(0x00F0, 0, 0x0000_FFF0, 0x0001_FFF1, 0, 0);
    assert_eq!((off.io, off.memory, off.prefetchable), (None, None, None));
    // Whole 64-bit space: size saturates instead of overflowing.
    let all = BridgeWindows::decode(0, 0, 0, 0xFFF1_0001, 0, 0xFFFF_FFFF);
    assert_eq!(all.prefetchable.map(|w| w.size()), Some(u64::MAX));
}
