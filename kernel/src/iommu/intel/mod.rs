//! Intel VT-d in the kernel: every DRHD unit of the DMAR brought up with
//! crates/iommu-vtd, devices routed to units by the DMAR's device scopes,
//! per-device translated domains behind the DMA API, pass-through for
//! everything we have no driver for, fault events decoded and logged.
//!
//! Boot options: `iommu=on|off|pt|force-off` (the kernel's default is off, as
//! on a real machine whose firmware we have not vetted; the runner's default
//! profile passes `iommu=on`, and `noiommu`/`bigmem` show untranslated DMA;
//! a DMAR with DMA_CTRL_PLATFORM_OPT_IN forces translation over `off` and the
//! default, and only `force-off` keeps it off), `iommu.strict=1|0` (default 1:
//! every unmap invalidates the IOTLB before the IOVA can be reused; 0: a flush
//! queue batches them), `iommu.qi=0` (register-based invalidation even when
//! the unit offers queued), `iommu.igfx=off` (leave the integrated graphics'
//! own unit off; the graphics device then DMAs untranslated), and the debug
//! option `iommu.fail_enable=1` (pretend turning translation on failed, to show
//! the fallback to direct/swiotlb DMA).
//!
//! Order (Linux's, so no driver ever DMAs through an IOVA that is not
//! translated): `init` reads the options; after PCI enumeration and before
//! any driver binds, `set_topology` decides each DRHD's fate (graphics,
//! empty, failed), turns off what firmware left on, brings the units up,
//! keeps the PCI windows out of every IOVA space, puts every device in the
//! pass-through domain and turns translation on. A driver then gets a
//! translated domain only from a unit whose translation is on.

mod fault;

pub use fault::{collect_faults, fault_count, fault_history, fault_vector};

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use acpi_tables::dmar::{DeviceScope, DmarFlags, ScopeType};
use core::sync::atomic::{AtomicBool, Ordering};
use dma::{IommuDomain, IommuError, IommuPerm, SharedDomain};
use hal::{DirectMap, DmaAddr, PhysAddr};
use iommu_vtd::policy::{self, UnitRole};
use iommu_vtd::{Config, Coverage, DomainId, DomainKind, FrameAlloc, Perm, RemappingUnit};
use mm::buddy::ZoneLimit;
use spin::{Mutex, Once};

use crate::acpi;
use crate::arch::apic;
use crate::mm::{self as kmm, direct, IoMem};
use crate::sync::IrqSpinLock;

/// Page-table and queue pages from the buddy allocator.
pub struct KFrames;

impl FrameAlloc for KFrames {
    fn alloc_page(&mut self) -> Option<PhysAddr> {
        kmm::alloc_frames(0, ZoneLimit::Any).ok()
    }
    fn free_page(&mut self, pa: PhysAddr) {
        let _ = kmm::free_frames(pa, 0);
    }
}

pub type Unit = RemappingUnit<IoMem, DirectMap, KFrames>;

pub use iommu_vtd::policy::Mode;

/// One remapping unit that came up.
pub struct UnitEntry {
    pub base: u64,
    pub segment: u16,
    pub unit: Arc<IrqSpinLock<Unit>>,
    /// The pass-through (or identity) domain for devices without a driver
    /// (`iommu=pt`).
    pub passthrough: Mutex<Option<DomainId>>,
    /// With translation on: the unit's blocking domain, a translated domain in
    /// which nothing is ever mapped, shared by the devices without a driver
    /// (every DMA they try faults).
    pub blocked: Mutex<Option<DomainId>>,
    /// Translation is on (set once `set_topology` turned it on). A unit
    /// whose enabling failed gives drivers no domain: their DMA goes direct
    /// or through swiotlb, never with IOVAs the unit does not translate.
    pub enabled: AtomicBool,
}

/// Where a function no driver claimed was put when translation came on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unclaimed {
    /// In the unit's blocking domain, bus mastering switched off.
    Blocked,
    /// In a domain of its own holding only its RMRR ranges (identity-mapped):
    /// the firmware keeps using that memory, so bus mastering stays as it was.
    RmrrOnly,
    /// In the same domain as a driver-bound function it shares a requester ID with.
    SharesGroup,
    /// The ISA (LPC) bridge: ISA DMA (the i8237, third-party) reaches memory
    /// with the bridge's requester ID, so the low 16 MiB, all an ISA channel can
    /// address, stay identity-mapped for it (Linux's floppy workaround).
    IsaDma,
}

/// What an ISA DMA channel can address: the low 16 MiB.
const ISA_DMA_LIMIT: u64 = 16 << 20;

/// Why a DRHD has no working unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unused {
    /// Bring-up failed (the reason is in the log).
    Failed,
    /// `iommu=off` (or `force-off`): left off, firmware state turned off.
    Off,
    /// The integrated graphics' unit, left off by `iommu.igfx=off`.
    GraphicsOff,
    /// Not INCLUDE_PCI_ALL and none of the devices it names exists.
    NoDevices,
}

impl Unused {
    pub fn reason(self) -> &'static str {
        match self {
            Unused::Failed => "bring-up failed",
            Unused::Off => "iommu=off",
            Unused::GraphicsOff => "graphics unit, iommu.igfx=off",
            Unused::NoDevices => "none of the devices it names exists",
        }
    }
}

/// One DRHD of the DMAR, whether or not its unit came up: a failed unit
/// still owns the devices its scopes name (they get no IOMMU, never the
/// catch-all unit).
pub struct DrhdEntry {
    pub base: u64,
    pub segment: u16,
    pub include_all: bool,
    /// The DRHD's device scopes, resolved against the PCI topology on use.
    pub scopes: Vec<DeviceScope>,
    /// Index into `Iommu::units`; `None` when the unit is not used.
    pub unit: Option<usize>,
    /// Why not, when `unit` is `None`.
    pub unused: Unused,
    /// What the DMAR and the devices found make of it.
    pub role: UnitRole,
}

