//! Every table in the real-firmware corpus decodes without a panic or an
//! error, and what we decode agrees with the manifest's independent columns.
//! Run with `--nocapture` to see the figures.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};

use acpi_tables::any::{decode, AnyTable};
use acpi_tables::dmar::{Dmar, RemappingStructure};
use acpi_tables::madt::{Madt, MadtEntry};
use acpi_tables::walk::{self, PhysRead, PhysReadError, RootKind, WalkWarning};
use acpi_tables::{Lossy, WarningKind};

use common::*;

#[test]
fn sweep_every_table_decodes() {
    let rows = manifest();
    let mut per_sig: BTreeMap<String, usize> = BTreeMap::new();
    let mut panics = Vec::new();
    let mut errors = Vec::new();
    let mut mismatches = Vec::new();
    let mut warnings = 0usize;
    let mut files = 0usize;
    for m in machines() {
        let machine = m.file_name().unwrap().to_string_lossy().to_string();
        for f in files_with_ext(&m, "dat") {
            files += 1;
            let file = f.file_name().unwrap().to_string_lossy().to_string();
            let bytes = fs::read(&f).unwrap();
            let what = format!("{machine}/{file}");
            match catch_unwind(AssertUnwindSafe(|| decode(&bytes))) {
                Err(_) => panics.push(what),
                Ok(Err(e)) => errors.push(format!("{what}: {e}")),
                Ok(Ok(t)) => {
                    *per_sig
                        .entry(String::from_utf8_lossy(&t.signature()).into_owned())
                        .or_default() += 1;
                    warnings += table_warnings(&t);
                    match row_for(&rows, &machine, &file) {
                        None => mismatches.push(format!("{what}: not in manifest")),
                        Some(row) => {
                            if let Err(e) = check_against_manifest(&t, &bytes, row) {
                                mismatches.push(format!("{what}: {e}"));
                            }
                        }
                    }
                }
            }
        }
    }
    println!("corpus sweep: {files} files, {warnings} warnings");
    for (sig, n) in &per_sig {
        println!("  {sig}: {n} decoded");
    }
    assert!(panics.is_empty(), "{} panics: {panics:#?}", panics.len());
    assert!(errors.is_empty(), "{} errors: {errors:#?}", errors.len());
    assert!(
        mismatches.is_empty(),
        "{} manifest mismatches: {mismatches:#?}",
        mismatches.len()
    );
    // The README's figures (RSDP 43, XSDT 43 + RSDT 47 = 90 root tables).
    let expect = [
        ("DMAR", 260),
        ("APIC", 305),
        ("FACP", 305),
        ("MCFG", 310),
        ("HPET", 310),
        ("RSDP", 43),
        ("XSDT", 43),
        ("RSDT", 47),
    ];
    for (sig, n) in expect {
        assert_eq!(per_sig.get(sig).copied(), Some(n), "count of {sig}");
    }
}

fn table_warnings(t: &AnyTable) -> usize {
    match t {
        AnyTable::Dmar(d) => d.warnings.len(),
        AnyTable::Madt(d) => d.warnings.len(),
        AnyTable::Mcfg(d) => d.warnings.len(),
        AnyTable::Hpet(d) => d.warnings.len(),
        AnyTable::Fadt(d) => d.warnings.len(),
        AnyTable::Root(d) => d.warnings.len(),
        AnyTable::Rsdp(_) | AnyTable::Other(_) => 0,
    }
}

fn header_warning_notes(t: &AnyTable) -> Vec<String> {
    let ws = match t {
        AnyTable::Dmar(d) => &d.warnings,
        AnyTable::Madt(d) => &d.warnings,
        AnyTable::Mcfg(d) => &d.warnings,
        AnyTable::Hpet(d) => &d.warnings,
        AnyTable::Fadt(d) => &d.warnings,
        AnyTable::Root(d) => &d.warnings,
        AnyTable::Rsdp(_) | AnyTable::Other(_) => return vec![],
    };
    ws.iter()
        .filter(|w| matches!(w.kind, WarningKind::NonPrintable { .. }))
        .map(|w| format!("header {}", w.kind))
        .collect()
}

