//! Commands in flight together (Linux's `nvme_queue_rq`, `nvme_pci_complete_rq`,
//! `nvme_timeout`): start a read or write and return at once, complete whichever
//! ends next, and end every command in flight, with an error, when a timeout or a
//! fatal status resets the controller.

use super::*;

/// Most commands [`Controller::start_rw`] keeps in flight (and less than the I/O
/// queue's room, so the synchronous path still finds a CID).
pub const MAX_QUEUED: usize = 32;

/// A started command: what must live until the controller can no longer reach its
/// memory.
pub(crate) struct Cmd {
    cid: u16,
    opcode: u8,
    lba: u64,
    /// Start order (the order a reset ends them in).
    seq: u64,
    /// [`Controller::now_us`] when it was submitted.
    started_us: u64,
    map: SgMapping,
    prps: Prps,
}

/// How a started command ended ([`Controller::complete_next`]).
#[derive(Debug)]
pub struct Completion {
    /// Its CID, as [`Controller::start_rw`] returned it.
    pub tag: u16,
    /// Its first sector.
    pub lba: u64,
    /// The scatter list back (unmapped), or why it failed.
    pub result: Result<SgTable, NvmeError>,
}

/// Why the controller is reset: decides the error each command in flight ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResetCause {
    /// A command timed out: those past their own timeout end in
    /// [`NvmeError::Timeout`], the others in [`NvmeError::Aborted`].
    Timeout,
    /// CSTS.CFS: every one ends in [`NvmeError::ControllerFatal`].
    Fatal,
    /// Anything else (a synchronous command's failure, a caller's reset).
    Other,
}

impl<R: RegisterAccess, D: Delay> Controller<R, D> {
    /// Most commands [`start_rw`](Self::start_rw) keeps in flight: the I/O queue's
    /// room less one, at most [`MAX_QUEUED`].
    pub fn queue_depth(&self) -> usize {
        (self.io_depth as usize)
            .saturating_sub(2)
            .clamp(1, MAX_QUEUED)
    }

    /// Commands started and not yet returned by [`complete_next`](Self::complete_next)
    /// (in flight, or ended and waiting to be collected).
    pub fn queued(&self) -> usize {
        self.cmds.iter().flatten().count() + self.finished.len()
    }

    /// PRP list pages held by commands now (each command with a list holds one until
    /// it is over).
    pub fn prp_lists_in_use(&self) -> usize {
        self.prp_pool.stats().in_use
    }

    /// The clock commands' timeouts are measured by: µs the driver has waited so far
    /// (a command's timeout counts the time the driver waited since its start).
    pub fn now_us(&self) -> u64 {
        self.clock_us.load(Ordering::Relaxed)
    }

    pub(crate) fn tick(&self, us: u32) {
        self.clock_us.fetch_add(us as u64, Ordering::Relaxed);
    }

    /// Starts a read (`write` false) of `len(sg) / sector size` blocks from `lba` into
    /// `sg`, or a write of `sg` to `lba`, and returns its tag (the CID) without
    /// waiting: the scatter list is mapped, its PRPs built and the command submitted;
    /// mapping and PRP list stay with the command until
    /// [`complete_next`](Self::complete_next) returns it. The memory must stay
    /// allocated until then. [`NvmeError::QueueFull`] when
    /// [`queue_depth`](Self::queue_depth) commands are queued.
    pub fn start_rw(&mut self, lba: u64, sg: SgTable, write: bool) -> Result<u16, NvmeError> {
        if self.failed {
            return Err(NvmeError::Failed);
        }
        let ns = self.ns()?;
        let count = self.check_rw(lba, &sg)?;
        let depth = self.queue_depth();
        if self.queued() >= depth {
            return Err(NvmeError::QueueFull { depth });
        }
        let q = self
            .io
            .as_mut()
            .ok_or(NvmeError::BadRequest("queue not set up"))?;
        let cid = q.alloc_cid().ok_or(NvmeError::QueueFull { depth })?;
        let dir = if write {
            DmaDirection::ToDevice
        } else {
            DmaDirection::FromDevice
        };
        let prepared = self
            .dev
            .map_sg(sg, dir)
            .map_err(NvmeError::from)
            .and_then(|m| match build_prps(m.segments(), &self.prp_pool) {
                Ok(p) => Ok((m, p)),
                Err(e) => {
                    drop(m.unmap());
                    Err(e)
                }
            });
        let q = self
            .io
            .as_mut()
            .ok_or(NvmeError::BadRequest("queue not set up"))?;
        let (map, prps) = match prepared {
            Ok(x) => x,
            Err(e) => {
                q.free_cid(cid);
                return Err(e);
            }
        };
        trace_prps(map.segments(), &prps);
        let sqe = rw_sqe(write, ns.nsid, lba, count, &prps);
        q.submit(&self.regs, self.dstrd, cid, sqe);
        self.seq += 1;
        self.cmds[queue::slot_of(cid)] = Some(Cmd {
            cid,
            opcode: sqe[0] as u8,
            lba,
            seq: self.seq,
            started_us: self.now_us(),
            map,
            prps,
        });
        Ok(cid)
    }

