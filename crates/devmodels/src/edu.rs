//! QEMU's `edu` teaching device (1234:11e8) as QEMU 7.2's hw/misc/edu.c behaves:
//! BAR0 registers, the factorial unit, interrupt status, and the DMA engine that moves
//! bytes between bus addresses and its 4 KiB buffer at device address 0x40000.
//!
//! Facts modelled (hw/misc/edu.c, QEMU 7.2):
//! * 0x00 identification `0x010000ed`; 0x04 liveness reads back the bitwise NOT of the
//!   last write; 0x08 factorial (a write starts it unless one is computing); 0x20 status
//!   (bit 0 computing, read-only; bit 7 raise interrupt 0x01 when a factorial ends);
//!   0x24 interrupt status; 0x60 raise (ORs bits in); 0x64 acknowledge (clears bits).
//! * Offsets below 0x80 take 4-byte accesses only; 0x80 source, 0x88 destination,
//!   0x90 count, 0x98 command take 4 or 8 bytes, and a 4-byte write zero-extends the
//!   64-bit field. Writes to them while a transfer runs are ignored; a command write
//!   without RUN is ignored.
//! * Command bits: RUN (1), direction (2: set = buffer → RAM), IRQ (4: raise 0x100 at
//!   the end). Bus addresses are ANDed with the DMA mask, `(1 << 28) - 1` by default.
//! * The buffer-side range must satisfy `start <= addr < end`, `addr + len > addr` and
//!   `start <= addr + len < end`: a 0-byte transfer and one that reaches the buffer's
//!   last byte (all 4096 bytes, or any transfer ending at 0x41000) abort QEMU 7.2
//!   (`hw_error`). The model records that as [`EduFault::QemuAbort`] and stops the
//!   transfer instead of panicking, so a test can assert the driver never asks for it.
//!
//! Time: QEMU runs a transfer 100 ms after the command write and a factorial on a
//! thread; here both happen at [`EduModel::tick`], so a test sees the RUN and computing
//! bits set until it lets time pass.
use alloc::vec::Vec;
use core::cell::RefCell;

use hal::RegisterAccess;

use crate::ahci::{BusFault, DmaBus};

/// Identification register value: version 1.0, `0xed`.
pub const IDENT: u32 = 0x0100_00ed;
/// Device address of the DMA buffer.
pub const BUFFER: u64 = 0x40000;
/// Size of the DMA buffer.
pub const BUFFER_LEN: usize = 4096;
/// QEMU's default `dma_mask` property: 28 bits.
pub const DEFAULT_DMA_MASK: u64 = (1 << 28) - 1;

/// Interrupt status bit raised when a factorial completes (with status bit 7 set).
pub const IRQ_FACTORIAL: u32 = 0x1;
/// Interrupt status bit raised when a DMA with the IRQ command bit completes.
pub const IRQ_DMA: u32 = 0x100;

/// Something the model refused or recorded instead of acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EduFault {
    /// The transfer's buffer-side range fails edu_check_range: QEMU 7.2 would abort
    /// the whole virtual machine (`hw_error`). Nothing was moved.
    QemuAbort {
        /// Buffer-side device address.
        addr: u64,
        /// Byte count.
        len: u64,
    },
    /// An access of a width QEMU refuses at `offset` (it is ignored, reads give all ones).
    BadAccess {
        /// Register offset.
        offset: usize,
        /// Access width in bytes.
        width: usize,
    },
    /// The bus (RAM or an IOMMU) refused the DMA; the buffer is unchanged on a read.
    Bus(BusFault),
    /// An address was clamped by the DMA mask (QEMU prints "clamping DMA").
    Clamped {
        /// The address the driver wrote.
        from: u64,
        /// The address the device used.
        to: u64,
    },
}

/// One completed transfer, as the device performed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EduTransfer {
    /// Source as used (after the mask on the RAM side).
    pub src: u64,
    /// Destination as used.
    pub dst: u64,
    /// Bytes moved.
    pub len: u64,
    /// True for buffer → RAM.
    pub to_ram: bool,
}

struct State {
    liveness: u32,
    fact: u32,
    status: u32,
    irq_status: u32,
    src: u64,
    dst: u64,
    cnt: u64,
    cmd: u64,
    buf: [u8; BUFFER_LEN],
    dma_mask: u64,
    faults: Vec<EduFault>,
    transfers: Vec<EduTransfer>,
    irqs_raised: u32,
}

