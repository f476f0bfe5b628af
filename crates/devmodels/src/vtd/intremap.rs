//! Interrupt remapping in the model: MSI writes looked up in the IRTE cache or the table, checked, delivered or faulted.

use super::*;

impl<M: PhysMemory> VtdModel<M> {
    /// An MSI: a 4-byte write of `data` to `addr` (0xFEEx_xxxx) from the device at
    /// `bus:devfn`. With GSTS.IRES clear it is delivered as a compatibility-format
    /// message. With remapping on: a compatibility-format message passes only if
    /// GSTS.CFIS is set (else fault 0x25); a remappable one is looked up in the
    /// IRTE cache, or read from the table and cached (§5.1.4: faults are not
    /// cached), checked for present (0x22), reserved fields (0x24) and source-id
    /// (0x26), and delivered as the IRTE says. Faults are recorded with the
    /// interrupt index in FI bits 63:48 (§11.4.14) unless the IRTE's FPD
    /// suppresses a qualified one. QEMU 7.2 differs: it drops the MSI without a
    /// record, keeps no IRTE cache, and ignores CFI (hw-facts 4.11, 4.12).
    pub fn msi_write(&self, bus: u8, devfn: u8, addr: u64, data: u32) -> Result<Interrupt, Fault> {
        let sid = self.requester_id(bus, devfn);
        let fault = |reason: u8, index: u16, fpd: bool| {
            let qualified = matches!(reason, 0x22 | 0x24 | 0x26 | 0x27);
            let recorded = !(qualified && fpd)
                && self.record_fault_lo(sid, (index as u64) << 48, true, reason);
            Err(Fault {
                sid,
                addr,
                write: true,
                reason,
                recorded,
            })
        };
        let compat = Interrupt {
            vector: data as u8,
            dest: ((addr >> 12) & 0xff) as u32,
            logical: addr & (1 << 2) != 0,
            delivery: ((data >> 8) & 7) as u8,
            level: data & (1 << 15) != 0,
            redirection_hint: addr & (1 << 3) != 0,
            index: None,
        };
        let (gsts, size, root, eime) = {
            let s = self.s.borrow();
            (s.gsts, s.ir_size, s.ir_root, s.ir_eime)
        };
        if gsts & IRE == 0 {
            self.s.borrow_mut().interrupts.push(compat);
            return Ok(compat);
        }
        if addr >> 32 != 0 || addr & 0xfff0_0000 != INTR_FIRST {
            return fault(IR_REQ_RSVD, 0, false);
        }
        if addr & (1 << 4) == 0 {
            if gsts & CFI != 0 {
                self.s.borrow_mut().interrupts.push(compat);
                return Ok(compat);
            }
            return fault(0x25, 0, false);
        }
        let a = addr as u32;
        let shv = a & (1 << 3) != 0;
        let mut index = ((a >> 5) & 0x7fff) | ((a >> 2) & 1) << 15;
        if shv {
            if data & 0xffff_0000 != 0 {
                return fault(IR_REQ_RSVD, index as u16, false);
            }
            index += data & 0xffff;
        }
        if index >= size || index > 0xffff {
            return fault(0x21, index as u16, false);
        }
        let index = index as u16;
        let cached = self.s.borrow().iec.get(&index).copied();
        let [lo, hi] = match cached {
            Some(e) => e,
            None => {
                let pa = root + index as u64 * 16;
                if !self.readable(pa, 16) {
                    return fault(0x23, index, false);
                }
                [
                    self.mem.read_u64(PhysAddr::new(pa)),
                    self.mem.read_u64(PhysAddr::new(pa + 8)),
                ]
            }
        };
        let fpd = lo & 2 != 0;
        if lo & 1 == 0 {
            return fault(0x22, index, fpd);
        }
        // §9.10 reserved: 14:12, IM (15; no posted interrupts), 31:24, the xAPIC
        // destination bits outside 47:40, 127:84, SVT = 11 and reserved delivery modes.
        let dlm = (lo >> 5) & 7;
        if lo & 0xff00_f000 != 0
            || (!eime && lo & 0xffff_00ff_0000_0000 != 0)
            || hi >> 20 != 0
            || (hi >> 18) & 3 == 3
            || dlm == 3
            || dlm == 6
        {
            return fault(0x24, index, fpd);
        }
        let irte_sid = hi as u16;
        let ok = match (hi >> 18) & 3 {
            0 => true,
            1 => {
                let mask: u16 = [0xffff, 0xfffb, 0xfff9, 0xfff8][((hi >> 16) & 3) as usize];
                irte_sid & mask == sid & mask
            }
            _ => {
                let bus = (sid >> 8) as u8;
                ((irte_sid >> 8) as u8..=irte_sid as u8).contains(&bus)
            }
        };
        if !ok {
            return fault(0x26, index, fpd);
        }
        let dest = (lo >> 32) as u32;
        let irq = Interrupt {
            vector: (lo >> 16) as u8,
            dest: if eime { dest } else { (dest >> 8) & 0xff },
            logical: lo & 4 != 0,
            delivery: dlm as u8,
            level: lo & 16 != 0,
            redirection_hint: lo & 8 != 0,
            index: Some(index),
        };
        let mut s = self.s.borrow_mut();
        s.iec.insert(index, [lo, hi]);
        s.interrupts.push(irq);
        Ok(irq)
    }
}
