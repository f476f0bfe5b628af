//! Decoding a table of any supported kind, chosen by its signature. Used by
//! the host tool and the corpus tests.

use alloc::boxed::Box;

use crate::dmar::Dmar;
use crate::error::Error;
use crate::fadt::Fadt;
use crate::hpet::Hpet;
use crate::madt::Madt;
use crate::mcfg::Mcfg;
use crate::sdt::{SdtHeader, Table};
use crate::walk::{parse_root_table, RootTable, Rsdp, RSDP_SIGNATURE};

/// A decoded table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyTable {
    Dmar(Dmar),
    Madt(Madt),
    Mcfg(Mcfg),
    Hpet(Hpet),
    /// Boxed: the FADT decode is several times larger than the others.
    Fadt(Box<Fadt>),
    Root(RootTable),
    Rsdp(Rsdp),
    /// A table with a valid header that has no decoder here.
    Other(SdtHeader),
}

impl AnyTable {
    /// The signature, `"RSD PTR "` shortened to `RSDP`.
    pub fn signature(&self) -> [u8; 4] {
        match self {
            AnyTable::Dmar(t) => t.header.signature,
            AnyTable::Madt(t) => t.header.signature,
            AnyTable::Mcfg(t) => t.header.signature,
            AnyTable::Hpet(t) => t.header.signature,
            AnyTable::Fadt(t) => t.header.signature,
            AnyTable::Root(t) => t.header.signature,
            AnyTable::Rsdp(_) => *b"RSDP",
            AnyTable::Other(h) => h.signature,
        }
    }
}

/// Decodes `bytes` with the decoder its signature selects. Unknown
/// signatures still get their header, length and checksum checked.
pub fn decode(bytes: &[u8]) -> Result<AnyTable, Error> {
    if bytes.starts_with(&RSDP_SIGNATURE) {
        return Rsdp::parse(bytes).map(AnyTable::Rsdp);
    }
    Ok(match bytes.get(..4) {
        Some(b"DMAR") => AnyTable::Dmar(crate::dmar::parse(bytes)?),
        Some(b"APIC") => AnyTable::Madt(crate::madt::parse(bytes)?),
        Some(b"MCFG") => AnyTable::Mcfg(crate::mcfg::parse(bytes)?),
        Some(b"HPET") => AnyTable::Hpet(crate::hpet::parse(bytes)?),
        Some(b"FACP") => AnyTable::Fadt(Box::new(crate::fadt::parse(bytes)?)),
        Some(b"XSDT") | Some(b"RSDT") => AnyTable::Root(parse_root_table(bytes)?),
        _ => AnyTable::Other(Table::new(bytes, None, 0)?.header),
    })
}