pub struct Iommu {
    pub mode: Mode,
    pub strict: bool,
    pub units: Vec<UnitEntry>,
    pub drhds: Vec<DrhdEntry>,
    /// Devices with their own domain: (bdf, unit index, domain).
    pub attached: Mutex<Vec<(pci::Bdf, usize, DomainId)>>,
    /// Functions no driver has claimed (yet), and where translation put them.
    pub unclaimed: Mutex<Vec<(pci::Bdf, usize, DomainId, Unclaimed)>>,
    /// The DMAR's DMA_CTRL_PLATFORM_OPT_IN turned translation on.
    pub forced_by_platform: bool,
    /// IOVA ranges kept out of every domain (PCI windows), merged.
    pub iova_windows: Vec<(u64, u64)>,
}

/// The boot options, read by `init`, used once the PCI topology is known.
struct Setup {
    mode: Mode,
    strict: bool,
    forced_by_platform: bool,
    inval: Option<iommu_vtd::InvalMode>,
    igfx_off: bool,
    fail_enable: bool,
    /// Flush-queue deadline in timer ticks (`iommu.fq_delay_ms=`).
    fq_delay_ticks: u64,
}

static SETUP: Once<Setup> = Once::new();

static IOMMU: Once<Iommu> = Once::new();
/// The enumerated PCI topology (parents, bridge kinds, bus numbers), handed
/// over by the PCI layer before drivers bind.
static TOPOLOGY: Once<pci::Topology> = Once::new();

pub fn get() -> Option<&'static Iommu> {
    IOMMU.get()
}

/// Locks a unit (interrupts stay off while held: the fault handler takes the
/// same lock).
pub fn with_unit<R>(u: &IrqSpinLock<Unit>, f: impl FnOnce(&mut Unit) -> R) -> R {
    f(&mut u.lock())
}

fn relax() {
    core::hint::spin_loop();
}

/// Reads the boot options and the DMAR's flags; the units are dealt with
/// once the PCI topology is known (`set_topology`), before any driver binds.
pub fn init() {
    let cmdline = crate::cmdline::boot_cmdline();
    let strict = cmdline.get("iommu.strict") != Some("0");
    let Some(Ok(dmar)) = acpi::get().and_then(|p| p.dmar.as_ref()) else {
        log::info!("iommu: no usable DMAR table; DMA is untranslated");
        return;
    };
    let opt_in = dmar.flags.contains(DmarFlags::DMA_CTRL_PLATFORM_OPT_IN);
    let d = policy::decide(cmdline.get("iommu"), opt_in);
    if d.unknown_option {
        log::warn!(
            "iommu: unknown option iommu={} (on, off, pt, force-off); taken as not given",
            cmdline.get("iommu").unwrap_or("")
        );
    }
    if d.forced_by_platform {
        log::warn!(
            "iommu: the firmware opts in to DMA protection (DMAR DMA_CTRL_PLATFORM_OPT_IN): translation forced on; boot with iommu=force-off to keep VT-d off"
        );
    } else if d.mode == Mode::Off {
        log::info!("iommu: off (boot with iommu=on or iommu=pt to use VT-d); DMA is untranslated");
    }
    let inval = match cmdline.get("iommu.qi") {
        Some("0") => Some(iommu_vtd::InvalMode::Register),
        _ => None, // queued when ECAP.QI says so
    };
    SETUP.call_once(|| Setup {
        mode: d.mode,
        strict,
        forced_by_platform: d.forced_by_platform,
        inval,
        igfx_off: cmdline.get("iommu.igfx") == Some("off"),
        fail_enable: cmdline.get("iommu.fail_enable") == Some("1"),
        fq_delay_ticks: match cmdline.get("iommu.fq_delay_ms") {
            None => 10,
            Some(v) => match v.parse::<u64>() {
                Ok(ms @ 10..=10_000) => ms.div_ceil(10),
                _ => {
                    log::warn!("iommu: iommu.fq_delay_ms={v} is not 10..10000; using 100");
                    10
                }
            },
        },
    });
    // The PCI layer hands over its topology before drivers bind.
    if let Err(e) = crate::pci::register_topology_hook(set_topology) {
        log::warn!("iommu: no PCI topology hook ({e}); setting the units up without devices");
        set_topology(pci::Topology::default(), &[]);
    }
}

