//! Unit tests for the RSDP/RSDT/XSDT walker over synthetic memory images.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::ErrorKind;
use crate::testutil::{restamp, sdt};
use crate::walk::*;

fn rsdp(rev: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"BOCHS ");
    r.push(rev);
    r.extend_from_slice(&rsdt.to_le_bytes());
    if rev >= 2 {
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&xsdt.to_le_bytes());
        r.extend_from_slice(&[0; 4]);
    }
    let s = r[..20].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    r[8] = 0u8.wrapping_sub(s);
    if rev >= 2 {
        let s = r.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        r[32] = 0u8.wrapping_sub(s);
    }
    r
}

/// A 4 KiB image at 0x1000: RSDP at +0, RSDT at +0x100, XSDT at +0x200,
/// tables at +0x400, +0x500, +0x600.
struct Image {
    bytes: Vec<u8>,
}

const BASE: u64 = 0x1000;

impl Image {
    fn new() -> Self {
        Image {
            bytes: vec![0; 0x1000],
        }
    }
    fn put(&mut self, phys: u64, b: &[u8]) {
        let o = (phys - BASE) as usize;
        self.bytes[o..o + b.len()].copy_from_slice(b);
    }
    fn mem(&self) -> SliceMemory<'_> {
        SliceMemory {
            base: BASE,
            bytes: &self.bytes,
        }
    }
}

