//! File length: no source file of the kernel or of a library crate holds more
//! than [`MAX_CODE_LINES`] lines of code (issue #13's acceptance).
//!
//! Test code does not count: a file that is all tests (`tests.rs`, `tests_*.rs`,
//! `*_tests.rs`, anything under a `tests/` folder, the in-kernel suite under
//! `ktest/`) is skipped, and in other files the lines from the first top-level
//! `#[cfg(test)]` on are not counted (the project keeps its unit tests at the end
//! of a file). Generated tables are listed by the caller.

use std::fs;
use std::path::{Path, PathBuf};

use crate::LayersError;

/// The most lines of code one file may hold.
pub const MAX_CODE_LINES: usize = 600;

/// Whether `path` holds only tests, by the project's naming.
pub fn is_test_file(path: &Path) -> bool {
    let in_test_dir = path
        .components()
        .any(|c| matches!(c.as_os_str().to_str(), Some("tests" | "ktest")));
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    in_test_dir || stem == "tests" || stem.starts_with("tests_") || stem.ends_with("_tests")
}

/// Lines of `text` before its first top-level `#[cfg(test)]`.
pub fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .count()
}

/// Every `.rs` file below `root` (sorted), test files included.
fn rust_files(root: &Path, out: &mut Vec<PathBuf>) -> Result<(), LayersError> {
    let mut entries = Vec::new();
    for e in fs::read_dir(root).map_err(|e| LayersError::Io(root.into(), e))? {
        entries.push(e.map_err(|e| LayersError::Io(root.into(), e))?.path());
    }
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The non-test files below `root` with more than `max` lines of code, with
/// their counts. Paths ending with one of `exempt` (generated tables) are skipped.
pub fn long_files(
    root: &Path,
    max: usize,
    exempt: &[&str],
) -> Result<Vec<(PathBuf, usize)>, LayersError> {
    let mut files = Vec::new();
    rust_files(root, &mut files)?;
    let mut long = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f);
        if is_test_file(rel) || exempt.iter().any(|e| f.ends_with(e)) {
            continue;
        }
        let text = fs::read_to_string(&f).map_err(|e| LayersError::Io(f.clone(), e))?;
        let n = code_lines(&text);
        if n > max {
            long.push((f, n));
        }
    }
    Ok(long)
}

/// Files below `root` (relative paths) whose code (line comments aside) names
/// `needle`, except those under one of the `allowed` relative prefixes.
pub fn files_naming(
    root: &Path,
    needle: &str,
    allowed: &[&str],
) -> Result<Vec<PathBuf>, LayersError> {
    let mut files = Vec::new();
    rust_files(root, &mut files)?;
    let mut hits = Vec::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(&f).to_path_buf();
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let text = fs::read_to_string(&f).map_err(|e| LayersError::Io(f.clone(), e))?;
        let named = text
            .lines()
            .map(|l| l.find("//").map_or(l, |i| &l[..i]))
            .any(|l| l.contains(needle));
        if named {
            hits.push(rel);
        }
    }
    Ok(hits)
}
