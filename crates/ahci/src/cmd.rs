//! Command issue (libahci's `ahci_qc_prep` / `ahci_qc_issue`): the command FIS and PRDT
//! in a table, the header in slot 0, PxCI, and the wait for the end of it; IDENTIFY,
//! READ/WRITE DMA EXT and FLUSH CACHE EXT on top.

use super::*;

impl<R: RegisterAccess, D: Delay> Hba<R, D> {
    pub(crate) fn identify_port(&self, port: &Port) -> Result<Identify, AhciError> {
        let buf = DmaBuf::alloc(self.dev.platform(), 512)?;
        let mut s = DmaStream::<FromDevice>::map(&self.dev, buf).map_err(|e| e.error)?;
        let seg = [DmaSegment {
            addr: s.dma_addr(),
            len: 512,
        }];
        self.exec(port, regs::ATA_IDENTIFY, 0, 0, false, Data::Segments(&seg))?;
        let mut id = [0u8; 512];
        s.sync_for_cpu().read(0, &mut id);
        Ok(parse_identify(&id))
    }

    /// Writes a command table (the command FIS `fis` and one PRD entry per segment)
    /// and the header of command slot `slot`; the caller sets PxCI (and PxSACT).
    pub(crate) fn prepare(
        &self,
        port: &Port,
        slot: usize,
        fis: &[u8; 20],
        write: bool,
        segs: &[DmaSegment],
    ) -> Result<DmaPoolBlock, AhciError> {
        let p = port.index;
        if let Err((index, reason)) = check_prdt(segs, self.cap.contains(Cap::S64A)) {
            let (addr, len) = segs.get(index).map_or((0, 0), |s| (s.addr.as_u64(), s.len));
            return Err(AhciError::BadSegment {
                port: p,
                index,
                addr,
                len,
                reason,
            });
        }
        let table = port.tables.alloc()?;
        for (i, dw) in fis.as_chunks::<4>().0.iter().enumerate() {
            table.write::<u32>(regs::CT_CFIS + 4 * i, u32::from_le_bytes(*dw));
        }
        for (i, s) in segs.iter().enumerate() {
            for (j, dw) in regs::prd(s.addr.as_u64(), s.len).iter().enumerate() {
                table.write::<u32>(regs::CT_PRDT + i * regs::PRD_SIZE + 4 * j, *dw);
            }
        }
        trace_prdt(segs, &table);
        let ct = table.dma_addr().as_u64();
        let hdr = slot * regs::CMD_HDR_SIZE;
        let mut dw0 = regs::FIS_H2D_DWORDS | ((segs.len() as u32) << regs::HDR_PRDTL_SHIFT);
        if write {
            dw0 |= regs::HDR_W;
        }
        port.area.write::<u32>(hdr + regs::HDR_DW0, dw0);
        port.area.write::<u32>(hdr + regs::HDR_PRDBC, 0);
        port.area.write::<u32>(hdr + regs::HDR_CTBA, ct as u32);
        port.area
            .write::<u32>(hdr + regs::HDR_CTBAU, (ct >> 32) as u32);
        Ok(table)
    }

    /// Writes the command table and header for one command and sets PxCI.
    pub(crate) fn issue(
        &self,
        port: &Port,
        command: u8,
        lba: u64,
        count: u16,
        write: bool,
        data: &Data<'_>,
    ) -> Result<DmaPoolBlock, AhciError> {
        let p = port.index;
        let segs: &[DmaSegment] = match data {
            Data::None => &[],
            Data::Segments(s) => s,
        };
        let table = self.prepare(port, SLOT, &regs::h2d_fis(command, lba, count), write, segs)?;
        // Table and header must be in memory before the HBA is told to fetch them.
        hal::dma_wmb();
        self.wpreg(p, regs::PX_IS, u32::MAX);
        // Bits a handler latched for an earlier command are not this one's.
        self.irq.take(p);
        self.wpreg(p, regs::PX_CI, 1 << SLOT);
        Ok(table)
    }

