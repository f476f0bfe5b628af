//! The PCI topology as an IOMMU needs it: each function's parent bridge, what
//! kind of bridge that is, and the bus numbers it forwards.
//!
//! Two questions are answered here, from the enumeration alone:
//!
//! * **Where is a device?** [`Topology::ancestors`] walks the bridges above a
//!   function up to the root bus, and [`Topology::secondary_bus`] follows a
//!   DMAR device-scope path hop by hop (VT-d spec §8.3.1.1: each path entry
//!   names a device on the secondary bus of the bridge named by the previous
//!   one).
//! * **With which requester ID does it DMA?** [`Topology::dma_aliases`]: a
//!   PCIe-to-PCI/PCI-X bridge takes ownership of the transactions of the
//!   conventional devices below it and issues them with its secondary bus
//!   number and devfn 00.0 (PCI Express to PCI/PCI-X Bridge spec r1.0 §2.3);
//!   a conventional PCI-to-PCI bridge (no PCIe capability) and a PCI-to-PCIe
//!   bridge use their own ID; PCIe root and switch ports forward IDs as they
//!   are. These are the rules Linux applies in `pci_for_each_dma_alias`
//!   (drivers/pci/search.c) and QEMU in `pci_device_iommu_address_space`.
//!   Devices whose alias sets meet cannot be told apart by an IOMMU: they are
//!   one group ([`Topology::alias_group`]) and must share a domain.
//!
//! Not modelled: per-device quirk aliases (phantom functions, the
//! `dma_alias_mask` quirks of Linux) and ACS-based grouping of PCIe devices.

use alloc::vec::Vec;

use crate::addr::Bdf;
use crate::caps::id;
use crate::config::ConfigAccess;
use crate::device::PciDevice;
use crate::quirks::{dma_quirk, DmaQuirk};

/// PCI Express Capabilities register, Device/Port Type (PCIe base spec 5.0
/// §7.5.3.2), for the types that are bridges.
pub mod port_type {
    /// Root Port of a Root Complex.
    pub const ROOT_PORT: u8 = 4;
    /// Upstream port of a switch.
    pub const UPSTREAM: u8 = 5;
    /// Downstream port of a switch.
    pub const DOWNSTREAM: u8 = 6;
    /// PCI Express to PCI/PCI-X bridge.
    pub const PCIE_TO_PCI: u8 = 7;
    /// PCI/PCI-X to PCI Express bridge.
    pub const PCI_TO_PCIE: u8 = 8;
}

/// How a bridge passes on the requester IDs of the devices below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BridgeKind {
    /// A PCIe root port or switch port: requester IDs pass unchanged.
    PciePort,
    /// A PCIe-to-PCI/PCI-X bridge: requests from below carry
    /// `(secondary bus, 00.0)`.
    PcieToPci,
    /// A PCI/PCI-X-to-PCIe bridge: requests from below carry the bridge's ID.
    PciToPcie,
    /// A conventional PCI-to-PCI bridge (no PCIe capability): requests from
    /// below carry the bridge's ID.
    Conventional,
    /// A PCIe bridge with a Device/Port Type that is not a bridge type (a
    /// firmware or device bug); treated like a port.
    OtherPcie(u8),
}

impl BridgeKind {
    /// From the PCIe capability's Device/Port Type, or `None` for a bridge
    /// without a PCIe capability.
    pub fn from_port_type(pcie_type: Option<u8>) -> BridgeKind {
        match pcie_type {
            None => BridgeKind::Conventional,
            Some(port_type::ROOT_PORT | port_type::UPSTREAM | port_type::DOWNSTREAM) => {
                BridgeKind::PciePort
            }
            Some(port_type::PCIE_TO_PCI) => BridgeKind::PcieToPci,
            Some(port_type::PCI_TO_PCIE) => BridgeKind::PciToPcie,
            Some(other) => BridgeKind::OtherPcie(other),
        }
    }

    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            BridgeKind::PciePort => "PCIe port",
            BridgeKind::PcieToPci => "PCIe-to-PCI bridge",
            BridgeKind::PciToPcie => "PCI-to-PCIe bridge",
            BridgeKind::Conventional => "PCI-to-PCI bridge",
            BridgeKind::OtherPcie(_) => "PCIe bridge (unknown port type)",
        }
    }
}

