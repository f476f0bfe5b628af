//! Behavioural model of an NVMe 1.4 controller with one namespace, as the NVMe 1.4
//! specification describes it and QEMU 7.2's `hw/nvme` emulates it (facts only;
//! declared here independently of the driver crate).
//!
//! The model implements `hal::RegisterAccess` (BAR0) and reaches memory only through a
//! [`DmaBus`], so a test can put an IOMMU model (or nothing) between it and RAM.
//! A write to a submission queue's tail doorbell runs every new command synchronously
//! and posts its completion (phase tag, SQ head, CID, status) to the paired CQ.
//!
//! Modelled:
//! * CAP (MQES, CQR, TO, DSTRD, CSS NVM, MPSMIN = MPSMAX = 0: 4 KiB pages), VS 1.4, CC
//!   (EN 0→1 checks AQA/ASQ/ACQ and MPS, sets CSTS.RDY; EN 1→0 resets the queues and
//!   CSTS, CFS included), AQA, ASQ, ACQ, doorbells at 0x1000 + (2·qid + {0 SQ, 1 CQ})·
//!   (4 << DSTRD).
//! * Admin: Identify (CNS 1 controller: serial, model, MDTS, NN; CNS 0 namespace 1:
//!   NSZE/NCAP/NUSE, one LBA format), Set Features 0x07 (number of queues, granted up
//!   to [`Options::max_ioqpairs`]), Create I/O CQ / SQ (physically contiguous only; the
//!   queue id, size and CQ checked; IOSQES/IOCQES must be 6/4), Delete SQ/CQ.
//! * NVM: Read, Write, Flush on namespace 1 backed by a byte vector. Data moves through
//!   PRP1/PRP2 or a PRP list (chained through the last entry of a full list page) with
//!   QEMU's rules: PRP2 and every list entry must be page aligned (else "PRP Offset
//!   Invalid", 0x13), PRP1 dword aligned; a transfer larger than MDTS is "Invalid
//!   Field" (0x02); an LBA range past the end is "LBA Out of Range" (0x80).
//! * Fault injection: a media error at an LBA (read: SCT 2 / 0x81 Unrecovered Read
//!   Error; write: SCT 2 / 0x80 Write Fault), I/O commands that are fetched and never
//!   completed ([`NvmeModel::set_hung`]; admin commands too with
//!   [`NvmeModel::set_hung_admin`]), a controller fatal status
//!   ([`NvmeModel::set_fatal`]: CSTS.CFS, nothing more is processed until CC.EN is
//!   cleared).
//! * Completion order: with [`NvmeModel::set_deferred`] I/O commands are fetched and
//!   logged but run (data moved, CQE posted) only when a test calls
//!   [`NvmeModel::complete_deferred`] with their CIDs, in the order it chooses, as a
//!   real controller completes commands out of submission order;
//!   [`NvmeModel::post_cqe`] posts an entry for any CID (a late or stray completion);
//!   with [`NvmeModel::set_dma_until_disabled`] the deferred commands still move
//!   their data when CC.EN is cleared, before the reset (transfers under way finish
//!   before the controller reports CSTS.RDY = 0), so memory unmapped too early faults.
//! * Asynchronous Event Requests (admin 0x0C) are held, never completed: the model has
//!   no events to report (QEMU holds them in `aer_reqs` the same way); a controller
//!   reset drops them.
//! * MSI-X as QEMU's `nvme_post_cqes` / `nvme_irq_assert` do it: after posting an entry
//!   to a CQ with interrupts enabled (the admin CQ always, vector 0; an I/O CQ when
//!   created with IEN, on its IV) the model sends one message on that vector; a test
//!   takes them with [`NvmeModel::take_interrupts`] and plays the CPU's part.

use crate::ahci::{BusFault, DmaBus};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use hal::RegisterAccess;

mod admin;
mod io;
mod queue;

/// Controller memory page size (CC.MPS = 0).
pub const PAGE: u64 = 4096;
const SQE: u64 = 64;
const CQE: u64 = 16;

