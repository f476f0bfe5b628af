//! `nvme`: driver for NVMe 1.x controllers (QEMU's `-device nvme`, laptop SSDs).
//!
//! Generic over the register window ([`RegisterAccess`], BAR0) and a [`Delay`]; every
//! address the controller sees comes from the DMA API of crate `dma`.
//!
//! * Bring-up: CC.EN = 0 and wait CSTS.RDY = 0 (CAP.TO), admin queues in AQA/ASQ/ACQ, CC
//!   with IOSQES = 6 (64-byte SQ entries), IOCQES = 4 (16-byte CQ entries), MPS = 0
//!   (4 KiB pages), CSS = NVM, then EN = 1 and wait RDY = 1. Identify controller (CNS 1:
//!   serial, model, MDTS), Set Features 0x07 (one I/O queue pair), Create I/O CQ then
//!   SQ (qid 1), Identify namespace 1 (CNS 0: size, LBA format → sector size).
//! * Memory: each queue is one page of **coherent** memory that stays allocated and
//!   mapped for the controller's life (the controller fetches and posts whenever it is
//!   enabled); PRP lists are 4 KiB blocks of a [`DmaPool`], one per command, freed when
//!   the command is over. The device's masks are 64 bits, its segments up to 4 GiB, and
//!   its `min_align_mask` is 4 KiB − 1 so a bounce buffer keeps the page offset.
//! * Data: a physical scatter list is mapped with `map_sg`; the DMA segments must be
//!   page-shaped (every segment but the first starts on a page, every segment but the
//!   last ends on one; the first dword aligned) and become PRP1, PRP2 or PRP1 plus a PRP
//!   list of up to [`MAX_PRP_LIST`] entries. The block layer's
//!   [`QueueLimits::virt_boundary_mask`] makes it split requests at other gaps. A
//!   transfer is at most [`Controller::max_transfer`] bytes: MDTS, and one list page.
//! * Completion by **polling** the phase tag of the next CQ entry, then the CQ head
//!   doorbell (interrupts are not wired yet: INTMS masks every vector and the I/O CQ
//!   is created with IEN = 0). One
//!   command per queue at a time. A command not completed within the timeout ends with
//!   [`NvmeError::Timeout`], CSTS.CFS with [`NvmeError::ControllerFatal`]; after either
//!   the controller is reset (disabled, which stops its DMA, then brought up again)
//!   **before** the request's memory is unmapped. A failed reset takes the controller out
//!   of service. A completion with a status is [`NvmeError::Status`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use block::{BlockDevice, BlockError, Op, QueueLimits, Request};
use core::fmt;
use dma::{
    dma_bit_mask, Coherent, DmaBuf, DmaDevice, DmaDirection, DmaError, DmaPool, DmaPoolBlock,
    DmaSegment, DmaStream, FromDevice, PoolError, SgTable,
};
use hal::RegisterAccess;

/// Controller memory page size (CC.MPS = 0).
pub const PAGE: u64 = 4096;
/// Entries of one PRP list page (no chaining: a transfer needs at most this many after
/// PRP1).
pub const MAX_PRP_LIST: usize = (PAGE / 8) as usize;
/// Admin queue entries.
pub const ADMIN_DEPTH: u16 = 32;
/// Poll interval while waiting, µs.
const POLL_US: u32 = 10;

/// Registers (NVMe 1.4 §3.1).
pub mod regs {
    /// Controller Capabilities (64-bit).
    pub const CAP: usize = 0x00;
    /// Version.
    pub const VS: usize = 0x08;
    /// Controller Configuration.
    pub const CC: usize = 0x14;
    /// Controller Status.
    pub const CSTS: usize = 0x1c;
    /// Admin Queue Attributes.
    pub const AQA: usize = 0x24;
    /// Admin SQ base (64-bit).
    pub const ASQ: usize = 0x28;
    /// Admin CQ base (64-bit).
    pub const ACQ: usize = 0x30;
    /// First doorbell.
    pub const DOORBELLS: usize = 0x1000;
    /// Interrupt Mask Set (pin-based and MSI interrupts).
    pub const INTMS: usize = 0x0c;
    /// CC.EN.
    pub const CC_EN: u32 = 1 << 0;
    /// CC.IOSQES = 6 (64-byte entries).
    pub const CC_IOSQES: u32 = 6 << 16;
    /// CC.IOCQES = 4 (16-byte entries).
    pub const CC_IOCQES: u32 = 4 << 20;
    /// CSTS.RDY.
    pub const CSTS_RDY: u32 = 1 << 0;
    /// CSTS.CFS: controller fatal status.
    pub const CSTS_CFS: u32 = 1 << 1;

