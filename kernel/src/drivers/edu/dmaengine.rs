//! QEMU's edu device as a dmaengine provider: one channel that moves data between RAM
//! and the device's 4 KiB buffer (bus address 0x40000 in the device's own space).
//!
//! * slave transfers: `MemToDev` into the buffer at the configured `dst_addr`, or
//!   `DevToMem` out of it from `src_addr`; the buffer is device memory, so the device
//!   address advances with each segment (like a device SRAM, not a FIFO);
//! * memcpy RAM → RAM: two device transfers per chunk of up to 4095 bytes, RAM → buffer
//!   → RAM ("bouncing through the device").
//!
//! Each device transfer ends with the edu's DMA-done MSI; the edu driver's handler
//! calls [`crate::dmaengine::irq`], which runs [`EduDma::handle_irq`]: start the next hop, or
//! report the descriptor done. One hop takes about 100 ms in QEMU (the edu's timer).

use alloc::vec::Vec;

use dmaengine::{ChanEvent, DmaCaps, DmaProvider, EngineError, SlaveConfig, TransferDirection};
use hal::DmaAddr;

use crate::drivers::edu::{self as edudrv, EDU_BUFFER, MAX_DMA};
use crate::mm::{self as kmm, IoMem};
use crate::sync::IrqSpinLock;

const BUF_LEN: u64 = 4096;
const DMA_RUN: u64 = 1 << 0;
const DMA_TO_RAM: u64 = 1 << 1;
const DMA_IRQ: u64 = 1 << 2;

/// One device transfer.
#[derive(Clone, Copy, Debug)]
pub struct Hop {
    src: u64,
    dst: u64,
    len: usize,
    to_ram: bool,
}

/// A prepared edu descriptor.
#[derive(Debug)]
pub struct EduDesc {
    hops: Vec<Hop>,
    total: usize,
}

/// The provider.
pub struct EduDma {
    regs: IoMem,
    hops: Vec<Hop>,
    next: usize,
    running: bool,
}

impl EduDma {
    fn program(&self, h: &Hop) {
        self.regs.write64(edudrv::REG_DMA_SRC, h.src);
        self.regs.write64(edudrv::REG_DMA_DST, h.dst);
        self.regs.write64(edudrv::REG_DMA_COUNT, h.len as u64);
        hal::wmb();
        let dir = if h.to_ram { DMA_TO_RAM } else { 0 };
        self.regs
            .write64(edudrv::REG_DMA_CMD, DMA_RUN | DMA_IRQ | dir);
    }

    fn busy(&self) -> bool {
        self.regs.read64(edudrv::REG_DMA_CMD) & DMA_RUN != 0
    }
}

fn in_buffer(addr: u64, len: usize) -> bool {
    addr >= EDU_BUFFER && addr + len as u64 <= EDU_BUFFER + BUF_LEN
}

impl DmaProvider for EduDma {
    type Desc = EduDesc;

    fn name(&self) -> &str {
        "edu"
    }

    fn caps(&self) -> DmaCaps {
        DmaCaps::MEMCPY | DmaCaps::SLAVE | DmaCaps::PRIVATE
    }

    fn channel_count(&self) -> usize {
        1
    }

    fn check_config(&self, cfg: &SlaveConfig) -> Result<(), EngineError> {
        let dev = match cfg.direction {
            TransferDirection::MemToDev => cfg.dst_addr,
            TransferDirection::DevToMem => cfg.src_addr,
            d => return Err(EngineError::BadDirection(d)),
        };
        if !in_buffer(dev.as_u64(), 1) {
            return Err(EngineError::BadAddress(dev));
        }
        Ok(())
    }

    fn prep_memcpy(
        &mut self,
        _chan: usize,
        dst: DmaAddr,
        src: DmaAddr,
        len: usize,
    ) -> Result<EduDesc, EngineError> {
        let mut hops = Vec::new();
        let mut off = 0;
        while off < len {
            let n = (len - off).min(MAX_DMA);
            hops.push(Hop {
                src: src.as_u64() + off as u64,
                dst: EDU_BUFFER,
                len: n,
                to_ram: false,
            });
            hops.push(Hop {
                src: EDU_BUFFER,
                dst: dst.as_u64() + off as u64,
                len: n,
                to_ram: true,
            });
            off += n;
        }
        Ok(EduDesc { hops, total: len })
    }

    fn prep_slave_sg(
        &mut self,
        _chan: usize,
        sg: &[(DmaAddr, usize)],
        dir: TransferDirection,
        cfg: &SlaveConfig,
    ) -> Result<EduDesc, EngineError> {
        let mut dev = match dir {
            TransferDirection::MemToDev => cfg.dst_addr.as_u64(),
            TransferDirection::DevToMem => cfg.src_addr.as_u64(),
            d => return Err(EngineError::BadDirection(d)),
        };
        let mut hops = Vec::new();
        for &(mem, len) in sg {
            if len > MAX_DMA {
                return Err(EngineError::BadLength(len));
            }
            if !in_buffer(dev, len) {
                return Err(EngineError::BadAddress(DmaAddr::new(dev)));
            }
            let (src, dst, to_ram) = match dir {
                TransferDirection::MemToDev => (mem.as_u64(), dev, false),
                _ => (dev, mem.as_u64(), true),
            };
            hops.push(Hop {
                src,
                dst,
                len,
                to_ram,
            });
            dev += len as u64;
        }
        let total = sg.iter().map(|s| s.1).sum();
        Ok(EduDesc { hops, total })
    }

