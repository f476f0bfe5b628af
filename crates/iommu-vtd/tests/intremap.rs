//! Interrupt remapping: the driver's table, IRTEs and IEC invalidations against the
//! VT-d model's MSI path (spec chapter 5; the model caches IRTEs as hardware does).

use devmodels::vtd::{Interrupt, VtdModel, GSTS_CFIS, GSTS_IRES, GSTS_IRTPS, QEMU_CAP, QEMU_ECAP};
use hal::Bdf;
use hal::{Arena, PhysAddr, PhysMemory, RegisterAccess};
use iommu_vtd::intremap::{ioapic_rte, remappable_msi};
use iommu_vtd::regs;
use iommu_vtd::*;

type Unit<'a> = RemappingUnit<&'a VtdModel<&'a Arena>, &'a Arena, BumpFrames>;

const MIB: u64 = 1 << 20;
const EDU: Bdf = Bdf::b(0, 1, 0);
const NIC: Bdf = Bdf::b(0, 2, 0);

fn with_ir(ecap: u64, mode: InvalMode, f: impl FnOnce(&VtdModel<&Arena>, &mut Unit<'_>, &Arena)) {
    let arena = Arena::new(PhysAddr::new(0), 16 * MIB as usize);
    let model = VtdModel::new(&arena, QEMU_CAP, ecap);
    let frames = BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(16 * MIB));
    let cfg = Config {
        inval: Some(mode),
        poll_budget: 16,
        ..Config::default()
    };
    let mut unit = RemappingUnit::new(&model, &arena, frames, cfg).expect("bring-up");
    f(&model, &mut unit, &arena);
}

fn with_unit(f: impl FnOnce(&VtdModel<&Arena>, &mut Unit<'_>, &Arena)) {
    with_ir(QEMU_ECAP, InvalMode::Queued, |m, u, a| {
        u.enable_interrupt_remapping().expect("IR on");
        f(m, u, a)
    })
}

/// The device at `bdf` writes `data` to `addr` (its MSI).
fn msi(m: &VtdModel<&Arena>, bdf: Bdf, addr: u64, data: u32) -> Result<(), devmodels::vtd::Fault> {
    m.dma_write(bdf.bus, bdf.devfn(), addr, &data.to_le_bytes())
}

fn last_vector(m: &VtdModel<&Arena>) -> Option<u8> {
    m.interrupts().last().map(|i: &Interrupt| i.vector)
}

#[test]
fn enable_writes_irta_then_sirtp_then_iec_then_ire_with_cfi_off() {
    with_unit(|m, u, _| {
        let g = m.gsts();
        assert_eq!(g & (GSTS_IRES | GSTS_IRTPS), GSTS_IRES | GSTS_IRTPS);
        assert_eq!(g & GSTS_CFIS, 0, "compatibility format blocked");
        let w = m.writes();
        let irta = w.iter().position(|w| w.offset == regs::IRTA).unwrap();
        let table = u.irt_address().unwrap().as_u64();
        assert_eq!(w[irta].value, table | 7, "one page, 256 entries, EIME off");
        let sirtp = w
            .iter()
            .position(|w| w.offset == regs::GCMD && w.value & (1 << 24) != 0)
            .unwrap();
        let ire = w
            .iter()
            .position(|w| w.offset == regs::GCMD && w.value & (1 << 25) != 0)
            .unwrap();
        assert!(irta < sirtp && sirtp < ire);
        assert_eq!(w[sirtp].value & (1 << 26), 1 << 26, "QIE kept on");
        assert_eq!(m.iec_invalidations(), 1, "global IEC flush after SIRTP");
        assert_eq!(u.stats().iec_invalidations, 1);
    });
}

#[test]
fn compatibility_format_left_on_by_firmware_is_turned_off_after_ire() {
    let arena = Arena::new(PhysAddr::new(0), 16 * MIB as usize);
    let m = VtdModel::new(&arena, QEMU_CAP, QEMU_ECAP);
    m.write32(regs::GCMD, 1 << 23); // firmware: CFI on
    assert_eq!(m.gsts(), GSTS_CFIS);
    let frames = BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(16 * MIB));
    let cfg = Config {
        poll_budget: 16,
        ..Config::default()
    };
    let mut u = RemappingUnit::new(&m, &arena, frames, cfg).unwrap();
    msi(&m, EDU, 0xfee0_0000, 0x30).expect("IR off: passes");
    u.enable_interrupt_remapping().unwrap();
    assert_eq!(m.gsts() & (GSTS_IRES | GSTS_CFIS), GSTS_IRES);
    let g: Vec<u64> = m
        .writes()
        .iter()
        .filter(|w| w.offset == regs::GCMD)
        .map(|w| w.value)
        .collect();
    // ..., IRE with CFI still kept, then CFI dropped: one change per write.
    let n = g.len();
    assert_eq!(&g[n - 2..], [0x0680_0000, 0x0600_0000]);
    assert_eq!(msi(&m, EDU, 0xfee0_0000, 0x30).unwrap_err().reason, 0x25);
}

