//! Virtual-range allocator for `ioremap`, and the page-span helper.
//!
//! `ioremap(phys, size)` in the kernel is: [`page_span`] → [`IoRemapSpace::alloc`] →
//! `Mapper::map_range` with an uncached type → return `va + offset`; `iounmap` is the
//! reverse. This module only does the address bookkeeping.
//!
//! Every range is followed by an unmapped guard page (and the window starts with one),
//! so running off the end of one device's registers faults instead of landing in the
//! next device's.

use alloc::collections::{BTreeMap, BTreeSet};
use core::fmt;

use hal::{PhysAddr, VirtAddr, PAGE_SIZE};

/// Pages left unmapped after each range (and at the start of the window).
pub const GUARD_PAGES: u64 = 1;

/// A physical request rounded out to whole pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSpan {
    /// First page (the request's address rounded down).
    pub base: PhysAddr,
    /// Number of pages covering `[phys, phys + size)`.
    pub pages: u64,
    /// Offset of `phys` inside the first page: the caller returns `va + offset`.
    pub offset: u64,
}

/// Errors of [`page_span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanError {
    /// `size == 0`.
    Empty,
    /// `phys + size` overflows or passes the 52-bit physical address limit.
    Overflow,
}

impl fmt::Display for SpanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpanError::Empty => f.write_str("empty physical range"),
            SpanError::Overflow => f.write_str("physical range overflows 52-bit addresses"),
        }
    }
}

/// Rounds `[phys, phys + size)` out to pages: any alignment, any size.
pub fn page_span(phys: u64, size: u64) -> Result<PageSpan, SpanError> {
    if size == 0 {
        return Err(SpanError::Empty);
    }
    let end = phys.checked_add(size).ok_or(SpanError::Overflow)?;
    if end > 1 << 52 {
        return Err(SpanError::Overflow);
    }
    let base = phys & !(PAGE_SIZE - 1);
    let pages = (end - base).div_ceil(PAGE_SIZE);
    Ok(PageSpan {
        base: PhysAddr::new(base),
        pages,
        offset: phys - base,
    })
}

/// Errors of the range allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoRemapError {
    /// The window is not page aligned, empty, or not canonical.
    BadWindow,
    /// Zero pages requested.
    ZeroPages,
    /// Alignment not a power of two multiple of the page size.
    BadAlignment(u64),
    /// No gap large enough (with guard pages) is left in the window.
    OutOfSpace {
        /// Pages requested.
        pages: u64,
    },
    /// The address was freed already and not handed out since.
    DoubleFree(VirtAddr),
    /// The address is not the start of an allocated range.
    NotAllocated(VirtAddr),
}

impl fmt::Display for IoRemapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoRemapError::BadWindow => f.write_str("ioremap window not page aligned/empty"),
            IoRemapError::ZeroPages => f.write_str("ioremap of zero pages"),
            IoRemapError::BadAlignment(a) => write!(f, "bad ioremap alignment {a:#x}"),
            IoRemapError::OutOfSpace { pages } => {
                write!(f, "ioremap space exhausted ({pages} pages requested)")
            }
            IoRemapError::DoubleFree(va) => {
                write!(f, "double free of ioremap range {:#x}", va.as_u64())
            }
            IoRemapError::NotAllocated(va) => {
                write!(f, "{:#x} is not an allocated ioremap range", va.as_u64())
            }
        }
    }
}

/// First-fit allocator of page ranges inside a fixed virtual window.
#[derive(Debug, Clone)]
pub struct IoRemapSpace {
    start: u64,
    end: u64,
    /// Allocated ranges: start → pages (guard not included).
    ranges: BTreeMap<u64, u64>,
    /// Starts of freed ranges not reused since, to tell a double free apart.
    freed: BTreeSet<u64>,
}