/// Status codes, generic (SCT 0).
pub mod status {
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: u16 = 0x01;
    /// Invalid Field in Command.
    pub const INVALID_FIELD: u16 = 0x02;
    /// Data Transfer Error.
    pub const DATA_TRANSFER: u16 = 0x04;
    /// Invalid Namespace or Format.
    pub const INVALID_NS: u16 = 0x0b;
    /// PRP Offset Invalid.
    pub const PRP_OFFSET: u16 = 0x13;
    /// LBA Out of Range.
    pub const LBA_RANGE: u16 = 0x80;
    /// Command specific (SCT 1): Completion Queue Invalid.
    pub const CQ_INVALID: u16 = 0x100;
    /// Command specific (SCT 1): Invalid Queue Identifier.
    pub const INVALID_QID: u16 = 0x101;
    /// Command specific (SCT 1): Invalid Queue Size.
    pub const INVALID_QSIZE: u16 = 0x102;
    /// Command specific (SCT 1): Invalid Interrupt Vector.
    pub const INVALID_IV: u16 = 0x108;
    /// Media (SCT 2): Write Fault.
    pub const WRITE_FAULT: u16 = 0x280;
    /// Media (SCT 2): Unrecovered Read Error.
    pub const UNRECOVERED_READ: u16 = 0x281;
}

/// Model construction options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Sectors on namespace 1.
    pub sectors: u64,
    /// LBA data size as a power of two (9: 512 B).
    pub lba_shift: u8,
    /// MDTS in units of the minimum page (QEMU's default 7: 512 KiB); 0 = no limit.
    pub mdts: u8,
    /// CAP.MQES (0-based; QEMU 2047).
    pub mqes: u16,
    /// CAP.DSTRD.
    pub dstrd: u8,
    /// I/O queue pairs Set Features grants at most.
    pub max_ioqpairs: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sectors: 2048,
            lba_shift: 9,
            mdts: 7,
            mqes: 2047,
            dstrd: 0,
            max_ioqpairs: 4,
            serial: String::from("busmaster"),
            model: String::from("QEMU NVMe Ctrl"),
        }
    }
}

/// One command the model fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdLog {
    /// Queue.
    pub qid: u16,
    /// Opcode.
    pub opcode: u8,
    /// Command identifier.
    pub cid: u16,
    /// Namespace.
    pub nsid: u32,
    /// PRP1.
    pub prp1: u64,
    /// PRP2.
    pub prp2: u64,
    /// CDW10..CDW15.
    pub cdw: [u32; 6],
    /// The PRP list entries the model read (empty without a list).
    pub prp_list: Vec<u64>,
    /// The memory the data moved through: (bus address, bytes), page by page.
    pub data: Vec<(u64, usize)>,
    /// Status posted (SCT << 8 | SC), `None` while not completed.
    pub status: Option<u16>,
}

impl CmdLog {
    /// SLBA of a read or write.
    pub fn slba(&self) -> u64 {
        self.cdw[0] as u64 | (self.cdw[1] as u64) << 32
    }
    /// Blocks of a read or write (NLB + 1).
    pub fn blocks(&self) -> u32 {
        (self.cdw[2] & 0xffff) + 1
    }
}

/// Something the model refused or noticed, for assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    /// A DMA the bus refused.
    Bus(BusFault),
    /// A doorbell for a queue that does not exist, or a tail/head out of range.
    BadDoorbell {
        /// Offset.
        offset: usize,
        /// Value.
        value: u32,
    },
    /// A completion queue was full: the completion was dropped.
    CqFull {
        /// Queue.
        qid: u16,
    },
    /// A register access the model does not support.
    BadAccess {
        /// Offset.
        offset: usize,
    },
}

#[derive(Clone, Copy)]
struct Sq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    cqid: u16,
}

#[derive(Clone, Copy)]
struct Cq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    phase: bool,
    /// Interrupts enabled (IEN), on MSI-X vector `iv`.
    ien: bool,
    iv: u16,
}

struct State {
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    intms: u32,
    sqs: Vec<Option<Sq>>,
    cqs: Vec<Option<Cq>>,
    data: Vec<u8>,
    media_errors: Vec<u64>,
    hung: bool,
    hung_admin: bool,
    deferred: bool,
    /// Deferred commands move their data when CC.EN is cleared.
    dma_until_disabled: bool,
    /// Deferred I/O commands: (SQ, CQ, index in `log`).
    held: Vec<(usize, u16, usize)>,
    fatal: bool,
    log: Vec<CmdLog>,
    errors: Vec<ModelError>,
    resets: usize,
    flushes: usize,
    granted_queues: u16,
    /// MSI-X messages sent and not yet taken, per vector (bit n = vector n).
    msix_pending: u32,
    /// MSI-X messages sent, per vector.
    msix_sent: Vec<usize>,
}

/// The controller model over bus `B`.
pub struct NvmeModel<B: DmaBus> {
    bus: B,
    opts: Options,
    s: RefCell<State>,
}

