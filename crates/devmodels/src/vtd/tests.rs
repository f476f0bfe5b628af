//! The model against the facts verified on QEMU 7.2 (hw-facts §4), with tables
//! written by hand, independently of the driver crate.

use super::*;
use hal::Arena;

const ROOT: u64 = 0x1000;
const CTX: u64 = 0x2000;
const L3: u64 = 0x3000;
const L2: u64 = 0x4000;
const L1: u64 = 0x5000;
const QUEUE: u64 = 0x6000;
const STATUS: u64 = 0x7000;

fn arena() -> Arena {
    Arena::new(PhysAddr::new(0), 0x8_0000)
}

fn w(a: &Arena, pa: u64, v: u64) {
    a.write_u64(PhysAddr::new(pa), v);
}

/// hw-facts 4.15 step 1: edu at 00:01.0, DID 1, 3 levels, IOVA 0x4000_5000 → 0x1_0000.
fn tables(a: &Arena, fpd: bool) {
    w(a, ROOT, CTX | 1);
    w(a, CTX + 8 * 16, L3 | 1 | if fpd { 2 } else { 0 });
    w(a, CTX + 8 * 16 + 8, 1 | 1 << 8);
    w(a, L3 + 8, L2 | 3); // IOVA bits 38:30 = 1
    w(a, L2, L1 | 3);
    w(a, L1 + 5 * 8, 0x1_0000 | 3);
    w(a, L1 + 6 * 8, 0x1_1000 | 1); // read-only
}

fn enable(m: &VtdModel<&Arena>) {
    m.write64(RTADDR, ROOT);
    m.write32(GCMD, SRTP);
    assert_eq!(m.read32(GSTS), 0x4000_0000);
    m.write32(GCMD, TE);
    assert_eq!(m.read32(GSTS), 0xc000_0000);
}

#[test]
fn registers_after_reset_and_handshakes() {
    let a = arena();
    let m = VtdModel::qemu_default(&a);
    assert_eq!(m.read32(VER), 0x10);
    assert_eq!(m.read64(CAP), QEMU_CAP);
    assert_eq!(m.read64(ECAP), QEMU_ECAP);
    assert_eq!(m.read32(FECTL), 0x8000_0000);
    assert_eq!(m.read32(IECTL), 0x8000_0000);
    assert_eq!(m.read32(GCMD), 0, "GCMD reads 0");
    m.write64(RTADDR, ROOT);
    m.write32(GCMD, SRTP);
    assert_eq!(m.read32(GSTS), 0x4000_0000);
    m.write32(GCMD, TE);
    assert_eq!(m.read32(GSTS), 0xc000_0000);
    m.write64(IQA, QUEUE);
    m.write64(IQT, 0);
    m.write32(GCMD, TE | QIE);
    assert_eq!(m.read32(GSTS), 0xc400_0000);
    // WBF is ignored by QEMU: no status change.
    m.write32(GCMD, TE | QIE | WBF);
    assert_eq!(m.read32(GSTS), 0xc400_0000);
}

#[test]
fn register_invalidation_completes_synchronously_unless_qi_is_on() {
    let a = arena();
    let m = VtdModel::qemu_default(&a);
    m.write64(CCMD, 0xa000_0000_0000_0000);
    assert_eq!(m.read64(CCMD), 0x2800_0000_0000_0000);
    m.write64(0xf8, 0x9000_0000_0000_0000);
    assert_eq!(m.read64(0xf8), 0x1200_0000_0000_0000);
    // Low dword alone only latches.
    let before = m.invalidation_counts();
    m.write32(CCMD, 0x1234);
    assert_eq!(m.invalidation_counts(), before);
    m.write32(CCMD + 4, 0xa000_0000);
    assert_eq!(m.invalidation_counts().0, before.0 + 1);
    // QI on: ignored, ICC stays set forever.
    m.write64(IQA, QUEUE);
    m.write32(GCMD, QIE);
    m.write64(CCMD, 0xa000_0000_0000_0000);
    assert_eq!(m.read64(CCMD), 0xa800_0000_0000_0000);
    m.write64(0xf8, 0x9000_0000_0000_0000);
    assert_eq!(m.read64(0xf8) >> 63, 1);
}

