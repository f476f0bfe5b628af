//! One zone's buddy bitmaps (Linux: `struct zone`'s free areas): the metadata
//! layout, where the metadata buffer goes, and finding, splitting and merging blocks.

use core::ops::Range;

use hal::{PhysAddr, PAGE_SHIFT, PAGE_SIZE};

use super::*;

/// Frame range of one zone, derived from the usable regions.
#[derive(Debug, Clone, Copy)]
pub(super) struct ZoneSpan {
    /// First frame covered by the bitmaps (aligned down to a max-order block).
    pub(super) base_pfn: u64,
    /// Frames covered (a multiple of a max-order block).
    pub(super) nframes: u64,
}

/// Layout of one order's hierarchical bitmap inside the zone's word slice.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Levels {
    pub(super) off: [u32; MAX_LEVELS],
    pub(super) n: u8,
    /// Lower bound on the first non-zero level-0 word: every word below it is zero.
    /// Lets `find_first` skip the summary levels in the common case.
    pub(super) hint: u32,
}

pub(super) fn words_for(bits: u64) -> u64 {
    bits.div_ceil(64)
}

/// Builds the bitmap layouts for a zone of `nframes`, returning the number of words.
pub(super) fn layout(nframes: u64) -> ([Levels; NR_ORDERS], u64) {
    let mut levels = [Levels::default(); NR_ORDERS];
    let mut words = 0u64;
    for (order, lv) in levels.iter_mut().enumerate() {
        let mut bits = nframes >> order;
        loop {
            let w = words_for(bits).max(1);
            lv.off[lv.n as usize] = words as u32;
            lv.n += 1;
            words += w;
            if w == 1 {
                break;
            }
            bits = w;
        }
    }
    (levels, words)
}

/// Words of metadata for a zone: state bytes (rounded to words) plus bitmaps.
pub(super) fn zone_words(span: &ZoneSpan) -> u64 {
    span.nframes.div_ceil(8) + layout(span.nframes).1
}

/// Page-aligned pieces of `r` inside `[lo, hi)`, as a frame range.
pub(super) fn clip_frames(r: &Range<u64>, lo: u64, hi: u64) -> Option<Range<u64>> {
    let s = r.start.max(lo).max(LOW_MEMORY_END);
    let e = r.end.min(hi).min(PHYS_LIMIT);
    let s = s.checked_add(PAGE_SIZE - 1)? >> PAGE_SHIFT;
    let e = e >> PAGE_SHIFT;
    (s < e).then_some(s..e)
}

pub(super) fn spans<I>(usable: I) -> [Option<ZoneSpan>; 3]
where
    I: IntoIterator<Item = Range<u64>>,
{
    let mut lo = [u64::MAX; 3];
    let mut hi = [0u64; 3];
    for r in usable {
        for z in ZoneKind::ALL {
            let b = z.bounds();
            if let Some(f) = clip_frames(&r, b.start, b.end) {
                let i = z as usize;
                lo[i] = lo[i].min(f.start);
                hi[i] = hi[i].max(f.end);
            }
        }
    }
    let mut out = [None; 3];
    for i in 0..3 {
        if lo[i] < hi[i] {
            let base = lo[i] & !(FRAMES_PER_MAX_BLOCK - 1);
            let end = hi[i].div_ceil(FRAMES_PER_MAX_BLOCK) * FRAMES_PER_MAX_BLOCK;
            out[i] = Some(ZoneSpan {
                base_pfn: base,
                nframes: end - base,
            });
        }
    }
    out
}

/// Bytes of metadata the allocator needs for these usable regions (pass the same
/// regions to [`FrameAllocator::new`]). About 1.3 bytes per 4 KiB frame of each zone's
/// span, plus 8 bytes of alignment slack; reserved ranges do not change it, so the
/// kernel can carve the buffer out of usable memory and then pass it as reserved.
pub fn metadata_bytes<I>(usable: I) -> usize
where
    I: IntoIterator<Item = Range<u64>>,
{
    let words: u64 = spans(usable).iter().flatten().map(zone_words).sum();
    (words * 8 + 8) as usize
}

