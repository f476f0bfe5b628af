//! Benchmarks: our buddy allocator vs `buddy_system_allocator::FrameAllocator`, and our
//! mapper vs the `x86_64` crate's `OffsetPageTable`, over the same kind of host memory.
//!
//! `cargo bench -p mm` (set `MM_BENCH_QUICK=1` for a shorter measurement).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hal::{Arena, PhysMemory};
use mm::buddy::{metadata_bytes, FrameAllocator, FrameAllocatorConfig, ZoneLimit};
use mm::paging::{Mapper, NoTlb, PageSize, PageTableFlags};
use mm::pat::CacheType;
use mm::PhysAddr;

type Theirs = buddy_system_allocator::FrameAllocator<32>;

const GIB: u64 = 1 << 30;
/// 1 GiB of RAM above 4 GiB: one zone for both allocators.
const MEM: std::ops::Range<u64> = 4 * GIB..5 * GIB;

fn ours_meta() -> Vec<u8> {
    vec![0; metadata_bytes(std::iter::once(MEM))]
}

fn ours(meta: &mut [u8]) -> FrameAllocator<'_> {
    FrameAllocator::new(
        std::iter::once(MEM),
        std::iter::empty(),
        meta,
        FrameAllocatorConfig::default(),
    )
    .unwrap()
}

fn theirs() -> Theirs {
    let mut t = Theirs::new();
    t.add_frame((MEM.start >> 12) as usize, (MEM.end >> 12) as usize);
    t
}

/// Small deterministic PRNG so both allocators see the same sequence.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Clone, Copy)]
enum MixedOp {
    Alloc(u8),
    /// Free the live block at this index (modulo the live count).
    Free(usize),
}

/// 20 000 operations, working set up to ~1000 blocks, orders 0..=9 skewed small.
fn mixed_ops() -> Vec<MixedOp> {
    let mut r = XorShift(0x2545_f491_4f6c_dd1d);
    let mut live = 0usize;
    let mut ops = Vec::new();
    for _ in 0..20_000 {
        let x = r.next();
        if live == 0 || (x % 100 < 52 && live < 1000) {
            let o = match (x >> 8) % 100 {
                0..=49 => 0,
                50..=79 => 1 + (x >> 16) % 3,
                80..=94 => 4 + (x >> 16) % 3,
                _ => 7 + (x >> 16) % 3,
            } as u8;
            ops.push(MixedOp::Alloc(o));
            live += 1;
        } else {
            ops.push(MixedOp::Free((x >> 20) as usize));
            live -= 1;
        }
    }
    ops
}

