//! edu as a dmaengine provider: one channel that moves data between RAM and the
//! device's 4 KiB buffer, through the driver ([`Edu`]), never the registers directly.
//!
//! * slave transfers: `MemToDev` into the buffer at the configured `dst_addr`, or
//!   `DevToMem` out of it from `src_addr`; the buffer is device memory, so the device
//!   address advances with each segment (like a device SRAM, not a FIFO);
//! * memcpy RAM → RAM: two device transfers per chunk of up to [`MAX_TRANSFER`] bytes,
//!   RAM → buffer → RAM ("bouncing through the device").
//!
//! Each device transfer ("hop") ends with edu's DMA-done interrupt; the kernel's handler
//! calls the dmaengine core, which runs [`EduEngine::handle_irq`]: start the next hop,
//! or report the descriptor done. One hop takes about 100 ms in QEMU (the edu's timer).
use alloc::sync::Arc;
use alloc::vec::Vec;

use dmaengine::{ChanEvent, DmaCaps, DmaProvider, EngineError, SlaveConfig, TransferDirection};
use hal::{DmaAddr, RegisterAccess};

use crate::{check_window, regs, Edu, EduDir, EduError, MAX_TRANSFER};

/// One device transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// RAM side.
    pub mem: DmaAddr,
    /// Offset in the device buffer.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
    /// Which way.
    pub dir: EduDir,
}

/// A prepared edu descriptor.
#[derive(Debug)]
pub struct EduDesc {
    hops: Vec<Hop>,
    total: usize,
}

impl EduDesc {
    /// The device transfers, in order.
    pub fn hops(&self) -> &[Hop] {
        &self.hops
    }
}

/// The provider, driving one [`Edu`].
pub struct EduEngine<R: RegisterAccess> {
    edu: Arc<Edu<R>>,
    hops: Vec<Hop>,
    next: usize,
    running: bool,
    delay_us: fn(u64),
}

fn buffer_offset(addr: DmaAddr, len: usize) -> Result<usize, EngineError> {
    let off = addr
        .as_u64()
        .checked_sub(regs::BUFFER)
        .ok_or(EngineError::BadAddress(addr))? as usize;
    check_window(off, len).map_err(|_| EngineError::BadAddress(addr))?;
    Ok(off)
}

impl<R: RegisterAccess> EduEngine<R> {
    /// A provider over `edu`; `delay_us` waits (for `stop`, which cannot abort a hop).
    pub fn new(edu: Arc<Edu<R>>, delay_us: fn(u64)) -> Self {
        EduEngine {
            edu,
            hops: Vec::new(),
            next: 0,
            running: false,
            delay_us,
        }
    }

    fn program(&self, h: &Hop) -> Result<(), EduError> {
        // SAFETY: hop addresses come from dmaengine clients, which map their memory
        // for this device through the DMA API (`dmaengine::DmaProvider` contract) and
        // keep it mapped until the descriptor completes or the channel is stopped.
        unsafe { self.edu.start_raw(h.dir, h.mem, h.offset, h.len) }
    }
}

impl<R: RegisterAccess> DmaProvider for EduEngine<R> {
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
        buffer_offset(dev, 1).map(|_| ())
    }

    fn prep_memcpy(
        &mut self,
        _chan: usize,
        dst: DmaAddr,
        src: DmaAddr,
        len: usize,
    ) -> Result<EduDesc, EngineError> {
        if len == 0 {
            return Err(EngineError::BadLength(0));
        }
        let mut hops = Vec::new();
        let mut off = 0;
        while off < len {
            let n = (len - off).min(MAX_TRANSFER);
            let at = |a: DmaAddr| DmaAddr::new(a.as_u64() + off as u64);
            hops.push(Hop {
                mem: at(src),
                offset: 0,
                len: n,
                dir: EduDir::ToDevice,
            });
            hops.push(Hop {
                mem: at(dst),
                offset: 0,
                len: n,
                dir: EduDir::FromDevice,
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
        let (mut dev, edu_dir) = match dir {
            TransferDirection::MemToDev => (cfg.dst_addr.as_u64(), EduDir::ToDevice),
            TransferDirection::DevToMem => (cfg.src_addr.as_u64(), EduDir::FromDevice),
            d => return Err(EngineError::BadDirection(d)),
        };
        let mut hops = Vec::new();
        for &(mem, len) in sg {
            if len == 0 || len > MAX_TRANSFER {
                return Err(EngineError::BadLength(len));
            }
            let offset = buffer_offset(DmaAddr::new(dev), len)?;
            hops.push(Hop {
                mem,
                offset,
                len,
                dir: edu_dir,
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
        self.running = true;
        let started = match self.hops.first() {
            Some(h) => self.program(h).is_ok(),
            None => false,
        };
        if !started {
            // Busy with a transfer started outside dmaengine (`edu dma`): the
            // interrupt path reports an error for this descriptor.
            self.next = usize::MAX;
        }
    }

    fn stop(&mut self, _chan: usize) {
        // edu cannot abort a transfer: wait for the one in flight (≈100 ms).
        for _ in 0..300 {
            if !self.edu.dma_busy() {
                break;
            }
            (self.delay_us)(1000);
        }
        self.running = false;
        self.hops.clear();
    }

    fn residue(&self, _chan: usize, d: &EduDesc) -> usize {
        if !self.running {
            return d.total;
        }
        // Bytes of the destination-side hops not finished yet (a slave transfer to
        // the device has only device-side hops: those count).
        let any_to_ram = self.hops.iter().any(|h| h.dir == EduDir::FromDevice);
        self.hops
            .iter()
            .enumerate()
            .filter(|(i, h)| *i >= self.next && (h.dir == EduDir::FromDevice || !any_to_ram))
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
        if !self.running || self.edu.dma_busy() {
            return false;
        }
        if self.next == usize::MAX {
            self.running = false;
            events.push(ChanEvent::Error(0));
            return true;
        }
        self.next += 1;
        match self.hops.get(self.next).copied() {
            Some(h) => {
                if self.program(&h).is_err() {
                    self.running = false;
                    events.push(ChanEvent::Error(0));
                }
            }
            None => {
                self.running = false;
                events.push(ChanEvent::Done(0));
            }
        }
        true
    }
}
