//! Errors of the DMA API.

use crate::debug::MapType;
use crate::iommu::IommuError;
use alloc::sync::Arc;
use core::fmt;
use hal::{DmaAddr, PhysAddr};

/// Why a DMA operation failed. Every variant names the device (as given to
/// [`DmaDevice::new`](crate::DmaDevice::new)) so a log line is enough to find it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// A zero-length mapping or allocation (Linux WARNs and fails these too).
    ZeroLength {
        /// Device.
        device: Arc<str>,
    },
    /// `set_mask`/`set_coherent_mask`: the platform cannot serve addresses under this
    /// mask (Linux `dma_supported` false → `-EIO`).
    MaskUnsupported {
        /// Device.
        device: Arc<str>,
        /// Mask asked for.
        mask: u64,
        /// True for the coherent mask.
        coherent: bool,
    },
    /// The buffer lies above the device's mask and no backend can fix it (no swiotlb,
    /// no IOMMU): Linux's "overflow … of DMA mask" failure.
    MaskViolation {
        /// Device.
        device: Arc<str>,
        /// Buffer start.
        phys: PhysAddr,
        /// Buffer length.
        len: usize,
        /// The device's streaming mask.
        mask: u64,
    },
    /// No free run of bounce slots (Linux "swiotlb buffer is full").
    SwiotlbFull {
        /// Device.
        device: Arc<str>,
        /// Bytes asked for.
        size: usize,
        /// Slots in use.
        used: usize,
        /// Slots in the pool.
        total: usize,
    },
    /// A single bounce mapping larger than 128 slots (256 KiB) including the kept offset.
    MappingTooLarge {
        /// Device.
        device: Arc<str>,
        /// Bytes asked for (plus offset).
        size: usize,
        /// Largest possible.
        max: usize,
    },
    /// The bounce pool itself lies above the device's mask.
    BounceOutOfMask {
        /// Device.
        device: Arc<str>,
        /// Bounce address that did not fit.
        tlb: PhysAddr,
        /// Length.
        len: usize,
        /// Mask.
        mask: u64,
    },
    /// Unmap or sync of a bus address this device has no mapping for.
    NotMapped {
        /// Device.
        device: Arc<str>,
        /// Bus address given.
        addr: DmaAddr,
        /// Length given.
        len: usize,
    },
    /// A sync range that runs past the end of its mapping.
    SyncOutOfRange {
        /// Device.
        device: Arc<str>,
        /// Bus address given.
        addr: DmaAddr,
        /// Length given.
        len: usize,
        /// Length of the mapping that contains `addr`.
        map_len: usize,
    },
    /// Unmap through the wrong function (e.g. `unmap_single` of a coherent allocation);
    /// refused, the mapping stays.
    WrongMapType {
        /// Device.
        device: Arc<str>,
        /// Bus address given.
        addr: DmaAddr,
        /// How it was mapped.
        mapped: MapType,
        /// How it was being unmapped.
        given: MapType,
    },
    /// The IOMMU domain has no IOVA range of this size under the mask.
    IovaExhausted {
        /// Device.
        device: Arc<str>,
        /// Bytes asked for (granule-rounded).
        len: u64,
        /// Mask the IOVA must fit.
        mask: u64,
    },
    /// The IOMMU domain refused a map or unmap.
    Iommu {
        /// Device.
        device: Arc<str>,
        /// What the domain said.
        error: IommuError,
    },
    /// No pages (of this size, at or below this limit) for a coherent allocation or buffer.
    OutOfMemory {
        /// Device (or "-" for a buffer not tied to one).
        device: Arc<str>,
        /// Bytes asked for.
        size: usize,
        /// Highest acceptable address.
        limit: u64,
    },
    /// The platform has no CPU mapping for this physical block.
    NoCpuMapping {
        /// Block start.
        phys: PhysAddr,
    },
    /// The address range wraps around the end of the address space.
    AddressOverflow {
        /// Start.
        phys: PhysAddr,
        /// Length.
        len: usize,
    },
}

impl DmaError {
    /// True when the mapping failed for want of a shared resource that other
    /// mappings hold (bounce slots, IOVA space, pages): the same call can succeed
    /// once some of them are unmapped. Linux's block drivers turn these into
    /// `BLK_STS_RESOURCE` and retry the request after one in flight completes;
    /// every other error is a property of the request or the device and a retry
    /// would fail the same way.
    pub fn is_resource_shortage(&self) -> bool {
        matches!(
            self,
            DmaError::SwiotlbFull { .. }
                | DmaError::IovaExhausted { .. }
                | DmaError::OutOfMemory { .. }
        )
    }
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmaError::ZeroLength { device } => write!(f, "{device}: zero-length DMA request"),
            DmaError::MaskUnsupported {
                device,
                mask,
                coherent,
            } => write!(
                f,
                "{device}: {}DMA mask {mask:#x} not supported by the platform",
                if *coherent { "coherent " } else { "" }
            ),
            DmaError::MaskViolation {
                device,
                phys,
                len,
                mask,
            } => write!(
                f,
                "{device}: buffer [{:#x}+{len:#x}] overflows DMA mask {mask:#x} and there is no swiotlb or IOMMU to fix it",
                phys.as_u64()
            ),
            DmaError::SwiotlbFull {
                device,
                size,
                used,
                total,
            } => write!(
                f,
                "{device}: swiotlb buffer is full (sz: {size} bytes), total {total} (slots), used {used} (slots)"
            ),
            DmaError::MappingTooLarge { device, size, max } => write!(
                f,
                "{device}: bounce mapping of {size} bytes exceeds the swiotlb maximum of {max}"
            ),
            DmaError::BounceOutOfMask {
                device,
                tlb,
                len,
                mask,
            } => write!(
                f,
                "{device}: swiotlb addr [{:#x}+{len:#x}] overflows DMA mask {mask:#x}",
                tlb.as_u64()
            ),
            DmaError::NotMapped { device, addr, len } => write!(
                f,
                "{device}: no DMA mapping at [device address={addr:#x}] [size={len} bytes]"
            ),
            DmaError::SyncOutOfRange {
                device,
                addr,
                len,
                map_len,
            } => write!(
                f,
                "{device}: sync [{addr:#x}+{len:#x}] outside the mapping of {map_len} bytes"
            ),
            DmaError::WrongMapType {
                device,
                addr,
                mapped,
                given,
            } => write!(
                f,
                "{device}: {addr:#x} was mapped as {} but unmapped as {}",
                mapped.name(),
                given.name()
            ),
            DmaError::IovaExhausted { device, len, mask } => write!(
                f,
                "{device}: no IOVA range of {len:#x} bytes under mask {mask:#x}"
            ),
            DmaError::Iommu { device, error } => write!(f, "{device}: IOMMU: {error}"),
            DmaError::OutOfMemory {
                device,
                size,
                limit,
            } => write!(
                f,
                "{device}: out of DMA memory ({size} bytes at or below {limit:#x})"
            ),
            DmaError::NoCpuMapping { phys } => {
                write!(f, "no CPU mapping for physical {:#x}", phys.as_u64())
            }
            DmaError::AddressOverflow { phys, len } => write!(
                f,
                "range [{:#x}+{len:#x}] wraps the address space",
                phys.as_u64()
            ),
        }
    }
}
