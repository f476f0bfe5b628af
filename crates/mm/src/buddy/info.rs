//! The `/proc/buddyinfo` and `/proc/zoneinfo` views of the allocator (Linux: mm/vmstat.c).

use core::fmt;

use super::*;

/// `/proc/buddyinfo`-shaped report: one line per zone, free blocks per order.
pub struct BuddyInfo<'r, 'a>(pub(super) &'r FrameAllocator<'a>);

impl fmt::Display for BuddyInfo<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in self.0.stats() {
            write!(f, "Node 0, zone {:>8} ", s.kind.name())?;
            for n in s.free_blocks {
                write!(f, "{n:>6} ")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// `/proc/zoneinfo`-like report.
pub struct ZoneInfo<'r, 'a>(pub(super) &'r FrameAllocator<'a>);

impl fmt::Display for ZoneInfo<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in self.0.stats() {
            writeln!(f, "Node 0, zone {:>8}", s.kind.name())?;
            writeln!(
                f,
                "  range    [{:#014x}-{:#014x})",
                s.start.as_u64(),
                s.end.as_u64()
            )?;
            writeln!(f, "  managed  {}", s.managed_pages)?;
            writeln!(f, "  free     {}", s.free_pages)?;
            writeln!(f, "  reserve  {}", s.reserve_pages)?;
            write!(f, "  blocks  ")?;
            for n in s.free_blocks {
                write!(f, " {n}")?;
            }
            writeln!(f)?;
        }
        let e = self.0.errors;
        writeln!(
            f,
            "errors: alloc_failures {} invalid_order {} misaligned {} wrong_order {} double_free {} not_allocated {}",
            e.alloc_failures, e.invalid_order, e.misaligned, e.wrong_order, e.double_free, e.not_allocated
        )
    }
}
