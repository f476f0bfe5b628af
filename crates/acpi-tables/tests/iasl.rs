//! Our DMAR decode against ACPICA's: every `dmar.dsl` in the corpus (written
//! by `iasl -d`, version 20200925) is read by a small tolerant parser and
//! compared field by field with what `dmar::parse` makes of `dmar.dat`.
//! That iasl predates SATC: it prints type 5 as unknown and stops, so the
//! comparison covers the structures before that point.

mod common;

use std::fs;

use acpi_tables::dmar::{self, RemappingStructure};

use common::*;

#[derive(Debug, Default, Clone, PartialEq)]
struct DslScope {
    offset: usize,
    ty: u8,
    length: Option<u8>,
    enumeration_id: Option<u8>,
    bus: Option<u8>,
    path: Vec<(u8, u8)>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct DslStructure {
    offset: usize,
    ty: u16,
    length: Option<u16>,
    flags: Option<u8>,
    segment: Option<u16>,
    register_base: Option<u64>,
    base: Option<u64>,
    limit: Option<u64>,
    proximity_domain: Option<u32>,
    device_number: Option<u8>,
    device_name: Option<String>,
    scopes: Vec<DslScope>,
}

#[derive(Debug, Default)]
struct Dsl {
    signature: String,
    length: Option<usize>,
    haw: Option<u8>,
    flags: Option<u8>,
    structures: Vec<DslStructure>,
    /// iasl gave up at this structure (type 5 in this iasl version).
    stopped_at: Option<usize>,
}

fn hex<T: TryFrom<u64>>(v: &str) -> Option<T> {
    let tok = v.split_whitespace().next()?;
    T::try_from(u64::from_str_radix(tok, 16).ok()?).ok()
}

/// Reads the `[OFFh DEC LEN] Name : Value` lines of an iasl data-table
/// disassembly. Unknown fields are ignored; the structure the fields belong
/// to is tracked by the `Subtable Type` and `Device Scope Type` lines.
fn parse_dsl(text: &str) -> Dsl {
    let mut d = Dsl::default();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("**** Unknown DMAR subtable") {
            d.stopped_at = Some(d.structures.len().saturating_sub(1));
            break;
        }
        if line.starts_with("Raw Table Data") {
            break;
        }
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((pos, field)) = rest.split_once(']') else {
            continue;
        };
        let Some(offset) = pos
            .split_whitespace()
            .next()
            .and_then(|o| o.strip_suffix('h'))
        else {
            continue;
        };
        let Ok(offset) = usize::from_str_radix(offset, 16) else {
            continue;
        };
        let Some((name, value)) = field.split_once(" : ") else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        let st = d.structures.last_mut();
        match (name, st) {
            ("Signature", _) => {
                d.signature = value.split('"').nth(1).unwrap_or_default().to_string()
            }
            ("Table Length", _) => d.length = hex(value),
            ("Host Address Width", _) => d.haw = hex(value),
            ("Flags", None) => d.flags = hex(value),
            ("Subtable Type", _) => {
                d.structures.push(DslStructure {
                    offset,
                    ty: hex(value).expect("subtable type"),
                    ..Default::default()
                });
                if value.contains("Unknown Subtable Type") {
                    d.stopped_at = Some(d.structures.len() - 1);
                    break;
                }
            }
            (_, None) => {}
            ("Length", Some(s)) => s.length = hex(value),
            ("Flags", Some(s)) => s.flags = hex(value),
            ("PCI Segment Number", Some(s)) => s.segment = hex(value),
            ("Register Base Address", Some(s)) => s.register_base = hex(value),
            // RMRR base, or RHSA's register base.
            ("Base Address", Some(s)) => s.base = hex(value),
            ("End Address (limit)", Some(s)) => s.limit = hex(value),
            ("Proximity Domain", Some(s)) => s.proximity_domain = hex(value),
            ("Device Number", Some(s)) => s.device_number = hex(value),
            ("Device Name", Some(s)) => s.device_name = Some(value.trim_matches('"').to_string()),
            ("Device Scope Type", Some(s)) => s.scopes.push(DslScope {
                offset,
                ty: hex(value).expect("scope type"),
                ..Default::default()
            }),
            ("Entry Length", Some(s)) => {
                if let Some(sc) = s.scopes.last_mut() {
                    sc.length = hex(value);
                }
            }
            ("Enumeration ID", Some(s)) => {
                if let Some(sc) = s.scopes.last_mut() {
                    sc.enumeration_id = hex(value);
                }
            }
            ("PCI Bus Number", Some(s)) => {
                if let Some(sc) = s.scopes.last_mut() {
                    sc.bus = hex(value);
                }
            }
            ("PCI Path", Some(s)) => {
                let (dev, func) = value.split_once(',').expect("PCI Path d,f");
                let pair = (hex(dev).expect("dev"), hex(func).expect("fn"));
                s.scopes
                    .last_mut()
                    .expect("path outside scope")
                    .path
                    .push(pair);
            }
            _ => {}
        }
    }
    d
}

