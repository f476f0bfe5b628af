//! NCQ against the model: several FPDMA commands in flight, ended out of order, one
//! failing, one never ending, a full queue.

use super::*;
use block::{Op, Tag};
use devmodels::ahci::NcqOrder;

use testbed::request as req;

/// Streaming (scatter-list) mappings still live: the requests' data. The port page
/// and the pool's chunks (one per table in use at once) stay.
fn data_mappings(dev: &DmaDevice) -> usize {
    dev.mappings()
        .iter()
        .filter(|m| m.map_type == dma::MapType::Sg)
        .count()
}

/// `n` one-page buffers (4 KiB = 8 sectors each), none adjacent.
fn bufs(mc: &'static Machine, n: usize) -> Vec<(u64, usize)> {
    pages(mc, n, u64::MAX)
        .into_iter()
        .map(|a| (a, 4096))
        .collect()
}

/// LBA of request `k`: far apart and out of order on the disk.
fn lba_of(k: usize) -> u64 {
    ((k * 37) % 16) as u64 * 64 + 3
}

#[test]
fn eight_queued_reads_are_in_flight_together_and_land_in_their_own_buffers() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    assert_eq!(h.queue_depth(0), 32, "min(NCS + 1, word 75 + 1, 32)");
    assert!(h.disks()[0].id.ncq);
    let b = bufs(mc, 8);
    let mut d = h.disk(0).unwrap();
    assert_eq!(d.queue_depth(), 32);
    let mut tags = Vec::new();
    for (k, &e) in b.iter().enumerate() {
        tags.push(d.start(Op::Read, req(lba_of(k), &[e])).unwrap());
    }
    assert_eq!(tags, (0..8).map(Tag).collect::<Vec<_>>());
    // All eight are at the HBA at once: queued, PxCI clear, PxSACT holding them.
    assert_eq!(md.ncq_queued(0), (0..8).collect::<Vec<_>>());
    assert_eq!(md.read32(regs::port(0, regs::PX_CI)), 0);
    assert_eq!(
        data_mappings(&dev),
        8,
        "each request mapped until its tag ends"
    );
    let mut seen = Vec::new();
    for _ in 0..8 {
        let (tag, r) = d.complete().unwrap();
        r.unwrap();
        seen.push(tag.0 as usize);
    }
    seen.sort();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    for (k, &(a, l)) in b.iter().enumerate() {
        let want = md.disk_bytes(0, lba_of(k) as usize * 512, l);
        assert_eq!(mc.bytes(a, l), want, "request {k}");
    }
    // FPDMA commands, count in FEATURES, tag = slot, one command table per tag.
    let cmds: Vec<CmdLog> = md
        .commands()
        .into_iter()
        .filter(|c| c.command == regs::ATA_READ_FPDMA_QUEUED)
        .collect();
    assert_eq!(cmds.len(), 8);
    let mut ctbas: Vec<u64> = cmds.iter().map(|c| c.ctba).collect();
    ctbas.sort();
    ctbas.dedup();
    assert_eq!(ctbas.len(), 8, "a table per tag");
    for c in &cmds {
        assert_eq!((c.tag, c.count), (Some(c.slot), 8));
        assert_eq!(c.prdt, [(b[c.slot].0, 4096)]);
    }
    assert!(matches!(d.complete(), Err(BlockError::NothingInFlight)));
    assert_eq!(data_mappings(&dev), 0, "no request left mapped");
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn tags_end_in_the_order_the_device_picks() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    md.set_ncq_order(0, NcqOrder::Hold);
    let b = bufs(mc, 4);
    let mut d = h.disk(0).unwrap();
    for (k, &e) in b.iter().enumerate() {
        d.start(Op::Read, req(lba_of(k), &[e])).unwrap();
    }
    for tag in [2usize, 0, 3, 1] {
        assert!(md.ncq_complete(0, tag));
        let (t, r) = d.complete().unwrap();
        assert_eq!(t, Tag(tag as u32));
        r.unwrap();
        let (a, l) = b[tag];
        assert_eq!(
            mc.bytes(a, l),
            md.disk_bytes(0, lba_of(tag) as usize * 512, l)
        );
    }
    // The newest first, by the device's own choice; writes too.
    md.set_ncq_order(0, NcqOrder::Lifo);
    for (k, &(a, l)) in b.iter().enumerate() {
        scatter(mc, &[(a, l)], &vec![0x10 + k as u8; l]);
        d.start(Op::Write, req(1000 + 8 * k as u64, &[(a, l)]))
            .unwrap();
    }
    let order: Vec<u32> = (0..4).map(|_| d.complete().unwrap().0 .0).collect();
    assert_eq!(order, [3, 2, 1, 0]);
    for k in 0..4 {
        assert_eq!(
            md.disk_bytes(0, (1000 + 8 * k) * 512, 4096),
            vec![0x10 + k as u8; 4096]
        );
    }
    assert_eq!(data_mappings(&dev), 0);
}

