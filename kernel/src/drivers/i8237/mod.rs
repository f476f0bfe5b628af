//! The ISA DMA controllers (two i8237s, as QEMU's ICH9 LPC emulates them): the
//! kernel binding of the `i8237` crate — its port I/O, one lock around the chips
//! (the byte-pointer flip-flop is shared by every channel of a chip, so each
//! register sequence runs under it) and the channel table (Linux's request_dma).
//! The rules (below 16 MiB, 64 KiB pages, at most 64 KiB) and the programming
//! sequence live in the crate; `dmaengine` is the provider the floppy driver uses.

pub mod dmaengine;

use ::i8237::{self as hw, Channels, IsaPorts, I8237};

use crate::arch::port::{inb, outb};
use crate::sync::IrqSpinLock;

pub use hw::{Direction, IsaDmaError};

/// The PC's fixed DMA controller ports (0x00–0x0F, 0x80–0x8F, 0xC0–0xDF).
pub struct PcPorts;

impl IsaPorts for PcPorts {
    fn inb(&self, port: u16) -> u8 {
        inb(port)
    }
    fn outb(&self, port: u16, value: u8) {
        outb(port, value)
    }
}

struct State {
    chips: I8237<PcPorts>,
    owners: Channels,
}

static STATE: IrqSpinLock<State> = IrqSpinLock::new(State {
    chips: I8237::new(PcPorts),
    owners: Channels::new(),
});

/// Claims a channel (Linux's request_dma).
pub fn request(channel: u8, owner: &'static str) -> Result<(), IsaDmaError> {
    STATE.lock().owners.request(channel, owner)
}

/// Releases a channel (Linux's free_dma); the cascade stays held.
pub fn free(channel: u8) {
    STATE.lock().owners.free(channel)
}

/// `(channel, owner)` for every claimed channel, like /proc/dma.
pub fn claimed() -> alloc::vec::Vec<(u8, &'static str)> {
    STATE.lock().owners.claimed().collect()
}

/// Checks a buffer against the addressing rules of the 8-bit channels (0–3).
pub fn check_buffer(phys: u64, len: usize) -> Result<(), IsaDmaError> {
    hw::check_buffer(0, phys, len)
}

/// Programs an 8-bit channel (0–3) the caller claimed for one single-mode transfer
/// and unmasks it (hw-facts §6.2 step 8). The device then drives DREQ.
///
/// # Safety
/// The controller reads or writes `phys..phys + len` whenever the device asks, past
/// any IOMMU translation of PCI devices: the memory must be the caller's for DMA
/// until the channel is masked.
pub unsafe fn program(
    channel: u8,
    phys: u64,
    len: usize,
    dir: Direction,
) -> Result<(), IsaDmaError> {
    if channel >= 4 {
        return Err(IsaDmaError::NoSuchChannel(channel));
    }
    let mut s = STATE.lock();
    if s.owners.owner(channel).is_none() {
        return Err(IsaDmaError::NotOwner(channel));
    }
    // SAFETY: the caller's contract.
    unsafe { s.chips.program(channel, phys, len, dir, false) }
}

/// Masks `channel`: its DREQ is ignored.
pub fn mask(channel: u8) {
    STATE.lock().chips.mask(channel)
}

/// Unmasks `channel`: its DREQ is honoured again.
pub fn unmask(channel: u8) {
    STATE.lock().chips.unmask(channel)
}

/// Bytes the channel still has to move (count register + 1, mod 64 Ki).
pub fn residue(channel: u8) -> usize {
    STATE.lock().chips.residue(channel)
}

/// Status register of the first chip: bits 3:0 terminal count reached (cleared by the read).
pub fn status() -> u8 {
    STATE.lock().chips.status()
}
