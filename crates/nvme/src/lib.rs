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
//!   the waiter **polls** the phase tag every 10 µs.
//! * Commands in flight: each CQ has one completion slot per command identifier
//!   ([`SLOTS`]); the consumer puts an entry into the slot its CID names if that slot
//!   awaits exactly that CID (the CID's upper bits are a generation, so a late entry
//!   of an earlier command in the same slot counts as stale). [`Controller::read`],
//!   [`Controller::write`], [`Controller::flush`] and admin commands wait for their
//!   own CID; [`Controller::start_rw`] submits a read or write and returns its CID,
//!   keeping its mapping and PRP list with it, up to [`Controller::queue_depth`] at
//!   once, and [`Controller::complete_next`] waits for whichever ends next (the
//!   block layer's `start`/`complete`). Both may be mixed: a waited command takes a
//!   CID of its own and leaves the others' completions in their slots.
//! * Errors: a command not completed within the timeout of its start ends with
//!   [`NvmeError::Timeout`] (in interrupt mode after a last look at the CQ: a lost
//!   interrupt costs time, not data), CSTS.CFS with [`NvmeError::ControllerFatal`];
//!   after either the controller is reset (disabled, which stops its DMA, then
//!   brought up again) and **only then** is the memory of the failed command, and of
//!   every other command in flight, unmapped; started commands the reset ends come
//!   back from `complete_next` with an error ([`NvmeError::Timeout`] if their own
//!   timeout had passed, else [`NvmeError::Aborted`]). Timeouts are measured in the
//!   time the driver waited ([`Controller::now_us`]). A failed reset takes the
//!   controller out of service. A completion with a status is [`NvmeError::Status`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod ctrl;
mod disk;
mod error;
mod identify;
mod io;
mod mq;
mod prp;
mod queue;

pub use disk::NvmeDisk;
pub use error::{status_name, NvmeError};
pub use identify::{parse_identify_ctrl, parse_identify_ns, CtrlInfo, Namespace};
use mq::{Cmd, ResetCause};
pub use mq::{Completion, MAX_QUEUED};
use prp::trace_prps;
pub use prp::{build_prps, Prps};
pub use queue::{CompletionQueue, CqStats, SLOTS};
use queue::{Outcome, Queue};

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use block::{BlockDevice, BlockError, Op, QueueLimits, Request, Tag};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use dma::{
    dma_bit_mask, Coherent, DmaBuf, DmaDevice, DmaDirection, DmaError, DmaPool, DmaPoolBlock,
    DmaSegment, DmaStream, FromDevice, PoolError, SgMapping, SgTable,
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
    /// Admin: Asynchronous Event Request (completed only when an event occurs).
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
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
    /// Commands `start_rw` put in flight on the I/O queue, by CID slot.
    cmds: Vec<Option<Cmd>>,
    /// Started commands that ended, in the order `complete_next` returns them.
    finished: VecDeque<Completion>,
    /// Start order of `cmds`.
    seq: u64,
    /// µs the driver has waited ([`Controller::now_us`]).
    clock_us: AtomicU64,
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
            cmds: (0..SLOTS).map(|_| None).collect(),
            finished: VecDeque::new(),
            seq: 0,
            clock_us: AtomicU64::new(0),
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
        match self.disable() {
            // Stopped: started commands nobody completed can be unmapped (before the
            // PRP pool goes).
            Ok(()) => self.cmds.clear(),
            Err(e) => {
                // It may still fetch and post: its queue memory must never be reused.
                log::error!("{}: {e}; its queues are leaked", self.name);
                core::mem::forget(self.io.take());
                core::mem::forget(self.admin.take());
                // And so is the memory of the commands in flight.
                for c in self.cmds.drain(..) {
                    core::mem::forget(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
