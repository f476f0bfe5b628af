//! The driver against the VT-d model: the model walks our tables in memory the way the
//! hardware does, so these tests ask "where does IOVA x land for device d?" (DESIGN §6).

use devmodels::vtd::{
    VtdModel, GSTS_QIES, GSTS_RTPS, GSTS_TES, GSTS_WBFS, QEMU_CAP, QEMU_CAP_AW48, QEMU_ECAP,
};
use hal::Bdf;
use hal::{Arena, PhysAddr, PhysMemory, RegisterAccess};
use iommu_vtd::regs;
use iommu_vtd::unit::Stats;
use iommu_vtd::*;

type Unit<'a> = RemappingUnit<&'a VtdModel<&'a Arena>, &'a Arena, BumpFrames>;

const MIB: u64 = 1 << 20;
/// Arena: [0, 16 MiB). Data pages live below 8 MiB, tables come from [8, 16) MiB.
const ARENA: u64 = 16 * MIB;

const EDU: Bdf = Bdf::b(0, 1, 0);
const NIC: Bdf = Bdf::b(0, 2, 0);

fn cfg(mode: InvalMode) -> Config {
    Config {
        inval: Some(mode),
        poll_budget: 16,
        ..Config::default()
    }
}

fn with_unit(cap: u64, ecap: u64, c: Config, f: impl FnOnce(&VtdModel<&Arena>, &mut Unit<'_>)) {
    let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
    let model = VtdModel::new(&arena, cap, ecap);
    let frames = BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(ARENA));
    let mut unit = RemappingUnit::new(&model, &arena, frames, c).expect("bring-up");
    f(&model, &mut unit);
}

fn both_modes(f: impl Fn(InvalMode)) {
    f(InvalMode::Register);
    f(InvalMode::Queued);
}

fn gcmd_writes(m: &VtdModel<&Arena>) -> Vec<u64> {
    m.writes()
        .iter()
        .filter(|w| w.offset == regs::GCMD)
        .map(|w| w.value)
        .collect()
}

fn pos(m: &VtdModel<&Arena>, off: usize, val: Option<u64>) -> usize {
    m.writes()
        .iter()
        .position(|w| w.offset == off && val.is_none_or(|v| v == w.value))
        .unwrap_or_else(|| panic!("no write to {off:#x}"))
}

// ----- bring-up -----

#[test]
fn bring_up_register_mode_follows_the_verified_order() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        assert_eq!(m.gsts(), GSTS_RTPS, "translation stays off until asked");
        let rt = pos(m, regs::RTADDR, Some(u.root_table().as_u64()));
        let srtp = pos(m, regs::GCMD, Some(0x4000_0000));
        let cc = pos(m, regs::CCMD, Some(0xa000_0000_0000_0000));
        let tlb = pos(m, 0xf8, None);
        let fectl = pos(m, regs::FECTL, None);
        assert!(rt < srtp && srtp < cc && cc < tlb && tlb < fectl);
        assert_eq!(m.read64(0xf8) >> 63, 0, "IVT cleared by the model");
        assert_eq!(m.invalidation_counts(), (1, 1));
        u.enable_translation().unwrap();
        assert_eq!(m.gsts(), GSTS_TES | GSTS_RTPS);
        assert_eq!(gcmd_writes(m), [0x4000_0000, 0x8000_0000]);
        // No register was written with a 64-bit access where QEMU asserts; the model
        // panics on those, so getting here proves it.
    });
}

#[test]
fn bring_up_queued_mode_enables_qi_and_keeps_it_in_later_commands() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        assert_eq!(u.inval_mode(), InvalMode::Queued);
        assert_eq!(m.gsts(), GSTS_RTPS | GSTS_QIES);
        assert!(
            m.writes().iter().all(|w| w.offset != regs::CCMD),
            "no register invalidation with QI"
        );
        assert_eq!(
            m.invalidation_counts(),
            (1, 1),
            "global cc + iotlb through the queue"
        );
        assert_eq!(u.stats().qi_waits, 2);
        u.enable_translation().unwrap();
        // TE written together with the persistent QIE (hw-facts 4.5).
        assert_eq!(gcmd_writes(m), [0x4000_0000, 0x0400_0000, 0x8400_0000]);
        assert_eq!(m.gsts(), GSTS_TES | GSTS_RTPS | GSTS_QIES);
        u.disable_translation().unwrap();
        assert_eq!(m.gsts(), GSTS_RTPS | GSTS_QIES);
    });
}

#[test]
fn auto_mode_picks_qi_when_advertised() {
    let c = Config {
        inval: None,
        ..cfg(InvalMode::Register)
    };
    with_unit(QEMU_CAP, QEMU_ECAP, c, |_, u| {
        assert_eq!(u.inval_mode(), InvalMode::Queued)
    });
    with_unit(QEMU_CAP, QEMU_ECAP & !2, c, |_, u| {
        assert_eq!(u.inval_mode(), InvalMode::Register)
    });
}

fn bring_up_err(cap: u64, ecap: u64, c: Config, prep: impl FnOnce(&VtdModel<&Arena>)) -> Error {
    let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
    let model = VtdModel::new(&arena, cap, ecap);
    prep(&model);
    let frames = BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(ARENA));
    match RemappingUnit::new(&model, &arena, frames, c) {
        Ok(_) => panic!("bring-up succeeded against a broken unit"),
        Err(e) => e,
    }
}

/// A register window nothing decodes: reads float to `v`.
struct Floating(u32);
impl RegisterAccess for Floating {
    fn read8(&self, _: usize) -> u8 {
        self.0 as u8
    }
    fn read16(&self, _: usize) -> u16 {
        self.0 as u16
    }
    fn read32(&self, _: usize) -> u32 {
        self.0
    }
    fn write8(&self, _: usize, _: u8) {}
    fn write16(&self, _: usize, _: u16) {}
    fn write32(&self, _: usize, _: u32) {}
}

#[test]
fn a_dmar_unit_that_is_not_there_is_a_clear_error() {
    for v in [0u32, u32::MAX] {
        let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
        let frames = BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(ARENA));
        match RemappingUnit::new(Floating(v), &arena, frames, cfg(InvalMode::Register)) {
            Err(e) => {
                assert_eq!(e, Error::NoUnit(v));
                assert!(e.to_string().contains("no VT-d unit answers"));
            }
            Ok(_) => panic!("bring-up succeeded with registers reading {v:#x}"),
        }
    }
}

