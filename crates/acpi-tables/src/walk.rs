//! RSDP → RSDT/XSDT → table list (ACPI 6.5 §5.2.5, §5.2.7, §5.2.8), over a
//! trait for reading physical memory so the same code runs on a byte image
//! on the host and on the kernel's direct map.
//!
//! The walker reads only the 36-byte header of each listed table (enough to
//! know its signature, length and OEM); [`read_table`] reads and checks a
//! whole table when the caller wants its bytes.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::bytes::{array_at, checksum, u32_at, u64_at, u8_at, Lossy};
use crate::error::{Error, ErrorKind, Location, Signature, Warning, WarningKind};
use crate::sdt::{SdtHeader, Table, HEADER_LEN};

/// Reading physical memory. The kernel implements it over its direct map,
/// tests over a byte image ([`SliceMemory`]).
pub trait PhysRead {
    /// Fills `buf` from physical address `phys`, or fails without a partial
    /// result mattering.
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysReadError>;
}

/// A physical range that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysReadError {
    pub phys: u64,
    pub len: usize,
}

impl fmt::Display for PhysReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {} bytes at {:#x}", self.len, self.phys)
    }
}

/// A byte image standing for physical memory from `base` on.
#[derive(Debug, Clone, Copy)]
pub struct SliceMemory<'a> {
    pub base: u64,
    pub bytes: &'a [u8],
}

impl PhysRead for SliceMemory<'_> {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysReadError> {
        let err = PhysReadError {
            phys,
            len: buf.len(),
        };
        let start = phys
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(err)?;
        let end = start.checked_add(buf.len()).ok_or(err)?;
        let src = self.bytes.get(start..end).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// RSDP signature (§5.2.5.3).
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// ACPI 1.0 RSDP size, covered by the first checksum.
pub const RSDP_V1_LEN: usize = 20;
/// ACPI 2.0+ RSDP size.
pub const RSDP_V2_LEN: usize = 36;
/// Bound on the RSDP's own length field (it is 36 in every revision so far).
const RSDP_MAX_LEN: usize = 4096;
/// Bound on RSDT/XSDT entries: real machines list a few dozen tables.
pub const MAX_ROOT_ENTRIES: usize = 4096;
/// Name used for RSDP errors.
const RSDP_NAME: Signature = *b"RSDP";

/// Root System Description Pointer (§5.2.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    pub checksum: u8,
    pub oem_id: [u8; 6],
    /// 0 for ACPI 1.0 (20-byte structure), 2 for ACPI 2.0 and later.
    pub revision: u8,
    pub rsdt_address: u32,
    /// Only for revision >= 2.
    pub length: Option<u32>,
    pub xsdt_address: Option<u64>,
    pub extended_checksum: Option<u8>,
}

fn rsdp_err(offset: usize, kind: ErrorKind) -> Error {
    Error::new(RSDP_NAME, offset, Location::Header, kind)
}

impl Rsdp {
    /// Decodes and checks an RSDP: signature, the 20-byte checksum, and for
    /// revision >= 2 the length and the extended checksum over `length`
    /// bytes.
    pub fn parse(bytes: &[u8]) -> Result<Rsdp, Error> {
        let v1 = bytes.get(..RSDP_V1_LEN).ok_or_else(|| {
            rsdp_err(
                0,
                ErrorKind::Truncated {
                    needed: RSDP_V1_LEN,
                    available: bytes.len(),
                },
            )
        })?;
        let sig: [u8; 8] = array_at(v1, 0).unwrap_or_default();
        if sig != RSDP_SIGNATURE {
            let found = array_at(v1, 0).unwrap_or(*b"????");
            return Err(rsdp_err(0, ErrorKind::BadSignature { found }));
        }
        let sum = checksum(v1);
        if sum != 0 {
            return Err(rsdp_err(8, ErrorKind::BadChecksum { sum }));
        }
        let short = |off| {
            rsdp_err(
                off,
                ErrorKind::Truncated {
                    needed: RSDP_V1_LEN,
                    available: bytes.len(),
                },
            )
        };
        let mut rsdp = Rsdp {
            checksum: u8_at(v1, 8).ok_or_else(|| short(8))?,
            oem_id: array_at(v1, 9).ok_or_else(|| short(9))?,
            revision: u8_at(v1, 15).ok_or_else(|| short(15))?,
            rsdt_address: u32_at(v1, 16).ok_or_else(|| short(16))?,
            length: None,
            xsdt_address: None,
            extended_checksum: None,
        };
        if rsdp.revision >= 2 {
            let length = u32_at(bytes, 20).ok_or_else(|| {
                rsdp_err(
                    20,
                    ErrorKind::Truncated {
                        needed: RSDP_V2_LEN,
                        available: bytes.len(),
                    },
                )
            })?;
            let len = usize::try_from(length).unwrap_or(usize::MAX);
            if !(RSDP_V2_LEN..=RSDP_MAX_LEN).contains(&len) {
                return Err(rsdp_err(
                    20,
                    ErrorKind::LengthTooSmall {
                        length: len,
                        minimum: RSDP_V2_LEN,
                    },
                ));
            }
            let all = bytes.get(..len).ok_or_else(|| {
                rsdp_err(
                    20,
                    ErrorKind::LengthExceedsData {
                        length: len,
                        available: bytes.len(),
                    },
                )
            })?;
            let sum = checksum(all);
            if sum != 0 {
                return Err(rsdp_err(32, ErrorKind::BadChecksum { sum }));
            }
            rsdp.length = Some(length);
            rsdp.xsdt_address = u64_at(all, 24);
            rsdp.extended_checksum = u8_at(all, 32);
        }
        Ok(rsdp)
    }