#[test]
fn a_media_error_on_one_tag_fails_that_request_and_the_others_complete() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    // Inside request 2 (lba_of(2) = 8 * 64 + 3 .. + 8).
    let bad = lba_of(2) + 5;
    md.set_media_error(0, bad);
    let b = bufs(mc, 6);
    let mut d = h.disk(0).unwrap();
    for (k, &e) in b.iter().enumerate() {
        d.start(Op::Read, req(lba_of(k), &[e])).unwrap();
    }
    let mut results: Vec<(u32, Result<(), BlockError>)> = (0..6)
        .map(|_| {
            let (t, r) = d.complete().unwrap();
            (t.0, r.map(|_| ()))
        })
        .collect();
    results.sort_by_key(|r| r.0);
    for (tag, r) in &results {
        if *tag == 2 {
            let e = r.clone().unwrap_err();
            let s = e.to_string();
            assert!(
                s.starts_with(&format!("sda: I/O error at sector {}: ", lba_of(2)))
                    && s.contains("media error")
                    && s.contains(&format!("lba {bad}")),
                "{s}"
            );
        } else {
            assert!(r.is_ok(), "tag {tag}: {r:?}");
            let (a, l) = b[*tag as usize];
            assert_eq!(
                mc.bytes(a, l),
                md.disk_bytes(0, lba_of(*tag as usize) as usize * 512, l)
            );
        }
    }
    assert_eq!(
        md.resets(0),
        2,
        "COMRESET after the NCQ error and after the retry's"
    );
    // The tags still outstanding at the error were run again one at a time.
    let retried: Vec<u64> = md
        .commands()
        .iter()
        .filter(|c| c.command == regs::ATA_READ_DMA_EXT)
        .map(|c| c.lba)
        .collect();
    assert_eq!(retried, [lba_of(2), lba_of(3), lba_of(4), lba_of(5)]);
    assert_eq!(data_mappings(&dev), 0, "every request unmapped");
    // The queue works again.
    d.start(Op::Read, req(0, &[b[0]])).unwrap();
    assert!(d.complete().unwrap().1.is_ok());
    assert_eq!(mc.bytes(b[0].0, 4096), md.disk_bytes(0, 0, 4096));
}

#[test]
fn a_tag_that_never_ends_times_out_every_outstanding_one_and_the_next_request_works() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    md.set_ncq_stuck(0, 1);
    let b = bufs(mc, 4);
    let mut d = h.disk(0).unwrap();
    for (k, &e) in b.iter().enumerate() {
        d.start(Op::Read, req(lba_of(k), &[e])).unwrap();
    }
    let t0 = clock.us();
    let mut ends = Vec::new();
    for _ in 0..4 {
        let (t, r) = d.complete().unwrap();
        ends.push((t.0, r.is_ok()));
    }
    assert_eq!(ends, [(0, true), (2, true), (3, true), (1, false)]);
    let waited = clock.us() - t0;
    assert!((50_000..100_000).contains(&waited), "waited {waited} µs");
    assert_eq!(md.resets(0), 1);
    // A device that answers nothing: every outstanding tag times out, after one
    // timeout, not one each.
    md.set_hung(0, true);
    for (k, &e) in b.iter().enumerate().take(3) {
        d.start(Op::Read, req(lba_of(k), &[e])).unwrap();
    }
    let t0 = clock.us();
    for _ in 0..3 {
        let (_, r) = d.complete().unwrap();
        let e = r.unwrap_err().to_string();
        assert!(e.contains("command 0x60 did not complete in 50 ms"), "{e}");
    }
    let waited = clock.us() - t0;
    assert!((50_000..100_000).contains(&waited), "waited {waited} µs");
    assert!(matches!(d.complete(), Err(BlockError::NothingInFlight)));
    assert_eq!(
        data_mappings(&dev),
        0,
        "timed-out requests unmapped after COMRESET"
    );
    md.set_hung(0, false);
    d.start(Op::Read, req(lba_of(1), &[b[1]])).unwrap();
    assert!(d.complete().unwrap().1.is_ok());
    assert_eq!(
        mc.bytes(b[1].0, 4096),
        md.disk_bytes(0, lba_of(1) as usize * 512, 4096)
    );
}