#[test]
fn handshakes_that_never_complete_become_timeouts() {
    let e = bring_up_err(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m| {
        m.set_stuck_status(GSTS_RTPS)
    });
    assert_eq!(e, Error::Timeout("GSTS.RTPS"));
    assert_eq!(e.to_string(), "timed out waiting for GSTS.RTPS");
    let e = bring_up_err(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m| {
        m.set_stuck_status(GSTS_QIES)
    });
    assert_eq!(e, Error::Timeout("GSTS.QIES set"));
    let e = bring_up_err(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m| {
        m.set_stuck_invalidation(true)
    });
    assert_eq!(e, Error::Timeout("CCMD.ICC clear"));

    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        m.set_stuck_status(GSTS_TES);
        assert_eq!(u.enable_translation(), Err(Error::Timeout("GSTS.TES set")));
        m.set_stuck_invalidation(true);
        assert_eq!(
            u.flush_iotlb(IotlbInval::Global),
            Err(Error::Timeout("IOTLB.IVT clear"))
        );
    });
}

#[test]
fn write_buffer_flush_only_when_rwbf_and_it_can_time_out() {
    let rwbf = QEMU_CAP | 1 << 4;
    with_unit(rwbf, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        let d = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, d).unwrap();
        u.map(d, 0x1000, PhysAddr::new(0x5000), 0x1000, Perm::READ)
            .unwrap();
        assert_eq!(
            u.stats().write_buffer_flushes,
            2,
            "after attach and after map"
        );
        assert!(gcmd_writes(m).contains(&0x0800_0000));
        m.set_stuck_status(GSTS_WBFS);
        assert_eq!(
            u.map(d, 0x2000, PhysAddr::new(0x6000), 0x1000, Perm::READ),
            Err(Error::Timeout("GSTS.WBFS clear"))
        );
    });
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        let d = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, d).unwrap();
        u.map(d, 0x1000, PhysAddr::new(0x5000), 0x1000, Perm::READ)
            .unwrap();
        assert_eq!(u.stats().write_buffer_flushes, 0);
        assert!(!gcmd_writes(m).contains(&0x0800_0000));
    });
}

#[test]
fn unsupported_configurations_are_errors() {
    let c = Config {
        levels: Some(4),
        ..cfg(InvalMode::Register)
    };
    assert_eq!(
        bring_up_err(QEMU_CAP, QEMU_ECAP, c, |_| {}),
        Error::UnsupportedLevels(4)
    );
    assert_eq!(
        bring_up_err(QEMU_CAP, QEMU_ECAP & !2, cfg(InvalMode::Queued), |_| {}),
        Error::NoQueuedInvalidation
    );
    with_unit(
        QEMU_CAP,
        QEMU_ECAP & !(1 << 6),
        cfg(InvalMode::Register),
        |_, u| {
            assert_eq!(
                u.create_domain(DomainKind::PassThrough),
                Err(Error::NoPassThrough)
            );
        },
    );
    // ND = 0: 16 domain ids, id 0 reserved → 15 domains.
    with_unit(
        QEMU_CAP & !7,
        QEMU_ECAP,
        cfg(InvalMode::Register),
        |_, u| {
            for _ in 0..15 {
                u.create_domain(DomainKind::Translated).unwrap();
            }
            assert_eq!(
                u.create_domain(DomainKind::Translated),
                Err(Error::DomainIdsExhausted)
            );
        },
    );
}

// ----- where does IOVA x land for device d? -----

fn landing(levels_cap: u64, expect_levels: u8) {
    with_unit(levels_cap, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        assert_eq!(u.levels(), expect_levels);
        let d = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, d).unwrap();
        u.enable_translation().unwrap();
        let iova = u.alloc_iova(d, 0x3000, (1 << 28) - 1).unwrap();
        assert!(iova + 0x4000 <= 1 << 28);
        u.map(
            d,
            iova,
            PhysAddr::new(0x20_0000 + 0x7000),
            0x3000,
            Perm::READ | Perm::WRITE,
        )
        .unwrap();
        for off in [0u64, 0x10, 0x1ff8, 0x2abc] {
            assert_eq!(
                m.dma(0, EDU.devfn(), iova + off, 4, true).unwrap(),
                PhysAddr::new(0x20_7000 + off),
                "iova {:#x}",
                iova + off
            );
        }
        m.dma_write(0, EDU.devfn(), iova + 0xffe, b"hello").unwrap();
        assert_eq!(m.memory().to_vec(PhysAddr::new(0x20_7ffe), 5), b"hello");
        // 2 MiB page (CAP.SLLPS bit 0).
        u.map(
            d,
            0x4000_0000,
            PhysAddr::new(0x40_0000),
            2 * MIB,
            Perm::READ,
        )
        .unwrap();
        assert_eq!(
            m.dma(0, EDU.devfn(), 0x4012_3456, 1, false).unwrap(),
            PhysAddr::new(0x52_3456)
        );
        assert_eq!(u.translate(EDU, 0x4012_3456).unwrap().page_size, 2 * MIB);
        // Read-only: a write faults with reason 5.
        let f = m.dma(0, EDU.devfn(), 0x4000_0000, 4, true).unwrap_err();
        assert_eq!((f.reason, f.write), (5, true));
        // High IOVAs: only 4-level tables reach beyond 2^39.
        let high = 1u64 << 40;
        if expect_levels == 4 {
            u.map(d, high, PhysAddr::new(0x30_0000), 0x1000, Perm::READ)
                .unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), high + 8, 8, false).unwrap(),
                PhysAddr::new(0x30_0008)
            );
        } else {
            assert_eq!(
                u.map(d, high, PhysAddr::new(0x30_0000), 0x1000, Perm::READ),
                Err(Error::BeyondAddressWidth(high + 0xfff))
            );
            assert_eq!(m.dma(0, EDU.devfn(), high, 8, false).unwrap_err().reason, 4);
        }
    });
}

#[test]
fn iova_lands_where_mapped_three_levels() {
    landing(QEMU_CAP, 3);
}

#[test]
fn iova_lands_where_mapped_four_levels() {
    landing(QEMU_CAP_AW48, 4);
}