    /// Submission queue `qid`'s tail doorbell.
    pub fn sq_tail(qid: u16, dstrd: u32) -> usize {
        DOORBELLS + (2 * qid as usize) * (4 << dstrd)
    }

    /// Completion queue `qid`'s head doorbell.
    pub fn cq_head(qid: u16, dstrd: u32) -> usize {
        DOORBELLS + (2 * qid as usize + 1) * (4 << dstrd)
    }
}

/// Opcodes.
pub mod opc {
    /// Admin: Create I/O Submission Queue.
    pub const CREATE_SQ: u8 = 0x01;
    /// Admin: Create I/O Completion Queue.
    pub const CREATE_CQ: u8 = 0x05;
    /// Admin: Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Admin: Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// NVM: Flush.
    pub const FLUSH: u8 = 0x00;
    /// NVM: Write.
    pub const WRITE: u8 = 0x01;
    /// NVM: Read.
    pub const READ: u8 = 0x02;
}

/// Waiting, from the platform (the kernel's timer, a counter in host tests).
pub trait Delay {
    /// Waits at least `us` microseconds.
    fn delay_us(&self, us: u32);
}

/// Driver settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long one command may take before it is abandoned, ms.
    pub command_timeout_ms: u32,
    /// This controller's instance number (0 → `nvme0n1`).
    pub instance: usize,
    /// I/O queue entries wanted (capped by CAP.MQES + 1 and 64: one page of SQ).
    pub io_depth: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            command_timeout_ms: 5000,
            instance: 0,
            io_depth: 64,
        }
    }
}

/// Why an NVMe operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NvmeError {
    /// CSTS.RDY did not reach the wanted value within CAP.TO.
    NotReady {
        /// The value waited for.
        want: bool,
        /// CAP.TO in ms.
        ms: u32,
    },
    /// The controller lacks something the driver needs.
    Unsupported(&'static str),
    /// The DMA API refused (a mask, a mapping, memory).
    Dma(DmaError),
    /// The PRP list pool refused.
    Pool(PoolError),
    /// The request does not fit the namespace or a command.
    BadRequest(&'static str),
    /// A mapped segment cannot be described by PRPs.
    BadSegment {
        /// Index of the segment.
        index: usize,
        /// Its bus address.
        addr: u64,
        /// Its length.
        len: usize,
        /// Which rule.
        reason: &'static str,
    },
    /// The controller completed the command with an error status.
    Status {
        /// Queue.
        qid: u16,
        /// Opcode.
        opcode: u8,
        /// Status code type (0 generic, 1 command specific, 2 media).
        sct: u8,
        /// Status code.
        sc: u8,
        /// Do not retry.
        dnr: bool,
    },
    /// The command did not complete in time (the controller was reset).
    Timeout {
        /// Queue.
        qid: u16,
        /// Opcode.
        opcode: u8,
        /// Timeout in ms.
        ms: u32,
    },
    /// CSTS.CFS: the controller hit a fatal error (it was reset).
    ControllerFatal {
        /// The command that was running.
        opcode: u8,
    },
    /// The controller failed a reset earlier and is out of service.
    Failed,
}

impl From<DmaError> for NvmeError {
    fn from(e: DmaError) -> Self {
        NvmeError::Dma(e)
    }
}

impl From<PoolError> for NvmeError {
    fn from(e: PoolError) -> Self {
        NvmeError::Pool(e)
    }
}

/// A readable name for a status (NVMe 1.4 figures 127, 128, 130).
pub fn status_name(sct: u8, sc: u8) -> &'static str {
    match (sct, sc) {
        (0, 0x01) => "invalid opcode",
        (0, 0x02) => "invalid field in command",
        (0, 0x04) => "data transfer error",
        (0, 0x06) => "internal error",
        (0, 0x0b) => "invalid namespace",
        (0, 0x13) => "PRP offset invalid",
        (0, 0x80) => "LBA out of range",
        (1, 0x00) => "completion queue invalid",
        (1, 0x01) => "invalid queue identifier",
        (1, 0x02) => "invalid queue size",
        (2, 0x80) => "write fault",
        (2, 0x81) => "unrecovered read error (media error)",
        (2, _) => "media error",
        _ => "error",
    }
}

