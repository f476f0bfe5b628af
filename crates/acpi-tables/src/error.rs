//! Error and warning values shared by all decoders.
//!
//! Every error names the table, the place inside it (header, a structure by
//! type and index, or a device scope inside a structure) and the byte offset
//! from the start of the table, so a report can be checked against a hex dump
//! or `iasl -d` output.

use alloc::vec::Vec;
use core::fmt;

use crate::bytes::Lossy;

/// A table signature such as `*b"DMAR"`.
pub type Signature = [u8; 4];

/// Where inside a table an error or warning applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The standard header or the fixed fields that follow it.
    Header,
    /// A variable-length record: a DMAR remapping structure, a MADT entry,
    /// an MCFG allocation, an RSDT/XSDT entry.
    Structure {
        /// Human name of the record type (`"RMRR"`, `"IO APIC"`, ...).
        name: &'static str,
        /// Numeric type as stored in the table.
        kind: u16,
        /// 0-based position among all records of the table.
        index: usize,
    },
    /// Bytes at the end of a table too few to hold the next record's header;
    /// `index` is the position that record would have had.
    Tail { index: usize },
    /// A DMAR device scope inside a remapping structure (VT-d §8.3.1).
    Scope {
        /// Name of the enclosing structure.
        name: &'static str,
        /// Type of the enclosing structure.
        kind: u16,
        /// Index of the enclosing structure.
        index: usize,
        /// 0-based position of the scope inside the structure.
        scope_index: usize,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Header => f.write_str("header"),
            Location::Tail { index } => write!(f, "structure #{index} (incomplete header)"),
            Location::Structure { name, kind, index } => {
                write!(f, "structure #{index} (type {kind}, {name})")
            }
            Location::Scope {
                name,
                kind,
                index,
                scope_index,
            } => write!(
                f,
                "structure #{index} (type {kind}, {name}) device scope #{scope_index}"
            ),
        }
    }
}

/// What is wrong. Lengths and offsets are in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The data ends before a fixed-size field or header ends.
    Truncated { needed: usize, available: usize },
    /// The signature is not the one the decoder was asked to decode.
    BadSignature { found: Signature },
    /// The header's length field is below the minimum for this table.
    LengthTooSmall { length: usize, minimum: usize },
    /// The header's length field says more bytes than were supplied.
    LengthExceedsData { length: usize, available: usize },
    /// The bytes of the table do not sum to 0 (ACPI 6.5 §5.2.6).
    BadChecksum { sum: u8 },
    /// A record's length field is below the minimum for its type (this
    /// includes length 0, which would otherwise loop forever).
    StructureTooShort { length: usize, minimum: usize },
    /// A record's length runs past the end of the table.
    StructureOverrun { length: usize, remaining: usize },
    /// Bytes left at the end of the table that cannot hold a record header.
    TrailingBytes { count: usize },
    /// A device scope's length is below 6, the size of its fixed part.
    ScopeTooShort { length: usize },
    /// A device scope runs past the end of its structure.
    ScopeOverrun { length: usize, remaining: usize },
    /// A device scope's path is not a whole number of (device, function)
    /// pairs (VT-d §8.3.1: length = 6 + 2 * N).
    ScopeOddPath { length: usize },
    /// An array of fixed-size entries does not divide evenly.
    EntriesNotWhole { bytes: usize, entry_size: usize },
    /// More entries than the decoder accepts (a bound against hostile input).
    TooManyEntries { count: usize, maximum: usize },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} available")
            }
            ErrorKind::BadSignature { found } => {
                write!(f, "unexpected signature \"{}\"", Lossy(&found))
            }
            ErrorKind::LengthTooSmall { length, minimum } => {
                write!(f, "table length {length} is below the minimum {minimum}")
            }
            ErrorKind::LengthExceedsData { length, available } => write!(
                f,
                "table length {length} exceeds the {available} bytes available"
            ),
            ErrorKind::BadChecksum { sum } => {
                write!(f, "bad checksum: bytes sum to {sum:#04x}, not 0")
            }
            ErrorKind::StructureTooShort { length, minimum } => {
                write!(f, "length {length} is below the minimum {minimum}")
            }
            ErrorKind::StructureOverrun { length, remaining } => write!(
                f,
                "length {length} runs past the end of the table ({remaining} bytes left)"
            ),
            ErrorKind::TrailingBytes { count } => write!(
                f,
                "{count} trailing bytes too short for a structure header"
            ),
            ErrorKind::ScopeTooShort { length } => {
                write!(f, "device scope length {length} is below the minimum 6")
            }
            ErrorKind::ScopeOverrun { length, remaining } => write!(
                f,
                "device scope length {length} runs past the end of its structure ({remaining} bytes left)"
            ),
            ErrorKind::ScopeOddPath { length } => write!(
                f,
                "device scope length {length} leaves an odd number of path bytes"
            ),
            ErrorKind::EntriesNotWhole { bytes, entry_size } => write!(
                f,
                "{bytes} bytes of entries are not a multiple of the entry size {entry_size}"
            ),
            ErrorKind::TooManyEntries { count, maximum } => {
                write!(f, "{count} entries exceed the limit of {maximum}")
            }
        }
    }
}