/// Compares our decode with the manifest columns that were computed by a
/// different tool. Returns a description of the first disagreement.
fn check_against_manifest(t: &AnyTable, bytes: &[u8], row: &Row) -> Result<(), String> {
    // Header quirks: our non-printable warnings are exactly the manifest's
    // "header ... has non-printable bytes" notes.
    let mut ours = header_warning_notes(t);
    let mut theirs: Vec<String> = row["issues"]
        .split(';')
        .map(str::trim)
        .filter_map(|s| s.strip_prefix("note: "))
        .filter(|s| s.starts_with("header ") && s.contains("non-printable"))
        .map(String::from)
        .collect();
    ours.sort();
    theirs.sort();
    if ours != theirs {
        return Err(format!("header notes: ours {ours:?}, manifest {theirs:?}"));
    }
    let summary = summary_map(&row["summary"]);
    let expect_eq = |ours: BTreeMap<String, String>| {
        if ours == summary {
            Ok(())
        } else {
            Err(format!("summary: ours {ours:?}, manifest {summary:?}"))
        }
    };
    match t {
        AnyTable::Dmar(d) => check_dmar(d, bytes, row),
        AnyTable::Madt(m) => expect_eq(madt_summary(m)),
        AnyTable::Mcfg(m) => {
            let mut s = BTreeMap::new();
            s.insert("entries".into(), m.entries.len().to_string());
            for e in &m.entries {
                s.insert(
                    format!(
                        "seg{}:{:#x}:bus{:02x}-{:02x}",
                        e.segment, e.base_address, e.start_bus, e.end_bus
                    ),
                    String::new(),
                );
            }
            expect_eq(s)
        }
        AnyTable::Hpet(h) => {
            let mut s = BTreeMap::new();
            s.insert(
                "evt_blk_id".into(),
                format!("{:#x}", h.event_timer_block_id),
            );
            s.insert("space".into(), h.base_address.address_space.to_string());
            s.insert("width".into(), h.base_address.bit_width.to_string());
            s.insert("addr".into(), format!("{:#x}", h.base_address.address));
            s.insert("hpet_num".into(), h.hpet_number.to_string());
            s.insert("min_tick".into(), h.min_tick.to_string());
            s.insert("prot".into(), format!("{:#x}", h.page_protection));
            expect_eq(s)
        }
        AnyTable::Fadt(f) => {
            let mut s = BTreeMap::new();
            s.insert("rev".into(), f.header.revision.to_string());
            s.insert("len".into(), f.header.length.to_string());
            s.insert("flags".into(), format!("{:#x}", f.flags.bits()));
            if let Some(minor) = f.minor_version {
                s.insert("minor".into(), (minor & 0x0f).to_string());
            }
            s.insert("hw_reduced".into(), u8::from(f.hw_reduced()).to_string());
            s.insert("sci".into(), f.sci_int.to_string());
            s.insert("pm_profile".into(), f.preferred_pm_profile.to_string());
            if let Some(x) = f.x_dsdt {
                s.insert("x_dsdt".into(), format!("{x:#x}"));
            }
            expect_eq(s)
        }
        AnyTable::Root(r) => {
            let mut s = BTreeMap::new();
            s.insert("entries".into(), r.entries.len().to_string());
            expect_eq(s)
        }
        AnyTable::Rsdp(r) => {
            let want = |k: &str| summary.get(k).cloned().unwrap_or_default();
            if want("rev") != r.revision.to_string()
                || want("rsdt") != format!("{:#x}", r.rsdt_address)
                || want("xsdt")
                    != r.xsdt_address
                        .map(|x| format!("{x:#x}"))
                        .unwrap_or_default()
            {
                return Err(format!("RSDP {r:?} vs {summary:?}"));
            }
            Ok(())
        }
        AnyTable::Other(h) => Err(format!("no decoder for {}", Lossy(&h.signature))),
    }
}

