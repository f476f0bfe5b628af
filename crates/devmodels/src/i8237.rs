//! The PC/AT ISA DMA controller pair (Intel 8237A; QEMU's hw/dma/i8257.c) at its
//! fixed I/O ports, moving bytes between a device and memory when the device asks.
//!
//! Facts modelled:
//! * Chip 0 (8-bit channels 0–3) at ports 0x00–0x0F, chip 1 (16-bit channels 4–7, 4 the
//!   cascade) at 0xC0–0xDF with registers every second port. Page registers at 0x81,
//!   0x82, 0x83, 0x87 (channels 2, 3, 1, 0) and 0x89, 0x8A, 0x8B, 0x8F (6, 7, 5, 4).
//! * Address and count registers take two byte accesses through one byte-pointer
//!   flip-flop per chip, which every such access toggles; port 0x0C (0xD8) clears it.
//!   A write sets the base and the current register alike.
//! * Count holds units − 1 and counts down; after the last unit (terminal count) it
//!   reads 0xFFFF (QEMU: base − transferred). The status register's bits 3:0 say which
//!   channels reached terminal count; reading it clears them.
//! * Mask: single-channel mask port (bit 2 set/clear, bits 1:0 channel), clear-all,
//!   write-all; master clear masks everything. After reset every channel is masked.
//! * Mode: bits 3:2 transfer type (01 write = device → memory, 10 read = memory →
//!   device), bit 4 auto-initialise, bits 1:0 channel.
//! * 16-bit channels count words: memory address = page[7:1] × 128 KiB + address × 2.
//! * At terminal count a channel without auto-initialise masks itself (8237A data
//!   sheet); with it, the current address and count reload from the base registers.
//! * The address counter is 16 bits: a transfer past the end of its 64 KiB (128 KiB)
//!   page wraps to the page's start on a real 8237. QEMU does not wrap; the model
//!   wraps like the chip and records [`IsaFault::Wrapped`] so a test sees the bug.
use alloc::vec::Vec;
use core::cell::RefCell;

use hal::{PhysAddr, PhysMemory};

/// Something the model refused or noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsaFault {
    /// The device asked on a masked channel: nothing moved.
    Masked(u8),
    /// The device's direction disagrees with the channel's mode (or the mode is
    /// "verify"/unset): nothing moved.
    WrongType(u8),
    /// The address counter wrapped inside its page (a buffer crossing the boundary).
    Wrapped {
        /// Channel.
        channel: u8,
        /// Physical address of the first byte written or read after the wrap.
        at: u64,
    },
}

#[derive(Default, Clone, Copy)]
struct Chan {
    base_addr: u16,
    base_count: u16,
    addr: u16,
    count: u16,
    page: u8,
    mode: u8,
}

struct Chip {
    ch: [Chan; 4],
    mask: u8,
    status: u8,
    flip_flop: bool,
}

impl Chip {
    fn reset() -> Chip {
        Chip {
            ch: [Chan::default(); 4],
            mask: 0x0F,
            status: 0,
            flip_flop: false,
        }
    }

    fn ff(&mut self) -> bool {
        let f = self.flip_flop;
        self.flip_flop = !f;
        f
    }
}

struct State {
    chips: [Chip; 2],
    faults: Vec<IsaFault>,
}

/// Both chips, moving data to and from `M`.
pub struct I8237Model<M: PhysMemory> {
    mem: M,
    s: RefCell<State>,
}

const PAGE_CHAN: [i8; 8] = [-1, 2, 3, 1, -1, -1, -1, 0];

impl<M: PhysMemory> I8237Model<M> {
    /// Both chips after reset (every channel masked), over `mem`.
    pub fn new(mem: M) -> Self {
        I8237Model {
            mem,
            s: RefCell::new(State {
                chips: [Chip::reset(), Chip::reset()],
                faults: Vec::new(),
            }),
        }
    }

    /// What the model refused or noticed, oldest first.
    pub fn faults(&self) -> Vec<IsaFault> {
        self.s.borrow().faults.clone()
    }

    /// The mask bits of the chip holding `channel` (bit n = its channel n).
    pub fn mask_bits(&self, channel: u8) -> u8 {
        self.s.borrow().chips[(channel >> 2) as usize & 1].mask
    }

