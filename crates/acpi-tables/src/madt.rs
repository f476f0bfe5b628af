//! Multiple APIC Description Table (ACPI 6.5 §5.2.12): 36-byte header,
//! local APIC address (u32), flags (u32), then interrupt controller
//! structures, each starting with `{u8 type, u8 length}`.

use alloc::vec::Vec;

use bitflags::bitflags;

use crate::bytes::{u16_at, u32_at, u64_at, u8_at};
use crate::error::{Error, ErrorKind, Location, Signature, Warning};
use crate::sdt::{SdtHeader, Table};

pub const SIGNATURE: Signature = *b"APIC";
const ENTRIES_START: usize = 44;

bitflags! {
    /// MADT flags (ACPI 6.5 Table 5.20).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct MadtFlags: u32 {
        /// Dual 8259 PICs are installed and must be masked to use the APICs.
        const PCAT_COMPAT = 1 << 0;
        const _ = !0;
    }
}

/// One interrupt controller structure (ACPI 6.5 §5.2.12.2 onwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadtEntry {
    /// Type 0 (§5.2.12.2). Flags bit 0 enabled, bit 1 online capable.
    LocalApic {
        processor_uid: u8,
        apic_id: u8,
        flags: u32,
    },
    /// Type 1 (§5.2.12.3).
    IoApic { id: u8, address: u32, gsi_base: u32 },
    /// Type 2 (§5.2.12.5): ISA IRQ `source` is GSI `gsi`. Flags: MPS INTI
    /// polarity (bits 1:0) and trigger mode (bits 3:2).
    InterruptSourceOverride {
        bus: u8,
        source: u8,
        gsi: u32,
        flags: u16,
    },
    /// Type 3 (§5.2.12.6).
    NmiSource { flags: u16, gsi: u32 },
    /// Type 4 (§5.2.12.7): processor UID 0xFF means all processors.
    LocalApicNmi {
        processor_uid: u8,
        flags: u16,
        lint: u8,
    },
    /// Type 5 (§5.2.12.8): 64-bit local APIC address replacing the header's.
    LocalApicAddressOverride { address: u64 },
    /// Type 9 (§5.2.12.12).
    X2Apic {
        x2apic_id: u32,
        flags: u32,
        processor_uid: u32,
    },
    /// Type 10 (§5.2.12.13): processor UID 0xFFFFFFFF means all.
    X2ApicNmi {
        flags: u16,
        processor_uid: u32,
        lint: u8,
    },
    /// Any other type, skipped by its length.
    Unknown { kind: u8, length: u8 },
}

impl MadtEntry {
    pub fn name(&self) -> &'static str {
        match self {
            MadtEntry::LocalApic { .. } => "Local APIC",
            MadtEntry::IoApic { .. } => "I/O APIC",
            MadtEntry::InterruptSourceOverride { .. } => "Interrupt Source Override",
            MadtEntry::NmiSource { .. } => "NMI Source",
            MadtEntry::LocalApicNmi { .. } => "Local APIC NMI",
            MadtEntry::LocalApicAddressOverride { .. } => "Local APIC Address Override",
            MadtEntry::X2Apic { .. } => "Local x2APIC",
            MadtEntry::X2ApicNmi { .. } => "Local x2APIC NMI",
            MadtEntry::Unknown { .. } => "unknown",
        }
    }
}

/// Name and minimum length of each decoded type (ACPI 6.5 Tables 5.21-5.34).
fn type_info(kind: u8) -> (&'static str, usize) {
    match kind {
        0 => ("Local APIC", 8),
        1 => ("I/O APIC", 12),
        2 => ("Interrupt Source Override", 10),
        3 => ("NMI Source", 8),
        4 => ("Local APIC NMI", 6),
        5 => ("Local APIC Address Override", 12),
        9 => ("Local x2APIC", 16),
        10 => ("Local x2APIC NMI", 12),
        _ => ("unknown", 2),
    }
}

/// An entry and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadtRecord {
    /// Offset from the start of the table.
    pub offset: usize,
    pub entry: MadtEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Madt {
    pub header: SdtHeader,
    pub local_apic_address: u32,
    pub flags: MadtFlags,
    pub entries: Vec<MadtRecord>,
    pub warnings: Vec<Warning>,
}

impl Madt {
    pub fn parse(bytes: &[u8]) -> Result<Madt, Error> {
        parse(bytes)
    }

