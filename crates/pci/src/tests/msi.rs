use crate::fake::*;
use crate::msi::{MSIX_ENTRY_MASKED, X86_MSI_BASE};
use crate::*;
use hal::RegisterAccess;

#[test]
fn x86_message_composition() {
    let m = MsiMessage::x86(3, 0x41).unwrap();
    assert_eq!(m.address, 0xFEE0_3000);
    assert_eq!(m.data, 0x41);
    assert_eq!(
        MsiMessage::x86(0xFF, 0xFE).unwrap().address,
        X86_MSI_BASE | 0xFF << 12
    );
    assert_eq!(MsiMessage::x86(0, 15), Err(MsiError::ReservedVector(15)));
}

#[test]
fn edu_msi_64bit_programming() {
    let cfg = super::q35();
    let edu = Bdf::b(0, 3, 0);
    let msi = Msi::read(&cfg, edu, 0x40).unwrap();
    // hw-facts §5.1: control 0x0080, one vector, 64-bit, no masking.
    assert!(msi.is_64bit && !msi.per_vector_masking);
    assert_eq!(msi.max_vectors(), 1);
    assert_eq!(msi.data_offset(), 0x4C);
    msi.enable(&cfg, MsiMessage::x86(1, 0x30).unwrap(), 1)
        .unwrap();
    assert_eq!(cfg.peek32(edu, 0x44), Some(0xFEE0_1000));
    assert_eq!(cfg.peek32(edu, 0x48), Some(0));
    assert_eq!(cfg.peek16(edu, 0x4C), Some(0x30));
    assert_eq!(cfg.peek16(edu, 0x42), Some(0x0081));
    assert!(msi.is_enabled(&cfg));
    // INTx disabled, memory decoding untouched, bus master not turned on.
    assert_eq!(cfg.peek16(edu, 4), Some(0x0402));
    assert_eq!(msi.set_masked(&cfg, 0, true), Err(MsiError::NoMasking));
    assert_eq!(
        msi.enable(&cfg, MsiMessage::x86(1, 0x30).unwrap(), 2),
        Err(MsiError::BadVectorCount {
            requested: 2,
            supported: 1
        })
    );
    msi.disable(&cfg);
    assert_eq!(cfg.peek16(edu, 0x42), Some(0x0080));
    assert_eq!(
        Msi::read(&cfg, edu, 0x44),
        Err(MsiError::NotMsi {
            offset: 0x44,
            found: 0
        })
    );
}

#[test]
fn msi_32bit_multi_vector_with_masking() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 4, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x8086, 0x1234, 0, 0)
            .cap_ptr(0x50)
            .msi(0x50, 0, false, true, 3),
    );
    let msi = Msi::read(&cfg, b, 0x50).unwrap();
    assert_eq!(msi.max_vectors(), 8);
    assert_eq!(
        (msi.data_offset(), msi.mask_offset(), msi.pending_offset()),
        (0x58, Some(0x5C), Some(0x60))
    );
    assert_eq!(msi.upper_address_offset(), None);
    assert_eq!(
        msi.enable(
            &cfg,
            MsiMessage {
                address: 0x1_FEE0_0000,
                data: 0x40
            },
            4
        ),
        Err(MsiError::AddressTooHigh(0x1_FEE0_0000))
    );
    assert_eq!(
        msi.enable(
            &cfg,
            MsiMessage {
                address: 0xFEE0_0000,
                data: 0x1_0000
            },
            4
        ),
        Err(MsiError::DataTooWide(0x1_0000))
    );
    assert!(matches!(
        msi.enable(&cfg, MsiMessage::x86(0, 0x40).unwrap(), 3),
        Err(MsiError::BadVectorCount { .. })
    ));
    msi.enable(&cfg, MsiMessage::x86(2, 0x40).unwrap(), 4)
        .unwrap();
    assert_eq!(cfg.peek32(b, 0x54), Some(0xFEE0_2000));
    assert_eq!(cfg.peek16(b, 0x58), Some(0x40));
    // MMC 3 (8 vectors) stays, MME = 2 (4 vectors), enable.
    assert_eq!(cfg.peek16(b, 0x52), Some(0x0100 | 3 << 1 | 2 << 4 | 1));
    msi.set_masked(&cfg, 2, true).unwrap();
    msi.set_masked(&cfg, 0, true).unwrap();
    msi.set_masked(&cfg, 2, false).unwrap();
    assert_eq!(cfg.peek32(b, 0x5C), Some(0b001));
    assert!(msi.set_masked(&cfg, 8, true).is_err());
}

