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
//!   FLUSH CACHE EXT. One command per port at a time, slot 0. Completion: PxCI bit
//!   clear and no error in PxIS; PRDBC must equal the bytes asked for.
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

pub mod regs;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use block::{BlockDevice, BlockError, Op, QueueLimits, Request};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use dma::{
    dma_bit_mask, Coherent, DmaBuf, DmaDevice, DmaDirection, DmaError, DmaPool, DmaPoolBlock,
    DmaSegment, DmaStream, FromDevice, PoolError, SgTable,
};
use hal::RegisterAccess;
use regs::{Cap, Ghc, PxCmd, PxIs};

/// PRD entries per command table: a table is then exactly 4 KiB (0x80 + 248 × 16).
pub const MAX_PRDT: usize = 248;
/// Bytes in a command table.
pub const CMD_TABLE_SIZE: usize = regs::CT_PRDT + MAX_PRDT * regs::PRD_SIZE;
/// Checks that every mapped segment can be one PRD entry, before anything is issued:
/// `Err((index, rule))` names the first segment that cannot (index [`MAX_PRDT`] when
/// there are too many) and the rule it breaks, worded to follow "segment N ...".
pub fn check_prdt(segs: &[DmaSegment], s64a: bool) -> Result<(), (usize, &'static str)> {
    // The rules of a PRD entry (AHCI 1.3.1 §4.2.3.3): at most `MAX_PRDT` entries in
    // a command table; a byte count that is even and not zero (DBC = count - 1 has
    // bit 0 set); a word-aligned address; at most `regs::PRD_MAX_BYTES` (4 MiB); and
    // without 64-bit addressing (`s64a` false) no byte above 4 GiB.
    // exercise(ahci-prdt): begin
    if segs.len() > MAX_PRDT {
        return Err((MAX_PRDT, "is beyond the PRDT's 248 entries"));
    }
    for (index, s) in segs.iter().enumerate() {
        let addr = s.addr.as_u64();
        if s.len == 0 || s.len % 2 != 0 {
            return Err((index, "has an odd or zero byte count (PRD DBC needs even)"));
        }
        if addr % 2 != 0 {
            return Err((index, "is not word aligned (PRD DBA bit 0 is reserved)"));
        }
        if s.len > regs::PRD_MAX_BYTES {
            return Err((index, "is larger than a PRD entry's 4 MiB"));
        }
        if !s64a && addr.saturating_add(s.len as u64 - 1) > u32::MAX as u64 {
            return Err((index, "is above 4 GiB and the HBA has no 64-bit addressing"));
        }
    }
    Ok(())
    // exercise(ahci-prdt): stub
    // let _ = (segs, s64a);
    // todo!("exercise ahci-prdt: check each segment against the PRD rules")
    // exercise(ahci-prdt): end
}

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

/// Interrupt state shared by the driver and the kernel's interrupt handler: the PxIS
/// bits the handler acknowledged, per port, until the waiter takes them, and counters.
#[derive(Debug, Default)]
pub struct IrqShared {
    port_is: [AtomicU32; regs::MAX_PORTS],
    interrupts: AtomicU64,
    not_ours: AtomicU64,
    by_irq: AtomicU64,
    by_poll: AtomicU64,
}

/// What [`IrqShared::stats`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqStats {
    /// Handler calls that found a port interrupt pending (IS ≠ 0).
    pub interrupts: u64,
    /// Handler calls with nothing pending (a shared line, or a spurious message).
    pub not_ours: u64,
    /// Commands whose completion the waiter learnt from an interrupt.
    pub completed_by_irq: u64,
    /// Commands whose completion was found by polling (probe, `ahci.poll=1`,
    /// interrupts off, or a lost interrupt at the timeout).
    pub completed_by_poll: u64,
}

impl IrqShared {
    /// Nothing pending, counters at 0.
    pub fn new() -> IrqShared {
        IrqShared::default()
    }

    /// The counters.
    pub fn stats(&self) -> IrqStats {
        IrqStats {
            interrupts: self.interrupts.load(Ordering::Relaxed),
            not_ours: self.not_ours.load(Ordering::Relaxed),
            completed_by_irq: self.by_irq.load(Ordering::Relaxed),
            completed_by_poll: self.by_poll.load(Ordering::Relaxed),
        }
    }