/// A bridge's place in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeNode {
    /// How it forwards requester IDs.
    pub kind: BridgeKind,
    /// Bus directly below.
    pub secondary: u8,
    /// Highest bus below.
    pub subordinate: u8,
}

/// One function of the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Address.
    pub bdf: Bdf,
    /// The bridge it sits behind (`None` on a root bus).
    pub parent: Option<Bdf>,
    /// Set when the function is a PCI-to-PCI bridge.
    pub bridge: Option<BridgeNode>,
    /// A requester-ID quirk Linux knows for this function (`quirks`).
    pub quirk: DmaQuirk,
}

/// The functions of one enumeration and how they hang together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    nodes: Vec<Node>,
}

/// Device/Port Type of a function's PCIe capability, if it has one.
pub fn pcie_port_type<C: ConfigAccess + ?Sized>(cfg: &C, d: &PciDevice) -> Option<u8> {
    let off = d.find_capability(id::EXP)?;
    Some(((cfg.read16(d.bdf, u16::from(off) + 2) >> 4) & 0xF) as u8)
}

impl Topology {
    /// From hand-written nodes (tests, or topologies a DMAR implies).
    pub fn from_nodes(nodes: Vec<Node>) -> Topology {
        Topology { nodes }
    }

    /// From an enumeration: parents and bus numbers from the records, each
    /// bridge's kind from its PCIe capability in configuration space.
    pub fn from_config<C: ConfigAccess + ?Sized>(cfg: &C, devices: &[PciDevice]) -> Topology {
        let nodes = devices
            .iter()
            .map(|d| Node {
                bdf: d.bdf,
                parent: d.parent,
                quirk: dma_quirk(d.vendor_id, d.device_id, d.subsystem),
                bridge: d.bridge.map(|b| BridgeNode {
                    kind: BridgeKind::from_port_type(pcie_port_type(cfg, d)),
                    secondary: b.secondary,
                    subordinate: b.subordinate,
                }),
            })
            .collect();
        Topology { nodes }
    }

    /// Every function.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node at `bdf`.
    pub fn get(&self, bdf: Bdf) -> Option<&Node> {
        self.nodes.iter().find(|n| n.bdf == bdf)
    }

    /// The bridges above `bdf`, nearest first, up to the root bus. Bounded by
    /// the number of nodes, so a parent cycle in bad input cannot loop.
    pub fn ancestors(&self, bdf: Bdf) -> Vec<Bdf> {
        let mut out = Vec::new();
        let mut cur = self.get(bdf).and_then(|n| n.parent);
        while let Some(p) = cur {
            if p == bdf || out.len() >= self.nodes.len() || out.contains(&p) {
                break;
            }
            out.push(p);
            cur = self.get(p).and_then(|n| n.parent);
        }
        out
    }

    /// Secondary bus of the bridge at `segment:bus:device.function`, as a
    /// DMAR scope path needs it to take its next hop; `None` if no such
    /// bridge was enumerated.
    pub fn secondary_bus(&self, segment: u16, bus: u8, device: u8, function: u8) -> Option<u8> {
        let bdf = Bdf::new(segment, bus, device, function)?;
        self.get(bdf)?.bridge.map(|b| b.secondary)
    }