/// Sets every DRHD up (or leaves it off, firmware state turned off), keeps
/// the PCI windows out of the IOVA spaces, and turns translation on, with
/// every covered device in the pass-through domain. Returns the units.
fn bring_up(s: &Setup, dmar: &acpi_tables::dmar::Dmar, devices: &[pci::PciDevice]) -> Iommu {
    let vector = if s.mode == Mode::Off {
        None
    } else {
        apic::alloc_vector(fault::fault_irq).ok()
    };
    fault::set_fault_vector(vector.unwrap_or(0));
    let quirked_igfx = devices
        .iter()
        .find(|d| policy::igfx_skip_te_disable(d.vendor_id, d.device_id, d.class.as_u32()));
    if let Some(g) = quirked_igfx {
        log::info!(
            "iommu: {} [{:04x}:{:04x}]: translation on the graphics unit is never turned off (skip-TE-disable quirk)",
            g.bdf,
            g.vendor_id,
            g.device_id
        );
    }
    let class_of = |seg: u16| {
        move |b: pci::Bdf| {
            devices
                .iter()
                .find(|d| d.bdf.segment == seg && d.bdf.sid() == b.sid())
                .map(|d| d.class.as_u32())
        }
    };
    let mut units = Vec::new();
    let mut drhds = Vec::new();
    for drhd in dmar.drhds() {
        let mut entry = DrhdEntry {
            base: drhd.register_base,
            segment: drhd.segment,
            include_all: drhd.include_pci_all(),
            scopes: drhd.scopes.clone(),
            unit: None,
            unused: Unused::Failed,
            role: UnitRole::Normal,
        };
        entry.role = policy::unit_role(&reach_of(&entry), class_of(drhd.segment));
        // Every DRHD is remembered, so an unused unit's devices stay its own.
        let leave_off = match (s.mode, entry.role) {
            (Mode::Off, _) => Some(Unused::Off),
            (_, UnitRole::Empty) => Some(Unused::NoDevices),
            (_, UnitRole::Graphics) if s.igfx_off => Some(Unused::GraphicsOff),
            _ => None,
        };
        if drhd.register_base == 0 {
            log::warn!("iommu: DRHD with register base 0 skipped (firmware bug)");
            entry.unused = leave_off.unwrap_or(Unused::Failed);
            drhds.push(entry);
            continue;
        }
        let base = drhd.register_base;
        let Some((regs, window)) = map_unit_registers(base, drhd.register_size()) else {
            entry.unused = leave_off.unwrap_or(Unused::Failed);
            drhds.push(entry);
            continue;
        };
        let cap = iommu_vtd::Cap::decode(regs.read64(iommu_vtd::regs::CAP));
        let cfg = Config {
            inval: s.inval,
            poll_budget: 1_000_000,
            relax,
            fault_msi: vector.map(|v| {
                let (addr, data) = apic::msi_message(v);
                (addr as u32, data)
            }),
            // 64 unmaps per domain-wide invalidation (Linux: 256 per CPU).
            flush_queue_len: 64,
            // Ticks of the 100 Hz timer: pending IOVAs wait at most 100 ms,
            // or what `iommu.fq_delay_ms=` says (10 ms .. 10 s; a longer wait
            // makes the lazy window visible to the `attack` bench).
            flush_queue_delay: s.fq_delay_ticks,
            window_size: Some(window),
            keep_translation: policy::keep_translation(entry.role, quirked_igfx.is_some(), &cap),
            ..Config::default()
        };
        if let Some(why) = leave_off {
            entry.unused = why;
            match iommu_vtd::quiesce(&regs, &cfg) {
                Ok(h) => log::info!(
                    "iommu {base:#x}: left off ({}); firmware state: {h}",
                    why.reason()
                ),
                Err(e) => log::warn!(
                    "iommu {base:#x}: left off ({}); turning off firmware state failed: {e}",
                    why.reason()
                ),
            }
            drhds.push(entry);
            continue;
        }
        let unit = match RemappingUnit::new(regs, direct::direct(), KFrames, cfg) {
            Ok(u) => u,
            Err(e) => {
                log::warn!("iommu {base:#x}: bring-up failed: {e}");
                drhds.push(entry);
                continue;
            }
        };
        log::info!(
            "iommu {base:#x}: VT-d {}-level tables, {:?} invalidation, mode {:?}{}{}",
            unit.levels(),
            unit.inval_mode(),
            s.mode,
            if s.strict {
                ", strict"
            } else {
                ", lazy (flush queue)"
            },
            if entry.role == UnitRole::Graphics {
                ", graphics unit"
            } else {
                ""
            }
        );
        entry.unit = Some(units.len());
        drhds.push(entry);
        units.push(UnitEntry {
            base,
            segment: drhd.segment,
            unit: Arc::new(IrqSpinLock::new(unit)),
            passthrough: Mutex::new(None),
            blocked: Mutex::new(None),
            enabled: AtomicBool::new(false),
        });
    }
    Iommu {
        mode: s.mode,
        strict: s.strict,
        units,
        drhds,
        attached: Mutex::new(Vec::new()),
        unclaimed: Mutex::new(Vec::new()),
        forced_by_platform: s.forced_by_platform,
        iova_windows: pci_windows(devices),
    }
}

/// The IOVA ranges no domain may hand out (issue #17 item 3). The kernel
/// parses neither the MCFG's nor the DSDT's `_CRS` host-bridge windows, so
/// it takes what it knows: the whole 32-bit hole from the end of the RAM
/// below 4 GiB (from the memory map) to 4 GiB (on q35 that covers the MCFG
/// at 0xb000_0000, the BARs SeaBIOS/OVMF place from 0xc000_0000 or
/// 0x8000_0000 up, the IOAPIC, HPET, the VT-d registers and the interrupt
/// window; on a laptop the 32-bit window from TOLUD), plus every memory BAR
/// and bridge memory window the enumeration saw (the 64-bit window's
/// resources, 0x40_0000_0000 and up on Ice/Tiger/Alder Lake). Merged.
fn pci_windows(devices: &[pci::PciDevice]) -> Vec<(u64, u64)> {
    const FOUR_GIB: u64 = 1 << 32;
    let low_ram_top = crate::mm::memmap::regions()
        .iter()
        .filter(|r| r.kind == crate::mm::memmap::Kind::Usable && r.start < FOUR_GIB)
        .map(|r| r.end.min(FOUR_GIB))
        .max()
        .unwrap_or(0);
    let mut w: Vec<(u64, u64)> = Vec::new();
    if low_ram_top < FOUR_GIB {
        w.push((low_ram_top, FOUR_GIB - low_ram_top));
    }
    for d in devices {
        for b in d
            .bars
            .iter()
            .filter(|b| b.is_memory() && b.size > 0 && b.address != 0)
        {
            w.push((b.address, b.size));
        }
        if let Some(bw) = d.bridge_windows {
            for win in [bw.memory, bw.prefetchable].into_iter().flatten() {
                w.push((win.base, win.size()));
            }
        }
    }
    w.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, l) in w {
        let e = s.saturating_add(l);
        match merged.last_mut() {
            Some((ms, ml)) if s <= ms.saturating_add(*ml) => {
                *ml = e.max(ms.saturating_add(*ml)) - *ms;
            }
            _ => merged.push((s, l)),
        }
    }
    merged
}

/// Maps a unit's registers: the DRHD's size, grown to what CAP.FRO and
/// ECAP.IRO need (the fault records and IOTLB registers may lie past the
/// first page; Linux's map_iommu does the same). Returns the mapping and its
/// size, or `None` (said in the log) when it cannot be mapped.
fn map_unit_registers(base: u64, drhd_size: u64) -> Option<(IoMem, usize)> {
    use iommu_vtd::regs;
    let map = |size: u64| match kmm::ioremap(base, size) {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn!("iommu {base:#x}: cannot map {size:#x} bytes of registers: {e}");
            None
        }
    };
    let first = map(drhd_size)?;
    let cap = regs::Cap::decode(first.read64(regs::CAP));
    let ecap = regs::Ecap::decode(first.read64(regs::ECAP));
    let need = regs::register_window_size(&cap, &ecap) as u64;
    if need <= drhd_size {
        return Some((first, drhd_size as usize));
    }
    drop(first);
    log::info!("iommu {base:#x}: registers need {need:#x} bytes (the DRHD says {drhd_size:#x})");
    Some((map(need)?, need as usize))
}

