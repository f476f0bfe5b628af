//! Topology: parent chains, scope-path hops and requester-ID aliases on the
//! QEMU-shaped machines of `fake::machines`.

use crate::fake::machines;
use crate::quirks::{dma_quirk, DmaQuirk};
use crate::topology::{BridgeKind, BridgeNode, Node, Topology};
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
            quirk: Default::default(),
        },
        Node {
            bdf: b,
            parent: Some(a),
            bridge: None,
            quirk: Default::default(),
        },
    ]);
    assert_eq!(t.ancestors(a), [b]);
    assert_eq!(t.dma_aliases(B(9, 9, 0)), [B(9, 9, 0)]);
    assert_eq!(t.alias_group(B(9, 9, 0)), [B(9, 9, 0)]);
}

/// A node for hand-built topologies.
fn node(bdf: Bdf, parent: Option<Bdf>, bridge: Option<(BridgeKind, u8)>, quirk: DmaQuirk) -> Node {
    Node {
        bdf,
        parent,
        bridge: bridge.map(|(kind, secondary)| BridgeNode {
            kind,
            secondary,
            subordinate: secondary,
        }),
        quirk,
    }
}

#[test]
fn quirk_ids_are_matched_as_linux_lists_them() {
    assert_eq!(dma_quirk(0x1b4b, 0x9235, None), DmaQuirk::Function1);
    assert_eq!(dma_quirk(0x1b4b, 0x9123, None), DmaQuirk::Function1);
    assert_eq!(dma_quirk(0x197b, 0x2392, None), DmaQuirk::Function1);
    assert_eq!(dma_quirk(0x1180, 0xe832, None), DmaQuirk::Function0);
    assert_eq!(
        dma_quirk(0x9005, 0x0285, Some((0x9005, 0x02bb))),
        DmaQuirk::Fixed {
            device: 1,
            function: 0
        }
    );
    // The Adaptec entry needs the 3405/3805 subsystem.
    assert_eq!(
        dma_quirk(0x9005, 0x0285, Some((0x9005, 0x0200))),
        DmaQuirk::None
    );
    assert_eq!(dma_quirk(0x1b21, 0x1080, None), DmaQuirk::PcieBridgeAlias);
    assert_eq!(dma_quirk(0x1a03, 0x1150, None), DmaQuirk::BridgeNoAlias);
    assert_eq!(dma_quirk(0x1b4b, 0x9999, None), DmaQuirk::None);
    assert_eq!(dma_quirk(0x8086, 0x2922, None), DmaQuirk::None);
}

#[test]
fn marvell_sata_dma_also_carries_function_1_even_when_it_does_not_exist() {
    let rp = B(0, 0x1c, 0);
    let sata = B(3, 0, 0);
    let t = Topology::from_nodes(vec![
        node(rp, None, Some((BridgeKind::PciePort, 3)), DmaQuirk::None),
        node(sata, Some(rp), None, DmaQuirk::Function1),
    ]);
    assert_eq!(t.dma_aliases(sata), [sata, B(3, 0, 1)]);
    // A ghost requester: no function 1 to group with.
    assert_eq!(t.alias_group(sata), [sata]);
    // When function 1 exists (an IDE function on some SKUs), one group.
    let ide = B(3, 0, 1);
    let t = Topology::from_nodes(vec![
        node(rp, None, Some((BridgeKind::PciePort, 3)), DmaQuirk::None),
        node(sata, Some(rp), None, DmaQuirk::Function1),
        node(ide, Some(rp), None, DmaQuirk::Function1),
    ]);
    assert_eq!(t.dma_aliases(ide), [ide]);
    assert_eq!(t.alias_group(sata), [sata, ide]);
}

#[test]
fn function0_and_fixed_aliases_stay_on_the_device_bus() {
    let ricoh = B(5, 0, 3);
    let adaptec = B(4, 0x0e, 0);
    let t = Topology::from_nodes(vec![
        node(ricoh, None, None, DmaQuirk::Function0),
        node(
            adaptec,
            None,
            None,
            DmaQuirk::Fixed {
                device: 1,
                function: 0,
            },
        ),
    ]);
    assert_eq!(t.dma_aliases(ricoh), [ricoh, B(5, 0, 0)]);
    assert_eq!(t.dma_aliases(adaptec), [adaptec, B(4, 1, 0)]);
}

#[test]
fn asm1083_without_pcie_capability_aliases_as_a_pcie_to_pci_bridge() {
    let rp = B(0, 0x1c, 4);
    let asm = B(2, 0, 0);
    let dev = B(3, 4, 0);
    let build = |quirk| {
        Topology::from_nodes(vec![
            node(rp, None, Some((BridgeKind::PciePort, 2)), DmaQuirk::None),
            node(asm, Some(rp), Some((BridgeKind::Conventional, 3)), quirk),
            node(dev, Some(asm), None, DmaQuirk::None),
        ])
    };
    // Read as a conventional bridge, the alias would be the bridge itself.
    assert_eq!(build(DmaQuirk::None).dma_aliases(dev), [dev, asm]);
    // It is a PCIe-to-PCI bridge: (secondary bus, 00.0), as the hardware sends.
    assert_eq!(
        build(DmaQuirk::PcieBridgeAlias).dma_aliases(dev),
        [dev, B(3, 0, 0)]
    );
    assert_eq!(
        build(DmaQuirk::PcieBridgeAlias).requester_id(dev),
        B(3, 0, 0)
    );
    // An AST1150 forwards IDs: no alias at all.
    assert_eq!(build(DmaQuirk::BridgeNoAlias).dma_aliases(dev), [dev]);
}