#[test]
fn no_large_pages_without_sllps() {
    with_unit(
        QEMU_CAP & !(0xf << 34),
        QEMU_ECAP,
        cfg(InvalMode::Register),
        |m, u| {
            let d = u.create_domain(DomainKind::Translated).unwrap();
            u.attach(EDU, d).unwrap();
            u.enable_translation().unwrap();
            u.map(
                d,
                0x4000_0000,
                PhysAddr::new(0x40_0000),
                2 * MIB,
                Perm::READ,
            )
            .unwrap();
            assert_eq!(u.translate(EDU, 0x4000_0000).unwrap().page_size, 0x1000);
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x401f_f000, 1, false).unwrap(),
                PhysAddr::new(0x5f_f000)
            );
        },
    );
}

// ----- isolation and faults -----

#[test]
fn devices_are_isolated_and_faults_name_the_culprit() {
    let c = Config {
        fault_msi: Some((0xfee0_0000, 0x41)),
        ..cfg(InvalMode::Queued)
    };
    with_unit(QEMU_CAP, QEMU_ECAP, c, |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        let b = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.attach(NIC, b).unwrap();
        u.enable_translation().unwrap();
        let rw = Perm::READ | Perm::WRITE;
        u.map(a, 0x10_0000, PhysAddr::new(0x1000), 0x1000, rw)
            .unwrap();
        u.map(a, 0x20_0000, PhysAddr::new(0x2000), 0x1000, rw)
            .unwrap();
        u.map(b, 0x10_0000, PhysAddr::new(0x3000), 0x1000, rw)
            .unwrap();
        // Same IOVA, different devices, different pages.
        assert_eq!(
            m.dma(0, EDU.devfn(), 0x10_0000, 8, true).unwrap(),
            PhysAddr::new(0x1000)
        );
        assert_eq!(
            m.dma(0, NIC.devfn(), 0x10_0000, 8, true).unwrap(),
            PhysAddr::new(0x3000)
        );
        // B cannot reach A's other page.
        let f = m.dma(0, NIC.devfn(), 0x20_0010, 8, false).unwrap_err();
        assert!(f.recorded);
        assert_eq!(m.msis(), [(0xfee0_0000, 0x41)], "fault event MSI sent");
        assert!(u.fault_status().contains(regs::Fsts::PPF));
        // A second fault from B while F is set is compressed, one from A overflows
        // (QEMU has one fault recording register).
        assert!(
            !m.dma(0, NIC.devfn(), 0x30_0000, 8, true)
                .unwrap_err()
                .recorded
        );
        assert!(
            !m.dma(0, EDU.devfn(), 0x30_0000, 8, true)
                .unwrap_err()
                .recorded
        );
        assert!(u.fault_status().contains(regs::Fsts::PFO));
        let faults = u.take_faults();
        assert_eq!(faults.len(), 1);
        let r = faults[0];
        assert_eq!(r.source, NIC);
        assert_eq!(r.addr, 0x20_0000);
        assert!(!r.write);
        assert_eq!(r.reason, FaultReason::READ_DENIED);
        assert_eq!(r.pasid, None);
        assert_eq!(
            r.to_string(),
            "DMAR fault: 00:02.0 read at 0x200000, reason 0x6 (read from a page without read permission (or not present))"
        );
        // Cleared properly: F and PFO gone, so the next fault is recorded.
        assert_eq!(
            u.fault_status() & (regs::Fsts::PPF | regs::Fsts::PFO),
            regs::Fsts::empty()
        );
        let f = m.dma(0, EDU.devfn(), 0x30_0000, 8, true).unwrap_err();
        assert!(f.recorded);
        let faults = u.take_faults();
        assert_eq!(faults.len(), 1);
        assert_eq!(
            (faults[0].source, faults[0].addr, faults[0].write),
            (EDU, 0x30_0000, true)
        );
        assert_eq!(faults[0].reason, FaultReason::WRITE_DENIED);
        assert!(u.take_faults().is_empty());
    });
}

#[test]
fn the_read_and_write_walks_name_the_reason_the_unit_records() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        let d = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, d).unwrap();
        u.enable_translation().unwrap();
        u.map(d, 0x10_0000, PhysAddr::new(0x1000), 0x1000, Perm::READ)
            .unwrap();
        u.map(
            d,
            0x20_0000,
            PhysAddr::new(0x2000),
            0x1000,
            Perm::READ | Perm::WRITE,
        )
        .unwrap();
        // (iova, write): the model's recorded reason must match the walk's.
        for (iova, write) in [
            (0x30_0000u64, true),
            (0x30_0000, false),
            (0x10_0010, true),
            (0x10_0010, false),
            (0x20_0010, true),
        ] {
            let walk = if write {
                u.translate_write(EDU, iova)
            } else {
                u.translate(EDU, iova)
            };
            match m.dma(0, EDU.devfn(), iova, 4, write) {
                Ok(pa) => assert_eq!(walk.map(|t| t.pa), Ok(pa), "{iova:#x} write={write}"),
                Err(f) => {
                    assert_eq!(
                        walk.map(|t| t.pa),
                        Err(FaultReason(f.reason)),
                        "{iova:#x} write={write}"
                    );
                    u.take_faults();
                }
            }
        }
        assert_eq!(
            u.translate_write(EDU, 0x30_0000),
            Err(FaultReason::WRITE_DENIED)
        );
        assert_eq!(
            u.translate_write(EDU, 0x10_0000),
            Err(FaultReason::WRITE_DENIED)
        );
        assert_eq!(u.translate(EDU, 0x30_0000), Err(FaultReason::READ_DENIED));
    });
}

#[test]
fn drain_faults_hands_records_over_and_reports_overflow() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.attach(NIC, a).unwrap();
        u.enable_translation().unwrap();
        // Nothing recorded: nothing handed over, no overflow.
        let mut got = Vec::new();
        assert!(!u.drain_faults(|r| got.push(r)));
        assert!(got.is_empty());
        assert!(
            m.dma(0, EDU.devfn(), 0x10_0000, 8, true)
                .unwrap_err()
                .recorded
        );
        // QEMU has one recording register: a fault from another device overflows.
        assert!(
            !m.dma(0, NIC.devfn(), 0x20_0000, 8, false)
                .unwrap_err()
                .recorded
        );
        assert!(u.drain_faults(|r| got.push(r)), "PFO was set");
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].source, got[0].addr, got[0].write),
            (EDU, 0x10_0000, true)
        );
        // Cleared: the next fault is recorded, and no overflow is reported again.
        assert!(
            m.dma(0, NIC.devfn(), 0x20_0000, 8, false)
                .unwrap_err()
                .recorded
        );
        got.clear();
        assert!(!u.drain_faults(|r| got.push(r)));
        assert_eq!((got.len(), got[0].source), (1, NIC));
    });
}

