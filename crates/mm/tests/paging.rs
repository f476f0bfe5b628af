//! Page-table mapper tests on the host arena: real 4-level tables in fake physical
//! memory, checked by reading raw entry bytes and by an independent walker (the x86_64
//! crate's `OffsetPageTable` over the same arena).
// A single usable region is the point of one test.
#![allow(clippy::single_range_in_vec_init)]

use hal::{Arena, PhysMemory};
use mm::paging::*;
use mm::pat::{self, CacheType};
use mm::{PhysAddr, VirtAddr};

const BASE: u64 = 0x100_0000; // arena at 16 MiB, 8 MiB long
const SIZE: usize = 8 << 20;
const W: PageTableFlags = PageTableFlags::WRITABLE;

/// Bump allocator over the upper half of the arena, counting table frames.
struct Bump {
    next: u64,
    end: u64,
    given: u32,
}

impl Bump {
    fn new() -> Self {
        Bump {
            next: BASE + SIZE as u64 / 2,
            end: BASE + SIZE as u64,
            given: 0,
        }
    }
}

impl FrameSource for Bump {
    fn alloc_table_frame(&mut self) -> Option<PhysAddr> {
        if self.next >= self.end {
            return None;
        }
        let f = self.next;
        self.next += 4096;
        self.given += 1;
        Some(PhysAddr::new(f))
    }
}

fn setup(arena: &Arena) -> (Mapper<&Arena, RecordingTlb>, Bump) {
    let mut bump = Bump::new();
    // Dirty the table frames first: the mapper must zero what it allocates.
    arena.fill(PhysAddr::new(bump.next), 0xff, SIZE / 2);
    let m = Mapper::create(arena, RecordingTlb::default(), &mut bump).unwrap();
    (m, bump)
}

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}
fn pa(a: u64) -> PhysAddr {
    PhysAddr::new(a)
}

/// Walks the raw bytes by hand: the entry that maps `v` at `level` (4 = PML4).
fn raw_entry(mem: &Arena, pml4: PhysAddr, v: u64, level: u32) -> u64 {
    let mut table = pml4.as_u64();
    for l in (level..=4).rev() {
        let idx = (v >> (12 + 9 * (l - 1))) & 511;
        let e = mem.read_u64(pa(table + idx * 8));
        if l == level {
            return e;
        }
        assert!(e & 1 != 0, "level {l} entry not present");
        table = e & 0x000f_ffff_ffff_f000;
    }
    unreachable!()
}

/// Translation by the x86_64 crate's own walker over the same bytes.
fn oracle(arena: &Arena, pml4: PhysAddr, v: u64) -> Option<u64> {
    use x86_64::structures::paging::{OffsetPageTable, PageTable, Translate};
    let offset = arena.host_ptr() as u64 - arena.base().as_u64();
    let ptr = (pml4.as_u64() + offset) as *mut PageTable;
    // SAFETY: `ptr` is the page-aligned host address of the PML4 frame inside the arena,
    // which lives for this call; every table it references is inside the arena at the
    // same offset; nothing else accesses the arena during the call.
    let table = unsafe { &mut *ptr };
    // SAFETY: as above: all of "physical memory" (the arena) is mapped at `offset`.
    let opt = unsafe { OffsetPageTable::new(table, VirtAddr::new(offset)) };
    opt.translate_addr(VirtAddr::new(v)).map(|p| p.as_u64())
}

