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

use acpi_tables::dmar::ScopeType;
use dma::{IommuDomain, IommuError, IommuPerm, SharedDomain};
use hal::{DirectMap, DmaAddr, PhysAddr};
use iommu_vtd::{Config, DomainId, DomainKind, FrameAlloc, Perm, RemappingUnit};
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

/// One remapping unit and the devices its DMAR entry covers.
pub struct UnitEntry {
    pub base: u64,
    pub segment: u16,
    pub include_all: bool,
    /// Single-hop endpoints and bridges (sub-hierarchies) from the DRHD scopes.
    pub endpoints: Vec<(u8, u8, u8)>,
    pub bridges: Vec<(u8, u8, u8)>,
    pub unit: Arc<IrqSpinLock<Unit>>,
    /// The pass-through (or identity) domain for devices without a driver.
    pub passthrough: Mutex<Option<DomainId>>,
}

pub struct Iommu {
    pub mode: Mode,
    pub strict: bool,
    pub units: Vec<UnitEntry>,
    /// Devices with their own domain: (bdf, unit index, domain).
    pub attached: Mutex<Vec<(pci::Bdf, usize, DomainId)>>,
}

static IOMMU: Once<Iommu> = Once::new();

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
    for drhd in dmar.drhds() {
        if drhd.register_base == 0 {
            log::warn!("iommu: DRHD with register base 0 skipped (firmware bug)");
            continue;
        }
        let regs = match kmm::ioremap(drhd.register_base, drhd.register_size()) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("iommu {:#x}: cannot map registers: {e}", drhd.register_base);
                continue;
            }
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
        let mut endpoints = Vec::new();
        let mut bridges = Vec::new();
        for s in &drhd.scopes {
            if let Some(b) = s.single_hop_bdf() {
                match s.scope_type {
                    ScopeType::PciEndpoint => endpoints.push(b),
                    ScopeType::PciSubHierarchy => bridges.push(b),
                    _ => {}
                }
            }
        }
        let entry = UnitEntry {
            base: drhd.register_base,
            segment: drhd.segment,
            include_all: drhd.include_pci_all(),
            endpoints,
            bridges,
            unit: Arc::new(IrqSpinLock::new(unit)),
            passthrough: Mutex::new(None),
        };
        // RMRRs: memory the listed devices keep using (USB legacy, graphics)
        // stays identity-mapped in whatever domain they get.
        for r in dmar
            .rmrrs()
            .filter(|r| r.segment == drhd.segment && r.limit > r.base)
        {
            let devs: Vec<iommu_vtd::Bdf> = r
                .scopes
                .iter()
                .filter_map(|s| s.single_hop_bdf())
                .map(|(b, d, f)| iommu_vtd::Bdf::new(b, d, f))
                .collect();
            with_unit(&entry.unit, |u| {
                u.add_rmrr(&devs, r.base, r.limit - r.base + 1)
            });
            log::info!(
                "iommu: RMRR [{:#x}-{:#x}] identity-mapped for {} device(s)",
                r.base,
                r.limit,
                devs.len()
            );
        }
        units.push(entry);
    }
    IOMMU.call_once(|| Iommu {
        mode,
        strict,
        units,
        attached: Mutex::new(Vec::new()),
    });
    if !strict && mode == Mode::Translate {
        if let Err(e) = apic::register_tick_hook(flush_queue_timer) {
            log::warn!("iommu: no flush-queue timer ({e}); queues flush only when full");
        }
    }
}

/// The unit whose DMAR scope covers `bdf` (endpoint scope, then a bridge
/// scope naming its parent, then an INCLUDE_PCI_ALL unit of its segment).
pub fn unit_for(bdf: pci::Bdf, parent: Option<pci::Bdf>) -> Option<usize> {
    let io = get()?;
    let key = |b: pci::Bdf| (b.bus, b.device, b.function);
    io.units
        .iter()
        .position(|u| u.segment == bdf.segment && u.endpoints.contains(&key(bdf)))
        .or_else(|| {
            parent.and_then(|p| {
                io.units
                    .iter()
                    .position(|u| u.segment == p.segment && u.bridges.contains(&key(p)))
            })
        })
        .or_else(|| {
            io.units
                .iter()
                .position(|u| u.segment == bdf.segment && u.include_all)
        })
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
        | E::NoUnit(_) => IommuError::DomainUnusable,
    }
}

fn vtd_perm(perm: IommuPerm) -> Perm {
    let mut p = Perm::empty();
    p.set(Perm::READ, perm.contains(IommuPerm::READ));
    p.set(Perm::WRITE, perm.contains(IommuPerm::WRITE));
    p
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
    let ui = unit_for(bdf, parent)?;
    let entry = &io.units[ui];
    let did = with_unit(&entry.unit, |u| {
        let did = u.create_domain(DomainKind::Translated)?;
        u.attach(vbdf(bdf), did).map(|_| did)
    });
    match did {
        Ok(did) => {
            log::info!("iommu: {bdf} in its own {did} (unit {:#x})", entry.base);
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
        let r = with_unit(&entry.unit, |u| {
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
            u.attach(vbdf(d.bdf), did)
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

/// A domain of unit 0 with no device attached, for timing map+unmap through
/// the real unit (its invalidations included) in `dmabench`.
pub fn bench_domain(strict: bool) -> Option<SharedDomain> {
    let io = get().filter(|io| io.mode == Mode::Translate)?;
    let entry = io.units.first()?;
    let did = with_unit(&entry.unit, |u| u.create_domain(DomainKind::Translated)).ok()?;
    Some(Arc::new(Mutex::new(VtdDomain {
        unit: entry.unit.clone(),
        did,
        strict,
    })))
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

/// Walks the unit's tables for `bdf` as the hardware would.
pub fn translate(bdf: pci::Bdf, iova: u64) -> Result<iommu_vtd::Translation, String> {
    let io = get().ok_or("no IOMMU")?;
    let ui = unit_for(bdf, None).ok_or_else(|| alloc::format!("no remapping unit covers {bdf}"))?;
    with_unit(&io.units[ui].unit, |u| u.translate(vbdf(bdf), iova))
        .map_err(|r| alloc::format!("{r}"))
}