#[test]
fn unattached_devices_fault_with_root_or_context_not_present() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.enable_translation().unwrap();
        assert_eq!(
            m.dma(1, 0, 0x1000, 4, false).unwrap_err().reason,
            1,
            "bus 1 has no root entry"
        );
        u.take_faults();
        assert_eq!(
            m.dma(0, NIC.devfn(), 0x1000, 4, false).unwrap_err().reason,
            2
        );
        let r = u.take_faults();
        assert_eq!(
            (r[0].source, r[0].reason),
            (NIC, FaultReason::CONTEXT_NOT_PRESENT)
        );
        // The software walk agrees on the reasons.
        assert_eq!(
            u.translate(Bdf::b(1, 0, 0), 0x1000),
            Err(FaultReason::ROOT_NOT_PRESENT)
        );
        assert_eq!(
            u.translate(NIC, 0x1000),
            Err(FaultReason::CONTEXT_NOT_PRESENT)
        );
    });
}

#[test]
fn detach_blocks_dma_at_once() {
    both_modes(|mode| {
        with_unit(QEMU_CAP, QEMU_ECAP, cfg(mode), |m, u| {
            let a = u.create_domain(DomainKind::Translated).unwrap();
            u.attach(EDU, a).unwrap();
            u.enable_translation().unwrap();
            u.map(a, 0x1000, PhysAddr::new(0x9000), 0x1000, Perm::READ)
                .unwrap();
            assert!(m.dma(0, EDU.devfn(), 0x1000, 4, false).is_ok());
            assert!(m.context_cache_len() == 1 && m.iotlb_len() == 1);
            assert_eq!(u.detach(EDU), Ok(a));
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x1000, 4, false).unwrap_err().reason,
                2
            );
            assert_eq!(u.detach(EDU), Err(Error::NotAttached(EDU)));
            assert_eq!(u.destroy_domain(a), Ok(()));
        });
    });
}

// ----- invalidation -----

#[test]
fn stale_iotlb_entry_stays_until_the_right_invalidation() {
    both_modes(|mode| {
        with_unit(QEMU_CAP, QEMU_ECAP, cfg(mode), |m, u| {
            let a = u.create_domain(DomainKind::Translated).unwrap();
            u.attach(EDU, a).unwrap();
            u.enable_translation().unwrap();
            let rw = Perm::READ | Perm::WRITE;
            u.map(a, 0x10_0000, PhysAddr::new(0x1000), 0x1000, rw)
                .unwrap();
            u.map(a, 0x20_0000, PhysAddr::new(0x2000), 0x1000, rw)
                .unwrap();
            assert!(m.dma(0, EDU.devfn(), 0x10_0000, 4, true).is_ok());
            assert!(m.dma(0, EDU.devfn(), 0x20_0000, 4, true).is_ok());
            let info = u.unmap(a, 0x10_0000, 0x1000).unwrap();
            assert_eq!(
                info.inval,
                IotlbInval::Page {
                    did: a.0,
                    addr: 0x10_0000,
                    am: 0,
                    ih: false
                }
            );
            // Gone from the tables, but the model still translates from its IOTLB.
            assert!(u.translate(EDU, 0x10_0000).is_err());
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x10_0000, 4, true).unwrap(),
                PhysAddr::new(0x1000),
                "{mode:?}: stale entry must be visible before invalidation"
            );
            // An invalidation for another domain does not help.
            u.flush_iotlb(IotlbInval::Domain(a.0 + 1)).unwrap();
            assert!(m.dma(0, EDU.devfn(), 0x10_0000, 4, true).is_ok());
            u.flush_unmap(&info).unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x10_0000, 4, true)
                    .unwrap_err()
                    .reason,
                5
            );
            // Page-selective: the other page's cached entry survived.
            assert_eq!(m.iotlb_len(), 1);
            assert!(m.dma(0, EDU.devfn(), 0x20_0000, 4, true).is_ok());
            // Remapping an IOVA to another page is invisible until invalidated, too.
            let info = u.unmap(a, 0x20_0000, 0x1000).unwrap();
            u.map(a, 0x20_0000, PhysAddr::new(0x7000), 0x1000, rw)
                .unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x20_0000, 4, true).unwrap(),
                PhysAddr::new(0x2000)
            );
            u.flush_unmap(&info).unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x20_0000, 4, true).unwrap(),
                PhysAddr::new(0x7000)
            );
        });
    });
}

#[test]
fn stale_context_entry_stays_until_context_invalidation() {
    both_modes(|mode| {
        with_unit(QEMU_CAP, QEMU_ECAP, cfg(mode), |m, u| {
            let a = u.create_domain(DomainKind::Translated).unwrap();
            u.attach(EDU, a).unwrap();
            u.attach(NIC, a).unwrap();
            u.enable_translation().unwrap();
            u.map(a, 0x1000, PhysAddr::new(0x5000), 0x1000, Perm::READ)
                .unwrap();
            assert!(m.dma(0, EDU.devfn(), 0x1000, 4, false).is_ok());
            assert!(m.dma(0, NIC.devfn(), 0x1000, 4, false).is_ok());
            // Clear both context entries behind the driver's back.
            let re = m.memory().read_u64(u.root_table());
            let ct = PhysAddr::new(re & !0xfff);
            for bdf in [EDU, NIC] {
                m.memory().write_u64(ct + bdf.devfn() as u64 * 16, 0);
            }
            assert!(
                m.dma(0, EDU.devfn(), 0x1000, 4, false).is_ok(),
                "cached context entry"
            );
            u.flush_context(ContextInval::Device {
                did: a.0,
                sid: EDU.sid(),
                fm: 0,
            })
            .unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x1000, 4, false).unwrap_err().reason,
                2
            );
            assert!(
                m.dma(0, NIC.devfn(), 0x1000, 4, false).is_ok(),
                "device-selective spared NIC"
            );
            u.flush_context(ContextInval::Global).unwrap();
            assert_eq!(
                m.dma(0, NIC.devfn(), 0x1000, 4, false).unwrap_err().reason,
                2
            );
        });
    });
}

