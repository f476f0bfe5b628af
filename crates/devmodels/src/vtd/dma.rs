//! A device's DMA through the model: requester ID, context entry checks, the second-level page walk with its IOTLB and context cache, and the faults it records.

use super::*;

impl<M: PhysMemory> VtdModel<M> {
    pub(super) fn readable(&self, pa: u64, len: u64) -> bool {
        match self.s.borrow().ram {
            Some((a, b)) => pa >= a && pa + len <= b,
            None => true,
        }
    }

    // ----- DMA engine -----

    /// A device access of `len` bytes at `iova` from the device at `bus:devfn`
    /// (through the bridges added with [`VtdModel::add_bridge`]): translates every
    /// page touched and returns the physical address of the first byte. Faults are
    /// recorded like the hardware does.
    pub fn dma(
        &self,
        bus: u8,
        devfn: u8,
        iova: u64,
        len: usize,
        write: bool,
    ) -> Result<PhysAddr, Fault> {
        let sid = self.requester_id(bus, devfn);
        let first = self.access(sid, iova, write)?;
        let mut page = (iova & !0xfff) + 0x1000;
        while page < iova + len as u64 {
            self.access(sid, page, write)?;
            page += 0x1000;
        }
        Ok(PhysAddr::new(first))
    }

    /// Device write of `data` at `iova`, page by page.
    /// A 4-byte write into the interrupt window 0xFEEx_xxxx is an MSI and goes to
    /// [`VtdModel::msi_write`] instead of translation, as in QEMU.
    pub fn dma_write(&self, bus: u8, devfn: u8, iova: u64, data: &[u8]) -> Result<(), Fault> {
        if (INTR_FIRST..INTR_END).contains(&iova) {
            let Ok(bytes) = <[u8; 4]>::try_from(data) else {
                // QEMU's interrupt window takes 4-byte writes only.
                return Err(Fault {
                    sid: self.requester_id(bus, devfn),
                    addr: iova,
                    write: true,
                    reason: IR_REQ_RSVD,
                    recorded: false,
                });
            };
            return self
                .msi_write(bus, devfn, iova, u32::from_le_bytes(bytes))
                .map(|_| ());
        }
        let sid = self.requester_id(bus, devfn);
        let mut off = 0usize;
        while off < data.len() {
            let a = iova + off as u64;
            let n = core::cmp::min(data.len() - off, (0x1000 - (a & 0xfff)) as usize);
            let pa = self.access(sid, a, true)?;
            self.mem.write(PhysAddr::new(pa), &data[off..off + n]);
            off += n;
        }
        Ok(())
    }

    /// Device read into `buf` from `iova`, page by page.
    pub fn dma_read(&self, bus: u8, devfn: u8, iova: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let sid = self.requester_id(bus, devfn);
        let mut off = 0usize;
        while off < buf.len() {
            let a = iova + off as u64;
            let n = core::cmp::min(buf.len() - off, (0x1000 - (a & 0xfff)) as usize);
            let pa = self.access(sid, a, false)?;
            self.mem.read(PhysAddr::new(pa), &mut buf[off..off + n]);
            off += n;
        }
        Ok(())
    }

    pub(super) fn access(&self, sid: u16, iova: u64, write: bool) -> Result<u64, Fault> {
        match self.translate(sid, iova, write) {
            Ok(pa) => Ok(pa),
            Err((reason, qualified_suppressed)) => {
                let recorded = !qualified_suppressed && self.record_fault(sid, iova, write, reason);
                Err(Fault {
                    sid,
                    addr: iova,
                    write,
                    reason,
                    recorded,
                })
            }
        }
    }

