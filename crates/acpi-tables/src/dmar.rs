//! DMA Remapping Reporting table (Intel VT-d spec rev 5.0, chapter 8).
//!
//! Layout: the 36-byte SDT header, Host Address Width (1 byte), Flags
//! (1 byte), 10 reserved bytes, then remapping structures until the end of
//! the table, each starting with `{u16 type, u16 length}` (§8.1, §8.2).
//!
//! What the parser guarantees: it never reads outside the table, every
//! structure and device scope length is checked against its minimum and
//! against the space left, and each loop advances by a checked non-zero
//! length, so any byte string terminates with `Ok` or an [`Error`]. Oddities
//! that real firmware ships (see `shared/corpus/quirks.tsv`) come back as
//! [`Warning`]s in [`Dmar::warnings`].

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use bitflags::bitflags;

use crate::bytes::Lossy;
use crate::error::{Error, Signature, Warning};
use crate::sdt::SdtHeader;

/// The DMAR signature.
pub const SIGNATURE: Signature = *b"DMAR";
/// Header plus the DMAR fixed fields (§8.1, Table 8-1 offsets 36..48).
pub const DMAR_HEADER_LEN: usize = 48;
/// Fixed part of a device scope: type, length, flags, reserved,
/// enumeration ID, start bus (§8.3.1).
pub const SCOPE_HEADER_LEN: usize = 6;

bitflags! {
    /// DMAR Flags byte (§8.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DmarFlags: u8 {
        /// Interrupt remapping supported.
        const INTR_REMAP = 1 << 0;
        /// Firmware asks the OS not to enable x2APIC mode.
        const X2APIC_OPT_OUT = 1 << 1;
        /// Platform opts in to DMA protection at OS hand-off (kernel DMA
        /// protection, §8.1).
        const DMA_CTRL_PLATFORM_OPT_IN = 1 << 2;
        const _ = !0;
    }
}

bitflags! {
    /// DRHD Flags (§8.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DrhdFlags: u8 {
        /// The unit covers every PCI device on its segment not claimed by
        /// another unit; its scopes then list only IOAPICs, HPETs and ACPI
        /// namespace devices.
        const INCLUDE_PCI_ALL = 1 << 0;
        const _ = !0;
    }
}

bitflags! {
    /// ATSR Flags (§8.5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct AtsrFlags: u8 {
        /// Every root port on the segment supports ATS; scopes are then empty.
        const ALL_PORTS = 1 << 0;
        const _ = !0;
    }
}

bitflags! {
    /// SATC Flags (§8.8).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SatcFlags: u8 {
        /// The listed devices must have ATS enabled to work correctly.
        const ATC_REQUIRED = 1 << 0;
        const _ = !0;
    }
}

/// Device scope type (§8.3.1, Table 8-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeType {
    /// 1: a PCI endpoint device.
    PciEndpoint,
    /// 2: a PCI-PCI bridge and everything below it.
    PciSubHierarchy,
    /// 3: an I/O APIC; enumeration ID is its APIC ID.
    IoApic,
    /// 4: an MSI-capable HPET; enumeration ID is its HPET number.
    HpetMsi,
    /// 5: an ACPI namespace device; enumeration ID matches an ANDD.
    AcpiNamespace,
    /// A reserved value.
    Reserved(u8),
}

impl ScopeType {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => ScopeType::PciEndpoint,
            2 => ScopeType::PciSubHierarchy,
            3 => ScopeType::IoApic,
            4 => ScopeType::HpetMsi,
            5 => ScopeType::AcpiNamespace,
            other => ScopeType::Reserved(other),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            ScopeType::PciEndpoint => 1,
            ScopeType::PciSubHierarchy => 2,
            ScopeType::IoApic => 3,
            ScopeType::HpetMsi => 4,
            ScopeType::AcpiNamespace => 5,
            ScopeType::Reserved(v) => v,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScopeType::PciEndpoint => "PCI endpoint",
            ScopeType::PciSubHierarchy => "PCI sub-hierarchy",
            ScopeType::IoApic => "IOAPIC",
            ScopeType::HpetMsi => "HPET",
            ScopeType::AcpiNamespace => "ACPI namespace device",
            ScopeType::Reserved(_) => "reserved",
        }
    }
}

