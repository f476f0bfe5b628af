use crate::config::{ecam_offset, legacy_address, ECAM_CONFIG_SIZE};
use crate::fake::*;
use crate::regs::{COMMAND, STATUS};
use crate::*;

#[test]
fn ecam_offset_encoding_and_errors() {
    let b = Bdf::b(3, 0x1f, 7);
    assert_eq!(
        ecam_offset(b, 0x104, 0, 0..=255),
        Ok(3 << 20 | 0x1f << 15 | 7 << 12 | 0x104)
    );
    // A window starting at bus 2 puts bus 3 at 1 MiB.
    assert_eq!(
        ecam_offset(b, 0, 0, 2..=4),
        Ok(1 << 20 | 0x1f << 15 | 7 << 12)
    );
    assert_eq!(
        ecam_offset(b, ECAM_CONFIG_SIZE, 0, 0..=255),
        Err(ConfigError::BadOffset {
            offset: 4096,
            limit: 4096
        })
    );
    assert_eq!(
        ecam_offset(Bdf::b(9, 0, 0), 0, 0, 0..=7),
        Err(ConfigError::BusOutOfRange {
            bus: 9,
            start: 0,
            end: 7
        })
    );
    assert_eq!(
        ecam_offset(Bdf::new(1, 0, 0, 0).unwrap(), 0, 0, 0..=7),
        Err(ConfigError::WrongSegment {
            segment: 1,
            served: 0
        })
    );
    let bad = Bdf {
        segment: 0,
        bus: 0,
        device: 32,
        function: 0,
    };
    assert_eq!(ecam_offset(bad, 0, 0, 0..=7), Err(ConfigError::BadAddress));
    // The window must cover the bus range.
    let cfg = FakeConfig::new();
    assert!(matches!(
        Ecam::new(FakeEcamWindow::new(&cfg, 0, 0), 8 << 20, 0, 0..=8),
        Err(ConfigError::WindowTooSmall { needed, .. }) if needed == 9 << 20
    ));
}

#[test]
fn mcfg_window_maps_only_decoded_buses() {
    use crate::config::mcfg_window;
    assert_eq!(
        mcfg_window(0xB000_0000, 0..=255),
        Ok((0xB000_0000, 256 << 20))
    );
    // Base is bus 0's address even when the range starts higher.
    assert_eq!(
        mcfg_window(0xE000_0000, 0x10..=0x1F),
        Ok((0xE100_0000, 16 << 20))
    );
    assert_eq!(
        mcfg_window(0, core::ops::RangeInclusive::new(3, 2)),
        Err(ConfigError::BadBusRange { start: 3, end: 2 })
    );
    assert!(mcfg_window(u64::MAX - 4096, 0..=0).is_err());
    let cfg = FakeConfig::new();
    assert!(matches!(
        Ecam::new(
            FakeEcamWindow::new(&cfg, 0, 0),
            1 << 30,
            0,
            core::ops::RangeInclusive::new(5, 4)
        ),
        Err(ConfigError::BadBusRange { start: 5, end: 4 })
    ));
}

#[test]
fn legacy_address_encoding_and_errors() {
    assert_eq!(legacy_address(Bdf::b(0, 3, 0), 0x3c), Ok(0x8000_183c));
    assert_eq!(legacy_address(Bdf::b(0x12, 0x1f, 5), 0x0), Ok(0x8012_fd00));
    // Low two bits dropped: CONFIG_ADDRESS selects dwords.
    assert_eq!(legacy_address(Bdf::b(0, 0, 0), 0x0e), Ok(0x8000_000c));
    assert_eq!(
        legacy_address(Bdf::b(0, 0, 0), 0x100),
        Err(ConfigError::BadOffset {
            offset: 0x100,
            limit: 256
        })
    );
    assert_eq!(
        legacy_address(Bdf::new(1, 0, 0, 0).unwrap(), 0),
        Err(ConfigError::WrongSegment {
            segment: 1,
            served: 0
        })
    );
    for e in [
        ConfigError::BadOffset {
            offset: 0x100,
            limit: 256,
        },
        ConfigError::BusOutOfRange {
            bus: 1,
            start: 2,
            end: 3,
        },
        ConfigError::WrongSegment {
            segment: 1,
            served: 0,
        },
        ConfigError::BadAddress,
        ConfigError::BadBusRange { start: 2, end: 1 },
        ConfigError::WindowTooSmall {
            needed: 1,
            given: 0,
        },
    ] {
        assert!(!alloc::format!("{e}").is_empty());
    }
}

