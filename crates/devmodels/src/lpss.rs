//! Behavioural model of an Intel LPSS PCI function's BAR0 (hw-facts §1.1–1.2): the host
//! controller block at 0x000, the private registers at 0x200 and the iDMA64 at 0x800
//! ([`crate::idma64`]), behind the function's PCI power state.
//!
//! * Power: the model starts in **D3hot**, as firmware often leaves PCI-mode LPSS
//!   functions. Out of D0 the function decodes nothing: every read returns all-ones and
//!   writes are dropped. The owner of configuration space tells the model what PMCSR
//!   says ([`LpssModel::set_power_state`]); leaving D3hot resets the function (private
//!   registers back to reset values), as a function without No_Soft_Reset does.
//! * Private registers: RESETS and REMAP_ADDR read back what was written; CAPS is
//!   read-only (function type in bits 7:4, bit 8 clear: an iDMA64 is present).
//! * UART host block (function type 1): a 16550-compatible DesignWare UART with
//!   32-bit register stride (THR/RBR 0x00, IER 0x04, FCR/IIR 0x08, LCR 0x0C, MCR 0x10,
//!   LSR 0x14, SCR 0x1C), 64-byte FIFOs, internal loopback (MCR.LOOP: the transmitter
//!   feeds the receiver, [`CHARS_PER_STEP`] characters per step) and the two DMA request
//!   lines of DMA mode 1 (FCR bit 3), wired to the iDMA64's handshake interfaces the way
//!   Linux's idma64 programs them (CFG_HI.DST_PER = 0 for TX, SRC_PER = 1 for RX):
//!   TX request (line 0) rises when the TX FIFO is empty and falls when it is full;
//!   RX request (line 1) rises when the RX FIFO reaches its trigger level (FCR bits 7:6:
//!   1, 16, 32 or 62 bytes) or holds data that has waited [`RX_TIMEOUT_STEPS`] steps
//!   (the character timeout), and falls when it is empty. In DMA mode 0 each line
//!   asks for single characters (TX: FIFO empty, RX: not empty). RX overrun sets LSR.OE
//!   and drops the character. Without loopback transmitted characters leave on the
//!   (unconnected) line and are counted.
//!
//! The iDMA64 reads and writes the UART's data register through its bus address
//! (BAR0 + 0x00), so a driver gives the DMA exactly the address Linux's 8250_dma does.

use alloc::collections::VecDeque;
use core::cell::{Cell, RefCell};
use hal::{PhysAddr, PhysMemory, RegisterAccess};

use crate::idma64::Idma64Model;

/// Private register block offset in BAR0.
pub const PRIV: usize = 0x200;
/// iDMA64 register block offset in BAR0.
pub const IDMA: usize = 0x800;
/// Private CAPS register (offset in the private block).
pub const CAPS: usize = 0xFC;
/// UART FIFO depth.
pub const UART_FIFO: usize = 64;
/// Characters the UART shifts per step.
pub const CHARS_PER_STEP: usize = 16;
/// Steps data waits in the RX FIFO below the trigger before the timeout request.
pub const RX_TIMEOUT_STEPS: u32 = 2;
/// Handshake interface of the TX request.
pub const LINE_TX: u32 = 0;
/// Handshake interface of the RX request.
pub const LINE_RX: u32 = 1;

/// UART register offsets (32-bit stride).
pub mod uart {
    /// Receive buffer (read) / transmit holding (write).
    pub const RBR_THR: usize = 0x00;
    /// Interrupt enable.
    pub const IER: usize = 0x04;
    /// FIFO control (write) / interrupt identification (read).
    pub const FCR_IIR: usize = 0x08;
    /// Line control.
    pub const LCR: usize = 0x0C;
    /// Modem control.
    pub const MCR: usize = 0x10;
    /// Line status.
    pub const LSR: usize = 0x14;
    /// Scratch.
    pub const SCR: usize = 0x1C;
    /// FCR: FIFOs enabled.
    pub const FCR_FIFO_EN: u8 = 1 << 0;
    /// FCR: clear the RX FIFO (self-clearing).
    pub const FCR_CLEAR_RX: u8 = 1 << 1;
    /// FCR: clear the TX FIFO (self-clearing).
    pub const FCR_CLEAR_TX: u8 = 1 << 2;
    /// FCR: DMA mode 1 (multi-character requests).
    pub const FCR_DMA_MODE1: u8 = 1 << 3;
    /// FCR: RX trigger, bits 7:6.
    pub const fn fcr_rx_trigger(code: u8) -> u8 {
        (code & 3) << 6
    }
    /// MCR: internal loopback.
    pub const MCR_LOOP: u8 = 1 << 4;
    /// LSR: data ready.
    pub const LSR_DR: u8 = 1 << 0;
    /// LSR: overrun error.
    pub const LSR_OE: u8 = 1 << 1;
    /// LSR: transmit holding register (FIFO) empty.
    pub const LSR_THRE: u8 = 1 << 5;
    /// LSR: transmitter empty.
    pub const LSR_TEMT: u8 = 1 << 6;
}

