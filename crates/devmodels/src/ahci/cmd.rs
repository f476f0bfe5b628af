//! Command execution (QEMU's `handle_cmd` / `ahci_dma_prepare_buf` / `ahci_dma_rw_buf`):
//! the command header and FIS, the PRDT walk, the data moved, IDENTIFY's data.

use super::*;

impl<B: DmaBus> AhciModel<B> {
    /// Runs the command in `slot`; false if the port must halt.
    pub(super) fn command(&self, i: usize, p: &mut Port, slot: usize) -> bool {
        let bus_fault = |fault| {
            self.model_error(ModelError::Bus { port: i, fault });
        };
        let mut hdr = [0u8; 32];
        let hdr_addr = p.clb + 32 * slot as u64;
        if let Err(f) = self.bus.dma_read(hdr_addr, &mut hdr) {
            bus_fault(f);
            p.is |= IS_HBFS;
            return false;
        }
        let dw = |b: &[u8], k: usize| {
            u32::from_le_bytes([b[4 * k], b[4 * k + 1], b[4 * k + 2], b[4 * k + 3]])
        };
        let dw0 = dw(&hdr, 0);
        let write = dw0 & (1 << 6) != 0;
        let prdtl = (dw0 >> 16) as usize;
        let ctba = self.addr(dw(&hdr, 2), dw(&hdr, 3)) & !0x7f;
        let mut cfis = [0u8; 20];
        if let Err(f) = self.bus.dma_read(ctba, &mut cfis) {
            bus_fault(f);
            p.is |= IS_HBFS;
            return false;
        }
        let lba = u64::from_le_bytes([cfis[4], cfis[5], cfis[6], cfis[8], cfis[9], cfis[10], 0, 0]);
        let count = u16::from_le_bytes([cfis[12], cfis[13]]) as u32;
        let command = cfis[2];
        let mut log = CmdLog {
            port: i,
            slot,
            command,
            lba,
            count,
            tag: None,
            write,
            ctba,
            prdt: Vec::new(),
            ok: false,
        };
        let mut prdt_ok = true;
        let mut raw = vec![0u8; prdtl * 16];
        if let Err(f) = self.bus.dma_read(ctba + 0x80, &mut raw) {
            bus_fault(f);
            p.is |= IS_HBFS;
            self.s.borrow_mut().log.push(log);
            return false;
        }
        for (k, e) in raw.as_chunks::<16>().0.iter().enumerate() {
            let dba = self.addr(dw(e, 0), dw(e, 1)) & !1;
            let bytes = (dw(e, 3) & 0x3f_ffff) + 1;
            if bytes % 2 != 0 {
                self.model_error(ModelError::OddByteCount {
                    port: i,
                    entry: k,
                    bytes,
                });
                prdt_ok = false;
            }
            log.prdt.push((dba, bytes));
        }
        let fpdma = command == ncq::READ_FPDMA || command == ncq::WRITE_FPDMA;
        if fpdma && cfis[0] == 0x27 && cfis[1] & 0x80 != 0 && prdt_ok {
            let sectors = match u16::from_le_bytes([cfis[3], cfis[11]]) {
                0 => 65536,
                n => n as u64,
            };
            let prdt: u64 = log.prdt.iter().map(|e| e.1 as u64).sum();
            if prdt < sectors * SECTOR as u64 {
                // QEMU: `ncq_err` and PxIS.OFS; the tag stays in PxSACT.
                self.model_error(ModelError::PrdtShort {
                    port: i,
                    prdt,
                    needed: sectors * SECTOR as u64,
                });
                p.tfd = (ERR_ABRT as u32) << 8 | (STS_DRDY | STS_ERR) as u32;
                p.is |= IS_OFS;
                self.s.borrow_mut().log.push(log);
                return true;
            }
            self.ncq_queue(p, slot, &cfis, log);
            return true;
        }
        let done = if cfis[0] != 0x27 || cfis[1] & 0x80 == 0 {
            self.model_error(ModelError::BadFis {
                port: i,
                fis_type: cfis[0],
            });
            Done::TaskFile {
                status: STS_DRDY | STS_ERR,
                error: ERR_ABRT,
                lba: 0,
            }
        } else if !prdt_ok {
            Done::Stop(IS_HBDS)
        } else {
            self.execute(i, p, command, lba, count, &log.prdt)
        };
        let ok = match done {
            Done::Ok(bytes) => {
                let _ = self.bus.dma_write(hdr_addr + 4, &bytes.to_le_bytes());
                self.d2h(i, p, STS_DRDY | STS_DSC, 0, lba, count as u16);
                true
            }
            Done::TaskFile { status, error, lba } => {
                self.d2h(i, p, status, error, lba, 0);
                false
            }
            Done::Stop(bits) => {
                p.is |= bits;
                false
            }
        };
        log.ok = ok;
        self.s.borrow_mut().log.push(log);
        ok
    }

