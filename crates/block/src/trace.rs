//! A debug hook for `blk read --show-sg` (Lab 08): armed before one command, the
//! driver records what it handed the device — its mapped DMA segments and its
//! PRDT (AHCI) or PRP (NVMe) entries, read back from the memory the device reads —
//! and the shell takes the rows afterwards.
//!
//! Lock-free and global: one command at a time (the shell's), at most
//! [`MAX_ROWS`] rows (later ones are counted, not kept). Disarmed, `record` costs
//! one atomic load.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Rows kept per traced command.
pub const MAX_ROWS: usize = 64;

/// What a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A DMA segment the DMA API returned: (bus address, length).
    Segment = 1,
    /// An AHCI PRD entry as in the command table: (DBA, byte count DBC + 1).
    Prd = 2,
    /// NVMe PRP1: (address, 0).
    Prp1 = 3,
    /// NVMe PRP2: (address, entries in the list it points to, or 0).
    Prp2 = 4,
    /// One entry of the NVMe PRP list: (address, index).
    PrpList = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Segment,
            2 => Kind::Prd,
            3 => Kind::Prp1,
            4 => Kind::Prp2,
            5 => Kind::PrpList,
            _ => return None,
        })
    }
}

static ARMED: AtomicBool = AtomicBool::new(false);
static LEN: AtomicUsize = AtomicUsize::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const Z8: AtomicU8 = AtomicU8::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const Z64: AtomicU64 = AtomicU64::new(0);
static KINDS: [AtomicU8; MAX_ROWS] = [Z8; MAX_ROWS];
static A: [AtomicU64; MAX_ROWS] = [Z64; MAX_ROWS];
static B: [AtomicU64; MAX_ROWS] = [Z64; MAX_ROWS];

/// Records the next command (rows of an earlier one are dropped).
pub fn arm() {
    LEN.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Release);
}

/// Whether a command is to be recorded.
pub fn armed() -> bool {
    ARMED.load(Ordering::Acquire)
}

/// Adds a row (ignored unless armed).
pub fn record(kind: Kind, a: u64, b: u64) {
    if !armed() {
        return;
    }
    let i = LEN.fetch_add(1, Ordering::Relaxed);
    if i < MAX_ROWS {
        KINDS[i].store(kind as u8, Ordering::Relaxed);
        A[i].store(a, Ordering::Relaxed);
        B[i].store(b, Ordering::Relaxed);
    }
}

/// The driver has recorded its command: later commands are not recorded.
pub fn finish() {
    ARMED.store(false, Ordering::Release);
}

/// The recorded rows and how many there were in all (more than the rows when
/// some did not fit); disarms.
pub fn take() -> (Vec<(Kind, u64, u64)>, usize) {
    finish();
    let n = LEN.swap(0, Ordering::Relaxed);
    let rows = (0..n.min(MAX_ROWS))
        .filter_map(|i| {
            Some((
                Kind::from_u8(KINDS[i].load(Ordering::Relaxed))?,
                A[i].load(Ordering::Relaxed),
                B[i].load(Ordering::Relaxed),
            ))
        })
        .collect();
    (rows, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_only_while_armed_and_counts_overflow() {
        record(Kind::Prd, 1, 2);
        assert_eq!(take(), (Vec::new(), 0));
        arm();
        record(Kind::Segment, 0x1000, 512);
        record(Kind::Prd, 0x1000, 512);
        finish();
        record(Kind::Prd, 0x9000, 512);
        assert_eq!(
            take(),
            (
                alloc::vec![(Kind::Segment, 0x1000, 512), (Kind::Prd, 0x1000, 512)],
                2
            )
        );
        arm();
        for i in 0..MAX_ROWS as u64 + 3 {
            record(Kind::PrpList, i, i);
        }
        let (rows, n) = take();
        assert_eq!((rows.len(), n), (MAX_ROWS, MAX_ROWS + 3));
    }
}
