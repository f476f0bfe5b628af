//! ioremap virtual-range allocator and page-span helper.

use mm::ioremap::*;
use mm::{PhysAddr, VirtAddr};

const WIN: u64 = 0xffff_c000_0000_0000;
const PG: u64 = 4096;

fn space(pages: u64) -> IoRemapSpace {
    IoRemapSpace::new(VirtAddr::new(WIN), pages * PG).unwrap()
}

#[test]
fn page_span_rounds_any_request_out_to_pages() {
    let s = page_span(0xfed9_0000, 0x1000).unwrap();
    assert_eq!(
        (s.base, s.pages, s.offset),
        (PhysAddr::new(0xfed9_0000), 1, 0)
    );
    // Unaligned start and size crossing a page boundary.
    let s = page_span(0xfee0_0ff8, 0x10).unwrap();
    assert_eq!(
        (s.base.as_u64(), s.pages, s.offset),
        (0xfee0_0000, 2, 0xff8)
    );
    let s = page_span(0x1234_5678, 1).unwrap();
    assert_eq!(
        (s.base.as_u64(), s.pages, s.offset),
        (0x1234_5000, 1, 0x678)
    );
    let s = page_span(0x1000, 0x2001).unwrap();
    assert_eq!(s.pages, 3);
    assert_eq!(page_span(0x1000, 0), Err(SpanError::Empty));
    assert_eq!(page_span(u64::MAX - 5, 0x10), Err(SpanError::Overflow));
    assert_eq!(
        page_span((1 << 52) - 0x1000, 0x1001),
        Err(SpanError::Overflow)
    );
    assert!(page_span((1 << 52) - 0x1000, 0x1000).is_ok());
}

#[test]
fn ranges_are_separated_by_guard_pages() {
    let mut s = space(64);
    let a = s.alloc(3).unwrap();
    let b = s.alloc(1).unwrap();
    let c = s.alloc(2).unwrap();
    // The window starts with a guard page, and each range is followed by one.
    assert_eq!(a.as_u64(), WIN + PG);
    assert_eq!(b.as_u64(), a.as_u64() + 4 * PG);
    assert_eq!(c.as_u64(), b.as_u64() + 2 * PG);
    assert_eq!(s.allocated_pages(), 6);
    assert_eq!(s.find(VirtAddr::new(a.as_u64() + 2 * PG + 5)), Some((a, 3)));
    assert_eq!(
        s.find(VirtAddr::new(a.as_u64() + 3 * PG)),
        None,
        "guard page"
    );
    let ranges: Vec<_> = s.ranges().collect();
    assert_eq!(ranges, [(a, 3), (b, 1), (c, 2)]);
}

#[test]
fn freed_gaps_are_reused_first_fit_with_guards() {
    let mut s = space(64);
    let a = s.alloc(4).unwrap();
    let b = s.alloc(4).unwrap();
    let _c = s.alloc(4).unwrap();
    assert_eq!(s.free(b), Ok(4));
    // 4 pages + guard fit exactly where b was (b's slot is 5 pages up to c).
    let d = s.alloc(4).unwrap();
    assert_eq!(d, b);
    s.free(d).unwrap();
    // 5 pages would leave no guard before c: goes after c instead.
    let e = s.alloc(5).unwrap();
    assert!(e.as_u64() > b.as_u64() + 5 * PG);
    // Smaller requests use the hole.
    let f = s.alloc(2).unwrap();
    assert_eq!(f, b);
    assert_eq!(s.free(a), Ok(4));
}

#[test]
fn exhaustion_and_bad_requests_are_errors() {
    let mut s = space(8); // guard + 7 usable pages
    assert_eq!(s.alloc(0), Err(IoRemapError::ZeroPages));
    assert_eq!(
        s.alloc(7),
        Err(IoRemapError::OutOfSpace { pages: 7 }),
        "needs a trailing guard"
    );
    let a = s.alloc(6).unwrap();
    assert_eq!(s.alloc(1), Err(IoRemapError::OutOfSpace { pages: 1 }));
    assert_eq!(
        s.alloc(u64::MAX),
        Err(IoRemapError::OutOfSpace { pages: u64::MAX })
    );
    assert_eq!(
        s.alloc_aligned(1, 3 * PG),
        Err(IoRemapError::BadAlignment(3 * PG))
    );
    assert_eq!(
        s.alloc_aligned(1, 512),
        Err(IoRemapError::BadAlignment(512))
    );
    s.free(a).unwrap();
    assert!(s.alloc(6).is_ok());
    assert_eq!(
        IoRemapSpace::new(VirtAddr::new(WIN + 1), 16 * PG).unwrap_err(),
        IoRemapError::BadWindow
    );
    assert_eq!(
        IoRemapSpace::new(VirtAddr::new(WIN), PG).unwrap_err(),
        IoRemapError::BadWindow
    );
}

#[test]
fn double_free_and_foreign_free_are_distinguished() {
    let mut s = space(32);
    let a = s.alloc(2).unwrap();
    let b = s.alloc(2).unwrap();
    s.free(a).unwrap();
    assert_eq!(s.free(a), Err(IoRemapError::DoubleFree(a)));
    let inside = VirtAddr::new(b.as_u64() + PG);
    assert_eq!(s.free(inside), Err(IoRemapError::NotAllocated(inside)));
    let never = VirtAddr::new(WIN + 20 * PG);
    assert_eq!(s.free(never), Err(IoRemapError::NotAllocated(never)));
    // Once the address is handed out again, freeing it is legitimate.
    let c = s.alloc(1).unwrap();
    assert_eq!(c, a);
    assert_eq!(s.free(c), Ok(1));
    assert_eq!(s.allocated_pages(), 2);
    assert!(IoRemapError::DoubleFree(a)
        .to_string()
        .contains("double free"));
}

#[test]
fn aligned_allocation_for_huge_pages() {
    let mut s = IoRemapSpace::new(VirtAddr::new(WIN), 16 << 20).unwrap();
    let small = s.alloc(1).unwrap();
    let big = s.alloc_aligned(512, 2 << 20).unwrap();
    assert_eq!(big.as_u64() % (2 << 20), 0);
    assert!(big.as_u64() >= small.as_u64() + 2 * PG);
    // The alignment gap below `big` is still usable, first fit.
    let next = s.alloc(1).unwrap();
    assert_eq!(next.as_u64(), small.as_u64() + 2 * PG);
    // Something too big for the gap lands after `big` and its guard page.
    let after = s.alloc(600).unwrap();
    assert_eq!(
        after.as_u64(),
        big.as_u64() + 513 * PG,
        "guard after the big range"
    );
}