impl fmt::Display for NvmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvmeError::NotReady { want, ms } => {
                write!(f, "nvme: CSTS.RDY did not become {} in {ms} ms", *want as u8)
            }
            NvmeError::Unsupported(w) => write!(f, "nvme: unsupported controller: {w}"),
            NvmeError::Dma(e) => write!(f, "nvme: {e}"),
            NvmeError::Pool(e) => write!(f, "nvme: {e}"),
            NvmeError::BadRequest(r) => write!(f, "nvme: {r}"),
            NvmeError::BadSegment {
                index,
                addr,
                len,
                reason,
            } => write!(f, "nvme: segment {index} ({addr:#x}+{len:#x}) {reason}"),
            NvmeError::Status {
                qid,
                opcode,
                sct,
                sc,
                dnr,
            } => write!(
                f,
                "nvme: {} (queue {qid}, opcode {opcode:#04x}, SCT {sct} SC {sc:#04x}{})",
                status_name(*sct, *sc),
                if *dnr { ", DNR" } else { "" }
            ),
            NvmeError::Timeout { qid, opcode, ms } => write!(
                f,
                "nvme: command {opcode:#04x} on queue {qid} did not complete in {ms} ms (controller reset)"
            ),
            NvmeError::ControllerFatal { opcode } => write!(
                f,
                "nvme: controller fatal status (CSTS.CFS) during command {opcode:#04x} (controller reset)"
            ),
            NvmeError::Failed => f.write_str("nvme: controller out of service after a failed reset"),
        }
    }
}

/// What Identify Controller said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtrlInfo {
    /// PCI vendor id.
    pub vid: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// MDTS (a power of two of the minimum page size; 0 = no limit).
    pub mdts: u8,
    /// Namespaces.
    pub nn: u32,
}

/// What Identify Namespace said about namespace 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Namespace id.
    pub nsid: u32,
    /// Size in logical blocks (NSZE).
    pub sectors: u64,
    /// Logical block size in bytes (the LBA format FLBAS selects).
    pub sector_size: usize,
}

fn text(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    String::from(s.trim())
}

/// Parses the 4096 bytes of Identify Controller data.
pub fn parse_identify_ctrl(id: &[u8]) -> CtrlInfo {
    CtrlInfo {
        vid: u16::from_le_bytes([id[0], id[1]]),
        serial: text(&id[4..24]),
        model: text(&id[24..64]),
        firmware: text(&id[64..72]),
        mdts: id[77],
        nn: u32::from_le_bytes([id[516], id[517], id[518], id[519]]),
    }
}

/// Parses Identify Namespace data; `None` for an unusable format (metadata interleaved
/// with data, a block size outside 512 B – 64 KiB).
pub fn parse_identify_ns(nsid: u32, id: &[u8]) -> Option<Namespace> {
    let nsze = u64::from_le_bytes(id[0..8].try_into().ok()?);
    let flbas = id[26] & 0xf;
    let f = 128 + 4 * flbas as usize;
    let ms = u16::from_le_bytes([id[f], id[f + 1]]);
    let lbads = id[f + 2];
    if !(9..=16).contains(&lbads) || (ms != 0 && id[26] & 0x10 != 0) {
        return None;
    }
    Some(Namespace {
        nsid,
        sectors: nsze,
        sector_size: 1 << lbads,
    })
}

/// PRPs for a command: PRP1, PRP2 and the list block PRP2 points to, if any.
pub struct Prps {
    /// PRP1.
    pub prp1: u64,
    /// PRP2 (0, a page, or the list).
    pub prp2: u64,
    /// The list's entries (empty without one).
    pub list: Vec<u64>,
    /// The list page, held until the command is over (then back to the pool).
    _block: Option<DmaPoolBlock>,
}

/// Builds the PRPs for mapped `segs` (see the crate doc for the rules); a list goes into
/// a block of `pool`.
pub fn build_prps(segs: &[DmaSegment], pool: &DmaPool) -> Result<Prps, NvmeError> {
    let n = segs.len();
    if n == 0 {
        return Err(NvmeError::BadRequest("no data segments"));
    }
    let mut pages: Vec<u64> = Vec::new();
    for (index, s) in segs.iter().enumerate() {
        let addr = s.addr.as_u64();
        let bad = |reason| NvmeError::BadSegment {
            index,
            addr,
            len: s.len,
            reason,
        };
        if s.len == 0 {
            return Err(bad("is empty"));
        }
        let end = addr
            .checked_add(s.len as u64)
            .ok_or(bad("wraps the address space"))?;
        if index == 0 && addr & 3 != 0 {
            return Err(bad("is not dword aligned (PRP1 bits 1:0)"));
        }
        if index > 0 && addr & (PAGE - 1) != 0 {
            return Err(bad("starts inside a page (only the first segment may)"));
        }
        if index + 1 < n && end & (PAGE - 1) != 0 {
            return Err(bad("ends inside a page (only the last segment may)"));
        }
        let mut p = addr;
        while p < end {
            pages.push(p);
            p = (p & !(PAGE - 1)) + PAGE;
        }
    }
    if pages.len() - 1 > MAX_PRP_LIST {
        return Err(NvmeError::BadRequest(
            "more pages than PRP1 and one PRP list page can carry",
        ));
    }
    let prp1 = pages[0];
    match pages.len() {
        1 => Ok(Prps {
            prp1,
            prp2: 0,
            list: Vec::new(),
            _block: None,
        }),
        2 => Ok(Prps {
            prp1,
            prp2: pages[1],
            list: Vec::new(),
            _block: None,
        }),
        _ => {
            let block = pool.alloc()?;
            for (i, &p) in pages[1..].iter().enumerate() {
                block.write::<u64>(8 * i, p);
            }
            Ok(Prps {
                prp1,
                prp2: block.dma_addr().as_u64(),
                list: pages[1..].to_vec(),
                _block: Some(block),
            })
        }
    }
}

