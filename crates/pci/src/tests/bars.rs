use crate::fake::*;
use crate::regs::Command;
use crate::*;

/// Every BAR write happened with memory and I/O decoding off, and the command
/// register and BAR values are back as they were.
fn check_sizing_protocol(cfg: &FakeConfig, bdf: Bdf, cmd_before: u16, bars_before: &[u32]) {
    let writes = cfg.bar_writes();
    assert!(!writes.is_empty());
    for w in &writes {
        assert_eq!(
            w.command & (Command::MEMORY_SPACE | Command::IO_SPACE).bits(),
            0,
            "BAR write {w:?} with decoding on"
        );
        // Bus mastering is not touched by sizing.
        assert_eq!(w.command & 4, cmd_before & 4);
    }
    assert_eq!(cfg.peek16(bdf, 4), Some(cmd_before));
    for (i, v) in bars_before.iter().enumerate() {
        assert_eq!(
            cfg.peek32(bdf, 0x10 + 4 * i as u16),
            Some(*v),
            "BAR {i} not restored"
        );
    }
}

fn bars_of(cfg: &FakeConfig, bdf: Bdf, n: u16) -> alloc::vec::Vec<u32> {
    (0..n)
        .map(|i| cfg.peek32(bdf, 0x10 + 4 * i).unwrap())
        .collect()
}

#[test]
fn every_bar_type_sized_with_decoding_off() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 4, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x8086, 0x1111, 0x02_0000, 0)
            .bar32(0, 1 << 20, false, 0xFEA0_0000)
            .bar64(1, 8 << 30, true, 0x8_0000_0000) // slots 1 and 2, 8 GiB
            .bar_io(3, 32, 0xC020, false)
            // slot 4 unimplemented
            .bar32(5, 16, true, 0xFEBF_F010)
            .command(0x0007),
    );
    let before = bars_of(&cfg, b, 6);
    let (bars, warnings) = size_bars(&cfg, b, 6);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        bars,
        [
            Bar {
                index: 0,
                kind: BarKind::Memory32,
                address: 0xFEA0_0000,
                size: 1 << 20,
                prefetchable: false
            },
            Bar {
                index: 1,
                kind: BarKind::Memory64,
                address: 0x8_0000_0000,
                size: 8 << 30,
                prefetchable: true
            },
            Bar {
                index: 3,
                kind: BarKind::Io,
                address: 0xC020,
                size: 32,
                prefetchable: false
            },
            Bar {
                index: 5,
                kind: BarKind::Memory32,
                address: 0xFEBF_F010,
                size: 16,
                prefetchable: true
            },
        ]
    );
    check_sizing_protocol(&cfg, b, 0x0007, &before);
    // All-ones was actually written to each implemented slot (both halves of the
    // 64-bit one), and the unimplemented one.
    let ones: alloc::vec::Vec<u16> = cfg
        .bar_writes()
        .iter()
        .filter(|w| w.value == !0)
        .map(|w| w.offset)
        .collect();
    assert_eq!(ones, [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24]);
    assert!(alloc::format!("{}", bars[1]).contains("64-bit, prefetchable"));
    assert!(alloc::format!("{}", bars[2]).contains("I/O ports at 0xc020"));
    assert_eq!(bars[0].end(), 0xFEB0_0000);
    assert_eq!(bars[1].offset(), 0x14);
}

#[test]
fn io_bar_with_16bit_decode_and_small_64bit_bar() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 5, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x8086, 0x2222, 0, 0)
            .bar_io(0, 8, 0x1F0, true)
            .bar64(2, 4096, false, 0x1_0000_0000)
            .command(0x0001),
    );
    let before = bars_of(&cfg, b, 6);
    let (bars, w) = size_bars(&cfg, b, 6);
    assert!(w.is_empty());
    assert_eq!(
        bars[0],
        Bar {
            index: 0,
            kind: BarKind::Io,
            address: 0x1F0,
            size: 8,
            prefetchable: false
        }
    );
    assert_eq!(
        bars[1],
        Bar {
            index: 2,
            kind: BarKind::Memory64,
            address: 0x1_0000_0000,
            size: 4096,
            prefetchable: false
        }
    );
    check_sizing_protocol(&cfg, b, 0x0001, &before);
}

