//! VT-d fault reporting (Linux: the fault half of drivers/iommu/intel/dmar.c).
//!
//! The fault-event interrupt only moves records out of the units' fault
//! recording registers into a fixed ring of typed entries: no allocation, no
//! formatting. They are logged and formatted later, in thread context, when
//! the shell or a test asks (`collect_faults`, `fault_history`). The timer's
//! flush-queue hook leaves its failures here too, for the same reason.

use alloc::string::String;
use alloc::vec::Vec;

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

/// What interrupt context (the fault event, the timer's flush-queue hook)
/// leaves for thread context to log: fixed size, typed, one lock.
struct FaultLog {
    ring: Ring,
    /// Fault messages: 10 per 5 s (uptime in ms), the rest counted.
    limit: iommu_vtd::RateLimit,
    /// A unit reported a primary fault overflow (records lost) not yet logged.
    overflow: bool,
    /// The last flush-queue failure in the timer interrupt (unit base,
    /// error), not yet logged.
    flush_queue_error: Option<(u64, iommu_vtd::Error)>,
}

static FAULTS: IrqSpinLock<FaultLog> = IrqSpinLock::new(FaultLog {
    ring: Ring {
        entries: [None; FAULT_RING],
        pushed: 0,
        logged: 0,
    },
    limit: iommu_vtd::RateLimit::new(5_000, 10),
    overflow: false,
    flush_queue_error: None,
});

/// The vector of the units' fault-event MSI (0: none).
pub fn fault_vector() -> u8 {
    super::get().map_or(0, |io| io.fault_vector)
}

/// Keeps a flush-queue failure of the timer interrupt for the next
/// `collect_faults` to log (allocation- and format-free).
pub(super) fn record_flush_queue_error(unit: u64, err: iommu_vtd::Error) {
    FAULTS.lock().flush_queue_error = Some((unit, err));
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
            FAULTS.lock().ring.push(FaultEntry {
                unit: e.base,
                record,
            });
        });
        if overflowed {
            FAULTS.lock().overflow = true;
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
    let (overflow, flush_queue_error) = {
        let mut l = FAULTS.lock();
        (core::mem::take(&mut l.overflow), l.flush_queue_error.take())
    };
    if let Some((base, err)) = flush_queue_error {
        log::warn!("iommu {base:#x}: flush queue: {err}");
    }
    if overflow {
        log::warn!("DMAR: primary fault overflow, faults were lost");
    }
    let mut n = 0;
    loop {
        // One entry per lock hold: the log must not be written under RING.
        let next = {
            let r = &mut FAULTS.lock().ring;
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
                let l = &mut FAULTS.lock().limit;
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
    let l = FAULTS.lock();
    l.ring.held_from(0).filter_map(|s| l.ring.get(s)).collect()
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
    FAULTS.lock().ring.pushed
}