#[test]
fn queued_invalidation_runs_on_tail_write_and_stops_at_errors() {
    let a = arena();
    let m = VtdModel::qemu_default(&a);
    m.write64(IQA, QUEUE);
    m.write64(IQT, 0);
    m.write32(GCMD, QIE);
    w(&a, QUEUE, 0x11); // context global
    w(&a, QUEUE + 16, 0x12); // iotlb global
    w(&a, QUEUE + 32, 5 | 1 << 5 | 0xabcd << 32);
    w(&a, QUEUE + 40, STATUS);
    m.write64(IQT, 0x30);
    assert_eq!(m.read64(IQH), 0x30);
    assert_eq!(a.read_u32(PhysAddr::new(STATUS)), 0xabcd);
    assert_eq!(m.invalidation_counts(), (1, 1));
    // Unknown type 0xF: IQE, head stays at the bad descriptor.
    w(&a, QUEUE + 48, 0xf);
    m.write64(IQT, 0x40);
    assert_eq!(m.read32(FSTS), 0x10);
    assert_eq!(m.read64(IQH), 0x30);
    // Clearing IQE without fixing it: the unit fetches it again and stops again.
    m.write32(FSTS, 0x10);
    assert_eq!((m.read32(FSTS), m.read64(IQH)), (0x10, 0x30));
    // Fix it, clear IQE (RW1C): processing resumes at once.
    w(&a, QUEUE + 48, 0x11);
    m.write32(FSTS, 0x10);
    assert_eq!(m.read32(FSTS), 0);
    assert_eq!(m.read64(IQH), 0x40);
    m.write64(IQT, 0x40);
    assert_eq!(m.read64(IQH), 0x40);
    // Wait with IF: ICS.IWC, RW1C.
    w(&a, QUEUE + 64, 5 | 1 << 4);
    w(&a, QUEUE + 72, 0);
    m.write64(IQT, 0x50);
    assert_eq!(m.read32(ICS), 1);
    m.write32(ICS, 1);
    assert_eq!(m.read32(ICS), 0);
}

#[test]
#[should_panic(expected = "SW and IF")]
fn wait_with_sw_and_if_aborts_like_qemu() {
    let a = arena();
    let m = VtdModel::qemu_default(&a);
    m.write64(IQA, QUEUE);
    m.write32(GCMD, QIE);
    w(&a, QUEUE, 5 | 3 << 4);
    w(&a, QUEUE + 8, STATUS);
    m.write64(IQT, 0x10);
}

#[test]
#[should_panic(expected = "aborts QEMU")]
fn sixty_four_bit_fectl_write_aborts_like_qemu() {
    let a = arena();
    VtdModel::qemu_default(&a).write64(FECTL, 0);
}

#[test]
fn translation_and_fault_records_match_qemu() {
    let a = arena();
    tables(&a, false);
    let m = VtdModel::qemu_default(&a);
    // Translation off: untranslated.
    assert_eq!(
        m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
        0x4000_5000
    );
    enable(&m);
    assert_eq!(
        m.dma(0, 8, 0x4000_5123, 4, true).unwrap().as_u64(),
        0x1_0123
    );
    assert_eq!(
        m.dma(0, 8, 0x4000_6000, 4, false).unwrap().as_u64(),
        0x1_1000
    );
    // Read-only page written: reason 5; record as QEMU writes it.
    let f = m.dma(0, 8, 0x4000_6008, 4, true).unwrap_err();
    assert_eq!((f.reason, f.recorded), (5, true));
    assert_eq!(m.frcd(0), [0x4000_6000, 0x80ff_ff05_0000_0008]);
    assert_eq!(m.read32(FSTS), 0x2, "PPF, FRI 0");
    assert_eq!(m.read32(FECTL), 0xc000_0000, "masked: IP set, no MSI");
    assert!(m.msis().is_empty());
    // Unmasking with IP pending sends the MSI.
    m.write32(FEADDR, 0xfee0_0000);
    m.write32(FEDATA, 0x30);
    m.write32(FECTL, 0);
    assert_eq!(m.msis(), [(0xfee0_0000, 0x30)]);
    // Same SID while F set: compressed. Another SID: overflow (one register).
    assert!(!m.dma(0, 8, 0x4000_7000, 4, true).unwrap_err().recorded);
    let f = m.dma(0, 0x10, 0, 4, true).unwrap_err();
    assert_eq!((f.reason, f.recorded), (2, false));
    assert_eq!(m.read32(FSTS), 0x3);
    // Clear F (RW1C, 32-bit write to the top dword), then PFO.
    m.write32(0x22c, 0x8000_0000);
    assert_eq!(m.read32(FSTS), 0x1);
    m.write32(FSTS, 0x1);
    assert_eq!(m.read32(FSTS), 0);
    // Beyond AGAW: reason 4.
    let f = m.dma(0, 8, 1 << 40, 4, false).unwrap_err();
    assert_eq!((f.reason, f.write), (4, false));
    assert_eq!(m.frcd(0)[1] >> 62, 0b11, "F and T (read)");
    m.write64(0x228, F);
    // Root not present for bus 1.
    assert_eq!(m.dma(1, 0, 0, 4, true).unwrap_err().reason, 1);
    assert_eq!(m.frcd(0)[1], 0x8000_0001_0000_0100);
}