/// Called (through the PCI layer's topology hook) after enumeration, before
/// any driver binds: DMAR scope paths of any length can now be resolved and
/// the devices' classes and IDs are known, so the units are set up
/// (`bring_up`), the RMRRs handed to them (memory the listed devices keep
/// using, USB legacy or graphics, stays identity-mapped in whatever domain
/// they get), the PCI windows kept out of their IOVA spaces, and translation
/// turned on with every covered device in the pass-through domain.
pub fn set_topology(topo: pci::Topology, devices: &[pci::PciDevice]) {
    let topo = TOPOLOGY.call_once(|| topo);
    let Some(s) = SETUP.get() else { return };
    let Some(Ok(dmar)) = acpi::get().and_then(|p| p.dmar.as_ref()) else {
        return;
    };
    let io = IOMMU.call_once(|| bring_up(s, dmar, devices));
    if io.mode == Mode::Off {
        return;
    }
    for e in &io.units {
        for r in dmar
            .rmrrs()
            .filter(|r| r.segment == e.segment && r.limit > r.base)
        {
            let devs: Vec<pci::Bdf> = r
                .scopes
                .iter()
                .filter_map(|s| resolve(topo, r.segment, s))
                .collect();
            if devs.len() < r.scopes.len() {
                log::warn!(
                    "iommu: RMRR [{:#x}-{:#x}]: {} scope(s) name no enumerated device",
                    r.base,
                    r.limit,
                    r.scopes.len() - devs.len()
                );
            }
            with_unit(&e.unit, |u| u.add_rmrr(&devs, r.base, r.limit - r.base + 1));
            log::info!(
                "iommu: RMRR [{:#x}-{:#x}] identity-mapped for {} device(s)",
                r.base,
                r.limit,
                devs.len()
            );
        }
        for &(start, len) in &io.iova_windows {
            if let Err(err) = with_unit(&e.unit, |u| u.reserve_iova_window(start, len)) {
                log::warn!(
                    "iommu {:#x}: IOVA window [{start:#x}-{:#x}]: {err}",
                    e.base,
                    start.saturating_add(len) - 1
                );
            }
        }
    }
    if let Some(&(start, len)) = io.iova_windows.first() {
        log::info!(
            "iommu: IOVAs kept out of {} PCI window range(s), the lowest [{start:#x}-{:#x}]",
            io.iova_windows.len(),
            start.saturating_add(len) - 1
        );
    }
    if !io.strict && io.mode == Mode::Translate {
        if let Err(e) = apic::register_tick_hook(flush_queue_timer) {
            log::warn!("iommu: no flush-queue timer ({e}); queues flush only when full");
        }
    }
    enable(io, devices, s.fail_enable);
}

/// A DMAR device scope's PCI function, its path followed through the
/// enumerated bridges (multi-hop paths included).
fn resolve(topo: &pci::Topology, segment: u16, s: &DeviceScope) -> Option<pci::Bdf> {
    s.resolve(|b, d, f| topo.secondary_bus(segment, b, d, f))
        .and_then(|(b, d, f)| pci::Bdf::new(segment, b, d, f))
}

/// Every DRHD's reach, scopes resolved (crates/iommu-vtd's `coverage` input).
fn reach(io: &Iommu) -> Vec<iommu_vtd::UnitScope> {
    io.drhds.iter().map(reach_of).collect()
}

/// One DRHD's reach, its scopes resolved against the topology.
fn reach_of(d: &DrhdEntry) -> iommu_vtd::UnitScope {
    let empty = pci::Topology::default();
    let topo = TOPOLOGY.get().unwrap_or(&empty);
    let mut u = iommu_vtd::UnitScope {
        segment: d.segment,
        include_all: d.include_all,
        usable: d.unit.is_some(),
        ..Default::default()
    };
    for s in &d.scopes {
        let Some(b) = resolve(topo, d.segment, s) else {
            continue;
        };
        match s.scope_type {
            ScopeType::PciEndpoint => u.endpoints.push(b),
            ScopeType::PciSubHierarchy => u.bridges.push(b),
            _ => {}
        }
    }
    u
}

/// The requester IDs `bdf`'s DMA can carry (its own first, then those
/// bridges above it substitute), from the topology.
pub fn dma_aliases(bdf: pci::Bdf) -> Vec<pci::Bdf> {
    TOPOLOGY
        .get()
        .map_or_else(|| alloc::vec![bdf], |t| t.dma_aliases(bdf))
}

/// Which DRHD covers `bdf`: a scope naming it or any bridge above it (the
/// nearest wins), else the INCLUDE_PCI_ALL unit of its segment. `parent` is
/// used only when the topology is not known yet.
pub fn coverage(bdf: pci::Bdf, parent: Option<pci::Bdf>) -> Coverage {
    let Some(io) = get() else {
        return Coverage::None;
    };
    let mut path = alloc::vec![bdf];
    match TOPOLOGY.get() {
        Some(t) => path.extend(t.ancestors(bdf)),
        None => path.extend(parent),
    }
    iommu_vtd::coverage(&reach(io), bdf.segment, &path)
}

/// The working unit (index into `units`) that translates `bdf`; `None` when
/// no DRHD covers it or its unit's bring-up failed.
pub fn unit_for(bdf: pci::Bdf, parent: Option<pci::Bdf>) -> Option<usize> {
    let io = get()?;
    match coverage(bdf, parent) {
        Coverage::Unit(i) => io.drhds.get(i).and_then(|d| d.unit),
        _ => None,
    }
}

/// A translated domain of one unit, as the DMA API sees it.
pub struct VtdDomain {
    unit: Arc<IrqSpinLock<Unit>>,
    did: DomainId,
    strict: bool,
}