    /// Every requester ID with which `bdf`'s DMA can reach the root complex:
    /// its own first, then one per aliasing bridge above it, nearest first.
    /// The last one is what an IOMMU at the root sees (the ID a topmost
    /// PCIe-to-PCI bridge gives); an IOMMU driver writes a context entry for
    /// each, since Linux does so too (firmware and bridges differ in which one
    /// they really use). A function not in the topology has only its own ID.
    pub fn dma_aliases(&self, bdf: Bdf) -> Vec<Bdf> {
        let mut out = alloc::vec![bdf];
        let add = |out: &mut Vec<Bdf>, a: Option<Bdf>| {
            if let Some(a) = a.filter(|a| !out.contains(a)) {
                out.push(a);
            }
        };
        // The function's own quirk: another function of its slot, or a fixed
        // ID on its bus (Linux's dma_alias_mask).
        match self.get(bdf).map_or(DmaQuirk::None, |n| n.quirk) {
            DmaQuirk::Function0 => add(&mut out, bdf.with_function(0)),
            DmaQuirk::Function1 => add(&mut out, bdf.with_function(1)),
            DmaQuirk::Fixed { device, function } => {
                add(&mut out, Bdf::new(bdf.segment, bdf.bus, device, function))
            }
            _ => {}
        }
        for p in self.ancestors(bdf) {
            let Some(node) = self.get(p) else { continue };
            let Some(b) = node.bridge else { continue };
            let kind = match (b.kind, node.quirk) {
                (_, DmaQuirk::BridgeNoAlias) => continue,
                // A PCIe-to-PCI bridge that hides its PCIe capability: it
                // aliases like one when its own parent is a PCIe port.
                (BridgeKind::Conventional, DmaQuirk::PcieBridgeAlias)
                    if self.parent_is_pcie_not_to_pci(p) =>
                {
                    BridgeKind::PcieToPci
                }
                (k, _) => k,
            };
            let alias = match kind {
                BridgeKind::PciePort | BridgeKind::OtherPcie(_) => continue,
                BridgeKind::PcieToPci => Bdf::new(p.segment, b.secondary, 0, 0),
                BridgeKind::PciToPcie | BridgeKind::Conventional => Some(p),
            };
            add(&mut out, alias);
        }
        out
    }

    /// Whether `bdf`'s parent bridge is PCIe and not a PCIe-to-PCI bridge.
    fn parent_is_pcie_not_to_pci(&self, bdf: Bdf) -> bool {
        self.get(bdf)
            .and_then(|n| n.parent)
            .and_then(|p| self.get(p))
            .and_then(|n| n.bridge)
            .is_some_and(|b| {
                matches!(
                    b.kind,
                    BridgeKind::PciePort | BridgeKind::PciToPcie | BridgeKind::OtherPcie(_)
                )
            })
    }

    /// The requester ID an IOMMU at the root complex sees for `bdf`'s DMA.
    pub fn requester_id(&self, bdf: Bdf) -> Bdf {
        self.dma_aliases(bdf).last().copied().unwrap_or(bdf)
    }

    /// The functions an IOMMU cannot tell apart from `bdf` (their alias sets
    /// meet, directly or through others), `bdf` included, in topology order.
    /// More than one member means no isolation between them is possible.
    pub fn alias_group(&self, bdf: Bdf) -> Vec<Bdf> {
        let mut ids = self.dma_aliases(bdf);
        let mut group = alloc::vec![bdf];
        loop {
            let mut grew = false;
            for n in &self.nodes {
                if group.contains(&n.bdf) {
                    continue;
                }
                let a = self.dma_aliases(n.bdf);
                if a.iter().any(|x| ids.contains(x)) {
                    group.push(n.bdf);
                    for x in a {
                        if !ids.contains(&x) {
                            ids.push(x);
                        }
                    }
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        let mut ordered: Vec<Bdf> = self
            .nodes
            .iter()
            .map(|n| n.bdf)
            .filter(|b| group.contains(b))
            .collect();
        if !ordered.contains(&bdf) {
            ordered.insert(0, bdf);
        }
        ordered
    }
}
