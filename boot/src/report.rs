//! `./run.sh report`: boots a profile, types the report's fixed commands
//! (`report::COMMANDS`), saves the serial log and renders it as one HTML page
//! (tools/report). The suite's check renders that page in headless Chromium
//! and looks for each section's content in the DOM Chromium builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::profile::{Images, Launch};
use crate::qemu::{self, End, Limits, Session};

/// Boots `launch`, types the commands and `poweroff`; returns the serial log.
pub fn boot_log(images: &Images, launch: &Launch) -> Result<String, String> {
    let session = Session::spawn(launch, images)?;
    let mut input = report::COMMANDS.join("\n");
    input.push_str("\npoweroff\n");
    qemu::feed_input(&session, input.as_bytes());
    let t = qemu::drive(session, &Limits::generous(), false);
    if t.end != End::Exited(0) {
        return Err(format!(
            "the report's boot ended with '{}'\n{}",
            t.end.describe(),
            crate::ktest::crash_context(&t.text)
        ));
    }
    Ok(t.text)
}

/// Writes `log` to `dir/boot.log` and its page to `page`.
pub fn save(log: &str, dir: &Path, page: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let log_path = dir.join("boot.log");
    std::fs::write(&log_path, log).map_err(|e| format!("writing {}: {e}", log_path.display()))?;
    report::write_page(&log_path, page)?;
    Ok(log_path)
}

pub fn chromium_binary() -> String {
    std::env::var("BUSMASTER_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Runs headless Chromium on `page` with `args` (output to stdout), ending it
/// after `limit`.
fn chromium(page: &Path, args: &[String], limit: Duration) -> Result<String, String> {
    let profile_dir = std::env::temp_dir().join(format!(
        "busmaster-chromium-{}-{}",
        std::process::id(),
        args.len()
    ));
    let url = format!("file://{}", page.display());
    let mut child = Command::new(chromium_binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .args(args)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start '{}': {e} (./run.sh test installs Debian's chromium with \
                 'apt-get install chromium'; install it, or set BUSMASTER_CHROMIUM to a Chromium binary)",
                chromium_binary()
            )
        })?;
    // Read the pipes from threads so a full pipe cannot stall Chromium.
    let mut out = child.stdout.take().ok_or("no stdout pipe")?;
    let mut err = child.stderr.take().ok_or("no stderr pipe")?;
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
    let _ = std::fs::remove_dir_all(&profile_dir);
    match status {
        None => Err(format!(
            "chromium did not finish within {} s",
            limit.as_secs()
        )),
        Some(s) if !s.success() => Err(format!(
            "chromium exited with {s}: {}",
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )),
        Some(_) => Ok(stdout),
    }
}

/// The opening tag of the element whose attributes contain `needle`.
fn tag_with<'a>(dom: &'a str, needle: &str) -> Option<&'a str> {
    let at = dom.find(needle)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    tag[from..].split('"').next()
}

/// The text of `<section id="ID">` up to its end in a serialized DOM.
fn section<'a>(dom: &'a str, id: &str) -> Result<&'a str, String> {
    let start = dom
        .find(&format!("<section id=\"{id}\""))
        .ok_or_else(|| format!("Chromium's DOM has no <section id=\"{id}\">"))?;
    let len = dom[start..]
        .find("</section>")
        .ok_or_else(|| format!("section {id} is not closed in Chromium's DOM"))?;
    Ok(&dom[start..start + len])
}

/// What the page for the default profile must show, checked on the DOM.
pub fn check_dom(dom: &str) -> Result<(), String> {
    let pci = section(dom, "pci")?;
    let edu = tag_with(pci, "data-bdf=\"00:03.0\"")
        .ok_or("the PCI section has no function 00:03.0 (edu)")?;
    if !edu.starts_with("<li") {
        return Err(format!("00:03.0 is not a tree item: {edu}"));
    }
    if !pci.contains("driver edu") {
        return Err("the PCI section does not show edu's driver".into());
    }
    let mem = section(dom, "memory")?;
    if !mem.contains("<svg id=\"memory-map\"") {
        return Err("the memory section has no memory-map picture".into());
    }
    for zone in ["DMA", "DMA32"] {
        let tag = tag_with(mem, &format!("data-zone=\"{zone}\""))
            .ok_or_else(|| format!("the memory section has no zone {zone}"))?;
        let _ = tag;
    }
    if !mem.contains("class=\"region\"") {
        return Err("the memory section lists no regions".into());
    }
    let io = section(dom, "iommu")?;
    let d1 = tag_with(io, "data-domain=\"1\"").ok_or("the IOMMU section has no domain 1")?;
    let n: usize = attr(d1, "data-mappings")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("domain 1 has no mapping count: {d1}"))?;
    if n == 0 {
        return Err("domain 1 shows no mappings ('dmademo keep' should hold two)".into());
    }
    if !io.contains("class=\"mapping\"") {
        return Err("the IOMMU section has no mapping rows".into());
    }
    let dma = section(dom, "dma")?;
    if tag_with(dma, "data-controller=\"dma0\"").is_none() {
        return Err("the DMA section lists no controller dma0".into());
    }
    for (id, s) in [("pci", pci), ("memory", mem), ("iommu", io), ("dma", dma)] {
        if s.contains("class=\"missing\"") {
            return Err(format!("section {id} says part of it is not in the log"));
        }
    }
    Ok(())
}

/// Boots the default profile for a report, renders it and checks the page in
/// Chromium. Leaves boot.log, index.html and index.png in `dir`.
pub fn check_in_chromium(images: &Images, launch: &Launch, dir: &Path) -> Result<String, String> {
    let log = boot_log(images, launch)?;
    let page = dir.join("index.html");
    save(&log, dir, &page)?;
    let page = page
        .canonicalize()
        .map_err(|e| format!("{}: {e}", page.display()))?;
    let limit = qemu::EVENT;
    let dom = chromium(&page, &["--dump-dom".into()], limit)?;
    check_dom(&dom).map_err(|e| format!("{e} (page: {})", page.display()))?;
    let shot = page.with_extension("png");
    chromium(
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,2400".into(),
            "--hide-scrollbars".into(),
        ],
        limit,
    )?;
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Err(format!(
            "chromium wrote no screenshot at {}",
            shot.display()
        ));
    }
    Ok(shot.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(name: &str) -> String {
        let path = format!(
            "{}/../tools/report/tests/data/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let log = std::fs::read_to_string(&path).unwrap();
        report::render::html(&report::parse(&log), name)
    }

    #[test]
    fn dom_check_passes_a_full_page_and_names_what_is_missing() {
        assert_eq!(check_dom(&page("default.log")), Ok(()));
        // No IOMMU: domain 1 is missing.
        let e = check_dom(&page("noiommu.log")).unwrap_err();
        assert!(e.contains("no domain 1"), "{e}");
        // An old log without 'dma' output nor kept mappings.
        let e = check_dom(&page("older-build.log")).unwrap_err();
        assert!(e.contains("domain 1 shows no mappings"), "{e}");
        let e = check_dom("<html></html>").unwrap_err();
        assert!(e.contains("no <section id=\"pci\">"), "{e}");
    }
}