#[test]
fn qi_errors_are_reported_and_the_queue_recovers() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.enable_translation().unwrap();
        u.map(a, 0x1000, PhysAddr::new(0x5000), 0x1000, Perm::READ)
            .unwrap();
        assert!(m.dma(0, EDU.devfn(), 0x1000, 4, false).is_ok());
        let info = u.unmap(a, 0x1000, 0x1000).unwrap();
        let head = (m.read64(regs::IQH) >> 4) as u32;
        m.inject_queue_error();
        assert_eq!(u.flush_unmap(&info), Err(Error::QueueError(head)));
        assert_eq!(
            u.fault_status() & regs::Fsts::IQE,
            regs::Fsts::empty(),
            "IQE cleared"
        );
        assert!(
            m.dma(0, EDU.devfn(), 0x1000, 4, false).is_ok(),
            "not invalidated"
        );
        // The queue works again: retry.
        u.flush_unmap(&info).unwrap();
        assert_eq!(
            m.dma(0, EDU.devfn(), 0x1000, 4, false).unwrap_err().reason,
            6
        );
        // A queue that never runs is a timeout, not a hang.
        m.set_stuck_invalidation(true);
        assert_eq!(
            u.flush_iotlb(IotlbInval::Global),
            Err(Error::Timeout("invalidation wait descriptor"))
        );
    });
}

#[test]
fn oversized_page_masks_are_downgraded_before_reaching_the_queue() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        // AM above CAP.MAMV is a reserved-field violation in a descriptor; the unit
        // downgrades such requests to domain-selective, so it never reaches the queue.
        u.flush_iotlb(IotlbInval::Page {
            did: 1,
            addr: 0,
            am: 30,
            ih: false,
        })
        .unwrap();
        let before = m.invalidation_counts();
        u.flush_iotlb(IotlbInval::Global).unwrap();
        assert_eq!(m.invalidation_counts().1, before.1 + 1);
        assert_eq!(u.fault_status() & regs::Fsts::IQE, regs::Fsts::empty());
    });
}

#[test]
fn lazy_flush_queue_releases_iovas_only_after_a_domain_flush() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.enable_translation().unwrap();
        let mask = (1 << 14) - 1; // 4 pages below 16 KiB, one of which (0) is never used
        let mut got = Vec::new();
        while let Ok(x) = u.alloc_iova(a, 0x1000, mask) {
            u.map(a, x, PhysAddr::new(0x1_0000 + x), 0x1000, Perm::READ)
                .unwrap();
            got.push(x);
        }
        assert_eq!(got, [0x3000, 0x2000, 0x1000]);
        assert!(m.dma(0, EDU.devfn(), 0x2000, 4, false).is_ok());
        u.unmap(a, 0x2000, 0x1000).unwrap();
        assert_eq!(u.queue_iova(a, 0x2000, 0), Ok(0x1000));
        assert!(u.alloc_iova(a, 0x1000, mask).is_err(), "reuse before flush");
        assert_eq!(u.flush_queue_tick(a, 1), Ok(false));
        assert_eq!(u.flush_queue_tick(a, 10), Ok(true), "delay bound reached");
        assert_eq!(
            m.dma(0, EDU.devfn(), 0x2000, 4, false).unwrap_err().reason,
            6
        );
        assert_eq!(u.alloc_iova(a, 0x1000, mask), Ok(0x2000));
    });
}

// ----- passthrough, identity, RMRR -----

#[test]
fn passthrough_and_identity_domains() {
    for cap in [QEMU_CAP, QEMU_CAP_AW48] {
        with_unit(cap, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
            let pt = u.create_domain(DomainKind::PassThrough).unwrap();
            let id = u
                .create_identity_domain(&[(PhysAddr::new(0), 8 * MIB)])
                .unwrap();
            u.attach(EDU, pt).unwrap();
            u.attach(NIC, id).unwrap();
            u.enable_translation().unwrap();
            // Pass-through: everything, even beyond RAM, is untranslated (and the
            // context entry's AW was acceptable to the model, else reason 3).
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x12_3456, 4, true).unwrap(),
                PhysAddr::new(0x12_3456)
            );
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x1_0000_0000, 4, true).unwrap(),
                PhysAddr::new(0x1_0000_0000)
            );
            // Identity: RAM 1:1 with 2 MiB pages, nothing beyond.
            assert_eq!(
                m.dma(0, NIC.devfn(), 0x30_1234, 4, true).unwrap(),
                PhysAddr::new(0x30_1234)
            );
            assert_eq!(
                m.dma(0, NIC.devfn(), 0x7f_fffc, 4, false).unwrap(),
                PhysAddr::new(0x7f_fffc)
            );
            assert_eq!(u.translate(NIC, 0x30_1234).unwrap().page_size, 2 * MIB);
            assert_eq!(
                m.dma(0, NIC.devfn(), 0x80_0000, 4, false)
                    .unwrap_err()
                    .reason,
                6
            );
            assert_eq!(u.translate(EDU, 0x5000).unwrap().page_size, 0);
        });
    }
}

#[test]
fn rmrr_ranges_are_identity_mapped_for_their_devices_only() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        u.add_rmrr(&[NIC], 0x7_0000, 0x1800);
        let a = u.create_domain(DomainKind::Translated).unwrap();
        let b = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.attach(NIC, b).unwrap();
        u.enable_translation().unwrap();
        assert_eq!(
            m.dma(0, NIC.devfn(), 0x7_0010, 4, true).unwrap(),
            PhysAddr::new(0x7_0010)
        );
        assert_eq!(
            m.dma(0, NIC.devfn(), 0x7_1ff0, 4, true).unwrap(),
            PhysAddr::new(0x7_1ff0)
        );
        assert_eq!(
            m.dma(0, NIC.devfn(), 0x7_2000, 4, true).unwrap_err().reason,
            5
        );
        assert_eq!(
            m.dma(0, EDU.devfn(), 0x7_0010, 4, true).unwrap_err().reason,
            5
        );
        // The RMRR range is never handed out as an IOVA in NIC's domain.
        while let Ok(x) = u.alloc_iova(b, 0x1000, 0x7_ffff) {
            assert!(!(0x7_0000..0x7_2000).contains(&x), "{x:#x}");
        }
        // Re-attaching (to another domain) maps it there as well.
        u.attach(NIC, a).unwrap();
        assert_eq!(
            m.dma(0, NIC.devfn(), 0x7_0010, 4, true).unwrap(),
            PhysAddr::new(0x7_0010)
        );
    });
}

