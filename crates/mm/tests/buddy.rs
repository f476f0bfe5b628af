//! Deterministic tests of the zoned buddy allocator.
// Single-range region lists are the point of several tests.
#![allow(clippy::single_range_in_vec_init)]

use std::collections::BTreeMap;

use mm::buddy::*;
use mm::PhysAddr;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn pa(a: u64) -> PhysAddr {
    PhysAddr::new(a)
}

fn build<'a>(
    usable: &[std::ops::Range<u64>],
    reserved: &[std::ops::Range<u64>],
    meta: &'a mut Vec<u8>,
    reserve: u64,
) -> FrameAllocator<'a> {
    meta.resize(metadata_bytes(usable.iter().cloned()), 0xa5);
    FrameAllocator::new(
        usable.iter().cloned(),
        reserved.iter().cloned(),
        meta,
        FrameAllocatorConfig {
            dma_reserve_pages: reserve,
        },
    )
    .expect("metadata sized by metadata_bytes")
}

fn free_blocks(fa: &FrameAllocator) -> Vec<(ZoneKind, u64, u8)> {
    let mut v = Vec::new();
    fa.for_each_free_block(|z, a, o| v.push((z, a.as_u64(), o)));
    v
}

#[test]
fn metadata_is_small_for_an_8_gib_machine() {
    // A q35-like map: low RAM, RAM up to the PCI hole at 3 GiB, RAM above 4 GiB.
    let usable = [0..0x9f000, MIB..3 * GIB, 4 * GIB..9 * GIB];
    let bytes = metadata_bytes(usable.iter().cloned());
    let frames = (8 * GIB) / 4096;
    let per_frame = bytes as f64 / frames as f64;
    println!("metadata for 8 GiB: {bytes} bytes = {per_frame:.3} bytes/frame");
    assert!(per_frame < 1.5, "{per_frame} bytes per frame");
    // Reserved ranges do not change the size (the buffer can be carved and then reserved).
    let mut meta = vec![0u8; bytes];
    let fa = FrameAllocator::new(
        usable.iter().cloned(),
        std::iter::once(5 * GIB..5 * GIB + bytes as u64),
        &mut meta,
        FrameAllocatorConfig::default(),
    )
    .unwrap();
    let managed = fa.managed_pages();
    let expect = (3 * GIB - MIB) / 4096 + 5 * GIB / 4096 - (bytes as u64).div_ceil(4096);
    assert_eq!(managed, expect);
}