    /// Context entry for `sid`: from the cache, or fetched and cached on success.
    /// Errors carry (reason, fpd).
    pub(super) fn context(&self, sid: u16) -> Result<(u64, u64), (u8, bool)> {
        if let Some(&c) = self.s.borrow().ctx_cache.get(&sid) {
            return Ok(c);
        }
        let (rta, cap, ecap) = {
            let s = self.s.borrow();
            (s.rta, s.cap, s.ecap)
        };
        let haw = ((cap >> 16) & 0x3f) + 1;
        let bus = (sid >> 8) as u64;
        let devfn = (sid & 0xff) as u64;
        let re_pa = (rta & !0xfff) + bus * 16;
        if !self.readable(re_pa, 16) {
            return Err((0x8, false));
        }
        let re_lo = self.mem.read_u64(PhysAddr::new(re_pa));
        let re_hi = self.mem.read_u64(PhysAddr::new(re_pa + 8));
        if re_lo & 1 == 0 {
            return Err((0x1, false));
        }
        // §9.1: lo bits 11:1 and bits >= HAW reserved; hi reserved in legacy mode.
        if re_lo & 0xffe != 0 || (re_lo >> haw) != 0 || re_hi != 0 {
            return Err((0xa, false));
        }
        let ce_pa = (re_lo & !0xfff) + devfn * 16;
        if !self.readable(ce_pa, 16) {
            return Err((0x9, false));
        }
        let lo = self.mem.read_u64(PhysAddr::new(ce_pa));
        let hi = self.mem.read_u64(PhysAddr::new(ce_pa + 8));
        let fpd = lo & 2 != 0;
        if lo & 1 == 0 {
            return Err((0x2, fpd));
        }
        if lo & 0xff0 != 0 || hi >> 24 != 0 || hi & 0x80 != 0 || (lo >> haw) != 0 {
            return Err((0xb, fpd));
        }
        let tt = (lo >> 2) & 3;
        let pt_ok = ecap & (1 << 6) != 0;
        let dt_ok = ecap & (1 << 2) != 0;
        match tt {
            0 => {}
            1 if dt_ok => {}
            2 if pt_ok => {}
            _ => return Err((0x3, fpd)),
        }
        // AW must be a SAGAW level, even for pass-through (hw-facts 4.6).
        let aw = hi & 7;
        let sagaw = (cap >> 8) & 0x1f;
        if aw > 3 || sagaw & (1 << aw) == 0 {
            return Err((0x3, fpd));
        }
        self.s.borrow_mut().ctx_cache.insert(sid, (lo, hi));
        Ok((lo, hi))
    }

    /// Translates one access. Err((reason, suppressed)).
    pub(super) fn translate(&self, sid: u16, iova: u64, write: bool) -> Result<u64, (u8, bool)> {
        if self.s.borrow().gsts & TE == 0 {
            return Ok(iova);
        }
        let (lo, hi) = match self.context(sid) {
            Ok(c) => c,
            Err((r, fpd)) => return Err((r, fpd && qualified(r))),
        };
        let fpd = lo & 2 != 0;
        let fail = |r: u8| Err((r, fpd && qualified(r)));
        if (lo >> 2) & 3 == 2 {
            return Ok(iova);
        }
        let (cap, ecap) = {
            let s = self.s.borrow();
            (s.cap, s.ecap)
        };
        let haw = ((cap >> 16) & 0x3f) as u32 + 1;
        let did = (hi >> 8) as u16;
        let levels = (hi & 7) as u32 + 2;
        let agaw = 12 + 9 * levels;
        if iova >> agaw.min(haw) != 0 {
            return fail(0x4);
        }
        let need = if write { 2u64 } else { 1u64 };
        let deny = if write { 0x5 } else { 0x6 };
        // IOTLB lookup (4 KiB, 2 MiB, 1 GiB).
        for lvl in 1..=3u32 {
            let shift = 12 + 9 * (lvl - 1);
            let key = (sid, lvl as u8, iova >> shift);
            let hit = self.s.borrow().iotlb.get(&key).copied();
            if let Some(e) = hit {
                if e.perm & need == 0 {
                    return fail(deny);
                }
                return Ok(e.pa | (iova & ((1u64 << shift) - 1)));
            }
        }
        let sc = ecap & (1 << 7) != 0;
        let mut table = lo & 0x000f_ffff_ffff_f000;
        let mut perm = 3u64;
        let mut level = levels;
        loop {
            let idx = (iova >> (12 + 9 * (level - 1))) & 0x1ff;
            let pa = table + idx * 8;
            if !self.readable(pa, 8) {
                return fail(if level == levels { 0x3 } else { 0x7 });
            }
            let e = self.mem.read_u64(PhysAddr::new(pa));
            perm &= e & 3;
            if perm & need == 0 {
                return fail(deny);
            }
            let ps = e & (1 << 7) != 0;
            // §9.8 reserved bits: address bits >= HAW, SNP without snoop control,
            // PS at level 4 and above.
            let addr_bits = e & 0x000f_ffff_ffff_f000;
            if (addr_bits >> haw) != 0 || (!sc && e & (1 << 11) != 0) || (ps && level >= 4) {
                return fail(0xc);
            }
            if level == 1 || ps {
                let shift = 12 + 9 * (level - 1);
                let size = 1u64 << shift;
                if ps && addr_bits & (size - 1) != 0 {
                    return fail(0xc);
                }
                let base = addr_bits & !(size - 1);
                if base < 0xfef0_0000 && base + size > 0xfee0_0000 {
                    return fail(0xe);
                }
                let mut s = self.s.borrow_mut();
                if s.iotlb.len() >= 1024 {
                    s.iotlb.clear();
                }
                s.iotlb.insert(
                    (sid, level as u8, iova >> shift),
                    IotlbEntry {
                        did,
                        pa: base,
                        perm,
                    },
                );
                return Ok(base | (iova & (size - 1)));
            }
            table = addr_bits;
            level -= 1;
        }
    }
}
