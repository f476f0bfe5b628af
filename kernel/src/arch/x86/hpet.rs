//! The HPET main counter: a fixed-rate clock that keeps counting while the CPU
//! is elsewhere (or, under emulation, while the vCPU is descheduled), so it is
//! the reference the TSC and the LAPIC timer are calibrated against.

use spin::Once;

use crate::mm::{self as kmm, IoMem};

pub struct Hpet {
    regs: IoMem,
    /// Counter period in femtoseconds (capabilities bits 63:32).
    period_fs: u64,
}

static HPET: Once<Option<Hpet>> = Once::new();

/// Maps and starts the HPET at `base` (from the ACPI HPET table; IA-PC HPET
/// spec §2.3: capabilities at 0x0, configuration at 0x10 (bit 0 enables
/// counting), main counter at 0xF0). Later calls keep the first result.
pub fn init(base: Option<u64>) -> Option<&'static Hpet> {
    HPET.call_once(|| {
        let regs = kmm::ioremap(base?, 0x400).ok()?;
        let period_fs = regs.read64(0x0) >> 32;
        // The spec bounds the period to (0, 100 ns].
        if period_fs == 0 || period_fs > 100_000_000 {
            log::warn!("hpet: implausible period {period_fs} fs; not used");
            return None;
        }
        regs.write64(0x10, regs.read64(0x10) | 1);
        Some(Hpet { regs, period_fs })
    })
    .as_ref()
}

/// The HPET once `init` found one.
pub fn get() -> Option<&'static Hpet> {
    HPET.get().and_then(|h| h.as_ref())
}

impl Hpet {
    pub fn counter(&self) -> u64 {
        self.regs.read64(0xF0)
    }

    pub fn period_fs(&self) -> u64 {
        self.period_fs
    }

    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * self.period_fs as u128 / 1_000_000) as u64
    }

    /// A (TSC, HPET) pair read close together: HPET, TSC, HPET, retried until
    /// the two HPET reads are within 2 µs, so an interruption between the
    /// reads cannot skew the pair.
    pub fn paired_read(&self) -> (u64, u64) {
        let limit = 2_000_000_000 / self.period_fs.max(1);
        let mut best = (0, 0, u64::MAX);
        for _ in 0..20 {
            let a = self.counter();
            let t = crate::arch::tsc::rdtsc();
            let b = self.counter();
            let spread = b.wrapping_sub(a);
            if spread < best.2 {
                best = (t, a + spread / 2, spread);
            }
            if spread <= limit {
                break;
            }
        }
        (best.0, best.1)
    }
}
