use crate::caps::{ext_id, id, MAX_CAPS};
use crate::fake::*;
use crate::*;

fn dev() -> FakeFunction {
    FakeFunction::endpoint(0x8086, 0x10d3, 0x02_0000, 0)
}

#[test]
fn classic_and_extended_lists() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 2, 0);
    cfg.add(
        b,
        dev()
            // Low pointer bits are reserved and must be masked.
            .cap_ptr(0xC8 | 0x3)
            .cap(0xC8, id::PM, 0xD0 | 0x1)
            .msi(0xD0, 0xE0, true, false, 0)
            .pcie(0xE0, 0xA0, 0)
            .msix(0xA0, 0x00, 5, 3, 0, 3, 0x2000)
            .ext_cap(0x100, ext_id::AER, 1, 0x140)
            .ext_cap(0x140, ext_id::DSN, 1, 0x1A0 | 0x3)
            .ext_cap(0x1A0, ext_id::ATS, 1, 0),
    );
    let (caps, w) = capabilities(&cfg, b);
    assert!(w.is_empty());
    let list: alloc::vec::Vec<_> = caps.iter().map(|c| (c.id, c.offset, c.name())).collect();
    assert_eq!(
        list,
        [
            (id::PM, 0xC8, "Power Management"),
            (id::MSI, 0xD0, "MSI"),
            (id::EXP, 0xE0, "Express"),
            (id::MSIX, 0xA0, "MSI-X"),
        ]
    );
    let (ext, w) = ext_capabilities(&cfg, b);
    assert!(w.is_empty());
    let list: alloc::vec::Vec<_> = ext
        .iter()
        .map(|c| (c.id, c.offset, c.version, c.name()))
        .collect();
    assert_eq!(
        list,
        [
            (ext_id::AER, 0x100, 1, "Advanced Error Reporting"),
            (ext_id::DSN, 0x140, 1, "Device Serial Number"),
            (ext_id::ATS, 0x1A0, 1, "Address Translation Service (ATS)"),
        ]
    );
    let e = enumerate(&cfg, &ScanOptions::default());
    let d = e.get(b).unwrap();
    assert_eq!(d.find_capability(id::MSIX), Some(0xA0));
    assert_eq!(d.find_ext_capability(ext_id::ATS), Some(0x1A0));
    assert_eq!(d.find_ext_capability(ext_id::PASID), None);
    assert_eq!(
        crate::caps::ext_cap_name(ext_id::PASID),
        "Process Address Space ID (PASID)"
    );
    assert_eq!(crate::caps::cap_name(id::VENDOR), "Vendor Specific");
}

#[test]
fn no_list_without_status_bit() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 2, 0);
    cfg.add(b, dev().set8(0x34, 0x40).cap(0x40, id::PM, 0));
    assert!(capabilities(&cfg, b).0.is_empty());
}

#[test]
fn looping_list_terminates_with_warning() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 2, 0);
    cfg.add(
        b,
        dev()
            .cap_ptr(0x40)
            .cap(0x40, id::PM, 0x50)
            .cap(0x50, id::MSI, 0x40),
    );
    let (caps, w) = capabilities(&cfg, b);
    assert_eq!(caps.len(), 2);
    assert_eq!(
        w,
        [Warning {
            bdf: b,
            kind: WarningKind::CapLoop { pointer: 0x40 }
        }]
    );
    // A capability pointing to itself.
    let c2 = FakeConfig::new();
    c2.add(b, dev().cap_ptr(0x40).cap(0x40, id::PM, 0x40));
    let (caps, w) = capabilities(&c2, b);
    assert_eq!(caps.len(), 1);
    assert_eq!(w[0].kind, WarningKind::CapLoop { pointer: 0x40 });
}

#[test]
fn out_of_range_pointer_terminates_with_warning() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 2, 0);
    // Next pointer into the standard header.
    cfg.add(b, dev().cap_ptr(0x40).cap(0x40, id::PM, 0x10));
    let (caps, w) = capabilities(&cfg, b);
    assert_eq!(caps.len(), 1);
    assert_eq!(
        w[0].kind,
        WarningKind::CapPointerOutOfRange { pointer: 0x10 }
    );
    // First pointer itself bad.
    let c2 = FakeConfig::new();
    c2.add(b, dev().cap_ptr(0x3c));
    let (caps, w) = capabilities(&c2, b);
    assert!(caps.is_empty());
    assert_eq!(
        w[0].kind,
        WarningKind::CapPointerOutOfRange { pointer: 0x3c }
    );
}

#[test]
fn full_chain_of_48_is_walked() {
    let mut f = dev().cap_ptr(0x40);
    for i in 0..MAX_CAPS as u8 {
        let off = 0x40 + 4 * i;
        let next = if i + 1 == MAX_CAPS as u8 { 0 } else { off + 4 };
        f = f.cap(off, id::VENDOR, next);
    }
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 2, 0);
    cfg.add(b, f);
    let (caps, w) = capabilities(&cfg, b);
    assert_eq!(caps.len(), MAX_CAPS);
    assert!(w.is_empty());
}

#[test]
fn extended_list_loop_and_bad_pointer() {
    let b = Bdf::b(0, 2, 0);
    let cfg = FakeConfig::new();
    cfg.add(
        b,
        dev()
            .ext_cap(0x100, ext_id::AER, 1, 0x200)
            .ext_cap(0x200, ext_id::ACS, 1, 0x100),
    );
    let (ext, w) = ext_capabilities(&cfg, b);
    assert_eq!(ext.len(), 2);
    assert_eq!(w[0].kind, WarningKind::ExtCapLoop { pointer: 0x100 });
    let c2 = FakeConfig::new();
    c2.add(b, dev().ext_cap(0x100, ext_id::AER, 1, 0x0FC));
    let (ext, w) = ext_capabilities(&c2, b);
    assert_eq!(ext.len(), 1);
    assert_eq!(
        w[0].kind,
        WarningKind::ExtCapPointerOutOfRange { pointer: 0xFC }
    );
    // Header 0 at 0x100: empty list, no warning.
    let c3 = FakeConfig::new();
    c3.add(b, dev());
    let (ext, w) = ext_capabilities(&c3, b);
    assert!(ext.is_empty() && w.is_empty());
}

#[test]
fn no_extended_walk_without_ecam() {
    let b = Bdf::b(0, 2, 0);
    let cfg = FakeConfig::conventional();
    cfg.add(b, dev().ext_cap(0x100, ext_id::AER, 1, 0));
    let before = cfg.accesses();
    let (ext, w) = ext_capabilities(&cfg, b);
    assert!(ext.is_empty() && w.is_empty());
    assert_eq!(cfg.accesses(), before, "extended space was read");
}