#[test]
fn enable_refuses_without_ir_or_without_queued_invalidation() {
    with_ir(0xf42, InvalMode::Queued, |_, u, _| {
        assert_eq!(
            u.enable_interrupt_remapping(),
            Err(Error::NoInterruptRemapping)
        );
    });
    with_ir(QEMU_ECAP, InvalMode::Register, |_, u, _| {
        assert_eq!(
            u.enable_interrupt_remapping(),
            Err(Error::NoQueuedInvalidation)
        );
        assert_eq!(u.alloc_irte(EDU, 1), Err(Error::InterruptRemappingOff));
    });
}

#[test]
fn msi_from_the_owner_delivers_the_programmed_vector() {
    with_unit(|m, u, _| {
        let h = u.alloc_irte(EDU, 1).unwrap();
        u.set_irte(EDU, h, Irte::msi(0x41, 2, 0)).unwrap();
        assert_eq!(
            u.irte(h).unwrap().source,
            SourceValidation::Requester { sid: 0x0008, sq: 0 },
            "source validation forced to the owner"
        );
        let (addr, data) = remappable_msi(h, None);
        msi(m, EDU, addr, data).expect("delivered");
        let i = m.interrupts()[0];
        assert_eq!((i.vector, i.dest, i.index), (0x41, 2, Some(h)));
        assert!(u.take_faults().is_empty());
    });
}

#[test]
fn msi_from_another_requester_is_a_source_id_fault() {
    with_unit(|m, u, _| {
        let h = u.alloc_irte(EDU, 1).unwrap();
        u.set_irte(EDU, h, Irte::msi(0x41, 0, 0)).unwrap();
        let (addr, data) = remappable_msi(h, None);
        let f = msi(m, NIC, addr, data).unwrap_err();
        assert_eq!((f.reason, f.recorded), (0x26, true));
        assert!(m.interrupts().is_empty(), "nothing delivered");
        let faults = u.take_faults();
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].source, NIC);
        assert_eq!(faults[0].reason, FaultReason::IR_SOURCE_ID);
        assert_eq!(faults[0].interrupt_index(), Some(h));
        assert_eq!(
            faults[0].to_string(),
            "IR fault: 00:02.0 interrupt index 0, reason 0x26 (interrupt from a requester the entry does not allow (source-id check))"
        );
        // Nor may another device reprogram or free the owner's entry.
        assert!(matches!(
            u.set_irte(NIC, h, Irte::msi(0x42, 0, 0x10)),
            Err(Error::Irte(_))
        ));
        assert!(matches!(u.free_irte(NIC, h), Err(Error::Irte(_))));
    });
}

#[test]
fn compatibility_format_msi_is_blocked_with_remapping_on() {
    // Remapping off: a compatibility-format MSI (vector 0x30 to APIC 1) passes.
    with_ir(QEMU_ECAP, InvalMode::Queued, |m, _, _| {
        msi(m, EDU, 0xfee0_1000, 0x30).expect("no remapping: passes");
        assert_eq!(m.interrupts()[0].dest, 1);
        assert_eq!(m.interrupts()[0].index, None);
    });
    with_unit(|m, u, _| {
        let f = msi(m, EDU, 0xfee0_1000, 0x30).unwrap_err();
        assert_eq!((f.reason, f.recorded), (0x25, true));
        assert!(m.interrupts().is_empty());
        let faults = u.take_faults();
        assert_eq!(faults[0].reason, FaultReason::IR_COMPAT_BLOCKED);
        assert_eq!(
            faults[0].reason.describe(),
            "compatibility-format interrupt blocked by remapping"
        );
    });
}