// ----- cache coherency -----

#[test]
fn non_coherent_walks_flush_every_written_entry() {
    let run = |ecap: u64| -> (Stats, u64) {
        let mut out = (Stats::default(), 0);
        with_unit(QEMU_CAP, ecap, cfg(InvalMode::Register), |m, u| {
            let a = u.create_domain(DomainKind::Translated).unwrap();
            let s0 = u.stats();
            let h0 = hal::barrier::host_clflush_stats();
            u.map(a, 0x1000, PhysAddr::new(0x5000), 0x1000, Perm::READ)
                .unwrap();
            let mut d = u.stats();
            d.cache_flushes -= s0.cache_flushes;
            out = (d, hal::barrier::host_clflush_stats().calls - h0.calls);
            u.attach(EDU, a).unwrap();
            u.enable_translation().unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x1000, 1, false).unwrap(),
                PhysAddr::new(0x5000)
            );
        });
        out
    };
    // 3 levels, one 4 KiB page: two new tables (levels 2 and 1) zeroed and flushed,
    // two non-leaf entries and one leaf written and flushed.
    let (s, clflushes) = run(QEMU_ECAP);
    assert_eq!(s.cache_flushes, 5);
    assert_eq!(clflushes, 5);
    let (s, clflushes) = run(QEMU_ECAP | 1);
    assert_eq!((s.cache_flushes, clflushes), (0, 0));
}

#[test]
fn map_errors_leave_nothing_behind() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |_, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.map(a, 0x3000, PhysAddr::new(0x9000), 0x1000, Perm::READ)
            .unwrap();
        assert_eq!(
            u.map(a, 0x1000, PhysAddr::new(0x5000), 0x3000, Perm::READ),
            Err(Error::AlreadyMapped(0x3000))
        );
        assert!(u.translate(EDU, 0x1000).is_err(), "partial map rolled back");
        assert!(u.translate(EDU, 0x3000).is_ok());
        assert_eq!(
            u.map(a, 0x1001, PhysAddr::new(0x5000), 0x1000, Perm::READ),
            Err(Error::Misaligned)
        );
        assert_eq!(u.unmap(a, 0x5000, 0x1000), Err(Error::NotMapped(0x5000)));
        // Only whole 2 MiB pages unmap.
        u.map(a, 0x40_0000, PhysAddr::new(0x40_0000), 2 * MIB, Perm::READ)
            .unwrap();
        assert_eq!(
            u.unmap(a, 0x40_0000, 0x1000),
            Err(Error::NotMapped(0x40_0000))
        );
        let info = u.unmap(a, 0x40_0000, 2 * MIB).unwrap();
        assert_eq!(
            info.inval,
            IotlbInval::Page {
                did: a.0,
                addr: 0x40_0000,
                am: 9,
                ih: false
            }
        );
        assert_eq!(u.destroy_domain(a), Err(Error::DomainBusy(a)));
    });
}

#[test]
fn dma_api_path_strict_and_lazy() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.enable_translation().unwrap();
        let edu_mask = (1u64 << 28) - 1;
        // A buffer not page aligned, crossing a page boundary.
        let pa = PhysAddr::new(0x12_3f80);
        let iova = u
            .map_dma(a, pa, 0x100, Perm::READ | Perm::WRITE, edu_mask)
            .unwrap();
        assert_eq!(iova & 0xfff, 0xf80);
        assert!(iova + 0x100 <= 1 << 28);
        m.dma_write(0, EDU.devfn(), iova, &[0xa5; 0x100]).unwrap();
        assert_eq!(
            m.memory().to_vec(PhysAddr::new(0x12_4000), 0x80),
            [0xa5; 0x80]
        );
        // Strict: unmapped and invalidated at once, and the IOVA is reusable.
        u.unmap_dma(a, iova, 0x100, 0, true).unwrap();
        assert_eq!(m.dma(0, EDU.devfn(), iova, 4, false).unwrap_err().reason, 6);
        let again = u.map_dma(a, pa, 0x100, Perm::READ, edu_mask).unwrap();
        assert_eq!(again, iova, "strict mode frees after its own flush");
        // Lazy: the stale translation may live until the queue flushes, and the IOVA
        // is not handed out again before that.
        assert!(m.dma(0, EDU.devfn(), again, 4, false).is_ok());
        u.unmap_dma(a, again, 0x100, 1, false).unwrap();
        assert!(
            m.dma(0, EDU.devfn(), again, 4, false).is_ok(),
            "lazy: still cached"
        );
        let other = u.map_dma(a, pa, 0x100, Perm::READ, edu_mask).unwrap();
        assert_ne!(other & !0xfff, again & !0xfff);
        assert_eq!(u.flush_queue_tick(a, 100), Ok(true));
        assert_eq!(
            m.dma(0, EDU.devfn(), again, 4, false).unwrap_err().reason,
            6
        );
        // A failed map gives its IOVA back at once.
        let probe = u
            .iova_allocator(a)
            .unwrap()
            .clone()
            .alloc(0x1000, 1 << 28)
            .unwrap()
            .as_u64();
        u.map(a, probe, PhysAddr::new(0x1000), 0x1000, Perm::READ)
            .unwrap();
        assert_eq!(
            u.map_dma(a, pa, 0x10, Perm::READ, edu_mask),
            Err(Error::AlreadyMapped(probe))
        );
        let _ = u.unmap(a, probe, 0x1000).unwrap();
        assert_eq!(
            u.map_dma(a, pa, 0x10, Perm::READ, edu_mask).unwrap() & !0xfff,
            probe,
            "cancelled IOVA reused"
        );
    });
}

