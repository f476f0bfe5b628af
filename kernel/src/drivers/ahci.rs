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
//! Not yet: interrupts. GHC.IE stays off and commands complete by polling
//! PxCI/PxIS (with the crate's per-command timeout).

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use ahci::{Config, Delay, DiskInfo, Hba};
use pci::{DeviceCtx, PciDeviceId, PciDriver, ProbeError};

use crate::arch::tsc as time;
use crate::mm::IoMem;

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
}

/// One bound controller.
pub struct Controller {
    pub bdf: pci::Bdf,
    pub hba: Hba<IoMem, TscDelay>,
}

static HBAS: crate::sync::IrqSpinLock<Vec<Controller>> = crate::sync::IrqSpinLock::new(Vec::new());

/// Claimed by the PCI probe, not started yet.
struct Pending {
    bdf: pci::Bdf,
    regs: IoMem,
    dev: Arc<dma::DmaDevice>,
}

static PENDING: spin::Mutex<Vec<Pending>> = spin::Mutex::new(Vec::new());

/// Resets every claimed HBA and brings up its disks (after `iommu::enable`).
pub fn start() {
    let pending = core::mem::take(&mut *PENDING.lock());
    for p in pending {
        let first = disks().len();
        match Hba::probe(
            p.regs,
            p.dev,
            TscDelay,
            Config {
                command_timeout_ms: 5000,
                first_disk_index: first,
            },
        ) {
            Ok(hba) => {
                for d in hba.disks() {
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
                with_hbas(|h| h.push(Controller { bdf: p.bdf, hba }));
            }
            Err(e) => log::error!("ahci {}: {e}", p.bdf),
        }
    }
    // Lazy IOMMU mode queued the IOVAs of IDENTIFY's buffers: release them now (one
    // domain-selective invalidation) rather than leave it to the 100 ms timer, which
    // would do it in the middle of whatever runs next (the heap tests see it).
    crate::iommu::flush_lazy_queues();
}

/// Runs `f` with the bound controllers (interrupts off: the lock is short-lived
/// but a command polls for up to its timeout).
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
) -> Result<R, String> {
    with_hbas(|h| {
        for c in h.iter_mut() {
            let Some(i) = c.hba.disks().iter().position(|d| d.name == name) else {
                continue;
            };
            let dev = c.hba.dma_device().clone();
            return match c.hba.disk(i) {
                Some(mut d) => Ok(f(&mut d, &dev)),
                None => Err(alloc::format!("{name}: no IDENTIFY data")),
            };
        }
        Err(alloc::format!("no disk called '{name}' (see lsblk)"))
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
        ctx.device
            .dma
            .set_mask_and_coherent(bits)
            .map_err(ProbeError::DmaMask)?;
        log::info!(
            "ahci {}: ABAR {:#x}, {} ports, {bits}-bit DMA; disks come up after the IOMMU",
            ctx.bdf(),
            bar.address,
            cap.ports()
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

/// Quiesces the controller at `bdf` and brings it up again on `dev` (`blkbench`
/// swaps the DMA backend this way): the HBA is dropped (ports stopped, so no
/// DMA is in flight, and its command lists and FIS areas freed through the
/// old device), `between` runs (it re-points the IOMMU context entry), then
/// ABAR is mapped again and the HBA reset and probed with `dev`, keeping its
/// place and its disks' names. Its disks are gone if the probe fails.
pub fn rebind(
    bdf: pci::Bdf,
    dev: Arc<dma::DmaDevice>,
    between: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let (at, first) = with_hbas(|h| {
        let at = h.iter().position(|c| c.bdf == bdf);
        let first: usize = h[..at.unwrap_or(h.len())]
            .iter()
            .map(|c| c.hba.disks().len())
            .sum();
        (at.map(|i| (i, h.remove(i))), first)
    });
    let (at, old) = at.ok_or_else(|| alloc::format!("ahci {bdf}: not bound"))?;
    drop(old);
    between()?;
    let bar = crate::pci::devices()
        .into_iter()
        .find(|d| d.bdf == bdf)
        .and_then(|d| d.bar(5).copied())
        .ok_or_else(|| alloc::format!("ahci {bdf}: no ABAR"))?;
    let regs = crate::mm::ioremap(bar.address, bar.size)
        .map_err(|e| alloc::format!("ahci {bdf}: ioremap ABAR: {e}"))?;
    let hba = Hba::probe(
        regs,
        dev,
        TscDelay,
        Config {
            command_timeout_ms: 5000,
            first_disk_index: first,
        },
    )
    .map_err(|e| alloc::format!("ahci {bdf}: {e}"))?;
    with_hbas(|h| h.insert(at.min(h.len()), Controller { bdf, hba }));
    Ok(())
}