    /// Runs one command to completion, error or timeout (with recovery after either).
    pub(crate) fn exec(
        &self,
        port: &Port,
        command: u8,
        lba: u64,
        count: u16,
        write: bool,
        data: Data<'_>,
    ) -> Result<(), AhciError> {
        let p = port.index;
        if port.failed.load(Ordering::Relaxed) {
            return Err(AhciError::PortFailed(p));
        }
        let expected: usize = match &data {
            Data::None => 0,
            Data::Segments(s) => s.iter().map(|s| s.len).sum(),
        };
        let table = self.issue(port, command, lba, count, write, &data)?;
        let us = self.cfg.command_timeout_ms.saturating_mul(1000);
        let mut is = 0u32;
        let done = self.wait_command(p, us, &mut is);
        let tfd = self.preg(p, regs::PX_TFD);
        let result = if !done {
            Err(AhciError::Timeout {
                port: p,
                command,
                ms: self.cfg.command_timeout_ms,
            })
        } else if is & PxIs::TFES.bits() != 0 || tfd & regs::TFD_ERR != 0 {
            let mut fis = [0u8; 20];
            port.area.read_bytes(FIS_OFF + regs::RX_FIS_RFIS, &mut fis);
            Err(AhciError::TaskFile {
                port: p,
                command,
                status: tfd as u8,
                error: (tfd >> 8) as u8,
                lba: regs::fis_lba(&fis),
            })
        } else if is & PxIs::FATAL.bits() != 0 {
            Err(AhciError::HostBus {
                port: p,
                command,
                is,
            })
        } else {
            let got = port
                .area
                .read::<u32>(SLOT * regs::CMD_HDR_SIZE + regs::HDR_PRDBC);
            if got as usize != expected {
                Err(AhciError::ShortTransfer {
                    port: p,
                    expected,
                    got,
                })
            } else {
                Ok(())
            }
        };
        self.wpreg(p, regs::PX_IS, is);
        if let Err(e) = &result {
            log::warn!("{}: {e}", port.name);
            // The HBA may still be fetching this command: stop the port (and
            // recover it) before the table goes back to the pool.
            self.recover(port);
        }
        drop(table);
        result
    }

    /// Runs a command on the disk at `i`.
    pub(crate) fn exec_recover(
        &mut self,
        i: usize,
        command: u8,
        lba: u64,
        count: u16,
        write: bool,
        data: Data<'_>,
    ) -> Result<(), AhciError> {
        // A non-queued command may not be issued while NCQ commands are active.
        self.ncq_drain(i);
        self.exec(&self.ports[i], command, lba, count, write, data)
    }

    pub(crate) fn disk_index(&self, disk: usize) -> Result<usize, AhciError> {
        if disk < self.ports.len() {
            Ok(disk)
        } else {
            Err(AhciError::NoDisk(disk))
        }
    }

    /// Reads `count = len(sg) / sector size` sectors from `lba` of disk number `disk`
    /// (0 = this HBA's first) into the physical scatter list `sg`.
    pub fn read(&mut self, disk: usize, lba: u64, sg: &SgTable) -> Result<(), AhciError> {
        self.rw(disk, lba, sg, false)
    }

    /// Writes `sg` to disk number `disk` from `lba`.
    pub fn write(&mut self, disk: usize, lba: u64, sg: &SgTable) -> Result<(), AhciError> {
        self.rw(disk, lba, sg, true)
    }

    pub(crate) fn rw(
        &mut self,
        disk: usize,
        lba: u64,
        sg: &SgTable,
        write: bool,
    ) -> Result<(), AhciError> {
        let i = self.disk_index(disk)?;
        let count = self.check_rw(i, lba, sg)?;
        let dir = if write {
            DmaDirection::ToDevice
        } else {
            DmaDirection::FromDevice
        };
        let m = self.dev.map_sg(sg.clone(), dir)?;
        let segs = m.segments().to_vec();
        let cmd = if write {
            regs::ATA_WRITE_DMA_EXT
        } else {
            regs::ATA_READ_DMA_EXT
        };
        let r = self.exec_recover(i, cmd, lba, count as u16, write, Data::Segments(&segs));
        // Unmapping copies bounced data back (FromDevice) and tears the IOVAs down.
        drop(m.unmap());
        r
    }

