//! The lazy flush queue is released from the timer interrupt (the kernel's
//! `flush_queue_timer`), where nothing may allocate: releasing queued IOVAs into
//! the per-size caches must not touch the heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use iommu_vtd::IovaAllocator;

/// Counts allocations while `COUNTING` is set (this test binary holds one test,
/// so no other thread allocates meanwhile).
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn releasing_the_flush_queue_does_not_allocate() {
    let mut a = IovaAllocator::new(0x1000, 1 << 20, 1000);
    // Sizes from 4 KiB to 128 KiB: every cached order, more ranges than a cache
    // holds for the smallest, so both the caches and the tree get ranges back.
    let mut queued = Vec::new();
    for i in 0..400u64 {
        let size = 0x1000 << (i % 6);
        let iova = a.alloc(size, u64::MAX >> 16).expect("room");
        queued.push(iova);
    }
    for (t, iova) in queued.iter().enumerate() {
        a.queue_iova(*iova, t as u64).expect("allocated");
    }
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let released = a.iotlb_flushed();
    COUNTING.store(false, Ordering::Relaxed);
    assert_eq!(released, 400);
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed),
        0,
        "iotlb_flushed allocated (it runs in the timer interrupt)"
    );
}