/// The DMA layer's error for a VT-d error, keeping its cause (a page-table
/// allocation failure is out of memory, not "beyond the address width").
/// Exhaustive, so a new VT-d error needs a decision here.
fn iommu_err(e: iommu_vtd::Error) -> IommuError {
    use iommu_vtd::Error as E;
    log::warn!("iommu: {e}");
    match e {
        E::NoMemory => IommuError::OutOfMemory,
        E::AlreadyMapped(_) => IommuError::AlreadyMapped,
        E::NotMapped(_) => IommuError::NotMapped,
        E::Misaligned => IommuError::Misaligned,
        E::BeyondAddressWidth(_) => IommuError::OutOfRange,
        E::Iova(_) => IommuError::IovaExhausted,
        E::Timeout(_) | E::QueueError(_) | E::InvalidationRejected => IommuError::FlushFailed,
        E::NoSuchDomain(_)
        | E::DomainBusy(_)
        | E::NotAttached(_)
        | E::NotTranslated(_)
        | E::UnsupportedLevels(_)
        | E::NoPassThrough
        | E::NoQueuedInvalidation
        | E::DomainIdsExhausted
        | E::NoUnit(_)
        | E::AliasInOtherDomain(..)
        | E::NoInterruptRemapping
        | E::InterruptRemappingOff
        | E::Irte(_)
        | E::WindowTooSmall { .. } => IommuError::DomainUnusable,
    }
}

fn vtd_perm(perm: IommuPerm) -> Perm {
    let mut p = Perm::empty();
    p.set(Perm::READ, perm.contains(IommuPerm::READ));
    p.set(Perm::WRITE, perm.contains(IommuPerm::WRITE));
    p
}

impl Drop for VtdDomain {
    /// A domain no device is attached to any more gives its ID back (client
    /// units have CAP.ND = 2: 256 IDs). One with devices stays (they still DMA
    /// through it; `destroy_domain` refuses and changes nothing).
    fn drop(&mut self) {
        with_unit(&self.unit, |u| {
            let _ = u.destroy_domain(self.did);
        });
    }
}

impl IommuDomain for VtdDomain {
    fn alloc_iova(&mut self, len: u64, mask: u64) -> Option<DmaAddr> {
        with_unit(&self.unit, |u| u.alloc_iova(self.did, len, mask))
            .ok()
            .map(DmaAddr::new)
    }

    fn free_iova(&mut self, iova: DmaAddr, _len: u64) {
        let now = apic::ticks();
        with_unit(&self.unit, |u| {
            if self.strict {
                // unmap and the IOTLB flush already happened (the DMA layer's
                // order): reusable at once.
                let _ = u.free_iova(self.did, iova.as_u64());
            } else {
                // Lazy: parked until the flush queue's domain flush.
                let _ = u.queue_iova(self.did, iova.as_u64(), now);
                let _ = u.flush_queue_tick(self.did, now);
            }
        })
    }

    fn map(
        &mut self,
        iova: DmaAddr,
        phys: PhysAddr,
        len: u64,
        perm: IommuPerm,
    ) -> Result<(), IommuError> {
        let p = vtd_perm(perm);
        with_unit(&self.unit, |u| u.map(self.did, iova.as_u64(), phys, len, p)).map_err(iommu_err)
    }

    fn unmap(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        with_unit(&self.unit, |u| u.unmap(self.did, iova.as_u64(), len))
            .map(|_| ())
            .map_err(iommu_err)
    }

    /// One lock and one call into the unit for the whole map path.
    fn alloc_and_map(
        &mut self,
        len: u64,
        mask: u64,
        phys: PhysAddr,
        perm: IommuPerm,
    ) -> Result<DmaAddr, IommuError> {
        let p = vtd_perm(perm);
        with_unit(&self.unit, |u| u.map_dma(self.did, phys, len, p, mask))
            .map(DmaAddr::new)
            .map_err(|e| match e {
                iommu_vtd::Error::Iova(_) => IommuError::IovaExhausted,
                e => iommu_err(e),
            })
    }

    /// Unmap, then (strict) a page-selective invalidation and the IOVA back at
    /// once, or (lazy) the IOVA into the flush queue, which invalidates the
    /// domain before any of its IOVAs is reused.
    fn unmap_and_free(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        let now = apic::ticks();
        with_unit(&self.unit, |u| {
            u.unmap_dma(self.did, iova.as_u64(), len, now, self.strict)
        })
        .map_err(iommu_err)
    }

    /// Strict: a page-selective invalidation, complete on return. Lazy: deferred
    /// (the trait's "deferred invalidation"): the flush queue invalidates the
    /// domain in batches, and `free_iova` parks the range in that queue, so it is
    /// not reused before the flush.
    fn flush_iotlb(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
        if !self.strict {
            return Ok(());
        }
        with_unit(&self.unit, |u| {
            u.flush_iotlb_range(self.did, iova.as_u64(), len)
        })
        .map_err(iommu_err)
    }
}

/// The timer tick hook (registered by `init` in lazy mode): every 10th tick
/// (100 ms), lazy mode's flush queues are flushed when their oldest IOVA has
/// waited its delay, even if no further unmap comes to check (the delay bound
/// of the flush queue). In interrupt context: a failure is only recorded here
/// and logged by the next `collect_faults`.
/// The last flush-queue failure in the timer interrupt (unit base, error),
/// not yet logged.
static FLUSH_QUEUE_ERROR: IrqSpinLock<Option<(u64, iommu_vtd::Error)>> = IrqSpinLock::new(None);

/// Logs a flush-queue failure the timer interrupt recorded, if any.
pub(crate) fn log_flush_queue_error() {
    let pending = FLUSH_QUEUE_ERROR.lock().take();
    if let Some((base, err)) = pending {
        log::warn!("iommu {base:#x}: flush queue: {err}");
    }
}

/// Runs every lazily freed IOVA's invalidation now (one domain-selective
/// flush per queue) instead of leaving it to the timer: for a driver that
/// unmapped a batch at start-up and does not want the flush to land in the
/// middle of whatever runs next.
pub fn flush_lazy_queues() {
    let Some(io) = get() else { return };
    for e in &io.units {
        if let Err(err) = e.unit.lock().flush_queues_due(u64::MAX) {
            log::warn!("iommu {:#x}: flush queue: {err}", e.base);
        }
    }
}

