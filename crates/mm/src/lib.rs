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
//!
//! ## What the kernel does at boot
//!
//! (Runs on the host with `hal::Arena` standing in for RAM; in the kernel, `arena` is
//! the direct-map `PhysMemory` and `meta` a slice carved from usable memory.)
//!
//! ```
//! use hal::Arena;
//! use mm::buddy::{metadata_bytes, place_metadata, FrameAllocator, FrameAllocatorConfig, ZoneLimit};
//! use mm::ioremap::{page_span, IoRemapSpace};
//! use mm::paging::{Mapper, NoTlb, PageSize, PageTableFlags};
//! use mm::pat::{CacheType, IA32_PAT_MSR, PAT_MSR_VALUE};
//! use mm::{PhysAddr, VirtAddr};
//!
//! // 1. Usable RAM from the bootloader's memory map; below 1 MiB is ignored.
//! let usable = [0..0x9_f000u64, 0x10_0000..0x100_0000];
//! let arena = Arena::new(PhysAddr::new(0), 0x100_0000);
//! // 2. Metadata: size it, carve it from usable memory, and pass it as reserved
//! //    together with the kernel image and boot page tables.
//! let kernel_image = 0x10_0000..0x20_0000;
//! let need = metadata_bytes(usable.iter().cloned());
//! let place = place_metadata(usable.iter().cloned(), [kernel_image.clone()], need).unwrap();
//! assert_eq!(place.start, 0x20_0000); // only the DMA zone here: first fit above the kernel
//! let mut meta = vec![0u8; need]; // kernel: the direct-map slice at `place`
//! let reserved = [kernel_image, place];
//! let mut frames = FrameAllocator::new(
//!     usable.iter().cloned(),
//!     reserved.iter().cloned(),
//!     &mut meta,
//!     FrameAllocatorConfig::default(),
//! )
//! .unwrap();
//! let isa_buf = frames.alloc(4, ZoneLimit::Dma).unwrap(); // 64 KiB below 16 MiB
//! frames.free(isa_buf, 4).unwrap();
//! print!("{}", frames.buddyinfo());
//!
//! // 3. Page tables (the kernel: `Mapper::new(DirectMap, cr3_frame, Invlpg)`), and the PAT
//! //    MSR written with `wrmsr(IA32_PAT_MSR, PAT_MSR_VALUE)` before WC/WP mappings.
//! assert_eq!((IA32_PAT_MSR, PAT_MSR_VALUE), (0x277, 0x0007_0501_0007_0406));
//! let mut mapper = Mapper::create(&arena, NoTlb, &mut frames).unwrap();
//!
//! // 4. ioremap(0xfed9_0008, 8): page span, virtual range, uncached mapping.
//! let mut io = IoRemapSpace::new(VirtAddr::new(0xffff_c000_0000_0000), 1 << 30).unwrap();
//! let span = page_span(0xfed9_0008, 8).unwrap();
//! let va = io.alloc(span.pages).unwrap();
//! let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
//! mapper
//!     .map_range(va, span.base, span.pages * 4096, PageSize::Size4K, flags, CacheType::Uncached, &mut frames)
//!     .unwrap();
//! let regs = va + span.offset;
//! let t = mapper.translate(regs).unwrap();
//! assert_eq!((t.phys.as_u64(), t.cache), (0xfed9_0008, CacheType::Uncached));
//! // iounmap:
//! mapper.unmap_range(va, span.pages * 4096).unwrap();
//! io.free(va).unwrap();
//! ```
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
    metadata_bytes, place_metadata, AllocError, BuildError, ErrorCounts, FrameAllocator,
    FrameAllocatorConfig, FreeError, ZoneKind, ZoneLimit, ZoneStats, MAX_ORDER,
};
pub use hal::{PhysAddr, VirtAddr};
pub use ioremap::{page_span, IoRemapError, IoRemapSpace, PageSpan};
pub use paging::{
    FrameSource, MapError, Mapper, NoTlb, PageSize, PageTableFlags, RecordingTlb, TlbInvalidate,
    Translation, UnmapError,
};
pub use pat::{CacheType, PAT_MSR_VALUE};
