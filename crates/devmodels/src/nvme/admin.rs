//! The admin command set (QEMU's `nvme_admin_cmd`): Identify, Set Features, Create
//! I/O CQ and SQ.

use super::*;

impl<B: DmaBus> NvmeModel<B> {
    pub(super) fn identify_ctrl(&self) -> Vec<u8> {
        let mut id = vec![0u8; 4096];
        id[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        id[2..4].copy_from_slice(&0x1af4u16.to_le_bytes());
        let pad = |dst: &mut [u8], s: &str| {
            dst.fill(b' ');
            let b = s.as_bytes();
            let n = b.len().min(dst.len());
            dst[..n].copy_from_slice(&b[..n]);
        };
        pad(&mut id[4..24], &self.opts.serial);
        pad(&mut id[24..64], &self.opts.model);
        pad(&mut id[64..72], "7.2.22");
        id[77] = self.opts.mdts;
        id[80..84].copy_from_slice(&0x0001_0400u32.to_le_bytes());
        id[512] = 0x66; // SQES: 64 bytes
        id[513] = 0x44; // CQES: 16 bytes
        id[516..520].copy_from_slice(&1u32.to_le_bytes()); // NN
        id
    }

    pub(super) fn identify_ns(&self) -> Vec<u8> {
        let mut id = vec![0u8; 4096];
        let n = self.opts.sectors.to_le_bytes();
        id[0..8].copy_from_slice(&n);
        id[8..16].copy_from_slice(&n);
        id[16..24].copy_from_slice(&n);
        id[25] = 0; // NLBAF: one format
        id[26] = 0; // FLBAS: format 0
        id[128 + 2] = self.opts.lba_shift;
        id
    }

    pub(super) fn mdts_bytes(&self) -> Option<usize> {
        (self.opts.mdts != 0).then(|| (PAGE as usize) << self.opts.mdts)
    }

    pub(super) fn admin(&self, log: &mut CmdLog) -> Done {
        let c10 = log.cdw[0];
        let c11 = log.cdw[1];
        match log.opcode {
            0x06 => {
                let data = match c10 & 0xff {
                    1 => self.identify_ctrl(),
                    0 if log.nsid == 1 => self.identify_ns(),
                    0 => return (status::INVALID_NS, 0),
                    _ => return (status::INVALID_FIELD, 0),
                };
                match self.write_host(log, &data) {
                    Ok(()) => (0, 0),
                    Err(st) => (st, 0),
                }
            }
            0x09 if c10 & 0xff == 0x07 => {
                let nsqr = (c11 & 0xffff) as u16;
                let ncqr = (c11 >> 16) as u16;
                if nsqr == 0xffff || ncqr == 0xffff {
                    return (status::INVALID_FIELD, 0);
                }
                let max = self.opts.max_ioqpairs.clamp(1, (MAX_QUEUES - 1) as u16) - 1;
                let (sq, cq) = (nsqr.min(max), ncqr.min(max));
                self.s.borrow_mut().granted_queues = sq.min(cq) + 1;
                (0, sq as u32 | (cq as u32) << 16)
            }
            0x09 => (status::INVALID_FIELD, 0),
            0x05 => self.create_cq(log),
            0x01 => self.create_sq(log),
            0x00 | 0x04 => {
                let qid = (c10 & 0xffff) as usize;
                let mut s = self.s.borrow_mut();
                if qid == 0 || qid >= MAX_QUEUES {
                    return (status::INVALID_QID, 0);
                }
                if log.opcode == 0x00 {
                    if s.sqs[qid].take().is_none() {
                        return (status::INVALID_QID, 0);
                    }
                } else if s.cqs[qid].take().is_none() {
                    return (status::INVALID_QID, 0);
                }
                (0, 0)
            }
            _ => (status::INVALID_OPCODE, 0),
        }
    }

    pub(super) fn queue_checks(&self, log: &CmdLog, entry_shift: u32) -> Result<(usize, u16), u16> {
        let qid = (log.cdw[0] & 0xffff) as usize;
        let qsize = (log.cdw[0] >> 16) as u16;
        let s = self.s.borrow();
        if qid == 0 || qid >= MAX_QUEUES || qid as u16 > s.granted_queues {
            return Err(status::INVALID_QID);
        }
        if qsize == 0 || qsize > self.opts.mqes {
            return Err(status::INVALID_QSIZE);
        }
        if log.cdw[1] & 1 == 0 || log.prp1 & (PAGE - 1) != 0 || log.prp1 == 0 {
            // Only physically contiguous, page-aligned queues.
            return Err(status::INVALID_FIELD);
        }
        let es = if entry_shift == 6 {
            (s.cc >> 16) & 0xf
        } else {
            (s.cc >> 20) & 0xf
        };
        if es != entry_shift {
            return Err(status::INVALID_FIELD);
        }
        Ok((qid, qsize + 1))
    }

    pub(super) fn create_cq(&self, log: &CmdLog) -> Done {
        let (qid, size) = match self.queue_checks(log, 4) {
            Ok(v) => v,
            Err(st) => return (st, 0),
        };
        let mut s = self.s.borrow_mut();
        if s.cqs[qid].is_some() {
            return (status::INVALID_QID, 0);
        }
        let iv = (log.cdw[1] >> 16) as u16;
        let ien = log.cdw[1] & 2 != 0;
        if ien && iv >= 32 {
            return (status::INVALID_IV, 0);
        }
        s.cqs[qid] = Some(Cq {
            base: log.prp1,
            size,
            head: 0,
            tail: 0,
            phase: true,
            ien,
            iv,
        });
        (0, 0)
    }

    pub(super) fn create_sq(&self, log: &CmdLog) -> Done {
        let (qid, size) = match self.queue_checks(log, 6) {
            Ok(v) => v,
            Err(st) => return (st, 0),
        };
        let cqid = (log.cdw[1] >> 16) as u16;
        let mut s = self.s.borrow_mut();
        if s.sqs[qid].is_some() {
            return (status::INVALID_QID, 0);
        }
        if cqid == 0 || cqid as usize >= MAX_QUEUES || s.cqs[cqid as usize].is_none() {
            return (status::CQ_INVALID, 0);
        }
        s.sqs[qid] = Some(Sq {
            base: log.prp1,
            size,
            head: 0,
            tail: 0,
            cqid,
        });
        (0, 0)
    }
}
