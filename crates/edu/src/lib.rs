//! `edu`: the driver of QEMU's edu teaching device (1234:11e8, hw-facts §5), generic
//! over its BAR0 register block ([`RegisterAccess`]).
//!
//! [`Edu`] is the one owner of the register block: identification, liveness, the
//! factorial unit, interrupt status and acknowledge, and the DMA programming sequence
//! (source, destination, count as 8-byte writes, then the command). Everything that
//! moves data goes through it, including the dmaengine provider ([`engine`]).
//!
//! The rules the device imposes, all checked here before a register is written:
//! * the device side of a transfer is its 4 KiB buffer at device address
//!   [`regs::BUFFER`]; a transfer must lie inside it;
//! * QEMU 7.2 aborts the virtual machine on a 0-byte transfer and on one that reaches the
//!   buffer's last byte (an off-by-one in `edu_check_range`), so the largest transfer
//!   is [`MAX_TRANSFER`] = 4095 bytes and no transfer may touch offset 4095;
//! * the engine ANDs bus addresses with its 28-bit DMA mask ([`DMA_BITS`]), so the
//!   device's `DmaDevice` must say so (swiotlb then bounces what lies above).
//!
//! The driver maps its own DMA: the safe transfers take a typed mapping
//! ([`dma::DmaStream`], [`dma::Coherent`]), whose bus address the DMA API produced for
//! this device; [`Edu::transfer_raw`] takes any bus address and is `unsafe`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod engine;

use core::fmt;

use dma::{Coherent, DeviceReads, DeviceWrites, DmaStream};
use hal::{DmaAddr, RegisterAccess};

/// Register offsets and bits (hw-facts §5.2); below 0x80 only 4-byte accesses.
pub mod regs {
    /// Identification: `0xRRrr00ed` (major, minor, 0xed).
    pub const IDENT: usize = 0x00;
    /// Liveness: reads back the bitwise NOT of the last value written.
    pub const LIVENESS: usize = 0x04;
    /// Factorial: write n to start, read n! when status bit 0 is clear.
    pub const FACTORIAL: usize = 0x08;
    /// Status: bit 0 computing, bit 7 interrupt when a factorial ends.
    pub const STATUS: usize = 0x20;
    /// Interrupt status.
    pub const IRQ_STATUS: usize = 0x24;
    /// Interrupt raise (ORs the written bits into the status).
    pub const IRQ_RAISE: usize = 0x60;
    /// Interrupt acknowledge (clears the written bits).
    pub const IRQ_ACK: usize = 0x64;
    /// DMA source address (64-bit).
    pub const DMA_SRC: usize = 0x80;
    /// DMA destination address (64-bit).
    pub const DMA_DST: usize = 0x88;
    /// DMA byte count (64-bit).
    pub const DMA_COUNT: usize = 0x90;
    /// DMA command (64-bit).
    pub const DMA_CMD: usize = 0x98;

    /// Command: start; cleared by the device when the transfer ends.
    pub const CMD_RUN: u64 = 1 << 0;
    /// Command: buffer → RAM (clear: RAM → buffer).
    pub const CMD_TO_RAM: u64 = 1 << 1;
    /// Command: raise [`IRQ_DMA_DONE`] at the end.
    pub const CMD_IRQ: u64 = 1 << 2;
    /// Status: a factorial is being computed.
    pub const STATUS_COMPUTING: u32 = 0x01;
    /// Status: raise [`IRQ_FACTORIAL`] when the factorial ends.
    pub const STATUS_IRQ_FACT: u32 = 0x80;
    /// Interrupt status bit: factorial done.
    pub const IRQ_FACTORIAL: u32 = 0x001;
    /// Interrupt status bit: DMA done.
    pub const IRQ_DMA_DONE: u32 = 0x100;

    /// Device address of the 4 KiB DMA buffer (hw-facts §5.3).
    pub const BUFFER: u64 = 0x40000;
    /// Size of the DMA buffer.
    pub const BUFFER_LEN: usize = 4096;
}

/// PCI vendor ID.
pub const VENDOR: u16 = 0x1234;
/// PCI device ID.
pub const DEVICE: u16 = 0x11e8;
/// Largest transfer QEMU 7.2 survives (4096 bytes aborts it).
pub const MAX_TRANSFER: usize = regs::BUFFER_LEN - 1;
/// Width of the engine's DMA addresses unless QEMU's `dma_mask` property says otherwise.
pub const DMA_BITS: u32 = 28;
/// The mask the engine ANDs bus addresses with: `(1 << 28) - 1`.
pub const DMA_MASK: u64 = (1 << DMA_BITS) - 1;

