//! The invalidation interfaces (spec §6.5): register-based (CCMD, IOTLB registers) and queued invalidation (the invalidation queue, its wait descriptors and error recovery), one module, chosen per unit by [`InvalMode`].

use super::*;
use crate::intremap::IecInval;
use crate::inval::{wait_descriptor, ContextInval};
use crate::regs::{Fsts, Gcmd};

pub(super) struct Queue {
    base: PhysAddr,
    entries: u32,
    tail: u32,
    status: PhysAddr,
    seq: u32,
}

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    pub(super) fn enable_queue(&mut self) -> Result<(), Error> {
        let base = self.new_table()?;
        let status = self.new_table()?;
        // §10.4.23: IQT must be 0 before enabling; QS = 0 → 256 128-bit descriptors.
        self.regs.write64(regs::IQT, 0);
        self.regs.write64(regs::IQA, base.as_u64());
        self.queue = Some(Queue {
            base,
            entries: 256,
            tail: 0,
            status,
            seq: 0,
        });
        self.gcmd_persistent(Gcmd::QIE, true, Gsts::QIES, "GSTS.QIES set")
    }

    /// Submits descriptors followed by a wait descriptor with status write, and waits
    /// for the status (§6.5.2.8).
    pub(super) fn qi_submit(&mut self, descs: &[[u64; 2]]) -> Result<(), Error> {
        let Some(q) = self.queue.as_mut() else {
            return Err(Error::NoQueuedInvalidation);
        };
        q.seq = q.seq.wrapping_add(1).max(1);
        let seq = q.seq;
        let status = q.status;
        self.mem.write_u32(status, 0);
        // No heap allocation here: this runs for every strict unmap.
        let wait = [wait_descriptor(status.as_u64(), seq)];
        // The queue is full when tail + 1 == head (§6.5.2); wait for room.
        let need = descs.len() as u32 + 1;
        self.poll("invalidation queue space", |u| {
            let Some(q) = u.queue.as_ref() else {
                return true;
            };
            let head = ((u.regs.read64(regs::IQH) >> 4) & 0x7fff) as u32;
            let used = (q.tail + q.entries - head) % q.entries;
            q.entries - 1 - used >= need
        })?;
        for d in descs.iter().chain(wait.iter()) {
            let (pa, next) = {
                let q = self.queue.as_ref().ok_or(Error::NoQueuedInvalidation)?;
                (q.base + q.tail as u64 * 16, (q.tail + 1) % q.entries)
            };
            self.mem.write_u64(pa, d[0]);
            self.mem.write_u64(pa + 8u64, d[1]);
            self.flush_cache(pa, 16);
            if let Some(q) = self.queue.as_mut() {
                q.tail = next;
            }
        }
        hal::wmb();
        let tail = self.queue.as_ref().map_or(0, |q| q.tail);
        self.regs.write64(regs::IQT, (tail as u64) << 4);
        let r = self.poll("invalidation wait descriptor", |u| {
            u.mem.read_u32(status) == seq
                || Fsts::from_bits_retain(u.regs.read32(regs::FSTS)).contains(Fsts::IQE)
        });
        let fsts = Fsts::from_bits_retain(self.regs.read32(regs::FSTS));
        if fsts.contains(Fsts::IQE) {
            // §6.5.2.10: hardware stopped with IQH on the bad descriptor and fetches
            // nothing until IQE is cleared; clearing it resumes fetching at IQH. So the
            // bad descriptor is fixed first: overwritten with a copy of our wait
            // descriptor (harmless, as Linux's qi_check_fault does), then IQE cleared;
            // the rest of the batch and the real wait descriptor then run, and the queue
            // ends empty (head == tail) with no register rewritten behind its back.
            let head = ((self.regs.read64(regs::IQH) >> 4) & 0x7fff) as u32;
            if let Some(q) = self.queue.as_ref() {
                let pa = q.base + (head % q.entries) as u64 * 16;
                self.mem.write_u64(pa, wait[0][0]);
                self.mem.write_u64(pa + 8u64, wait[0][1]);
                self.flush_cache(pa, 16);
            }
            hal::wmb();
            self.regs.write32(regs::FSTS, Fsts::IQE.bits());
            let drained = self.poll("invalidation queue after an error", |u| {
                u.mem.read_u32(status) == seq
                    || Fsts::from_bits_retain(u.regs.read32(regs::FSTS)).contains(Fsts::IQE)
            });
            if drained.is_err()
                || Fsts::from_bits_retain(self.regs.read32(regs::FSTS)).contains(Fsts::IQE)
            {
                log::error!("DMAR: invalidation queue did not recover from an error at {head}");
            }
            return Err(Error::QueueError(head));
        }
        r?;
        self.stats.qi_waits += 1;
        Ok(())
    }

    /// Invalidates context-cache entries through the chosen interface.
    pub fn flush_context(&mut self, req: ContextInval) -> Result<(), Error> {
        self.stats.context_invalidations += 1;
        match self.mode {
            InvalMode::Queued => self.qi_submit(&[req.descriptor()]),
            InvalMode::Register => {
                // §6.5.1.1: write with ICC = 1, hardware clears ICC when done.
                self.regs.write64(regs::CCMD, req.ccmd_value());
                self.poll("CCMD.ICC clear", |u| {
                    u.regs.read64(regs::CCMD) & regs::ccmd::ICC == 0
                })?;
                let caig = (self.regs.read64(regs::CCMD) >> regs::ccmd::CAIG_SHIFT) & 3;
                if caig == 0 {
                    return Err(Error::InvalidationRejected);
                }
                Ok(())
            }
        }
    }

    /// Invalidates IOTLB entries through the chosen interface. Page-selective requests
    /// fall back to domain-selective when CAP.PSI = 0 or the mask exceeds CAP.MAMV.
    pub fn flush_iotlb(&mut self, req: IotlbInval) -> Result<(), Error> {
        let req = match req {
            IotlbInval::Page { did, am, .. } if !self.cap.psi || am > self.cap.mamv => {
                IotlbInval::Domain(did)
            }
            r => r,
        };
        self.stats.iotlb_invalidations += 1;
        let (dr, dw) = (self.cap.drd, self.cap.dwd);
        match self.mode {
            InvalMode::Queued => self.qi_submit(&[req.descriptor(dr, dw)]),
            InvalMode::Register => {
                if let IotlbInval::Page { .. } = req {
                    self.regs.write64(self.ecap.iva_offset(), req.iva_value());
                }
                let off = self.ecap.iotlb_offset();
                self.regs.write64(off, req.iotlb_value(dr, dw));
                self.poll("IOTLB.IVT clear", |u| {
                    u.regs.read64(off) & regs::iotlb::IVT == 0
                })?;
                if (self.regs.read64(off) >> regs::iotlb::IAIG_SHIFT) & 3 == 0 {
                    return Err(Error::InvalidationRejected);
                }
                Ok(())
            }
        }
    }

    /// Issues the IOTLB invalidation an [`RemappingUnit::unmap`] asked for. (IOVA
    /// ranges are released separately: [`RemappingUnit::unmap_dma`] does both.)
    pub fn flush_unmap(&mut self, info: &UnmapInfo) -> Result<(), Error> {
        self.flush_iotlb(info.inval)
    }

    /// Invalidates the IOTLB for `[iova, iova + len)` of domain `d` (page-selective
    /// with the smallest covering mask, or domain-selective) and waits for completion.
    pub fn flush_iotlb_range(&mut self, d: DomainId, iova: u64, len: u64) -> Result<(), Error> {
        self.flush_iotlb(IotlbInval::for_range(
            d.0,
            iova,
            len,
            self.cap.psi,
            self.cap.mamv,
        ))
    }

    /// Invalidates interrupt-entry-cache entries through the queue.
    pub fn flush_iec(&mut self, req: IecInval) -> Result<(), Error> {
        if self.mode != InvalMode::Queued {
            return Err(Error::NoQueuedInvalidation);
        }
        self.stats.iec_invalidations += 1;
        self.qi_submit(&[req.descriptor()])
    }
}