fn madt_summary(m: &Madt) -> BTreeMap<String, String> {
    let mut s = BTreeMap::new();
    s.insert("lapic_base".into(), format!("{:#x}", m.local_apic_address));
    s.insert("flags".into(), format!("{:#x}", m.flags.bits()));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &m.entries {
        let k = match r.entry {
            MadtEntry::LocalApic { .. } => "lapic".to_string(),
            MadtEntry::IoApic { .. } => "ioapic".into(),
            MadtEntry::InterruptSourceOverride { .. } => "iso".into(),
            MadtEntry::NmiSource { .. } => "nmi_src".into(),
            MadtEntry::LocalApicNmi { .. } => "lapic_nmi".into(),
            MadtEntry::LocalApicAddressOverride { .. } => "lapic_addr_ovr".into(),
            MadtEntry::X2Apic { .. } => "x2apic".into(),
            MadtEntry::X2ApicNmi { .. } => "x2apic_nmi".into(),
            MadtEntry::Unknown { kind, .. } => format!("type{kind}"),
        };
        *counts.entry(k).or_default() += 1;
    }
    for (k, n) in counts {
        s.insert(k, n.to_string());
    }
    s
}

fn check_dmar(d: &Dmar, table_bytes: &[u8], row: &Row) -> Result<(), String> {
    let c = d.counts();
    let mut ours = vec![
        ("dmar_haw", d.host_address_width.to_string()),
        ("dmar_flags", format!("{:#04x}", d.flags.bits())),
        ("n_drhd", c.drhd.to_string()),
        ("n_rmrr", c.rmrr.to_string()),
        ("n_atsr", c.atsr.to_string()),
        ("n_rhsa", c.rhsa.to_string()),
        ("n_andd", c.andd.to_string()),
        ("n_satc", c.satc.to_string()),
        ("n_other", c.other.to_string()),
    ];
    let include_all = d.drhds().filter(|u| u.include_pci_all()).count();
    ours.push(("dmar_include_pci_all", include_all.to_string()));
    let scopes: Vec<_> = d.structures.iter().flat_map(|s| s.scopes()).collect();
    let mut by_type: BTreeMap<u8, usize> = BTreeMap::new();
    for s in &scopes {
        *by_type.entry(s.scope_type.as_u8()).or_default() += 1;
    }
    // The manifest also counts the device scopes inside SIDP (type 6)
    // structures, which the parser keeps as Unknown by design; count them
    // from the raw bytes ({u16 type, u16 len, u16 rsvd, u16 segment} then
    // scopes, VT-d 4.1 §8.9).
    let mut sidp_scopes = 0;
    for s in &d.structures {
        if let RemappingStructure::Unknown(u) = s {
            if u.kind == 6 {
                let raw = &table_bytes[u.offset..u.offset + usize::from(u.length)];
                let mut at = 8;
                while at + 1 < raw.len() {
                    *by_type.entry(raw[at]).or_default() += 1;
                    sidp_scopes += 1;
                    at += usize::from(raw[at + 1]).max(1);
                }
            }
        }
    }
    ours.push(("dmar_scopes", (scopes.len() + sidp_scopes).to_string()));
    let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{t}:{n}")).collect();
    ours.push(("dmar_scope_types", types.join(",")));
    let mut segs: Vec<u16> = d
        .structures
        .iter()
        .filter_map(|s| match s {
            RemappingStructure::Drhd(u) => Some(u.segment),
            _ => None,
        })
        .collect();
    segs.sort();
    segs.dedup();
    let segs: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    ours.push(("dmar_segments", segs.join(",")));
    let names: Vec<String> = d
        .andds()
        .map(|a| format!("{}:{}", a.device_number, a.name_string()))
        .collect();
    ours.push(("dmar_andd_names", names.join("|")));
    for (col, v) in ours {
        if row[col] != v {
            return Err(format!("{col}: ours {v:?}, manifest {:?}", row[col]));
        }
    }
    // Structure-level quirks, "TYPE@0xOFF: text".
    for w in row["dmar_warnings"]
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (place, text) = w.split_once(": ").ok_or(format!("odd warning {w:?}"))?;
        let (name, off) = place.split_once('@').ok_or(format!("odd warning {w:?}"))?;
        let off =
            usize::from_str_radix(off.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
        let found = d.warnings.iter().any(|ours| match &ours.location {
            acpi_tables::Location::Structure { name: n, index, .. } => {
                *n == name
                    && d.structures.get(*index).map(|s| s.offset()) == Some(off)
                    && match ours.kind {
                        WarningKind::RegisterBaseZero => {
                            text.contains("register base address is 0")
                        }
                        WarningKind::RmrrInvalidRange { base, limit } => {
                            text.contains(&format!("region {base:#x}-{limit:#x}"))
                        }
                        _ => false,
                    }
            }
            _ => false,
        });
        if !found {
            return Err(format!(
                "manifest warning {w:?} not among ours {:?}",
                d.warnings
            ));
        }
    }
    Ok(())
}

