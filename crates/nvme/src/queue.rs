//! Queue pairs (Linux's nvme pci driver: `nvme_alloc_queue`, `nvme_create_queue`,
//! `nvme_process_cq`, `nvme_poll`): submission and completion queues, the phase tag,
//! doorbells, per-CID completion slots, the I/O queue pair's creation, and one
//! command's submit-and-wait.

use super::*;

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
/// (coherent memory), the consumer's head and phase, and one completion slot per
/// command in flight. Consumption is serialised by a flag the handler only tries (it
/// never spins), so the handler cannot deadlock against the code it interrupted.
///
/// A command identifier names its slot in its low bits (`cid % SLOTS`) and a
/// generation in the bits above, so the same slot's earlier commands have other CIDs:
/// a late entry for one of them finds the slot awaiting another CID and is counted
/// `stale`, not taken for the newer command's completion.
#[derive(Debug)]
pub struct CompletionQueue {
    qid: u16,
    depth: u16,
    pub(crate) mem: Coherent,
    doorbell: usize,
    vector: Option<u16>,
    busy: AtomicBool,
    head: AtomicU16,
    phase: AtomicBool,
    slots: [Slot; SLOTS],
    /// Bit n: slot n holds its command's completion, not yet taken.
    ready: AtomicU64,
    interrupts: AtomicU64,
    by_irq: AtomicU64,
    by_poll: AtomicU64,
    stale: AtomicU64,
    wraps: AtomicU64,
}

/// Completion slots per CQ (and the CID's slot bits): at least the deepest queue.
pub const SLOTS: usize = 64;

const AWAITING: u32 = 1 << 16;

/// One command's completion slot.
#[derive(Debug, Default)]
struct Slot {
    /// CID awaited, | [`AWAITING`]; 0 = none.
    expect: AtomicU32,
    /// dw0 | dw3 << 32 of the completion, valid when the slot's `ready` bit is set.
    done: AtomicU64,
}

/// The slot a CID names.
pub(crate) fn slot_of(cid: u16) -> usize {
    cid as usize % SLOTS
}

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
            slots: core::array::from_fn(|_| Slot::default()),
            ready: AtomicU64::new(0),
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

    /// Consumes every entry whose phase tag matches, puts each awaited one in its
    /// command's slot (the others count as stale), and writes
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
            let cid = dw3 as u16;
            let slot = &self.slots[slot_of(cid)];
            if slot
                .expect
                .compare_exchange(
                    cid as u32 | AWAITING,
                    0,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                slot.done
                    .store(dw0 as u64 | (dw3 as u64) << 32, Ordering::Relaxed);
                self.ready.fetch_or(1 << slot_of(cid), Ordering::Release);
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
        for s in &self.slots {
            s.expect.store(0, Ordering::Relaxed);
        }
        self.ready.store(0, Ordering::Relaxed);
        let zeros = [0u8; 16];
        for i in 0..self.depth as usize {
            self.mem.write_bytes(16 * i, &zeros);
        }
        self.busy.store(false, Ordering::Release);
    }

    /// Awaits `cid` in its slot (before its command is submitted).
    pub(crate) fn arm(&self, cid: u16) {
        let n = slot_of(cid);
        self.ready.fetch_and(!(1 << n), Ordering::Relaxed);
        self.slots[n]
            .expect
            .store(cid as u32 | AWAITING, Ordering::Release);
    }

    /// Gives up waiting for `cid` (its slot is left alone if it awaits another CID).
    pub(crate) fn disarm(&self, cid: u16) {
        let _ = self.slots[slot_of(cid)].expect.compare_exchange(
            cid as u32 | AWAITING,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Whether `cid`'s completion is in its slot.
    pub(crate) fn is_ready(&self, cid: u16) -> bool {
        self.ready.load(Ordering::Acquire) & 1 << slot_of(cid) != 0
    }

    /// Whether any slot of `mask` (bit n: slot n) holds a completion.
    pub(crate) fn any_ready(&self, mask: u64) -> bool {
        self.ready.load(Ordering::Acquire) & mask != 0
    }

    /// `cid`'s completion (dw0, dw3), once consumed; the slot is free again.
    pub(crate) fn take(&self, cid: u16) -> Option<(u32, u32)> {
        let bit = 1u64 << slot_of(cid);
        if self.ready.fetch_and(!bit, Ordering::AcqRel) & bit == 0 {
            return None;
        }
        let v = self.slots[slot_of(cid)].done.load(Ordering::Relaxed);
        Some((v as u32, (v >> 32) as u32))
    }

    /// The slots of `mask` holding a completion (bit n: slot n).
    pub(crate) fn ready_in(&self, mask: u64) -> u64 {
        self.ready.load(Ordering::Acquire) & mask
    }
}

/// One submission/completion queue pair, each a page of coherent memory.
pub(crate) struct Queue {
    pub(crate) qid: u16,
    pub(crate) depth: u16,
    pub(crate) sq: Coherent,
    pub(crate) cq: Arc<CompletionQueue>,
    pub(crate) tail: u16,
    pub(crate) next_cid: u16,
    /// Bit n: slot n belongs to a command (in flight, or ended and not yet returned
    /// by `complete`).
    pub(crate) used: u64,
}

impl Queue {
    pub(crate) fn new(
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
            used: 0,
        })
    }

    /// Back to the state after creation: empty, phase 1, the CQ zeroed. The slots
    /// stay with their owners, who free them.
    pub(crate) fn reset(&mut self) {
        self.tail = 0;
        self.cq.reset();
    }

    /// Commands that can be outstanding at once: one SQ entry stays empty (a full
    /// ring would look empty), and each command has at most one entry in each ring.
    pub(crate) fn room(&self) -> usize {
        (self.depth as usize - 1).min(SLOTS)
    }

    /// A fresh CID whose slot is free: the next in sequence whose slot is not in use
    /// (so a slot's CIDs differ in their generation bits). `None`: the queue is full.
    pub(crate) fn alloc_cid(&mut self) -> Option<u16> {
        if self.used.count_ones() as usize >= self.room() {
            return None;
        }
        for _ in 0..SLOTS {
            let cid = self.next_cid;
            self.next_cid = self.next_cid.wrapping_add(1);
            let bit = 1u64 << slot_of(cid);
            if self.used & bit == 0 {
                self.used |= bit;
                return Some(cid);
            }
        }
        None
    }

    /// Gives `cid`'s slot back.
    pub(crate) fn free_cid(&mut self, cid: u16) {
        self.used &= !(1u64 << slot_of(cid));
    }

    /// Awaits `cid`, writes `sqe` with it to the SQ and rings the tail doorbell.
    pub(crate) fn submit<R: RegisterAccess>(
        &mut self,
        regs: &R,
        dstrd: u32,
        cid: u16,
        mut sqe: [u32; 16],
    ) {
        self.cq.arm(cid);
        sqe[0] = (sqe[0] & 0xffff) | (cid as u32) << 16;
        let base = self.tail as usize * 64;
        for (i, dw) in sqe.iter().enumerate() {
            self.sq.write::<u32>(base + 4 * i, *dw);
        }
        self.tail = (self.tail + 1) % self.depth;
        // The entry must be in memory before the controller is told to fetch it.
        hal::dma_wmb();
        regs.write32(regs::sq_tail(self.qid, dstrd), self.tail as u32);
    }
}