/// One submission/completion queue pair, each a page of coherent memory.
struct Queue {
    qid: u16,
    depth: u16,
    sq: Coherent,
    cq: Coherent,
    tail: u16,
    head: u16,
    phase: bool,
    next_cid: u16,
}

impl Queue {
    fn new(dev: &Arc<DmaDevice>, qid: u16, depth: u16) -> Result<Queue, NvmeError> {
        let sq = dev.alloc_coherent(depth as usize * 64)?.into_device();
        let cq = dev.alloc_coherent(depth as usize * 16)?.into_device();
        Ok(Queue {
            qid,
            depth,
            sq,
            cq,
            tail: 0,
            head: 0,
            phase: true,
            next_cid: 0,
        })
    }

    /// Back to the state after creation: empty, phase 1, the CQ zeroed so no stale
    /// entry carries the expected phase.
    fn reset(&mut self) {
        self.tail = 0;
        self.head = 0;
        self.phase = true;
        let zeros = [0u8; 16];
        for i in 0..self.depth as usize {
            self.cq.write_bytes(16 * i, &zeros);
        }
    }
}

/// How a command ended, before recovery.
enum Outcome {
    Done(u32),
    Status(u16, bool),
    Timeout,
    Fatal,
}

/// One NVMe controller with namespace 1.
pub struct Controller<R: RegisterAccess, D: Delay> {
    regs: R,
    dev: Arc<DmaDevice>,
    delay: D,
    cfg: Config,
    cap: u64,
    vs: u32,
    dstrd: u32,
    /// `None` only while a command runs on it.
    admin: Option<Queue>,
    io: Option<Queue>,
    io_depth: u16,
    prp_pool: DmaPool,
    info: CtrlInfo,
    ns: Option<Namespace>,
    name: String,
    failed: bool,
    /// A reset is running: its own commands' failures must not start another.
    resetting: bool,
    resets: usize,
}

impl<R: RegisterAccess, D: Delay> fmt::Debug for Controller<R, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("cap", &self.cap)
            .field("vs", &self.vs)
            .field("info", &self.info)
            .field("ns", &self.ns)
            .finish()
    }
}