/// What our decode says, in the same shape.
fn ours_as_dsl(s: &RemappingStructure) -> DslStructure {
    let scopes = s
        .scopes()
        .iter()
        .map(|sc| DslScope {
            offset: sc.offset,
            ty: sc.scope_type.as_u8(),
            length: Some(6 + 2 * sc.path.len() as u8),
            enumeration_id: Some(sc.enumeration_id),
            bus: Some(sc.start_bus),
            path: sc.path.iter().map(|p| (p.device, p.function)).collect(),
        })
        .collect();
    let mut d = DslStructure {
        offset: s.offset(),
        ty: s.kind(),
        scopes,
        ..Default::default()
    };
    match s {
        RemappingStructure::Drhd(u) => {
            d.flags = Some(u.flags.bits());
            d.segment = Some(u.segment);
            d.register_base = Some(u.register_base);
        }
        RemappingStructure::Rmrr(r) => {
            d.segment = Some(r.segment);
            d.base = Some(r.base);
            d.limit = Some(r.limit);
        }
        RemappingStructure::Atsr(a) => {
            d.flags = Some(a.flags.bits());
            d.segment = Some(a.segment);
        }
        RemappingStructure::Rhsa(h) => {
            d.base = Some(h.register_base);
            d.proximity_domain = Some(h.proximity_domain);
        }
        RemappingStructure::Andd(a) => {
            d.device_number = Some(a.device_number);
            d.device_name = Some(a.name_string());
        }
        RemappingStructure::Satc(_) | RemappingStructure::Unknown(_) => {}
    }
    d
}

