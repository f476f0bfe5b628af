//! The ISA DMA controllers (two i8237s, as QEMU's ICH9 LPC emulates them):
//! third-party DMA, where the controller, not the device, moves the bytes.
//!
//! Addressing is a page register (A23..A16) plus a 16-bit address, so a
//! buffer must be below 16 MiB, at most 64 KiB, and must not cross a 64 KiB
//! boundary (hw-facts §6.4; real 8237s wrap inside the page, QEMU does not,
//! so only our own check catches the bug).

pub mod dmaengine;

use core::fmt;

use crate::arch::port::{inb, outb};
use crate::sync::IrqSpinLock;

/// Per-channel ports on the first controller (channels 0–3, 8-bit).
const ADDR: [u16; 4] = [0x00, 0x02, 0x04, 0x06];
const COUNT: [u16; 4] = [0x01, 0x03, 0x05, 0x07];
const PAGE: [u16; 4] = [0x87, 0x83, 0x81, 0x82];
const STATUS: u16 = 0x08;
const SINGLE_MASK: u16 = 0x0A;
const MODE: u16 = 0x0B;
const FLIP_FLOP: u16 = 0x0C;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Device → memory (the 8237 calls it a "write" transfer: a disk read).
    ToMemory,
    /// Memory → device ("read" transfer: a disk write).
    FromMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsaDmaError {
    NoSuchChannel(u8),
    Busy { channel: u8, owner: &'static str },
    NotOwner(u8),
    Above16M { phys: u64, len: usize },
    TooLong(usize),
    Crosses64K { phys: u64, len: usize },
    Empty,
}

impl fmt::Display for IsaDmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IsaDmaError::NoSuchChannel(c) => write!(
                f,
                "ISA DMA channel {c} does not exist or is not an 8-bit channel"
            ),
            IsaDmaError::Busy { channel, owner } => {
                write!(f, "ISA DMA channel {channel} is in use by {owner}")
            }
            IsaDmaError::NotOwner(c) => write!(f, "ISA DMA channel {c} was not requested"),
            IsaDmaError::Above16M { phys, len } => {
                write!(
                    f,
                    "buffer {phys:#x}+{len:#x} is not below 16 MiB (24-bit ISA addressing)"
                )
            }
            IsaDmaError::TooLong(len) => {
                write!(f, "{len} bytes is more than one 64 KiB ISA transfer")
            }
            IsaDmaError::Crosses64K { phys, len } => {
                write!(
                    f,
                    "buffer {phys:#x}+{len:#x} crosses a 64 KiB boundary (the 8237 would wrap)"
                )
            }
            IsaDmaError::Empty => f.write_str("empty transfer"),
        }
    }
}

/// Who holds each of the eight channels; channel 4 is the cascade of the
/// first controller into the second, held from the start.
/// Held across every multi-write register sequence: the byte-pointer
/// flip-flop is shared by all channels' address and count registers.
static REGS: IrqSpinLock<()> = IrqSpinLock::new(());

static OWNERS: IrqSpinLock<[Option<&'static str>; 8]> =
    IrqSpinLock::new([None, None, None, None, Some("cascade"), None, None, None]);

/// Claims a channel (Linux's request_dma).
pub fn request(channel: u8, owner: &'static str) -> Result<(), IsaDmaError> {
    let mut o = OWNERS.lock();
    let slot = o
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

pub fn free(channel: u8) {
    if let Some(slot) = OWNERS.lock().get_mut(channel as usize) {
        if channel != 4 {
            *slot = None;
        }
    }
}

/// `(channel, owner)` for every claimed channel, like /proc/dma.
pub fn claimed() -> alloc::vec::Vec<(u8, &'static str)> {
    OWNERS
        .lock()
        .iter()
        .enumerate()
        .filter_map(|(c, o)| o.map(|o| (c as u8, o)))
        .collect()
}

/// Checks a buffer against the 8237's addressing rules.
pub fn check_buffer(phys: u64, len: usize) -> Result<(), IsaDmaError> {
    if len == 0 {
        return Err(IsaDmaError::Empty);
    }
    if len > 0x1_0000 {
        return Err(IsaDmaError::TooLong(len));
    }
    let last = phys + len as u64 - 1;
    if last >= 16 << 20 {
        return Err(IsaDmaError::Above16M { phys, len });
    }
    if phys >> 16 != last >> 16 {
        return Err(IsaDmaError::Crosses64K { phys, len });
    }
    Ok(())
}

/// Programs an 8-bit channel (0–3) for one single-mode transfer and unmasks
/// it (hw-facts §6.2 step 8). The device then drives DREQ.
pub fn program(channel: u8, phys: u64, len: usize, dir: Direction) -> Result<(), IsaDmaError> {
    let c = channel as usize;
    if c >= 4 {
        return Err(IsaDmaError::NoSuchChannel(channel));
    }
    if OWNERS.lock()[c].is_none() {
        return Err(IsaDmaError::NotOwner(channel));
    }
    check_buffer(phys, len)?;
    // Mode: single transfer (bits 7:6 = 01), increment, no auto-init,
    // transfer type 01 = write to memory or 10 = read from memory.
    let ty = match dir {
        Direction::ToMemory => 0b01 << 2,
        Direction::FromMemory => 0b10 << 2,
    };
    let count = (len - 1) as u16;
    // The flip-flop and mask sequence must not be split by another programmer.
    let _regs = REGS.lock();
    outb(SINGLE_MASK, 0x04 | channel);
    outb(FLIP_FLOP, 0);
    outb(MODE, 0x40 | ty | channel);
    outb(ADDR[c], phys as u8);
    outb(ADDR[c], (phys >> 8) as u8);
    outb(PAGE[c], (phys >> 16) as u8);
    outb(FLIP_FLOP, 0);
    outb(COUNT[c], count as u8);
    outb(COUNT[c], (count >> 8) as u8);
    outb(SINGLE_MASK, channel);
    Ok(())
}

pub fn mask(channel: u8) {
    if channel < 4 {
        outb(SINGLE_MASK, 0x04 | channel);
    }
}

/// Bytes the channel still has to move (count register + 1, mod 64 Ki).
/// Unmasks `channel`: its DREQ is honoured again.
pub fn unmask(channel: u8) {
    if channel < 4 {
        outb(SINGLE_MASK, channel);
    }
}

pub fn residue(channel: u8) -> usize {
    let c = channel as usize % 4;
    let _regs = REGS.lock();
    outb(FLIP_FLOP, 0);
    let lo = inb(COUNT[c]) as u16;
    let hi = inb(COUNT[c]) as u16;
    ((lo | hi << 8).wrapping_add(1)) as usize
}

/// Status register: bits 3:0 terminal count reached (cleared by the read).
pub fn status() -> u8 {
    inb(STATUS)
}
