//! The model's register file: reads, writes with their side effects, the GCMD/GSTS handshakes, and `RegisterAccess`.

use super::*;

impl<M: PhysMemory> VtdModel<M> {
    // ----- registers -----

    pub(super) fn iro(&self) -> usize {
        (((self.s.borrow().ecap >> 8) & 0x3ff) * 16) as usize
    }

    pub(super) fn fro(&self) -> (usize, usize) {
        let s = self.s.borrow();
        ((((s.cap >> 24) & 0x3ff) * 16) as usize, s.frcd.len())
    }

    /// Value of a 64-bit register, or None if `off` is not one.
    pub(super) fn reg64(&self, off: usize) -> Option<u64> {
        let iro = self.iro();
        let (fro, nfr) = self.fro();
        let s = self.s.borrow();
        Some(match off {
            CAP => s.cap,
            ECAP => s.ecap,
            RTADDR => s.rtaddr,
            CCMD => s.ccmd,
            IQH => s.iqh,
            IQT => s.iqt,
            // Reads return the base latched at the last QIE enable, plus QS.
            IQA => s.iq_base | (s.iqa & 0x807),
            IRTA => s.irta,
            o if o == iro => 0, // IVA is write-only
            o if o == iro + 8 => s.iotlb_reg,
            o if o >= fro && o < fro + nfr * 16 => {
                let i = (o - fro) / 16;
                s.frcd[i][(o - fro) % 16 / 8]
            }
            _ => return None,
        })
    }

    pub(super) fn reg32(&self, off: usize) -> Option<u32> {
        let s = self.s.borrow();
        Some(match off {
            VER => 0x10,
            GCMD => 0,
            GSTS => s.gsts,
            FSTS => s.fsts,
            FECTL => s.fectl,
            FEDATA => s.fedata,
            FEADDR => s.feaddr,
            FEUADDR | PMEN | IEUADDR => 0,
            ICS => s.ics,
            IECTL => s.iectl,
            IEDATA => s.iedata,
            IEADDR => s.ieaddr,
            _ => return None,
        })
    }

    pub(super) fn write_reg64(&self, off: usize, v: u64, acts: bool) {
        let iro = self.iro();
        let (fro, nfr) = self.fro();
        match off {
            RTADDR => self.s.borrow_mut().rtaddr = v & !0x3ff,
            CCMD => {
                let mut s = self.s.borrow_mut();
                s.ccmd = v & 0xe000_0003_ffff_ffff;
                if acts && v >> 63 != 0 && s.gsts & QIE != 0 {
                    // With QI on, register requests are ignored and ICC stays set;
                    // QEMU still reports the granularity (reads 0xA800.. for a global
                    // request, hw-facts 4.9).
                    let caig = if (v >> 61) & 3 == 3 { 3 } else { 1 };
                    s.ccmd |= caig << 59;
                } else if acts && v >> 63 != 0 && !s.stuck_invalidation {
                    let caig = Self::inval_context(
                        &mut s,
                        (v >> 61) & 3,
                        (v >> 16) as u16,
                        ((v >> 32) & 3) as u8,
                    );
                    s.ccmd = (s.ccmd & !(1 << 63) & !(3 << 59)) | caig << 59;
                }
            }
            IQT => {
                self.s.borrow_mut().iqt = v & 0x7fff0;
                if acts {
                    self.process_queue();
                }
            }
            IQA => self.s.borrow_mut().iqa = v & !0x7f8,
            IRTA => self.s.borrow_mut().irta = v & !0x7f0,
            o if o == iro => self.s.borrow_mut().iva = v,
            o if o == iro + 8 => {
                let mut s = self.s.borrow_mut();
                s.iotlb_reg = v & 0xb003_ffff_0000_0000;
                if acts && v >> 63 != 0 && s.gsts & QIE == 0 && !s.stuck_invalidation {
                    let iva = s.iva;
                    let iaig = Self::inval_iotlb(
                        &mut s,
                        (v >> 60) & 3,
                        (v >> 32) as u16,
                        iva & !0xfff,
                        (iva & 0x3f) as u8,
                    );
                    s.iotlb_reg = (s.iotlb_reg & !(1 << 63) & !(3 << 57)) | iaig << 57;
                }
            }
            o if o >= fro && o < fro + nfr * 16 && (o - fro) % 16 == 8 => {
                let i = (o - fro) / 16;
                let mut s = self.s.borrow_mut();
                if v & F != 0 {
                    s.frcd[i][1] &= !F;
                    Self::update_ppf(&mut s);
                }
            }
            _ => {}
        }
    }