    /// The local APIC address to use: a type-5 override wins (§5.2.12.8).
    pub fn effective_local_apic_address(&self) -> u64 {
        self.entries
            .iter()
            .find_map(|r| match r.entry {
                MadtEntry::LocalApicAddressOverride { address } => Some(address),
                _ => None,
            })
            .unwrap_or(u64::from(self.local_apic_address))
    }
}

pub fn parse(bytes: &[u8]) -> Result<Madt, Error> {
    let table = Table::new(bytes, Some(SIGNATURE), ENTRIES_START)?;
    let t = table.bytes;
    let warnings = table.header.warnings();
    let hdr_short = |off| {
        Error::new(
            SIGNATURE,
            off,
            Location::Header,
            ErrorKind::Truncated {
                needed: ENTRIES_START,
                available: t.len(),
            },
        )
    };
    let local_apic_address = u32_at(t, 36).ok_or_else(|| hdr_short(36))?;
    let flags = MadtFlags::from_bits_retain(u32_at(t, 40).ok_or_else(|| hdr_short(40))?);

    let mut entries = Vec::new();
    let mut off = ENTRIES_START;
    let mut index = 0usize;
    while off < t.len() {
        let remaining = t.len() - off;
        let (Some(kind), Some(len)) = (u8_at(t, off), u8_at(t, off + 1)) else {
            return Err(Error::new(
                SIGNATURE,
                off,
                Location::Tail { index },
                ErrorKind::TrailingBytes { count: remaining },
            ));
        };
        let (name, minimum) = type_info(kind);
        let loc = Location::Structure {
            name,
            kind: u16::from(kind),
            index,
        };
        let length = usize::from(len);
        if length < minimum {
            return Err(Error::new(
                SIGNATURE,
                off,
                loc,
                ErrorKind::StructureTooShort { length, minimum },
            ));
        }
        let Some(e) = t.get(off..off + length) else {
            return Err(Error::new(
                SIGNATURE,
                off,
                loc,
                ErrorKind::StructureOverrun { length, remaining },
            ));
        };
        // Lengths were checked against the minimum for the type, so every
        // read below is in range; `decode` still returns None rather than
        // panic if that ever stops being true.
        let entry = decode(kind, len, e).ok_or_else(|| {
            Error::new(
                SIGNATURE,
                off,
                loc.clone(),
                ErrorKind::StructureTooShort { length, minimum },
            )
        })?;
        entries.push(MadtRecord { offset: off, entry });
        off += length;
        index += 1;
    }
    Ok(Madt {
        header: table.header,
        local_apic_address,
        flags,
        entries,
        warnings,
    })
}

fn decode(kind: u8, length: u8, e: &[u8]) -> Option<MadtEntry> {
    Some(match kind {
        0 => MadtEntry::LocalApic {
            processor_uid: u8_at(e, 2)?,
            apic_id: u8_at(e, 3)?,
            flags: u32_at(e, 4)?,
        },
        1 => MadtEntry::IoApic {
            id: u8_at(e, 2)?,
            address: u32_at(e, 4)?,
            gsi_base: u32_at(e, 8)?,
        },
        2 => MadtEntry::InterruptSourceOverride {
            bus: u8_at(e, 2)?,
            source: u8_at(e, 3)?,
            gsi: u32_at(e, 4)?,
            flags: u16_at(e, 8)?,
        },
        3 => MadtEntry::NmiSource {
            flags: u16_at(e, 2)?,
            gsi: u32_at(e, 4)?,
        },
        4 => MadtEntry::LocalApicNmi {
            processor_uid: u8_at(e, 2)?,
            flags: u16_at(e, 3)?,
            lint: u8_at(e, 5)?,
        },
        5 => MadtEntry::LocalApicAddressOverride {
            address: u64_at(e, 4)?,
        },
        9 => MadtEntry::X2Apic {
            x2apic_id: u32_at(e, 4)?,
            flags: u32_at(e, 8)?,
            processor_uid: u32_at(e, 12)?,
        },
        10 => MadtEntry::X2ApicNmi {
            flags: u16_at(e, 2)?,
            processor_uid: u32_at(e, 4)?,
            lint: u8_at(e, 8)?,
        },
        kind => MadtEntry::Unknown { kind, length },
    })
}