/// Why the driver refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EduError {
    /// The identification register does not read `0x..0000ed`.
    NotEdu {
        /// What it read.
        ident: u32,
    },
    /// Liveness did not read back the inverse of what was written.
    NotAlive {
        /// Written.
        wrote: u32,
        /// Read back.
        read: u32,
    },
    /// A 0-byte transfer (QEMU 7.2 aborts on it).
    Empty,
    /// A transfer that leaves the buffer window or reaches its last byte (QEMU 7.2
    /// aborts on those, so at most 4095 bytes at offset 0).
    OutsideBuffer {
        /// Offset into the buffer.
        offset: usize,
        /// Length asked for.
        len: usize,
    },
    /// More bytes than the mapping given holds.
    BeyondMapping {
        /// Length asked for.
        len: usize,
        /// The mapping's length.
        mapped: usize,
    },
    /// A transfer (or factorial) is already running.
    Busy,
    /// The transfer did not end in time (the device may still be running it).
    Timeout,
}

impl fmt::Display for EduError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EduError::NotEdu { ident } => {
                write!(f, "identification register reads {ident:#010x}, not edu's")
            }
            EduError::NotAlive { wrote, read } => write!(
                f,
                "liveness: wrote {wrote:#010x}, read {read:#010x} (not the inverse)"
            ),
            EduError::Empty => f.write_str("a 0-byte edu transfer (QEMU 7.2 aborts on it)"),
            EduError::OutsideBuffer { offset, len } => write!(
                f,
                "edu transfer of {len} bytes at buffer offset {offset} leaves the 4 KiB \
                 buffer or touches its last byte (QEMU 7.2 aborts on those)"
            ),
            EduError::BeyondMapping { len, mapped } => {
                write!(f, "{len} bytes asked, the mapping holds {mapped}")
            }
            EduError::Busy => f.write_str("a transfer is already running"),
            EduError::Timeout => f.write_str("the transfer did not complete in time"),
        }
    }
}

/// Shell and test code that reports errors as text.
impl From<EduError> for alloc::string::String {
    fn from(e: EduError) -> Self {
        alloc::format!("{e}")
    }
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EduDir {
    /// RAM → the device's buffer.
    ToDevice,
    /// The device's buffer → RAM.
    FromDevice,
}

/// How the end of a transfer was noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// By the DMA-done interrupt.
    Interrupt,
    /// By reading the RUN bit clear (the interrupt had not arrived).
    Polled,
}

/// Waits for a started transfer to end: the kernel sleeps and watches its MSI, a host
/// test lets the model's time pass.
pub trait Wait {
    /// Returns when `busy()` is false or the interrupt said so; `Err(Timeout)` if
    /// neither happened in the waiter's budget.
    fn wait(&mut self, busy: &dyn Fn() -> bool) -> Result<Completion, EduError>;
}

/// Identification: the version the device reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    /// Major version (bits 31:24).
    pub major: u8,
    /// Minor version (bits 23:16).
    pub minor: u8,
}

/// Checks that `len` bytes at buffer offset `offset` is a transfer QEMU 7.2 survives.
pub fn check_window(offset: usize, len: usize) -> Result<(), EduError> {
    if len == 0 {
        return Err(EduError::Empty);
    }
    // edu_check_range: the end must be strictly inside the buffer.
    match offset.checked_add(len) {
        Some(end) if end < regs::BUFFER_LEN => Ok(()),
        _ => Err(EduError::OutsideBuffer { offset, len }),
    }
}

/// Reads the interrupt status and acknowledges every bit set (for the interrupt
/// handler, which reaches the registers without the driver's lock). Returns the bits.
pub fn ack_irq<R: RegisterAccess>(regs: &R) -> u32 {
    let status = regs.read32(regs::IRQ_STATUS);
    if status != 0 {
        regs.write32(regs::IRQ_ACK, status);
    }
    status
}

/// The bound device: its register block.
pub struct Edu<R: RegisterAccess> {
    regs: R,
}

impl<R: RegisterAccess> Edu<R> {
    /// Takes the register block after checking the identification register.
    pub fn probe(regs: R) -> Result<Self, EduError> {
        let ident = regs.read32(regs::IDENT);
        if ident & 0xFFFF != 0x00ED {
            return Err(EduError::NotEdu { ident });
        }
        Ok(Edu { regs })
    }

    /// The version from the identification register.
    pub fn version(&self) -> Version {
        let ident = self.regs.read32(regs::IDENT);
        Version {
            major: (ident >> 24) as u8,
            minor: (ident >> 16) as u8,
        }
    }

    /// The register block (for its address and size; do not program it behind the driver).
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// Writes `value` to the liveness register and checks the inverse comes back.
    pub fn check_alive(&self, value: u32) -> Result<u32, EduError> {
        self.regs.write32(regs::LIVENESS, value);
        let read = self.regs.read32(regs::LIVENESS);
        if read == !value {
            Ok(read)
        } else {
            Err(EduError::NotAlive { wrote: value, read })
        }
    }

    /// Starts computing `n!`; `irq` asks for [`regs::IRQ_FACTORIAL`] at the end.
    pub fn start_factorial(&self, n: u32, irq: bool) -> Result<(), EduError> {
        if self.factorial_busy() {
            return Err(EduError::Busy);
        }
        self.regs
            .write32(regs::STATUS, if irq { regs::STATUS_IRQ_FACT } else { 0 });
        self.regs.write32(regs::FACTORIAL, n);
        Ok(())
    }