#[test]
fn map_4k_writes_the_expected_entry_and_translates() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    let v = 0xffff_8000_1234_5000u64;
    let p = BASE + 0x3000;
    m.map(
        va(v),
        pa(p),
        PageSize::Size4K,
        W | PageTableFlags::NO_EXECUTE,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    // PML4 + PDPT + PD + PT.
    assert_eq!(bump.given, 4);
    let pte = raw_entry(&arena, m.pml4(), v, 1);
    assert_eq!(pte, p | 0b11 | (1 << 63), "PTE {pte:#x}");
    // Intermediates: present + writable, no USER, no NX, no cache bits.
    for level in 2..=4 {
        assert_eq!(raw_entry(&arena, m.pml4(), v, level) & 0xfff, 0b11);
    }
    let t = m.translate(va(v + 0x123)).unwrap();
    assert_eq!(t.phys, pa(p + 0x123));
    assert_eq!(t.frame, pa(p));
    assert_eq!(t.size, PageSize::Size4K);
    assert_eq!(t.cache, CacheType::WriteBack);
    assert_eq!(
        t.flags,
        PageTableFlags::PRESENT | W | PageTableFlags::NO_EXECUTE
    );
    assert_eq!(oracle(&arena, m.pml4(), v + 0x123), Some(p + 0x123));
    assert_eq!(m.translate(va(v + 0x1000)), None);
    assert_eq!(oracle(&arena, m.pml4(), v + 0x1000), None);
    // A second page in the same 2 MiB region needs no new table.
    m.map(
        va(v + 0x1000),
        pa(p + 0x1000),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(bump.given, 4);
    // Map does not invalidate (a not-present entry is never cached, SDM 4.10.4).
    assert!(m.tlb().invalidated.is_empty());
}

#[test]
fn pat_bit_is_bit7_in_ptes_and_bit12_in_2m_entries() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    let v4 = 0x4000_0000u64;
    let v2 = 0x8000_0000u64;
    m.map(
        va(v4),
        pa(BASE),
        PageSize::Size4K,
        W,
        CacheType::WriteCombining,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(v2),
        pa(0x20_0000),
        PageSize::Size2M,
        W,
        CacheType::WriteCombining,
        &mut bump,
    )
    .unwrap();
    let pte = raw_entry(&arena, m.pml4(), v4, 1);
    assert_eq!(pte & (1 << 7), 1 << 7, "PAT bit 7 in the PTE");
    assert_eq!(pte & 0x18, 0, "no PWT/PCD for WC (PAT index 4)");
    let pde = raw_entry(&arena, m.pml4(), v2, 2);
    assert_eq!(pde, 0x20_0000 | (1 << 12) | (1 << 7) | 0b11, "PDE {pde:#x}");
    let t = m.translate(va(v2 + 0x1_2345)).unwrap();
    assert_eq!(t.size, PageSize::Size2M);
    assert_eq!(t.cache, CacheType::WriteCombining);
    assert_eq!(
        t.phys,
        pa(0x21_2345),
        "PAT bit 12 must not leak into the address"
    );
    assert!(!t.flags.contains(PageTableFlags::HUGE_PAGE));
    assert_eq!(oracle(&arena, m.pml4(), v2 + 0x1_2345), Some(0x21_2345));
    // Every cache type round-trips through a live entry of both sizes.
    for (i, ct) in CacheType::ALL.into_iter().enumerate() {
        let a = 0x1_0000_0000 + i as u64 * 0x20_0000;
        m.map(va(a), pa(BASE), PageSize::Size4K, W, ct, &mut bump)
            .unwrap();
        m.map(
            va(a + 0x1000_0000),
            pa(0x40_0000),
            PageSize::Size2M,
            W,
            ct,
            &mut bump,
        )
        .unwrap();
        assert_eq!(m.translate(va(a)).unwrap().cache, ct);
        assert_eq!(m.translate(va(a + 0x1000_0000)).unwrap().cache, ct);
        assert_eq!(
            raw_entry(&arena, m.pml4(), a + 0x1000_0000, 2) & pat::cache_mask(PageSize::Size2M),
            pat::encode(ct, PageSize::Size2M)
        );
    }
}

#[test]
fn caller_cache_and_ps_bits_are_ignored_in_favour_of_cache_type() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    let sneaky = W
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH
        | PageTableFlags::HUGE_PAGE
        | PageTableFlags::DIRTY;
    m.map(
        va(0x5000),
        pa(BASE),
        PageSize::Size4K,
        sneaky,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(raw_entry(&arena, m.pml4(), 0x5000, 1), BASE | 0b11);
}

