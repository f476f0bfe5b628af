//! Several commands in flight (`start_rw` / `complete_next`, the block layer's
//! `start` / `complete`) against the model deferring and reordering completions.

use super::*;
use block::{BlockError, Tag};
use std::collections::BTreeMap;

use testbed::request as req;

/// Eight buffers of four scattered pages each (25 sectors, a PRP list each).
fn buffers(mc: &'static Machine, n: usize) -> Vec<Vec<(u64, usize)>> {
    (0..n).map(|_| page_shapes(&pages(mc, 4))).collect()
}

/// Live scatter-list mappings of `dev`.
fn sg_maps(dev: &DmaDevice) -> usize {
    dev.mappings()
        .iter()
        .filter(|m| m.map_type == dma::MapType::Sg)
        .count()
}

fn lba_of(i: usize) -> u64 {
    100 * i as u64 + 3
}

/// A fresh machine, a model holding the disk pattern, a clock, and a device
/// mapping directly: the parts most tests probe a controller from.
fn rig() -> (&'static Machine, NvmeModel<Direct>, Clock, Arc<DmaDevice>) {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let dev = device(mc, DmaBackend::Direct);
    (mc, md, Clock::default(), dev)
}

/// [`rig`] with the controller (00:04.0) behind the VT-d model, in a translated
/// domain.
fn vtd_rig() -> (
    &'static Machine,
    testbed::vtd::Shared,
    NvmeModel<testbed::vtd::Translated>,
    Clock,
    Arc<DmaDevice>,
) {
    let mc = machine();
    let dom = testbed::vtd::setup(mc, hal::Bdf::b(0, 4, 0));
    let md = model(testbed::vtd::Translated(dom.clone()), opts());
    let shared: dma::SharedDomain = dom.clone();
    let dev = device(mc, DmaBackend::Iommu(shared));
    (mc, dom, md, Clock::default(), dev)
}

/// Starts a read of each buffer (buffer i at `lba_of(i)`); their CIDs in order.
fn start_reads<R: RegisterAccess, D: crate::Delay>(
    c: &mut Controller<R, D>,
    bufs: &[Vec<(u64, usize)>],
) -> Vec<u16> {
    bufs.iter()
        .enumerate()
        .map(|(i, b)| c.start_rw(lba_of(i), table(b), false).unwrap())
        .collect()
}

/// After whatever went before (a reset, a fatal status), a read of `buf` at `lba`
/// completes under its own tag with the disk's bytes.
fn a_read_works<R: RegisterAccess>(
    c: &mut Controller<R, Clock>,
    md: &NvmeModel<Direct>,
    mc: &'static Machine,
    buf: &[(u64, usize)],
    lba: u64,
) {
    let t = c.start_rw(lba, table(buf), false).unwrap();
    let done = c.complete_next().unwrap();
    assert_eq!(done.tag, t);
    done.result.unwrap();
    let len: usize = buf.iter().map(|e| e.1).sum();
    assert_eq!(gather(mc, buf), md.disk_bytes(lba as usize * 512, len));
}

fn probe_depth<R: RegisterAccess>(
    regs: R,
    dev: Arc<DmaDevice>,
    clock: &Clock,
    io_depth: u16,
) -> Controller<R, Clock> {
    Controller::probe(regs, dev, clock.clone(), Config { io_depth, ..cfg() }).unwrap()
}

