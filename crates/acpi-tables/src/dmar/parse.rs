//! The DMAR parser: the table header, each remapping structure and its device
//! scopes, with the length checks the module docs of [`super`] promise.

use alloc::vec::Vec;

use crate::bytes::{u16_at, u32_at, u64_at, u8_at};
use crate::error::{Error, ErrorKind, Location, Warning, WarningKind};
use crate::sdt::Table;

use super::*;

/// Parses a DMAR table. See the module docs for the guarantees.
pub fn parse(bytes: &[u8]) -> Result<Dmar, Error> {
    let table = Table::new(bytes, Some(SIGNATURE), DMAR_HEADER_LEN)?;
    let t = table.bytes;
    let mut warnings = table.header.warnings();
    let short = |off: usize| {
        Error::new(
            SIGNATURE,
            off,
            Location::Header,
            ErrorKind::Truncated {
                needed: DMAR_HEADER_LEN,
                available: t.len(),
            },
        )
    };
    // Table::new enforced length >= 48, so these cannot fail; still no
    // unchecked reads.
    let host_address_width = u8_at(t, 36).ok_or_else(|| short(36))?;
    let flags = DmarFlags::from_bits_retain(u8_at(t, 37).ok_or_else(|| short(37))?);

    let mut structures = Vec::new();
    let mut off = DMAR_HEADER_LEN;
    let mut index = 0usize;
    while off < t.len() {
        let remaining = t.len() - off;
        let (Some(kind), Some(len)) = (u16_at(t, off), u16_at(t, off + 2)) else {
            return Err(Error::new(
                SIGNATURE,
                off,
                Location::Tail { index },
                ErrorKind::TrailingBytes { count: remaining },
            ));
        };
        let len = usize::from(len);
        let loc = Location::Structure {
            name: structure_name(kind),
            kind,
            index,
        };
        let minimum = minimum_length(kind);
        if len < minimum {
            return Err(Error::new(
                SIGNATURE,
                off,
                loc,
                ErrorKind::StructureTooShort {
                    length: len,
                    minimum,
                },
            ));
        }
        let Some(s) = t.get(off..off + len) else {
            return Err(Error::new(
                SIGNATURE,
                off,
                loc,
                ErrorKind::StructureOverrun {
                    length: len,
                    remaining,
                },
            ));
        };
        let mut cx = Cx {
            s,
            base: off,
            kind,
            index,
            warnings: &mut warnings,
        };
        structures.push(cx.structure()?);
        off += len;
        index += 1;
    }

    check_include_pci_all(&structures, &mut warnings);

    Ok(Dmar {
        header: table.header,
        host_address_width,
        flags,
        structures,
        warnings,
    })
}

/// Parsing context for one structure: its bytes `s`, which start at table
/// offset `base`.
struct Cx<'a, 'w> {
    s: &'a [u8],
    base: usize,
    kind: u16,
    index: usize,
    warnings: &'w mut Vec<Warning>,
}

impl Cx<'_, '_> {
    fn loc(&self) -> Location {
        Location::Structure {
            name: structure_name(self.kind),
            kind: self.kind,
            index: self.index,
        }
    }

    fn warn(&mut self, rel: usize, kind: WarningKind) {
        let loc = self.loc();
        self.warnings
            .push(Warning::new(SIGNATURE, self.base + rel, loc, kind));
    }

    /// A fixed field inside the structure. The caller checked the minimum
    /// length, so `None` here means a bug in `minimum_length`; it is still
    /// reported as an error rather than a panic.
    fn field<T>(&self, rel: usize, v: Option<T>, width: usize) -> Result<T, Error> {
        v.ok_or_else(|| {
            Error::new(
                SIGNATURE,
                self.base + rel,
                self.loc(),
                ErrorKind::Truncated {
                    needed: rel + width,
                    available: self.s.len(),
                },
            )
        })
    }
    fn u8(&self, rel: usize) -> Result<u8, Error> {
        self.field(rel, u8_at(self.s, rel), 1)
    }
    fn u16(&self, rel: usize) -> Result<u16, Error> {
        self.field(rel, u16_at(self.s, rel), 2)
    }
    fn u32(&self, rel: usize) -> Result<u32, Error> {
        self.field(rel, u32_at(self.s, rel), 4)
    }
    fn u64(&self, rel: usize) -> Result<u64, Error> {
        self.field(rel, u64_at(self.s, rel), 8)
    }