    pub(super) fn write_reg32(&self, off: usize, v: u32) {
        match off {
            GCMD => self.gcmd(v),
            FSTS => {
                let resume = {
                    let mut s = self.s.borrow_mut();
                    let was_iqe = s.fsts & IQE != 0;
                    s.fsts &= !(v & (PFO | IQE | ICE | ITE));
                    Self::update_ppf(&mut s);
                    was_iqe && s.fsts & IQE == 0
                };
                // Clearing IQE lets the unit fetch again from IQH (the descriptor that
                // failed, unless software fixed it).
                if resume {
                    self.process_queue();
                }
            }
            FECTL => {
                let mut s = self.s.borrow_mut();
                s.fectl = (s.fectl & IP) | (v & IM);
                if s.fectl & IM == 0 && s.fectl & IP != 0 {
                    let m = (s.feaddr, s.fedata);
                    s.msis.push(m);
                    s.fectl &= !IP;
                }
            }
            FEDATA => self.s.borrow_mut().fedata = v & 0xffff,
            FEADDR => self.s.borrow_mut().feaddr = v & !3,
            ICS => {
                let mut s = self.s.borrow_mut();
                if v & 1 != 0 {
                    s.ics &= !1;
                    s.iectl &= !IP;
                }
            }
            IECTL => {
                let mut s = self.s.borrow_mut();
                s.iectl = (s.iectl & IP) | (v & IM);
            }
            IEDATA => self.s.borrow_mut().iedata = v,
            IEADDR => self.s.borrow_mut().ieaddr = v & !3,
            _ => {}
        }
    }

    /// GCMD: compare the written value with GSTS (hw-facts 4.5).
    pub(super) fn gcmd(&self, v: u32) {
        let mut s = self.s.borrow_mut();
        let st = s.gsts;
        let stuck = s.stuck_status;
        let dma_translation = (s.cap >> 8) & 0x1f != 0;
        if (st & TE) != (v & TE) && stuck & TE == 0 && dma_translation {
            s.gsts ^= TE;
            s.ctx_cache.clear();
            s.iotlb.clear();
            if v & TE == 0 {
                s.next_frcd = 0;
            }
        }
        if v & SRTP != 0 && stuck & SRTP == 0 {
            s.rta = s.rtaddr;
            s.gsts |= SRTP;
            s.ctx_cache.clear();
            s.iotlb.clear();
        }
        if v & WBF != 0 && stuck & WBF != 0 {
            // A flush that never completes.
            s.gsts |= WBF;
        }
        let mut run_queue = false;
        if (st & QIE) != (v & QIE) && stuck & QIE == 0 {
            if v & QIE != 0 {
                s.iq_base = s.iqa & !0xfff;
                s.iq_size = 1 << ((s.iqa & 7) + 8);
                s.gsts |= QIE;
                run_queue = s.iqt != 0;
            } else if s.iqh == s.iqt && s.last_was_wait {
                s.gsts &= !QIE;
                s.iqh = 0;
            }
        }
        if (st & IRE) != (v & IRE) && s.ecap & (1 << 3) != 0 && stuck & IRE == 0 {
            s.gsts ^= IRE;
        }
        if v & SIRTP != 0 && stuck & SIRTP == 0 {
            // Latch IRTA (table address, 2^(S+1) entries, EIME) and flush the
            // interrupt entry cache (hw-facts 4.5).
            let haw = ((s.cap >> 16) & 0x3f) + 1;
            s.ir_root = s.irta & ((1u64 << haw) - 1) & !0xfff;
            s.ir_size = 1 << ((s.irta & 0xf) + 1);
            s.ir_eime = s.irta & (1 << 11) != 0 && s.ecap & (1 << 4) != 0;
            s.iec.clear();
            s.gsts |= SIRTP;
        }
        // CFI follows the spec (§11.4.4): QEMU 7.2 does not implement it and lets
        // compatibility-format MSIs through whatever CFIS says (hw-facts 4.5).
        if (st & CFI) != (v & CFI) && s.ecap & (1 << 3) != 0 && stuck & CFI == 0 {
            s.gsts ^= CFI;
        }
        drop(s);
        if run_queue {
            self.process_queue();
        }
    }