fn flush_queue_timer(now: u64) {
    if !now.is_multiple_of(10) {
        return;
    }
    let Some(io) = get() else { return };
    if io.strict || io.mode != Mode::Translate {
        return;
    }
    for e in &io.units {
        // Every holder of a unit lock keeps interrupts off, so on this CPU the
        // lock is free here; try_lock all the same (never spin in an IRQ).
        if let Some(mut u) = e.unit.try_lock() {
            if let Err(err) = u.flush_queues_due(now) {
                *FLUSH_QUEUE_ERROR.lock() = Some((e.base, err));
            }
        }
    }
}

/// Gives a driver-bound device its own translated domain (mode Translate).
/// `None`: no IOMMU covers it, or the mode keeps bus = physical.
pub fn attach_dma_domain(bdf: pci::Bdf, parent: Option<pci::Bdf>) -> Option<SharedDomain> {
    let io = get()?;
    // An untrusted device is translated even with iommu=pt (Linux: no
    // identity domain for it), and invalidated strictly whatever the mode.
    let untrusted = crate::pci::is_untrusted(bdf);
    if !(io.mode == Mode::Translate || io.mode == Mode::PassThrough && untrusted) {
        return None;
    }
    let strict = io.strict || untrusted;
    let ui = match coverage(bdf, parent) {
        Coverage::Unit(i) => io.drhds.get(i).and_then(|d| d.unit)?,
        Coverage::FailedUnit(i) => {
            match io.drhds.get(i) {
                Some(d) if d.unused != Unused::Failed => log::info!(
                    "iommu: {bdf}: its remapping unit {:#x} is not used ({}); no IOMMU for it",
                    d.base,
                    d.unused.reason()
                ),
                d => log::warn!(
                    "iommu: {bdf}: its remapping unit {:#x} failed to come up; no IOMMU for it",
                    d.map_or(0, |d| d.base)
                ),
            }
            return None;
        }
        Coverage::None => return None,
    };
    let entry = &io.units[ui];
    if !entry.enabled.load(Ordering::Acquire) {
        log::warn!(
            "iommu: {bdf}: translation is off on unit {:#x} (enabling it failed); its DMA goes direct or through swiotlb",
            entry.base
        );
        return None;
    }
    let aliases = dma_aliases(bdf);
    // Devices that share a requester ID (behind one PCIe-to-PCI bridge) are
    // one group: the unit cannot tell them apart, so they share a domain.
    // A rebound driver gets the domain its device already has (as Linux keeps
    // a group's default domain across binds).
    let before = io
        .attached
        .lock()
        .iter()
        .find(|a| a.0 == bdf && a.1 == ui)
        .map(|a| a.2);
    let did = with_unit(&entry.unit, |u| {
        if let Some(did) = before {
            return u.attach_aliases(&aliases, did).map(|_| (did, false));
        }
        // A translated domain one of the requester IDs is already in (a
        // device behind the same bridge bound first) wins over the default
        // domain the others still hold from before any driver bound.
        // The default domains of driverless functions (blocking, RMRR-only,
        // ISA) are translated too, but never a driver's domain.
        let drivers = |d: DomainId| {
            u.domain_kind(d) == Some(DomainKind::Translated) && !is_unclaimed_domain(io, ui, d)
        };
        let translated = aliases
            .iter()
            .filter_map(|a| u.domain_of(*a))
            .find(|&d| drivers(d));
        match translated.or_else(|| u.group_domain(&aliases)) {
            Some(did) if drivers(did) => u.attach_aliases(&aliases, did).map(|_| (did, true)),
            held => {
                // The group leaves its default domain (pass-through,
                // identity, blocking, RMRR-only or ISA) together, into a new
                // translated one.
                if let Some(pt) = held {
                    for a in &aliases {
                        if u.domain_of(*a) == Some(pt) {
                            u.detach(*a)?;
                        }
                    }
                }
                let did = u.create_domain(DomainKind::Translated)?;
                match u.attach_aliases(&aliases, did) {
                    Ok(()) => Ok((did, false)),
                    Err(e) => {
                        let _ = u.destroy_domain(did);
                        Err(e)
                    }
                }
            }
        }
    });
    match did {
        Ok((did, _)) if before.is_some() => {
            log::info!("iommu: {bdf} back in its {did} (unit {:#x})", entry.base);
            Some(Arc::new(Mutex::new(VtdDomain {
                unit: entry.unit.clone(),
                did,
                strict,
            })))
        }
        Ok((did, shared)) => {
            let ids = aliases
                .iter()
                .skip(1)
                .map(|a| alloc::format!(" {a}"))
                .collect::<String>();
            if shared {
                log::info!(
                    "iommu: {bdf} shares {did} with the devices behind its bridge (unit {:#x}; requester ID{ids}): no isolation between them",
                    entry.base
                );
            } else if ids.is_empty() {
                log::info!("iommu: {bdf} in its own {did} (unit {:#x})", entry.base);
            } else {
                log::info!(
                    "iommu: {bdf} in {did} (unit {:#x}), also as requester ID{ids}",
                    entry.base
                );
            }
            io.attached.lock().push((bdf, ui, did));
            io.unclaimed.lock().retain(|u| u.0 != bdf);
            Some(Arc::new(Mutex::new(VtdDomain {
                unit: entry.unit.clone(),
                did,
                strict,
            })))
        }
        Err(e) => {
            log::warn!("iommu: {bdf}: no domain: {e}");
            None
        }
    }
}

