//! Unit tests for the MADT, MCFG, HPET and FADT decoders.

use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use crate::error::{ErrorKind, Location, WarningKind};
use crate::fadt::{self, FadtFlags, IapcBootArch};
use crate::hpet;
use crate::madt::{self, MadtEntry, MadtFlags};
use crate::mcfg;
use crate::testutil::{restamp, sdt};

// ---- MADT ----

fn madt_bytes(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    for e in entries {
        body.extend_from_slice(e);
    }
    sdt(b"APIC", 5, &body)
}

fn entry(ty: u8, fields: &[u8]) -> Vec<u8> {
    let mut e = vec![ty, (2 + fields.len()) as u8];
    e.extend_from_slice(fields);
    e
}

fn le(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn madt_every_entry_type() {
    let t = madt_bytes(&[
        entry(0, &le(&[&[0, 1], &1u32.to_le_bytes()])),
        entry(
            1,
            &le(&[&[2, 0], &0xfec0_0000u32.to_le_bytes(), &0u32.to_le_bytes()]),
        ),
        entry(2, &le(&[&[0, 0], &2u32.to_le_bytes(), &0u16.to_le_bytes()])),
        entry(
            2,
            &le(&[&[0, 9], &9u32.to_le_bytes(), &0x0du16.to_le_bytes()]),
        ),
        entry(3, &le(&[&5u16.to_le_bytes(), &23u32.to_le_bytes()])),
        entry(4, &le(&[&[0xff], &5u16.to_le_bytes(), &[1]])),
        entry(5, &le(&[&[0, 0], &0xfee0_1000u64.to_le_bytes()])),
        entry(
            9,
            &le(&[
                &[0, 0],
                &300u32.to_le_bytes(),
                &1u32.to_le_bytes(),
                &7u32.to_le_bytes(),
            ]),
        ),
        entry(
            10,
            &le(&[&5u16.to_le_bytes(), &u32::MAX.to_le_bytes(), &[1, 0, 0, 0]]),
        ),
        entry(127, &[0; 8]),
    ]);
    let m = madt::parse(&t).unwrap();
    assert_eq!(m.local_apic_address, 0xfee0_0000);
    assert_eq!(m.flags, MadtFlags::PCAT_COMPAT);
    let e: Vec<MadtEntry> = m.entries.iter().map(|r| r.entry).collect();
    assert_eq!(
        e,
        [
            MadtEntry::LocalApic {
                processor_uid: 0,
                apic_id: 1,
                flags: 1
            },
            MadtEntry::IoApic {
                id: 2,
                address: 0xfec0_0000,
                gsi_base: 0
            },
            MadtEntry::InterruptSourceOverride {
                bus: 0,
                source: 0,
                gsi: 2,
                flags: 0
            },
            MadtEntry::InterruptSourceOverride {
                bus: 0,
                source: 9,
                gsi: 9,
                flags: 0x0d
            },
            MadtEntry::NmiSource { flags: 5, gsi: 23 },
            MadtEntry::LocalApicNmi {
                processor_uid: 0xff,
                flags: 5,
                lint: 1
            },
            MadtEntry::LocalApicAddressOverride {
                address: 0xfee0_1000
            },
            MadtEntry::X2Apic {
                x2apic_id: 300,
                flags: 1,
                processor_uid: 7
            },
            MadtEntry::X2ApicNmi {
                flags: 5,
                processor_uid: u32::MAX,
                lint: 1
            },
            MadtEntry::Unknown {
                kind: 127,
                length: 10
            },
        ]
    );
    assert_eq!(m.entries[1].offset, 44 + 8);
    assert_eq!(m.effective_local_apic_address(), 0xfee0_1000);
}

#[test]
fn madt_errors() {
    // Entry length 0 would loop forever.
    let t = madt_bytes(&[vec![0, 0, 0, 0, 0, 0, 0, 0]]);
    let e = madt::parse(&t).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::StructureTooShort {
            length: 0,
            minimum: 8
        }
    );
    assert_eq!(
        e.to_string(),
        "APIC: structure #0 (type 0, Local APIC) at offset 0x2c: length 0 is below the minimum 8"
    );
    // I/O APIC entry of 8 bytes cannot hold its GSI base.
    let t = madt_bytes(&[entry(1, &[0; 6])]);
    assert!(matches!(
        madt::parse(&t).unwrap_err().kind,
        ErrorKind::StructureTooShort {
            length: 8,
            minimum: 12
        }
    ));
    // Unknown type with length 1.
    let t = madt_bytes(&[vec![200, 1]]);
    assert!(matches!(
        madt::parse(&t).unwrap_err().kind,
        ErrorKind::StructureTooShort {
            length: 1,
            minimum: 2
        }
    ));
    // Entry running past the table.
    let mut t = madt_bytes(&[entry(0, &[0, 1, 1, 0, 0, 0])]);
    t[45] = 20;
    restamp(&mut t);
    let e = madt::parse(&t).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::StructureOverrun {
            length: 20,
            remaining: 8
        }
    );
    // One stray byte at the end.
    let mut t = madt_bytes(&[]);
    t.push(0);
    restamp(&mut t);
    assert_eq!(
        madt::parse(&t).unwrap_err().kind,
        ErrorKind::TrailingBytes { count: 1 }
    );
    // Too short for the local APIC address and flags.
    let t = sdt(b"APIC", 1, &[0; 4]);
    assert_eq!(
        madt::parse(&t).unwrap_err().kind,
        ErrorKind::LengthTooSmall {
            length: 40,
            minimum: 44
        }
    );
}

