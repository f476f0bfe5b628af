//! Base Address Registers: decoding and sizing (PCI Local Bus spec 3.0 §6.2.5.1).
//!
//! Sizing writes all-ones to a BAR and reads back which address bits stuck; while a BAR
//! holds all-ones the device would decode that bogus address, so memory and I/O
//! decoding are switched off in the Command register for the whole procedure and
//! restored afterwards (Hermit issue #2609 shows what goes wrong otherwise).

use alloc::vec::Vec;
use core::fmt;

use crate::addr::Bdf;
use crate::config::ConfigAccess;
use crate::regs::{Command, BAR0, COMMAND};
use crate::warn::{WarningKind, Warnings};

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory space.
    Memory32,
    /// Memory below 1 MiB (type 0b01, PCI 2.x legacy); treated as 32-bit.
    Memory1M,
    /// 64-bit memory space; occupies this slot and the next.
    Memory64,
    /// I/O space.
    Io,
}

/// One implemented BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR slot (0..=5); a 64-bit BAR also uses `index + 1`.
    pub index: u8,
    /// Space and width.
    pub kind: BarKind,
    /// Address firmware assigned (a CPU physical address for memory, a port for I/O).
    pub address: u64,
    /// Size in bytes, a power of two.
    pub size: u64,
    /// Prefetchable memory (no read side effects).
    pub prefetchable: bool,
}

impl Bar {
    /// True for memory BARs.
    pub fn is_memory(&self) -> bool {
        !matches!(self.kind, BarKind::Io)
    }

    /// Config-space offset of this BAR's (low) register.
    pub fn offset(&self) -> u16 {
        BAR0 + 4 * u16::from(self.index)
    }

    /// End address (exclusive), saturating.
    pub fn end(&self) -> u64 {
        self.address.saturating_add(self.size)
    }
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BarKind::Io => write!(
                f,
                "BAR {}: I/O ports at {:#06x} [size={:#x}]",
                self.index, self.address, self.size
            ),
            k => write!(
                f,
                "BAR {}: Memory at {:#x} ({}, {}) [size={:#x}]",
                self.index,
                self.address,
                if k == BarKind::Memory64 {
                    "64-bit"
                } else {
                    "32-bit"
                },
                if self.prefetchable {
                    "prefetchable"
                } else {
                    "non-prefetchable"
                },
                self.size
            ),
        }
    }
}

/// Lowest set bit: the size a BAR's writable-bit mask stands for. Using the lowest
/// bit (rather than `!mask + 1`) gives a power of two even for a non-contiguous mask
/// read from odd hardware, and cannot overflow.
fn lowest_bit(mask: u64) -> u64 {
    mask.isolate_lowest_one()
}

/// Sizes and decodes the first `count` BARs of `bdf` (6 for a type 0 header, 2 for a
/// bridge), with decoding disabled meanwhile. Unimplemented BARs (reading back 0) are
/// skipped; odd ones produce a warning.
pub fn size_bars<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    count: u8,
) -> (Vec<Bar>, Vec<crate::Warning>) {
    let mut w = Warnings::default();
    let bars = size_bars_inner(cfg, bdf, count, &mut w);
    (bars, w.0)
}

