//! Capability lists: the classic list from 0x34 (PCI Local Bus spec 3.0 §6.7) and the
//! PCIe extended list from 0x100 (PCIe base spec 5.0 §7.6).
//!
//! Both lists are linked through pointers read from the device, so both walks are
//! bounded and remember where they have been: a bad pointer ends the list with a
//! warning instead of looping or reading outside the header.

use alloc::vec::Vec;

use crate::addr::Bdf;
use crate::config::{ConfigAccess, ECAM_CONFIG_SIZE};
use crate::regs::{self, CAPABILITIES_PTR, STATUS, STATUS_CAP_LIST};
use crate::warn::{WarningKind, Warnings};

/// Most classic capabilities walked: (256 - 64) / 4, as Linux's PCI_FIND_CAP_TTL.
pub const MAX_CAPS: usize = 48;
/// Most extended capabilities walked: (4096 - 256) / 8.
pub const MAX_EXT_CAPS: usize = 480;
/// First offset of the extended space.
pub const EXT_CAP_START: u16 = 0x100;

/// Classic capability IDs (PCI Code and ID Assignment spec 1.11 §2).
pub mod id {
    /// Power management.
    pub const PM: u8 = 0x01;
    /// AGP.
    pub const AGP: u8 = 0x02;
    /// Vital product data.
    pub const VPD: u8 = 0x03;
    /// Slot identification.
    pub const SLOT_ID: u8 = 0x04;
    /// Message signalled interrupts.
    pub const MSI: u8 = 0x05;
    /// CompactPCI hot swap.
    pub const CHSWP: u8 = 0x06;
    /// PCI-X.
    pub const PCIX: u8 = 0x07;
    /// HyperTransport.
    pub const HT: u8 = 0x08;
    /// Vendor specific.
    pub const VENDOR: u8 = 0x09;
    /// Debug port.
    pub const DEBUG: u8 = 0x0A;
    /// CompactPCI central resource control.
    pub const CCRC: u8 = 0x0B;
    /// PCI hot-plug.
    pub const HOTPLUG: u8 = 0x0C;
    /// Bridge subsystem vendor/device ID.
    pub const SUBSYSTEM: u8 = 0x0D;
    /// AGP 8x.
    pub const AGP3: u8 = 0x0E;
    /// Secure device.
    pub const SECURE: u8 = 0x0F;
    /// PCI Express.
    pub const EXP: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
    /// SATA data/index configuration.
    pub const SATA: u8 = 0x12;
    /// Advanced features (conventional PCI FLR).
    pub const AF: u8 = 0x13;
    /// Enhanced allocation.
    pub const EA: u8 = 0x14;
    /// Flattening portal bridge.
    pub const FPB: u8 = 0x15;
}

/// Extended capability IDs (PCI Code and ID Assignment spec 1.11 §3).
pub mod ext_id {
    /// Advanced error reporting.
    pub const AER: u16 = 0x01;
    /// Virtual channel.
    pub const VC: u16 = 0x02;
    /// Device serial number.
    pub const DSN: u16 = 0x03;
    /// Power budgeting.
    pub const PWR: u16 = 0x04;
    /// Root complex link declaration.
    pub const RCLD: u16 = 0x05;
    /// Root complex internal link control.
    pub const RCILC: u16 = 0x06;
    /// Root complex event collector endpoint association.
    pub const RCEC: u16 = 0x07;
    /// Multi-function VC.
    pub const MFVC: u16 = 0x08;
    /// VC with MFVC present.
    pub const VC9: u16 = 0x09;
    /// Root complex register block.
    pub const RCRB: u16 = 0x0A;
    /// Vendor specific.
    pub const VNDR: u16 = 0x0B;
    /// Access control services.
    pub const ACS: u16 = 0x0D;
    /// Alternative routing-ID interpretation.
    pub const ARI: u16 = 0x0E;
    /// Address translation services.
    pub const ATS: u16 = 0x0F;
    /// Single root I/O virtualisation.
    pub const SRIOV: u16 = 0x10;
    /// Multi-root I/O virtualisation.
    pub const MRIOV: u16 = 0x11;
    /// Multicast.
    pub const MCAST: u16 = 0x12;
    /// Page request interface.
    pub const PRI: u16 = 0x13;
    /// Resizable BAR.
    pub const REBAR: u16 = 0x15;
    /// Dynamic power allocation.
    pub const DPA: u16 = 0x16;
    /// TPH requester.
    pub const TPH: u16 = 0x17;
    /// Latency tolerance reporting.
    pub const LTR: u16 = 0x18;
    /// Secondary PCIe.
    pub const SECPCI: u16 = 0x19;
    /// Protocol multiplexing.
    pub const PMUX: u16 = 0x1A;
    /// Process address space ID.
    pub const PASID: u16 = 0x1B;
    /// LN requester.
    pub const LNR: u16 = 0x1C;
    /// Downstream port containment.
    pub const DPC: u16 = 0x1D;
    /// L1 PM substates.
    pub const L1SS: u16 = 0x1E;
    /// Precision time measurement.
    pub const PTM: u16 = 0x1F;
    /// Designated vendor specific.
    pub const DVSEC: u16 = 0x23;
    /// Data link feature.
    pub const DLF: u16 = 0x25;
    /// Physical layer 16 GT/s.
    pub const PL_16GT: u16 = 0x26;
    /// Physical layer 32 GT/s.
    pub const PL_32GT: u16 = 0x2A;
    /// Data object exchange.
    pub const DOE: u16 = 0x2E;
}