// ---- MCFG ----

fn mcfg_bytes(entries: &[(u64, u16, u8, u8)]) -> Vec<u8> {
    let mut body = vec![0u8; 8];
    for &(base, seg, s, e) in entries {
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&seg.to_le_bytes());
        body.push(s);
        body.push(e);
        body.extend_from_slice(&[0; 4]);
    }
    sdt(b"MCFG", 1, &body)
}

#[test]
fn mcfg_entries() {
    let t = mcfg_bytes(&[(0xe000_0000, 0, 0, 0xff), (0x4_0000_0000, 1, 0x80, 0x9f)]);
    let m = mcfg::parse(&t).unwrap();
    assert_eq!(m.entries.len(), 2);
    let e = m.entries[1];
    assert_eq!(
        (e.offset, e.base_address, e.segment, e.start_bus, e.end_bus),
        (60, 0x4_0000_0000, 1, 0x80, 0x9f)
    );
    assert_eq!(m.entries[0].ecam_address(0, 0x1f, 3), Some(0xe00f_b000));
    assert_eq!(e.ecam_address(0x7f, 0, 0), None);
    assert_eq!(e.ecam_address(0x80, 0, 0), Some(0x4_0800_0000));
    assert!(m.warnings.is_empty());
}

#[test]
fn mcfg_errors_and_warnings() {
    let mut t = mcfg_bytes(&[(0xe000_0000, 0, 0, 0xff)]);
    t.extend_from_slice(&[0; 4]);
    restamp(&mut t);
    assert_eq!(
        mcfg::parse(&t).unwrap_err().kind,
        ErrorKind::EntriesNotWhole {
            bytes: 20,
            entry_size: 16
        }
    );
    let m = mcfg::parse(&mcfg_bytes(&[(0, 0, 0x10, 0x0f)])).unwrap();
    let k: Vec<_> = m.warnings.iter().map(|w| w.kind.clone()).collect();
    assert_eq!(
        k,
        [
            WarningKind::BusRangeInverted {
                start: 0x10,
                end: 0x0f
            },
            WarningKind::ZeroAddress {
                field: "ECAM base address"
            }
        ]
    );
    assert_eq!(
        m.warnings[0].location,
        Location::Structure {
            name: "allocation",
            kind: 0,
            index: 0
        }
    );
    // Empty MCFG (no allocations) is valid.
    assert!(mcfg::parse(&mcfg_bytes(&[])).unwrap().entries.is_empty());
}

