use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::error::{ErrorKind, Location, WarningKind};
use crate::testutil::*;

fn parse_ok(t: &[u8]) -> Dmar {
    parse(t).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn parse_err(t: &[u8]) -> Error {
    match parse(t) {
        Ok(d) => panic!("expected an error, got {d:?}"),
        Err(e) => e,
    }
}

fn kinds(d: &Dmar) -> Vec<WarningKind> {
    d.warnings.iter().map(|w| w.kind.clone()).collect()
}

/// The table QEMU 7.2 builds for `-M q35 -device intel-iommu -device edu
/// -device pcie-root-port` (hw-facts §4.13): length 120, HAW 38, flags 1.
fn qemu_q35() -> Vec<u8> {
    dmar(
        38,
        1,
        &[drhd(
            0,
            0,
            0,
            0xfed9_0000,
            &[
                scope(3, 0, 0xff, &[(0, 0)]),
                scope(1, 0, 0, &[(0, 0)]),
                scope(1, 0, 0, &[(1, 0)]),
                scope(2, 0, 0, &[(2, 0)]),
                scope(1, 0, 0, &[(0x1f, 0)]),
                scope(1, 0, 0, &[(0x1f, 2)]),
                scope(1, 0, 0, &[(0x1f, 3)]),
            ],
        )],
    )
}

#[test]
fn qemu_table_decodes() {
    let t = qemu_q35();
    assert_eq!(t.len(), 120);
    let d = parse_ok(&t);
    assert_eq!(d.address_width_bits(), 39);
    assert_eq!(d.flags, DmarFlags::INTR_REMAP);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d.structures.len(), 1);
    let u = d.drhds().next().unwrap();
    assert_eq!(u.offset, 48);
    assert_eq!(u.register_base, 0xfed9_0000);
    assert!(!u.include_pci_all());
    assert_eq!(u.register_pages(), 1);
    assert_eq!(u.scopes.len(), 7);
    assert_eq!(u.scopes[0].scope_type, ScopeType::IoApic);
    assert_eq!(u.scopes[0].start_bus, 0xff);
    assert_eq!(u.scopes[3].scope_type, ScopeType::PciSubHierarchy);
    assert_eq!(u.scopes[3].single_hop_bdf(), Some((0, 2, 0)));
    let paths: Vec<_> = u
        .scopes
        .iter()
        .map(|s| s.path_display().to_string())
        .collect();
    assert_eq!(
        paths,
        ["ff:00.0", "00:00.0", "00:01.0", "00:02.0", "00:1f.0", "00:1f.2", "00:1f.3"]
    );
    assert_eq!(u.scopes[6].offset, 48 + 16 + 6 * 8);
}

#[test]
fn qemu_table_with_atsr() {
    let mut t = qemu_q35();
    t.extend_from_slice(&structure(2, &[1, 0, 0, 0], &[]));
    restamp(&mut t);
    assert_eq!(t.len(), 128);
    let d = parse_ok(&t);
    let a = d.atsrs().next().unwrap();
    assert!(a.flags.contains(AtsrFlags::ALL_PORTS));
    assert_eq!(a.segment, 0);
    assert!(a.scopes.is_empty());
    assert!(
        d.warnings.is_empty(),
        "ALL_PORTS needs no scopes: {:?}",
        d.warnings
    );
}

#[test]
fn header_fields_and_flags() {
    let d = parse_ok(&dmar(0x2e, 0x07, &[]));
    assert_eq!(d.host_address_width, 0x2e);
    assert_eq!(d.address_width_bits(), 47);
    assert!(d.flags.contains(DmarFlags::INTR_REMAP));
    assert!(d.flags.contains(DmarFlags::X2APIC_OPT_OUT));
    assert!(d.flags.contains(DmarFlags::DMA_CTRL_PLATFORM_OPT_IN));
    assert!(d.structures.is_empty());
    // Reserved flag bits are kept, not dropped.
    assert_eq!(parse_ok(&dmar(38, 0x81, &[])).flags.bits(), 0x81);
}

