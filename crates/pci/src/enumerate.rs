//! Enumeration: every function on every bus reachable from a root bus through
//! PCI-to-PCI bridges, following the bus numbers firmware programmed (no
//! renumbering).
//!
//! The walk is bounded however odd the config space: each bus is scanned at most once
//! (a bitmap of visited buses), a bridge is followed only to a bus above its own and
//! inside its parent's window, and an explicit work list replaces recursion so a deep
//! hierarchy cannot overflow a kernel stack.

use alloc::vec::Vec;

use crate::addr::{Bdf, MAX_DEVICE, MAX_FUNCTION};
use crate::bar::size_bars_inner;
use crate::caps::{id, walk_caps, walk_ext_caps};
use crate::config::ConfigAccess;
use crate::device::{BridgeBuses, BridgeWindows, ClassCode, DmaParams, PciDevice};
use crate::regs;
use crate::warn::{Warning, WarningKind, Warnings};

/// What to scan and how much to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanOptions {
    /// Segment (PCI domain) to scan.
    pub segment: u16,
    /// Root bus of the host bridge (the MCFG start bus, normally 0).
    pub root_bus: u8,
    /// Size BARs (writes to BARs with decoding off). Off: `bars` stays empty.
    pub size_bars: bool,
    /// Walk capability lists.
    pub capabilities: bool,
    /// Stop after this many functions.
    pub max_functions: usize,
    /// Below a PCIe root or downstream port, scan only device 0: the link has one
    /// device, and some ports answer for every device number (PCIe base spec 5.0
    /// §7.3.1, as Linux's `only_one_child`).
    pub pcie_only_one_child: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            segment: 0,
            root_bus: 0,
            size_bars: true,
            capabilities: true,
            max_functions: 4096,
            pcie_only_one_child: true,
        }
    }
}

/// What a scan found.
#[derive(Clone, Debug, Default)]
pub struct Enumeration {
    /// Functions in scan order (a bus's devices, then the buses below it, depth
    /// first).
    pub devices: Vec<PciDevice>,
    /// Oddities found on the way (each was also logged).
    pub warnings: Vec<Warning>,
    /// Buses scanned, in order.
    pub buses: Vec<u8>,
}

impl Enumeration {
    /// The function at `bdf`.
    pub fn get(&self, bdf: Bdf) -> Option<&PciDevice> {
        self.devices.iter().find(|d| d.bdf == bdf)
    }
}

/// True for a vendor ID read from an absent function (all-ones after a master
/// abort); 0 is not a valid vendor either and comes from some broken devices.
fn vendor_absent(vendor: u16) -> bool {
    vendor == 0xFFFF || vendor == 0
}

struct Pending {
    bus: u8,
    parent: Option<Bdf>,
    /// Bus window of the bridge above (secondary..=subordinate).
    window: (u8, u8),
    only_one_child: bool,
}

/// Scans the hierarchy below `opts.root_bus` of `opts.segment`.
pub fn enumerate<C: ConfigAccess + ?Sized>(cfg: &C, opts: &ScanOptions) -> Enumeration {
    let mut out = Enumeration::default();
    let mut warnings = Warnings::default();
    let mut visited = [false; 256];
    let mut work = Vec::new();
    if !cfg.reaches(opts.segment, opts.root_bus) {
        return out;
    }
    visited[usize::from(opts.root_bus)] = true;
    work.push(Pending {
        bus: opts.root_bus,
        parent: None,
        window: (opts.root_bus, 0xFF),
        only_one_child: false,
    });

    'buses: while let Some(p) = work.pop() {
        out.buses.push(p.bus);
        let first_new = out.devices.len();
        let last_dev = if p.only_one_child { 0 } else { MAX_DEVICE };
        for dev in 0..=last_dev {
            let Some(f0) = Bdf::new(opts.segment, p.bus, dev, 0) else {
                continue;
            };
            if vendor_absent(cfg.read16(f0, regs::VENDOR_ID)) {
                // Function 0 absent means no device (PCI 3.0 §3.2.2.3.4).
                continue;
            }
            let multi = cfg.read8(f0, regs::HEADER_TYPE) & regs::HEADER_MULTIFUNCTION != 0;
            let last_fn = if multi && !functions_aliased(cfg, f0) {
                MAX_FUNCTION
            } else {
                if multi {
                    warnings.push(f0, WarningKind::FunctionsAliased);
                }
                0
            };
            for func in 0..=last_fn {
                let Some(bdf) = f0.with_function(func) else {
                    continue;
                };
                if out.devices.len() >= opts.max_functions {
                    warnings.push(
                        bdf,
                        WarningKind::TooManyFunctions {
                            limit: opts.max_functions,
                        },
                    );
                    break 'buses;
                }
                if let Some(d) = read_function(cfg, bdf, p.parent, opts, &mut warnings) {
                    out.devices.push(d);
                }
            }
        }

        // Bridges found on this bus, followed depth first in device order: push in
        // reverse so the first bridge is popped first.
        let mut children = Vec::new();
        for d in out.devices.get(first_new..).unwrap_or(&[]) {
            let Some(b) = d.bridge else { continue };
            let sec = b.secondary;
            let kind = if sec <= p.bus {
                Some(WarningKind::BridgeSecondaryNotAbove { secondary: sec })
            } else if visited[usize::from(sec)] {
                Some(WarningKind::BridgeBusAlreadyVisited { bus: sec })
            } else if !(p.window.0..=p.window.1).contains(&sec) {
                Some(WarningKind::BridgeOutsideParentWindow {
                    secondary: sec,
                    start: p.window.0,
                    end: p.window.1,
                })
            } else if !cfg.reaches(opts.segment, sec) {
                Some(WarningKind::BusUnreachable { bus: sec })
            } else {
                None
            };
            if let Some(k) = kind {
                warnings.push(d.bdf, k);
                continue;
            }
            let end = if b.subordinate < sec {
                warnings.push(
                    d.bdf,
                    WarningKind::BridgeSubordinateBelowSecondary {
                        secondary: sec,
                        subordinate: b.subordinate,
                    },
                );
                sec
            } else {
                b.subordinate.min(p.window.1)
            };
            visited[usize::from(sec)] = true;
            children.push(Pending {
                bus: sec,
                parent: Some(d.bdf),
                window: (sec, end),
                only_one_child: opts.pcie_only_one_child && is_pcie_port_with_one_link(cfg, d),
            });
        }
        while let Some(c) = children.pop() {
            work.push(c);
        }
    }
    out.warnings = warnings.0;
    out
}