#[test]
fn qd8_reads_of_distinct_lbas_land_in_their_own_buffers() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev.clone(), &clock);
    assert_eq!(c.queue_depth(), 32, "min(io depth 64 - 2, 32)");
    let bufs = buffers(mc, 8);
    // The controller holds all eight before any runs: each keeps its own mapping and
    // PRP list page until it completes (the model walks the lists only now).
    md.set_deferred(true);
    let mut d = c.disk().unwrap();
    assert_eq!(d.queue_depth(), 32);
    let mut tags = BTreeMap::new();
    for (i, b) in bufs.iter().enumerate() {
        let t = d.start(Op::Read, req(lba_of(i), b)).unwrap();
        assert!(tags.insert(t, i).is_none(), "tag {t:?} given twice");
    }
    assert_eq!(md.deferred().len(), 8, "eight reads in flight at once");
    assert_eq!(sg_maps(&dev), 8 * 4, "each request's pages mapped");
    md.complete_deferred(&md.deferred());
    for _ in 0..8 {
        let (t, r) = d.complete().unwrap();
        r.unwrap();
        let i = tags.remove(&t).expect("a tag that was started, once");
        assert_eq!(
            gather(mc, &bufs[i]),
            md.disk_bytes(lba_of(i) as usize * 512, 0x3200),
            "buffer {i}"
        );
    }
    assert!(tags.is_empty());
    assert_eq!(d.complete(), Err(BlockError::NothingInFlight));
    drop(d);
    // Every list page went back to the pool and every mapping is gone.
    assert_eq!((sg_maps(&dev), c.prp_lists_in_use()), (0, 0));
    let cids: Vec<u16> = md
        .commands()
        .iter()
        .filter(|l| l.qid == 1)
        .map(|l| l.cid)
        .collect();
    assert_eq!(cids, (0..8).collect::<Vec<u16>>());
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn completions_out_of_order_go_to_their_tags() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev, &clock);
    let bufs = buffers(mc, 8);
    md.set_deferred(true);
    let mut d = c.disk().unwrap();
    let started: Vec<Tag> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| d.start(Op::Read, req(lba_of(i), b)).unwrap())
        .collect();
    let cids = md.deferred();
    // The controller finishes them in another order than it got them.
    for i in [5usize, 2, 7, 0, 6, 1, 4, 3] {
        assert_eq!(md.complete_deferred(&[cids[i]]), 1);
        let (t, r) = d.complete().unwrap();
        assert_eq!(t, started[i], "completion {i} names its own tag");
        r.unwrap();
        assert_eq!(
            gather(mc, &bufs[i]),
            md.disk_bytes(lba_of(i) as usize * 512, 0x3200)
        );
    }
    assert_eq!(d.complete(), Err(BlockError::NothingInFlight));
}

#[test]
fn under_interrupts_out_of_order_completions_go_to_their_tags() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let dev = device(mc, DmaBackend::Direct);
    let (mut c, clock) = probe_irq(&md, dev.clone(), 64);
    let bufs = buffers(mc, 8);
    md.set_deferred(true);
    let started = start_reads(&mut c, &bufs);
    let cids = md.deferred();
    // Reversed, all posted before the driver looks: one message each.
    let rev: Vec<u16> = cids.iter().rev().copied().collect();
    assert_eq!(md.complete_deferred(&rev), 8);
    let mut seen = Vec::new();
    for _ in 0..8 {
        let done = c.complete_next().unwrap();
        let i = started.iter().position(|&t| t == done.tag).unwrap();
        done.result.unwrap();
        assert_eq!(
            gather(mc, &bufs[i]),
            md.disk_bytes(lba_of(i) as usize * 512, 0x3200)
        );
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, (0..8).collect::<Vec<_>>());
    let s = c.cq_stats();
    assert_eq!((s[1].completed_by_irq, s[1].completed_by_poll), (8, 0));
    assert_eq!(s[1].stale, 0);
    assert!(clock.us.get() < 1000, "waited {} µs", clock.us.get());
}

