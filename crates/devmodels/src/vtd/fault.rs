//! Fault recording in the model: the fault recording registers, FSTS.PPF/PFO and the fault event interrupt.

use super::*;

impl<M: PhysMemory> VtdModel<M> {
    /// Fault recording rules of hw-facts 4.11. Returns whether it was recorded.
    pub(super) fn record_fault(&self, sid: u16, iova: u64, write: bool, reason: u8) -> bool {
        self.record_fault_lo(sid, iova & !0xfff, write, reason)
    }

    /// Records a fault whose low qword (FI) is `lo`.
    pub(super) fn record_fault_lo(&self, sid: u16, lo: u64, write: bool, reason: u8) -> bool {
        let mut s = self.s.borrow_mut();
        if s.fsts & PFO != 0 {
            return false;
        }
        if s.frcd.iter().any(|r| r[1] & F != 0 && r[1] as u16 == sid) {
            return false;
        }
        let i = s.next_frcd;
        if s.frcd[i][1] & F != 0 {
            s.fsts |= PFO;
            Self::raise_fault_event(&mut s, true);
            return false;
        }
        let pv_junk = if matches!(reason, 5 | 6) {
            0xffffu64 << 40
        } else {
            0
        };
        s.frcd[i] = [
            lo,
            F | if write { 0 } else { T_READ } | pv_junk | (reason as u64) << 32 | sid as u64,
        ];
        let n = s.frcd.len();
        s.next_frcd = (i + 1) % n;
        let was_pending = s.fsts & (PPF | PFO | IQE) != 0;
        s.fsts = (s.fsts & !0xff00) | (i as u32) << 8 | PPF;
        if !was_pending {
            Self::raise_fault_event(&mut s, false);
        }
        true
    }

    pub(super) fn raise_fault_event(s: &mut State, _overflow: bool) {
        if s.fectl & IP != 0 {
            return;
        }
        if s.fectl & IM != 0 {
            s.fectl |= IP;
        } else {
            let m = (s.feaddr, s.fedata);
            s.msis.push(m);
        }
    }

    pub(super) fn update_ppf(s: &mut State) {
        if s.frcd.iter().any(|r| r[1] & F != 0) {
            s.fsts |= PPF;
        } else {
            s.fsts &= !PPF;
        }
        if s.fsts & (PPF | PFO | IQE) == 0 {
            s.fectl &= !IP;
        }
    }
}