/// Calls `f(start, end)` for each maximal frame run of `frames` that no reserved range
/// (in bytes; partial pages count whole) touches, in ascending order.
pub(super) fn for_each_unreserved<R>(frames: Range<u64>, reserved: R, mut f: impl FnMut(u64, u64))
where
    R: IntoIterator<Item = Range<u64>> + Clone,
{
    let mut cur = frames.start;
    while cur < frames.end {
        // The reserved range (in whole frames) overlapping [cur, end) that starts first.
        let mut next: Option<Range<u64>> = None;
        for r in reserved.clone() {
            if r.start >= r.end {
                continue;
            }
            let rs = r.start >> PAGE_SHIFT;
            let re = r.end.div_ceil(PAGE_SIZE);
            if re <= cur || rs >= frames.end {
                continue;
            }
            if next.as_ref().is_none_or(|n| rs < n.start) {
                next = Some(rs..re);
            }
        }
        match next {
            Some(n) if n.start <= cur => cur = n.end,
            Some(n) => {
                f(cur, n.start);
                cur = n.end;
            }
            None => {
                f(cur, frames.end);
                cur = frames.end;
            }
        }
    }
}

/// Picks where the kernel can put `bytes` of allocator metadata: a page-aligned range
/// of usable memory outside `reserved`, preferring memory above 4 GiB, then above
/// 16 MiB, so the scarce DMA zones are not spent on bookkeeping. `None` if nothing fits.
/// Pass the result as an extra reserved range to [`FrameAllocator::new`].
pub fn place_metadata<U, R>(usable: U, reserved: R, bytes: usize) -> Option<Range<u64>>
where
    U: IntoIterator<Item = Range<u64>> + Clone,
    R: IntoIterator<Item = Range<u64>> + Clone,
{
    let pages = (bytes as u64).div_ceil(PAGE_SIZE).max(1);
    for floor in [DMA32_ZONE_END, DMA_ZONE_END, LOW_MEMORY_END] {
        let mut found = None;
        for r in usable.clone() {
            let Some(f) = clip_frames(&r, floor, PHYS_LIMIT) else {
                continue;
            };
            for_each_unreserved(f, reserved.clone(), |s, e| {
                if found.is_none() && e - s >= pages {
                    found = Some(s << PAGE_SHIFT..(s + pages) << PAGE_SHIFT);
                }
            });
            if found.is_some() {
                return found;
            }
        }
    }
    None
}

pub(super) struct Zone<'a> {
    pub(super) kind: ZoneKind,
    pub(super) base_pfn: u64,
    pub(super) nframes: u64,
    pub(super) lo_pfn: u64,
    pub(super) hi_pfn: u64,
    pub(super) state: &'a mut [u8],
    pub(super) bits: &'a mut [u64],
    pub(super) levels: [Levels; NR_ORDERS],
    pub(super) managed: u64,
    pub(super) free: u64,
    pub(super) nr_free: [u64; NR_ORDERS],
    pub(super) reserve: u64,
}

