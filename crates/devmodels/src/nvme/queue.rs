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
}
