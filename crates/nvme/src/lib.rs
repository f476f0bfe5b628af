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
//! * Completions: each CQ is a [`CompletionQueue`] shared with the kernel's interrupt
//!   handler. Whoever consumes it (the handler, or the waiter when polling) reads
//!   entries while their phase tag matches the expected phase (which flips each time
//!   the head wraps), then writes the CQ head doorbell. With MSI-X
//!   ([`Config::irq_vectors`] > 0) INTMS/INTMC are left alone (NVMe 1.4 §3.1.3: not
//!   for MSI-X), the admin CQ uses vector 0 and the I/O CQ is created with IEN = 1 on
//!   vector 1 (0 if there is only one); the controller stays polled until the kernel
//!   has its handler on the vectors and calls [`Controller::enable_interrupts`]; then
//!   the waiter sleeps in [`Delay::wait_interrupt`]. Without vectors (the kernel's
//!   `nvme.poll=1`, no MSI-X) INTMS masks every vector, the I/O CQ has IEN = 0, and
//!   the waiter **polls** the phase tag every 10 µs. One
//!   command per queue at a time. A command not completed within the timeout ends with
//!   [`NvmeError::Timeout`] (in interrupt mode after a last look at the CQ: a lost
//!   interrupt costs time, not data), CSTS.CFS with [`NvmeError::ControllerFatal`];
//!   after either
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
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
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
    /// How long one command may take before it is abandoned, ms.
    pub command_timeout_ms: u32,
    /// This controller's instance number (0 → `nvme0n1`).
    pub instance: usize,
    /// I/O queue entries wanted (capped by CAP.MQES + 1 and 64: one page of SQ).
    pub io_depth: u16,
    /// MSI-X vectors the kernel programmed (table entries 0, 1, …): 0 = none, the
    /// controller is polled; 1 = the admin and I/O CQs share vector 0; 2 or more =
    /// admin on 0, I/O on 1.
    pub irq_vectors: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            command_timeout_ms: 5000,
            instance: 0,
            io_depth: 64,
            irq_vectors: 0,
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

/// Counters of one completion queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CqStats {
    /// Queue id (0 admin).
    pub qid: u16,
    /// MSI-X table entry the CQ interrupts on (`None`: polled).
    pub vector: Option<u16>,
    /// Handler calls for this CQ.
    pub interrupts: u64,
    /// Commands whose completion the handler consumed.
    pub completed_by_irq: u64,
    /// Commands whose completion the waiter found by polling.
    pub completed_by_poll: u64,
    /// Entries for a command nobody waited for (dropped).
    pub stale: u64,
    /// Times the head wrapped (the phase tag flipped).
    pub wraps: u64,
}

/// A completion queue as both the waiter and the interrupt handler use it: the entries
/// (coherent memory), the consumer's head and phase, and the one awaited completion.
/// Consumption is serialised by a flag the handler only tries (it never spins), so
/// the handler cannot deadlock against the code it interrupted.
#[derive(Debug)]
pub struct CompletionQueue {
    qid: u16,
    depth: u16,
    mem: Coherent,
    doorbell: usize,
    vector: Option<u16>,
    busy: AtomicBool,
    head: AtomicU16,
    phase: AtomicBool,
    /// CID awaited, | [`AWAITING`]; 0 = none.
    expect: AtomicU32,
    /// dw0 | dw3 << 32 of the awaited completion, valid when `ready`.
    done: AtomicU64,
    ready: AtomicBool,
    interrupts: AtomicU64,
    by_irq: AtomicU64,
    by_poll: AtomicU64,
    stale: AtomicU64,
    wraps: AtomicU64,
}

const AWAITING: u32 = 1 << 16;

impl CompletionQueue {
    fn new(mem: Coherent, qid: u16, depth: u16, dstrd: u32, vector: Option<u16>) -> Self {
        CompletionQueue {
            qid,
            depth,
            mem,
            doorbell: regs::cq_head(qid, dstrd),
            vector,
            busy: AtomicBool::new(false),
            head: AtomicU16::new(0),
            phase: AtomicBool::new(true),
            expect: AtomicU32::new(0),
            done: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            interrupts: AtomicU64::new(0),
            by_irq: AtomicU64::new(0),
            by_poll: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            wraps: AtomicU64::new(0),
        }
    }

    /// Queue id (0 admin).
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// The MSI-X table entry this CQ interrupts on, if any.
    pub fn vector(&self) -> Option<u16> {
        self.vector
    }

    /// The counters.
    pub fn stats(&self) -> CqStats {
        CqStats {
            qid: self.qid,
            vector: self.vector,
            interrupts: self.interrupts.load(Ordering::Relaxed),
            completed_by_irq: self.by_irq.load(Ordering::Relaxed),
            completed_by_poll: self.by_poll.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            wraps: self.wraps.load(Ordering::Relaxed),
        }
    }