    /// Sets the flip-flop of the chip holding `channel` (as a previous, unfinished
    /// access sequence would leave it).
    pub fn set_flip_flop(&self, channel: u8, high: bool) {
        self.s.borrow_mut().chips[(channel >> 2) as usize & 1].flip_flop = high;
    }

    /// The physical address the channel's next unit goes to.
    pub fn current_address(&self, channel: u8) -> u64 {
        let s = self.s.borrow();
        let c = &s.chips[(channel >> 2) as usize & 1].ch[(channel & 3) as usize];
        Self::phys(channel, c.page, c.addr)
    }

    fn phys(channel: u8, page: u8, addr: u16) -> u64 {
        if channel >= 4 {
            ((page as u64 & 0xFE) << 16) | ((addr as u64) << 1)
        } else {
            ((page as u64) << 16) | addr as u64
        }
    }

    /// A port read.
    pub fn inb(&self, port: u16) -> u8 {
        let mut s = self.s.borrow_mut();
        match port {
            0x00..=0x0F | 0xC0..=0xDF => {
                let (k, reg) = chip_register(port);
                let chip = &mut s.chips[k];
                match reg {
                    0..=7 => {
                        let hi = chip.ff();
                        let c = &chip.ch[(reg >> 1) as usize];
                        let v = if reg & 1 == 0 { c.addr } else { c.count };
                        if hi {
                            (v >> 8) as u8
                        } else {
                            v as u8
                        }
                    }
                    8 => {
                        let v = chip.status;
                        chip.status &= 0xF0;
                        v
                    }
                    _ => 0,
                }
            }
            0x80..=0x8F => {
                let k = ((port >> 3) & 1) as usize;
                match PAGE_CHAN[(port & 7) as usize] {
                    -1 => 0,
                    c => s.chips[k].ch[c as usize].page,
                }
            }
            _ => 0xFF,
        }
    }

    /// A port write.
    pub fn outb(&self, port: u16, v: u8) {
        let mut s = self.s.borrow_mut();
        match port {
            0x00..=0x0F | 0xC0..=0xDF => {
                let (k, reg) = chip_register(port);
                let chip = &mut s.chips[k];
                match reg {
                    0..=7 => {
                        let hi = chip.ff();
                        let c = &mut chip.ch[(reg >> 1) as usize];
                        let base = if reg & 1 == 0 {
                            &mut c.base_addr
                        } else {
                            &mut c.base_count
                        };
                        *base = if hi {
                            (*base & 0x00FF) | (v as u16) << 8
                        } else {
                            (*base & 0xFF00) | v as u16
                        };
                        let b = *base;
                        if reg & 1 == 0 {
                            c.addr = b;
                        } else {
                            c.count = b;
                        }
                    }
                    0x0A => {
                        let bit = 1 << (v & 3);
                        if v & 4 != 0 {
                            chip.mask |= bit;
                        } else {
                            chip.mask &= !bit;
                        }
                    }
                    0x0B => chip.ch[(v & 3) as usize].mode = v,
                    0x0C => chip.flip_flop = false,
                    0x0D => {
                        chip.flip_flop = false;
                        chip.mask = 0x0F;
                        chip.status = 0;
                    }
                    0x0E => chip.mask = 0,
                    0x0F => chip.mask = v & 0x0F,
                    _ => {}
                }
            }
            0x80..=0x8F => {
                let k = ((port >> 3) & 1) as usize;
                if let c @ 0..=3 = PAGE_CHAN[(port & 7) as usize] {
                    s.chips[k].ch[c as usize].page = v;
                }
            }
            _ => {}
        }
    }

    /// The device on `channel` asserts DREQ to move data into memory ("write"
    /// transfer): as many bytes of `data` as the channel has left go to memory, one
    /// unit at a time. Returns the bytes moved.
    pub fn device_write(&self, channel: u8, data: &[u8]) -> usize {
        self.run(channel, 0b01, data.len(), |m, pa, i, n| {
            m.write(PhysAddr::new(pa), &data[i..i + n])
        })
    }

    /// The device on `channel` asserts DREQ to take `len` bytes from memory ("read"
    /// transfer). Returns what it received (less if the channel reached terminal count).
    pub fn device_read(&self, channel: u8, len: usize) -> Vec<u8> {
        let mut out = alloc::vec![0u8; len];
        let n = self.run(channel, 0b10, len, |m, pa, i, n| {
            m.read(PhysAddr::new(pa), &mut out[i..i + n])
        });
        out.truncate(n);
        out
    }