fn standard(rev: u8) -> Image {
    let mut img = Image::new();
    let tables = [0x1400u64, 0x1500, 0x1600];
    img.put(0x1400, &sdt(b"APIC", 5, &[0; 8]));
    img.put(
        0x1500,
        &sdt(b"DMAR", 1, &[38, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    );
    img.put(0x1600, &sdt(b"HPET", 1, &[0; 20]));
    let rsdt: Vec<u8> = tables
        .iter()
        .flat_map(|&a| (a as u32).to_le_bytes())
        .collect();
    img.put(0x1100, &sdt(b"RSDT", 1, &rsdt));
    // The XSDT lists only the first two, to tell the roots apart.
    let xsdt: Vec<u8> = tables[..2].iter().flat_map(|&a| a.to_le_bytes()).collect();
    img.put(0x1200, &sdt(b"XSDT", 1, &xsdt));
    img.put(BASE, &rsdp(rev, 0x1100, 0x1200));
    img
}

#[test]
fn rsdp_v0_uses_rsdt() {
    let img = standard(0);
    let t = walk(&img.mem(), BASE).unwrap();
    assert_eq!(t.root_kind, RootKind::Rsdt);
    assert_eq!(t.root_address, 0x1100);
    let sigs: Vec<_> = t.tables.iter().map(|i| &i.signature).collect();
    assert_eq!(sigs, [b"APIC", b"DMAR", b"HPET"]);
    assert_eq!(t.tables[1].address, 0x1500);
    assert_eq!(t.tables[1].length, 48);
    assert_eq!(t.tables[1].revision, 1);
    assert_eq!(&t.tables[1].oem_id, b"BOCHS ");
    assert!(t.warnings.is_empty());
    assert_eq!(t.find(b"HPET").count(), 1);
    assert_eq!(t.rsdp.xsdt_address, None);
}

#[test]
fn rsdp_v2_prefers_xsdt() {
    let img = standard(2);
    let t = walk(&img.mem(), BASE).unwrap();
    assert_eq!(t.root_kind, RootKind::Xsdt);
    assert_eq!(t.tables.len(), 2);
    assert_eq!(t.rsdp.xsdt_address, Some(0x1200));
    let bytes = read_table(&img.mem(), t.tables[1].address, 4096).unwrap();
    assert_eq!(crate::dmar::parse(&bytes).unwrap().address_width_bits(), 39);
}

#[test]
fn rsdp_v2_with_null_xsdt_uses_rsdt() {
    let mut img = standard(2);
    img.put(BASE, &rsdp(2, 0x1100, 0));
    assert_eq!(walk(&img.mem(), BASE).unwrap().root_kind, RootKind::Rsdt);
}

#[test]
fn broken_xsdt_falls_back_to_rsdt() {
    let mut img = standard(2);
    img.put(0x1209, &[0x55]); // XSDT checksum now wrong
    let t = walk(&img.mem(), BASE).unwrap();
    assert_eq!(t.root_kind, RootKind::Rsdt);
    assert_eq!(t.tables.len(), 3);
    match &t.warnings[0] {
        WalkWarning::XsdtFallback { address, error } => {
            assert_eq!(*address, 0x1200);
            assert!(
                matches!(**error, WalkError::Table(ref e) if matches!(e.kind, ErrorKind::BadChecksum { .. }))
            );
        }
        w => panic!("unexpected {w:?}"),
    }
    // Without an RSDT the XSDT error is the result.
    img.put(BASE, &rsdp(2, 0, 0x1200));
    assert!(matches!(walk(&img.mem(), BASE), Err(WalkError::Table(_))));
}

#[test]
fn rsdp_errors() {
    let mut img = standard(2);
    img.put(BASE + 3, b"x");
    assert!(matches!(
        walk(&img.mem(), BASE),
        Err(WalkError::Table(e)) if matches!(e.kind, ErrorKind::BadSignature { .. })
    ));
    let mut img = standard(2);
    img.put(BASE + 30, &[1]); // breaks only the extended checksum
    assert!(matches!(
        walk(&img.mem(), BASE),
        Err(WalkError::Table(e)) if e.offset == 32 && matches!(e.kind, ErrorKind::BadChecksum { .. })
    ));
    let mut img = standard(0);
    img.put(BASE + 12, &[1]); // breaks the v1 checksum
    assert!(matches!(
        walk(&img.mem(), BASE),
        Err(WalkError::Table(e)) if e.offset == 8 && matches!(e.kind, ErrorKind::BadChecksum { .. })
    ));
    let mut img = standard(0);
    img.put(BASE, &rsdp(0, 0, 0));
    assert_eq!(walk(&img.mem(), BASE), Err(WalkError::NoRootTable));
    // RSDP outside memory.
    assert!(matches!(
        walk(&img.mem(), 0x10),
        Err(WalkError::Read { what: "RSDP", .. })
    ));
    assert!(matches!(
        walk(&img.mem(), BASE + 0xff0),
        Err(WalkError::Read { .. })
    ));
    // An RSDP length field of 4 GiB must not make us allocate 4 GiB.
    let mut r = rsdp(2, 0x1100, 0x1200);
    r[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = Rsdp::parse(&r).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::LengthTooSmall { .. }));
}

#[test]
fn entry_problems_are_warnings() {
    let mut img = standard(0);
    let entries: Vec<u8> = [0u32, 0x1400, 0xdead_0000, 0x1700]
        .iter()
        .flat_map(|a| a.to_le_bytes())
        .collect();
    img.put(0x1100, &sdt(b"RSDT", 1, &entries));
    // At 0x1700 a header claiming 8 bytes.
    let mut h = sdt(b"SSDT", 1, &[]);
    h[4..8].copy_from_slice(&8u32.to_le_bytes());
    img.put(0x1700, &h);
    let t = walk(&img.mem(), BASE).unwrap();
    assert_eq!(t.tables.len(), 1);
    assert_eq!(t.warnings.len(), 3);
    assert_eq!(t.warnings[0], WalkWarning::NullEntry { index: 0 });
    assert!(
        matches!(t.warnings[1], WalkWarning::Unreadable { index: 2, error } if error.phys == 0xdead_0000)
    );
    assert_eq!(
        t.warnings[2],
        WalkWarning::BadLength {
            index: 3,
            address: 0x1700,
            length: 8
        }
    );
}

#[test]
fn root_table_bounds() {
    // Trailing bytes after the last whole RSDT entry.
    let mut r = sdt(b"RSDT", 1, &[0, 0x14, 0, 0, 0xaa, 0xbb]);
    restamp(&mut r);
    let root = parse_root_table(&r).unwrap();
    assert_eq!(root.entries, [0x1400]);
    assert_eq!(root.warnings.len(), 1);
    // An XSDT claiming a huge length is refused before reading it.
    let mut img = standard(2);
    let mut x = sdt(b"XSDT", 1, &[]);
    x[4..8].copy_from_slice(&0x00ff_0000u32.to_le_bytes());
    img.put(0x1200, &x);
    img.put(BASE, &rsdp(2, 0, 0x1200));
    match walk(&img.mem(), BASE) {
        Err(WalkError::Table(e)) => assert!(matches!(e.kind, ErrorKind::TooManyEntries { .. })),
        other => panic!("{other:?}"),
    }
    // A root table with the wrong signature.
    let mut img = standard(0);
    img.put(0x1100, b"XSDT");
    assert!(matches!(
        walk(&img.mem(), BASE),
        Err(WalkError::Table(e)) if matches!(e.kind, ErrorKind::BadSignature { found } if &found == b"XSDT")
    ));
    assert!(parse_root_table(&sdt(b"APIC", 1, &[])).is_err());
}

#[test]
fn read_table_checks() {
    let mut img = standard(0);
    assert_eq!(read_table(&img.mem(), 0x1400, 4096).unwrap().len(), 44);
    assert!(matches!(
        read_table(&img.mem(), 0x1400, 40),
        Err(WalkError::TooLong { length: 44, .. })
    ));
    img.put(0x1410, &[0x99]);
    assert!(matches!(
        read_table(&img.mem(), 0x1400, 4096),
        Err(WalkError::Table(_))
    ));
    assert!(matches!(
        read_table(&img.mem(), 0x1ff0, 4096),
        Err(WalkError::Read { .. })
    ));
}

#[test]
fn find_rsdp_scans_16_byte_slots() {
    let mut img = Image::new();
    // A signature with a bad checksum first, then at an unaligned place,
    // then the real one.
    let mut bad = rsdp(0, 0x1100, 0);
    bad[8] ^= 1;
    img.put(0x1100, &bad);
    img.put(0x1208, &rsdp(0, 0x1100, 0));
    img.put(0x1300, &rsdp(0, 0x1100, 0));
    assert_eq!(find_rsdp(&img.mem(), BASE, 0x1000), Some(0x1300));
    assert_eq!(find_rsdp(&img.mem(), BASE, 0x300), None);
    // Range partly outside memory, and an unaligned start.
    assert_eq!(find_rsdp(&img.mem(), 0x801, 0x1000), Some(0x1300));
    assert_eq!(find_rsdp(&img.mem(), u64::MAX - 4, 100), None);
}

#[test]
fn slice_memory_bounds() {
    let b = [1u8, 2, 3, 4];
    let m = SliceMemory {
        base: 0x100,
        bytes: &b,
    };
    let mut buf = [0u8; 2];
    assert!(m.read(0x102, &mut buf).is_ok());
    assert_eq!(buf, [3, 4]);
    assert!(m.read(0x103, &mut buf).is_err());
    assert!(m.read(0xff, &mut buf).is_err());
    assert!(m.read(u64::MAX, &mut buf).is_err());
}

#[test]
fn same_signature_twice_is_listed_twice() {
    // Corpus quirk: several machines have two HPET (or MCFG) tables.
    let mut img = standard(0);
    img.put(0x1700, &sdt(b"HPET", 1, &[1; 20]));
    let entries: Vec<u8> = [0x1600u32, 0x1700]
        .iter()
        .flat_map(|a| a.to_le_bytes())
        .collect();
    img.put(0x1100, &sdt(b"RSDT", 1, &entries));
    let t = walk(&img.mem(), BASE).unwrap();
    let hpets: Vec<u64> = t.find(b"HPET").map(|i| i.address).collect();
    assert_eq!(hpets, [0x1600, 0x1700]);
}

/// Regression from fuzzing (table_walk, crash-18d0c61c): an RSDP whose
/// XSDT address is near u64::MAX. The crash was an overflow in the fuzz
/// harness's own checksum patching, but the walker must fail cleanly on
/// such an address too, in both roots.
#[test]
fn root_addresses_at_the_top_of_memory() {
    let mut img = vec![0u8; 0x100];
    img[..36].copy_from_slice(&rsdp(2, u32::MAX, u64::MAX - 10));
    let mem = SliceMemory {
        base: 0,
        bytes: &img,
    };
    match walk(&mem, 0) {
        Err(WalkError::Read { what, error }) => {
            assert_eq!(what, "root table header");
            assert_eq!(error.phys, u64::from(u32::MAX), "fell back to the RSDT");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read_table(&mem, u64::MAX - 3, 4096),
        Err(WalkError::Read { .. })
    ));
    assert_eq!(find_rsdp(&mem, u64::MAX - 40, 40), None);
}
