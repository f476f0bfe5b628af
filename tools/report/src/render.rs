//! One self-contained HTML page: inline CSS and SVG, no scripts, no requests.
//!
//! Sections have fixed ids (`pci`, `memory`, `iommu`, `dma`, `block`; and
//! `intremap`, `attacks` when the log's build has them) and the parts tests
//! look for carry `data-` attributes (`data-bdf`, `data-zone`, `data-domain`,
//! `data-mappings`, `data-irte`). A part the log lacks renders as a
//! paragraph of class `missing` that says "not in this log".

mod intremap;

use std::fmt::Write;

use crate::{human_size, Bdf, DomainKind, Mapping, PciFunction, Report};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1150px; padding: 0 1.2em 3em; color: #1d2330; background: #fbfbfd; }
header { border-bottom: 3px solid #2c5282; margin-bottom: 1em; }
h1 { margin: .6em 0 .2em; font-size: 1.6em; }
h2 { border-bottom: 1px solid #cbd2dc; padding-bottom: .2em; margin-top: 1.8em; }
h3 { margin: 1.2em 0 .4em; font-size: 1.1em; }
nav a { margin-right: 1.2em; }
code, .mono, td.num, td.addr { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #d5dae3; padding: .2em .55em; text-align: left; vertical-align: top; }
th { background: #edf1f7; }
td.num { text-align: right; }
.missing { color: #8a5300; background: #fff6e0; border-left: 4px solid #e0a030; padding: .4em .8em; }
.note { color: #555; font-size: 12.5px; }
.error { color: #a00; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 1.4em; border-left: 1px dashed #b8c2d0; }
ul.tree { border-left: none; padding-left: 0; }
ul.tree li { margin: .3em 0; }
.fn-head { font-weight: 600; }
.badge { display: inline-block; border-radius: 3px; padding: 0 .4em; font-size: 12px; margin-left: .3em; }
.drv { background: #d9f2e3; color: #145a32; }
.bm { background: #fde2c8; color: #7a3b00; }
.sim { background: #e6e0f8; color: #3c2a7a; }
.bars { font-size: 12.5px; color: #444; margin-left: 1em; }
.domain { border: 1px solid #cbd2dc; border-radius: 6px; padding: .2em 1em .6em; margin: .8em 0; background: #fff; }
.domain.translated { border-left: 6px solid #2c5282; }
.domain.pass-through { border-left: 6px solid #9aa5b5; }
.usage { display: inline-block; height: .8em; background: #2c5282; vertical-align: middle; }
.usage-box { display: inline-block; width: 120px; height: .8em; background: #e3e8f0; vertical-align: middle; }
svg text { font: 11px system-ui, sans-serif; }
"#;

/// Colours for memory types and zones.
fn kind_colour(kind: &str) -> &'static str {
    match kind {
        "usable" => "#5a9e6f",
        "bootloader/kernel" => "#d08b2c",
        "reserved" => "#9aa5b5",
        "ACPI data" | "ACPI NVS" => "#8e6bbf",
        "hole" => "#ffffff",
        _ => "#c0c0c0",
    }
}

fn zone_colour(name: &str) -> &'static str {
    match name {
        "DMA" => "#e07a5f",
        "DMA32" => "#3d85c6",
        "Normal" => "#6aa84f",
        _ => "#999999",
    }
}

/// The page for `r`; `title` names the log it came from.
pub fn html(r: &Report, title: &str) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Busmaster boot report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(title)
    );
    header(&mut o, r, title);
    pci(&mut o, r);
    memory(&mut o, r);
    iommu(&mut o, r);
    intremap::section(&mut o, r);
    dma(&mut o, r);
    blocks(&mut o, r);
    attacks(&mut o, r);
    problems(&mut o, r);
    o.push_str("</body>\n</html>\n");
    o
}

fn missing(o: &mut String, what: &str, hint: &str) {
    let _ = writeln!(
        o,
        "<p class=\"missing\">{} not in this log ({})</p>",
        esc(what),
        esc(hint)
    );
}

fn header(o: &mut String, r: &Report, title: &str) {
    o.push_str("<header>\n<h1>Busmaster boot report</h1>\n<p>");
    let _ = write!(o, "Log: <code>{}</code>", esc(title));
    if let Some(b) = &r.banner {
        let _ = write!(o, "<br>{}", esc(b));
    }
    match &r.cmdline {
        Some(c) if c.is_empty() => o.push_str("<br>Command line: (empty)"),
        Some(c) => {
            let _ = write!(o, "<br>Command line: <code>{}</code>", esc(c));
        }
        None => o.push_str("<br>Command line: not in this log"),
    }
    if !r.commands.is_empty() {
        let cmds: Vec<String> = r
            .commands
            .iter()
            .map(|c| format!("<code>{}</code>", esc(c)))
            .collect();
        let _ = write!(o, "<br>Shell commands in the log: {}", cmds.join(", "));
    }
    o.push_str(
        "</p>\n<nav><a href=\"#pci\">PCI tree</a><a href=\"#memory\">Memory map by zone</a>\
                <a href=\"#iommu\">IOMMU domains</a>",
    );
    if intremap::shown(r) {
        o.push_str("<a href=\"#intremap\">Interrupt remapping</a>");
    }
    o.push_str("<a href=\"#dma\">DMA controllers</a><a href=\"#block\">Block devices</a></nav>\n</header>\n");
}

fn ids(f: &PciFunction) -> String {
    match (f.vendor, f.device) {
        (Some(v), Some(d)) => format!("{v:04x}:{d:04x}"),
        _ => "????:????".into(),
    }
}

fn bdf_str(b: Option<Bdf>) -> String {
    b.map_or("??:??.?".into(), |b| b.to_string())
}

fn fn_item(o: &mut String, r: &Report, f: &PciFunction, depth: usize) {
    let bdf = bdf_str(f.bdf);
    let _ = write!(
        o,
        "<li class=\"fn\" data-bdf=\"{}\"><span class=\"fn-head\"><code>{}</code> {}</span> <span class=\"note\">[{}]",
        esc(&bdf),
        esc(&bdf),
        esc(f.name.as_deref().unwrap_or("(name not in this log)")),
        ids(f)
    );
    if let Some(c) = &f.class_name {
        let _ = write!(o, " {}", esc(c));
    } else if let Some(c) = f.class {
        let _ = write!(o, " class {c:06x}");
    }
    o.push_str("</span>");
    if let Some(d) = &f.driver {
        let _ = write!(o, "<span class=\"badge drv\">driver {}</span>", esc(d));
    }
    if f.bus_master == Some(true) {
        o.push_str("<span class=\"badge bm\">bus master</span>");
    }
    if f.simulated {
        o.push_str("<span class=\"badge sim\">simulated</span>");
    }
    if !f.bars.is_empty() {
        o.push_str("<div class=\"bars\">");
        let bars: Vec<String> = f
            .bars
            .iter()
            .map(|b| {
                format!(
                    "{}{} {:#x} ({}{})",
                    b.index.map_or(String::new(), |i| format!("BAR{i} ")),
                    b.kind.name(),
                    b.addr,
                    human_size(b.size),
                    if b.prefetchable { ", prefetchable" } else { "" }
                )
            })
            .collect();
        o.push_str(&esc(&bars.join(" · ")));
        o.push_str("</div>");
    }
    if let Some(bus) = f.secondary_bus {
        let _ = write!(o, "<div class=\"bars\">bridge to bus {bus:02x}</div>");
    }
    let kids: Vec<&PciFunction> = r
        .pci
        .iter()
        .filter(|c| c.parent.is_some() && c.parent == f.bdf)
        .collect();
    if !kids.is_empty() && depth < 32 {
        o.push_str("<ul>");
        for k in kids {
            fn_item(o, r, k, depth + 1);
        }
        o.push_str("</ul>");
    }
    o.push_str("</li>\n");
}

fn pci(o: &mut String, r: &Report) {
    o.push_str("<section id=\"pci\">\n<h2>PCI tree</h2>\n");
    if r.pci.is_empty() {
        missing(
            o,
            "PCI enumeration",
            "boot with the kernel's pci messages, or run 'lspci -v' and 'lspci -t'",
        );
        o.push_str("</section>\n");
        return;
    }
    if let Some(s) = &r.pci_summary {
        let _ = writeln!(o, "<p>{}</p>", esc(s));
    }
    if !r.pci_tree_known {
        o.push_str("<p class=\"missing\">bridge nesting not in this log (run 'lspci -t'): functions are listed flat</p>\n");
    }
    // Roots: functions without a parent, or whose parent is not in the log.
    let known = |b: Option<Bdf>| r.pci.iter().any(|f| f.bdf == b);
    let segments: std::collections::BTreeSet<(u16, u8)> = r
        .pci
        .iter()
        .filter(|f| f.parent.is_none() || !known(f.parent))
        .filter_map(|f| f.bdf.map(|b| (b.segment, b.bus)))
        .collect();
    o.push_str("<ul class=\"tree\">\n");
    for (seg, bus) in segments {
        let _ = writeln!(
            o,
            "<li><span class=\"fn-head\">[{seg:04x}:{bus:02x}] root bus</span><ul>"
        );
        for f in r.pci.iter().filter(|f| {
            (f.parent.is_none() || !known(f.parent))
                && f.bdf.is_some_and(|b| (b.segment, b.bus) == (seg, bus))
        }) {
            fn_item(o, r, f, 0);
        }
        o.push_str("</ul></li>\n");
    }
    o.push_str("</ul>\n");
    // Functions the log named without a usable address cannot be placed.
    o.push_str("</section>\n");
}

/// Piecewise-linear address -> x mapping: every region (and every hole
/// between regions) gets a width that grows with the log of its size.
struct Axis {
    /// (start, end exclusive, x0, x1)
    segs: Vec<(u64, u64, f64, f64)>,
}

impl Axis {
    fn new(spans: &[(u64, u64)], x0: f64, width: f64) -> Axis {
        let weights: Vec<f64> = spans
            .iter()
            .map(|(s, e)| ((e.saturating_sub(*s)).max(1) as f64).log2().max(10.0) - 8.0)
            .collect();
        let total: f64 = weights.iter().sum::<f64>().max(1.0);
        let mut x = x0;
        let segs = spans
            .iter()
            .zip(weights)
            .map(|((s, e), w)| {
                let w = w / total * width;
                let seg = (*s, *e, x, x + w);
                x += w;
                seg
            })
            .collect();
        Axis { segs }
    }

    fn x(&self, addr: u64) -> f64 {
        for &(s, e, x0, x1) in &self.segs {
            if addr >= s && addr <= e {
                let span = e.saturating_sub(s).max(1) as f64;
                return x0 + (x1 - x0) * ((addr - s) as f64 / span);
            }
        }
        match self.segs.first() {
            Some(&(s, _, x0, _)) if addr < s => x0,
            _ => self.segs.last().map_or(0.0, |l| l.3),
        }
    }
}

fn zones_of(r: &Report, start: u64, end_incl: u64) -> Vec<String> {
    r.zones
        .iter()
        .filter(|z| match (z.start, z.end) {
            (Some(s), Some(e)) => s <= end_incl && e > start,
            _ => false,
        })
        .map(|z| z.name.clone())
        .collect()
}

/// DMA buffers the log shows (mappings kept alive): (phys, size, label).
fn dma_buffers(r: &Report) -> Vec<(u64, u64, String)> {
    let mut v: Vec<(u64, u64, String)> = Vec::new();
    let mut add = |dev: &str, m: &Mapping| {
        let label = format!(
            "{} {}",
            dev.split_whitespace().last().unwrap_or(dev),
            m.map_type
        );
        if !v.iter().any(|x| x.0 == m.phys) {
            v.push((m.phys, m.size, label));
        }
    };
    for d in &r.domains {
        for (dev, m) in &d.mappings {
            add(dev, m);
        }
    }
    if let Some(dma) = &r.dma {
        for d in &dma.devices {
            for m in &d.mappings {
                add(&d.name, m);
            }
        }
    }
    v
}

fn memory_svg(o: &mut String, r: &Report) {
    let mut regions = r.regions.clone();
    regions.sort_by_key(|x| x.start);
    let mut spans: Vec<(u64, u64, String)> = Vec::new();
    let mut next = 0u64;
    for reg in &regions {
        if reg.start > next {
            spans.push((next, reg.start, "hole".into()));
        }
        let end = reg.end.saturating_add(1);
        spans.push((reg.start, end.max(reg.start), reg.kind.clone()));
        next = next.max(end);
    }
    let (w, x0) = (1080.0, 10.0);
    let axis = Axis::new(
        &spans.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        x0,
        w - 20.0,
    );
    let mut buffers = dma_buffers(r);
    if let Some((s, e)) = r.swiotlb {
        buffers.insert(
            0,
            (
                s,
                e.saturating_sub(s).saturating_add(1),
                "swiotlb bounce pool".into(),
            ),
        );
    }
    let height = 124 + 14 * buffers.len();
    let _ = writeln!(
        o,
        "<svg id=\"memory-map\" role=\"img\" aria-label=\"physical memory map by type and zone\" \
         xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\">"
    );
    let _ = writeln!(o, "<text x=\"{x0}\" y=\"14\">firmware memory map (widths grow with the log of each region's size)</text>");
    for (s, e, kind) in &spans {
        let (a, b) = (axis.x(*s), axis.x(*e));
        let _ = writeln!(
            o,
            "<rect class=\"region\" x=\"{a:.1}\" y=\"20\" width=\"{:.1}\" height=\"34\" fill=\"{}\" stroke=\"#555\" stroke-width=\"0.5\"><title>{:#x}-{:#x} {} {}</title></rect>",
            (b - a).max(0.5),
            kind_colour(kind),
            s,
            e.saturating_sub(1),
            human_size(e.saturating_sub(*s)),
            esc(kind)
        );
        if b - a > 46.0 {
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"41\" text-anchor=\"middle\">{}</text>",
                (a + b) / 2.0,
                esc(&human_size(e.saturating_sub(*s)))
            );
        }
    }
    let _ = writeln!(
        o,
        "<text x=\"{x0}\" y=\"74\">zones (the buddy allocator's)</text>"
    );
    for z in &r.zones {
        let (Some(s), Some(e)) = (z.start, z.end) else {
            continue;
        };
        let (a, b) = (axis.x(s), axis.x(e));
        let _ = writeln!(
            o,
            "<rect class=\"zone\" data-zone=\"{}\" x=\"{a:.1}\" y=\"80\" width=\"{:.1}\" height=\"24\" fill=\"{}\" opacity=\"0.85\"><title>zone {} [{s:#x}-{e:#x})</title></rect>\
             <text x=\"{:.1}\" y=\"96\" text-anchor=\"middle\" fill=\"#fff\">{}</text>",
            esc(&z.name),
            (b - a).max(1.0),
            zone_colour(&z.name),
            esc(&z.name),
            (a + b) / 2.0,
            esc(&z.name)
        );
    }
    for (i, (phys, size, label)) in buffers.iter().enumerate() {
        let a = axis.x(*phys);
        let y = 120 + 14 * i;
        let _ = writeln!(
            o,
            "<line x1=\"{a:.1}\" y1=\"20\" x2=\"{a:.1}\" y2=\"{y}\" stroke=\"#000\" stroke-dasharray=\"2,2\"/>\
             <text x=\"{:.1}\" y=\"{y}\">{} at phys {phys:#x} ({})</text>",
            a + 3.0,
            esc(label),
            human_size(*size)
        );
    }
    o.push_str("</svg>\n<p class=\"note\">");
    for k in ["usable", "bootloader/kernel", "reserved", "hole"] {
        let _ = write!(
            o,
            "<span class=\"badge\" style=\"background:{};border:1px solid #999\">&nbsp;</span> {k} ",
            kind_colour(k)
        );
    }
    o.push_str("· dashed lines: the swiotlb pool and DMA buffers with live mappings</p>\n");
}

fn memory(o: &mut String, r: &Report) {
    o.push_str("<section id=\"memory\">\n<h2>Physical memory map by zone</h2>\n");
    if r.regions.is_empty() && r.zones.is_empty() {
        missing(
            o,
            "The memory map",
            "the boot log's 'memory map:' lines and 'zoneinfo'",
        );
        o.push_str("</section>\n");
        return;
    }
    if r.regions.is_empty() {
        missing(
            o,
            "The firmware memory map",
            "the boot log's 'memory map:' lines",
        );
    } else {
        memory_svg(o, r);
        o.push_str("<h3>Regions</h3>\n<table class=\"regions\"><tr><th>start</th><th>end</th><th>size</th><th>type</th><th>zone</th></tr>\n");
        for reg in &r.regions {
            let _ = writeln!(
                o,
                "<tr class=\"region\"><td class=\"addr\">{:#014x}</td><td class=\"addr\">{:#014x}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
                reg.start,
                reg.end,
                human_size(reg.len()),
                esc(&reg.kind),
                esc(&zones_of(r, reg.start, reg.end).join(", "))
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("<h3>Zones</h3>\n");
    if r.zones.is_empty() {
        missing(o, "Zones", "'zoneinfo' and 'buddyinfo'");
    } else {
        let orders = r
            .zones
            .iter()
            .map(|z| z.free_blocks.len())
            .max()
            .unwrap_or(0)
            .min(16);
        o.push_str("<table class=\"zones\"><tr><th>zone</th><th>range</th><th>managed</th><th>free</th><th>in use</th>");
        for i in 0..orders {
            let _ = write!(
                o,
                "<th title=\"free blocks of {}\">{}</th>",
                human_size(4096u64 << i),
                human_size(4096u64 << i)
            );
        }
        o.push_str("</tr>\n");
        for z in &r.zones {
            let range = match (z.start, z.end) {
                (Some(s), Some(e)) => format!("[{s:#x}-{e:#x})"),
                _ => "not in this log".into(),
            };
            let pages =
                |p: Option<u64>| p.map_or("?".into(), |p| human_size(p.saturating_mul(4096)));
            let used = match (z.managed, z.free) {
                (Some(m), Some(f)) if m > 0 => {
                    let pct = (m.saturating_sub(f)) as f64 * 100.0 / m as f64;
                    format!(
                        "<span class=\"usage-box\"><span class=\"usage\" style=\"width:{:.0}%\"></span></span> {pct:.1}%",
                        pct.clamp(0.0, 100.0).max(1.0)
                    )
                }
                _ => "?".into(),
            };
            let _ = write!(
                o,
                "<tr class=\"zone\" data-zone=\"{}\"><td><span class=\"badge\" style=\"background:{}\">&nbsp;</span> {}</td><td class=\"addr\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{used}</td>",
                esc(&z.name),
                zone_colour(&z.name),
                esc(&z.name),
                range,
                pages(z.managed),
                pages(z.free)
            );
            for i in 0..orders {
                let _ = write!(
                    o,
                    "<td class=\"num\">{}</td>",
                    z.free_blocks
                        .get(i)
                        .map_or(String::new(), |n| n.to_string())
                );
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</table>\n<p class=\"note\">free blocks per size: the buddy allocator's free lists (<code>buddyinfo</code>)</p>\n");
    }
    if !r.meminfo.is_empty() {
        let _ = writeln!(
            o,
            "<details><summary><code>meminfo</code></summary><pre>{}</pre></details>",
            esc(&r.meminfo.join("\n"))
        );
    }
    o.push_str("</section>\n");
}

fn device_label(r: &Report, b: Bdf) -> String {
    match r.function_at(b) {
        Some(f) => format!(
            "{b} {}{}",
            f.name.as_deref().unwrap_or(""),
            f.driver
                .as_deref()
                .map_or(String::new(), |d| format!(" (driver {d})"))
        ),
        None => b.to_string(),
    }
}

/// IOVA on the left, physical on the right, each in address order, joined
/// by a line per mapping: how the IOMMU rearranges memory for the device.
fn mappings_svg(o: &mut String, maps: &[(String, Mapping)]) {
    let n = maps.len().min(64);
    let row = 26usize;
    let h = 30 + row * n;
    let mut by_iova: Vec<usize> = (0..n).collect();
    by_iova.sort_by_key(|&i| maps[i].1.device_addr);
    let mut by_phys: Vec<usize> = (0..n).collect();
    by_phys.sort_by_key(|&i| maps[i].1.phys);
    let _ = writeln!(
        o,
        "<svg class=\"iova-map\" xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"{h}\" viewBox=\"0 0 640 {h}\">\
         <text x=\"10\" y=\"14\">device address (IOVA)</text><text x=\"420\" y=\"14\">physical address</text>"
    );
    for (slot, &i) in by_iova.iter().enumerate() {
        let m = &maps[i].1;
        let y = 22 + slot * row;
        let py = 22 + by_phys.iter().position(|&j| j == i).unwrap_or(0) * row;
        let _ = writeln!(
            o,
            "<rect x=\"10\" y=\"{y}\" width=\"200\" height=\"20\" fill=\"#dbe7f6\" stroke=\"#2c5282\"/>\
             <text x=\"16\" y=\"{}\">{:#x} +{}</text>\
             <rect x=\"420\" y=\"{py}\" width=\"200\" height=\"20\" fill=\"#e3f2e7\" stroke=\"#3b7d4f\"/>\
             <text x=\"426\" y=\"{}\">{:#x} {}</text>\
             <line x1=\"210\" y1=\"{}\" x2=\"420\" y2=\"{}\" stroke=\"#2c5282\" marker-end=\"none\"/>",
            y + 14,
            m.device_addr,
            human_size(m.size),
            py + 14,
            m.phys,
            esc(&m.map_type),
            y + 10,
            py + 10
        );
    }
    o.push_str("</svg>\n");
}

fn iommu(o: &mut String, r: &Report) {
    o.push_str("<section id=\"iommu\">\n<h2>IOMMU domains and their mappings</h2>\n");
    let Some(io) = &r.iommu else {
        if r.domains.is_empty() {
            missing(o, "IOMMU state", "run 'iommu' and 'iommu domains'");
        } else {
            o.push_str("<p class=\"missing\">'iommu' and 'iommu domains' not in this log: domains below are from the boot messages only</p>\n");
            domains(o, r);
        }
        o.push_str("</section>\n");
        return;
    };
    if let Some(e) = &io.error {
        let e = e.strip_prefix("iommu: ").unwrap_or(e);
        let _ = writeln!(
            o,
            "<p class=\"error\">no IOMMU in this boot: {}</p>",
            esc(e)
        );
    }
    if let Some(m) = &io.mode {
        let _ = writeln!(o, "<p>{}</p>", esc(m));
    }
    if !io.units.is_empty() {
        // Builds before interrupt remapping print no such line: no column then.
        let ir = io.units.iter().any(|u| u.ir_enabled.is_some());
        let _ = writeln!(
            o,
            "<table class=\"units\"><tr><th>unit</th><th>tables</th><th>translation</th><th>root table</th>{}<th>invalidations</th></tr>",
            if ir { "<th>interrupt remapping</th>" } else { "" }
        );
        for u in &io.units {
            let ir_cell = if ir {
                format!("<td>{}</td>", esc(&intremap::unit_state(u)))
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "<tr class=\"unit\"><td class=\"addr\">{:#x}</td><td>{}</td><td>{}</td><td class=\"addr\">{}</td>{ir_cell}<td>{}</td></tr>",
                u.base,
                esc(u.summary.as_deref().unwrap_or("?")),
                match u.enabled {
                    Some(true) => "enabled",
                    Some(false) => "disabled",
                    None => "?",
                },
                u.root_table.map_or("?".into(), |a| format!("{a:#x}")),
                esc(u.invalidations.as_deref().unwrap_or("?"))
            );
        }
        o.push_str("</table>\n");
        for u in &io.units {
            if u.cap.is_some() || u.ecap.is_some() {
                let _ = writeln!(
                    o,
                    "<details><summary>unit {:#x} capabilities</summary><pre>CAP  {}\nECAP {}</pre></details>",
                    u.base,
                    esc(u.cap.as_deref().unwrap_or("?")),
                    esc(u.ecap.as_deref().unwrap_or("?"))
                );
            }
        }
    } else if io.error.is_none() && io.mode.is_none() {
        missing(o, "The remapping units", "run 'iommu'");
    }
    if let Some(e) = &io.domains_error {
        let _ = writeln!(o, "<p class=\"error\">iommu domains: {}</p>", esc(e));
    } else if !io.domains_listed {
        missing(o, "The domains' mappings", "run 'iommu domains'");
    }
    domains(o, r);
    o.push_str("</section>\n");
}

fn domains(o: &mut String, r: &Report) {
    if r.domains.is_empty() {
        if r.iommu.as_ref().is_some_and(|i| i.error.is_none()) {
            o.push_str(
                "<p>no domains (the IOMMU is off or in pass-through for every device)</p>\n",
            );
        }
        return;
    }
    for d in &r.domains {
        let class = match d.kind {
            DomainKind::Translated => "translated",
            DomainKind::PassThrough => "pass-through",
            DomainKind::Other(_) => "other",
        };
        let _ = writeln!(
            o,
            "<div class=\"domain {class}\" id=\"domain-{}\" data-domain=\"{}\" data-mappings=\"{}\">\n<h3>domain {} · {}{}</h3>",
            d.id,
            d.id,
            d.mappings.len(),
            d.id,
            esc(d.kind.name()),
            d.unit.map_or(String::new(), |u| format!(" · unit {u:#x}"))
        );
        o.push_str("<p>devices: ");
        let mut devs: Vec<String> = d
            .devices
            .iter()
            .map(|b| format!("<code>{}</code>", esc(&device_label(r, *b))))
            .collect();
        if d.other_devices {
            devs.push("every other device on the unit".into());
        }
        if devs.is_empty() {
            devs.push("none in this log".into());
        }
        o.push_str(&devs.join(", "));
        o.push_str("</p>\n");
        if d.kind == DomainKind::PassThrough {
            o.push_str("<p class=\"note\">pass-through: bus address = physical address; no page tables</p>\n");
        }
        for (dev, n) in &d.mapping_counts {
            let _ = writeln!(o, "<p class=\"note\">{}: {n} live mapping(s)</p>", esc(dev));
        }
        if d.mappings.is_empty() {
            if d.kind == DomainKind::Translated {
                o.push_str("<p>no live mappings in this log (the runner's 'dmademo keep' holds some)</p>\n");
            }
        } else {
            mappings_svg(o, &d.mappings);
            o.push_str("<table class=\"mappings\"><tr><th>device</th><th>IOVA range</th><th>physical range</th><th>size</th><th>direction</th><th>kind</th><th>via</th></tr>\n");
            for (dev, m) in &d.mappings {
                let last = |a: u64| a.saturating_add(m.size.saturating_sub(1));
                let _ = writeln!(
                    o,
                    "<tr class=\"mapping\"><td>{}</td><td class=\"addr\">{:#x}-{:#x}</td><td class=\"addr\">{:#x}-{:#x}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(dev),
                    m.device_addr,
                    last(m.device_addr),
                    m.phys,
                    last(m.phys),
                    human_size(m.size),
                    esc(&m.direction),
                    esc(&m.map_type),
                    esc(&m.via)
                );
            }
            o.push_str("</table>\n");
        }
        o.push_str("</div>\n");
    }
}

fn dma(o: &mut String, r: &Report) {
    o.push_str("<section id=\"dma\">\n<h2>DMA controllers and devices</h2>\n");
    let Some(dma) = &r.dma else {
        missing(o, "DMA state", "run 'dma'");
        o.push_str("</section>\n");
        return;
    };
    if dma.controllers.is_empty() {
        o.push_str("<p>no dmaengine controllers listed</p>\n");
    } else {
        o.push_str("<table class=\"controllers\"><tr><th>controller</th><th>driver</th><th>capabilities</th><th>what</th><th>channels</th></tr>\n");
        for c in &dma.controllers {
            let chans: Vec<String> = c
                .channels
                .iter()
                .map(|ch| format!("<code>{}</code>: {}", esc(&ch.name), esc(&ch.state)))
                .collect();
            let _ = writeln!(
                o,
                "<tr class=\"controller\" data-controller=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.name),
                esc(&c.name),
                esc(&c.driver),
                esc(&c.caps),
                esc(&c.description),
                chans.join("<br>")
            );
        }
        o.push_str("</table>\n");
    }
    for d in &dma.devices {
        let _ = writeln!(
            o,
            "<h3>{}</h3>\n<p class=\"mono\">{}</p>",
            esc(&d.name),
            esc(&d.params)
        );
        if d.mappings.is_empty() {
            o.push_str("<p>no live mappings</p>\n");
        } else {
            o.push_str("<table class=\"mappings\"><tr><th>device address</th><th>physical</th><th>size</th><th>direction</th><th>kind</th><th>via</th></tr>\n");
            for m in &d.mappings {
                let _ = writeln!(
                    o,
                    "<tr><td class=\"addr\">{:#x}</td><td class=\"addr\">{:#x}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    m.device_addr,
                    m.phys,
                    human_size(m.size),
                    esc(&m.direction),
                    esc(&m.map_type),
                    esc(&m.via)
                );
            }
            o.push_str("</table>\n");
        }
    }
    if let Some(s) = &dma.swiotlb {
        let _ = writeln!(
            o,
            "<p>swiotlb bounce pool: <span class=\"mono\">{}</span></p>",
            esc(s)
        );
    }
    if let Some(c) = &dma.completions {
        let _ = writeln!(o, "<p>edu completions: {}</p>", esc(c));
    }
    for l in &dma.debug {
        let _ = writeln!(o, "<p class=\"mono\">{}</p>", esc(l));
    }
    o.push_str("</section>\n");
}

/// `attack matrix` runs in the log: attack x mode, as the kernel judged them.
fn attacks(o: &mut String, r: &Report) {
    if r.attacks.is_empty() {
        return;
    }
    o.push_str("<section id=\"attacks\">\n<h2>Attack matrix</h2>\n<table>\n<tr><th>attack</th>");
    for m in &r.attacks {
        let ir = match m.interrupt_remapping {
            Some(true) => " · IR on",
            Some(false) => " · IR off",
            None => "",
        };
        let _ = write!(o, "<th>{}{ir}</th>", esc(&m.mode));
    }
    o.push_str("</tr>\n");
    let mut names: Vec<&str> = Vec::new();
    for row in r.attacks.iter().flat_map(|m| &m.rows) {
        if !names.contains(&row.attack.as_str()) {
            names.push(&row.attack);
        }
    }
    for name in names {
        let _ = write!(o, "<tr><td>{}</td>", esc(name));
        for m in &r.attacks {
            match m.rows.iter().find(|x| x.attack == name) {
                Some(x) => {
                    let _ = write!(
                        o,
                        "<td title=\"{} byte(s), {} fault(s)\">{}</td>",
                        x.bytes,
                        x.faults,
                        esc(&x.verdict)
                    );
                }
                None => o.push_str("<td></td>"),
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</table>\n<p class=\"note\">edu as the malicious device; ALLOWED: the device got what it tried (bytes read or changed, an interrupt); blocked: the IOMMU stopped it (see Lab 09); IR on/off: interrupt remapping during the run</p>\n</section>\n");
}

/// `lsblk`'s disks, each with its controller's live mappings from `iommu domains`
/// (command lists, FIS areas, queues: mapped while the controller runs).
fn blocks(o: &mut String, r: &Report) {
    o.push_str("<section id=\"block\">\n<h2>Block devices</h2>\n");
    let Some(blocks) = &r.blocks else {
        missing(o, "lsblk", "the runner types it");
        o.push_str("</section>\n");
        return;
    };
    if blocks.is_empty() {
        o.push_str("<p>no block devices</p>\n</section>\n");
        return;
    }
    o.push_str("<table>\n<tr><th>disk</th><th>controller</th><th>driver</th><th>port</th><th>sectors</th><th>size</th><th>model</th><th>controller's live mappings</th></tr>\n");
    for b in blocks {
        let dev = b.dma_device().unwrap_or_default();
        let live = r.domains.iter().find_map(|d| {
            d.mapping_counts
                .iter()
                .find(|(n, _)| *n == dev)
                .map(|(_, c)| (d.id, *c))
        });
        let live = match live {
            Some((id, n)) => format!("{n} in domain {id}"),
            None if r.iommu.as_ref().is_some_and(|i| i.domains_listed) => {
                "not listed by 'iommu domains'".into()
            }
            None => "no IOMMU domain listing in this log".into(),
        };
        let _ = writeln!(
            o,
            "<tr data-disk=\"{}\"><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td data-mappings>{}</td></tr>",
            esc(&b.name),
            esc(&b.name),
            b.bdf.map_or(String::new(), |x| x.to_string()),
            esc(&b.driver),
            esc(&b.port),
            b.sectors,
            esc(&b.size),
            esc(&b.model),
            esc(&live)
        );
    }
    o.push_str("</table>\n");
    // The mappings themselves, per controller.
    for b in blocks {
        let dev = b.dma_device().unwrap_or_default();
        let maps: Vec<&Mapping> = r
            .domains
            .iter()
            .flat_map(|d| d.mappings.iter())
            .filter(|(n, _)| *n == dev)
            .map(|(_, m)| m)
            .collect();
        // One table per controller (an HBA has several disks).
        let first = blocks.iter().position(|x| x.dma_device() == b.dma_device());
        if maps.is_empty() || first.is_some_and(|i| !std::ptr::eq(&blocks[i], b)) {
            continue;
        }
        let _ = writeln!(
            o,
            "<h3>{}</h3>\n<table>\n<tr><th>bus address</th><th>size</th><th>physical</th><th>mapped as</th><th>via</th></tr>",
            esc(&dev)
        );
        for m in maps {
            let _ = writeln!(
                o,
                "<tr><td class=\"addr\">{:#x}</td><td class=\"num\">{}</td><td class=\"addr\">{:#x}</td><td>{}</td><td>{}</td></tr>",
                m.device_addr,
                m.size,
                m.phys,
                esc(&m.map_type),
                esc(&m.via)
            );
        }
        o.push_str("</table>\n");
    }
    o.push_str("</section>\n");
}

fn problems(o: &mut String, r: &Report) {
    if r.errors.is_empty() && r.crash.is_empty() {
        return;
    }
    o.push_str("<section id=\"problems\">\n<h2>Errors in the log</h2>\n");
    for e in &r.errors {
        let _ = writeln!(o, "<p class=\"error mono\">{}</p>", esc(e));
    }
    if !r.crash.is_empty() {
        let _ = writeln!(o, "<pre class=\"error\">{}</pre>", esc(&r.crash.join("\n")));
    }
    o.push_str("</section>\n");
}