    fn structure(&mut self) -> Result<RemappingStructure, Error> {
        let offset = self.base;
        Ok(match self.kind {
            0 => {
                let flags = DrhdFlags::from_bits_retain(self.u8(4)?);
                let size = self.u8(5)?;
                let segment = self.u16(6)?;
                let register_base = self.u64(8)?;
                if register_base == 0 {
                    self.warn(8, WarningKind::RegisterBaseZero);
                } else if register_base & 0xfff != 0 {
                    self.warn(
                        8,
                        WarningKind::RegisterBaseUnaligned {
                            base: register_base,
                        },
                    );
                }
                let scopes = self.scopes(16)?;
                RemappingStructure::Drhd(Drhd {
                    offset,
                    flags,
                    size,
                    segment,
                    register_base,
                    scopes,
                })
            }
            1 => {
                let segment = self.u16(6)?;
                let base = self.u64(8)?;
                let limit = self.u64(16)?;
                if limit < base || (base == 0 && limit == 0) {
                    self.warn(8, WarningKind::RmrrInvalidRange { base, limit });
                } else if base & 0xfff != 0 || limit & 0xfff != 0xfff {
                    self.warn(8, WarningKind::RmrrUnaligned { base, limit });
                }
                let scopes = self.scopes(24)?;
                if scopes.is_empty() {
                    self.warn(0, WarningKind::NoDeviceScopes);
                }
                RemappingStructure::Rmrr(Rmrr {
                    offset,
                    segment,
                    base,
                    limit,
                    scopes,
                })
            }
            2 => {
                let flags = AtsrFlags::from_bits_retain(self.u8(4)?);
                let segment = self.u16(6)?;
                let scopes = self.scopes(8)?;
                if scopes.is_empty() && !flags.contains(AtsrFlags::ALL_PORTS) {
                    self.warn(0, WarningKind::NoDeviceScopes);
                }
                RemappingStructure::Atsr(Atsr {
                    offset,
                    flags,
                    segment,
                    scopes,
                })
            }
            3 => {
                let register_base = self.u64(8)?;
                let proximity_domain = self.u32(16)?;
                if register_base == 0 {
                    self.warn(8, WarningKind::RegisterBaseZero);
                }
                RemappingStructure::Rhsa(Rhsa {
                    offset,
                    register_base,
                    proximity_domain,
                })
            }
            4 => {
                let device_number = self.u8(7)?;
                let raw = self.s.get(8..).unwrap_or(&[]);
                let name = match raw.iter().position(|&b| b == 0) {
                    Some(end) => raw.get(..end).unwrap_or(raw).to_vec(),
                    None => {
                        self.warn(8, WarningKind::NameNotTerminated);
                        raw.to_vec()
                    }
                };
                RemappingStructure::Andd(Andd {
                    offset,
                    device_number,
                    name,
                })
            }
            5 => {
                let flags = SatcFlags::from_bits_retain(self.u8(4)?);
                let segment = self.u16(6)?;
                let scopes = self.scopes(8)?;
                if scopes.is_empty() {
                    self.warn(0, WarningKind::NoDeviceScopes);
                }
                RemappingStructure::Satc(Satc {
                    offset,
                    flags,
                    segment,
                    scopes,
                })
            }
            kind => RemappingStructure::Unknown(UnknownStructure {
                offset,
                kind,
                // The structure slice came from a u16 length.
                length: u16::try_from(self.s.len()).unwrap_or(u16::MAX),
            }),
        })
    }

