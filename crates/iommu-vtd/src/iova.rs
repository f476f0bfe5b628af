//! Per-domain IOVA allocator: size-aligned ranges below a limit (the device's DMA
//! mask), and "reuse only after flush".
//!
//! A freed range is not reusable while the IOTLB may still hold translations for it: a
//! device could otherwise reach the *next* user's buffer through a stale entry (spec
//! §6.5: unmapping requires IOTLB invalidation before the address is reused). So
//! [`IovaAllocator::free`] moves the range to a pending list and only
//! [`IovaAllocator::flush_done`], called after the IOTLB invalidation completed, makes
//! pending ranges allocatable again. Lazy mode (Linux's flush queue) is the same
//! pending list with bounds: [`IovaAllocator::flush_needed`] says when the queue is
//! full or its oldest entry is older than the allowed delay.

use alloc::collections::BTreeMap;
use core::fmt;
use hal::DmaAddr;

/// Why an IOVA operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IovaError {
    /// No free size-aligned range below the limit.
    Exhausted {
        /// Requested size in bytes (after rounding).
        size: u64,
        /// The limit (exclusive) that was asked for.
        limit: u64,
    },
    /// Size zero or too large to round up to a power of two.
    BadSize(u64),
    /// `free` of an address that is not the start of an allocated range.
    NotAllocated(DmaAddr),
    /// `reserve` overlaps a range already in use.
    Overlap(DmaAddr),
}

impl fmt::Display for IovaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IovaError::Exhausted { size, limit } => {
                write!(f, "no free IOVA range of {size:#x} bytes below {limit:#x}")
            }
            IovaError::BadSize(s) => write!(f, "bad IOVA size {s:#x}"),
            IovaError::NotAllocated(a) => write!(f, "IOVA {a} was not allocated"),
            IovaError::Overlap(a) => write!(f, "IOVA reservation at {a} overlaps"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Allocated,
    Reserved,
    /// Freed at time `t`, waiting for an IOTLB flush.
    Pending(u64),
}

/// Size-aligned IOVA allocator with a pending-until-flushed list.
#[derive(Debug, Clone)]
pub struct IovaAllocator {
    /// start → (size, state); ranges never overlap.
    ranges: BTreeMap<u64, (u64, State)>,
    /// Lowest allocatable address (IOVA 0 is never handed out: a zero bus address
    /// means "none" to many devices).
    base: u64,
    /// Lazy-mode bounds: flush when this many ranges are pending...
    max_pending: usize,
    /// ...or when the oldest pending range is this old (in the caller's time unit).
    max_delay: u64,
    pending: usize,
    /// Where the last allocation went (0: none yet). The next search starts
    /// just below it: the ranges above it are usually still busy or pending
    /// a flush, and walking past them one lookup at a time made lazy mode
    /// slower than strict (Linux keeps a cached node for the same reason).
    hint: u64,
    /// When the oldest still-pending range was freed (None: none pending).
    /// May be older than the true oldest after single-range releases, which
    /// only makes the flush come earlier, never later.
    oldest_pending: Option<u64>,
}

impl IovaAllocator {
    /// An allocator handing out addresses `>= base` (rounded up to 4 KiB, at least 4 KiB),
    /// with lazy-flush bounds `max_pending` ranges and `max_delay` time units.
    pub fn new(base: u64, max_pending: usize, max_delay: u64) -> Self {
        IovaAllocator {
            ranges: BTreeMap::new(),
            base: base.max(hal::PAGE_SIZE).next_multiple_of(hal::PAGE_SIZE),
            max_pending: max_pending.max(1),
            max_delay,
            pending: 0,
            hint: 0,
            oldest_pending: None,
        }
    }

    /// The size actually allocated for a request of `size` bytes: a power of two of at
    /// least one page (size alignment keeps page-selective invalidation masks tight).
    pub fn rounded_size(size: u64) -> Result<u64, IovaError> {
        if size == 0 || size > 1 << 62 {
            return Err(IovaError::BadSize(size));
        }
        Ok(size.max(hal::PAGE_SIZE).next_power_of_two())
    }

