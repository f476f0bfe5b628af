//! Zoned buddy frame allocator.
//!
//! Three zones, as on Linux x86-64 (hw-facts §3.2): `DMA` below 16 MiB, `DMA32` below
//! 4 GiB, `Normal` above. Each zone has its own buddy allocator with orders
//! `0..=MAX_ORDER` (4 KiB .. 4 MiB). An allocation names a [`ZoneLimit`] and falls back
//! toward lower zones (Normal → DMA32 → DMA), never above its limit; the DMA zone keeps
//! a reserve of pages that only DMA-limited requests may use.
//!
//! ## Representation
//!
//! No heap: the caller hands over one metadata buffer (see [`metadata_bytes`]), carved
//! from usable memory at boot. Per zone it holds
//!
//! * one state byte per frame (unmanaged / managed / freed head / allocated head + order),
//!   which is what lets `free` tell a double free from a wrong order from a foreign
//!   address without trusting the caller;
//! * for each order, a hierarchical bitmap with one bit per block of that order that is
//!   currently a free buddy block ("the free list"), plus summary levels (one bit per
//!   non-zero word below) so finding a free block is a few `trailing_zeros`.
//!
//! That is about 1.3 bytes per frame. Bitmaps instead of linked lists: removing a buddy
//! during coalescing is clearing one bit (a list would need a doubly-linked node per
//! frame, 8 bytes), and the lowest free address is always handed out first, which keeps
//! allocations compact.

use core::fmt;
use core::ops::Range;

use hal::{PhysAddr, PAGE_SHIFT, PAGE_SIZE};

mod error;
mod info;
mod zone;

pub use error::{AllocError, BuildError, FreeError};
pub use info::{BuddyInfo, ZoneInfo};
use zone::{clip_frames, for_each_unreserved, layout, spans, words_for, Zone};
pub use zone::{metadata_bytes, place_metadata};

/// Largest order: blocks of `2^MAX_ORDER` pages (4 MiB).
pub const MAX_ORDER: u8 = 10;
/// Number of orders.
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;
/// Memory below this address is never handed out (real-mode IVT, BIOS data, EBDA, option
/// ROMs, and the trampoline an SMP bring-up would need).
pub const LOW_MEMORY_END: u64 = 1 << 20;
/// End of the DMA zone (ISA DMA reaches 24 address bits).
pub const DMA_ZONE_END: u64 = 16 << 20;
/// End of the DMA32 zone (32-bit DMA masks).
pub const DMA32_ZONE_END: u64 = 4 << 30;
/// Largest physical address the allocator manages (x86-64 MAXPHYADDR ≤ 52).
const PHYS_LIMIT: u64 = 1 << 52;
/// Default DMA-zone reserve, in pages (see [`FrameAllocatorConfig::dma_reserve_pages`]).
pub const DEFAULT_DMA_RESERVE_PAGES: u64 = 512;

const FRAMES_PER_MAX_BLOCK: u64 = 1 << MAX_ORDER;
/// Enough summary levels for 2^36 blocks (far beyond 2^52 bytes of 4 KiB frames).
const MAX_LEVELS: usize = 7;

// Per-frame state byte.
const ST_UNMANAGED: u8 = 0;
const ST_MANAGED: u8 = 1;
const ST_FREED_HEAD: u8 = 2;
const ST_ALLOC: u8 = 0x80; // | order, on the first frame of an allocated block

/// The three zones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ZoneKind {
    /// Below 16 MiB (ISA DMA, 24-bit masks).
    Dma = 0,
    /// 16 MiB .. 4 GiB (32-bit DMA masks).
    Dma32 = 1,
    /// 4 GiB and above.
    Normal = 2,
}

impl ZoneKind {
    /// All zones, lowest first.
    pub const ALL: [ZoneKind; 3] = [ZoneKind::Dma, ZoneKind::Dma32, ZoneKind::Normal];