/// A multi-function device whose functions 1..7 all return function 0's first 64
/// bytes ignores the function number (a decoding bug); real multi-function devices
/// differ at least in their BAR assignments or IDs.
fn functions_aliased<C: ConfigAccess + ?Sized>(cfg: &C, f0: Bdf) -> bool {
    let mut head = [0u32; 16];
    for (i, h) in head.iter_mut().enumerate() {
        *h = cfg.read32(f0, (i * 4) as u16);
    }
    (1..=MAX_FUNCTION).all(|func| {
        f0.with_function(func).is_some_and(|f| {
            head.iter()
                .enumerate()
                .all(|(i, h)| cfg.read32(f, (i * 4) as u16) == *h)
        })
    })
}

/// PCIe root ports (type 4) and downstream switch ports (type 6) have a link with a
/// single device below (PCIe base spec 5.0 §7.5.3.2, Device/Port Type).
fn is_pcie_port_with_one_link<C: ConfigAccess + ?Sized>(cfg: &C, d: &PciDevice) -> bool {
    let Some(off) = d.find_capability(id::EXP) else {
        return false;
    };
    let flags = cfg.read16(d.bdf, u16::from(off) + 2);
    matches!((flags >> 4) & 0xF, 4 | 6)
}

/// Reads one function's identity, header fields, BARs and capabilities; `None` when
/// it is absent.
pub(crate) fn read_function<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    parent: Option<Bdf>,
    opts: &ScanOptions,
    warnings: &mut Warnings,
) -> Option<PciDevice> {
    let ids = cfg.read32(bdf, regs::VENDOR_ID);
    let vendor_id = ids as u16;
    if vendor_absent(vendor_id) {
        return None;
    }
    let class_rev = cfg.read32(bdf, regs::REVISION);
    let header = cfg.read8(bdf, regs::HEADER_TYPE);
    let layout = header & regs::HEADER_LAYOUT_MASK;
    let intr = cfg.read16(bdf, regs::INTERRUPT_LINE);
    let mut subsystem = None;
    let mut bridge = None;
    let mut bridge_windows = None;
    let bar_count = match layout {
        0 => {
            let s = cfg.read32(bdf, regs::SUBSYSTEM_VENDOR_ID);
            subsystem = Some((s as u16, (s >> 16) as u16));
            regs::TYPE0_BARS
        }
        1 => {
            let b = cfg.read32(bdf, regs::PRIMARY_BUS);
            bridge = Some(BridgeBuses {
                primary: b as u8,
                secondary: (b >> 8) as u8,
                subordinate: (b >> 16) as u8,
            });
            bridge_windows = Some(BridgeWindows::decode(
                cfg.read32(bdf, regs::IO_BASE),
                cfg.read32(bdf, regs::IO_BASE_UPPER16),
                cfg.read32(bdf, regs::MEMORY_BASE),
                cfg.read32(bdf, regs::PREF_MEMORY_BASE),
                cfg.read32(bdf, regs::PREF_BASE_UPPER32),
                cfg.read32(bdf, regs::PREF_LIMIT_UPPER32),
            ));
            regs::TYPE1_BARS
        }
        // CardBus bridges have one BAR (socket registers).
        2 => 1,
        _ => {
            warnings.push(bdf, WarningKind::UnknownHeaderType { layout });
            0
        }
    };
    let known_layout = layout <= 2;
    let bars = if opts.size_bars && bar_count > 0 {
        size_bars_inner(cfg, bdf, bar_count, warnings)
    } else {
        Vec::new()
    };
    let (capabilities, ext_capabilities) = if opts.capabilities && known_layout {
        (
            walk_caps(cfg, bdf, layout, warnings),
            walk_ext_caps(cfg, bdf, warnings),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let d = PciDevice {
        bdf,
        vendor_id,
        device_id: (ids >> 16) as u16,
        revision: class_rev as u8,
        class: ClassCode::from_u32(class_rev >> 8),
        header_layout: layout,
        multifunction: header & regs::HEADER_MULTIFUNCTION != 0,
        subsystem,
        interrupt_line: intr as u8,
        interrupt_pin: (intr >> 8) as u8,
        parent,
        bridge,
        bridge_windows,
        bars,
        capabilities,
        ext_capabilities,
        dma: DmaParams::default(),
    };
    log::info!(
        "pci {bdf}: [{:04x}:{:04x}] type {:02x} class {:#08x}",
        d.vendor_id,
        d.device_id,
        layout,
        d.class.as_u32()
    );
    Some(d)
}
