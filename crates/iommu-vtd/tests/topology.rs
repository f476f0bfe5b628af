//! Devices behind bridges, as QEMU's `pcie-switch` and `pci-bridge` profiles
//! build them: the topology comes from `pci`'s enumeration of a fake config
//! space, the requester IDs from the VT-d model's own view of the fabric (it
//! routes DMA through the bridges as QEMU and real bridges do), so a wrong
//! alias or a wrong unit shows up as a DMA fault, not as a table we read back.

use devmodels::vtd::{Bridge, BridgeKind, VtdModel, QEMU_CAP, QEMU_ECAP};
use hal::{Arena, Bdf, PhysAddr};
use iommu_vtd::*;
use pci::fake::machines;
use pci::{enumerate, ScanOptions, Topology};

type Unit<'a> = RemappingUnit<&'a VtdModel<&'a Arena>, &'a Arena, BumpFrames>;

const MIB: u64 = 1 << 20;

fn topology(cfg: &pci::fake::FakeConfig) -> Topology {
    let e = enumerate(cfg, &ScanOptions::default());
    Topology::from_config(cfg, &e.devices)
}

fn vbdf(b: pci::Bdf) -> Bdf {
    Bdf::b(b.bus, b.device, b.function)
}

/// The device, then the bridges above it, as `coverage` wants them.
fn path(t: &Topology, b: pci::Bdf) -> Vec<Bdf> {
    core::iter::once(b)
        .chain(t.ancestors(b))
        .map(vbdf)
        .collect()
}

fn aliases(t: &Topology, b: pci::Bdf) -> Vec<Bdf> {
    t.dma_aliases(b).into_iter().map(vbdf).collect()
}

/// The DRHD QEMU 7.2 builds for these machines (hw-facts §4.13): no
/// INCLUDE_PCI_ALL, one scope per root-bus device, bridges as sub-hierarchies.
fn qemu_unit() -> UnitScope {
    UnitScope {
        segment: 0,
        include_all: false,
        endpoints: vec![Bdf::b(0, 0, 0), Bdf::b(0, 3, 0)],
        bridges: vec![Bdf::b(0, 4, 0)],
        usable: true,
    }
}