    pub fn oem_id_lossy(&self) -> Lossy<'_> {
        Lossy(&self.oem_id)
    }
}

/// Which root table lists the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKind {
    /// 32-bit entries (ACPI 1.0).
    Rsdt,
    /// 64-bit entries (ACPI 2.0+).
    Xsdt,
}

impl RootKind {
    pub fn signature(self) -> Signature {
        match self {
            RootKind::Rsdt => *b"RSDT",
            RootKind::Xsdt => *b"XSDT",
        }
    }
    pub fn entry_size(self) -> usize {
        match self {
            RootKind::Rsdt => 4,
            RootKind::Xsdt => 8,
        }
    }
}

/// A decoded RSDT or XSDT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootTable {
    pub header: SdtHeader,
    pub kind: RootKind,
    /// Physical addresses of the listed tables, in order.
    pub entries: Vec<u64>,
    pub warnings: Vec<Warning>,
}

/// Decodes an RSDT or XSDT from bytes (kind by signature).
pub fn parse_root_table(bytes: &[u8]) -> Result<RootTable, Error> {
    let sig: Signature = array_at(bytes, 0).unwrap_or(*b"????");
    let kind = match &sig {
        b"XSDT" => RootKind::Xsdt,
        b"RSDT" => RootKind::Rsdt,
        _ => {
            // Table::new reports truncation before a signature mismatch.
            Table::new(bytes, Some(*b"XSDT"), HEADER_LEN)?;
            return Err(Error::new(
                *b"XSDT",
                0,
                Location::Header,
                ErrorKind::BadSignature { found: sig },
            ));
        }
    };
    parse_root_as(bytes, kind)
}

fn parse_root_as(bytes: &[u8], kind: RootKind) -> Result<RootTable, Error> {
    let name = kind.signature();
    let table = Table::new(bytes, Some(name), HEADER_LEN)?;
    let mut warnings = table.header.warnings();
    let body = table.bytes.get(HEADER_LEN..).unwrap_or(&[]);
    let size = kind.entry_size();
    let count = body.len() / size;
    if count > MAX_ROOT_ENTRIES {
        return Err(Error::new(
            name,
            4,
            Location::Header,
            ErrorKind::TooManyEntries {
                count,
                maximum: MAX_ROOT_ENTRIES,
            },
        ));
    }
    let rest = body.len() % size;
    if rest != 0 {
        warnings.push(Warning::new(
            name,
            HEADER_LEN + count * size,
            Location::Header,
            WarningKind::TrailingBytes { count: rest },
        ));
    }
    let entries = body
        .chunks_exact(size)
        .map(|c| match kind {
            RootKind::Rsdt => u32_at(c, 0).map_or(0, u64::from),
            RootKind::Xsdt => u64_at(c, 0).unwrap_or(0),
        })
        .collect();
    Ok(RootTable {
        header: table.header,
        kind,
        entries,
        warnings,
    })
}

/// A table found through the root table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInfo {
    pub signature: Signature,
    pub address: u64,
    pub length: u32,
    pub revision: u8,
    pub oem_id: [u8; 6],
    pub oem_table_id: [u8; 8],
    pub oem_revision: u32,
}

impl TableInfo {
    fn from_header(address: u64, h: &SdtHeader) -> Self {
        TableInfo {
            signature: h.signature,
            address,
            length: h.length,
            revision: h.revision,
            oem_id: h.oem_id,
            oem_table_id: h.oem_table_id,
            oem_revision: h.oem_revision,
        }
    }
}

