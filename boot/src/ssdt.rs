//! A small AML encoder for the one SSDT the `attack-external` profile hands
//! to QEMU (`-acpitable file=...`): QEMU's own tables give no root port an
//! `ExternalFacingPort` property, so this table adds one, the way a laptop's
//! firmware describes its Thunderbolt root port.
//!
//! QEMU 7.2 already names every device present on q35's root bus in its DSDT
//! (`\_SB.PCI0.Sxx`, xx = the devfn in hex, with `_ADR`), so the table does
//! not declare a second device with the same `_ADR`: it opens the existing
//! one's scope and adds the `_DSD`:
//!
//! ```text
//! DefinitionBlock ("", "SSDT", 2, "BUSMST", "EXTFACNG", 1)
//! {
//!     Scope (\_SB.PCI0.S20)
//!     {
//!         Name (_DSD, Package () {
//!             ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
//!             Package () { Package () { "ExternalFacingPort", 1 } }
//!         })
//!     }
//!     Scope (\_SB.PCI0.S28)    // a second port, described wrongly
//!     {
//!         Name (_DSD, Package () {
//!             ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301"),
//!             Package () { Package () { "ExternalFacingPort", "yes" } }
//!         })
//!     }
//! }
//! ```
//!
//! Encodings from ACPI 6.4 §20 (AML grammar): PkgLength §20.2.4, name
//! strings §20.2.2, data objects §20.2.3. The runner's build script writes
//! the table into its output directory (no iasl, no checked-in blob); the
//! profile passes that file.

/// Every byte of an ACPI table sums to zero (ACPI 6.4 §5.2.6).
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// `PkgLength` followed by `body`: the length counts its own bytes too.
pub fn with_pkg_length(body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut out = Vec::with_capacity(n + 4);
    // One byte holds a total (body + itself) up to 63.
    if n < 0x3F {
        out.push((n + 1) as u8);
    } else {
        // 2..=4 bytes: lead byte holds the count of following bytes in bits
        // 7:6 and the low nibble in bits 3:0.
        let (extra, total) = (1..=3usize)
            .map(|k| (k, n + 1 + k))
            .find(|&(k, total)| total < 1 << (4 + 8 * k))
            .expect("an AML package under 256 MiB");
        out.push(((extra as u8) << 6) | (total & 0xF) as u8);
        for i in 0..extra {
            out.push((total >> (4 + 8 * i)) as u8);
        }
    }
    out.extend_from_slice(body);
    out
}

/// A 4-character name segment, padded with `_` (`S20` -> `S20_`).
fn name_seg(seg: &str) -> [u8; 4] {
    assert!(
        (1..=4).contains(&seg.len()) && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "bad AML name segment {seg:?}"
    );
    let mut out = [b'_'; 4];
    out[..seg.len()].copy_from_slice(seg.as_bytes());
    out
}

/// A name string: `\` then the segments (`\_SB.PCI0.S20`), or one relative
/// segment (`_DSD`).
pub fn name_string(path: &str) -> Vec<u8> {
    let (root, rest) = match path.strip_prefix('\\') {
        Some(r) => (true, r),
        None => (false, path),
    };
    let segs: Vec<[u8; 4]> = rest.split('.').map(name_seg).collect();
    let mut out = Vec::new();
    if root {
        out.push(b'\\');
    }
    match segs.len() {
        1 => {}
        2 => out.push(0x2E), // DualNamePrefix
        n => {
            out.push(0x2F); // MultiNamePrefix
            out.push(n as u8);
        }
    }
    for s in segs {
        out.extend_from_slice(&s);
    }
    out
}

/// An integer constant in its shortest encoding.
pub fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![0x00], // ZeroOp
        1 => vec![0x01], // OneOp
        2..=0xFF => vec![0x0A, v as u8],
        0x100..=0xFFFF => [&[0x0B][..], &(v as u16).to_le_bytes()].concat(),
        0x1_0000..=0xFFFF_FFFF => [&[0x0C][..], &(v as u32).to_le_bytes()].concat(),
        _ => [&[0x0E][..], &v.to_le_bytes()].concat(),
    }
}

/// A string constant.
pub fn string(s: &str) -> Vec<u8> {
    let mut out = vec![0x0D];
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    out
}

/// `Buffer () { bytes }`.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut body = integer(bytes.len() as u64);
    body.extend_from_slice(bytes);
    [vec![0x11], with_pkg_length(&body)].concat()
}

/// `Package () { elements }`.
pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![elements.len() as u8];
    for e in elements {
        body.extend_from_slice(e);
    }
    [vec![0x12], with_pkg_length(&body)].concat()
}

/// `Name (name, value)`.
pub fn name(name: &str, value: &[u8]) -> Vec<u8> {
    [vec![0x08], name_string(name), value.to_vec()].concat()
}

/// `Scope (path) { terms }`.
pub fn scope(path: &str, terms: &[u8]) -> Vec<u8> {
    let body = [name_string(path), terms.to_vec()].concat();
    [vec![0x10], with_pkg_length(&body)].concat()
}

/// `ToUUID ("daffd814-6eba-4d8c-8a91-bc9bbf4aa301")`: the device-properties UUID.
pub const DEVICE_PROPERTIES_UUID: [u8; 16] = [
    0x14, 0xd8, 0xff, 0xda, 0xba, 0x6e, 0x8c, 0x4d, 0x8a, 0x91, 0xbc, 0x9b, 0xbf, 0x4a, 0xa3, 0x01,
];