/// How a command ended, before recovery.
pub(crate) enum Outcome {
    Done(u32),
    Status(u16, bool),
    Timeout,
    Fatal,
    /// Every CID of the queue is taken (commands started with `start_rw`).
    Full,
}

impl<R: RegisterAccess, D: Delay> Controller<R, D> {
    pub(crate) fn create_io_queues(&mut self) -> Result<(), NvmeError> {
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

    /// Writes `sqe` (CID filled in) to `q`, rings its doorbell and waits for its
    /// completion (by interrupt, or polling), the controller's status and the clock.
    /// Other commands of `q` (started by [`Controller::start_rw`]) may be in flight:
    /// this one takes its own CID and waits for that only; theirs stay in their slots.
    pub(crate) fn run(&self, q: &mut Queue, sqe: [u32; 16]) -> Outcome {
        let Some(cid) = q.alloc_cid() else {
            return Outcome::Full;
        };
        q.submit(&self.regs, self.dstrd, cid, sqe);
        let out = self.wait_cid(q, cid);
        q.cq.disarm(cid);
        q.free_cid(cid);
        out
    }

    fn wait_cid(&self, q: &Queue, cid: u16) -> Outcome {
        let us = self.cfg.command_timeout_ms.saturating_mul(1000);
        let mut waited = 0u32;
        let mut polled = !self.irq_mode;
        loop {
            if polled {
                q.cq.reap(&self.regs, false);
            }
            if let Some((dw0, dw3)) = q.cq.take(cid) {
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
                if !polled {
                    // A last look: a completion whose interrupt was lost.
                    let found = q.cq.reap(&self.regs, false) > 0;
                    if q.cq.is_ready(cid) {
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
                return Outcome::Timeout;
            }
            let cq = &q.cq;
            let t = self.wait_step(&mut polled, us - waited, &|| cq.is_ready(cid));
            waited = waited.saturating_add(t);
        }
    }

    /// One wait of a command's loop: for the interrupt (at most `left` µs, until
    /// `done`), or, once polling (no interrupts, or none usable), [`POLL_US`].
    /// Advances the timeout clock by the time waited and returns it.
    pub(crate) fn wait_step(&self, polled: &mut bool, left: u32, done: &dyn Fn() -> bool) -> u32 {
        let slept = if *polled {
            None
        } else {
            self.delay.wait_interrupt(left, done)
        };
        let t = match slept {
            Some(t) => t.max(1),
            None => {
                *polled = true;
                self.delay.delay_us(POLL_US);
                POLL_US
            }
        };
        self.tick(t);
        t
    }
}