    fn desc_len(&self, d: &EduDesc) -> usize {
        d.total
    }

    fn start(&mut self, _chan: usize, d: &EduDesc) {
        self.hops = d.hops.clone();
        self.next = 0;
        match self.hops.first() {
            Some(h) if !self.busy() => {
                self.program(h);
                self.running = true;
            }
            _ => {
                // Busy with a transfer started outside dmaengine (`edu dma`): the
                // interrupt path reports an error for this descriptor.
                self.running = true;
                self.next = usize::MAX;
            }
        }
    }

    fn stop(&mut self, _chan: usize) {
        // edu cannot abort a transfer: wait for the one in flight (≈100 ms).
        for _ in 0..300 {
            if !self.busy() {
                break;
            }
            crate::arch::tsc::delay_us(1000);
        }
        self.running = false;
        self.hops.clear();
    }

    fn residue(&self, _chan: usize, d: &EduDesc) -> usize {
        if !self.running {
            return d.total;
        }
        // Bytes of the destination-side hops not finished yet.
        self.hops
            .iter()
            .enumerate()
            .filter(|(i, h)| *i >= self.next && (h.to_ram || self.hops.iter().all(|h| !h.to_ram)))
            .map(|(_, h)| h.len)
            .sum::<usize>()
            .min(d.total)
    }

    fn pause(&mut self, _chan: usize) -> Result<(), EngineError> {
        Err(EngineError::Unsupported)
    }

    fn resume(&mut self, _chan: usize) -> Result<(), EngineError> {
        Err(EngineError::Unsupported)
    }

    fn free_desc(&mut self, _d: EduDesc) {}

    fn handle_irq(&mut self, events: &mut Vec<ChanEvent>) -> bool {
        if !self.running || self.busy() {
            return false;
        }
        if self.next == usize::MAX {
            self.running = false;
            events.push(ChanEvent::Error(0));
            return true;
        }
        self.next += 1;
        match self.hops.get(self.next) {
            Some(h) => {
                let h = *h;
                self.program(&h);
            }
            None => {
                self.running = false;
                events.push(ChanEvent::Done(0));
            }
        }
        true
    }
}

/// dmaengine device per edu function, once registered.
static BY_BDF: IrqSpinLock<Vec<(pci::Bdf, usize)>> = IrqSpinLock::new(Vec::new());
static READY: spin::Once<()> = spin::Once::new();

/// The edu driver bound (or re-bound) `bdf`: after boot, point its provider at the
/// new DMA device (a rebind keeps its IOMMU domain) and route its interrupts again;
/// a function seen for the first time gets a provider.
pub fn bound(
    slot: usize,
    bdf: pci::Bdf,
    phys: u64,
    size: u64,
    dma: alloc::sync::Arc<dma::DmaDevice>,
) {
    if READY.get().is_none() {
        return; // `init` registers what is bound at boot
    }
    let known = BY_BDF.lock().iter().find(|(b, _)| *b == bdf).map(|x| x.1);
    match known {
        Some(id) => {
            if let Some(info) = crate::dmaengine::dev_info(id) {
                info.set_dma(Some(dma));
            }
            edudrv::set_dma_done_callback(slot, dma_done, id);
        }
        None => add(slot, bdf, phys, size, dma),
    }
}

fn add(slot: usize, bdf: pci::Bdf, phys: u64, size: u64, dma: alloc::sync::Arc<dma::DmaDevice>) {
    let regs = match kmm::ioremap(phys, size) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("dmaengine: edu {bdf}: {e}");
            return;
        }
    };
    let p = EduDma {
        regs,
        hops: Vec::new(),
        next: 0,
        running: false,
    };
    let id = crate::dmaengine::register(
        dmaengine::Boxed::new_dyn(p),
        alloc::format!("edu on {bdf}, 1 channel, RAM <-> 4 KiB device buffer (28-bit DMA mask)"),
        Some(dma),
    );
    crate::dmaengine::set_max_len(id, MAX_DMA);
    BY_BDF.lock().push((bdf, id));
    edudrv::set_dma_done_callback(slot, dma_done, id);
}

/// The edu driver's DMA-done callback: completion for dmaengine device `dev`.
fn dma_done(dev: usize) {
    crate::dmaengine::irq(dev);
}

/// Registers one provider per bound edu device.
pub fn init() {
    for i in 0..4 {
        let Some((phys, size, slot, dma, bdf)) = edudrv::with_edu_at(i, |e| {
            (e.regs.phys(), e.regs.size(), e.slot, e.dma.clone(), e.bdf)
        }) else {
            break;
        };
        add(slot, bdf, phys, size, dma);
    }
    READY.call_once(|| ());
}
