//! Queues (QEMU's `nvme_process_db`, `nvme_process_sq`, `nvme_post_cqes`): doorbells,
//! fetching submissions, posting completions with the phase tag, MSI-X messages.

use super::*;

impl<B: DmaBus> NvmeModel<B> {
    pub(super) fn doorbell(&self, qid: usize, cq: bool, value: u32, offset: usize) {
        if qid >= MAX_QUEUES {
            self.err(ModelError::BadDoorbell { offset, value });
            return;
        }
        if cq {
            let mut s = self.s.borrow_mut();
            match &mut s.cqs[qid] {
                Some(q) if value < q.size as u32 => q.head = value as u16,
                _ => s.errors.push(ModelError::BadDoorbell { offset, value }),
            }
            return;
        }
        {
            let mut s = self.s.borrow_mut();
            match &mut s.sqs[qid] {
                Some(q) if value < q.size as u32 => q.tail = value as u16,
                _ => {
                    s.errors.push(ModelError::BadDoorbell { offset, value });
                    return;
                }
            }
        }
        self.process(qid);
    }

    pub(super) fn process(&self, qid: usize) {
        loop {
            let (sqe_addr, cqid) = {
                let mut s = self.s.borrow_mut();
                if s.fatal || s.csts & CSTS_RDY == 0 {
                    return;
                }
                let Some(q) = &mut s.sqs[qid] else { return };
                if q.head == q.tail {
                    return;
                }
                let a = q.base + q.head as u64 * SQE;
                q.head = (q.head + 1) % q.size;
                (a, q.cqid)
            };
            let mut sqe = [0u8; 64];
            if let Err(f) = self.bus.dma_read(sqe_addr, &mut sqe) {
                self.err(ModelError::Bus(f));
                self.s.borrow_mut().csts |= CSTS_CFS;
                self.s.borrow_mut().fatal = true;
                return;
            }
            let dw = |i: usize| {
                u32::from_le_bytes([sqe[4 * i], sqe[4 * i + 1], sqe[4 * i + 2], sqe[4 * i + 3]])
            };
            let qw = |i: usize| dw(i) as u64 | (dw(i + 1) as u64) << 32;
            let mut log = CmdLog {
                qid: qid as u16,
                opcode: sqe[0],
                cid: (dw(0) >> 16) as u16,
                nsid: dw(1),
                prp1: qw(6),
                prp2: qw(8),
                cdw: [dw(10), dw(11), dw(12), dw(13), dw(14), dw(15)],
                prp_list: Vec::new(),
                data: Vec::new(),
                status: None,
            };
            // An Asynchronous Event Request completes only when there is an event
            // to report; the model has none, so it is held (until a reset) as
            // QEMU's `nvme_aer` holds it.
            let hung = if qid == 0 {
                self.s.borrow().hung_admin || log.opcode == ASYNC_EVENT_REQUEST
            } else {
                self.s.borrow().hung
            };
            if hung {
                self.s.borrow_mut().log.push(log);
                continue;
            }
            if qid != 0 && self.s.borrow().deferred {
                let mut s = self.s.borrow_mut();
                let at = s.log.len();
                s.log.push(log);
                s.held.push((qid, cqid, at));
                continue;
            }
            let (st, dw0) = if qid == 0 {
                self.admin(&mut log)
            } else {
                self.io(&mut log)
            };
            log.status = Some(st);
            let cid = log.cid;
            self.s.borrow_mut().log.push(log);
            self.complete(qid, cqid, cid, st, dw0);
        }
    }

