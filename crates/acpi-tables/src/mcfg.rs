//! PCI Express memory-mapped configuration table (PCI Firmware spec 3.3,
//! §4.1.2): 36-byte header, 8 reserved bytes, then 16-byte allocations.

use alloc::vec::Vec;

use crate::bytes::{u16_at, u64_at, u8_at};
use crate::error::{Error, ErrorKind, Location, Signature, Warning, WarningKind};
use crate::sdt::{SdtHeader, Table};

pub const SIGNATURE: Signature = *b"MCFG";
const ENTRIES_START: usize = 44;
const ENTRY_LEN: usize = 16;

/// One ECAM window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McfgEntry {
    /// Offset of the entry from the start of the table.
    pub offset: usize,
    /// Physical address of bus 0's configuration space in this window (even
    /// when `start_bus` is not 0: the window is addressed as if it began at
    /// bus 0).
    pub base_address: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl McfgEntry {
    /// Physical address of the config space of `bus:dev.fn` at register 0,
    /// if `bus` is in this window (PCIe base spec §7.2.2: bus << 20 |
    /// dev << 15 | fn << 12).
    pub fn ecam_address(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if bus < self.start_bus || bus > self.end_bus || device > 31 || function > 7 {
            return None;
        }
        let off = (u64::from(bus) << 20) | (u64::from(device) << 15) | (u64::from(function) << 12);
        self.base_address.checked_add(off)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mcfg {
    pub header: SdtHeader,
    pub entries: Vec<McfgEntry>,
    pub warnings: Vec<Warning>,
}

impl Mcfg {
    pub fn parse(bytes: &[u8]) -> Result<Mcfg, Error> {
        parse(bytes)
    }
}

pub fn parse(bytes: &[u8]) -> Result<Mcfg, Error> {
    let table = Table::new(bytes, Some(SIGNATURE), ENTRIES_START)?;
    let t = table.bytes;
    let mut warnings = table.header.warnings();
    let body = t.len() - ENTRIES_START;
    if !body.is_multiple_of(ENTRY_LEN) {
        return Err(Error::new(
            SIGNATURE,
            ENTRIES_START,
            Location::Header,
            ErrorKind::EntriesNotWhole {
                bytes: body,
                entry_size: ENTRY_LEN,
            },
        ));
    }
    let mut entries = Vec::new();
    for index in 0..body / ENTRY_LEN {
        let off = ENTRIES_START + index * ENTRY_LEN;
        let loc = Location::Structure {
            name: "allocation",
            kind: 0,
            index,
        };
        let (Some(base_address), Some(segment), Some(start_bus), Some(end_bus)) = (
            u64_at(t, off),
            u16_at(t, off + 8),
            u8_at(t, off + 10),
            u8_at(t, off + 11),
        ) else {
            return Err(Error::new(
                SIGNATURE,
                off,
                loc,
                ErrorKind::Truncated {
                    needed: off + ENTRY_LEN,
                    available: t.len(),
                },
            ));
        };
        if start_bus > end_bus {
            warnings.push(Warning::new(
                SIGNATURE,
                off + 10,
                loc.clone(),
                WarningKind::BusRangeInverted {
                    start: start_bus,
                    end: end_bus,
                },
            ));
        }
        if base_address == 0 {
            warnings.push(Warning::new(
                SIGNATURE,
                off,
                loc,
                WarningKind::ZeroAddress {
                    field: "ECAM base address",
                },
            ));
        }
        entries.push(McfgEntry {
            offset: off,
            base_address,
            segment,
            start_bus,
            end_bus,
        });
    }
    Ok(Mcfg {
        header: table.header,
        entries,
        warnings,
    })
}
