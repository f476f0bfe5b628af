//! Text decode of ACPI tables for `acpi-decode`, in the spirit of `iasl -d`:
//! one `Name : value` line per field that matters, addresses in hex, one
//! block per structure, device scopes as `bus:dev.fn` paths.

use std::fmt::{self, Write as _};

use acpi_tables::any::{decode, AnyTable};
use acpi_tables::dmar::{Dmar, RemappingStructure};
use acpi_tables::platform::image::kernel_view;
use acpi_tables::walk::{RootTable, Rsdp};
use acpi_tables::{Error, Lossy, SdtHeader, Warning};

mod platform;
use platform::{fadt, hpet, kernel, madt, mcfg};

/// A decoded file: the text and the warnings (already formatted, without
/// the `warning: ` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub warnings: Vec<String>,
}

/// Decodes one table image. A malformed table is an `Err`.
pub fn decode_bytes(bytes: &[u8]) -> Result<Decoded, Error> {
    let t = decode(bytes)?;
    let mut out = String::new();
    let warnings: &[Warning] = match &t {
        AnyTable::Dmar(d) => {
            dmar(&mut out, d);
            &d.warnings
        }
        AnyTable::Madt(m) => {
            madt(&mut out, m);
            &m.warnings
        }
        AnyTable::Mcfg(m) => {
            mcfg(&mut out, m);
            &m.warnings
        }
        AnyTable::Hpet(h) => {
            hpet(&mut out, h);
            &h.warnings
        }
        AnyTable::Fadt(f) => {
            fadt(&mut out, f);
            &f.warnings
        }
        AnyTable::Root(r) => {
            root(&mut out, r);
            &r.warnings
        }
        AnyTable::Rsdp(r) => {
            rsdp(&mut out, r);
            &[]
        }
        AnyTable::Other(h) => {
            header(&mut out, h);
            line(
                &mut out,
                0,
                "Decoder",
                "none for this signature (header checked only)",
            );
            &[]
        }
    };
    if let Some(view) = kernel_view(bytes) {
        kernel(&mut out, view);
    }
    Ok(Decoded {
        text: out,
        warnings: warnings.iter().map(|w| w.to_string()).collect(),
    })
}

/// `Name : value` with the name right-aligned like iasl does.
fn line(out: &mut String, indent: usize, name: &str, value: impl fmt::Display) {
    let _ = writeln!(out, "{:indent$}{name:>28} : {value}", "");
}

/// `(A | B | 0x80)` for the set flags; unknown bits in hex.
fn flag_names<F: bitflags::Flags>(f: &F) -> String
where
    F::Bits: fmt::LowerHex + PartialEq + Default + Copy,
{
    let mut names: Vec<String> = f.iter_names().map(|(n, _)| n.to_string()).collect();
    let known = F::from_bits_truncate(f.bits());
    let unknown = F::from_bits_retain(f.bits()).difference(known);
    if unknown.bits() != F::Bits::default() {
        names.push(format!("{:#x}", unknown.bits()));
    }
    if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(" | "))
    }
}

fn header(out: &mut String, h: &SdtHeader) {
    line(
        out,
        0,
        "Signature",
        format_args!("\"{}\"", h.signature_lossy()),
    );
    line(
        out,
        0,
        "Table Length",
        format_args!("{:#010x} ({})", h.length, h.length),
    );
    line(out, 0, "Revision", format_args!("{:#04x}", h.revision));
    line(out, 0, "Checksum", format_args!("{:#04x}", h.checksum));
    line(out, 0, "Oem ID", format_args!("\"{}\"", h.oem_id_lossy()));
    line(
        out,
        0,
        "Oem Table ID",
        format_args!("\"{}\"", h.oem_table_id_lossy()),
    );
    line(
        out,
        0,
        "Oem Revision",
        format_args!("{:#010x}", h.oem_revision),
    );
    line(
        out,
        0,
        "Asl Compiler ID",
        format_args!("\"{}\"", h.creator_id_lossy()),
    );
    line(
        out,
        0,
        "Asl Compiler Revision",
        format_args!("{:#010x}", h.creator_revision),
    );
    out.push('\n');
}