#[test]
fn fpd_suppresses_qualified_faults_only() {
    let a = arena();
    tables(&a, true);
    let m = VtdModel::qemu_default(&a);
    enable(&m);
    let f = m.dma(0, 8, 0x9000, 4, true).unwrap_err();
    assert_eq!((f.reason, f.recorded), (5, false));
    assert_eq!(m.read32(FSTS), 0);
    // Root entry reserved bits (0xA) are never suppressed.
    w(&a, ROOT + 8, 1);
    m.write64(CCMD, 0xa000_0000_0000_0000);
    let f = m.dma(0, 8, 0x9000, 4, true).unwrap_err();
    assert_eq!((f.reason, f.recorded), (0xa, true));
}

#[test]
fn context_entry_checks() {
    let a = arena();
    tables(&a, false);
    let m = VtdModel::qemu_default(&a);
    enable(&m);
    // Pass-through with AW = 2 (4-level, not in SAGAW 3-level-only): reason 3.
    w(&a, CTX + 16 * 16, 1 | 2 << 2);
    w(&a, CTX + 16 * 16 + 8, 2 | 2 << 8);
    assert_eq!(m.dma(0, 16, 0x1000, 4, true).unwrap_err().reason, 3);
    m.write32(0x22c, 0x8000_0000);
    // With AW = 1 it passes through.
    w(&a, CTX + 16 * 16 + 8, 1 | 2 << 8);
    assert_eq!(m.dma(0, 16, 0x1234, 4, true).unwrap().as_u64(), 0x1234);
    // TT = 11: reason 3; context reserved bits: 0xB.
    w(&a, CTX + 24 * 16, 1 | 3 << 2);
    w(&a, CTX + 24 * 16 + 8, 1);
    assert_eq!(m.dma(0, 24, 0, 4, true).unwrap_err().reason, 3);
    w(&a, CTX + 32 * 16, L3 | 1 | 1 << 4);
    w(&a, CTX + 32 * 16 + 8, 1);
    assert_eq!(m.dma(0, 32, 0, 4, true).unwrap_err().reason, 0xb);
    // Unreadable paging entry below the top level: 0x7.
    m.set_ram(0, 0x6000);
    w(&a, L2 + 8, 0x10_0000 | 3);
    assert_eq!(m.dma(0, 8, 0x4020_0000, 4, true).unwrap_err().reason, 7);
    // Leaf in the interrupt range: 0xE. PS at level 2 with a 2 MiB page there.
    w(&a, L2 + 16, 0xfee0_0000 | 1 << 7 | 3);
    m.set_ram(0, 1 << 40);
    assert_eq!(m.dma(0, 8, 0x4040_0000, 4, true).unwrap_err().reason, 0xe);
}

#[test]
fn caches_hold_until_invalidated_by_the_right_request() {
    let a = arena();
    tables(&a, false);
    let m = VtdModel::qemu_default(&a);
    enable(&m);
    assert_eq!(
        m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
        0x1_0000
    );
    w(&a, L1 + 5 * 8, 0x2_0000 | 3);
    assert_eq!(
        m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
        0x1_0000
    );
    // Domain 2: no effect on DID 1.
    m.write64(0xf8, 0xa000_0002_0000_0000);
    assert_eq!(
        m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
        0x1_0000
    );
    // Page-selective on a neighbouring page: no effect; on the page: gone.
    m.write64(0xf0, 0x4000_6000);
    m.write64(0xf8, 0xb000_0001_0000_0000);
    assert_eq!(
        m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
        0x1_0000
    );
    // AM = 1 covers pages 4 and 5.
    m.write64(0xf0, 0x4000_4000 | 1);
    m.write64(0xf8, 0xb000_0001_0000_0000);
    assert_eq!(m.read64(0xf8) >> 57 & 3, 3);
    assert_eq!(
        m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
        0x2_0000
    );
    // AM above MAMV is rejected (IAIG = 0).
    m.write64(0xf0, 19);
    m.write64(0xf8, 0xb000_0001_0000_0000);
    assert_eq!(m.read64(0xf8) >> 57 & 3, 0);
    // SRTP clears every cache.
    w(&a, L1 + 5 * 8, 0x3_0000 | 3);
    m.write32(GCMD, TE | SRTP);
    assert_eq!(
        m.dma(0, 8, 0x4000_5000, 4, true).unwrap().as_u64(),
        0x3_0000
    );
}

