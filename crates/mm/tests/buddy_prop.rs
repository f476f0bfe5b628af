//! Property tests: the zoned buddy allocator against a simple per-frame model.
//!
//! Each case builds an allocator over a random memory map (regions that straddle zone
//! boundaries, unaligned edges, random reserved ranges, memory below 1 MiB, a random DMA
//! reserve), runs a few thousand random operations — allocations of mixed orders and
//! zone limits, correct frees, and every kind of misuse — checking each result against
//! the model, then frees everything and checks that the free blocks are exactly the
//! initial maximal blocks again.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use mm::buddy::*;
use mm::PhysAddr;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const PAGE: u64 = 4096;

/// Operations executed, over all cases.
static OPS: AtomicU64 = AtomicU64::new(0);
/// Misuse and failure results seen, over all cases: [alloc failures, invalid order,
/// misaligned, wrong order, double free, not allocated].
static ERRS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

#[derive(Debug, Clone)]
enum Op {
    Alloc { order: u8, limit: ZoneLimit },
    Free { pick: usize },
    WrongOrder { pick: usize, delta: u8 },
    Interior { pick: usize, page: u16, order: u8 },
    DoubleFree { pick: usize },
    Misaligned { pick: usize, off: u16 },
    Foreign { sel: u8, pick: usize },
    BadOrder { pick: usize },
}

#[derive(Debug, Clone)]
struct Layout {
    usable: Vec<Range<u64>>,
    reserved: Vec<Range<u64>>,
    dma_reserve: u64,
}

fn order_strategy() -> impl Strategy<Value = u8> {
    prop_oneof![
        5 => Just(0u8),
        4 => 1u8..=3,
        2 => 4u8..=7,
        1 => 8u8..=MAX_ORDER,
    ]
}

