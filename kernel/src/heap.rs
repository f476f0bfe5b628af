//! The kernel heap: a linked-list allocator over a static region.
//!
//! A static region keeps the heap independent of the physical memory layout,
//! so it works before (and without) the frame allocator.

use linked_list_allocator::LockedHeap;

const HEAP_SIZE: usize = 16 * 1024 * 1024;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

pub fn init() {
    // SAFETY: called once at boot before any allocation; the static region is
    // used by nothing else, so the allocator owns it exclusively from here on.
    unsafe {
        let start = core::ptr::addr_of_mut!(HEAP_SPACE) as *mut u8;
        ALLOCATOR.lock().init(start, HEAP_SIZE);
    }
}

/// (used, free) bytes.
pub fn usage() -> (usize, usize) {
    let heap = ALLOCATOR.lock();
    (heap.used(), heap.free())
}
