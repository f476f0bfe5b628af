//! Generic Address Structure (ACPI 6.5 §5.2.3.2, Table 5.1), used by FADT
//! and HPET to say where a register block lives.

use core::fmt;

use crate::bytes::{u64_at, u8_at};

/// Size of a GAS in a table.
pub const GAS_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenericAddress {
    /// 0 system memory, 1 system I/O, 2 PCI config, 3 embedded controller,
    /// 4 SMBus, 5 CMOS, 6 PCI BAR target, 7 IPMI, 8 GPIO, 9 serial bus,
    /// 0xA PCC, 0xB PRM, 0x7F functional fixed hardware.
    pub address_space: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    /// 0 undefined (legacy), 1 byte, 2 word, 3 dword, 4 qword.
    pub access_size: u8,
    pub address: u64,
}

impl GenericAddress {
    pub(crate) fn read(b: &[u8], off: usize) -> Option<Self> {
        Some(GenericAddress {
            address_space: u8_at(b, off)?,
            bit_width: u8_at(b, off.checked_add(1)?)?,
            bit_offset: u8_at(b, off.checked_add(2)?)?,
            access_size: u8_at(b, off.checked_add(3)?)?,
            address: u64_at(b, off.checked_add(4)?)?,
        })
    }

    /// Name of the address space, as iasl prints it.
    pub fn space_name(&self) -> &'static str {
        match self.address_space {
            0 => "SystemMemory",
            1 => "SystemIO",
            2 => "PCI Configuration",
            3 => "EmbeddedControl",
            4 => "SMBus",
            5 => "SystemCMOS",
            6 => "PciBarTarget",
            7 => "IPMI",
            8 => "GeneralPurposeIo",
            9 => "GenericSerialBus",
            0x0a => "PCC",
            0x0b => "PRM",
            0x7f => "FunctionalFixedHW",
            _ => "Reserved",
        }
    }

    /// An all-zero GAS means "not present" in FADT X_ fields.
    pub fn is_null(&self) -> bool {
        self.address == 0
    }
}

impl fmt::Display for GenericAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) {:#018x} width {} offset {} access {}",
            self.space_name(),
            self.address_space,
            self.address,
            self.bit_width,
            self.bit_offset,
            self.access_size
        )
    }
}