// ---- HPET ----

fn hpet_bytes(base: u64) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x8086_a701u32.to_le_bytes());
    body.extend_from_slice(&[0, 64, 0, 0]);
    body.extend_from_slice(&base.to_le_bytes());
    body.push(0);
    body.extend_from_slice(&14318u16.to_le_bytes());
    body.push(0x10);
    sdt(b"HPET", 1, &body)
}

#[test]
fn hpet_fields() {
    let h = hpet::parse(&hpet_bytes(0xfed0_0000)).unwrap();
    assert_eq!(h.event_timer_block_id, 0x8086_a701);
    assert_eq!(h.hardware_rev_id(), 1);
    assert_eq!(h.comparator_count(), 8);
    assert!(h.counter_64bit());
    assert!(h.legacy_replacement());
    assert_eq!(h.pci_vendor_id(), 0x8086);
    assert_eq!(h.base_address.address, 0xfed0_0000);
    assert_eq!(h.base_address.address_space, 0);
    assert_eq!(h.base_address.bit_width, 64);
    assert_eq!(h.min_tick, 14318);
    assert_eq!(h.page_protection, 0x10);
    assert_eq!(h.protection(), 0);
    assert!(h.warnings.is_empty());
}

#[test]
fn hpet_errors_and_warnings() {
    let t = hpet_bytes(0xfed0_0000);
    let mut short = t[..50].to_vec();
    restamp(&mut short);
    assert_eq!(
        hpet::parse(&short).unwrap_err().kind,
        ErrorKind::LengthTooSmall {
            length: 50,
            minimum: 56
        }
    );
    let h = hpet::parse(&hpet_bytes(0)).unwrap();
    assert_eq!(
        h.warnings[0].kind,
        WarningKind::ZeroAddress {
            field: "HPET base address"
        }
    );
}

// ---- FADT ----

/// A FADT of `len` bytes with recognisable values in the fields we decode.
fn fadt_bytes(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len - 36];
    let mut put = |off: usize, v: &[u8]| {
        if off + v.len() <= len {
            b[off - 36..off - 36 + v.len()].copy_from_slice(v);
        }
    };
    put(36, &0x7fe0_0000u32.to_le_bytes()); // FACS
    put(40, &0x7fe0_1000u32.to_le_bytes()); // DSDT
    put(45, &[2]); // mobile
    put(46, &9u16.to_le_bytes());
    put(48, &0xb2u32.to_le_bytes());
    put(52, &[0xf0, 0xf1]);
    put(56, &0x600u32.to_le_bytes());
    put(64, &0x604u32.to_le_bytes());
    put(76, &0x608u32.to_le_bytes());
    put(80, &0x620u32.to_le_bytes());
    put(88, &[4, 2, 0, 4, 16, 0]);
    put(108, &[0x32]);
    put(109, &0x0003u16.to_le_bytes()); // legacy devices + 8042
    put(112, &(0x400u32 | 0x1).to_le_bytes()); // RESET_REG_SUP | WBINVD
    put(116, &[1, 8, 0, 1]);
    put(120, &0xcf9u64.to_le_bytes());
    put(128, &[6]);
    put(131, &[3]);
    put(132, &0u64.to_le_bytes());
    put(140, &0x7fe0_1000u64.to_le_bytes());
    put(148, &[1, 32, 0, 3]);
    put(152, &0x600u64.to_le_bytes());
    put(208, &[1, 32, 0, 3]);
    put(212, &0x608u64.to_le_bytes());
    sdt(b"FACP", 6, &b)
}