#[test]
fn legacy_mechanism_end_to_end() {
    let cfg = super::q35();
    let ports = FakePorts::new(&cfg);
    let legacy = Legacy::new(&ports);
    let edu = Bdf::b(0, 3, 0);
    assert_eq!(legacy.read32(edu, 0), 0x11e8_1234);
    assert_eq!(legacy.read16(edu, 2), 0x11e8);
    assert_eq!(legacy.read8(edu, 0x08), 0x10);
    assert_eq!(legacy.read8(edu, 0x3d), 1);
    // The select write carries the enable bit and the dword address.
    assert_eq!(ports.writes.borrow()[0], (0, 0x8000_1800));
    // Absent function, unreachable offset and segment all read as all-ones.
    assert_eq!(legacy.read32(Bdf::b(0, 9, 0), 0), !0);
    assert_eq!(legacy.read32(edu, 0x100), !0);
    assert_eq!(
        legacy.try_read32(edu, 0x100),
        Err(ConfigError::BadOffset {
            offset: 0x100,
            limit: 256
        })
    );
    assert!(!legacy.extended());
    assert!(!legacy.reaches(1, 0));
    // A 16-bit write goes to the right byte lanes and leaves neighbours alone.
    legacy.write16(edu, COMMAND, 0x0006);
    assert_eq!(cfg.peek16(edu, COMMAND), Some(0x0006));
    legacy.write8(edu, 0x3c, 5);
    assert_eq!(cfg.peek32(edu, 0x3c).map(|d| d & 0xFFFF), Some(0x0105));
    // Enumeration through the ports finds the same machine minus extended caps.
    let e = enumerate(&legacy, &ScanOptions::default());
    assert_eq!(e.devices.len(), 11);
}

#[test]
fn ecam_mechanism_end_to_end() {
    let cfg = super::q35();
    let window = FakeEcamWindow::new(&cfg, 0, 0);
    let ecam = Ecam::new(&window, 256 << 20, 0, 0..=255).unwrap();
    let lpss = Bdf::b(3, 0, 0);
    assert_eq!(ecam.read32(lpss, 0), 0x9d27_8086);
    assert_eq!(window.offsets.borrow().last(), Some(&(3 << 20)));
    assert_eq!(ecam.read16(lpss, 2), 0x9d27);
    assert!(ecam.extended());
    assert_eq!(ecam.read32(lpss, 0x1000), !0);
    assert_eq!(
        ecam.try_read32(lpss, 0x1000),
        Err(ConfigError::BadOffset {
            offset: 0x1000,
            limit: 0x1000
        })
    );
    let small = Ecam::new(&window, 2 << 20, 0, 0..=1).unwrap();
    assert!(!small.reaches(0, 3));
    assert_eq!(small.read32(lpss, 0), !0);
    // Scanning a window that ends at bus 1 reports the unreachable bus.
    let e = enumerate(&small, &ScanOptions::default());
    assert!(e
        .warnings
        .iter()
        .any(|w| w.kind == WarningKind::BusUnreachable { bus: 2 }));
    assert!(e.get(Bdf::b(1, 0, 0)).is_some());
    assert!(e.get(lpss).is_none());
}