#[test]
fn a_full_queue_is_refused_and_a_disk_without_ncq_does_not_queue() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0, 1]);
    md.set_ncq_depth(0, 4);
    md.set_ncq_depth(1, 0);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    assert_eq!((h.queue_depth(0), h.queue_depth(1)), (4, 1));
    let b = bufs(mc, 5);
    let mut d = h.disk(0).unwrap();
    for &e in &b[..4] {
        d.start(Op::Read, req(0, &[e])).unwrap();
    }
    assert_eq!(
        d.start(Op::Read, req(0, &[b[4]])),
        Err(BlockError::QueueFull { depth: 4 })
    );
    for _ in 0..4 {
        d.complete().unwrap().1.unwrap();
    }
    assert_eq!(data_mappings(&dev), 0, "no request left mapped");
    let mut d1 = h.disk(1).unwrap();
    assert_eq!(d1.queue_depth(), 1);
    assert_eq!(
        d1.start(Op::Read, req(0, &[b[0]])),
        Err(BlockError::NotQueued { disk: "sdb".into() })
    );
    // The one-at-a-time path is what that disk uses.
    d1.read(0, &table(&[b[0]])).unwrap();
    assert_eq!(mc.bytes(b[0].0, 4096), md.disk_bytes(1, 0, 4096));
    assert_eq!(data_mappings(&dev), 0);
}

#[test]
fn a_synchronous_command_waits_for_the_queue_and_keeps_its_results() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    let b = bufs(mc, 3);
    let mut d = h.disk(0).unwrap();
    d.start(Op::Read, req(lba_of(0), &[b[0]])).unwrap();
    d.start(Op::Read, req(lba_of(1), &[b[1]])).unwrap();
    // READ DMA EXT is not issued while FPDMA commands are active.
    d.read(7, &table(&[b[2]])).unwrap();
    d.flush().unwrap();
    let log = md.commands();
    let first_sync = log.iter().position(|c| c.command == 0x25).unwrap();
    assert_eq!(log.iter().filter(|c| c.tag.is_some()).count(), 2);
    assert!(log[..first_sync].iter().filter(|c| c.tag.is_some()).count() == 2);
    for k in 0..2 {
        let (t, r) = d.complete().unwrap();
        assert_eq!(t, Tag(k));
        r.unwrap();
    }
    assert_eq!(mc.bytes(b[2].0, 4096), md.disk_bytes(0, 7 * 512, 4096));
    assert_eq!(data_mappings(&dev), 0);
}

#[test]
fn queued_reads_complete_under_interrupts() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let (mut h, _clock) = probe_irq(&md, device(mc, DmaBackend::Direct));
    md.set_ncq_order(0, NcqOrder::Lifo);
    let b = bufs(mc, 8);
    let mut d = h.disk(0).unwrap();
    for (k, &e) in b.iter().enumerate() {
        d.start(Op::Read, req(lba_of(k), &[e])).unwrap();
    }
    for _ in 0..8 {
        let (t, r) = d.complete().unwrap();
        r.unwrap();
        let (a, l) = b[t.0 as usize];
        assert_eq!(
            mc.bytes(a, l),
            md.disk_bytes(0, lba_of(t.0 as usize) as usize * 512, l)
        );
    }
    assert!(matches!(d.complete(), Err(BlockError::NothingInFlight)));
}