    fn latched(&self, p: usize) -> u32 {
        self.port_is[p].load(Ordering::Acquire)
    }

    fn take(&self, p: usize) -> u32 {
        self.port_is[p].swap(0, Ordering::AcqRel)
    }
}

/// The interrupt handler's work (MSI or INTx): reads IS, and for each port it names
/// reads PxIS, acknowledges it (and PxSERR when PCS/PRCS are set, which only PxSERR
/// clears) and latches the bits in `shared` for the waiter; then acknowledges IS
/// (AHCI 1.3.1 §10.7.2.1: PxIS before IS, or the level stays up). Neither allocates
/// nor logs. Returns false when no port was pending (not this HBA's interrupt).
pub fn handle_interrupt<R: RegisterAccess + ?Sized>(regs: &R, shared: &IrqShared) -> bool {
    let is = regs.read32(regs::IS);
    if is == 0 || is == u32::MAX {
        shared.not_ours.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    for p in 0..regs::MAX_PORTS {
        if is & (1 << p) == 0 {
            continue;
        }
        let pxis = regs.read32(regs::port(p, regs::PX_IS));
        if pxis & (PxIs::PCS | PxIs::PRCS).bits() != 0 {
            regs.write32(regs::port(p, regs::PX_SERR), u32::MAX);
        }
        regs.write32(regs::port(p, regs::PX_IS), pxis);
        shared.port_is[p].fetch_or(pxis, Ordering::AcqRel);
    }
    regs.write32(regs::IS, is);
    shared.interrupts.fetch_add(1, Ordering::Relaxed);
    true
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

/// Why an AHCI operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AhciError {
    /// GHC.HR did not clear within 1 s.
    ResetTimeout,
    /// No such port, or no disk on it.
    NoDisk(usize),
    /// The port failed recovery earlier and is out of service.
    PortFailed(usize),
    /// The port's engines did not stop or start (PxCMD.CR/FR, PxTFD.BSY) in time.
    PortStuck {
        /// Port.
        port: usize,
        /// What did not happen.
        what: &'static str,
    },
    /// The DMA API refused (a mask, a mapping, memory).
    Dma(DmaError),
    /// The command-table pool refused.
    Pool(PoolError),
    /// The request does not fit the disk or a command.
    BadRequest {
        /// Port.
        port: usize,
        /// Why.
        reason: &'static str,
    },
    /// A mapped segment cannot be a PRD entry (odd length, odd address, > 4 MiB, above
    /// 4 GiB without S64A) or there are more than [`MAX_PRDT`] of them.
    BadSegment {
        /// Port.
        port: usize,
        /// Index of the segment.
        index: usize,
        /// Its bus address.
        addr: u64,
        /// Its length.
        len: usize,
        /// Which rule.
        reason: &'static str,
    },
    /// The device reported an error for this command (PxIS.TFES / PxTFD.STS.ERR).
    TaskFile {
        /// Port.
        port: usize,
        /// ATA command.
        command: u8,
        /// PxTFD status.
        status: u8,
        /// PxTFD error register (UNC 0x40 media error, IDNF 0x10, ABRT 0x04).
        error: u8,
        /// LBA the device reported in its D2H FIS (the first failing sector).
        lba: u64,
    },
    /// The HBA stopped the command for a bus or interface error (PxIS.HBFS, HBDS,
    /// IFS, OFS).
    HostBus {
        /// Port.
        port: usize,
        /// ATA command.
        command: u8,
        /// PxIS at the time.
        is: u32,
    },
    /// The command was still in PxCI after the timeout.
    Timeout {
        /// Port.
        port: usize,
        /// ATA command.
        command: u8,
        /// Timeout in ms.
        ms: u32,
    },
    /// The HBA reported a different byte count than the command moves.
    ShortTransfer {
        /// Port.
        port: usize,
        /// Bytes expected.
        expected: usize,
        /// PRDBC.
        got: u32,
    },
}

impl From<DmaError> for AhciError {
    fn from(e: DmaError) -> Self {
        AhciError::Dma(e)
    }
}

impl From<PoolError> for AhciError {
    fn from(e: PoolError) -> Self {
        AhciError::Pool(e)
    }
}

impl fmt::Display for AhciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AhciError::ResetTimeout => f.write_str("ahci: HBA reset did not complete in 1 s"),
            AhciError::NoDisk(p) => write!(f, "ahci: no disk on port {p}"),
            AhciError::PortFailed(p) => write!(f, "ahci: port {p} failed recovery"),
            AhciError::PortStuck { port, what } => write!(f, "ahci port {port}: {what}"),
            AhciError::Dma(e) => write!(f, "ahci: {e}"),
            AhciError::Pool(e) => write!(f, "ahci: {e}"),
            AhciError::BadRequest { port, reason } => write!(f, "ahci port {port}: {reason}"),
            AhciError::BadSegment {
                port,
                index,
                addr,
                len,
                reason,
            } => write!(
                f,
                "ahci port {port}: segment {index} ({addr:#x}+{len:#x}) {reason}"
            ),
            AhciError::TaskFile {
                port,
                command,
                status,
                error,
                lba,
            } => {
                let what = if error & regs::ATA_ERR_UNC != 0 {
                    "media error"
                } else if error & regs::ATA_ERR_IDNF != 0 {
                    "sector not found"
                } else if error & regs::ATA_ERR_ABRT != 0 {
                    "command aborted"
                } else {
                    "device error"
                };
                write!(
                    f,
                    "ahci port {port}: {what} (command {command:#04x}, status {status:#04x}, error {error:#04x}, lba {lba})"
                )
            }
            AhciError::HostBus { port, command, is } => write!(
                f,
                "ahci port {port}: host bus/interface error (command {command:#04x}, PxIS {is:#010x})"
            ),
            AhciError::Timeout { port, command, ms } => write!(
                f,
                "ahci port {port}: command {command:#04x} did not complete in {ms} ms"
            ),
            AhciError::ShortTransfer {
                port,
                expected,
                got,
            } => write!(
                f,
                "ahci port {port}: moved {got} bytes, expected {expected}"
            ),
        }
    }
}

