//! The kernel heap, in two stages.
//!
//! * Early heap: 256 KiB in the kernel image, for the few allocations made
//!   before the frame allocator exists (the memory map copy, the command line).
//! * Main heap: its own virtual window, backed by frames from the buddy
//!   allocator (any zone, Normal first, so it does not eat DMA memory), mapped
//!   on demand and grown when an allocation does not fit.
//!
//! A big static heap would make the kernel image large, and under UEFI the
//! bootloader loads the image into the lowest free memory: the DMA zone.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::VirtAddr;
use linked_list_allocator::Heap;

use crate::sync::IrqSpinLock;

const EARLY_SIZE: usize = 256 * 1024;
/// Main heap window and growth policy.
const MAIN_BASE: u64 = 0xFFFF_C000_0000_0000;
const MAIN_MAX: u64 = 1 << 30;
const MAIN_INITIAL: u64 = 8 << 20;
/// Grow in 2 MiB steps (order-9 blocks mapped as 4 KiB pages).
const GROW_STEP: u64 = 2 << 20;

#[repr(C, align(4096))]
struct EarlySpace([u8; EARLY_SIZE]);

static mut EARLY_SPACE: EarlySpace = EarlySpace([0; EARLY_SIZE]);

struct KernelHeap {
    early: IrqSpinLock<Heap>,
    main: IrqSpinLock<Heap>,
    main_ready: AtomicBool,
    /// Bytes of the window currently mapped.
    main_mapped: AtomicU64,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    early: IrqSpinLock::new(Heap::empty()),
    main: IrqSpinLock::new(Heap::empty()),
    main_ready: AtomicBool::new(false),
    main_mapped: AtomicU64::new(0),
};

fn early_range() -> (usize, usize) {
    let start = core::ptr::addr_of!(EARLY_SPACE) as usize;
    (start, start + EARLY_SIZE)
}

pub fn init_early() {
    let (start, _) = early_range();
    // SAFETY: called once before any allocation; the static region is used by
    // nothing else, so the early heap owns it from here on.
    unsafe { HEAP.early.lock().init(start as *mut u8, EARLY_SIZE) };
}

/// Maps `bytes` more of the window from buddy frames. Returns false when out
/// of frames or window.
fn map_more(bytes: u64) -> bool {
    let mapped = HEAP.main_mapped.load(Ordering::Acquire);
    if mapped + bytes > MAIN_MAX {
        return false;
    }
    let mut done = 0;
    while done < bytes {
        if crate::mm::try_map_fresh_2m(VirtAddr::new(MAIN_BASE + mapped + done)).is_none() {
            break;
        }
        done += GROW_STEP;
    }
    HEAP.main_mapped.store(mapped + done, Ordering::Release);
    done >= bytes
}

/// Creates the main heap; needs the frame allocator.
pub fn init_main() -> Result<(), &'static str> {
    if !map_more(MAIN_INITIAL) {
        return Err("no memory for the kernel heap");
    }
    // SAFETY: the window [MAIN_BASE, +MAIN_INITIAL) was just mapped writable
    // to frames nobody else owns.
    unsafe {
        HEAP.main
            .lock()
            .init(MAIN_BASE as *mut u8, MAIN_INITIAL as usize)
    };
    HEAP.main_ready.store(true, Ordering::Release);
    Ok(())
}

fn grow(heap: &mut Heap, layout: Layout) -> bool {
    let need = (layout.size() + layout.align()) as u64;
    let bytes = need.next_multiple_of(GROW_STEP);
    let before = HEAP.main_mapped.load(Ordering::Acquire);
    if !map_more(bytes) {
        return false;
    }
    let added = HEAP.main_mapped.load(Ordering::Acquire) - before;
    // SAFETY: the bytes right after the heap's top were just mapped.
    unsafe { heap.extend(added as usize) };
    true
}

// SAFETY: both heaps hand out disjoint, live memory (the early region is a
// static, the main window is mapped before it is given to the heap and never
// unmapped), each behind its own lock; `dealloc` routes a pointer back to the
// heap whose address range contains it, so blocks are always freed where
// they were allocated.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // The heap locks keep interrupts off while held: a handler that
        // allocated would otherwise find them held by the code it interrupted.
        // (Handlers do not allocate; this keeps a slip from being a deadlock.)
        self.alloc_inner(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract, passed through unchanged.
        unsafe { self.dealloc_inner(ptr, layout) }
    }
}

impl KernelHeap {
    fn alloc_inner(&self, layout: Layout) -> *mut u8 {
        if self.main_ready.load(Ordering::Acquire) {
            let mut main = self.main.lock();
            if let Ok(p) = main.allocate_first_fit(layout) {
                return p.as_ptr();
            }
            // Growing needs the memory manager; if this allocation came from
            // code holding its lock, growth fails (try_lock) rather than
            // deadlocking, and so does the allocation.
            if grow(&mut main, layout) {
                if let Ok(p) = main.allocate_first_fit(layout) {
                    return p.as_ptr();
                }
            }
            return core::ptr::null_mut();
        }
        self.early
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    /// # Safety
    /// As `GlobalAlloc::dealloc`: `ptr` came from `alloc` with `layout`.
    unsafe fn dealloc_inner(&self, ptr: *mut u8, layout: Layout) {
        let Some(nn) = NonNull::new(ptr) else { return };
        let (start, end) = early_range();
        let heap = if (start..end).contains(&(ptr as usize)) {
            &self.early
        } else {
            &self.main
        };
        // SAFETY: `ptr` came from `alloc` of the same heap (chosen by address
        // range) with the same layout, as GlobalAlloc's contract guarantees.
        unsafe { heap.lock().deallocate(nn, layout) }
    }
}

/// (used, free) bytes over both heaps.
pub fn usage() -> (usize, usize) {
    let (e, m) = (HEAP.early.lock(), HEAP.main.lock());
    (e.used() + m.used(), e.free() + m.free())
}

/// Bytes of the main heap's window currently backed by frames.
pub fn mapped() -> u64 {
    HEAP.main_mapped.load(Ordering::Acquire)
}
