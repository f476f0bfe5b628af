//! DMA pools: Linux's creation rules, alignment, boundary, reuse, misuse.

use super::*;
use crate::pool::{block_offsets, MIN_BLOCK};
use crate::{dma_bit_mask, DmaPool, PoolError};
use proptest::prelude::*;

#[test]
fn creation_rules() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    assert_eq!(
        DmaPool::new(&dev, "x", 0, 8, 0).unwrap_err(),
        PoolError::BadSize(0)
    );
    assert_eq!(
        DmaPool::new(&dev, "x", 64, 24, 0).unwrap_err(),
        PoolError::BadAlign(24)
    );
    assert_eq!(
        DmaPool::new(&dev, "x", 64, 8, 96).unwrap_err(),
        PoolError::BadBoundary(96)
    );
    assert_eq!(
        DmaPool::new(&dev, "x", 64, 8, 32).unwrap_err(),
        PoolError::BadBoundary(32)
    );
    // align 0 means 1; size raised to 16.
    let pool = DmaPool::new(&dev, "tiny", 3, 0, 0).unwrap();
    let b = pool.alloc().unwrap();
    assert_eq!(b.len(), MIN_BLOCK);
    assert_eq!(pool.stats().total, 4096 / MIN_BLOCK);
    // Size rounded up to the alignment.
    let pool = DmaPool::new(&dev, "r", 40, 32, 0).unwrap();
    assert_eq!(pool.stats().block_size, 64);
}

#[test]
fn blocks_are_coherent_reusable_and_within_the_mask() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    let pool = DmaPool::new(&dev, "desc", 40, 64, 0).unwrap();
    let a = pool.alloc().unwrap();
    let b = pool.alloc().unwrap();
    assert_eq!(b.dma_addr().as_u64() - a.dma_addr().as_u64(), 64);
    assert!(
        a.dma_addr().as_u64() + 4095 <= dma_bit_mask(28),
        "chunk from the coherent zone"
    );
    a.write::<u64>(8, 0xDEAD_BEEF);
    assert_eq!(
        device_read(p, a.dma_addr().checked_add(8).unwrap(), 8),
        0xDEAD_BEEFu64.to_le_bytes()
    );
    device_write(p, b.dma_addr(), &[5; 4]);
    assert_eq!(b.read::<u32>(0), 0x0505_0505);
    let a_addr = a.dma_addr();
    pool.free(a).unwrap();
    let c = pool.zalloc().unwrap();
    assert_eq!(c.dma_addr(), a_addr, "freed block reused");
    assert_eq!(c.read::<u64>(8), 0, "zalloc zeroes");
    assert_eq!(pool.stats().in_use, 2);
    // A second chunk when the first is full.
    let blocks: Vec<_> = (0..(4096 / 64 - 2))
        .map(|_| pool.alloc().unwrap())
        .collect();
    assert_eq!(pool.stats().chunks, 1);
    let extra = pool.alloc().unwrap();
    assert_eq!(pool.stats().chunks, 2);
    drop((blocks, extra, b, c));
    assert_eq!(pool.stats().in_use, 0);
    drop(pool);
    assert_eq!(p.pages_in_use(), 0, "chunks freed with the pool");
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
fn freeing_into_the_wrong_pool_is_an_error() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    let one = DmaPool::new(&dev, "one", 32, 32, 0).unwrap();
    let two = DmaPool::new(&dev, "two", 32, 32, 0).unwrap();
    let b = one.alloc().unwrap();
    assert_eq!(
        two.free(b).unwrap_err(),
        PoolError::WrongPool {
            pool: "two".into(),
            owner: "one".into()
        }
    );
    assert_eq!(one.stats().in_use, 0, "the block went home");
}

#[test]
fn busy_pool_dropped_keeps_its_blocks_valid() {
    let p = machine();
    let (dev, _) = edu(p, DmaBackend::Direct);
    let pool = DmaPool::new(&dev, "busy", 64, 64, 0).unwrap();
    let b = pool.alloc().unwrap();
    drop(pool);
    b.write::<u32>(0, 7);
    assert_eq!(b.read::<u32>(0), 7);
    drop(b);
    assert_eq!(p.pages_in_use(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Layout rule alone: in order, aligned to the stride, inside the chunk, no block
    /// crossing a boundary, and no room wasted except at a boundary or the end.
    #[test]
    fn block_offsets_never_cross_a_boundary(
        size_log in 4u32..13, extra in 0usize..64, bshift in 0u32..4,
    ) {
        let size = (1usize << size_log) + extra;
        let allocation = size.max(4096);
        let boundary = (size.next_power_of_two() << bshift).min(allocation);
        let offs = block_offsets(size, allocation, boundary);
        prop_assert!(!offs.is_empty());
        for w in offs.windows(2) {
            prop_assert!(w[1] >= w[0] + size);
            // A gap only where the next block would have crossed a boundary.
            if w[1] != w[0] + size {
                prop_assert_eq!(w[1] % boundary, 0);
                prop_assert!((w[0] + 2 * size) > w[1]);
            }
        }
        for &o in &offs {
            prop_assert!(o + size <= allocation);
            prop_assert_eq!(o / boundary, (o + size - 1) / boundary);
        }
    }

    /// Through the real pool: every block aligned, within one boundary window, and
    /// disjoint from the others.
    #[test]
    fn pool_blocks_are_aligned_and_boundary_safe(
        size in 1usize..3000, align_log in 0u32..10, bextra in 0u32..3, n in 1usize..40,
    ) {
        let p = machine();
        let (dev, _) = edu(p, DmaBackend::Direct);
        let align = 1usize << align_log;
        let stride = size.max(MIN_BLOCK).next_multiple_of(align);
        let boundary = stride.next_power_of_two() << bextra;
        let pool = DmaPool::new(&dev, "prop", size, align, boundary).unwrap();
        let blocks: Vec<_> = (0..n).map(|_| pool.alloc().unwrap()).collect();
        let eff = boundary.min(stride.max(4096)) as u64;
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for b in &blocks {
            let a = b.dma_addr().as_u64();
            prop_assert_eq!(a % align as u64, 0);
            prop_assert!(b.len() >= size);
            prop_assert_eq!(a / eff, (a + size as u64 - 1) / eff, "block at {:#x} crosses {:#x}", a, eff);
            spans.push((a, a + stride as u64));
        }
        spans.sort();
        for w in spans.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "overlap");
        }
    }
}