fn bench_alloc(c: &mut Criterion) {
    let mut g = c.benchmark_group("order0_alloc_free");

    // Warm: a fragmented working set, so order-0 blocks are free and their buddies are
    // allocated: the common steady state. Each iteration is one alloc + one free.
    let mut meta = ours_meta();
    let mut fa = ours(&mut meta);
    let held: Vec<_> = (0..4096)
        .map(|_| fa.alloc(0, ZoneLimit::Any).unwrap())
        .collect();
    for a in held.iter().step_by(2) {
        fa.free(*a, 0).unwrap();
    }
    g.bench_function(BenchmarkId::new("ours", "warm"), |b| {
        b.iter(|| {
            let a = fa.alloc(0, ZoneLimit::Any).unwrap();
            fa.free(black_box(a), 0).unwrap();
        })
    });
    let mut t = theirs();
    let held: Vec<_> = (0..4096).map(|_| t.alloc(1).unwrap()).collect();
    for a in held.iter().step_by(2) {
        t.dealloc(*a, 1);
    }
    g.bench_function(BenchmarkId::new("buddy_system_allocator", "warm"), |b| {
        b.iter(|| {
            let a = t.alloc(1).unwrap();
            t.dealloc(black_box(a), 1);
        })
    });

    // Cold: empty allocator, every alloc splits a top block and every free merges it
    // back (theirs has no order cap, so its top block is 2^18 frames for 1 GiB).
    let mut meta = ours_meta();
    let mut fa = ours(&mut meta);
    g.bench_function(BenchmarkId::new("ours", "cold"), |b| {
        b.iter(|| {
            let a = fa.alloc(0, ZoneLimit::Any).unwrap();
            fa.free(black_box(a), 0).unwrap();
        })
    });
    let mut t = theirs();
    g.bench_function(BenchmarkId::new("buddy_system_allocator", "cold"), |b| {
        b.iter(|| {
            let a = t.alloc(1).unwrap();
            t.dealloc(black_box(a), 1);
        })
    });

    // Batch: 1024 order-0 allocations, then 1024 frees (mapping a 4 MiB buffer).
    let mut meta = ours_meta();
    let mut fa = ours(&mut meta);
    let mut buf = Vec::with_capacity(1024);
    g.bench_function(BenchmarkId::new("ours", "batch1024"), |b| {
        b.iter(|| {
            for _ in 0..1024 {
                buf.push(fa.alloc(0, ZoneLimit::Any).unwrap());
            }
            for a in buf.drain(..) {
                fa.free(a, 0).unwrap();
            }
        })
    });
    let mut t = theirs();
    let mut buf = Vec::with_capacity(1024);
    g.bench_function(
        BenchmarkId::new("buddy_system_allocator", "batch1024"),
        |b| {
            b.iter(|| {
                for _ in 0..1024 {
                    buf.push(t.alloc(1).unwrap());
                }
                for a in buf.drain(..) {
                    t.dealloc(a, 1);
                }
            })
        },
    );
    g.finish();

    let mut g = c.benchmark_group("mixed_orders_20k_ops");
    let ops = mixed_ops();
    let mut meta = ours_meta();
    let mut fa = ours(&mut meta);
    g.bench_function("ours", |b| {
        let mut live: Vec<(PhysAddr, u8)> = Vec::with_capacity(1024);
        b.iter(|| {
            for op in &ops {
                match *op {
                    MixedOp::Alloc(o) => live.push((fa.alloc(o, ZoneLimit::Any).unwrap(), o)),
                    MixedOp::Free(i) => {
                        let (a, o) = live.swap_remove(i % live.len());
                        fa.free(a, o).unwrap();
                    }
                }
            }
            for (a, o) in live.drain(..) {
                fa.free(a, o).unwrap();
            }
        })
    });
    let mut t = theirs();
    g.bench_function("buddy_system_allocator", |b| {
        let mut live: Vec<(usize, usize)> = Vec::with_capacity(1024);
        b.iter(|| {
            for op in &ops {
                match *op {
                    MixedOp::Alloc(o) => live.push((t.alloc(1 << o).unwrap(), 1 << o)),
                    MixedOp::Free(i) => {
                        let (a, n) = live.swap_remove(i % live.len());
                        t.dealloc(a, n);
                    }
                }
            }
            for (a, n) in live.drain(..) {
                t.dealloc(a, n);
            }
        })
    });
    g.finish();
}

/// Page-table frames for both mappers: a bump allocator over the arena.
struct Bump {
    next: u64,
    end: u64,
}

impl mm::paging::FrameSource for Bump {
    fn alloc_table_frame(&mut self) -> Option<PhysAddr> {
        (self.next < self.end).then(|| {
            self.next += 4096;
            PhysAddr::new(self.next - 4096)
        })
    }
}

// SAFETY: every frame returned is a distinct, unused page of the arena.
unsafe impl x86_64::structures::paging::FrameAllocator<x86_64::structures::paging::Size4KiB>
    for Bump
{
    fn allocate_frame(
        &mut self,
    ) -> Option<x86_64::structures::paging::PhysFrame<x86_64::structures::paging::Size4KiB>> {
        let f = mm::paging::FrameSource::alloc_table_frame(self)?;
        // The x86_64 crate zeroes a table it creates, as our mapper does.
        Some(x86_64::structures::paging::PhysFrame::containing_address(f))
    }
}

const ARENA_BASE: u64 = 0x100_0000;
const ARENA_SIZE: usize = 4 << 20; // 515 tables for 1 GiB of 4 KiB pages fit in 2.1 MiB
const MAP_VA: u64 = 0xffff_9000_0000_0000;
const MAP_PA: u64 = 0x1_0000_0000;
const MAP_LEN: u64 = GIB;

fn fresh_arena() -> (Arena, Bump) {
    let arena = Arena::new(PhysAddr::new(ARENA_BASE), ARENA_SIZE);
    let bump = Bump {
        next: ARENA_BASE,
        end: ARENA_BASE + ARENA_SIZE as u64,
    };
    (arena, bump)
}

