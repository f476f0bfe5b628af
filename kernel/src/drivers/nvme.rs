//! Binding of `crates/nvme` to NVMe controllers (class 01:08:02; QEMU's
//! `-device nvme`, the `nvme` profile).
//!
//! The crate does the work; this file maps BAR0 uncached, gives the controller its DMA
//! device (IOMMU domain or swiotlb, as every driver gets from `kdma`), a TSC delay, and
//! keeps the bound controllers for the `lsblk` and `blk` commands.
//!
//! Two steps, as for AHCI: the PCI probe only claims the function (BAR0, Bus Master,
//! the DMA device and its IOMMU domain); [`start`] resets and enables the controller
//! (its queues and Identify are the first DMA) once `iommu::enable` has turned
//! translation on.
//!
//! Completions by MSI-X: the probe programs table entries 0 (admin CQ) and 1 (I/O
//! CQ) of the function's MSI-X table (in BAR0 on QEMU) with a vector each and
//! unmasks them; once the controller is up, [`start`] hands its completion queues to
//! the handler and turns waiting by interrupt on. The handler consumes CQ entries by
//! their phase tag and rings the CQ head doorbell; the waiter sleeps in `hlt`, with
//! the crate's per-command timeout. Several reads may be in flight (`blkbench --qd`,
//! through the block layer's `start`/`complete`): the handler puts each completion
//! in its command's slot and the waiter takes whichever ended. With `nvme.poll=1`,
//! or without MSI-X, INTMS masks every vector and completions are found by
//! **polling** the phase tag.
//! `lsblk` says which, with counts.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use nvme::{CompletionQueue, Config, Controller, CqStats, CtrlInfo, Delay, Namespace};
use pci::{DeviceCtx, PciDeviceId, PciDriver, ProbeError};

use crate::arch::idt::TrapFrame;
use crate::mm::IoMem;

use super::IrqRegs;

/// The TSC busy-wait the AHCI binding uses.
pub struct TscDelay;

impl Delay for TscDelay {
    fn delay_us(&self, us: u32) {
        ahci::Delay::delay_us(&super::ahci::TscDelay, us)
    }

    fn wait_interrupt(&self, _max_us: u32, woken: &dyn Fn() -> bool) -> Option<u32> {
        super::sleep_for_interrupt(woken)
    }
}

/// One bound controller.
pub struct Bound {
    pub bdf: pci::Bdf,
    pub ctrl: Controller<IoMem, TscDelay>,
    /// The MSI-X vectors (table entry n → vectors[n]), or why completions are polled.
    pub irq: Result<Vec<u8>, &'static str>,
}

/// Not an `IrqSpinLock`: a command sleeps for its interrupt while the lock is held,
/// so interrupts must stay on; no interrupt handler takes this lock.
static CTRLS: spin::Mutex<Vec<Bound>> = spin::Mutex::new(Vec::new());

/// Claimed by the PCI probe, not started yet.
struct Pending {
    bdf: pci::Bdf,
    regs: IoMem,
    dev: Arc<dma::DmaDevice>,
    irq: Result<Vec<u8>, &'static str>,
}

/// What the interrupt handler needs of one controller.
struct IrqSlot {
    bdf: pci::Bdf,
    /// MSI-X table entry n is delivered on vectors[n].
    vectors: Vec<u8>,
    regs: IrqRegs,
    /// Set once the controller is up; until then nothing is consumed.
    cqs: Vec<Arc<CompletionQueue>>,
}

/// Taken by the handler with `try_lock`; thread code holds it with interrupts off,
/// so on this single CPU the handler always gets it.
static IRQ_SLOTS: crate::sync::IrqSpinLock<Vec<IrqSlot>> =
    crate::sync::IrqSpinLock::new(Vec::new());