/// Which host controller the function has (CAPS bits 7:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// DesignWare I2C (not modelled: its block reads all-ones).
    I2c = 0,
    /// DesignWare 16550 UART (modelled, see the module doc).
    Uart = 1,
    /// PXA2xx SSP (not modelled).
    Spi = 2,
}

#[derive(Default)]
struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    fcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    tx: VecDeque<u8>,
    overrun: bool,
    tx_req: bool,
    rx_req: bool,
    rx_idle: u32,
    sent: usize,
}

/// The LPSS function model over memory `M` (for the iDMA64).
pub struct LpssModel<M: PhysMemory> {
    idma: Idma64Model<M>,
    function: Function,
    bar: u64,
    power: Cell<u8>,
    private: RefCell<[u32; 64]>,
    uart: RefCell<Uart>,
}

impl<M: PhysMemory> LpssModel<M> {
    /// A function of type `function` whose BAR0 sits at bus address `bar`, in D3hot,
    /// with its iDMA64 reaching `[mem_base, mem_base + mem_size)` of `mem`.
    pub fn new(mem: M, mem_base: PhysAddr, mem_size: usize, bar: u64, function: Function) -> Self {
        let idma = Idma64Model::new(mem, mem_base, mem_size);
        if function == Function::Uart {
            idma.add_fifo(bar + uart::RBR_THR as u64);
        }
        LpssModel {
            idma,
            function,
            bar,
            power: Cell::new(3),
            private: RefCell::new(Self::private_reset(function)),
            uart: RefCell::new(Uart::default()),
        }
    }

    fn private_reset(function: Function) -> [u32; 64] {
        let mut p = [0u32; 64];
        p[CAPS / 4] = (function as u32) << 4;
        p
    }

    /// The iDMA64 inside (for steps, FIFOs, block logs).
    pub fn idma(&self) -> &Idma64Model<M> {
        &self.idma
    }

    /// Bus address of the UART data register (what a DMA client programs).
    pub fn uart_data_addr(&self) -> u64 {
        self.bar + uart::RBR_THR as u64
    }

    /// PMCSR.PowerState as configuration space now says (0 = D0 .. 3 = D3hot).
    /// D3hot→D0 resets the function.
    pub fn set_power_state(&self, state: u8) {
        let old = self.power.replace(state & 3);
        if old == 3 && state & 3 == 0 {
            *self.private.borrow_mut() = Self::private_reset(self.function);
            *self.uart.borrow_mut() = Uart::default();
        }
    }

    /// The power state the model is in.
    pub fn power_state(&self) -> u8 {
        self.power.get()
    }

    /// Characters transmitted onto the (unconnected) line outside loopback.
    pub fn uart_sent(&self) -> usize {
        self.uart.borrow().sent
    }

    /// One step: the iDMA64 moves what the request lines allow (bursts repeat while
    /// the peripheral keeps asking), then the UART shifts up to [`CHARS_PER_STEP`]
    /// characters. Returns true if anything moved.
    pub fn step(&self) -> bool {
        if self.power.get() != 0 {
            return false;
        }
        let mut any = false;
        let uart = self.function == Function::Uart;
        if uart {
            self.update_lines();
        }
        any |= self.idma.step();
        if uart {
            self.accept_tx();
            // Further bursts for as long as the UART keeps asking (a FIFO's worth).
            for _ in 0..UART_FIFO {
                self.update_lines();
                if !self.idma.step_slave() {
                    break;
                }
                any = true;
                self.accept_tx();
            }
            any |= self.shift();
            self.update_lines();
        }
        any
    }

    /// Steps until nothing moves; returns the steps taken.
    pub fn run_until_idle(&self) -> usize {
        let mut n = 0;
        while self.step() {
            n += 1;
        }
        n
    }

    /// Moves what the iDMA64 wrote to the data register into the TX FIFO.
    fn accept_tx(&self) {
        let data = self.idma.take_fifo(self.uart_data_addr());
        let mut u = self.uart.borrow_mut();
        for b in data {
            if u.tx.len() < UART_FIFO {
                u.tx.push_back(b);
            } // else: written into a full FIFO, lost (as on hardware)
        }
    }

