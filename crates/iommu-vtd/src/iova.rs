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
//!
//! Flushed ranges of up to [`CACHED_ORDERS`] sizes are not given back to the tree at
//! once: they stay in it marked `Cached` and their starts go on a per-size stack
//! (Linux's IOVA "rcache", without the per-CPU part). An allocation of that size
//! pops one (checked against the limit) instead of searching, and a free of it only
//! changes its state: in steady state no tree node is inserted or removed, so no
//! heap allocation happens per map. When the tree search finds no room, the caches
//! are emptied back into the free space and the search runs again, so caching never
//! makes an allocation fail that would otherwise succeed.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
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
    /// Freed and flushed, parked on its size's cache stack: free to reuse, but
    /// kept in the tree so the search does not hand it out a second time.
    Cached,
}

/// Range sizes with a cache: 4 KiB << 0 ..= 4 KiB << (CACHED_ORDERS - 1) (Linux
/// caches up to 128 KiB, `IOVA_RANGE_CACHE_MAX_SIZE`).
pub const CACHED_ORDERS: usize = 6;
/// Ranges kept per size; further flushed ranges go back to the tree.
pub const CACHE_DEPTH: usize = 128;

/// The highest `size`-aligned start whose range `[start, start + size)` ends at or
/// below `limit` (exclusive: `dma_mask + 1`), `size` a power of two; `None` when
/// not even a range at 0 fits.
#[inline]
fn highest_start(size: u64, limit: u64) -> Option<u64> {
    // The last byte of the range must be below `limit`, and the start a multiple of
    // `size`. Careful with `limit < size` (no range fits, and u64 must not wrap).
    // exercise(iova): begin
    if limit < size {
        return None;
    }
    Some((limit - size) & !(size - 1))
    // exercise(iova): stub
    // let _ = (size, limit);
    // todo!("exercise iova: the highest size-aligned start of a range ending below the limit")
    // exercise(iova): end
}

