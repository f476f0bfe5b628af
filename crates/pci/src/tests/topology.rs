//! Topology: parent chains, scope-path hops and requester-ID aliases on the
//! QEMU-shaped machines of `fake::machines`.

use crate::fake::machines;
use crate::topology::{BridgeKind, Node, Topology};
use crate::{enumerate, Bdf, ScanOptions};

fn topo(cfg: &crate::fake::FakeConfig) -> Topology {
    let e = enumerate(cfg, &ScanOptions::default());
    Topology::from_config(cfg, &e.devices)
}

const B: fn(u8, u8, u8) -> Bdf = Bdf::b;

#[test]
fn switch_ancestors_and_kinds() {
    let t = topo(&machines::pcie_switch());
    assert_eq!(
        t.ancestors(B(3, 0, 0)),
        [B(2, 0, 0), B(1, 0, 0), B(0, 4, 0)]
    );
    assert_eq!(t.ancestors(B(0, 3, 0)), []);
    for p in [B(0, 4, 0), B(1, 0, 0), B(2, 0, 0)] {
        assert_eq!(t.get(p).unwrap().bridge.unwrap().kind, BridgeKind::PciePort);
    }
    // PCIe ports forward IDs unchanged: the edu is alone with its own ID.
    assert_eq!(t.dma_aliases(B(3, 0, 0)), [B(3, 0, 0)]);
    assert_eq!(t.requester_id(B(3, 0, 0)), B(3, 0, 0));
    assert_eq!(t.alias_group(B(3, 0, 0)), [B(3, 0, 0)]);
}

#[test]
fn scope_path_hops_follow_secondary_buses() {
    let t = topo(&machines::pcie_switch());
    assert_eq!(t.secondary_bus(0, 0, 4, 0), Some(1));
    assert_eq!(t.secondary_bus(0, 1, 0, 0), Some(2));
    assert_eq!(t.secondary_bus(0, 2, 0, 0), Some(3));
    // An endpoint, an absent function, another segment, a bad device number.
    assert_eq!(t.secondary_bus(0, 3, 0, 0), None);
    assert_eq!(t.secondary_bus(0, 0, 9, 0), None);
    assert_eq!(t.secondary_bus(1, 0, 4, 0), None);
    assert_eq!(t.secondary_bus(0, 0, 40, 0), None);
}

#[test]
fn pcie_to_pci_bridge_aliases_to_secondary_bus_devfn_0() {
    let t = topo(&machines::pcie_to_pci_bridge());
    assert_eq!(
        t.get(B(1, 0, 0)).unwrap().bridge.unwrap().kind,
        BridgeKind::PcieToPci
    );
    assert_eq!(
        t.get(B(2, 7, 0)).unwrap().bridge.unwrap().kind,
        BridgeKind::Conventional
    );
    // PCIe-to-PCI bridge spec §2.3: (secondary bus, 00.0).
    assert_eq!(t.dma_aliases(B(2, 3, 0)), [B(2, 3, 0), B(2, 0, 0)]);
    assert_eq!(t.requester_id(B(2, 3, 0)), B(2, 0, 0));
    // Behind a conventional bridge too: its own ID, then the PCIe-to-PCI one.
    assert_eq!(
        t.dma_aliases(B(3, 1, 0)),
        [B(3, 1, 0), B(2, 7, 0), B(2, 0, 0)]
    );
    assert_eq!(t.requester_id(B(3, 1, 0)), B(2, 0, 0));
    // The bridge itself sits on a PCIe bus: no alias.
    assert_eq!(t.dma_aliases(B(1, 0, 0)), [B(1, 0, 0)]);
    assert_eq!(t.dma_aliases(B(0, 3, 0)), [B(0, 3, 0)]);
}

#[test]
fn devices_behind_one_pcie_to_pci_bridge_are_one_group() {
    let t = topo(&machines::pcie_to_pci_bridge());
    let group = [B(2, 3, 0), B(2, 5, 0), B(2, 7, 0), B(3, 1, 0)];
    for d in group {
        assert_eq!(t.alias_group(d), group, "group of {d}");
    }
    assert_eq!(t.alias_group(B(1, 0, 0)), [B(1, 0, 0)]);
    assert_eq!(t.alias_group(B(0, 3, 0)), [B(0, 3, 0)]);
}

#[test]
fn unknown_devices_and_parent_cycles_are_bounded() {
    let a = B(1, 0, 0);
    let b = B(2, 0, 0);
    let t = Topology::from_nodes(vec![
        Node {
            bdf: a,
            parent: Some(b),
            bridge: None,
        },
        Node {
            bdf: b,
            parent: Some(a),
            bridge: None,
        },
    ]);
    assert_eq!(t.ancestors(a), [b]);
    assert_eq!(t.dma_aliases(B(9, 9, 0)), [B(9, 9, 0)]);
    assert_eq!(t.alias_group(B(9, 9, 0)), [B(9, 9, 0)]);
}
