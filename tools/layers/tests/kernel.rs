//! The kernel crate's layering, and that the checks can fail.

use std::fs;
use std::path::{Path, PathBuf};

use layers::{check_order, edges, find_cycle, imports};

fn kernel_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel/src")
}

#[test]
fn kernel_modules_have_no_import_cycle() {
    let g = edges(&kernel_src()).expect("kernel/src readable");
    assert!(
        g.len() >= 10,
        "expected the kernel's layers, found {:?}",
        g.keys()
    );
    assert_eq!(find_cycle(&g), None, "import circle between kernel modules");
}

/// The kernel's layers, lowest first (as kernel/src/main.rs and
/// docs/ARCHITECTURE.md list them). A new top-level module must be placed here.
const KERNEL_LAYERS: &[&str] = &[
    "sync",
    "cmdline",
    "mm",
    "arch",
    "acpi",
    "console",
    "pci",
    "iommu",
    "dma",
    "dmaengine",
    "drivers",
    "shell",
    "ktest",
];

#[test]
fn kernel_modules_import_only_lower_layers() {
    let g = edges(&kernel_src()).expect("kernel/src readable");
    let order: Vec<String> = KERNEL_LAYERS.iter().map(|s| s.to_string()).collect();
    let unplaced: Vec<&String> = g.keys().filter(|m| !order.contains(m)).collect();
    assert!(
        unplaced.is_empty(),
        "modules not in KERNEL_LAYERS: {unplaced:?}"
    );
    let bad: Vec<String> = check_order(&g, &order)
        .iter()
        .map(|u| u.to_string())
        .collect();
    assert!(bad.is_empty(), "upward imports:\n{}", bad.join("\n"));
}

/// A scratch source tree under the target directory.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str, files: &[(&str, &str)]) -> Tree {
        let root = std::env::temp_dir().join(format!("layers-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (path, text) in files {
            let p = root.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        Tree(root)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn finds_a_cycle_through_a_folder_module() {
    let t = Tree::new(
        "cycle",
        &[
            ("main.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b::thing;\n"),
            ("b/mod.rs", "pub mod inner;\n"),
            ("b/inner.rs", "fn f() { crate::c::g(); }\n"),
            ("c.rs", "use crate::{sync, a::X};\n"),
        ],
    );
    let g = edges(&t.0).unwrap();
    let c = find_cycle(&g).expect("a -> b -> c -> a");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4, "{c:?}");
    for m in ["a", "b", "c"] {
        assert!(c.iter().any(|x| x == m), "{c:?}");
    }
}

#[test]
fn no_cycle_and_order_checked_in_a_layered_tree() {
    let t = Tree::new(
        "layered",
        &[
            ("main.rs", "mod low;\nmod mid;\nmod top;\n"),
            ("low.rs", "// crate::top::x in a comment is not an import\n"),
            ("mid.rs", "use crate::low;\n"),
            ("top/mod.rs", "use crate::{low, mid::Y};\n"),
        ],
    );
    let g = edges(&t.0).unwrap();
    assert_eq!(find_cycle(&g), None);
    let order: Vec<String> = ["low", "mid", "top"].map(String::from).to_vec();
    assert!(check_order(&g, &order).is_empty());
    // The same graph read against the reverse order is all upward edges.
    let rev: Vec<String> = order.iter().rev().cloned().collect();
    assert_eq!(check_order(&g, &rev).len(), 3);
}

#[test]
fn import_forms() {
    let got = imports(
        "use crate::arch::apic;\nuse crate::{mm as kmm, dma::X};\n\
         fn f() { crate::console::flush(); $crate::console::write_fmt(x); }\n\
         // use crate::shell;\nmycrate::nope();",
    );
    let want: Vec<&str> = vec!["arch", "console", "dma", "mm"];
    assert_eq!(got.iter().map(String::as_str).collect::<Vec<_>>(), want);
}

#[test]
fn empty_folder_is_an_error() {
    let t = Tree::new("empty", &[("README", "nothing")]);
    assert!(edges(&t.0).is_err());
}
