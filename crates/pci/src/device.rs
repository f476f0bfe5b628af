//! The record enumeration produces for each function (its DMA parameters are `hal::DmaParams`).

use alloc::vec::Vec;

use crate::addr::Bdf;
use crate::bar::Bar;
use crate::caps::{Capability, ExtCapability};

/// Class code: base class, sub-class, programming interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClassCode {
    /// Base class.
    pub base: u8,
    /// Sub-class.
    pub sub: u8,
    /// Programming interface.
    pub prog_if: u8,
}

impl ClassCode {
    /// The 24-bit value `base << 16 | sub << 8 | prog_if`, as ID tables match it.
    pub fn as_u32(&self) -> u32 {
        u32::from(self.base) << 16 | u32::from(self.sub) << 8 | u32::from(self.prog_if)
    }

    /// From the 24-bit value.
    pub fn from_u32(v: u32) -> ClassCode {
        ClassCode {
            base: (v >> 16) as u8,
            sub: (v >> 8) as u8,
            prog_if: v as u8,
        }
    }

    /// The `pci_types` classification of base + sub-class.
    pub fn device_type(&self) -> pci_types::device_type::DeviceType {
        pci_types::device_type::DeviceType::from((self.base, self.sub))
    }
}

/// Bus numbers of a PCI-to-PCI bridge, as firmware programmed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeBuses {
    /// Bus the bridge sits on.
    pub primary: u8,
    /// Bus directly below it.
    pub secondary: u8,
    /// Highest bus below it.
    pub subordinate: u8,
}

/// An address window a bridge forwards downstream: `[base, limit]`, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First address.
    pub base: u64,
    /// Last address.
    pub limit: u64,
}

impl Window {
    /// Size in bytes (saturating: a window of the whole 64-bit space reports
    /// `u64::MAX`).
    pub fn size(&self) -> u64 {
        (self.limit - self.base).saturating_add(1)
    }
}

/// The windows a PCI-to-PCI bridge forwards (PCI-to-PCI Bridge spec 1.2
/// §3.2.5.6–3.2.5.10); `None` where base > limit, which is how firmware turns a
/// window off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BridgeWindows {
    /// I/O window (4 KiB granular).
    pub io: Option<Window>,
    /// Non-prefetchable memory window (1 MiB granular, below 4 GiB).
    pub memory: Option<Window>,
    /// Prefetchable memory window (1 MiB granular, 64-bit when the bridge says so).
    pub prefetchable: Option<Window>,
}

impl BridgeWindows {
    /// Decodes the window registers: `io` = dword 0x1C (I/O base/limit in the low
    /// half), `io_upper` = dword 0x30, `memory` = dword 0x20, `pref` = dword 0x24,
    /// `pref_base_upper` = 0x28, `pref_limit_upper` = 0x2C.
    pub fn decode(
        io: u32,
        io_upper: u32,
        memory: u32,
        pref: u32,
        pref_base_upper: u32,
        pref_limit_upper: u32,
    ) -> BridgeWindows {
        let window = |base: u64, limit: u64| (base <= limit).then_some(Window { base, limit });
        let (io_base, io_limit) = (io & 0xFF, (io >> 8) & 0xFF);
        // Low nibble 1: 32-bit I/O decode, upper 16 bits in 0x30/0x32.
        let (iob_hi, iol_hi) = if io_base & 0xF == 1 {
            (u64::from(io_upper & 0xFFFF), u64::from(io_upper >> 16))
        } else {
            (0, 0)
        };
        let io = window(
            iob_hi << 16 | u64::from(io_base & 0xF0) << 8,
            iol_hi << 16 | u64::from(io_limit & 0xF0) << 8 | 0xFFF,
        );
        let memory = window(
            u64::from(memory & 0xFFF0) << 16,
            u64::from((memory >> 16) & 0xFFF0) << 16 | 0xF_FFFF,
        );
        let (pb, pl) = (pref & 0xFFFF, pref >> 16);
        let (pb_hi, pl_hi) = if pb & 0xF == 1 {
            (u64::from(pref_base_upper), u64::from(pref_limit_upper))
        } else {
            (0, 0)
        };
        let prefetchable = window(
            pb_hi << 32 | u64::from(pb & 0xFFF0) << 16,
            pl_hi << 32 | u64::from(pl & 0xFFF0) << 16 | 0xF_FFFF,
        );
        BridgeWindows {
            io,
            memory,
            prefetchable,
        }
    }
}

/// The one DMA-parameters type, shared with the DMA layer (it lives in `hal`).
pub use hal::{dma_bit_mask, DmaMaskError, DmaParams};

/// One PCI function as enumeration found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Address.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor_id: u16,
    /// Device ID.
    pub device_id: u16,
    /// Revision ID.
    pub revision: u8,
    /// Class code.
    pub class: ClassCode,
    /// Header layout (bit 7 removed): 0 endpoint, 1 PCI-to-PCI bridge, 2 CardBus.
    pub header_layout: u8,
    /// Header type bit 7.
    pub multifunction: bool,
    /// Subsystem vendor and subsystem ID (type 0 headers only).
    pub subsystem: Option<(u16, u16)>,
    /// Interrupt line (the legacy IRQ firmware routed INTx to; 0xFF = none).
    pub interrupt_line: u8,
    /// Interrupt pin (0 none, 1..=4 INTA#..INTD#).
    pub interrupt_pin: u8,
    /// The bridge this function sits behind (None on a root bus).
    pub parent: Option<Bdf>,
    /// Bus numbers, for PCI-to-PCI bridges.
    pub bridge: Option<BridgeBuses>,
    /// Forwarding windows, for PCI-to-PCI bridges.
    pub bridge_windows: Option<BridgeWindows>,
    /// Implemented BARs.
    pub bars: Vec<Bar>,
    /// Classic capabilities.
    pub capabilities: Vec<Capability>,
    /// Extended capabilities (ECAM only).
    pub ext_capabilities: Vec<ExtCapability>,
    /// DMA parameters (drivers narrow or widen these in probe).
    pub dma: DmaParams,
}

impl PciDevice {
    /// Header layout as `pci_types` names it.
    pub fn header_type(&self) -> pci_types::HeaderType {
        crate::regs::header_type(self.header_layout)
    }

    /// BAR `index`, if implemented.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }

    /// Offset of classic capability `id`.
    pub fn find_capability(&self, id: u8) -> Option<u8> {
        crate::caps::find_capability(&self.capabilities, id)
    }

    /// Offset of extended capability `id`.
    pub fn find_ext_capability(&self, id: u16) -> Option<u16> {
        crate::caps::find_ext_capability(&self.ext_capabilities, id)
    }

    /// True for a PCI-to-PCI bridge.
    pub fn is_bridge(&self) -> bool {
        self.header_layout == 1
    }
}
