//! `acpi` (the table list) and `dmar` (our decode of the DMAR).

use core::fmt::{self, Write};

use acpi_tables::dmar::{DeviceScope, Dmar, RemappingStructure};

use super::{CmdError, CmdResult, Command};
use crate::acpi;
use crate::console::Out;
use crate::kprintln;

fn lossy(bytes: &[u8]) -> alloc::string::String {
    bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

pub fn acpi(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let p = acpi::get().ok_or_else(|| CmdError::Failed("acpi: no ACPI information".into()))?;
    kprintln!("RSDP at {:#x}, ACPI revision {}", p.rsdp, p.acpi_revision);
    kprintln!("sig   address             length  rev  OEM     table id  OEM rev");
    for t in &p.tables {
        kprintln!(
            "{}  {:#018x}  {:>6}  {:>3}  {:<6}  {:<8}  {:#x}",
            lossy(&t.signature),
            t.address,
            t.length,
            t.revision,
            lossy(&t.oem_id),
            lossy(&t.oem_table_id),
            t.oem_revision
        );
    }
    kprintln!("({} tables)", p.tables.len());
    Ok(())
}

fn scope_line(out: &mut dyn Write, s: &DeviceScope) -> fmt::Result {
    writeln!(
        out,
        "    scope: {} {} (enumeration id {})",
        s.scope_type.name(),
        s.path_display(),
        s.enumeration_id
    )
}

/// A dmesg-flavoured summary of every remapping structure.
pub fn write_dmar(out: &mut dyn Write, d: &Dmar) -> fmt::Result {
    writeln!(
        out,
        "DMAR: host address width {} bits, flags {:#04x}{}{}{}",
        d.address_width_bits(),
        d.flags.bits(),
        if d.flags.contains(acpi_tables::dmar::DmarFlags::INTR_REMAP) {
            " INTR_REMAP"
        } else {
            ""
        },
        if d.flags
            .contains(acpi_tables::dmar::DmarFlags::X2APIC_OPT_OUT)
        {
            " X2APIC_OPT_OUT"
        } else {
            ""
        },
        if d.flags
            .contains(acpi_tables::dmar::DmarFlags::DMA_CTRL_PLATFORM_OPT_IN)
        {
            " DMA_CTRL_PLATFORM_OPT_IN"
        } else {
            ""
        },
    )?;
    for (i, st) in d.structures.iter().enumerate() {
        match st {
            RemappingStructure::Drhd(u) => {
                writeln!(
                    out,
                    "[{i}] DRHD register base {:#x} ({} KiB), segment {}, flags {:#x}{}",
                    u.register_base,
                    u.register_size() / 1024,
                    u.segment,
                    u.flags.bits(),
                    if u.include_pci_all() {
                        " INCLUDE_PCI_ALL"
                    } else {
                        ""
                    }
                )?;
                for s in &u.scopes {
                    scope_line(out, s)?;
                }
            }
            RemappingStructure::Rmrr(r) => {
                writeln!(
                    out,
                    "[{i}] RMRR [{:#x}-{:#x}] segment {}",
                    r.base, r.limit, r.segment
                )?;
                for s in &r.scopes {
                    scope_line(out, s)?;
                }
            }
            RemappingStructure::Atsr(a) => {
                writeln!(
                    out,
                    "[{i}] ATSR segment {}, flags {:#x}",
                    a.segment,
                    a.flags.bits()
                )?;
                for s in &a.scopes {
                    scope_line(out, s)?;
                }
            }
            RemappingStructure::Rhsa(r) => writeln!(
                out,
                "[{i}] RHSA register base {:#x}, proximity domain {}",
                r.register_base, r.proximity_domain
            )?,
            RemappingStructure::Andd(a) => writeln!(
                out,
                "[{i}] ANDD device {} name \"{}\"",
                a.device_number,
                a.name_lossy()
            )?,
            RemappingStructure::Satc(s) => {
                writeln!(
                    out,
                    "[{i}] SATC segment {}, flags {:#x}",
                    s.segment,
                    s.flags.bits()
                )?;
                for sc in &s.scopes {
                    scope_line(out, sc)?;
                }
            }
            RemappingStructure::Unknown(u) => writeln!(
                out,
                "[{i}] type {} ({}), {} bytes: skipped",
                u.kind,
                acpi_tables::dmar::structure_name(u.kind),
                u.length
            )?,
        }
    }
    for w in &d.warnings {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

pub fn dmar(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let p = acpi::get().ok_or_else(|| CmdError::Failed("dmar: no ACPI information".into()))?;
    match &p.dmar {
        None => Err(CmdError::Failed(
            "dmar: the firmware has no DMAR table (no VT-d; try the default profile, which has intel-iommu)".into(),
        )),
        Some(Err(e)) => Err(CmdError::Failed(alloc::format!("dmar: malformed table: {e}"))),
        Some(Ok(d)) => {
            let _ = write_dmar(&mut Out, d);
            Ok(())
        }
    }
}