/// Admin: Asynchronous Event Request.
const ASYNC_EVENT_REQUEST: u8 = 0x0c;
const CC_EN: u32 = 1;
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 2;
/// Queues the model has slots for (admin + 16 I/O).
const MAX_QUEUES: usize = 17;

/// Outcome of one command: status, and DW0.
type Done = (u16, u32);

impl<B: DmaBus> NvmeModel<B> {
    /// A controller after power-on (CC.EN = 0), namespace 1 zeroed.
    pub fn new(bus: B, opts: Options) -> Self {
        let bytes = (opts.sectors << opts.lba_shift) as usize;
        NvmeModel {
            bus,
            s: RefCell::new(State {
                cc: 0,
                csts: 0,
                aqa: 0,
                asq: 0,
                acq: 0,
                intms: 0,
                sqs: vec![None; MAX_QUEUES],
                cqs: vec![None; MAX_QUEUES],
                data: vec![0; bytes],
                media_errors: Vec::new(),
                hung: false,
                hung_admin: false,
                deferred: false,
                dma_until_disabled: false,
                held: Vec::new(),
                fatal: false,
                log: Vec::new(),
                errors: Vec::new(),
                resets: 0,
                flushes: 0,
                granted_queues: 0,
                msix_pending: 0,
                msix_sent: vec![0; 32],
            }),
            opts,
        }
    }

    /// CAP as the driver reads it.
    pub fn cap(&self) -> u64 {
        let o = &self.opts;
        o.mqes as u64
            | 1 << 16 // CQR: queues physically contiguous
            | 20 << 24 // TO: 10 s in 500 ms units
            | (o.dstrd as u64 & 0xf) << 32
            | 1 << 37 // CSS: NVM command set
    }

    fn lba_size(&self) -> usize {
        1 << self.opts.lba_shift
    }

    /// Bytes of namespace 1.
    pub fn disk_bytes(&self, off: usize, len: usize) -> Vec<u8> {
        self.s.borrow().data[off..off + len].to_vec()
    }

    /// Writes namespace 1's bytes (as the host writing an image).
    pub fn write_disk(&self, off: usize, data: &[u8]) {
        self.s.borrow_mut().data[off..off + data.len()].copy_from_slice(data);
    }

    /// Reads and writes touching `lba` fail with a media error.
    pub fn set_media_error(&self, lba: u64) {
        self.s.borrow_mut().media_errors.push(lba);
    }

    /// I/O commands are fetched and never completed (or healed).
    pub fn set_hung(&self, hung: bool) {
        self.s.borrow_mut().hung = hung;
    }

    /// Admin commands are fetched and never completed (or healed).
    pub fn set_hung_admin(&self, hung: bool) {
        self.s.borrow_mut().hung_admin = hung;
    }

    /// Controller fatal status: CSTS.CFS, nothing more processed until a reset.
    pub fn set_fatal(&self) {
        let mut s = self.s.borrow_mut();
        s.fatal = true;
        s.csts |= CSTS_CFS;
    }

    /// Commands fetched so far.
    pub fn commands(&self) -> Vec<CmdLog> {
        self.s.borrow().log.clone()
    }

    /// Refusals so far.
    pub fn errors(&self) -> Vec<ModelError> {
        self.s.borrow().errors.clone()
    }

    /// Controller resets (CC.EN 1 → 0) so far.
    pub fn resets(&self) -> usize {
        self.s.borrow().resets
    }

    /// Flush commands completed.
    pub fn flushes(&self) -> usize {
        self.s.borrow().flushes
    }

    /// I/O queue pairs that exist now (SQs).
    pub fn io_queues(&self) -> usize {
        self.s.borrow().sqs[1..]
            .iter()
            .filter(|q| q.is_some())
            .count()
    }

    fn err(&self, e: ModelError) {
        self.s.borrow_mut().errors.push(e);
    }

    fn doorbell_index(&self, offset: usize) -> Option<(usize, bool)> {
        let stride = 4usize << self.opts.dstrd;
        let rel = offset.checked_sub(0x1000)?;
        if rel % stride != 0 {
            return None;
        }
        let n = rel / stride;
        Some((n / 2, n % 2 == 1))
    }

    fn controller_reset(&self) {
        let mut s = self.s.borrow_mut();
        s.sqs.iter_mut().for_each(|q| *q = None);
        s.cqs.iter_mut().for_each(|q| *q = None);
        s.csts = 0;
        s.fatal = false;
        s.held.clear();
        s.granted_queues = 0;
        s.resets += 1;
    }

