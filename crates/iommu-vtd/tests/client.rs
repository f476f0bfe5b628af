//! The driver against the VT-d model configured as real units (CAP/ECAP values Linux
//! logs on Skylake…Tiger Lake laptops and a Xeon server, see `devmodels::vtd`) and in
//! the states firmware hands over (translation, queued invalidation and interrupt
//! remapping already on).

use devmodels::vtd::{
    VtdModel, CLIENT_CAP, CLIENT_ECAP, GFX_CAP, GFX_ECAP, GFX_ECAP_CML, GSTS_IRES, GSTS_QIES,
    GSTS_TES, SERVER_CAP, SERVER_ECAP,
};
use hal::{Arena, PhysAddr, PhysMemory};
use iommu_vtd::*;

type Unit<'a> = RemappingUnit<&'a VtdModel<&'a Arena>, &'a Arena, BumpFrames>;

const MIB: u64 = 1 << 20;
const ARENA: u64 = 16 * MIB;
const DEV: Bdf = Bdf::new(0, 0x15, 0);
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
                    m.dma_write(0, DEV.devfn, iova + 0x1000, b"abcd").unwrap();
                    assert_eq!(
                        m.memory().to_vec(PhysAddr::new(0x20_1000), 4),
                        b"abcd",
                        "{name} {inval:?}"
                    );
                    u.unmap_dma(d, iova, 0x3000, 0, true).unwrap();
                    // PSI=0 / MAMV=0 (graphics) must still invalidate: the stale IOTLB entry
                    // is gone.
                    let f = m.dma(0, DEV.devfn, iova + 0x1000, 4, false).unwrap_err();
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
                got.sort_by_key(|r| r.source.devfn);
                for (i, r) in got.iter().enumerate() {
                    assert_eq!(r.source, Bdf::new(0, 4, i as u8), "record {i}");
                    assert_eq!(r.addr, 0x10_0000 + i as u64 * 0x1000);
                }
                // Records cleared: the next fault is recorded again.
                assert!(m.dma(0, DEV.devfn, 0x40_0000, 4, false).is_err());
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
                    m.dma(0, DEV.devfn, iova, 4, false).unwrap(),
                    PhysAddr::new(0x30_0000),
                    "{name}"
                );
                // Later GCMD writes (TE on) did not turn IRE back on.
                assert_eq!(m.gsts() & GSTS_IRES, 0, "{name}");
            },
        );
    }
}
