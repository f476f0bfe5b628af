//! What a controller driver implements ([`DmaProvider`], Linux's `dma_device`
//! callbacks) and the prepared descriptor a client holds before submitting it (Linux's
//! `dma_async_tx_descriptor`).

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::{
    Callback, ChanId, Cookie, DmaAddr, DmaCaps, EngineError, SlaveConfig, TransferDirection,
    TxResult,
};

/// What the provider's interrupt path found for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChanEvent {
    /// The active descriptor completed.
    Done(usize),
    /// The active descriptor failed; the provider has stopped the channel.
    Error(usize),
    /// One period of the active cyclic descriptor completed; the channel goes on.
    Period(usize),
}

/// Per-channel hardware operations of a DMA controller driver.
pub trait DmaProvider {
    /// The provider's prepared hardware descriptor (e.g. an LLI chain).
    type Desc;
    /// Driver name shown in channel listings (Linux `dev_name` of the DMA device).
    fn name(&self) -> &str {
        "dma"
    }
    /// Capabilities of the device.
    fn caps(&self) -> DmaCaps;
    /// Number of channels.
    fn channel_count(&self) -> usize;
    /// Accepts or rejects a slave configuration.
    fn check_config(&self, cfg: &SlaveConfig) -> Result<(), EngineError>;
    /// Prepares a memory-to-memory copy.
    fn prep_memcpy(
        &mut self,
        chan: usize,
        dst: DmaAddr,
        src: DmaAddr,
        len: usize,
    ) -> Result<Self::Desc, EngineError>;
    /// Prepares a slave scatter-gather transfer over already-mapped `(addr, len)` pairs.
    fn prep_slave_sg(
        &mut self,
        chan: usize,
        sg: &[(DmaAddr, usize)],
        dir: TransferDirection,
        cfg: &SlaveConfig,
    ) -> Result<Self::Desc, EngineError>;
    /// Prepares a cyclic transfer over the mapped ring `buf` of `buf_len` bytes, one
    /// interrupt ([`ChanEvent::Period`]) per `period_len` bytes, wrapping forever.
    /// Providers without [`DmaCaps::CYCLIC`] keep this default.
    fn prep_cyclic(
        &mut self,
        chan: usize,
        buf: DmaAddr,
        buf_len: usize,
        period_len: usize,
        dir: TransferDirection,
        cfg: &SlaveConfig,
    ) -> Result<Self::Desc, EngineError> {
        let _ = (chan, buf, buf_len, period_len, dir, cfg);
        Err(EngineError::Unsupported)
    }
    /// Total length of a descriptor in bytes.
    fn desc_len(&self, desc: &Self::Desc) -> usize;
    /// Starts `desc` on an idle channel.
    fn start(&mut self, chan: usize, desc: &Self::Desc);
    /// Stops the channel (terminate).
    fn stop(&mut self, chan: usize);
    /// Bytes left of the running descriptor `desc`.
    fn residue(&self, chan: usize, desc: &Self::Desc) -> usize;
    /// Suspends the channel.
    fn pause(&mut self, chan: usize) -> Result<(), EngineError>;
    /// Resumes a suspended channel.
    fn resume(&mut self, chan: usize) -> Result<(), EngineError>;
    /// Releases a descriptor's resources.
    fn free_desc(&mut self, desc: Self::Desc);
    /// Interrupt path: acknowledges the hardware and pushes one event per channel that
    /// finished. Returns false if the interrupt was not from this device.
    fn handle_irq(&mut self, events: &mut Vec<ChanEvent>) -> bool;
}

/// A prepared, not yet submitted descriptor. [`DmaEngine::submit`] consumes it, so it
/// cannot be submitted twice.
pub struct Descriptor<D> {
    pub(crate) chan: ChanId,
    pub(crate) len: usize,
    pub(crate) hw: D,
    pub(crate) callback: Option<Callback>,
    pub(crate) cyclic: bool,
}

impl<D> Descriptor<D> {
    /// Sets the completion callback.
    pub fn set_callback(&mut self, cb: impl FnMut(Cookie, TxResult) + Send + 'static) {
        self.callback = Some(Box::new(cb));
    }
    /// Channel the descriptor was prepared for.
    pub fn chan(&self) -> ChanId {
        self.chan
    }
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True for a zero-length descriptor.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The provider's hardware descriptor.
    pub fn hw(&self) -> &D {
        &self.hw
    }
    /// True for a cyclic descriptor (never completes; a callback per period).
    pub fn is_cyclic(&self) -> bool {
        self.cyclic
    }
}
