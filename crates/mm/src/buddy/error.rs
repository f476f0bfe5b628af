//! Why an allocation, a free or building the allocator failed.

use core::fmt;

use hal::PhysAddr;

use super::*;

/// Allocation failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocError {
    /// `order > MAX_ORDER`.
    InvalidOrder(u8),
    /// No zone allowed by the limit has a free block of that order (above reserves).
    OutOfMemory {
        /// Requested order.
        order: u8,
        /// Requested limit.
        limit: ZoneLimit,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::InvalidOrder(o) => write!(f, "invalid order {o} (max {MAX_ORDER})"),
            AllocError::OutOfMemory { order, limit } => {
                write!(
                    f,
                    "out of memory: no free order-{order} block within {limit:?}"
                )
            }
        }
    }
}

/// Misuse detected by [`FrameAllocator::free`]. The allocator state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreeError {
    /// `order > MAX_ORDER`.
    InvalidOrder(u8),
    /// The address is not aligned to the page size times `2^order`.
    Misaligned {
        /// The address given.
        addr: PhysAddr,
        /// The order given.
        order: u8,
    },
    /// The block is allocated, but with a different order.
    WrongOrder {
        /// The address given.
        addr: PhysAddr,
        /// The order it was allocated with.
        allocated: u8,
        /// The order given.
        given: u8,
    },
    /// The block was freed before and has not been handed out since.
    DoubleFree(PhysAddr),
    /// The address was never handed out as the start of a block: outside every zone,
    /// reserved, below 1 MiB, or inside an allocated block.
    NotAllocated(PhysAddr),
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::InvalidOrder(o) => write!(f, "free with invalid order {o}"),
            FreeError::Misaligned { addr, order } => write!(
                f,
                "free of {:#x} misaligned for order {order}",
                addr.as_u64()
            ),
            FreeError::WrongOrder {
                addr,
                allocated,
                given,
            } => write!(
                f,
                "free of {:#x} with order {given}, allocated with order {allocated}",
                addr.as_u64()
            ),
            FreeError::DoubleFree(a) => write!(f, "double free of {:#x}", a.as_u64()),
            FreeError::NotAllocated(a) => {
                write!(f, "free of {:#x}, which was never handed out", a.as_u64())
            }
        }
    }
}

/// Errors building the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// The metadata buffer is smaller than [`metadata_bytes`] says.
    MetadataTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::MetadataTooSmall { needed, given } => write!(
                f,
                "frame allocator metadata: need {needed} bytes, got {given}"
            ),
        }
    }
}