    /// Slots of the commands in flight (bit n: slot n).
    fn in_flight_mask(&self) -> u64 {
        self.cmds
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .fold(0, |m, (n, _)| m | 1 << n)
    }

    /// Waits for the next started command to end and returns it (of several that
    /// have ended, the one started first): by interrupt when
    /// they are on (with a last look at the CQ at the timeout: a lost interrupt costs
    /// time, not data), else by polling the phase tag. A command not done within the
    /// command timeout of its start, or CSTS.CFS, resets the controller, and every
    /// command in flight then ends with an error (its memory unmapped once the
    /// controller is disabled); those come back from this call one by one.
    /// [`NvmeError::NothingInFlight`] if nothing was started.
    pub fn complete_next(&mut self) -> Result<Completion, NvmeError> {
        loop {
            if let Some(c) = self.finished.pop_front() {
                if let Some(q) = self.io.as_mut() {
                    q.free_cid(c.tag);
                }
                return Ok(c);
            }
            let mask = self.in_flight_mask();
            if mask == 0 {
                return Err(NvmeError::NothingInFlight);
            }
            let cq = match &self.io {
                Some(q) => q.cq.clone(),
                None => return Err(NvmeError::BadRequest("queue not set up")),
            };
            self.wait_any(&cq, mask);
        }
    }

    /// Waits until one command of `mask` ended (moved to `finished`) or a reset ended
    /// them all.
    fn wait_any(&mut self, cq: &CompletionQueue, mask: u64) {
        let timeout = self.cfg.command_timeout_ms as u64 * 1000;
        let mut polled = !self.irq_mode;
        let mut looked = false;
        loop {
            if polled {
                cq.reap(&self.regs, false);
            }
            // Of those that ended, the one started first (not the lowest slot: a
            // command in a high slot must not wait behind newer ones).
            let ready = cq.ready_in(mask);
            let oldest = self
                .cmds
                .iter()
                .enumerate()
                .filter(|(n, _)| ready & 1 << n != 0)
                .filter_map(|(_, c)| c.as_ref())
                .min_by_key(|c| c.seq)
                .map(|c| c.cid);
            if let Some((cid, (dw0, dw3))) = oldest.and_then(|cid| Some((cid, cq.take(cid)?))) {
                self.finish(queue::slot_of(cid), dw0, dw3);
                return;
            }
            let csts = self.regs.read32(regs::CSTS);
            if csts == u32::MAX || csts & regs::CSTS_CFS != 0 {
                log::warn!(
                    "{}: controller fatal status with commands in flight",
                    self.name
                );
                self.reset_with(ResetCause::Fatal);
                return;
            }
            let deadline = self
                .cmds
                .iter()
                .flatten()
                .map(|c| c.started_us + timeout)
                .min()
                .unwrap_or(0);
            let now = self.now_us();
            if now >= deadline {
                if !polled && !looked {
                    // A last look: a completion whose interrupt was lost.
                    looked = true;
                    if cq.reap(&self.regs, false) > 0 && cq.any_ready(mask) {
                        log::warn!(
                            "{}: queue {} completed a command without an interrupt",
                            self.name,
                            cq.qid()
                        );
                        continue;
                    }
                }
                log::warn!(
                    "{}: a command did not complete in {} ms",
                    self.name,
                    self.cfg.command_timeout_ms
                );
                self.reset_with(ResetCause::Timeout);
                return;
            }
            let left = u32::try_from(deadline - now).unwrap_or(u32::MAX);
            self.wait_step(&mut polled, left, &|| cq.any_ready(mask));
        }
    }

