//! TLB invalidation after a page-table change (Linux: asm/tlbflush.h): the kernel's
//! `invlpg`, and a recorder and a no-op for host tests and inactive tables.

use hal::VirtAddr;

/// TLB invalidation, done by the kernel with `invlpg` (and a CR3 reload for
/// `invalidate_all`); host tests record the calls.
pub trait TlbInvalidate {
    /// Invalidates the translation for the page containing `va`.
    fn invalidate_page(&mut self, va: VirtAddr);
}

/// A [`TlbInvalidate`] that remembers every invalidated address (for host tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecordingTlb {
    /// Addresses in call order.
    pub invalidated: alloc::vec::Vec<VirtAddr>,
}

impl TlbInvalidate for RecordingTlb {
    fn invalidate_page(&mut self, va: VirtAddr) {
        self.invalidated.push(va);
    }
}

/// A [`TlbInvalidate`] that does nothing: for tables not loaded in CR3 (being built, or
/// another address space), where no TLB can hold their entries.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTlb;

impl TlbInvalidate for NoTlb {
    fn invalidate_page(&mut self, _va: VirtAddr) {}
}

/// The kernel's [`TlbInvalidate`]: `invlpg` on the current CPU (SDM Vol. 2A "INVLPG").
/// Ring 0 only, hence only on the kernel target. With more than one CPU running, a
/// shootdown of the other CPUs is also needed; this kernel runs on one.
#[cfg(target_os = "none")]
#[derive(Debug, Default, Clone, Copy)]
pub struct Invlpg;

#[cfg(target_os = "none")]
impl TlbInvalidate for Invlpg {
    fn invalidate_page(&mut self, va: VirtAddr) {
        x86_64::instructions::tlb::flush(va);
    }
}
