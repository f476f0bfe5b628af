//! Checked little-endian reads. Every accessor returns `None` instead of
//! panicking when the requested range is not inside the slice, so parsers
//! can turn a short read into a typed error.

use core::fmt;

/// `N` bytes at `off`, or `None` if any of them is outside `b`.
pub(crate) fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    b.get(off..end)?.try_into().ok()
}

pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    array_at(b, off).map(u16::from_le_bytes)
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    array_at(b, off).map(u32::from_le_bytes)
}

pub(crate) fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    array_at(b, off).map(u64::from_le_bytes)
}

/// Sum of all bytes modulo 256; ACPI tables (ACPI 6.5 §5.2.6) and the RSDP
/// (§5.2.5.3) are valid when this is 0.
pub(crate) fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |acc, &x| acc.wrapping_add(x))
}

/// True when the byte is printable ASCII (space to tilde).
pub(crate) fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// True when a fixed-width text field from firmware has bytes that are not
/// printable ASCII. Trailing NULs are accepted: the ACPI spec only says the
/// OEM fields are "OEM-supplied strings", and NUL padding is common.
pub(crate) fn has_nonprintable(field: &[u8]) -> bool {
    let end = field.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    field
        .get(..end)
        .is_some_and(|f| f.iter().any(|&b| !printable(b)))
}

/// Displays firmware bytes as text without trusting them: printable ASCII is
/// shown as is, anything else as `\xNN`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if printable(b) {
                fmt::Write::write_char(f, char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u32_at(&b, 4), Some(0x0807_0605));
        assert_eq!(u64_at(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(u64_at(&b, 1), None);
        assert_eq!(u16_at(&b, 7), None);
        assert_eq!(u8_at(&b, 8), None);
        assert_eq!(u32_at(&b, usize::MAX - 1), None);
    }

    #[test]
    fn checksum_wraps() {
        assert_eq!(checksum(&[0xff, 0x01]), 0);
        assert_eq!(checksum(&[0x80, 0x80, 0x05]), 5);
    }

    #[test]
    fn lossy_escapes() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(Lossy(b"\\_SB \x01\x84").to_string(), "\\_SB \\x01\\x84");
    }

    #[test]
    fn nonprintable_ignores_trailing_nul() {
        assert!(!has_nonprintable(b"INTEL \0\0"));
        assert!(has_nonprintable(b"\x01\0\0\0\0\0\0\0"));
        assert!(has_nonprintable(b"\x09 APIC  "));
        assert!(has_nonprintable(b"\xd2\x04\0\0"));
        assert!(!has_nonprintable(b"\0\0\0\0"));
    }
}