fn nvme_irq(f: &mut TrapFrame) {
    let Some(slots) = IRQ_SLOTS.try_lock() else {
        return;
    };
    for s in slots.iter() {
        let Some(entry) = s.vectors.iter().position(|v| u64::from(*v) == f.vector) else {
            continue;
        };
        for cq in s.cqs.iter().filter(|c| c.vector() == Some(entry as u16)) {
            cq.handle_interrupt(&s.regs);
        }
    }
}

/// One controller's completions: its address, its MSI-X vectors (or why polled),
/// and each CQ's counters (admin, I/O).
pub type IrqInfo = (pci::Bdf, Result<Vec<u8>, &'static str>, Vec<CqStats>);

/// How each controller completes commands, for `lsblk`: (controller, MSI-X vectors
/// or why polled, per-CQ counters: admin, I/O).
pub fn irq_info() -> Vec<IrqInfo> {
    with_ctrls(|c| {
        c.iter()
            .map(|b| (b.bdf, b.irq.clone(), b.ctrl.cq_stats()))
            .collect()
    })
}

/// `0x53, 0x54`.
pub fn vector_list(v: &[u8]) -> String {
    let mut s = String::new();
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&alloc::format!("{x:#04x}"));
    }
    s
}

/// Programs MSI-X entries 0 and 1 (admin and I/O CQ) with new vectors, unmasked.
fn setup_msix(ctx: &mut DeviceCtx<'_>, regs: &IoMem) -> Result<Vec<u8>, &'static str> {
    if crate::cmdline::boot_cmdline().get("nvme.poll") == Some("1") {
        return Err("nvme.poll=1");
    }
    let off = ctx
        .device
        .find_capability(pci::caps::id::MSIX)
        .ok_or("no MSI-X capability")?;
    let msix =
        pci::MsiX::read(ctx.config, ctx.bdf(), off as u16).map_err(|_| "bad MSI-X capability")?;
    if !msix.fits(|i| ctx.device.bar(i).map(|b| b.size)) {
        return Err("MSI-X table outside its BAR");
    }
    let other;
    let table: &IoMem = if msix.table_bar == 0 {
        regs
    } else {
        let bar = *ctx
            .device
            .bar(msix.table_bar)
            .ok_or("MSI-X table BAR missing")?;
        other =
            crate::mm::ioremap(bar.address, bar.size).map_err(|_| "cannot map the MSI-X table")?;
        &other
    };
    let n = msix.table_size.min(2);
    let mut vectors = Vec::new();
    for i in 0..n {
        let v = crate::arch::apic::alloc_vector(nvme_irq)?;
        crate::arch::apic::set_vector_name(
            v,
            if i == 0 {
                "MSI-X nvme admin"
            } else {
                "MSI-X nvme I/O"
            },
        );
        vectors.push(v);
    }
    msix.enable_masked(ctx.config);
    for (i, v) in vectors.iter().enumerate() {
        let (address, data) = crate::arch::apic::msi_for(ctx.bdf(), *v);
        let msg = pci::MsiMessage { address, data };
        msix.program_entry(table, i as u16, msg, false)
            .map_err(|_| "MSI-X entry refused")?;
    }
    IRQ_SLOTS.lock().push(IrqSlot {
        bdf: ctx.bdf(),
        vectors: vectors.clone(),
        // SAFETY: the handler reads the registers only once `cqs` is set, i.e. while
        // the controller owns `regs` (moving an IoMem keeps its mapping); the slot is
        // removed before the controller drops (remove()) or when its probe failed.
        regs: unsafe { IrqRegs::new(regs) },
        cqs: Vec::new(),
    });
    msix.set_function_mask(ctx.config, false);
    Ok(vectors)
}

static PENDING: spin::Mutex<Vec<Pending>> = spin::Mutex::new(Vec::new());

/// Brings up every claimed controller (after `iommu::enable`).
pub fn start() {
    let pending = core::mem::take(&mut *PENDING.lock());
    for p in pending {
        let instance = with_ctrls(|c| c.len());
        match bring_up(p.bdf, p.regs, p.dev, p.irq, instance) {
            Ok(b) => {
                match &b.irq {
                    Ok(v) if b.ctrl.interrupts_enabled() => log::info!(
                        "nvme {}: completions by MSI-X, vectors {} (admin, I/O)",
                        p.bdf,
                        vector_list(v)
                    ),
                    // bring_up() said why.
                    Ok(_) => {}
                    Err(why) => log::info!("nvme {}: completions polled ({why})", p.bdf),
                }
                let ctrl = &b.ctrl;
                let info = ctrl.info();
                match ctrl.namespace() {
                    Some(ns) => log::info!(
                        "nvme {}: {} \"{}\" serial {}, {} sectors of {} bytes ({} MiB), MDTS {} KiB",
                        p.bdf,
                        ctrl.name(),
                        info.model,
                        info.serial,
                        ns.sectors,
                        ns.sector_size,
                        (ns.sectors * ns.sector_size as u64) >> 20,
                        ctrl.max_transfer() / 1024
                    ),
                    None => log::warn!("nvme {}: namespace 1 is not usable", p.bdf),
                }
                with_ctrls(|c| c.push(b));
            }
            Err(e) => {
                // The handler only touches a controller whose `cqs` are set: none here.
                IRQ_SLOTS.lock().retain(|s| s.bdf != p.bdf);
                log::error!("nvme {}: {e}", p.bdf)
            }
        }
    }
    // As for AHCI: release the lazily-freed IOVAs of Identify's buffers now.
    crate::iommu::flush_lazy_queues();
}

/// The one bring-up of a controller, for [`start`] and [`rebind`]: reset, enable and
/// identify it on `dev` as `nvme<instance>`, with as many interrupt vectors as the
/// PCI probe programmed; then, when it has them, give the interrupt handler's slot
/// these registers and the controller's completion queues and turn waiting by
/// interrupt on. The MSI-X table keeps its entries across a controller reset.
fn bring_up(
    bdf: pci::Bdf,
    regs: IoMem,
    dev: Arc<dma::DmaDevice>,
    irq: Result<Vec<u8>, &'static str>,
    instance: usize,
) -> Result<Bound, nvme::NvmeError> {
    // SAFETY: as in `setup_msix`: the handler touches these registers only through
    // the queues set below, while the controller owns `regs` (moving an IoMem keeps
    // its mapping); the slot lets go of them before the controller drops (remove(),
    // rebind()).
    let irq_regs = unsafe { IrqRegs::new(&regs) };
    let irq_vectors = irq.as_ref().map_or(0, |v| v.len() as u16);
    let mut ctrl = Controller::probe(
        regs,
        dev,
        TscDelay,
        Config {
            command_timeout_ms: 5000,
            instance,
            irq_vectors,
            ..Config::default()
        },
    )?;
    if irq.is_ok() {
        if let Some(s) = IRQ_SLOTS.lock().iter_mut().find(|s| s.bdf == bdf) {
            s.regs = irq_regs;
            s.cqs = ctrl.completion_queues();
        }
        if let Err(e) = ctrl.enable_interrupts(true) {
            log::warn!("nvme {bdf}: {e}; completions polled");
        }
    }
    Ok(Bound { bdf, ctrl, irq })
}

/// Runs `f` with the bound controllers (interrupts stay on: a command sleeps for its
/// completion interrupt, up to its timeout).
pub fn with_ctrls<R>(f: impl FnOnce(&mut Vec<Bound>) -> R) -> R {
    f(&mut CTRLS.lock())
}

/// Every namespace: (controller, name, identify data, namespace).
pub fn disks() -> Vec<(pci::Bdf, String, CtrlInfo, Namespace)> {
    with_ctrls(|c| {
        c.iter()
            .filter_map(|b| {
                let ns = b.ctrl.namespace()?;
                Some((
                    b.bdf,
                    String::from(b.ctrl.name()),
                    b.ctrl.info().clone(),
                    ns,
                ))
            })
            .collect()
    })
}

/// Runs `f` with the namespace called `name` (`nvme0n1`, …) as a block device.
pub fn with_disk<R>(
    name: &str,
    f: impl FnOnce(&mut dyn block::BlockDevice, &Arc<dma::DmaDevice>) -> R,
) -> Result<R, BindError> {
    with_ctrls(|c| {
        for b in c.iter_mut() {
            if b.ctrl.name() != name {
                continue;
            }
            let dev = b.ctrl.dma_device().clone();
            return match b.ctrl.disk() {
                Some(mut d) => Ok(f(&mut d, &dev)),
                None => Err(BindError::NamespaceNotUsable(name.into())),
            };
        }
        Err(BindError::NoSuchDisk(name.into()))
    })
}

/// Sends one Asynchronous Event Request to the controller of namespace `name` and
/// waits for it (`Controller::async_event_request`). A controller completes an AER
/// only when it has an event to report; QEMU has none here, so the request ends in
/// the command timeout and a controller reset: `blk aer`, the in-QEMU check that a
/// command the device never completes is a timeout error, not a hang.
pub fn async_event_request(name: &str) -> Result<Result<u32, nvme::NvmeError>, BindError> {
    with_ctrls(|c| {
        let b = c
            .iter_mut()
            .find(|b| b.ctrl.name() == name)
            .ok_or_else(|| BindError::NoSuchDisk(name.into()))?;
        Ok(b.ctrl.async_event_request())
    })
}

pub struct NvmeDriver;

/// Puts the driver in the bus's table (`drivers::register_pci_drivers`).
pub fn register(reg: &mut pci::DriverRegistry, cfg: &dyn pci::ConfigAccess) {
    reg.register_driver(cfg, alloc::boxed::Box::new(NvmeDriver));
}

static IDS: [PciDeviceId; 1] = [PciDeviceId::class(0x01_08_02, 0xff_ff_ff)];

impl PciDriver for NvmeDriver {
    fn name(&self) -> &'static str {
        "nvme"
    }

    fn id_table(&self) -> &[PciDeviceId] {
        &IDS
    }

    fn probe(&self, ctx: &mut DeviceCtx<'_>) -> Result<(), ProbeError> {
        let (bar, regs, dev) =
            super::probe_bus_master(ctx, 0, "nvme", "BAR0", "an uncached mapping of BAR0")?;
        // The mask is set once, on the DMA device, by the driver crate's bring-up
        // (`nvme::Controller::probe`, as Linux's nvme_pci_enable does).
        log::info!(
            "nvme {}: BAR0 {:#x} ({} KiB), 64-bit DMA; the namespace comes up after the IOMMU",
            ctx.bdf(),
            bar.address,
            bar.size / 1024
        );
        let irq = setup_msix(ctx, &regs);
        if let Err(why) = &irq {
            log::info!(
                "nvme {}: no interrupt ({why}); completions will be polled",
                ctx.bdf()
            );
        }
        PENDING.lock().push(Pending {
            bdf: ctx.bdf(),
            regs,
            dev,
            irq,
        });
        Ok(())
    }

    fn remove(&self, ctx: &mut DeviceCtx<'_>) {
        let bdf = ctx.bdf();
        // The handler lets go of the registers and queues before they go.
        IRQ_SLOTS.lock().retain(|s| s.bdf != bdf);
        if let Some(off) = ctx.device.find_capability(pci::caps::id::MSIX) {
            if let Ok(msix) = pci::MsiX::read(ctx.config, bdf, off as u16) {
                msix.disable(ctx.config);
            }
        }
        PENDING.lock().retain(|p| p.bdf != bdf);
        let taken = with_ctrls(|c| c.iter().position(|b| b.bdf == bdf).map(|i| c.remove(i)));
        if let Some(b) = taken {
            let dev = b.ctrl.dma_device().clone();
            // Dropping the controller disables it before its queues go.
            drop(b);
            let leaked = dev.check_leaks();
            if leaked > 0 {
                log::error!("nvme {bdf}: {leaked} DMA mapping(s) still live at remove");
            }
        }
    }
}

