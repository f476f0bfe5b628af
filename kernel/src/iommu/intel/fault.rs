//! VT-d fault reporting (Linux: the fault half of drivers/iommu/intel/dmar.c).
//!
//! The fault-event interrupt only moves records out of the units' fault
//! recording registers into a fixed ring of typed entries: no allocation, no
//! formatting. They are logged and formatted later, in thread context, when
//! the shell or a test asks (`collect_faults`, `fault_history`).

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use iommu_vtd::FaultRecord;

use crate::arch::idt::TrapFrame;
use crate::sync::IrqSpinLock;

/// Records kept for `iommu faults` (the oldest are overwritten).
pub const FAULT_RING: usize = 64;

/// One fault as the interrupt handler saw it.
#[derive(Clone, Copy, Debug)]
pub struct FaultEntry {
    /// Register base of the unit that recorded it.
    pub unit: u64,
    pub record: FaultRecord,
}

struct Ring {
    entries: [Option<FaultEntry>; FAULT_RING],
    /// Entries ever pushed (the next one goes to `pushed % FAULT_RING`).
    pushed: u64,
    /// Entries already written to the log.
    logged: u64,
}

impl Ring {
    fn push(&mut self, e: FaultEntry) {
        self.entries[(self.pushed % FAULT_RING as u64) as usize] = Some(e);
        self.pushed += 1;
    }

    /// Sequence numbers still held, oldest first, from `from` on.
    fn held_from(&self, from: u64) -> core::ops::Range<u64> {
        from.max(self.pushed.saturating_sub(FAULT_RING as u64))..self.pushed
    }

    fn get(&self, seq: u64) -> Option<FaultEntry> {
        self.entries[(seq % FAULT_RING as u64) as usize]
    }
}

static RING: IrqSpinLock<Ring> = IrqSpinLock::new(Ring {
    entries: [None; FAULT_RING],
    pushed: 0,
    logged: 0,
});
static FAULT_COUNT: AtomicU64 = AtomicU64::new(0);
/// Fault messages: 10 per 5 s (uptime in ms), the rest counted.
static FAULT_LOG_LIMIT: IrqSpinLock<iommu_vtd::RateLimit> =
    IrqSpinLock::new(iommu_vtd::RateLimit::new(5_000, 10));
/// A unit reported a primary fault overflow (records lost) not yet logged.
static OVERFLOW: AtomicBool = AtomicBool::new(false);
/// The vector of the units' fault-event MSI (0: none).
static FAULT_VECTOR: AtomicU8 = AtomicU8::new(0);

pub fn fault_vector() -> u8 {
    FAULT_VECTOR.load(Ordering::Relaxed)
}

pub(super) fn set_fault_vector(v: u8) {
    FAULT_VECTOR.store(v, Ordering::Relaxed);
}

/// Moves pending records of every unit into the ring. Allocation- and
/// format-free: the interrupt handler runs it.
fn drain_units() {
    let Some(io) = super::get() else { return };
    for e in &io.units {
        // Every holder of a unit lock has interrupts off, so from the
        // handler the lock is free; try_lock all the same (never spin here).
        let Some(mut u) = e.unit.try_lock() else {
            continue;
        };
        let overflowed = u.drain_faults(|record| {
            RING.lock().push(FaultEntry {
                unit: e.base,
                record,
            });
            FAULT_COUNT.fetch_add(1, Ordering::SeqCst);
        });
        if overflowed {
            OVERFLOW.store(true, Ordering::Relaxed);
        }
    }
}

pub(super) fn fault_irq(_f: &mut TrapFrame) {
    drain_units();
}

/// Reads pending fault records of every unit and logs those not logged yet
/// (`iommu <base>: DMAR fault: ...`), and any flush-queue failure the timer
/// recorded; returns how many faults it logged.
pub fn collect_faults() -> usize {
    drain_units();
    super::dma_iommu::log_flush_queue_error();
    if OVERFLOW.swap(false, Ordering::Relaxed) {
        log::warn!("DMAR: primary fault overflow, faults were lost");
    }
    let mut n = 0;
    loop {
        // One entry per lock hold: the log must not be written under RING.
        let next = {
            let mut r = RING.lock();
            let seq = r.held_from(r.logged).start;
            if seq >= r.pushed {
                break;
            }
            r.logged = seq + 1;
            r.get(seq)
        };
        if let Some(e) = next {
            n += 1;
            // Messages: 10 per 5 s, the rest counted (fault_count() has them
            // all): a device retrying a blocked DMA must not keep the CPU
            // printing.
            let now_ms = crate::arch::tsc::uptime_ns() / 1_000_000;
            let (log_it, dropped) = {
                let mut l = FAULT_LOG_LIMIT.lock();
                let ok = l.allow(now_ms);
                (ok, if ok { l.take_suppressed() } else { 0 })
            };
            if !log_it {
                continue;
            }
            if dropped > 0 {
                log::warn!("iommu: {dropped} fault message(s) suppressed (rate limit)");
            }
            log::error!("iommu {:#x}: {}", e.unit, e.record);
        }
    }
    n
}

/// The faults still held (at most `FAULT_RING`), oldest first, typed.
pub fn fault_entries() -> Vec<FaultEntry> {
    let r = RING.lock();
    r.held_from(0).filter_map(|s| r.get(s)).collect()
}

/// The faults still held, oldest first, as `iommu faults` prints them.
pub fn fault_history() -> Vec<String> {
    fault_entries()
        .iter()
        .map(|e| alloc::format!("{}", e.record))
        .collect()
}

/// Faults recorded since boot (including those the ring no longer holds).
pub fn fault_count() -> u64 {
    FAULT_COUNT.load(Ordering::SeqCst)
}
