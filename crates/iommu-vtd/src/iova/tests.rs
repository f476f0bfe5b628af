//! Tests of the IOVA allocator (exercise `iova` lists some of them).
use super::*;
use proptest::prelude::*;

#[test]
fn top_down_size_aligned_below_mask() {
    let mut a = IovaAllocator::new(0, 8, 10);
    let x = a.alloc(0x3000, 1 << 28).unwrap();
    assert_eq!(x.as_u64(), (1 << 28) - 0x4000);
    let y = a.alloc(0x1000, 1 << 28).unwrap();
    assert_eq!(y.as_u64(), (1 << 28) - 0x5000);
    let z = a.alloc(0x4000, 1 << 28).unwrap();
    // [-0x8000, -0x4000) holds y, so the next 16 KiB-aligned hole is lower.
    assert_eq!(z.as_u64(), (1 << 28) - 0xc000);
    assert_eq!(a.size_of(x), Some(0x4000));
}

#[test]
fn freed_range_is_not_reused_before_flush() {
    let mut a = IovaAllocator::new(0x1000, 8, 10);
    let limit = 0x4000;
    let x = a.alloc(0x1000, limit).unwrap();
    let y = a.alloc(0x1000, limit).unwrap();
    let z = a.alloc(0x1000, limit).unwrap();
    assert_eq!(
        a.alloc(0x1000, limit),
        Err(IovaError::Exhausted {
            size: 0x1000,
            limit
        })
    );
    a.queue_iova(y, 0).unwrap();
    assert!(a.alloc(0x1000, limit).is_err(), "pending range reused");
    assert_eq!(a.queue_iova(y, 0), Err(IovaError::NotAllocated(y)));
    assert_eq!(a.iotlb_flushed(), 1);
    assert_eq!(a.alloc(0x1000, limit).unwrap(), y);
    // Strict mode: only the flushed range is released.
    a.queue_iova(x, 0).unwrap();
    a.queue_iova(z, 0).unwrap();
    assert_eq!(a.free_iova(z), Ok(()));
    assert!(a.free_iova(z).is_err());
    assert_eq!(a.pending(), 1);
    assert_eq!(a.alloc(0x1000, limit).unwrap(), z);
    assert!(a.alloc(0x1000, limit).is_err());
    // A never-mapped range is free at once.
    assert_eq!(a.free_iova(z), Ok(()));
    assert_eq!(a.alloc(0x1000, limit).unwrap(), z);
}

#[test]
fn alloc_fits_exactly_below_the_limit() {
    // The limit is exclusive: the last page below 0x3000 starts at 0x2000, and
    // page 0 is never handed out.
    let mut a = IovaAllocator::new(0x1000, 8, 10);
    assert_eq!(a.alloc(0x1000, 0x3000).unwrap().as_u64(), 0x2000);
    assert_eq!(a.alloc(0x1000, 0x3000).unwrap().as_u64(), 0x1000);
    assert!(a.alloc(0x1000, 0x3000).is_err());
    // An unaligned limit: the highest 8 KiB-aligned range ending below 0x5fff.
    let mut b = IovaAllocator::new(0x1000, 8, 10);
    assert_eq!(b.alloc(0x2000, 0x5fff).unwrap().as_u64(), 0x2000);
    // A limit below the size: no range fits, and nothing wraps around.
    assert_eq!(
        b.alloc(0x1000, 0x800),
        Err(IovaError::Exhausted {
            size: 0x1000,
            limit: 0x800
        })
    );
    // The top of a 64-bit space.
    let mut c = IovaAllocator::new(0x1000, 8, 10);
    assert_eq!(
        c.alloc(0x1000, u64::MAX).unwrap().as_u64(),
        u64::MAX - 0x1fff
    );
}

#[test]
fn lazy_bounds() {
    let mut a = IovaAllocator::new(0, 2, 100);
    let x = a.alloc(0x1000, 1 << 32).unwrap();
    let y = a.alloc(0x1000, 1 << 32).unwrap();
    a.queue_iova(x, 10).unwrap();
    assert!(!a.flush_needed(50));
    assert!(a.flush_needed(110), "delay bound");
    a.queue_iova(y, 60).unwrap();
    assert!(a.flush_needed(61), "size bound");
    a.iotlb_flushed();
    assert!(!a.flush_needed(1000));
}