/// A malformed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The table being decoded (the expected signature when the data was
    /// too short to hold one).
    pub table: Signature,
    /// Byte offset from the start of the table.
    pub offset: usize,
    pub location: Location,
    pub kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(
        table: Signature,
        offset: usize,
        location: Location,
        kind: ErrorKind,
    ) -> Self {
        Error {
            table,
            offset,
            location,
            kind,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at offset {:#x}: {}",
            Lossy(&self.table),
            self.location,
            self.offset,
            self.kind
        )
    }
}

impl core::error::Error for Error {}

/// A well-formed but odd table: seen in real firmware, worth reporting,
/// not a reason to reject the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// An OEM ID / OEM table ID / creator ID field with bytes that are not
    /// printable ASCII (trailing NULs are not counted).
    NonPrintable { field: &'static str, bytes: Vec<u8> },
    /// DRHD with register base 0: the unit cannot be used (seen on a
    /// ThinkPad E15 Gen 2; Linux disables such a unit).
    RegisterBaseZero,
    /// Register base not 4 KiB aligned (VT-d §8.3: page aligned).
    RegisterBaseUnaligned { base: u64 },
    /// RMRR whose limit is below its base, or both 0 (seen on HP Compaq
    /// 6730b): describes no usable memory.
    RmrrInvalidRange { base: u64, limit: u64 },
    /// RMRR not on 4 KiB boundaries (VT-d §8.4: base 4 KiB aligned, limit
    /// the last byte of a 4 KiB page).
    RmrrUnaligned { base: u64, limit: u64 },
    /// A structure that must list devices (RMRR, SATC, ATSR without
    /// ALL_PORTS) lists none.
    NoDeviceScopes,
    /// A device scope type the VT-d spec reserves (0 or above 5).
    UnknownScopeType { scope_type: u8 },
    /// A device scope with no (device, function) pair.
    EmptyPath,
    /// A path entry with device > 31 or function > 7.
    PathEntryOutOfRange { device: u8, function: u8 },
    /// Two DRHDs with INCLUDE_PCI_ALL on one segment (VT-d §8.3: at most one).
    DuplicateIncludePciAll { segment: u16 },
    /// An INCLUDE_PCI_ALL DRHD that is not the last DRHD of its segment
    /// (VT-d §8.3 requires it last).
    IncludePciAllNotLast { segment: u16 },
    /// ANDD object name without a terminating NUL.
    NameNotTerminated,
    /// A legacy 32-bit field and its 64-bit X_ twin disagree (ACPI 6.5
    /// §5.2.9: the X_ field wins when non-zero).
    AddressMismatch {
        field: &'static str,
        legacy: u64,
        extended: u64,
    },
    /// An MCFG allocation whose start bus is above its end bus.
    BusRangeInverted { start: u8, end: u8 },
    /// An address that should be set is 0.
    ZeroAddress { field: &'static str },
    /// Bytes at the end of the table that belong to no entry.
    TrailingBytes { count: usize },
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarningKind::NonPrintable { field, bytes } => {
                write!(f, "{field} has non-printable bytes ")?;
                for b in bytes {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            WarningKind::RegisterBaseZero => f.write_str("register base address is 0"),
            WarningKind::RegisterBaseUnaligned { base } => {
                write!(f, "register base address {base:#x} is not 4 KiB aligned")
            }
            WarningKind::RmrrInvalidRange { base, limit } => {
                write!(f, "region {base:#x}-{limit:#x} is empty or inverted")
            }
            WarningKind::RmrrUnaligned { base, limit } => {
                write!(f, "region {base:#x}-{limit:#x} not 4KiB aligned")
            }
            WarningKind::NoDeviceScopes => f.write_str("no device scopes"),
            WarningKind::UnknownScopeType { scope_type } => {
                write!(f, "reserved device scope type {scope_type}")
            }
            WarningKind::EmptyPath => f.write_str("device scope has an empty path"),
            WarningKind::PathEntryOutOfRange { device, function } => write!(
                f,
                "path entry {device:02x}.{function:x} is outside device 0-31 / function 0-7"
            ),
            WarningKind::DuplicateIncludePciAll { segment } => {
                write!(f, "second INCLUDE_PCI_ALL unit on segment {segment:04x}")
            }
            WarningKind::IncludePciAllNotLast { segment } => write!(
                f,
                "INCLUDE_PCI_ALL unit is not the last unit of segment {segment:04x}"
            ),
            WarningKind::NameNotTerminated => f.write_str("object name is not NUL-terminated"),
            WarningKind::AddressMismatch {
                field,
                legacy,
                extended,
            } => write!(
                f,
                "{field} {legacy:#x} differs from X_{field} {extended:#x}; using X_{field}"
            ),
            WarningKind::BusRangeInverted { start, end } => {
                write!(f, "bus range {start:02x}-{end:02x} is inverted")
            }
            WarningKind::ZeroAddress { field } => write!(f, "{field} is 0"),
            WarningKind::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes ignored")
            }
        }
    }
}

/// A quirk found while decoding, located like an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub table: Signature,
    pub offset: usize,
    pub location: Location,
    pub kind: WarningKind,
}

impl Warning {
    pub(crate) fn new(
        table: Signature,
        offset: usize,
        location: Location,
        kind: WarningKind,
    ) -> Self {
        Warning {
            table,
            offset,
            location,
            kind,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at offset {:#x}: {}",
            Lossy(&self.table),
            self.location,
            self.offset,
            self.kind
        )
    }
}