/// The order the `crates/dma` backend uses: unmap → flush_iotlb(range) → free_iova.
#[test]
fn dma_crate_backend_order() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.enable_translation().unwrap();
        let iova = u.alloc_iova(a, 0x2000, u32::MAX as u64).unwrap();
        u.map(a, iova, PhysAddr::new(0x4_0000), 0x2000, Perm::WRITE)
            .unwrap();
        assert!(m.dma(0, EDU.devfn(), iova + 0x1000, 4, true).is_ok());
        u.unmap(a, iova, 0x2000).unwrap();
        assert!(
            m.dma(0, EDU.devfn(), iova + 0x1000, 4, true).is_ok(),
            "stale"
        );
        u.flush_iotlb_range(a, iova, 0x2000).unwrap();
        assert_eq!(
            m.dma(0, EDU.devfn(), iova + 0x1000, 4, true)
                .unwrap_err()
                .reason,
            5
        );
        u.free_iova(a, iova).unwrap();
        assert_eq!(u.alloc_iova(a, 0x2000, u32::MAX as u64), Ok(iova));
    });
}

#[test]
fn caching_mode_invalidates_on_not_present_to_present() {
    let cm = QEMU_CAP | 1 << 7;
    both_modes(|mode| {
        with_unit(cm, QEMU_ECAP, cfg(mode), |m, u| {
            let a = u.create_domain(DomainKind::Translated).unwrap();
            let before = m.invalidation_counts();
            u.attach(EDU, a).unwrap();
            assert_eq!(m.invalidation_counts(), (before.0 + 1, before.1 + 1));
            u.map(a, 0x1000, PhysAddr::new(0x5000), 0x1000, Perm::READ)
                .unwrap();
            assert_eq!(m.invalidation_counts(), (before.0 + 1, before.1 + 2));
            u.enable_translation().unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), 0x1000, 4, false).unwrap(),
                PhysAddr::new(0x5000)
            );
        });
    });
    // Without caching mode, nothing is invalidated for new entries.
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Register), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        let before = m.invalidation_counts();
        u.attach(EDU, a).unwrap();
        u.map(a, 0x1000, PhysAddr::new(0x5000), 0x1000, Perm::READ)
            .unwrap();
        assert_eq!(m.invalidation_counts(), before);
    });
}

mod random_ops {
    use super::*;
    use proptest::prelude::*;
    use std::collections::btree_map::{BTreeMap, Entry};

    #[derive(Debug, Clone)]
    enum Op {
        /// Map `pages` pages (or one 2 MiB page) at slot `slot`.
        Map {
            slot: u8,
            big: bool,
            ro: bool,
        },
        Unmap {
            slot: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..16, proptest::bool::weighted(0.2), any::<bool>())
                .prop_map(|(slot, big, ro)| Op::Map { slot, big, ro }),
            (0u8..16).prop_map(|slot| Op::Unmap { slot }),
        ]
    }

    /// IOVA of a slot: spread over the whole address space of the table depth, 2 MiB
    /// aligned so either page size fits.
    fn slot_iova(slot: u8, levels: u8) -> u64 {
        let top = 1u64 << (12 + 9 * levels as u32);
        (top / 16 * slot as u64 + (slot as u64 % 3) * 0x20_0000) & !(0x1f_ffff)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// After any sequence of map/unmap (each unmap properly invalidated), every
        /// slot's IOVA lands exactly where a plain reference map says, with the
        /// reference permissions, according to the model's own walk.
        #[test]
        fn model_walk_agrees_with_reference(ops in proptest::collection::vec(op(), 1..24),
                                            four in any::<bool>(), queued in any::<bool>()) {
            let cap = if four { QEMU_CAP_AW48 } else { QEMU_CAP };
            let mode = if queued { InvalMode::Queued } else { InvalMode::Register };
            with_unit(cap, QEMU_ECAP, cfg(mode), |m, u| {
                let d = u.create_domain(DomainKind::Translated).unwrap();
                u.attach(EDU, d).unwrap();
                u.enable_translation().unwrap();
                let levels = u.levels();
                // slot → (pa, len, read-only)
                let mut reference: BTreeMap<u8, (u64, u64, bool)> = BTreeMap::new();
                for o in ops {
                    match o {
                        Op::Map { slot, big, ro } => {
                            let iova = slot_iova(slot, levels);
                            let (pa, len) = if big {
                                (0x40_0000, 0x20_0000)
                            } else {
                                (0x1_0000 + slot as u64 * 0x2000, 0x2000)
                            };
                            let perm = if ro { Perm::READ } else { Perm::READ | Perm::WRITE };
                            let r = u.map(d, iova, PhysAddr::new(pa), len, perm);
                            match reference.entry(slot) {
                                Entry::Occupied(_) => {
                                    assert!(matches!(r, Err(Error::AlreadyMapped(_))), "{r:?}")
                                }
                                Entry::Vacant(e) => {
                                    r.unwrap();
                                    e.insert((pa, len, ro));
                                }
                            }
                        }
                        Op::Unmap { slot } => {
                            let iova = slot_iova(slot, levels);
                            match reference.remove(&slot) {
                                Some((_, len, _)) => {
                                    let info = u.unmap(d, iova, len).unwrap();
                                    u.flush_unmap(&info).unwrap();
                                }
                                None => assert!(u.unmap(d, iova, 0x1000).is_err()),
                            }
                        }
                    }
                    for slot in 0..16u8 {
                        let iova = slot_iova(slot, levels);
                        for off in [0u64, 0x1ffc] {
                            let got = m.dma(0, EDU.devfn(), iova + off, 4, false);
                            match reference.get(&slot) {
                                Some(&(pa, _, ro)) => {
                                    assert_eq!(got.unwrap(), PhysAddr::new(pa + off));
                                    let w = m.dma(0, EDU.devfn(), iova + off, 4, true);
                                    assert_eq!(w.is_err(), ro, "write permission");
                                }
                                None => assert_eq!(got.unwrap_err().reason, 6),
                            }
                        }
                    }
                    u.take_faults();
                }
            });
        }
    }
}