#[test]
fn reserve_keeps_window_out() {
    let mut a = IovaAllocator::new(0, 8, 10);
    a.reserve(0xfee0_0000, 0x10_0000).unwrap();
    let x = a.alloc(0x10_0000, 0xff00_0000).unwrap();
    assert_eq!(x.as_u64(), 0xfef0_0000);
    let y = a.alloc(0x10_0000, 0xff00_0000).unwrap();
    assert_eq!(y.as_u64(), 0xfed0_0000);
    assert!(a.reserve(0xfed0_1000, 1).is_err());
}

/// IOVA page 0 is never handed out, whatever base the caller asks for
/// (Linux starts its IOVA domains at page 1: a zero bus address means
/// "none" to many devices).
#[test]
fn iova_zero_is_never_handed_out() {
    let mut a = IovaAllocator::new(0, 8, 10);
    let got: std::vec::Vec<u64> = core::iter::from_fn(|| a.alloc(0x1000, 0x4000).ok())
        .map(|d| d.as_u64())
        .collect();
    assert_eq!(got, [0x3000, 0x2000, 0x1000], "all of [4K, 16K), never 0");
    assert!(
        a.alloc(0x1000, 0x1000).is_err(),
        "page 0 alone is not a range"
    );
}

/// PCI windows: overlapping windows and reservations merge; a window over
/// a range in use is refused and changes nothing; nothing is handed out
/// inside a window.
#[test]
fn reserve_window_merges_and_refuses_ranges_in_use() {
    let mut a = IovaAllocator::new(0, 8, 10);
    a.reserve(0xfee0_0000, 0x10_0000).unwrap();
    a.reserve_window(0xe000_0000, 0x1f00_0000).unwrap(); // ..0xff00_0000, over the interrupt window
    a.reserve_window(0xfd00_0000, 0x300_0000).unwrap(); // overlaps both
    let r: std::vec::Vec<(u64, u64)> = a.reserved().map(|(d, l)| (d.as_u64(), l)).collect();
    let covered: u64 = r.iter().map(|x| x.1).sum();
    assert_eq!(covered, 0x2000_0000, "[0xe000_0000, 4 GiB) once: {r:x?}");
    let x = a.alloc(0x10_0000, 1 << 32).unwrap().as_u64();
    assert_eq!(x, 0xdff0_0000, "just below the windows");
    assert_eq!(
        a.reserve_window(0xd000_0000, 0x1000_0000),
        Err(IovaError::Overlap(DmaAddr::new(0xdff0_0000)))
    );
    let r2: std::vec::Vec<(u64, u64)> = a.reserved().map(|(d, l)| (d.as_u64(), l)).collect();
    assert_eq!(r, r2, "a refused window reserves nothing");
    // A window up to the top of the 64-bit space.
    a.reserve_window(0x40_0000_0000, u64::MAX).unwrap();
    let y = a.alloc(0x1000, 1 << 39).unwrap().as_u64();
    assert!(y < 0x40_0000_0000, "{y:#x} inside the 64-bit window");
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(u8, u8),
    Free(usize),
    Flush,
    /// Strict mode: a page-selective flush of one pending range.
    FlushOne(usize),
    /// Never mapped: back at once.
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..7, 14u8..22).prop_map(|(s, m)| Op::Alloc(s, m)),
        3 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::Flush),
        1 => any::<usize>().prop_map(Op::FlushOne),
        1 => any::<usize>().prop_map(Op::Cancel),
    ]
}