#[test]
fn double_map_and_huge_page_overlap_are_errors_and_change_nothing() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    m.map(
        va(0x20_0000),
        pa(0x4000_0000),
        PageSize::Size2M,
        W,
        CacheType::Uncached,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(0x40_1000),
        pa(BASE),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    let snapshot = arena.to_vec(arena.base(), SIZE);
    assert_eq!(
        m.map(
            va(0x40_1000),
            pa(BASE + 0x1000),
            PageSize::Size4K,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::AlreadyMapped {
            va: va(0x40_1000),
            existing: pa(BASE)
        })
    );
    assert_eq!(
        m.map(
            va(0x20_0000),
            pa(0),
            PageSize::Size2M,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::AlreadyMapped {
            va: va(0x20_0000),
            existing: pa(0x4000_0000)
        })
    );
    assert_eq!(
        m.map(
            va(0x2f_f000),
            pa(BASE),
            PageSize::Size4K,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::HugePageOverlap {
            huge_va: va(0x20_0000)
        })
    );
    assert_eq!(
        m.map(
            va(0x40_0000),
            pa(0),
            PageSize::Size2M,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::TableInTheWay { va: va(0x40_0000) })
    );
    assert_eq!(
        arena.to_vec(arena.base(), SIZE),
        snapshot,
        "errors must not write"
    );
    // A PAT bit in an existing PTE must not be reported as part of the address.
    m.map(
        va(0x40_2000),
        pa(BASE + 0x2000),
        PageSize::Size4K,
        W,
        CacheType::WriteCombining,
        &mut bump,
    )
    .unwrap();
    assert_eq!(
        m.map(
            va(0x40_2000),
            pa(BASE),
            PageSize::Size4K,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::AlreadyMapped {
            va: va(0x40_2000),
            existing: pa(BASE + 0x2000)
        })
    );
}

#[test]
fn misalignment_and_unsupported_sizes() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    let cases = [
        (0x1001, BASE, PageSize::Size4K),
        (0x1000, BASE + 8, PageSize::Size4K),
        (0x20_1000, 0x20_0000, PageSize::Size2M),
        (0x20_0000, 0x20_1000, PageSize::Size2M),
    ];
    for (v, p, s) in cases {
        assert_eq!(
            m.map(va(v), pa(p), s, W, CacheType::WriteBack, &mut bump),
            Err(MapError::Misaligned),
            "{v:#x} -> {p:#x}"
        );
    }
    assert_eq!(
        m.map(
            va(0x4000_0000),
            pa(0x4000_0000),
            PageSize::Size1G,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::UnsupportedSize)
    );
    assert_eq!(
        m.map_range(
            va(0x1000),
            pa(BASE),
            0x1800,
            PageSize::Size4K,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::Misaligned)
    );
    assert_eq!(bump.given, 1, "only the PML4 was allocated");
}

