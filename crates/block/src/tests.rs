//! Splitting, names, and the provided read/write over a recording device.

use super::*;
use alloc::string::ToString;
use alloc::vec;

fn sg(entries: &[(u64, usize)]) -> SgTable {
    let entries = entries.iter().map(|&(p, l)| SgEntry {
        phys: PhysAddr::new(p),
        len: l,
    });
    // SAFETY: these tables are only split and compared, never mapped for a device.
    #[allow(unsafe_code)]
    unsafe {
        SgTable::from_entries(entries)
    }
}

fn limits(max_sectors: u64, max_segments: usize, max_seg: usize, boundary: u64) -> QueueLimits {
    QueueLimits {
        sector_size: 512,
        max_sectors,
        max_segments,
        max_segment_size: max_seg,
        seg_boundary_mask: boundary,
        virt_boundary_mask: 0,
    }
}

fn flat(reqs: &[Request]) -> Vec<(u64, usize)> {
    // Re-joins adjacent pieces so the comparison is about bytes, not cut points.
    let mut v: Vec<(u64, usize)> = Vec::new();
    for r in reqs {
        for e in r.sg.entries() {
            match v.last_mut() {
                Some((a, l)) if *a + *l as u64 == e.phys.as_u64() => *l += e.len,
                _ => v.push((e.phys.as_u64(), e.len)),
            }
        }
    }
    v
}

/// Every request within the limits, whole sectors, consecutive LBAs, and together the
/// same bytes in the same order.
fn check(lba: u64, input: &SgTable, reqs: &[Request], l: &QueueLimits) {
    let mut next = lba;
    for r in reqs {
        assert_eq!(r.lba, next);
        let bytes: usize = r.sg.entries().iter().map(|e| e.len).sum();
        assert_eq!(bytes, r.sectors as usize * l.sector_size);
        assert!(r.sectors <= l.max_sectors, "{r:?}");
        assert!(r.segments <= l.max_segments, "{r:?}");
        assert_eq!(r.segments, count_segments(r.sg.entries(), l));
        for e in r.sg.entries() {
            assert!(e.len <= l.max_segment_size);
            let a = e.phys.as_u64();
            assert_eq!(
                a | l.seg_boundary_mask,
                (a + e.len as u64 - 1) | l.seg_boundary_mask,
                "piece crosses the boundary: {e:?}"
            );
        }
        next += r.sectors;
    }
    let want: Vec<(u64, usize)> = flat(&[Request {
        lba: 0,
        sectors: 0,
        sg: input.clone(),
        segments: 0,
    }]);
    assert_eq!(flat(reqs), want);
}

#[test]
fn a_request_within_the_limits_is_not_split() {
    let l = limits(256, 4, 65536, 0xffff_ffff);
    let t = sg(&[(0x10000, 4096), (0x30000, 4096)]);
    let r = split_request(7, &t, &l).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].lba, r[0].sectors, r[0].segments), (7, 16, 2));
    check(7, &t, &r, &l);
}

#[test]
fn max_sectors_splits_at_sector_counts() {
    let l = limits(8, 128, 1 << 20, u64::MAX);
    // One contiguous 20-sector buffer: 8 + 8 + 4.
    let t = sg(&[(0x100000, 20 * 512)]);
    let r = split_request(100, &t, &l).unwrap();
    let shape: Vec<(u64, u64)> = r.iter().map(|r| (r.lba, r.sectors)).collect();
    assert_eq!(shape, vec![(100, 8), (108, 8), (116, 4)]);
    check(100, &t, &r, &l);
}

#[test]
fn max_segments_splits_and_a_partial_sector_moves_on() {
    // Three scattered 768-byte pieces (1.5 sectors each), at most two segments per
    // request: the first request may hold 1536 bytes = 3 sectors exactly.
    let l = limits(1000, 2, 1 << 20, u64::MAX);
    let t = sg(&[
        (0x10000, 768),
        (0x20000, 768),
        (0x30000, 768),
        (0x40000, 768),
    ]);
    let r = split_request(0, &t, &l).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].sectors, 3);
    assert_eq!(r[1].sectors, 3);
    check(0, &t, &r, &l);
    // With pieces of 700 bytes the two-segment request holds 1400 bytes: 2 sectors
    // (1024), and the 376-byte tail of the second piece starts the next request.
    let t = sg(&[(0x10000, 700), (0x20000, 700), (0x30000, 648)]);
    let r = split_request(0, &t, &l).unwrap();
    assert_eq!(r[0].sectors, 2);
    assert_eq!(
        r[0].sg.entries()[1],
        SgEntry {
            phys: PhysAddr::new(0x20000),
            len: 324
        }
    );
    assert_eq!(r[1].sg.entries()[0].phys.as_u64(), 0x20000 + 324);
    check(0, &t, &r, &l);
}