    pub(super) fn execute(
        &self,
        i: usize,
        p: &mut Port,
        command: u8,
        lba: u64,
        count: u32,
        prdt: &[(u64, u32)],
    ) -> Done {
        let sectors = p.disk.as_ref().map_or(0, |d| d.sectors());
        let count = if count == 0 { 65536 } else { count as u64 };
        match command {
            0xec => {
                let id = match &p.disk {
                    Some(d) => identify(d, p.ncq_depth),
                    None => [0; 512],
                };
                self.scatter(i, prdt, &id)
            }
            0x25 | 0x35 => {
                if lba.checked_add(count).is_none_or(|e| e > sectors) {
                    return Done::TaskFile {
                        status: STS_DRDY | STS_ERR,
                        error: ERR_IDNF,
                        lba,
                    };
                }
                if let Some(&bad) = p
                    .media_errors
                    .iter()
                    .filter(|&&b| b >= lba && b < lba + count)
                    .min()
                {
                    return Done::TaskFile {
                        status: STS_DRDY | STS_ERR,
                        error: ERR_UNC,
                        lba: bad,
                    };
                }
                let (off, len) = (lba as usize * SECTOR, count as usize * SECTOR);
                let Some(d) = p.disk.as_mut() else {
                    return Done::Stop(IS_HBFS);
                };
                if command == 0x25 {
                    let data = d.data[off..off + len].to_vec();
                    self.scatter(i, prdt, &data)
                } else {
                    match self.gather(i, prdt, len) {
                        Ok(data) => {
                            d.data[off..off + len].copy_from_slice(&data);
                            Done::Ok(len as u32)
                        }
                        Err(bits) => Done::Stop(bits),
                    }
                }
            }
            0xea => {
                p.flushes += 1;
                Done::Ok(0)
            }
            _ => Done::TaskFile {
                status: STS_DRDY | STS_ERR,
                error: ERR_ABRT,
                lba: 0,
            },
        }
    }

    pub(super) fn prdt_check(
        &self,
        i: usize,
        prdt: &[(u64, u32)],
        needed: usize,
    ) -> Result<(), u32> {
        let total: u64 = prdt.iter().map(|e| e.1 as u64).sum();
        if total < needed as u64 {
            self.model_error(ModelError::PrdtShort {
                port: i,
                prdt: total,
                needed: needed as u64,
            });
            return Err(IS_OFS);
        }
        Ok(())
    }

    /// Device → memory across the PRD entries, byte-granular.
    pub(super) fn scatter(&self, i: usize, prdt: &[(u64, u32)], data: &[u8]) -> Done {
        if let Err(bits) = self.prdt_check(i, prdt, data.len()) {
            return Done::Stop(bits);
        }
        let mut done = 0usize;
        for &(addr, bytes) in prdt {
            if done == data.len() {
                break;
            }
            let n = (bytes as usize).min(data.len() - done);
            if let Err(fault) = self.bus.dma_write(addr, &data[done..done + n]) {
                self.model_error(ModelError::Bus { port: i, fault });
                return Done::Stop(IS_HBFS);
            }
            done += n;
        }
        Done::Ok(done as u32)
    }

    /// Memory → device.
    pub(super) fn gather(&self, i: usize, prdt: &[(u64, u32)], len: usize) -> Result<Vec<u8>, u32> {
        self.prdt_check(i, prdt, len)?;
        let mut out = vec![0u8; len];
        let mut done = 0usize;
        for &(addr, bytes) in prdt {
            if done == len {
                break;
            }
            let n = (bytes as usize).min(len - done);
            if let Err(fault) = self.bus.dma_read(addr, &mut out[done..done + n]) {
                self.model_error(ModelError::Bus { port: i, fault });
                return Err(IS_HBFS);
            }
            done += n;
        }
        Ok(out)
    }
}

/// IDENTIFY DEVICE data for a model disk (512-byte sectors, LBA48, FLUSH EXT; NCQ
/// with `ncq_depth` tags unless 0).
pub(super) fn identify(d: &Disk, ncq_depth: u16) -> [u8; 512] {
    let mut w = [0u16; 256];
    let put_str = |w: &mut [u16; 256], first: usize, words: usize, s: &str| {
        let mut b: Vec<u8> = s.bytes().take(words * 2).collect();
        b.resize(words * 2, b' ');
        for k in 0..words {
            w[first + k] = (b[2 * k] as u16) << 8 | b[2 * k + 1] as u16;
        }
    };
    w[0] = 0x0040;
    put_str(&mut w, 10, 10, &d.serial);
    put_str(&mut w, 23, 4, "2.5+");
    put_str(&mut w, 27, 20, &d.model);
    w[49] = 1 << 9 | 1 << 8; // LBA, DMA
    let n = d.sectors();
    let n28 = n.min(0x0fff_ffff);
    if ncq_depth > 0 {
        // QEMU `ide_identify`: queue depth - 1, and word 76 bit 8 (NCQ supported).
        w[75] = ncq_depth - 1;
        w[76] = 1 << 8;
    }
    w[60] = n28 as u16;
    w[61] = (n28 >> 16) as u16;
    w[83] = 1 << 14 | 1 << 13 | 1 << 12 | 1 << 10;
    w[86] = 1 << 13 | 1 << 12 | 1 << 10;
    for k in 0..4 {
        w[100 + k] = (n >> (16 * k)) as u16;
    }
    w[106] = 0x4000;
    let mut out = [0u8; 512];
    for (k, v) in w.iter().enumerate() {
        out[2 * k..2 * k + 2].copy_from_slice(&v.to_le_bytes());
    }
    out
}
