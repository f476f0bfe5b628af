//! Arbitrary bytes as a DMAR table. Most random inputs die at the header
//! checks, so each input is also parsed with signature, length and checksum
//! patched in, which sends the fuzzer into the structure and scope parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

use acpi_tables::dmar;

fn exercise(bytes: &[u8]) {
    match dmar::parse(bytes) {
        Ok(d) => {
            // Display paths must not panic either.
            for w in &d.warnings {
                let _ = w.to_string();
            }
            for s in &d.structures {
                for sc in s.scopes() {
                    let _ = sc.path_display().to_string();
                    let _ = sc.single_hop_bdf();
                }
                if let dmar::RemappingStructure::Rmrr(r) = s {
                    let _ = r.size();
                }
                if let dmar::RemappingStructure::Drhd(u) = s {
                    let _ = u.register_size();
                }
            }
            let _ = d.counts();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if data.len() >= 48 {
        let mut v = data.to_vec();
        v[0..4].copy_from_slice(b"DMAR");
        let len = v.len() as u32;
        v[4..8].copy_from_slice(&len.to_le_bytes());
        acpi_tables::fix_checksum(&mut v);
        exercise(&v);
    }
    // The other decoders share the record-walking pattern; give them the
    // same bytes under their own signatures.
    if data.len() >= 36 {
        for sig in [b"APIC", b"MCFG", b"HPET", b"FACP", b"XSDT", b"RSDT"] {
            let mut v = data.to_vec();
            v[0..4].copy_from_slice(sig);
            let len = v.len() as u32;
            v[4..8].copy_from_slice(&len.to_le_bytes());
            acpi_tables::fix_checksum(&mut v);
            let _ = acpi_tables::any::decode(&v).map_err(|e| e.to_string());
        }
    }
});
