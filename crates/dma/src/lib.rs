//! `dma`: the DMA mapping API of Busmaster (DESIGN.md §4).
//!
//! Layered like Linux's `kernel/dma/`, shaped as Rust:
//!
//! * [`DmaPlatform`] — the small trait the kernel implements: zoned page allocation,
//!   [`PhysMemory`](hal::PhysMemory) access, the top of RAM, cache-maintenance hooks.
//! * [`DmaDevice`] — a device's DMA parameters (masks, segment limits) and its backend
//!   ([`DmaBackend`]: direct, direct + [`Swiotlb`] bounce, or an [`IommuDomain`]).
//! * The one choke point every mapping goes through (one map path, one unmap path;
//!   `mapping`), with each device's live mappings in a table keyed by bus address.
//! * The raw streaming layer on [`DmaDevice`] (`map_single` / `unmap_single` /
//!   `sync_single_for_{cpu,device}`): `map_single` and [`SgTable::push`] take a
//!   physical address, so they are `unsafe fn` with a `# Safety` contract.
//! * Typed layers built on it: [`DmaStream<Dir>`](DmaStream), [`SgMapping`],
//!   [`CoherentBox`] → [`Coherent`], [`DmaPool`].
//! * [`debug`] — dma-debug: a separate registry of misuse checks and typed reports,
//!   compiled out without the `debug` feature.
//!
//! [`DmaAddr`] is the only bus-address type; only this crate creates one.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod coherent;
pub mod debug;
pub mod device;
mod dma_iommu;
pub mod error;
pub mod iommu;
mod mapping;
mod maptable;
pub mod platform;
pub mod pool;
pub mod sg;
pub mod stream;
pub mod swiotlb;
mod sync;

#[cfg(test)]
mod tests;

pub use coherent::{Coherent, CoherentBox, Pod};
pub use debug::{DebugEvent, DebugKind, DebugSink, MapType, MappingInfo, Via};
pub use device::{DmaBackend, DmaDevice, DmaParams};
pub use error::DmaError;
pub use hal::{DmaAddr, PhysAddr};
pub use iommu::{IommuDomain, IommuError, IommuPerm, SharedDomain};
pub use platform::{DmaPlatform, DmaZone};
pub use pool::{DmaPool, DmaPoolBlock, PoolError, PoolStats};
pub use sg::{DmaSegment, SgEntry, SgMapping, SgTable};
pub use stream::{
    Bidirectional, CpuView, CpuWriter, DeviceReads, DeviceWrites, Direction, DmaBuf, DmaStream,
    FromDevice, MapError, ToDevice,
};
pub use swiotlb::{Swiotlb, SwiotlbInitError, SwiotlbStats};

use core::fmt;

/// Page size used for coherent allocations and IOVA rounding.
pub const PAGE_SIZE: usize = hal::PAGE_SIZE as usize;

/// Highest address of ZONE_DMA (16 MiB − 1), Linux `DMA_BIT_MASK(24)` on x86-64.
pub const ZONE_DMA_LIMIT: u64 = dma_bit_mask(24);
/// Highest address of ZONE_DMA32 (4 GiB − 1).
pub const ZONE_DMA32_LIMIT: u64 = dma_bit_mask(32);

/// Linux's `DMA_MAPPING_ERROR` (all ones): never a valid mapping; unmapping it is
/// reported as [`DebugKind::UnmapInvalidAddress`].
pub const DMA_MAPPING_ERROR: DmaAddr = DmaAddr::new(u64::MAX);

/// `DMA_BIT_MASK(n)` and the mask-width error, shared with the PCI layer.
pub use hal::{dma_bit_mask, DmaMaskError};

/// Direction of a streaming mapping (values as Linux's `enum dma_data_direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DmaDirection {
    /// Both ways (`DMA_BIDIRECTIONAL`).
    Bidirectional = 0,
    /// The device reads memory (`DMA_TO_DEVICE`).
    ToDevice = 1,
    /// The device writes memory (`DMA_FROM_DEVICE`).
    FromDevice = 2,
}

impl DmaDirection {
    /// Linux's name (`DMA_TO_DEVICE`, …), as dma-debug prints it.
    pub const fn name(self) -> &'static str {
        match self {
            DmaDirection::Bidirectional => "DMA_BIDIRECTIONAL",
            DmaDirection::ToDevice => "DMA_TO_DEVICE",
            DmaDirection::FromDevice => "DMA_FROM_DEVICE",
        }
    }

    /// True if the device may read the buffer (CPU data must reach it: copy to bounce).
    pub const fn device_reads(self) -> bool {
        matches!(self, DmaDirection::ToDevice | DmaDirection::Bidirectional)
    }

    /// True if the device may write the buffer (its data must reach the CPU: copy back).
    pub const fn device_writes(self) -> bool {
        matches!(self, DmaDirection::FromDevice | DmaDirection::Bidirectional)
    }
}

impl fmt::Display for DmaDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