    /// Allocates a range of at least `size` bytes, aligned to its rounded size, whose
    /// last byte is below `limit` (exclusive; `dma_mask + 1`), preferring high addresses
    /// like Linux so that low space stays for devices with small masks.
    pub fn alloc(&mut self, size: u64, limit: u64) -> Result<DmaAddr, IovaError> {
        let size = Self::rounded_size(size)?;
        let exhausted = IovaError::Exhausted { size, limit };
        if limit < size {
            return Err(exhausted);
        }
        let top = (limit - size) & !(size - 1);
        // Below the hint first; from the top when that part is full (which
        // also finds holes above the hint once the sweep has wrapped).
        let below_hint = (self.hint >= size)
            .then(|| ((self.hint - size) & !(size - 1)).min(top))
            .and_then(|start| self.search(start, size));
        let cand = match below_hint {
            Some(c) => c,
            None => self.search(top, size).ok_or(exhausted)?,
        };
        self.hint = cand;
        self.ranges.insert(cand, (size, State::Allocated));
        Ok(DmaAddr::new(cand))
    }

    /// A range ending at `end` became free again: move the search start up
    /// to it, so it is reused before lower space (Linux updates its cached
    /// node the same way when a range above it is freed).
    fn released_up_to(&mut self, end: u64) {
        if self.hint != 0 && end > self.hint {
            self.hint = end;
        }
    }

    /// The highest free, `size`-aligned start at or below `cand`, or `None`.
    fn search(&self, mut cand: u64, size: u64) -> Option<u64> {
        loop {
            if cand < self.base {
                return None;
            }
            // The busy range with the highest start below cand + size: ranges do not
            // overlap, so if it ends at or before cand, no range conflicts.
            match self.ranges.range(..cand + size).next_back() {
                Some((&s, &(len, _))) if s + len > cand => {
                    if s < size {
                        return None;
                    }
                    cand = (s - size) & !(size - 1);
                }
                _ => return Some(cand),
            }
        }
    }

    /// Marks `[start, start + len)` as never allocatable (RMRR identity ranges, the
    /// interrupt window 0xFEE0_0000..0xFEF0_0000). Page-rounded.
    pub fn reserve(&mut self, start: u64, len: u64) -> Result<(), IovaError> {
        let s = start & !(hal::PAGE_SIZE - 1);
        let e = (start + len).next_multiple_of(hal::PAGE_SIZE);
        if let Some((&rs, &(rl, _))) = self.ranges.range(..e).next_back() {
            if rs + rl > s {
                return Err(IovaError::Overlap(DmaAddr::new(s)));
            }
        }
        self.ranges.insert(s, (e - s, State::Reserved));
        Ok(())
    }

    /// Frees the range starting at `addr` at time `now`: it becomes pending until
    /// [`IovaAllocator::flush_done`]. Returns its size (to unmap and invalidate).
    pub fn free(&mut self, addr: DmaAddr, now: u64) -> Result<u64, IovaError> {
        match self.ranges.get_mut(&addr.as_u64()) {
            Some((len, st @ State::Allocated)) => {
                *st = State::Pending(now);
                self.pending += 1;
                self.oldest_pending.get_or_insert(now);
                Ok(*len)
            }
            _ => Err(IovaError::NotAllocated(addr)),
        }
    }

    /// Size of the allocated range starting at `addr`, if any.
    pub fn size_of(&self, addr: DmaAddr) -> Option<u64> {
        match self.ranges.get(&addr.as_u64()) {
            Some(&(len, State::Allocated)) => Some(len),
            _ => None,
        }
    }

    /// The IOTLB invalidation covering every pending range has completed: they become
    /// free. Returns how many ranges were released.
    pub fn flush_done(&mut self) -> usize {
        let before = self.ranges.len();
        let mut top_released = 0;
        self.ranges.retain(|&start, (len, st)| {
            let pending = matches!(st, State::Pending(_));
            if pending {
                top_released = top_released.max(start + *len);
            }
            !pending
        });
        self.released_up_to(top_released);
        self.oldest_pending = None;
        self.pending = 0;
        before - self.ranges.len()
    }

    /// A page-selective flush covering just the pending range at `addr` completed
    /// (strict mode): only that range becomes free. Returns whether it was pending.
    pub fn flush_done_range(&mut self, addr: DmaAddr) -> bool {
        match self.ranges.get(&addr.as_u64()) {
            Some(&(len, State::Pending(_))) => {
                self.ranges.remove(&addr.as_u64());
                self.pending -= 1;
                if self.pending == 0 {
                    self.oldest_pending = None;
                }
                self.released_up_to(addr.as_u64() + len);
                true
            }
            _ => false,
        }
    }

