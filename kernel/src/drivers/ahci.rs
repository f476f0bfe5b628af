//! Binding of `crates/ahci` to SATA AHCI controllers (class 01:06:01; q35 always has
//! an ICH9 AHCI at 00:1f.2 whose port 0 is the BIOS profiles' boot disk).
//!
//! The crate does the work; this file maps ABAR (BAR5) uncached, gives the HBA its
//! DMA device (IOMMU domain or swiotlb, as every driver gets from `kdma`), a TSC
//! delay, and keeps the bound controllers for the `lsblk` and `blk` commands.
//!
//! Two steps: the PCI probe only claims the function (ABAR, Bus Master, the DMA
//! device and its IOMMU domain); [`start`] resets the HBA and brings up its ports
//! (IDENTIFY is the first DMA) once `iommu::enable` has turned translation on, since
//! before that the HBA's IOVAs would reach physical memory untranslated.
//!
//! Completions by interrupt: the probe enables the function's MSI (the ICH9 AHCI
//! has one, single message) on a vector of its own; once the HBA is up, [`start`]
//! hands the crate's `IrqShared` to the handler and sets GHC.IE. The handler
//! (`ahci::handle_interrupt`) acknowledges PxIS and IS and latches PxIS; the waiter
//! sleeps in `hlt` until then, with the crate's per-command timeout.
//! Without MSI, or with `ahci.intx=1`, the HBA's legacy pin is used instead: the
//! line the firmware's `_PRT` routes it to (`pci::intx`), level-triggered and
//! shared, the handler chained on it. With `ahci.poll=1`, or when neither works,
//! commands complete by polling PxCI/PxIS. `lsblk` says which, with counts.
//!
//! Disks with NCQ (QEMU's report depth 32) keep several reads in flight through
//! the block layer's `start`/`complete` (`blkbench --qd N`); the crate's `ncq`
//! module holds the tags, their completion from PxSACT and their error handling.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use ahci::{Config, Delay, DiskInfo, Hba, IrqShared, IrqStats};
use pci::{DeviceCtx, PciDeviceId, PciDriver, ProbeError};

use crate::arch::idt::TrapFrame;
use crate::arch::tsc as time;
use crate::mm::IoMem;

use super::IrqRegs;

/// Busy-waits on the calibrated TSC.
pub struct TscDelay;

impl Delay for TscDelay {
    fn delay_us(&self, us: u32) {
        let hz = time::tsc_hz();
        if hz == 0 {
            // Uncalibrated (cannot happen after boot's calibrate()): a rough spin.
            for _ in 0..(us as u64 * 1000) {
                core::hint::spin_loop();
            }
            return;
        }
        let end = time::rdtsc() + hz * us as u64 / 1_000_000;
        while time::rdtsc() < end {
            core::hint::spin_loop();
        }
    }

    fn wait_interrupt(&self, _max_us: u32, woken: &dyn Fn() -> bool) -> Option<u32> {
        super::sleep_for_interrupt(woken)
    }
}

/// How an HBA's completion interrupt reaches the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqLine {
    /// Its own MSI vector.
    Msi(u8),
    /// Its INTx pin, on the IO-APIC input the `_PRT` names (shared, level).
    Intx { gsi: u32, vector: u8 },
}

/// One bound controller.
pub struct Controller {
    pub bdf: pci::Bdf,
    pub hba: Hba<IoMem, TscDelay>,
    /// The interrupt line, or why completions are polled.
    pub irq: Result<IrqLine, &'static str>,
}

/// Not an `IrqSpinLock`: a command sleeps for its interrupt while the lock is held,
/// so interrupts must stay on; no interrupt handler takes this lock.
static HBAS: spin::Mutex<Vec<Controller>> = spin::Mutex::new(Vec::new());

/// Claimed by the PCI probe, not started yet.
struct Pending {
    bdf: pci::Bdf,
    regs: IoMem,
    dev: Arc<dma::DmaDevice>,
    /// The interrupt line, or why completions are polled.
    irq: Result<IrqLine, &'static str>,
}

/// What the interrupt handler needs of one HBA.
struct IrqSlot {
    bdf: pci::Bdf,
    vector: u8,
    /// On a shared INTx line (served by [`ahci_intx`], not by vector).
    intx: bool,
    regs: IrqRegs,
    /// Set once the HBA is up (before, GHC.IE is off and nothing is pending).
    shared: Option<Arc<IrqShared>>,
}