    /// Slot `n`'s command completed with (dw0, dw3): unmap it and queue its result.
    fn finish(&mut self, n: usize, _dw0: u32, dw3: u32) {
        let Some(cmd) = self.cmds[n].take() else {
            return;
        };
        let st = ((dw3 >> 17) & 0x7ff) as u16;
        // The controller is done with the command: the list and the mapping can go.
        // Unmapping copies bounced data back (FromDevice).
        drop(cmd.prps);
        let sg = cmd.map.unmap();
        let result = if st == 0 {
            Ok(sg)
        } else {
            Err(NvmeError::Status {
                qid: 1,
                opcode: cmd.opcode,
                sct: (st >> 8) as u8 & 7,
                sc: st as u8,
                dnr: dw3 & (1 << 31) != 0,
            })
        };
        self.finished.push_back(Completion {
            tag: cmd.cid,
            lba: cmd.lba,
            result,
        });
    }

    /// Ends every command in flight with the error `cause` gives it, once the
    /// controller is disabled (`stopped`): then its memory is unmapped; if the
    /// controller did not stop, the mappings are leaked (it may still reach them).
    pub(crate) fn end_in_flight(&mut self, cause: ResetCause, stopped: bool) {
        let mut cmds: Vec<Cmd> = self.cmds.iter_mut().filter_map(Option::take).collect();
        if cmds.is_empty() {
            return;
        }
        cmds.sort_by_key(|c| c.seq);
        log::warn!(
            "{}: {} command(s) in flight ended by the reset",
            self.name,
            cmds.len()
        );
        let now = self.now_us();
        let timeout = self.cfg.command_timeout_ms as u64 * 1000;
        for cmd in cmds {
            let (qid, opcode) = (1, cmd.opcode);
            let err = match cause {
                ResetCause::Fatal => NvmeError::ControllerFatal { opcode },
                ResetCause::Timeout if now >= cmd.started_us + timeout => NvmeError::Timeout {
                    qid,
                    opcode,
                    ms: self.cfg.command_timeout_ms,
                },
                _ => NvmeError::Aborted { qid, opcode },
            };
            if stopped {
                drop(cmd.prps);
                drop(cmd.map.unmap());
            } else {
                log::error!(
                    "{}: controller not stopped: command {} keeps its mapping (leaked)",
                    self.name,
                    cmd.cid
                );
                core::mem::forget(cmd.map);
                core::mem::forget(cmd.prps);
            }
            self.finished.push_back(Completion {
                tag: cmd.cid,
                lba: cmd.lba,
                result: Err(err),
            });
        }
    }
}

/// The SQE of a read or write of `count` blocks at `lba` through `prps`.
pub(crate) fn rw_sqe(write: bool, nsid: u32, lba: u64, count: u64, prps: &Prps) -> [u32; 16] {
    let mut sqe = [0u32; 16];
    sqe[0] = if write { opc::WRITE } else { opc::READ } as u32;
    sqe[1] = nsid;
    sqe[6] = prps.prp1 as u32;
    sqe[7] = (prps.prp1 >> 32) as u32;
    sqe[8] = prps.prp2 as u32;
    sqe[9] = (prps.prp2 >> 32) as u32;
    sqe[10] = lba as u32;
    sqe[11] = (lba >> 32) as u32;
    sqe[12] = (count - 1) as u32;
    sqe
}
