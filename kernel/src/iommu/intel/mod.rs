//! Intel VT-d in the kernel: every DRHD unit of the DMAR brought up with
//! crates/iommu-vtd, devices routed to units by the DMAR's device scopes,
//! per-device translated domains behind the DMA API, pass-through for
//! everything we have no driver for, fault events decoded and logged.
//!
//! Boot options: `iommu=on|off|pt` (the kernel's default is off, as on a
//! real machine whose firmware we have not vetted; the runner's default
//! profile passes `iommu=on`, and `noiommu`/`bigmem` show untranslated DMA),
//! `iommu.strict=1|0` (default 1: every unmap invalidates the IOTLB before
//! the IOVA can be reused; 0: a flush queue batches them), `iommu.qi=0`
//! (register-based invalidation even when the unit offers queued).

mod fault;

pub use fault::{collect_faults, fault_count, fault_history, fault_vector};

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use acpi_tables::dmar::{DeviceScope, ScopeType};
use dma::{IommuDomain, IommuError, IommuPerm, SharedDomain};
use hal::{DirectMap, DmaAddr, PhysAddr};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Per-device translated domains for devices with drivers.
    Translate,
    /// Every device in a pass-through domain (ECAP.PT): bus address = physical.
    PassThrough,
    /// Units left alone; DMA is untranslated.
    Off,
}

/// One remapping unit that came up.
pub struct UnitEntry {
    pub base: u64,
    pub segment: u16,
    pub unit: Arc<IrqSpinLock<Unit>>,
    /// The pass-through (or identity) domain for devices without a driver.
    pub passthrough: Mutex<Option<DomainId>>,
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
    /// Index into `Iommu::units`; `None` when bring-up failed.
    pub unit: Option<usize>,
}

pub struct Iommu {
    pub mode: Mode,
    pub strict: bool,
    pub units: Vec<UnitEntry>,
    pub drhds: Vec<DrhdEntry>,
    /// Devices with their own domain: (bdf, unit index, domain).
    pub attached: Mutex<Vec<(pci::Bdf, usize, DomainId)>>,
}

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