/// The edu function's BAR0, with its DMA going through `B`.
pub struct EduModel<B: DmaBus> {
    bus: B,
    s: RefCell<State>,
}

const CMD_RUN: u64 = 1;
const CMD_TO_RAM: u64 = 2;
const CMD_IRQ: u64 = 4;
const STATUS_COMPUTING: u32 = 0x01;
const STATUS_IRQ_FACT: u32 = 0x80;

impl<B: DmaBus> EduModel<B> {
    /// An edu as `-device edu` creates it (28-bit DMA mask), DMA through `bus`.
    pub fn new(bus: B) -> Self {
        Self::with_dma_mask(bus, DEFAULT_DMA_MASK)
    }

    /// As [`new`](Self::new) with QEMU's `dma_mask` property set.
    pub fn with_dma_mask(bus: B, dma_mask: u64) -> Self {
        EduModel {
            bus,
            s: RefCell::new(State {
                liveness: 0,
                fact: 0,
                status: 0,
                irq_status: 0,
                src: 0,
                dst: 0,
                cnt: 0,
                cmd: 0,
                buf: [0; BUFFER_LEN],
                dma_mask,
                faults: Vec::new(),
                transfers: Vec::new(),
                irqs_raised: 0,
            }),
        }
    }

    /// The bus the device masters.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    /// Lets time pass: a pending factorial and a running transfer complete.
    pub fn tick(&self) {
        let mut s = self.s.borrow_mut();
        if s.status & STATUS_COMPUTING != 0 {
            let n = s.fact;
            s.fact = (1..=n).fold(1u32, |a, i| a.wrapping_mul(i));
            s.status &= !STATUS_COMPUTING;
            if s.status & STATUS_IRQ_FACT != 0 {
                Self::raise(&mut s, IRQ_FACTORIAL);
            }
        }
        if s.cmd & CMD_RUN != 0 {
            self.run_dma(&mut s);
        }
    }

    fn raise(s: &mut State, bits: u32) {
        s.irq_status |= bits;
        if s.irq_status != 0 {
            s.irqs_raised += 1;
        }
    }

    fn clamp(s: &mut State, addr: u64) -> u64 {
        let to = addr & s.dma_mask;
        if to != addr {
            s.faults.push(EduFault::Clamped { from: addr, to });
        }
        to
    }

    fn run_dma(&self, s: &mut State) {
        let to_ram = s.cmd & CMD_TO_RAM != 0;
        let (buf_addr, len) = (if to_ram { s.src } else { s.dst }, s.cnt);
        let end = BUFFER + BUFFER_LEN as u64;
        let within = |a: u64| (BUFFER..end).contains(&a);
        let end1 = buf_addr.wrapping_add(len);
        if !(within(buf_addr) && end1 > buf_addr && within(end1)) {
            // QEMU 7.2: hw_error() aborts the VM. Recorded; RUN stays set as the
            // machine would never get further.
            s.faults.push(EduFault::QemuAbort {
                addr: buf_addr,
                len,
            });
            return;
        }
        let off = (buf_addr - BUFFER) as usize;
        let n = len as usize;
        let result = if to_ram {
            let dst = Self::clamp(s, s.dst);
            let data = s.buf[off..off + n].to_vec();
            self.bus.dma_write(dst, &data).map(|_| (s.src, dst))
        } else {
            let src = Self::clamp(s, s.src);
            let mut tmp = alloc::vec![0u8; n];
            self.bus.dma_read(src, &mut tmp).map(|_| {
                s.buf[off..off + n].copy_from_slice(&tmp);
                (src, s.dst)
            })
        };
        match result {
            Ok((src, dst)) => s.transfers.push(EduTransfer {
                src,
                dst,
                len,
                to_ram,
            }),
            Err(f) => s.faults.push(EduFault::Bus(f)),
        }
        s.cmd &= !CMD_RUN;
        if s.cmd & CMD_IRQ != 0 {
            Self::raise(s, IRQ_DMA);
        }
    }

    /// What the model refused or recorded, oldest first.
    pub fn faults(&self) -> Vec<EduFault> {
        self.s.borrow().faults.clone()
    }

    /// Completed transfers, oldest first.
    pub fn transfers(&self) -> Vec<EduTransfer> {
        self.s.borrow().transfers.clone()
    }

