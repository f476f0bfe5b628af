//! Arbitrary bytes as a physical memory image starting at address 0, with
//! the RSDP at 0. The RSDP and root-table checksums are patched in (when the
//! input has room) so the walker gets past them; the raw input is walked too.
#![no_main]

use libfuzzer_sys::fuzz_target;

use acpi_tables::walk::{self, SliceMemory};

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
}

fn exercise(image: &[u8]) {
    let mem = SliceMemory {
        base: 0,
        bytes: image,
    };
    let _ = walk::find_rsdp(&mem, 0, image.len() as u64);
    match walk::walk(&mem, 0) {
        Ok(t) => {
            for w in &t.warnings {
                let _ = w.to_string();
            }
            for info in &t.tables {
                if let Ok(bytes) = walk::read_table(&mem, info.address, 1 << 16) {
                    let _ = acpi_tables::any::decode(&bytes).map_err(|e| e.to_string());
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    if data.len() < 36 {
        return;
    }
    let mut v = data.to_vec();
    v[0..8].copy_from_slice(b"RSD PTR ");
    v[8] = 0;
    v[8] = 0u8.wrapping_sub(sum(&v[..20]));
    if v[15] >= 2 {
        v[20..24].copy_from_slice(&36u32.to_le_bytes());
        v[32] = 0;
        v[32] = 0u8.wrapping_sub(sum(&v[..36]));
    }
    // Patch the checksum of the root table the RSDP points at, if it is
    // inside the image and its length fits.
    let root = if v[15] >= 2 {
        u64::from_le_bytes(v[24..32].try_into().unwrap())
    } else {
        u64::from(u32::from_le_bytes(v[16..20].try_into().unwrap()))
    };
    if let Ok(root) = usize::try_from(root) {
        let header_fits = root.checked_add(36).is_some_and(|end| end <= v.len());
        if root >= 36 && header_fits {
            let len = u32::from_le_bytes(v[root + 4..root + 8].try_into().unwrap()) as usize;
            if len >= 36 && root.checked_add(len).is_some_and(|end| end <= v.len()) {
                acpi_tables::fix_checksum(&mut v[root..root + len]);
            }
        }
    }
    exercise(&v);
});