#[test]
fn fadt_acpi6_fields() {
    let f = fadt::parse(&fadt_bytes(276)).unwrap();
    assert_eq!(f.firmware_ctrl, 0x7fe0_0000);
    assert_eq!(
        f.facs_address(),
        0x7fe0_0000,
        "X_FIRMWARE_CTRL 0 falls back"
    );
    assert_eq!(f.dsdt_address(), 0x7fe0_1000);
    assert_eq!(f.preferred_pm_profile, 2);
    assert_eq!(f.sci_int, 9);
    assert_eq!(f.smi_cmd, 0xb2);
    assert_eq!((f.acpi_enable, f.acpi_disable), (0xf0, 0xf1));
    assert_eq!(
        (f.pm1a_evt_blk, f.pm1a_cnt_blk, f.pm_tmr_blk),
        (0x600, 0x604, 0x608)
    );
    assert_eq!(
        (f.pm1_evt_len, f.pm1_cnt_len, f.pm_tmr_len, f.gpe0_blk_len),
        (4, 2, 4, 16)
    );
    assert_eq!(f.century, 0x32);
    assert!(f
        .iapc_boot_arch
        .contains(IapcBootArch::I8042_PRESENT | IapcBootArch::LEGACY_DEVICES));
    assert!(!f.iapc_boot_arch.contains(IapcBootArch::MSI_NOT_SUPPORTED));
    assert!(f.flags.contains(FadtFlags::RESET_REG_SUP));
    assert!(!f.hw_reduced());
    let (reg, val) = f.reset().unwrap();
    assert_eq!((reg.address_space, reg.address, val), (1, 0xcf9, 6));
    assert_eq!(f.minor_version, Some(3));
    assert_eq!(f.x_pm1a_evt_blk.unwrap().address, 0x600);
    assert_eq!(f.pm_timer().unwrap().address, 0x608);
    assert_eq!(f.pm_timer().unwrap().access_size, 3, "X_ GAS preferred");
    assert_eq!(
        f.pm1a_control_block().unwrap().address,
        0x604,
        "legacy fallback"
    );
    assert_eq!(f.pm1a_control_block().unwrap().bit_width, 16);
    assert!(f.sleep_status_reg.is_some());
    assert_eq!(f.hypervisor_vendor_id, Some(0));
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
}

#[test]
fn fadt_acpi1_has_no_extended_fields() {
    let f = fadt::parse(&fadt_bytes(116)).unwrap();
    assert_eq!(f.reset_reg, None);
    assert_eq!(f.reset(), None);
    assert_eq!(f.minor_version, None);
    assert_eq!(f.x_dsdt, None);
    assert_eq!(f.x_pm_tmr_blk, None);
    assert_eq!(f.dsdt_address(), 0x7fe0_1000);
    assert_eq!(f.pm_timer().unwrap().address_space, 1);
    // 129 bytes (an ACPI 2.0-era short table in the corpus): reset register
    // present, nothing after it.
    let f = fadt::parse(&fadt_bytes(129)).unwrap();
    assert_eq!(f.reset_value, Some(6));
    assert_eq!(f.arm_boot_arch, None);
    // 244 bytes (ACPI 2.0): X_ blocks but no sleep registers.
    let f = fadt::parse(&fadt_bytes(244)).unwrap();
    assert!(f.x_gpe1_blk.is_some());
    assert_eq!(f.sleep_control_reg, None);
}

#[test]
fn fadt_errors_and_warnings() {
    let t = sdt(b"FACP", 1, &[0; 60]);
    assert_eq!(
        fadt::parse(&t).unwrap_err().kind,
        ErrorKind::LengthTooSmall {
            length: 96,
            minimum: 116
        }
    );
    let mut t = fadt_bytes(276);
    t[140..148].copy_from_slice(&0x1_0000_0000u64.to_le_bytes());
    restamp(&mut t);
    let f = fadt::parse(&t).unwrap();
    assert_eq!(f.dsdt_address(), 0x1_0000_0000);
    assert_eq!(
        f.warnings[0].kind,
        WarningKind::AddressMismatch {
            field: "DSDT",
            legacy: 0x7fe0_1000,
            extended: 0x1_0000_0000
        }
    );
    let mut t = fadt_bytes(276);
    t[40..44].fill(0);
    t[140..148].fill(0);
    restamp(&mut t);
    let f = fadt::parse(&t).unwrap();
    assert_eq!(
        f.warnings[0].kind,
        WarningKind::ZeroAddress { field: "DSDT" }
    );
}
