//! Invalidation in the model: context-cache and IOTLB invalidation (register and queued) and the invalidation queue with its wait descriptors and errors.

use super::*;

impl<M: PhysMemory> VtdModel<M> {
    // ----- invalidation -----

    pub(super) fn inval_context(s: &mut State, g: u64, sid: u16, fm: u8) -> u64 {
        s.ctx_invalidations += 1;
        match g {
            // Domain-selective is treated as global (hw-facts 4.8).
            1 | 2 => {
                s.ctx_cache.clear();
                1
            }
            3 => {
                let mask: u16 = match fm & 3 {
                    0 => 0xffff,
                    1 => 0xfffb,
                    2 => 0xfff9,
                    _ => 0xfff8,
                };
                s.ctx_cache.retain(|&k, _| k & mask != sid & mask);
                // IOTLB entries of that device keep their did; QEMU also drops them
                // from the device's address space, but the spec asks software for an
                // IOTLB invalidation too, which tests check separately.
                3
            }
            _ => 0,
        }
    }

    pub(super) fn inval_iotlb(s: &mut State, g: u64, did: u16, addr: u64, am: u8) -> u64 {
        s.iotlb_invalidations += 1;
        let mamv = ((s.cap >> 48) & 0x3f) as u8;
        match g {
            1 => {
                s.iotlb.clear();
                1
            }
            2 => {
                s.iotlb.retain(|_, e| e.did != did);
                2
            }
            3 if am <= mamv => {
                let first = (addr >> 12) & !((1u64 << am) - 1);
                let last = first + (1u64 << am) - 1;
                s.iotlb.retain(|&(_, lvl, gfn), e| {
                    let shift = 9 * (lvl as u32 - 1);
                    let p0 = gfn << shift;
                    let p1 = p0 + (1u64 << shift) - 1;
                    e.did != did || p1 < first || p0 > last
                });
                3
            }
            _ => 0,
        }
    }

    pub(super) fn process_queue(&self) {
        loop {
            let (head, tail, base, size) = {
                let s = self.s.borrow();
                if s.gsts & QIE == 0 || s.fsts & IQE != 0 || s.stuck_invalidation {
                    return;
                }
                (s.iqh >> 4, s.iqt >> 4, s.iq_base, s.iq_size)
            };
            if tail >= size {
                let mut s = self.s.borrow_mut();
                s.fsts |= IQE;
                Self::raise_fault_event(&mut s, false);
                return;
            }
            if head == tail {
                return;
            }
            let pa = base + head * 16;
            let lo = self.mem.read_u64(PhysAddr::new(pa));
            let hi = self.mem.read_u64(PhysAddr::new(pa + 8));
            let injected = core::mem::take(&mut self.s.borrow_mut().inject_queue_error);
            let again = self.s.borrow().rejected == Some((head, lo, hi));
            let ok = !injected && !again && self.run_descriptor(lo, hi);
            let mut s = self.s.borrow_mut();
            if !ok {
                s.rejected = Some((head, lo, hi));
                s.fsts |= IQE;
                Self::raise_fault_event(&mut s, false);
                return;
            }
            s.rejected = None;
            s.last_was_wait = lo & 0xf == 5;
            s.iqh = ((head + 1) % size) << 4;
        }
    }

    pub(super) fn run_descriptor(&self, lo: u64, hi: u64) -> bool {
        match lo & 0xf {
            1 => {
                if lo & 0xfffc_0000_0000_ffc0 != 0 || hi != 0 {
                    return false;
                }
                let mut s = self.s.borrow_mut();
                Self::inval_context(
                    &mut s,
                    (lo >> 4) & 3,
                    (lo >> 32) as u16,
                    ((lo >> 48) & 3) as u8,
                ) != 0
            }
            2 => {
                if lo & 0xffff_ffff_0000_ff00 != 0 || hi & 0xf80 != 0 {
                    return false;
                }
                let mut s = self.s.borrow_mut();
                Self::inval_iotlb(
                    &mut s,
                    (lo >> 4) & 3,
                    (lo >> 16) as u16,
                    hi & !0xfff,
                    (hi & 0x3f) as u8,
                ) != 0
            }
            3 => lo & 0xffff_0000_ffe0_fff8 == 0 && hi & 0xffe == 0,
            4 => {
                // §6.5.2.7: G (bit 4) 0 = global, 1 = index-selective over
                // IIDX (47:32) aligned down to 2^IM (31:27) entries.
                let mut s = self.s.borrow_mut();
                s.iec_invalidations += 1;
                if lo & (1 << 4) == 0 {
                    s.iec.clear();
                } else {
                    let im = ((lo >> 27) & 0x1f) as u32;
                    let first = ((lo >> 32) as u16 as u32) & !((1u32 << im) - 1);
                    let last = first + (1u32 << im) - 1;
                    s.iec
                        .retain(|&i, _| (i as u32) < first || (i as u32) > last);
                }
                true
            }
            6 | 7 => true,
            5 => {
                if lo & 0xffff_ff80 != 0 || hi & 3 != 0 {
                    return false;
                }
                let sw = lo & (1 << 5) != 0;
                let iflag = lo & (1 << 4) != 0;
                assert!(
                    !(sw && iflag),
                    "model: wait descriptor with SW and IF both set aborts QEMU (hw-facts 4.10)"
                );
                if sw {
                    self.mem.write_u32(PhysAddr::new(hi), (lo >> 32) as u32);
                    true
                } else if iflag {
                    let mut s = self.s.borrow_mut();
                    s.ics |= 1;
                    s.iectl |= IP;
                    if s.iectl & IM == 0 {
                        let m = (s.ieaddr, s.iedata);
                        s.msis.push(m);
                        s.iectl &= !IP;
                    }
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    }
}
