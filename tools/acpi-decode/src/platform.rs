//! The platform tables (MADT, MCFG, HPET, FADT): every field, as `iasl -d` lists
//! them, then the `[Kernel view]`: what `acpi_tables::platform`, the functions the
//! kernel calls at boot, takes from the table.

use acpi_tables::fadt::Fadt;
use acpi_tables::hpet::Hpet;
use acpi_tables::madt::{Madt, MadtEntry};
use acpi_tables::mcfg::Mcfg;
use acpi_tables::platform::image::{DumpError, KernelView};
use acpi_tables::GenericAddress;

use super::*;

/// What the kernel takes from the table: the output of the same
/// `acpi_tables::platform` functions it calls at boot (on the `acpi` crate).
pub(crate) fn kernel(out: &mut String, view: Result<KernelView, DumpError>) {
    out.push_str("\n[Kernel view]\n");
    let view = match view {
        Ok(v) => v,
        Err(e) => {
            line(out, 0, "Refused", e);
            return;
        }
    };
    match view {
        KernelView::Madt(i) => {
            line(out, 0, "Local APIC", format!("{:#x}", i.local_apic));
            line(out, 0, "Dual 8259", i.has_8259);
            let usable = i.cpus.iter().filter(|c| c.usable).count();
            line(
                out,
                0,
                "CPUs",
                format!("{} ({usable} usable)", i.cpus.len()),
            );
            for io in &i.io_apics {
                let v = format!(
                    "id {} at {:#x}, GSI base {}",
                    io.id, io.address, io.gsi_base
                );
                line(out, 0, "IO-APIC", v);
            }
            for o in &i.overrides {
                let v = format!(
                    "ISA IRQ {} -> GSI {}{}{}",
                    o.isa_irq,
                    o.gsi,
                    if o.active_low { ", active low" } else { "" },
                    if o.level { ", level" } else { "" }
                );
                line(out, 0, "Override", v);
            }
        }
        KernelView::Mcfg(ws) => {
            for w in &ws {
                let v = format!(
                    "{:#x} segment {} buses {:#04x}-{:#04x}",
                    w.base, w.segment, w.bus_start, w.bus_end
                );
                line(out, 0, "ECAM window", v);
            }
        }
        KernelView::Hpet(base) => line(out, 0, "HPET base", format!("{base:#x}")),
        KernelView::Fadt(f) => {
            let port = |p: Option<u16>| p.map_or("none".to_string(), |p| format!("{p:#x}"));
            line(out, 0, "PM1a control", port(f.pm1a_cnt));
            line(out, 0, "PM1b control", port(f.pm1b_cnt));
            let reset = f.reset.map_or("none".to_string(), |(p, v)| {
                format!("write {v:#x} to port {p:#x}")
            });
            line(out, 0, "Reset", reset);
            line(out, 0, "Flags", format!("{:#010x}", f.flags));
        }
    }
}

pub(crate) fn madt(out: &mut String, m: &Madt) {
    header(out, &m.header);
    line(
        out,
        0,
        "Local Apic Address",
        format_args!("{:#010x}", m.local_apic_address),
    );
    line(
        out,
        0,
        "Flags",
        format_args!("{:#010x}{}", m.flags.bits(), flag_names(&m.flags)),
    );
    for (i, r) in m.entries.iter().enumerate() {
        out.push('\n');
        let _ = writeln!(out, "[{:03X}h] #{i} {}", r.offset, r.entry.name());
        match r.entry {
            MadtEntry::LocalApic {
                processor_uid,
                apic_id,
                flags,
            } => {
                line(out, 4, "Processor ID", format_args!("{processor_uid:#04x}"));
                line(out, 4, "Local Apic ID", format_args!("{apic_id:#04x}"));
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{flags:#010x}{}", lapic_flags(flags)),
                );
            }
            MadtEntry::IoApic {
                id,
                address,
                gsi_base,
            } => {
                line(out, 4, "I/O Apic ID", format_args!("{id:#04x}"));
                line(out, 4, "Address", format_args!("{address:#010x}"));
                line(out, 4, "Interrupt", format_args!("{gsi_base}"));
            }
            MadtEntry::InterruptSourceOverride {
                bus,
                source,
                gsi,
                flags,
            } => {
                line(out, 4, "Bus", format_args!("{bus}"));
                line(out, 4, "Source", format_args!("{source}"));
                line(out, 4, "Interrupt", format_args!("{gsi}"));
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{flags:#06x}{}", inti_flags(flags)),
                );
            }
            MadtEntry::NmiSource { flags, gsi } => {
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{flags:#06x}{}", inti_flags(flags)),
                );
                line(out, 4, "Interrupt", format_args!("{gsi}"));
            }
            MadtEntry::LocalApicNmi {
                processor_uid,
                flags,
                lint,
            } => {
                line(out, 4, "Processor ID", format_args!("{processor_uid:#04x}"));
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{flags:#06x}{}", inti_flags(flags)),
                );
                line(out, 4, "Interrupt Input LINT", format_args!("{lint}"));
            }
            MadtEntry::LocalApicAddressOverride { address } => {
                line(out, 4, "Apic Address", format_args!("{address:#018x}"));
            }
            MadtEntry::X2Apic {
                x2apic_id,
                flags,
                processor_uid,
            } => {
                line(
                    out,
                    4,
                    "Processor x2Apic ID",
                    format_args!("{x2apic_id:#010x}"),
                );
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{flags:#010x}{}", lapic_flags(flags)),
                );
                line(
                    out,
                    4,
                    "Processor UID",
                    format_args!("{processor_uid:#010x}"),
                );
            }
            MadtEntry::X2ApicNmi {
                flags,
                processor_uid,
                lint,
            } => {
                line(
                    out,
                    4,
                    "Flags",
                    format_args!("{flags:#06x}{}", inti_flags(flags)),
                );
                line(
                    out,
                    4,
                    "Processor UID",
                    format_args!("{processor_uid:#010x}"),
                );
                line(out, 4, "Interrupt Input LINT", format_args!("{lint}"));
            }
            MadtEntry::Unknown { kind, length } => {
                line(out, 4, "Type", format_args!("{kind:#04x}"));
                line(out, 4, "Length", format_args!("{length:#04x}"));
            }
        }
    }
}

