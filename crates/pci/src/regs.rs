//! Configuration header layout (PCI Local Bus spec 3.0 §6.1, PCI-to-PCI Bridge spec
//! 1.2 §3.2), declared once.

/// Vendor ID (16 bits).
pub const VENDOR_ID: u16 = 0x00;
/// Device ID (16 bits).
pub const DEVICE_ID: u16 = 0x02;
/// Command register (16 bits).
pub const COMMAND: u16 = 0x04;
/// Status register (16 bits, error bits RW1C).
pub const STATUS: u16 = 0x06;
/// Revision ID (8 bits); class code in the upper 24 bits of the dword.
pub const REVISION: u16 = 0x08;
/// Programming interface.
pub const PROG_IF: u16 = 0x09;
/// Sub-class.
pub const SUBCLASS: u16 = 0x0A;
/// Base class.
pub const CLASS: u16 = 0x0B;
/// Header type; bit 7 = multi-function device.
pub const HEADER_TYPE: u16 = 0x0E;
/// First BAR.
pub const BAR0: u16 = 0x10;
/// Type 0: subsystem vendor ID.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2C;
/// Type 0: subsystem ID.
pub const SUBSYSTEM_ID: u16 = 0x2E;
/// Capabilities pointer (types 0 and 1).
pub const CAPABILITIES_PTR: u16 = 0x34;
/// Type 2 (CardBus) capabilities pointer.
pub const CARDBUS_CAPABILITIES_PTR: u16 = 0x14;
/// Interrupt line (what firmware routed INTx to).
pub const INTERRUPT_LINE: u16 = 0x3C;
/// Interrupt pin (0 = none, 1..4 = INTA#..INTD#).
pub const INTERRUPT_PIN: u16 = 0x3D;

/// Type 1: primary bus number.
pub const PRIMARY_BUS: u16 = 0x18;
/// Type 1: secondary bus number.
pub const SECONDARY_BUS: u16 = 0x19;
/// Type 1: subordinate bus number.
pub const SUBORDINATE_BUS: u16 = 0x1A;

/// Type 1: I/O base (8 bits), I/O limit (8 bits), secondary status (16 bits).
pub const IO_BASE: u16 = 0x1C;
/// Type 1: memory base and limit (16 bits each).
pub const MEMORY_BASE: u16 = 0x20;
/// Type 1: prefetchable memory base and limit (16 bits each).
pub const PREF_MEMORY_BASE: u16 = 0x24;
/// Type 1: prefetchable base, upper 32 bits.
pub const PREF_BASE_UPPER32: u16 = 0x28;
/// Type 1: prefetchable limit, upper 32 bits.
pub const PREF_LIMIT_UPPER32: u16 = 0x2C;
/// Type 1: I/O base and limit, upper 16 bits each.
pub const IO_BASE_UPPER16: u16 = 0x30;

/// Status bit 4: the capability list at 0x34 is valid.
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Header type bit 7: the device implements functions 1..7.
pub const HEADER_MULTIFUNCTION: u8 = 0x80;
/// Header type layout field.
pub const HEADER_LAYOUT_MASK: u8 = 0x7F;

/// Number of BARs in a type 0 header.
pub const TYPE0_BARS: u8 = 6;
/// Number of BARs in a type 1 header.
pub const TYPE1_BARS: u8 = 2;

bitflags::bitflags! {
    /// The Command register (PCI Local Bus spec 3.0 §6.2.2).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Command: u16 {
        /// Respond to I/O space accesses.
        const IO_SPACE = 1 << 0;
        /// Respond to memory space accesses.
        const MEMORY_SPACE = 1 << 1;
        /// May act as bus master: the device's own DMA (first-party DMA).
        const BUS_MASTER = 1 << 2;
        /// Special cycles.
        const SPECIAL_CYCLES = 1 << 3;
        /// Memory write and invalidate.
        const MWI = 1 << 4;
        /// VGA palette snoop.
        const VGA_SNOOP = 1 << 5;
        /// Parity error response.
        const PARITY = 1 << 6;
        /// SERR# enable.
        const SERR = 1 << 8;
        /// Fast back-to-back.
        const FAST_B2B = 1 << 9;
        /// INTx emulation disable (PCI 2.3+); set when MSI/MSI-X is used.
        const INTX_DISABLE = 1 << 10;
    }
}

/// Header layout from the header-type byte (bit 7 masked off).
pub fn header_type(raw: u8) -> pci_types::HeaderType {
    match raw & HEADER_LAYOUT_MASK {
        0 => pci_types::HeaderType::Endpoint,
        1 => pci_types::HeaderType::PciPciBridge,
        2 => pci_types::HeaderType::CardBusBridge,
        t => pci_types::HeaderType::Unknown(t),
    }
}