#[test]
fn a_command_that_never_completes_ends_every_one_in_flight_in_a_timeout() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 8);
    md.set_hung(true);
    let mut d = c.disk().unwrap();
    let mut tags = BTreeMap::new();
    for (i, b) in bufs.iter().enumerate() {
        tags.insert(d.start(Op::Read, req(lba_of(i), b)).unwrap(), i);
    }
    let t0 = clock.us();
    for _ in 0..8 {
        let (t, r) = d.complete().unwrap();
        let i = tags.remove(&t).expect("each tag once");
        let e = r.unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "nvme0n1: I/O error at sector {}: nvme: command 0x02 on queue 1 did not complete in 50 ms",
                lba_of(i)
            )),
            "{e}"
        );
    }
    assert_eq!(d.complete(), Err(BlockError::NothingInFlight));
    // One timeout for all of them, not one each.
    let waited = clock.us() - t0;
    assert!((50_000..100_000).contains(&waited), "waited {waited} µs");
    drop(d);
    assert_eq!((md.resets(), c.resets()), (1, 1));
    assert_eq!(
        (sg_maps(&dev), c.prp_lists_in_use()),
        (0, 0),
        "all unmapped"
    );
    // The next request works.
    md.set_hung(false);
    let mut d = c.disk().unwrap();
    let t = d.start(Op::Read, req(9, &bufs[0])).unwrap();
    assert_eq!(d.complete().unwrap(), (t, Ok(table(&bufs[0]))));
    assert_eq!(gather(mc, &bufs[0]), md.disk_bytes(9 * 512, 0x3200));
}

#[test]
fn only_the_commands_that_do_not_complete_time_out() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev, &clock);
    let bufs = buffers(mc, 4);
    md.set_deferred(true);
    let tags = start_reads(&mut c, &bufs);
    let cids = md.deferred();
    md.complete_deferred(&[cids[3], cids[1]]);
    let mut ok = Vec::new();
    let mut timed_out = Vec::new();
    for _ in 0..4 {
        let done = c.complete_next().unwrap();
        match done.result {
            Ok(_) => ok.push(done.tag),
            Err(NvmeError::Timeout {
                qid: 1,
                opcode: opc::READ,
                ms: 50,
            }) => timed_out.push(done.tag),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, [tags[1], tags[3]]);
    assert_eq!(timed_out, [tags[0], tags[2]]);
    assert_eq!(c.resets(), 1);
}

#[test]
fn a_stale_completion_of_an_old_generation_does_not_complete_a_new_command() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev, &clock);
    let p = pages(mc, 1);
    // CID 0 times out (the controller is reset).
    md.set_hung(true);
    let old = c.start_rw(0, table(&[(p[0], 512)]), false).unwrap();
    assert!(matches!(
        c.complete_next().unwrap().result,
        Err(NvmeError::Timeout { .. })
    ));
    md.set_hung(false);
    // CIDs 1..63 go by; CID 64 is slot 0's next generation.
    for lba in 1..SLOTS as u64 {
        c.read(lba, &table(&[(p[0], 512)])).unwrap();
    }
    md.set_deferred(true);
    let new = c.start_rw(7, table(&[(p[0], 512)]), false).unwrap();
    assert_eq!((old, new), (0, SLOTS as u16));
    // A late completion of CID 0, with an error, comes before the real one.
    md.post_cqe(1, old, status::UNRECOVERED_READ);
    md.complete_deferred(&[new]);
    let done = c.complete_next().unwrap();
    assert_eq!(done.tag, new);
    done.result.unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(7 * 512, 512));
    assert_eq!(c.cq_stats()[1].stale, 1);
    assert!(matches!(c.complete_next(), Err(NvmeError::NothingInFlight)));
}

#[test]
fn queue_full_when_the_depth_is_reached() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let mut c = probe_depth(&md, device(mc, DmaBackend::Direct), &clock, 8);
    let bufs = buffers(mc, 7);
    md.set_deferred(true);
    let mut d = c.disk().unwrap();
    assert_eq!(
        d.queue_depth(),
        6,
        "8 entries: 7 outstanding, one kept for waited commands"
    );
    for (i, b) in bufs.iter().take(6).enumerate() {
        d.start(Op::Read, req(lba_of(i), b)).unwrap();
    }
    let before = md.commands().len();
    assert_eq!(
        d.start(Op::Read, req(lba_of(6), &bufs[6])),
        Err(BlockError::QueueFull { depth: 6 })
    );
    assert_eq!(md.commands().len(), before, "nothing issued");
    // One completes: there is room again.
    md.complete_deferred(&md.deferred()[..1]);
    let (_, r) = d.complete().unwrap();
    r.unwrap();
    d.start(Op::Read, req(lba_of(6), &bufs[6])).unwrap();
    md.complete_deferred(&md.deferred());
    for _ in 0..6 {
        d.complete().unwrap().1.unwrap();
    }
    assert_eq!(
        gather(mc, &bufs[6]),
        md.disk_bytes(lba_of(6) as usize * 512, 0x3200)
    );
}

