//! Property test of the mapper against a model (a map of pages), with the x86_64
//! crate's walker over the same bytes as an independent translator.

use std::collections::BTreeMap;

use hal::Arena;
use mm::paging::*;
use mm::pat::CacheType;
use mm::{PhysAddr, VirtAddr};
use proptest::prelude::*;

const BASE: u64 = 0x100_0000;
const SIZE: usize = 4 << 20;
const VBASE: u64 = 0xffff_8000_0000_0000;
/// Virtual window: 16 MiB (8 huge-page slots) on both sides of a 512 GiB boundary, so
/// PML4, PDPT and PD boundaries are all crossed.
const SLOTS: u64 = 16;

#[derive(Debug, Clone)]
enum Op {
    Map4K {
        slot: u64,
        page: u64,
        frame: u64,
        ct: usize,
    },
    Map2M {
        slot: u64,
        frame: u64,
        ct: usize,
    },
    Range {
        slot: u64,
        page: u64,
        pages: u64,
        frame: u64,
    },
    Unmap {
        slot: u64,
        page: u64,
    },
    UnmapRange {
        slot: u64,
        page: u64,
        pages: u64,
    },
    SetFlags {
        slot: u64,
        page: u64,
        writable: bool,
        ct: usize,
    },
}

fn slot_va(slot: u64) -> u64 {
    // Slots 0..8 just below VBASE + 512 GiB, 8..16 just above.
    VBASE + (512 << 30) - (8 << 21) + slot * (2 << 20)
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    // Often 0, so operations hit 2 MiB page starts.
    let page = prop_oneof![1 => Just(0u64), 3 => 0u64..512];
    let ct = 0usize..6;
    prop_oneof![
        4 => (slot.clone(), page.clone(), 0u64..1 << 20, ct.clone())
            .prop_map(|(slot, page, frame, ct)| Op::Map4K { slot, page, frame, ct }),
        1 => (slot.clone(), 0u64..1 << 10, ct.clone()).prop_map(|(slot, frame, ct)| Op::Map2M { slot, frame, ct }),
        2 => (slot.clone(), page.clone(), 1u64..700, 0u64..1 << 20)
            .prop_map(|(slot, page, pages, frame)| Op::Range { slot, page, pages, frame }),
        3 => (slot.clone(), page.clone()).prop_map(|(slot, page)| Op::Unmap { slot, page }),
        1 => (slot.clone(), page.clone(), 1u64..700)
            .prop_map(|(slot, page, pages)| Op::UnmapRange { slot, page, pages }),
        2 => (slot, page, any::<bool>(), ct)
            .prop_map(|(slot, page, writable, ct)| Op::SetFlags { slot, page, writable, ct }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Leaf {
    pa: u64,
    size: PageSize,
    writable: bool,
    ct: CacheType,
}

/// Model: page start → leaf. Lookup finds the page covering an address.
#[derive(Default)]
struct Model(BTreeMap<u64, Leaf>);

impl Model {
    fn covering(&self, v: u64) -> Option<(u64, Leaf)> {
        let (&s, &l) = self.0.range(..=v).next_back()?;
        (v < s + l.size.bytes()).then_some((s, l))
    }
    fn overlaps(&self, v: u64, len: u64) -> bool {
        self.covering(v).is_some() || self.0.range(v..v + len).next().is_some()
    }
}

struct Bump(u64);
impl FrameSource for Bump {
    fn alloc_table_frame(&mut self) -> Option<PhysAddr> {
        (self.0 < BASE + SIZE as u64).then(|| {
            self.0 += 4096;
            PhysAddr::new(self.0 - 4096)
        })
    }
}

fn oracle(arena: &Arena, pml4: PhysAddr, v: u64) -> Option<u64> {
    use x86_64::structures::paging::{OffsetPageTable, PageTable, Translate};
    let offset = arena.host_ptr() as u64 - arena.base().as_u64();
    // SAFETY: the PML4 frame is a page-aligned page of the arena, alive for this call;
    // all tables it references are arena pages mapped at `offset`; nothing else touches
    // the arena during the call.
    let table = unsafe { &mut *((pml4.as_u64() + offset) as *mut PageTable) };
    // SAFETY: as above.
    let opt = unsafe { OffsetPageTable::new(table, VirtAddr::new(offset)) };
    opt.translate_addr(VirtAddr::new(v)).map(|p| p.as_u64())
}

fn flags(writable: bool) -> PageTableFlags {
    if writable {
        PageTableFlags::WRITABLE
    } else {
        PageTableFlags::empty()
    }
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let arena = Arena::new(PhysAddr::new(BASE), SIZE);
    let mut bump = Bump(BASE);
    let mut m = Mapper::create(&arena, RecordingTlb::default(), &mut bump).unwrap();
    let mut model = Model::default();
    for op in ops {
        m.tlb_mut().invalidated.clear();
        match *op {
            Op::Map4K {
                slot,
                page,
                frame,
                ct,
            } => {
                let v = slot_va(slot) + page * 4096;
                let ct = CacheType::ALL[ct];
                let r = m.map(
                    VirtAddr::new(v),
                    PhysAddr::new(frame << 12),
                    PageSize::Size4K,
                    flags(true),
                    ct,
                    &mut bump,
                );
                match model.covering(v) {
                    None => {
                        prop_assert_eq!(r, Ok(()));
                        model.0.insert(
                            v,
                            Leaf {
                                pa: frame << 12,
                                size: PageSize::Size4K,
                                writable: true,
                                ct,
                            },
                        );
                    }
                    Some((s, l)) if l.size == PageSize::Size2M => {
                        prop_assert_eq!(
                            r,
                            Err(MapError::HugePageOverlap {
                                huge_va: VirtAddr::new(s)
                            })
                        )
                    }
                    Some((_, l)) => prop_assert_eq!(
                        r,
                        Err(MapError::AlreadyMapped {
                            va: VirtAddr::new(v),
                            existing: PhysAddr::new(l.pa)
                        })
                    ),
                }
            }
            Op::Map2M { slot, frame, ct } => {
                let v = slot_va(slot);
                let ct = CacheType::ALL[ct];
                let r = m.map(
                    VirtAddr::new(v),
                    PhysAddr::new(frame << 21),
                    PageSize::Size2M,
                    flags(true),
                    ct,
                    &mut bump,
                );
                match model.covering(v) {
                    Some((_, l)) if l.size == PageSize::Size2M => prop_assert_eq!(
                        r,
                        Err(MapError::AlreadyMapped {
                            va: VirtAddr::new(v),
                            existing: PhysAddr::new(l.pa)
                        })
                    ),
                    _ => {
                        // Any 4 KiB page ever mapped here left a page table behind.
                        if let Err(e) = r {
                            prop_assert_eq!(
                                e,
                                MapError::TableInTheWay {
                                    va: VirtAddr::new(v)
                                }
                            );
                        } else {
                            prop_assert!(!model.overlaps(v, 2 << 20));
                            model.0.insert(
                                v,
                                Leaf {
                                    pa: frame << 21,
                                    size: PageSize::Size2M,
                                    writable: true,
                                    ct,
                                },
                            );
                        }
                    }
                }
            }
            Op::Range {
                slot,
                page,
                pages,
                frame,
            } => {
                let v = slot_va(slot) + page * 4096;
                let len = (pages * 4096).min(slot_va(SLOTS) - v);
                let r = m.map_range(
                    VirtAddr::new(v),
                    PhysAddr::new(frame << 12),
                    len,
                    PageSize::Size4K,
                    flags(false),
                    CacheType::WriteBack,
                    &mut bump,
                );
                if model.overlaps(v, len) {
                    prop_assert!(r.is_err(), "overlapping map_range succeeded");
                } else {
                    prop_assert_eq!(r, Ok(()));
                    for i in 0..len / 4096 {
                        model.0.insert(
                            v + i * 4096,
                            Leaf {
                                pa: (frame << 12) + i * 4096,
                                size: PageSize::Size4K,
                                writable: false,
                                ct: CacheType::WriteBack,
                            },
                        );
                    }
                }
            }
            Op::Unmap { slot, page } => {
                let v = slot_va(slot) + page * 4096;
                let r = m.unmap(VirtAddr::new(v));
                match model.covering(v) {
                    None => prop_assert_eq!(r, Err(UnmapError::NotMapped(VirtAddr::new(v)))),
                    Some((s, l)) if s != v => prop_assert_eq!(
                        r,
                        Err(UnmapError::NotPageStart {
                            va: VirtAddr::new(v),
                            size: l.size
                        })
                    ),
                    Some((_, l)) => {
                        prop_assert_eq!(r, Ok((PhysAddr::new(l.pa), l.size)));
                        prop_assert_eq!(&m.tlb().invalidated, &[VirtAddr::new(v)]);
                        model.0.remove(&v);
                    }
                }
            }
            Op::UnmapRange { slot, page, pages } => {
                let v = slot_va(slot) + page * 4096;
                let len = (pages * 4096).min(slot_va(SLOTS) - v);
                let before = model.0.len();
                let r = m.unmap_range(VirtAddr::new(v), len);
                // Valid iff every page in the range is covered by pages starting inside it.
                let mut ok = true;
                let mut x = v;
                let mut starts = Vec::new();
                while x < v + len {
                    match model.covering(x) {
                        Some((s, l)) if s == x && x + l.size.bytes() <= v + len => {
                            starts.push(x);
                            x += l.size.bytes();
                        }
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    prop_assert_eq!(r, Ok(starts.len() as u64));
                    let inv: Vec<VirtAddr> = starts.iter().map(|&s| VirtAddr::new(s)).collect();
                    prop_assert_eq!(&m.tlb().invalidated, &inv);
                    for s in starts {
                        model.0.remove(&s);
                    }
                } else {
                    prop_assert!(r.is_err());
                    prop_assert!(m.tlb().invalidated.is_empty());
                    prop_assert_eq!(model.0.len(), before);
                }
            }
            Op::SetFlags {
                slot,
                page,
                writable,
                ct,
            } => {
                let v = slot_va(slot) + page * 4096;
                let ct = CacheType::ALL[ct];
                let r = m.set_flags(VirtAddr::new(v), flags(writable), ct);
                match model.covering(v) {
                    Some((s, l)) if s == v => {
                        let old = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(old.cache, l.ct);
                        model.0.insert(v, Leaf { writable, ct, ..l });
                    }
                    _ => prop_assert!(r.is_err()),
                }
            }
        }
    }
    // Every page of the window, translated three ways.
    for slot in 0..SLOTS {
        for page in (0..512).step_by(7) {
            let v = slot_va(slot) + page * 4096 + 0x123;
            let want = model.covering(v).map(|(s, l)| (l, l.pa + (v - s)));
            let got = m.translate(VirtAddr::new(v));
            prop_assert_eq!(got.map(|t| t.phys.as_u64()), want.map(|w| w.1), "{:#x}", v);
            prop_assert_eq!(
                oracle(&arena, m.pml4(), v),
                want.map(|w| w.1),
                "oracle {:#x}",
                v
            );
            if let (Some(t), Some((l, _))) = (got, want) {
                prop_assert_eq!(t.size, l.size);
                prop_assert_eq!(t.cache, l.ct);
                // Exactly the permissions given: cache and PS bits are not flags.
                prop_assert_eq!(t.flags, PageTableFlags::PRESENT | flags(l.writable));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn mapper_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }
}
