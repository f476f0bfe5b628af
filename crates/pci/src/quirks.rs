//! Requester-ID quirks (the DMA-alias half of Linux's drivers/pci/quirks.c,
//! as of Linux 6.x): devices whose DMA carries another function's requester
//! ID, and bridges that alias (or do not) other than their header says. An
//! IOMMU needs a context entry for every ID a device's DMA can carry, or that
//! DMA faults; the IDs are facts from Linux's list, matched by vendor and
//! device ID (and subsystem, for the Adaptec entries).

/// How a function's DMA requester ID differs from its own address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DmaQuirk {
    /// None known.
    #[default]
    None,
    /// Its DMA also uses function 0 of its slot (Ricoh card readers, Glenfly).
    Function0,
    /// Its DMA also uses function 1 of its slot, which may not even exist
    /// (Marvell 88SE91xx/92xx SATA, HighPoint, JMicron JMB388, Plextor M6E).
    Function1,
    /// Its DMA also uses this fixed device/function on its bus (Adaptec
    /// 3405/3805: a hidden DMA engine at 01.0).
    Fixed {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
    },
    /// A bridge without a PCIe capability that is in fact a PCIe-to-PCI
    /// bridge (ASMedia ASM1083/1085, Tundra 8113, ITE 8892/8893, Intel
    /// 82801): below a PCIe port it aliases like one (secondary bus, 00.0).
    PcieBridgeAlias,
    /// A bridge that forwards its children's requester IDs unchanged
    /// (ASPEED AST1150): it adds no alias.
    BridgeNoAlias,
}

const RICOH: u16 = 0x1180;
const GLENFLY: u16 = 0x6766;
const MARVELL_EXT: u16 = 0x1b4b;
const TTI: u16 = 0x1103;
const JMICRON: u16 = 0x197b;
const LITE_ON: u16 = 0x1c28;
const ADAPTEC2: u16 = 0x9005;
const ASMEDIA: u16 = 0x1b21;
const ASPEED: u16 = 0x1a03;

const FUNCTION0: &[(u16, u16)] = &[
    (RICOH, 0xe832),
    (RICOH, 0xe476),
    (GLENFLY, 0x3d40),
    (GLENFLY, 0x3d41),
];

const FUNCTION1: &[(u16, u16)] = &[
    (MARVELL_EXT, 0x9120),
    (MARVELL_EXT, 0x9123),
    (MARVELL_EXT, 0x9125),
    (MARVELL_EXT, 0x9128),
    (MARVELL_EXT, 0x9130),
    (MARVELL_EXT, 0x9170),
    (MARVELL_EXT, 0x9172),
    (MARVELL_EXT, 0x917a),
    (MARVELL_EXT, 0x9182),
    (MARVELL_EXT, 0x9183),
    (MARVELL_EXT, 0x91a0),
    (MARVELL_EXT, 0x9215),
    (MARVELL_EXT, 0x9220),
    (MARVELL_EXT, 0x9230),
    (MARVELL_EXT, 0x9235),
    (TTI, 0x0642),
    (TTI, 0x0645),
    (JMICRON, 0x2392),
    (LITE_ON, 0x0122),
];

const PCIE_BRIDGE_ALIAS: &[(u16, u16)] = &[
    (ASMEDIA, 0x1080),
    (0x10e3, 0x8113),
    (0x1283, 0x8892),
    (0x1283, 0x8893),
    (0x8086, 0x244e),
];

/// The quirk a function with these IDs has.
pub fn dma_quirk(vendor: u16, device: u16, subsystem: Option<(u16, u16)>) -> DmaQuirk {
    let id = (vendor, device);
    if FUNCTION0.contains(&id) {
        DmaQuirk::Function0
    } else if FUNCTION1.contains(&id) {
        DmaQuirk::Function1
    } else if id == (ADAPTEC2, 0x0285) && matches!(subsystem, Some((ADAPTEC2, 0x02bb | 0x02bc))) {
        DmaQuirk::Fixed {
            device: 1,
            function: 0,
        }
    } else if PCIE_BRIDGE_ALIAS.contains(&id) {
        DmaQuirk::PcieBridgeAlias
    } else if id == (ASPEED, 0x1150) {
        DmaQuirk::BridgeNoAlias
    } else {
        DmaQuirk::None
    }
}

impl DmaQuirk {
    /// The quirk in words, for the log.
    pub fn describe(&self) -> &'static str {
        match self {
            DmaQuirk::None => "none",
            DmaQuirk::Function0 => "its DMA also carries function 0's requester ID",
            DmaQuirk::Function1 => "its DMA also carries function 1's requester ID",
            DmaQuirk::Fixed { .. } => "its DMA also carries a fixed requester ID on its bus",
            DmaQuirk::PcieBridgeAlias => "a PCIe-to-PCI bridge without a PCIe capability",
            DmaQuirk::BridgeNoAlias => "a bridge that forwards requester IDs unchanged",
        }
    }
}
