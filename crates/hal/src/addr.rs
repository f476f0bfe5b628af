//! Address types.
//!
//! [`PhysAddr`](crate::PhysAddr) and [`VirtAddr`](crate::VirtAddr) are the `x86_64`
//! crate's types, re-exported from the crate root. [`DmaAddr`] is ours.

use core::fmt;

/// A bus / device address: what a device puts on the bus.
///
/// Equal to the physical address when no IOMMU translates, an IOVA when one does
/// (DESIGN.md §1). There is deliberately no `From`/`Into` to or from `PhysAddr`: only the
/// DMA mapping layer may turn one into the other, and it must do so explicitly with
/// [`DmaAddr::new`] and [`DmaAddr::as_u64`], so a driver cannot compute a bus address
/// from a physical one by accident.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct DmaAddr(u64);

impl DmaAddr {
    /// The zero bus address (also "no address" in some device registers).
    pub const ZERO: DmaAddr = DmaAddr(0);

    /// Wraps a raw bus address. Only the DMA mapping layer should call this.
    #[inline]
    pub const fn new(addr: u64) -> Self {
        DmaAddr(addr)
    }

    /// The raw bus address, e.g. to program a device register.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + off`, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, off: u64) -> Option<Self> {
        match self.0.checked_add(off) {
            Some(a) => Some(DmaAddr(a)),
            None => None,
        }
    }

    /// True if the address is a multiple of `align` (a power of two).
    #[inline]
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align.wrapping_sub(1)) == 0
    }

    /// The low 32 bits, for the `_LO` half of a 64-bit device register pair.
    #[inline]
    pub const fn lower_32(self) -> u32 {
        self.0 as u32
    }

    /// The high 32 bits, for the `_HI` half of a 64-bit device register pair.
    #[inline]
    pub const fn upper_32(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl fmt::Debug for DmaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaAddr({:#x})", self.0)
    }
}

impl fmt::Display for DmaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

impl fmt::LowerHex for DmaAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_addr_round_trip_and_halves() {
        let a = DmaAddr::new(0x1_2345_6789);
        assert_eq!(a.as_u64(), 0x1_2345_6789);
        assert_eq!(a.lower_32(), 0x2345_6789);
        assert_eq!(a.upper_32(), 0x1);
        assert_eq!(a.checked_add(0x10), Some(DmaAddr::new(0x1_2345_6799)));
        assert_eq!(DmaAddr::new(u64::MAX).checked_add(1), None);
        assert!(DmaAddr::new(0x2000).is_aligned(0x1000));
        assert!(!DmaAddr::new(0x2008).is_aligned(0x1000));
        assert_eq!(std::format!("{a}"), "0x0000000123456789");
    }
}