#[test]
fn controller_fatal_status_ends_every_command_in_flight() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 4);
    md.set_deferred(true);
    for (i, b) in bufs.iter().enumerate() {
        c.start_rw(lba_of(i), table(b), i % 2 == 1).unwrap();
    }
    md.set_fatal();
    let t0 = clock.us();
    let mut ops = Vec::new();
    for _ in 0..4 {
        match c.complete_next().unwrap().result {
            Err(NvmeError::ControllerFatal { opcode }) => ops.push(opcode),
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(ops, [opc::READ, opc::WRITE, opc::READ, opc::WRITE]);
    assert!(clock.us() - t0 < 1000, "found at once, not by the timeout");
    assert_eq!(md.resets(), 1);
    assert_eq!((sg_maps(&dev), c.prp_lists_in_use()), (0, 0));
    md.set_deferred(false);
    a_read_works(&mut c, &md, mc, &bufs[0], 11);
}

#[test]
fn a_waited_read_takes_its_own_cid_beside_commands_in_flight() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev, &clock);
    let bufs = buffers(mc, 4);
    // Three started (the model completes them at once; nobody has reaped yet).
    let tags: Vec<u16> = (0..3)
        .map(|i| c.start_rw(lba_of(i), table(&bufs[i]), false).unwrap())
        .collect();
    // A waited read consumes all four entries and returns with its own.
    c.read(lba_of(3), &table(&bufs[3])).unwrap();
    assert_eq!(
        gather(mc, &bufs[3]),
        md.disk_bytes(lba_of(3) as usize * 512, 0x3200)
    );
    assert_eq!(c.queued(), 3);
    let mut got: Vec<u16> = (0..3)
        .map(|_| {
            let d = c.complete_next().unwrap();
            d.result.unwrap();
            d.tag
        })
        .collect();
    got.sort();
    assert_eq!(got, tags);
    for (i, b) in bufs.iter().take(3).enumerate() {
        assert_eq!(
            gather(mc, b),
            md.disk_bytes(lba_of(i) as usize * 512, 0x3200)
        );
    }
    assert_eq!(c.cq_stats()[1].stale, 0);
    assert_eq!(c.cq_stats()[1].completed_by_poll, 4);
}

#[test]
fn a_reset_ends_started_commands_as_aborted() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 2);
    md.set_deferred(true);
    for (i, b) in bufs.iter().enumerate() {
        c.start_rw(lba_of(i), table(b), false).unwrap();
    }
    assert_eq!((sg_maps(&dev), c.prp_lists_in_use()), (8, 2));
    c.reset_controller();
    assert_eq!(
        (sg_maps(&dev), c.prp_lists_in_use()),
        (0, 0),
        "unmapped by the reset"
    );
    for _ in 0..2 {
        let e = c.complete_next().unwrap().result.unwrap_err();
        assert_eq!(
            e,
            NvmeError::Aborted {
                qid: 1,
                opcode: opc::READ
            }
        );
        assert!(e.to_string().contains("ended by a controller reset"), "{e}");
    }
    assert!(matches!(c.complete_next(), Err(NvmeError::NothingInFlight)));
}