    /// Reads `count` sectors from `lba` of disk number `disk` to the bus addresses in
    /// `segs` exactly as given: nothing is mapped or checked against a mapping. It
    /// exists to show what an IOMMU does with a device that writes where it was not
    /// told to (`blk stray`); every other read goes through [`read`](Self::read).
    ///
    /// # Safety
    /// The HBA writes the sectors to every address in `segs`. Unless each one is a
    /// live mapping of this HBA's DMA device with room for its length, or an IOVA
    /// the device's IOMMU domain leaves unmapped (so the write faults), the HBA
    /// overwrites whatever memory it reaches there.
    // The crate's one unsafe item: a contract, no unsafe operation inside.
    #[allow(unsafe_code)]
    pub unsafe fn read_to_bus(
        &mut self,
        disk: usize,
        lba: u64,
        count: u16,
        segs: &[DmaSegment],
    ) -> Result<(), AhciError> {
        let i = self.disk_index(disk)?;
        let port = &self.ports[i];
        let Some(id) = &port.id else {
            return Err(AhciError::NoDisk(i));
        };
        let total: usize = segs.iter().map(|s| s.len).sum();
        let bad = |reason| AhciError::BadRequest {
            port: port.index,
            reason,
        };
        if count == 0 || total != count as usize * id.sector_size {
            return Err(bad("the segments do not hold the sectors asked for"));
        }
        if lba
            .checked_add(count as u64)
            .is_none_or(|end| end > id.sectors)
        {
            return Err(bad("beyond the end of the disk"));
        }
        // The PRD rules are checked where the table is written (`prepare`).
        self.exec_recover(
            i,
            regs::ATA_READ_DMA_EXT,
            lba,
            count,
            false,
            Data::Segments(segs),
        )
    }

    /// Checks a read or write of `sg` at `lba` against disk `i` and one command;
    /// returns its sector count.
    pub(crate) fn check_rw(&self, i: usize, lba: u64, sg: &SgTable) -> Result<u64, AhciError> {
        let port = &self.ports[i];
        let p = port.index;
        let Some(id) = &port.id else {
            return Err(AhciError::NoDisk(i));
        };
        let total: usize = sg.entries().iter().map(|e| e.len).sum();
        let ss = id.sector_size;
        if total == 0 || !total.is_multiple_of(ss) {
            return Err(AhciError::BadRequest {
                port: p,
                reason: "length is not a whole number of sectors",
            });
        }
        let count = (total / ss) as u64;
        if count > MAX_SECTORS {
            return Err(AhciError::BadRequest {
                port: p,
                reason: "more than 65535 sectors in one command",
            });
        }
        if lba.checked_add(count).is_none_or(|end| end > id.sectors) {
            return Err(AhciError::BadRequest {
                port: p,
                reason: "beyond the end of the disk",
            });
        }
        Ok(count)
    }

    /// FLUSH CACHE EXT on disk number `disk`.
    pub fn flush(&mut self, disk: usize) -> Result<(), AhciError> {
        let i = self.disk_index(disk)?;
        self.exec_recover(i, regs::ATA_FLUSH_CACHE_EXT, 0, 0, false, Data::None)
    }

    /// Re-reads IDENTIFY DEVICE from disk number `disk`.
    pub fn identify(&mut self, disk: usize) -> Result<Identify, AhciError> {
        let i = self.disk_index(disk)?;
        self.ncq_drain(i);
        let id = self.identify_port(&self.ports[i])?;
        self.ports[i].id = Some(id.clone());
        Ok(id)
    }
}