#[test]
fn narrow_rmw_default_does_not_clear_status_errors() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 4, 0);
    // Status: received master abort (bit 13) and capability list (bit 4).
    cfg.add(
        b,
        FakeFunction::endpoint(0x1234, 0x5678, 0, 0).status(0x2010),
    );
    let dw = DwordOnly(&cfg);
    assert_eq!(dw.read16(b, STATUS), 0x2010);
    assert_eq!(dw.read8(b, 2), 0x78);
    dw.write16(b, COMMAND, 0x0106);
    assert_eq!(cfg.peek16(b, COMMAND), Some(0x0106));
    assert_eq!(
        cfg.peek16(b, STATUS),
        Some(0x2010),
        "RW1C status bit was cleared"
    );
    enable_bus_master(&dw, b);
    assert_eq!(cfg.peek16(b, STATUS), Some(0x2010));
    // Writing Status itself with a 1 does clear the bit.
    dw.write16(b, STATUS, 0x2000);
    assert_eq!(cfg.peek16(b, STATUS), Some(0x0010));
    // 8-bit write elsewhere merges.
    dw.write8(b, 0x3c, 0x0b);
    assert_eq!(dw.read8(b, 0x3c), 0x0b);
}

#[test]
fn command_helpers() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 4, 0);
    cfg.add(b, FakeFunction::endpoint(0x1234, 0x5678, 0, 0));
    assert!(!enable_bus_master(&cfg, b));
    assert!(enable_bus_master(&cfg, b));
    assert_eq!(read_command(&cfg, b), Command::BUS_MASTER);
    set_decoding(&cfg, b, true, true);
    assert_eq!(
        read_command(&cfg, b),
        Command::BUS_MASTER | Command::MEMORY_SPACE | Command::IO_SPACE
    );
    set_decoding(&cfg, b, true, false);
    assert!(disable_bus_master(&cfg, b));
    assert_eq!(read_command(&cfg, b), Command::MEMORY_SPACE);
    command::set_intx_disabled(&cfg, b, true);
    assert_eq!(
        read_command(&cfg, b),
        Command::MEMORY_SPACE | Command::INTX_DISABLE
    );
    command::enable_io(&cfg, b);
    command::enable_memory(&cfg, b);
    assert!(read_command(&cfg, b).contains(Command::IO_SPACE));
}

/// Every MCFG allocation in the real-firmware corpus gives a window our ECAM accepts,
/// and the last register of the last bus lands on the window's last dword.
#[test]
fn mcfg_corpus_windows() {
    use crate::config::mcfg_window;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");
    let Ok(machines) = std::fs::read_dir(dir) else {
        std::println!("corpus not found at {dir}; skipped");
        return;
    };
    let mut entries = 0;
    for m in machines.flatten() {
        let Ok(files) = std::fs::read_dir(m.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.starts_with("mcfg") || !name.ends_with(".dat") {
                continue;
            }
            let bytes = std::fs::read(f.path()).unwrap();
            // ACPI header (36) + 8 reserved, then 16-byte allocations (PCI Firmware
            // spec 3.2 Table 4-3): base u64, segment u16, start bus, end bus.
            for e in bytes.get(44..).unwrap_or(&[]).as_chunks::<16>().0 {
                let base = u64::from_le_bytes(e[0..8].try_into().unwrap());
                let seg = u16::from_le_bytes([e[8], e[9]]);
                let (start, end) = (e[10], e[11]);
                let (phys, len) = mcfg_window(base, start..=end).unwrap();
                assert_eq!(phys, base + (u64::from(start) << 20));
                let last = Bdf::new(seg, end, 31, 7).unwrap();
                let off = crate::config::ecam_offset(last, 0xFFC, seg, start..=end).unwrap();
                assert_eq!(off as u64, len - 4, "{name}");
                entries += 1;
            }
        }
    }
    std::println!("MCFG corpus: {entries} allocations");
    assert!(entries > 100);
}