#[test]
fn qd8_under_vtd_each_request_loses_its_iovas_when_it_completes() {
    let (mc, dom, md, clock, dev) = vtd_rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 8);
    md.set_deferred(true);
    let tags = start_reads(&mut c, &bufs);
    let cids = md.deferred();
    md.complete_deferred(&cids);
    let logs: Vec<CmdLog> = md.commands().into_iter().filter(|l| l.qid == 1).collect();
    for _ in 0..8 {
        let done = c.complete_next().unwrap();
        done.result.unwrap();
        let i = tags.iter().position(|&t| t == done.tag).unwrap();
        assert_eq!(
            gather(mc, &bufs[i]),
            md.disk_bytes(lba_of(i) as usize * 512, 0x3200)
        );
        // Its IOVAs are gone, the others' not yet collected may still be live.
        let prp1 = logs.iter().find(|l| l.cid == done.tag).unwrap().prp1;
        assert!(testbed::vtd::Translated(dom.clone())
            .dma_write(prp1, &[0; 4])
            .is_err());
    }
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn a_media_error_fails_only_its_own_command_in_flight() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 3);
    md.set_media_error(lba_of(1) + 4);
    md.set_deferred(true);
    let mut d = c.disk().unwrap();
    let tags: Vec<Tag> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| d.start(Op::Read, req(lba_of(i), b)).unwrap())
        .collect();
    md.complete_deferred(&md.deferred());
    let mut results = BTreeMap::new();
    for _ in 0..3 {
        let (t, r) = d.complete().unwrap();
        results.insert(t, r);
    }
    let e = results[&tags[1]].clone().unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "nvme0n1: I/O error at sector {}: nvme: unrecovered read error",
            lba_of(1)
        )),
        "{e}"
    );
    for i in [0, 2] {
        assert_eq!(results[&tags[i]], Ok(table(&bufs[i])));
        assert_eq!(
            gather(mc, &bufs[i]),
            md.disk_bytes(lba_of(i) as usize * 512, 0x3200)
        );
    }
    drop(d);
    assert_eq!(c.resets(), 0, "a status is not a reason to reset");
    assert_eq!(sg_maps(&dev), 0);
}

#[test]
fn requests_left_in_flight_are_drained_by_the_disk_and_unmapped_by_the_controller() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 2);
    // A caller that drops the disk with requests in flight: they are waited for.
    let mut d = c.disk().unwrap();
    d.start(Op::Read, req(lba_of(0), &bufs[0])).unwrap();
    d.start(Op::Read, req(lba_of(1), &bufs[1])).unwrap();
    drop(d);
    assert_eq!((c.queued(), sg_maps(&dev)), (0, 0));
    // A controller dropped with a command in flight: disabled, then unmapped.
    md.set_deferred(true);
    c.start_rw(lba_of(0), table(&bufs[0]), false).unwrap();
    assert_eq!(sg_maps(&dev), 4);
    drop(c);
    assert_eq!(md.read32(regs::CSTS) & 1, 0, "disabled");
    assert_eq!(dev.mapping_count(), 0);
}

#[test]
fn a_waited_command_timing_out_ends_the_started_ones_too() {
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 3);
    md.set_deferred(true);
    let started: Vec<u16> = (0..2)
        .map(|i| c.start_rw(lba_of(i), table(&bufs[i]), false).unwrap())
        .collect();
    // The waited read never completes either: its timeout resets the controller.
    assert!(matches!(
        c.read(lba_of(2), &table(&bufs[2])),
        Err(NvmeError::Timeout { qid: 1, .. })
    ));
    assert_eq!(
        sg_maps(&dev),
        0,
        "the started commands were unmapped by the reset"
    );
    for &t in &started {
        let done = c.complete_next().unwrap();
        assert_eq!(done.tag, t);
        assert_eq!(
            done.result.unwrap_err(),
            NvmeError::Aborted {
                qid: 1,
                opcode: opc::READ
            }
        );
    }
    md.set_deferred(false);
    a_read_works(&mut c, &md, mc, &bufs[0], 5);
}