fn with_unit(bridges: &[Bridge], f: impl FnOnce(&VtdModel<&Arena>, &mut Unit<'_>)) {
    let arena = Arena::new(PhysAddr::new(0), (16 * MIB) as usize);
    let model = VtdModel::new(&arena, QEMU_CAP, QEMU_ECAP);
    for b in bridges {
        model.add_bridge(*b);
    }
    let frames = BumpFrames::new(PhysAddr::new(8 * MIB), PhysAddr::new(16 * MIB));
    let cfg = Config {
        poll_budget: 16,
        ..Config::default()
    };
    let mut unit = RemappingUnit::new(&model, &arena, frames, cfg).expect("bring-up");
    f(&model, &mut unit);
}

const ROOT_PORT: Bridge = Bridge {
    bus: 0,
    devfn: 4 << 3,
    secondary: 1,
    kind: BridgeKind::PciePort,
};

#[test]
fn a_device_behind_a_switch_is_covered_by_the_root_port_scope() {
    let t = topology(&machines::pcie_switch());
    let edu = pci::Bdf::b(3, 0, 0);
    assert_eq!(
        coverage(&[qemu_unit()], 0, &path(&t, edu)),
        Coverage::Unit(0),
        "03:00.0 sits below root port 00:04.0, three bridges up"
    );
    assert_eq!(
        coverage(&[qemu_unit()], 0, &path(&t, pci::Bdf::b(0, 3, 0))),
        Coverage::Unit(0)
    );
    // Another segment, or a device no scope names: nobody's.
    assert_eq!(coverage(&[qemu_unit()], 1, &path(&t, edu)), Coverage::None);
    assert_eq!(
        coverage(&[qemu_unit()], 0, &[Bdf::b(0, 7, 0)]),
        Coverage::None
    );
    // And its DMA, through the switch's ports, translates in its domain.
    let switch = [
        ROOT_PORT,
        Bridge {
            bus: 1,
            devfn: 0,
            secondary: 2,
            kind: BridgeKind::PciePort,
        },
        Bridge {
            bus: 2,
            devfn: 0,
            secondary: 3,
            kind: BridgeKind::PciePort,
        },
    ];
    with_unit(&switch, |m, u| {
        let d = u.create_domain(DomainKind::Translated).unwrap();
        u.attach_aliases(&aliases(&t, edu), d).unwrap();
        u.map(d, 0x10_0000, PhysAddr::new(0x20_0000), 0x1000, Perm::WRITE)
            .unwrap();
        u.enable_translation().unwrap();
        m.dma_write(3, 0, 0x10_0010, b"switch").unwrap();
        assert_eq!(m.memory().to_vec(PhysAddr::new(0x20_0010), 6), b"switch");
    });
}

#[test]
fn the_nearest_scope_wins_and_include_all_takes_the_rest() {
    let t = topology(&machines::pcie_switch());
    let edu = pci::Bdf::b(3, 0, 0);
    let downstream = UnitScope {
        endpoints: vec![Bdf::b(3, 0, 0)],
        ..UnitScope {
            usable: true,
            ..Default::default()
        }
    };
    let all = UnitScope {
        include_all: true,
        usable: true,
        ..Default::default()
    };
    let units = [all.clone(), qemu_unit(), downstream];
    assert_eq!(coverage(&units, 0, &path(&t, edu)), Coverage::Unit(2));
    assert_eq!(
        coverage(&units, 0, &path(&t, pci::Bdf::b(2, 0, 0))),
        Coverage::Unit(1)
    );
    assert_eq!(coverage(&units, 0, &[Bdf::b(0, 9, 0)]), Coverage::Unit(0));
}

#[test]
fn a_failed_unit_keeps_its_devices_away_from_the_catch_all_unit() {
    let t = topology(&machines::pcie_switch());
    let failed = UnitScope {
        usable: false,
        ..qemu_unit()
    };
    let all = UnitScope {
        include_all: true,
        usable: true,
        ..Default::default()
    };
    let units = [failed, all];
    let edu = pci::Bdf::b(3, 0, 0);
    assert_eq!(coverage(&units, 0, &path(&t, edu)), Coverage::FailedUnit(0));
    assert_eq!(coverage(&units, 0, &path(&t, edu)).unit(), None);
    assert_eq!(coverage(&units, 0, &[Bdf::b(0, 9, 0)]), Coverage::Unit(1));
    // A failed catch-all unit is no unit either.
    let units = [UnitScope {
        include_all: true,
        usable: false,
        ..Default::default()
    }];
    assert_eq!(
        coverage(&units, 0, &[Bdf::b(0, 9, 0)]),
        Coverage::FailedUnit(0)
    );
}

const PCIE_TO_PCI: Bridge = Bridge {
    bus: 1,
    devfn: 0,
    secondary: 2,
    kind: BridgeKind::PcieToPci,
};
const PCI_BRIDGE: Bridge = Bridge {
    bus: 2,
    devfn: 7 << 3,
    secondary: 3,
    kind: BridgeKind::Conventional,
};

#[test]
fn devices_behind_a_pcie_to_pci_bridge_dma_through_its_alias_and_share_a_domain() {
    let t = topology(&machines::pcie_to_pci_bridge());
    let (edu1, edu2, edu3) = (
        pci::Bdf::b(2, 3, 0),
        pci::Bdf::b(2, 5, 0),
        pci::Bdf::b(3, 1, 0),
    );
    assert_eq!(
        coverage(&[qemu_unit()], 0, &path(&t, edu3)),
        Coverage::Unit(0)
    );
    with_unit(&[ROOT_PORT, PCIE_TO_PCI, PCI_BRIDGE], |m, u| {
        // What the model says arrives at the unit: 02:00.0 for all three.
        for e in [edu1, edu2, edu3] {
            let rid = m.requester_id(e.bus, vbdf(e).devfn());
            assert_eq!(Bdf::from_sid(rid), vbdf(t.requester_id(e)), "{e}");
        }
        let d = u.create_domain(DomainKind::Translated).unwrap();
        assert_eq!(u.group_domain(&aliases(&t, edu1)), None);
        u.attach_aliases(&aliases(&t, edu1), d).unwrap();
        u.map(
            d,
            0x10_0000,
            PhysAddr::new(0x20_0000),
            0x1000,
            Perm::READ | Perm::WRITE,
        )
        .unwrap();
        u.enable_translation().unwrap();
        m.dma_write(2, vbdf(edu1).devfn(), 0x10_0000, b"behind the bridge")
            .unwrap();
        assert_eq!(
            m.memory().to_vec(PhysAddr::new(0x20_0000), 17),
            b"behind the bridge"
        );
        // The second edu shares the alias, so it must share the domain...
        let shared = u.group_domain(&aliases(&t, edu2));
        assert_eq!(shared, Some(d));
        u.attach_aliases(&aliases(&t, edu2), d).unwrap();
        assert_eq!(u.domain_of(vbdf(edu2)), Some(d));
        // ...and it reaches the first one's buffer: no isolation between them.
        let mut buf = [0u8; 6];
        m.dma_read(2, vbdf(edu2).devfn(), 0x10_0007, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"the br");
        // Behind a conventional bridge further down: still 02:00.0.
        assert_eq!(u.group_domain(&aliases(&t, edu3)), Some(d));
        u.attach_aliases(&aliases(&t, edu3), d).unwrap();
        m.dma_read(3, vbdf(edu3).devfn(), 0x10_0000, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"behind");
    });
}

#[test]
fn without_the_alias_context_entry_bridged_dma_faults() {
    let t = topology(&machines::pcie_to_pci_bridge());
    let edu1 = pci::Bdf::b(2, 3, 0);
    with_unit(&[ROOT_PORT, PCIE_TO_PCI], |m, u| {
        let d = u.create_domain(DomainKind::Translated).unwrap();
        // Only the device's own ID, as the kernel did before aliases.
        u.attach(vbdf(edu1), d).unwrap();
        u.map(d, 0x10_0000, PhysAddr::new(0x20_0000), 0x1000, Perm::WRITE)
            .unwrap();
        u.enable_translation().unwrap();
        let f = m
            .dma_write(2, vbdf(edu1).devfn(), 0x10_0000, b"x")
            .unwrap_err();
        assert_eq!(Bdf::from_sid(f.sid), Bdf::b(2, 0, 0));
        assert_eq!(f.reason, 0x2, "context entry not present for 02:00.0");
        // With every alias it works.
        u.attach_aliases(&aliases(&t, edu1), d).unwrap();
        m.dma_write(2, vbdf(edu1).devfn(), 0x10_0000, b"x").unwrap();
    });
}

#[test]
fn an_alias_held_by_another_domain_is_refused_untouched() {
    let t = topology(&machines::pcie_to_pci_bridge());
    let (edu1, edu2) = (pci::Bdf::b(2, 3, 0), pci::Bdf::b(2, 5, 0));
    with_unit(&[ROOT_PORT, PCIE_TO_PCI], |_m, u| {
        let d1 = u.create_domain(DomainKind::Translated).unwrap();
        let d2 = u.create_domain(DomainKind::Translated).unwrap();
        u.attach_aliases(&aliases(&t, edu1), d1).unwrap();
        assert_eq!(
            u.attach_aliases(&aliases(&t, edu2), d2),
            Err(Error::AliasInOtherDomain(Bdf::b(2, 0, 0), d1))
        );
        // Nothing was written for edu2, and 02:00.0 still belongs to d1.
        assert_eq!(u.domain_of(vbdf(edu2)), None);
        assert_eq!(u.domain_of(Bdf::b(2, 0, 0)), Some(d1));
        assert_eq!(
            u.attach_aliases(&aliases(&t, edu2), DomainId(99)),
            Err(Error::NoSuchDomain(DomainId(99)))
        );
    });
}
