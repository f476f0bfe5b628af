//! `ahci`: driver for AHCI 1.x SATA host controllers (the ICH9 AHCI at 00:1f.2 on
//! q35, class 01:06:01 on laptops).
//!
//! Generic over the register window ([`RegisterAccess`], ABAR = BAR5) and a [`Delay`];
//! every address a device sees comes from the DMA API of crate `dma` (the driver never
//! makes a `DmaAddr` itself).
//!
//! * Probe: GHC.AE, HBA reset (GHC.HR, self-clearing, 1 s), GHC.AE again; the device's
//!   masks are 64 bits only when CAP.S64A, else 32 bits, so swiotlb or the IOMMU must
//!   place every buffer below 4 GiB. PRD entries are ≤ 4 MiB and never cross a 4 GiB
//!   boundary (`max_segment_size`, `segment_boundary_mask`).
//! * Per port with a device (PxSSTS.DET = 3, ATA signature): the command list (1 KiB,
//!   32 headers) and the received-FIS area (256 B) share one page of **coherent** memory
//!   that stays allocated and mapped for as long as the port exists: the HBA may read
//!   the list and write FISes whenever PxCMD.ST/FRE are set (QEMU maps both once when the
//!   port starts and keeps the host pointer). Command tables (CFIS + PRDT, 4 KiB, 128 B
//!   aligned) come from a [`DmaPool`], one per command.
//! * Data: a physical scatter list is mapped with `map_sg`, and each DMA segment becomes
//!   one PRD entry: byte-granular, even byte count (DBC = count − 1, bit 0 set), word
//!   aligned, ≤ 4 MiB, at most [`MAX_PRDT`] entries. A segment breaking one of those
//!   rules is an error before anything is issued.
//! * Commands: IDENTIFY DEVICE, READ/WRITE DMA EXT (48-bit LBA, ≤ 65535 sectors),
//!   FLUSH CACHE EXT, one at a time in slot 0 ([`Hba::read`], [`Hba::write`], the
//!   block layer's `submit`). Completion: PxCI bit clear and no error in PxIS; PRDBC
//!   must equal the bytes asked for.
//! * NCQ (`ncq.rs`) when CAP.SNCQ and IDENTIFY word 76 bit 8: READ/WRITE FPDMA
//!   QUEUED, up to min(CAP.NCS + 1, word 75 + 1, 32) in flight ([`Hba::start`],
//!   [`Hba::complete`], the block layer's `start`/`complete`), a command slot and
//!   table per tag, PxSACT then PxCI, each ending when the device's SDB FIS clears
//!   its PxSACT bit. An NCQ error or timeout recovers the port (COMRESET) before any
//!   outstanding request is unmapped; after an error the outstanding requests run
//!   again one at a time without NCQ, after a timeout they all time out.
//! * Errors: PxIS.TFES/HBFS/HBDS/IFS/OFS or PxTFD.ERR after completion end that
//!   request with [`AhciError::TaskFile`] / [`AhciError::HostBus`] (status, error
//!   register and the failing LBA from the D2H FIS), then the port is recovered: stop
//!   (ST, wait CR; FRE, wait FR), COMRESET (PxSCTL.DET = 1, 1 ms, DET = 0, wait
//!   PxSSTS.DET = 3), clear PxSERR/PxIS, start again. A command still in PxCI after its
//!   timeout ends with [`AhciError::Timeout`] and the same recovery; nothing waits
//!   forever.
//! * Completion by **interrupt** once the kernel, which owns the MSI / IO-APIC line,
//!   has installed a handler that calls [`handle_interrupt`] and then called
//!   [`Hba::enable_interrupts`] (GHC.IE). The handler reads IS, then each pending
//!   port's PxIS, acknowledges both (PxIS first, then IS: AHCI 1.3.1 §10.7.2.1; and
//!   PxSERR when PCS/PRCS, which PxIS writes do not clear) and latches PxIS in
//!   [`IrqShared`]; the waiter sleeps in [`Delay::wait_interrupt`] and finishes the
//!   command from the latched bits and PxCI. The per-command timeout stays: a command
//!   whose interrupt never comes ends at its timeout (a last look at PxCI first, so a
//!   lost interrupt costs time, not data). Before `enable_interrupts` (IDENTIFY at
//!   probe), where the platform cannot sleep for interrupts, and with the kernel's
//!   `ahci.poll=1`, completion is found by **polling** PxCI/PxIS every 10 µs.
//!   [`IrqShared::stats`] counts both ways.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod cmd;
mod eh;
mod error;
mod identify;
mod irq;
mod ncq;
mod port;
mod prdt;
pub mod regs;

