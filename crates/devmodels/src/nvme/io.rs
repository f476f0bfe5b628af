//! Data transfer and the NVM command set (QEMU's `nvme_map_prp`, `nvme_rw`,
//! `nvme_flush`): the PRP walk, the bytes moved, READ/WRITE/FLUSH.

use super::*;

impl<B: DmaBus> NvmeModel<B> {
    /// Walks PRP1/PRP2 for `len` bytes: the (address, bytes) pieces, page by page.
    pub(super) fn prps(&self, log: &mut CmdLog, len: usize) -> Result<Vec<(u64, usize)>, u16> {
        let mut out = Vec::new();
        let prp1 = log.prp1;
        if prp1 & 3 != 0 {
            return Err(status::PRP_OFFSET);
        }
        let first = (PAGE - (prp1 & (PAGE - 1))).min(len as u64) as usize;
        out.push((prp1, first));
        let mut rem = len - first;
        if rem == 0 {
            return Ok(out);
        }
        let prp2 = log.prp2;
        if rem as u64 <= PAGE {
            if prp2 & (PAGE - 1) != 0 {
                return Err(status::PRP_OFFSET);
            }
            out.push((prp2, rem));
            return Ok(out);
        }
        if prp2 & 7 != 0 {
            return Err(status::PRP_OFFSET);
        }
        let mut list = prp2;
        while rem > 0 {
            let ents = ((PAGE - (list & (PAGE - 1))) / 8) as usize;
            let mut raw = vec![0u8; ents * 8];
            self.bus.dma_read(list, &mut raw).map_err(|f| {
                self.err(ModelError::Bus(f));
                status::DATA_TRANSFER
            })?;
            let mut next = None;
            for i in 0..ents {
                let e = u64::from_le_bytes(raw[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
                if i == ents - 1 && rem as u64 > PAGE {
                    // The last entry of a list page chains to the next list page.
                    if e & (PAGE - 1) != 0 {
                        return Err(status::PRP_OFFSET);
                    }
                    next = Some(e);
                    break;
                }
                log.prp_list.push(e);
                if e & (PAGE - 1) != 0 {
                    return Err(status::PRP_OFFSET);
                }
                let take = (rem as u64).min(PAGE) as usize;
                out.push((e, take));
                rem -= take;
                if rem == 0 {
                    break;
                }
            }
            match next {
                Some(n) => list = n,
                None if rem > 0 => return Err(status::INVALID_FIELD),
                None => {}
            }
        }
        Ok(out)
    }

    pub(super) fn write_host(&self, log: &mut CmdLog, data: &[u8]) -> Result<(), u16> {
        let pieces = self.prps(log, data.len())?;
        let mut off = 0;
        for &(a, l) in &pieces {
            self.bus.dma_write(a, &data[off..off + l]).map_err(|f| {
                self.err(ModelError::Bus(f));
                status::DATA_TRANSFER
            })?;
            off += l;
        }
        log.data = pieces;
        Ok(())
    }

    pub(super) fn read_host(&self, log: &mut CmdLog, len: usize) -> Result<Vec<u8>, u16> {
        let pieces = self.prps(log, len)?;
        let mut v = vec![0u8; len];
        let mut off = 0;
        for &(a, l) in &pieces {
            self.bus.dma_read(a, &mut v[off..off + l]).map_err(|f| {
                self.err(ModelError::Bus(f));
                status::DATA_TRANSFER
            })?;
            off += l;
        }
        log.data = pieces;
        Ok(v)
    }

    pub(super) fn io(&self, log: &mut CmdLog) -> Done {
        if log.nsid != 1 {
            return (status::INVALID_NS, 0);
        }
        match log.opcode {
            0x00 => {
                self.s.borrow_mut().flushes += 1;
                (0, 0)
            }
            0x01 | 0x02 => {
                let write = log.opcode == 0x01;
                let slba = log.slba();
                let n = log.blocks() as u64;
                let ls = self.lba_size();
                let len = n as usize * ls;
                if self.mdts_bytes().is_some_and(|m| len > m) {
                    return (status::INVALID_FIELD, 0);
                }
                if slba.checked_add(n).is_none_or(|e| e > self.opts.sectors) {
                    return (status::LBA_RANGE, 0);
                }
                let bad = self
                    .s
                    .borrow()
                    .media_errors
                    .iter()
                    .any(|&l| l >= slba && l < slba + n);
                let off = slba as usize * ls;
                let r = if write {
                    self.read_host(log, len).map(|d| {
                        if !bad {
                            self.s.borrow_mut().data[off..off + len].copy_from_slice(&d);
                        }
                    })
                } else {
                    let d = self.disk_bytes(off, len);
                    if bad {
                        // The transfer is set up (PRPs checked) but the media fails.
                        self.prps(log, len).map(|_| ())
                    } else {
                        self.write_host(log, &d)
                    }
                };
                match r {
                    Err(st) => (st, 0),
                    Ok(()) if bad && write => (status::WRITE_FAULT, 0),
                    Ok(()) if bad => (status::UNRECOVERED_READ, 0),
                    Ok(()) => (0, 0),
                }
            }
            _ => (status::INVALID_OPCODE, 0),
        }
    }
}