    fn enable(&self) {
        let mut s = self.s.borrow_mut();
        let asqs = (s.aqa & 0xfff) as u16;
        let acqs = ((s.aqa >> 16) & 0xfff) as u16;
        let mps = (s.cc >> 7) & 0xf;
        let css = (s.cc >> 4) & 0x7;
        // QEMU's nvme_start_ctrl: queues page aligned, sizes non-zero, MPS in range.
        if s.asq == 0
            || s.acq == 0
            || s.asq & (PAGE - 1) != 0
            || s.acq & (PAGE - 1) != 0
            || asqs == 0
            || acqs == 0
            || mps != 0
            || css != 0
        {
            s.csts |= CSTS_CFS;
            return;
        }
        s.sqs[0] = Some(Sq {
            base: s.asq,
            size: asqs + 1,
            head: 0,
            tail: 0,
            cqid: 0,
        });
        s.cqs[0] = Some(Cq {
            base: s.acq,
            size: acqs + 1,
            head: 0,
            tail: 0,
            phase: true,
            ien: true,
            iv: 0,
        });
        s.csts = CSTS_RDY;
    }

    /// The MSI-X vectors messages were sent on since the last call (bit n = vector n),
    /// as the CPU would receive them.
    pub fn take_interrupts(&self) -> u32 {
        core::mem::take(&mut self.s.borrow_mut().msix_pending)
    }

    /// MSI-X messages sent on `vector` so far.
    pub fn interrupts_sent(&self, vector: u16) -> usize {
        self.s
            .borrow()
            .msix_sent
            .get(vector as usize)
            .copied()
            .unwrap_or(0)
    }

    /// The CQ head the driver last wrote to `qid`'s head doorbell.
    pub fn cq_head(&self, qid: usize) -> Option<u16> {
        self.s
            .borrow()
            .cqs
            .get(qid)
            .copied()
            .flatten()
            .map(|q| q.head)
    }
}

impl<B: DmaBus> RegisterAccess for NvmeModel<B> {
    fn read8(&self, offset: usize) -> u8 {
        (self.read32(offset & !3) >> (8 * (offset & 3))) as u8
    }

    fn read16(&self, offset: usize) -> u16 {
        (self.read32(offset & !3) >> (8 * (offset & 2))) as u16
    }

    fn read32(&self, offset: usize) -> u32 {
        let s = self.s.borrow();
        match offset {
            0x00 => self.cap() as u32,
            0x04 => (self.cap() >> 32) as u32,
            0x08 => 0x0001_0400,
            0x0c | 0x10 => s.intms,
            0x14 => s.cc,
            0x1c => s.csts,
            0x24 => s.aqa,
            0x28 => s.asq as u32,
            0x2c => (s.asq >> 32) as u32,
            0x30 => s.acq as u32,
            0x34 => (s.acq >> 32) as u32,
            _ => 0,
        }
    }

    fn write8(&self, offset: usize, _value: u8) {
        self.err(ModelError::BadAccess { offset });
    }

    fn write16(&self, offset: usize, _value: u16) {
        self.err(ModelError::BadAccess { offset });
    }

    fn write32(&self, offset: usize, value: u32) {
        if offset >= 0x1000 {
            match self.doorbell_index(offset) {
                Some((qid, cq)) => self.doorbell(qid, cq, value, offset),
                None => self.err(ModelError::BadAccess { offset }),
            }
            return;
        }
        match offset {
            0x0c => self.s.borrow_mut().intms |= value,
            0x10 => self.s.borrow_mut().intms &= !value,
            0x14 => {
                let old = self.s.borrow().cc;
                self.s.borrow_mut().cc = value;
                if old & CC_EN == 0 && value & CC_EN != 0 {
                    self.enable();
                } else if old & CC_EN != 0 && value & CC_EN == 0 {
                    if self.s.borrow().dma_until_disabled {
                        self.finish_transfers();
                    }
                    self.controller_reset();
                }
            }
            0x24 => self.s.borrow_mut().aqa = value & 0x0fff_0fff,
            0x28 => {
                let mut s = self.s.borrow_mut();
                s.asq = (s.asq & !0xffff_ffff) | value as u64;
            }
            0x2c => {
                let mut s = self.s.borrow_mut();
                s.asq = (s.asq & 0xffff_ffff) | (value as u64) << 32;
            }
            0x30 => {
                let mut s = self.s.borrow_mut();
                s.acq = (s.acq & !0xffff_ffff) | value as u64;
            }
            0x34 => {
                let mut s = self.s.borrow_mut();
                s.acq = (s.acq & 0xffff_ffff) | (value as u64) << 32;
            }
            _ => self.err(ModelError::BadAccess { offset }),
        }
    }
}