/// Brings up every DRHD (translation still off) per the boot options.
pub fn init() {
    // The PCI layer hands over its topology before drivers bind.
    if let Err(e) = crate::pci::register_topology_hook(set_topology) {
        log::warn!("iommu: no PCI topology ({e}); devices behind bridges may get no unit");
    }
    let cmdline = crate::cmdline::boot_cmdline();
    let strict = cmdline.get("iommu.strict") != Some("0");
    let mode = match cmdline.get("iommu") {
        Some("on") => Mode::Translate,
        Some("pt") => Mode::PassThrough,
        Some("off") | None => Mode::Off,
        Some(other) => {
            log::warn!("iommu: unknown option iommu={other}; off");
            Mode::Off
        }
    };
    let Some(Ok(dmar)) = acpi::get().and_then(|p| p.dmar.as_ref()) else {
        log::info!("iommu: no usable DMAR table; DMA is untranslated");
        return;
    };
    if mode == Mode::Off {
        log::info!("iommu: off (boot with iommu=on or iommu=pt to use VT-d); DMA is untranslated");
        IOMMU.call_once(|| Iommu {
            mode,
            strict,
            units: Vec::new(),
            drhds: Vec::new(),
            attached: Mutex::new(Vec::new()),
        });
        return;
    }
    let vector = apic::alloc_vector(fault::fault_irq).ok();
    fault::set_fault_vector(vector.unwrap_or(0));
    let inval = match cmdline.get("iommu.qi") {
        Some("0") => Some(iommu_vtd::InvalMode::Register),
        _ => None, // queued when ECAP.QI says so
    };
    let mut units = Vec::new();
    let mut drhds = Vec::new();
    for drhd in dmar.drhds() {
        // Every DRHD is remembered, so a failed unit's devices stay its own.
        drhds.push(DrhdEntry {
            base: drhd.register_base,
            segment: drhd.segment,
            include_all: drhd.include_pci_all(),
            scopes: drhd.scopes.clone(),
            unit: None,
        });
        if drhd.register_base == 0 {
            log::warn!("iommu: DRHD with register base 0 skipped (firmware bug)");
            continue;
        }
        let Some((regs, window)) = map_unit_registers(drhd.register_base, drhd.register_size())
        else {
            continue;
        };
        let cfg = Config {
            inval,
            poll_budget: 1_000_000,
            relax,
            fault_msi: vector.map(|v| {
                let (addr, data) = apic::msi_message(v);
                (addr as u32, data)
            }),
            // 64 unmaps per domain-wide invalidation (Linux: 256 per CPU).
            flush_queue_len: 64,
            // Ticks of the 100 Hz timer: pending IOVAs wait at most 100 ms.
            flush_queue_delay: 10,
            window_size: Some(window),
            ..Config::default()
        };
        let unit = match RemappingUnit::new(regs, direct::direct(), KFrames, cfg) {
            Ok(u) => u,
            Err(e) => {
                log::warn!("iommu {:#x}: bring-up failed: {e}", drhd.register_base);
                continue;
            }
        };
        log::info!(
            "iommu {:#x}: VT-d {}-level tables, {:?} invalidation, mode {mode:?}{}",
            drhd.register_base,
            unit.levels(),
            unit.inval_mode(),
            if strict {
                ", strict"
            } else {
                ", lazy (flush queue)"
            }
        );
        if let Some(d) = drhds.last_mut() {
            d.unit = Some(units.len());
        }
        units.push(UnitEntry {
            base: drhd.register_base,
            segment: drhd.segment,
            unit: Arc::new(IrqSpinLock::new(unit)),
            passthrough: Mutex::new(None),
        });
    }
    IOMMU.call_once(|| Iommu {
        mode,
        strict,
        units,
        drhds,
        attached: Mutex::new(Vec::new()),
    });
    if !strict && mode == Mode::Translate {
        if let Err(e) = apic::register_tick_hook(flush_queue_timer) {
            log::warn!("iommu: no flush-queue timer ({e}); queues flush only when full");
        }
    }
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
/// any driver binds: DMAR
/// scope paths of any length can now be resolved, so the RMRRs are handed to
/// their units (memory the listed devices keep using, USB legacy or graphics,
/// stays identity-mapped in whatever domain they get).
pub fn set_topology(topo: pci::Topology) {
    let topo = TOPOLOGY.call_once(|| topo);
    let Some(io) = get() else { return };
    let Some(Ok(dmar)) = acpi::get().and_then(|p| p.dmar.as_ref()) else {
        return;
    };
    for e in &io.units {
        for r in dmar
            .rmrrs()
            .filter(|r| r.segment == e.segment && r.limit > r.base)
        {
            let devs: Vec<iommu_vtd::Bdf> = r
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
    }
}

/// A DMAR device scope's PCI function, its path followed through the
/// enumerated bridges (multi-hop paths included).
fn resolve(topo: &pci::Topology, segment: u16, s: &DeviceScope) -> Option<iommu_vtd::Bdf> {
    s.resolve(|b, d, f| topo.secondary_bus(segment, b, d, f))
        .map(|(b, d, f)| iommu_vtd::Bdf::new(b, d, f))
}

/// Every DRHD's reach, scopes resolved (crates/iommu-vtd's `coverage` input).
fn reach(io: &Iommu) -> Vec<iommu_vtd::UnitScope> {
    let empty = pci::Topology::default();
    let topo = TOPOLOGY.get().unwrap_or(&empty);
    io.drhds
        .iter()
        .map(|d| {
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
        })
        .collect()
}

/// The requester IDs `bdf`'s DMA can carry (its own first, then those
/// bridges above it substitute), from the topology.
pub fn dma_aliases(bdf: pci::Bdf) -> Vec<iommu_vtd::Bdf> {
    TOPOLOGY
        .get()
        .map_or_else(|| alloc::vec![bdf], |t| t.dma_aliases(bdf))
        .into_iter()
        .map(vbdf)
        .collect()
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
    let path: Vec<iommu_vtd::Bdf> = path.into_iter().map(vbdf).collect();
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

fn vbdf(b: pci::Bdf) -> iommu_vtd::Bdf {
    iommu_vtd::Bdf::new(b.bus, b.device, b.function)
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
                let _ = u.free_iova_flushed(self.did, iova.as_u64());
            } else {
                // Lazy: parked until the flush queue's domain flush.
                let _ = u.free_iova(self.did, iova.as_u64(), now);
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
    if io.mode != Mode::Translate {
        return None;
    }
    let ui = match coverage(bdf, parent) {
        Coverage::Unit(i) => io.drhds.get(i).and_then(|d| d.unit)?,
        Coverage::FailedUnit(i) => {
            log::warn!(
                "iommu: {bdf}: its remapping unit {:#x} failed to come up; no IOMMU for it",
                io.drhds.get(i).map_or(0, |d| d.base)
            );
            return None;
        }
        Coverage::None => return None,
    };
    let entry = &io.units[ui];
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
        match u.group_domain(&aliases) {
            Some(did) if u.domain_kind(did) == Some(DomainKind::Translated) => {
                u.attach_aliases(&aliases, did).map(|_| (did, true))
            }
            held => {
                // Bound after `enable`: the group left the pass-through (or
                // identity) domain together, into a new translated one.
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
                strict: io.strict,
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
            Some(Arc::new(Mutex::new(VtdDomain {
                unit: entry.unit.clone(),
                did,
                strict: io.strict,
            })))
        }
        Err(e) => {
            log::warn!("iommu: {bdf}: no domain: {e}");
            None
        }
    }
}

/// After the drivers bound: every other covered function goes into the
/// unit's pass-through domain (we have no driver, so we leave its DMA as the
/// firmware set it up), then translation is switched on.
pub fn enable(devices: &[pci::PciDevice]) {
    let Some(io) = get() else { return };
    if io.mode == Mode::Off {
        return;
    }
    let attached: Vec<pci::Bdf> = io.attached.lock().iter().map(|a| a.0).collect();
    for d in devices.iter().filter(|d| !attached.contains(&d.bdf)) {
        let Some(ui) = unit_for(d.bdf, d.parent) else {
            continue;
        };
        let entry = &io.units[ui];
        let aliases = dma_aliases(d.bdf);
        let r = with_unit(&entry.unit, |u| {
            // In a group with a driver's domain: the same domain (one ID).
            if let Some(did) = u.group_domain(&aliases) {
                return u.attach_aliases(&aliases, did);
            }
            let mut pt = entry.passthrough.lock();
            let did = match *pt {
                Some(did) => did,
                None => {
                    let kind = if u.ecap().pt {
                        DomainKind::PassThrough
                    } else {
                        DomainKind::Identity
                    };
                    let did = if kind == DomainKind::Identity {
                        let ram: Vec<(PhysAddr, u64)> = crate::mm::memmap::regions()
                            .iter()
                            .filter(|r| r.kind == crate::mm::memmap::Kind::Usable)
                            .map(|r| {
                                (
                                    PhysAddr::new(r.start & !0xFFF),
                                    (r.end - (r.start & !0xFFF)) & !0xFFF,
                                )
                            })
                            .collect();
                        u.create_identity_domain(&ram)?
                    } else {
                        u.create_domain(kind)?
                    };
                    *pt = Some(did);
                    did
                }
            };
            u.attach_aliases(&aliases, did)
        });
        if let Err(e) = r {
            log::warn!("iommu: {}: pass-through attach failed: {e}", d.bdf);
        }
    }
    for e in &io.units {
        match with_unit(&e.unit, |u| u.enable_translation()) {
            Ok(()) => log::info!("iommu {:#x}: DMA remapping enabled", e.base),
            Err(err) => log::warn!("iommu {:#x}: enabling translation failed: {err}", e.base),
        }
    }
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
    let entry = io.units.get(ui)?;
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
    let rid = dma_aliases(bdf).last().copied().unwrap_or(vbdf(bdf));
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
                            let ram: Vec<(PhysAddr, u64)> = crate::mm::memmap::regions()
                                .iter()
                                .filter(|r| r.kind == crate::mm::memmap::Kind::Usable)
                                .map(|r| {
                                    (
                                        PhysAddr::new(r.start & !0xFFF),
                                        (r.end - (r.start & !0xFFF)) & !0xFFF,
                                    )
                                })
                                .collect();
                            u.create_identity_domain(&ram)?
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
