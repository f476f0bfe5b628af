//! External oracles: what QEMU itself says about the machine, compared with
//! what the kernel found.

use std::collections::BTreeMap;

use crate::profile::{self, Images, Launch, SerialMode};
use crate::qemu::{self, Console, Session};

/// (kind, address, size, prefetchable) of one BAR.
pub type BarInfo = (String, u64, u64, bool);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub vendor: u16,
    pub device: u16,
    /// Base class and subclass (16 bits).
    pub class: u16,
    pub bars: BTreeMap<u8, BarInfo>,
}

pub type Functions = BTreeMap<(u8, u8, u8), Function>;

/// Class descriptions QEMU's monitor prints (hw/pci/pci.c's table), for the
/// classes our profiles contain; anything else is an error, not a guess.
fn qemu_class(desc: &str) -> Result<u16, String> {
    if let Some(n) = desc.strip_prefix("Class ") {
        // QEMU 7.2 prints an unnamed class as zero-padded *decimal* (edu's
        // 0x00ff comes out as "Class 0255").
        return n
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("class {desc:?}"));
    }
    Ok(match desc {
        "Host bridge" => 0x0600,
        "ISA bridge" => 0x0601,
        "PCI bridge" => 0x0604,
        "VGA controller" => 0x0300,
        "Ethernet controller" => 0x0200,
        "SATA controller" => 0x0106,
        "SMBus" => 0x0c05,
        "USB controller" => 0x0c03,
        "Audio controller" => 0x0403,
        other => return Err(format!("no class code known for QEMU's {other:?}")),
    })
}

fn hex(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches('.').trim_end_matches(']');
    u64::from_str_radix(t.trim_start_matches('[').trim_start_matches("0x"), 16)
        .map_err(|_| format!("bad hex {s:?}"))
}

/// Parses HMP `info pci`. BAR6 (the expansion ROM) is left out: the kernel
/// does not size ROM BARs.
pub fn parse_info_pci(text: &str) -> Result<Functions, String> {
    let mut out = Functions::new();
    let mut current: Option<((u8, u8, u8), Function)> = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Bus ") {
            if let Some((k, f)) = current.take() {
                out.insert(k, f);
            }
            // "Bus  0, device   3, function 0:"
            let nums: Vec<u8> = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().map_err(|_| format!("bad line {l:?}")))
                .collect::<Result<_, _>>()?;
            let [bus, dev, func] = nums[..] else {
                return Err(format!("bad line {l:?}"));
            };
            current = Some((
                (bus, dev, func),
                Function {
                    vendor: 0,
                    device: 0,
                    class: 0,
                    bars: BTreeMap::new(),
                },
            ));
        } else if let Some((desc, ids)) = l.split_once(": PCI device ") {
            let f = &mut current.as_mut().ok_or("device line before a Bus line")?.1;
            let (v, d) = ids.split_once(':').ok_or(format!("bad ids {ids:?}"))?;
            f.vendor = hex(v)? as u16;
            f.device = hex(d)? as u16;
            f.class = qemu_class(desc)?;
        } else if let Some(rest) = l.strip_prefix("BAR") {
            // "BAR0: 32 bit prefetchable memory at 0xfd000000 [0xfdffffff]."
            let f = &mut current.as_mut().ok_or("BAR line before a Bus line")?.1;
            let (idx, desc) = rest.split_once(": ").ok_or(format!("bad BAR {l:?}"))?;
            let idx: u8 = idx.parse().map_err(|_| format!("bad BAR {l:?}"))?;
            if idx == 6 {
                continue;
            }
            let (kind_desc, range) = desc.split_once(" at ").ok_or(format!("bad BAR {l:?}"))?;
            let (addr, last) = range.split_once(' ').ok_or(format!("bad BAR {l:?}"))?;
            let (addr, last) = (hex(addr)?, hex(last)?);
            let kind = if kind_desc.starts_with("I/O") {
                "io"
            } else if kind_desc.starts_with("64 bit") {
                "mem64"
            } else {
                "mem32"
            };
            let pf = kind_desc.contains("prefetchable");
            f.bars.insert(
                idx,
                (
                    kind.into(),
                    addr,
                    last.wrapping_sub(addr).wrapping_add(1),
                    pf,
                ),
            );
        }
    }
    if let Some((k, f)) = current.take() {
        out.insert(k, f);
    }
    Ok(out)
}