pub(crate) fn size_bars_inner<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    count: u8,
    warnings: &mut Warnings,
) -> Vec<Bar> {
    let count = count.min(6);
    let mut bars = Vec::new();
    let cmd = cfg.read16(bdf, COMMAND);
    let decode = (Command::MEMORY_SPACE | Command::IO_SPACE).bits();
    if cmd & decode != 0 {
        cfg.write16(bdf, COMMAND, cmd & !decode);
    }

    let probe = |off: u16| -> (u32, u32) {
        let orig = cfg.read32(bdf, off);
        cfg.write32(bdf, off, !0);
        let back = cfg.read32(bdf, off);
        cfg.write32(bdf, off, orig);
        (orig, back)
    };

    let mut i = 0u8;
    while i < count {
        let off = BAR0 + 4 * u16::from(i);
        let (orig, back) = probe(off);
        if back == 0 {
            // Unimplemented BAR: hardwired to zero (§6.2.5.1).
            i += 1;
            continue;
        }
        if back & 1 == 1 {
            // I/O BAR. A device decoding only 16 bits of I/O address hardwires the
            // upper half to zero, so treat it as ones for the size.
            let mut mask = back & !0x3;
            if mask & 0xFFFF_0000 == 0 {
                mask |= 0xFFFF_0000;
            }
            let size = lowest_bit(u64::from(mask));
            if back & !0x3 == 0 || size == 0 {
                warnings.push(
                    bdf,
                    WarningKind::BarNoSizeBits {
                        index: i,
                        readback: back,
                    },
                );
            } else {
                bars.push(Bar {
                    index: i,
                    kind: BarKind::Io,
                    address: u64::from(orig & !0x3),
                    size,
                    prefetchable: false,
                });
            }
            i += 1;
            continue;
        }
        let prefetchable = back & 0x8 != 0;
        match (back >> 1) & 0x3 {
            0b10 => {
                if i + 1 >= count {
                    warnings.push(bdf, WarningKind::Bar64InLastSlot { index: i });
                    i += 1;
                    continue;
                }
                let (orig_hi, back_hi) = probe(off + 4);
                let mask = u64::from(back_hi) << 32 | u64::from(back & !0xF);
                if mask == 0 {
                    warnings.push(
                        bdf,
                        WarningKind::BarNoSizeBits {
                            index: i,
                            readback: back,
                        },
                    );
                } else {
                    bars.push(Bar {
                        index: i,
                        kind: BarKind::Memory64,
                        address: u64::from(orig_hi) << 32 | u64::from(orig & !0xF),
                        size: lowest_bit(mask),
                        prefetchable,
                    });
                }
                i += 2;
            }
            0b11 => {
                warnings.push(bdf, WarningKind::BarReservedType { index: i });
                i += 1;
            }
            ty => {
                let mask = back & !0xF;
                if mask == 0 {
                    warnings.push(
                        bdf,
                        WarningKind::BarNoSizeBits {
                            index: i,
                            readback: back,
                        },
                    );
                } else {
                    bars.push(Bar {
                        index: i,
                        kind: if ty == 0b01 {
                            BarKind::Memory1M
                        } else {
                            BarKind::Memory32
                        },
                        address: u64::from(orig & !0xF),
                        size: lowest_bit(u64::from(mask)),
                        prefetchable,
                    });
                }
                i += 1;
            }
        }
    }

    if cmd & decode != 0 {
        cfg.write16(bdf, COMMAND, cmd);
    }
    for b in &bars {
        // dmesg style: `reg 0x10: [mem 0xfea00000-0xfeafffff]`.
        let last = b.address.saturating_add(b.size.saturating_sub(1));
        let (space, flags) = match b.kind {
            BarKind::Io => ("io ", ""),
            BarKind::Memory64 if b.prefetchable => ("mem", " 64bit pref"),
            BarKind::Memory64 => ("mem", " 64bit"),
            _ if b.prefetchable => ("mem", " pref"),
            _ => ("mem", ""),
        };
        log::info!(
            "pci {bdf}: reg {:#04x}: [{space} {:#010x}-{last:#010x}{flags}]",
            b.offset(),
            b.address
        );
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::lowest_bit;

    #[test]
    fn lowest_bit_is_overflow_free() {
        assert_eq!(lowest_bit(0xFFF0_0000), 0x10_0000);
        assert_eq!(lowest_bit(0), 0);
        assert_eq!(lowest_bit(1 << 63), 1 << 63);
        assert_eq!(lowest_bit(0xFFFF_FFFF_0000_0000), 1 << 32);
        assert_eq!(lowest_bit(0x8000_0010), 0x10);
    }
}
