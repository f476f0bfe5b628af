//! The driver against the VT-d model configured as real units (CAP/ECAP values Linux
//! logs on Skylake…Tiger Lake laptops and a Xeon server, see `devmodels::vtd`) and in
//! the states firmware hands over (translation, queued invalidation and interrupt
//! remapping already on).

use devmodels::vtd::{
    VtdModel, CLIENT_CAP, CLIENT_ECAP, GFX_CAP, GFX_ECAP, GFX_ECAP_CML, GSTS_IRES, GSTS_QIES,
    GSTS_TES, SERVER_CAP, SERVER_ECAP,
};
use hal::Bdf;
use hal::{Arena, PhysAddr, PhysMemory};
use iommu_vtd::policy;
use iommu_vtd::*;

type Unit<'a> = RemappingUnit<&'a VtdModel<&'a Arena>, &'a Arena, BumpFrames>;

const MIB: u64 = 1 << 20;
const ARENA: u64 = 16 * MIB;
const DEV: Bdf = Bdf::b(0, 0x15, 0);
const UNITS: [(&str, u64, u64); 4] = [
    ("client", CLIENT_CAP, CLIENT_ECAP),
    ("graphics (SKL)", GFX_CAP, GFX_ECAP),
    ("graphics (CML)", GFX_CAP, GFX_ECAP_CML),
    ("server", SERVER_CAP, SERVER_ECAP),
];

fn with(
    cap: u64,
    ecap: u64,
    inval: InvalMode,
    setup: impl FnOnce(&VtdModel<&Arena>, &Arena),
    f: impl FnOnce(&VtdModel<&Arena>, &mut Unit<'_>),
) {
    let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
    let model = VtdModel::new(&arena, cap, ecap);
    setup(&model, &arena);
    let frames = BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(ARENA));
    let c = Config {
        inval: Some(inval),
        poll_budget: 16,
        window_size: Some(0x1000),
        ..Config::default()
    };
    let mut unit = RemappingUnit::new(&model, &arena, frames, c).expect("bring-up");
    f(&model, &mut unit);
}

#[test]
fn real_units_bring_up_map_and_invalidate() {
    for (name, cap, ecap) in UNITS {
        for inval in [InvalMode::Register, InvalMode::Queued] {
            with(
                cap,
                ecap,
                inval,
                |_, _| {},
                |m, u| {
                    // SAGAW offers 4 levels only; MGAW 39 limits IOVAs (client units).
                    assert_eq!(u.levels(), 4, "{name}");
                    let limit = if cap == SERVER_CAP { 1 << 48 } else { 1 << 39 };
                    assert_eq!(u.address_limit(), limit, "{name}");
                    let d = u.create_domain(DomainKind::Translated).unwrap();
                    u.attach(DEV, d).unwrap();
                    u.enable_translation().unwrap();
                    let iova = u
                        .map_dma(
                            d,
                            PhysAddr::new(0x20_0000),
                            0x3000,
                            Perm::READ | Perm::WRITE,
                            !0,
                        )
                        .unwrap();
                    assert!(iova + 0x3000 <= limit, "{name}: IOVA {iova:#x} beyond MGAW");
                    m.dma_write(0, DEV.devfn(), iova + 0x1000, b"abcd").unwrap();
                    assert_eq!(
                        m.memory().to_vec(PhysAddr::new(0x20_1000), 4),
                        b"abcd",
                        "{name} {inval:?}"
                    );
                    u.unmap_dma(d, iova, 0x3000, 0, true).unwrap();
                    // PSI=0 / MAMV=0 (graphics) must still invalidate: the stale IOTLB entry
                    // is gone.
                    let f = m.dma(0, DEV.devfn(), iova + 0x1000, 4, false).unwrap_err();
                    assert_eq!(f.reason, 6, "{name} {inval:?}: not invalidated");
                },
            );
        }
    }
}

#[test]
fn client_units_have_256_domain_ids() {
    with(
        CLIENT_CAP,
        CLIENT_ECAP,
        InvalMode::Queued,
        |_, _| {},
        |_, u| {
            assert_eq!(u.cap().domain_count(), 256);
            let ids: Vec<DomainId> = (1..256)
                .map(|_| u.create_domain(DomainKind::Translated).unwrap())
                .collect();
            assert_eq!(
                u.create_domain(DomainKind::Translated),
                Err(Error::DomainIdsExhausted)
            );
            u.destroy_domain(ids[10]).unwrap();
            assert_eq!(u.create_domain(DomainKind::Translated), Ok(ids[10]));
        },
    );
}