/// The leaf-table shortcut of consecutive maps must never outlive its domain:
/// a domain destroyed and a new one given the same id walks its own tables.
#[test]
fn consecutive_maps_and_a_reused_domain_id_land_right() {
    with_unit(QEMU_CAP, QEMU_ECAP, cfg(InvalMode::Queued), |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.enable_translation().unwrap();
        // Pages one after another in one 2 MiB, then one in the next 2 MiB, then back.
        let base = 0x20_0000u64;
        for (i, iova) in [
            base,
            base + 0x1000,
            base + 0x2000,
            base + 0x20_0000,
            base + 0x3000,
        ]
        .into_iter()
        .enumerate()
        {
            let pa = 0x10_0000 + i as u64 * 0x1000;
            u.map(a, iova, PhysAddr::new(pa), 0x1000, Perm::READ)
                .unwrap();
            assert_eq!(
                m.dma(0, EDU.devfn(), iova + 8, 4, false),
                Ok(PhysAddr::new(pa + 8))
            );
        }
        u.unmap(a, base + 0x1000, 0x1000).unwrap();
        u.flush_iotlb_range(a, base + 0x1000, 0x1000).unwrap();
        assert_eq!(
            m.dma(0, EDU.devfn(), base + 0x1000, 4, false)
                .unwrap_err()
                .reason,
            6
        );
        assert!(m.dma(0, EDU.devfn(), base, 4, false).is_ok());
        u.detach(EDU).unwrap();
        u.destroy_domain(a).unwrap();
        let b = u.create_domain(DomainKind::Translated).unwrap();
        assert_eq!(b, a, "the id is reused");
        u.attach(EDU, b).unwrap();
        u.map(
            b,
            base + 0x4000,
            PhysAddr::new(0x30_0000),
            0x1000,
            Perm::READ,
        )
        .unwrap();
        assert_eq!(
            m.dma(0, EDU.devfn(), base + 0x4000, 4, false),
            Ok(PhysAddr::new(0x30_0000))
        );
        assert_eq!(m.dma(0, EDU.devfn(), base, 4, false).unwrap_err().reason, 6);
    });
}

/// Lazy mode's delay bound holds without a further unmap: the timer's
/// `flush_queues_due` invalidates an old queue, and only an old or full one.
#[test]
fn flush_queues_due_bounds_the_delay_without_another_unmap() {
    let c = Config {
        flush_queue_len: 8,
        flush_queue_delay: 10,
        ..cfg(InvalMode::Queued)
    };
    with_unit(QEMU_CAP, QEMU_ECAP, c, |m, u| {
        let a = u.create_domain(DomainKind::Translated).unwrap();
        let idle = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, a).unwrap();
        u.enable_translation().unwrap();
        let iova = u
            .map_dma(
                a,
                PhysAddr::new(0x12_0000),
                0x100,
                Perm::READ,
                u32::MAX as u64,
            )
            .unwrap();
        assert!(m.dma(0, EDU.devfn(), iova, 4, false).is_ok());
        u.unmap_dma(a, iova, 0x100, 5, false).unwrap();
        assert!(
            m.dma(0, EDU.devfn(), iova, 4, false).is_ok(),
            "lazy: still cached"
        );
        assert_eq!(u.flush_queues_due(14), Ok(0), "flushed before its delay");
        assert!(m.dma(0, EDU.devfn(), iova, 4, false).is_ok());
        assert_eq!(
            u.flush_queues_due(15),
            Ok(1),
            "the idle domain was flushed too"
        );
        assert_eq!(m.dma(0, EDU.devfn(), iova, 4, false).unwrap_err().reason, 6);
        assert_eq!(u.iova_allocator(a).unwrap().pending(), 0);
        assert_eq!(u.flush_queues_due(1000), Ok(0));
        let _ = idle;
    });
}

/// The context entry (lo, hi) the unit wrote for `bdf`.
fn context_entry_of(m: &VtdModel<&Arena>, u: &Unit<'_>, bdf: Bdf) -> (u64, u64) {
    let re = m.memory().read_u64(u.root_table() + bdf.bus as u64 * 16);
    let ce = PhysAddr::new(re & !0xfff) + bdf.devfn() as u64 * 16;
    (m.memory().read_u64(ce), m.memory().read_u64(ce + 8u64))
}

#[test]
fn pass_through_entries_name_the_largest_sagaw_not_the_domain_depth() {
    // A unit with 3- and 4-level tables, run with 3-level domains: translated entries
    // say 3 levels (AW 1), pass-through ones the largest AGAW, 4 levels (AW 2, §9.3).
    let c = Config {
        levels: Some(3),
        ..cfg(InvalMode::Queued)
    };
    with_unit(QEMU_CAP_AW48, QEMU_ECAP, c, |m, u| {
        let pt = u.create_domain(DomainKind::PassThrough).unwrap();
        let tr = u.create_domain(DomainKind::Translated).unwrap();
        u.attach(EDU, pt).unwrap();
        u.attach(NIC, tr).unwrap();
        assert_eq!(
            context_entry_of(m, u, EDU).1 & 7,
            2,
            "pass-through: 4-level AW"
        );
        assert_eq!(
            context_entry_of(m, u, NIC).1 & 7,
            1,
            "translated: 3-level AW"
        );
        u.enable_translation().unwrap();
        assert_eq!(
            m.dma(0, EDU.devfn(), 0x12_3456, 4, true).unwrap(),
            PhysAddr::new(0x12_3456)
        );
    });
}

#[test]
fn a_register_window_too_small_for_fro_is_refused() {
    // Eight fault records at FRO 0xFC0 end at 0x1040: one mapped page is not enough.
    let cap = (QEMU_CAP & !(0x3ff << 24) & !(0xff << 40)) | (0xfc << 24) | (7 << 40);
    let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
    let model = VtdModel::new(&arena, cap, QEMU_ECAP);
    let frames = || BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(ARENA));
    let small = Config {
        window_size: Some(0x1000),
        ..cfg(InvalMode::Queued)
    };
    let r = RemappingUnit::new(&model, &arena, frames(), small);
    assert!(matches!(
        r,
        Err(Error::WindowTooSmall {
            have: 0x1000,
            need: 0x2000
        })
    ));
    assert!(
        model.writes().is_empty(),
        "nothing written before the check"
    );
    let big = Config {
        window_size: Some(0x2000),
        ..cfg(InvalMode::Queued)
    };
    let u = RemappingUnit::new(&model, &arena, frames(), big).expect("bring-up");
    assert_eq!(u.cap().fault_regs_end(), 0x1040);
}
