//! The 8237 as a dmaengine provider: third-party DMA. The controller moves the
//! bytes, but it has no interrupt of its own: the peripheral (the floppy controller)
//! raises its IRQ when its command ends, and the kernel's handler calls the dmaengine
//! core; [`IsaEngine::handle_irq`] then reads the status register for the
//! terminal-count bits and completes the channels that reached it.
//!
//! Channels 0–3 are the 8-bit channels of the first chip (4 is the cascade, 5–7 the
//! 16-bit channels, not offered). One segment per descriptor, below 16 MiB, not
//! crossing 64 KiB, 1-byte bus width; pause/resume mask and unmask DREQ.
use alloc::vec::Vec;

use dmaengine::{ChanEvent, DmaCaps, DmaProvider, EngineError, SlaveConfig, TransferDirection};
use hal::DmaAddr;

use crate::{check_buffer, IsaDmaError};

const CHANNELS: usize = 4;

/// What the provider needs of the controller: the kernel's binding (one lock, the
/// channel table) or a test's model.
pub trait Controller {
    /// Programs an 8-bit channel for one transfer and unmasks it.
    ///
    /// # Safety
    /// As [`crate::I8237::program`]: the memory is the caller's for DMA until the
    /// channel is masked.
    unsafe fn program(
        &self,
        channel: u8,
        phys: u64,
        len: usize,
        dir: crate::Direction,
    ) -> Result<(), IsaDmaError>;
    /// Masks `channel`.
    fn mask(&self, channel: u8);
    /// Unmasks `channel`.
    fn unmask(&self, channel: u8);
    /// Bytes left on `channel`.
    fn residue(&self, channel: u8) -> usize;
    /// Terminal-count bits of channels 0–3 (the read clears them).
    fn status(&self) -> u8;
}

/// One programmed transfer.
#[derive(Clone, Copy, Debug)]
pub struct IsaDesc {
    addr: u64,
    len: usize,
    to_memory: bool,
}

/// The provider.
pub struct IsaEngine<C: Controller> {
    hw: C,
    active: [Option<IsaDesc>; CHANNELS],
    /// Terminal-count bits seen (reading STATUS clears them in the chip).
    tc: u8,
    /// Channels whose programming failed: reported as errors at the next interrupt.
    failed: u8,
    last_error: Option<IsaDmaError>,
}

impl<C: Controller> IsaEngine<C> {
    /// A provider over `hw`.
    pub fn new(hw: C) -> Self {
        IsaEngine {
            hw,
            active: [None; CHANNELS],
            tc: 0,
            failed: 0,
            last_error: None,
        }
    }

    /// Why the last `start` could not program its channel (reported as an error
    /// event at the next interrupt).
    pub fn last_error(&self) -> Option<IsaDmaError> {
        self.last_error
    }
}

fn isa_err(e: IsaDmaError, addr: u64) -> EngineError {
    match e {
        IsaDmaError::TooLong(l) => EngineError::BadLength(l),
        IsaDmaError::Empty => EngineError::BadLength(0),
        _ => EngineError::BadAddress(DmaAddr::new(addr)),
    }
}

impl<C: Controller> DmaProvider for IsaEngine<C> {
    type Desc = IsaDesc;

    fn name(&self) -> &str {
        "i8237"
    }

    fn caps(&self) -> DmaCaps {
        DmaCaps::SLAVE | DmaCaps::PRIVATE
    }

    fn channel_count(&self) -> usize {
        CHANNELS
    }

    fn check_config(&self, cfg: &SlaveConfig) -> Result<(), EngineError> {
        let w = match cfg.direction {
            TransferDirection::MemToDev => cfg.dst_addr_width,
            TransferDirection::DevToMem => cfg.src_addr_width,
            d => return Err(EngineError::BadDirection(d)),
        };
        if w != 1 {
            return Err(EngineError::BadBusWidth(w));
        }
        let burst = match cfg.direction {
            TransferDirection::MemToDev => cfg.dst_maxburst,
            _ => cfg.src_maxburst,
        };
        if burst > 1 {
            return Err(EngineError::BadBurst(burst));
        }
        Ok(())
    }

    fn prep_memcpy(
        &mut self,
        _: usize,
        _: DmaAddr,
        _: DmaAddr,
        _: usize,
    ) -> Result<IsaDesc, EngineError> {
        // The AT wiring of the 8237 has no memory-to-memory transfers.
        Err(EngineError::NotCapable(DmaCaps::MEMCPY))
    }

    fn prep_slave_sg(
        &mut self,
        _chan: usize,
        sg: &[(DmaAddr, usize)],
        dir: TransferDirection,
        _cfg: &SlaveConfig,
    ) -> Result<IsaDesc, EngineError> {
        let [(addr, len)] = sg else {
            return Err(EngineError::TooManySegments {
                max: 1,
                got: sg.len(),
            });
        };
        check_buffer(0, addr.as_u64(), *len).map_err(|e| isa_err(e, addr.as_u64()))?;
        Ok(IsaDesc {
            addr: addr.as_u64(),
            len: *len,
            to_memory: dir == TransferDirection::DevToMem,
        })
    }

    fn desc_len(&self, d: &IsaDesc) -> usize {
        d.len
    }

    fn start(&mut self, chan: usize, d: &IsaDesc) {
        let dir = if d.to_memory {
            crate::Direction::ToMemory
        } else {
            crate::Direction::FromMemory
        };
        // Clear stale terminal-count bits of this channel before it runs.
        self.tc |= self.hw.status() & 0x0F;
        self.tc &= !(1 << chan);
        // SAFETY: `d` came from prep_slave_sg, whose segment a dmaengine client
        // owns for DMA (the floppy's ISA buffer) and keeps until the descriptor
        // completes or the channel is stopped (masked).
        match unsafe { self.hw.program(chan as u8, d.addr, d.len, dir) } {
            Ok(()) => self.active[chan] = Some(*d),
            Err(e) => {
                log::warn!("i8237: channel {chan}: {e}");
                self.last_error = Some(e);
                self.active[chan] = Some(*d);
                self.failed |= 1 << chan;
            }
        }
    }

    fn stop(&mut self, chan: usize) {
        self.hw.mask(chan as u8);
        self.active[chan] = None;
        self.tc &= !(1 << chan);
        self.failed &= !(1 << chan);
    }

    fn residue(&self, chan: usize, d: &IsaDesc) -> usize {
        if self.active[chan].is_none() {
            return d.len;
        }
        // The count register reads 0xFFFF after terminal count: residue 0.
        self.hw.residue(chan as u8) & 0xFFFF
    }

    fn pause(&mut self, chan: usize) -> Result<(), EngineError> {
        self.hw.mask(chan as u8);
        Ok(())
    }

    fn resume(&mut self, chan: usize) -> Result<(), EngineError> {
        self.hw.unmask(chan as u8);
        Ok(())
    }

    fn free_desc(&mut self, _d: IsaDesc) {}

    fn handle_irq(&mut self, events: &mut Vec<ChanEvent>) -> bool {
        self.tc |= self.hw.status() & 0x0F;
        let mut any = false;
        for ch in 0..CHANNELS {
            let bit = 1u8 << ch;
            if self.active[ch].is_none() {
                continue;
            }
            if self.failed & bit != 0 {
                self.failed &= !bit;
                self.active[ch] = None;
                events.push(ChanEvent::Error(ch));
                any = true;
            } else if self.tc & bit != 0 {
                self.tc &= !bit;
                self.hw.mask(ch as u8);
                self.active[ch] = None;
                events.push(ChanEvent::Done(ch));
                any = true;
            }
        }
        any
    }
}
