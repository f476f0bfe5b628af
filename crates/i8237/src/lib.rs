//! `i8237`: the ISA DMA controller of the PC/AT — two Intel 8237A chips, the first
//! cascaded into channel 4 of the second — as a library over a port-I/O trait
//! ([`IsaPorts`]). Linux: kernel/dma.c, arch/x86/include/asm/dma.h.
//!
//! Third-party DMA: the controller, not the device, drives the bus. It addresses memory
//! with a 16-bit address register plus a page register (A23..A16), so a buffer must
//! lie below 16 MiB and must not cross the boundary the address counter wraps at:
//! 64 KiB for the 8-bit channels 0–3, 128 KiB for the 16-bit channels 5–7 (whose
//! address and count registers count 16-bit words, page bit 0 unused). Real 8237s
//! wrap inside the page; QEMU's i8257 does not, so only [`check_buffer`] catches
//! the bug in QEMU (hw-facts §6.4).
//!
//! Programming (hw-facts §6.2): mask the channel, clear the byte-pointer flip-flop
//! (shared by every address and count register of a chip), write mode, address low
//! and high byte, page, count − 1 low and high byte, unmask. Each register sequence
//! is one [`I8237`] method call on `&mut self`, so the flip-flop cannot be split.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod engine;

use core::fmt;

/// Port I/O as the 8237 needs it (byte-wide, fixed PC port numbers).
pub trait IsaPorts {
    /// Reads the byte port `port`.
    fn inb(&self, port: u16) -> u8;
    /// Writes `value` to the byte port `port`.
    fn outb(&self, port: u16, value: u8);
}

/// Port numbers and register bits.
pub mod ports {
    /// Address register of each channel (0–7; 4 is the cascade).
    pub const ADDR: [u16; 8] = [0x00, 0x02, 0x04, 0x06, 0xC0, 0xC4, 0xC8, 0xCC];
    /// Count register of each channel.
    pub const COUNT: [u16; 8] = [0x01, 0x03, 0x05, 0x07, 0xC2, 0xC6, 0xCA, 0xCE];
    /// Page register of each channel (A23..A16; channel 4 has none in use).
    pub const PAGE: [u16; 8] = [0x87, 0x83, 0x81, 0x82, 0x8F, 0x8B, 0x89, 0x8A];
    /// Status (read: bits 3:0 terminal count, cleared by the read) per chip.
    pub const STATUS: [u16; 2] = [0x08, 0xD0];
    /// Single-channel mask (bit 2 set = mask, bits 1:0 channel) per chip.
    pub const SINGLE_MASK: [u16; 2] = [0x0A, 0xD4];
    /// Mode per chip.
    pub const MODE: [u16; 2] = [0x0B, 0xD6];
    /// Clear byte-pointer flip-flop per chip (any value).
    pub const FLIP_FLOP: [u16; 2] = [0x0C, 0xD8];

    /// Mode: single transfer (bits 7:6 = 01).
    pub const MODE_SINGLE: u8 = 0x40;
    /// Mode: auto-initialise (reload base address and count at terminal count).
    pub const MODE_AUTO_INIT: u8 = 0x10;
    /// Mode: transfer type "write" (device → memory), bits 3:2 = 01.
    pub const MODE_WRITE: u8 = 0b01 << 2;
    /// Mode: transfer type "read" (memory → device), bits 3:2 = 10.
    pub const MODE_READ: u8 = 0b10 << 2;
    /// Single mask: set the mask bit.
    pub const MASK_ON: u8 = 0x04;
}

/// The cascade channel (the first chip's output into the second), never available.
pub const CASCADE: u8 = 4;
/// Highest address ISA DMA reaches (24 address lines), exclusive.
pub const LIMIT: u64 = 16 << 20;

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Device → memory (the 8237 calls it a "write" transfer: a disk read).
    ToMemory,
    /// Memory → device ("read" transfer: a disk write).
    FromMemory,
}

/// Why a channel could not be claimed or programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsaDmaError {
    /// No such channel (above 7), or the cascade.
    NoSuchChannel(u8),
    /// Claimed by someone else.
    Busy {
        /// The channel.
        channel: u8,
        /// Who holds it.
        owner: &'static str,
    },
    /// Programmed without being claimed.
    NotOwner(u8),
    /// Some byte at or above 16 MiB.
    Above16M {
        /// Start.
        phys: u64,
        /// Length.
        len: usize,
    },
    /// More than one transfer moves (64 KiB, or 128 KiB on a 16-bit channel).
    TooLong(usize),
    /// The buffer crosses the 64 KiB (128 KiB) boundary the address counter wraps at.
    CrossesBoundary {
        /// Start.
        phys: u64,
        /// Length.
        len: usize,
        /// The boundary (0x1_0000 or 0x2_0000).
        boundary: u64,
    },
    /// A 16-bit channel given an odd address or length.
    Unaligned {
        /// Start.
        phys: u64,
        /// Length.
        len: usize,
    },
    /// A 0-byte transfer.
    Empty,
}