    fn rx_trigger(u: &Uart) -> usize {
        match u.fcr >> 6 {
            0 => 1,
            1 => UART_FIFO / 4,
            2 => UART_FIFO / 2,
            _ => UART_FIFO - 2,
        }
    }

    fn update_lines(&self) {
        let rx = self.idma.fifo_level(self.uart_data_addr());
        let mut u = self.uart.borrow_mut();
        let mode1 = u.fcr & uart::FCR_FIFO_EN != 0 && u.fcr & uart::FCR_DMA_MODE1 != 0;
        if mode1 {
            if u.tx.is_empty() {
                u.tx_req = true;
            } else if u.tx.len() >= UART_FIFO {
                u.tx_req = false;
            }
            if rx >= Self::rx_trigger(&u) || (rx > 0 && u.rx_idle >= RX_TIMEOUT_STEPS) {
                u.rx_req = true;
            } else if rx == 0 {
                u.rx_req = false;
            }
        } else {
            u.tx_req = u.tx.is_empty();
            u.rx_req = rx > 0;
        }
        let lines = u32::from(u.tx_req) << LINE_TX | u32::from(u.rx_req) << LINE_RX;
        drop(u);
        self.idma.set_request_lines(lines);
    }

    /// The transmitter: up to [`CHARS_PER_STEP`] characters leave the TX FIFO, into
    /// the RX FIFO in loopback.
    fn shift(&self) -> bool {
        let addr = self.uart_data_addr();
        let mut u = self.uart.borrow_mut();
        let n = u.tx.len().min(CHARS_PER_STEP);
        let mut rx = self.idma.fifo_level(addr);
        for _ in 0..n {
            let Some(c) = u.tx.pop_front() else { break };
            if u.mcr & uart::MCR_LOOP == 0 {
                u.sent += 1;
            } else if rx < UART_FIFO {
                self.idma.push_fifo(addr, &[c]);
                rx += 1;
            } else {
                u.overrun = true;
            }
        }
        if n > 0 || rx == 0 {
            u.rx_idle = 0;
        } else {
            u.rx_idle = u.rx_idle.saturating_add(1);
        }
        n > 0
    }

    fn uart_read(&self, o: usize) -> u32 {
        let addr = self.uart_data_addr();
        let dlab = self.uart.borrow().lcr & 0x80 != 0;
        let v = match o {
            uart::RBR_THR if dlab => self.uart.borrow().dll,
            uart::RBR_THR => {
                let c = self.idma.pop_fifo(addr).unwrap_or(0);
                self.uart.borrow_mut().rx_idle = 0;
                c
            }
            uart::IER if dlab => self.uart.borrow().dlm,
            uart::IER => self.uart.borrow().ier,
            // IIR: no interrupt pending; bits 7:6 say FIFOs on.
            uart::FCR_IIR => {
                1 | if self.uart.borrow().fcr & uart::FCR_FIFO_EN != 0 {
                    0xC0
                } else {
                    0
                }
            }
            uart::LCR => self.uart.borrow().lcr,
            uart::MCR => self.uart.borrow().mcr,
            uart::LSR => {
                let mut u = self.uart.borrow_mut();
                let mut l = 0;
                if self.idma.fifo_level(addr) > 0 {
                    l |= uart::LSR_DR;
                }
                if u.overrun {
                    l |= uart::LSR_OE;
                    u.overrun = false; // cleared by reading LSR
                }
                if u.tx.is_empty() {
                    l |= uart::LSR_THRE | uart::LSR_TEMT;
                }
                l
            }
            uart::SCR => self.uart.borrow().scr,
            _ => 0,
        };
        u32::from(v)
    }

    fn uart_write(&self, o: usize, v: u8) {
        let addr = self.uart_data_addr();
        let mut u = self.uart.borrow_mut();
        let dlab = u.lcr & 0x80 != 0;
        match o {
            uart::RBR_THR if dlab => u.dll = v,
            uart::RBR_THR => {
                if u.tx.len() < UART_FIFO {
                    u.tx.push_back(v);
                }
            }
            uart::IER if dlab => u.dlm = v,
            uart::IER => u.ier = v & 0x0F,
            uart::FCR_IIR => {
                if v & uart::FCR_CLEAR_TX != 0 {
                    u.tx.clear();
                }
                if v & uart::FCR_CLEAR_RX != 0 {
                    while self.idma.pop_fifo(addr).is_some() {}
                }
                u.fcr = v & !(uart::FCR_CLEAR_RX | uart::FCR_CLEAR_TX);
            }
            uart::LCR => u.lcr = v,
            uart::MCR => u.mcr = v & 0x1F,
            uart::SCR => u.scr = v,
            _ => {}
        }
    }