/// Physical memory made of a few placed byte strings; anything else is
/// unreadable.
struct Sparse(Vec<(u64, Vec<u8>)>);

impl PhysRead for Sparse {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), PhysReadError> {
        for (base, bytes) in &self.0 {
            if let Some(off) = phys.checked_sub(*base) {
                let off = off as usize;
                if let Some(src) = bytes.get(off..off + buf.len()) {
                    buf.copy_from_slice(src);
                    return Ok(());
                }
            }
        }
        Err(PhysReadError {
            phys,
            len: buf.len(),
        })
    }
}

/// For every machine with an RSDP dump: find the RSDP in a fake BIOS area,
/// walk to the XSDT (preferred) and list its entries; with the XSDT gone,
/// fall back to the RSDT.
#[test]
fn walker_on_real_rsdp_xsdt_rsdt() {
    let mut walked = 0;
    let mut fallbacks = 0;
    for m in machines() {
        let Ok(rsdp_bytes) = fs::read(m.join("rsdp.dat")) else {
            continue;
        };
        let rsdp = walk::Rsdp::parse(&rsdp_bytes).unwrap();
        let xsdt = fs::read(m.join("xsdt.dat")).ok();
        let rsdt = fs::read(m.join("rsdt.dat")).ok();
        // Put the RSDP at an odd 16-byte slot of the BIOS area after junk.
        let mut bios = vec![0u8; 0x100];
        bios.extend_from_slice(&rsdp_bytes);
        let mut regions = vec![(0xe0000u64, bios)];
        if let Some(x) = &xsdt {
            regions.push((rsdp.xsdt_address.unwrap(), x.clone()));
        }
        if let Some(r) = &rsdt {
            regions.push((u64::from(rsdp.rsdt_address), r.clone()));
        }
        let mem = Sparse(regions);
        let at = walk::find_rsdp(&mem, 0xe0000, 0x20000).expect("find RSDP");
        assert_eq!(at, 0xe0100);
        let tables = walk::walk(&mem, at).unwrap();
        let root =
            acpi_tables::walk::parse_root_table(xsdt.as_ref().or(rsdt.as_ref()).unwrap()).unwrap();
        assert_eq!(
            tables.root_kind,
            if xsdt.is_some() {
                RootKind::Xsdt
            } else {
                RootKind::Rsdt
            },
            "{}",
            m.display()
        );
        // The listed tables are not in memory: each entry is reported,
        // none is invented.
        assert!(tables.tables.is_empty());
        let unreadable: Vec<u64> = tables
            .warnings
            .iter()
            .filter_map(|w| match w {
                WalkWarning::Unreadable { error, .. } => Some(error.phys),
                _ => None,
            })
            .collect();
        let nonnull: Vec<u64> = root.entries.iter().copied().filter(|&a| a != 0).collect();
        assert_eq!(unreadable, nonnull);
        walked += 1;

        if xsdt.is_some() && rsdt.is_some() {
            let mem = Sparse(
                mem.0
                    .into_iter()
                    .filter(|(a, _)| Some(*a) != rsdp.xsdt_address)
                    .collect(),
            );
            let t = walk::walk(&mem, at).unwrap();
            assert_eq!(t.root_kind, RootKind::Rsdt);
            assert!(matches!(t.warnings[0], WalkWarning::XsdtFallback { .. }));
            fallbacks += 1;
        }
    }
    println!("walker: {walked} machines walked, {fallbacks} XSDT->RSDT fallbacks");
    assert_eq!(walked, 43);
}