#[inline]
fn order_of(size: u64) -> Option<usize> {
    let o = (size / hal::PAGE_SIZE).trailing_zeros() as usize;
    (o < CACHED_ORDERS).then_some(o)
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
    /// Starts of the pending ranges, so a flush does not scan the whole tree
    /// (its capacity grows to `max_pending` once and stays).
    pending_list: Vec<u64>,
    /// Per-size stacks of `Cached` range starts.
    cache: [Vec<u64>; CACHED_ORDERS],
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
            pending_list: Vec::new(),
            cache: Default::default(),
        }
    }

    /// The size actually allocated for a request of `size` bytes: a power of two of at
    /// least one page (size alignment keeps page-selective invalidation masks tight).
    #[inline]
    pub fn rounded_size(size: u64) -> Result<u64, IovaError> {
        if size == 0 || size > 1 << 62 {
            return Err(IovaError::BadSize(size));
        }
        Ok(size.max(hal::PAGE_SIZE).next_power_of_two())
    }

    /// Allocates a range of at least `size` bytes, aligned to its rounded size, whose
    /// last byte is below `limit` (exclusive; `dma_mask + 1`), preferring high addresses
    /// like Linux so that low space stays for devices with small masks.
    #[inline]
    pub fn alloc(&mut self, size: u64, limit: u64) -> Result<DmaAddr, IovaError> {
        let size = Self::rounded_size(size)?;
        let exhausted = IovaError::Exhausted { size, limit };
        let Some(top) = highest_start(size, limit) else {
            return Err(exhausted);
        };
        if let Some(start) = self.take_cached(size, limit) {
            return Ok(DmaAddr::new(start));
        }
        let cand = match self.search_from_hint(top, size) {
            Some(c) => c,
            None if self.cache.iter().any(|c| !c.is_empty()) => {
                // Cached ranges hold space the search cannot see: give it back.
                self.purge_cache();
                self.search_from_hint(top, size).ok_or(exhausted)?
            }
            None => return Err(exhausted),
        };
        self.hint = cand;
        self.ranges.insert(cand, (size, State::Allocated));
        Ok(DmaAddr::new(cand))
    }

    /// Below the hint first; from the top when that part is full (which also
    /// finds holes above the hint once the sweep has wrapped).
    #[inline]
    fn search_from_hint(&self, top: u64, size: u64) -> Option<u64> {
        let below_hint = (self.hint >= size)
            .then(|| ((self.hint - size) & !(size - 1)).min(top))
            .and_then(|start| self.search(start, size));
        below_hint.or_else(|| self.search(top, size))
    }

    /// A cached range of `size` ending at or below `limit`, now allocated.
    #[inline]
    fn take_cached(&mut self, size: u64, limit: u64) -> Option<u64> {
        let stack = &mut self.cache[order_of(size)?];
        // Newest first (warmest); a range above this caller's limit stays.
        let i = stack.iter().rposition(|&s| s + size <= limit)?;
        let start = stack.swap_remove(i);
        match self.ranges.get_mut(&start) {
            Some((len, st)) if *len == size && *st == State::Cached => {
                *st = State::Allocated;
                Some(start)
            }
            // Unreachable while the stacks and the tree agree; never hand out a
            // range the tree does not hold as cached.
            _ => None,
        }
    }

    /// A freed range needs no (more) flush: park it on its size's stack, or
    /// give it back to the tree when the stack is full or the size is uncached.
    #[inline]
    fn release(&mut self, start: u64, len: u64) {
        if let Some(o) = order_of(len).filter(|&o| self.cache[o].len() < CACHE_DEPTH) {
            if let Some((_, st)) = self.ranges.get_mut(&start) {
                *st = State::Cached;
                self.cache[o].push(start);
                return;
            }
        }
        self.ranges.remove(&start);
        self.released_up_to(start + len);
    }

    /// Gives every cached range back to the tree's free space.
    pub fn purge_cache(&mut self) {
        for o in 0..CACHED_ORDERS {
            let size = hal::PAGE_SIZE << o;
            while let Some(start) = self.cache[o].pop() {
                self.ranges.remove(&start);
                self.released_up_to(start + size);
            }
        }
    }

    /// Ranges parked in the per-size caches (free, kept for fast reuse).
    pub fn cached(&self) -> usize {
        self.cache.iter().map(Vec::len).sum()
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
    fn search(&self, cand: u64, size: u64) -> Option<u64> {
        // Top-down: try `cand`; if a busy range (any state: allocated, reserved,
        // pending or cached) overlaps `[cand, cand + size)`, the next candidate is the
        // highest `size`-aligned start that ends at or below that range's start.
        // `self.ranges.range(..cand + size).next_back()` is the busy range with the
        // highest start below `cand + size`: ranges never overlap, so it is the only
        // one that can conflict. Stop with `None` below `self.base`.
        // exercise(iova): begin
        let mut cand = cand;
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
        // exercise(iova): stub
        // let _ = (cand, size, self.base);
        // todo!("exercise iova: top-down search for a free size-aligned range at or below cand")
        // exercise(iova): end
    }

    /// Marks `[start, start + len)` as never allocatable (RMRR identity ranges, the
    /// interrupt window 0xFEE0_0000..0xFEF0_0000). Page-rounded.
    pub fn reserve(&mut self, start: u64, len: u64) -> Result<(), IovaError> {
        // Cached ranges are free space; do not let them block a reservation.
        self.purge_cache();
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

    /// Marks `[start, start + len)` as never allocatable where it is not already
    /// reserved: for windows that may overlap each other or earlier reservations
    /// (PCI host-bridge windows beside RMRRs and the interrupt window). Unlike
    /// [`IovaAllocator::reserve`] an overlap with another *reservation* is fine;
    /// an overlap with a range in use (allocated, or freed and waiting for its
    /// flush) is [`IovaError::Overlap`] and reserves nothing. Page-rounded; a
    /// window reaching past the top of the 64-bit space is cut there.
    pub fn reserve_window(&mut self, start: u64, len: u64) -> Result<(), IovaError> {
        if len == 0 {
            return Ok(());
        }
        self.purge_cache();
        let s = start & !(hal::PAGE_SIZE - 1);
        let e = start
            .saturating_add(len)
            .checked_next_multiple_of(hal::PAGE_SIZE)
            .unwrap_or(!(hal::PAGE_SIZE - 1));
        // The ranges that touch [s, e): the one starting below s (if it reaches
        // in) and every one starting inside.
        let mut touching: Vec<(u64, u64, State)> = Vec::new();
        if let Some((&rs, &(rl, st))) = self.ranges.range(..s).next_back() {
            if rs.saturating_add(rl) > s {
                touching.push((rs, rl, st));
            }
        }
        touching.extend(self.ranges.range(s..e).map(|(&rs, &(rl, st))| (rs, rl, st)));
        if let Some(&(rs, _, _)) = touching.iter().find(|t| t.2 != State::Reserved) {
            return Err(IovaError::Overlap(DmaAddr::new(rs.max(s))));
        }
        // Fill the gaps between the reservations already there.
        let mut at = s;
        for (rs, rl, _) in touching {
            if rs > at {
                self.ranges.insert(at, (rs - at, State::Reserved));
            }
            at = at.max(rs.saturating_add(rl));
        }
        if at < e {
            self.ranges.insert(at, (e - at, State::Reserved));
        }
        Ok(())
    }

    /// Reserved ranges (start, size), in address order.
    pub fn reserved(&self) -> impl Iterator<Item = (DmaAddr, u64)> + '_ {
        self.ranges
            .iter()
            .filter_map(|(&s, &(l, st))| (st == State::Reserved).then_some((DmaAddr::new(s), l)))
    }

    /// Frees the range starting at `addr` at time `now`: it becomes pending until
    /// [`IovaAllocator::flush_done`]. Returns its size (to unmap and invalidate).
    #[inline]
    pub fn free(&mut self, addr: DmaAddr, now: u64) -> Result<u64, IovaError> {
        // Only an `Allocated` range can be freed. It must not become reusable yet:
        // mark it `Pending(now)`, count it, note when the queue's oldest entry was
        // freed (for `flush_needed`), and remember its start in `pending_list`.
        // exercise(iova): begin
        match self.ranges.get_mut(&addr.as_u64()) {
            Some((len, st @ State::Allocated)) => {
                *st = State::Pending(now);
                self.pending += 1;
                self.oldest_pending.get_or_insert(now);
                self.pending_list.push(addr.as_u64());
                Ok(*len)
            }
            _ => Err(IovaError::NotAllocated(addr)),
        }
        // exercise(iova): stub
        // let _ = (addr, State::Pending(now)); // the state a freed range waits in
        // todo!("exercise iova: free = pending until the IOTLB flush")
        // exercise(iova): end
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
        // Every range on `pending_list` that is still `Pending` becomes free:
        // `self.release(start, len)` parks it in its size cache or gives it back to
        // the tree. Then the queue is empty: list, count and oldest time reset.
        // Return how many ranges the list held.
        // exercise(iova): begin
        let mut list = core::mem::take(&mut self.pending_list);
        let n = list.len();
        for &start in &list {
            // One tree lookup per range (this is the flush queue's hot loop).
            let Some((len, st)) = self.ranges.get_mut(&start) else {
                continue;
            };
            if !matches!(*st, State::Pending(_)) {
                continue;
            }
            let len = *len;
            match order_of(len).filter(|&o| self.cache[o].len() < CACHE_DEPTH) {
                Some(o) => {
                    *st = State::Cached;
                    self.cache[o].push(start);
                }
                None => {
                    self.ranges.remove(&start);
                    self.released_up_to(start + len);
                }
            }
        }
        list.clear();
        self.pending_list = list; // keep the capacity
        self.oldest_pending = None;
        self.pending = 0;
        n
        // exercise(iova): stub
        // todo!("exercise iova: release every pending range after the flush")
        // exercise(iova): end
    }

    /// A page-selective flush covering just the pending range at `addr` completed
    /// (strict mode): only that range becomes free. Returns whether it was pending.
    pub fn flush_done_range(&mut self, addr: DmaAddr) -> bool {
        match self.ranges.get(&addr.as_u64()) {
            Some(&(len, State::Pending(_))) => {
                if let Some(i) = self.pending_list.iter().rposition(|&s| s == addr.as_u64()) {
                    self.pending_list.swap_remove(i);
                }
                self.pending -= 1;
                if self.pending == 0 {
                    self.oldest_pending = None;
                }
                self.release(addr.as_u64(), len);
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
                self.release(addr.as_u64(), len);
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
        self.pending_list
            .iter()
            .filter_map(|s| self.ranges.get(s).map(|&(l, _)| (DmaAddr::new(*s), l)))
    }

    /// Lazy mode: true when the pending queue has reached its bound or its oldest
    /// entry has waited `max_delay` or longer at time `now`.
    #[inline]
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
    fn alloc_fits_exactly_below_the_limit() {
        // The limit is exclusive: the last page below 0x3000 starts at 0x2000, and
        // page 0 is never handed out.
        let mut a = IovaAllocator::new(0x1000, 8, 10);
        assert_eq!(a.alloc(0x1000, 0x3000).unwrap().as_u64(), 0x2000);
        assert_eq!(a.alloc(0x1000, 0x3000).unwrap().as_u64(), 0x1000);
        assert!(a.alloc(0x1000, 0x3000).is_err());
        // An unaligned limit: the highest 8 KiB-aligned range ending below 0x5fff.
        let mut b = IovaAllocator::new(0x1000, 8, 10);
        assert_eq!(b.alloc(0x2000, 0x5fff).unwrap().as_u64(), 0x2000);
        // A limit below the size: no range fits, and nothing wraps around.
        assert_eq!(
            b.alloc(0x1000, 0x800),
            Err(IovaError::Exhausted {
                size: 0x1000,
                limit: 0x800
            })
        );
        // The top of a 64-bit space.
        let mut c = IovaAllocator::new(0x1000, 8, 10);
        assert_eq!(
            c.alloc(0x1000, u64::MAX).unwrap().as_u64(),
            u64::MAX - 0x1fff
        );
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

    /// IOVA page 0 is never handed out, whatever base the caller asks for
    /// (Linux starts its IOVA domains at page 1: a zero bus address means
    /// "none" to many devices).
    #[test]
    fn iova_zero_is_never_handed_out() {
        let mut a = IovaAllocator::new(0, 8, 10);
        let got: std::vec::Vec<u64> = core::iter::from_fn(|| a.alloc(0x1000, 0x4000).ok())
            .map(|d| d.as_u64())
            .collect();
        assert_eq!(got, [0x3000, 0x2000, 0x1000], "all of [4K, 16K), never 0");
        assert!(
            a.alloc(0x1000, 0x1000).is_err(),
            "page 0 alone is not a range"
        );
    }

    /// PCI windows: overlapping windows and reservations merge; a window over
    /// a range in use is refused and changes nothing; nothing is handed out
    /// inside a window.
    #[test]
    fn reserve_window_merges_and_refuses_ranges_in_use() {
        let mut a = IovaAllocator::new(0, 8, 10);
        a.reserve(0xfee0_0000, 0x10_0000).unwrap();
        a.reserve_window(0xe000_0000, 0x1f00_0000).unwrap(); // ..0xff00_0000, over the interrupt window
        a.reserve_window(0xfd00_0000, 0x300_0000).unwrap(); // overlaps both
        let r: std::vec::Vec<(u64, u64)> = a.reserved().map(|(d, l)| (d.as_u64(), l)).collect();
        let covered: u64 = r.iter().map(|x| x.1).sum();
        assert_eq!(covered, 0x2000_0000, "[0xe000_0000, 4 GiB) once: {r:x?}");
        let x = a.alloc(0x10_0000, 1 << 32).unwrap().as_u64();
        assert_eq!(x, 0xdff0_0000, "just below the windows");
        assert_eq!(
            a.reserve_window(0xd000_0000, 0x1000_0000),
            Err(IovaError::Overlap(DmaAddr::new(0xdff0_0000)))
        );
        let r2: std::vec::Vec<(u64, u64)> = a.reserved().map(|(d, l)| (d.as_u64(), l)).collect();
        assert_eq!(r, r2, "a refused window reserves nothing");
        // A window up to the top of the 64-bit space.
        a.reserve_window(0x40_0000_0000, u64::MAX).unwrap();
        let y = a.alloc(0x1000, 1 << 39).unwrap().as_u64();
        assert!(y < 0x40_0000_0000, "{y:#x} inside the 64-bit window");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u8, u8),
        Free(usize),
        Flush,
        /// Strict mode: a page-selective flush of one pending range.
        FlushOne(usize),
        /// Never mapped: back at once.
        Cancel(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..7, 14u8..22).prop_map(|(s, m)| Op::Alloc(s, m)),
            3 => any::<usize>().prop_map(Op::Free),
            1 => Just(Op::Flush),
            1 => any::<usize>().prop_map(Op::FlushOne),
            1 => any::<usize>().prop_map(Op::Cancel),
        ]
    }

    /// Whether a `size`-aligned range of `size` bytes fits in `[0x1000, limit)`
    /// without touching any busy range (the model's answer to "must alloc succeed?").
    fn room(busy: &[(u64, u64)], size: u64, limit: u64) -> bool {
        (1..)
            .map(|k| k * size)
            .take_while(|&x| x + size <= limit)
            .any(|x| busy.iter().all(|&(s, l)| x + size <= s || s + l <= x))
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
            let mut oldest: Option<u64> = None;
            for (t, o) in ops.into_iter().enumerate() {
                match o {
                    Op::Alloc(s, m) => {
                        let req = 0x1000u64 << s;
                        let limit = 1u64 << m;
                        let busy: std::vec::Vec<(u64, u64)> = live
                            .iter()
                            .copied()
                            .chain(pending.iter().map(|&(s, l, _)| (s, l)))
                            .collect();
                        let r = a.alloc(req - 1, limit);
                        prop_assert_eq!(r.is_ok(), room(&busy, req, limit),
                            "alloc of {:#x} below {:#x}: {:?}", req, limit, r);
                        if let Ok(x) = r {
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
                            oldest.get_or_insert(t as u64);
                            prop_assert_eq!(a.pending(), pending.len());
                            let now = t as u64 + 3;
                            // The bound itself: a full queue or an entry this old
                            // must ask for a flush.
                            if pending.len() >= 4 || pending.iter().any(|&(_, _, ft)| now - ft >= 10) {
                                prop_assert!(a.flush_needed(now), "lazy bounds exceeded");
                            }
                            // And exactly when the documented rule says so (the
                            // age counts from the first free since the queue
                            // was last empty).
                            let expect = pending.len() >= 4
                                || oldest.is_some_and(|o| now - o >= 10);
                            prop_assert_eq!(a.flush_needed(now), expect, "lazy bounds");
                        }
                    }
                    Op::Flush => {
                        prop_assert_eq!(a.flush_done(), pending.len());
                        pending.clear();
                        oldest = None;
                    }
                    Op::FlushOne(i) => {
                        if !pending.is_empty() {
                            let r = pending.swap_remove(i % pending.len());
                            prop_assert!(a.flush_done_range(DmaAddr::new(r.0)));
                            prop_assert!(!a.flush_done_range(DmaAddr::new(r.0)));
                            prop_assert_eq!(a.pending(), pending.len());
                            if pending.is_empty() {
                                oldest = None;
                            }
                        }
                    }
                    Op::Cancel(i) => {
                        if !live.is_empty() {
                            let r = live.swap_remove(i % live.len());
                            prop_assert_eq!(a.cancel(DmaAddr::new(r.0)), Ok(()));
                            prop_assert!(a.cancel(DmaAddr::new(r.0)).is_err());
                        }
                    }
                }
            }
            let mut got: std::vec::Vec<_> = a.allocated().map(|(d, l)| (d.as_u64(), l)).collect();
            got.sort();
            live.sort();
            prop_assert_eq!(got, live);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever windows are reserved (overlapping, unaligned, in any order)
        /// and whatever sizes and masks are asked for, no allocation overlaps a
        /// window, none starts at 0, and the allocator still fills the space
        /// the windows leave.
        #[test]
        fn allocations_never_overlap_reserved_windows(
            windows in proptest::collection::vec((0u64..1 << 24, 1u64..1 << 22), 0..6),
            sizes in proptest::collection::vec((0u8..5, 16u8..25), 1..80),
        ) {
            let mut a = IovaAllocator::new(0, 8, 10);
            for &(s, l) in &windows {
                prop_assert_eq!(a.reserve_window(s, l), Ok(()));
            }
            let hit = |x: u64, n: u64| windows.iter().any(|&(s, l)| {
                let (ws, we) = (s & !0xfff, (s + l).next_multiple_of(0x1000));
                x < we && ws < x + n
            });
            for (o, m) in sizes {
                let size = 0x1000u64 << o;
                let limit = 1u64 << m;
                if let Ok(x) = a.alloc(size, limit) {
                    let x = x.as_u64();
                    prop_assert!(x != 0, "IOVA 0 handed out");
                    prop_assert!(!hit(x, size), "{:#x}+{:#x} inside a window {:x?}", x, size, windows);
                }
            }
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
        // After the flush the freed ranges come back (from the size cache)
        // before any fresh space below them is touched.
        for _ in 0..33 {
            let x = a.alloc(0x1000, limit).unwrap().as_u64();
            assert!(
                (prev..=first).contains(&x),
                "{x:#x} is fresh space, not a flushed range"
            );
        }
        assert_eq!(a.alloc(0x1000, limit).unwrap().as_u64(), prev - 0x1000);
    }

    /// The size caches: a flushed range is reused without a tree search, only
    /// below the caller's limit, never before its flush; and cached ranges
    /// are given back when the search finds no room, so caching never makes an
    /// allocation fail.
    #[test]
    fn size_cache_reuse_limit_and_purge() {
        let mut a = IovaAllocator::new(0x1000, 64, 100);
        let x = a.alloc(0x2000, 1 << 28).unwrap();
        a.free(x, 0).unwrap();
        assert_eq!(a.cached(), 0, "cached before the flush");
        assert_ne!(a.alloc(0x2000, 1 << 28).unwrap(), x, "reused before flush");
        a.flush_done();
        assert_eq!(a.cached(), 1);
        // Too high for a 20-bit device: stays cached, the device gets other space.
        let low = a.alloc(0x2000, 1 << 20).unwrap();
        assert!(low.as_u64() + 0x2000 <= 1 << 20);
        assert_eq!(a.cached(), 1);
        assert_eq!(a.alloc(0x2000, 1 << 28).unwrap(), x, "cache not used");
        assert_eq!(a.cached(), 0);
        // A space of exactly four pages: fill it, free and flush two single
        // pages (cached), then ask for the two-page hole they leave.
        let mut b = IovaAllocator::new(0x1000, 64, 100);
        let lim = 0x5000;
        let p: std::vec::Vec<u64> = (0..4)
            .map(|_| b.alloc(0x1000, lim).unwrap().as_u64())
            .collect();
        assert!(b.alloc(0x1000, lim).is_err());
        let (lo2, hi2) = (0x2000, 0x3000); // one size-aligned 8 KiB slot
        assert!(p.contains(&lo2) && p.contains(&hi2));
        b.free(DmaAddr::new(lo2), 0).unwrap();
        b.free(DmaAddr::new(hi2), 0).unwrap();
        b.flush_done();
        assert_eq!(b.cached(), 2);
        assert_eq!(
            b.alloc(0x2000, lim).unwrap().as_u64(),
            lo2,
            "cache not purged"
        );
        assert_eq!(b.cached(), 0);
        // Uncached sizes (256 KiB) go straight back to the tree.
        let big = b.alloc(0x40000, 1 << 28).unwrap();
        b.free(big, 0).unwrap();
        b.flush_done();
        assert_eq!(b.cached(), 0);
    }
}