    /// Returns an allocated range that was never mapped (so no IOTLB entry can exist):
    /// it is free at once.
    pub fn cancel(&mut self, addr: DmaAddr) -> Result<(), IovaError> {
        match self.ranges.get(&addr.as_u64()) {
            Some(&(len, State::Allocated)) => {
                self.ranges.remove(&addr.as_u64());
                self.released_up_to(addr.as_u64() + len);
                Ok(())
            }
            _ => Err(IovaError::NotAllocated(addr)),
        }
    }

    /// Number of ranges waiting for a flush.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Pending ranges as (start, size), for the caller's invalidation.
    pub fn pending_ranges(&self) -> impl Iterator<Item = (DmaAddr, u64)> + '_ {
        self.ranges.iter().filter_map(|(&s, &(l, st))| {
            matches!(st, State::Pending(_)).then_some((DmaAddr::new(s), l))
        })
    }

    /// Lazy mode: true when the pending queue has reached its bound or its oldest
    /// entry has waited `max_delay` or longer at time `now`.
    pub fn flush_needed(&self, now: u64) -> bool {
        if self.pending >= self.max_pending {
            return true;
        }
        self.oldest_pending
            .is_some_and(|t| now.saturating_sub(t) >= self.max_delay)
    }

    /// Allocated (not pending, not reserved) ranges.
    pub fn allocated(&self) -> impl Iterator<Item = (DmaAddr, u64)> + '_ {
        self.ranges
            .iter()
            .filter_map(|(&s, &(l, st))| (st == State::Allocated).then_some((DmaAddr::new(s), l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn top_down_size_aligned_below_mask() {
        let mut a = IovaAllocator::new(0, 8, 10);
        let x = a.alloc(0x3000, 1 << 28).unwrap();
        assert_eq!(x.as_u64(), (1 << 28) - 0x4000);
        let y = a.alloc(0x1000, 1 << 28).unwrap();
        assert_eq!(y.as_u64(), (1 << 28) - 0x5000);
        let z = a.alloc(0x4000, 1 << 28).unwrap();
        // [-0x8000, -0x4000) holds y, so the next 16 KiB-aligned hole is lower.
        assert_eq!(z.as_u64(), (1 << 28) - 0xc000);
        assert_eq!(a.size_of(x), Some(0x4000));
    }

    #[test]
    fn freed_range_is_not_reused_before_flush() {
        let mut a = IovaAllocator::new(0x1000, 8, 10);
        let limit = 0x4000;
        let x = a.alloc(0x1000, limit).unwrap();
        let y = a.alloc(0x1000, limit).unwrap();
        let z = a.alloc(0x1000, limit).unwrap();
        assert_eq!(
            a.alloc(0x1000, limit),
            Err(IovaError::Exhausted {
                size: 0x1000,
                limit
            })
        );
        a.free(y, 0).unwrap();
        assert!(a.alloc(0x1000, limit).is_err(), "pending range reused");
        assert_eq!(a.free(y, 0), Err(IovaError::NotAllocated(y)));
        assert_eq!(a.flush_done(), 1);
        assert_eq!(a.alloc(0x1000, limit).unwrap(), y);
        // Strict mode: only the flushed range is released.
        a.free(x, 0).unwrap();
        a.free(z, 0).unwrap();
        assert!(a.flush_done_range(z));
        assert!(!a.flush_done_range(z));
        assert_eq!(a.pending(), 1);
        assert_eq!(a.alloc(0x1000, limit).unwrap(), z);
        assert!(a.alloc(0x1000, limit).is_err());
        // A never-mapped range is free at once.
        assert_eq!(a.cancel(z), Ok(()));
        assert_eq!(a.alloc(0x1000, limit).unwrap(), z);
    }

    #[test]
    fn lazy_bounds() {
        let mut a = IovaAllocator::new(0, 2, 100);
        let x = a.alloc(0x1000, 1 << 32).unwrap();
        let y = a.alloc(0x1000, 1 << 32).unwrap();
        a.free(x, 10).unwrap();
        assert!(!a.flush_needed(50));
        assert!(a.flush_needed(110), "delay bound");
        a.free(y, 60).unwrap();
        assert!(a.flush_needed(61), "size bound");
        a.flush_done();
        assert!(!a.flush_needed(1000));
    }

    #[test]
    fn reserve_keeps_window_out() {
        let mut a = IovaAllocator::new(0, 8, 10);
        a.reserve(0xfee0_0000, 0x10_0000).unwrap();
        let x = a.alloc(0x10_0000, 0xff00_0000).unwrap();
        assert_eq!(x.as_u64(), 0xfef0_0000);
        let y = a.alloc(0x10_0000, 0xff00_0000).unwrap();
        assert_eq!(y.as_u64(), 0xfed0_0000);
        assert!(a.reserve(0xfed0_1000, 1).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u8, u8),
        Free(usize),
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..5, 14u8..22).prop_map(|(s, m)| Op::Alloc(s, m)),
            3 => any::<usize>().prop_map(Op::Free),
            1 => Just(Op::Flush),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Masks are respected, live ranges never overlap, and a freed range is never
        /// handed out again before `flush_done`.
        #[test]
        fn allocator_properties(ops in proptest::collection::vec(op(), 1..120)) {
            let mut a = IovaAllocator::new(0x1000, 4, 10);
            let mut live: std::vec::Vec<(u64, u64)> = std::vec::Vec::new();
            let mut pending: std::vec::Vec<(u64, u64, u64)> = std::vec::Vec::new();
            for (t, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Alloc(s, m) => {
                        let req = 0x1000u64 << s;
                        let limit = 1u64 << m;
                        if let Ok(x) = a.alloc(req - 1, limit) {
                            let x = x.as_u64();
                            let size = req;
                            prop_assert_eq!(x % size, 0, "size-aligned");
                            prop_assert!(x >= 0x1000);
                            prop_assert!(x + size <= limit, "below the mask");
                            for (s2, l2) in live.iter().copied().chain(pending.iter().map(|&(s, l, _)| (s, l))) {
                                prop_assert!(x + size <= s2 || s2 + l2 <= x,
                                    "{:#x}+{:#x} overlaps {:#x}+{:#x}", x, size, s2, l2);
                            }
                            live.push((x, size));
                        }
                    }
                    Op::Free(i) => {
                        if !live.is_empty() {
                            let r = live.swap_remove(i % live.len());
                            prop_assert_eq!(a.free(DmaAddr::new(r.0), t as u64), Ok(r.1));
                            pending.push((r.0, r.1, t as u64));
                            prop_assert_eq!(a.pending(), pending.len());
                            let now = t as u64 + 3;
                            let expect = pending.len() >= 4
                                || pending.iter().any(|&(_, _, ft)| now - ft >= 10);
                            prop_assert_eq!(a.flush_needed(now), expect, "lazy bounds");
                        }
                    }
                    Op::Flush => {
                        prop_assert_eq!(a.flush_done(), pending.len());
                        pending.clear();
                    }
                }
            }
            let mut got: std::vec::Vec<_> = a.allocated().map(|(d, l)| (d.as_u64(), l)).collect();
            got.sort();
            live.sort();
            prop_assert_eq!(got, live);
        }
    }

    /// Lazy mode parks freed ranges above the search position; allocation
    /// must continue below them (not re-walk from the top) and, once the
    /// flush releases them, reuse the highest first.
    #[test]
    fn search_continues_below_pending_and_reuses_after_flush() {
        let mut a = IovaAllocator::new(0x1000, 64, 100);
        let limit = 1u64 << 28;
        let first = a.alloc(0x1000, limit).unwrap().as_u64();
        let mut prev = first;
        for _ in 0..32 {
            a.free(DmaAddr::new(prev), 0).unwrap();
            let next = a.alloc(0x1000, limit).unwrap().as_u64();
            assert_eq!(next, prev - 0x1000, "not directly below the pending range");
            prev = next;
        }
        assert_eq!(a.flush_done(), 32);
        a.free(DmaAddr::new(prev), 0).unwrap();
        a.flush_done();
        assert_eq!(
            a.alloc(0x1000, limit).unwrap().as_u64(),
            first,
            "the top is not reused after the flush"
        );
    }
}