pub use error::AhciError;
pub use identify::{parse_identify, Identify};
pub use irq::{handle_interrupt, IrqShared, IrqStats};
pub use ncq::Ended;
use prdt::trace_prdt;
pub use prdt::{check_prdt, CMD_TABLE_SIZE, MAX_PRDT};

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use block::{BlockDevice, BlockError, Op, QueueLimits, Request, Tag};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use dma::{
    dma_bit_mask, Coherent, DmaBuf, DmaDevice, DmaDirection, DmaError, DmaPool, DmaPoolBlock,
    DmaSegment, DmaStream, FromDevice, PoolError, SgTable,
};
use hal::RegisterAccess;
use regs::{Cap, Ghc, PxCmd, PxIs};

/// Most sectors one READ/WRITE DMA EXT moves (Linux's `ATA_MAX_SECTORS_LBA48`).
pub const MAX_SECTORS: u64 = 65535;
/// The slot every command uses (one command per port at a time).
const SLOT: usize = 0;
/// Poll interval while waiting, µs.
const POLL_US: u32 = 10;

/// Waiting, from the platform (the kernel's timer, a counter in host tests).
pub trait Delay {
    /// Waits at least `us` microseconds.
    fn delay_us(&self, us: u32);

    /// Sleeps until an interrupt has been handled or about `max_us` µs have passed,
    /// and returns the µs that passed; `woken` is checked with interrupts off just
    /// before sleeping, so a wake-up that came in between is not slept through.
    /// `None`: the platform cannot sleep for interrupts here (they are off, or there
    /// are none, as this default says), and the caller polls instead.
    fn wait_interrupt(&self, max_us: u32, woken: &dyn Fn() -> bool) -> Option<u32> {
        let _ = (max_us, woken);
        None
    }
}

/// Driver settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long one command may take before it is abandoned, ms (Linux: 30 s for
    /// reads/writes; shorter is kinder under TCG).
    pub command_timeout_ms: u32,
    /// Index of this HBA's first disk in the system's `sd` names (0 → `sda`).
    pub first_disk_index: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            command_timeout_ms: 5000,
            first_disk_index: 0,
        }
    }
}

/// One disk as `lsblk` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// HBA port.
    pub port: usize,
    /// `sda`, …
    pub name: String,
    /// IDENTIFY data.
    pub id: Identify,
    /// Out of service after a failed recovery.
    pub failed: bool,
}

struct Port {
    index: usize,
    name: String,
    /// Command list at 0, received FIS at [`FIS_OFF`]; mapped while the port exists.
    area: Coherent,
    tables: DmaPool,
    id: Option<Identify>,
    /// Out of service after a failed recovery.
    failed: AtomicBool,
    /// NCQ tags in flight and ended ones not yet collected.
    queue: ncq::Queue,
}

/// Received-FIS area offset inside the port's page.
const FIS_OFF: usize = regs::CMD_LIST_SIZE;

/// One AHCI host controller.
pub struct Hba<R: RegisterAccess, D: Delay> {
    regs: R,
    dev: Arc<DmaDevice>,
    delay: D,
    cfg: Config,
    cap: Cap,
    pi: u32,
    vs: u32,
    ports: Vec<Port>,
    irq: Arc<IrqShared>,
    /// GHC.IE is on and a handler feeds `irq`.
    irq_mode: bool,
}

impl<R: RegisterAccess, D: Delay> fmt::Debug for Hba<R, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hba")
            .field("cap", &self.cap)
            .field("pi", &self.pi)
            .field("vs", &self.vs)
            .field("ports", &self.ports.len())
            .finish()
    }
}

/// A direction-typed data buffer for one command, as PRD entries want it.
enum Data<'a> {
    None,
    Segments(&'a [DmaSegment]),
}