    /// Device scopes from `start` (relative) to the end of the structure
    /// (§8.3.1).
    fn scopes(&mut self, start: usize) -> Result<Vec<DeviceScope>, Error> {
        let mut out = Vec::new();
        let mut rel = start;
        let mut scope_index = 0usize;
        while rel < self.s.len() {
            let remaining = self.s.len() - rel;
            let loc = Location::Scope {
                name: structure_name(self.kind),
                kind: self.kind,
                index: self.index,
                scope_index,
            };
            let err = |kind| Error::new(SIGNATURE, self.base + rel, loc.clone(), kind);
            // The length byte decides everything else; without it only the
            // fixed part's size can be reported as not fitting.
            let Some(len) = u8_at(self.s, rel + 1) else {
                return Err(err(ErrorKind::ScopeOverrun {
                    length: SCOPE_HEADER_LEN,
                    remaining,
                }));
            };
            let len = usize::from(len);
            if len < SCOPE_HEADER_LEN {
                return Err(err(ErrorKind::ScopeTooShort { length: len }));
            }
            if len > remaining {
                return Err(err(ErrorKind::ScopeOverrun {
                    length: len,
                    remaining,
                }));
            }
            // 6 <= len <= remaining: the fixed part is in range.
            let (Some(ty), Some(flags), Some(enumeration_id), Some(start_bus)) = (
                u8_at(self.s, rel),
                u8_at(self.s, rel + 2),
                u8_at(self.s, rel + 4),
                u8_at(self.s, rel + 5),
            ) else {
                return Err(err(ErrorKind::ScopeOverrun {
                    length: len,
                    remaining,
                }));
            };
            if !(len - SCOPE_HEADER_LEN).is_multiple_of(2) {
                return Err(err(ErrorKind::ScopeOddPath { length: len }));
            }
            let path_bytes = self.s.get(rel + SCOPE_HEADER_LEN..rel + len).unwrap_or(&[]);
            let path: Vec<PathEntry> = path_bytes
                .as_chunks::<2>()
                .0
                .iter()
                .map(|&[device, function]| PathEntry { device, function })
                .collect();
            let scope_type = ScopeType::from_u8(ty);
            let mut warn = |kind| {
                self.warnings
                    .push(Warning::new(SIGNATURE, self.base + rel, loc.clone(), kind))
            };
            if let ScopeType::Reserved(scope_type) = scope_type {
                warn(WarningKind::UnknownScopeType { scope_type });
            }
            if path.is_empty() {
                warn(WarningKind::EmptyPath);
            }
            for p in &path {
                if p.device > 31 || p.function > 7 {
                    warn(WarningKind::PathEntryOutOfRange {
                        device: p.device,
                        function: p.function,
                    });
                }
            }
            out.push(DeviceScope {
                offset: self.base + rel,
                scope_type,
                flags,
                enumeration_id,
                start_bus,
                path,
            });
            rel += len;
            scope_index += 1;
        }
        Ok(out)
    }
}

/// §8.3: at most one INCLUDE_PCI_ALL unit per segment, and it must come
/// after the other units of that segment (so a first-match search by the OS
/// finds the specific units first).
fn check_include_pci_all(structures: &[RemappingStructure], warnings: &mut Vec<Warning>) {
    let drhds: Vec<(usize, &Drhd)> = structures
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            RemappingStructure::Drhd(d) => Some((i, d)),
            _ => None,
        })
        .collect();
    for (pos, &(index, d)) in drhds.iter().enumerate() {
        if !d.include_pci_all() {
            continue;
        }
        let loc = Location::Structure {
            name: "DRHD",
            kind: 0,
            index,
        };
        let earlier_all = drhds
            .iter()
            .take(pos)
            .any(|(_, e)| e.segment == d.segment && e.include_pci_all());
        if earlier_all {
            warnings.push(Warning::new(
                SIGNATURE,
                d.offset + 4,
                loc.clone(),
                WarningKind::DuplicateIncludePciAll { segment: d.segment },
            ));
        }
        let later_same_segment = drhds
            .iter()
            .skip(pos + 1)
            .any(|(_, e)| e.segment == d.segment);
        if later_same_segment {
            warnings.push(Warning::new(
                SIGNATURE,
                d.offset + 4,
                loc,
                WarningKind::IncludePciAllNotLast { segment: d.segment },
            ));
        }
    }
}