#[test]
fn outstanding_buffers_stay_mapped_until_the_port_is_reset() {
    // Behind the VT-d model, with a device that goes on with its queue whenever the
    // driver touches a register (a port stop included): a buffer unmapped before the
    // COMRESET would be a DMA fault.
    let mc = machine();
    let dom = testbed::vtd::setup(mc, hal::Bdf::b(0, 0x1f, 2));
    let md = model(testbed::vtd::Translated(dom.clone()), true, &[0]);
    let clock = Clock::default();
    let shared: dma::SharedDomain = dom.clone();
    let dev = device(mc, DmaBackend::Iommu(shared));
    let mut h = probe(&md, dev.clone(), &clock);
    md.set_ncq_eager(0, true);
    md.set_media_error(0, lba_of(0) + 1);
    let b = bufs(mc, 4);
    let mut d = h.disk(0).unwrap();
    for (k, &e) in b.iter().enumerate() {
        d.start(Op::Read, req(lba_of(k), &[e])).unwrap();
    }
    let mut ends: Vec<(u32, bool)> = (0..4)
        .map(|_| {
            let (t, r) = d.complete().unwrap();
            (t.0, r.is_ok())
        })
        .collect();
    assert!(md.errors().is_empty(), "{:?}", md.errors());
    ends.sort();
    assert_eq!(ends, [(0, false), (1, true), (2, true), (3, true)]);
    for (k, &(a, l)) in b.iter().enumerate().skip(1) {
        assert_eq!(
            mc.bytes(a, l),
            md.disk_bytes(0, lba_of(k) as usize * 512, l)
        );
    }
    assert_eq!(data_mappings(&dev), 0);
}

#[test]
fn a_32_bit_hba_queues_high_buffers_through_swiotlb_and_copies_back_at_the_end() {
    let mc = machine();
    let md = model(Direct(mc), false, &[0]);
    md.set_ncq_order(0, NcqOrder::Hold);
    let clock = Clock::default();
    // SAFETY: the fake machine's swiotlb region, reserved for this pool alone.
    let pool =
        Arc::new(unsafe { Swiotlb::new(mc, PhysAddr::new(SWIOTLB_BASE), SWIOTLB_SIZE) }.unwrap());
    let dev = device(mc, DmaBackend::Swiotlb(pool.clone()));
    let mut h = probe(&md, dev.clone(), &clock);
    let b = bufs(mc, 3);
    assert!(b.iter().all(|&(a, _)| a >= HIGH), "buffers above 4 GiB");
    let mut d = h.disk(0).unwrap();
    for (k, &e) in b.iter().enumerate() {
        d.start(Op::Read, req(lba_of(k), &[e])).unwrap();
    }
    // The HBA writes bounce slots below 4 GiB; a buffer gets its data when its tag
    // ends (the unmap copies it back), not before.
    assert!(md.ncq_complete(0, 1));
    assert_eq!(mc.bytes(b[1].0, 4096), vec![0; 4096], "not copied back yet");
    let (t, r) = d.complete().unwrap();
    assert_eq!(t, Tag(1));
    r.unwrap();
    assert_eq!(
        mc.bytes(b[1].0, 4096),
        md.disk_bytes(0, lba_of(1) as usize * 512, 4096)
    );
    for tag in [2, 0] {
        assert!(md.ncq_complete(0, tag));
        assert_eq!(d.complete().unwrap().0, Tag(tag as u32));
        let (a, l) = b[tag];
        assert_eq!(
            mc.bytes(a, l),
            md.disk_bytes(0, lba_of(tag) as usize * 512, l)
        );
    }
    for c in md.commands().iter().filter(|c| c.tag.is_some()) {
        assert!(
            c.prdt
                .iter()
                .all(|&(a, l)| a >= SWIOTLB_BASE
                    && a + l as u64 <= SWIOTLB_BASE + SWIOTLB_SIZE as u64)
        );
    }
    assert_eq!(pool.stats().used_slots, 0, "bounce slots released");
}

