//! The interrupt remapping table as `iommu ir` prints it: the state line, then
//! per remapping unit its table and one row per IRTE in use.
//!
//! ```text
//! interrupt remapping: on, 1 unit(s), 7 IRTE(s) in use
//! unit 0xfed90000: table 0x1234000, compatibility format blocked (GSTS.CFIS=0; ...)
//!   IRTE  vector  dest  trigger  source-id check          used by
//!      0  0x31       0  edge     requester ff:00.0        IO-APIC 0 line, GSI 1
//!      3  0x53       0  level    requester 00:1f.2 (SQ 1) MSI 00:1f.2 (MSI ahci)
//!      9  not present  MSI 00:04.0 (MSI edu)
//! ```
//!
//! or one line `interrupt remapping: off (why); ...`, or `error: iommu: ...`.

use crate::{parse_hex, parse_num};

/// What `iommu ir` printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntRemap {
    /// The first line, after `interrupt remapping: ` (`on, 1 unit(s), 7 IRTE(s) in use`).
    pub summary: Option<String>,
    /// `on` or `off` as the summary says.
    pub on: Option<bool>,
    /// When off: the reason in the summary's parentheses (`intremap=off`).
    pub off_reason: Option<String>,
    /// The `N IRTE(s) in use` count of the summary.
    pub in_use: Option<u64>,
    pub units: Vec<IrUnit>,
    /// Set when the command answered with an error (no IOMMU).
    pub error: Option<String>,
}

/// One remapping unit's table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IrUnit {
    pub base: u64,
    /// The table's physical address (IRTA).
    pub table: Option<u64>,
    /// What the unit does with compatibility-format interrupts, after
    /// `compatibility format ` (`blocked (GSTS.CFIS=0; ...)`).
    pub compat: Option<String>,
    /// `blocked` (true) or `passes` (false).
    pub compat_blocked: Option<bool>,
    pub entries: Vec<Irte>,
}

/// One IRTE row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Irte {
    pub index: u32,
    pub state: IrteState,
    /// `IO-APIC 0 line, GSI 1`, `MSI 00:03.0 (MSI edu)`.
    pub used_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IrteState {
    Present {
        vector: u8,
        /// The destination APIC ID.
        dest: u32,
        /// `edge` or `level`.
        trigger: String,
        /// `none (any requester)`, `requester 00:1f.2 (SQ 1)`, `bus 02..03`.
        source_check: String,
    },
    NotPresent,
    /// The kernel could not read the entry; its words.
    Unreadable(String),
}