fn bench_map(c: &mut Criterion) {
    let mut g = c.benchmark_group("map_1GiB_4KiB_pages");
    g.sample_size(10);
    let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;

    g.bench_function("ours_map_per_page", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (arena, mut bump) = fresh_arena();
                let start = Instant::now();
                let mut m = Mapper::create(&arena, NoTlb, &mut bump).unwrap();
                for off in (0..MAP_LEN).step_by(4096) {
                    m.map(
                        x86_64::VirtAddr::new(MAP_VA + off),
                        PhysAddr::new(MAP_PA + off),
                        PageSize::Size4K,
                        flags,
                        CacheType::WriteBack,
                        &mut bump,
                    )
                    .unwrap();
                }
                total += start.elapsed();
                black_box(arena.read_u64(m.pml4()));
            }
            total
        })
    });

    // The kernel's configuration: hal::DirectMap (volatile u64 accesses, one limit
    // check) over the same host buffer.
    g.bench_function("ours_map_per_page_directmap", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (arena, mut bump) = fresh_arena();
                let offset = arena.host_ptr() as u64 - ARENA_BASE;
                // SAFETY: the arena's buffer is "physical" [ARENA_BASE, +ARENA_SIZE) at
                // `offset`; only table frames from `bump` (inside it) are accessed, and
                // the arena outlives `dm`.
                let dm = unsafe {
                    hal::DirectMap::new(
                        x86_64::VirtAddr::new(offset),
                        ARENA_BASE + ARENA_SIZE as u64,
                    )
                };
                let start = Instant::now();
                let mut m = Mapper::create(dm, NoTlb, &mut bump).unwrap();
                for off in (0..MAP_LEN).step_by(4096) {
                    m.map(
                        x86_64::VirtAddr::new(MAP_VA + off),
                        PhysAddr::new(MAP_PA + off),
                        PageSize::Size4K,
                        flags,
                        CacheType::WriteBack,
                        &mut bump,
                    )
                    .unwrap();
                }
                total += start.elapsed();
                black_box(arena.read_u64(m.pml4()));
            }
            total
        })
    });

    g.bench_function("ours_map_range", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (arena, mut bump) = fresh_arena();
                let start = Instant::now();
                let mut m = Mapper::create(&arena, NoTlb, &mut bump).unwrap();
                m.map_range(
                    x86_64::VirtAddr::new(MAP_VA),
                    PhysAddr::new(MAP_PA),
                    MAP_LEN,
                    PageSize::Size4K,
                    flags,
                    CacheType::WriteBack,
                    &mut bump,
                )
                .unwrap();
                total += start.elapsed();
                black_box(arena.read_u64(m.pml4()));
            }
            total
        })
    });

    g.bench_function("x86_64_OffsetPageTable", |b| {
        use x86_64::structures::paging::{
            Mapper as _, OffsetPageTable, Page, PageTable, PhysFrame, Size4KiB,
        };
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (arena, mut bump) = fresh_arena();
                let offset = arena.host_ptr() as u64 - ARENA_BASE;
                let start = Instant::now();
                let pml4 = mm::paging::FrameSource::alloc_table_frame(&mut bump).unwrap();
                let ptr = (pml4.as_u64() + offset) as *mut PageTable;
                // SAFETY: `ptr` is the host address of a zeroed, page-aligned arena page
                // that nothing else references; the arena outlives the table.
                let table = unsafe { &mut *ptr };
                // SAFETY: all "physical memory" the tables use (the arena) is mapped at
                // `offset` in this process.
                let mut opt = unsafe { OffsetPageTable::new(table, x86_64::VirtAddr::new(offset)) };
                for off in (0..MAP_LEN).step_by(4096) {
                    let page =
                        Page::<Size4KiB>::containing_address(x86_64::VirtAddr::new(MAP_VA + off));
                    let frame = PhysFrame::containing_address(PhysAddr::new(MAP_PA + off));
                    // SAFETY: the mapping is never used to access memory; the tables live
                    // in the arena.
                    unsafe { opt.map_to(page, frame, flags | PageTableFlags::PRESENT, &mut bump) }
                        .unwrap()
                        .ignore();
                }
                total += start.elapsed();
                black_box(&opt);
            }
            total
        })
    });
    g.finish();
}

fn config() -> Criterion {
    let quick = std::env::var_os("MM_BENCH_QUICK").is_some();
    let (warm, measure) = if quick { (1, 2) } else { (2, 5) };
    Criterion::default()
        .warm_up_time(Duration::from_secs(warm))
        .measurement_time(Duration::from_secs(measure))
}

criterion_group! { name = alloc; config = config(); targets = bench_alloc }
criterion_group! { name = map; config = config(); targets = bench_map }
criterion_main!(alloc, map);