impl Zone<'_> {
    #[inline(always)]
    pub(super) fn test(&self, order: usize, idx: u64) -> bool {
        let w = self.levels[order].off[0] as usize + (idx / 64) as usize;
        self.bits[w] & (1 << (idx % 64)) != 0
    }

    /// Sets the bit of block `idx` at `order`, and the summary bits above it that were
    /// clear (a word that was already non-zero already has its summary bit set).
    #[inline(always)]
    pub(super) fn set(&mut self, order: usize, idx: u64) {
        let lv = &self.levels[order];
        let mut i = idx;
        let word0 = (idx / 64) as u32;
        if word0 < lv.hint {
            self.levels[order].hint = word0;
        }
        let lv = &self.levels[order];
        for &off in &lv.off[..lv.n as usize] {
            let w = off as usize + (i / 64) as usize;
            let old = self.bits[w];
            self.bits[w] = old | (1 << (i % 64));
            if old != 0 {
                break;
            }
            i /= 64;
        }
    }

    /// Clears the bit of block `idx` at `order`, and the summary bits above it whose
    /// word became zero.
    #[inline(always)]
    pub(super) fn clear(&mut self, order: usize, idx: u64) {
        let lv = &self.levels[order];
        let mut i = idx;
        for &off in &lv.off[..lv.n as usize] {
            let w = off as usize + (i / 64) as usize;
            let new = self.bits[w] & !(1 << (i % 64));
            self.bits[w] = new;
            if new != 0 {
                break;
            }
            i /= 64;
        }
    }

    #[inline(always)]
    pub(super) fn find_first(&mut self, order: usize) -> Option<u64> {
        let lv = &self.levels[order];
        let hinted = self.bits[lv.off[0] as usize + lv.hint as usize];
        if hinted != 0 {
            return Some(u64::from(lv.hint) * 64 + u64::from(hinted.trailing_zeros()));
        }
        let top = lv.n as usize - 1;
        if self.bits[lv.off[top] as usize] == 0 {
            return None;
        }
        let mut i = 0u64;
        for l in (0..=top).rev() {
            let w = self.bits[lv.off[l] as usize + i as usize];
            i = i * 64 + u64::from(w.trailing_zeros());
        }
        self.levels[order].hint = (i / 64) as u32;
        Some(i)
    }

    /// Takes the lowest free block of `order`, splitting a larger one if needed.
    /// Returns the zone-relative frame.
    #[inline]
    pub(super) fn alloc(&mut self, order: usize) -> Option<u64> {
        for k in order..NR_ORDERS {
            if let Some(idx) = self.find_first(k) {
                self.clear(k, idx);
                self.nr_free[k] -= 1;
                let rel = idx << k;
                // Give back the upper halves, largest first.
                for j in (order..k).rev() {
                    self.set(j, (rel >> j) + 1);
                    self.nr_free[j] += 1;
                }
                self.free -= 1 << order;
                self.state[rel as usize] = ST_ALLOC | order as u8;
                return Some(rel);
            }
        }
        None
    }

    /// Returns a block to the free bitmaps, merging with free buddies. The caller has
    /// validated it.
    #[inline]
    pub(super) fn release(&mut self, rel: u64, order: usize) {
        let mut idx = rel >> order;
        let mut k = order;
        while k < MAX_ORDER as usize {
            let buddy = idx ^ 1;
            if !self.test(k, buddy) {
                break;
            }
            self.clear(k, buddy);
            self.nr_free[k] -= 1;
            idx >>= 1;
            k += 1;
        }
        self.set(k, idx);
        self.nr_free[k] += 1;
        self.free += 1 << order;
    }

    /// Is the zone-relative frame inside a free block?
    pub(super) fn frame_is_free(&self, rel: u64) -> bool {
        (0..NR_ORDERS).any(|k| self.test(k, rel >> k))
    }

    /// Adds the new (previously unmanaged) frames `[s, e)` (zone-relative) as free.
    pub(super) fn add_free_run(&mut self, mut s: u64, e: u64) {
        while s < e {
            let align = if s == 0 {
                MAX_ORDER as u32
            } else {
                s.trailing_zeros()
            };
            let fit = 63 - (e - s).leading_zeros();
            let order = align.min(fit).min(MAX_ORDER as u32) as usize;
            self.release(s, order);
            s += 1 << order;
        }
    }

    pub(super) fn stats(&self) -> ZoneStats {
        ZoneStats {
            kind: self.kind,
            start: PhysAddr::new(self.lo_pfn << PAGE_SHIFT),
            end: PhysAddr::new(self.hi_pfn << PAGE_SHIFT),
            managed_pages: self.managed,
            free_pages: self.free,
            reserve_pages: self.reserve,
            free_blocks: self.nr_free,
        }
    }
}