#[test]
fn a_changed_irte_is_used_only_after_iec_invalidation() {
    with_unit(|m, u, arena| {
        let h = u.alloc_irte(EDU, 1).unwrap();
        u.set_irte(EDU, h, Irte::msi(0x41, 0, 0)).unwrap();
        let (addr, data) = remappable_msi(h, None);
        msi(m, EDU, addr, data).unwrap();
        assert_eq!(m.iec_len(), 1, "the entry is cached");
        // Rewrite the vector in memory behind the unit's back, no invalidation.
        let pa = u.irt_address().unwrap() + h as u64 * 16;
        let new = Irte::msi(0x55, 0, 0x0008).encode();
        arena.write_u64(pa, new[0]);
        msi(m, EDU, addr, data).unwrap();
        assert_eq!(
            last_vector(m),
            Some(0x41),
            "stale: the cached IRTE is still used"
        );
        // An index-selective invalidation of a neighbour does not help.
        u.flush_iec(IecInval::Index {
            index: h + 1,
            im: 0,
        })
        .unwrap();
        msi(m, EDU, addr, data).unwrap();
        assert_eq!(last_vector(m), Some(0x41));
        u.flush_iec(IecInval::Index { index: h, im: 0 }).unwrap();
        msi(m, EDU, addr, data).unwrap();
        assert_eq!(last_vector(m), Some(0x55), "after IEC invalidation");
        // set_irte invalidates by itself.
        u.set_irte(EDU, h, Irte::msi(0x66, 0, 0)).unwrap();
        msi(m, EDU, addr, data).unwrap();
        assert_eq!(last_vector(m), Some(0x66));
        // Freeing clears P and invalidates: the next MSI is a not-present fault.
        u.free_irte(EDU, h).unwrap();
        let f = msi(m, EDU, addr, data).unwrap_err();
        assert_eq!(f.reason, 0x22);
        assert_eq!(u.take_faults()[0].reason, FaultReason::IR_ENTRY_NOT_PRESENT);
    });
}

#[test]
fn multi_message_msi_uses_subhandles_inside_the_block() {
    with_unit(|m, u, _| {
        let _one = u.alloc_irte(NIC, 1).unwrap();
        let h = u.alloc_irte(EDU, 4).unwrap();
        assert_eq!(h % 4, 0, "aligned block");
        for k in 0..4 {
            u.set_irte(EDU, h + k, Irte::msi(0x50 + k as u8, 0, 0))
                .unwrap();
        }
        let (addr, _) = remappable_msi(h, Some(0));
        msi(m, EDU, addr, 2).unwrap();
        assert_eq!(last_vector(m), Some(0x52));
        // Data bits 31:16 are reserved with SHV: fault 0x20.
        assert_eq!(msi(m, EDU, addr, 0x1_0002).unwrap_err().reason, 0x20);
        u.take_faults();
        // An index beyond the 256-entry table: 0x21.
        let (far, _) = remappable_msi(300, None);
        assert_eq!(msi(m, EDU, far, 0).unwrap_err().reason, 0x21);
        assert_eq!(u.irte_blocks().len(), 2);
    });
}

#[test]
fn fpd_suppresses_recording_of_a_source_id_fault() {
    with_unit(|m, u, _| {
        let h = u.alloc_irte(EDU, 1).unwrap();
        let e = Irte {
            fpd: true,
            ..Irte::msi(0x41, 0, 0)
        };
        u.set_irte(EDU, h, e).unwrap();
        let (addr, data) = remappable_msi(h, None);
        let f = msi(m, NIC, addr, data).unwrap_err();
        assert_eq!((f.reason, f.recorded), (0x26, false));
        assert!(u.take_faults().is_empty());
        // The RTE an IO-APIC pin would get for the same entry.
        assert_eq!(
            ioapic_rte(h, 0x41, false, false, false) >> 48,
            (h as u64) << 1 | 1
        );
        assert_eq!(m.read32(regs::FSTS), 0);
    });
}