impl<R: RegisterAccess, D: Delay> Hba<R, D> {
    /// Resets and enables the HBA, sets the device's DMA masks and limits from CAP,
    /// and brings up every implemented port with an ATA disk (IDENTIFY included).
    /// A port that fails to come up is logged and skipped.
    pub fn probe(
        regs: R,
        dev: Arc<DmaDevice>,
        delay: D,
        cfg: Config,
    ) -> Result<Hba<R, D>, AhciError> {
        let mut h = Hba {
            cap: Cap::from_bits_retain(regs.read32(regs::CAP)),
            pi: 0,
            vs: 0,
            regs,
            dev,
            delay,
            cfg,
            ports: Vec::new(),
            irq: Arc::new(IrqShared::new()),
            irq_mode: false,
        };
        h.reset()?;
        // CAP is re-read: some bits are write-once by firmware and reset restores them.
        h.cap = Cap::from_bits_retain(h.regs.read32(regs::CAP));
        h.pi = h.regs.read32(regs::PI);
        h.vs = h.regs.read32(regs::VS);
        let bits = if h.cap.contains(Cap::S64A) { 64 } else { 32 };
        h.dev.set_mask_and_coherent(dma_bit_mask(bits))?;
        h.dev.set_max_segment_size(regs::PRD_MAX_BYTES);
        h.dev.set_segment_boundary(0xffff_ffff);
        log::info!(
            "ahci {}: AHCI {}.{} {} slots {} ports, PI {:#x}, {}-bit DMA",
            h.dev.name(),
            h.vs >> 16,
            (h.vs >> 8) & 0xff,
            h.cap.slots(),
            h.cap.ports(),
            h.pi,
            bits
        );
        let mut disks = 0;
        for p in 0..regs::MAX_PORTS {
            if h.pi & (1 << p) == 0 {
                continue;
            }
            match h.port_init(p, cfg.first_disk_index + disks) {
                Ok(Some(port)) => {
                    disks += 1;
                    h.ports.push(port);
                }
                Ok(None) => {}
                Err(e) => log::warn!("ahci {}: port {p}: {e}", h.dev.name()),
            }
        }
        Ok(h)
    }

    fn reset(&self) -> Result<(), AhciError> {
        // AE first: on HBAs that are not AHCI-only, HR is only defined with AE set.
        self.regs.write32(regs::GHC, Ghc::AE.bits());
        self.regs.write32(regs::GHC, (Ghc::AE | Ghc::HR).bits());
        if !self.wait(1_000_000, || {
            self.regs.read32(regs::GHC) & Ghc::HR.bits() == 0
        }) {
            return Err(AhciError::ResetTimeout);
        }
        self.regs.write32(regs::GHC, Ghc::AE.bits());
        Ok(())
    }

    /// Polls `done` every 10 µs for up to `us` µs.
    fn wait(&self, us: u32, mut done: impl FnMut() -> bool) -> bool {
        let mut waited = 0u32;
        loop {
            if done() {
                return true;
            }
            if waited >= us {
                return false;
            }
            self.delay.delay_us(POLL_US);
            waited = waited.saturating_add(POLL_US);
        }
    }

    fn preg(&self, p: usize, r: usize) -> u32 {
        self.regs.read32(regs::port(p, r))
    }

    fn wpreg(&self, p: usize, r: usize, v: u32) {
        self.regs.write32(regs::port(p, r), v)
    }

