//! The fault recording registers (spec §7.2): read, report and clear primary faults.

use super::*;
use crate::fault::{FaultRecord, FRCD_HI_F};
use crate::regs::Fsts;

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    /// Current fault status.
    pub fn fault_status(&self) -> Fsts {
        Fsts::from_bits_retain(self.regs.read32(regs::FSTS))
    }

    /// Reads every recorded fault, starting at FSTS.FRI, and clears each record
    /// (write 1 to F, §7.2.1), then clears FSTS.PFO so recording resumes (§11.4.7.2).
    pub fn take_faults(&mut self) -> Vec<FaultRecord> {
        let mut out = Vec::new();
        if self.drain_faults(|rec| out.push(rec)) {
            log::warn!("DMAR: primary fault overflow, faults were lost");
        }
        out
    }

    /// As [`take_faults`](Self::take_faults), handing each record to `sink` in
    /// order, without allocating or logging (for an interrupt handler). Returns
    /// whether FSTS.PFO was set (records were lost before these were read).
    pub fn drain_faults(&mut self, mut sink: impl FnMut(FaultRecord)) -> bool {
        let fsts = self.fault_status();
        let n = self.cap.nfr.max(1);
        if fsts.contains(Fsts::PPF) {
            let mut idx = ((fsts.bits() >> 8) & 0xff) as u16 % n;
            for _ in 0..n {
                let off = regs::frcd_offset(&self.cap, idx);
                let hi = self.regs.read64(off + 8);
                let lo = self.regs.read64(off);
                let Some(rec) = FaultRecord::decode(idx, lo, hi) else {
                    break;
                };
                sink(rec);
                // F is bit 31 of the top dword; a 32-bit RW1C write leaves the rest alone.
                self.regs.write32(off + 12, (FRCD_HI_F >> 32) as u32);
                idx = (idx + 1) % n;
            }
        }
        let overflowed = fsts.contains(Fsts::PFO);
        self.regs.write32(regs::FSTS, Fsts::PFO.bits());
        overflowed
    }

    /// Clears all fault records and FSTS error bits without reporting them.
    pub fn clear_faults(&mut self) {
        for i in 0..self.cap.nfr.max(1) {
            let off = regs::frcd_offset(&self.cap, i);
            if self.regs.read64(off + 8) & FRCD_HI_F != 0 {
                self.regs.write32(off + 12, (FRCD_HI_F >> 32) as u32);
            }
        }
        self.regs.write32(
            regs::FSTS,
            (Fsts::PFO | Fsts::IQE | Fsts::ICE | Fsts::ITE).bits(),
        );
    }
}
