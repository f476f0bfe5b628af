//! No source file of the kernel or of a library crate is longer than
//! `MAX_CODE_LINES` lines of code, and the check can fail.

use std::fs;
use std::path::{Path, PathBuf};

use layers::size::{code_lines, files_naming, is_test_file, long_files, MAX_CODE_LINES};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Generated tables, exempt from the limit.
const GENERATED: &[&str] = &["crates/pci/src/names.rs"];

#[test]
fn no_kernel_or_crate_file_is_longer_than_the_limit() {
    let mut roots = vec![repo().join("kernel/src")];
    let mut crates: Vec<PathBuf> = fs::read_dir(repo().join("crates"))
        .expect("crates/ readable")
        .map(|e| e.expect("entry").path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    assert!(
        crates.len() >= 10,
        "expected the library crates, found {crates:?}"
    );
    roots.extend(crates);
    let mut long = Vec::new();
    for r in &roots {
        long.extend(long_files(r, MAX_CODE_LINES, GENERATED).expect("readable"));
    }
    let list: Vec<String> = long
        .iter()
        .map(|(p, n)| format!("{n:5} {}", p.strip_prefix(repo()).unwrap_or(p).display()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_CODE_LINES} lines of code (tests aside):\n{}",
        list.join("\n")
    );
}

#[test]
fn tests_at_the_end_do_not_count() {
    let text = "fn a() {}\nfn b() {}\n#[cfg(test)]\nmod tests {\n}\n";
    assert_eq!(code_lines(text), 2);
    // An indented cfg(test) (an inner item) is code, not the tests' start.
    assert_eq!(code_lines("fn a() {\n    #[cfg(test)]\n    x();\n}\n"), 4);
}

#[test]
fn test_files_are_recognised_by_name() {
    for p in [
        "tests.rs",
        "tests_lpss.rs",
        "dmar_tests.rs",
        "tests/bounce.rs",
        "ktest/iommu.rs",
    ] {
        assert!(is_test_file(Path::new(p)), "{p}");
    }
    for p in ["lib.rs", "testbed.rs", "attests.rs", "shell/blk_cmds.rs"] {
        assert!(!is_test_file(Path::new(p)), "{p}");
    }
}

#[test]
fn a_long_file_is_found_and_an_exempt_one_is_not() {
    let root = std::env::temp_dir().join(format!("layers-size-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("sub/long.rs"), "x\n".repeat(11)).unwrap();
    fs::write(root.join("short.rs"), "x\n".repeat(10)).unwrap();
    fs::write(root.join("table.rs"), "x\n".repeat(50)).unwrap();
    fs::write(root.join("tests.rs"), "x\n".repeat(50)).unwrap();
    let long = long_files(&root, 10, &["table.rs"]).unwrap();
    let _ = fs::remove_dir_all(&root);
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(long[0].0.ends_with("sub/long.rs"));
    assert_eq!(long[0].1, 11);
}

#[test]
fn interrupts_are_masked_only_by_the_lock_type_and_arch() {
    let src = repo().join("kernel/src");
    let hits = files_naming(&src, "without_interrupts", &["sync.rs", "arch"]).unwrap();
    assert!(
        hits.is_empty(),
        "hand-written without_interrupts outside sync.rs and arch/ (use sync::IrqSpinLock): {hits:?}"
    );
}

#[test]
fn files_naming_skips_comments_and_allowed_paths() {
    let root = std::env::temp_dir().join(format!("layers-naming-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("arch")).unwrap();
    fs::write(root.join("arch/x.rs"), "without_interrupts(|| ());\n").unwrap();
    fs::write(root.join("a.rs"), "// without_interrupts in a comment\n").unwrap();
    fs::write(root.join("b.rs"), "x::without_interrupts(|| ());\n").unwrap();
    let hits = files_naming(&root, "without_interrupts", &["arch"]).unwrap();
    let _ = fs::remove_dir_all(&root);
    assert_eq!(hits, vec![PathBuf::from("b.rs")]);
}