/// One hop of a device scope path: a device and function on the bus reached
/// so far (§8.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathEntry {
    pub device: u8,
    pub function: u8,
}

/// A device scope (§8.3.1): which devices a structure applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceScope {
    /// Offset of the scope from the start of the table.
    pub offset: usize,
    pub scope_type: ScopeType,
    /// Byte 2. Reserved before VT-d 4.1; since then it carries per-device
    /// flags (e.g. in SIDP/SATC scopes). Kept raw.
    pub flags: u8,
    /// IOAPIC ID, HPET number or ACPI device number, by type.
    pub enumeration_id: u8,
    pub start_bus: u8,
    /// The first pair is on `start_bus`; each next pair is on the secondary
    /// bus of the bridge named by the previous one.
    pub path: Vec<PathEntry>,
}

impl DeviceScope {
    /// The device this scope resolves to when the path has a single hop:
    /// `(bus, device, function)`. Longer paths need the bridges' secondary
    /// bus numbers, which only PCI enumeration knows.
    pub fn single_hop_bdf(&self) -> Option<(u8, u8, u8)> {
        match self.path.as_slice() {
            [only] => Some((self.start_bus, only.device, only.function)),
            _ => None,
        }
    }

    /// The device this scope names, `(bus, device, function)`, following a
    /// path of any length: each further hop is on the secondary bus of the
    /// bridge the previous one named (§8.3.1.1), which `secondary_bus(bus,
    /// device, function)` looks up in the enumerated PCI topology. `None` when
    /// the path is empty or a hop names no enumerated bridge.
    pub fn resolve(
        &self,
        mut secondary_bus: impl FnMut(u8, u8, u8) -> Option<u8>,
    ) -> Option<(u8, u8, u8)> {
        let (first, rest) = self.path.split_first()?;
        let mut at = (self.start_bus, first.device, first.function);
        for hop in rest {
            let bus = secondary_bus(at.0, at.1, at.2)?;
            at = (bus, hop.device, hop.function);
        }
        Some(at)
    }

    /// The path as `bb:dd.f` for the first hop and `/dd.f` for each further
    /// hop, e.g. `00:1c.4/00.0`.
    pub fn path_display(&self) -> PathDisplay<'_> {
        PathDisplay(self)
    }
}

/// See [`DeviceScope::path_display`].
pub struct PathDisplay<'a>(&'a DeviceScope);

impl fmt::Display for PathDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.path.is_empty() {
            return write!(f, "{:02x}:(empty path)", s.start_bus);
        }
        for (i, p) in s.path.iter().enumerate() {
            if i == 0 {
                write!(f, "{:02x}:{:02x}.{:x}", s.start_bus, p.device, p.function)?;
            } else {
                write!(f, "/{:02x}.{:x}", p.device, p.function)?;
            }
        }
        Ok(())
    }
}

/// DMA Remapping Hardware Unit Definition, type 0 (§8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drhd {
    pub offset: usize,
    pub flags: DrhdFlags,
    /// Byte 5: bits 3:0 give the register set size as 2^N 4 KiB pages
    /// (VT-d 4.0+; reserved and 0 before, meaning one page).
    pub size: u8,
    pub segment: u16,
    pub register_base: u64,
    pub scopes: Vec<DeviceScope>,
}

impl Drhd {
    pub fn include_pci_all(&self) -> bool {
        self.flags.contains(DrhdFlags::INCLUDE_PCI_ALL)
    }
    /// Number of 4 KiB pages of the register set: 2^(size bits 3:0).
    pub fn register_pages(&self) -> u64 {
        1u64 << (self.size & 0x0f)
    }
    /// Size of the register set in bytes.
    pub fn register_size(&self) -> u64 {
        self.register_pages() * 4096
    }
}

