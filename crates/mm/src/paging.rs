//! 4-level x86-64 page-table mapper over [`PhysMemory`].
//!
//! The tables are real tables in physical memory (the kernel's, or bytes in the host
//! arena), read and written as raw 64-bit entries through `PhysMemory`, with flag bits
//! named by the `x86_64` crate's [`PageTableFlags`]. Entry formats: Intel SDM Vol. 3A
//! §4.5 "4-Level Paging and 5-Level Paging", Tables 4-14 to 4-20.
//!
//! Raw entries rather than `x86_64::PageTableEntry`: in a 2 MiB/1 GiB leaf, bit 12 is
//! the PAT bit (see [`crate::pat`]), which `PageTableEntry::addr` would read as an
//! address bit.
//!
//! TLB rules (SDM §4.10.4): changing or removing a present leaf needs an invalidation
//! of that page ([`TlbInvalidate`]); creating a leaf where none was present does not
//! (a stale "not present" is never cached), so `map` does not invalidate.

use core::fmt;

use hal::{PhysAddr, PhysMemory, VirtAddr};
pub use x86_64::structures::paging::PageTableFlags;

use crate::buddy::{FrameAllocator, ZoneLimit};
use crate::pat::{self, CacheType};

mod entry;
mod error;
mod tlb;

pub use entry::PageSize;
use entry::{ADDR_2M, ADDR_4K, ENTRIES, P, PS};
pub use error::{MapError, UnmapError};
#[cfg(target_os = "none")]
pub use tlb::Invlpg;
pub use tlb::{NoTlb, RecordingTlb, TlbInvalidate};

/// Supplies zeroable frames for new page tables.
pub trait FrameSource {
    /// A free 4 KiB frame, or `None` when out of memory. The mapper zeroes it.
    fn alloc_table_frame(&mut self) -> Option<PhysAddr>;
}

impl FrameSource for FrameAllocator<'_> {
    fn alloc_table_frame(&mut self) -> Option<PhysAddr> {
        self.alloc(0, ZoneLimit::Any).ok()
    }
}

impl<F: FnMut() -> Option<PhysAddr>> FrameSource for F {
    fn alloc_table_frame(&mut self) -> Option<PhysAddr> {
        self()
    }
}

/// A resolved translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the exact virtual address asked for.
    pub phys: PhysAddr,
    /// Start of the mapped frame.
    pub frame: PhysAddr,
    /// Size of the page.
    pub size: PageSize,
    /// Leaf flags, without the cache-selecting bits (PWT/PCD/PAT) and without PS.
    pub flags: PageTableFlags,
    /// Cache type selected by the leaf (assuming our PAT layout is loaded).
    pub cache: CacheType,
    /// The raw leaf entry.
    pub raw: u64,
}

/// Where a walk stopped.
enum Walk {
    /// A leaf of `size` at entry address `entry_pa` with value `entry`.
    Leaf {
        entry_pa: PhysAddr,
        entry: u64,
        size: PageSize,
    },
    /// Not present at some level.
    NotMapped,
}

/// Flags a caller may set on a leaf (everything else is ours to compute).
fn leaf_flags_allowed(flags: PageTableFlags) -> u64 {
    let forbidden = PageTableFlags::WRITE_THROUGH
        | PageTableFlags::NO_CACHE
        | PageTableFlags::HUGE_PAGE
        | PageTableFlags::ACCESSED
        | PageTableFlags::DIRTY;
    (flags - forbidden).bits() | P
}

/// Flags of a new intermediate entry. Permissions are the AND over all levels (SDM
/// §4.6), so intermediates are permissive and the leaf decides; USER only when a user
/// leaf needs it.
fn table_flags_for(leaf: u64) -> u64 {
    P | PageTableFlags::WRITABLE.bits() | (leaf & PageTableFlags::USER_ACCESSIBLE.bits())
}

/// The 4-level page-table mapper.
pub struct Mapper<M: PhysMemory, T: TlbInvalidate> {
    mem: M,
    pml4: PhysAddr,
    tlb: T,
    pt_cache: Option<PtCache>,
}

