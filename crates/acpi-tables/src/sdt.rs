//! The System Description Table header shared by every ACPI table except the
//! RSDP and FACS (ACPI 6.5 §5.2.6, Table 5.4).

use alloc::vec::Vec;

use crate::bytes::{array_at, checksum, has_nonprintable, u32_at, u8_at, Lossy};
use crate::error::{Error, ErrorKind, Location, Signature, Warning, WarningKind};

/// Size of the standard header; every SDT is at least this long.
pub const HEADER_LEN: usize = 36;

/// The decoded 36-byte header. Text fields are kept as raw bytes because
/// firmware puts anything in them (see the corpus quirks); show them with
/// the `*_lossy` accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdtHeader {
    pub signature: Signature,
    /// Length of the whole table, header included.
    pub length: u32,
    pub revision: u8,
    pub checksum: u8,
    pub oem_id: [u8; 6],
    pub oem_table_id: [u8; 8],
    pub oem_revision: u32,
    /// "Creator ID" (ACPI) / "Asl Compiler ID" (iasl).
    pub creator_id: [u8; 4],
    pub creator_revision: u32,
}

fn truncated(table: Signature, needed: usize, available: usize) -> Error {
    Error::new(
        table,
        0,
        Location::Header,
        ErrorKind::Truncated { needed, available },
    )
}

/// Text fields are padded with spaces or NULs; drop trailing NULs for
/// display (they are padding, not content).
fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
    b.get(..end).unwrap_or(b)
}

impl SdtHeader {
    /// Decodes the first 36 bytes without checking length or checksum
    /// (use [`Table::new`] for that).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let sig: Signature = array_at(bytes, 0).unwrap_or(*b"????");
        let short = || truncated(sig, HEADER_LEN, bytes.len());
        Ok(SdtHeader {
            signature: sig,
            length: u32_at(bytes, 4).ok_or_else(short)?,
            revision: u8_at(bytes, 8).ok_or_else(short)?,
            checksum: u8_at(bytes, 9).ok_or_else(short)?,
            oem_id: array_at(bytes, 10).ok_or_else(short)?,
            oem_table_id: array_at(bytes, 16).ok_or_else(short)?,
            oem_revision: u32_at(bytes, 24).ok_or_else(short)?,
            creator_id: array_at(bytes, 28).ok_or_else(short)?,
            creator_revision: u32_at(bytes, 32).ok_or_else(short)?,
        })
    }

    /// Text fields for display, trailing NUL padding dropped, other
    /// non-printable bytes escaped.
    pub fn signature_lossy(&self) -> Lossy<'_> {
        Lossy(trim_nul(&self.signature))
    }
    pub fn oem_id_lossy(&self) -> Lossy<'_> {
        Lossy(trim_nul(&self.oem_id))
    }
    pub fn oem_table_id_lossy(&self) -> Lossy<'_> {
        Lossy(trim_nul(&self.oem_table_id))
    }
    pub fn creator_id_lossy(&self) -> Lossy<'_> {
        Lossy(trim_nul(&self.creator_id))
    }

    /// Warnings for text fields holding non-printable bytes (corpus quirk:
    /// e.g. OEM table ID `01 00 ...` on HP laptops, creator ID `84 85 4c 4c`
    /// on Dell ones).
    pub fn warnings(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        let fields: [(&'static str, usize, &[u8]); 3] = [
            ("OEM ID", 10, &self.oem_id),
            ("OEM Table ID", 16, &self.oem_table_id),
            ("creator ID", 28, &self.creator_id),
        ];
        for (field, offset, bytes) in fields {
            if has_nonprintable(bytes) {
                out.push(Warning::new(
                    self.signature,
                    offset,
                    Location::Header,
                    WarningKind::NonPrintable {
                        field,
                        bytes: bytes.to_vec(),
                    },
                ));
            }
        }
        out
    }
}

/// A table whose header has been checked: `bytes` is exactly
/// `header.length` bytes long and sums to 0.
#[derive(Debug, Clone, Copy)]
pub struct Table<'a> {
    pub header: SdtHeader,
    pub bytes: &'a [u8],
}

impl<'a> Table<'a> {
    /// Checks, in order: a whole header is present, the signature is
    /// `expected` (when given), `length >= max(36, min_len)`, `length` fits
    /// in `bytes`, and the checksum over `length` bytes is 0. Bytes past
    /// `length` are ignored (a dump or a mapping may be longer than the
    /// table).
    pub fn new(
        bytes: &'a [u8],
        expected: Option<Signature>,
        min_len: usize,
    ) -> Result<Self, Error> {
        let name = expected.or_else(|| array_at(bytes, 0)).unwrap_or(*b"????");
        if bytes.len() < HEADER_LEN {
            return Err(truncated(name, HEADER_LEN, bytes.len()));
        }
        let header = SdtHeader::parse(bytes).map_err(|mut e| {
            e.table = name;
            e
        })?;
        if let Some(sig) = expected {
            if header.signature != sig {
                return Err(Error::new(
                    name,
                    0,
                    Location::Header,
                    ErrorKind::BadSignature {
                        found: header.signature,
                    },
                ));
            }
        }
        // A u32 always fits in usize on the 64-bit targets we build for;
        // saturate rather than assume.
        let length = usize::try_from(header.length).unwrap_or(usize::MAX);
        let minimum = min_len.max(HEADER_LEN);
        if length < minimum {
            return Err(Error::new(
                name,
                4,
                Location::Header,
                ErrorKind::LengthTooSmall { length, minimum },
            ));
        }
        let Some(table) = bytes.get(..length) else {
            return Err(Error::new(
                name,
                4,
                Location::Header,
                ErrorKind::LengthExceedsData {
                    length,
                    available: bytes.len(),
                },
            ));
        };
        let sum = checksum(table);
        if sum != 0 {
            return Err(Error::new(
                name,
                9,
                Location::Header,
                ErrorKind::BadChecksum { sum },
            ));
        }
        Ok(Table {
            header,
            bytes: table,
        })
    }