/// Reserved Memory Region Reporting, type 1 (§8.4): memory that devices in
/// its scopes may DMA to at any time, to be identity-mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rmrr {
    pub offset: usize,
    pub segment: u16,
    pub base: u64,
    /// Last byte of the region (inclusive).
    pub limit: u64,
    pub scopes: Vec<DeviceScope>,
}

impl Rmrr {
    /// Size in bytes, `None` when the range is inverted or is the
    /// zero/zero quirk (see [`WarningKind::RmrrInvalidRange`]).
    pub fn size(&self) -> Option<u64> {
        if self.limit < self.base || (self.base == 0 && self.limit == 0) {
            None
        } else {
            (self.limit - self.base).checked_add(1)
        }
    }
}

/// Root Port ATS Capability Reporting, type 2 (§8.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atsr {
    pub offset: usize,
    pub flags: AtsrFlags,
    pub segment: u16,
    pub scopes: Vec<DeviceScope>,
}

/// Remapping Hardware Static Affinity, type 3 (§8.6): the NUMA node of a
/// remapping unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rhsa {
    pub offset: usize,
    pub register_base: u64,
    pub proximity_domain: u32,
}

/// ACPI Name-space Device Declaration, type 4 (§8.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Andd {
    pub offset: usize,
    /// Matches the enumeration ID of a type-5 device scope.
    pub device_number: u8,
    /// Object name bytes up to (not including) the first NUL.
    pub name: Vec<u8>,
}

impl Andd {
    pub fn name_lossy(&self) -> Lossy<'_> {
        Lossy(&self.name)
    }
    /// The name as a String with non-ASCII bytes escaped.
    pub fn name_string(&self) -> String {
        alloc::format!("{}", Lossy(&self.name))
    }
}

/// SoC Integrated Address Translation Cache reporting, type 5 (§8.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Satc {
    pub offset: usize,
    pub flags: SatcFlags,
    pub segment: u16,
    pub scopes: Vec<DeviceScope>,
}

/// A structure of a type this parser does not decode (e.g. 6 = SIDP),
/// skipped by its length as §8.2 asks of software.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownStructure {
    pub offset: usize,
    pub kind: u16,
    pub length: u16,
}

/// One remapping structure, in table order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemappingStructure {
    Drhd(Drhd),
    Rmrr(Rmrr),
    Atsr(Atsr),
    Rhsa(Rhsa),
    Andd(Andd),
    Satc(Satc),
    Unknown(UnknownStructure),
}

impl RemappingStructure {
    pub fn offset(&self) -> usize {
        match self {
            RemappingStructure::Drhd(s) => s.offset,
            RemappingStructure::Rmrr(s) => s.offset,
            RemappingStructure::Atsr(s) => s.offset,
            RemappingStructure::Rhsa(s) => s.offset,
            RemappingStructure::Andd(s) => s.offset,
            RemappingStructure::Satc(s) => s.offset,
            RemappingStructure::Unknown(s) => s.offset,
        }
    }

    /// The type number as stored in the table.
    pub fn kind(&self) -> u16 {
        match self {
            RemappingStructure::Drhd(_) => 0,
            RemappingStructure::Rmrr(_) => 1,
            RemappingStructure::Atsr(_) => 2,
            RemappingStructure::Rhsa(_) => 3,
            RemappingStructure::Andd(_) => 4,
            RemappingStructure::Satc(_) => 5,
            RemappingStructure::Unknown(u) => u.kind,
        }
    }

    /// Device scopes, empty for types that have none.
    pub fn scopes(&self) -> &[DeviceScope] {
        match self {
            RemappingStructure::Drhd(s) => &s.scopes,
            RemappingStructure::Rmrr(s) => &s.scopes,
            RemappingStructure::Atsr(s) => &s.scopes,
            RemappingStructure::Satc(s) => &s.scopes,
            _ => &[],
        }
    }
}