/// What IDENTIFY DEVICE said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identify {
    /// Addressable sectors (words 100-103 with LBA48, else 60-61).
    pub sectors: u64,
    /// Model (words 27-46).
    pub model: String,
    /// Serial number (words 10-19).
    pub serial: String,
    /// Firmware revision (words 23-26).
    pub firmware: String,
    /// 48-bit LBA supported (word 83 bit 10).
    pub lba48: bool,
    /// Logical sector size (word 106 bit 12 → words 117-118, else 512).
    pub sector_size: usize,
}

fn ata_string(id: &[u8], first_word: usize, words: usize) -> String {
    // Each word holds two characters, the first in its high byte.
    let mut s = String::new();
    for w in first_word..first_word + words {
        for b in [id[2 * w + 1], id[2 * w]] {
            s.push(if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            });
        }
    }
    String::from(s.trim())
}

/// Parses the 512 bytes of IDENTIFY DEVICE data.
pub fn parse_identify(id: &[u8; 512]) -> Identify {
    let word = |w: usize| u16::from_le_bytes([id[2 * w], id[2 * w + 1]]) as u64;
    let lba48 = word(83) & (1 << 10) != 0;
    let sectors = if lba48 {
        word(100) | word(101) << 16 | word(102) << 32 | word(103) << 48
    } else {
        word(60) | word(61) << 16
    };
    let w106 = word(106);
    let sector_size = if w106 & 0xc000 == 0x4000 && w106 & (1 << 12) != 0 {
        ((word(117) | word(118) << 16) * 2) as usize
    } else {
        512
    };
    Identify {
        sectors,
        model: ata_string(id, 27, 20),
        serial: ata_string(id, 10, 10),
        firmware: ata_string(id, 23, 4),
        lba48,
        sector_size,
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

    /// Waits for the command in slot 0 of port `p` to end (PxCI clear, or a fatal
    /// PxIS bit) for up to `us` µs; `is` gets the PxIS bits seen. By interrupt when
    /// interrupts are on and the platform can sleep for them, else by polling.
    fn wait_command(&self, p: usize, us: u32, is: &mut u32) -> bool {
        let finished =
            |is: u32| is & PxIs::FATAL.bits() != 0 || self.preg(p, regs::PX_CI) & (1 << SLOT) == 0;
        let mut waited = 0u32;
        let mut polled = !self.irq_mode;
        loop {
            if self.irq_mode {
                *is |= self.irq.take(p);
                if *is != 0 && finished(*is) {
                    let c = if polled {
                        &self.irq.by_poll
                    } else {
                        &self.irq.by_irq
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            }
            if polled {
                // No interrupt to wait for: read PxIS ourselves (the handler, if
                // any, may also have latched bits: keep both).
                *is |= self.preg(p, regs::PX_IS);
                if finished(*is) {
                    self.irq.by_poll.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            }
            if waited >= us {
                if self.irq_mode && !polled {
                    // A last look: a completion whose interrupt was lost.
                    *is |= self.irq.take(p) | self.preg(p, regs::PX_IS);
                    if finished(*is) {
                        log::warn!("ahci: port {p}: command completed without an interrupt");
                        self.irq.by_poll.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                }
                return false;
            }
            let slept = if self.irq_mode && !polled {
                self.delay
                    .wait_interrupt(us - waited, &|| self.irq.latched(p) != 0)
            } else {
                None
            };
            match slept {
                Some(t) => waited = waited.saturating_add(t.max(1)),
                None => {
                    polled = true;
                    self.delay.delay_us(POLL_US);
                    waited = waited.saturating_add(POLL_US);
                }
            }
        }
    }

    fn preg(&self, p: usize, r: usize) -> u32 {
        self.regs.read32(regs::port(p, r))
    }

    fn wpreg(&self, p: usize, r: usize, v: u32) {
        self.regs.write32(regs::port(p, r), v)
    }

    /// Brings up port `p`: `Ok(None)` if nothing (or no ATA disk) is attached.
    fn port_init(&mut self, p: usize, disk_index: usize) -> Result<Option<Port>, AhciError> {
        let ssts = self.preg(p, regs::PX_SSTS);
        if ssts & regs::DET_MASK != regs::SSTS_DET_PRESENT {
            return Ok(None);
        }
        self.stop_port(p)?;
        let area = self.dev.alloc_coherent(dma::PAGE_SIZE)?.into_device();
        let tables = DmaPool::new(
            &self.dev,
            "ahci-cmd-table",
            CMD_TABLE_SIZE,
            regs::CT_ALIGN,
            0,
        )?;
        let clb = area.dma_addr().as_u64();
        let fb = clb + FIS_OFF as u64;
        self.wpreg(p, regs::PX_CLB, clb as u32);
        self.wpreg(p, regs::PX_FB, fb as u32);
        if self.cap.contains(Cap::S64A) {
            self.wpreg(p, regs::PX_CLBU, (clb >> 32) as u32);
            self.wpreg(p, regs::PX_FBU, (fb >> 32) as u32);
        }
        self.wpreg(p, regs::PX_SERR, u32::MAX);
        self.wpreg(p, regs::PX_IS, u32::MAX);
        self.wpreg(p, regs::PX_IE, PxIs::DEFAULT_IE.bits());
        let mut port = Port {
            index: p,
            name: block::sd_name(disk_index),
            area,
            tables,
            id: None,
            failed: AtomicBool::new(false),
        };
        if let Err(e) = self.start_port(p) {
            self.retire(port);
            return Err(e);
        }
        let sig = self.preg(p, regs::PX_SIG);
        if sig != regs::SIG_ATA {
            log::info!("ahci: port {p}: signature {sig:#010x}, not an ATA disk; skipped");
            self.retire(port);
            return Ok(None);
        }
        let id = match self.identify_port(&port) {
            Ok(id) => id,
            Err(e) => {
                // The HBA may touch the list and FIS area until it has stopped.
                self.retire(port);
                return Err(e);
            }
        };
        log::info!(
            "ahci: port {p}: {} \"{}\" {} sectors of {} bytes",
            port.name,
            id.model,
            id.sectors,
            id.sector_size
        );
        port.id = Some(id);
        Ok(Some(port))
    }

    /// Stops a port and frees its memory, or leaks the memory if the port does not
    /// stop (the HBA might still write its FIS area).
    fn retire(&self, port: Port) {
        if let Err(e) = self.stop_port(port.index) {
            log::error!("ahci: {e}; its command list, FIS area and tables are leaked");
            core::mem::forget(port.area);
            core::mem::forget(port.tables);
        }
    }

    fn stop_port(&self, p: usize) -> Result<(), AhciError> {
        let cmd = PxCmd::from_bits_retain(self.preg(p, regs::PX_CMD));
        if cmd.intersects(PxCmd::ST | PxCmd::CR) {
            self.wpreg(p, regs::PX_CMD, (cmd - PxCmd::ST).bits());
            if !self.wait(500_000, || {
                self.preg(p, regs::PX_CMD) & PxCmd::CR.bits() == 0
            }) {
                return Err(AhciError::PortStuck {
                    port: p,
                    what: "command list did not stop (PxCMD.CR)",
                });
            }
        }
        let cmd = PxCmd::from_bits_retain(self.preg(p, regs::PX_CMD));
        if cmd.intersects(PxCmd::FRE | PxCmd::FR) {
            self.wpreg(p, regs::PX_CMD, (cmd - PxCmd::FRE).bits());
            if !self.wait(500_000, || {
                self.preg(p, regs::PX_CMD) & PxCmd::FR.bits() == 0
            }) {
                return Err(AhciError::PortStuck {
                    port: p,
                    what: "FIS receive did not stop (PxCMD.FR)",
                });
            }
        }
        Ok(())
    }

    fn start_port(&self, p: usize) -> Result<(), AhciError> {
        let cmd = self.preg(p, regs::PX_CMD);
        self.wpreg(p, regs::PX_CMD, cmd | PxCmd::FRE.bits());
        if !self.wait(1_000_000, || {
            self.preg(p, regs::PX_TFD) & (regs::TFD_BSY | regs::TFD_DRQ) == 0
        }) {
            return Err(AhciError::PortStuck {
                port: p,
                what: "device stayed busy (PxTFD.BSY/DRQ)",
            });
        }
        self.wpreg(p, regs::PX_SERR, u32::MAX);
        let cmd = self.preg(p, regs::PX_CMD);
        self.wpreg(p, regs::PX_CMD, cmd | PxCmd::ST.bits());
        Ok(())
    }

    /// COMRESET: PxSCTL.DET = 1 for at least 1 ms, then 0, then wait for the link.
    fn comreset(&self, p: usize) -> Result<(), AhciError> {
        let sctl = self.preg(p, regs::PX_SCTL) & !regs::DET_MASK;
        self.wpreg(p, regs::PX_SCTL, sctl | regs::SCTL_DET_COMRESET);
        self.delay.delay_us(1000);
        self.wpreg(p, regs::PX_SCTL, sctl);
        if !self.wait(1_000_000, || {
            self.preg(p, regs::PX_SSTS) & regs::DET_MASK == regs::SSTS_DET_PRESENT
        }) {
            return Err(AhciError::PortStuck {
                port: p,
                what: "no link after COMRESET (PxSSTS.DET)",
            });
        }
        self.wpreg(p, regs::PX_SERR, u32::MAX);
        Ok(())
    }

    /// Error recovery: stop, COMRESET, clear, restart. A port that does not come back
    /// is taken out of service.
    fn recover(&self, port: &Port) {
        let p = port.index;
        let r = self
            .stop_port(p)
            .and_then(|_| self.comreset(p))
            .and_then(|_| {
                self.wpreg(p, regs::PX_IS, u32::MAX);
                self.regs.write32(regs::IS, 1 << p);
                self.start_port(p)
            });
        match r {
            Ok(()) => log::warn!("ahci: port {p}: recovered (COMRESET)"),
            Err(e) => {
                log::error!("ahci: port {p}: recovery failed: {e}; port out of service");
                port.failed.store(true, Ordering::Relaxed);
            }
        }
    }

    fn identify_port(&self, port: &Port) -> Result<Identify, AhciError> {
        let buf = DmaBuf::alloc(self.dev.platform(), 512)?;
        let mut s = DmaStream::<FromDevice>::map(&self.dev, buf).map_err(|e| e.error)?;
        let seg = [DmaSegment {
            addr: s.dma_addr(),
            len: 512,
        }];
        self.exec(port, regs::ATA_IDENTIFY, 0, 0, false, Data::Segments(&seg))?;
        let mut id = [0u8; 512];
        s.sync_for_cpu().read(0, &mut id);
        Ok(parse_identify(&id))
    }

    /// Writes the command table and header for one command and sets PxCI.
    fn issue(
        &self,
        port: &Port,
        command: u8,
        lba: u64,
        count: u16,
        write: bool,
        data: &Data<'_>,
    ) -> Result<DmaPoolBlock, AhciError> {
        let p = port.index;
        let segs: &[DmaSegment] = match data {
            Data::None => &[],
            Data::Segments(s) => s,
        };
        if let Err((index, reason)) = check_prdt(segs, self.cap.contains(Cap::S64A)) {
            let (addr, len) = segs.get(index).map_or((0, 0), |s| (s.addr.as_u64(), s.len));
            return Err(AhciError::BadSegment {
                port: p,
                index,
                addr,
                len,
                reason,
            });
        }
        let table = port.tables.alloc()?;
        let fis = regs::h2d_fis(command, lba, count);
        for (i, dw) in fis.as_chunks::<4>().0.iter().enumerate() {
            table.write::<u32>(regs::CT_CFIS + 4 * i, u32::from_le_bytes(*dw));
        }
        for (i, s) in segs.iter().enumerate() {
            for (j, dw) in regs::prd(s.addr.as_u64(), s.len).iter().enumerate() {
                table.write::<u32>(regs::CT_PRDT + i * regs::PRD_SIZE + 4 * j, *dw);
            }
        }
        trace_prdt(segs, &table);
        let ct = table.dma_addr().as_u64();
        let hdr = SLOT * regs::CMD_HDR_SIZE;
        let mut dw0 = regs::FIS_H2D_DWORDS | ((segs.len() as u32) << regs::HDR_PRDTL_SHIFT);
        if write {
            dw0 |= regs::HDR_W;
        }
        port.area.write::<u32>(hdr + regs::HDR_DW0, dw0);
        port.area.write::<u32>(hdr + regs::HDR_PRDBC, 0);
        port.area.write::<u32>(hdr + regs::HDR_CTBA, ct as u32);
        port.area
            .write::<u32>(hdr + regs::HDR_CTBAU, (ct >> 32) as u32);
        // Table and header must be in memory before the HBA is told to fetch them.
        hal::dma_wmb();
        self.wpreg(p, regs::PX_IS, u32::MAX);
        // Bits a handler latched for an earlier command are not this one's.
        self.irq.take(p);
        self.wpreg(p, regs::PX_CI, 1 << SLOT);
        Ok(table)
    }

    /// Runs one command to completion, error or timeout (with recovery after either).
    fn exec(
        &self,
        port: &Port,
        command: u8,
        lba: u64,
        count: u16,
        write: bool,
        data: Data<'_>,
    ) -> Result<(), AhciError> {
        let p = port.index;
        if port.failed.load(Ordering::Relaxed) {
            return Err(AhciError::PortFailed(p));
        }
        let expected: usize = match &data {
            Data::None => 0,
            Data::Segments(s) => s.iter().map(|s| s.len).sum(),
        };
        let table = self.issue(port, command, lba, count, write, &data)?;
        let us = self.cfg.command_timeout_ms.saturating_mul(1000);
        let mut is = 0u32;
        let done = self.wait_command(p, us, &mut is);
        let tfd = self.preg(p, regs::PX_TFD);
        let result = if !done {
            Err(AhciError::Timeout {
                port: p,
                command,
                ms: self.cfg.command_timeout_ms,
            })
        } else if is & PxIs::TFES.bits() != 0 || tfd & regs::TFD_ERR != 0 {
            let mut fis = [0u8; 20];
            port.area.read_bytes(FIS_OFF + regs::RX_FIS_RFIS, &mut fis);
            Err(AhciError::TaskFile {
                port: p,
                command,
                status: tfd as u8,
                error: (tfd >> 8) as u8,
                lba: regs::fis_lba(&fis),
            })
        } else if is & PxIs::FATAL.bits() != 0 {
            Err(AhciError::HostBus {
                port: p,
                command,
                is,
            })
        } else {
            let got = port
                .area
                .read::<u32>(SLOT * regs::CMD_HDR_SIZE + regs::HDR_PRDBC);
            if got as usize != expected {
                Err(AhciError::ShortTransfer {
                    port: p,
                    expected,
                    got,
                })
            } else {
                Ok(())
            }
        };
        self.wpreg(p, regs::PX_IS, is);
        if let Err(e) = &result {
            log::warn!("{}: {e}", port.name);
            // The HBA may still be fetching this command: stop the port (and
            // recover it) before the table goes back to the pool.
            self.recover(port);
        }
        drop(table);
        result
    }

    /// Runs a command on the disk at `i`.
    fn exec_recover(
        &mut self,
        i: usize,
        command: u8,
        lba: u64,
        count: u16,
        write: bool,
        data: Data<'_>,
    ) -> Result<(), AhciError> {
        self.exec(&self.ports[i], command, lba, count, write, data)
    }

    fn disk_index(&self, disk: usize) -> Result<usize, AhciError> {
        if disk < self.ports.len() {
            Ok(disk)
        } else {
            Err(AhciError::NoDisk(disk))
        }
    }

    /// Reads `count = len(sg) / sector size` sectors from `lba` of disk number `disk`
    /// (0 = this HBA's first) into the physical scatter list `sg`.
    pub fn read(&mut self, disk: usize, lba: u64, sg: &SgTable) -> Result<(), AhciError> {
        self.rw(disk, lba, sg, false)
    }

    /// Writes `sg` to disk number `disk` from `lba`.
    pub fn write(&mut self, disk: usize, lba: u64, sg: &SgTable) -> Result<(), AhciError> {
        self.rw(disk, lba, sg, true)
    }

    fn rw(&mut self, disk: usize, lba: u64, sg: &SgTable, write: bool) -> Result<(), AhciError> {
        let i = self.disk_index(disk)?;
        let port = &self.ports[i];
        let p = port.index;
        let Some(id) = &port.id else {
            return Err(AhciError::NoDisk(disk));
        };
        let total: usize = sg.entries().iter().map(|e| e.len).sum();
        let ss = id.sector_size;
        if total == 0 || !total.is_multiple_of(ss) {
            return Err(AhciError::BadRequest {
                port: p,
                reason: "length is not a whole number of sectors",
            });
        }
        let count = (total / ss) as u64;
        if count > MAX_SECTORS {
            return Err(AhciError::BadRequest {
                port: p,
                reason: "more than 65535 sectors in one command",
            });
        }
        if lba.checked_add(count).is_none_or(|end| end > id.sectors) {
            return Err(AhciError::BadRequest {
                port: p,
                reason: "beyond the end of the disk",
            });
        }
        let dir = if write {
            DmaDirection::ToDevice
        } else {
            DmaDirection::FromDevice
        };
        let m = self.dev.map_sg(sg.clone(), dir)?;
        let segs = m.segments().to_vec();
        let cmd = if write {
            regs::ATA_WRITE_DMA_EXT
        } else {
            regs::ATA_READ_DMA_EXT
        };
        let r = self.exec_recover(i, cmd, lba, count as u16, write, Data::Segments(&segs));
        // Unmapping copies bounced data back (FromDevice) and tears the IOVAs down.
        drop(m.unmap());
        r
    }

    /// FLUSH CACHE EXT on disk number `disk`.
    pub fn flush(&mut self, disk: usize) -> Result<(), AhciError> {
        let i = self.disk_index(disk)?;
        self.exec_recover(i, regs::ATA_FLUSH_CACHE_EXT, 0, 0, false, Data::None)
    }

    /// Re-reads IDENTIFY DEVICE from disk number `disk`.
    pub fn identify(&mut self, disk: usize) -> Result<Identify, AhciError> {
        let i = self.disk_index(disk)?;
        let id = self.identify_port(&self.ports[i])?;
        self.ports[i].id = Some(id.clone());
        Ok(id)
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
        for port in core::mem::take(&mut self.ports) {
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
}

#[cfg(test)]
mod tests;

/// `blk read --show-sg` (block::trace): the command's mapped segments and its PRD
/// entries as the HBA will read them, back from the command table.
fn trace_prdt(segs: &[DmaSegment], table: &DmaPoolBlock) {
    use block::trace::{self, Kind};
    if !trace::armed() {
        return;
    }
    for s in segs {
        trace::record(Kind::Segment, s.addr.as_u64(), s.len as u64);
    }
    for i in 0..segs.len() {
        let at = regs::CT_PRDT + i * regs::PRD_SIZE;
        let dba = table.read::<u32>(at) as u64 | (table.read::<u32>(at + 4) as u64) << 32;
        let dbc = table.read::<u32>(at + 12) & regs::PRD_DBC_MASK;
        trace::record(Kind::Prd, dba, dbc as u64 + 1);
    }
    trace::finish();
}
