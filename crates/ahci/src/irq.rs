//! Completion: the interrupt handler's work (`ahci_single_level_irq_intr` /
//! `ahci_port_intr` in libahci), the state it shares with the waiter, and the waiter
//! itself (by interrupt, else by polling PxCI/PxIS).

use super::*;

/// Interrupt state shared by the driver and the kernel's interrupt handler: the PxIS
/// bits the handler acknowledged, per port, until the waiter takes them, and counters.
#[derive(Debug, Default)]
pub struct IrqShared {
    port_is: [AtomicU32; regs::MAX_PORTS],
    interrupts: AtomicU64,
    not_ours: AtomicU64,
    pub(crate) by_irq: AtomicU64,
    pub(crate) by_poll: AtomicU64,
}

/// What [`IrqShared::stats`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqStats {
    /// Handler calls that found a port interrupt pending (IS ≠ 0).
    pub interrupts: u64,
    /// Handler calls with nothing pending (a shared line, or a spurious message).
    pub not_ours: u64,
    /// Commands whose completion the waiter learnt from an interrupt.
    pub completed_by_irq: u64,
    /// Commands whose completion was found by polling (probe, `ahci.poll=1`,
    /// interrupts off, or a lost interrupt at the timeout).
    pub completed_by_poll: u64,
}

impl IrqShared {
    /// Nothing pending, counters at 0.
    pub fn new() -> IrqShared {
        IrqShared::default()
    }

    /// The counters.
    pub fn stats(&self) -> IrqStats {
        IrqStats {
            interrupts: self.interrupts.load(Ordering::Relaxed),
            not_ours: self.not_ours.load(Ordering::Relaxed),
            completed_by_irq: self.by_irq.load(Ordering::Relaxed),
            completed_by_poll: self.by_poll.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn latched(&self, p: usize) -> u32 {
        self.port_is[p].load(Ordering::Acquire)
    }

    pub(crate) fn take(&self, p: usize) -> u32 {
        self.port_is[p].swap(0, Ordering::AcqRel)
    }
}

/// The interrupt handler's work (MSI or INTx): reads IS, and for each port it names
/// reads PxIS, acknowledges it (and PxSERR when PCS/PRCS are set, which only PxSERR
/// clears) and latches the bits in `shared` for the waiter; then acknowledges IS
/// (AHCI 1.3.1 §10.7.2.1: PxIS before IS, or the level stays up). Neither allocates
/// nor logs. Returns false when no port was pending (not this HBA's interrupt).
pub fn handle_interrupt<R: RegisterAccess + ?Sized>(regs: &R, shared: &IrqShared) -> bool {
    let is = regs.read32(regs::IS);
    if is == 0 || is == u32::MAX {
        shared.not_ours.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    for p in 0..regs::MAX_PORTS {
        if is & (1 << p) == 0 {
            continue;
        }
        let pxis = regs.read32(regs::port(p, regs::PX_IS));
        if pxis & (PxIs::PCS | PxIs::PRCS).bits() != 0 {
            regs.write32(regs::port(p, regs::PX_SERR), u32::MAX);
        }
        regs.write32(regs::port(p, regs::PX_IS), pxis);
        shared.port_is[p].fetch_or(pxis, Ordering::AcqRel);
    }
    regs.write32(regs::IS, is);
    shared.interrupts.fetch_add(1, Ordering::Relaxed);
    true
}

impl<R: RegisterAccess, D: Delay> Hba<R, D> {
    /// Waits for the command in slot 0 of port `p` to end (PxCI clear, or a fatal
    /// PxIS bit) for up to `us` µs; `is` gets the PxIS bits seen. By interrupt when
    /// interrupts are on and the platform can sleep for them, else by polling.
    pub(crate) fn wait_command(&self, p: usize, us: u32, is: &mut u32) -> bool {
        let finished =
            |is: u32| is & PxIs::FATAL.bits() != 0 || self.preg(p, regs::PX_CI) & (1 << SLOT) == 0;
        let mut waited = 0u32;
        let mut polled = !self.irq_mode;
        loop {
            if self.irq_mode {
                *is |= self.irq.take(p);
                if *is != 0 && finished(*is) {
                    let c = if polled {
                        &self.irq.by_poll
                    } else {
                        &self.irq.by_irq
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            }
            if polled {
                // No interrupt to wait for: read PxIS ourselves (the handler, if
                // any, may also have latched bits: keep both).
                *is |= self.preg(p, regs::PX_IS);
                if finished(*is) {
                    self.irq.by_poll.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            }
            if waited >= us {
                if self.irq_mode && !polled {
                    // A last look: a completion whose interrupt was lost.
                    *is |= self.irq.take(p) | self.preg(p, regs::PX_IS);
                    if finished(*is) {
                        log::warn!("ahci: port {p}: command completed without an interrupt");
                        self.irq.by_poll.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                }
                return false;
            }
            let slept = if self.irq_mode && !polled {
                self.delay
                    .wait_interrupt(us - waited, &|| self.irq.latched(p) != 0)
            } else {
                None
            };
            match slept {
                Some(t) => waited = waited.saturating_add(t.max(1)),
                None => {
                    polled = true;
                    self.delay.delay_us(POLL_US);
                    waited = waited.saturating_add(POLL_US);
                }
            }
        }
    }
}