/// Short name of a remapping structure type.
pub fn structure_name(kind: u16) -> &'static str {
    match kind {
        0 => "DRHD",
        1 => "RMRR",
        2 => "ATSR",
        3 => "RHSA",
        4 => "ANDD",
        5 => "SATC",
        6 => "SIDP",
        _ => "unknown",
    }
}

/// Minimum length of each structure type: its fixed fields (§8.3-§8.8).
fn minimum_length(kind: u16) -> usize {
    match kind {
        0 => 16,
        1 => 24,
        2 => 8,
        3 => 20,
        4 => 8,
        5 => 8,
        // Only the type/length header is known for other types.
        _ => 4,
    }
}

/// Counts of structures per type, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StructureCounts {
    pub drhd: usize,
    pub rmrr: usize,
    pub atsr: usize,
    pub rhsa: usize,
    pub andd: usize,
    pub satc: usize,
    pub other: usize,
}

/// A decoded DMAR table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dmar {
    pub header: SdtHeader,
    /// The raw Host Address Width byte: the DMA address width is this + 1.
    pub host_address_width: u8,
    pub flags: DmarFlags,
    pub structures: Vec<RemappingStructure>,
    pub warnings: Vec<Warning>,
}

impl Dmar {
    /// Parses a DMAR table from `bytes` (which may extend past the table).
    pub fn parse(bytes: &[u8]) -> Result<Dmar, Error> {
        parse(bytes)
    }

    /// Maximum DMA physical address width in bits (HAW + 1, §8.1).
    pub fn address_width_bits(&self) -> u32 {
        u32::from(self.host_address_width) + 1
    }

    pub fn drhds(&self) -> impl Iterator<Item = &Drhd> {
        self.structures.iter().filter_map(|s| match s {
            RemappingStructure::Drhd(d) => Some(d),
            _ => None,
        })
    }
    pub fn rmrrs(&self) -> impl Iterator<Item = &Rmrr> {
        self.structures.iter().filter_map(|s| match s {
            RemappingStructure::Rmrr(d) => Some(d),
            _ => None,
        })
    }
    pub fn atsrs(&self) -> impl Iterator<Item = &Atsr> {
        self.structures.iter().filter_map(|s| match s {
            RemappingStructure::Atsr(d) => Some(d),
            _ => None,
        })
    }
    pub fn rhsas(&self) -> impl Iterator<Item = &Rhsa> {
        self.structures.iter().filter_map(|s| match s {
            RemappingStructure::Rhsa(d) => Some(d),
            _ => None,
        })
    }
    pub fn andds(&self) -> impl Iterator<Item = &Andd> {
        self.structures.iter().filter_map(|s| match s {
            RemappingStructure::Andd(d) => Some(d),
            _ => None,
        })
    }
    pub fn satcs(&self) -> impl Iterator<Item = &Satc> {
        self.structures.iter().filter_map(|s| match s {
            RemappingStructure::Satc(d) => Some(d),
            _ => None,
        })
    }

    pub fn counts(&self) -> StructureCounts {
        let mut c = StructureCounts::default();
        for s in &self.structures {
            match s {
                RemappingStructure::Drhd(_) => c.drhd += 1,
                RemappingStructure::Rmrr(_) => c.rmrr += 1,
                RemappingStructure::Atsr(_) => c.atsr += 1,
                RemappingStructure::Rhsa(_) => c.rhsa += 1,
                RemappingStructure::Andd(_) => c.andd += 1,
                RemappingStructure::Satc(_) => c.satc += 1,
                RemappingStructure::Unknown(_) => c.other += 1,
            }
        }
        c
    }
}

mod namespace;
mod parse;
pub use namespace::{NamespaceDevice, NamespaceProblem};
pub use parse::parse;

#[cfg(test)]
#[path = "dmar_tests.rs"]
mod tests;