    pub(super) fn complete(&self, sqid: usize, cqid: u16, cid: u16, st: u16, dw0: u32) {
        let (addr, phase, sqhd, irq) = {
            let mut s = self.s.borrow_mut();
            let sqhd = s.sqs[sqid].map_or(0, |q| q.head);
            let Some(cq) = &mut s.cqs[cqid as usize] else {
                return;
            };
            if (cq.tail + 1) % cq.size == cq.head {
                s.errors.push(ModelError::CqFull { qid: cqid });
                return;
            }
            let a = cq.base + cq.tail as u64 * CQE;
            let p = cq.phase;
            cq.tail = (cq.tail + 1) % cq.size;
            if cq.tail == 0 {
                cq.phase = !cq.phase;
            }
            (a, p, sqhd, cq.ien.then_some(cq.iv))
        };
        let mut e = [0u8; 16];
        e[0..4].copy_from_slice(&dw0.to_le_bytes());
        let dw2 = sqhd as u32 | (sqid as u32) << 16;
        e[8..12].copy_from_slice(&dw2.to_le_bytes());
        // DNR on every error: the model's errors are not transient.
        let dnr = if st != 0 { 1u32 << 31 } else { 0 };
        let dw3 = cid as u32 | (phase as u32) << 16 | ((st as u32) & 0x7ff) << 17 | dnr;
        e[12..16].copy_from_slice(&dw3.to_le_bytes());
        if let Err(f) = self.bus.dma_write(addr, &e) {
            self.err(ModelError::Bus(f));
            return;
        }
        if let Some(v) = irq {
            let mut s = self.s.borrow_mut();
            s.msix_pending |= 1 << v;
            s.msix_sent[v as usize] += 1;
        }
    }

    /// Defers I/O commands from now on (or not): fetched and logged, run only by
    /// [`NvmeModel::complete_deferred`]. Commands already deferred stay so.
    pub fn set_deferred(&self, on: bool) {
        self.s.borrow_mut().deferred = on;
    }

    /// The CIDs of the deferred commands not run yet, in fetch order.
    pub fn deferred(&self) -> Vec<u16> {
        let s = self.s.borrow();
        s.held.iter().map(|&(_, _, i)| s.log[i].cid).collect()
    }

    /// Runs the deferred commands with these CIDs in this order (moving their data and
    /// posting their completions, with MSI-X messages); returns how many ran. A CID
    /// not deferred is skipped; nothing runs on a disabled or fatal controller.
    pub fn complete_deferred(&self, cids: &[u16]) -> usize {
        let mut ran = 0;
        for &cid in cids {
            let found = {
                let mut s = self.s.borrow_mut();
                if s.fatal || s.csts & CSTS_RDY == 0 {
                    return ran;
                }
                let log = &s.log;
                let pos = s.held.iter().position(|&(_, _, i)| log[i].cid == cid);
                pos.map(|p| s.held.remove(p))
            };
            let Some((sqid, cqid, at)) = found else {
                continue;
            };
            let mut log = self.s.borrow().log[at].clone();
            let (st, dw0) = self.io(&mut log);
            log.status = Some(st);
            self.s.borrow_mut().log[at] = log;
            self.complete(sqid, cqid, cid, st, dw0);
            ran += 1;
        }
        ran
    }

    /// Posts a completion for `cid` with status `st` (SCT << 8 | SC) to I/O queue pair
    /// `qid`'s CQ whether or not such a command is outstanding: a late completion of a
    /// command the driver gave up on, or a stray one.
    pub fn post_cqe(&self, qid: u16, cid: u16, st: u16) {
        let cqid = {
            let s = self.s.borrow();
            match s.sqs.get(qid as usize).copied().flatten() {
                Some(q) => q.cqid,
                None => return,
            }
        };
        self.complete(qid as usize, cqid, cid, st, 0);
    }

    /// Deferred commands move their data when CC.EN is cleared (their completions
    /// are dropped with the queues), or not.
    pub fn set_dma_until_disabled(&self, on: bool) {
        self.s.borrow_mut().dma_until_disabled = on;
    }

    /// The deferred commands' data transfers, without completions (CC.EN 1 → 0).
    pub(super) fn finish_transfers(&self) {
        let held = core::mem::take(&mut self.s.borrow_mut().held);
        for (_, _, at) in held {
            let mut log = self.s.borrow().log[at].clone();
            let (st, _) = self.io(&mut log);
            log.status = Some(st);
            self.s.borrow_mut().log[at] = log;
        }
    }
}
