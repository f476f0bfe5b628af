//! Where table pages come from: a small trait the kernel implements over its frame
//! allocator (zeroing is done here, through `PhysMemory`).

use hal::{PhysAddr, PAGE_SIZE};

/// Source of 4 KiB physical pages for root/context/page tables and the invalidation
/// queue. Pages must be 4 KiB aligned and below the unit's host address width.
pub trait FrameAlloc {
    /// One 4 KiB page, or `None` when memory is exhausted.
    fn alloc_page(&mut self) -> Option<PhysAddr>;
    /// Returns a page obtained from [`FrameAlloc::alloc_page`].
    fn free_page(&mut self, pa: PhysAddr);
}

impl<T: FrameAlloc + ?Sized> FrameAlloc for &mut T {
    fn alloc_page(&mut self) -> Option<PhysAddr> {
        (**self).alloc_page()
    }
    fn free_page(&mut self, pa: PhysAddr) {
        (**self).free_page(pa)
    }
}

/// A bump allocator over `[start, end)` that keeps freed pages on a free list: enough
/// for early boot and for host tests.
#[derive(Debug)]
pub struct BumpFrames {
    next: u64,
    end: u64,
    free: alloc::vec::Vec<u64>,
    allocated: usize,
}

impl BumpFrames {
    /// Pages from `[start, end)`; `start` is rounded up to 4 KiB.
    pub fn new(start: PhysAddr, end: PhysAddr) -> Self {
        BumpFrames {
            next: start.as_u64().next_multiple_of(PAGE_SIZE),
            end: end.as_u64(),
            free: alloc::vec::Vec::new(),
            allocated: 0,
        }
    }

    /// Pages currently handed out.
    pub fn allocated(&self) -> usize {
        self.allocated
    }
}

impl FrameAlloc for BumpFrames {
    fn alloc_page(&mut self) -> Option<PhysAddr> {
        let pa = if let Some(p) = self.free.pop() {
            p
        } else if self.next + PAGE_SIZE <= self.end {
            self.next += PAGE_SIZE;
            self.next - PAGE_SIZE
        } else {
            return None;
        };
        self.allocated += 1;
        Some(PhysAddr::new(pa))
    }

    fn free_page(&mut self, pa: PhysAddr) {
        self.allocated = self.allocated.saturating_sub(1);
        self.free.push(pa.as_u64());
    }
}