    fn read(&self, off: usize) -> u32 {
        if self.power.get() != 0 {
            return !0;
        }
        match off {
            o if o < PRIV => match self.function {
                Function::Uart => self.uart_read(o),
                _ => !0,
            },
            o if o < PRIV + 0x100 => self.private.borrow()[(o - PRIV) / 4],
            o if (IDMA..IDMA + 0x800).contains(&o) => self.idma.read32(o - IDMA),
            _ => !0,
        }
    }

    fn write(&self, off: usize, v: u32) {
        if self.power.get() != 0 {
            return;
        }
        match off {
            o if o < PRIV => {
                if self.function == Function::Uart {
                    self.uart_write(o, v as u8);
                    self.update_lines();
                }
            }
            o if o < PRIV + 0x100 => {
                let i = (o - PRIV) / 4;
                if i != CAPS / 4 {
                    self.private.borrow_mut()[i] = v;
                }
            }
            o if (IDMA..IDMA + 0x800).contains(&o) => self.idma.write32(o - IDMA, v),
            _ => {}
        }
    }
}

impl<M: PhysMemory> RegisterAccess for LpssModel<M> {
    fn read8(&self, o: usize) -> u8 {
        (self.read(o & !3) >> ((o & 3) * 8)) as u8
    }
    fn read16(&self, o: usize) -> u16 {
        (self.read(o & !3) >> ((o & 2) * 8)) as u16
    }
    fn read32(&self, o: usize) -> u32 {
        self.read(o & !3)
    }
    fn write8(&self, o: usize, v: u8) {
        // The UART's registers are byte registers on a 32-bit stride: a byte write
        // to one of them must not read back first (RBR would pop a character).
        if o < PRIV && o & 3 == 0 {
            self.write(o, u32::from(v));
            return;
        }
        let sh = (o & 3) * 8;
        let old = self.read(o & !3) & !(0xFF << sh);
        self.write(o & !3, old | (v as u32) << sh);
    }
    fn write16(&self, o: usize, v: u16) {
        let sh = (o & 2) * 8;
        let old = self.read(o & !3) & !(0xFFFF << sh);
        self.write(o & !3, old | (v as u32) << sh);
    }
    fn write32(&self, o: usize, v: u32) {
        self.write(o & !3, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hal::Arena;

    const BASE: u64 = 0x10_0000;
    const BAR: u64 = 0xFE40_0000;

    #[test]
    fn d3hot_reads_all_ones_until_d0_then_resets() {
        let a = Arena::new(PhysAddr::new(BASE), 0x4000);
        let m = LpssModel::new(&a, a.base(), a.size(), BAR, Function::Uart);
        assert_eq!(m.read32(PRIV + CAPS), !0);
        assert_eq!(m.read32(IDMA + 0x398), !0);
        m.write32(PRIV + 4, 7);
        m.set_power_state(0);
        assert_eq!(m.read32(PRIV + CAPS), 0x10);
        assert_eq!(m.read32(PRIV + 4), 0, "the write in D3hot was dropped");
        m.write32(PRIV + 4, 7);
        assert_eq!(m.read32(PRIV + 4), 7);
        m.set_power_state(3);
        assert_eq!(m.read32(PRIV + 4), !0);
        m.set_power_state(0);
        assert_eq!(m.read32(PRIV + 4), 0, "D3hot->D0 reset the function");
    }

    #[test]
    fn uart_loopback_by_pio() {
        let a = Arena::new(PhysAddr::new(BASE), 0x4000);
        let m = LpssModel::new(&a, a.base(), a.size(), BAR, Function::Uart);
        m.set_power_state(0);
        m.write8(uart::FCR_IIR, uart::FCR_FIFO_EN);
        for c in b"hi" {
            m.write8(uart::RBR_THR, *c);
        }
        m.step();
        assert_eq!(m.read8(uart::LSR) & uart::LSR_DR, 0, "no loopback: sent");
        assert_eq!(m.uart_sent(), 2);
        m.write8(uart::MCR, uart::MCR_LOOP);
        for c in b"ok" {
            m.write8(uart::RBR_THR, *c);
        }
        m.step();
        assert_ne!(m.read8(uart::LSR) & uart::LSR_DR, 0);
        assert_eq!([m.read8(uart::RBR_THR), m.read8(uart::RBR_THR)], *b"ok");
        assert_eq!(m.read8(uart::LSR) & uart::LSR_DR, 0);
    }
}