    /// `len` bytes of the device buffer at `offset`.
    pub fn buffer(&self, offset: usize, len: usize) -> Vec<u8> {
        self.s.borrow().buf[offset..offset + len].to_vec()
    }

    /// Sets the device buffer's bytes at `offset` (as earlier transfers would have).
    pub fn set_buffer(&self, offset: usize, data: &[u8]) {
        self.s.borrow_mut().buf[offset..offset + data.len()].copy_from_slice(data);
    }

    /// How many times an interrupt was signalled.
    pub fn irqs_raised(&self) -> u32 {
        self.s.borrow().irqs_raised
    }

    fn read(&self, offset: usize, width: usize) -> u64 {
        let mut s = self.s.borrow_mut();
        let ok = if offset < 0x80 {
            width == 4
        } else {
            width == 4 || width == 8
        };
        if !ok {
            s.faults.push(EduFault::BadAccess { offset, width });
            return u64::MAX;
        }
        match offset {
            0x00 => IDENT as u64,
            0x04 => s.liveness as u64,
            0x08 => s.fact as u64,
            0x20 => s.status as u64,
            0x24 => s.irq_status as u64,
            0x80 => s.src,
            0x88 => s.dst,
            0x90 => s.cnt,
            0x98 => s.cmd,
            _ => u64::MAX,
        }
    }

    fn write(&self, offset: usize, width: usize, val: u64) {
        let mut s = self.s.borrow_mut();
        let ok = if offset < 0x80 {
            width == 4
        } else {
            width == 4 || width == 8
        };
        if !ok {
            s.faults.push(EduFault::BadAccess { offset, width });
            return;
        }
        let running = s.cmd & CMD_RUN != 0;
        match offset {
            0x04 => s.liveness = !(val as u32),
            0x08 => {
                if s.status & STATUS_COMPUTING == 0 {
                    s.fact = val as u32;
                    s.status |= STATUS_COMPUTING;
                }
            }
            0x20 => {
                if val as u32 & STATUS_IRQ_FACT != 0 {
                    s.status |= STATUS_IRQ_FACT;
                } else {
                    s.status &= !STATUS_IRQ_FACT;
                }
            }
            0x60 => Self::raise(&mut s, val as u32),
            0x64 => s.irq_status &= !(val as u32),
            0x80 if !running => s.src = val,
            0x88 if !running => s.dst = val,
            0x90 if !running => s.cnt = val,
            0x98 if !running && val & CMD_RUN != 0 => s.cmd = val,
            _ => {}
        }
    }
}

