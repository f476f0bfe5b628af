//! Replays every input kept in `fuzz/regressions/<target>/` (crashes and
//! other interesting inputs found by cargo-fuzz) through the library the
//! way the fuzz target does, so they stay fixed without running the fuzzer.

use std::fs;
use std::path::Path;

use acpi_tables::walk::{self, SliceMemory};
use acpi_tables::{any, dmar};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn walk_image(image: &[u8]) {
    let mem = SliceMemory {
        base: 0,
        bytes: image,
    };
    let _ = walk::find_rsdp(&mem, 0, image.len() as u64);
    if let Ok(t) = walk::walk(&mem, 0) {
        for info in &t.tables {
            if let Ok(b) = walk::read_table(&mem, info.address, 1 << 16) {
                let _ = any::decode(&b).map_err(|e| e.to_string());
            }
        }
    }
}

#[test]
fn table_walk_regressions() {
    let v = inputs("table_walk");
    assert!(!v.is_empty());
    for (name, data) in v {
        let r = std::panic::catch_unwind(|| walk_image(&data));
        assert!(r.is_ok(), "{name} panics");
    }
}

#[test]
fn dmar_regressions() {
    for (name, data) in inputs("dmar") {
        let r = std::panic::catch_unwind(|| dmar::parse(&data).map(|d| d.warnings.len()));
        assert!(r.is_ok(), "{name} panics");
    }
}