#[test]
fn contiguous_pieces_merge_into_one_segment_up_to_the_segment_size() {
    let l = limits(1000, 1, 8192, u64::MAX);
    // Four contiguous 4 KiB pages: two segments of 8 KiB; one segment per request.
    let t = sg(&[
        (0x10000, 4096),
        (0x11000, 4096),
        (0x12000, 4096),
        (0x13000, 4096),
    ]);
    let r = split_request(0, &t, &l).unwrap();
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|r| r.segments == 1 && r.sectors == 16));
    check(0, &t, &r, &l);
}

#[test]
fn the_segment_boundary_cuts_segments() {
    // 64 KiB boundary: a buffer from 60 KiB to 68 KiB is two segments.
    let l = limits(1000, 1, 1 << 20, 0xffff);
    let t = sg(&[(0xf000, 8192)]);
    let r = split_request(0, &t, &l).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0].sg.entries(),
        &[SgEntry {
            phys: PhysAddr::new(0xf000),
            len: 4096
        }]
    );
    check(0, &t, &r, &l);
    // With room for two segments it is one request of two segments.
    let l2 = limits(1000, 2, 1 << 20, 0xffff);
    let r = split_request(0, &t, &l2).unwrap();
    assert_eq!((r.len(), r[0].segments), (1, 2));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let l = limits(8, 4, 4096, u64::MAX);
    assert_eq!(
        split_request(0, &sg(&[(0x1000, 100)]), &l),
        Err(BlockError::NotSectorMultiple {
            len: 100,
            sector: 512
        })
    );
    assert_eq!(
        split_request(0, &sg(&[(0x1000, 0)]), &l),
        Err(BlockError::EmptySegment)
    );
    assert!(matches!(
        split_request(0, &SgTable::new(), &l),
        Err(BlockError::NotSectorMultiple { len: 0, .. })
    ));
    // One segment of at most 256 bytes can never hold a 512-byte sector.
    let tiny = limits(8, 1, 256, u64::MAX);
    assert!(matches!(
        split_request(0, &sg(&[(0x1000, 512)]), &tiny),
        Err(BlockError::LimitsTooSmall(_))
    ));
    let zero = limits(0, 1, 4096, u64::MAX);
    assert!(matches!(
        split_request(0, &sg(&[(0x1000, 512)]), &zero),
        Err(BlockError::LimitsTooSmall(_))
    ));
}

#[test]
fn many_shapes_keep_every_byte_in_order() {
    // A deterministic sweep over piece sizes, gaps and limits.
    let mut seed = 0x1234_5678u32;
    let mut rnd = |n: u32| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed % n
    };
    let mut split = 0;
    for _ in 0..300 {
        let mut entries = Vec::new();
        let mut at = 0x10_0000u64;
        let n = 1 + rnd(12) as usize;
        let mut total = 0;
        for i in 0..n {
            let len = if i + 1 == n {
                // Round the total up to whole sectors.
                let r = (total + 2) % 512;
                2 + if r == 0 { 0 } else { 512 - r } + 512 * rnd(20) as usize
            } else {
                2 * (1 + rnd(3000) as usize)
            };
            total += len;
            entries.push((at, len));
            at += len as u64 + if rnd(2) == 0 { 0 } else { 2 * rnd(5000) as u64 };
        }
        let t = sg(&entries);
        let total: usize = t.entries().iter().map(|e| e.len).sum();
        assert_eq!(total % 512, 0);
        let bounds = [0xfffu64, 0xffff, u64::MAX];
        let l = limits(
            1 + rnd(64) as u64,
            2 + rnd(8) as usize,
            1024 * (1 + rnd(16) as usize),
            bounds[rnd(3) as usize],
        );
        match split_request(5, &t, &l) {
            Ok(r) => {
                check(5, &t, &r, &l);
                if r.len() > 1 {
                    split += 1;
                }
            }
            Err(BlockError::LimitsTooSmall(_)) => {}
            Err(e) => panic!("{e} for {entries:?} {l:?}"),
        }
    }
    std::println!("{split} of 300 split");
    assert!(split > 150, "the sweep hardly splits: {split}");
}

/// Records the requests it gets; fails the one at `fail_lba`.
struct Recorder {
    limits: QueueLimits,
    cap: u64,
    got: Vec<(Op, u64, u64)>,
    fail_lba: Option<u64>,
    flushes: usize,
}

impl BlockDevice for Recorder {
    fn name(&self) -> &str {
        "sda"
    }
    fn sector_size(&self) -> usize {
        512
    }
    fn capacity(&self) -> u64 {
        self.cap
    }
    fn limits(&self) -> QueueLimits {
        self.limits
    }
    fn submit(&mut self, op: Op, req: Request) -> Result<SgTable, BlockError> {
        assert!(req.sectors <= self.limits.max_sectors);
        if self.fail_lba == Some(req.lba) {
            return Err(BlockError::Device {
                disk: "sda".to_string(),
                lba: req.lba,
                detail: "media error".to_string(),
            });
        }
        self.got.push((op, req.lba, req.sectors));
        Ok(req.sg)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.flushes += 1;
        Ok(())
    }
}