fn limit_strategy() -> impl Strategy<Value = ZoneLimit> {
    prop_oneof![
        4 => Just(ZoneLimit::Any),
        2 => Just(ZoneLimit::Dma32),
        1 => Just(ZoneLimit::Dma),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let pick = any::<usize>();
    prop_oneof![
        40 => (order_strategy(), limit_strategy()).prop_map(|(order, limit)| Op::Alloc { order, limit }),
        36 => pick.prop_map(|pick| Op::Free { pick }),
        3 => (pick, 1u8..=MAX_ORDER).prop_map(|(pick, delta)| Op::WrongOrder { pick, delta }),
        3 => (pick, any::<u16>(), 0u8..=3).prop_map(|(pick, page, order)| Op::Interior { pick, page, order }),
        3 => pick.prop_map(|pick| Op::DoubleFree { pick }),
        2 => (pick, 1u16..4096).prop_map(|(pick, off)| Op::Misaligned { pick, off }),
        3 => (any::<u8>(), pick).prop_map(|(sel, pick)| Op::Foreign { sel, pick }),
        1 => pick.prop_map(|pick| Op::BadOrder { pick }),
    ]
}

fn layout_strategy() -> impl Strategy<Value = Layout> {
    (
        0u64..256,     // DMA start, pages above 1 MiB
        64u64..3840,   // DMA pages
        any::<bool>(), // one region straddling 16 MiB
        0u64..2048,    // DMA32 pages
        0u64..2048,    // Normal pages
        0u64..0x800,   // unaligned start/end bytes
        prop::collection::vec((0u64..3, 0u64..4096, 1u64..0x10000), 0..4),
        0u64..600, // DMA reserve
    )
        .prop_map(|(ds, dp, straddle, d32, nrm, jitter, res, dma_reserve)| {
            // Low memory: must never be handed out.
            let mut usable = Vec::new();
            usable.push(0..0xa_0000);
            let dma_start = MIB + ds * PAGE + jitter;
            let dma_end = (dma_start + dp * PAGE).min(16 * MIB);
            if straddle {
                usable.push(dma_start..16 * MIB + d32 * PAGE);
                // Also straddle 4 GiB.
                usable.push(4 * GIB - 256 * PAGE..4 * GIB + nrm * PAGE - jitter);
            } else {
                usable.push(dma_start..dma_end - jitter);
                if d32 > 0 {
                    usable.push(3 * GIB + jitter..3 * GIB + d32 * PAGE);
                }
                if nrm > 0 {
                    usable.push(8 * GIB..8 * GIB + nrm * PAGE);
                }
            }
            let reserved = res
                .into_iter()
                .map(|(which, page, len)| {
                    let base = usable[1 + (which as usize % (usable.len() - 1))].start;
                    let s = base + page * PAGE + (len & 0xfff);
                    s..s + len
                })
                .collect();
            Layout {
                usable,
                reserved,
                dma_reserve,
            }
        })
}

/// Per-frame model: 0 = not managed, 1 = free, 2 = allocated.
struct Model {
    frames: HashMap<u64, u8>,
    live: Vec<(u64, u8)>,
    live_at: HashMap<u64, u8>,
    freed_heads: HashSet<u64>,
    freed_list: Vec<(u64, u8)>,
    zone_free: [u64; 3],
    managed: u64,
    errors: ErrorCounts,
    reserve: u64,
    scan_budget: u32,
}

impl Model {
    fn new(l: &Layout) -> Self {
        let mut frames = HashMap::new();
        for r in &l.usable {
            let s = r.start.max(MIB).div_ceil(PAGE);
            let e = r.end / PAGE;
            for pfn in s..e {
                frames.insert(pfn, 1u8);
            }
        }
        for r in &l.reserved {
            for pfn in r.start / PAGE..r.end.div_ceil(PAGE) {
                frames.remove(&pfn);
            }
        }
        let mut zone_free = [0; 3];
        for pfn in frames.keys() {
            zone_free[ZoneKind::of(pfn * PAGE) as usize] += 1;
        }
        Model {
            managed: frames.len() as u64,
            frames,
            live: Vec::new(),
            live_at: HashMap::new(),
            freed_heads: HashSet::new(),
            freed_list: Vec::new(),
            zone_free,
            errors: ErrorCounts::default(),
            reserve: l.dma_reserve,
            scan_budget: 64,
        }
    }

    fn free_total(&self) -> u64 {
        self.zone_free.iter().sum()
    }

    /// Could `zone` serve an order-`order` block (is there a fully free aligned block)?
    /// None = not checked (budget spent).
    fn zone_has_block(&mut self, zone: ZoneKind, order: u8) -> Option<bool> {
        if self.zone_free[zone as usize] < 1 << order {
            return Some(false);
        }
        if self.scan_budget == 0 {
            return None;
        }
        self.scan_budget -= 1;
        let n = 1u64 << order;
        let mut starts: Vec<u64> = self
            .frames
            .iter()
            .filter(|(&p, &s)| s == 1 && p % n == 0 && ZoneKind::of(p * PAGE) == zone)
            .map(|(&p, _)| p)
            .collect();
        starts.sort_unstable();
        Some(starts.into_iter().any(|p| {
            (p..p + n).all(|q| self.frames.get(&q) == Some(&1) && ZoneKind::of(q * PAGE) == zone)
        }))
    }

    fn zone_eligible(&self, zone: ZoneKind, order: u8, limit: ZoneLimit) -> bool {
        zone != ZoneKind::Dma
            || limit == ZoneLimit::Dma
            || self.zone_free[0] >= self.reserve + (1 << order)
    }

    /// The result `free(a, o)` must have.
    fn expect_free(&self, a: u64, o: u8) -> Result<(), FreeError> {
        let addr = PhysAddr::new(a);
        if o > MAX_ORDER {
            return Err(FreeError::InvalidOrder(o));
        }
        if !a.is_multiple_of(PAGE << o) {
            return Err(FreeError::Misaligned { addr, order: o });
        }
        if let Some(&lo) = self.live_at.get(&a) {
            return if lo == o {
                Ok(())
            } else {
                Err(FreeError::WrongOrder {
                    addr,
                    allocated: lo,
                    given: o,
                })
            };
        }
        if self.frames.get(&(a / PAGE)) == Some(&1) && self.freed_heads.contains(&a) {
            return Err(FreeError::DoubleFree(addr));
        }
        Err(FreeError::NotAllocated(addr))
    }

    fn count(&mut self, e: &FreeError) {
        let c = &mut self.errors;
        match e {
            FreeError::InvalidOrder(_) => c.invalid_order += 1,
            FreeError::Misaligned { .. } => c.misaligned += 1,
            FreeError::WrongOrder { .. } => c.wrong_order += 1,
            FreeError::DoubleFree(_) => c.double_free += 1,
            FreeError::NotAllocated(_) => c.not_allocated += 1,
        }
    }
}

fn free_blocks(fa: &FrameAllocator) -> Vec<(ZoneKind, u64, u8)> {
    let mut v = Vec::new();
    fa.for_each_free_block(|z, a, o| v.push((z, a.as_u64(), o)));
    v
}

fn check_stats(fa: &FrameAllocator, m: &Model) -> Result<(), TestCaseError> {
    for s in fa.stats() {
        prop_assert_eq!(
            s.free_pages,
            m.zone_free[s.kind as usize],
            "zone {}",
            s.kind
        );
        let from_blocks: u64 = s.free_blocks.iter().enumerate().map(|(o, n)| n << o).sum();
        prop_assert_eq!(from_blocks, s.free_pages);
    }
    Ok(())
}

/// Runs `free(a, o)` on both and compares.
fn do_free(fa: &mut FrameAllocator, m: &mut Model, a: u64, o: u8) -> Result<(), TestCaseError> {
    let expect = m.expect_free(a, o);
    let before = fa.free_pages();
    let got = fa.free(PhysAddr::new(a), o);
    prop_assert_eq!(got, expect, "free({:#x}, {})", a, o);
    match got {
        Ok(()) => {
            m.live_at.remove(&a);
            if let Some(i) = m.live.iter().position(|&(x, _)| x == a) {
                m.live.swap_remove(i);
            }
            for p in a / PAGE..a / PAGE + (1 << o) {
                m.frames.insert(p, 1);
            }
            m.zone_free[ZoneKind::of(a) as usize] += 1 << o;
            m.freed_heads.insert(a);
            m.freed_list.push((a, o));
            if m.freed_list.len() > 64 {
                m.freed_list.remove(0);
            }
        }
        Err(e) => {
            m.count(&e);
            prop_assert_eq!(fa.free_pages(), before, "a rejected free changed state");
        }
    }
    Ok(())
}

fn do_alloc(
    fa: &mut FrameAllocator,
    m: &mut Model,
    order: u8,
    limit: ZoneLimit,
) -> Result<(), TestCaseError> {
    let fallback: &[ZoneKind] = match limit {
        ZoneLimit::Any => &[ZoneKind::Normal, ZoneKind::Dma32, ZoneKind::Dma],
        ZoneLimit::Dma32 => &[ZoneKind::Dma32, ZoneKind::Dma],
        ZoneLimit::Dma => &[ZoneKind::Dma],
    };
    match fa.alloc(order, limit) {
        Ok(pa) => {
            let a = pa.as_u64();
            let n = 1u64 << order;
            prop_assert_eq!(a % (PAGE * n), 0, "alignment");
            prop_assert!(
                a + PAGE * n <= limit.max_addr(),
                "zone limit {:?}: {:#x}",
                limit,
                a
            );
            let zone = ZoneKind::of(a);
            prop_assert_eq!(ZoneKind::of(a + PAGE * n - 1), zone, "block crosses zones");
            prop_assert!(m.zone_eligible(zone, order, limit), "DMA reserve ignored");
            for p in a / PAGE..a / PAGE + n {
                prop_assert_eq!(
                    m.frames.get(&p).copied(),
                    Some(1),
                    "frame {:#x} not free+usable",
                    p * PAGE
                );
                m.frames.insert(p, 2);
            }
            // Every zone preferred over the one used must have been unable to serve.
            for &z in fallback.iter().take_while(|&&z| z != zone) {
                if m.zone_eligible(z, order, limit) {
                    prop_assert_ne!(m.zone_has_block(z, order), Some(true), "skipped {}", z);
                }
            }
            m.zone_free[zone as usize] -= n;
            m.live.push((a, order));
            m.live_at.insert(a, order);
            m.freed_heads.remove(&a);
        }
        Err(e) => {
            prop_assert_eq!(e, AllocError::OutOfMemory { order, limit });
            m.errors.alloc_failures += 1;
            for &z in fallback {
                if m.zone_eligible(z, order, limit) {
                    prop_assert_ne!(m.zone_has_block(z, order), Some(true), "{} had a block", z);
                }
            }
        }
    }
    Ok(())
}

fn run_case(l: &Layout, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut meta = vec![0x5au8; metadata_bytes(l.usable.iter().cloned())];
    let mut fa = FrameAllocator::new(
        l.usable.iter().cloned(),
        l.reserved.iter().cloned(),
        &mut meta,
        FrameAllocatorConfig {
            dma_reserve_pages: l.dma_reserve,
        },
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut m = Model::new(l);
    prop_assert_eq!(fa.managed_pages(), m.managed);
    prop_assert_eq!(fa.free_pages(), m.free_total());
    let initial = free_blocks(&fa);
    let foreign_fixed = [0x1000u64, 0x9_f000, 64 * GIB, 5 * GIB + 0x1000];
    let mut n = 0u64;
    for op in ops {
        n += 1;
        match *op {
            Op::Alloc { order, limit } => do_alloc(&mut fa, &mut m, order, limit)?,
            Op::Free { pick } if !m.live.is_empty() => {
                let (a, o) = m.live[pick % m.live.len()];
                do_free(&mut fa, &mut m, a, o)?;
            }
            Op::WrongOrder { pick, delta } if !m.live.is_empty() => {
                let (a, o) = m.live[pick % m.live.len()];
                let wrong = (o + delta) % (MAX_ORDER + 1);
                do_free(&mut fa, &mut m, a, wrong)?;
            }
            Op::Interior { pick, page, order } if !m.live.is_empty() => {
                let (a, o) = m.live[pick % m.live.len()];
                if o > 0 {
                    let p = 1 + u64::from(page) % ((1 << o) - 1);
                    do_free(&mut fa, &mut m, a + p * PAGE, order)?;
                }
            }
            Op::DoubleFree { pick } if !m.freed_list.is_empty() => {
                let (a, o) = m.freed_list[pick % m.freed_list.len()];
                do_free(&mut fa, &mut m, a, o)?;
            }
            Op::Misaligned { pick, off } if !m.live.is_empty() => {
                let (a, o) = m.live[pick % m.live.len()];
                do_free(&mut fa, &mut m, a + u64::from(off), o)?;
            }
            Op::Foreign { sel, pick } => {
                let a = match sel % 3 {
                    0 => foreign_fixed[pick % foreign_fixed.len()],
                    1 if !l.reserved.is_empty() => {
                        l.reserved[pick % l.reserved.len()].start & !(PAGE - 1)
                    }
                    _ => {
                        // A usable frame: free or inside a live block.
                        let r = &l.usable[1 + pick % (l.usable.len() - 1)];
                        (r.start.max(MIB).div_ceil(PAGE) + (pick as u64 % 97)) * PAGE
                    }
                };
                do_free(&mut fa, &mut m, a, 0)?;
            }
            Op::BadOrder { pick } => {
                let o = MAX_ORDER + 1 + (pick % 50) as u8;
                prop_assert_eq!(
                    fa.alloc(o, ZoneLimit::Any),
                    Err(AllocError::InvalidOrder(o))
                );
                m.errors.invalid_order += 1;
                let a = m.live.first().map_or(2 * MIB, |x| x.0);
                do_free(&mut fa, &mut m, a, o)?;
            }
            _ => n -= 1,
        }
        prop_assert_eq!(fa.free_pages(), m.free_total());
        if n.is_multiple_of(128) {
            check_stats(&fa, &m)?;
        }
    }
    check_stats(&fa, &m)?;
    // Free everything (in an order that mixes old and new) and expect the initial blocks.
    let mut live = std::mem::take(&mut m.live);
    live.sort_by_key(|&(a, _)| a.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for &(a, o) in &live {
        m.live.push((a, o));
    }
    for (a, o) in live {
        do_free(&mut fa, &mut m, a, o)?;
        n += 1;
    }
    prop_assert_eq!(fa.free_pages(), fa.managed_pages());
    prop_assert_eq!(
        free_blocks(&fa),
        initial,
        "not coalesced back to the initial blocks"
    );
    prop_assert_eq!(fa.error_counts(), m.errors);
    OPS.fetch_add(n, Relaxed);
    let e = m.errors;
    let counts = [
        e.alloc_failures,
        e.invalid_order,
        e.misaligned,
        e.wrong_order,
        e.double_free,
        e.not_allocated,
    ];
    for (c, v) in ERRS.iter().zip(counts) {
        c.fetch_add(v, Relaxed);
    }
    Ok(())
}

#[test]
fn buddy_matches_model() {
    let cases: u32 = std::env::var("BUDDY_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        // Shrinking a 5000-op vector is slow; a failure still prints the full input.
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        layout_strategy(),
        prop::collection::vec(op_strategy(), 3000..5000),
    );
    let result = runner.run(&strategy, |(layout, ops)| run_case(&layout, &ops));
    let total = OPS.load(Relaxed);
    println!("buddy property test: {cases} cases, {total} allocator operations in total");
    let e: Vec<u64> = ERRS.iter().map(|c| c.load(Relaxed)).collect();
    println!(
        "  of which rejected: alloc_failures {} invalid_order {} misaligned {} wrong_order {} double_free {} not_allocated {}",
        e[0], e[1], e[2], e[3], e[4], e[5]
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(total >= 1_000_000, "only {total} operations");
}
