//! `layers [SRC]`: prints the kernel's module graph and fails on an import
//! circle (SRC defaults to kernel/src). The layer order is checked by the
//! crate's tests.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let src = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("kernel/src"), PathBuf::from);
    let g = match layers::edges(&src) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("layers: {e}");
            return ExitCode::from(2);
        }
    };
    for (m, to) in &g {
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        println!("{m} -> {}", to.join(" "));
    }
    if let Some(c) = layers::find_cycle(&g) {
        println!("cycle: {}", c.join(" -> "));
        return ExitCode::FAILURE;
    }
    println!("no cycle among {} top-level modules", g.len());
    ExitCode::SUCCESS
}