#[test]
fn a_full_bounce_pool_is_busy_not_an_io_error_and_the_request_starts_after_a_completion() {
    let mc = machine();
    let md = model(Direct(mc), false, &[0]);
    md.set_ncq_order(0, NcqOrder::Hold);
    let clock = Clock::default();
    // Room for two one-page bounces only (4 slots of 2 KiB).
    // SAFETY: the fake machine's swiotlb region, reserved for this pool alone.
    let pool = Arc::new(unsafe { Swiotlb::new(mc, PhysAddr::new(SWIOTLB_BASE), 8192) }.unwrap());
    let dev = device(mc, DmaBackend::Swiotlb(pool.clone()));
    let mut h = probe(&md, dev.clone(), &clock);
    let b = bufs(mc, 3);
    let mut d = h.disk(0).unwrap();
    d.start(Op::Read, req(lba_of(0), &[b[0]])).unwrap();
    d.start(Op::Read, req(lba_of(1), &[b[1]])).unwrap();
    let third = req(lba_of(2), &[b[2]]);
    match d.start(Op::Read, third.clone()) {
        Err(BlockError::Busy { disk, lba, detail }) => {
            assert_eq!((disk.as_str(), lba), ("sda", lba_of(2)));
            assert!(detail.contains("swiotlb buffer is full"), "{detail}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // Nothing of the refused request reached the HBA or stayed mapped.
    assert_eq!(md.ncq_queued(0), vec![0, 1]);
    assert_eq!(data_mappings(&dev), 2);
    assert!(md.ncq_complete(0, 0));
    let (t, r) = d.complete().unwrap();
    assert_eq!(t, Tag(0));
    r.unwrap();
    // A completion gave its slots back: the same request now starts.
    let t2 = d.start(Op::Read, third).unwrap();
    for tag in [1, t2.0 as usize] {
        assert!(md.ncq_complete(0, tag));
        assert_eq!(d.complete().unwrap().0, Tag(tag as u32));
    }
    for (k, &(a, l)) in b.iter().enumerate() {
        let want = md.disk_bytes(0, lba_of(k) as usize * 512, l);
        assert_eq!(mc.bytes(a, l), want, "request {k}");
    }
    assert_eq!(pool.stats().used_slots, 0, "bounce slots released");
}

#[test]
fn a_tag_is_not_given_out_again_before_its_completion_is_returned() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    md.set_ncq_order(0, NcqOrder::Hold);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    let b = bufs(mc, 5);
    let mut d = h.disk(0).unwrap();
    for (k, &e) in b.iter().take(3).enumerate() {
        assert_eq!(
            d.start(Op::Read, req(lba_of(k), &[e])).unwrap(),
            Tag(k as u32)
        );
    }
    // Tags 0 and 1 end together; the caller hears of tag 0 first.
    assert!(md.ncq_complete(0, 0));
    assert!(md.ncq_complete(0, 1));
    assert_eq!(d.complete().unwrap().0, Tag(0));
    // Tag 1 has ended at the HBA but its completion is still to be returned: two
    // new requests must not get it, or the caller would take tag 1's completion
    // for the second one's.
    let t3 = d.start(Op::Read, req(lba_of(3), &[b[3]])).unwrap();
    let t4 = d.start(Op::Read, req(lba_of(4), &[b[4]])).unwrap();
    assert_eq!(t3, Tag(0));
    assert_ne!(
        t4,
        Tag(1),
        "tag 1 handed out before its completion was returned"
    );
    assert_eq!(d.complete().unwrap().0, Tag(1));
    for tag in [2, 0, t4.0 as usize] {
        assert!(md.ncq_complete(0, tag));
        assert_eq!(d.complete().unwrap().0, Tag(tag as u32));
    }
    for (k, &(a, l)) in b.iter().enumerate() {
        let want = md.disk_bytes(0, lba_of(k) as usize * 512, l);
        assert_eq!(mc.bytes(a, l), want, "request {k}");
    }
}
