//! Time from the TSC, calibrated once against the PIT.
//!
//! Uptime stamps on log lines and timing of tests and benchmarks come from here.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::port::{inb, outb};

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 CPU and has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Records the TSC value that uptime counts from. Called first thing at boot.
pub fn mark_boot() {
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// PIT input clock (Hz), fixed by the PC platform.
const PIT_HZ: u64 = 1_193_182;

/// Counts TSC ticks while PIT channel 2 counts down `ms` milliseconds.
/// Returns `None` if the PIT never signals (no PIT, or a broken gate).
fn pit_window(ms: u64) -> Option<u64> {
    let count = (PIT_HZ * ms / 1000) as u16;
    // Port 0x61: bit 0 gates channel 2, bit 1 drives the speaker (keep off),
    // bit 5 reads channel 2's output, which goes high at terminal count.
    let gate = inb(0x61) & !0x02;
    outb(0x61, gate & !0x01);
    // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
    outb(0x43, 0b1011_0000);
    outb(0x42, count as u8);
    outb(0x42, (count >> 8) as u8);
    outb(0x61, gate | 0x01);
    let start = rdtsc();
    // Bounded wait: a missing PIT must not hang the boot. 2^28 port reads are
    // seconds even under emulation.
    for _ in 0..(1u64 << 28) {
        if inb(0x61) & 0x20 != 0 {
            return Some(rdtsc() - start);
        }
    }
    None
}

/// Measures the TSC frequency: median of three 20 ms PIT windows, falling back
/// to CPUID leaf 0x16 (base frequency in MHz) where there is no usable PIT.
pub fn calibrate() -> u64 {
    let mut samples = [0u64; 3];
    let mut ok = true;
    for s in samples.iter_mut() {
        match pit_window(20) {
            Some(ticks) => *s = ticks * 50,
            None => {
                ok = false;
                break;
            }
        }
    }
    let hz = if ok {
        samples.sort_unstable();
        samples[1]
    } else {
        let leaf = core::arch::x86_64::__cpuid(0x16);
        if leaf.eax != 0 {
            leaf.eax as u64 * 1_000_000
        } else {
            2_000_000_000
        }
    };
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    hz
}

pub fn ticks_to_ns(ticks: u64) -> u64 {
    let hz = tsc_hz();
    if hz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000_000) / hz as u128) as u64
}

/// Nanoseconds since `mark_boot` (0 until calibrated).
pub fn uptime_ns() -> u64 {
    ticks_to_ns(rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let hz = tsc_hz().max(1_000_000);
    let end = rdtsc() + hz / 1_000_000 * us;
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}

/// Recalibrates the TSC against the HPET: the median of three 10 ms windows,
/// each bounded by paired (TSC, HPET) reads. Descheduling inside a window
/// stretches both clocks alike, unlike the PIT method, which stops the TSC
/// measurement only when it notices the PIT's terminal count.
pub fn calibrate_with_hpet() -> Option<u64> {
    let hpet = crate::arch::hpet::get()?;
    let window = 10_000_000_000_000 / hpet.period_fs().max(1); // 10 ms
    let mut samples = [0u64; 3];
    for s in samples.iter_mut() {
        let (t0, h0) = hpet.paired_read();
        while hpet.counter().wrapping_sub(h0) < window {
            core::hint::spin_loop();
        }
        let (t1, h1) = hpet.paired_read();
        let ns = hpet.ticks_to_ns(h1.wrapping_sub(h0)).max(1);
        *s = ((t1 - t0) as u128 * 1_000_000_000 / ns as u128) as u64;
    }
    samples.sort_unstable();
    let hz = samples[1];
    let old = tsc_hz();
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    log::info!(
        "time: TSC {}.{:03} MHz against the HPET (the PIT gave {}.{:03} MHz)",
        hz / 1_000_000,
        (hz / 1000) % 1000,
        old / 1_000_000,
        (old / 1000) % 1000
    );
    Some(hz)
}
