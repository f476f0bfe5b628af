//! `lspci` and friends.

use alloc::vec::Vec;
use core::fmt::Write;

use pci::{BarKind, Bdf, ConfigAccess, PciDevice};

use super::{CmdResult, Command};
use crate::{kprint, kprintln, pci as kpci};

/// `lspci [-v|-t|-m]`.
pub fn lspci(cmd: &Command, args: &[&str]) -> CmdResult {
    let devices = kpci::devices();
    match args {
        [] => {
            for d in &devices {
                kprintln!("{}{}", pci::lspci_line(d), sim_tag(d.bdf));
            }
        }
        ["-v"] => {
            for d in &devices {
                kprintln!("{}", pci::lspci_verbose(d, kpci::driver_of(d.bdf)));
                if crate::drivers::lpss::sim::is_sim(d.bdf) {
                    kprintln!("\tSimulated: config space and BAR0 registers are a software model (idma64=sim), not a QEMU device");
                }
                control_lines(d);
                child_lines(d.bdf);
                kprintln!();
            }
        }
        ["-t"] => tree(&devices),
        ["-m"] => {
            for d in &devices {
                kprintln!("{}", machine_line(d));
            }
        }
        _ => return Err(cmd.usage_error()),
    }
    kprintln!(
        "({} functions via {})",
        devices.len(),
        kpci::mechanism_name()
    );
    for w in kpci::with(|p| p.warnings.clone()).unwrap_or_default() {
        kprintln!("warning: {w}");
    }
    Ok(())
}

fn sim_tag(bdf: Bdf) -> &'static str {
    if crate::drivers::lpss::sim::is_sim(bdf) {
        " [simulated]"
    } else {
        ""
    }
}

/// Child devices a driver registered (an LPSS function's iDMA64 and host controller).
fn child_lines(bdf: Bdf) {
    let kids: Vec<(&'static str, u64, u64, Option<&'static str>)> = kpci::with(|p| {
        p.registry
            .children()
            .filter(|c| c.parent == bdf)
            .map(|c| {
                (
                    c.name,
                    c.mmio.phys,
                    c.mmio.len,
                    p.registry.child_driver_name(c.id),
                )
            })
            .collect()
    })
    .unwrap_or_default();
    for (name, phys, len, drv) in kids {
        kprintln!(
            "\tChild: {name} at {phys:#x} ({len:#x} bytes), driver {}",
            drv.unwrap_or("(none)")
        );
    }
}

/// The Command register and MSI state, read live (they change as drivers bind).
fn control_lines(d: &PciDevice) {
    let Some((cmd, msi)) = kpci::with(|p| {
        let cmd = p.cfg.read16(d.bdf, 0x04);
        let msi = d
            .find_capability(pci::caps::id::MSI)
            .and_then(|off| pci::Msi::read(&p.cfg, d.bdf, off as u16).ok())
            .map(|m| {
                (
                    m.is_enabled(&p.cfg),
                    p.cfg.read32(d.bdf, m.data_offset()) & 0xFF,
                )
            });
        (cmd, msi)
    }) else {
        return;
    };
    let sign = |bit: u16| if cmd & bit != 0 { '+' } else { '-' };
    kprintln!(
        "\tControl: I/O{} Mem{} BusMaster{} DisINTx{}",
        sign(1),
        sign(2),
        sign(4),
        sign(1 << 10)
    );
    if let Some((enabled, vector)) = msi {
        kprintln!(
            "\tMSI: Enable{} vector {vector:#04x}",
            if enabled { '+' } else { '-' }
        );
    }
}

/// One line per function, stable and easy to parse (for tests and scripts):
/// `bb:dd.f vvvv:dddd class=cccccc bar<i>=<mem32|mem64|io>:<addr>:<size>[:pf]`.
pub fn machine_line(d: &PciDevice) -> alloc::string::String {
    let mut s = alloc::format!(
        "{} {:04x}:{:04x} class={:06x}",
        d.bdf.short(),
        d.vendor_id,
        d.device_id,
        d.class.as_u32()
    );
    for b in &d.bars {
        let kind = match b.kind {
            BarKind::Io => "io",
            BarKind::Memory64 => "mem64",
            _ => "mem32",
        };
        let _ = write!(s, " bar{}={kind}:{:#x}:{:#x}", b.index, b.address, b.size);
        if b.prefetchable {
            s.push_str(":pf");
        }
    }
    s
}

fn tree(devices: &[PciDevice]) {
    fn children(devices: &[PciDevice], parent: Option<Bdf>) -> Vec<&PciDevice> {
        devices.iter().filter(|d| d.parent == parent).collect()
    }
    fn walk(devices: &[PciDevice], parent: Option<Bdf>, prefix: &str) {
        let kids = children(devices, parent);
        for (i, d) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            kprintln!(
                "{prefix}{}{} {}{}",
                if last { "\\-" } else { "+-" },
                d.bdf.short(),
                pci::lspci_line(d).to_string_after_bdf(),
                sim_tag(d.bdf)
            );
            if let Some(b) = d.bridge {
                let child_prefix = alloc::format!("{prefix}{}", if last { "    " } else { "|   " });
                kprint!("{child_prefix}[bus {:02x}]\n", b.secondary);
                walk(devices, Some(d.bdf), &child_prefix);
            }
        }
    }
    let seg = devices.first().map_or(0, |d| d.bdf.segment);
    let root = devices
        .iter()
        .find(|d| d.parent.is_none())
        .map_or(0, |d| d.bdf.bus);
    kprintln!("-[{seg:04x}:{root:02x}]");
    walk(devices, None, " ");
}

/// The lspci line without its leading address (the tree prints it itself).
trait AfterBdf {
    fn to_string_after_bdf(&self) -> alloc::string::String;
}

impl AfterBdf for pci::names::LspciLine<'_> {
    fn to_string_after_bdf(&self) -> alloc::string::String {
        let full = alloc::format!("{self}");
        full.split_once(' ')
            .map_or(full.clone(), |(_, rest)| rest.into())
    }
}