#[test]
fn unmap_clears_the_entry_invalidates_and_reports_errors() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    m.map(
        va(0x7000),
        pa(BASE + 0x7000),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(0x60_0000),
        pa(0x80_0000),
        PageSize::Size2M,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(
        m.unmap(va(0x60_1000)),
        Err(UnmapError::NotPageStart {
            va: va(0x60_1000),
            size: PageSize::Size2M
        })
    );
    assert_eq!(m.unmap(va(0x8000)), Err(UnmapError::NotMapped(va(0x8000))));
    assert_eq!(
        m.unmap(va(0x7fff_0000_0000)),
        Err(UnmapError::NotMapped(va(0x7fff_0000_0000)))
    );
    assert!(
        m.tlb().invalidated.is_empty(),
        "failed unmaps must not flush"
    );
    assert_eq!(
        m.unmap(va(0x7000)),
        Ok((pa(BASE + 0x7000), PageSize::Size4K))
    );
    assert_eq!(raw_entry(&arena, m.pml4(), 0x7000, 1), 0);
    assert_eq!(
        m.unmap(va(0x60_0000)),
        Ok((pa(0x80_0000), PageSize::Size2M))
    );
    assert_eq!(raw_entry(&arena, m.pml4(), 0x60_0000, 2), 0);
    assert_eq!(m.tlb().invalidated, [va(0x7000), va(0x60_0000)]);
    assert_eq!(m.unmap(va(0x7000)), Err(UnmapError::NotMapped(va(0x7000))));
    assert_eq!(m.translate(va(0x7000)), None);
    assert_eq!(oracle(&arena, m.pml4(), 0x60_0000), None);
    // The region is free again for a 4 KiB mapping under the old 2 MiB page.
    m.map(
        va(0x60_3000),
        pa(BASE),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(oracle(&arena, m.pml4(), 0x60_3004), Some(BASE + 4));
}

#[test]
fn set_flags_changes_permissions_and_cache_keeps_frame_and_flushes() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    m.map(
        va(0x9000),
        pa(BASE + 0x9000),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(0xa0_0000),
        pa(0xc0_0000),
        PageSize::Size2M,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    let old = m
        .set_flags(va(0x9000), PageTableFlags::NO_EXECUTE, CacheType::Uncached)
        .unwrap();
    assert_eq!(old.flags, PageTableFlags::PRESENT | W);
    assert_eq!(old.cache, CacheType::WriteBack);
    assert_eq!(
        raw_entry(&arena, m.pml4(), 0x9000, 1),
        (BASE + 0x9000) | 1 | 0x18 | (1 << 63)
    );
    let t = m.translate(va(0x9000)).unwrap();
    assert_eq!(t.cache, CacheType::Uncached);
    assert!(!t.flags.contains(W));
    m.set_flags(va(0xa0_0000), W, CacheType::WriteProtect)
        .unwrap();
    let t = m.translate(va(0xa0_0000)).unwrap();
    assert_eq!(
        (t.frame, t.size, t.cache),
        (pa(0xc0_0000), PageSize::Size2M, CacheType::WriteProtect)
    );
    assert_eq!(
        raw_entry(&arena, m.pml4(), 0xa0_0000, 2),
        0xc0_0000 | (1 << 12) | (1 << 7) | 0x8 | 0b11
    );
    assert_eq!(m.tlb().invalidated, [va(0x9000), va(0xa0_0000)]);
    assert_eq!(
        m.set_flags(va(0xb000), W, CacheType::WriteBack),
        Err(UnmapError::NotMapped(va(0xb000)))
    );
    assert_eq!(
        m.set_flags(va(0xa0_1000), W, CacheType::WriteBack),
        Err(UnmapError::NotPageStart {
            va: va(0xa0_1000),
            size: PageSize::Size2M
        })
    );
    assert_eq!(m.tlb().invalidated.len(), 2);
}

#[test]
fn user_leaf_makes_intermediates_user_accessible() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    m.map(
        va(0x40_0000),
        pa(BASE),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    let u = PageTableFlags::USER_ACCESSIBLE.bits();
    assert_eq!(raw_entry(&arena, m.pml4(), 0x40_0000, 4) & u, 0);
    m.map(
        va(0x40_1000),
        pa(BASE),
        PageSize::Size4K,
        W | PageTableFlags::USER_ACCESSIBLE,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    for level in 1..=4 {
        assert_eq!(
            raw_entry(&arena, m.pml4(), 0x40_1000, level) & u,
            u,
            "level {level}"
        );
    }
    // The kernel-only leaf stays kernel-only.
    assert_eq!(raw_entry(&arena, m.pml4(), 0x40_0000, 1) & u, 0);
}

#[test]
fn map_range_crosses_tables_and_matches_per_page_map() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    // 6 MiB starting 1 MiB below a 1 GiB boundary: crosses PT, PD and PDPT boundaries.
    let v0 = 0x7f_bff0_0000u64;
    let p0 = 0x1_0000_0000u64;
    let len = 6 << 20;
    m.map_range(
        va(v0),
        pa(p0),
        len,
        PageSize::Size4K,
        W,
        CacheType::WriteThrough,
        &mut bump,
    )
    .unwrap();
    for off in (0..len).step_by(4096) {
        assert_eq!(oracle(&arena, m.pml4(), v0 + off + 7), Some(p0 + off + 7));
    }
    let t = m.translate(va(v0 + len - 4096)).unwrap();
    assert_eq!(t.cache, CacheType::WriteThrough);
    assert_eq!(m.translate(va(v0 + len)), None);
    assert_eq!(m.translate(va(v0 - 4096)), None);
    // 2 MiB pages through map_range too.
    m.map_range(
        va(0x4000_0000),
        pa(0x8000_0000),
        8 << 20,
        PageSize::Size2M,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(oracle(&arena, m.pml4(), 0x4060_0010), Some(0x8060_0010));
    assert_eq!(m.translate(va(0x4060_0000)).unwrap().size, PageSize::Size2M);
}

#[test]
fn failed_map_range_undoes_its_pages() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    m.map(
        va(0x20_5000),
        pa(BASE),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    // 0x1f_0000 .. 0x21_0000 runs into the existing page at 0x20_5000.
    assert_eq!(
        m.map_range(
            va(0x1f_0000),
            pa(0x100_0000),
            0x2_0000,
            PageSize::Size4K,
            W,
            CacheType::WriteBack,
            &mut bump
        ),
        Err(MapError::AlreadyMapped {
            va: va(0x20_5000),
            existing: pa(BASE)
        })
    );
    for off in (0..0x2_0000u64).step_by(4096) {
        let v = 0x1f_0000 + off;
        if v == 0x20_5000 {
            assert_eq!(
                m.translate(va(v)).unwrap().frame,
                pa(BASE),
                "pre-existing page kept"
            );
        } else {
            assert_eq!(m.translate(va(v)), None, "{v:#x} left mapped");
        }
    }
    // The undone pages were invalidated (they were present for a moment).
    assert_eq!(m.tlb().invalidated.len(), 0x15);
}

#[test]
fn out_of_frames_is_an_error() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    let mut none = || None::<PhysAddr>;
    assert_eq!(
        m.map(
            va(0x1000),
            pa(BASE),
            PageSize::Size4K,
            W,
            CacheType::WriteBack,
            &mut none
        ),
        Err(MapError::OutOfFrames)
    );
    assert_eq!(m.translate(va(0x1000)), None);
    let mut one = Some(PhysAddr::new(BASE + 0x10_0000));
    let mut once = || one.take();
    assert_eq!(
        m.map(
            va(0x1000),
            pa(BASE),
            PageSize::Size4K,
            W,
            CacheType::WriteBack,
            &mut once
        ),
        Err(MapError::OutOfFrames)
    );
    // The table that was created is reused later; mapping completes with more frames.
    m.map(
        va(0x1000),
        pa(BASE),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(bump.given, 1 + 2, "PML4 at setup, then PD and PT");
}

#[test]
fn tables_from_the_buddy_allocator() {
    use mm::buddy::{metadata_bytes, FrameAllocator, FrameAllocatorConfig};
    let arena = Arena::new(pa(BASE), SIZE);
    let usable = [BASE..BASE + SIZE as u64];
    let mut meta = vec![0; metadata_bytes(usable.iter().cloned())];
    let mut fa = FrameAllocator::new(
        usable.iter().cloned(),
        std::iter::empty(),
        &mut meta,
        FrameAllocatorConfig {
            dma_reserve_pages: 0,
        },
    )
    .unwrap();
    let mut m = Mapper::create(&arena, NoTlb, &mut fa).unwrap();
    let free0 = fa.free_pages();
    m.map_range(
        va(0x1000_0000),
        pa(0x4000_0000),
        4 << 20,
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut fa,
    )
    .unwrap();
    // PDPT + PD + two PTs.
    assert_eq!(free0 - fa.free_pages(), 4);
    assert_eq!(oracle(&arena, m.pml4(), 0x1030_0000), Some(0x4030_0000));
}

#[test]
fn walk_cache_notices_a_page_table_swapped_behind_its_back() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    m.map(
        va(0x1000),
        pa(BASE),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    // Someone else points the PD entry at a different (empty) page table.
    let pde_before = raw_entry(&arena, m.pml4(), 0x1000, 2);
    let new_pt = BASE + 0x1000;
    arena.fill(pa(new_pt), 0, 4096);
    // Locate the PD entry by walking, then overwrite it.
    let pml4e = arena.read_u64(m.pml4());
    let pdpte = arena.read_u64(pa(pml4e & 0x000f_ffff_ffff_f000));
    let pd = pdpte & 0x000f_ffff_ffff_f000;
    assert_eq!(arena.read_u64(pa(pd)), pde_before);
    arena.write_u64(pa(pd), new_pt | 0b11);
    m.map(
        va(0x2000),
        pa(BASE + 0x2000),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(arena.read_u64(pa(new_pt + 2 * 8)), (BASE + 0x2000) | 0b11);
    // And a USER leaf still widens the intermediates even when the table is cached.
    m.map(
        va(0x3000),
        pa(BASE),
        PageSize::Size4K,
        W | PageTableFlags::USER_ACCESSIBLE,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    assert_eq!(arena.read_u64(pa(pd)) & 0b111, 0b111);
}

#[test]
fn unmap_range_is_all_or_nothing() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    // 4 KiB pages at 0x1f_e000..0x20_0000, a 2 MiB page at 0x20_0000.
    m.map_range(
        va(0x1f_e000),
        pa(BASE),
        0x2000,
        PageSize::Size4K,
        W,
        CacheType::Uncached,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(0x20_0000),
        pa(0x40_0000),
        PageSize::Size2M,
        W,
        CacheType::Uncached,
        &mut bump,
    )
    .unwrap();
    // A range ending inside the 2 MiB page is refused, and nothing is unmapped.
    assert_eq!(
        m.unmap_range(va(0x1f_e000), 0x3000),
        Err(UnmapError::NotPageStart {
            va: va(0x20_0000),
            size: PageSize::Size2M
        })
    );
    // A hole is refused.
    assert_eq!(
        m.unmap_range(va(0x1f_d000), 0x2000),
        Err(UnmapError::NotMapped(va(0x1f_d000)))
    );
    assert!(m.translate(va(0x1f_e000)).is_some());
    assert!(m.tlb().invalidated.is_empty());
    assert_eq!(m.unmap_range(va(0x1f_e000), 0x20_2000), Ok(3));
    assert_eq!(
        m.tlb().invalidated,
        [va(0x1f_e000), va(0x1f_f000), va(0x20_0000)]
    );
    assert_eq!(m.translate(va(0x20_0000)), None);
}

#[test]
fn recache_range_changes_only_picked_leaves_in_range_and_keeps_the_rest() {
    let arena = Arena::new(pa(BASE), SIZE);
    let (mut m, mut bump) = setup(&arena);
    // A "direct map": 4 KiB and 2 MiB leaves in two different 1 GiB slots, plus one
    // leaf outside the range. (The mapper does not make 1 GiB leaves; the walk treats
    // them like 2 MiB ones.)
    let base = 0xffff_8000_0000_0000u64;
    m.map(
        va(base),
        pa(0x1000),
        PageSize::Size4K,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(base + 0x20_0000),
        pa(0x20_0000),
        PageSize::Size2M,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(base + 0x4000_0000),
        pa(0x4000_0000),
        PageSize::Size2M,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    m.map(
        va(0x7000_0000),
        pa(0x20_0000),
        PageSize::Size2M,
        W,
        CacheType::WriteBack,
        &mut bump,
    )
    .unwrap();
    let before_other = raw_entry(&arena, m.pml4(), 0x7000_0000, 2);
    let mut seen = Vec::new();
    // Everything at or above 2 MiB physical becomes uncached; the 4 KiB page stays.
    let n = m.recache_range(va(base), 1 << 31, |frame, size| {
        seen.push((frame.as_u64(), size));
        (frame.as_u64() >= 0x20_0000).then_some(CacheType::Uncached)
    });
    assert_eq!(n, 2);
    assert_eq!(
        seen,
        [
            (0x1000, PageSize::Size4K),
            (0x20_0000, PageSize::Size2M),
            (0x4000_0000, PageSize::Size2M)
        ]
    );
    let t4k = m.translate(va(base)).unwrap();
    let t2m = m.translate(va(base + 0x20_0000)).unwrap();
    let t1g = m.translate(va(base + 0x4000_0000)).unwrap();
    assert_eq!(t4k.cache, CacheType::WriteBack);
    assert_eq!(
        (t2m.cache, t2m.frame.as_u64()),
        (CacheType::Uncached, 0x20_0000)
    );
    assert_eq!(
        (t1g.cache, t1g.frame.as_u64()),
        (CacheType::Uncached, 0x4000_0000)
    );
    assert!(
        t2m.flags.contains(W) && t1g.flags.contains(W),
        "permissions kept"
    );
    // PCD|PWT (index 3) set, PS kept, frame kept.
    let e = raw_entry(&arena, m.pml4(), base + 0x20_0000, 2);
    assert_eq!(e & 0x18, 0x18);
    assert_eq!(e & (1 << 7), 1 << 7);
    // The leaf outside the range is untouched; no TLB work was done per page.
    assert_eq!(raw_entry(&arena, m.pml4(), 0x7000_0000, 2), before_other);
    // A second pass changes nothing.
    assert_eq!(
        m.recache_range(va(base), 1 << 31, |f, _| (f.as_u64() >= 0x20_0000)
            .then_some(CacheType::Uncached)),
        0
    );
    // The oracle walker still translates every leaf to the same frame.
    assert_eq!(oracle(&arena, m.pml4(), base + 0x20_0123), Some(0x20_0123));
}