#[test]
fn read_and_write_check_the_disk_and_submit_the_split_requests() {
    let mut d = Recorder {
        limits: limits(4, 8, 65536, u64::MAX),
        cap: 100,
        got: Vec::new(),
        fail_lba: None,
        flushes: 0,
    };
    let t = sg(&[(0x10000, 10 * 512)]);
    d.read(90, &t).unwrap();
    d.write(0, &t).unwrap();
    assert_eq!(
        d.got,
        vec![
            (Op::Read, 90, 4),
            (Op::Read, 94, 4),
            (Op::Read, 98, 2),
            (Op::Write, 0, 4),
            (Op::Write, 4, 4),
            (Op::Write, 8, 2)
        ]
    );
    assert_eq!(
        d.read(91, &t),
        Err(BlockError::OutOfRange {
            lba: 91,
            count: 10,
            capacity: 100
        })
    );
    assert!(matches!(
        d.read(u64::MAX, &t),
        Err(BlockError::OutOfRange { .. })
    ));
    d.fail_lba = Some(4);
    d.got.clear();
    let e = d.write(0, &t).unwrap_err();
    assert_eq!(e.to_string(), "sda: I/O error at sector 4: media error");
    assert_eq!(
        d.got,
        vec![(Op::Write, 0, 4)],
        "stops at the failed request"
    );
    d.flush().unwrap();
    assert_eq!(d.flushes, 1);
}

#[test]
fn linux_disk_names() {
    let names: Vec<String> = [0, 1, 25, 26, 27, 51, 52, 701, 702]
        .iter()
        .map(|&i| sd_name(i))
        .collect();
    assert_eq!(
        names,
        ["sda", "sdb", "sdz", "sdaa", "sdab", "sdaz", "sdba", "sdzz", "sdaaa"]
    );
    assert_eq!(nvme_name(0, 1), "nvme0n1");
    assert_eq!(nvme_name(2, 3), "nvme2n3");
}

#[test]
fn limits_from_the_dma_parameters() {
    let p = DmaParams {
        max_segment_size: 4 << 20,
        segment_boundary_mask: 0xffff_ffff,
        ..DmaParams::default()
    };
    let l = QueueLimits::from_dma(&p, 512, 168, 65535);
    assert_eq!(l.max_segment_size, 4 << 20);
    assert_eq!(l.seg_boundary_mask, 0xffff_ffff);
    assert_eq!(
        (l.max_segments, l.max_sectors, l.sector_size),
        (168, 65535, 512)
    );
}

#[test]
fn the_virt_boundary_ends_a_request_at_a_gap_between_pages() {
    let l = limits(1000, 1000, 1 << 20, u64::MAX).with_virt_boundary(0xfff);
    // Page-shaped pieces: start inside a page, whole pages, end inside a page: one
    // request, PRP-able.
    let t = sg(&[(0x10200, 0xe00), (0x30000, 0x1000), (0x50000, 0x400)]);
    let r = split_request(0, &t, &l).unwrap();
    assert_eq!(r.len(), 1);
    check(0, &t, &r, &l);
    // A piece ending inside a page followed by another: the request ends at the gap
    // (the gap is on a sector edge), and the next request starts there.
    let t = sg(&[
        (0x10000, 0x400),
        (0x30000, 0x1000),
        (0x50200, 0x200),
        (0x60000, 0x200),
    ]);
    let r = split_request(8, &t, &l).unwrap();
    let shape: Vec<(u64, u64)> = r.iter().map(|r| (r.lba, r.sectors)).collect();
    assert_eq!(shape, vec![(8, 2), (10, 8), (18, 1), (19, 1)]);
    check(8, &t, &r, &l);
    for req in &r {
        let e = req.sg.entries();
        for w in e.windows(2) {
            let end = w[0].phys.as_u64() + w[0].len as u64;
            assert!(
                !l.gap_breaks_virt_boundary(end, w[1].phys.as_u64()),
                "{req:?}"
            );
        }
    }
    // Without the virt boundary the same list is one request.
    let plain = limits(1000, 1000, 1 << 20, u64::MAX);
    assert_eq!(split_request(8, &t, &plain).unwrap().len(), 1);
    // A gap inside a sector cannot be split away: a clear error.
    let t = sg(&[(0x10000, 0x300), (0x30100, 0x100)]);
    let e = split_request(0, &t, &l).unwrap_err();
    assert_eq!(
        e,
        BlockError::GapInSector {
            offset: 0x300,
            mask: 0xfff
        }
    );
    assert!(e.to_string().contains("bounce"), "{e}");
}

#[test]
fn a_synchronous_driver_refuses_start_and_has_nothing_to_complete() {
    let mut d = Recorder {
        limits: limits(4, 8, 65536, u64::MAX),
        cap: 100,
        got: Vec::new(),
        fail_lba: None,
        flushes: 0,
    };
    assert_eq!(d.queue_depth(), 1);
    let req = Request {
        lba: 0,
        sectors: 1,
        sg: sg(&[(0x10000, 512)]),
        segments: 1,
    };
    let e = d.start(Op::Read, req).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sda: the driver carries one request at a time (queue depth 1)"
    );
    assert_eq!(d.complete().unwrap_err(), BlockError::NothingInFlight);
    assert!(d.got.is_empty(), "start must not fall back to submit");
}
