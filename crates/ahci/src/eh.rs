//! Error handling (libahci's `ahci_do_hardreset` / `ahci_error_handler`): COMRESET and
//! the port recovery that follows a failed or timed-out command.

use super::*;

impl<R: RegisterAccess, D: Delay> Hba<R, D> {
    /// COMRESET: PxSCTL.DET = 1 for at least 1 ms, then 0, then wait for the link.
    pub(crate) fn comreset(&self, p: usize) -> Result<(), AhciError> {
        let sctl = self.preg(p, regs::PX_SCTL) & !regs::DET_MASK;
        self.wpreg(p, regs::PX_SCTL, sctl | regs::SCTL_DET_COMRESET);
        self.delay.delay_us(1000);
        self.wpreg(p, regs::PX_SCTL, sctl);
        if !self.wait(1_000_000, || {
            self.preg(p, regs::PX_SSTS) & regs::DET_MASK == regs::SSTS_DET_PRESENT
        }) {
            return Err(AhciError::PortStuck {
                port: p,
                what: "no link after COMRESET (PxSSTS.DET)",
            });
        }
        self.wpreg(p, regs::PX_SERR, u32::MAX);
        Ok(())
    }

    /// Error recovery: stop, COMRESET, clear, restart. A port that does not come back
    /// is taken out of service.
    pub(crate) fn recover(&self, port: &Port) {
        let p = port.index;
        let r = self
            .stop_port(p)
            .and_then(|_| self.comreset(p))
            .and_then(|_| {
                self.wpreg(p, regs::PX_IS, u32::MAX);
                self.regs.write32(regs::IS, 1 << p);
                self.start_port(p)
            });
        match r {
            Ok(()) => log::warn!("ahci: port {p}: recovered (COMRESET)"),
            Err(e) => {
                log::error!("ahci: port {p}: recovery failed: {e}; port out of service");
                port.failed.store(true, Ordering::Relaxed);
            }
        }
    }
}
