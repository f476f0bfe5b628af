//! `acpi-decode FILE...`: decode ACPI table dumps (DMAR, APIC, MCFG, HPET,
//! FACP, XSDT, RSDT, RSDP; others get a header check). A malformed or
//! unreadable file prints `acpi-decode: FILE: <error>` on stderr, the other
//! files are still decoded, and the exit status is 1.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() || files.iter().any(|f| f == "-h" || f == "--help") {
        eprintln!("usage: acpi-decode FILE...");
        return ExitCode::from(2);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    let mut first = true;
    for f in &files {
        let result = std::fs::read(f)
            .map_err(|e| e.to_string())
            .and_then(|b| acpi_decode::decode_bytes(&b).map_err(|e| e.to_string()));
        match result {
            Ok(d) => {
                if !first {
                    let _ = writeln!(out);
                }
                first = false;
                let _ = writeln!(out, "== {f} ==");
                let _ = write!(out, "{}", d.text);
                for w in &d.warnings {
                    let _ = writeln!(out, "warning: {w}");
                }
            }
            Err(e) => {
                let _ = out.flush();
                eprintln!("acpi-decode: {f}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