/// The controller of namespace `name` and its DMA device (for `blkbench`).
pub fn controller_of(name: &str) -> Option<(pci::Bdf, Arc<dma::DmaDevice>)> {
    with_ctrls(|c| {
        c.iter()
            .find(|b| b.ctrl.name() == name)
            .map(|b| (b.bdf, b.ctrl.dma_device().clone()))
    })
}

/// Why a namespace could not be reached ([`with_disk`]) or a controller not brought
/// up again ([`rebind`]; `E` is the error of the step the caller runs in between).
#[derive(Debug)]
pub enum BindError<E = core::convert::Infallible> {
    /// No NVMe namespace has this name.
    NoSuchDisk(String),
    /// The controller's namespace 1 is not usable.
    NamespaceNotUsable(String),
    /// No controller is bound at this function.
    NotBound(pci::Bdf),
    /// The function has no BAR0.
    NoBar0(pci::Bdf),
    /// BAR0 could not be mapped again.
    Ioremap(pci::Bdf, crate::mm::MmError),
    /// The controller did not come up again (its namespace is gone).
    Probe(pci::Bdf, nvme::NvmeError),
    /// The caller's step between teardown and bring-up failed (the controller stays
    /// down).
    Between(E),
}

impl<E: core::fmt::Display> core::fmt::Display for BindError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BindError::NoSuchDisk(name) => write!(f, "no disk called '{name}' (see lsblk)"),
            BindError::NamespaceNotUsable(name) => write!(f, "{name}: namespace not usable"),
            BindError::NotBound(bdf) => write!(f, "nvme {bdf}: not bound"),
            BindError::NoBar0(bdf) => write!(f, "nvme {bdf}: no BAR0"),
            BindError::Ioremap(bdf, e) => write!(f, "nvme {bdf}: ioremap BAR0: {e}"),
            BindError::Probe(bdf, e) => write!(f, "nvme {bdf}: {e}"),
            BindError::Between(e) => write!(f, "{e}"),
        }
    }
}