#[test]
fn msi_remapping_by_hand_written_irtes() {
    const IRT: u64 = 0x9000;
    let a = arena();
    let m = VtdModel::qemu_default(&a);
    m.write64(IQA, QUEUE);
    m.write32(GCMD, QIE);
    m.write64(IRTA, IRT | 7);
    m.write32(GCMD, QIE | SIRTP);
    m.write32(GCMD, QIE | IRE);
    assert_eq!(m.gsts() & (IRE | SIRTP | CFI), IRE | SIRTP);
    // Entry 4: vector 0x33 to APIC 5, buses 1..=2 only (SVT = 10).
    w(&a, IRT + 4 * 16, 1 | 0x33 << 16 | 5 << 40);
    w(&a, IRT + 4 * 16 + 8, 2 << 18 | 0x0102);
    let addr = 0xfee0_0000 | 4 << 5 | 1 << 4;
    let i = m.msi_write(2, 0x10, addr, 0).unwrap();
    assert_eq!((i.vector, i.dest, i.index), (0x33, 5, Some(4)));
    let f = m.msi_write(3, 0, addr, 0).unwrap_err();
    assert_eq!((f.reason, f.recorded), (0x26, true));
    assert_eq!(m.frcd(0), [4 << 48, 0x8000_0026_0000_0300]);
    m.write32(0x22c, 0x8000_0000);
    // Entries 4..8 cached, then changed; IM = 2 from index 6 covers 4..=7.
    w(&a, IRT + 5 * 16, 1 | 0x44 << 16);
    m.msi_write(1, 0, addr + (1 << 5), 0).unwrap();
    w(&a, IRT + 4 * 16, 1 | 0x34 << 16 | 5 << 40);
    w(&a, IRT + 5 * 16, 1 | 0x45 << 16);
    w(&a, QUEUE, 4 | 1 << 4 | 2 << 27 | 6 << 32);
    w(&a, QUEUE + 8, 0);
    assert_eq!(m.msi_write(1, 0, addr, 0).unwrap().vector, 0x33);
    m.write64(IQT, 0x10);
    assert_eq!(m.iec_invalidations(), 1);
    assert_eq!(m.msi_write(1, 0, addr, 0).unwrap().vector, 0x34);
    assert_eq!(m.msi_write(1, 0, addr + (1 << 5), 0).unwrap().vector, 0x45);
    // xAPIC mode: destination bits outside 47:40 are reserved (0x24).
    w(&a, IRT + 6 * 16, 1 | 1 << 32);
    assert_eq!(
        m.msi_write(1, 0, addr + (2 << 5), 0).unwrap_err().reason,
        0x24
    );
    // CFI set: compatibility format passes again (spec; QEMU 7.2 ignores CFI).
    m.write32(GCMD, QIE | IRE | CFI);
    assert_eq!(m.msi_write(0, 8, 0xfee0_2000, 0x31).unwrap().dest, 2);
}

#[test]
fn bridges_give_requester_ids_as_qemu_does() {
    let a = Arena::new(PhysAddr::new(0), 0x10_0000);
    let m = VtdModel::qemu_default(&a);
    // No fabric: the device's own ID.
    assert_eq!(m.requester_id(3, 0x18), 0x0318);
    // Root port 00:04.0 -> switch up 01:00.0 -> down 02:00.0 -> bus 3.
    let port = |bus, devfn, secondary| Bridge {
        bus,
        devfn,
        secondary,
        kind: BridgeKind::PciePort,
    };
    m.add_bridge(port(0, 0x20, 1));
    m.add_bridge(port(1, 0, 2));
    m.add_bridge(port(2, 0, 3));
    assert_eq!(m.requester_id(3, 0), 0x0300, "PCIe ports change nothing");
    // Root port 00:05.0 -> PCIe-to-PCI 04:00.0 (bus 5) -> PCI bridge 05:07.0 (bus 6).
    m.add_bridge(port(0, 0x28, 4));
    m.add_bridge(Bridge {
        bus: 4,
        devfn: 0,
        secondary: 5,
        kind: BridgeKind::PcieToPci,
    });
    m.add_bridge(Bridge {
        bus: 5,
        devfn: 0x38,
        secondary: 6,
        kind: BridgeKind::Conventional,
    });
    assert_eq!(m.requester_id(5, 0x18), 0x0500, "(secondary bus, 00.0)");
    assert_eq!(m.requester_id(6, 0x08), 0x0500, "the topmost alias wins");
    assert_eq!(m.requester_id(4, 0), 0x0400, "the bridge itself is on PCIe");
    // A bridge loop in the description cannot hang the walk.
    m.add_bridge(port(8, 0, 9));
    m.add_bridge(port(9, 0, 8));
    assert_eq!(m.requester_id(9, 0x10), 0x0910);
}