/// An SSDT around `aml`, checksummed.
pub fn ssdt(oem_table_id: &[u8; 8], aml: &[u8]) -> Vec<u8> {
    let len = (36 + aml.len()) as u32;
    let mut t = Vec::with_capacity(len as usize);
    t.extend_from_slice(b"SSDT");
    t.extend_from_slice(&len.to_le_bytes());
    t.push(2); // revision: 64-bit integers
    t.push(0); // checksum, set below
    t.extend_from_slice(b"BUSMST");
    t.extend_from_slice(oem_table_id);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(b"BUSM"); // creator ID
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(aml);
    t[9] = checksum(&t);
    t
}

/// QEMU's DSDT name for the device at `dev`.`func` on q35's root bus.
pub fn qemu_root_bus_device(dev: u8, func: u8) -> String {
    format!("\\_SB.PCI0.S{:02X}", (dev << 3) | (func & 7))
}

/// `_DSD` with one device property, `ExternalFacingPort` = `value` (AML).
fn external_facing_dsd(value: Vec<u8>) -> Vec<u8> {
    package(&[
        buffer(&DEVICE_PROPERTIES_UUID),
        package(&[package(&[string("ExternalFacingPort"), value])]),
    ])
}

/// The `attack-external` profile's SSDT: the root port at [`EXTERNAL_PORT`]
/// gets `ExternalFacingPort` = 1, and the one at [`MALFORMED_PORT`] a
/// string there (`"yes"`), which the kernel must refuse with a warning
/// rather than trust or crash on.
pub fn attack_external_ssdt() -> Vec<u8> {
    let port = |(dev, func): (u8, u8), value: Vec<u8>| {
        scope(
            &qemu_root_bus_device(dev, func),
            &name("_DSD", &external_facing_dsd(value)),
        )
    };
    let aml = [
        port(EXTERNAL_PORT, integer(1)),
        port(MALFORMED_PORT, string("yes")),
    ]
    .concat();
    ssdt(b"EXTFACNG", &aml)
}

/// The root ports the `attack-external` profile declares (`addr=4`, `addr=5`),
/// and the file name the build script gives their SSDT.
pub const EXTERNAL_PORT: (u8, u8) = (4, 0);
pub const MALFORMED_PORT: (u8, u8) = (5, 0);
pub const EXTERNAL_PORT_SSDT: &str = "external-facing-port-ssdt.aml";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_length_counts_itself_and_switches_to_two_bytes_at_63() {
        assert_eq!(with_pkg_length(&[0xAA; 3])[0], 4);
        assert_eq!(with_pkg_length(&[0; 62])[0], 63);
        // 63 bytes of body: 65 in all, two length bytes: 0x41 0x04.
        let l = with_pkg_length(&[0; 63]);
        assert_eq!(&l[..2], &[0x41, 0x04]);
        assert_eq!(l.len(), 65);
        // 1000 + 2 = 0x3EA; 5000 + 3 = 0x138B needs a third byte.
        assert_eq!(&with_pkg_length(&[0; 1000])[..2], &[0x4A, 0x3E]);
        assert_eq!(&with_pkg_length(&[0; 5000])[..3], &[0x8B, 0x38, 0x01]);
    }

    #[test]
    fn names_integers_and_strings_encode_as_iasl_does() {
        assert_eq!(name_string("_DSD"), b"_DSD");
        assert_eq!(name_string("\\_SB.PCI0"), b"\\\x2e_SB_PCI0");
        assert_eq!(name_string("\\_SB.PCI0.S20"), b"\\\x2f\x03_SB_PCI0S20_");
        assert_eq!(integer(0), [0x00]);
        assert_eq!(integer(1), [0x01]);
        assert_eq!(integer(0x10), [0x0A, 0x10]);
        assert_eq!(integer(0x0004_0000), [0x0C, 0, 0, 4, 0]);
        assert_eq!(string("ab"), [0x0D, b'a', b'b', 0]);
        assert_eq!(qemu_root_bus_device(4, 0), "\\_SB.PCI0.S20");
        assert_eq!(qemu_root_bus_device(0x1f, 3), "\\_SB.PCI0.SFB");
    }

    #[test]
    fn the_external_facing_ssdt_has_a_good_header_and_the_dsd() {
        let t = attack_external_ssdt();
        assert_eq!(&t[..4], b"SSDT");
        assert_eq!(
            u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
            t.len()
        );
        assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let body = &t[36..];
        // Scope (\_SB.PCI0.S20) { Name (_DSD, Package (2) { Buffer (16) ...
        assert_eq!(body[0], 0x10);
        // Two scopes, each PkgLength two bytes long (bodies over 62 bytes),
        // which together cover the rest of the table.
        let pkg_len = |at: &[u8]| {
            assert_eq!(at[1] >> 6, 1);
            (at[1] & 0xF) as usize | (at[2] as usize) << 4
        };
        let first = pkg_len(body);
        let second = &body[1 + first..];
        assert_eq!(second[0], 0x10);
        assert_eq!(1 + pkg_len(second), second.len());
        let rest = &body[3..];
        assert!(rest.starts_with(b"\\\x2f\x03_SB_PCI0S20_\x08_DSD\x12"));
        let uuid_at = t
            .windows(16)
            .position(|w| w == DEVICE_PROPERTIES_UUID)
            .unwrap();
        assert_eq!(&t[uuid_at - 4..uuid_at], &[0x11, 0x13, 0x0A, 0x10]);
        let name_at = t
            .windows(18)
            .position(|w| w == b"ExternalFacingPort")
            .unwrap();
        assert_eq!(t[name_at - 1], 0x0D);
        assert_eq!(&t[name_at + 18..name_at + 20], &[0x00, 0x01]);
        // The second scope: the malformed port's _DSD (a string value).
        assert!(second[3..].starts_with(b"\\\x2f\x03_SB_PCI0S28_\x08_DSD\x12"));
        assert!(second.ends_with(b"ExternalFacingPort\x00\x0Dyes\x00"));
    }
}
