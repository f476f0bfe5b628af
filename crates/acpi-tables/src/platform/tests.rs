//! The platform functions on synthetic tables, through the host image.

use alloc::vec;
use alloc::vec::Vec;

use super::image::{kernel_view, DumpError, KernelView, TableImage};
use super::*;
use crate::testutil::sdt;

fn madt() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
    body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // CPU 0, APIC 0, enabled
    body.extend_from_slice(&[0, 8, 1, 2, 0, 0, 0, 0]); // CPU 1, APIC 2, disabled
    body.extend_from_slice(&[1, 12, 4, 0]); // IO-APIC id 4
    body.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&[2, 10, 0, 0]); // ISA IRQ 0 -> GSI 2
    body.extend_from_slice(&2u32.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&[2, 10, 0, 9]); // ISA IRQ 9 -> GSI 9, active high, level
    body.extend_from_slice(&9u32.to_le_bytes());
    body.extend_from_slice(&0x000du16.to_le_bytes());
    sdt(b"APIC", 5, &body)
}

#[test]
fn madt_gives_apics_overrides_and_cpus() {
    let Some(Ok(KernelView::Madt(i))) = kernel_view(&madt()) else {
        panic!("MADT not decoded");
    };
    assert_eq!(i.local_apic, 0xfee0_0000);
    assert!(i.has_8259);
    assert_eq!(
        i.io_apics,
        vec![IoApic {
            id: 4,
            address: 0xfec0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(i.overrides.len(), 2);
    assert_eq!((i.overrides[0].isa_irq, i.overrides[0].gsi), (0, 2));
    assert!(i.overrides[1].level && !i.overrides[1].active_low);
    assert_eq!(i.cpus.len(), 2);
    assert!(i.cpus[0].boot && i.cpus[0].usable);
    assert!(!i.cpus[1].usable && i.cpus[1].apic_id == 2);
}

#[test]
fn mcfg_gives_ecam_windows() {
    let mut body = vec![0u8; 8];
    body.extend_from_slice(&0xb000_0000u64.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0xff, 0, 0, 0, 0]);
    let Some(Ok(KernelView::Mcfg(w))) = kernel_view(&sdt(b"MCFG", 1, &body)) else {
        panic!("MCFG not decoded");
    };
    assert_eq!(
        w,
        vec![EcamWindow {
            base: 0xb000_0000,
            segment: 0,
            bus_start: 0,
            bus_end: 0xff
        }]
    );
}

fn hpet(space: u8) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0x8086_a701u32.to_le_bytes());
    body.extend_from_slice(&[space, 64, 0, 0]);
    body.extend_from_slice(&0xfed0_0000u64.to_le_bytes());
    body.push(0);
    body.extend_from_slice(&14318u16.to_le_bytes());
    body.push(0);
    sdt(b"HPET", 1, &body)
}

#[test]
fn hpet_base_and_an_hpet_outside_memory_is_an_error_not_a_panic() {
    assert!(matches!(
        kernel_view(&hpet(0)),
        Some(Ok(KernelView::Hpet(0xfed0_0000)))
    ));
    assert!(matches!(
        kernel_view(&hpet(1)),
        Some(Err(DumpError::Platform(PlatformError::HpetNotInMemory(1))))
    ));
}

#[test]
fn fadt_gives_pm1_reset_flags_and_dsdt() {
    let mut b = vec![0u8; 276 - 36];
    let mut put = |off: usize, v: &[u8]| b[off - 36..off - 36 + v.len()].copy_from_slice(v);
    put(40, &0x7fe0_1000u32.to_le_bytes()); // DSDT
    put(64, &0x604u32.to_le_bytes()); // PM1a_CNT_BLK
    put(89, &[2]); // PM1_CNT_LEN
    put(112, &0x401u32.to_le_bytes()); // RESET_REG_SUP | WBINVD
    put(116, &[1, 8, 0, 1]);
    put(120, &0xcf9u64.to_le_bytes());
    put(128, &[6]);
    let Some(Ok(KernelView::Fadt(f))) = kernel_view(&sdt(b"FACP", 6, &b)) else {
        panic!("FADT not decoded");
    };
    assert_eq!(f.pm1a_cnt, Some(0x604));
    assert_eq!(f.pm1b_cnt, None);
    assert_eq!(f.reset, Some((0xcf9, 6)));
    assert_eq!(f.flags, 0x401);
    assert_eq!(f.dsdt, Some(0x7fe0_1000));
}

#[test]
fn a_cut_dump_is_a_layout_error() {
    let t = madt();
    let cut = &t[..t.len() - 4];
    assert!(matches!(kernel_view(cut), Some(Err(DumpError::Layout(_)))));
    assert!(TableImage::new(&t[..20]).is_err());
    assert!(kernel_view(&sdt(b"SSDT", 1, &[])).is_none());
}