#[test]
fn fault_records_at_fro_0x400_and_eight_records_at_0x100() {
    for (cap, ecap, records) in [(CLIENT_CAP, CLIENT_ECAP, 1), (SERVER_CAP, SERVER_ECAP, 8)] {
        with(
            cap,
            ecap,
            InvalMode::Queued,
            |_, _| {},
            |m, u| {
                assert_eq!(u.cap().nfr as usize, records);
                let d = u.create_domain(DomainKind::Translated).unwrap();
                u.attach(DEV, d).unwrap();
                u.enable_translation().unwrap();
                // Ten devices fault (one record per source while it is pending).
                for i in 0..10u8 {
                    let at = 0x10_0000 + i as u64 * 0x1000;
                    assert!(m.dma(0, 0x20 + i, at, 4, true).is_err());
                }
                let mut got = u.take_faults();
                assert_eq!(got.len(), records, "one per record, the rest overflowed");
                // The walk starts at FSTS.FRI (QEMU points it at the newest record).
                got.sort_by_key(|r| r.source.devfn());
                for (i, r) in got.iter().enumerate() {
                    assert_eq!(r.source, Bdf::b(0, 4, i as u8), "record {i}");
                    assert_eq!(r.addr, 0x10_0000 + i as u64 * 0x1000);
                }
                // Records cleared: the next fault is recorded again.
                assert!(m.dma(0, DEV.devfn(), 0x40_0000, 4, false).is_err());
                let again = u.take_faults();
                assert_eq!(again.len(), 1);
                assert_eq!(again[0].addr, 0x40_0000);
            },
        );
    }
}

#[test]
fn firmware_left_translation_queue_and_interrupt_remapping_on() {
    for (name, cap, ecap) in UNITS {
        with(
            cap,
            ecap,
            InvalMode::Queued,
            |m, a| {
                // Firmware's root table maps DEV 1:1 through its own (here: zeroed,
                // so nothing present) tables; its queue and IRT live elsewhere.
                a.write_u64(PhysAddr::new(0x10_0000), 0);
                m.firmware_handoff(Some(0x10_0000), Some(0x11_0000), Some(0x12_0000));
                assert_eq!(
                    m.gsts() & (GSTS_TES | GSTS_QIES | GSTS_IRES),
                    GSTS_TES | GSTS_QIES | GSTS_IRES
                );
            },
            |m, u| {
                // Interrupt remapping through firmware's table would block the kernel's
                // compatibility-format MSIs on real hardware: bring-up turns it off.
                assert_eq!(m.gsts() & GSTS_IRES, 0, "{name}: IRE left on");
                assert_ne!(u.root_table(), PhysAddr::new(0x10_0000));
                assert_eq!(m.gsts() & GSTS_QIES, GSTS_QIES, "{name}: our queue is on");
                let d = u.create_domain(DomainKind::Translated).unwrap();
                u.attach(DEV, d).unwrap();
                u.enable_translation().unwrap();
                let iova = u
                    .map_dma(d, PhysAddr::new(0x30_0000), 0x1000, Perm::READ, !0)
                    .unwrap();
                assert_eq!(
                    m.dma(0, DEV.devfn(), iova, 4, false).unwrap(),
                    PhysAddr::new(0x30_0000),
                    "{name}"
                );
                // Later GCMD writes (TE on) did not turn IRE back on.
                assert_eq!(m.gsts() & GSTS_IRES, 0, "{name}");
            },
        );
    }
}

/// `iommu=off` on a machine whose firmware left everything on (pre-boot DMA
/// protection, or a kernel before kexec): `quiesce` turns interrupt
/// remapping, translation and queued invalidation off without bringing the
/// unit up, draining the queue first (the model, like QEMU, ignores a QIE
/// disable while descriptors are outstanding).
#[test]
fn iommu_off_turns_off_what_firmware_left_on() {
    for (name, cap, ecap) in UNITS {
        let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
        let model = VtdModel::new(&arena, cap, ecap);
        model.firmware_handoff(Some(0x10_0000), Some(0x11_0000), Some(0x12_0000));
        let cfg = Config {
            poll_budget: 16,
            ..Config::default()
        };
        let found = quiesce(&&model, &cfg).expect(name);
        assert!(
            found.translation && found.queued_invalidation && found.interrupt_remapping,
            "{name}: {found:?}"
        );
        assert_eq!(
            model.gsts() & (GSTS_TES | GSTS_QIES | GSTS_IRES),
            0,
            "{name}"
        );
        // Untranslated now: a device reaches physical memory directly.
        model.dma_write(0, DEV.devfn(), 0x30_0000, b"off!").unwrap();
        assert_eq!(arena.to_vec(PhysAddr::new(0x30_0000), 4), b"off!");
        // Nothing left on: nothing to do, nothing written.
        let before = model.writes().len();
        assert!(!quiesce(&&model, &cfg).unwrap().any());
        assert_eq!(model.writes().len(), before, "{name}");
    }
}