/// Local APIC flags (ACPI 6.5 Table 5.23).
fn lapic_flags(f: u32) -> &'static str {
    match f & 3 {
        0 => " (disabled)",
        1 | 3 => " (enabled)",
        _ => " (online capable)",
    }
}

/// MPS INTI flags (ACPI 6.5 Table 5.26): polarity bits 1:0, trigger 3:2.
fn inti_flags(f: u16) -> String {
    let pol = ["conforming", "active high", "reserved", "active low"][usize::from(f & 3)];
    let trig = ["conforming", "edge", "reserved", "level"][usize::from((f >> 2) & 3)];
    format!(" (polarity {pol}, trigger {trig})")
}

pub(crate) fn mcfg(out: &mut String, m: &Mcfg) {
    header(out, &m.header);
    for (i, e) in m.entries.iter().enumerate() {
        let _ = writeln!(out, "[{:03X}h] #{i} ECAM allocation", e.offset);
        line(
            out,
            4,
            "Base Address",
            format_args!("{:#018x}", e.base_address),
        );
        line(
            out,
            4,
            "PCI Segment Group Number",
            format_args!("{:04x}", e.segment),
        );
        line(
            out,
            4,
            "Start Bus Number",
            format_args!("{:02x}", e.start_bus),
        );
        line(out, 4, "End Bus Number", format_args!("{:02x}", e.end_bus));
    }
}

fn gas(g: &GenericAddress) -> String {
    g.to_string()
}

pub(crate) fn hpet(out: &mut String, h: &Hpet) {
    header(out, &h.header);
    line(
        out,
        0,
        "Hardware Block ID",
        format_args!("{:#010x}", h.event_timer_block_id),
    );
    line(
        out,
        4,
        "Hardware Rev ID",
        format_args!("{:#04x}", h.hardware_rev_id()),
    );
    line(out, 4, "Comparators", h.comparator_count());
    line(out, 4, "64-bit Counter", h.counter_64bit());
    line(out, 4, "Legacy Replacement", h.legacy_replacement());
    line(
        out,
        4,
        "PCI Vendor ID",
        format_args!("{:#06x}", h.pci_vendor_id()),
    );
    line(out, 0, "Base Address", gas(&h.base_address));
    line(out, 0, "Hpet Number", h.hpet_number);
    line(out, 0, "Minimum Clock Ticks", h.min_tick);
    line(
        out,
        0,
        "Flags (decoded below)",
        format_args!("{:#04x}", h.page_protection),
    );
    let prot = match h.protection() {
        0 => "none",
        1 => "4K",
        2 => "64K",
        _ => "reserved",
    };
    line(out, 4, "Page Protect", prot);
}

fn opt_gas(out: &mut String, name: &str, g: &Option<GenericAddress>) {
    if let Some(g) = g {
        line(out, 0, name, gas(g));
    }
}

