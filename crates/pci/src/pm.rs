//! PCI power management: bringing a function to D0 before a driver touches its BARs
//! (PCI Bus Power Management Interface spec 1.2, §3.2.4 PMCSR, §5.6.1 recovery times).
//!
//! Firmware often leaves functions it does not use in D3hot (Intel LPSS functions in
//! PCI mode are the common case). In D3hot a function answers configuration cycles
//! but decodes no memory or I/O: every BAR register reads all-ones. Moving it to D0
//! takes a write of PMCSR.PowerState, then 10 ms of recovery before the function may be
//! accessed (§5.6.1, table 18; 200 µs from D2, nothing from D1). A function whose PMCSR
//! says No_Soft_Reset = 0 resets itself on the D3hot→D0 transition: its BARs and
//! Command register return to their defaults and must be written back (Linux does the
//! same after `pci_power_up`).

use crate::addr::Bdf;
use crate::config::ConfigAccess;
use crate::regs;
use core::fmt;

/// Offset of PMCSR within the PM capability.
pub const PMCSR: u16 = 4;
/// PMCSR bits 1:0, PowerState.
pub const PMCSR_STATE_MASK: u16 = 0x3;
/// PMCSR bit 3: the function keeps its state across D3hot→D0.
pub const PMCSR_NO_SOFT_RESET: u16 = 1 << 3;
/// PMCSR bit 15: PME_Status (RW1C; written 0 so it is left alone).
pub const PMCSR_PME_STATUS: u16 = 1 << 15;
/// Recovery time after D3hot→D0 (§5.6.1), microseconds.
pub const D3HOT_DELAY_US: u32 = 10_000;
/// Recovery time after D2→D0 (§5.6.1), microseconds.
pub const D2_DELAY_US: u32 = 200;

/// A device power state as PMCSR encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerState {
    /// Fully on.
    D0,
    /// Light sleep.
    D1,
    /// Deeper sleep.
    D2,
    /// Off with configuration space still answering.
    D3Hot,
}

impl PowerState {
    /// From PMCSR bits 1:0.
    pub fn from_pmcsr(pmcsr: u16) -> Self {
        match pmcsr & PMCSR_STATE_MASK {
            0 => PowerState::D0,
            1 => PowerState::D1,
            2 => PowerState::D2,
            _ => PowerState::D3Hot,
        }
    }

    /// Microseconds to wait after moving from this state to D0 (§5.6.1).
    pub fn delay_to_d0_us(self) -> u32 {
        match self {
            PowerState::D0 | PowerState::D1 => 0,
            PowerState::D2 => D2_DELAY_US,
            PowerState::D3Hot => D3HOT_DELAY_US,
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerState::D0 => "D0",
            PowerState::D1 => "D1",
            PowerState::D2 => "D2",
            PowerState::D3Hot => "D3hot",
        })
    }
}

/// Why a function could not be brought to D0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmError {
    /// PMCSR still reads this state after the write and the recovery time.
    Stuck(PowerState),
    /// Configuration space reads all-ones: the function is gone.
    NotResponding,
}

impl fmt::Display for PmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PmError::Stuck(s) => write!(f, "still in {s} after the write to PMCSR"),
            PmError::NotResponding => f.write_str("configuration space reads all-ones"),
        }
    }
}

/// What [`set_d0`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerUp {
    /// The state the function was in.
    pub from: PowerState,
    /// Whether BARs and Command were written back (the function reset itself).
    pub restored: bool,
}

/// The current power state of `bdf`, whose PM capability is at `cap`.
pub fn power_state<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf, cap: u8) -> PowerState {
    PowerState::from_pmcsr(cfg.read16(bdf, u16::from(cap) + PMCSR))
}

/// Number of BAR registers of a header layout (type 0: 6, type 1: 2, else 0).
fn bar_count<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf) -> usize {
    match cfg.read8(bdf, regs::HEADER_TYPE) & 0x7F {
        0 => 6,
        1 => 2,
        _ => 0,
    }
}