/// One-entry walk cache: the last page table (level 1) `map` went through.
///
/// Mapping consecutive 4 KiB pages otherwise re-reads the PML4, PDPT and PD entries
/// for every page. A hit is checked by re-reading the cached PD entry, so a PD entry
/// changed behind the mapper's back is noticed; the upper levels are trusted, which is
/// safe because nothing (this mapper included) ever removes or replaces a table once it
/// is linked in.
#[derive(Debug, Clone, Copy)]
struct PtCache {
    /// `va >> 21` of the 2 MiB region the table covers.
    region: u64,
    /// Address and value of the PD entry pointing at the table.
    pde_pa: PhysAddr,
    pde: u64,
}

impl<M: PhysMemory, T: TlbInvalidate> fmt::Debug for Mapper<M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapper")
            .field("pml4", &format_args!("{:#x}", self.pml4.as_u64()))
            .finish()
    }
}

#[inline]
fn index(va: u64, level: u8) -> u64 {
    (va >> (12 + 9 * (u32::from(level) - 1))) & (ENTRIES - 1)
}

impl<M: PhysMemory, T: TlbInvalidate> Mapper<M, T> {
    /// A mapper over the existing top-level table at `pml4` (e.g. the frame in CR3).
    pub fn new(mem: M, pml4: PhysAddr, tlb: T) -> Self {
        Mapper {
            mem,
            pml4,
            tlb,
            pt_cache: None,
        }
    }

    /// A mapper over a fresh, empty top-level table taken from `frames`.
    pub fn create(mem: M, tlb: T, frames: &mut impl FrameSource) -> Result<Self, MapError> {
        let pml4 = frames.alloc_table_frame().ok_or(MapError::OutOfFrames)?;
        mem.fill(pml4, 0, 4096);
        Ok(Self::new(mem, pml4, tlb))
    }

    /// Physical address of the top-level table (what goes into CR3).
    pub fn pml4(&self) -> PhysAddr {
        self.pml4
    }

    /// The physical memory the tables live in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The TLB invalidator (tests read the recorded addresses from it).
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// Mutable access to the TLB invalidator (e.g. to clear a recording).
    pub fn tlb_mut(&mut self) -> &mut T {
        &mut self.tlb
    }

    #[inline]
    fn entry_pa(table: PhysAddr, va: u64, level: u8) -> PhysAddr {
        table + index(va, level) * 8
    }

    /// Walks down to the leaf for `va`.
    fn walk(&self, va: u64) -> Walk {
        let mut table = self.pml4;
        for level in (1..=4u8).rev() {
            let entry_pa = Self::entry_pa(table, va, level);
            let entry = self.mem.read_u64(entry_pa);
            if entry & P == 0 {
                return Walk::NotMapped;
            }
            let size = match level {
                1 => Some(PageSize::Size4K),
                2 if entry & PS != 0 => Some(PageSize::Size2M),
                3 if entry & PS != 0 => Some(PageSize::Size1G),
                _ => None,
            };
            if let Some(size) = size {
                return Walk::Leaf {
                    entry_pa,
                    entry,
                    size,
                };
            }
            table = PhysAddr::new(entry & ADDR_4K);
        }
        Walk::NotMapped
    }

    /// Returns the table at `level` covering `va`, creating missing tables above it.
    /// `leaf` is the leaf entry to be installed (for intermediate USER propagation).
    #[inline]
    fn table_for(
        &mut self,
        va: u64,
        level: u8,
        leaf: u64,
        frames: &mut impl FrameSource,
    ) -> Result<PhysAddr, MapError> {
        let want = table_flags_for(leaf);
        if level == 1 {
            if let Some(c) = self.pt_cache {
                if c.region == va >> 21
                    && c.pde & want == want
                    && self.mem.read_u64(c.pde_pa) == c.pde
                {
                    return Ok(PhysAddr::new(c.pde & ADDR_4K));
                }
            }
        }
        self.walk_create(va, level, want, frames)
    }