    /// Linux's name for the zone, as printed in `/proc/buddyinfo`.
    pub const fn name(self) -> &'static str {
        match self {
            ZoneKind::Dma => "DMA",
            ZoneKind::Dma32 => "DMA32",
            ZoneKind::Normal => "Normal",
        }
    }

    /// The physical address range a zone may cover.
    pub const fn bounds(self) -> Range<u64> {
        match self {
            ZoneKind::Dma => 0..DMA_ZONE_END,
            ZoneKind::Dma32 => DMA_ZONE_END..DMA32_ZONE_END,
            ZoneKind::Normal => DMA32_ZONE_END..PHYS_LIMIT,
        }
    }

    /// The zone a physical address belongs to.
    pub const fn of(pa: u64) -> ZoneKind {
        if pa < DMA_ZONE_END {
            ZoneKind::Dma
        } else if pa < DMA32_ZONE_END {
            ZoneKind::Dma32
        } else {
            ZoneKind::Normal
        }
    }
}

impl fmt::Display for ZoneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Highest zone an allocation may come from (Linux's GFP zone modifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ZoneLimit {
    /// `GFP_DMA`: only the DMA zone, and it may use the DMA reserve.
    Dma,
    /// `GFP_DMA32`: DMA32, falling back to DMA (above its reserve).
    Dma32,
    /// No zone modifier: Normal, then DMA32, then DMA (above its reserve).
    #[default]
    Any,
}

impl ZoneLimit {
    /// Zones to try, in order (highest allowed first, falling back downward: Linux's
    /// zonelist for the GFP zone modifier).
    fn fallback(self) -> &'static [ZoneKind] {
        // exercise(zones): begin
        match self {
            ZoneLimit::Any => &[ZoneKind::Normal, ZoneKind::Dma32, ZoneKind::Dma],
            ZoneLimit::Dma32 => &[ZoneKind::Dma32, ZoneKind::Dma],
            ZoneLimit::Dma => &[ZoneKind::Dma],
        }
        // exercise(zones): stub
        // todo!("exercise zones: the zones {self:?} may use, highest first")
        // exercise(zones): end
    }

    /// Exclusive upper bound of the addresses this limit may return.
    pub const fn max_addr(self) -> u64 {
        match self {
            ZoneLimit::Dma => DMA_ZONE_END,
            ZoneLimit::Dma32 => DMA32_ZONE_END,
            ZoneLimit::Any => PHYS_LIMIT,
        }
    }
}

/// Tunables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAllocatorConfig {
    /// Pages of the DMA zone that only [`ZoneLimit::Dma`] requests may take (a simple
    /// form of Linux's `lowmem_reserve`): without it, ordinary allocations falling back
    /// would eat the 15 MiB that ISA-DMA and 24-bit devices can reach.
    pub dma_reserve_pages: u64,
}

impl Default for FrameAllocatorConfig {
    fn default() -> Self {
        FrameAllocatorConfig {
            dma_reserve_pages: DEFAULT_DMA_RESERVE_PAGES,
        }
    }
}

/// Count of each misuse or failure, for the shell and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// [`AllocError::OutOfMemory`] returned.
    pub alloc_failures: u64,
    /// [`AllocError::InvalidOrder`] / [`FreeError::InvalidOrder`] returned.
    pub invalid_order: u64,
    /// [`FreeError::Misaligned`] returned.
    pub misaligned: u64,
    /// [`FreeError::WrongOrder`] returned.
    pub wrong_order: u64,
    /// [`FreeError::DoubleFree`] returned.
    pub double_free: u64,
    /// [`FreeError::NotAllocated`] returned.
    pub not_allocated: u64,
}

impl ErrorCounts {
    /// Sum of the free-side misuse counters.
    pub fn free_errors(&self) -> u64 {
        self.misaligned + self.wrong_order + self.double_free + self.not_allocated
    }
}

/// Snapshot of one zone (for `zoneinfo` / `buddyinfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneStats {
    /// Which zone.
    pub kind: ZoneKind,
    /// Lowest managed address (inclusive).
    pub start: PhysAddr,
    /// End of the highest managed frame (exclusive).
    pub end: PhysAddr,
    /// Pages the zone manages (free or allocated).
    pub managed_pages: u64,
    /// Pages currently free.
    pub free_pages: u64,
    /// Reserve kept for DMA-limited requests (0 outside the DMA zone).
    pub reserve_pages: u64,
    /// Free blocks per order (`/proc/buddyinfo` columns).
    pub free_blocks: [u64; NR_ORDERS],
}

/// The zoned buddy allocator. Not internally locked: the kernel wraps it in a spinlock.
pub struct FrameAllocator<'a> {
    zones: [Option<Zone<'a>>; 3],
    errors: ErrorCounts,
}