/// The text inside the parentheses that open `s` (nesting counted), and what follows.
fn parenthesised(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('(')?;
    let mut depth = 1usize;
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&inner[..i], &inner[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits the source-id check column off the front of `s`; the rest is `used by`.
fn source_check(s: &str) -> (String, String) {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix("none (any requester)") {
        return ("none (any requester)".into(), rest.trim().into());
    }
    for kind in ["requester ", "bus "] {
        if let Some(rest) = s.strip_prefix(kind) {
            let (who, mut rest) = rest
                .trim_start()
                .split_once(char::is_whitespace)
                .unwrap_or((rest.trim_start(), ""));
            let mut check = format!("{kind}{who}");
            if let Some((sq, after)) = parenthesised(rest.trim_start()) {
                if sq.starts_with("SQ") {
                    check = format!("{check} ({sq})");
                    rest = after;
                }
            }
            return (check, rest.trim().into());
        }
    }
    // An unknown form: columns are at least two spaces apart.
    match s.split_once("  ") {
        Some((check, rest)) => (check.trim().into(), rest.trim().into()),
        None => (s.trim().into(), String::new()),
    }
}

/// `     3  0x53       0  level    requester 00:1f.2 (SQ 1) MSI 00:1f.2 (MSI ahci)`.
fn parse_row(l: &str) -> Option<Irte> {
    let (index, rest) = l.trim_start().split_once(char::is_whitespace)?;
    let index: u32 = index.parse().ok()?;
    let rest = rest.trim_start();
    if let Some(used_by) = rest.strip_prefix("not present") {
        return Some(Irte {
            index,
            state: IrteState::NotPresent,
            used_by: used_by.trim().into(),
        });
    }
    if let Some(tail) = rest.strip_prefix("unreadable") {
        let tail = tail.trim_start();
        let (why, used_by) = parenthesised(tail).unwrap_or(("", tail));
        return Some(Irte {
            index,
            state: IrteState::Unreadable(why.trim().into()),
            used_by: used_by.trim().into(),
        });
    }
    // Columns are padded with several spaces: take the words one at a time.
    let (vector, rest) = rest.split_once(char::is_whitespace)?;
    let vector = u8::try_from(parse_num(vector)?).ok()?;
    let (dest, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    let dest = u32::try_from(parse_num(dest)?).ok()?;
    let (trigger, rest) = rest.trim_start().split_once(char::is_whitespace)?;
    if !matches!(trigger, "edge" | "level") {
        return None;
    }
    let (source_check, used_by) = source_check(rest);
    Some(Irte {
        index,
        state: IrteState::Present {
            vector,
            dest,
            trigger: trigger.into(),
            source_check,
        },
        used_by,
    })
}

/// `unit 0xfed90000: table 0x1234000, compatibility format blocked (...)`.
fn parse_unit(rest: &str) -> Option<IrUnit> {
    let (base, tail) = rest.split_once(':').unwrap_or((rest, ""));
    let mut u = IrUnit {
        base: parse_hex(base)?,
        ..Default::default()
    };
    for part in tail.split(", ") {
        let part = part.trim();
        if let Some(t) = part.strip_prefix("table ") {
            u.table = parse_hex(t.split_whitespace().next().unwrap_or(""));
        }
    }
    if let Some((_, c)) = tail.split_once("compatibility format ") {
        let c = c.trim();
        u.compat_blocked = if c.starts_with("blocked") {
            Some(true)
        } else if c.starts_with("passes") {
            Some(false)
        } else {
            None
        };
        u.compat = Some(c.to_string());
    }
    Some(u)
}

/// Reads `iommu ir`'s output; `None` when none of it is recognised.
pub fn parse(lines: &[String]) -> Option<IntRemap> {
    let mut ir = IntRemap::default();
    let mut seen = false;
    for l in lines {
        if let Some(e) = l.strip_prefix("error: ") {
            ir.error = Some(e.to_string());
            seen = true;
        } else if let Some(s) = l.strip_prefix("interrupt remapping: ") {
            let s = s.trim();
            seen = true;
            ir.summary = Some(s.to_string());
            if s.starts_with("on") {
                ir.on = Some(true);
                ir.in_use = s
                    .split_once(" IRTE(s) in use")
                    .and_then(|(head, _)| head.rsplit([' ', ',']).next())
                    .and_then(|n| n.parse().ok());
            } else if let Some(rest) = s.strip_prefix("off") {
                ir.on = Some(false);
                ir.off_reason = parenthesised(rest.trim_start()).map(|(why, _)| why.to_string());
            }
        } else if let Some(rest) = l.strip_prefix("unit ") {
            if let Some(u) = parse_unit(rest) {
                ir.units.push(u);
                seen = true;
            }
        } else if let Some(e) = parse_row(l) {
            if let Some(u) = ir.units.last_mut() {
                u.entries.push(e);
            }
        }
    }
    seen.then_some(ir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(l: &str) -> Irte {
        parse_row(l).unwrap_or_else(|| panic!("no row in {l:?}"))
    }

    #[test]
    fn rows_of_every_form() {
        let e =
            row("     3  0x53       0  level    requester 00:1f.2 (SQ 1) MSI 00:1f.2 (MSI ahci)");
        assert_eq!(e.index, 3);
        assert_eq!(
            e.state,
            IrteState::Present {
                vector: 0x53,
                dest: 0,
                trigger: "level".into(),
                source_check: "requester 00:1f.2 (SQ 1)".into()
            }
        );
        assert_eq!(e.used_by, "MSI 00:1f.2 (MSI ahci)");
        let e =
            row("     5  0x60       1  edge     none (any requester)     MSI 00:03.0 (MSI edu)");
        assert!(
            matches!(&e.state, IrteState::Present { source_check, dest: 1, .. } if source_check == "none (any requester)")
        );
        assert_eq!(e.used_by, "MSI 00:03.0 (MSI edu)");
        let e = row("     4  0x54       0  edge     bus 02..03               MSI 02:00.0 (MSI-X nvme admin)");
        assert!(
            matches!(&e.state, IrteState::Present { source_check, .. } if source_check == "bus 02..03")
        );
        assert_eq!(e.used_by, "MSI 02:00.0 (MSI-X nvme admin)");
        let e = row("    10  unreadable (read (twice) failed)  MSI 00:05.0 (MSI edu)");
        assert_eq!(e.state, IrteState::Unreadable("read (twice) failed".into()));
        assert_eq!(e.used_by, "MSI 00:05.0 (MSI edu)");
        assert_eq!(row("     9  not present  x").state, IrteState::NotPresent);
        for bad in [
            "  IRTE  vector  dest  trigger  source-id check          used by",
            "     1  0x1ff  0  edge  none (any requester)",
            "     1  0x31  0  sideways  none",
            "     1",
            "",
            "   ünïcode  ) (",
        ] {
            assert_eq!(parse_row(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn off_reason_keeps_nested_parentheses() {
        let lines = ["interrupt remapping: off (unit 0xfed90000 has no interrupt remapping (ECAP.IR clear)); MSIs and IO-APIC entries are in compatibility format".to_string()];
        let ir = parse(&lines).unwrap();
        assert_eq!(ir.on, Some(false));
        assert_eq!(
            ir.off_reason.as_deref(),
            Some("unit 0xfed90000 has no interrupt remapping (ECAP.IR clear)")
        );
        assert_eq!(parse(&["junk".to_string()]), None);
    }
}
