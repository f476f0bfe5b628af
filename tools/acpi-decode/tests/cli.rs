//! The `acpi-decode` binary over the corpus and over broken files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        dir.join("manifest.tsv").is_file(),
        "ACPI corpus not found at {} (expected shared/corpus beside the repository checkout)",
        dir.display()
    );
    dir
}

fn run(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_acpi-decode"))
        .args(args)
        .output()
        .expect("run acpi-decode")
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("acpi-decode-test-{}-{name}", std::process::id()));
    fs::write(&p, bytes).unwrap();
    p
}

fn machine(id: &str) -> PathBuf {
    corpus_dir().join(id)
}

#[test]
fn decodes_the_whole_corpus_in_one_run() {
    let mut files = Vec::new();
    for m in fs::read_dir(corpus_dir()).unwrap() {
        let m = m.unwrap().path();
        if m.is_dir() {
            for f in fs::read_dir(&m).unwrap() {
                let f = f.unwrap().path();
                if f.extension().is_some_and(|e| e == "dat") {
                    files.push(f);
                }
            }
        }
    }
    assert!(files.len() > 1500, "only {} files", files.len());
    let args: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let out = run(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(stdout.matches("\n== ").count() + 1, files.len());
    assert!(!stdout.contains("none for this signature"));
}

#[test]
fn dmar_decode_content() {
    let f =
        machine("linuxhw__All_In_One__Acer__Aspire__Aspire_Z3-715__9F6A5601CE04").join("dmar.dat");
    let out = run(&[&f]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Signature : \"DMAR\"",
        "Oem Table ID : \"SKL \"",
        "Host Address Width : 0x26 (39-bit DMA addresses)",
        "Flags : 0x03 (INTR_REMAP | X2APIC_OPT_OUT)",
        "[030h] DRHD #0: Hardware Unit Definition",
        "Register Base Address : 0x00000000fed90000",
        "Device Scope [040h] : PCI endpoint 00:02.0 (enumeration id 0x00)",
        "Flags : 0x01 (INCLUDE_PCI_ALL)",
        "Device Scope [058h] : IOAPIC f0:1f.0 (enumeration id 0x02)",
        "Device Scope [060h] : HPET 00:1f.0",
        "[068h] RMRR #2: Reserved Memory Region",
        "Base Address : 0x000000008c587000",
        "End Address (limit) : 0x000000008c5a6fff",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    assert!(!s.contains("warning:"));
}

#[test]
fn other_tables_decode_content() {
    let m = machine("linuxhw__All_In_One__Acer__Aspire__Aspire_Z3-715__9F6A5601CE04");
    let out = run(&[
        &m.join("apic.dat"),
        &m.join("mcfg.dat"),
        &m.join("hpet.dat"),
        &m.join("facp.dat"),
    ]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Local Apic Address : 0xfee00000",
        "[064h] #8 I/O APIC",
        "Address : 0xfec00000",
        "Flags : 0x000d (polarity active high, trigger level)",
        "Base Address : 0x00000000e0000000",
        "End Bus Number : ff",
        "SystemMemory (0) 0x00000000fed00000",
        "SCI Interrupt : 9",
        "X_DSDT Address : 0x000000008c7f1210",
        "DSDT in use : 0x000000008c7f1210",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}

#[test]
fn warnings_are_printed() {
    let f =
        machine("linuxhw__Notebook__Lenovo__ThinkPad__ThinkPad_E15_Gen_2_20TD0005MH__188EB681251A")
            .join("dmar.dat");
    let out = run(&[&f]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    let w: Vec<&str> = s.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(w.len(), 1, "{s}");
    assert!(
        w[0].contains("DRHD") && w[0].contains("register base address is 0"),
        "{}",
        w[0]
    );
}

#[test]
fn malformed_file_is_one_line_error_and_exit_1() {
    let good =
        machine("linuxhw__All_In_One__Acer__Aspire__Aspire_Z3-715__9F6A5601CE04").join("dmar.dat");
    let mut bytes = fs::read(&good).unwrap();
    bytes[0x32] = 0; // DRHD #0 length 0x18 -> 0: the checksum catches it first
    let bad_sum = tmp("badsum.dat", &bytes);
    bytes[9] = bytes[9].wrapping_add(0x18); // fix the checksum: now the length is wrong
    let zero_len = tmp("zerolen.dat", &bytes);
    let missing = std::env::temp_dir().join("acpi-decode-test-does-not-exist.dat");

    let out = run(&[&bad_sum, &good, &zero_len, &missing]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert_eq!(
        lines[0],
        format!(
            "acpi-decode: {}: DMAR: header at offset 0x9: bad checksum: bytes sum to 0xe8, not 0",
            bad_sum.display()
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "acpi-decode: {}: DMAR: structure #0 (type 0, DRHD) at offset 0x30: length 0 is below the minimum 16",
            zero_len.display()
        )
    );
    assert!(lines[2].starts_with(&format!("acpi-decode: {}: ", missing.display())));
    // The good file in between was still decoded.
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(&format!("== {} ==", good.display())));
    assert_eq!(stdout.matches("== ").count(), 1);
    let _ = fs::remove_file(bad_sum);
    let _ = fs::remove_file(zero_len);
}

#[test]
fn no_arguments_is_usage() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}

/// The `[Kernel view]` block is what `acpi_tables::platform` (the functions the
/// kernel calls at boot) takes from each table.
#[test]
fn kernel_view_is_printed() {
    let m = machine("linuxhw__All_In_One__Acer__Aspire__Aspire_Z3-715__9F6A5601CE04");
    let out = run(&[
        &m.join("apic.dat"),
        &m.join("mcfg.dat"),
        &m.join("hpet.dat"),
        &m.join("facp.dat"),
    ]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert_eq!(s.matches("[Kernel view]").count(), 4, "{s}");
    for want in [
        "CPUs : 4 (4 usable)",
        "IO-APIC : id 2 at 0xfec00000, GSI base 0",
        "Override : ISA IRQ 9 -> GSI 9, level",
        "ECAM window : 0xe0000000 segment 0 buses 0x00-0xff",
        "HPET base : 0xfed00000",
        "PM1a control : 0x1804",
        "Reset : write 0x6 to port 0xcf9",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
}