impl<R: RegisterAccess, D: Delay> Controller<R, D> {
    /// Resets and enables the controller, identifies it and namespace 1, and creates
    /// one I/O queue pair.
    pub fn probe(
        regs: R,
        dev: Arc<DmaDevice>,
        delay: D,
        cfg: Config,
    ) -> Result<Controller<R, D>, NvmeError> {
        let cap = regs.read32(regs::CAP) as u64 | (regs.read32(regs::CAP + 4) as u64) << 32;
        if cap == u64::MAX {
            return Err(NvmeError::Unsupported("registers read all ones"));
        }
        if (cap >> 37) & 1 == 0 {
            return Err(NvmeError::Unsupported("no NVM command set (CAP.CSS)"));
        }
        if (cap >> 48) & 0xf != 0 {
            return Err(NvmeError::Unsupported(
                "4 KiB pages not allowed (CAP.MPSMIN)",
            ));
        }
        dev.set_mask_and_coherent(dma_bit_mask(64))?;
        dev.set_max_segment_size(u32::MAX as usize);
        dev.set_min_align_mask(PAGE - 1);
        let mqes = (cap & 0xffff) as u16;
        let admin = Queue::new(&dev, 0, ADMIN_DEPTH.min(mqes.saturating_add(1)))?;
        let prp_pool = DmaPool::new(&dev, "nvme-prp-list", PAGE as usize, PAGE as usize, 0)?;
        let io_depth = cfg.io_depth.clamp(2, 64).min(mqes.saturating_add(1));
        let mut c = Controller {
            vs: regs.read32(regs::VS),
            dstrd: ((cap >> 32) & 0xf) as u32,
            regs,
            dev,
            delay,
            cfg,
            cap,
            admin: Some(admin),
            io: None,
            io_depth,
            prp_pool,
            info: CtrlInfo {
                vid: 0,
                serial: String::new(),
                model: String::new(),
                firmware: String::new(),
                mdts: 0,
                nn: 0,
            },
            ns: None,
            name: block::nvme_name(cfg.instance, 1),
            failed: false,
            resetting: false,
            resets: 0,
        };
        // Completions are polled: mask the interrupt vectors (the admin CQ always has
        // interrupts enabled, and nobody owns the line yet).
        c.regs.write32(regs::INTMS, u32::MAX);
        c.enable()?;
        let id = c.identify(1, 0)?;
        c.info = parse_identify_ctrl(&id);
        c.create_io_queues()?;
        let id = c.identify(0, 1)?;
        c.ns = parse_identify_ns(1, &id);
        if c.ns.is_none() {
            log::warn!("{}: namespace 1 has an unusable LBA format", c.name);
        }
        log::info!(
            "{}: {} {} fw {}, NVMe {}.{}, MDTS {} KiB, {:?}",
            c.name,
            c.info.model,
            c.info.serial,
            c.info.firmware,
            c.vs >> 16,
            (c.vs >> 8) & 0xff,
            c.max_transfer() / 1024,
            c.ns
        );
        Ok(c)
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

    fn timeout_ms(&self) -> u32 {
        // CAP.TO is in 500 ms units.
        (((self.cap >> 24) & 0xff) as u32).max(1) * 500
    }

    fn disable(&self) -> Result<(), NvmeError> {
        let cc = self.regs.read32(regs::CC);
        if cc & regs::CC_EN != 0 {
            self.regs.write32(regs::CC, cc & !regs::CC_EN);
        }
        let ms = self.timeout_ms();
        if !self.wait(ms.saturating_mul(1000), || {
            self.regs.read32(regs::CSTS) & regs::CSTS_RDY == 0
        }) {
            return Err(NvmeError::NotReady { want: false, ms });
        }
        Ok(())
    }

    /// Disable, program the admin queue, enable.
    fn enable(&mut self) -> Result<(), NvmeError> {
        self.disable()?;
        let admin = self
            .admin
            .as_mut()
            .ok_or(NvmeError::BadRequest("no admin queue"))?;
        admin.reset();
        let d = admin.depth as u32 - 1;
        let asq = admin.sq.dma_addr().as_u64();
        let acq = admin.cq.dma_addr().as_u64();
        self.regs.write32(regs::AQA, d | d << 16);
        self.regs.write32(regs::ASQ, asq as u32);
        self.regs.write32(regs::ASQ + 4, (asq >> 32) as u32);
        self.regs.write32(regs::ACQ, acq as u32);
        self.regs.write32(regs::ACQ + 4, (acq >> 32) as u32);
        // CSS = 0 (NVM), MPS = 0 (4 KiB), AMS = 0 (round robin).
        let cc = regs::CC_IOSQES | regs::CC_IOCQES;
        self.regs.write32(regs::CC, cc);
        self.regs.write32(regs::CC, cc | regs::CC_EN);
        let ms = self.timeout_ms();
        let mut csts = 0;
        if !self.wait(ms.saturating_mul(1000), || {
            csts = self.regs.read32(regs::CSTS);
            csts & (regs::CSTS_RDY | regs::CSTS_CFS) != 0
        }) || csts & regs::CSTS_RDY == 0
        {
            return Err(NvmeError::NotReady { want: true, ms });
        }
        if csts & regs::CSTS_CFS != 0 {
            return Err(NvmeError::ControllerFatal { opcode: 0 });
        }
        Ok(())
    }

    fn create_io_queues(&mut self) -> Result<(), NvmeError> {
        // Number of Queues: one SQ and one CQ (0-based counts).
        let mut sqe = [0u32; 16];
        sqe[0] = opc::SET_FEATURES as u32;
        sqe[10] = 0x07;
        sqe[11] = 0;
        let granted = self.admin_cmd(sqe)?;
        log::debug!(
            "{}: {} I/O SQs, {} CQs granted",
            self.name,
            (granted & 0xffff) + 1,
            (granted >> 16) + 1
        );
        let q = match self.io.take() {
            Some(mut q) => {
                q.reset();
                q
            }
            None => Queue::new(&self.dev, 1, self.io_depth)?,
        };
        let qsize = (q.depth as u32 - 1) << 16;
        let mut sqe = [0u32; 16];
        sqe[0] = opc::CREATE_CQ as u32;
        let cq = q.cq.dma_addr().as_u64();
        sqe[6] = cq as u32;
        sqe[7] = (cq >> 32) as u32;
        sqe[10] = qsize | q.qid as u32;
        // PC = 1 (physically contiguous), IEN = 0: completions are polled.
        sqe[11] = 1;
        let r = self.admin_cmd(sqe);
        if let Err(e) = r {
            self.io = Some(q);
            return Err(e);
        }
        let mut sqe = [0u32; 16];
        sqe[0] = opc::CREATE_SQ as u32;
        let sq = q.sq.dma_addr().as_u64();
        sqe[6] = sq as u32;
        sqe[7] = (sq >> 32) as u32;
        sqe[10] = qsize | q.qid as u32;
        sqe[11] = (q.qid as u32) << 16 | 1;
        let qid = q.qid;
        self.io = Some(q);
        self.admin_cmd(sqe)?;
        log::debug!("{}: I/O queue pair {qid} created", self.name);
        Ok(())
    }

    /// Identify with CNS `cns` for `nsid` into a fresh 4 KiB buffer.
    fn identify(&mut self, cns: u32, nsid: u32) -> Result<Vec<u8>, NvmeError> {
        let buf = DmaBuf::alloc(self.dev.platform(), PAGE as usize)?;
        let mut s = DmaStream::<FromDevice>::map(&self.dev, buf).map_err(|e| e.error)?;
        let seg = [DmaSegment {
            addr: s.dma_addr(),
            len: PAGE as usize,
        }];
        let prps = build_prps(&seg, &self.prp_pool)?;
        let mut sqe = [0u32; 16];
        sqe[0] = opc::IDENTIFY as u32;
        sqe[1] = nsid;
        sqe[6] = prps.prp1 as u32;
        sqe[7] = (prps.prp1 >> 32) as u32;
        sqe[8] = prps.prp2 as u32;
        sqe[9] = (prps.prp2 >> 32) as u32;
        sqe[10] = cns;
        self.admin_cmd(sqe)?;
        drop(prps);
        let v = s.sync_for_cpu().to_vec();
        Ok(v)
    }

    /// Writes `sqe` (CID filled in) to `q`, rings its doorbell and polls for the
    /// completion, the controller's status and the clock.
    fn run(&self, q: &mut Queue, mut sqe: [u32; 16]) -> Outcome {
        let cid = q.next_cid;
        q.next_cid = q.next_cid.wrapping_add(1);
        sqe[0] = (sqe[0] & 0xffff) | (cid as u32) << 16;
        let base = q.tail as usize * 64;
        for (i, dw) in sqe.iter().enumerate() {
            q.sq.write::<u32>(base + 4 * i, *dw);
        }
        q.tail = (q.tail + 1) % q.depth;
        // The entry must be in memory before the controller is told to fetch it.
        hal::dma_wmb();
        self.regs
            .write32(regs::sq_tail(q.qid, self.dstrd), q.tail as u32);
        let us = self.cfg.command_timeout_ms.saturating_mul(1000);
        let mut waited = 0u32;
        loop {
            let off = q.head as usize * 16;
            let dw3 = q.cq.read::<u32>(off + 12);
            if (dw3 >> 16) & 1 == q.phase as u32 {
                // Read the rest of the entry only after its phase tag.
                hal::dma_rmb();
                let dw0 = q.cq.read::<u32>(off);
                q.head = (q.head + 1) % q.depth;
                if q.head == 0 {
                    q.phase = !q.phase;
                }
                self.regs
                    .write32(regs::cq_head(q.qid, self.dstrd), q.head as u32);
                if dw3 & 0xffff != cid as u32 {
                    log::warn!(
                        "{}: stale completion for cid {} on queue {}",
                        self.name,
                        dw3 & 0xffff,
                        q.qid
                    );
                    continue;
                }
                let st = ((dw3 >> 17) & 0x7ff) as u16;
                return if st == 0 {
                    Outcome::Done(dw0)
                } else {
                    Outcome::Status(st, dw3 & (1 << 31) != 0)
                };
            }
            let csts = self.regs.read32(regs::CSTS);
            if csts == u32::MAX || csts & regs::CSTS_CFS != 0 {
                return Outcome::Fatal;
            }
            if waited >= us {
                return Outcome::Timeout;
            }
            self.delay.delay_us(POLL_US);
            waited = waited.saturating_add(POLL_US);
        }
    }

    /// Runs a command on the admin (`io` false) or I/O queue; a timeout or a fatal
    /// status resets the controller before returning.
    fn exec(&mut self, io: bool, sqe: [u32; 16]) -> Result<u32, NvmeError> {
        if self.failed {
            return Err(NvmeError::Failed);
        }
        let opcode = sqe[0] as u8;
        let slot = if io { &mut self.io } else { &mut self.admin };
        let mut q = slot
            .take()
            .ok_or(NvmeError::BadRequest("queue not set up"))?;
        let qid = q.qid;
        let out = self.run(&mut q, sqe);
        if io {
            self.io = Some(q);
        } else {
            self.admin = Some(q);
        }
        let err = match out {
            Outcome::Done(dw0) => return Ok(dw0),
            Outcome::Status(st, dnr) => {
                return Err(NvmeError::Status {
                    qid,
                    opcode,
                    sct: (st >> 8) as u8 & 7,
                    sc: st as u8,
                    dnr,
                })
            }
            Outcome::Timeout => NvmeError::Timeout {
                qid,
                opcode,
                ms: self.cfg.command_timeout_ms,
            },
            Outcome::Fatal => NvmeError::ControllerFatal { opcode },
        };
        log::warn!("{}: {err}", self.name);
        if !self.resetting {
            self.reset_controller();
        }
        Err(err)
    }

    fn admin_cmd(&mut self, sqe: [u32; 16]) -> Result<u32, NvmeError> {
        self.exec(false, sqe)
    }

    /// Controller reset after a timeout or a fatal status: CC.EN = 0 stops every
    /// command and the controller's DMA; then bring-up again with the same queues.
    /// A controller that does not come back is out of service.
    pub fn reset_controller(&mut self) {
        self.resets += 1;
        self.resetting = true;
        let r = self.enable().and_then(|_| self.create_io_queues());
        self.resetting = false;
        match r {
            Ok(()) => log::warn!("{}: controller reset, queues re-created", self.name),
            Err(e) => {
                log::error!(
                    "{}: reset failed: {e}; controller out of service",
                    self.name
                );
                // Leave it disabled so it cannot reach memory that gets freed.
                let _ = self.disable();
                self.failed = true;
            }
        }
    }

    fn ns(&self) -> Result<Namespace, NvmeError> {
        self.ns
            .ok_or(NvmeError::BadRequest("namespace 1 is not usable"))
    }

    /// Most bytes one command moves: MDTS, and PRP1 plus one list page.
    pub fn max_transfer(&self) -> usize {
        let list = MAX_PRP_LIST * PAGE as usize;
        match self.info.mdts {
            0 => list,
            m if m >= 20 => list,
            m => (PAGE as usize) << m,
        }
        .min(list)
    }

    /// Reads `len(sg) / sector size` blocks from `lba` of namespace 1 into `sg`.
    pub fn read(&mut self, lba: u64, sg: &SgTable) -> Result<(), NvmeError> {
        self.rw(lba, sg, false)
    }

    /// Writes `sg` to namespace 1 from `lba`.
    pub fn write(&mut self, lba: u64, sg: &SgTable) -> Result<(), NvmeError> {
        self.rw(lba, sg, true)
    }

    fn rw(&mut self, lba: u64, sg: &SgTable, write: bool) -> Result<(), NvmeError> {
        let ns = self.ns()?;
        let total: usize = sg.entries().iter().map(|e| e.len).sum();
        let ss = ns.sector_size;
        if total == 0 || !total.is_multiple_of(ss) {
            return Err(NvmeError::BadRequest(
                "length is not a whole number of sectors",
            ));
        }
        if total > self.max_transfer() {
            return Err(NvmeError::BadRequest(
                "larger than the controller's maximum transfer (MDTS)",
            ));
        }
        let count = (total / ss) as u64;
        if lba.checked_add(count).is_none_or(|end| end > ns.sectors) {
            return Err(NvmeError::BadRequest("beyond the end of the namespace"));
        }
        let dir = if write {
            DmaDirection::ToDevice
        } else {
            DmaDirection::FromDevice
        };
        let m = self.dev.map_sg(sg.clone(), dir)?;
        let prps = build_prps(m.segments(), &self.prp_pool)?;
        trace_prps(m.segments(), &prps);
        let mut sqe = [0u32; 16];
        sqe[0] = if write { opc::WRITE } else { opc::READ } as u32;
        sqe[1] = ns.nsid;
        sqe[6] = prps.prp1 as u32;
        sqe[7] = (prps.prp1 >> 32) as u32;
        sqe[8] = prps.prp2 as u32;
        sqe[9] = (prps.prp2 >> 32) as u32;
        sqe[10] = lba as u32;
        sqe[11] = (lba >> 32) as u32;
        sqe[12] = (count - 1) as u32;
        let r = self.exec(true, sqe).map(|_| ());
        // The command is over (or the controller was reset): the list and the
        // mapping can go. Unmapping copies bounced data back (FromDevice).
        drop(prps);
        drop(m.unmap());
        r
    }

    /// Flush on namespace 1.
    pub fn flush(&mut self) -> Result<(), NvmeError> {
        let ns = self.ns()?;
        let mut sqe = [0u32; 16];
        sqe[0] = opc::FLUSH as u32;
        sqe[1] = ns.nsid;
        self.exec(true, sqe).map(|_| ())
    }

    /// Identify Controller data.
    pub fn info(&self) -> &CtrlInfo {
        &self.info
    }

    /// Namespace 1, if usable.
    pub fn namespace(&self) -> Option<Namespace> {
        self.ns
    }

    /// CAP.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// VS.
    pub fn version(&self) -> u32 {
        self.vs
    }

    /// Controller resets after errors so far.
    pub fn resets(&self) -> usize {
        self.resets
    }

    /// Out of service after a failed reset.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// `nvme0n1`, …
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The DMA device.
    pub fn dma_device(&self) -> &Arc<DmaDevice> {
        &self.dev
    }

    /// The register window.
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// Queue limits for the block layer: sectors up to [`max_transfer`](Self::max_transfer),
    /// pages as segments, and the page as virtual boundary (PRPs).
    pub fn limits(&self) -> Option<QueueLimits> {
        let ns = self.ns?;
        let max = self.max_transfer();
        Some(
            QueueLimits::from_dma(
                &self.dev.params(),
                ns.sector_size,
                max / PAGE as usize + 1,
                (max / ns.sector_size) as u64,
            )
            .with_virt_boundary(PAGE - 1),
        )
    }

    /// Namespace 1 as a [`BlockDevice`].
    pub fn disk(&mut self) -> Option<NvmeDisk<'_, R, D>> {
        self.ns?;
        Some(NvmeDisk { ctrl: self })
    }
}