#[test]
fn dmar_agrees_with_iasl() {
    let mut compared_tables = 0;
    let mut compared_structures = 0;
    let mut compared_scopes = 0;
    let mut truncated_by_iasl = 0;
    for m in machines() {
        let dsl_path = m.join("dmar.dsl");
        let Ok(text) = fs::read_to_string(&dsl_path) else {
            assert!(
                !m.join("dmar.dat").exists(),
                "{}: dmar.dat without dmar.dsl",
                m.display()
            );
            continue;
        };
        let bytes = fs::read(m.join("dmar.dat")).expect("dmar.dat beside dmar.dsl");
        let ours = dmar::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        let iasl = parse_dsl(&text);
        let name = m.file_name().unwrap().to_string_lossy().to_string();

        assert_eq!(iasl.signature, "DMAR", "{name}");
        assert_eq!(
            iasl.length,
            Some(ours.header.length as usize),
            "{name}: length"
        );
        assert_eq!(iasl.haw, Some(ours.host_address_width), "{name}: HAW");
        assert_eq!(iasl.flags, Some(ours.flags.bits()), "{name}: flags");
        assert!(
            !iasl.structures.is_empty(),
            "{name}: iasl decode has no structures"
        );

        // Up to where iasl stopped, the structure lists are identical.
        let upto = iasl.stopped_at.unwrap_or(iasl.structures.len());
        if let Some(at) = iasl.stopped_at {
            truncated_by_iasl += 1;
            assert_eq!(
                iasl.structures[at].ty, 5,
                "{name}: iasl stopped at a non-SATC"
            );
            assert_eq!(ours.structures[at].kind(), 5, "{name}");
            assert_eq!(
                ours.structures[at].offset(),
                iasl.structures[at].offset,
                "{name}"
            );
        } else {
            assert_eq!(
                ours.structures.len(),
                iasl.structures.len(),
                "{name}: structure count"
            );
        }
        for (i, theirs) in iasl.structures[..upto].iter().enumerate() {
            let mine = ours_as_dsl(&ours.structures[i]);
            let mut theirs = theirs.clone();
            // iasl prints the structure length; we compare it through the
            // offsets (next structure's offset) instead.
            theirs.length = None;
            // iasl's ANDD name field may carry the raw bytes verbatim.
            assert_eq!(mine, theirs, "{name}: structure #{i}");
            compared_structures += 1;
            compared_scopes += mine.scopes.len();
        }
        // Per-type counts over the part iasl decoded.
        for ty in 0..=6u16 {
            let a = ours.structures[..upto]
                .iter()
                .filter(|s| s.kind() == ty)
                .count();
            let b = iasl.structures[..upto]
                .iter()
                .filter(|s| s.ty == ty)
                .count();
            assert_eq!(a, b, "{name}: count of type {ty}");
        }
        compared_tables += 1;
    }
    println!(
        "iasl comparison: {compared_tables} DMAR tables, {compared_structures} structures, \
         {compared_scopes} device scopes agree; {truncated_by_iasl} tables cut short by iasl at SATC"
    );
    assert_eq!(compared_tables, 260);
    assert_eq!(truncated_by_iasl, 4);
}

/// The manifest's per-type counts cover the whole table (also past SATC).
#[test]
fn dmar_counts_match_manifest() {
    let rows = manifest();
    let mut n = 0;
    for row in rows.iter().filter(|r| r["table"] == "DMAR") {
        let path = corpus_dir().join(&row["machine_id"]).join(&row["file"]);
        let d = dmar::parse(&fs::read(&path).unwrap()).unwrap();
        let c = d.counts();
        let got = [c.drhd, c.rmrr, c.atsr, c.rhsa, c.andd, c.satc, c.other];
        let cols = [
            "n_drhd", "n_rmrr", "n_atsr", "n_rhsa", "n_andd", "n_satc", "n_other",
        ];
        let want: Vec<usize> = cols.iter().map(|c| row[*c].parse().unwrap()).collect();
        assert_eq!(got.to_vec(), want, "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 260);
}

#[test]
fn dsl_parser_reads_a_known_decode() {
    // Guard against a parser that silently reads nothing.
    let text = "[024h 0036   1]           Host Address Width : 26\n\
                [025h 0037   1]                        Flags : 03\n\
                [030h 0048   2]                Subtable Type : 0000 [Hardware Unit Definition]\n\
                [034h 0052   1]                        Flags : 01\n\
                [038h 0056   8]        Register Base Address : 00000000FED90000\n\
                [040h 0064   1]            Device Scope Type : 02 [PCI Bridge Device]\n\
                [045h 0069   1]               PCI Bus Number : 00\n\
                [046h 0070   2]                     PCI Path : 1C,04\n\
                [048h 0072   2]                     PCI Path : 00,00\n\
                [068h 0104   2]                Subtable Type : 0005 [Unknown Subtable Type]\n";
    let d = parse_dsl(text);
    assert_eq!(d.haw, Some(0x26));
    assert_eq!(d.flags, Some(3));
    assert_eq!(d.structures.len(), 2);
    assert_eq!(d.structures[0].flags, Some(1));
    assert_eq!(d.structures[0].register_base, Some(0xfed9_0000));
    assert_eq!(d.structures[0].scopes[0].path, [(0x1c, 4), (0, 0)]);
    assert_eq!(d.stopped_at, Some(1));
}