    fn run(
        &self,
        channel: u8,
        ty: u8,
        len: usize,
        mut io: impl FnMut(&M, u64, usize, usize),
    ) -> usize {
        let mut st = self.s.borrow_mut();
        let (k, i) = ((channel >> 2) as usize & 1, (channel & 3) as usize);
        if st.chips[k].mask & (1 << i) != 0 {
            st.faults.push(IsaFault::Masked(channel));
            return 0;
        }
        if (st.chips[k].ch[i].mode >> 2) & 3 != ty {
            st.faults.push(IsaFault::WrongType(channel));
            return 0;
        }
        let unit = if channel >= 4 { 2 } else { 1 };
        let mut done = 0;
        while done + unit <= len {
            let c = st.chips[k].ch[i];
            io(&self.mem, Self::phys(channel, c.page, c.addr), done, unit);
            done += unit;
            let c = &mut st.chips[k].ch[i];
            let (next, wrapped) = c.addr.overflowing_add(1);
            c.addr = next;
            let tc = c.count == 0;
            c.count = c.count.wrapping_sub(1);
            if wrapped && !tc {
                let at = Self::phys(channel, c.page, c.addr);
                st.faults.push(IsaFault::Wrapped { channel, at });
            }
            if tc {
                let chip = &mut st.chips[k];
                chip.status |= 1 << i;
                let c = &mut chip.ch[i];
                if c.mode & 0x10 != 0 {
                    c.addr = c.base_addr;
                    c.count = c.base_count;
                } else {
                    chip.mask |= 1 << i;
                    break;
                }
            }
        }
        done
    }
}

/// Which chip and register a port in 0x00..=0x0F (8-bit chip, one port per
/// register) or 0xC0..=0xDF (16-bit chip, registers on even ports) addresses.
fn chip_register(port: u16) -> (usize, u16) {
    if port < 0x10 {
        (0, port)
    } else {
        (1, (port - 0xC0) >> 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::Arena;

    #[test]
    fn flip_flop_pairs_bytes_and_a_write_sets_current_and_base() {
        let a = Arena::new(PhysAddr::new(0), 0x4_0000);
        let m = I8237Model::new(&a);
        m.outb(0x0C, 0);
        m.outb(0x04, 0x34);
        m.outb(0x04, 0x12);
        m.outb(0x0C, 0);
        assert_eq!(m.inb(0x04), 0x34);
        assert_eq!(m.inb(0x04), 0x12);
        // Without a clear, the next write lands in the high byte.
        m.outb(0x05, 0xFF);
        m.outb(0x05, 0x00);
        m.outb(0x0C, 0);
        assert_eq!((m.inb(0x05), m.inb(0x05)), (0xFF, 0x00));
        m.outb(0x81, 0x02);
        assert_eq!(m.current_address(2), 0x2_1234);
        assert_eq!(m.mask_bits(2), 0x0F, "masked after reset");
    }

    #[test]
    fn terminal_count_sets_status_masks_and_count_reads_ffff() {
        let a = Arena::new(PhysAddr::new(0), 0x4_0000);
        let m = I8237Model::new(&a);
        m.outb(0x0B, 0x44 | 2); // single, write (device → memory), channel 2
        m.outb(0x0C, 0);
        m.outb(0x04, 0x00);
        m.outb(0x04, 0x10);
        m.outb(0x81, 0x01); // 0x1_1000
        m.outb(0x05, 3);
        m.outb(0x05, 0); // 4 bytes
        assert_eq!(m.device_write(2, &[1, 2, 3, 4, 5]), 0);
        assert_eq!(m.faults(), [IsaFault::Masked(2)]);
        m.outb(0x0A, 2);
        assert_eq!(m.device_write(2, &[1, 2, 3, 4, 5]), 4);
        assert_eq!(a.to_vec(PhysAddr::new(0x1_1000), 5), [1, 2, 3, 4, 0]);
        m.outb(0x0C, 0);
        assert_eq!((m.inb(0x05), m.inb(0x05)), (0xFF, 0xFF));
        assert_eq!(m.inb(0x08) & 0x0F, 0x04);
        assert_eq!(m.inb(0x08) & 0x0F, 0, "the read cleared it");
        assert_eq!(m.mask_bits(2) & 0x04, 0x04, "masked at terminal count");
    }
}
