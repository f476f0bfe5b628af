//! A device's DMA parameters (Linux `struct device_dma_parameters` plus the masks):
//! one struct, filled by the PCI layer and the driver's probe, handed to the DMA layer.

use core::fmt;

/// `DMA_BIT_MASK(n)`: the low `n` bits set (n clamped to 64).
pub const fn dma_bit_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Per-device DMA parameters (DESIGN.md §4; defaults as Linux's for PCI devices,
/// hw-facts §3.1 and §3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaParams {
    /// Highest bus address for streaming mappings (`dma_mask`). Default 32 bits.
    pub dma_mask: u64,
    /// Highest bus address for coherent allocations. Default 32 bits.
    pub coherent_dma_mask: u64,
    /// Largest scatter-gather segment. Default 64 KiB.
    pub max_segment_size: usize,
    /// A segment must not cross an address where bits above this mask change.
    /// Default `0xFFFF_FFFF`.
    pub segment_boundary_mask: u64,
    /// Low address bits a bounce buffer must keep from the original
    /// (`dma_set_min_align_mask`). Default 0.
    pub min_align_mask: u64,
    /// Whether the device snoops CPU caches (`dev_is_dma_coherent`). True on x86; when
    /// false the platform's cache hooks run on map, unmap and sync.
    pub coherent: bool,
    /// Bounce every streaming mapping through the swiotlb (`swiotlb=force`).
    pub force_bounce: bool,
}

impl Default for DmaParams {
    fn default() -> Self {
        DmaParams {
            dma_mask: dma_bit_mask(32),
            coherent_dma_mask: dma_bit_mask(32),
            max_segment_size: 64 * 1024,
            segment_boundary_mask: 0xFFFF_FFFF,
            min_align_mask: 0,
            coherent: true,
            force_bounce: false,
        }
    }
}

/// A DMA mask narrower than the platform can honour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaMaskError {
    /// Bits asked for.
    pub bits: u32,
}

impl fmt::Display for DmaMaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DMA mask of {} bits not supported (need 24..=64)",
            self.bits
        )
    }
}

impl DmaParams {
    /// Sets both masks to `bits` (Linux `dma_set_mask_and_coherent`). Below 24 bits
    /// no zone can satisfy it (the x86 DMA zone is 16 MiB). Whether the device's
    /// DMA backend can serve the mask is the DMA layer's check
    /// (`dma::DmaDevice::set_mask`).
    pub fn set_mask_and_coherent(&mut self, bits: u32) -> Result<(), DmaMaskError> {
        self.set_mask(bits)?;
        self.coherent_dma_mask = dma_bit_mask(bits);
        Ok(())
    }

    /// Sets the streaming mask.
    pub fn set_mask(&mut self, bits: u32) -> Result<(), DmaMaskError> {
        if !(24..=64).contains(&bits) {
            return Err(DmaMaskError { bits });
        }
        self.dma_mask = dma_bit_mask(bits);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_by_bits() {
        let mut p = DmaParams::default();
        assert_eq!(p.dma_mask, 0xFFFF_FFFF);
        assert_eq!(p.set_mask_and_coherent(23), Err(DmaMaskError { bits: 23 }));
        assert_eq!(p.dma_mask, 0xFFFF_FFFF, "a refused mask changes nothing");
        p.set_mask_and_coherent(28).unwrap();
        assert_eq!((p.dma_mask, p.coherent_dma_mask), (0xFFF_FFFF, 0xFFF_FFFF));
        assert_eq!(dma_bit_mask(64), u64::MAX);
        assert_eq!(dma_bit_mask(70), u64::MAX);
    }
}
