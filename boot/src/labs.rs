//! The labs in docs/labs are executable: each fenced `lab profile=NAME` block
//! is booted, its `> ` lines typed into the shell, and its other lines must
//! appear in the output in that order (each contained in some output line).

use std::path::{Path, PathBuf};

use crate::profile::{self, Images, Launch, SerialMode};
use crate::qemu::{self, End, Limits, Session};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    /// `<file stem>` or `<file stem>#<n>` for a file's later blocks.
    pub name: String,
    pub profile: String,
    /// Boot options added to the profile's (`cmdline=` to the end of the
    /// block's first line).
    pub cmdline: String,
    pub commands: Vec<String>,
    pub expect: Vec<String>,
}

/// Parses the `lab` blocks of one markdown file.
pub fn parse(stem: &str, text: &str) -> Result<Vec<Lab>, String> {
    let mut labs = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.trim().strip_prefix("```lab") else {
            continue;
        };
        let profile = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("profile="))
            .ok_or_else(|| format!("{stem}.md:{}: lab block without profile=", n + 1))?;
        let mut lab = Lab {
            name: if labs.is_empty() {
                stem.to_string()
            } else {
                format!("{stem}#{}", labs.len() + 1)
            },
            profile: profile.to_string(),
            cmdline: info
                .split_once("cmdline=")
                .map_or(String::new(), |(_, c)| c.trim().to_string()),
            commands: Vec::new(),
            expect: Vec::new(),
        };
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim() == "```" {
                closed = true;
                break;
            }
            if let Some(cmd) = l.strip_prefix("> ") {
                lab.commands.push(cmd.to_string());
            } else if !l.trim().is_empty() {
                lab.expect.push(l.trim().to_string());
            }
        }
        if !closed {
            return Err(format!("{stem}.md:{}: lab block not closed", n + 1));
        }
        if lab.commands.is_empty() {
            return Err(format!("{stem}.md:{}: lab block without commands", n + 1));
        }
        labs.push(lab);
    }
    Ok(labs)
}

/// Checks that every expected line is contained in an output line, in order.
pub fn check_order(output: &str, expect: &[String]) -> Result<(), String> {
    let lines: Vec<&str> = output.lines().collect();
    let mut at = 0;
    for want in expect {
        match lines[at..].iter().position(|l| l.contains(want.as_str())) {
            Some(i) => at += i + 1,
            None => return Err(format!("expected, after line {at} of the output: {want:?}")),
        }
    }
    Ok(())
}

pub fn labs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/labs")
}

/// Every lab of every file, in file-name order.
pub fn load() -> Result<Vec<Lab>, String> {
    let dir = labs_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("lab");
        all.extend(parse(stem, &text)?);
    }
    Ok(all)
}

pub fn run(lab: &Lab, images: &Images) -> Result<(), String> {
    let p =
        profile::find(&lab.profile).ok_or_else(|| format!("unknown profile {:?}", lab.profile))?;
    let launch = Launch {
        firmware: p.firmware,
        profile: p.clone(),
        cmdline: lab.cmdline.clone(),
        serial: SerialMode::Piped,
        no_reboot: true,
        monitor: None,
        extra: vec![],
    };
    let session = Session::spawn(&launch, images)?;
    let mut input = lab.commands.join("\n");
    input.push_str("\npoweroff\n");
    qemu::feed_input(&session, input.as_bytes());
    let t = qemu::drive(session, &Limits::generous(), false);
    if t.end != End::Exited(0) {
        return Err(format!("the lab's boot ended with '{}'", t.end.describe()));
    }
    if let Some(line) = crate::ktest::clamp_line(&t.text) {
        return Err(format!("QEMU clamped an edu DMA address: {line}"));
    }
    // Output from the first prompt on: the boot log is not the lab's.
    let shown = t
        .text
        .find(qemu::PROMPT_STR)
        .map_or(t.text.as_str(), |i| &t.text[i..]);
    check_order(shown, &lab.expect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_and_order_is_enforced() {
        let md = "# x\n```sh\n./run.sh\n```\n```lab profile=floppy\n> isadma\n 2: floppy\n\n> dma\nswiotlb\n```\n```lab profile=iommu\n> iommu\nENABLED\n```\n";
        let labs = parse("01-x", md).unwrap();
        assert_eq!(labs.len(), 2);
        assert_eq!(labs[0].name, "01-x");
        assert_eq!(labs[1].name, "01-x#2");
        assert_eq!(labs[0].profile, "floppy");
        assert_eq!(labs[0].commands, ["isadma", "dma"]);
        assert_eq!(labs[0].expect, ["2: floppy", "swiotlb"]);
        let out = "busmaster> isadma\n 2: floppy\nbusmaster> dma\nswiotlb: [0x1]\n";
        assert!(check_order(out, &labs[0].expect).is_ok());
        // Out of order, or missing, fails.
        assert!(check_order("swiotlb\n2: floppy\n", &labs[0].expect).is_err());
        assert!(parse("y", "```lab\n> a\n```\n").is_err(), "no profile");
        let with = parse(
            "z",
            "```lab profile=attack cmdline=iommu.strict=0 pci.untrusted=00:03.0\n> a\n```\n",
        )
        .unwrap();
        assert_eq!(with[0].profile, "attack");
        assert_eq!(with[0].cmdline, "iommu.strict=0 pci.untrusted=00:03.0");
        assert!(
            parse("y", "```lab profile=default\n> a\n").is_err(),
            "unclosed"
        );
    }

    #[test]
    fn the_shipped_labs_parse_and_name_real_profiles() {
        let labs = load().unwrap();
        assert!(labs.len() >= 3, "{} labs", labs.len());
        for l in &labs {
            assert!(
                profile::find(&l.profile).is_some(),
                "{}: profile {}",
                l.name,
                l.profile
            );
            assert!(!l.expect.is_empty(), "{} checks nothing", l.name);
        }
    }
}
