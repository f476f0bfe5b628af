//! `mm`: Busmaster's memory management, as host-testable library code.
//!
//! * [`buddy`] — zones (DMA < 16 MiB, DMA32 < 4 GiB, Normal) and one buddy allocator per
//!   zone, with Linux-style fallback and a DMA reserve; metadata in a caller-provided
//!   buffer, no heap.
//! * [`paging`] — a 4-level page-table mapper over [`hal::PhysMemory`] (4 KiB and 2 MiB
//!   pages), TLB invalidation through a trait.
//! * [`pat`] — our PAT layout, the `IA32_PAT` value, and cache-type ⇄ PTE bits.
//! * [`ioremap`] — the virtual-range allocator for `ioremap` and the page-span helper.
//!
//! All raw memory access goes through `hal`, so this crate has no `unsafe`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod buddy;
pub mod ioremap;
pub mod paging;
pub mod pat;

pub use buddy::{
    metadata_bytes, AllocError, BuildError, ErrorCounts, FrameAllocator, FrameAllocatorConfig,
    FreeError, ZoneKind, ZoneLimit, ZoneStats, MAX_ORDER,
};
pub use hal::{PhysAddr, VirtAddr};
pub use ioremap::{page_span, IoRemapError, IoRemapSpace, PageSpan};
pub use paging::{
    FrameSource, MapError, Mapper, NoTlb, PageSize, PageTableFlags, RecordingTlb, TlbInvalidate,
    Translation, UnmapError,
};
pub use pat::{CacheType, PAT_MSR_VALUE};
