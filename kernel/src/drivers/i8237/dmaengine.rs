//! The ISA 8237 DMA controller as a dmaengine provider: third-party DMA. The
//! controller moves the bytes, but it has no interrupt of its own: the peripheral
//! (the floppy controller) raises IRQ 6 when its command ends, and its handler calls
//! [`crate::dmaengine::irq`]; [`I8237::handle_irq`] then reads the 8237's status register for the
//! terminal-count bits and completes the channels that reached it.
//!
//! Channels `dmaNchan0`–`dmaNchan3` are the 8-bit channels of the first 8237 (4 is the
//! cascade, 5–7 the 16-bit channels, not offered). One segment per descriptor, below
//! 16 MiB, not crossing 64 KiB, 1-byte bus width; pause/resume mask and unmask DREQ.

use alloc::vec::Vec;

use dmaengine::{ChanEvent, DmaCaps, DmaProvider, EngineError, SlaveConfig, TransferDirection};
use hal::DmaAddr;

use crate::drivers::i8237::{self, IsaDmaError};

const CHANNELS: usize = 4;

/// One programmed transfer.
#[derive(Clone, Copy, Debug)]
pub struct IsaDesc {
    addr: u64,
    len: usize,
    to_memory: bool,
}

/// The provider.
pub struct I8237 {
    active: [Option<IsaDesc>; CHANNELS],
    /// Terminal-count bits seen (reading STATUS clears them in the chip).
    tc: u8,
    /// Channels whose programming failed: reported as errors at the next interrupt.
    failed: u8,
}

fn isa_err(e: IsaDmaError, addr: u64) -> EngineError {
    match e {
        IsaDmaError::TooLong(l) => EngineError::BadLength(l),
        IsaDmaError::Empty => EngineError::BadLength(0),
        _ => EngineError::BadAddress(DmaAddr::new(addr)),
    }
}

impl DmaProvider for I8237 {
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
        i8237::check_buffer(addr.as_u64(), *len).map_err(|e| isa_err(e, addr.as_u64()))?;
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
            i8237::Direction::ToMemory
        } else {
            i8237::Direction::FromMemory
        };
        // Clear stale terminal-count bits of this channel before it runs.
        self.tc |= i8237::status() & 0x0F;
        self.tc &= !(1 << chan);
        match i8237::program(chan as u8, d.addr, d.len, dir) {
            Ok(()) => self.active[chan] = Some(*d),
            Err(e) => {
                log::warn!("i8237: channel {chan}: {e}");
                self.active[chan] = Some(*d);
                self.failed |= 1 << chan;
            }
        }
    }

    fn stop(&mut self, chan: usize) {
        i8237::mask(chan as u8);
        self.active[chan] = None;
        self.tc &= !(1 << chan);
        self.failed &= !(1 << chan);
    }

    fn residue(&self, chan: usize, d: &IsaDesc) -> usize {
        if self.active[chan].is_none() {
            return d.len;
        }
        // The count register reads 0xFFFF after terminal count: residue 0.
        i8237::residue(chan as u8) & 0xFFFF
    }

    fn pause(&mut self, chan: usize) -> Result<(), EngineError> {
        i8237::mask(chan as u8);
        Ok(())
    }

    fn resume(&mut self, chan: usize) -> Result<(), EngineError> {
        i8237::unmask(chan as u8);
        Ok(())
    }

    fn free_desc(&mut self, _d: IsaDesc) {}

    fn handle_irq(&mut self, events: &mut Vec<ChanEvent>) -> bool {
        self.tc |= i8237::status() & 0x0F;
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
                i8237::mask(ch as u8);
                self.active[ch] = None;
                events.push(ChanEvent::Done(ch));
                any = true;
            }
        }
        any
    }
}

static DEV: spin::Once<usize> = spin::Once::new();

/// dmaengine device id of the 8237.
pub fn dev() -> Option<usize> {
    DEV.get().copied()
}

/// Registers the 8237 (every PC-compatible has one; q35's is QEMU's i8257 model).
pub fn init() {
    let p = I8237 {
        active: [None; CHANNELS],
        tc: 0,
        failed: 0,
    };
    let id = crate::dmaengine::register(
        dmaengine::Boxed::new_dyn(p),
        alloc::string::String::from(
            "i8237 ISA DMA controller, channels 0-3 (8-bit; 4 is the cascade), third-party",
        ),
        None,
    );
    DEV.call_once(|| id);
}