pub(crate) fn fadt(out: &mut String, f: &Fadt) {
    header(out, &f.header);
    line(
        out,
        0,
        "FACS Address",
        format_args!("{:#010x}", f.firmware_ctrl),
    );
    line(out, 0, "DSDT Address", format_args!("{:#010x}", f.dsdt));
    line(out, 0, "PM Profile", f.preferred_pm_profile);
    line(out, 0, "SCI Interrupt", f.sci_int);
    line(
        out,
        0,
        "SMI Command Port",
        format_args!("{:#010x}", f.smi_cmd),
    );
    line(
        out,
        0,
        "ACPI Enable Value",
        format_args!("{:#04x}", f.acpi_enable),
    );
    line(
        out,
        0,
        "ACPI Disable Value",
        format_args!("{:#04x}", f.acpi_disable),
    );
    line(
        out,
        0,
        "PM1A Event Block Address",
        format_args!("{:#010x}", f.pm1a_evt_blk),
    );
    line(
        out,
        0,
        "PM1B Event Block Address",
        format_args!("{:#010x}", f.pm1b_evt_blk),
    );
    line(
        out,
        0,
        "PM1A Control Block Address",
        format_args!("{:#010x}", f.pm1a_cnt_blk),
    );
    line(
        out,
        0,
        "PM1B Control Block Address",
        format_args!("{:#010x}", f.pm1b_cnt_blk),
    );
    line(
        out,
        0,
        "PM2 Control Block Address",
        format_args!("{:#010x}", f.pm2_cnt_blk),
    );
    line(
        out,
        0,
        "PM Timer Block Address",
        format_args!("{:#010x}", f.pm_tmr_blk),
    );
    line(
        out,
        0,
        "GPE0 Block Address",
        format_args!("{:#010x}", f.gpe0_blk),
    );
    line(
        out,
        0,
        "GPE1 Block Address",
        format_args!("{:#010x}", f.gpe1_blk),
    );
    line(out, 0, "PM1 Event Block Length", f.pm1_evt_len);
    line(out, 0, "PM1 Control Block Length", f.pm1_cnt_len);
    line(out, 0, "PM Timer Block Length", f.pm_tmr_len);
    line(out, 0, "GPE0 Block Length", f.gpe0_blk_len);
    line(out, 0, "GPE1 Block Length", f.gpe1_blk_len);
    line(
        out,
        0,
        "RTC Century Index",
        format_args!("{:#04x}", f.century),
    );
    line(
        out,
        0,
        "Boot Flags (IA-PC)",
        format_args!(
            "{:#06x}{}",
            f.iapc_boot_arch.bits(),
            flag_names(&f.iapc_boot_arch)
        ),
    );
    line(
        out,
        0,
        "Flags",
        format_args!("{:#010x}{}", f.flags.bits(), flag_names(&f.flags)),
    );
    opt_gas(out, "Reset Register", &f.reset_reg);
    if let Some(v) = f.reset_value {
        line(out, 0, "Value to cause reset", format_args!("{v:#04x}"));
    }
    if let Some(v) = f.minor_version {
        line(out, 0, "FADT Minor Revision", format_args!("{v:#04x}"));
    }
    if let Some(v) = f.x_firmware_ctrl {
        line(out, 0, "X_FACS Address", format_args!("{v:#018x}"));
    }
    if let Some(v) = f.x_dsdt {
        line(out, 0, "X_DSDT Address", format_args!("{v:#018x}"));
    }
    opt_gas(out, "X_PM1A Event Block", &f.x_pm1a_evt_blk);
    opt_gas(out, "X_PM1B Event Block", &f.x_pm1b_evt_blk);
    opt_gas(out, "X_PM1A Control Block", &f.x_pm1a_cnt_blk);
    opt_gas(out, "X_PM1B Control Block", &f.x_pm1b_cnt_blk);
    opt_gas(out, "X_PM2 Control Block", &f.x_pm2_cnt_blk);
    opt_gas(out, "X_PM Timer Block", &f.x_pm_tmr_blk);
    opt_gas(out, "X_GPE0 Block", &f.x_gpe0_blk);
    opt_gas(out, "X_GPE1 Block", &f.x_gpe1_blk);
    opt_gas(out, "Sleep Control Register", &f.sleep_control_reg);
    opt_gas(out, "Sleep Status Register", &f.sleep_status_reg);
    out.push('\n');
    line(
        out,
        0,
        "DSDT in use",
        format_args!("{:#018x}", f.dsdt_address()),
    );
    line(
        out,
        0,
        "FACS in use",
        format_args!("{:#018x}", f.facs_address()),
    );
    match f.pm_timer() {
        Some(g) => line(out, 0, "PM Timer in use", gas(&g)),
        None => line(out, 0, "PM Timer in use", "none"),
    }
}