/// Taken by the handler with `try_lock`; thread code holds it with interrupts off,
/// so on this single CPU the handler always gets it.
static IRQ_SLOTS: crate::sync::IrqSpinLock<Vec<IrqSlot>> =
    crate::sync::IrqSpinLock::new(Vec::new());

fn ahci_irq(f: &mut TrapFrame) {
    let Some(slots) = IRQ_SLOTS.try_lock() else {
        return;
    };
    for s in slots
        .iter()
        .filter(|s| !s.intx && u64::from(s.vector) == f.vector)
    {
        if let Some(shared) = &s.shared {
            ahci::handle_interrupt(&s.regs, shared);
        }
    }
}

/// The HBAs' handler on their shared INTx lines: serves every HBA that uses one
/// and says whether any had raised it (another device on the line may have).
fn ahci_intx() -> bool {
    let Some(slots) = IRQ_SLOTS.try_lock() else {
        return false;
    };
    let mut ours = false;
    for s in slots.iter().filter(|s| s.intx) {
        if let Some(shared) = &s.shared {
            ours |= ahci::handle_interrupt(&s.regs, shared);
        }
    }
    ours
}

/// How one HBA completes commands, for `lsblk`: (controller, MSI vector or why
/// polled, counters).
pub fn irq_info() -> Vec<(pci::Bdf, Result<IrqLine, &'static str>, IrqStats)> {
    with_hbas(|h| {
        h.iter()
            .map(|c| (c.bdf, c.irq, c.hba.irq_shared().stats()))
            .collect()
    })
}

/// The interrupt line of the HBA at `bdf`, if its completions come by interrupt.
pub fn irq_line(bdf: pci::Bdf) -> Option<IrqLine> {
    with_hbas(|h| h.iter().find(|c| c.bdf == bdf).and_then(|c| c.irq.ok()))
}

