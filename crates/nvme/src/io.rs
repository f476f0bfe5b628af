//! Commands (Linux's nvme core: `nvme_setup_rw`, `nvme_submit_sync_cmd`): run one on the
//! admin or I/O queue with reset on timeout or fatal status; read, write and flush.

use super::*;

impl<R: RegisterAccess, D: Delay> Controller<R, D> {
    /// Runs a command on the admin (`io` false) or I/O queue and waits for it; a
    /// timeout or a fatal status resets the controller before returning (which ends
    /// the commands [`start_rw`](Self::start_rw) has in flight too, with an error).
    /// Those may be in flight meanwhile: this command takes a CID of its own and
    /// their completions wait in their slots; [`NvmeError::QueueFull`] if every CID
    /// is taken.
    pub(crate) fn exec(&mut self, io: bool, sqe: [u32; 16]) -> Result<u32, NvmeError> {
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
            Outcome::Full => {
                let depth = if io {
                    self.io.as_ref()
                } else {
                    self.admin.as_ref()
                }
                .map_or(0, |q| q.room());
                return Err(NvmeError::QueueFull { depth });
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
            self.reset_with(match out {
                Outcome::Fatal => ResetCause::Fatal,
                _ => ResetCause::Other,
            });
        }
        Err(err)
    }

    /// Sends one Asynchronous Event Request on the admin queue and waits for it as
    /// for any command. A controller completes an AER only when it has an event to
    /// report (NVMe 1.4 §5.2; QEMU holds it in `aer_reqs`), and this driver waits for
    /// every admin command, so with nothing to report the request ends in
    /// [`NvmeError::Timeout`] and a controller reset (which drops the held request,
    /// and ends any read or write [`start_rw`](Self::start_rw) has in flight with
    /// [`NvmeError::Aborted`]); the next command works. Linux keeps AERs outstanding instead; the kernel's
    /// `blk aer` uses this to show the timeout path on a real (emulated) controller.
    /// `Ok(dw0)`: an event (type, info and log page in CQE dword 0).
    pub fn async_event_request(&mut self) -> Result<u32, NvmeError> {
        let mut sqe = [0u32; 16];
        sqe[0] = opc::ASYNC_EVENT_REQUEST as u32;
        self.admin_cmd(sqe)
    }

    pub(crate) fn admin_cmd(&mut self, sqe: [u32; 16]) -> Result<u32, NvmeError> {
        self.exec(false, sqe)
    }

    pub(crate) fn ns(&self) -> Result<Namespace, NvmeError> {
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

    /// Checks a read or write of `sg` at `lba` against namespace 1 and the maximum
    /// transfer; returns its block count.
    pub(crate) fn check_rw(&self, lba: u64, sg: &SgTable) -> Result<u64, NvmeError> {
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
        Ok(count)
    }

    pub(crate) fn rw(&mut self, lba: u64, sg: &SgTable, write: bool) -> Result<(), NvmeError> {
        let ns = self.ns()?;
        let count = self.check_rw(lba, sg)?;
        let dir = if write {
            DmaDirection::ToDevice
        } else {
            DmaDirection::FromDevice
        };
        let m = self.dev.map_sg(sg.clone(), dir)?;
        let prps = build_prps(m.segments(), &self.prp_pool)?;
        trace_prps(m.segments(), &prps);
        let sqe = mq::rw_sqe(write, ns.nsid, lba, count, &prps);
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
}
