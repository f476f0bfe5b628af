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
//! Not yet: interrupts (MSI-X). The crate masks every vector (INTMS) and completions
//! are found by **polling** the CQ phase tag, with the crate's per-command timeout.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use nvme::{Config, Controller, CtrlInfo, Delay, Namespace};
use pci::{DeviceCtx, PciDeviceId, PciDriver, ProbeError};

use crate::mm::IoMem;

/// The TSC busy-wait the AHCI binding uses.
pub struct TscDelay;

impl Delay for TscDelay {
    fn delay_us(&self, us: u32) {
        ahci::Delay::delay_us(&super::ahci::TscDelay, us)
    }
}

/// One bound controller.
pub struct Bound {
    pub bdf: pci::Bdf,
    pub ctrl: Controller<IoMem, TscDelay>,
}

static CTRLS: crate::sync::IrqSpinLock<Vec<Bound>> = crate::sync::IrqSpinLock::new(Vec::new());

/// Claimed by the PCI probe, not started yet.
struct Pending {
    bdf: pci::Bdf,
    regs: IoMem,
    dev: Arc<dma::DmaDevice>,
}

static PENDING: spin::Mutex<Vec<Pending>> = spin::Mutex::new(Vec::new());

/// Brings up every claimed controller (after `iommu::enable`).
pub fn start() {
    let pending = core::mem::take(&mut *PENDING.lock());
    for p in pending {
        let instance = with_ctrls(|c| c.len());
        match Controller::probe(
            p.regs,
            p.dev,
            TscDelay,
            Config {
                command_timeout_ms: 5000,
                instance,
                ..Config::default()
            },
        ) {
            Ok(ctrl) => {
                let info = ctrl.info();
                match ctrl.namespace() {
                    Some(ns) => log::info!(
                        "nvme {}: {} \"{}\" serial {}, {} sectors of {} bytes ({} MiB), MDTS {} KiB; polled",
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
                with_ctrls(|c| c.push(Bound { bdf: p.bdf, ctrl }));
            }
            Err(e) => log::error!("nvme {}: {e}", p.bdf),
        }
    }
    // As for AHCI: release the lazily-freed IOVAs of Identify's buffers now.
    crate::iommu::flush_lazy_queues();
}

/// Runs `f` with the bound controllers (interrupts off: a command polls for up to its
/// timeout).
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
) -> Result<R, String> {
    with_ctrls(|c| {
        for b in c.iter_mut() {
            if b.ctrl.name() != name {
                continue;
            }
            let dev = b.ctrl.dma_device().clone();
            return match b.ctrl.disk() {
                Some(mut d) => Ok(f(&mut d, &dev)),
                None => Err(alloc::format!("{name}: namespace not usable")),
            };
        }
        Err(alloc::format!("no disk called '{name}' (see lsblk)"))
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
        ctx.device
            .dma
            .set_mask_and_coherent(64)
            .map_err(ProbeError::DmaMask)?;
        log::info!(
            "nvme {}: BAR0 {:#x} ({} KiB), 64-bit DMA; the namespace comes up after the IOMMU",
            ctx.bdf(),
            bar.address,
            bar.size / 1024
        );
        PENDING.lock().push(Pending {
            bdf: ctx.bdf(),
            regs,
            dev,
        });
        Ok(())
    }

    fn remove(&self, ctx: &mut DeviceCtx<'_>) {
        let bdf = ctx.bdf();
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

/// As `ahci::rebind`: disables the controller at `bdf` (dropping it frees its
/// queues through the old DMA device), runs `between` (the IOMMU re-pointing),
/// maps BAR0 again and brings the controller up on `dev` under the same name.
pub fn rebind(
    bdf: pci::Bdf,
    dev: Arc<dma::DmaDevice>,
    between: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let taken = with_ctrls(|c| {
        c.iter()
            .position(|b| b.bdf == bdf)
            .map(|i| (i, c.remove(i)))
    });
    let (instance, old) = taken.ok_or_else(|| alloc::format!("nvme {bdf}: not bound"))?;
    drop(old);
    between()?;
    let bar = crate::pci::devices()
        .into_iter()
        .find(|d| d.bdf == bdf)
        .and_then(|d| d.bar(0).copied())
        .ok_or_else(|| alloc::format!("nvme {bdf}: no BAR0"))?;
    let regs = crate::mm::ioremap(bar.address, bar.size)
        .map_err(|e| alloc::format!("nvme {bdf}: ioremap BAR0: {e}"))?;
    let ctrl = Controller::probe(
        regs,
        dev,
        TscDelay,
        Config {
            command_timeout_ms: 5000,
            instance,
            ..Config::default()
        },
    )
    .map_err(|e| alloc::format!("nvme {bdf}: {e}"))?;
    with_ctrls(|c| c.insert(instance.min(c.len()), Bound { bdf, ctrl }));
    Ok(())
}