#[test]
fn decoding_off_already_stays_off_and_bus_master_is_kept() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 6, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x8086, 0x3333, 0, 0)
            .bar32(0, 4096, false, 0x1000)
            .command(0x0004),
    );
    let before = bars_of(&cfg, b, 6);
    size_bars(&cfg, b, 6);
    check_sizing_protocol(&cfg, b, 0x0004, &before);
}

#[test]
fn bridge_bars() {
    let cfg = super::q35();
    let rp = Bdf::b(0, 0x1c, 0);
    let e = enumerate(&cfg, &ScanOptions::default());
    assert_eq!(
        e.get(rp).unwrap().bars,
        [Bar {
            index: 0,
            kind: BarKind::Memory32,
            address: 0xFE80_0000,
            size: 4096,
            prefetchable: false
        }]
    );
    // Only BAR0/1 written on a bridge (0x18 is the bus-number register).
    assert!(cfg
        .bar_writes()
        .iter()
        .filter(|w| w.bdf == rp)
        .all(|w| w.offset < 0x18));
    // And the bus numbers survived.
    assert_eq!(cfg.peek32(rp, 0x18).map(|v| v & 0xFF_FFFF), Some(0x03_0100));
}

#[test]
fn odd_bar_values_do_not_overflow_or_panic() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 7, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x8086, 0x4444, 0, 0)
            // Non-contiguous writable mask: size from the lowest bit (64 KiB).
            .set32(0x10, 0)
            .writable(0x10, 0x8001_0000)
            // Reserved memory type 0b11.
            .set32(0x14, 0x6)
            // I/O BAR with no writable bits.
            .set32(0x18, 0x1)
            // 32-bit memory with type bits only.
            .set32(0x1c, 0x8)
            // 64-bit BAR in the last slot.
            .set32(0x24, 0x4)
            .writable(0x24, 0xFFFF_F000),
    );
    let (bars, w) = size_bars(&cfg, b, 6);
    assert_eq!(
        bars,
        [Bar {
            index: 0,
            kind: BarKind::Memory32,
            address: 0,
            size: 0x1_0000,
            prefetchable: false
        }]
    );
    use WarningKind::*;
    let kinds: alloc::vec::Vec<_> = w.iter().map(|w| w.kind).collect();
    assert_eq!(
        kinds,
        [
            BarReservedType { index: 1 },
            BarNoSizeBits {
                index: 2,
                readback: 1
            },
            BarNoSizeBits {
                index: 3,
                readback: 8
            },
            Bar64InLastSlot { index: 5 },
        ]
    );
    // A 64-bit BAR with every address bit writable: size 16, no overflow.
    let c2 = FakeConfig::new();
    // Type bits read-only, every address bit writable in both halves.
    c2.add(
        b,
        FakeFunction::raw(&[0x4444_8086, 0, 0, 0, 0xC], &[!0, !0, !0, !0, 0xFFFF_FFF0]),
    );
    let (bars, _) = size_bars(&c2, b, 6);
    assert_eq!(bars[0].size, 16);
    assert_eq!(bars[0].kind, BarKind::Memory64);
    // The largest 64-bit BAR: only bit 63 writable.
    let c3 = FakeConfig::new();
    c3.add(
        b,
        FakeFunction::endpoint(0x8086, 1, 0, 0)
            .set32(0x10, 0x4)
            .set32(0x14, 0)
            .writable(0x14, 0x8000_0000),
    );
    let (bars, _) = size_bars(&c3, b, 6);
    assert_eq!(bars[0].size, 1 << 63);
    assert_eq!(bars[0].end(), 1 << 63);
}

#[test]
fn edu_bar0_reads_back_one_mib() {
    let cfg = super::q35();
    let (bars, _) = size_bars(&cfg, Bdf::b(0, 3, 0), 6);
    assert_eq!(bars.len(), 1);
    assert_eq!(bars[0].size, 1 << 20);
    // hw-facts §5.1: sizing reads 0xFFF00000.
    let w = cfg.bar_writes();
    assert_eq!(w[0].value, !0);
}