impl<B: DmaBus> RegisterAccess for EduModel<B> {
    fn read8(&self, offset: usize) -> u8 {
        self.read(offset, 1) as u8
    }
    fn read16(&self, offset: usize) -> u16 {
        self.read(offset, 2) as u16
    }
    fn read32(&self, offset: usize) -> u32 {
        self.read(offset, 4) as u32
    }
    fn read64(&self, offset: usize) -> u64 {
        self.read(offset, 8)
    }
    fn write8(&self, offset: usize, value: u8) {
        self.write(offset, 1, value as u64)
    }
    fn write16(&self, offset: usize, value: u16) {
        self.write(offset, 2, value as u64)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, 4, value as u64)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.write(offset, 8, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ahci::PhysBus;
    use hal::{Arena, PhysAddr, PhysMemory};

    const RAM: u64 = 0x10_0000;

    fn model(a: &Arena) -> EduModel<PhysBus<&Arena>> {
        EduModel::new(PhysBus::new(a, &[(RAM, a.size() as u64)]))
    }

    fn run(m: &EduModel<PhysBus<&Arena>>, src: u64, dst: u64, len: u64, cmd: u64) {
        m.write64(0x80, src);
        m.write64(0x88, dst);
        m.write64(0x90, len);
        m.write64(0x98, cmd);
        m.tick();
    }

    #[test]
    fn registers_identify_liveness_factorial_and_interrupts() {
        let a = Arena::new(PhysAddr::new(RAM), 0x10000);
        let m = model(&a);
        assert_eq!(m.read32(0x00), IDENT);
        m.write32(0x04, 0x1234_5678);
        assert_eq!(m.read32(0x04), !0x1234_5678);
        m.write32(0x20, 0x80);
        m.write32(0x08, 5);
        assert_eq!(m.read32(0x20) & 1, 1, "computing until time passes");
        m.tick();
        assert_eq!(m.read32(0x08), 120);
        assert_eq!(m.read32(0x24), IRQ_FACTORIAL);
        m.write32(0x60, 0x0002_0000);
        assert_eq!(m.read32(0x24), 0x0002_0001);
        m.write32(0x64, 0x0002_0001);
        assert_eq!(m.read32(0x24), 0);
        // Below 0x80 only 4-byte accesses: an 8-byte read is refused and recorded.
        assert_eq!(m.read64(0x00), u64::MAX);
        assert_eq!(
            m.faults(),
            [EduFault::BadAccess {
                offset: 0,
                width: 8
            }]
        );
    }

    #[test]
    fn dma_round_trip_through_ram_with_the_mask_and_irq() {
        let a = Arena::new(PhysAddr::new(RAM), 0x10000);
        let m = model(&a);
        a.write(PhysAddr::new(RAM + 0x100), b"hello edu");
        run(&m, RAM + 0x100, BUFFER + 8, 9, CMD_RUN | CMD_IRQ);
        assert_eq!(m.buffer(8, 9), b"hello edu");
        assert_eq!(m.read32(0x24), IRQ_DMA);
        assert_eq!(m.read64(0x98) & CMD_RUN, 0);
        // Bits above the 28-bit mask are dropped (and recorded).
        run(
            &m,
            BUFFER + 8,
            (1 << 32) | (RAM + 0x800),
            9,
            CMD_RUN | CMD_TO_RAM,
        );
        let mut back = [0u8; 9];
        a.read(PhysAddr::new(RAM + 0x800), &mut back);
        assert_eq!(&back, b"hello edu");
        assert_eq!(
            m.faults(),
            [EduFault::Clamped {
                from: (1 << 32) | (RAM + 0x800),
                to: RAM + 0x800
            }]
        );
    }

    #[test]
    fn zero_and_full_buffer_transfers_are_the_qemu_7_2_aborts() {
        let a = Arena::new(PhysAddr::new(RAM), 0x10000);
        let m = model(&a);
        run(&m, RAM, BUFFER, 0, CMD_RUN);
        assert_eq!(
            m.faults(),
            [EduFault::QemuAbort {
                addr: BUFFER,
                len: 0
            }]
        );
        let m = model(&a);
        run(&m, RAM, BUFFER, 4096, CMD_RUN);
        assert_eq!(
            m.faults(),
            [EduFault::QemuAbort {
                addr: BUFFER,
                len: 4096
            }]
        );
        let m = model(&a);
        run(&m, RAM, BUFFER + 1, 4095, CMD_RUN);
        assert_eq!(
            m.faults()[0],
            EduFault::QemuAbort {
                addr: BUFFER + 1,
                len: 4095
            }
        );
        let m = model(&a);
        run(&m, RAM, BUFFER, 4095, CMD_RUN);
        assert!(m.faults().is_empty());
        assert_eq!(m.transfers().len(), 1);
    }

    #[test]
    fn registers_ignore_writes_while_running_and_4_byte_writes_zero_extend() {
        let a = Arena::new(PhysAddr::new(RAM), 0x10000);
        let m = model(&a);
        m.write64(0x80, 0xdead_0000_0000_1000);
        m.write32(0x80, 0x2000);
        assert_eq!(m.read64(0x80), 0x2000);
        m.write64(0x98, 2); // no RUN: ignored
        assert_eq!(m.read64(0x98), 0);
        m.write64(0x88, BUFFER);
        m.write64(0x90, 16);
        m.write64(0x80, RAM);
        m.write64(0x98, CMD_RUN);
        m.write64(0x80, RAM + 0x40); // ignored while running
        assert_eq!(m.read64(0x80), RAM);
        m.tick();
        assert_eq!(m.transfers()[0].src, RAM);
    }

    #[test]
    fn a_dma_outside_ram_is_a_bus_fault_not_a_panic() {
        let a = Arena::new(PhysAddr::new(RAM), 0x10000);
        let m = model(&a);
        run(&m, 0x0800_0000, BUFFER, 64, CMD_RUN | CMD_IRQ);
        assert_eq!(
            m.faults(),
            [EduFault::Bus(BusFault {
                addr: 0x0800_0000,
                write: false
            })]
        );
        assert_eq!(m.read32(0x24), IRQ_DMA, "the transfer still ends");
    }
}
