//! Address types.
//!
//! [`PhysAddr`](crate::PhysAddr) and [`VirtAddr`](crate::VirtAddr) are the `x86_64`
//! crate's types, re-exported from the crate root. [`DmaAddr`] is ours, and so is
//! [`Bdf`], the one PCI function address every crate above uses (PCI config
//! space and the IOMMU's requester IDs alike).

use core::fmt;
use core::str::FromStr;

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

/// Highest device number on a bus (5 bits; PCI Local Bus spec 3.0 §3.2.2.3.1).
pub const MAX_DEVICE: u8 = 31;
/// Highest function number in a device (3 bits; same section).
pub const MAX_FUNCTION: u8 = 7;

/// A PCI function address: segment (PCI domain), bus, device, function.
///
/// `Display` prints the full `ssss:bb:dd.f` form Linux uses in logs; [`Bdf::short`]
/// prints `bb:dd.f` as plain `lspci` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bdf {
    /// PCI segment group (ACPI MCFG); 0 on every PC with one host bridge.
    pub segment: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

/// A [`Bdf`] with a device or function number out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BdfError;

impl fmt::Display for BdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid PCI address (expected [ssss:]bb:dd.f, device <= 31, function <= 7)")
    }
}

impl Bdf {
    /// The address `segment:bus:device.function`; `None` if device > 31 or function > 7.
    pub const fn new(segment: u16, bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device > MAX_DEVICE || function > MAX_FUNCTION {
            return None;
        }
        Some(Bdf {
            segment,
            bus,
            device,
            function,
        })
    }

    /// Same as [`Bdf::new`] with segment 0; for tests and constants, panics on a bad
    /// device/function number (a programming error, never device data).
    pub const fn b(bus: u8, device: u8, function: u8) -> Bdf {
        match Bdf::new(0, bus, device, function) {
            Some(b) => b,
            None => panic!("device or function number out of range"),
        }
    }

    /// The short `bb:dd.f` form.
    pub fn short(&self) -> ShortBdf {
        ShortBdf(*self)
    }

    /// The same device's function `function`.
    pub fn with_function(&self, function: u8) -> Option<Bdf> {
        Bdf::new(self.segment, self.bus, self.device, function)
    }

    /// True when all three number fields are in range (a `Bdf` built with a struct
    /// literal may not be).
    pub fn is_valid(&self) -> bool {
        self.device <= MAX_DEVICE && self.function <= MAX_FUNCTION
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

/// `bb:dd.f`, from [`Bdf::short`].
#[derive(Clone, Copy, Debug)]
pub struct ShortBdf(Bdf);

impl fmt::Display for ShortBdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.0.bus, self.0.device, self.0.function
        )
    }
}

impl FromStr for Bdf {
    type Err = BdfError;

    /// Parses `ssss:bb:dd.f` or `bb:dd.f` (hex), as typed at the shell.
    fn from_str(s: &str) -> Result<Bdf, BdfError> {
        let (head, func) = s.rsplit_once('.').ok_or(BdfError)?;
        let mut parts = head.rsplit(':');
        let dev = parts.next().ok_or(BdfError)?;
        let bus = parts.next().ok_or(BdfError)?;
        let seg = parts.next().unwrap_or("0");
        if parts.next().is_some() {
            return Err(BdfError);
        }
        let hex16 = |t: &str| u16::from_str_radix(t, 16).map_err(|_| BdfError);
        let hex8 = |t: &str| u8::from_str_radix(t, 16).map_err(|_| BdfError);
        Bdf::new(hex16(seg)?, hex8(bus)?, hex8(dev)?, hex8(func)?).ok_or(BdfError)
    }
}

impl Bdf {
    /// Device and function as one byte, `device << 3 | function`: the index of
    /// the function's context entry in a VT-d context table (spec §9.3).
    pub const fn devfn(&self) -> u8 {
        (self.device & MAX_DEVICE) << 3 | (self.function & MAX_FUNCTION)
    }

    /// The 16-bit requester ID (source-id) a function's requests carry, `bus << 8
    /// | devfn` (PCIe; VT-d spec §3.4.1). It carries no segment.
    pub const fn sid(&self) -> u16 {
        (self.bus as u16) << 8 | self.devfn() as u16
    }

    /// The function a requester ID names, in segment 0 (a requester ID carries
    /// no segment; a VT-d unit serves one segment, so its fault records do not
    /// either).
    pub const fn from_sid(sid: u16) -> Bdf {
        Bdf {
            segment: 0,
            bus: (sid >> 8) as u8,
            device: (sid as u8) >> 3,
            function: sid as u8 & MAX_FUNCTION,
        }
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

    #[test]
    fn display_forms_and_parse() {
        let b = Bdf::new(1, 0x1f, 0x1d, 7).unwrap();
        assert_eq!(b.to_string(), "0001:1f:1d.7");
        assert_eq!(b.short().to_string(), "1f:1d.7");
        assert_eq!("0001:1f:1d.7".parse::<Bdf>(), Ok(b));
        assert_eq!("00:03.0".parse::<Bdf>(), Ok(Bdf::b(0, 3, 0)));
        assert_eq!("00:20.0".parse::<Bdf>(), Err(BdfError));
        assert_eq!("00:03.8".parse::<Bdf>(), Err(BdfError));
        assert_eq!("1:2:3:4.0".parse::<Bdf>(), Err(BdfError));
        assert!(Bdf::new(0, 0, 32, 0).is_none());
    }

    #[test]
    fn requester_id_and_devfn() {
        let edu = Bdf::b(0, 1, 0);
        assert_eq!(edu.sid(), 0x0008);
        assert_eq!(edu.devfn(), 0x08);
        assert_eq!(Bdf::from_sid(0x0008), edu);
        let last = Bdf::b(0xff, 0x1f, 7);
        assert_eq!(last.sid(), 0xffff);
        assert_eq!(Bdf::from_sid(0xffff), last);
        assert_eq!(last.short().to_string(), "ff:1f.7");
    }
}