/// Whether a `size`-aligned range of `size` bytes fits in `[0x1000, limit)`
/// without touching any busy range (the model's answer to "must alloc succeed?").
fn room(busy: &[(u64, u64)], size: u64, limit: u64) -> bool {
    (1..)
        .map(|k| k * size)
        .take_while(|&x| x + size <= limit)
        .any(|x| busy.iter().all(|&(s, l)| x + size <= s || s + l <= x))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Masks are respected, live ranges never overlap, and a freed range is never
    /// handed out again before `iotlb_flushed`.
    #[test]
    fn allocator_properties(ops in proptest::collection::vec(op(), 1..120)) {
        let mut a = IovaAllocator::new(0x1000, 4, 10);
        let mut live: std::vec::Vec<(u64, u64)> = std::vec::Vec::new();
        let mut pending: std::vec::Vec<(u64, u64, u64)> = std::vec::Vec::new();
        let mut oldest: Option<u64> = None;
        for (t, o) in ops.into_iter().enumerate() {
            match o {
                Op::Alloc(s, m) => {
                    let req = 0x1000u64 << s;
                    let limit = 1u64 << m;
                    let busy: std::vec::Vec<(u64, u64)> = live
                        .iter()
                        .copied()
                        .chain(pending.iter().map(|&(s, l, _)| (s, l)))
                        .collect();
                    let r = a.alloc(req - 1, limit);
                    prop_assert_eq!(r.is_ok(), room(&busy, req, limit),
                        "alloc of {:#x} below {:#x}: {:?}", req, limit, r);
                    if let Ok(x) = r {
                        let x = x.as_u64();
                        let size = req;
                        prop_assert_eq!(x % size, 0, "size-aligned");
                        prop_assert!(x >= 0x1000);
                        prop_assert!(x + size <= limit, "below the mask");
                        for (s2, l2) in live.iter().copied().chain(pending.iter().map(|&(s, l, _)| (s, l))) {
                            prop_assert!(x + size <= s2 || s2 + l2 <= x,
                                "{:#x}+{:#x} overlaps {:#x}+{:#x}", x, size, s2, l2);
                        }
                        live.push((x, size));
                    }
                }
                Op::Free(i) => {
                    if !live.is_empty() {
                        let r = live.swap_remove(i % live.len());
                        prop_assert_eq!(a.queue_iova(DmaAddr::new(r.0), t as u64), Ok(r.1));
                        pending.push((r.0, r.1, t as u64));
                        oldest.get_or_insert(t as u64);
                        prop_assert_eq!(a.pending(), pending.len());
                        let now = t as u64 + 3;
                        // The bound itself: a full queue or an entry this old
                        // must ask for a flush.
                        if pending.len() >= 4 || pending.iter().any(|&(_, _, ft)| now - ft >= 10) {
                            prop_assert!(a.flush_needed(now), "lazy bounds exceeded");
                        }
                        // And exactly when the documented rule says so (the
                        // age counts from the first free since the queue
                        // was last empty).
                        let expect = pending.len() >= 4
                            || oldest.is_some_and(|o| now - o >= 10);
                        prop_assert_eq!(a.flush_needed(now), expect, "lazy bounds");
                    }
                }
                Op::Flush => {
                    prop_assert_eq!(a.iotlb_flushed(), pending.len());
                    pending.clear();
                    oldest = None;
                }
                Op::FlushOne(i) => {
                    if !pending.is_empty() {
                        let r = pending.swap_remove(i % pending.len());
                        prop_assert_eq!(a.free_iova(DmaAddr::new(r.0)), Ok(()));
                        prop_assert!(a.free_iova(DmaAddr::new(r.0)).is_err());
                        prop_assert_eq!(a.pending(), pending.len());
                        if pending.is_empty() {
                            oldest = None;
                        }
                    }
                }
                Op::Cancel(i) => {
                    if !live.is_empty() {
                        let r = live.swap_remove(i % live.len());
                        prop_assert_eq!(a.free_iova(DmaAddr::new(r.0)), Ok(()));
                        prop_assert!(a.free_iova(DmaAddr::new(r.0)).is_err());
                    }
                }
            }
        }
        let mut got: std::vec::Vec<_> = a.allocated().map(|(d, l)| (d.as_u64(), l)).collect();
        got.sort();
        live.sort();
        prop_assert_eq!(got, live);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever windows are reserved (overlapping, unaligned, in any order)
    /// and whatever sizes and masks are asked for, no allocation overlaps a
    /// window, none starts at 0, and the allocator still fills the space
    /// the windows leave.
    #[test]
    fn allocations_never_overlap_reserved_windows(
        windows in proptest::collection::vec((0u64..1 << 24, 1u64..1 << 22), 0..6),
        sizes in proptest::collection::vec((0u8..5, 16u8..25), 1..80),
    ) {
        let mut a = IovaAllocator::new(0, 8, 10);
        for &(s, l) in &windows {
            prop_assert_eq!(a.reserve_window(s, l), Ok(()));
        }
        let hit = |x: u64, n: u64| windows.iter().any(|&(s, l)| {
            let (ws, we) = (s & !0xfff, (s + l).next_multiple_of(0x1000));
            x < we && ws < x + n
        });
        for (o, m) in sizes {
            let size = 0x1000u64 << o;
            let limit = 1u64 << m;
            if let Ok(x) = a.alloc(size, limit) {
                let x = x.as_u64();
                prop_assert!(x != 0, "IOVA 0 handed out");
                prop_assert!(!hit(x, size), "{:#x}+{:#x} inside a window {:x?}", x, size, windows);
            }
        }
    }
}

/// Lazy mode parks freed ranges above the search position; allocation
/// must continue below them (not re-walk from the top) and, once the
/// flush releases them, reuse the highest first.
#[test]
fn search_continues_below_pending_and_reuses_after_flush() {
    let mut a = IovaAllocator::new(0x1000, 64, 100);
    let limit = 1u64 << 28;
    let first = a.alloc(0x1000, limit).unwrap().as_u64();
    let mut prev = first;
    for _ in 0..32 {
        a.queue_iova(DmaAddr::new(prev), 0).unwrap();
        let next = a.alloc(0x1000, limit).unwrap().as_u64();
        assert_eq!(next, prev - 0x1000, "not directly below the pending range");
        prev = next;
    }
    assert_eq!(a.iotlb_flushed(), 32);
    a.queue_iova(DmaAddr::new(prev), 0).unwrap();
    a.iotlb_flushed();
    // After the flush the freed ranges come back (from the size cache)
    // before any fresh space below them is touched.
    for _ in 0..33 {
        let x = a.alloc(0x1000, limit).unwrap().as_u64();
        assert!(
            (prev..=first).contains(&x),
            "{x:#x} is fresh space, not a flushed range"
        );
    }
    assert_eq!(a.alloc(0x1000, limit).unwrap().as_u64(), prev - 0x1000);
}

/// The size caches: a flushed range is reused without a tree search, only
/// below the caller's limit, never before its flush; and cached ranges
/// are given back when the search finds no room, so caching never makes an
/// allocation fail.
#[test]
fn size_cache_reuse_limit_and_purge() {
    let mut a = IovaAllocator::new(0x1000, 64, 100);
    let x = a.alloc(0x2000, 1 << 28).unwrap();
    a.queue_iova(x, 0).unwrap();
    assert_eq!(a.cached(), 0, "cached before the flush");
    assert_ne!(a.alloc(0x2000, 1 << 28).unwrap(), x, "reused before flush");
    a.iotlb_flushed();
    assert_eq!(a.cached(), 1);
    // Too high for a 20-bit device: stays cached, the device gets other space.
    let low = a.alloc(0x2000, 1 << 20).unwrap();
    assert!(low.as_u64() + 0x2000 <= 1 << 20);
    assert_eq!(a.cached(), 1);
    assert_eq!(a.alloc(0x2000, 1 << 28).unwrap(), x, "cache not used");
    assert_eq!(a.cached(), 0);
    // A space of exactly four pages: fill it, free and flush two single
    // pages (cached), then ask for the two-page hole they leave.
    let mut b = IovaAllocator::new(0x1000, 64, 100);
    let lim = 0x5000;
    let p: std::vec::Vec<u64> = (0..4)
        .map(|_| b.alloc(0x1000, lim).unwrap().as_u64())
        .collect();
    assert!(b.alloc(0x1000, lim).is_err());
    let (lo2, hi2) = (0x2000, 0x3000); // one size-aligned 8 KiB slot
    assert!(p.contains(&lo2) && p.contains(&hi2));
    b.queue_iova(DmaAddr::new(lo2), 0).unwrap();
    b.queue_iova(DmaAddr::new(hi2), 0).unwrap();
    b.iotlb_flushed();
    assert_eq!(b.cached(), 2);
    assert_eq!(
        b.alloc(0x2000, lim).unwrap().as_u64(),
        lo2,
        "cache not purged"
    );
    assert_eq!(b.cached(), 0);
    // Uncached sizes (256 KiB) go straight back to the tree.
    let big = b.alloc(0x40000, 1 << 28).unwrap();
    b.queue_iova(big, 0).unwrap();
    b.iotlb_flushed();
    assert_eq!(b.cached(), 0);
}