/// One classic capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID.
    pub id: u8,
    /// Offset of its header in config space.
    pub offset: u8,
}

impl Capability {
    /// Human name of the ID.
    pub fn name(&self) -> &'static str {
        cap_name(self.id)
    }
}

/// One extended capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtCapability {
    /// Extended capability ID.
    pub id: u16,
    /// Capability version.
    pub version: u8,
    /// Offset of its header.
    pub offset: u16,
}

impl ExtCapability {
    /// Human name of the ID.
    pub fn name(&self) -> &'static str {
        ext_cap_name(self.id)
    }
}

/// Name of a classic capability ID (lspci -v wording, shortened).
pub fn cap_name(cap: u8) -> &'static str {
    match cap {
        id::PM => "Power Management",
        id::AGP => "AGP",
        id::VPD => "Vital Product Data",
        id::SLOT_ID => "Slot ID",
        id::MSI => "MSI",
        id::CHSWP => "CompactPCI hot-swap",
        id::PCIX => "PCI-X",
        id::HT => "HyperTransport",
        id::VENDOR => "Vendor Specific",
        id::DEBUG => "Debug port",
        id::CCRC => "CompactPCI central resource control",
        id::HOTPLUG => "Hot-plug",
        id::SUBSYSTEM => "Subsystem",
        id::AGP3 => "AGP3",
        id::SECURE => "Secure device",
        id::EXP => "Express",
        id::MSIX => "MSI-X",
        id::SATA => "SATA HBA",
        id::AF => "PCI Advanced Features",
        id::EA => "Enhanced Allocation",
        id::FPB => "Flattening Portal Bridge",
        _ => "Unknown",
    }
}

/// Name of an extended capability ID.
pub fn ext_cap_name(cap: u16) -> &'static str {
    use ext_id::*;
    match cap {
        AER => "Advanced Error Reporting",
        VC | VC9 => "Virtual Channel",
        DSN => "Device Serial Number",
        PWR => "Power Budgeting",
        RCLD => "Root Complex Link",
        RCILC => "Root Complex Internal Link Control",
        RCEC => "Root Complex Event Collector",
        MFVC => "Multi-Function Virtual Channel",
        RCRB => "Root Complex Register Block",
        VNDR => "Vendor Specific Information",
        ACS => "Access Control Services",
        ARI => "Alternative Routing-ID Interpretation (ARI)",
        ATS => "Address Translation Service (ATS)",
        SRIOV => "Single Root I/O Virtualization (SR-IOV)",
        MRIOV => "Multi-Root I/O Virtualization (MR-IOV)",
        MCAST => "Multicast",
        PRI => "Page Request Interface (PRI)",
        REBAR => "Physical Resizable BAR",
        DPA => "Dynamic Power Allocation",
        TPH => "Transaction Processing Hints",
        LTR => "Latency Tolerance Reporting",
        SECPCI => "Secondary PCI Express",
        PMUX => "Protocol Multiplexing",
        PASID => "Process Address Space ID (PASID)",
        LNR => "LN Requester",
        DPC => "Downstream Port Containment",
        L1SS => "L1 PM Substates",
        PTM => "Precision Time Measurement",
        DVSEC => "Designated Vendor-Specific",
        DLF => "Data Link Feature",
        PL_16GT => "Physical Layer 16.0 GT/s",
        PL_32GT => "Physical Layer 32.0 GT/s",
        DOE => "Data Object Exchange",
        _ => "Unknown",
    }
}