/// Brings `bdf` to D0 through its PM capability at `cap` (`None`: the function has no
/// PM capability and is always in D0). `delay_us` waits the recovery time; BARs and
/// Command are written back when the function reset itself leaving D3hot.
pub fn set_d0<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    cap: Option<u8>,
    delay_us: &mut dyn FnMut(u32),
) -> Result<PowerUp, PmError> {
    let Some(cap) = cap else {
        return Ok(PowerUp {
            from: PowerState::D0,
            restored: false,
        });
    };
    let at = u16::from(cap) + PMCSR;
    let pmcsr = cfg.read16(bdf, at);
    if pmcsr == u16::MAX {
        return Err(PmError::NotResponding);
    }
    let from = PowerState::from_pmcsr(pmcsr);
    if from == PowerState::D0 {
        return Ok(PowerUp {
            from,
            restored: false,
        });
    }
    // The values to write back if the transition resets the function. In D3hot the
    // configuration registers still hold what enumeration programmed.
    let n = bar_count(cfg, bdf);
    let mut bars = [0u32; 6];
    for (i, b) in bars.iter_mut().enumerate().take(n) {
        *b = cfg.read32(bdf, regs::BAR0 + 4 * i as u16);
    }
    let command = cfg.read16(bdf, regs::COMMAND);
    // PowerState = 0; PME_Status (RW1C) written 0 so a pending wake event stays.
    cfg.write16(bdf, at, pmcsr & !(PMCSR_STATE_MASK | PMCSR_PME_STATUS));
    let wait = from.delay_to_d0_us();
    if wait > 0 {
        delay_us(wait);
    }
    let now = cfg.read16(bdf, at);
    if now == u16::MAX {
        return Err(PmError::NotResponding);
    }
    let state = PowerState::from_pmcsr(now);
    if state != PowerState::D0 {
        return Err(PmError::Stuck(state));
    }
    let restored = from == PowerState::D3Hot && pmcsr & PMCSR_NO_SOFT_RESET == 0;
    if restored {
        for (i, b) in bars.iter().enumerate().take(n) {
            cfg.write32(bdf, regs::BAR0 + 4 * i as u16, *b);
        }
        cfg.write16(bdf, regs::COMMAND, command);
    }
    log::info!(
        "pci {bdf}: {from} -> D0{}",
        if restored {
            " (soft reset: BARs restored)"
        } else {
            ""
        }
    );
    Ok(PowerUp { from, restored })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeConfig, FakeFunction};
    use alloc::vec::Vec;

    const DEV: Bdf = Bdf::b(0, 0x15, 0);
    const PM: u8 = 0x80;

    fn function(state: u8, no_soft_reset: bool) -> FakeConfig {
        let c = FakeConfig::new();
        c.add(
            DEV,
            FakeFunction::endpoint(0x8086, 0x9d60, 0x0c_8000, 0x21)
                .bar64(0, 0x1000, false, 0xFE40_0000)
                .command(0x0002)
                .cap_ptr(PM)
                .pm(PM, 0, no_soft_reset, state),
        );
        c
    }

    #[test]
    fn d3hot_to_d0_waits_and_restores_bars_after_soft_reset() {
        let c = function(3, false);
        assert_eq!(power_state(&c, DEV, PM), PowerState::D3Hot);
        let mut waits = Vec::new();
        let up = set_d0(&c, DEV, Some(PM), &mut |us| waits.push(us)).unwrap();
        assert_eq!(
            up,
            PowerUp {
                from: PowerState::D3Hot,
                restored: true
            }
        );
        assert_eq!(waits, [D3HOT_DELAY_US]);
        assert_eq!(power_state(&c, DEV, PM), PowerState::D0);
        // The model reset the BARs on the transition; set_d0 wrote them back.
        assert_eq!(c.peek32(DEV, 0x10), Some(0xFE40_0004));
        assert_eq!(c.peek32(DEV, 0x14), Some(0));
        assert_eq!(c.peek16(DEV, regs::COMMAND), Some(0x0002));
    }

    #[test]
    fn no_soft_reset_keeps_bars_without_writing_them() {
        let c = function(3, true);
        let before = c.bar_writes().len();
        let up = set_d0(&c, DEV, Some(PM), &mut |_| {}).unwrap();
        assert!(!up.restored);
        assert_eq!(c.bar_writes().len(), before);
        assert_eq!(c.peek32(DEV, 0x10), Some(0xFE40_0004));
    }

    #[test]
    fn d0_and_no_capability_do_nothing() {
        let c = function(0, false);
        let mut waited = false;
        let up = set_d0(&c, DEV, Some(PM), &mut |_| waited = true).unwrap();
        assert_eq!(up.from, PowerState::D0);
        let up = set_d0(&c, DEV, None, &mut |_| waited = true).unwrap();
        assert_eq!(up.from, PowerState::D0);
        assert!(!waited);
    }

    #[test]
    fn d2_waits_200us() {
        let c = function(2, false);
        let mut waits = Vec::new();
        let up = set_d0(&c, DEV, Some(PM), &mut |us| waits.push(us)).unwrap();
        assert_eq!((up.from, up.restored), (PowerState::D2, false));
        assert_eq!(waits, [D2_DELAY_US]);
    }

    #[test]
    fn stuck_state_and_absent_function_are_errors() {
        // PowerState read-only: the write does not take.
        let c = FakeConfig::new();
        c.add(
            DEV,
            FakeFunction::endpoint(0x8086, 0x9d60, 0x0c_8000, 0)
                .cap_ptr(PM)
                .cap(PM, crate::caps::id::PM, 0)
                .set16(u16::from(PM) + PMCSR, 3),
        );
        assert_eq!(
            set_d0(&c, DEV, Some(PM), &mut |_| {}),
            Err(PmError::Stuck(PowerState::D3Hot))
        );
        let empty = FakeConfig::new();
        assert_eq!(
            set_d0(&empty, DEV, Some(PM), &mut |_| {}),
            Err(PmError::NotResponding)
        );
    }
}