#[test]
fn under_vtd_commands_ended_by_a_reset_are_unmapped_only_after_the_controller_stopped() {
    // The controller still moves the data of the commands it holds when CC.EN is
    // cleared: had the driver unmapped them before disabling it, those writes would
    // hit unmapped IOVAs and fault.
    let (mc, _dom, md, clock, dev) = vtd_rig();
    let mut c = probe(&md, dev.clone(), &clock);
    let bufs = buffers(mc, 4);
    md.set_deferred(true);
    md.set_dma_until_disabled(true);
    for (i, b) in bufs.iter().enumerate() {
        c.start_rw(lba_of(i), table(b), false).unwrap();
    }
    for _ in 0..4 {
        assert!(matches!(
            c.complete_next().unwrap().result,
            Err(NvmeError::Timeout { .. })
        ));
    }
    assert!(md.errors().is_empty(), "{:?}", md.errors());
    // The transfers did land (in the still-mapped buffers).
    for (i, b) in bufs.iter().enumerate() {
        assert_eq!(
            gather(mc, b),
            md.disk_bytes(lba_of(i) as usize * 512, 0x3200)
        );
    }
    assert_eq!(sg_maps(&dev), 0);
}

#[test]
fn of_the_commands_that_ended_the_oldest_is_returned_first() {
    // CIDs 60..67 sit in slots 60..63 and then 0..3: when all have ended, they come
    // back in the order they were started, not by slot.
    let (mc, md, clock, dev) = rig();
    let mut c = probe(&md, dev, &clock);
    let p = pages(mc, 1);
    for lba in 0..60 {
        c.read(lba, &table(&[(p[0], 512)])).unwrap();
    }
    let bufs = buffers(mc, 8);
    md.set_deferred(true);
    let started = start_reads(&mut c, &bufs);
    assert_eq!(started, (60..68).collect::<Vec<u16>>());
    let rev: Vec<u16> = md.deferred().into_iter().rev().collect();
    md.complete_deferred(&rev);
    let got: Vec<u16> = (0..8)
        .map(|_| {
            let d = c.complete_next().unwrap();
            d.result.unwrap();
            d.tag
        })
        .collect();
    assert_eq!(got, started);
}

#[test]
fn a_full_bounce_pool_is_busy_and_the_request_starts_after_a_completion() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    // Room for two one-page bounces only (4 slots of 2 KiB).
    // SAFETY: the fake machine's swiotlb region, reserved for this pool alone.
    let pool = Arc::new(unsafe { Swiotlb::new(mc, PhysAddr::new(SWIOTLB_BASE), 8192) }.unwrap());
    let dev = device(mc, DmaBackend::Swiotlb(pool.clone()));
    dev.set_force_bounce(true);
    let mut c = probe(&md, dev.clone(), &clock);
    let p = pages(mc, 3);
    let one = |i: usize| req(lba_of(i), &[(p[i], 4096)]);
    md.set_deferred(true);
    let mut d = c.disk().unwrap();
    let t0 = d.start(Op::Read, one(0)).unwrap();
    d.start(Op::Read, one(1)).unwrap();
    match d.start(Op::Read, one(2)) {
        Err(BlockError::Busy { disk, lba, detail }) => {
            assert_eq!((disk.as_str(), lba), ("nvme0n1", lba_of(2)));
            assert!(detail.contains("swiotlb buffer is full"), "{detail}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // The refused read never reached the controller and holds no CID or mapping.
    assert_eq!(md.deferred().len(), 2);
    assert_eq!(sg_maps(&dev), 2);
    md.complete_deferred(&[t0.0 as u16]);
    let (t, r) = d.complete().unwrap();
    assert_eq!(t, t0);
    r.unwrap();
    // Its slots are back: the same read now starts, and every read lands.
    d.start(Op::Read, one(2)).unwrap();
    md.complete_deferred(&md.deferred());
    for _ in 0..2 {
        d.complete().unwrap().1.unwrap();
    }
    for (i, &a) in p.iter().enumerate() {
        assert_eq!(
            mc.bytes(a, 4096),
            md.disk_bytes(lba_of(i) as usize * 512, 4096),
            "read {i}"
        );
    }
    assert_eq!(d.complete(), Err(BlockError::NothingInFlight));
    assert_eq!(pool.stats().used_slots, 0, "bounce slots released");
}