#[test]
fn drhd_fields() {
    let t = dmar(
        38,
        0,
        &[drhd(
            1,
            4,
            2,
            0xfc80_0000,
            &[
                scope(3, 2, 0xf0, &[(0x1f, 0)]),
                scope(4, 0, 0, &[(0x1f, 0)]),
            ],
        )],
    );
    let d = parse_ok(&t);
    let u = d.drhds().next().unwrap();
    assert!(u.include_pci_all());
    assert_eq!(u.size, 4);
    assert_eq!(u.register_pages(), 16);
    assert_eq!(u.register_size(), 64 * 1024);
    assert_eq!(u.segment, 2);
    assert_eq!(u.register_base, 0xfc80_0000);
    assert_eq!(u.scopes[0].enumeration_id, 2);
    assert_eq!(u.scopes[1].scope_type, ScopeType::HpetMsi);
    // Size uses bits 3:0 only.
    let d = parse_ok(&dmar(
        38,
        0,
        &[drhd(0, 0xf1, 0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])])],
    ));
    assert_eq!(d.drhds().next().unwrap().register_pages(), 2);
}

#[test]
fn rmrr_fields() {
    let t = dmar(
        38,
        1,
        &[
            drhd(1, 0, 0, 0xfed9_1000, &[]),
            rmrr(0, 0x8c58_7000, 0x8c5a_6fff, &[scope(1, 0, 0, &[(0x14, 0)])]),
        ],
    );
    let d = parse_ok(&t);
    let r = d.rmrrs().next().unwrap();
    assert_eq!((r.segment, r.base, r.limit), (0, 0x8c58_7000, 0x8c5a_6fff));
    assert_eq!(r.size(), Some(0x20000));
    assert_eq!(r.scopes[0].path_display().to_string(), "00:14.0");
    assert_eq!(r.offset, 48 + 16);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn rhsa_andd_satc_fields() {
    let mut rhsa_fixed = vec![0u8; 4];
    rhsa_fixed.extend_from_slice(&0xf7ff_c000u64.to_le_bytes());
    rhsa_fixed.extend_from_slice(&3u32.to_le_bytes());
    let mut andd_fixed = vec![0, 0, 0, 7];
    andd_fixed.extend_from_slice(b"\\_SB.PCI0.SPI0\0");
    let t = dmar(
        38,
        0,
        &[
            structure(3, &rhsa_fixed, &[]),
            structure(4, &andd_fixed, &[]),
            structure(
                5,
                &[1, 0, 0, 0],
                &[scope(1, 0, 0, &[(2, 0)]), scope(1, 0, 0, &[(5, 0)])],
            ),
        ],
    );
    let d = parse_ok(&t);
    let h = d.rhsas().next().unwrap();
    assert_eq!((h.register_base, h.proximity_domain), (0xf7ff_c000, 3));
    let a = d.andds().next().unwrap();
    assert_eq!(a.device_number, 7);
    assert_eq!(a.name, b"\\_SB.PCI0.SPI0");
    assert_eq!(a.name_string(), "\\_SB.PCI0.SPI0");
    let s = d.satcs().next().unwrap();
    assert!(s.flags.contains(SatcFlags::ATC_REQUIRED));
    assert_eq!(s.scopes.len(), 2);
    assert_eq!(
        d.counts(),
        StructureCounts {
            rhsa: 1,
            andd: 1,
            satc: 1,
            ..Default::default()
        }
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn unknown_types_are_skipped_by_length() {
    // SIDP (type 6) with two scopes whose flags byte is set, as on the
    // corpus's Meteor Lake machines, then an unheard-of type, then a DRHD
    // that must still be found.
    let mut sidp_scope = scope(1, 0, 0, &[(2, 0)]);
    sidp_scope[2] = 0x1f;
    let t = dmar(
        41,
        5,
        &[
            structure(6, &[0, 0, 0, 0], &[sidp_scope.clone(), sidp_scope]),
            structure(0x1234, &[0xee; 3], &[]),
            drhd(1, 0, 0, 0xfed9_1000, &[]),
        ],
    );
    let d = parse_ok(&t);
    assert_eq!(
        d.structures[0],
        RemappingStructure::Unknown(UnknownStructure {
            offset: 48,
            kind: 6,
            length: 24
        })
    );
    assert_eq!(d.structures[1].kind(), 0x1234);
    assert_eq!(d.structures[1].offset(), 72);
    assert!(matches!(d.structures[2], RemappingStructure::Drhd(_)));
    assert_eq!(d.counts().other, 2);
}

#[test]
fn every_scope_type_and_multi_hop_paths() {
    let mut flagged = scope(5, 1, 0, &[(0x15, 0)]);
    flagged[2] = 0x1c;
    let t = dmar(
        38,
        0,
        &[drhd(
            0,
            0,
            0,
            0xfed9_0000,
            &[
                scope(1, 0, 0, &[(0x1c, 4), (0, 0)]),
                scope(2, 0, 0x80, &[(1, 0)]),
                scope(3, 8, 0xf0, &[(0x1f, 0)]),
                scope(4, 0, 0, &[(0x1f, 0)]),
                flagged,
            ],
        )],
    );
    let d = parse_ok(&t);
    let s = &d.drhds().next().unwrap().scopes;
    let types: Vec<_> = s.iter().map(|s| s.scope_type).collect();
    assert_eq!(
        types,
        [
            ScopeType::PciEndpoint,
            ScopeType::PciSubHierarchy,
            ScopeType::IoApic,
            ScopeType::HpetMsi,
            ScopeType::AcpiNamespace
        ]
    );
    assert_eq!(s[0].path.len(), 2);
    assert_eq!(s[0].path_display().to_string(), "00:1c.4/00.0");
    assert_eq!(s[0].single_hop_bdf(), None);
    assert_eq!(s[1].path_display().to_string(), "80:01.0");
    assert_eq!(s[4].flags, 0x1c);
    assert_eq!(s[4].enumeration_id, 1);
}

#[test]
fn multi_hop_paths_resolve_through_secondary_buses() {
    let t = dmar(
        38,
        0,
        &[drhd(
            0,
            0,
            0,
            0xfed9_0000,
            &[
                // Root port 00:1c.4 (secondary bus 3) -> switch port 00.0 on
                // bus 3 (secondary bus 4) -> device 00.0 on bus 4.
                scope(1, 0, 0, &[(0x1c, 4), (0, 0), (0, 0)]),
                scope(1, 0, 0, &[(0x1c, 4), (0, 1)]),
                scope(1, 0, 0, &[(0x1d, 0), (0, 0)]),
                scope(2, 0, 0x80, &[(1, 0)]),
            ],
        )],
    );
    let d = parse_ok(&t);
    let s = &d.drhds().next().unwrap().scopes;
    let mut asked = Vec::new();
    let mut bridges = |b: u8, dv: u8, f: u8| {
        asked.push((b, dv, f));
        match (b, dv, f) {
            (0, 0x1c, 4) => Some(3),
            (3, 0, 0) => Some(4),
            _ => None,
        }
    };
    assert_eq!(s[0].resolve(&mut bridges), Some((4, 0, 0)));
    assert_eq!(s[1].resolve(&mut bridges), Some((3, 0, 1)));
    // 00:1d.0 is no enumerated bridge: the path leads nowhere.
    assert_eq!(s[2].resolve(&mut bridges), None);
    // One hop needs no bridge at all.
    assert_eq!(s[3].resolve(&mut bridges), Some((0x80, 1, 0)));
    assert_eq!(asked, [(0, 0x1c, 4), (3, 0, 0), (0, 0x1c, 4), (0, 0x1d, 0)]);
    let empty = DeviceScope {
        path: Vec::new(),
        ..s[0].clone()
    };
    assert_eq!(empty.resolve(|_, _, _| Some(1)), None);
}

// ---- errors ----

#[test]
fn error_truncated_header() {
    let t = qemu_q35();
    let e = parse_err(&t[..30]);
    assert_eq!(e.table, *b"DMAR");
    assert_eq!(
        e.kind,
        ErrorKind::Truncated {
            needed: 36,
            available: 30
        }
    );
    assert!(matches!(parse_err(&[]).kind, ErrorKind::Truncated { .. }));
}

#[test]
fn error_table_shorter_than_dmar_fields() {
    let t = sdt(b"DMAR", 1, &[38, 1]);
    let e = parse_err(&t);
    assert_eq!(
        e.kind,
        ErrorKind::LengthTooSmall {
            length: 38,
            minimum: 48
        }
    );
}

#[test]
fn error_length_beyond_data_and_bad_checksum_and_signature() {
    let t = qemu_q35();
    let e = parse_err(&t[..100]);
    assert_eq!(
        e.kind,
        ErrorKind::LengthExceedsData {
            length: 120,
            available: 100
        }
    );
    let mut bad = t.clone();
    bad[60] ^= 0x40;
    assert_eq!(parse_err(&bad).kind, ErrorKind::BadChecksum { sum: 0x40 });
    let mut apic = t.clone();
    apic[..4].copy_from_slice(b"APIC");
    restamp(&mut apic);
    assert_eq!(
        parse_err(&apic).kind,
        ErrorKind::BadSignature { found: *b"APIC" }
    );
}

#[test]
fn error_structure_length_zero() {
    let mut t = qemu_q35();
    // Second structure: a type-1 header with length 0 would loop forever if
    // it were trusted.
    t.extend_from_slice(&[1, 0, 0, 0]);
    restamp(&mut t);
    let e = parse_err(&t);
    assert_eq!(e.offset, 120);
    assert_eq!(
        e.location,
        Location::Structure {
            name: "RMRR",
            kind: 1,
            index: 1
        }
    );
    assert_eq!(
        e.kind,
        ErrorKind::StructureTooShort {
            length: 0,
            minimum: 24
        }
    );
    assert_eq!(
        e.to_string(),
        "DMAR: structure #1 (type 1, RMRR) at offset 0x78: length 0 is below the minimum 24"
    );
    // Unknown type, length 0 and 3: below the 4-byte header.
    for len in [0u8, 3] {
        let mut t = dmar(38, 0, &[]);
        t.extend_from_slice(&[9, 0, len, 0, 0, 0, 0, 0]);
        restamp(&mut t);
        assert_eq!(
            parse_err(&t).kind,
            ErrorKind::StructureTooShort {
                length: usize::from(len),
                minimum: 4
            }
        );
    }
}

#[test]
fn error_structure_below_type_minimum() {
    // A DRHD of 12 bytes cannot hold its register base.
    let t = dmar(38, 0, &[structure(0, &[0; 8], &[])]);
    let e = parse_err(&t);
    assert_eq!(
        e.kind,
        ErrorKind::StructureTooShort {
            length: 12,
            minimum: 16
        }
    );
    assert_eq!(e.offset, 48);
    // RHSA of 16 bytes.
    let t = dmar(38, 0, &[structure(3, &[0; 12], &[])]);
    assert_eq!(
        parse_err(&t).kind,
        ErrorKind::StructureTooShort {
            length: 16,
            minimum: 20
        }
    );
}

#[test]
fn error_structure_longer_than_table() {
    let mut t = qemu_q35();
    // Claim 0x50 bytes for the DRHD that has 0x48.
    t[50] = 0x50;
    restamp(&mut t);
    let e = parse_err(&t);
    assert_eq!(
        e.kind,
        ErrorKind::StructureOverrun {
            length: 0x50,
            remaining: 72
        }
    );
    assert_eq!(e.offset, 48);
    assert!(e.to_string().contains("structure #0 (type 0, DRHD)"));
}

#[test]
fn error_trailing_bytes() {
    let mut t = qemu_q35();
    t.extend_from_slice(&[0, 0]);
    restamp(&mut t);
    let e = parse_err(&t);
    assert_eq!(e.kind, ErrorKind::TrailingBytes { count: 2 });
    assert_eq!(e.offset, 120);
    assert_eq!(
        e.to_string(),
        "DMAR: structure #1 (incomplete header) at offset 0x78: \
         2 trailing bytes too short for a structure header"
    );
}

#[test]
fn error_scope_length_too_short() {
    for bad_len in [0u8, 1, 5] {
        let mut s = scope(1, 0, 0, &[(2, 0)]);
        s[1] = bad_len;
        let t = dmar(
            38,
            0,
            &[drhd(
                0,
                0,
                0,
                0xfed9_0000,
                &[scope(3, 0, 0xff, &[(0, 0)]), s],
            )],
        );
        let e = parse_err(&t);
        assert_eq!(
            e.kind,
            ErrorKind::ScopeTooShort {
                length: usize::from(bad_len)
            }
        );
        assert_eq!(e.offset, 48 + 16 + 8);
        assert_eq!(
            e.location,
            Location::Scope {
                name: "DRHD",
                kind: 0,
                index: 0,
                scope_index: 1
            }
        );
    }
}

#[test]
fn error_scope_longer_than_structure() {
    let mut s = scope(1, 0, 0, &[(2, 0)]);
    s[1] = 10;
    let t = dmar(38, 0, &[rmrr(0, 0x1000, 0x1fff, &[s])]);
    let e = parse_err(&t);
    assert_eq!(
        e.kind,
        ErrorKind::ScopeOverrun {
            length: 10,
            remaining: 8
        }
    );
    assert_eq!(
        e.to_string(),
        "DMAR: structure #0 (type 1, RMRR) device scope #0 at offset 0x48: \
         device scope length 10 runs past the end of its structure (8 bytes left)"
    );
}

#[test]
fn error_scope_fixed_part_cut_off() {
    // 4 bytes after the DRHD's fixed part claiming an 8-byte scope.
    let base = [0, 0, 0, 0, 0, 0, 0xd9, 0xfe, 0, 0, 0, 0];
    let t = dmar(
        38,
        0,
        &[structure(0, &[&base[..], &[1, 8, 0, 0]].concat(), &[])],
    );
    let e = parse_err(&t);
    assert_eq!(
        e.kind,
        ErrorKind::ScopeOverrun {
            length: 8,
            remaining: 4
        }
    );
    // 4 bytes claiming a 2-byte scope: too short, not an overrun.
    let t = dmar(
        38,
        0,
        &[structure(0, &[&base[..], &[1, 2, 0, 0]].concat(), &[])],
    );
    assert_eq!(parse_err(&t).kind, ErrorKind::ScopeTooShort { length: 2 });
    // A single byte left: the length itself is missing.
    let t = dmar(38, 0, &[structure(0, &[&base[..], &[1]].concat(), &[])]);
    let e = parse_err(&t);
    assert_eq!(
        e.kind,
        ErrorKind::ScopeOverrun {
            length: 6,
            remaining: 1
        }
    );
    assert_eq!(e.offset, 64);
}

#[test]
fn error_scope_path_odd_bytes() {
    let mut s = scope(1, 0, 0, &[(2, 0)]);
    s.push(0);
    s[1] = 9;
    let t = dmar(38, 0, &[drhd(0, 0, 0, 0xfed9_0000, &[s])]);
    let e = parse_err(&t);
    assert_eq!(e.kind, ErrorKind::ScopeOddPath { length: 9 });
}

// ---- quirks: warnings, not errors ----

#[test]
fn quirk_drhd_register_base_zero() {
    // As on the ThinkPad E15 Gen 2 (corpus): a second DRHD with base 0.
    let t = dmar(
        38,
        1,
        &[
            drhd(0, 0, 0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(1, 0, 0, 0, &[]),
        ],
    );
    let d = parse_ok(&t);
    assert_eq!(kinds(&d), [WarningKind::RegisterBaseZero]);
    // First DRHD: 16 fixed bytes + one 8-byte scope, so the second is at 0x48.
    assert_eq!(d.warnings[0].offset, 0x48 + 8);
    assert_eq!(
        d.warnings[0].to_string(),
        "DMAR: structure #1 (type 0, DRHD) at offset 0x50: register base address is 0"
    );
}

#[test]
fn quirk_drhd_register_base_unaligned() {
    let d = parse_ok(&dmar(38, 0, &[drhd(1, 0, 0, 0xfed9_0800, &[])]));
    assert_eq!(
        kinds(&d),
        [WarningKind::RegisterBaseUnaligned { base: 0xfed9_0800 }]
    );
}

#[test]
fn quirk_rmrr_zero_length_at_zero() {
    // As on the HP Compaq 6730b (corpus).
    let d = parse_ok(&dmar(
        38,
        0,
        &[rmrr(0, 0, 0, &[scope(1, 0, 0, &[(0x1a, 0)])])],
    ));
    assert_eq!(
        kinds(&d),
        [WarningKind::RmrrInvalidRange { base: 0, limit: 0 }]
    );
    assert_eq!(d.rmrrs().next().unwrap().size(), None);
}

#[test]
fn quirk_rmrr_inverted_and_unaligned() {
    let d = parse_ok(&dmar(
        38,
        0,
        &[rmrr(0, 0x2000, 0x1fff, &[scope(1, 0, 0, &[(2, 0)])])],
    ));
    assert_eq!(
        kinds(&d),
        [WarningKind::RmrrInvalidRange {
            base: 0x2000,
            limit: 0x1fff
        }]
    );
    let d = parse_ok(&dmar(
        38,
        0,
        &[rmrr(0, 0x2100, 0x2fff, &[scope(1, 0, 0, &[(2, 0)])])],
    ));
    assert_eq!(
        kinds(&d),
        [WarningKind::RmrrUnaligned {
            base: 0x2100,
            limit: 0x2fff
        }]
    );
    let d = parse_ok(&dmar(
        38,
        0,
        &[rmrr(0, 0x2000, 0x2ffe, &[scope(1, 0, 0, &[(2, 0)])])],
    ));
    assert!(matches!(kinds(&d)[..], [WarningKind::RmrrUnaligned { .. }]));
}

#[test]
fn quirk_missing_scopes() {
    let d = parse_ok(&dmar(38, 0, &[rmrr(0, 0x1000, 0x1fff, &[])]));
    assert_eq!(kinds(&d), [WarningKind::NoDeviceScopes]);
    let d = parse_ok(&dmar(38, 0, &[structure(2, &[0, 0, 0, 0], &[])]));
    assert_eq!(kinds(&d), [WarningKind::NoDeviceScopes]);
    let d = parse_ok(&dmar(38, 0, &[structure(5, &[0, 0, 0, 0], &[])]));
    assert_eq!(kinds(&d), [WarningKind::NoDeviceScopes]);
}

#[test]
fn quirk_scope_oddities() {
    let t = dmar(
        38,
        0,
        &[drhd(
            0,
            0,
            0,
            0xfed9_0000,
            &[
                scope(1, 0, 0, &[]),
                scope(7, 0, 0, &[(2, 0)]),
                scope(1, 0, 0, &[(0x20, 8)]),
            ],
        )],
    );
    let d = parse_ok(&t);
    assert_eq!(
        kinds(&d),
        [
            WarningKind::EmptyPath,
            WarningKind::UnknownScopeType { scope_type: 7 },
            WarningKind::PathEntryOutOfRange {
                device: 0x20,
                function: 8
            }
        ]
    );
    let s = &d.drhds().next().unwrap().scopes;
    assert_eq!(s[1].scope_type, ScopeType::Reserved(7));
    assert_eq!(s[0].path_display().to_string(), "00:(empty path)");
}

#[test]
fn quirk_include_pci_all_order() {
    let d = parse_ok(&dmar(
        38,
        0,
        &[
            drhd(1, 0, 0, 0xfed9_1000, &[]),
            drhd(1, 0, 0, 0xfed9_2000, &[]),
            drhd(0, 0, 0, 0xfed9_0000, &[scope(1, 0, 0, &[(2, 0)])]),
            drhd(1, 0, 1, 0xfed9_3000, &[]),
        ],
    ));
    assert_eq!(
        kinds(&d),
        [
            WarningKind::IncludePciAllNotLast { segment: 0 },
            WarningKind::DuplicateIncludePciAll { segment: 0 },
            WarningKind::IncludePciAllNotLast { segment: 0 },
        ]
    );
}

#[test]
fn quirk_andd_name_not_terminated() {
    let mut f = vec![0, 0, 0, 1];
    f.extend_from_slice(b"\\_SB.I2C0");
    let d = parse_ok(&dmar(38, 0, &[structure(4, &f, &[])]));
    assert_eq!(kinds(&d), [WarningKind::NameNotTerminated]);
    assert_eq!(d.andds().next().unwrap().name, b"\\_SB.I2C0");
}

#[test]
fn quirk_nonprintable_oem_table_id() {
    // As on HP EliteBook 6930p (corpus): OEM table ID 01 00 00 ...
    let mut t = qemu_q35();
    t[16..24].copy_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    restamp(&mut t);
    let d = parse_ok(&t);
    assert_eq!(
        kinds(&d),
        [WarningKind::NonPrintable {
            field: "OEM Table ID",
            bytes: vec![1, 0, 0, 0, 0, 0, 0, 0]
        }]
    );
}

/// Every prefix of a valid table is rejected cleanly (no panic); a prefix
/// with its header restamped to the shorter length is accepted only when
/// it holds no structure at all, since the DRHD's own length (72) no longer
/// fits.
#[test]
fn all_prefixes_are_handled() {
    let t = qemu_q35();
    for n in 0..t.len() {
        assert!(parse(&t[..n]).is_err());
        if n >= 48 {
            let mut p = t[..n].to_vec();
            restamp(&mut p);
            let r = parse(&p);
            assert_eq!(r.is_ok(), n == 48, "prefix {n}: {r:?}");
            if n > 48 {
                let e = r.unwrap_err();
                assert!(
                    matches!(
                        e.kind,
                        ErrorKind::StructureOverrun { .. } | ErrorKind::TrailingBytes { .. }
                    ),
                    "prefix {n}: {e}"
                );
            }
        }
    }
}

/// An ANDD: 3 reserved bytes, the device number, the NUL-terminated name.
fn andd(number: u8, name: &str) -> Vec<u8> {
    let mut f = vec![0, 0, 0, number];
    f.extend_from_slice(name.as_bytes());
    f.push(0);
    structure(4, &f, &[])
}

#[test]
fn namespace_devices_are_matched_with_their_andd_and_requester_id() {
    // As a Dell Vostro 5471's DMAR has it: the INCLUDE_PCI_ALL unit names
    // \_SB.PCI0.I2C0 (device number 1) at 00:15.0.
    let t = dmar(
        38,
        1,
        &[
            drhd(
                1,
                0,
                0,
                0xfed9_1000,
                &[scope(3, 2, 0, &[(0x1e, 7)]), scope(5, 1, 0, &[(0x15, 0)])],
            ),
            andd(1, "\\_SB.PCI0.I2C0"),
        ],
    );
    let d = parse_ok(&t);
    let ns = d.namespace_devices();
    assert_eq!(ns.len(), 1);
    assert_eq!(ns[0].drhd_base, 0xfed9_1000);
    assert_eq!(ns[0].device_number, 1);
    assert_eq!(ns[0].name.as_deref(), Some("\\_SB.PCI0.I2C0"));
    assert_eq!(ns[0].requester, Some((0, 0x15, 0)));
    assert_eq!(ns[0].problem(), None);
}

#[test]
fn a_namespace_scope_without_its_andd_or_path_is_a_named_problem() {
    let t = dmar(
        38,
        0,
        &[
            drhd(
                1,
                0,
                0,
                0xfed9_1000,
                &[scope(5, 7, 0, &[(0x19, 2)]), scope(5, 1, 0, &[])],
            ),
            andd(1, "\\_SB.PCI0.UA00"),
        ],
    );
    let d = parse_ok(&t);
    let ns = d.namespace_devices();
    assert_eq!(ns.len(), 2);
    assert_eq!(ns[0].problem(), Some(NamespaceProblem::NoAndd(7)));
    assert_eq!(ns[0].requester, Some((0, 0x19, 2)));
    assert_eq!(ns[1].problem(), Some(NamespaceProblem::EmptyPath(1)));
    assert_eq!(ns[1].name.as_deref(), Some("\\_SB.PCI0.UA00"));
    assert_eq!(
        NamespaceProblem::NoAndd(7).to_string(),
        "no ANDD declares ACPI namespace device number 7"
    );
}