impl fmt::Debug for FrameAllocator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FrameAllocator");
        for z in self.zones.iter().flatten() {
            d.field(z.kind.name(), &z.stats());
        }
        d.field("errors", &self.errors).finish()
    }
}

impl<'a> FrameAllocator<'a> {
    /// Builds the allocator.
    ///
    /// * `usable`: usable physical ranges (bootloader memory map). Overlaps are merged;
    ///   unaligned edges are trimmed to whole pages; anything below 1 MiB is ignored.
    /// * `reserved`: ranges inside `usable` never to hand out (kernel image, boot page
    ///   tables, this allocator's own `metadata`). Partial pages are reserved whole.
    /// * `metadata`: at least [`metadata_bytes`]`(usable)` bytes; any alignment; its
    ///   contents are overwritten.
    pub fn new<U, R>(
        usable: U,
        reserved: R,
        metadata: &'a mut [u8],
        config: FrameAllocatorConfig,
    ) -> Result<Self, BuildError>
    where
        U: IntoIterator<Item = Range<u64>> + Clone,
        R: IntoIterator<Item = Range<u64>> + Clone,
    {
        let needed = metadata_bytes(usable.clone());
        if metadata.len() < needed {
            return Err(BuildError::MetadataTooSmall {
                needed,
                given: metadata.len(),
            });
        }
        let spans = spans(usable.clone());
        let (_, mut words, _) = bytemuck::pod_align_to_mut::<u8, u64>(metadata);
        let mut zones: [Option<Zone<'a>>; 3] = [None, None, None];
        for z in ZoneKind::ALL {
            let Some(span) = spans[z as usize] else {
                continue;
            };
            let (levels, nbits) = layout(span.nframes);
            let nstate = span.nframes.div_ceil(8) as usize;
            let taken = core::mem::take(&mut words);
            let (state_words, rest) = taken.split_at_mut(nstate);
            let (bits, rest) = rest.split_at_mut(nbits as usize);
            words = rest;
            state_words.fill(0);
            bits.fill(0);
            let state: &'a mut [u8] = bytemuck::cast_slice_mut(state_words);
            zones[z as usize] = Some(Zone {
                kind: z,
                base_pfn: span.base_pfn,
                nframes: span.nframes,
                lo_pfn: u64::MAX,
                hi_pfn: 0,
                state,
                bits,
                levels,
                managed: 0,
                free: 0,
                nr_free: [0; NR_ORDERS],
                reserve: if z == ZoneKind::Dma {
                    config.dma_reserve_pages
                } else {
                    0
                },
            });
        }
        let mut fa = FrameAllocator {
            zones,
            errors: ErrorCounts::default(),
        };
        for r in usable {
            for z in ZoneKind::ALL {
                let b = z.bounds();
                if let Some(f) = clip_frames(&r, b.start, b.end) {
                    fa.add_minus_reserved(z, f, reserved.clone());
                }
            }
        }
        for zone in fa.zones.iter_mut().flatten() {
            if zone.lo_pfn > zone.hi_pfn {
                zone.lo_pfn = zone.base_pfn;
                zone.hi_pfn = zone.base_pfn;
            }
            log::debug!(
                "mm: zone {:6} [{:#012x}-{:#012x}) {} pages managed",
                zone.kind.name(),
                zone.lo_pfn << PAGE_SHIFT,
                zone.hi_pfn << PAGE_SHIFT,
                zone.managed
            );
        }
        Ok(fa)
    }

    /// Adds frames `f` of zone `z`, skipping every frame touched by a reserved range.
    fn add_minus_reserved<R>(&mut self, z: ZoneKind, f: Range<u64>, reserved: R)
    where
        R: IntoIterator<Item = Range<u64>> + Clone,
    {
        for_each_unreserved(f, reserved, |s, e| self.add_frames(z, s, e));
    }

    /// Marks frames `[s, e)` managed and free, skipping ones already added.
    fn add_frames(&mut self, z: ZoneKind, s: u64, e: u64) {
        let Some(zone) = self.zones[z as usize].as_mut() else {
            return;
        };
        let mut run_start = None;
        for pfn in s..e {
            let rel = pfn - zone.base_pfn;
            let fresh = zone.state[rel as usize] == ST_UNMANAGED;
            if fresh {
                zone.state[rel as usize] = ST_MANAGED;
                zone.managed += 1;
                zone.lo_pfn = zone.lo_pfn.min(pfn);
                zone.hi_pfn = zone.hi_pfn.max(pfn + 1);
                run_start.get_or_insert(rel);
            } else if let Some(rs) = run_start.take() {
                zone.add_free_run(rs, rel);
            }
        }
        if let Some(rs) = run_start {
            zone.add_free_run(rs, e - zone.base_pfn);
        }
    }

    /// Allocates `2^order` contiguous pages, aligned to their size, from the highest zone
    /// `limit` allows, falling back to lower zones. The memory is not zeroed.
    #[inline]
    pub fn alloc(&mut self, order: u8, limit: ZoneLimit) -> Result<PhysAddr, AllocError> {
        if order > MAX_ORDER {
            self.errors.invalid_order += 1;
            return Err(AllocError::InvalidOrder(order));
        }
        // Try the zones `limit.fallback()` lists, in order; a zone the machine lacks is
        // `None` in `self.zones` (indexed by `kind as usize`). `zone.alloc(order)` gives a
        // zone-relative frame; the frame number is `zone.base_pfn + rel`. Only a
        // `ZoneLimit::Dma` request may take the DMA zone's last `zone.reserve` pages.
        // Count a failure in `self.errors.alloc_failures` before returning the error.
        // exercise(zones): begin
        for &kind in limit.fallback() {
            let Some(zone) = self.zones[kind as usize].as_mut() else {
                continue;
            };
            // Only GFP_DMA-style requests may dig into the DMA reserve.
            if kind == ZoneKind::Dma
                && limit != ZoneLimit::Dma
                && zone.free < zone.reserve + (1 << order)
            {
                continue;
            }
            if let Some(rel) = zone.alloc(order as usize) {
                return Ok(PhysAddr::new((zone.base_pfn + rel) << PAGE_SHIFT));
            }
        }
        self.errors.alloc_failures += 1;
        Err(AllocError::OutOfMemory { order, limit })
        // exercise(zones): stub
        // let _ = limit.fallback(); // the zones to try, in order
        // let _ = |zone: &mut Zone<'_>| zone.alloc(order as usize); // a block from one zone
        // todo!("exercise zones: allocate an order-{order} block under {limit:?}")
        // exercise(zones): end
    }

    /// Allocates one page (order 0) with no zone limit.
    #[inline]
    pub fn alloc_page(&mut self) -> Result<PhysAddr, AllocError> {
        self.alloc(0, ZoneLimit::Any)
    }

    /// Frees a block returned by [`alloc`](Self::alloc) with the same order, merging it
    /// with free buddies. Misuse is detected, counted and returned without touching the
    /// allocator state.
    #[inline]
    pub fn free(&mut self, addr: PhysAddr, order: u8) -> Result<(), FreeError> {
        match self.check_free(addr, order) {
            Ok(rel) => {
                if let Some(zone) = self.zones[ZoneKind::of(addr.as_u64()) as usize].as_mut() {
                    zone.state[rel as usize] = ST_FREED_HEAD;
                    zone.release(rel, order as usize);
                }
                Ok(())
            }
            Err(e) => {
                self.count_free_error(&e);
                Err(e)
            }
        }
    }

    #[cold]
    fn count_free_error(&mut self, e: &FreeError) {
        let c = &mut self.errors;
        match e {
            FreeError::InvalidOrder(_) => c.invalid_order += 1,
            FreeError::Misaligned { .. } => c.misaligned += 1,
            FreeError::WrongOrder { .. } => c.wrong_order += 1,
            FreeError::DoubleFree(_) => c.double_free += 1,
            FreeError::NotAllocated(_) => c.not_allocated += 1,
        }
        log::warn!("mm: {e}");
    }

    /// Validates a free; on success returns the zone-relative frame (the zone is the
    /// one `ZoneKind::of(addr)` names).
    #[inline]
    fn check_free(&self, addr: PhysAddr, order: u8) -> Result<u64, FreeError> {
        if order > MAX_ORDER {
            return Err(FreeError::InvalidOrder(order));
        }
        let a = addr.as_u64();
        if a & ((PAGE_SIZE << order) - 1) != 0 {
            return Err(FreeError::Misaligned { addr, order });
        }
        let pfn = a >> PAGE_SHIFT;
        let z = ZoneKind::of(a) as usize;
        let Some(zone) = self.zones[z].as_ref() else {
            return Err(FreeError::NotAllocated(addr));
        };
        if pfn < zone.base_pfn || pfn - zone.base_pfn >= zone.nframes {
            return Err(FreeError::NotAllocated(addr));
        }
        let rel = pfn - zone.base_pfn;
        let st = zone.state[rel as usize];
        if st & ST_ALLOC != 0 {
            let allocated = st & !ST_ALLOC;
            if allocated == order {
                return Ok(rel);
            }
            return Err(FreeError::WrongOrder {
                addr,
                allocated,
                given: order,
            });
        }
        if st == ST_FREED_HEAD && zone.frame_is_free(rel) {
            return Err(FreeError::DoubleFree(addr));
        }
        Err(FreeError::NotAllocated(addr))
    }

    /// Order of the allocated block starting at `addr`, if there is one.
    pub fn allocated_order(&self, addr: PhysAddr) -> Option<u8> {
        let a = addr.as_u64();
        let zone = self.zones[ZoneKind::of(a) as usize].as_ref()?;
        let pfn = a >> PAGE_SHIFT;
        let rel = pfn.checked_sub(zone.base_pfn)?;
        let st = *zone.state.get(rel as usize)?;
        (a.is_multiple_of(PAGE_SIZE) && st & ST_ALLOC != 0).then_some(st & !ST_ALLOC)
    }

    /// Is the page at `addr` currently free (inside a free buddy block)?
    pub fn is_free(&self, addr: PhysAddr) -> bool {
        let a = addr.as_u64();
        let Some(zone) = self.zones[ZoneKind::of(a) as usize].as_ref() else {
            return false;
        };
        let pfn = a >> PAGE_SHIFT;
        match pfn.checked_sub(zone.base_pfn) {
            Some(rel) if rel < zone.nframes => zone.frame_is_free(rel),
            _ => false,
        }
    }

    /// Calls `f(zone, start, order)` for every free block, lowest order first, ascending
    /// addresses within an order.
    pub fn for_each_free_block(&self, mut f: impl FnMut(ZoneKind, PhysAddr, u8)) {
        for zone in self.zones.iter().flatten() {
            for order in 0..NR_ORDERS {
                let lv = zone.levels[order];
                let nblocks = zone.nframes >> order;
                let words = words_for(nblocks) as usize;
                for wi in 0..words {
                    let mut w = zone.bits[lv.off[0] as usize + wi];
                    while w != 0 {
                        let b = u64::from(w.trailing_zeros());
                        w &= w - 1;
                        let rel = ((wi as u64 * 64) + b) << order;
                        f(
                            zone.kind,
                            PhysAddr::new((zone.base_pfn + rel) << PAGE_SHIFT),
                            order as u8,
                        );
                    }
                }
            }
        }
    }

    /// Statistics of one zone, `None` if the machine has no memory in it.
    pub fn zone_stats(&self, kind: ZoneKind) -> Option<ZoneStats> {
        self.zones[kind as usize].as_ref().map(Zone::stats)
    }

    /// Statistics of every present zone, lowest first.
    pub fn stats(&self) -> impl Iterator<Item = ZoneStats> + '_ {
        self.zones.iter().flatten().map(Zone::stats)
    }

    /// Total free pages over all zones.
    pub fn free_pages(&self) -> u64 {
        self.zones.iter().flatten().map(|z| z.free).sum()
    }

    /// Total managed pages over all zones.
    pub fn managed_pages(&self) -> u64 {
        self.zones.iter().flatten().map(|z| z.managed).sum()
    }

    /// Misuse and failure counters.
    pub fn error_counts(&self) -> ErrorCounts {
        self.errors
    }

    /// A `Display` in the shape of Linux's `/proc/buddyinfo`.
    pub fn buddyinfo(&self) -> BuddyInfo<'_, 'a> {
        BuddyInfo(self)
    }

    /// A `Display` in the spirit of Linux's `/proc/zoneinfo` (range, managed, free,
    /// reserve, free blocks per order, misuse counters).
    pub fn zoneinfo(&self) -> ZoneInfo<'_, 'a> {
        ZoneInfo(self)
    }
}