impl IoRemapSpace {
    /// An allocator for the window `[start, start + size)`.
    pub fn new(start: VirtAddr, size: u64) -> Result<Self, IoRemapError> {
        let s = start.as_u64();
        let end = s.checked_add(size).ok_or(IoRemapError::BadWindow)?;
        if !s.is_multiple_of(PAGE_SIZE)
            || !size.is_multiple_of(PAGE_SIZE)
            || size <= GUARD_PAGES * PAGE_SIZE
        {
            return Err(IoRemapError::BadWindow);
        }
        if VirtAddr::try_new(end - 1).is_err() {
            return Err(IoRemapError::BadWindow);
        }
        Ok(IoRemapSpace {
            start: s,
            end,
            ranges: BTreeMap::new(),
            freed: BTreeSet::new(),
        })
    }

    /// Allocates `pages` pages, page aligned.
    pub fn alloc(&mut self, pages: u64) -> Result<VirtAddr, IoRemapError> {
        self.alloc_aligned(pages, PAGE_SIZE)
    }

    /// Allocates `pages` pages at a multiple of `align` bytes (a power of two ≥ 4 KiB),
    /// e.g. 2 MiB so a large BAR can use huge pages.
    pub fn alloc_aligned(&mut self, pages: u64, align: u64) -> Result<VirtAddr, IoRemapError> {
        if pages == 0 {
            return Err(IoRemapError::ZeroPages);
        }
        if !align.is_power_of_two() || align < PAGE_SIZE {
            return Err(IoRemapError::BadAlignment(align));
        }
        let oos = IoRemapError::OutOfSpace { pages };
        let need = pages
            .checked_add(GUARD_PAGES)
            .and_then(|p| p.checked_mul(PAGE_SIZE))
            .ok_or(oos)?;
        let fits = |cand: u64, limit: u64| cand.checked_add(need).is_some_and(|e| e <= limit);
        let align_up = |x: u64| x.checked_add(align - 1).map(|v| v & !(align - 1));
        let mut cursor = self.start + GUARD_PAGES * PAGE_SIZE;
        let mut found = None;
        for (&s, &n) in &self.ranges {
            if let Some(cand) = align_up(cursor) {
                if fits(cand, s) {
                    found = Some(cand);
                    break;
                }
            }
            cursor = s + (n + GUARD_PAGES) * PAGE_SIZE;
        }
        if found.is_none() {
            found = align_up(cursor).filter(|&c| fits(c, self.end));
        }
        let va = found.ok_or(oos)?;
        self.ranges.insert(va, pages);
        // Freed starts now covered by this range (or its guard) are no longer "freed".
        let stale: alloc::vec::Vec<u64> = self.freed.range(va..va + need).copied().collect();
        for s in stale {
            self.freed.remove(&s);
        }
        Ok(VirtAddr::new_truncate(va))
    }

    /// Frees the range starting at `va`, returning its page count.
    pub fn free(&mut self, va: VirtAddr) -> Result<u64, IoRemapError> {
        let v = va.as_u64();
        match self.ranges.remove(&v) {
            Some(n) => {
                self.freed.insert(v);
                Ok(n)
            }
            None if self.freed.contains(&v) => Err(IoRemapError::DoubleFree(va)),
            None => Err(IoRemapError::NotAllocated(va)),
        }
    }

    /// The allocated range containing `va`, as `(start, pages)`.
    pub fn find(&self, va: VirtAddr) -> Option<(VirtAddr, u64)> {
        let v = va.as_u64();
        let (&s, &n) = self.ranges.range(..=v).next_back()?;
        (v < s + n * PAGE_SIZE).then(|| (VirtAddr::new_truncate(s), n))
    }

    /// Pages currently allocated (guards excluded).
    pub fn allocated_pages(&self) -> u64 {
        self.ranges.values().sum()
    }

    /// Allocated ranges in address order, as `(start, pages)`.
    pub fn ranges(&self) -> impl Iterator<Item = (VirtAddr, u64)> + '_ {
        self.ranges
            .iter()
            .map(|(&s, &n)| (VirtAddr::new_truncate(s), n))
    }

    /// The window: its first address and its size in bytes.
    pub fn window(&self) -> (VirtAddr, u64) {
        (VirtAddr::new_truncate(self.start), self.end - self.start)
    }
}