fn dmar(out: &mut String, d: &Dmar) {
    header(out, &d.header);
    line(
        out,
        0,
        "Host Address Width",
        format_args!(
            "{:#04x} ({}-bit DMA addresses)",
            d.host_address_width,
            d.address_width_bits()
        ),
    );
    line(
        out,
        0,
        "Flags",
        format_args!("{:#04x}{}", d.flags.bits(), flag_names(&d.flags)),
    );
    for (i, s) in d.structures.iter().enumerate() {
        out.push('\n');
        let name = acpi_tables::dmar::structure_name(s.kind());
        let long = match s.kind() {
            0 => "Hardware Unit Definition",
            1 => "Reserved Memory Region",
            2 => "Root Port ATS Capability",
            3 => "Remapping Hardware Static Affinity",
            4 => "ACPI Namespace Device Declaration",
            5 => "SoC Integrated Address Translation Cache",
            6 => "SoC Integrated Device Property (not decoded)",
            _ => "Unknown (skipped)",
        };
        let _ = writeln!(out, "[{:03X}h] {name} #{i}: {long}", s.offset());
        match s {
            RemappingStructure::Drhd(u) => {
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{:#04x}{}", u.flags.bits(), flag_names(&u.flags)),
                );
                line(
                    out,
                    4,
                    "Size",
                    format_args!(
                        "{:#04x} ({} page(s), {:#x} bytes)",
                        u.size,
                        u.register_pages(),
                        u.register_size()
                    ),
                );
                line(
                    out,
                    4,
                    "PCI Segment Number",
                    format_args!("{:04x}", u.segment),
                );
                line(
                    out,
                    4,
                    "Register Base Address",
                    format_args!("{:#018x}", u.register_base),
                );
            }
            RemappingStructure::Rmrr(r) => {
                line(
                    out,
                    4,
                    "PCI Segment Number",
                    format_args!("{:04x}", r.segment),
                );
                line(out, 4, "Base Address", format_args!("{:#018x}", r.base));
                line(
                    out,
                    4,
                    "End Address (limit)",
                    format_args!("{:#018x}", r.limit),
                );
                match r.size() {
                    Some(sz) => line(out, 4, "Size", format_args!("{sz:#x}")),
                    None => line(out, 4, "Size", "(empty or inverted range)"),
                }
            }
            RemappingStructure::Atsr(a) => {
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{:#04x}{}", a.flags.bits(), flag_names(&a.flags)),
                );
                line(
                    out,
                    4,
                    "PCI Segment Number",
                    format_args!("{:04x}", a.segment),
                );
            }
            RemappingStructure::Rhsa(h) => {
                line(
                    out,
                    4,
                    "Base Address",
                    format_args!("{:#018x}", h.register_base),
                );
                line(
                    out,
                    4,
                    "Proximity Domain",
                    format_args!("{:#010x}", h.proximity_domain),
                );
            }
            RemappingStructure::Andd(a) => {
                line(
                    out,
                    4,
                    "Device Number",
                    format_args!("{:#04x}", a.device_number),
                );
                line(
                    out,
                    4,
                    "Device Name",
                    format_args!("\"{}\"", a.name_lossy()),
                );
            }
            RemappingStructure::Satc(a) => {
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{:#04x}{}", a.flags.bits(), flag_names(&a.flags)),
                );
                line(
                    out,
                    4,
                    "PCI Segment Number",
                    format_args!("{:04x}", a.segment),
                );
            }
            RemappingStructure::Unknown(u) => {
                line(out, 4, "Type", format_args!("{:#06x}", u.kind));
                line(out, 4, "Length", format_args!("{:#06x}", u.length));
            }
        }
        for sc in s.scopes() {
            let flags = if sc.flags != 0 {
                format!(", flags {:#04x}", sc.flags)
            } else {
                String::new()
            };
            line(
                out,
                4,
                &format!("Device Scope [{:03X}h]", sc.offset),
                format_args!(
                    "{} {} (enumeration id {:#04x}{flags})",
                    sc.scope_type.name(),
                    sc.path_display(),
                    sc.enumeration_id
                ),
            );
        }
    }
}

fn root(out: &mut String, r: &RootTable) {
    header(out, &r.header);
    let width = r.kind.entry_size() * 2 + 2;
    for (i, a) in r.entries.iter().enumerate() {
        line(
            out,
            0,
            &format!("ACPI Table Address {i:>3}"),
            format_args!("{a:#0width$x}"),
        );
    }
}

fn rsdp(out: &mut String, r: &Rsdp) {
    line(out, 0, "Signature", "\"RSD PTR \"");
    line(out, 0, "Checksum", format_args!("{:#04x}", r.checksum));
    line(out, 0, "Oem ID", format_args!("\"{}\"", Lossy(&r.oem_id)));
    line(out, 0, "Revision", format_args!("{:#04x}", r.revision));
    line(
        out,
        0,
        "RSDT Address",
        format_args!("{:#010x}", r.rsdt_address),
    );
    if let Some(l) = r.length {
        line(out, 0, "Length", format_args!("{l:#010x}"));
    }
    if let Some(x) = r.xsdt_address {
        line(out, 0, "XSDT Address", format_args!("{x:#018x}"));
    }
    if let Some(c) = r.extended_checksum {
        line(out, 0, "Extended Checksum", format_args!("{c:#04x}"));
    }
}