/// Why the walk failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    /// Memory the walk needed could not be read.
    Read {
        what: &'static str,
        error: PhysReadError,
    },
    /// The RSDP or the root table is malformed.
    Table(Error),
    /// The RSDP points to neither an RSDT nor an XSDT.
    NoRootTable,
    /// A table is longer than the caller's limit.
    TooLong {
        address: u64,
        length: u32,
        limit: usize,
    },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::Read { what, error } => write!(f, "{what}: {error}"),
            WalkError::Table(e) => write!(f, "{e}"),
            WalkError::NoRootTable => f.write_str("RSDP has neither an RSDT nor an XSDT address"),
            WalkError::TooLong {
                address,
                length,
                limit,
            } => write!(
                f,
                "table at {address:#x} claims {length} bytes, over the limit of {limit}"
            ),
        }
    }
}

impl core::error::Error for WalkError {}

impl From<Error> for WalkError {
    fn from(e: Error) -> Self {
        WalkError::Table(e)
    }
}

/// Something odd but survivable found on the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkWarning {
    /// A root table entry is 0 (skipped).
    NullEntry { index: usize },
    /// A listed table's header could not be read (skipped).
    Unreadable { index: usize, error: PhysReadError },
    /// A listed table's header claims fewer than 36 bytes (skipped).
    BadLength {
        index: usize,
        address: u64,
        length: u32,
    },
    /// The XSDT was unusable and the walk fell back to the RSDT, as ACPICA
    /// does.
    XsdtFallback { address: u64, error: Box<WalkError> },
    /// A warning from decoding the root table (e.g. trailing bytes).
    Root(Warning),
}

impl fmt::Display for WalkWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkWarning::NullEntry { index } => write!(f, "root table entry #{index} is null"),
            WalkWarning::Unreadable { index, error } => {
                write!(f, "root table entry #{index}: {error}")
            }
            WalkWarning::BadLength {
                index,
                address,
                length,
            } => write!(
                f,
                "root table entry #{index}: table at {address:#x} has length {length} < 36"
            ),
            WalkWarning::XsdtFallback { address, error } => {
                write!(f, "XSDT at {address:#x} unusable ({error}); using the RSDT")
            }
            WalkWarning::Root(w) => write!(f, "{w}"),
        }
    }
}

/// The result of a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    pub rsdp_address: u64,
    pub rsdp: Rsdp,
    pub root_kind: RootKind,
    pub root_address: u64,
    pub root_header: SdtHeader,
    pub tables: Vec<TableInfo>,
    pub warnings: Vec<WalkWarning>,
}

impl AcpiTables {
    /// Tables with this signature, in root table order (a machine may have
    /// several, e.g. SSDTs, or two HPETs as in the corpus).
    pub fn find<'a>(&'a self, sig: &'a Signature) -> impl Iterator<Item = &'a TableInfo> + 'a {
        self.tables.iter().filter(move |t| &t.signature == sig)
    }
}

fn read_into(
    mem: &dyn PhysRead,
    what: &'static str,
    phys: u64,
    buf: &mut [u8],
) -> Result<(), WalkError> {
    mem.read(phys, buf)
        .map_err(|error| WalkError::Read { what, error })
}

/// Reads and checks the RSDP at `phys`.
pub fn read_rsdp(mem: &dyn PhysRead, phys: u64) -> Result<Rsdp, WalkError> {
    let mut v1 = [0u8; RSDP_V1_LEN];
    read_into(mem, "RSDP", phys, &mut v1)?;
    // Revision (byte 15) decides how much there is to read; the checks are
    // all done by Rsdp::parse on the full structure.
    if u8_at(&v1, 15).unwrap_or(0) < 2 {
        return Ok(Rsdp::parse(&v1)?);
    }
    let mut lenb = [0u8; 4];
    read_into(mem, "RSDP", phys.wrapping_add(20), &mut lenb)?;
    let len = usize::try_from(u32::from_le_bytes(lenb)).unwrap_or(usize::MAX);
    // Read within the bounds Rsdp::parse accepts; it reports a bad length.
    let mut all = vec![0u8; len.clamp(RSDP_V2_LEN, RSDP_MAX_LEN)];
    read_into(mem, "RSDP", phys, &mut all)?;
    Ok(Rsdp::parse(&all)?)
}

/// Reads a whole table at `phys` (at most `limit` bytes) and checks its
/// header and checksum.
pub fn read_table(mem: &dyn PhysRead, phys: u64, limit: usize) -> Result<Vec<u8>, WalkError> {
    let mut hdr = [0u8; HEADER_LEN];
    read_into(mem, "table header", phys, &mut hdr)?;
    let header = SdtHeader::parse(&hdr)?;
    let len = usize::try_from(header.length).unwrap_or(usize::MAX);
    if len > limit {
        return Err(WalkError::TooLong {
            address: phys,
            length: header.length,
            limit,
        });
    }
    if len < HEADER_LEN {
        return Err(WalkError::Table(Error::new(
            header.signature,
            4,
            Location::Header,
            ErrorKind::LengthTooSmall {
                length: len,
                minimum: HEADER_LEN,
            },
        )));
    }
    let mut bytes = vec![0u8; len];
    read_into(mem, "table", phys, &mut bytes)?;
    Table::new(&bytes, None, 0)?;
    Ok(bytes)
}

