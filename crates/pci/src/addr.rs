//! Bus/device/function addresses.

use core::fmt;
use core::str::FromStr;

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

impl From<Bdf> for pci_types::PciAddress {
    fn from(b: Bdf) -> Self {
        pci_types::PciAddress::new(b.segment, b.bus, b.device, b.function)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

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
        let a: pci_types::PciAddress = b.into();
        assert_eq!(
            (a.segment(), a.bus(), a.device(), a.function()),
            (1, 0x1f, 0x1d, 7)
        );
    }
}