    /// The interrupt handler's work for this CQ's vector: consume new entries and
    /// ring the head doorbell ([`CompletionQueue::reap`]). Neither allocates nor logs.
    pub fn handle_interrupt<R: RegisterAccess + ?Sized>(&self, regs: &R) -> usize {
        self.interrupts.fetch_add(1, Ordering::Relaxed);
        self.reap(regs, true)
    }

    /// Consumes every entry whose phase tag matches, keeps the awaited one, and writes
    /// the head doorbell once if anything was consumed; returns how many. Does nothing
    /// (0) if the other side is consuming right now.
    pub fn reap<R: RegisterAccess + ?Sized>(&self, regs: &R, from_irq: bool) -> usize {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let mut head = self.head.load(Ordering::Relaxed);
        let mut phase = self.phase.load(Ordering::Relaxed);
        let mut n = 0;
        // At most one lap per call: a controller (or a bug) that kept posting with
        // the expected phase cannot hold the handler forever.
        while n < self.depth as usize {
            let off = head as usize * 16;
            let dw3 = self.mem.read::<u32>(off + 12);
            if (dw3 >> 16) & 1 != phase as u32 {
                break;
            }
            // Read the rest of the entry only after its phase tag.
            hal::dma_rmb();
            let dw0 = self.mem.read::<u32>(off);
            head += 1;
            if head == self.depth {
                head = 0;
                phase = !phase;
                self.wraps.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
            let want = self.expect.load(Ordering::Acquire);
            if want == (dw3 & 0xffff) | AWAITING {
                self.expect.store(0, Ordering::Relaxed);
                self.done
                    .store(dw0 as u64 | (dw3 as u64) << 32, Ordering::Relaxed);
                self.ready.store(true, Ordering::Release);
                let c = if from_irq {
                    &self.by_irq
                } else {
                    &self.by_poll
                };
                c.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        if n > 0 {
            self.head.store(head, Ordering::Relaxed);
            self.phase.store(phase, Ordering::Relaxed);
            regs.write32(self.doorbell, head as u32);
        }
        self.busy.store(false, Ordering::Release);
        n
    }

    /// Takes `busy` from thread context: the handler never holds it across a return,
    /// so this spins at most while a handler on another CPU finishes.
    fn lock(&self) {
        while self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
    }

    /// Back to the state after creation: head 0, phase 1, the entries zeroed so no
    /// stale entry carries the expected phase, nothing awaited.
    fn reset(&self) {
        self.lock();
        self.head.store(0, Ordering::Relaxed);
        self.phase.store(true, Ordering::Relaxed);
        self.expect.store(0, Ordering::Relaxed);
        self.ready.store(false, Ordering::Relaxed);
        let zeros = [0u8; 16];
        for i in 0..self.depth as usize {
            self.mem.write_bytes(16 * i, &zeros);
        }
        self.busy.store(false, Ordering::Release);
    }

    /// Awaits `cid` (before its command is submitted).
    fn arm(&self, cid: u16) {
        self.ready.store(false, Ordering::Relaxed);
        self.expect.store(cid as u32 | AWAITING, Ordering::Release);
    }

    /// Gives up waiting.
    fn disarm(&self) {
        self.expect.store(0, Ordering::Release);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The awaited completion's (dw0, dw3), once consumed.
    fn take(&self) -> Option<(u32, u32)> {
        if !self.ready.swap(false, Ordering::AcqRel) {
            return None;
        }
        let v = self.done.load(Ordering::Relaxed);
        Some((v as u32, (v >> 32) as u32))
    }
}

/// One submission/completion queue pair, each a page of coherent memory.
struct Queue {
    qid: u16,
    depth: u16,
    sq: Coherent,
    cq: Arc<CompletionQueue>,
    tail: u16,
    next_cid: u16,
}

impl Queue {
    fn new(
        dev: &Arc<DmaDevice>,
        qid: u16,
        depth: u16,
        dstrd: u32,
        vector: Option<u16>,
    ) -> Result<Queue, NvmeError> {
        let sq = dev.alloc_coherent(depth as usize * 64)?.into_device();
        let cq = dev.alloc_coherent(depth as usize * 16)?.into_device();
        Ok(Queue {
            qid,
            depth,
            sq,
            cq: Arc::new(CompletionQueue::new(cq, qid, depth, dstrd, vector)),
            tail: 0,
            next_cid: 0,
        })
    }

    /// Back to the state after creation: empty, phase 1, the CQ zeroed.
    fn reset(&mut self) {
        self.tail = 0;
        self.cq.reset();
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
    /// A handler consumes the CQs on their vectors: the waiter sleeps.
    irq_mode: bool,
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
        let dstrd = ((cap >> 32) & 0xf) as u32;
        // The admin CQ always interrupts on vector 0 (NVMe 1.4 §3.1.3).
        let admin_vec = (cfg.irq_vectors > 0).then_some(0);
        let admin = Queue::new(
            &dev,
            0,
            ADMIN_DEPTH.min(mqes.saturating_add(1)),
            dstrd,
            admin_vec,
        )?;
        let prp_pool = DmaPool::new(&dev, "nvme-prp-list", PAGE as usize, PAGE as usize, 0)?;
        let io_depth = cfg.io_depth.clamp(2, 64).min(mqes.saturating_add(1));
        let mut c = Controller {
            vs: regs.read32(regs::VS),
            dstrd,
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
            irq_mode: false,
        };
        if cfg.irq_vectors == 0 {
            // Completions are polled: mask the interrupt vectors (the admin CQ always
            // has interrupts enabled, and nobody owns the line). Not with MSI-X, where
            // the table's masks rule and INTMS must not be touched (NVMe 1.4 §3.1.3).
            c.regs.write32(regs::INTMS, u32::MAX);
        }
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
            "{}: {} {} fw {}, NVMe {}.{}, MDTS {} KiB",
            c.name,
            c.info.model,
            c.info.serial,
            c.info.firmware,
            c.vs >> 16,
            (c.vs >> 8) & 0xff,
            c.max_transfer() / 1024
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
        let acq = admin.cq.mem.dma_addr().as_u64();
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
            None => Queue::new(&self.dev, 1, self.io_depth, self.dstrd, self.io_vector())?,
        };
        let qsize = (q.depth as u32 - 1) << 16;
        let mut sqe = [0u32; 16];
        sqe[0] = opc::CREATE_CQ as u32;
        let cq = q.cq.mem.dma_addr().as_u64();
        sqe[6] = cq as u32;
        sqe[7] = (cq >> 32) as u32;
        sqe[10] = qsize | q.qid as u32;
        // PC = 1 (physically contiguous); IEN and IV (bits 31:16) when there is a
        // vector, else IEN = 0 and completions are polled.
        sqe[11] = match q.cq.vector {
            Some(v) => (v as u32) << 16 | 1 << 1 | 1,
            None => 1,
        };
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
        q.cq.arm(cid);
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
        let mut polled = !self.irq_mode;
        loop {
            if polled {
                q.cq.reap(&self.regs, false);
            }
            if let Some((dw0, dw3)) = q.cq.take() {
                let st = ((dw3 >> 17) & 0x7ff) as u16;
                return if st == 0 {
                    Outcome::Done(dw0)
                } else {
                    Outcome::Status(st, dw3 & (1 << 31) != 0)
                };
            }
            let csts = self.regs.read32(regs::CSTS);
            if csts == u32::MAX || csts & regs::CSTS_CFS != 0 {
                q.cq.disarm();
                return Outcome::Fatal;
            }
            if waited >= us {
                if !polled {
                    // A last look: a completion whose interrupt was lost.
                    let found = q.cq.reap(&self.regs, false) > 0;
                    if q.cq.is_ready() {
                        if found {
                            log::warn!(
                                "{}: queue {} completed cid {cid} without an interrupt",
                                self.name,
                                q.qid
                            );
                        }
                        continue;
                    }
                }
                q.cq.disarm();
                return Outcome::Timeout;
            }
            let slept = if polled {
                None
            } else {
                let cq = &q.cq;
                self.delay.wait_interrupt(us - waited, &|| cq.is_ready())
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

    /// The MSI-X table entry of the I/O CQ, if any.
    fn io_vector(&self) -> Option<u16> {
        match self.cfg.irq_vectors {
            0 => None,
            1 => Some(0),
            _ => Some(1),
        }
    }

    /// The completion queues (admin, then I/O), for the kernel's handler: on an
    /// interrupt on MSI-X entry `v`, call [`CompletionQueue::handle_interrupt`] of
    /// those whose [`CompletionQueue::vector`] is `v`. They live as long as the
    /// controller (a reset keeps them).
    pub fn completion_queues(&self) -> Vec<Arc<CompletionQueue>> {
        self.admin
            .iter()
            .chain(self.io.iter())
            .map(|q| q.cq.clone())
            .collect()
    }

    /// Turns waiting by interrupt on (once a handler serves the vectors) or off.
    /// Refused without vectors ([`Config::irq_vectors`] = 0): the CQs were created
    /// without interrupts.
    pub fn enable_interrupts(&mut self, on: bool) -> Result<(), NvmeError> {
        if on && self.cfg.irq_vectors == 0 {
            return Err(NvmeError::BadRequest(
                "no interrupt vectors (Config::irq_vectors is 0)",
            ));
        }
        self.irq_mode = on;
        Ok(())
    }

    /// Waiting by interrupt is on.
    pub fn interrupts_enabled(&self) -> bool {
        self.irq_mode
    }

    /// Counters of each CQ (admin, then I/O).
    pub fn cq_stats(&self) -> Vec<CqStats> {
        self.completion_queues().iter().map(|c| c.stats()).collect()
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