/// Every corpus quirk in quirks.tsv is reported as a warning, not an error.
#[test]
fn quirks_are_warnings() {
    let text = fs::read_to_string(corpus_dir().join("quirks.tsv")).unwrap();
    let mut checked = 0;
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [_, machine, _table, file, quirk] = cols[..] else {
            panic!("odd quirks line {line:?}");
        };
        let bytes = fs::read(corpus_dir().join(machine).join(file)).unwrap();
        let t = decode(&bytes).unwrap_or_else(|e| panic!("{machine}/{file}: {e}"));
        let warns: Vec<String> = match &t {
            AnyTable::Dmar(d) => d.warnings.iter().map(|w| w.to_string()).collect(),
            AnyTable::Madt(d) => d.warnings.iter().map(|w| w.to_string()).collect(),
            AnyTable::Mcfg(d) => d.warnings.iter().map(|w| w.to_string()).collect(),
            AnyTable::Hpet(d) => d.warnings.iter().map(|w| w.to_string()).collect(),
            AnyTable::Fadt(d) => d.warnings.iter().map(|w| w.to_string()).collect(),
            _ => vec![],
        };
        let mut all = String::new();
        for w in &warns {
            writeln!(all, "{w}").unwrap();
        }
        if let Some(rest) = quirk.strip_prefix("header ") {
            assert!(
                all.contains(rest),
                "{machine}/{file}: {quirk:?} not in {all}"
            );
        } else if quirk.contains("register base address is 0") {
            assert!(
                all.contains("DRHD") && all.contains("register base address is 0"),
                "{all}"
            );
        } else if quirk.contains("region 0x0-0x0") {
            assert!(
                all.contains("RMRR") && all.contains("region 0x0-0x0"),
                "{all}"
            );
        } else if quirk.starts_with("second ") {
            // Decoded independently; nothing table-level to warn about.
        } else {
            panic!("unhandled quirk {quirk:?}");
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} quirks");
}