#[test]
fn metadata_too_small_is_an_error() {
    let usable = [MIB..64 * MIB];
    let need = metadata_bytes(usable.iter().cloned());
    let mut meta = vec![0u8; need - 1];
    let e = FrameAllocator::new(
        usable.iter().cloned(),
        std::iter::empty(),
        &mut meta,
        FrameAllocatorConfig::default(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        BuildError::MetadataTooSmall {
            needed: need,
            given: need - 1
        }
    );
    assert!(e.to_string().contains("need"));
}

#[test]
fn unaligned_metadata_buffer_works() {
    let usable = [MIB..32 * MIB];
    let need = metadata_bytes(usable.iter().cloned());
    let mut big = vec![0u8; need + 3];
    // Start at an odd offset: the allocator must align internally.
    let fa = FrameAllocator::new(
        usable.iter().cloned(),
        std::iter::empty(),
        &mut big[3..],
        FrameAllocatorConfig::default(),
    )
    .unwrap();
    assert_eq!(fa.managed_pages(), 31 * MIB / 4096);
}

#[test]
fn zones_split_at_16m_and_4g_and_low_memory_is_never_used() {
    let mut meta = Vec::new();
    let fa = build(
        &[0..20 * MIB, 4 * GIB - 8 * MIB..4 * GIB + 8 * MIB],
        &[],
        &mut meta,
        0,
    );
    let dma = fa.zone_stats(ZoneKind::Dma).unwrap();
    let dma32 = fa.zone_stats(ZoneKind::Dma32).unwrap();
    let normal = fa.zone_stats(ZoneKind::Normal).unwrap();
    assert_eq!((dma.start.as_u64(), dma.end.as_u64()), (MIB, 16 * MIB));
    assert_eq!(dma.managed_pages, 15 * MIB / 4096);
    assert_eq!(dma32.start.as_u64(), 16 * MIB);
    assert_eq!(dma32.end.as_u64(), 4 * GIB);
    assert_eq!(dma32.managed_pages, (4 + 8) * MIB / 4096);
    assert_eq!(
        (normal.start.as_u64(), normal.end.as_u64()),
        (4 * GIB, 4 * GIB + 8 * MIB)
    );
    assert_eq!(normal.free_pages, normal.managed_pages);
    // No free block lies below 1 MiB or crosses a zone boundary.
    for (z, a, o) in free_blocks(&fa) {
        let end = a + (4096 << o);
        assert!(a >= MIB);
        assert_eq!(ZoneKind::of(a), z);
        assert_eq!(
            ZoneKind::of(end - 1),
            z,
            "block {a:#x} order {o} crosses a zone"
        );
        assert_eq!(a % (4096 << o), 0);
    }
}

#[test]
fn initial_blocks_are_maximal_and_unaligned_edges_trimmed() {
    let mut meta = Vec::new();
    // 1 MiB + 0x800 .. 9 MiB - 0x10 plus a reserved page at 5 MiB.
    let fa = build(
        &[MIB + 0x800..9 * MIB - 0x10],
        &[5 * MIB + 0x10..5 * MIB + 0x20],
        &mut meta,
        0,
    );
    let blocks = free_blocks(&fa);
    let mut by_order: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
    for (_, a, o) in &blocks {
        by_order.entry(*o).or_default().push(*a);
    }
    // Usable pages: [1 MiB + 4 KiB, 9 MiB - 4 KiB) minus [5 MiB, 5 MiB + 4 KiB).
    let total: u64 = blocks.iter().map(|(_, _, o)| 1u64 << o).sum();
    assert_eq!(total, (8 * MIB - 8192 - 4096) / 4096);
    assert!(!fa.is_free(pa(5 * MIB)));
    assert!(fa.is_free(pa(5 * MIB + 4096)));
    assert!(!fa.is_free(pa(MIB)));
    // 4 MiB .. 5 MiB cannot be order 10 because 5 MiB is reserved; 8 MiB.. is partial.
    assert_eq!(by_order.get(&10), None);
    // Blocks are maximal: no two free buddies of the same order.
    for (z, a, o) in &blocks {
        if *o < MAX_ORDER {
            let buddy = a ^ (4096u64 << o);
            assert!(
                !blocks.contains(&(*z, buddy, *o)),
                "unmerged buddies {a:#x}/{buddy:#x} at order {o}"
            );
        }
    }
}

#[test]
fn overlapping_usable_regions_are_merged_not_doubled() {
    let mut meta = Vec::new();
    let fa = build(
        &[2 * MIB..6 * MIB, 4 * MIB..8 * MIB, 2 * MIB..3 * MIB],
        &[],
        &mut meta,
        0,
    );
    assert_eq!(fa.managed_pages(), 6 * MIB / 4096);
    assert_eq!(fa.free_pages(), 6 * MIB / 4096);
}

#[test]
fn reserved_ranges_are_never_handed_out() {
    let mut meta = Vec::new();
    let reserved = [2 * MIB..2 * MIB + 0x3001, 7 * MIB - 1..7 * MIB + 1];
    let mut fa = build(&[MIB..8 * MIB], &reserved, &mut meta, 0);
    let mut got = Vec::new();
    while let Ok(a) = fa.alloc(0, ZoneLimit::Dma) {
        got.push(a.as_u64());
    }
    assert_eq!(got.len() as u64, 7 * MIB / 4096 - 4 - 2);
    for a in got {
        assert!(!(2 * MIB..2 * MIB + 0x4000).contains(&a), "{a:#x}");
        assert!(!(7 * MIB - 4096..7 * MIB + 4096).contains(&a), "{a:#x}");
    }
    // Freeing reserved memory is a foreign free.
    assert_eq!(
        fa.free(pa(2 * MIB), 0),
        Err(FreeError::NotAllocated(pa(2 * MIB)))
    );
}

#[test]
fn alloc_prefers_normal_then_dma32_then_dma_above_reserve() {
    let mut meta = Vec::new();
    let mut fa = build(
        &[
            MIB..16 * MIB,
            16 * MIB..16 * MIB + 4 * MIB,
            4 * GIB..4 * GIB + 4 * MIB,
        ],
        &[],
        &mut meta,
        1024, // keep 4 MiB of DMA for GFP_DMA
    );
    let a = fa.alloc(10, ZoneLimit::Any).unwrap();
    assert_eq!(ZoneKind::of(a.as_u64()), ZoneKind::Normal);
    let b = fa.alloc(10, ZoneLimit::Any).unwrap();
    assert_eq!(ZoneKind::of(b.as_u64()), ZoneKind::Dma32);
    // DMA32 limit never returns Normal even though... Normal is empty anyway; try order 0.
    let dma_free = fa.zone_stats(ZoneKind::Dma).unwrap().free_pages;
    assert_eq!(dma_free, 15 * 256);
    // Any falls back into DMA, but only down to the reserve.
    let mut from_dma = 0;
    while let Ok(x) = fa.alloc(0, ZoneLimit::Any) {
        assert_eq!(ZoneKind::of(x.as_u64()), ZoneKind::Dma);
        from_dma += 1;
    }
    assert_eq!(from_dma, 15 * 256 - 1024);
    assert_eq!(
        fa.alloc(0, ZoneLimit::Dma32),
        Err(AllocError::OutOfMemory {
            order: 0,
            limit: ZoneLimit::Dma32
        })
    );
    // GFP_DMA may take the reserve.
    for _ in 0..1024 {
        let x = fa.alloc(0, ZoneLimit::Dma).unwrap();
        assert!(x.as_u64() < 16 * MIB);
    }
    assert!(fa.alloc(0, ZoneLimit::Dma).is_err());
    assert_eq!(fa.error_counts().alloc_failures, 3);
    // Freeing the Normal block makes Any succeed again, from Normal, but not DMA32.
    fa.free(a, 10).unwrap();
    assert!(fa.alloc(0, ZoneLimit::Dma32).is_err());
    let n = fa.alloc(0, ZoneLimit::Any).unwrap();
    assert_eq!(n, a, "lowest free address of the highest zone");
}

#[test]
fn each_limit_falls_back_downward_only() {
    let mut meta = Vec::new();
    // DMA all reserved (empty), 16 MiB of DMA32, 1 MiB of Normal.
    let mut fa = build(
        &[MIB..16 * MIB, 16 * MIB..32 * MIB, 4 * GIB..4 * GIB + MIB],
        &[MIB..16 * MIB],
        &mut meta,
        0,
    );
    // GFP_DMA never goes up to DMA32, even when DMA is empty.
    assert_eq!(
        fa.alloc(0, ZoneLimit::Dma),
        Err(AllocError::OutOfMemory {
            order: 0,
            limit: ZoneLimit::Dma
        })
    );
    // GFP_DMA32 takes DMA32 and never Normal.
    let a = fa.alloc(0, ZoneLimit::Dma32).unwrap();
    assert_eq!(ZoneKind::of(a.as_u64()), ZoneKind::Dma32);
    // No modifier: Normal while it lasts, then down to DMA32.
    for i in 0..256 {
        let n = fa.alloc(0, ZoneLimit::Any).unwrap();
        assert_eq!(ZoneKind::of(n.as_u64()), ZoneKind::Normal, "page {i}");
    }
    let d = fa.alloc(0, ZoneLimit::Any).unwrap();
    assert_eq!(
        ZoneKind::of(d.as_u64()),
        ZoneKind::Dma32,
        "Normal is used up"
    );
    assert_eq!(fa.error_counts().alloc_failures, 1);
}

#[test]
fn dma32_limit_never_goes_above_4g() {
    let mut meta = Vec::new();
    let mut fa = build(&[4 * GIB..4 * GIB + 64 * MIB], &[], &mut meta, 0);
    assert!(fa.alloc(0, ZoneLimit::Dma32).is_err());
    assert!(fa.alloc(0, ZoneLimit::Dma).is_err());
    assert!(fa.alloc(0, ZoneLimit::Any).is_ok());
}

#[test]
fn split_and_coalesce_restore_the_initial_blocks() {
    let mut meta = Vec::new();
    let mut fa = build(&[4 * MIB..12 * MIB], &[], &mut meta, 0);
    let initial = free_blocks(&fa);
    assert_eq!(initial.len(), 2, "two order-10 blocks: {initial:?}");
    let a = fa.alloc(0, ZoneLimit::Any).unwrap();
    assert_eq!(a.as_u64(), 4 * MIB);
    let stats = fa.zone_stats(ZoneKind::Dma).unwrap();
    // Splitting one order-10 block leaves one free block of each order 0..=9.
    assert_eq!(stats.free_blocks, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    let b = fa.alloc(3, ZoneLimit::Any).unwrap();
    assert_eq!(b.as_u64(), 4 * MIB + 8 * 4096);
    assert_eq!(fa.allocated_order(b), Some(3));
    fa.free(a, 0).unwrap();
    fa.free(b, 3).unwrap();
    assert_eq!(free_blocks(&fa), initial);
    assert_eq!(fa.free_pages(), 2048);
}

#[test]
fn misuse_is_detected_counted_and_harmless() {
    let mut meta = Vec::new();
    let mut fa = build(&[MIB..8 * MIB], &[], &mut meta, 0);
    let a = fa.alloc(2, ZoneLimit::Any).unwrap();
    let b = fa.alloc(0, ZoneLimit::Any).unwrap();
    let before = free_blocks(&fa);
    let free_before = fa.free_pages();

    assert_eq!(
        fa.free(a, 1),
        Err(FreeError::WrongOrder {
            addr: a,
            allocated: 2,
            given: 1
        })
    );
    assert_eq!(
        fa.free(a + 4096u64, 0),
        Err(FreeError::NotAllocated(a + 4096u64)),
        "interior page of an allocated block"
    );
    assert_eq!(
        fa.free(a + 4096u64, 2),
        Err(FreeError::Misaligned {
            addr: a + 4096u64,
            order: 2
        })
    );
    assert_eq!(
        fa.free(a + 8u64, 0),
        Err(FreeError::Misaligned {
            addr: a + 8u64,
            order: 0
        })
    );
    assert_eq!(fa.free(a, 11), Err(FreeError::InvalidOrder(11)));
    assert_eq!(
        fa.alloc(11, ZoneLimit::Any),
        Err(AllocError::InvalidOrder(11))
    );
    let never = pa(7 * MIB);
    assert_eq!(fa.free(never, 0), Err(FreeError::NotAllocated(never)));
    assert_eq!(
        fa.free(pa(0x1000), 0),
        Err(FreeError::NotAllocated(pa(0x1000)))
    );
    assert_eq!(
        fa.free(pa(100 * GIB), 0),
        Err(FreeError::NotAllocated(pa(100 * GIB)))
    );
    assert_eq!(free_blocks(&fa), before, "errors must not change state");
    assert_eq!(fa.free_pages(), free_before);

    fa.free(b, 0).unwrap();
    assert_eq!(fa.free(b, 0), Err(FreeError::DoubleFree(b)));
    fa.free(a, 2).unwrap();
    assert_eq!(fa.free(a, 2), Err(FreeError::DoubleFree(a)));
    let c = fa.error_counts();
    assert_eq!(
        (
            c.wrong_order,
            c.misaligned,
            c.not_allocated,
            c.double_free,
            c.invalid_order
        ),
        (1, 2, 4, 2, 2)
    );
    assert_eq!(fa.free_pages(), 7 * 256);
    assert!(FreeError::DoubleFree(a).to_string().contains("double free"));
}

#[test]
fn buddyinfo_and_zoneinfo_have_linux_shape() {
    let mut meta = Vec::new();
    let mut fa = build(&[MIB..16 * MIB, 16 * MIB..20 * MIB], &[], &mut meta, 512);
    let _ = fa.alloc(0, ZoneLimit::Dma32).unwrap();
    let info = fa.buddyinfo().to_string();
    let lines: Vec<&str> = info.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        "Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 "
    );
    assert!(lines[1].starts_with("Node 0, zone    DMA32      1      1"));
    let zi = fa.zoneinfo().to_string();
    assert!(zi.contains("managed  3840"), "{zi}");
    assert!(zi.contains("reserve  512"), "{zi}");
    assert!(zi.contains("free     1023"), "{zi}");
}

#[test]
fn place_metadata_prefers_high_memory_and_avoids_reserved() {
    let usable = [0..0x9_f000, MIB..3 * GIB, 4 * GIB..4 * GIB + 64 * MIB];
    let need = metadata_bytes(usable.iter().cloned());
    // Above 4 GiB first, skipping a reserved range at its start (partial page counts).
    let r = place_metadata(usable.iter().cloned(), [4 * GIB..4 * GIB + 0x1001], need).unwrap();
    assert_eq!(r.start, 4 * GIB + 0x2000);
    assert_eq!(r.end - r.start, (need as u64).div_ceil(4096) * 4096);
    // No high memory: above 16 MiB, not in the DMA zone.
    let low = [MIB..64 * MIB];
    let r = place_metadata(low.iter().cloned(), std::iter::empty(), 0x3000).unwrap();
    assert_eq!(r, 16 * MIB..16 * MIB + 0x3000);
    // Only the DMA zone: use it, but never below 1 MiB.
    let tiny = [0..8 * MIB];
    let r = place_metadata(tiny.iter().cloned(), [MIB..2 * MIB], 0x1000).unwrap();
    assert_eq!(r, 2 * MIB..2 * MIB + 0x1000);
    assert_eq!(
        place_metadata(tiny.iter().cloned(), std::iter::empty(), 8 << 20),
        None
    );
    // The placed buffer, passed as reserved, is never handed out.
    let mut meta = vec![0u8; need];
    let mut fa = FrameAllocator::new(
        usable.iter().cloned(),
        std::iter::once(r.clone()),
        &mut meta,
        FrameAllocatorConfig::default(),
    )
    .unwrap();
    assert!(!fa.is_free(pa(r.start)));
    assert_eq!(
        fa.free(pa(r.start), 0),
        Err(FreeError::NotAllocated(pa(r.start)))
    );
}

#[test]
fn lowest_free_block_is_handed_out_first() {
    let mut meta = Vec::new();
    // 64 MiB so order-0 bitmaps have several words and summary levels.
    let mut fa = build(&[16 * MIB..80 * MIB], &[], &mut meta, 0);
    let pages: Vec<PhysAddr> = (0..200)
        .map(|_| fa.alloc(0, ZoneLimit::Any).unwrap())
        .collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.as_u64(), 16 * MIB + i as u64 * 4096, "ascending");
    }
    // Leave the search pointing at a high bitmap word that still has free pages...
    fa.free(pages[150], 0).unwrap();
    assert_eq!(fa.alloc(0, ZoneLimit::Any).unwrap(), pages[150]);
    fa.free(pages[150], 0).unwrap();
    fa.free(pages[130], 0).unwrap();
    // ...then free pages in lower words: allocation must still come back lowest first.
    fa.free(pages[70], 0).unwrap();
    fa.free(pages[5], 0).unwrap();
    for i in [5, 70, 130, 150] {
        assert_eq!(fa.alloc(0, ZoneLimit::Any).unwrap(), pages[i]);
    }
    assert_eq!(
        fa.alloc(0, ZoneLimit::Any).unwrap().as_u64(),
        16 * MIB + 200 * 4096
    );
}