    /// Whether a factorial is being computed.
    pub fn factorial_busy(&self) -> bool {
        self.regs.read32(regs::STATUS) & regs::STATUS_COMPUTING != 0
    }

    /// The factorial result (32 bits, wrapping), or `Busy` while computing.
    pub fn factorial(&self) -> Result<u32, EduError> {
        if self.factorial_busy() {
            return Err(EduError::Busy);
        }
        Ok(self.regs.read32(regs::FACTORIAL))
    }

    /// The interrupt status register.
    pub fn irq_status(&self) -> u32 {
        self.regs.read32(regs::IRQ_STATUS)
    }

    /// Raises the interrupt status bits `bits` (the device then signals its interrupt).
    pub fn raise_irq(&self, bits: u32) {
        self.regs.write32(regs::IRQ_RAISE, bits);
    }

    /// Acknowledges every pending interrupt bit; returns them.
    pub fn ack_irq(&self) -> u32 {
        ack_irq(&self.regs)
    }

    /// Whether a transfer is running (the RUN bit).
    pub fn dma_busy(&self) -> bool {
        self.regs.read64(regs::DMA_CMD) & regs::CMD_RUN != 0
    }

    /// Programs one transfer between bus address `bus` and buffer offset `offset`, with
    /// the DMA-done interrupt, and returns without waiting.
    ///
    /// # Safety
    /// `bus` is an address the device may read (`ToDevice`) or write (`FromDevice`)
    /// for `len` bytes until the transfer ends: one the DMA API mapped for this device,
    /// kept mapped until [`dma_busy`](Self::dma_busy) reads false. Any other address
    /// lets the device read or overwrite whatever memory it reaches.
    pub unsafe fn start_raw(
        &self,
        dir: EduDir,
        bus: DmaAddr,
        offset: usize,
        len: usize,
    ) -> Result<(), EduError> {
        check_window(offset, len)?;
        if self.dma_busy() {
            return Err(EduError::Busy);
        }
        let window = regs::BUFFER + offset as u64;
        let (src, dst, cmd) = match dir {
            EduDir::ToDevice => (bus.as_u64(), window, regs::CMD_RUN | regs::CMD_IRQ),
            EduDir::FromDevice => (
                window,
                bus.as_u64(),
                regs::CMD_RUN | regs::CMD_TO_RAM | regs::CMD_IRQ,
            ),
        };
        // 8-byte writes: a 4-byte write zero-extends the 64-bit field.
        self.regs.write64(regs::DMA_SRC, src);
        self.regs.write64(regs::DMA_DST, dst);
        self.regs.write64(regs::DMA_COUNT, len as u64);
        hal::wmb();
        self.regs.write64(regs::DMA_CMD, cmd);
        Ok(())
    }

    /// One transfer at buffer offset 0, waited for with `wait`.
    ///
    /// # Safety
    /// As [`start_raw`](Self::start_raw); if `wait` times out the device may still be
    /// running, and `bus` must stay mapped until it stops.
    pub unsafe fn transfer_raw(
        &self,
        dir: EduDir,
        bus: DmaAddr,
        len: usize,
        wait: &mut dyn Wait,
    ) -> Result<Completion, EduError> {
        // SAFETY: the caller's contract is start_raw's.
        unsafe { self.start_raw(dir, bus, 0, len)? };
        let done = wait.wait(&|| self.dma_busy())?;
        hal::rmb();
        Ok(done)
    }

    fn typed(
        &self,
        dir: EduDir,
        bus: DmaAddr,
        mapped: usize,
        len: usize,
        wait: &mut dyn Wait,
    ) -> Result<Completion, EduError> {
        if len > mapped {
            return Err(EduError::BeyondMapping { len, mapped });
        }
        // SAFETY: `bus` is the DMA API's address of a live mapping of at least `len`
        // bytes that the caller's borrow keeps alive until this returns.
        unsafe { self.transfer_raw(dir, bus, len, wait) }
    }

    /// Copies the first `len` bytes of `src` into the device buffer (offset 0).
    pub fn to_device<D: DeviceReads>(
        &self,
        src: &DmaStream<D>,
        len: usize,
        wait: &mut dyn Wait,
    ) -> Result<Completion, EduError> {
        self.typed(EduDir::ToDevice, src.dma_addr(), src.len(), len, wait)
    }

    /// Copies `len` bytes of the device buffer (offset 0) into `dst` (the CPU sees
    /// them after `sync_for_cpu` or unmap, which need the stream back).
    pub fn from_device<D: DeviceWrites>(
        &self,
        dst: &DmaStream<D>,
        len: usize,
        wait: &mut dyn Wait,
    ) -> Result<Completion, EduError> {
        self.typed(EduDir::FromDevice, dst.dma_addr(), dst.len(), len, wait)
    }

    /// A transfer between coherent memory and the device buffer (offset 0).
    pub fn coherent(
        &self,
        dir: EduDir,
        mem: &Coherent,
        len: usize,
        wait: &mut dyn Wait,
    ) -> Result<Completion, EduError> {
        self.typed(dir, mem.dma_addr(), mem.len(), len, wait)
    }
}

#[cfg(test)]
mod tests;
