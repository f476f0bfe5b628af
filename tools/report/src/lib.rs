//! Turns a Busmaster boot's serial log (the kernel's boot messages plus the
//! output of shell commands typed at its prompt) into a [`Report`], and the
//! report into one self-contained HTML page ([`render::html`]).
//!
//! The parser reads what it recognises and ignores the rest: a log cut short,
//! garbled or from another build gives a report with fewer parts, never a
//! panic. Every section the page shows says so when its part is missing.

pub mod intremap;
pub mod render;

pub use intremap::{IntRemap, IrUnit, Irte, IrteState};

use std::collections::BTreeMap;
use std::fmt;

/// The shell commands whose output the report uses, in the order the runner
/// types them (`./run.sh report`). `dmademo keep` holds a coherent and a
/// streaming mapping for edu so the IOMMU domain has mappings to show.
pub const COMMANDS: &[&str] = &[
    "lspci -v",
    "lspci -t",
    "lspci -m",
    "meminfo",
    "zoneinfo",
    "buddyinfo",
    "dmademo keep 8192",
    "iommu",
    "iommu ir",
    "iommu domains",
    "dma",
    "dmademo release",
    "lsblk",
];

/// The shell prompt that starts each command's output.
pub const PROMPT: &str = "busmaster> ";

/// A PCI function address; the segment is 0 unless the log names another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub segment: u16,
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Bdf {
    /// Parses `bb:dd.f` or `ssss:bb:dd.f` (hex; device < 32, function < 8).
    pub fn parse(s: &str) -> Option<Bdf> {
        let (rest, func) = s.rsplit_once('.')?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (segment, bus, dev) = match parts.as_slice() {
            [b, d] => ("0", *b, *d),
            [s, b, d] => (*s, *b, *d),
            _ => return None,
        };
        let hex = |t: &str, max: u32, width: usize| {
            (!t.is_empty() && t.len() <= width && t.bytes().all(|c| c.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(t, 16).ok())
                .flatten()
                .filter(|v| *v <= max)
        };
        Some(Bdf {
            segment: hex(segment, 0xffff, 4)? as u16,
            bus: hex(bus, 0xff, 2)? as u8,
            dev: hex(dev, 0x1f, 2)? as u8,
            func: hex(func, 7, 1)? as u8,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segment != 0 {
            write!(f, "{:04x}:", self.segment)?;
        }
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Mem32,
    Mem64,
    Io,
}

impl BarKind {
    pub fn name(self) -> &'static str {
        match self {
            BarKind::Mem32 => "mem32",
            BarKind::Mem64 => "mem64",
            BarKind::Io => "io",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    /// BAR number (0..5), when the log says.
    pub index: Option<u8>,
    pub kind: BarKind,
    pub addr: u64,
    pub size: u64,
    pub prefetchable: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciFunction {
    pub bdf: Option<Bdf>,
    pub vendor: Option<u16>,
    pub device: Option<u16>,
    pub class: Option<u32>,
    /// `Ethernet controller`.
    pub class_name: Option<String>,
    /// `Intel Corporation 82574L Gigabit Network Connection`.
    pub name: Option<String>,
    pub rev: Option<u8>,
    pub bars: Vec<Bar>,
    pub driver: Option<String>,
    /// The bridge this function sits behind (from `lspci -t`).
    pub parent: Option<Bdf>,
    /// For a bridge: the bus behind it.
    pub secondary_bus: Option<u8>,
    pub bus_master: Option<bool>,
    pub capabilities: Vec<String>,
    pub irq: Option<String>,
    pub msi: Option<String>,
    pub simulated: bool,
    /// `Child:` lines (devices a driver registered below this function).
    pub children: Vec<String>,
}

/// One line of the firmware memory map the kernel logs at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
    pub kind: String,
}

impl Region {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }
}

/// A physical memory zone (DMA, DMA32, Normal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub start: Option<u64>,
    /// Exclusive.
    pub end: Option<u64>,
    /// Pages (4 KiB) the buddy allocator manages.
    pub managed: Option<u64>,
    pub free: Option<u64>,
    pub reserve: Option<u64>,
    /// Free blocks per order (4 KiB << order), from `buddyinfo` or `zoneinfo`.
    pub free_blocks: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuUnit {
    pub base: u64,
    /// `segment 0: 3-level tables, Queued invalidation`.
    pub summary: Option<String>,
    pub enabled: Option<bool>,
    pub root_table: Option<u64>,
    pub cap: Option<String>,
    pub ecap: Option<String>,
    pub invalidations: Option<String>,
    /// `interrupt remapping ENABLED` (true) or `disabled` (false); `None` in
    /// logs of builds without interrupt remapping.
    pub ir_enabled: Option<bool>,
    /// The interrupt remapping table's address, when enabled.
    pub ir_table: Option<u64>,
    /// `N entries in use`.
    pub ir_in_use: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainKind {
    Translated,
    PassThrough,
    Other(String),
}

impl DomainKind {
    fn from_word(w: &str) -> DomainKind {
        match w.to_ascii_lowercase().as_str() {
            "translated" => DomainKind::Translated,
            "passthrough" | "pass-through" => DomainKind::PassThrough,
            _ => DomainKind::Other(w.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            DomainKind::Translated => "translated",
            DomainKind::PassThrough => "pass-through",
            DomainKind::Other(s) => s,
        }
    }
}

/// One live DMA mapping as dma-debug describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The device address (an IOVA behind a translating IOMMU).
    pub device_addr: u64,
    pub size: u64,
    pub phys: u64,
    /// `DMA_TO_DEVICE`, ...
    pub direction: String,
    /// `single`, `coherent`, `scatter-gather`, ...
    pub map_type: String,
    /// `Iommu`, `Direct`, `Bounce`.
    pub via: String,
}

impl Mapping {
    /// Parses `[device address=0x..] [size=N bytes] [mapped with D] [mapped as T] [phys=0x..] [Via]`.
    pub fn parse(line: &str) -> Option<Mapping> {
        let mut fields = BTreeMap::new();
        let mut bare = Vec::new();
        for part in line.trim().split('[').skip(1) {
            let inner = part.split(']').next()?.trim();
            match inner.split_once('=') {
                Some((k, v)) => {
                    fields.insert(k.trim(), v.trim());
                }
                None => match inner.strip_prefix("mapped with ") {
                    Some(d) => {
                        fields.insert("dir", d);
                    }
                    None => match inner.strip_prefix("mapped as ") {
                        Some(t) => {
                            fields.insert("type", t);
                        }
                        None => bare.push(inner),
                    },
                },
            }
        }
        Some(Mapping {
            device_addr: parse_num(fields.get("device address")?)?,
            size: parse_num(fields.get("size")?.trim_end_matches("bytes").trim())?,
            phys: parse_num(fields.get("phys")?)?,
            direction: fields.get("dir").unwrap_or(&"?").to_string(),
            map_type: fields.get("type").unwrap_or(&"?").to_string(),
            via: bare.last().unwrap_or(&"?").to_string(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub id: u32,
    pub kind: DomainKind,
    pub unit: Option<u64>,
    pub devices: Vec<Bdf>,
    /// `other devices on unit ...`: every device without a domain of its own.
    pub other_devices: bool,
    /// The `N live mapping(s)` count the kernel printed, per device name.
    pub mapping_counts: Vec<(String, usize)>,
    /// Mappings listed for this domain's devices: (device name, mapping).
    pub mappings: Vec<(String, Mapping)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iommu {
    /// `mode Translate, strict invalidation`.
    pub mode: Option<String>,
    pub units: Vec<IommuUnit>,
    /// Set when the `iommu` command answered with an error (no IOMMU).
    pub error: Option<String>,
    /// Whether `iommu domains` output was in the log.
    pub domains_listed: bool,
    pub domains_error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaChannel {
    pub name: String,
    pub state: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaController {
    /// `dma0`.
    pub name: String,
    /// `i8237`.
    pub driver: String,
    /// `SLAVE|PRIVATE`.
    pub caps: String,
    pub description: String,
    pub channels: Vec<DmaChannel>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaDevice {
    /// `0000:00:03.0 edu`.
    pub name: String,
    /// `dma_mask 0xfffffff, coherent_dma_mask ...`.
    pub params: String,
    pub mappings: Vec<Mapping>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dma {
    pub controllers: Vec<DmaController>,
    pub devices: Vec<DmaDevice>,
    /// The `swiotlb: ...` line.
    pub swiotlb: Option<String>,
    /// `dma-debug: ...` lines.
    pub debug: Vec<String>,
    pub completions: Option<String>,
}

/// The output of one shell command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    pub command: String,
    pub lines: Vec<String>,
}

/// Everything the page shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `Busmaster 0.1.0 booting; TSC ... MHz`.
    pub banner: Option<String>,
    pub cmdline: Option<String>,
    pub pci: Vec<PciFunction>,
    pub pci_summary: Option<String>,
    /// Whether `lspci -t` was in the log (so parents are known).
    pub pci_tree_known: bool,
    pub regions: Vec<Region>,
    pub zones: Vec<Zone>,
    /// The swiotlb bounce pool (inclusive range).
    pub swiotlb: Option<(u64, u64)>,
    pub meminfo: Vec<String>,
    pub iommu: Option<Iommu>,
    pub domains: Vec<Domain>,
    pub dma: Option<Dma>,
    /// `lsblk`'s disks (`None`: no `lsblk` in the log).
    pub blocks: Option<Vec<BlockDev>>,
    /// `attack matrix` tables, one per run in the log.
    pub attacks: Vec<AttackMatrix>,
    /// `iommu ir`: the interrupt remapping table (`None`: not in the log).
    pub intremap: Option<IntRemap>,
    /// Shell commands seen, in order.
    pub commands: Vec<String>,
    /// `error: ...` lines the shell printed.
    pub errors: Vec<String>,
    /// Lines of a crash report (CPU exception, panic), if the boot ended in one.
    pub crash: Vec<String>,
}

/// The table `attack matrix` prints: one mode's column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttackMatrix {
    /// `strict`, `lazy`, `pt`, `off`, with `+untrusted` when edu was marked so.
    pub mode: String,
    /// Whether interrupt remapping was on for the run (`None`: the log's
    /// build did not say).
    pub interrupt_remapping: Option<bool>,
    pub rows: Vec<AttackRow>,
}

/// One attack's cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttackRow {
    pub attack: String,
    /// `ALLOWED`, `blocked` or `n/a`.
    pub verdict: String,
    pub bytes: u64,
    pub faults: u64,
}

/// One disk as `lsblk` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockDev {
    /// `sda`, `nvme0n1`.
    pub name: String,
    /// The controller's PCI function, as the kernel wrote it (`0000:00:1f.2`).
    pub controller: String,
    pub bdf: Option<Bdf>,
    /// `ahci` or `nvme`: the driver, and with the function the DMA device's name.
    pub driver: String,
    /// AHCI port (`-` for NVMe).
    pub port: String,
    pub sectors: u64,
    /// `32.0 MiB`.
    pub size: String,
    pub model: String,
}

impl BlockDev {
    /// The controller's DMA device name (`0000:00:1f.2 ahci`), as `iommu domains` prints it.
    pub fn dma_device(&self) -> Option<String> {
        self.bdf
            .map(|_| format!("{} {}", self.controller, self.driver))
    }
}

/// `lsblk`: `NAME CONTROLLER PORT SECTORS SIZE MODEL` rows.
fn parse_lsblk(r: &mut Report, lines: &[String]) {
    let blocks = r.blocks.get_or_insert_with(Vec::new);
    for l in lines {
        let w: Vec<&str> = l.split_whitespace().collect();
        // name, bdf, driver, port, sectors, size number, size unit, model...
        if w.len() < 7 || w[0] == "NAME" {
            continue;
        }
        let (Some(bdf), Ok(sectors)) = (Bdf::parse(w[1]), w[4].parse::<u64>()) else {
            continue;
        };
        blocks.push(BlockDev {
            name: w[0].to_string(),
            controller: w[1].to_string(),
            bdf: Some(bdf),
            driver: w[2].to_string(),
            port: w[3].to_string(),
            sectors,
            size: format!("{} {}", w[5], w[6]),
            model: w[7..].join(" "),
        });
    }
}

/// `0x1f`, `1f` (when `hex`), or decimal.
fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// Strips a `[    0.123456] ` uptime stamp; `None` when the line has none.
fn boot_message(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let (stamp, msg) = rest.split_once(']')?;
    let stamp = stamp.trim();
    (!stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .then(|| msg.strip_prefix(' ').unwrap_or(msg))
}

/// Splits a log into boot messages and per-command output.
pub fn split(log: &str) -> (Vec<String>, Vec<CommandOutput>) {
    let mut boot = Vec::new();
    let mut cmds: Vec<CommandOutput> = Vec::new();
    for raw in log.lines() {
        // Serial output may carry CR, and a line editor's redraws carry escapes.
        let line: String = strip_escapes(raw);
        if let Some(msg) = boot_message(&line) {
            boot.push(msg.to_string());
            continue;
        }
        if let Some(i) = line.rfind(PROMPT) {
            let command = line[i + PROMPT.len()..].trim().to_string();
            cmds.push(CommandOutput {
                command,
                lines: Vec::new(),
            });
            continue;
        }
        if let Some(c) = cmds.last_mut() {
            c.lines.push(line);
        }
    }
    (boot, cmds)
}

/// Removes CR and ANSI escape sequences (`ESC [ ... letter`).
fn strip_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() || d == '~' {
                            break;
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Parses a whole log.
pub fn parse(log: &str) -> Report {
    let (boot, cmds) = split(log);
    let mut r = Report::default();
    parse_boot(&mut r, &boot);
    for c in &cmds {
        if !c.command.is_empty() {
            r.commands.push(c.command.clone());
        }
        for l in &c.lines {
            if l.starts_with("error:") {
                r.errors.push(format!("{}: {l}", c.command));
            }
        }
        let words: Vec<&str> = c.command.split_whitespace().collect();
        match words.as_slice() {
            ["lspci", "-v"] => parse_lspci_v(&mut r, &c.lines),
            ["lspci", "-t"] => parse_lspci_t(&mut r, &c.lines),
            ["lspci", "-m"] => parse_lspci_m(&mut r, &c.lines),
            ["lspci"] => parse_lspci_plain(&mut r, &c.lines),
            ["meminfo"] => parse_meminfo(&mut r, &c.lines),
            ["zoneinfo"] => parse_zoneinfo(&mut r, &c.lines),
            ["buddyinfo"] => parse_buddyinfo(&mut r, &c.lines),
            ["iommu"] => parse_iommu(&mut r, &c.lines),
            ["iommu", "domains"] => parse_domains(&mut r, &c.lines),
            ["iommu", "ir"] => {
                if let Some(ir) = intremap::parse(&c.lines) {
                    r.intremap = Some(ir);
                }
            }
            ["dma"] => parse_dma(&mut r, &c.lines),
            ["lsblk"] => parse_lsblk(&mut r, &c.lines),
            ["attack", "matrix", ..] => parse_attack_matrix(&mut r, &c.lines),
            _ => {}
        }
    }
    for (i, l) in log.lines().enumerate() {
        if l.contains("!!! CPU EXCEPTION")
            || l.contains("KERNEL PANIC")
            || l.contains("panicked at")
        {
            r.crash = log.lines().skip(i).take(12).map(strip_escapes).collect();
            break;
        }
    }
    r.pci.sort_by_key(|f| f.bdf);
    r
}

impl Report {
    /// The function at `bdf`, created when missing.
    fn function(&mut self, bdf: Bdf) -> &mut PciFunction {
        let i = match self.pci.iter().position(|f| f.bdf == Some(bdf)) {
            Some(i) => i,
            None => {
                self.pci.push(PciFunction {
                    bdf: Some(bdf),
                    ..Default::default()
                });
                self.pci.len() - 1
            }
        };
        &mut self.pci[i]
    }

    fn zone(&mut self, name: &str) -> &mut Zone {
        let i = match self.zones.iter().position(|z| z.name == name) {
            Some(i) => i,
            None => {
                self.zones.push(Zone {
                    name: name.to_string(),
                    ..Default::default()
                });
                self.zones.len() - 1
            }
        };
        &mut self.zones[i]
    }

    fn domain(&mut self, id: u32, kind: DomainKind) -> &mut Domain {
        let i = match self.domains.iter().position(|d| d.id == id) {
            Some(i) => i,
            None => {
                self.domains.push(Domain {
                    id,
                    kind,
                    unit: None,
                    devices: Vec::new(),
                    other_devices: false,
                    mapping_counts: Vec::new(),
                    mappings: Vec::new(),
                });
                self.domains.len() - 1
            }
        };
        &mut self.domains[i]
    }

    /// The name of the function's driver, or what the log calls it.
    pub fn function_at(&self, bdf: Bdf) -> Option<&PciFunction> {
        self.pci.iter().find(|f| f.bdf == Some(bdf))
    }
}

fn parse_boot(r: &mut Report, boot: &[String]) {
    let mut in_map = false;
    for msg in boot {
        if let Some(b) = msg.strip_prefix("Busmaster ") {
            r.banner = Some(format!("Busmaster {b}"));
        } else if let Some(c) = msg.strip_prefix("command line: ") {
            r.cmdline = Some(c.trim().trim_matches('\'').to_string());
        }
        if msg.starts_with("memory map:") {
            in_map = true;
            r.regions.clear();
            continue;
        }
        if in_map {
            if let Some(reg) = parse_region(msg) {
                r.regions.push(reg);
                continue;
            }
            in_map = false;
        }
        if let Some(rest) = msg.strip_prefix("mm: zone ") {
            // `DMA32  [0x..-0x..) 518447 pages, 518447 free`
            let mut it = rest.split_whitespace();
            let Some(name) = it.next() else { continue };
            let range = parse_range(rest);
            let z = r.zone(name);
            if let Some((s, e)) = range {
                z.start = Some(s);
                z.end = Some(e);
            }
            if let Some(after) = rest.split_once(')').map(|x| x.1) {
                let nums: Vec<u64> = after
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|t| t.parse().ok())
                    .collect();
                if let [managed, free, ..] = nums.as_slice() {
                    z.managed.get_or_insert(*managed);
                    z.free.get_or_insert(*free);
                }
            }
        } else if let Some(rest) = msg.strip_prefix("software IO TLB: mapped ") {
            if let Some((s, e)) = rest
                .split_once("[mem ")
                .and_then(|(_, x)| x.split_once(']'))
                .and_then(|(x, _)| x.split_once('-'))
            {
                if let (Some(s), Some(e)) = (parse_hex(s), parse_hex(e)) {
                    r.swiotlb = Some((s, e));
                }
            }
        } else if let Some(rest) = msg.strip_prefix("pci ") {
            parse_boot_pci(r, rest);
        } else if let Some(rest) = msg.strip_prefix("DMAR: ") {
            // `00:03.0 attached to domain 1 (Translated)`
            if let Some((dev, tail)) = rest.split_once(" attached to domain ") {
                let mut t = tail.split_whitespace();
                let id = t.next().and_then(|n| n.parse::<u32>().ok());
                let kind = t
                    .next()
                    .map(|k| k.trim_matches(|c| c == '(' || c == ')'))
                    .unwrap_or("");
                if let (Some(bdf), Some(id)) = (Bdf::parse(dev.trim()), id) {
                    let d = r.domain(id, DomainKind::from_word(kind));
                    if !d.devices.contains(&bdf) {
                        d.devices.push(bdf);
                    }
                }
            }
        } else if let Some(rest) = msg.strip_prefix("iommu: ") {
            // `0000:00:03.0 in its own domain 1 (unit 0xfed90000)`
            if let Some((dev, tail)) = rest.split_once(" in its own domain ") {
                let mut t = tail.split_whitespace();
                let id = t.next().and_then(|n| n.parse::<u32>().ok());
                let unit = tail
                    .split_once("unit ")
                    .and_then(|(_, u)| parse_hex(u.trim_end_matches(')')));
                if let (Some(bdf), Some(id)) = (Bdf::parse(dev.trim()), id) {
                    let d = r.domain(id, DomainKind::Translated);
                    if !d.devices.contains(&bdf) {
                        d.devices.push(bdf);
                    }
                    if unit.is_some() {
                        d.unit = unit;
                    }
                }
            }
        }
    }
}

/// `  [mem 0x...-0x...]   639 KiB usable`
fn parse_region(msg: &str) -> Option<Region> {
    let rest = msg.trim().strip_prefix("[mem ")?;
    let (range, tail) = rest.split_once(']')?;
    let (s, e) = range.split_once('-')?;
    let kind = tail.trim().split_once("KiB").map(|x| x.1.trim())?;
    Some(Region {
        start: parse_hex(s)?,
        end: parse_hex(e)?,
        kind: if kind.is_empty() { "?" } else { kind }.to_string(),
    })
}

/// The first `[0x..-0x..)` in `s`.
fn parse_range(s: &str) -> Option<(u64, u64)> {
    let inner = s.split_once('[')?.1.split_once(')')?.0;
    let (a, b) = inner.split_once('-')?;
    Some((parse_hex(a)?, parse_hex(b)?))
}

/// `0000:00:03.0: [1234:11e8] type 00 class 0x00ff00`, `... reg 0x10: [mem a-b pref]`,
/// `... bound to edu`.
fn parse_boot_pci(r: &mut Report, rest: &str) {
    let Some((dev, tail)) = rest.split_once(": ") else {
        return;
    };
    let Some(bdf) = Bdf::parse(dev.trim()) else {
        return;
    };
    let tail = tail.trim();
    if let Some(ids) = tail.strip_prefix('[') {
        let Some((ids, after)) = ids.split_once(']') else {
            return;
        };
        let (v, d) = ids.split_once(':').unwrap_or(("", ""));
        let class = after
            .split_once("class ")
            .and_then(|(_, c)| parse_hex(c.split_whitespace().next().unwrap_or("")));
        let is_bridge = after.contains("type 01");
        let f = r.function(bdf);
        f.vendor = f.vendor.or(u16::from_str_radix(v, 16).ok());
        f.device = f.device.or(u16::from_str_radix(d, 16).ok());
        f.class = f.class.or(class.map(|c| c as u32));
        let _ = is_bridge;
    } else if let Some(reg) = tail.strip_prefix("reg ") {
        // `0x10: [mem 0xfd000000-0xfdffffff pref]` / `[io  0x...-0x...]`
        let Some((off, desc)) = reg.split_once(':') else {
            return;
        };
        let index = parse_num(off)
            .filter(|o| (0x10..=0x24).contains(o))
            .map(|o| ((o - 0x10) / 4) as u8);
        let Some(inner) = desc
            .split_once('[')
            .and_then(|(_, x)| x.split_once(']'))
            .map(|x| x.0)
        else {
            return;
        };
        let mut words = inner.split_whitespace();
        let kind = match words.next() {
            Some("io") => BarKind::Io,
            Some("mem") => BarKind::Mem32,
            Some("mem64") => BarKind::Mem64,
            _ => return,
        };
        let Some((a, b)) = words.next().and_then(|w| w.split_once('-')) else {
            return;
        };
        let (Some(a), Some(b)) = (parse_hex(a), parse_hex(b)) else {
            return;
        };
        let prefetchable = words.any(|w| w == "pref");
        let f = r.function(bdf);
        if f.bars.iter().all(|x| x.index != index || index.is_none()) {
            f.bars.push(Bar {
                index,
                kind: if a > u32::MAX as u64 && kind == BarKind::Mem32 {
                    BarKind::Mem64
                } else {
                    kind
                },
                addr: a,
                size: b.saturating_sub(a).saturating_add(1),
                prefetchable,
            });
        }
    } else if let Some(drv) = tail.strip_prefix("bound to ") {
        let f = r.function(bdf);
        f.driver = Some(drv.trim().to_string());
    }
}

/// `00:03.0 Unclassified device: Technical Corp. QEMU edu educational device [1234:11e8] (rev 10)`
fn parse_lspci_header(line: &str) -> Option<(Bdf, PciFunction)> {
    let (addr, rest) = line.split_once(' ')?;
    let bdf = Bdf::parse(addr)?;
    let mut f = PciFunction {
        bdf: Some(bdf),
        ..Default::default()
    };
    let mut rest = rest.trim();
    if let Some(r) = rest.strip_suffix(" [simulated]") {
        f.simulated = true;
        rest = r;
    }
    if let Some((r, rev)) = rest.rsplit_once(" (rev ") {
        f.rev = u8::from_str_radix(rev.trim_end_matches(')'), 16).ok();
        rest = r;
    }
    if let Some((r, ids)) = rest.rsplit_once(" [") {
        if let Some((v, d)) = ids.trim_end_matches(']').split_once(':') {
            if let (Ok(v), Ok(d)) = (u16::from_str_radix(v, 16), u16::from_str_radix(d, 16)) {
                f.vendor = Some(v);
                f.device = Some(d);
                rest = r;
            }
        }
    }
    match rest.split_once(": ") {
        Some((class, name)) => {
            f.class_name = Some(class.to_string());
            f.name = Some(name.to_string());
        }
        None => f.name = Some(rest.to_string()),
    }
    Some((bdf, f))
}

/// Copies what `from` knows into `to`.
fn merge(to: &mut PciFunction, from: PciFunction) {
    macro_rules! take {
        ($($f:ident),*) => {$( if from.$f.is_some() { to.$f = from.$f; } )*};
    }
    take!(
        vendor,
        device,
        class,
        class_name,
        name,
        rev,
        driver,
        secondary_bus,
        bus_master,
        irq,
        msi
    );
    if from.parent.is_some() {
        to.parent = from.parent;
    }
    to.simulated |= from.simulated;
    if !from.bars.is_empty() {
        to.bars = from.bars;
    }
    if !from.capabilities.is_empty() {
        to.capabilities = from.capabilities;
    }
    if !from.children.is_empty() {
        to.children = from.children;
    }
}

fn parse_lspci_plain(r: &mut Report, lines: &[String]) {
    for l in lines {
        if let Some((bdf, f)) = parse_lspci_header(l) {
            merge(r.function(bdf), f);
        } else if l.starts_with('(') && l.contains("functions") {
            r.pci_summary = Some(l.trim_matches(|c| c == '(' || c == ')').to_string());
        }
    }
}

/// `Memory at fd000000 (32-bit, prefetchable) [size=16M]`, `I/O ports at c040 [size=32]`.
fn parse_lspci_bar(line: &str) -> Option<Bar> {
    let (kind, rest) = if let Some(r) = line.strip_prefix("Memory at ") {
        let kind = if line.contains("64-bit") {
            BarKind::Mem64
        } else {
            BarKind::Mem32
        };
        (kind, r)
    } else {
        (BarKind::Io, line.strip_prefix("I/O ports at ")?)
    };
    let addr = parse_hex(rest.split_whitespace().next()?)?;
    let size = rest
        .split_once("[size=")
        .and_then(|(_, s)| s.split_once(']'))
        .and_then(|(s, _)| parse_size(s))?;
    Some(Bar {
        index: None,
        kind,
        addr,
        size,
        prefetchable: line.contains(" prefetchable"),
    })
}

/// `16M`, `4K`, `32`, `1G`.
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, shift) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 10),
        'M' => (&s[..s.len() - 1], 20),
        'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn parse_lspci_v(r: &mut Report, lines: &[String]) {
    let mut cur: Option<(Bdf, PciFunction)> = None;
    let flush = |r: &mut Report, cur: &mut Option<(Bdf, PciFunction)>| {
        if let Some((bdf, f)) = cur.take() {
            merge(r.function(bdf), f);
        }
    };
    for l in lines {
        if let Some(detail) = l.strip_prefix('\t') {
            let Some((_, f)) = cur.as_mut() else { continue };
            let detail = detail.trim();
            if let Some(b) = parse_lspci_bar(detail) {
                f.bars.push(b);
            } else if let Some(d) = detail.strip_prefix("Kernel driver in use: ") {
                f.driver = Some(d.to_string());
            } else if let Some(c) = detail.strip_prefix("Capabilities: ") {
                f.capabilities.push(c.to_string());
            } else if let Some(i) = detail.strip_prefix("Interrupt: ") {
                f.irq = Some(i.to_string());
            } else if let Some(m) = detail.strip_prefix("MSI: ") {
                f.msi = Some(m.to_string());
            } else if let Some(c) = detail.strip_prefix("Control: ") {
                f.bus_master = c
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("BusMaster"))
                    .map(|s| s == "+");
            } else if let Some(b) = detail.strip_prefix("Bus: ") {
                f.secondary_bus = b
                    .split_once("secondary=")
                    .and_then(|(_, s)| u8::from_str_radix(s.get(..2)?, 16).ok());
            } else if let Some(c) = detail.strip_prefix("Child: ") {
                f.children.push(c.to_string());
            } else if detail.starts_with("Simulated:") {
                f.simulated = true;
            }
        } else if let Some((bdf, f)) = parse_lspci_header(l) {
            flush(r, &mut cur);
            cur = Some((bdf, f));
        } else if l.starts_with('(') && l.contains("functions") {
            flush(r, &mut cur);
            r.pci_summary = Some(l.trim_matches(|c| c == '(' || c == ')').to_string());
        } else if l.trim().is_empty() {
            flush(r, &mut cur);
        }
    }
    flush(r, &mut cur);
}

fn parse_lspci_t(r: &mut Report, lines: &[String]) {
    // Each device line is `<prefix>+-bb:dd.f ...` or `<prefix>\-...`; a bridge's
    // children are indented 4 columns further.
    let mut stack: Vec<(usize, Bdf)> = Vec::new();
    let mut any = false;
    for l in lines {
        let Some(col) = l.find("+-").or_else(|| l.find("\\-")) else {
            continue;
        };
        let Some(rest) = l.get(col + 2..) else {
            continue;
        };
        let Some((bdf, f)) = parse_lspci_header(rest) else {
            continue;
        };
        while stack.last().is_some_and(|(c, _)| *c >= col) {
            stack.pop();
        }
        let parent = stack.last().map(|(_, b)| *b);
        let func = r.function(bdf);
        merge(func, f);
        func.parent = parent;
        stack.push((col, bdf));
        any = true;
    }
    // `[bus 01]` lines name a bridge's secondary bus.
    let mut last: Option<Bdf> = None;
    for l in lines {
        if let Some(col) = l.find("+-").or_else(|| l.find("\\-")) {
            last = l
                .get(col + 2..)
                .and_then(|x| x.split_whitespace().next())
                .and_then(Bdf::parse);
        } else if let Some(bus) = l
            .trim()
            .trim_start_matches('|')
            .trim()
            .strip_prefix("[bus ")
        {
            if let (Some(b), Ok(n)) = (last, u8::from_str_radix(bus.trim_end_matches(']'), 16)) {
                r.function(b).secondary_bus = Some(n);
            }
        }
    }
    r.pci_tree_known |= any;
}

fn parse_lspci_m(r: &mut Report, lines: &[String]) {
    for l in lines {
        let mut words = l.split_whitespace();
        let Some(bdf) = words.next().and_then(Bdf::parse) else {
            continue;
        };
        let mut f = PciFunction::default();
        if let Some((v, d)) = words.next().and_then(|w| w.split_once(':')) {
            f.vendor = u16::from_str_radix(v, 16).ok();
            f.device = u16::from_str_radix(d, 16).ok();
        }
        for w in words {
            if let Some(c) = w.strip_prefix("class=") {
                f.class = u32::from_str_radix(c, 16).ok();
            } else if let Some(b) = w.strip_prefix("bar") {
                // `0=mem32:0xfd000000:0x1000000:pf`
                let Some((i, desc)) = b.split_once('=') else {
                    continue;
                };
                let parts: Vec<&str> = desc.split(':').collect();
                let kind = match parts.first() {
                    Some(&"io") => BarKind::Io,
                    Some(&"mem64") => BarKind::Mem64,
                    Some(&"mem32") => BarKind::Mem32,
                    _ => continue,
                };
                let (Some(addr), Some(size)) = (
                    parts.get(1).and_then(|a| parse_num(a)),
                    parts.get(2).and_then(|s| parse_num(s)),
                ) else {
                    continue;
                };
                f.bars.push(Bar {
                    index: i.parse().ok(),
                    kind,
                    addr,
                    size,
                    prefetchable: parts.get(3) == Some(&"pf"),
                });
            }
        }
        merge(r.function(bdf), f);
    }
}

fn parse_meminfo(r: &mut Report, lines: &[String]) {
    for l in lines {
        if l.trim().is_empty() || l.starts_with("error:") {
            continue;
        }
        r.meminfo.push(l.clone());
        // `Zone DMA32          2073788 kB managed,    2060932 kB free`
        if let Some(rest) = l.strip_prefix("Zone ") {
            let mut w = rest.split_whitespace();
            let Some(name) = w.next() else { continue };
            let nums: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect();
            if let [managed, free] = nums.as_slice() {
                let z = r.zone(name);
                z.managed.get_or_insert(managed / 4);
                z.free = Some(free / 4);
            }
        }
    }
}

fn zone_header(l: &str) -> Option<&str> {
    l.strip_prefix("Node ")?
        .split_once("zone")
        .map(|(_, n)| n.split_whitespace().next().unwrap_or(""))
        .filter(|n| !n.is_empty())
}

fn parse_zoneinfo(r: &mut Report, lines: &[String]) {
    let mut cur: Option<String> = None;
    for l in lines {
        if let Some(name) = zone_header(l) {
            cur = Some(name.to_string());
            r.zone(name);
            continue;
        }
        let Some(name) = cur.clone() else { continue };
        let t = l.trim();
        let (key, val) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
        let z = r.zone(&name);
        match key {
            "range" => {
                if let Some((s, e)) = parse_range(val) {
                    z.start = Some(s);
                    z.end = Some(e);
                }
            }
            "managed" => z.managed = val.trim().parse().ok().or(z.managed),
            "free" => z.free = val.trim().parse().ok().or(z.free),
            "reserve" => z.reserve = val.trim().parse().ok(),
            "blocks" => {
                let b: Vec<u64> = val
                    .split_whitespace()
                    .map_while(|n| n.parse().ok())
                    .collect();
                if !b.is_empty() {
                    z.free_blocks = b;
                }
            }
            _ => cur = None,
        }
    }
}

fn parse_buddyinfo(r: &mut Report, lines: &[String]) {
    for l in lines {
        let Some(name) = zone_header(l) else { continue };
        let counts: Vec<u64> = l
            .split_once(name)
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .map_while(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let name = name.to_string();
        if !counts.is_empty() {
            r.zone(&name).free_blocks = counts;
        }
    }
}

fn parse_iommu(r: &mut Report, lines: &[String]) {
    let io = r.iommu.get_or_insert_with(Iommu::default);
    let mut cur: Option<usize> = None;
    for l in lines {
        if let Some(e) = l.strip_prefix("error: ") {
            io.error = Some(e.to_string());
        } else if l.starts_with("mode ") {
            io.mode = Some(l.trim().to_string());
        } else if let Some(rest) = l.strip_prefix("unit ") {
            let (base, summary) = rest.split_once(' ').unwrap_or((rest, ""));
            let Some(base) = parse_hex(base) else {
                continue;
            };
            io.units.push(IommuUnit {
                base,
                summary: Some(summary.trim().to_string()).filter(|s| !s.is_empty()),
                ..Default::default()
            });
            cur = Some(io.units.len() - 1);
        } else if let Some(u) = cur.and_then(|i| io.units.get_mut(i)) {
            let t = l.trim();
            if let Some(x) = t.strip_prefix("translation ") {
                u.enabled = Some(x.starts_with("ENABLED"));
                u.root_table = x.split_once("root table ").and_then(|(_, a)| parse_hex(a));
            } else if let Some(c) = t.strip_prefix("CAP ") {
                u.cap = Some(c.trim().to_string());
            } else if let Some(c) = t.strip_prefix("ECAP ") {
                u.ecap = Some(c.trim().to_string());
            } else if let Some(c) = t.strip_prefix("invalidations: ") {
                u.invalidations = Some(c.to_string());
            } else if let Some(x) = t.strip_prefix("interrupt remapping ") {
                // `ENABLED, table 0x.. (7 entries in use; `iommu ir`)` or `disabled`
                u.ir_enabled = Some(x.starts_with("ENABLED"));
                u.ir_table = x
                    .split_once("table ")
                    .and_then(|(_, a)| parse_hex(a.split_whitespace().next().unwrap_or("")));
                u.ir_in_use = x
                    .split_once(" entries in use")
                    .and_then(|(head, _)| head.rsplit(['(', ' ']).next())
                    .and_then(|n| n.parse().ok());
            }
        }
    }
}

/// `attack matrix (mode lazy+untrusted; edu as the device)`, in newer builds
/// `interrupt remapping on (intremap=on): ...` or `interrupt remapping off: ...`,
/// a header line, then `kernel-write  blocked  0  1` rows.
fn parse_attack_matrix(r: &mut Report, lines: &[String]) {
    let Some(start) = lines
        .iter()
        .position(|l| l.starts_with("attack matrix (mode "))
    else {
        return;
    };
    let mode = lines[start]
        .trim_start_matches("attack matrix (mode ")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let mut m = AttackMatrix {
        mode,
        interrupt_remapping: None,
        rows: Vec::new(),
    };
    for l in &lines[start + 1..] {
        if let Some(ir) = l.strip_prefix("interrupt remapping ") {
            if m.interrupt_remapping.is_none() && m.rows.is_empty() {
                m.interrupt_remapping = match ir.split([' ', ':']).next() {
                    Some("on") => Some(true),
                    Some("off") => Some(false),
                    _ => None,
                };
            }
            continue;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        if let [attack, verdict @ ("ALLOWED" | "blocked" | "n/a"), bytes, faults] = w.as_slice() {
            if let (Ok(bytes), Ok(faults)) = (bytes.parse(), faults.parse()) {
                m.rows.push(AttackRow {
                    attack: attack.to_string(),
                    verdict: verdict.to_string(),
                    bytes,
                    faults,
                });
            }
        }
    }
    if !m.rows.is_empty() {
        r.attacks.push(m);
    }
}

fn parse_domains(r: &mut Report, lines: &[String]) {
    r.iommu.get_or_insert_with(Iommu::default).domains_listed = true;
    // Device name (`0000:00:03.0 edu`) whose mappings follow, and its domain.
    let mut cur: Option<(String, Option<u32>)> = None;
    for l in lines {
        if let Some(e) = l.strip_prefix("error: ") {
            if let Some(io) = r.iommu.as_mut() {
                io.domains_error = Some(e.to_string());
            }
            continue;
        }
        if let Some(m) = l.strip_prefix("  ").and_then(Mapping::parse) {
            if let Some((name, dom)) = &cur {
                let id = dom.or_else(|| {
                    let bdf = name.split_whitespace().next().and_then(Bdf::parse)?;
                    r.domains
                        .iter()
                        .find(|d| d.devices.contains(&bdf))
                        .map(|d| d.id)
                });
                if let Some(d) = id.and_then(|id| r.domains.iter_mut().find(|d| d.id == id)) {
                    d.mappings.push((name.clone(), m));
                }
            }
            continue;
        }
        // `0000:00:03.0: domain 1 (translated) on unit 0xfed90000`
        // `other devices on unit 0xfed90000: domain 2 (pass-through: ...)`
        if let Some((who, tail)) = l.split_once(": domain ") {
            let mut t = tail.split_whitespace();
            let Some(id) = t.next().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let kind_word = t
                .next()
                .unwrap_or("")
                .trim_matches(|c: char| c == '(' || c == ')' || c == ':');
            let unit = l
                .split_once("unit ")
                .and_then(|(_, u)| parse_hex(u.split([':', ' ']).next().unwrap_or("")));
            let d = r.domain(id, DomainKind::from_word(kind_word));
            if d.unit.is_none() {
                d.unit = unit;
            }
            if who.starts_with("other devices") {
                d.other_devices = true;
                d.kind = DomainKind::PassThrough;
            } else {
                // One device, or several sharing the domain (`a, b, c: domain ...`).
                for bdf in who.split(',').filter_map(|w| Bdf::parse(w.trim())) {
                    if !d.devices.contains(&bdf) {
                        d.devices.push(bdf);
                    }
                }
            }
            cur = None;
            continue;
        }
        // `0000:00:03.0 edu: 2 live mapping(s) in domain 1`
        if let Some((name, tail)) = l.split_once(": ") {
            if let Some((n, rest)) = tail.split_once(" live mapping(s)") {
                let count = n.trim().parse().unwrap_or(0);
                let dom = rest
                    .trim()
                    .strip_prefix("in domain ")
                    .and_then(|d| d.trim().parse::<u32>().ok());
                let name = name.trim().to_string();
                let id = dom.or_else(|| {
                    let bdf = name.split_whitespace().next().and_then(Bdf::parse)?;
                    r.domains
                        .iter()
                        .find(|d| d.devices.contains(&bdf))
                        .map(|d| d.id)
                });
                if let Some(d) = id.and_then(|id| r.domains.iter_mut().find(|d| d.id == id)) {
                    d.mapping_counts.push((name.clone(), count));
                }
                cur = Some((name, id));
            }
        }
    }
    r.domains.sort_by_key(|d| d.id);
}

fn parse_dma(r: &mut Report, lines: &[String]) {
    let dma = r.dma.get_or_insert_with(Dma::default);
    for l in lines {
        let t = l.trim();
        if let Some(m) = Mapping::parse(t).filter(|_| t.starts_with('[')) {
            if let Some(d) = dma.devices.last_mut() {
                d.mappings.push(m);
            }
        } else if let Some(s) = t.strip_prefix("swiotlb: ") {
            dma.swiotlb = Some(s.to_string());
        } else if t.starts_with("dma-debug: ") {
            dma.debug.push(t.to_string());
        } else if let Some(c) = t.strip_prefix("edu completions: ") {
            dma.completions = Some(c.to_string());
        } else if t.starts_with("dma") && t.contains("chan") && !l.starts_with("dma") {
            // `  dma0chan0: free, 0 transfer(s), ...`
            let (name, state) = t.split_once(": ").unwrap_or((t, ""));
            if let Some(c) = dma.controllers.last_mut() {
                c.channels.push(DmaChannel {
                    name: name.to_string(),
                    state: state.to_string(),
                });
            }
        } else if let Some((name, rest)) = controller_line(l) {
            // `dma0: i8237 [SLAVE|PRIVATE] 0 irq(s): description`
            let (head, desc) = rest.split_once("): ").unwrap_or((rest, ""));
            let driver = head.split_whitespace().next().unwrap_or("").to_string();
            let caps = head
                .split_once('[')
                .and_then(|(_, c)| c.split_once(']'))
                .map_or(String::new(), |(c, _)| c.to_string());
            dma.controllers.push(DmaController {
                name,
                driver,
                caps,
                description: desc.to_string(),
                channels: Vec::new(),
            });
        } else if let Some((name, params)) = l.split_once(": dma_mask ") {
            dma.devices.push(DmaDevice {
                name: name.trim().to_string(),
                params: format!("dma_mask {params}"),
                mappings: Vec::new(),
            });
        }
    }
}

/// `dma0: ...` at the start of a line.
fn controller_line(l: &str) -> Option<(String, &str)> {
    let (name, rest) = l.split_once(": ")?;
    let n = name.strip_prefix("dma")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| (name.to_string(), rest))
}

/// `4096` -> `4 KiB`; exact binary units where they divide, else bytes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {name}", bytes >> shift);
        }
    }
    for (name, shift) in UNITS {
        if bytes >= 1 << shift {
            return format!("{:.1} {name}", bytes as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{bytes} bytes")
}

/// Reads the serial log at `log` (bytes that are not UTF-8 are replaced) and
/// writes its page to `out`, creating `out`'s directory.
pub fn write_page(log: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    let bytes = std::fs::read(log).map_err(|e| format!("reading {}: {e}", log.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let title = log.file_name().map_or_else(
        || log.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let page = render::html(&parse(&text), &title);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(out, page).map_err(|e| format!("writing {}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_forms() {
        assert_eq!(
            Bdf::parse("0000:00:03.0"),
            Some(Bdf {
                segment: 0,
                bus: 0,
                dev: 3,
                func: 0
            })
        );
        assert_eq!(
            Bdf::parse("01:00.0").map(|b| b.to_string()),
            Some("01:00.0".into())
        );
        assert_eq!(Bdf::parse("00:20.0"), None, "device 0x20 is out of range");
        assert_eq!(Bdf::parse("00:03.8"), None);
        assert_eq!(Bdf::parse("zz"), None);
        assert_eq!(Bdf::parse(":."), None);
    }

    #[test]
    fn mapping_line_parses() {
        let m = Mapping::parse("  [device address=0xfffe000] [size=8192 bytes] [mapped with DMA_BIDIRECTIONAL] [mapped as coherent] [phys=0x1780000] [Iommu]").unwrap();
        assert_eq!(m.device_addr, 0xfffe000);
        assert_eq!(m.size, 8192);
        assert_eq!(m.phys, 0x1780000);
        assert_eq!(m.direction, "DMA_BIDIRECTIONAL");
        assert_eq!(m.map_type, "coherent");
        assert_eq!(m.via, "Iommu");
        assert!(Mapping::parse("[device address=zz]").is_none());
    }

    #[test]
    fn sizes_read_and_print() {
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("32"), Some(32));
        assert_eq!(parse_size("K"), None);
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(12), "12 bytes");
    }

    #[test]
    fn a_domain_shared_by_several_devices_lists_each() {
        let mut r = Report::default();
        let lines: Vec<String> = [
            "0000:00:03.0: domain 1 (translated) on unit 0xfed90000",
            "0000:00:01.0, 0000:00:02.0, 0000:00:1f.3: domain 2 (blocked: no driver, nothing mapped, every DMA faults; bus mastering off) on unit 0xfed90000",
        ]
        .iter()
        .map(|l| l.to_string())
        .collect();
        parse_domains(&mut r, &lines);
        let blocked = r.domains.iter().find(|d| d.id == 2).expect("domain 2");
        assert_eq!(blocked.kind.name(), "blocked");
        assert_eq!(blocked.devices.len(), 3, "{:?}", blocked.devices);
        assert_eq!(blocked.unit, Some(0xfed90000));
    }

    #[test]
    fn escapes_and_stamps_are_stripped() {
        assert_eq!(strip_escapes("a\x1b[2Kb\r"), "ab");
        assert_eq!(boot_message("[    0.1] hi"), Some("hi"));
        assert_eq!(boot_message("[mem 0x0-0x1]"), None);
    }
}