/// Parses the kernel's `lspci -m` lines (kernel/src/shell/pci_cmds.rs).
pub fn parse_lspci_m(text: &str) -> Result<Functions, String> {
    let mut out = Functions::new();
    for l in text.lines().map(str::trim) {
        let mut words = l.split_whitespace();
        let (Some(bdf), Some(ids)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((bus, devfn)) = bdf.split_once(':') else {
            continue;
        };
        let Some((dev, func)) = devfn.split_once('.') else {
            continue;
        };
        let (Ok(bus), Ok(dev), Ok(func)) = (
            u8::from_str_radix(bus, 16),
            u8::from_str_radix(dev, 16),
            func.parse::<u8>(),
        ) else {
            continue;
        };
        let (v, d) = ids.split_once(':').ok_or(format!("bad ids in {l:?}"))?;
        let mut f = Function {
            vendor: hex(v)? as u16,
            device: hex(d)? as u16,
            class: 0,
            bars: BTreeMap::new(),
        };
        for w in words {
            if let Some(c) = w.strip_prefix("class=") {
                f.class = (hex(c)? >> 8) as u16;
            } else if let Some(b) = w.strip_prefix("bar") {
                let (idx, spec) = b.split_once('=').ok_or(format!("bad BAR in {l:?}"))?;
                let parts: Vec<&str> = spec.split(':').collect();
                let [kind, addr, size, ref rest @ ..] = parts[..] else {
                    return Err(format!("bad BAR in {l:?}"));
                };
                let idx: u8 = idx.parse().map_err(|_| format!("bad BAR in {l:?}"))?;
                f.bars.insert(
                    idx,
                    (kind.into(), hex(addr)?, hex(size)?, rest.contains(&"pf")),
                );
            }
        }
        out.insert((bus, dev, func), f);
    }
    Ok(out)
}

/// Differences between QEMU's view and ours, one line each.
pub fn diff(qemu: &Functions, ours: &Functions) -> Vec<String> {
    let mut d = Vec::new();
    for (k, q) in qemu {
        match ours.get(k) {
            None => d.push(format!(
                "{:02x}:{:02x}.{}: QEMU has {:04x}:{:04x}, the kernel did not find it",
                k.0, k.1, k.2, q.vendor, q.device
            )),
            Some(o) if o != q => d.push(format!(
                "{:02x}:{:02x}.{}: QEMU {q:?}\n    kernel {o:?}",
                k.0, k.1, k.2
            )),
            _ => {}
        }
    }
    for k in ours.keys().filter(|k| !qemu.contains_key(*k)) {
        d.push(format!(
            "{:02x}:{:02x}.{}: found by the kernel, unknown to QEMU",
            k.0, k.1, k.2
        ));
    }
    d
}

/// Boots `profile`, asks the kernel for `lspci -m` and QEMU for `info pci`,
/// and compares. Returns how many functions matched.
pub fn check_pci(images: &Images, profile_name: &str) -> Result<usize, String> {
    let profile = profile::find(profile_name)
        .ok_or("unknown profile")?
        .clone();
    let sock = std::env::temp_dir().join(format!(
        "busmaster-mon-{}-{profile_name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&sock);
    let launch = Launch {
        firmware: profile.firmware,
        profile,
        cmdline: String::new(),
        serial: SerialMode::Piped,
        no_reboot: true,
        monitor: Some(sock.clone()),
        extra: vec![],
    };
    let mut con = Console::new(Session::spawn(&launch, images)?);
    let result = (|| {
        con.wait_for(qemu::PROMPT_STR, qemu::EVENT)?;
        con.type_line("lspci -m");
        let listing = con.wait_for(qemu::PROMPT_STR, qemu::EVENT)?;
        let info = qemu::monitor_command(&sock, "info pci")?;
        con.type_line("poweroff");
        if con.wait_exit(qemu::EVENT) != Some(0) {
            return Err("poweroff did not end QEMU with status 0".to_string());
        }
        let (q, o) = (parse_info_pci(&info)?, parse_lspci_m(&listing)?);
        if q.is_empty() {
            return Err(format!("could not read QEMU's info pci:\n{info}"));
        }
        let d = diff(&q, &o);
        if d.is_empty() {
            Ok(q.len())
        } else {
            Err(d.join("\n"))
        }
    })();
    let _ = std::fs::remove_file(&sock);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "  Bus  0, device   3, function 0:
    Class 0255: PCI device 1234:11e8
      PCI subsystem 1af4:1100
      IRQ 11, pin A
      BAR0: 32 bit memory at 0xfea00000 [0xfeafffff].
      id \"\"
  Bus  1, device   0, function 0:
    Ethernet controller: PCI device 8086:10d3
      BAR2: I/O at 0xc000 [0xc01f].
      BAR4: 64 bit prefetchable memory at 0x800000000 [0x800003fff].
      BAR6: 32 bit memory at 0xffffffffffffffff [0x0003fffe].
      id \"\"
";

    #[test]
    fn info_pci_and_lspci_m_agree_when_they_should() {
        let q = parse_info_pci(INFO).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[&(0, 3, 0)].class, 0x00ff);
        assert_eq!(
            q[&(0, 3, 0)].bars[&0],
            ("mem32".into(), 0xfea00000, 0x100000, false)
        );
        assert!(!q[&(1, 0, 0)].bars.contains_key(&6), "ROM BAR kept");
        let ours = "00:03.0 1234:11e8 class=00ff00 bar0=mem32:0xfea00000:0x100000\n\
                    01:00.0 8086:10d3 class=020000 bar2=io:0xc000:0x20 bar4=mem64:0x800000000:0x4000:pf\n\
                    (2 functions via ECAM)\n";
        let o = parse_lspci_m(ours).unwrap();
        assert!(diff(&q, &o).is_empty(), "{:?}", diff(&q, &o));
        // A wrong size, a missing and an extra function are all reported.
        let wrong = ours
            .replace("0x100000", "0x1000")
            .replace("01:00.0", "02:00.0");
        let d = diff(&q, &parse_lspci_m(&wrong).unwrap());
        assert_eq!(d.len(), 3, "{d:?}");
    }

    #[test]
    fn unknown_class_names_are_errors() {
        assert!(parse_info_pci(
            "  Bus  0, device   1, function 0:\n    Frobnicator: PCI device 1:2\n"
        )
        .is_err());
    }
}
