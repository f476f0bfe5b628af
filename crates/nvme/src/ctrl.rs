//! Controller enable, disable and reset (`nvme_enable_ctrl`, `nvme_disable_ctrl`,
//! `nvme_reset_work`): CC.EN, CSTS.RDY, the admin queue registers.

use super::*;

impl<R: RegisterAccess, D: Delay> Controller<R, D> {
    pub(crate) fn disable(&self) -> Result<(), NvmeError> {
        let cc = self.regs.read32(regs::CC);
        if cc & regs::CC_EN != 0 {
            self.regs.write32(regs::CC, cc & !regs::CC_EN);
        }
        let ms = self.timeout_ms();
        if !self.wait(ms.saturating_mul(1000), || {
            self.regs.read32(regs::CSTS) & regs::CSTS_RDY == 0
        }) {
            return Err(NvmeError::NotReady { want: false, ms });
        }
        Ok(())
    }

    /// Disable, program the admin queue, enable.
    pub(crate) fn enable(&mut self) -> Result<(), NvmeError> {
        self.disable()?;
        let admin = self
            .admin
            .as_mut()
            .ok_or(NvmeError::BadRequest("no admin queue"))?;
        admin.reset();
        let d = admin.depth as u32 - 1;
        let asq = admin.sq.dma_addr().as_u64();
        let acq = admin.cq.mem.dma_addr().as_u64();
        self.regs.write32(regs::AQA, d | d << 16);
        self.regs.write32(regs::ASQ, asq as u32);
        self.regs.write32(regs::ASQ + 4, (asq >> 32) as u32);
        self.regs.write32(regs::ACQ, acq as u32);
        self.regs.write32(regs::ACQ + 4, (acq >> 32) as u32);
        // CSS = 0 (NVM), MPS = 0 (4 KiB), AMS = 0 (round robin).
        let cc = regs::CC_IOSQES | regs::CC_IOCQES;
        self.regs.write32(regs::CC, cc);
        self.regs.write32(regs::CC, cc | regs::CC_EN);
        let ms = self.timeout_ms();
        let mut csts = 0;
        if !self.wait(ms.saturating_mul(1000), || {
            csts = self.regs.read32(regs::CSTS);
            csts & (regs::CSTS_RDY | regs::CSTS_CFS) != 0
        }) || csts & regs::CSTS_RDY == 0
        {
            return Err(NvmeError::NotReady { want: true, ms });
        }
        if csts & regs::CSTS_CFS != 0 {
            return Err(NvmeError::ControllerFatal { opcode: 0 });
        }
        Ok(())
    }

    /// Controller reset after a timeout or a fatal status: CC.EN = 0 stops every
    /// command and the controller's DMA; then bring-up again with the same queues.
    /// A controller that does not come back is out of service. Commands started by
    /// [`start_rw`](Self::start_rw) end with [`NvmeError::Aborted`].
    pub fn reset_controller(&mut self) {
        self.reset_with(ResetCause::Other);
    }

    /// The reset, ending the commands in flight as `cause` says: they are unmapped
    /// after the controller is disabled, before it is enabled again.
    pub(crate) fn reset_with(&mut self, cause: ResetCause) {
        self.resets += 1;
        self.resetting = true;
        let stopped = self.disable();
        self.end_in_flight(cause, stopped.is_ok());
        let r = stopped
            .and_then(|_| self.enable())
            .and_then(|_| self.create_io_queues());
        self.resetting = false;
        match r {
            Ok(()) => log::warn!("{}: controller reset, queues re-created", self.name),
            Err(e) => {
                log::error!(
                    "{}: reset failed: {e}; controller out of service",
                    self.name
                );
                // Leave it disabled so it cannot reach memory that gets freed.
                let _ = self.disable();
                self.failed = true;
            }
        }
    }
}