    /// The slow path of [`table_for`](Self::table_for): a full walk from the PML4.
    #[inline(never)]
    fn walk_create(
        &mut self,
        va: u64,
        level: u8,
        want: u64,
        frames: &mut impl FrameSource,
    ) -> Result<PhysAddr, MapError> {
        let mut table = self.pml4;
        for l in ((level + 1)..=4u8).rev() {
            let entry_pa = Self::entry_pa(table, va, l);
            let mut entry = self.mem.read_u64(entry_pa);
            if entry & P == 0 {
                let frame = frames.alloc_table_frame().ok_or(MapError::OutOfFrames)?;
                self.mem.fill(frame, 0, 4096);
                entry = frame.as_u64() | want;
                self.mem.write_u64(entry_pa, entry);
            } else if l <= 3 && entry & PS != 0 {
                let span = if l == 3 { 1u64 << 30 } else { 1u64 << 21 };
                return Err(MapError::HugePageOverlap {
                    huge_va: VirtAddr::new_truncate(va & !(span - 1)),
                });
            } else if entry & want != want {
                // Widen an existing intermediate (e.g. first USER leaf below it).
                // Adding permissions to a present entry needs no TLB flush: the worst a
                // stale entry causes is a spurious fault (SDM §4.10.4.3).
                entry |= want;
                self.mem.write_u64(entry_pa, entry);
            }
            if l == 2 {
                self.pt_cache = Some(PtCache {
                    region: va >> 21,
                    pde_pa: entry_pa,
                    pde: entry,
                });
            }
            table = PhysAddr::new(entry & ADDR_4K);
        }
        Ok(table)
    }

