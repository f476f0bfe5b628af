//! The LPSS UART as an iDMA64 client (what Linux's `8250_dw` + `8250_dma` do on an LPSS
//! UART function): the 16550-compatible block at BAR0 + 0x000 with a 32-bit register
//! stride, set up for DMA mode 1 so it raises its request lines (TX: FIFO empty, RX:
//! trigger level or character timeout) and the iDMA64's hardware handshake moves the
//! data: TX on handshake interface 0 (CFG_HI.DST_PER), RX on interface 1
//! (CFG_HI.SRC_PER), as the `idma64` driver programs every channel.
//!
//! Only what a loopback test needs: [`LpssUart::set_loopback`] (internal loopback
//! through MCR.LOOP, so a laptop needs nothing attached) and the slave configuration
//! for the data register. No console, no baud rate programming (loopback does not
//! need one), no PIO path.
//!
//! The data register's bus address is BAR0 itself: the iDMA64 sits inside the same
//! PCI function, so its accesses to the host block never reach the IOMMU.

use hal::{DmaAddr, RegisterAccess};
use pci::Bdf;
use spin::Once;

use super::Window;

/// Receive buffer / transmit holding register.
const RBR_THR: usize = 0x00;
/// FIFO control (write).
const FCR: usize = 0x08;
/// Line control.
const LCR: usize = 0x0C;
/// Modem control.
const MCR: usize = 0x10;
/// Line status.
const LSR: usize = 0x14;
const FCR_FIFO_EN: u8 = 1 << 0;
const FCR_CLEAR_RX: u8 = 1 << 1;
const FCR_CLEAR_TX: u8 = 1 << 2;
/// DMA mode 1: multi-character DMA requests.
const FCR_DMA_MODE1: u8 = 1 << 3;
/// RX trigger at a quarter of the FIFO (FCR bits 7:6 = 1).
const FCR_RX_TRIGGER_QUARTER: u8 = 1 << 6;
/// 8 data bits, no parity, 1 stop bit.
const LCR_8N1: u8 = 0x03;
const MCR_LOOP: u8 = 1 << 4;
/// LSR: overrun error.
pub const LSR_OE: u8 = 1 << 1;

/// The first LPSS UART function the LPSS driver bound, and its BAR0.
static UART: Once<(Bdf, u64)> = Once::new();

/// Called by the LPSS probe for a UART function.
pub(super) fn found(bdf: Bdf, bar: u64) {
    UART.call_once(|| (bdf, bar));
}

/// An LPSS UART function's host block.
pub struct LpssUart {
    /// The PCI function.
    pub bdf: Bdf,
    bar: u64,
    regs: Window,
}

/// The first LPSS UART, if one was bound.
pub fn get() -> Option<LpssUart> {
    let &(bdf, bar) = UART.get()?;
    let regs = super::window(bdf, bar, pci::lpss::HOST_OFFSET, pci::lpss::HOST_LEN).ok()?;
    Some(LpssUart { bdf, bar, regs })
}

impl LpssUart {
    /// The dmaengine device of this function's iDMA64.
    pub fn dma_dev(&self) -> Option<usize> {
        let dev = super::slot_of(self.bdf)?
            .dev
            .load(core::sync::atomic::Ordering::Acquire);
        (dev != super::NO_DEV).then_some(dev)
    }

    /// FIFOs on and cleared, DMA mode 1, RX trigger at 16 bytes, 8N1, and internal
    /// loopback on or off.
    pub fn set_loopback(&self, on: bool) {
        self.regs.write8(
            FCR,
            FCR_FIFO_EN | FCR_CLEAR_RX | FCR_CLEAR_TX | FCR_DMA_MODE1 | FCR_RX_TRIGGER_QUARTER,
        );
        self.regs.write8(LCR, LCR_8N1);
        self.regs.write8(MCR, if on { MCR_LOOP } else { 0 });
    }

    /// Line status (LSR; reading clears the overrun bit).
    pub fn line_status(&self) -> u8 {
        self.regs.read8(LSR)
    }

    /// Bus address of the data register (THR/RBR).
    pub fn data_addr(&self) -> DmaAddr {
        DmaAddr::new(self.bar + RBR_THR as u64)
    }

    /// The slave configuration for `dir` with byte-wide accesses and `burst` items per
    /// request.
    pub fn slave_config(
        &self,
        dir: dmaengine::TransferDirection,
        burst: u32,
    ) -> dmaengine::SlaveConfig {
        dmaengine::SlaveConfig {
            direction: dir,
            src_addr: self.data_addr(),
            dst_addr: self.data_addr(),
            src_addr_width: 1,
            dst_addr_width: 1,
            src_maxburst: burst,
            dst_maxburst: burst,
        }
    }
}
