//! IA-PC HPET description table (Intel "IA-PC HPET Specification" 1.0a,
//! §3.2.4, Table 3).

use alloc::vec::Vec;

use crate::bytes::{u16_at, u32_at, u8_at};
use crate::error::{Error, ErrorKind, Location, Signature, Warning, WarningKind};
use crate::gas::GenericAddress;
use crate::sdt::{SdtHeader, Table};

pub const SIGNATURE: Signature = *b"HPET";
/// Header + block id (4) + base GAS (12) + number (1) + min tick (2) +
/// page protection (1).
pub const HPET_LEN: usize = 56;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hpet {
    pub header: SdtHeader,
    /// Event Timer Block ID: a copy of the low 32 bits of the HPET
    /// capabilities register.
    pub event_timer_block_id: u32,
    pub base_address: GenericAddress,
    pub hpet_number: u8,
    /// Minimum clock ticks for periodic mode without lost interrupts.
    pub min_tick: u16,
    /// Bits 3:0 protection (0 none, 1 4 KiB, 2 64 KiB), bits 7:4 OEM.
    pub page_protection: u8,
    pub warnings: Vec<Warning>,
}

impl Hpet {
    pub fn parse(bytes: &[u8]) -> Result<Hpet, Error> {
        parse(bytes)
    }
    /// Bits 7:0.
    pub fn hardware_rev_id(&self) -> u8 {
        (self.event_timer_block_id & 0xff) as u8
    }
    /// Bits 12:8 hold the number of the last comparator, so count = +1.
    pub fn comparator_count(&self) -> u8 {
        ((self.event_timer_block_id >> 8) & 0x1f) as u8 + 1
    }
    /// Bit 13: main counter is 64 bits wide.
    pub fn counter_64bit(&self) -> bool {
        self.event_timer_block_id & (1 << 13) != 0
    }
    /// Bit 15: legacy replacement IRQ routing capable.
    pub fn legacy_replacement(&self) -> bool {
        self.event_timer_block_id & (1 << 15) != 0
    }
    /// Bits 31:16.
    pub fn pci_vendor_id(&self) -> u16 {
        (self.event_timer_block_id >> 16) as u16
    }
    /// Page protection, bits 3:0.
    pub fn protection(&self) -> u8 {
        self.page_protection & 0x0f
    }
}

pub fn parse(bytes: &[u8]) -> Result<Hpet, Error> {
    let table = Table::new(bytes, Some(SIGNATURE), HPET_LEN)?;
    let t = table.bytes;
    let mut warnings = table.header.warnings();
    let short = || {
        Error::new(
            SIGNATURE,
            36,
            Location::Header,
            ErrorKind::Truncated {
                needed: HPET_LEN,
                available: t.len(),
            },
        )
    };
    let event_timer_block_id = u32_at(t, 36).ok_or_else(short)?;
    let base_address = GenericAddress::read(t, 40).ok_or_else(short)?;
    let hpet_number = u8_at(t, 52).ok_or_else(short)?;
    let min_tick = u16_at(t, 53).ok_or_else(short)?;
    let page_protection = u8_at(t, 55).ok_or_else(short)?;
    if base_address.address == 0 {
        warnings.push(Warning::new(
            SIGNATURE,
            44,
            Location::Header,
            WarningKind::ZeroAddress {
                field: "HPET base address",
            },
        ));
    }
    Ok(Hpet {
        header: table.header,
        event_timer_block_id,
        base_address,
        hpet_number,
        min_tick,
        page_protection,
        warnings,
    })
}
