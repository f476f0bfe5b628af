//! `pci`: PCI configuration access, enumeration and driver binding for Busmaster.
//!
//! * [`config`] — the [`ConfigAccess`] trait, [`Ecam`] (MCFG) and [`Legacy`]
//!   (0xCF8/0xCFC) as address computation over `hal::RegisterAccess`.
//! * [`enumerate()`] — recursive scan through bridges, bounded against odd config space.
//! * [`bar`] — BAR decoding and sizing with decoding off.
//! * [`caps`] — capability and extended capability walks.
//! * [`msi`] — MSI/MSI-X programming and the x86 message format.
//! * [`command`] — decoding and bus-master control (bus mastering only on request).
//! * [`driver`] — ID-table drivers, probe/remove, child (platform) devices.
//! * [`pm`] — power management: D3hot→D0 with the spec's recovery time.
//! * [`names`] — vendor/device/class names and the `lspci` line.
//! * [`topology`] — parent chains, bridge kinds, DMAR scope paths and requester-ID
//!   aliases (what an IOMMU needs to know about where a device sits).
//! * [`lpss`] — Intel LPSS BAR0 layout and the iDMA64 child (hw-facts §1.1–1.2).
//! * `fake` (feature `fake`) — a behavioural config-space model for host tests.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod addr;
pub mod bar;
pub mod caps;
pub mod command;
pub mod config;
pub mod device;
pub mod driver;
pub mod enumerate;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod lpss;
pub mod msi;
pub mod names;
pub mod pm;
pub mod quirks;
pub mod regs;
pub mod topology;
pub mod warn;

pub use addr::{pci_address, Bdf, BdfError};
pub use bar::{size_bars, Bar, BarKind};
pub use caps::{capabilities, ext_capabilities, Capability, ExtCapability};
pub use command::{disable_bus_master, enable_bus_master, read_command, set_decoding};
pub use config::{ConfigAccess, ConfigError, Ecam, Legacy};
pub use device::{
    dma_bit_mask, BridgeBuses, BridgeWindows, ClassCode, DmaParams, PciDevice, Window,
};
pub use driver::{
    ChildId, ChildSpec, DeviceCtx, DriverRegistry, PciDeviceId, PciDriver, PlatformCtx,
    PlatformDevice, PlatformDriver, ProbeError, PCI_ANY_ID,
};
pub use enumerate::{enumerate, Enumeration, ScanOptions};
pub use msi::{Msi, MsiError, MsiMessage, MsiX};
pub use names::{lspci_line, lspci_verbose};
pub use quirks::{dma_quirk, DmaQuirk};
pub use regs::Command;
pub use topology::{BridgeKind, BridgeNode, Node, Topology};
pub use warn::{Warning, WarningKind};
#[cfg(test)]
mod tests;