#[test]
fn msix_table_programming() {
    let cfg = FakeConfig::new();
    let b = Bdf::b(0, 5, 0);
    cfg.add(
        b,
        FakeFunction::endpoint(0x8086, 0x10d3, 0x02_0000, 0)
            .bar32(3, 16384, false, 0xFEBF_0000)
            .cap_ptr(0xA0)
            .msix(0xA0, 0, 5, 3, 0x0, 3, 0x2000),
    );
    let x = MsiX::read(&cfg, b, 0xA0).unwrap();
    assert_eq!(
        (
            x.table_size,
            x.table_bar,
            x.table_offset,
            x.pba_bar,
            x.pba_offset
        ),
        (5, 3, 0, 3, 0x2000)
    );
    assert_eq!((x.table_len(), x.pba_len()), (80, 8));
    assert!(x.fits(|b| (b == 3).then_some(16384)));
    assert!(!x.fits(|b| (b == 3).then_some(0x2004)));
    assert!(!x.fits(|_| None));
    let bar = FakeMmio::new(16384);
    // Hardware resets every entry masked.
    for n in 0..5 {
        bar.write32(n * 16 + 12, MSIX_ENTRY_MASKED);
    }
    bar.writes.borrow_mut().clear();
    x.enable_masked(&cfg);
    assert_eq!(cfg.peek16(b, 0xA2), Some(0xC004));
    assert_eq!(cfg.peek16(b, 4).map(|c| c & 0x400), Some(0x400));
    let m = MsiMessage {
        address: 0x1_FEE0_5000,
        data: 0x51,
    };
    x.program_entry(&bar, 2, m, false).unwrap();
    assert_eq!(bar.read32(32), 0xFEE0_5000);
    assert_eq!(bar.read32(36), 1);
    assert_eq!(bar.read32(40), 0x51);
    assert_eq!(bar.read32(44), 0);
    // Masked first, unmasked last.
    let w = bar.writes.borrow().clone();
    assert_eq!(w.first(), Some(&(44, 4, 1)));
    assert_eq!(w.last(), Some(&(44, 4, 0)));
    // Entry left masked on request.
    x.program_entry(&bar, 4, MsiMessage::x86(0, 0x52).unwrap(), true)
        .unwrap();
    assert_eq!(bar.read32(4 * 16 + 12), MSIX_ENTRY_MASKED);
    x.set_entry_masked(&bar, 4, false).unwrap();
    assert_eq!(bar.read32(4 * 16 + 12), 0);
    assert_eq!(
        x.program_entry(&bar, 5, m, false),
        Err(MsiError::EntryOutOfRange { entry: 5, size: 5 })
    );
    x.set_function_mask(&cfg, false);
    assert_eq!(cfg.peek16(b, 0xA2), Some(0x8004));
    assert!(x.is_enabled(&cfg));
    // Pending bit array.
    bar.write32(0x2000, 1 << 4);
    assert!(x.is_pending(&bar, 4).unwrap());
    assert!(!x.is_pending(&bar, 3).unwrap());
    x.disable(&cfg);
    assert_eq!(cfg.peek16(b, 0xA2), Some(0x0004));
    assert!(MsiX::read(&cfg, b, 0x40).is_err());
    for e in [
        MsiError::NoMasking,
        MsiError::AddressTooHigh(1),
        MsiError::ReservedVector(1),
    ] {
        assert!(!alloc::format!("{e}").is_empty());
    }
}