/// Every MADT, MCFG, HPET and FADT in the corpus goes through the functions the
/// kernel calls at boot (`acpi_tables::platform`, on the `acpi` crate), and what
/// they give agrees with our field-by-field decoders. A table the `acpi` crate
/// refuses must fail with an error, never a panic; the figures are printed and
/// pinned so a change in either is seen.
#[test]
fn sweep_kernel_view_of_platform_tables() {
    use acpi_tables::platform::image::{kernel_view, KernelView};
    let mut decoded: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    let mut panics = Vec::new();
    let mut mismatches = Vec::new();
    for m in machines() {
        let machine = m.file_name().unwrap().to_string_lossy().to_string();
        for f in files_with_ext(&m, "dat") {
            let file = f.file_name().unwrap().to_string_lossy().to_string();
            let bytes = fs::read(&f).unwrap();
            let what = format!("{machine}/{file}");
            let view = match catch_unwind(AssertUnwindSafe(|| kernel_view(&bytes))) {
                Err(_) => {
                    panics.push(what);
                    continue;
                }
                Ok(None) => continue,
                Ok(Some(Err(e))) => {
                    failed.push(format!("{what}: {e}"));
                    continue;
                }
                Ok(Some(Ok(v))) => v,
            };
            let sig = String::from_utf8_lossy(&bytes[..4]).into_owned();
            *decoded.entry(sig).or_default() += 1;
            if let Err(e) = agrees_with_our_decoder(&view, &bytes) {
                mismatches.push(format!("{what}: {e}"));
            }
        }
    }
    println!("kernel view: {decoded:?}, {} refused", failed.len());
    for f in &failed {
        println!("  refused: {f}");
    }
    assert!(panics.is_empty(), "{} panics: {panics:#?}", panics.len());
    assert!(
        mismatches.is_empty(),
        "{} disagreements: {mismatches:#?}",
        mismatches.len()
    );
    // `sweep_every_table_decodes` decodes 305 APIC, 305 FACP, 310 MCFG and 310
    // HPET. The `acpi` crate refuses three MADTs (two Inspiron 3558, one
    // Latitude E5450) whose local-APIC NMI entry names a LINT pin other than 0
    // or 1; on those machines the kernel boots without the MADT's data.
    let expect = [("APIC", 302), ("FACP", 305), ("MCFG", 310), ("HPET", 310)];
    assert_eq!(failed.len(), 3, "{failed:#?}");
    assert!(failed.iter().all(|f| f.contains("LINT")), "{failed:#?}");
    for (sig, n) in expect {
        assert_eq!(
            decoded.get(sig).copied(),
            Some(n),
            "count of {sig}: {failed:#?}"
        );
    }

    fn agrees_with_our_decoder(view: &KernelView, bytes: &[u8]) -> Result<(), String> {
        match (view, decode(bytes).map_err(|e| e.to_string())?) {
            (KernelView::Madt(i), AnyTable::Madt(m)) => {
                let ours: Vec<(u8, u64, u32)> = m
                    .entries
                    .iter()
                    .filter_map(|r| match r.entry {
                        MadtEntry::IoApic {
                            id,
                            address,
                            gsi_base,
                        } => Some((id, u64::from(address), gsi_base)),
                        _ => None,
                    })
                    .collect();
                let theirs: Vec<(u8, u64, u32)> = i
                    .io_apics
                    .iter()
                    .map(|a| (a.id, a.address, a.gsi_base))
                    .collect();
                if ours != theirs {
                    return Err(format!("IO-APICs {theirs:?} vs ours {ours:?}"));
                }
                let overrides = m
                    .entries
                    .iter()
                    .filter(|r| matches!(r.entry, MadtEntry::InterruptSourceOverride { .. }))
                    .count();
                if overrides != i.overrides.len() {
                    return Err(format!(
                        "{} overrides vs ours {overrides}",
                        i.overrides.len()
                    ));
                }
                Ok(())
            }
            (KernelView::Mcfg(w), AnyTable::Mcfg(m)) => {
                let ours: Vec<(u64, u16, u8, u8)> = m
                    .entries
                    .iter()
                    .map(|e| (e.base_address, e.segment, e.start_bus, e.end_bus))
                    .collect();
                let theirs: Vec<(u64, u16, u8, u8)> = w
                    .iter()
                    .map(|e| (e.base, e.segment, e.bus_start, e.bus_end))
                    .collect();
                (ours == theirs)
                    .then_some(())
                    .ok_or(format!("ECAM {theirs:x?} vs ours {ours:x?}"))
            }
            (KernelView::Hpet(base), AnyTable::Hpet(h)) => (*base == h.base_address.address)
                .then_some(())
                .ok_or(format!(
                    "HPET {base:#x} vs ours {:#x}",
                    h.base_address.address
                )),
            (KernelView::Fadt(_), AnyTable::Fadt(_)) => Ok(()),
            (v, t) => Err(format!("kinds differ: {v:?} vs {:?}", t.signature())),
        }
    }
}

/// Every real DMAR's ACPI namespace devices (type-5 scopes): each names an
/// ANDD and a requester ID. In the corpus they are LPSS I2C, UART and SPI
/// controllers (and one SD host) that the firmware runs in ACPI mode.
#[test]
fn sweep_namespace_devices_resolve_to_an_andd_and_a_requester_id() {
    let mut tables = 0;
    let mut devices = 0;
    let mut problems = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for m in machines() {
        let machine = m.file_name().unwrap().to_string_lossy().to_string();
        let Ok(bytes) = fs::read(m.join("dmar.dat")) else {
            continue;
        };
        let Ok(d) = Dmar::parse(&bytes) else { continue };
        let ns = d.namespace_devices();
        if ns.is_empty() {
            continue;
        }
        tables += 1;
        for n in ns {
            devices += 1;
            match n.problem() {
                Some(p) => problems.push(format!("{machine}: {p}")),
                None => *names.entry(n.name.unwrap_or_default()).or_default() += 1,
            }
        }
    }
    println!("namespace devices: {devices} in {tables} DMARs: {names:?}");
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(tables, 25, "DMARs with ACPI namespace devices");
    assert_eq!(names.get("\\_SB.PCI0.I2C0"), Some(&24), "{names:?}");
    assert!(names.keys().all(|n| n.starts_with("\\_SB.")), "{names:?}");
}
