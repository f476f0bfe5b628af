//! Shared helpers for the corpus tests: where the corpus is, its manifest.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `shared/corpus`, which sits beside the repository checkout. Fails loudly
/// when it is missing: a sweep over nothing must not pass.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("ACPI_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    assert!(
        dir.join("manifest.tsv").is_file(),
        "ACPI corpus not found at {} (expected shared/corpus beside the repository \
         checkout, or set ACPI_CORPUS); refusing to pass without it",
        dir.display()
    );
    dir
}

/// Machine folders, sorted.
pub fn machines() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("read corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    assert!(v.len() > 100, "corpus has only {} machine folders", v.len());
    v
}

/// Files in a machine folder with the given extension, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read machine dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// One manifest row, keyed by column name.
pub type Row = HashMap<String, String>;

pub fn manifest() -> Vec<Row> {
    let text = fs::read_to_string(corpus_dir().join("manifest.tsv")).expect("read manifest");
    let mut lines = text.lines();
    let cols: Vec<String> = lines
        .next()
        .expect("manifest header")
        .split('\t')
        .map(String::from)
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            cols.iter()
                .cloned()
                .zip(
                    l.split('\t')
                        .map(String::from)
                        .chain(std::iter::repeat(String::new())),
                )
                .collect()
        })
        .collect()
}

/// Manifest row for `machine/file`.
pub fn row_for<'a>(rows: &'a [Row], machine: &str, file: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r["machine_id"] == machine && r["file"] == file)
}

/// `k=v,k=v` summary column into a map; tokens without `=` map to "".
pub fn summary_map(s: &str) -> std::collections::BTreeMap<String, String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (t.to_string(), String::new()),
        })
        .collect()
}
