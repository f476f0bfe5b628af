//! Per-domain IOVA allocator: size-aligned ranges below a limit (the device's DMA
//! mask), and "reuse only after flush".
//!
//! A freed range is not reusable while the IOTLB may still hold translations for it: a
//! device could otherwise reach the *next* user's buffer through a stale entry (spec
//! §6.5: unmapping requires IOTLB invalidation before the address is reused). Three
//! names, one per idea (Linux's, from `iova.c` and `dma-iommu.c`):
//!
//! * [`IovaAllocator::queue_iova`] — defer: the range was unmapped, its IOTLB
//!   invalidation has not completed; it waits on a pending list.
//! * [`IovaAllocator::free_iova`] — free at once: the range was never mapped, or
//!   the invalidation covering it has already completed.
//! * [`IovaAllocator::iotlb_flushed`] — an invalidation covering every queued range
//!   completed: release them all.
//!
//! Lazy mode (Linux's flush queue) is the same
//! pending list with bounds: [`IovaAllocator::flush_needed`] says when the queue is
//! full or its oldest entry is older than the allowed delay. Lazy mode (Linux's flush queue) is the same
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
    /// `queue_iova`/`free_iova` of an address that is not the start of an allocated
    /// (or, for `free_iova`, queued) range.
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
            // Full capacity up front: the flush queue's timer releases ranges into
            // these caches from the timer interrupt, which must not allocate.
            cache: core::array::from_fn(|_| Vec::with_capacity(CACHE_DEPTH)),
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

    /// Queues the range starting at `addr` at time `now` for release after the
    /// next IOTLB flush: it stays unusable until [`iotlb_flushed`](Self::iotlb_flushed)
    /// (or its own [`free_iova`](Self::free_iova) after a flush covering it).
    /// Returns its size (to unmap and invalidate). Linux's `queue_iova`.
    #[inline]
    pub fn queue_iova(&mut self, addr: DmaAddr, now: u64) -> Result<u64, IovaError> {
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
        // todo!("exercise iova: queue_iova = pending until the IOTLB flush")
        // exercise(iova): end
    }

    /// Size of the allocated range starting at `addr`, if any.
    pub fn size_of(&self, addr: DmaAddr) -> Option<u64> {
        match self.ranges.get(&addr.as_u64()) {
            Some(&(len, State::Allocated)) => Some(len),
            _ => None,
        }
    }

    /// The IOTLB invalidation covering every queued range has completed: they
    /// become free. Returns how many ranges were released. (Linux's
    /// `fq_flush_iotlb` flushes, then `fq_ring_free` does this.)
    pub fn iotlb_flushed(&mut self) -> usize {
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

    /// Frees the range at `addr` at once: it was never mapped (so no IOTLB entry
    /// can exist), or it was unmapped and the IOTLB invalidation covering it has
    /// already completed. An allocated range, or one [`queue_iova`](Self::queue_iova)
    /// queued (strict mode: a page-selective flush covering just that range
    /// completed, so only it becomes free; the rest of the queue keeps waiting).
    /// Linux's `free_iova`.
    pub fn free_iova(&mut self, addr: DmaAddr) -> Result<(), IovaError> {
        match self.ranges.get(&addr.as_u64()) {
            Some(&(len, State::Allocated)) => {
                self.release(addr.as_u64(), len);
                Ok(())
            }
            Some(&(len, State::Pending(_))) => {
                if let Some(i) = self.pending_list.iter().rposition(|&s| s == addr.as_u64()) {
                    self.pending_list.swap_remove(i);
                }
                self.pending -= 1;
                if self.pending == 0 {
                    self.oldest_pending = None;
                }
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
mod tests;