/// Firmware's queue still had descriptors in flight: both `quiesce` and
/// bring-up wait for it to drain (IQH = IQT) before clearing QIE, instead of
/// timing out on a disable the unit ignores.
#[test]
fn a_busy_firmware_queue_is_drained_before_qie_is_cleared() {
    let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
    let model = VtdModel::new(&arena, CLIENT_CAP, CLIENT_ECAP);
    model.firmware_handoff_busy_queue(0x11_0000, 3);
    let cfg = Config {
        poll_budget: 16,
        ..Config::default()
    };
    assert!(quiesce(&&model, &cfg).unwrap().queued_invalidation);
    assert_eq!(model.gsts() & GSTS_QIES, 0);
    with(
        CLIENT_CAP,
        CLIENT_ECAP,
        InvalMode::Queued,
        |m, _| m.firmware_handoff_busy_queue(0x11_0000, 3),
        |m, u| {
            assert!(u.handoff().queued_invalidation);
            // Our own queue came up after firmware's drained, and works.
            assert_eq!(m.gsts() & GSTS_QIES, GSTS_QIES);
            u.flush_iotlb(IotlbInval::Global).unwrap();
        },
    );
}

/// The graphics unit of an Ice/Tiger Lake laptop with translation on at
/// hand-off keeps it (Linux's skip-TE-disable quirk) when asked; every
/// other state is still turned off.
#[test]
fn graphics_quirk_keeps_translation_on() {
    let arena = Arena::new(PhysAddr::new(0), ARENA as usize);
    let model = VtdModel::new(&arena, GFX_CAP, GFX_ECAP);
    model.firmware_handoff(Some(0x10_0000), Some(0x11_0000), Some(0x12_0000));
    let cap = Cap::decode(GFX_CAP);
    let keep = policy::keep_translation(policy::UnitRole::Graphics, true, &cap);
    assert!(keep, "the graphics unit drains (CAP.DRD/DWD)");
    let cfg = Config {
        poll_budget: 16,
        keep_translation: keep,
        ..Config::default()
    };
    let found = quiesce(&&model, &cfg).unwrap();
    assert!(found.translation_kept);
    assert_eq!(model.gsts() & (GSTS_TES | GSTS_QIES | GSTS_IRES), GSTS_TES);
}

/// Issue #17 item 3: on Ice/Tiger/Alder Lake the 64-bit PCI window is
/// 0x40_0000_0000..0x80_0000_0000, exactly where a client unit's (MGAW 39)
/// allocations start; the 32-bit window sits below 4 GiB. With the windows
/// reserved, no IOVA of any domain (made before or after) falls in one, and
/// none is 0.
#[test]
fn iovas_stay_out_of_the_pci_windows() {
    const WIN64: (u64, u64) = (0x40_0000_0000, 0x40_0000_0000);
    const WIN32: (u64, u64) = (0x8000_0000, 0x8000_0000);
    with(
        CLIENT_CAP,
        CLIENT_ECAP,
        InvalMode::Queued,
        |_, _| {},
        |_, u| {
            let before = u.create_domain(DomainKind::Translated).unwrap();
            u.reserve_iova_window(WIN64.0, WIN64.1).unwrap();
            u.reserve_iova_window(WIN32.0, WIN32.1).unwrap();
            let after = u.create_domain(DomainKind::Translated).unwrap();
            let inside =
                |x: u64, n: u64| [WIN64, WIN32].iter().any(|&(s, l)| x < s + l && s < x + n);
            for d in [before, after] {
                for (mask, n) in [
                    (!0u64, 0x3000u64),
                    (u32::MAX as u64, 0x1000),
                    (!0, 0x20_0000),
                ] {
                    for _ in 0..8 {
                        let iova = u
                            .map_dma(d, PhysAddr::new(0x20_0000), n, Perm::READ, mask)
                            .unwrap();
                        assert_ne!(iova, 0);
                        assert!(
                            !inside(iova, n),
                            "{d}: IOVA {iova:#x}+{n:#x} in a PCI window"
                        );
                        assert!(iova + n <= mask.saturating_add(1).min(1 << 39));
                    }
                }
            }
        },
    );
}

/// The default domain (devices without a driver) is made before any driver
/// binds; it takes the highest ID below 256, so drivers' domains are still
/// 1, 2, ... in bind order. Pass-through where ECAP.PT, identity over RAM
/// otherwise.
#[test]
fn default_domain_takes_a_high_id() {
    for (ecap, kind) in [
        (CLIENT_ECAP, DomainKind::PassThrough),
        (CLIENT_ECAP & !(1 << 6), DomainKind::Identity),
    ] {
        with(
            CLIENT_CAP,
            ecap,
            InvalMode::Queued,
            |_, _| {},
            |m, u| {
                let ram = [(PhysAddr::new(0x20_0000), 0x20_0000)];
                let def = u.create_default_domain(&ram).unwrap();
                assert_eq!((def, u.domain_kind(def)), (DomainId(255), Some(kind)));
                assert_eq!(u.create_domain(DomainKind::Translated), Ok(DomainId(1)));
                u.attach(DEV, def).unwrap();
                u.enable_translation().unwrap();
                m.dma_write(0, DEV.devfn(), 0x30_0000, b"1:1!").unwrap();
                assert_eq!(m.memory().to_vec(PhysAddr::new(0x30_0000), 4), b"1:1!");
            },
        );
    }
}