    /// Maps the page at `va` to the frame at `pa`.
    ///
    /// `flags` are leaf permissions (`WRITABLE`, `USER_ACCESSIBLE`, `GLOBAL`,
    /// `NO_EXECUTE`, available bits); `PRESENT` is implied and the cache bits come from
    /// `cache`. Missing intermediate tables are taken from `frames`.
    #[inline]
    pub fn map(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: PageSize,
        flags: PageTableFlags,
        cache: CacheType,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapError> {
        if size == PageSize::Size1G {
            return Err(MapError::UnsupportedSize);
        }
        let (v, p) = (va.as_u64(), pa.as_u64());
        if v % size.bytes() != 0 || p % size.bytes() != 0 {
            return Err(MapError::Misaligned);
        }
        let leaf = self.leaf_entry(p, size, flags, cache);
        let table = self.table_for(v, size.level(), leaf, frames)?;
        self.install(table, v, size, leaf)
    }

    #[inline]
    fn leaf_entry(&self, p: u64, size: PageSize, flags: PageTableFlags, cache: CacheType) -> u64 {
        let ps = if size == PageSize::Size4K { 0 } else { PS };
        p | leaf_flags_allowed(flags) | ps | pat::encode(cache, size)
    }

    /// Writes `leaf` in `table` for `v` after checking the slot is free.
    #[inline]
    fn install(
        &mut self,
        table: PhysAddr,
        v: u64,
        size: PageSize,
        leaf: u64,
    ) -> Result<(), MapError> {
        let entry_pa = Self::entry_pa(table, v, size.level());
        let old = self.mem.read_u64(entry_pa);
        if old & P != 0 {
            return Err(Self::occupied(v, size, old));
        }
        self.mem.write_u64(entry_pa, leaf);
        Ok(())
    }

    /// Maps `len` bytes at `va` to `pa` with pages of `size`, walking the upper levels
    /// once per table rather than once per page. All-or-nothing: on error, the pages this
    /// call mapped are unmapped again (tables it created stay, empty).
    #[allow(clippy::too_many_arguments)]
    pub fn map_range(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        len: u64,
        size: PageSize,
        flags: PageTableFlags,
        cache: CacheType,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapError> {
        if size == PageSize::Size1G {
            return Err(MapError::UnsupportedSize);
        }
        let page = size.bytes();
        let (v0, p0) = (va.as_u64(), pa.as_u64());
        if v0 % page != 0 || p0 % page != 0 || !len.is_multiple_of(page) {
            return Err(MapError::Misaligned);
        }
        let v_end = v0.checked_add(len).ok_or(MapError::RangeOverflow)?;
        // The end must be canonical too (or exactly the end of the lower half).
        if len > 0 && VirtAddr::try_new(v_end - 1).is_err() {
            return Err(MapError::RangeOverflow);
        }
        if p0.checked_add(len).is_none_or(|e| e > 1 << 52) {
            return Err(MapError::RangeOverflow);
        }
        let leaf0 = self.leaf_entry(p0, size, flags, cache);
        // Bytes mapped so far, so a failure can undo exactly what this call did.
        let mut done = 0u64;
        let table_span = page * ENTRIES;
        let result = (|| {
            while done < len {
                let v = v0 + done;
                let table = self.table_for(v, size.level(), leaf0, frames)?;
                // Pages left in this table.
                let in_table = ((table_span - (v % table_span)) / page).min((len - done) / page);
                let first = Self::entry_pa(table, v, size.level());
                for i in 0..in_table {
                    let entry_pa = first + i * 8;
                    let old = self.mem.read_u64(entry_pa);
                    if old & P != 0 {
                        return Err(Self::occupied(v0 + done, size, old));
                    }
                    // Offsets are page multiples below 2^52: the sum never carries
                    // into the flag bits.
                    self.mem.write_u64(entry_pa, leaf0 + done);
                    done += page;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let mut off = 0;
            while off < done {
                if let Walk::Leaf { entry_pa, .. } = self.walk(v0 + off) {
                    self.mem.write_u64(entry_pa, 0);
                    self.tlb.invalidate_page(VirtAddr::new_truncate(v0 + off));
                }
                off += page;
            }
            return Err(e);
        }
        Ok(())
    }

    /// The error for a slot of `size` at `v` that already holds `old`.
    fn occupied(v: u64, size: PageSize, old: u64) -> MapError {
        let va = VirtAddr::new_truncate(v);
        match size {
            PageSize::Size2M if old & PS == 0 => MapError::TableInTheWay { va },
            // In a PD, a present PS=1 entry is a 2 MiB leaf; in a PT bit 7 is PAT.
            PageSize::Size2M => MapError::AlreadyMapped {
                va,
                existing: PhysAddr::new(old & ADDR_2M),
            },
            _ => MapError::AlreadyMapped {
                va,
                existing: PhysAddr::new(old & ADDR_4K),
            },
        }
    }

    /// Removes the mapping of the page starting at `va` (any size) and invalidates its
    /// TLB entry. Returns the frame it mapped and the page size. Tables are not freed.
    pub fn unmap(&mut self, va: VirtAddr) -> Result<(PhysAddr, PageSize), UnmapError> {
        let v = va.as_u64();
        match self.walk(v) {
            Walk::NotMapped => Err(UnmapError::NotMapped(va)),
            Walk::Leaf {
                entry_pa,
                entry,
                size,
            } => {
                if !v.is_multiple_of(size.bytes()) {
                    return Err(UnmapError::NotPageStart { va, size });
                }
                self.mem.write_u64(entry_pa, 0);
                self.tlb.invalidate_page(va);
                Ok((PhysAddr::new(entry & size.addr_mask()), size))
            }
        }
    }

    /// Unmaps every page of `[va, va + len)` (pages of any size, each of which must lie
    /// wholly inside the range), invalidating each. All-or-nothing: the range is checked
    /// first, so on error nothing was unmapped. Returns the number of pages removed.
    /// This is `iounmap`'s page-table half.
    pub fn unmap_range(&mut self, va: VirtAddr, len: u64) -> Result<u64, UnmapError> {
        let v0 = va.as_u64();
        let end = v0.saturating_add(len);
        let mut v = v0;
        while v < end {
            let cur = VirtAddr::new_truncate(v);
            let t = self.translate(cur).ok_or(UnmapError::NotMapped(cur))?;
            if !v.is_multiple_of(t.size.bytes()) || end - v < t.size.bytes() {
                return Err(UnmapError::NotPageStart {
                    va: cur,
                    size: t.size,
                });
            }
            v += t.size.bytes();
        }
        let mut pages = 0;
        v = v0;
        while v < end {
            let (_, size) = self.unmap(VirtAddr::new_truncate(v))?;
            v += size.bytes();
            pages += 1;
        }
        Ok(pages)
    }

    /// The translation of `va`, or `None` if it is not mapped.
    pub fn translate(&self, va: VirtAddr) -> Option<Translation> {
        let v = va.as_u64();
        match self.walk(v) {
            Walk::NotMapped => None,
            Walk::Leaf { entry, size, .. } => {
                let frame = entry & size.addr_mask();
                let strip = pat::cache_mask(size) | PS;
                Some(Translation {
                    phys: PhysAddr::new(frame | (v & (size.bytes() - 1))),
                    frame: PhysAddr::new(frame),
                    size,
                    flags: PageTableFlags::from_bits_truncate(entry & !strip & !ADDR_4K),
                    cache: pat::decode(entry, size),
                    raw: entry,
                })
            }
        }
    }

    /// Changes the cache type of every leaf in `[va, va + len)`: `pick(frame, size)`
    /// names the new type for a leaf mapping `frame`, or `None` to leave it. Walks the
    /// tables once (a leaf of any size is one decision), so a terabyte of 2 MiB pages
    /// is 512 K entry reads, not 512 K walks. Only the leaves' cache bits change.
    /// Returns how many leaves changed. No TLB entry is invalidated: the caller flushes
    /// the whole TLB afterwards (a CR3 reload), which is cheaper than one `invlpg` per
    /// page for large ranges.
    pub fn recache_range(
        &mut self,
        va: VirtAddr,
        len: u64,
        mut pick: impl FnMut(PhysAddr, PageSize) -> Option<CacheType>,
    ) -> usize {
        let start = va.as_u64();
        let end = start.saturating_add(len);
        let mut changed = 0;
        self.recache_level(self.pml4, 4, 0, start, end, &mut pick, &mut changed);
        changed
    }

    #[allow(clippy::too_many_arguments)]
    fn recache_level(
        &mut self,
        table: PhysAddr,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
        pick: &mut impl FnMut(PhysAddr, PageSize) -> Option<CacheType>,
        changed: &mut usize,
    ) {
        let span = 1u64 << (12 + 9 * (u32::from(level) - 1));
        for i in 0..ENTRIES {
            // Canonical form: bit 47 extends into 63..48 at the top level.
            let mut lo = base + i * span;
            if level == 4 && i >= 256 {
                lo |= 0xffff_0000_0000_0000;
            }
            let hi = lo.wrapping_add(span);
            if hi <= start && hi != 0 || lo >= end {
                continue;
            }
            let entry_pa = table + i * 8;
            let entry = self.mem.read_u64(entry_pa);
            if entry & P == 0 {
                continue;
            }
            let size = match level {
                1 => Some(PageSize::Size4K),
                2 if entry & PS != 0 => Some(PageSize::Size2M),
                3 if entry & PS != 0 => Some(PageSize::Size1G),
                _ => None,
            };
            match size {
                Some(size) => {
                    let frame = PhysAddr::new(entry & size.addr_mask());
                    if let Some(ct) = pick(frame, size) {
                        let new = (entry & !pat::cache_mask(size)) | pat::encode(ct, size);
                        if new != entry {
                            self.mem.write_u64(entry_pa, new);
                            *changed += 1;
                        }
                    }
                }
                None if level > 1 => {
                    let next = PhysAddr::new(entry & ADDR_4K);
                    self.recache_level(next, level - 1, lo, start, end, pick, changed);
                }
                None => {}
            }
        }
    }

    /// Replaces the permissions and cache type of the page starting at `va` (any size),
    /// keeping the frame, and invalidates its TLB entry. Returns the old translation.
    pub fn set_flags(
        &mut self,
        va: VirtAddr,
        flags: PageTableFlags,
        cache: CacheType,
    ) -> Result<Translation, UnmapError> {
        let old = self.translate(va).ok_or(UnmapError::NotMapped(va))?;
        let v = va.as_u64();
        if !v.is_multiple_of(old.size.bytes()) {
            return Err(UnmapError::NotPageStart { va, size: old.size });
        }
        let Walk::Leaf { entry_pa, .. } = self.walk(v) else {
            return Err(UnmapError::NotMapped(va));
        };
        let new = self.leaf_entry(old.frame.as_u64(), old.size, flags, cache);
        self.mem.write_u64(entry_pa, new);
        self.tlb.invalidate_page(va);
        Ok(old)
    }
}
