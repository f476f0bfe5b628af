//! The "Interrupt remapping" section (id `intremap`): `iommu ir`'s state line
//! and, per remapping unit, its table of IRTEs (rows carry `data-irte`).

use std::fmt::Write;

use super::{esc, missing};
use crate::{IommuUnit, IrteState, Report};

/// Whether the page has the section: the log has `iommu ir`, or shows that
/// its build knows interrupt remapping (the `iommu` view or an attack matrix
/// says on or off). Logs of older builds get no section.
pub(super) fn shown(r: &Report) -> bool {
    r.intremap.is_some()
        || r.iommu
            .as_ref()
            .is_some_and(|io| io.units.iter().any(|u| u.ir_enabled.is_some()))
        || r.attacks.iter().any(|m| m.interrupt_remapping.is_some())
}

/// A unit's interrupt remapping state as the `iommu` view gives it.
pub(super) fn unit_state(u: &IommuUnit) -> String {
    match u.ir_enabled {
        Some(true) => {
            let mut s = String::from("enabled");
            if let Some(t) = u.ir_table {
                let _ = write!(s, ", table {t:#x}");
            }
            if let Some(n) = u.ir_in_use {
                let _ = write!(s, " ({n} entries in use)");
            }
            s
        }
        Some(false) => "disabled".into(),
        None => "?".into(),
    }
}

pub(super) fn section(o: &mut String, r: &Report) {
    if !shown(r) {
        return;
    }
    o.push_str("<section id=\"intremap\">\n<h2>Interrupt remapping</h2>\n");
    let Some(ir) = &r.intremap else {
        missing(o, "The interrupt remapping table", "run 'iommu ir'");
        o.push_str("</section>\n");
        return;
    };
    if let Some(e) = &ir.error {
        let e = e.strip_prefix("iommu: ").unwrap_or(e);
        let _ = writeln!(
            o,
            "<p class=\"error\">no IOMMU in this boot: {}</p>",
            esc(e)
        );
    }
    if let Some(s) = &ir.summary {
        let state = match ir.on {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        };
        let _ = writeln!(
            o,
            "<p class=\"intremap-state\" data-intremap=\"{state}\">interrupt remapping: {}</p>",
            esc(s)
        );
    }
    if ir.on == Some(true) && ir.units.is_empty() {
        o.push_str("<p>no remapping unit listed</p>\n");
    }
    for u in &ir.units {
        let _ = writeln!(
            o,
            "<h3>unit {:#x} · table {}</h3>",
            u.base,
            u.table.map_or("?".into(), |t| format!("{t:#x}"))
        );
        if let Some(c) = &u.compat {
            let _ = writeln!(o, "<p>compatibility format {}</p>", esc(c));
        }
        if u.entries.is_empty() {
            o.push_str("<p>no IRTE in use</p>\n");
            continue;
        }
        o.push_str("<table class=\"irtes\"><tr><th>IRTE</th><th>vector</th><th>destination</th><th>trigger</th><th>source-id check</th><th>used by</th></tr>\n");
        for e in &u.entries {
            let _ = write!(
                o,
                "<tr class=\"irte\" data-irte=\"{}\"><td class=\"num\">{}</td>",
                e.index, e.index
            );
            match &e.state {
                IrteState::Present {
                    vector,
                    dest,
                    trigger,
                    source_check,
                } => {
                    let _ = write!(
                        o,
                        "<td class=\"num\">{vector:#04x}</td><td class=\"num\">{dest}</td><td>{}</td><td>{}</td>",
                        esc(trigger),
                        esc(source_check)
                    );
                }
                IrteState::NotPresent => o.push_str("<td colspan=\"4\">not present</td>"),
                IrteState::Unreadable(why) => {
                    let _ = write!(
                        o,
                        "<td colspan=\"4\" class=\"error\">unreadable: {}</td>",
                        esc(why)
                    );
                }
            }
            let _ = writeln!(o, "<td>{}</td></tr>", esc(&e.used_by));
        }
        o.push_str("</table>\n");
    }
    if ir.on == Some(true) {
        o.push_str("<p class=\"note\">With remapping on, an interrupt request names an IRTE; the unit delivers that entry's vector to its destination APIC only if the entry is present and the request's source-id passes the entry's check, and records an interrupt remapping fault otherwise.</p>\n");
    }
    o.push_str("</section>\n");
}