/// Before any driver binds, every covered function gets a default domain,
/// then translation is switched on. A driver bound later moves its device
/// into a translated domain of its own (`attach_dma_domain`), only on a unit
/// whose translation is on; where enabling failed the unit gives no domains
/// and drivers fall back to direct or swiotlb DMA. `fail_enable` (debug)
/// pretends enabling failed.
///
/// With `iommu=pt` the default domain is the unit's pass-through (or
/// identity) domain. With translation on, a function no driver claims is not
/// left able to reach memory (Linux gives every device a default domain at
/// once):
/// - it joins the unit's blocking domain, where nothing is ever mapped, and its
///   Bus Master Enable is cleared (a driver's probe sets it again);
/// - unless an RMRR names it: the firmware keeps using that memory (USB legacy
///   emulation, graphics), so it gets a domain of its own holding only those
///   ranges, identity-mapped, and its bus mastering stays as the firmware left it;
/// - or it shares a requester ID with a function already placed (behind one
///   PCIe-to-PCI bridge), so it is in that domain whatever we do;
/// - the ISA (LPC) bridge carries the i8237's third-party DMA with its own
///   requester ID: it gets the low 16 MiB identity-mapped, nothing else.
///
/// Bridges keep bus mastering: they forward their children's DMA.
fn enable(io: &Iommu, devices: &[pci::PciDevice], fail_enable: bool) {
    for d in devices {
        let Some(ui) = unit_for(d.bdf, d.parent) else {
            continue;
        };
        let entry = &io.units[ui];
        let aliases = dma_aliases(d.bdf);
        let r = if io.mode == Mode::PassThrough {
            with_unit(&entry.unit, |u| attach_passthrough(u, entry, &aliases))
        } else {
            let isa = d.class.base == 0x06 && d.class.sub == 0x01;
            with_unit(&entry.unit, |u| attach_unclaimed(u, entry, &aliases, isa))
        };
        match r {
            Ok(None) => {}
            Ok(Some((did, how))) => {
                if how == Unclaimed::Blocked && d.class.base != 0x06 {
                    crate::pci::set_bus_master(d.bdf, false);
                }
                io.unclaimed.lock().push((d.bdf, ui, did, how));
            }
            Err(e) => log::warn!("iommu: {}: default domain attach failed: {e}", d.bdf),
        }
    }
    if io.mode == Mode::Translate {
        let blocked = io
            .unclaimed
            .lock()
            .iter()
            .filter(|u| u.3 == Unclaimed::Blocked)
            .count();
        log::info!(
            "iommu: {blocked} function(s) in the blocking domain until a driver claims them (nothing mapped, bus mastering off)"
        );
    }
    for e in &io.units {
        let r = if fail_enable {
            Err(alloc::string::String::from(
                "iommu.fail_enable=1 (debug option)",
            ))
        } else {
            with_unit(&e.unit, |u| u.enable_translation()).map_err(|err| alloc::format!("{err}"))
        };
        match r {
            Ok(()) => {
                e.enabled.store(true, Ordering::Release);
                log::info!("iommu {:#x}: DMA remapping enabled", e.base);
            }
            Err(err) => log::warn!(
                "iommu {:#x}: enabling translation failed: {err}; drivers of its devices get direct or swiotlb DMA",
                e.base
            ),
        }
    }
}

/// Usable RAM as page-aligned (start, length) ranges, for identity domains.
fn usable_ram() -> Vec<(PhysAddr, u64)> {
    crate::mm::memmap::regions()
        .iter()
        .filter(|r| r.kind == crate::mm::memmap::Kind::Usable)
        .map(|r| {
            (
                PhysAddr::new(r.start & !0xFFF),
                (r.end - (r.start & !0xFFF)) & !0xFFF,
            )
        })
        .collect()
}

/// `iommu=pt`: the unit's pass-through domain (an identity one without ECAP.PT).
fn attach_passthrough(
    u: &mut Unit,
    entry: &UnitEntry,
    aliases: &[pci::Bdf],
) -> Result<Option<(DomainId, Unclaimed)>, iommu_vtd::Error> {
    // In a group already placed: the same domain (one ID).
    if let Some(did) = u.group_domain(aliases) {
        u.attach_aliases(aliases, did)?;
        return Ok(None);
    }
    let mut pt = entry.passthrough.lock();
    let did = match *pt {
        Some(did) => did,
        None => {
            // Identity over RAM when the unit has no pass-through.
            let did = u.create_default_domain(&usable_ram())?;
            *pt = Some(did);
            did
        }
    };
    u.attach_aliases(aliases, did)?;
    Ok(None)
}

/// Translation on: a function without a driver (yet) gets the blocking
/// domain, or its RMRRs alone, or the ISA window, or its group's domain (see
/// [`enable`]). These domains take IDs from the top, so drivers' domains are
/// numbered 1, 2, ... in bind order.
fn attach_unclaimed(
    u: &mut Unit,
    entry: &UnitEntry,
    aliases: &[pci::Bdf],
    isa_bridge: bool,
) -> Result<Option<(DomainId, Unclaimed)>, iommu_vtd::Error> {
    if let Some(did) = u.group_domain(aliases) {
        u.attach_aliases(aliases, did)?;
        let how = if Some(did) == *entry.blocked.lock() {
            Unclaimed::Blocked
        } else {
            Unclaimed::SharesGroup
        };
        return Ok(Some((did, how)));
    }
    if isa_bridge {
        let did = u.create_domain_top(DomainKind::Translated)?;
        let r = u
            .map(
                did,
                0,
                PhysAddr::new(0),
                ISA_DMA_LIMIT,
                Perm::READ | Perm::WRITE,
            )
            .and_then(|()| u.attach_aliases(aliases, did));
        if let Err(e) = r {
            let _ = u.destroy_domain(did);
            return Err(e);
        }
        return Ok(Some((did, Unclaimed::IsaDma)));
    }
    if aliases.iter().any(|a| u.has_rmrr(*a)) {
        let did = u.create_domain_top(DomainKind::Translated)?;
        if let Err(e) = u.attach_aliases(aliases, did) {
            let _ = u.destroy_domain(did);
            return Err(e);
        }
        return Ok(Some((did, Unclaimed::RmrrOnly)));
    }
    let mut blocked = entry.blocked.lock();
    let did = match *blocked {
        Some(did) => did,
        None => {
            let did = u.create_domain_top(DomainKind::Translated)?;
            *blocked = Some(did);
            did
        }
    };
    u.attach_aliases(aliases, did)?;
    Ok(Some((did, Unclaimed::Blocked)))
}

/// Whether `did` on unit `ui` is a default domain of functions without a
/// driver (blocking, RMRR-only or ISA): a driver that binds must leave it for
/// a domain of its own.
fn is_unclaimed_domain(io: &Iommu, ui: usize, did: DomainId) -> bool {
    io.unclaimed
        .lock()
        .iter()
        .any(|u| u.1 == ui && u.2 == did && u.3 != Unclaimed::SharesGroup)
        || io
            .units
            .get(ui)
            .is_some_and(|e| *e.blocked.lock() == Some(did))
}