impl fmt::Display for IsaDmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IsaDmaError::NoSuchChannel(c) => {
                write!(f, "ISA DMA channel {c} does not exist or is the cascade")
            }
            IsaDmaError::Busy { channel, owner } => {
                write!(f, "ISA DMA channel {channel} is in use by {owner}")
            }
            IsaDmaError::NotOwner(c) => write!(f, "ISA DMA channel {c} was not requested"),
            IsaDmaError::Above16M { phys, len } => write!(
                f,
                "buffer {phys:#x}+{len:#x} is not below 16 MiB (24-bit ISA addressing)"
            ),
            IsaDmaError::TooLong(len) => write!(f, "{len} bytes is more than one ISA transfer"),
            IsaDmaError::CrossesBoundary {
                phys,
                len,
                boundary,
            } => write!(
                f,
                "buffer {phys:#x}+{len:#x} crosses a {} KiB boundary (the 8237 would wrap)",
                boundary >> 10
            ),
            IsaDmaError::Unaligned { phys, len } => write!(
                f,
                "buffer {phys:#x}+{len:#x} is not word-aligned (16-bit ISA DMA channel)"
            ),
            IsaDmaError::Empty => f.write_str("empty transfer"),
        }
    }
}

/// Whether `channel` is one of the 16-bit channels (5–7).
pub fn is_16bit(channel: u8) -> bool {
    (5..8).contains(&channel)
}

/// Checks a buffer against the addressing rules of `channel`.
pub fn check_buffer(channel: u8, phys: u64, len: usize) -> Result<(), IsaDmaError> {
    if channel > 7 || channel == CASCADE {
        return Err(IsaDmaError::NoSuchChannel(channel));
    }
    if len == 0 {
        return Err(IsaDmaError::Empty);
    }
    let boundary: u64 = if is_16bit(channel) {
        0x2_0000
    } else {
        0x1_0000
    };
    if len as u64 > boundary {
        return Err(IsaDmaError::TooLong(len));
    }
    if is_16bit(channel) && (phys | len as u64) & 1 != 0 {
        return Err(IsaDmaError::Unaligned { phys, len });
    }
    let last = match phys.checked_add(len as u64 - 1) {
        Some(l) if l < LIMIT => l,
        _ => return Err(IsaDmaError::Above16M { phys, len }),
    };
    if phys / boundary != last / boundary {
        return Err(IsaDmaError::CrossesBoundary {
            phys,
            len,
            boundary,
        });
    }
    Ok(())
}

/// Who holds each of the eight channels (Linux's request_dma/free_dma); channel 4
/// is the cascade, held from the start.
#[derive(Debug, Clone)]
pub struct Channels {
    owners: [Option<&'static str>; 8],
}

impl Default for Channels {
    fn default() -> Self {
        Self::new()
    }
}

impl Channels {
    /// Every channel free but the cascade.
    pub const fn new() -> Self {
        Channels {
            owners: [None, None, None, None, Some("cascade"), None, None, None],
        }
    }

    /// Claims `channel` for `owner`.
    pub fn request(&mut self, channel: u8, owner: &'static str) -> Result<(), IsaDmaError> {
        let slot = self
            .owners
            .get_mut(channel as usize)
            .ok_or(IsaDmaError::NoSuchChannel(channel))?;
        match slot {
            Some(holder) => Err(IsaDmaError::Busy {
                channel,
                owner: holder,
            }),
            None => {
                *slot = Some(owner);
                Ok(())
            }
        }
    }

    /// Frees `channel` (the cascade stays held).
    pub fn free(&mut self, channel: u8) {
        if channel != CASCADE {
            if let Some(slot) = self.owners.get_mut(channel as usize) {
                *slot = None;
            }
        }
    }

    /// Who holds `channel`.
    pub fn owner(&self, channel: u8) -> Option<&'static str> {
        self.owners.get(channel as usize).copied().flatten()
    }