    /// The disks found, in `sd` order.
    pub fn disks(&self) -> Vec<DiskInfo> {
        self.ports
            .iter()
            .filter_map(|p| {
                p.id.as_ref().map(|id| DiskInfo {
                    port: p.index,
                    name: p.name.clone(),
                    id: id.clone(),
                    failed: p.failed.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// CAP as read after reset.
    pub fn cap(&self) -> Cap {
        self.cap
    }

    /// VS.
    pub fn version(&self) -> u32 {
        self.vs
    }

    /// The DMA device.
    pub fn dma_device(&self) -> &Arc<DmaDevice> {
        &self.dev
    }

    /// The register window.
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// Turns completion by interrupt on (GHC.IE) or off. The kernel calls this once a
    /// handler that calls [`handle_interrupt`] with [`Hba::irq_shared`] is on the line.
    pub fn enable_interrupts(&mut self, on: bool) {
        let ghc = self.regs.read32(regs::GHC);
        let ghc = if on {
            ghc | Ghc::IE.bits()
        } else {
            ghc & !Ghc::IE.bits()
        };
        self.regs.write32(regs::GHC, ghc & !Ghc::HR.bits());
        self.irq_mode = on;
    }

    /// Completion by interrupt is on.
    pub fn interrupts_enabled(&self) -> bool {
        self.irq_mode
    }

    /// What the interrupt handler shares with this HBA (and its counters).
    pub fn irq_shared(&self) -> &Arc<IrqShared> {
        &self.irq
    }

    /// Queue limits of disk number `disk` for the block layer.
    pub fn limits(&self, disk: usize) -> Option<QueueLimits> {
        let id = self.ports.get(disk)?.id.as_ref()?;
        Some(QueueLimits::from_dma(
            &self.dev.params(),
            id.sector_size,
            MAX_PRDT,
            MAX_SECTORS,
        ))
    }

    /// Disk number `disk` as a [`BlockDevice`].
    pub fn disk(&mut self, disk: usize) -> Option<AhciDisk<'_, R, D>> {
        self.ports.get(disk)?.id.as_ref()?;
        Some(AhciDisk { hba: self, disk })
    }
}

impl<R: RegisterAccess, D: Delay> Drop for Hba<R, D> {
    fn drop(&mut self) {
        if self.irq_mode {
            self.enable_interrupts(false);
        }
        for mut port in core::mem::take(&mut self.ports) {
            self.ncq_teardown(&mut port);
            self.retire(port);
        }
    }
}

/// One AHCI disk as a block device.
pub struct AhciDisk<'a, R: RegisterAccess, D: Delay> {
    hba: &'a mut Hba<R, D>,
    disk: usize,
}

impl<R: RegisterAccess, D: Delay> AhciDisk<'_, R, D> {
    fn id(&self) -> &Identify {
        match &self.hba.ports[self.disk].id {
            Some(id) => id,
            // `Hba::disk` only hands out disks with IDENTIFY data.
            None => unreachable!("AhciDisk without IDENTIFY data"),
        }
    }

    /// `start`'s error: a mapping that ran short of shared DMA resources is
    /// [`BlockError::Busy`] (retry after a completion), the rest as `queue_error`.
    fn start_error(&self, lba: u64, e: AhciError) -> BlockError {
        match e {
            AhciError::Dma(d) if d.is_resource_shortage() => BlockError::Busy {
                disk: self.hba.ports[self.disk].name.clone(),
                lba,
                detail: alloc::format!("{d}"),
            },
            e => self.queue_error(lba, e),
        }
    }

    /// The block layer's own words for "not queued", "queue full", "nothing in
    /// flight"; anything else is a device error.
    fn queue_error(&self, lba: u64, e: AhciError) -> BlockError {
        match e {
            AhciError::NotQueued(_) => BlockError::NotQueued {
                disk: self.hba.ports[self.disk].name.clone(),
            },
            AhciError::QueueFull { depth, .. } => BlockError::QueueFull { depth },
            AhciError::NothingInFlight(_) => BlockError::NothingInFlight,
            e => self.block_error(lba, e),
        }
    }

    fn block_error(&self, lba: u64, e: AhciError) -> BlockError {
        BlockError::Device {
            disk: self.hba.ports[self.disk].name.clone(),
            lba,
            detail: alloc::format!("{e}"),
        }
    }
}

impl<R: RegisterAccess, D: Delay> BlockDevice for AhciDisk<'_, R, D> {
    fn name(&self) -> &str {
        &self.hba.ports[self.disk].name
    }

    fn sector_size(&self) -> usize {
        self.id().sector_size
    }

    fn capacity(&self) -> u64 {
        self.id().sectors
    }

    fn limits(&self) -> QueueLimits {
        match self.hba.limits(self.disk) {
            Some(l) => l,
            None => unreachable!("AhciDisk without IDENTIFY data"),
        }
    }

    fn submit(&mut self, op: Op, req: Request) -> Result<SgTable, BlockError> {
        let r = match op {
            Op::Read => self.hba.read(self.disk, req.lba, &req.sg),
            Op::Write => self.hba.write(self.disk, req.lba, &req.sg),
        };
        r.map_err(|e| self.block_error(req.lba, e))?;
        Ok(req.sg)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.hba
            .flush(self.disk)
            .map_err(|e| self.block_error(0, e))
    }

    fn queue_depth(&self) -> usize {
        self.hba.queue_depth(self.disk)
    }

    fn start(&mut self, op: Op, req: Request) -> Result<Tag, BlockError> {
        let lba = req.lba;
        self.hba
            .start(self.disk, op, lba, req.sg)
            .map_err(|e| self.start_error(lba, e))
    }

    fn complete(&mut self) -> Result<(Tag, Result<SgTable, BlockError>), BlockError> {
        match self.hba.complete(self.disk) {
            Ok(e) => Ok((e.tag, e.result.map_err(|err| self.block_error(e.lba, err)))),
            Err(e) => Err(self.queue_error(0, e)),
        }
    }
}

#[cfg(test)]
mod tests;