/// Walks the classic capability list of `bdf`. `header_layout` selects the pointer
/// register (0x34 for types 0 and 1, 0x14 for CardBus).
pub fn capabilities<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
) -> (Vec<Capability>, Vec<crate::Warning>) {
    let mut w = Warnings::default();
    let layout = cfg.read8(bdf, regs::HEADER_TYPE) & regs::HEADER_LAYOUT_MASK;
    let caps = walk_caps(cfg, bdf, layout, &mut w);
    (caps, w.0)
}

pub(crate) fn walk_caps<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    layout: u8,
    warnings: &mut Warnings,
) -> Vec<Capability> {
    let mut caps = Vec::new();
    if cfg.read16(bdf, STATUS) & STATUS_CAP_LIST == 0 {
        return caps;
    }
    let ptr_reg = if layout == 2 {
        regs::CARDBUS_CAPABILITIES_PTR
    } else {
        CAPABILITIES_PTR
    };
    // Bottom two bits of every pointer are reserved (§6.7): mask them.
    let mut ptr = u16::from(cfg.read8(bdf, ptr_reg) & 0xFC);
    let mut seen = [false; 64];
    while ptr != 0 {
        // Capabilities live in the device-specific part, 0x40..=0xFF.
        if !(0x40..=0xFC).contains(&ptr) {
            warnings.push(bdf, WarningKind::CapPointerOutOfRange { pointer: ptr });
            break;
        }
        let slot = usize::from(ptr / 4);
        if seen.get(slot).copied().unwrap_or(true) {
            warnings.push(bdf, WarningKind::CapLoop { pointer: ptr });
            break;
        }
        if caps.len() >= MAX_CAPS {
            warnings.push(bdf, WarningKind::CapTooMany { limit: MAX_CAPS });
            break;
        }
        if let Some(s) = seen.get_mut(slot) {
            *s = true;
        }
        let header = cfg.read16(bdf, ptr);
        let id = header as u8;
        if id == 0xFF {
            // All-ones: the function went away mid-walk.
            break;
        }
        caps.push(Capability {
            id,
            offset: ptr as u8,
        });
        ptr = (header >> 8) & 0xFC;
    }
    caps
}

/// Walks the extended capability list of `bdf`; empty when `cfg` cannot reach the
/// extended space (legacy access) or the function is not PCIe.
pub fn ext_capabilities<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
) -> (Vec<ExtCapability>, Vec<crate::Warning>) {
    let mut w = Warnings::default();
    let caps = walk_ext_caps(cfg, bdf, &mut w);
    (caps, w.0)
}

pub(crate) fn walk_ext_caps<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    warnings: &mut Warnings,
) -> Vec<ExtCapability> {
    let mut caps = Vec::new();
    if !cfg.extended() {
        return caps;
    }
    let mut ptr = EXT_CAP_START;
    let mut seen = [false; (ECAM_CONFIG_SIZE / 4) as usize];
    loop {
        if !(EXT_CAP_START..ECAM_CONFIG_SIZE).contains(&ptr) {
            warnings.push(bdf, WarningKind::ExtCapPointerOutOfRange { pointer: ptr });
            break;
        }
        let slot = usize::from(ptr / 4);
        if seen.get(slot).copied().unwrap_or(true) {
            warnings.push(bdf, WarningKind::ExtCapLoop { pointer: ptr });
            break;
        }
        if caps.len() >= MAX_EXT_CAPS {
            warnings.push(
                bdf,
                WarningKind::ExtCapTooMany {
                    limit: MAX_EXT_CAPS,
                },
            );
            break;
        }
        if let Some(s) = seen.get_mut(slot) {
            *s = true;
        }
        let header = cfg.read32(bdf, ptr);
        // §7.6.3: an empty list has a header of 0 at 0x100; all-ones is a conventional
        // PCI function or a master abort.
        if header == 0 || header == !0 {
            break;
        }
        caps.push(ExtCapability {
            id: header as u16,
            version: ((header >> 16) & 0xF) as u8,
            offset: ptr,
        });
        // Next pointer bits 31:20; the bottom two bits are reserved.
        let next = ((header >> 20) & 0xFFC) as u16;
        if next == 0 {
            break;
        }
        ptr = next;
    }
    caps
}

/// Offset of the first classic capability with ID `cap`.
pub fn find_capability(caps: &[Capability], cap: u8) -> Option<u8> {
    caps.iter().find(|c| c.id == cap).map(|c| c.offset)
}

/// Offset of the first extended capability with ID `cap`.
pub fn find_ext_capability(caps: &[ExtCapability], cap: u16) -> Option<u16> {
    caps.iter().find(|c| c.id == cap).map(|c| c.offset)
}