    /// The table's signature.
    pub fn signature(&self) -> Signature {
        self.header.signature
    }
}

/// Sets byte 9 so that `table` sums to 0. For tests and tools that build
/// or patch tables.
pub fn fix_checksum(table: &mut [u8]) {
    if let Some(c) = table.get_mut(9) {
        *c = 0;
    }
    let sum = checksum(table);
    if let Some(c) = table.get_mut(9) {
        *c = 0u8.wrapping_sub(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn table(sig: &[u8; 4], len: usize) -> Vec<u8> {
        let mut t = vec![0u8; len];
        t[..4].copy_from_slice(sig);
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        t[8] = 1;
        t[10..16].copy_from_slice(b"BOCHS ");
        t[16..24].copy_from_slice(b"BXPC    ");
        t[28..32].copy_from_slice(b"BXPC");
        fix_checksum(&mut t);
        t
    }

    #[test]
    fn good_header() {
        let t = table(b"TEST", 40);
        let tab = Table::new(&t, Some(*b"TEST"), 0).unwrap();
        assert_eq!(tab.header.length, 40);
        assert_eq!(tab.header.revision, 1);
        assert_eq!(tab.bytes.len(), 40);
        assert_eq!(tab.header.oem_id_lossy().to_string(), "BOCHS ");
        assert!(tab.header.warnings().is_empty());
    }

    #[test]
    fn trailing_data_is_ignored() {
        let mut t = table(b"TEST", 40);
        t.extend_from_slice(&[0xaa; 10]);
        let tab = Table::new(&t, None, 0).unwrap();
        assert_eq!(tab.bytes.len(), 40);
    }

    #[test]
    fn truncated_header() {
        let t = table(b"TEST", 40);
        let e = Table::new(&t[..20], Some(*b"TEST"), 0).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::Truncated {
                needed: 36,
                available: 20
            }
        );
        assert_eq!(e.table, *b"TEST");
        let e = Table::new(&t[..2], None, 0).unwrap_err();
        assert_eq!(e.table, *b"????");
        assert!(e.to_string().contains("truncated"));
    }

    #[test]
    fn wrong_signature() {
        let t = table(b"APIC", 40);
        let e = Table::new(&t, Some(*b"DMAR"), 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadSignature { found: *b"APIC" });
    }

    #[test]
    fn length_checks() {
        let mut t = table(b"TEST", 40);
        t[4..8].copy_from_slice(&20u32.to_le_bytes());
        fix_checksum(&mut t);
        let e = Table::new(&t, None, 0).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::LengthTooSmall {
                length: 20,
                minimum: 36
            }
        );
        let t = table(b"TEST", 40);
        let e = Table::new(&t, None, 48).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::LengthTooSmall {
                length: 40,
                minimum: 48
            }
        );
        let e = Table::new(&t[..39], None, 0).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::LengthExceedsData {
                length: 40,
                available: 39
            }
        );
        assert_eq!(e.offset, 4);
    }

    #[test]
    fn bad_checksum() {
        let mut t = table(b"TEST", 40);
        t[39] = t[39].wrapping_add(3);
        let e = Table::new(&t, None, 0).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadChecksum { sum: 3 });
        assert_eq!(e.offset, 9);
        assert_eq!(
            e.to_string(),
            "TEST: header at offset 0x9: bad checksum: bytes sum to 0x03, not 0"
        );
    }

    #[test]
    fn nonprintable_oem_fields_warn() {
        let mut t = table(b"TEST", 40);
        t[16..24].copy_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        t[28..32].copy_from_slice(&[0x84, 0x85, 0x4c, 0x4c]);
        fix_checksum(&mut t);
        let tab = Table::new(&t, None, 0).unwrap();
        let w = tab.header.warnings();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].offset, 16);
        assert_eq!(
            w[0].to_string(),
            "TEST: header at offset 0x10: OEM Table ID has non-printable bytes 0100000000000000"
        );
        assert_eq!(
            w[1].kind,
            WarningKind::NonPrintable {
                field: "creator ID",
                bytes: vec![0x84, 0x85, 0x4c, 0x4c]
            }
        );
        assert_eq!(tab.header.creator_id_lossy().to_string(), "\\x84\\x85LL");
    }
}