    /// `(channel, owner)` for every claimed channel, like /proc/dma.
    pub fn claimed(&self) -> impl Iterator<Item = (u8, &'static str)> + '_ {
        self.owners
            .iter()
            .enumerate()
            .filter_map(|(c, o)| o.map(|o| (c as u8, o)))
    }
}

/// The two chips behind their ports.
pub struct I8237<P: IsaPorts> {
    ports: P,
}

fn chip(channel: u8) -> usize {
    (channel >> 2) as usize
}

impl<P: IsaPorts> I8237<P> {
    /// The controllers behind `ports`.
    pub const fn new(ports: P) -> Self {
        I8237 { ports }
    }

    /// The ports.
    pub fn ports(&self) -> &P {
        &self.ports
    }

    /// Programs `channel` for one single-mode transfer of `len` bytes at `phys` and
    /// unmasks it; the device then drives DREQ. `auto_init` reloads the channel at
    /// terminal count (a ring, as sound cards use).
    ///
    /// # Safety
    /// The controller will read (`FromMemory`) or write (`ToMemory`) `len` bytes at
    /// physical address `phys` whenever the device asks, with no IOMMU in the way on
    /// most machines: `phys..phys + len` must be memory the caller owns for DMA
    /// until the channel is masked again.
    pub unsafe fn program(
        &mut self,
        channel: u8,
        phys: u64,
        len: usize,
        dir: Direction,
        auto_init: bool,
    ) -> Result<(), IsaDmaError> {
        check_buffer(channel, phys, len)?;
        let (c, k) = (channel as usize, chip(channel));
        let sel = channel & 3;
        let ty = match dir {
            Direction::ToMemory => ports::MODE_WRITE,
            Direction::FromMemory => ports::MODE_READ,
        };
        let auto = if auto_init { ports::MODE_AUTO_INIT } else { 0 };
        // 16-bit channels count words: address bits 16:1 in the address register.
        // (their page register's bit 0 is not used: A16 comes from the address).
        let (addr, count, page) = if is_16bit(channel) {
            (
                (phys >> 1) as u16,
                (len / 2 - 1) as u16,
                (phys >> 16) as u8 & 0xFE,
            )
        } else {
            (phys as u16, (len - 1) as u16, (phys >> 16) as u8)
        };
        let p = &self.ports;
        p.outb(ports::SINGLE_MASK[k], ports::MASK_ON | sel);
        p.outb(ports::FLIP_FLOP[k], 0);
        p.outb(ports::MODE[k], ports::MODE_SINGLE | auto | ty | sel);
        p.outb(ports::ADDR[c], addr as u8);
        p.outb(ports::ADDR[c], (addr >> 8) as u8);
        p.outb(ports::PAGE[c], page);
        p.outb(ports::FLIP_FLOP[k], 0);
        p.outb(ports::COUNT[c], count as u8);
        p.outb(ports::COUNT[c], (count >> 8) as u8);
        p.outb(ports::SINGLE_MASK[k], sel);
        Ok(())
    }

    /// Masks `channel`: its DREQ is ignored.
    pub fn mask(&mut self, channel: u8) {
        if channel < 8 {
            let k = chip(channel);
            self.ports
                .outb(ports::SINGLE_MASK[k], ports::MASK_ON | (channel & 3));
        }
    }

    /// Unmasks `channel`: its DREQ is honoured again.
    pub fn unmask(&mut self, channel: u8) {
        if channel < 8 {
            self.ports
                .outb(ports::SINGLE_MASK[chip(channel)], channel & 3);
        }
    }

    /// Bytes the channel still has to move: (count register + 1) units, mod 64 Ki
    /// units (0 after terminal count, when the register reads 0xFFFF).
    pub fn residue(&mut self, channel: u8) -> usize {
        let c = (channel & 7) as usize;
        let k = chip(channel & 7);
        self.ports.outb(ports::FLIP_FLOP[k], 0);
        let lo = self.ports.inb(ports::COUNT[c]) as u16;
        let hi = self.ports.inb(ports::COUNT[c]) as u16;
        let units = (lo | hi << 8).wrapping_add(1) as usize;
        if is_16bit(channel) {
            units * 2
        } else {
            units
        }
    }

    /// Terminal-count bits of channels 0–3 (status of the first chip; the read
    /// clears them).
    pub fn status(&mut self) -> u8 {
        self.ports.inb(ports::STATUS[0]) & 0x0F
    }

    /// Terminal-count bits of all eight channels (bit n = channel n); reading clears them.
    pub fn terminal_counts(&mut self) -> u8 {
        let lo = self.ports.inb(ports::STATUS[0]) & 0x0F;
        let hi = self.ports.inb(ports::STATUS[1]) & 0x0F;
        lo | hi << 4
    }
}

#[cfg(test)]
mod tests;
