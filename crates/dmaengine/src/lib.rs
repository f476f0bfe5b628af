//! `dmaengine`: a small framework in the shape of Linux dmaengine + virt-dma
//! (DESIGN.md §5, hw-facts §2).
//!
//! * A controller driver implements [`DmaProvider`] (per-channel hardware operations).
//! * [`DmaEngine`] is the registry: devices get ids `0, 1, …`, channels are named
//!   `dma{N}chan{M}`; clients request a channel by capability mask and a filter,
//!   push a [`SlaveConfig`], prepare a [`Descriptor`], [`DmaEngine::submit`] it (which
//!   consumes it and returns a [`Cookie`]), [`DmaEngine::issue_pending`], and learn the
//!   outcome from the completion callback or [`DmaEngine::tx_status`].
//! * Each channel keeps the virt-dma queues: submitted → issued → active → completed.
//!   Completion runs from [`DmaEngine::handle_irq`], the interrupt path: the provider
//!   reports per-channel events, the framework completes the cookie, runs the callback
//!   and starts the next issued descriptor.
//!
//! The engine is single-threaded (`&mut self`); the kernel wraps it in a lock.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

pub use hal::DmaAddr;

bitflags::bitflags! {
    /// Capabilities of a DMA device (subset of Linux `dma_transaction_type`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DmaCaps: u32 {
        /// Memory-to-memory copies (`prep_memcpy`).
        const MEMCPY = 1 << 0;
        /// Slave (peripheral) scatter-gather transfers.
        const SLAVE = 1 << 1;
        /// Cyclic transfers (`prep_dma_cyclic`): a ring buffer split into periods,
        /// a callback per period, running until terminated.
        const CYCLIC = 1 << 2;
        /// Channels are handed out only through an explicit request.
        const PRIVATE = 1 << 3;
    }
}

/// Transfer direction (Linux `dma_transfer_direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferDirection {
    /// Memory to memory.
    MemToMem,
    /// Memory to a device FIFO.
    MemToDev,
    /// Device FIFO to memory.
    DevToMem,
}

/// Slave configuration (Linux `dma_slave_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlaveConfig {
    /// TransferDirection this configuration is meant for.
    pub direction: TransferDirection,
    /// Device-side source address (DevToMem).
    pub src_addr: DmaAddr,
    /// Device-side destination address (MemToDev).
    pub dst_addr: DmaAddr,
    /// Device source register width in bytes (1, 2, 4, 8, 16, 32 or 64).
    pub src_addr_width: u8,
    /// Device destination register width in bytes.
    pub dst_addr_width: u8,
    /// Source burst length in items of `src_addr_width`.
    pub src_maxburst: u32,
    /// Destination burst length in items of `dst_addr_width`.
    pub dst_maxburst: u32,
}

impl SlaveConfig {
    /// Checks the generic rules: widths are 1..=64 powers of two, the direction is a
    /// slave direction. Providers check their own limits on top.
    pub fn validate(&self) -> Result<(), EngineError> {
        for w in [self.src_addr_width, self.dst_addr_width] {
            if !(1..=64).contains(&w) || !w.is_power_of_two() {
                return Err(EngineError::BadBusWidth(w));
            }
        }
        if self.direction == TransferDirection::MemToMem {
            return Err(EngineError::BadDirection(self.direction));
        }
        Ok(())
    }
}

/// A transaction cookie: > 0 and monotonic per channel, wrapping back to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cookie(pub i32);

/// Smallest valid cookie (Linux `DMA_MIN_COOKIE`).
pub const DMA_MIN_COOKIE: i32 = 1;

/// Status of a transaction (Linux `dma_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaStatus {
    /// Finished successfully.
    Complete,
    /// Queued or running.
    InProgress,
    /// Running on a paused channel.
    Paused,
    /// Finished with an error.
    Error,
}

/// Result of [`DmaEngine::tx_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxState {
    /// Status of the cookie.
    pub status: DmaStatus,
    /// Bytes left (0 when complete).
    pub residue: usize,
    /// Last completed cookie on the channel.
    pub last: Cookie,
    /// Last assigned cookie on the channel.
    pub used: Cookie,
}

/// Outcome handed to a completion callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxResult {
    /// The transfer completed.
    NoError,
    /// The controller reported an error.
    Error,
}

/// A completion callback; runs from [`DmaEngine::handle_irq`].
pub type Callback = Box<dyn FnMut(Cookie, TxResult) + Send>;

/// Channel identity: device id and channel index; displays as `dma{N}chan{M}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChanId {
    /// Device id.
    pub dev: usize,
    /// Channel index within the device.
    pub chan: usize,
}

impl ChanId {
    /// Linux-style channel name, e.g. `dma0chan1`.
    pub fn name(&self) -> String {
        alloc::format!("{self}")
    }
}

impl fmt::Display for ChanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dma{}chan{}", self.dev, self.chan)
    }
}

/// Statistics of one channel (Linux sysfs `in_use`, `bytes_transferred`, `memcpy_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChanInfo {
    /// Channel.
    pub id: ChanId,
    /// Held by a client.
    pub in_use: bool,
    /// Descriptors completed without error.
    pub completed: u64,
    /// Bytes of those descriptors.
    pub bytes_transferred: u64,
    /// Descriptors submitted, issued or running.
    pub queued: usize,
}
/// Linux `dma_async_is_complete`, wrap-aware.
pub fn cookie_is_complete(cookie: Cookie, last: Cookie, used: Cookie) -> bool {
    let (c, l, u) = (cookie.0, last.0, used.0);
    if l <= u {
        c <= l || c > u
    } else {
        c <= l && c > u
    }
}

mod engine;
mod error;
mod provider;
pub use engine::DmaEngine;
pub use error::EngineError;
pub use provider::{ChanEvent, Descriptor, DmaProvider};

pub mod erased;
pub use erased::{AnyDesc, Boxed, DynProvider};

#[cfg(test)]
mod tests;