    pub(super) fn log_write(&self, offset: usize, value: u64, width: u8) {
        self.s.borrow_mut().writes.push(RegWrite {
            offset,
            value,
            width,
        });
    }
}

impl<M: PhysMemory> RegisterAccess for VtdModel<M> {
    fn read8(&self, offset: usize) -> u8 {
        (self.read32(offset & !3) >> ((offset & 3) * 8)) as u8
    }

    fn read16(&self, offset: usize) -> u16 {
        (self.read32(offset & !3) >> ((offset & 2) * 8)) as u16
    }

    fn read32(&self, offset: usize) -> u32 {
        if let Some(v) = self.reg32(offset) {
            return v;
        }
        match self.reg64(offset & !7) {
            Some(v) if offset & 4 != 0 => (v >> 32) as u32,
            Some(v) => v as u32,
            None => 0,
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        if offset == IQH {
            let mut s = self.s.borrow_mut();
            if s.busy_queue > 0 {
                s.busy_queue -= 1;
                s.iqh = (((s.iqh >> 4) + 1) % s.iq_size) << 4;
                s.last_was_wait = s.busy_queue == 0;
            }
        }
        match self.reg64(offset) {
            Some(v) => v,
            None => self.read32(offset) as u64 | (self.read32(offset + 4) as u64) << 32,
        }
    }

    fn write8(&self, _offset: usize, _value: u8) {
        panic!("model: VT-d registers accept only 4- and 8-byte accesses (hw-facts 4.2)");
    }

    fn write16(&self, _offset: usize, _value: u16) {
        panic!("model: VT-d registers accept only 4- and 8-byte accesses (hw-facts 4.2)");
    }

    fn write32(&self, offset: usize, value: u32) {
        self.log_write(offset, value as u64, 4);
        if self.reg32(offset).is_some() {
            self.write_reg32(offset, value);
            return;
        }
        let base = offset & !7;
        if let Some(old) = self.reg64(base) {
            let high = offset & 4 != 0;
            let v = if high {
                (old & 0xffff_ffff) | (value as u64) << 32
            } else {
                (old & !0xffff_ffff) | value as u64
            };
            // CCMD and IOTLB act only on a write of the high dword (hw-facts 4.2); the
            // queue tail acts on the low dword; FRCD's F is in the high dword.
            let is_fr = {
                let (fro, nfr) = self.fro();
                base >= fro && base < fro + nfr * 16 && (base - fro) % 16 == 8
            };
            if is_fr {
                if high {
                    self.write_reg64(base, (value as u64) << 32, true);
                }
                return;
            }
            let acts = if base == IQT { !high } else { high };
            self.write_reg64(base, v, acts);
        }
    }

    fn write64(&self, offset: usize, value: u64) {
        assert!(
            !matches!(offset, FECTL | IECTL | IEADDR),
            "model: 64-bit write to {offset:#x} aborts QEMU (hw-facts 4.2)"
        );
        if self.reg64(offset).is_some() {
            self.log_write(offset, value, 8);
            self.write_reg64(offset, value, true);
        } else {
            self.write32(offset, value as u32);
            self.write32(offset + 4, (value >> 32) as u32);
        }
    }
}
