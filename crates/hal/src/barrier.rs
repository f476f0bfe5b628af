//! Memory barriers and cache maintenance, as explicit calls (DESIGN.md §3).
//!
//! Called where the Linux rules call them, even where x86 makes them cheap, so the code
//! documents its ordering requirements and stays correct if the rules ever differ.
//!
//! On x86-64 (Intel SDM Vol. 3A §9.2 "Memory Ordering"): ordinary stores are not
//! reordered with other stores, loads not with other loads, but stores to write-combining
//! memory and non-temporal stores are weakly ordered — hence `sfence` in [`wmb`], and
//! `lfence`/`mfence` for the others, matching Linux's `wmb`/`rmb`/`mb` on x86-64.

use core::sync::atomic::{compiler_fence, Ordering};

/// Cache line size assumed by [`clflush_range`]. Every x86-64 CPU to date reports 64 in
/// CPUID.01H:EBX bits 15:8 (times 8); flushing with a smaller stride than the real line would only
/// cost time, never correctness, so 64 is the safe choice if that ever changes downward.
pub const CACHE_LINE: usize = 64;

/// Write barrier: stores before it are visible (to devices too) before stores after it.
/// Use before ringing a doorbell after filling descriptors in memory.
#[inline]
pub fn wmb() {
    compiler_fence(Ordering::SeqCst);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` only orders stores; it has no other effect.
    unsafe {
        core::arch::asm!("sfence", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "x86_64"))]
    core::sync::atomic::fence(Ordering::Release);
    compiler_fence(Ordering::SeqCst);
}

/// Read barrier: loads before it complete before loads after it. Use after reading a
/// device's "done" status before reading the data it wrote.
#[inline]
pub fn rmb() {
    compiler_fence(Ordering::SeqCst);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `lfence` only orders/serialises loads.
    unsafe {
        core::arch::asm!("lfence", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "x86_64"))]
    core::sync::atomic::fence(Ordering::Acquire);
    compiler_fence(Ordering::SeqCst);
}

/// Full barrier: all loads and stores before it are globally visible before any after it.
#[inline]
pub fn mb() {
    compiler_fence(Ordering::SeqCst);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `mfence` only orders memory accesses.
    unsafe {
        core::arch::asm!("mfence", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "x86_64"))]
    core::sync::atomic::fence(Ordering::SeqCst);
    compiler_fence(Ordering::SeqCst);
}

/// Barrier between CPU writes to coherent DMA memory and the device reading them (Linux
/// `dma_wmb`). x86 keeps ordinary write-back stores in order, so only the compiler must
/// be stopped from reordering.
#[inline]
pub fn dma_wmb() {
    compiler_fence(Ordering::SeqCst);
}

/// Barrier between the device's writes to coherent DMA memory and CPU reads (Linux
/// `dma_rmb`); a compiler barrier on x86 for the same reason as [`dma_wmb`].
#[inline]
pub fn dma_rmb() {
    compiler_fence(Ordering::SeqCst);
}

/// Writes back and invalidates every cache line overlapping `[virt, virt + len)`, then
/// `mfence` so the flushes are complete before later stores (e.g. to an IOMMU's
/// invalidation register). Needed when a device is not cache-coherent (VT-d ECAP.C = 0).
///
/// Intel SDM Vol. 2A "CLFLUSH": it is ordered with respect to writes and other CLFLUSHes
/// but not to everything, hence the trailing `mfence`.
///
/// On the kernel target this executes `clflush`. On the host it touches nothing and only
/// counts (see [`host_clflush_stats`]), so tests can assert it was called.
#[inline]
pub fn clflush_range(virt: crate::VirtAddr, len: usize) {
    if len == 0 {
        return;
    }
    let start = virt.as_u64() & !(CACHE_LINE as u64 - 1);
    let end = virt.as_u64().saturating_add(len as u64);
    let lines = (end - start).div_ceil(CACHE_LINE as u64);
    flush_lines(start, lines);
}

#[cfg(target_os = "none")]
#[inline]
fn flush_lines(start: u64, lines: u64) {
    for i in 0..lines {
        let p = start + i * CACHE_LINE as u64;
        // SAFETY: `clflush` on a mapped address only writes back/invalidates the line; it
        // faults like a load on an unmapped one, and the caller passes memory it uses.
        unsafe { core::arch::asm!("clflush [{}]", in(reg) p, options(nostack, preserves_flags)) };
    }
    // SAFETY: `mfence` only orders memory accesses.
    unsafe { core::arch::asm!("mfence", options(nostack, preserves_flags)) };
}

#[cfg(not(target_os = "none"))]
#[inline]
fn flush_lines(_start: u64, lines: u64) {
    host::record(lines);
}

/// Host-side record of [`clflush_range`] calls.
#[cfg(not(target_os = "none"))]
mod host {
    /// What `clflush_range` would have done on the current thread.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct ClflushStats {
        /// Number of non-empty `clflush_range` calls.
        pub calls: u64,
        /// Number of cache lines that would have been flushed.
        pub lines: u64,
    }

    #[cfg(any(test, feature = "std"))]
    std::thread_local! {
        static STATS: core::cell::Cell<ClflushStats> = const {
            core::cell::Cell::new(ClflushStats { calls: 0, lines: 0 })
        };
    }

    #[cfg(any(test, feature = "std"))]
    pub(super) fn record(lines: u64) {
        STATS.with(|s| {
            let mut v = s.get();
            v.calls += 1;
            v.lines += lines;
            s.set(v);
        });
    }

    /// Per-thread counts (tests run on their own threads, so counts do not mix).
    #[cfg(any(test, feature = "std"))]
    pub fn host_clflush_stats() -> ClflushStats {
        STATS.with(|s| s.get())
    }

    // Host build without std (a plain `cargo build` of a no_std dependent): global counts.
    #[cfg(not(any(test, feature = "std")))]
    static CALLS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    #[cfg(not(any(test, feature = "std")))]
    static LINES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    #[cfg(not(any(test, feature = "std")))]
    pub(super) fn record(lines: u64) {
        use core::sync::atomic::Ordering::Relaxed;
        CALLS.fetch_add(1, Relaxed);
        LINES.fetch_add(lines, Relaxed);
    }

    /// Global counts (no thread-locals without std).
    #[cfg(not(any(test, feature = "std")))]
    pub fn host_clflush_stats() -> ClflushStats {
        use core::sync::atomic::Ordering::Relaxed;
        ClflushStats {
            calls: CALLS.load(Relaxed),
            lines: LINES.load(Relaxed),
        }
    }
}

#[cfg(not(target_os = "none"))]
pub use host::{host_clflush_stats, ClflushStats};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VirtAddr;

    #[test]
    fn clflush_counts_lines_covering_unaligned_ranges() {
        let before = host_clflush_stats();
        clflush_range(VirtAddr::new(0x1000), 64); // exactly one line
        clflush_range(VirtAddr::new(0x103f), 2); // straddles two lines
        clflush_range(VirtAddr::new(0x2000), 4096); // a page: 64 lines
        clflush_range(VirtAddr::new(0x3000), 0); // nothing
        let after = host_clflush_stats();
        assert_eq!(after.calls - before.calls, 3);
        assert_eq!(after.lines - before.lines, 1 + 2 + 64);
    }

    #[test]
    fn barriers_execute() {
        // They are instructions with no observable single-thread effect; this proves they
        // assemble and do not fault on the host CPU.
        wmb();
        rmb();
        mb();
        dma_wmb();
        dma_rmb();
    }
}