/// As `ahci::rebind`: disables the controller at `bdf` (dropping it frees its
/// queues through the old DMA device), runs `between` (the IOMMU re-pointing),
/// maps BAR0 again and brings the controller up on `dev` under the same name, by
/// the same [`bring_up`] as at boot.
pub fn rebind<E>(
    bdf: pci::Bdf,
    dev: Arc<dma::DmaDevice>,
    between: impl FnOnce() -> Result<(), E>,
) -> Result<(), BindError<E>> {
    let taken = with_ctrls(|c| {
        c.iter()
            .position(|b| b.bdf == bdf)
            .map(|i| (i, c.remove(i)))
    });
    let (instance, old) = taken.ok_or(BindError::NotBound(bdf))?;
    let irq = old.irq.clone();
    // No completion queues while the controller is down: the handler does nothing.
    for s in IRQ_SLOTS.lock().iter_mut().filter(|s| s.bdf == bdf) {
        s.cqs = Vec::new();
    }
    drop(old);
    between().map_err(BindError::Between)?;
    let bar = crate::pci::devices()
        .into_iter()
        .find(|d| d.bdf == bdf)
        .and_then(|d| d.bar(0).copied())
        .ok_or(BindError::NoBar0(bdf))?;
    let regs = crate::mm::ioremap(bar.address, bar.size).map_err(|e| BindError::Ioremap(bdf, e))?;
    let b = bring_up(bdf, regs, dev, irq, instance).map_err(|e| BindError::Probe(bdf, e))?;
    with_ctrls(|c| c.insert(instance.min(c.len()), b));
    Ok(())
}