/// The HBA's interrupt: MSI, else (or with `ahci.intx=1`) its INTx line.
fn setup_irq(ctx: &mut DeviceCtx<'_>, regs: &IoMem) -> Result<IrqLine, &'static str> {
    let args = crate::cmdline::boot_cmdline();
    if args.get("ahci.poll") == Some("1") {
        return Err("ahci.poll=1");
    }
    let msi = if args.get("ahci.intx") == Some("1") {
        Err("ahci.intx=1")
    } else {
        setup_msi(ctx, regs).map(IrqLine::Msi)
    };
    match msi {
        Ok(line) => Ok(line),
        Err(why) => {
            log::info!("ahci {}: no MSI ({why}); trying its INTx pin", ctx.bdf());
            setup_intx(ctx, regs)
        }
    }
}

/// Chains the HBA's handler on the IO-APIC input its pin is routed to and lets
/// the function assert the pin (Interrupt Disable off, MSI off).
fn setup_intx(ctx: &mut DeviceCtx<'_>, regs: &IoMem) -> Result<IrqLine, &'static str> {
    let bdf = ctx.bdf();
    let (gsi, vector) = match crate::pci::intx::request(bdf, ahci_intx) {
        Ok(r) => r,
        Err(e) => {
            log::info!("ahci {bdf}: no INTx line: {e}");
            return Err("no MSI and no routed INTx line");
        }
    };
    crate::arch::apic::set_vector_name(vector, "INTx (IO-APIC, shared)");
    IRQ_SLOTS.lock().push(IrqSlot {
        bdf,
        vector,
        intx: true,
        // SAFETY: as in `setup_msi`.
        regs: unsafe { IrqRegs::new(regs) },
        shared: None,
    });
    pci::command::set_intx_disabled(ctx.config, bdf, false);
    Ok(IrqLine::Intx { gsi, vector })
}

/// Enables the function's MSI on a new vector whose handler serves this HBA.
fn setup_msi(ctx: &mut DeviceCtx<'_>, regs: &IoMem) -> Result<u8, &'static str> {
    let off = ctx
        .device
        .find_capability(pci::caps::id::MSI)
        .ok_or("no MSI capability")?;
    let msi =
        pci::Msi::read(ctx.config, ctx.bdf(), off as u16).map_err(|_| "bad MSI capability")?;
    let vector = crate::arch::apic::alloc_vector(ahci_irq)?;
    crate::arch::apic::set_vector_name(vector, "MSI ahci");
    let (address, data) = crate::arch::apic::msi_for(ctx.bdf(), vector);
    let msg = pci::MsiMessage { address, data };
    IRQ_SLOTS.lock().push(IrqSlot {
        bdf: ctx.bdf(),
        vector,
        intx: false,
        // SAFETY: the handler reads the registers only once `shared` is set, i.e.
        // while the HBA owns `regs` (moving an IoMem keeps its mapping); the slot is
        // removed before the HBA drops (remove()) or when its probe failed (start()).
        regs: unsafe { IrqRegs::new(regs) },
        shared: None,
    });
    msi.enable(ctx.config, msg, 1)
        .map_err(|_| "MSI enable refused")?;
    pci::command::set_intx_disabled(ctx.config, ctx.bdf(), true);
    Ok(vector)
}

static PENDING: spin::Mutex<Vec<Pending>> = spin::Mutex::new(Vec::new());

/// Resets every claimed HBA and brings up its disks (after `iommu::enable`).
pub fn start() {
    let pending = core::mem::take(&mut *PENDING.lock());
    for p in pending {
        let first = disks().len();
        match bring_up(p.bdf, p.regs, p.dev, p.irq, first) {
            Ok(c) => {
                match c.irq {
                    Ok(IrqLine::Msi(vector)) => {
                        log::info!("ahci {}: completions by MSI, vector {vector:#04x}", p.bdf)
                    }
                    Ok(IrqLine::Intx { gsi, vector }) => log::info!(
                        "ahci {}: completions by INTx, GSI {gsi} (from _PRT), vector {vector:#04x}",
                        p.bdf
                    ),
                    Err(why) => log::info!("ahci {}: completions polled ({why})", p.bdf),
                }
                for d in c.hba.disks() {
                    log::info!(
                        "ahci {}: {} on port {}: \"{}\", {} sectors ({} MiB)",
                        p.bdf,
                        d.name,
                        d.port,
                        d.id.model,
                        d.id.sectors,
                        (d.id.sectors * d.id.sector_size as u64) >> 20
                    );
                }
                with_hbas(|h| h.push(c));
            }
            Err(e) => {
                // The handler only touches an HBA whose `shared` is set: none here.
                IRQ_SLOTS.lock().retain(|s| s.bdf != p.bdf);
                log::error!("ahci {}: {e}", p.bdf)
            }
        }
    }
    // Lazy IOMMU mode queued the IOVAs of IDENTIFY's buffers: release them now (one
    // domain-selective invalidation) rather than leave it to the 100 ms timer, which
    // would do it in the middle of whatever runs next (the heap tests see it).
    crate::iommu::flush_lazy_queues();
}

/// The one bring-up of an HBA, for [`start`] and [`rebind`]: reset and probe it on
/// `dev` (its disks named from `first_disk_index`), then, when it has an MSI vector,
/// point the interrupt handler's slot at these registers and this HBA's shared state
/// and turn completion by interrupt on (GHC.IE). The function's MSI configuration
/// was written by the PCI probe and survives an HBA reset.
fn bring_up(
    bdf: pci::Bdf,
    regs: IoMem,
    dev: Arc<dma::DmaDevice>,
    irq: Result<IrqLine, &'static str>,
    first_disk_index: usize,
) -> Result<Controller, ahci::AhciError> {
    // SAFETY: as in `setup_msi`: the handler reads these registers only once
    // `shared` is set below, while the HBA owns `regs` (moving an IoMem keeps its
    // mapping); the slot lets go of them before the HBA drops (remove(), rebind()).
    let irq_regs = unsafe { IrqRegs::new(&regs) };
    let mut hba = Hba::probe(
        regs,
        dev,
        TscDelay,
        Config {
            command_timeout_ms: 5000,
            first_disk_index,
        },
    )?;
    if irq.is_ok() {
        if let Some(s) = IRQ_SLOTS.lock().iter_mut().find(|s| s.bdf == bdf) {
            s.regs = irq_regs;
            s.shared = Some(hba.irq_shared().clone());
        }
        hba.enable_interrupts(true);
    }
    Ok(Controller { bdf, hba, irq })
}

/// Runs `f` with the bound controllers (interrupts stay on: a command sleeps for
/// its completion interrupt, up to its timeout).
pub fn with_hbas<R>(f: impl FnOnce(&mut Vec<Controller>) -> R) -> R {
    f(&mut HBAS.lock())
}

/// Every disk: (controller, index on it, info).
pub fn disks() -> Vec<(pci::Bdf, usize, DiskInfo)> {
    with_hbas(|h| {
        h.iter()
            .flat_map(|c| {
                c.hba
                    .disks()
                    .into_iter()
                    .enumerate()
                    .map(move |(i, d)| (c.bdf, i, d))
            })
            .collect()
    })
}

/// Runs `f` with the disk called `name` (`sda`, …) as a block device.
pub fn with_disk<R>(
    name: &str,
    f: impl FnOnce(&mut dyn block::BlockDevice, &Arc<dma::DmaDevice>) -> R,
) -> Result<R, BindError> {
    with_hbas(|h| {
        for c in h.iter_mut() {
            let Some(i) = c.hba.disks().iter().position(|d| d.name == name) else {
                continue;
            };
            let dev = c.hba.dma_device().clone();
            return match c.hba.disk(i) {
                Some(mut d) => Ok(f(&mut d, &dev)),
                None => Err(BindError::NoIdentify(name.into())),
            };
        }
        Err(BindError::NoSuchDisk(name.into()))
    })
}

/// Runs `f` with the HBA that has the disk called `name` and the disk's number
/// on it (`blk stray`, which needs the HBA's unchecked read).
pub fn with_hba_of<R>(
    name: &str,
    f: impl FnOnce(&mut Hba<IoMem, TscDelay>, usize) -> R,
) -> Result<R, BindError> {
    with_hbas(|h| {
        for c in h.iter_mut() {
            if let Some(i) = c.hba.disks().iter().position(|d| d.name == name) {
                return Ok(f(&mut c.hba, i));
            }
        }
        Err(BindError::NoSuchDisk(name.into()))
    })
}

pub struct AhciDriver;

/// Puts the driver in the bus's table (`drivers::register_pci_drivers`).
pub fn register(reg: &mut pci::DriverRegistry, cfg: &dyn pci::ConfigAccess) {
    reg.register_driver(cfg, alloc::boxed::Box::new(AhciDriver));
}

static IDS: [PciDeviceId; 1] = [PciDeviceId::class(0x01_06_01, 0xff_ff_ff)];

impl PciDriver for AhciDriver {
    fn name(&self) -> &'static str {
        "ahci"
    }

    fn id_table(&self) -> &[PciDeviceId] {
        &IDS
    }

    fn probe(&self, ctx: &mut DeviceCtx<'_>) -> Result<(), ProbeError> {
        let (bar, regs, dev) =
            super::probe_bus_master(ctx, 5, "ahci", "BAR5 (ABAR)", "an uncached mapping of ABAR")?;
        let cap =
            ahci::regs::Cap::from_bits_retain(hal::RegisterAccess::read32(&regs, ahci::regs::CAP));
        let bits = if cap.contains(ahci::regs::Cap::S64A) {
            64
        } else {
            32
        };
        // The mask is set once, on the DMA device, by the driver crate's bring-up
        // (`Hba::probe`: 64 bits with CAP.S64A, else 32), as Linux's ahci_configure_dma_masks.
        log::info!(
            "ahci {}: ABAR {:#x}, {} ports, {bits}-bit DMA; disks come up after the IOMMU",
            ctx.bdf(),
            bar.address,
            cap.ports()
        );
        let irq = setup_irq(ctx, &regs);
        if let Err(why) = irq {
            log::info!(
                "ahci {}: no interrupt ({why}); completions will be polled",
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
        // The handler lets go of the registers before they are unmapped.
        IRQ_SLOTS.lock().retain(|s| s.bdf != bdf);
        // The pin too, if it was in use (the shared line's handler stays, serving
        // no HBA of this function now).
        pci::command::set_intx_disabled(ctx.config, bdf, true);
        if let Some(off) = ctx.device.find_capability(pci::caps::id::MSI) {
            if let Ok(msi) = pci::Msi::read(ctx.config, bdf, off as u16) {
                msi.disable(ctx.config);
            }
        }
        PENDING.lock().retain(|p| p.bdf != bdf);
        let taken = with_hbas(|h| h.iter().position(|c| c.bdf == bdf).map(|i| h.remove(i)));
        if let Some(c) = taken {
            let dev = c.hba.dma_device().clone();
            // Dropping the HBA stops its ports before their memory goes.
            drop(c);
            let leaked = dev.check_leaks();
            if leaked > 0 {
                log::error!("ahci {bdf}: {leaked} DMA mapping(s) still live at remove");
            }
        }
    }
}

/// The controller that has disk `name` and its DMA device (for `blkbench`).
pub fn controller_of(name: &str) -> Option<(pci::Bdf, Arc<dma::DmaDevice>)> {
    with_hbas(|h| {
        h.iter()
            .find(|c| c.hba.disks().iter().any(|d| d.name == name))
            .map(|c| (c.bdf, c.hba.dma_device().clone()))
    })
}

/// Why a disk could not be reached ([`with_disk`]) or an HBA not brought up again
/// ([`rebind`]; `E` is the error of the step the caller runs in between).
#[derive(Debug)]
pub enum BindError<E = core::convert::Infallible> {
    /// No AHCI disk has this name.
    NoSuchDisk(String),
    /// The disk's port has no IDENTIFY data.
    NoIdentify(String),
    /// No HBA is bound at this function.
    NotBound(pci::Bdf),
    /// The function has no ABAR (BAR5).
    NoAbar(pci::Bdf),
    /// ABAR could not be mapped again.
    Ioremap(pci::Bdf, crate::mm::MmError),
    /// The HBA did not come up again (its disks are gone).
    Probe(pci::Bdf, ahci::AhciError),
    /// The caller's step between teardown and bring-up failed (the HBA stays down).
    Between(E),
}

impl<E: core::fmt::Display> core::fmt::Display for BindError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BindError::NoSuchDisk(name) => write!(f, "no disk called '{name}' (see lsblk)"),
            BindError::NoIdentify(name) => write!(f, "{name}: no IDENTIFY data"),
            BindError::NotBound(bdf) => write!(f, "ahci {bdf}: not bound"),
            BindError::NoAbar(bdf) => write!(f, "ahci {bdf}: no ABAR"),
            BindError::Ioremap(bdf, e) => write!(f, "ahci {bdf}: ioremap ABAR: {e}"),
            BindError::Probe(bdf, e) => write!(f, "ahci {bdf}: {e}"),
            BindError::Between(e) => write!(f, "{e}"),
        }
    }
}

/// Quiesces the controller at `bdf` and brings it up again on `dev` (`blkbench`
/// swaps the DMA backend this way): the HBA is dropped (ports stopped, so no
/// DMA is in flight, and its command lists and FIS areas freed through the
/// old device), `between` runs (it re-points the IOMMU context entry), then
/// ABAR is mapped again and the HBA brought up by the same [`bring_up`] as at
/// boot, with `dev`, keeping its place and its disks' names. Its disks are gone
/// if the probe fails.
pub fn rebind<E>(
    bdf: pci::Bdf,
    dev: Arc<dma::DmaDevice>,
    between: impl FnOnce() -> Result<(), E>,
) -> Result<(), BindError<E>> {
    let (at, first) = with_hbas(|h| {
        let at = h.iter().position(|c| c.bdf == bdf);
        let first: usize = h[..at.unwrap_or(h.len())]
            .iter()
            .map(|c| c.hba.disks().len())
            .sum();
        (at.map(|i| (i, h.remove(i))), first)
    });
    let (at, old) = at.ok_or(BindError::NotBound(bdf))?;
    let irq = old.irq;
    // The handler leaves an HBA without `shared` alone: none while it is down.
    for s in IRQ_SLOTS.lock().iter_mut().filter(|s| s.bdf == bdf) {
        s.shared = None;
    }
    drop(old);
    between().map_err(BindError::Between)?;
    let bar = crate::pci::devices()
        .into_iter()
        .find(|d| d.bdf == bdf)
        .and_then(|d| d.bar(5).copied())
        .ok_or(BindError::NoAbar(bdf))?;
    let regs = crate::mm::ioremap(bar.address, bar.size).map_err(|e| BindError::Ioremap(bdf, e))?;
    let c = bring_up(bdf, regs, dev, irq, first).map_err(|e| BindError::Probe(bdf, e))?;
    with_hbas(|h| h.insert(at.min(h.len()), c));
    Ok(())
}