/// A domain with no device attached, for timing map+unmap through the real
/// unit (its invalidations included) in `dmabench`: on the unit that
/// translates for the first driver-bound device (on a laptop the first DRHD
/// is the graphics unit, which may lack page-selective invalidation), else
/// the first unit. Dropped, it gives its domain ID back.
pub fn bench_domain(strict: bool) -> Option<SharedDomain> {
    bench_domain_id(strict).map(|(d, _, _)| d)
}

/// [`bench_domain`] with its unit index and domain ID (for tests).
pub fn bench_domain_id(strict: bool) -> Option<(SharedDomain, usize, DomainId)> {
    let io = get().filter(|io| io.mode == Mode::Translate)?;
    let ui = io.attached.lock().first().map_or(0, |a| a.1);
    let entry = io
        .units
        .get(ui)
        .filter(|e| e.enabled.load(Ordering::Acquire))?;
    let did = with_unit(&entry.unit, |u| u.create_domain(DomainKind::Translated)).ok()?;
    let d: SharedDomain = Arc::new(Mutex::new(VtdDomain {
        unit: entry.unit.clone(),
        did,
        strict,
    }));
    Some((d, ui, did))
}

/// The domain a device is in, if it has one of its own.
pub fn domain_of(bdf: pci::Bdf) -> Option<(usize, DomainId)> {
    get()?
        .attached
        .lock()
        .iter()
        .find(|a| a.0 == bdf)
        .map(|a| (a.1, a.2))
}

/// Walks the unit's tables for `bdf` as the hardware would: with the
/// requester ID its DMA reaches the unit with (a bridge's, behind a
/// PCIe-to-PCI bridge).
pub fn translate(bdf: pci::Bdf, iova: u64) -> Result<iommu_vtd::Translation, String> {
    let io = get().ok_or("no IOMMU")?;
    let ui = unit_for(bdf, None).ok_or_else(|| alloc::format!("no remapping unit covers {bdf}"))?;
    let rid = dma_aliases(bdf).last().copied().unwrap_or(bdf);
    with_unit(&io.units[ui].unit, |u| u.translate(rid, iova)).map_err(|r| alloc::format!("{r}"))
}

/// Where `blkbench` puts a device's requester IDs for one of its modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTarget {
    /// The unit's pass-through (or, without ECAP.PT, identity) domain: bus
    /// address = physical address, as for devices without a driver.
    PassThrough,
    /// A domain of the unit (a bench domain, or the device's own to restore).
    Domain(DomainId),
}

/// The unit index and domain `bdf` is attached to now (`None`: no working
/// unit covers it, or it is attached nowhere).
pub fn attachment_of(bdf: pci::Bdf) -> Option<(usize, DomainId)> {
    let io = get()?;
    if io.mode == Mode::Off {
        return None;
    }
    let ui = unit_for(bdf, None)?;
    let aliases = dma_aliases(bdf);
    with_unit(&io.units[ui].unit, |u| u.group_domain(&aliases)).map(|d| (ui, d))
}

/// Why a translated bench domain cannot be had for `bdf` this boot, or `None`
/// when it can.
pub fn why_no_translation(bdf: pci::Bdf) -> Option<String> {
    let Some(io) = get() else {
        return Some("no DMAR table: no VT-d in this machine".into());
    };
    if io.mode == Mode::Off {
        return Some("VT-d left off this boot (iommu=off)".into());
    }
    if unit_for(bdf, None).is_none() {
        return Some(alloc::format!("no working remapping unit covers {bdf}"));
    }
    None
}

/// A translated domain with no device yet, on the unit that covers `bdf`, for
/// `blkbench` (which attaches the device to it with [`bench_attach`] while the
/// driver is quiesced). Offered when the units are up (iommu=on or pt).
/// Dropped after the device has left it, it gives its domain ID back.
pub fn bench_domain_for(bdf: pci::Bdf, strict: bool) -> Result<(SharedDomain, DomainId), String> {
    if let Some(why) = why_no_translation(bdf) {
        return Err(why);
    }
    let io = get().ok_or("no IOMMU")?;
    let ui = unit_for(bdf, None).ok_or("no unit")?;
    let entry = &io.units[ui];
    let did = with_unit(&entry.unit, |u| u.create_domain(DomainKind::Translated))
        .map_err(|e| alloc::format!("{e}"))?;
    let d: SharedDomain = Arc::new(Mutex::new(VtdDomain {
        unit: entry.unit.clone(),
        did,
        strict,
    }));
    Ok((d, did))
}

/// Re-points every context entry of `bdf` (each requester ID its DMA can
/// carry) at `target`, with the invalidations `attach` does. The caller must
/// have quiesced the device: DMA in flight would land in the new domain.
/// A pass-through domain is made on first use when the unit has none yet.
pub fn bench_attach(bdf: pci::Bdf, target: BenchTarget) -> Result<DomainId, String> {
    let io = get().ok_or("no IOMMU")?;
    let ui = unit_for(bdf, None).ok_or_else(|| alloc::format!("no unit covers {bdf}"))?;
    let entry = &io.units[ui];
    let aliases = dma_aliases(bdf);
    with_unit(&entry.unit, |u| {
        let did = match target {
            BenchTarget::Domain(d) => d,
            BenchTarget::PassThrough => {
                let mut pt = entry.passthrough.lock();
                match *pt {
                    Some(d) => d,
                    None => {
                        let d = if u.ecap().pt {
                            u.create_domain(DomainKind::PassThrough)?
                        } else {
                            u.create_identity_domain(&usable_ram())?
                        };
                        *pt = Some(d);
                        d
                    }
                }
            }
        };
        // The aliases move together: detach the device's own entries first so
        // attach_aliases does not see them as "in another domain".
        for a in &aliases {
            if u.domain_of(*a).is_some_and(|d| d != did) {
                u.detach(*a)?;
            }
        }
        u.attach_aliases(&aliases, did).map(|_| did)
    })
    .map_err(|e| alloc::format!("{e}"))
}
