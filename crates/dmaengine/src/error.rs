//! The framework's and providers' error type (Linux returns `-errno`; here a typed
//! enum that says which check failed). Not `dma::DmaError`, the mapping layer's.

use core::fmt;

use crate::{ChanId, Cookie, DmaAddr, DmaCaps, TransferDirection};

/// Errors of the framework and providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineError {
    /// No device with this id.
    NoSuchDevice(usize),
    /// No channel with this id.
    NoSuchChannel(ChanId),
    /// The channel is not held by a client (never requested or released).
    ChannelNotHeld(ChanId),
    /// No free channel matched the mask and filter.
    NoChannel,
    /// The device lacks a capability the operation needs.
    NotCapable(DmaCaps),
    /// A slave prep without a slave configuration.
    NotConfigured(ChanId),
    /// Bus width the provider cannot do.
    BadBusWidth(u8),
    /// Burst length the provider cannot do.
    BadBurst(u32),
    /// TransferDirection the provider cannot do.
    BadDirection(TransferDirection),
    /// Empty or over-long transfer.
    BadLength(usize),
    /// The provider could not allocate descriptor memory.
    NoMemory,
    /// The operation is not supported.
    Unsupported,
    /// The hardware did not respond in time.
    Timeout,
    /// The cookie was never assigned on this channel.
    BadCookie(Cookie),
    /// The controller cannot reach this address (ISA: above 16 MiB or across 64 KiB).
    BadAddress(DmaAddr),
    /// More scatter-gather segments than the controller takes in one descriptor.
    TooManySegments {
        /// What the controller takes.
        max: usize,
        /// What was asked.
        got: usize,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::NoSuchDevice(d) => write!(f, "no DMA device {d}"),
            EngineError::NoSuchChannel(c) => write!(f, "no DMA channel {c}"),
            EngineError::ChannelNotHeld(c) => write!(f, "channel {c} is not held by a client"),
            EngineError::NoChannel => write!(f, "no free channel matches the request"),
            EngineError::NotCapable(c) => write!(f, "device lacks capability {c:?}"),
            EngineError::NotConfigured(c) => write!(f, "channel {c} has no slave configuration"),
            EngineError::BadBusWidth(w) => write!(f, "unsupported bus width {w} bytes"),
            EngineError::BadBurst(b) => write!(f, "unsupported burst length {b}"),
            EngineError::BadDirection(d) => write!(f, "unsupported direction {d:?}"),
            EngineError::BadLength(l) => write!(f, "unsupported transfer length {l}"),
            EngineError::NoMemory => write!(f, "out of descriptor memory"),
            EngineError::Unsupported => write!(f, "operation not supported"),
            EngineError::Timeout => write!(f, "hardware timeout"),
            EngineError::BadCookie(c) => write!(f, "cookie {} was never assigned", c.0),
            EngineError::BadAddress(a) => {
                write!(
                    f,
                    "the controller cannot reach bus address {:#x}",
                    a.as_u64()
                )
            }
            EngineError::TooManySegments { max, got } => {
                write!(f, "{got} segments, the controller takes at most {max}")
            }
        }
    }
}
