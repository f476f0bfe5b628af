//! Port start and stop (libahci's `ahci_port_start`, `ahci_start_engine`,
//! `ahci_stop_engine`, `ahci_start_fis_rx`): the command list and received-FIS page,
//! the command-table pool, and a port's retirement.

use super::*;

impl<R: RegisterAccess, D: Delay> Hba<R, D> {
    /// Brings up port `p`: `Ok(None)` if nothing (or no ATA disk) is attached.
    pub(crate) fn port_init(
        &mut self,
        p: usize,
        disk_index: usize,
    ) -> Result<Option<Port>, AhciError> {
        let ssts = self.preg(p, regs::PX_SSTS);
        if ssts & regs::DET_MASK != regs::SSTS_DET_PRESENT {
            return Ok(None);
        }
        self.stop_port(p)?;
        let area = self.dev.alloc_coherent(dma::PAGE_SIZE)?.into_device();
        let tables = DmaPool::new(
            &self.dev,
            "ahci-cmd-table",
            CMD_TABLE_SIZE,
            regs::CT_ALIGN,
            0,
        )?;
        let clb = area.dma_addr().as_u64();
        let fb = clb + FIS_OFF as u64;
        self.wpreg(p, regs::PX_CLB, clb as u32);
        self.wpreg(p, regs::PX_FB, fb as u32);
        if self.cap.contains(Cap::S64A) {
            self.wpreg(p, regs::PX_CLBU, (clb >> 32) as u32);
            self.wpreg(p, regs::PX_FBU, (fb >> 32) as u32);
        }
        self.wpreg(p, regs::PX_SERR, u32::MAX);
        self.wpreg(p, regs::PX_IS, u32::MAX);
        self.wpreg(p, regs::PX_IE, PxIs::DEFAULT_IE.bits());
        let mut port = Port {
            index: p,
            name: block::sd_name(disk_index),
            area,
            tables,
            id: None,
            failed: AtomicBool::new(false),
            queue: ncq::Queue::default(),
        };
        if let Err(e) = self.start_port(p) {
            self.retire(port);
            return Err(e);
        }
        let sig = self.preg(p, regs::PX_SIG);
        if sig != regs::SIG_ATA {
            log::info!("ahci: port {p}: signature {sig:#010x}, not an ATA disk; skipped");
            self.retire(port);
            return Ok(None);
        }
        let id = match self.identify_port(&port) {
            Ok(id) => id,
            Err(e) => {
                // The HBA may touch the list and FIS area until it has stopped.
                self.retire(port);
                return Err(e);
            }
        };
        port.queue = ncq::Queue::new(self.depth_for(&id));
        let ncq = match port.queue.depth {
            1 => alloc::string::String::from("no NCQ"),
            n => alloc::format!("NCQ depth {n}"),
        };
        log::info!(
            "ahci: port {p}: {} \"{}\" {} sectors of {} bytes, {ncq}",
            port.name,
            id.model,
            id.sectors,
            id.sector_size
        );
        port.id = Some(id);
        Ok(Some(port))
    }

    /// Stops a port and frees its memory, or leaks the memory if the port does not
    /// stop (the HBA might still write its FIS area).
    pub(crate) fn retire(&self, port: Port) {
        if let Err(e) = self.stop_port(port.index) {
            log::error!("ahci: {e}; its command list, FIS area and tables are leaked");
            core::mem::forget(port.area);
            core::mem::forget(port.tables);
        }
    }

    pub(crate) fn stop_port(&self, p: usize) -> Result<(), AhciError> {
        let cmd = PxCmd::from_bits_retain(self.preg(p, regs::PX_CMD));
        if cmd.intersects(PxCmd::ST | PxCmd::CR) {
            self.wpreg(p, regs::PX_CMD, (cmd - PxCmd::ST).bits());
            if !self.wait(500_000, || {
                self.preg(p, regs::PX_CMD) & PxCmd::CR.bits() == 0
            }) {
                return Err(AhciError::PortStuck {
                    port: p,
                    what: "command list did not stop (PxCMD.CR)",
                });
            }
        }
        let cmd = PxCmd::from_bits_retain(self.preg(p, regs::PX_CMD));
        if cmd.intersects(PxCmd::FRE | PxCmd::FR) {
            self.wpreg(p, regs::PX_CMD, (cmd - PxCmd::FRE).bits());
            if !self.wait(500_000, || {
                self.preg(p, regs::PX_CMD) & PxCmd::FR.bits() == 0
            }) {
                return Err(AhciError::PortStuck {
                    port: p,
                    what: "FIS receive did not stop (PxCMD.FR)",
                });
            }
        }
        Ok(())
    }

    pub(crate) fn start_port(&self, p: usize) -> Result<(), AhciError> {
        let cmd = self.preg(p, regs::PX_CMD);
        self.wpreg(p, regs::PX_CMD, cmd | PxCmd::FRE.bits());
        if !self.wait(1_000_000, || {
            self.preg(p, regs::PX_TFD) & (regs::TFD_BSY | regs::TFD_DRQ) == 0
        }) {
            return Err(AhciError::PortStuck {
                port: p,
                what: "device stayed busy (PxTFD.BSY/DRQ)",
            });
        }
        self.wpreg(p, regs::PX_SERR, u32::MAX);
        let cmd = self.preg(p, regs::PX_CMD);
        self.wpreg(p, regs::PX_CMD, cmd | PxCmd::ST.bits());
        Ok(())
    }
}