fn read_root(mem: &dyn PhysRead, phys: u64, kind: RootKind) -> Result<RootTable, WalkError> {
    let limit = HEADER_LEN + MAX_ROOT_ENTRIES * kind.entry_size();
    let mut hdr = [0u8; HEADER_LEN];
    read_into(mem, "root table header", phys, &mut hdr)?;
    let header = SdtHeader::parse(&hdr)?;
    if header.signature != kind.signature() {
        return Err(WalkError::Table(Error::new(
            kind.signature(),
            0,
            Location::Header,
            ErrorKind::BadSignature {
                found: header.signature,
            },
        )));
    }
    let len = usize::try_from(header.length).unwrap_or(usize::MAX);
    if len > limit {
        return Err(WalkError::Table(Error::new(
            kind.signature(),
            4,
            Location::Header,
            ErrorKind::TooManyEntries {
                count: (len - HEADER_LEN) / kind.entry_size(),
                maximum: MAX_ROOT_ENTRIES,
            },
        )));
    }
    let mut bytes = vec![0u8; len.max(HEADER_LEN)];
    read_into(mem, "root table", phys, &mut bytes)?;
    Ok(parse_root_as(&bytes, kind)?)
}

/// Walks from the RSDP at `rsdp_phys` to the list of tables.
///
/// The XSDT is used when the RSDP revision is >= 2 and its address is not
/// 0 (§5.2.5.3: an OS must use the XSDT then); if it cannot be read or is
/// malformed and an RSDT exists, the walk falls back to the RSDT with a
/// warning. Entries that are null, unreadable or claim a length below 36
/// are skipped with a warning.
pub fn walk(mem: &dyn PhysRead, rsdp_phys: u64) -> Result<AcpiTables, WalkError> {
    let rsdp = read_rsdp(mem, rsdp_phys)?;
    let mut warnings = Vec::new();
    let xsdt = rsdp.xsdt_address.filter(|&a| rsdp.revision >= 2 && a != 0);
    let rsdt = Some(u64::from(rsdp.rsdt_address)).filter(|&a| a != 0);

    let (root, root_address) = match (xsdt, rsdt) {
        (Some(x), fallback) => match read_root(mem, x, RootKind::Xsdt) {
            Ok(r) => (r, x),
            Err(e) => match fallback {
                Some(r) => {
                    warnings.push(WalkWarning::XsdtFallback {
                        address: x,
                        error: Box::new(e),
                    });
                    (read_root(mem, r, RootKind::Rsdt)?, r)
                }
                None => return Err(e),
            },
        },
        (None, Some(r)) => (read_root(mem, r, RootKind::Rsdt)?, r),
        (None, None) => return Err(WalkError::NoRootTable),
    };

    warnings.extend(root.warnings.iter().cloned().map(WalkWarning::Root));
    let mut tables = Vec::new();
    for (index, &address) in root.entries.iter().enumerate() {
        if address == 0 {
            warnings.push(WalkWarning::NullEntry { index });
            continue;
        }
        let mut hdr = [0u8; HEADER_LEN];
        if let Err(error) = mem.read(address, &mut hdr) {
            warnings.push(WalkWarning::Unreadable { index, error });
            continue;
        }
        let Ok(h) = SdtHeader::parse(&hdr) else {
            // Cannot happen with a full 36-byte buffer.
            continue;
        };
        if usize::try_from(h.length).map_or(true, |l| l < HEADER_LEN) {
            warnings.push(WalkWarning::BadLength {
                index,
                address,
                length: h.length,
            });
            continue;
        }
        tables.push(TableInfo::from_header(address, &h));
    }
    Ok(AcpiTables {
        rsdp_address: rsdp_phys,
        rsdp,
        root_kind: root.kind,
        root_address,
        root_header: root.header,
        tables,
        warnings,
    })
}

/// Searches `[start, start + len)` on 16-byte boundaries for an RSDP with a
/// valid ACPI 1.0 checksum (§5.2.5.1: the first KiB of the EBDA and
/// 0xE0000..0xFFFFF on BIOS systems). Unreadable chunks are skipped.
pub fn find_rsdp(mem: &dyn PhysRead, start: u64, len: u64) -> Option<u64> {
    let first = start.checked_add(15)? & !15;
    let end = start.checked_add(len)?;
    let mut at = first;
    while at.checked_add(RSDP_V1_LEN as u64)? <= end {
        let mut buf = [0u8; RSDP_V1_LEN];
        if mem.read(at, &mut buf).is_ok() && buf.starts_with(&RSDP_SIGNATURE) && checksum(&buf) == 0
        {
            return Some(at);
        }
        at = at.checked_add(16)?;
    }
    None
}