impl<R: RegisterAccess, D: Delay> Drop for Controller<R, D> {
    fn drop(&mut self) {
        // The queues are freed with the controller: stop it first.
        if let Err(e) = self.disable() {
            // It may still fetch and post: its queue memory must never be reused.
            log::error!("{}: {e}; its queues are leaked", self.name);
            core::mem::forget(self.io.take());
            core::mem::forget(self.admin.take());
        }
    }
}

/// Namespace 1 as a block device.
pub struct NvmeDisk<'a, R: RegisterAccess, D: Delay> {
    ctrl: &'a mut Controller<R, D>,
}

impl<R: RegisterAccess, D: Delay> NvmeDisk<'_, R, D> {
    fn ns(&self) -> Namespace {
        match self.ctrl.ns {
            Some(ns) => ns,
            // `Controller::disk` only hands out a usable namespace.
            None => unreachable!("NvmeDisk without a namespace"),
        }
    }

    fn block_error(&self, lba: u64, e: NvmeError) -> BlockError {
        BlockError::Device {
            disk: self.ctrl.name.clone(),
            lba,
            detail: alloc::format!("{e}"),
        }
    }
}

impl<R: RegisterAccess, D: Delay> BlockDevice for NvmeDisk<'_, R, D> {
    fn name(&self) -> &str {
        &self.ctrl.name
    }

    fn sector_size(&self) -> usize {
        self.ns().sector_size
    }

    fn capacity(&self) -> u64 {
        self.ns().sectors
    }

    fn limits(&self) -> QueueLimits {
        match self.ctrl.limits() {
            Some(l) => l,
            None => unreachable!("NvmeDisk without a namespace"),
        }
    }

    fn submit(&mut self, op: Op, req: Request) -> Result<SgTable, BlockError> {
        let r = match op {
            Op::Read => self.ctrl.read(req.lba, &req.sg),
            Op::Write => self.ctrl.write(req.lba, &req.sg),
        };
        r.map_err(|e| self.block_error(req.lba, e))?;
        Ok(req.sg)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.ctrl.flush().map_err(|e| self.block_error(0, e))
    }
}

#[cfg(test)]
mod tests;

/// `blk read --show-sg` (block::trace): the command's mapped segments, PRP1, PRP2
/// and the PRP list's entries.
fn trace_prps(segs: &[DmaSegment], prps: &Prps) {
    use block::trace::{self, Kind};
    if !trace::armed() {
        return;
    }
    for s in segs {
        trace::record(Kind::Segment, s.addr.as_u64(), s.len as u64);
    }
    trace::record(Kind::Prp1, prps.prp1, 0);
    trace::record(Kind::Prp2, prps.prp2, prps.list.len() as u64);
    for (i, &e) in prps.list.iter().enumerate() {
        trace::record(Kind::PrpList, e, i as u64);
    }
    trace::finish();
}
