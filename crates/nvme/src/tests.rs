//! The driver against the behavioural controller in `devmodels::nvme`, on a fake
//! machine with RAM below and above 4 GiB, a swiotlb pool, and optionally the VT-d
//! model between the controller and memory.
#![allow(unsafe_code)] // the test platform implements the unsafe DmaPlatform trait

use super::*;
use block::BlockDevice;
use devmodels::ahci::DmaBus;
use devmodels::nvme::{status, CmdLog, NvmeModel, Options};
use dma::{DmaBackend, DmaPlatform, Swiotlb};
use hal::{PhysAddr, PhysMemory};
use std::sync::atomic::{AtomicU64, Ordering};

use testbed::{gather, machine, scatter, table, Direct, Machine, HIGH, SWIOTLB_BASE, SWIOTLB_SIZE};

/// Counts the time the driver waited.
#[derive(Clone, Default)]
struct Clock(std::sync::Arc<AtomicU64>);

impl Delay for Clock {
    fn delay_us(&self, us: u32) {
        self.0.fetch_add(us as u64, Ordering::Relaxed);
    }
}

impl Clock {
    fn us(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

const SECTORS: u64 = 4096;

fn disk_pattern() -> Vec<u8> {
    (0..SECTORS as usize * 512)
        .map(|i| ((i / 512) as u8).wrapping_mul(7) ^ (i as u8).wrapping_add(3))
        .collect()
}

fn opts() -> Options {
    Options {
        sectors: SECTORS,
        ..Options::default()
    }
}

fn model<B: DmaBus>(bus: B, o: Options) -> NvmeModel<B> {
    let m = NvmeModel::new(bus, o);
    m.write_disk(0, &disk_pattern());
    m
}

fn cfg() -> Config {
    Config {
        command_timeout_ms: 50,
        ..Config::default()
    }
}

fn probe<R: RegisterAccess>(regs: R, dev: Arc<DmaDevice>, clock: &Clock) -> Controller<R, Clock> {
    Controller::probe(regs, dev, clock.clone(), cfg()).unwrap()
}

fn device(m: &'static Machine, backend: DmaBackend) -> Arc<DmaDevice> {
    DmaDevice::new("0000:00:04.0 nvme", m, backend)
}

/// `n` single pages, none adjacent to another.
fn pages(m: &'static Machine, n: usize) -> Vec<u64> {
    let all: Vec<u64> = (0..2 * n)
        .map(|_| m.alloc_pages(0, u64::MAX).unwrap().as_u64())
        .collect();
    all.into_iter().step_by(2).collect()
}

/// Page-shaped pieces in four separate pages: the first starts 0x200 into its page,
/// two whole pages, the last ends 0x400 into its page: 0xe00 + 2 × 0x1000 + 0x400 =
/// 0x3200 bytes = 25 sectors over 4 pages.
fn page_shapes(p: &[u64]) -> Vec<(u64, usize)> {
    vec![
        (p[0] + 0x200, 0xe00),
        (p[1], 0x1000),
        (p[2], 0x1000),
        (p[3], 0x400),
    ]
}

fn last_io(m: &NvmeModel<impl DmaBus>) -> CmdLog {
    m.commands()
        .into_iter()
        .rev()
        .find(|c| c.qid != 0 && (c.opcode == opc::READ || c.opcode == opc::WRITE))
        .unwrap()
}

#[test]
fn probe_enables_identifies_and_creates_an_io_queue_pair() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let c = probe(&md, dev.clone(), &clock);
    assert_eq!(c.info().serial, "busmaster");
    assert_eq!(c.info().model, "QEMU NVMe Ctrl");
    assert_eq!(c.info().mdts, 7);
    assert_eq!(c.max_transfer(), 512 * 1024);
    assert_eq!(
        c.namespace(),
        Some(Namespace {
            nsid: 1,
            sectors: SECTORS,
            sector_size: 512
        })
    );
    assert_eq!(c.name(), "nvme0n1");
    // CC as the spec wants it: EN, IOSQES 6, IOCQES 4, MPS 0, CSS 0; RDY.
    assert_eq!(md.read32(regs::CC), 0x0046_0001);
    assert_eq!(md.read32(regs::CSTS) & 3, 1);
    assert_eq!(md.read32(regs::AQA), 31 | 31 << 16);
    assert_eq!(
        md.read32(regs::INTMS),
        u32::MAX,
        "interrupts masked: polled"
    );
    // The admin commands, in order, all successful.
    let admin: Vec<(u8, u32, Option<u16>)> = md
        .commands()
        .iter()
        .map(|c| (c.opcode, c.cdw[0] & 0xff, c.status))
        .collect();
    assert_eq!(
        admin,
        [
            (opc::IDENTIFY, 1, Some(0)),
            (opc::SET_FEATURES, 7, Some(0)),
            (opc::CREATE_CQ, 1, Some(0)),
            (opc::CREATE_SQ, 1, Some(0)),
            (opc::IDENTIFY, 0, Some(0)),
        ]
    );
    assert_eq!(md.io_queues(), 1);
    let l = c.limits().unwrap();
    assert_eq!(l.virt_boundary_mask, 0xfff);
    assert_eq!(l.max_sectors, 1024);
    assert_eq!(dev.params().dma_mask, u64::MAX);
    assert_eq!(dev.params().min_align_mask, 0xfff);
    assert!(md.errors().is_empty(), "{:?}", md.errors());
    // Admin SQ/CQ, I/O SQ/CQ: four coherent allocations stay mapped while the driver
    // runs (plus the PRP pool's chunk once a list was needed).
    assert_eq!(dev.mapping_count(), 4);
    drop(c);
    assert_eq!(dev.mapping_count(), 0);
    assert_eq!(md.read32(regs::CSTS) & 1, 0, "disabled when dropped");
}

#[test]
fn a_wider_doorbell_stride_is_honoured() {
    let mc = machine();
    let md = model(Direct(mc), Options { dstrd: 2, ..opts() });
    let clock = Clock::default();
    let mut c = probe(&md, device(mc, DmaBackend::Direct), &clock);
    let p = pages(mc, 1);
    c.read(5, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(5 * 512, 512));
    assert_eq!(regs::sq_tail(1, 2), 0x1000 + 2 * 16);
    assert_eq!(regs::cq_head(1, 2), 0x1000 + 3 * 16);
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn scattered_reads_and_writes_use_a_prp_list() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut c = probe(&md, dev.clone(), &clock);
    let p = pages(mc, 4);
    let e = page_shapes(&p);
    c.read(10, &table(&e)).unwrap();
    assert_eq!(gather(mc, &e), md.disk_bytes(10 * 512, 0x3200));
    let cmd = last_io(&md);
    assert_eq!((cmd.opcode, cmd.slba(), cmd.blocks()), (opc::READ, 10, 25));
    // PRP1 keeps the offset; PRP2 is a list of the other three pages, page aligned.
    assert_eq!(cmd.prp1, p[0] + 0x200);
    assert_eq!(cmd.prp_list, vec![p[1], p[2], p[3]]);
    assert_eq!(cmd.prp2 & 0xfff, 0, "the list is a page from the pool");
    assert_eq!(
        cmd.data,
        vec![
            (p[0] + 0x200, 0xe00),
            (p[1], 0x1000),
            (p[2], 0x1000),
            (p[3], 0x400)
        ]
    );
    // Write a new pattern from the same pieces.
    let data: Vec<u8> = (0..0x3200u32).map(|i| (i * 13 + 5) as u8).collect();
    scatter(mc, &e, &data);
    c.write(100, &table(&e)).unwrap();
    assert_eq!(md.disk_bytes(100 * 512, 0x3200), data);
    let cmd = last_io(&md);
    assert_eq!(
        (cmd.opcode, cmd.slba(), cmd.blocks()),
        (opc::WRITE, 100, 25)
    );
    assert_eq!(cmd.prp_list.len(), 3);
    // Two pages: PRP2 is the second page itself, no list.
    let two = [(p[0] + 0x800, 0x800), (p[1], 0x400)];
    c.read(3, &table(&two)).unwrap();
    assert_eq!(gather(mc, &two), md.disk_bytes(3 * 512, 0xc00));
    let cmd = last_io(&md);
    assert_eq!((cmd.prp1, cmd.prp2), (p[0] + 0x800, p[1]));
    assert!(cmd.prp_list.is_empty());
    // One page: PRP1 only.
    c.read(3, &table(&[(p[2] + 0x200, 0x400)])).unwrap();
    let cmd = last_io(&md);
    assert_eq!((cmd.prp1, cmd.prp2), (p[2] + 0x200, 0));
    c.flush().unwrap();
    assert_eq!(md.flushes(), 1);
    assert!(md.errors().is_empty(), "{:?}", md.errors());
    assert_eq!(dev.mapping_count(), 5, "queues and one PRP pool chunk");
}

#[test]
fn segments_prps_cannot_carry_are_refused_before_issue() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut c = probe(&md, dev.clone(), &clock);
    let p = pages(mc, 3);
    let before = md.commands().len();
    // The middle segment starts inside a page.
    let e = c
        .read(0, &table(&[(p[0], 0x1000), (p[1] + 0x200, 0x200)]))
        .unwrap_err();
    assert!(
        matches!(
            e,
            NvmeError::BadSegment {
                index: 1,
                reason: "starts inside a page (only the first segment may)",
                ..
            }
        ),
        "{e}"
    );
    // The first segment ends inside a page and another follows.
    let e = c
        .read(0, &table(&[(p[0], 0x200), (p[1], 0x1000)]))
        .unwrap_err();
    assert!(matches!(e, NvmeError::BadSegment { index: 0, .. }), "{e}");
    // PRP1 not dword aligned.
    let e = c.read(0, &table(&[(p[2] + 2, 512)])).unwrap_err();
    assert!(matches!(e, NvmeError::BadSegment { index: 0, .. }), "{e}");
    // Larger than MDTS (512 KiB) in one command; beyond the end; not whole sectors.
    let big: Vec<(u64, usize)> = (0..129)
        .map(|_| (mc.alloc_pages(0, u64::MAX).unwrap().as_u64(), 4096))
        .collect();
    assert!(matches!(
        c.read(0, &table(&big)),
        Err(NvmeError::BadRequest(_))
    ));
    assert!(matches!(
        c.read(SECTORS - 1, &table(&[(p[0], 1024)])),
        Err(NvmeError::BadRequest(_))
    ));
    assert!(matches!(
        c.read(0, &table(&[(p[0], 100)])),
        Err(NvmeError::BadRequest(_))
    ));
    assert_eq!(
        md.commands().len(),
        before,
        "nothing reached the controller"
    );
    assert_eq!(dev.mapping_count(), 4, "the refused mappings were undone");
}

#[test]
fn the_model_checks_prp_offsets_and_mdts_itself() {
    // What a driver that did not check would get from the controller: commands
    // written past the driver's PRP builder, straight onto the I/O queue.
    let mc = machine();
    let md = model(Direct(mc), Options { mdts: 1, ..opts() });
    let clock = Clock::default();
    let mut c = probe(&md, device(mc, DmaBackend::Direct), &clock);
    let p = pages(mc, 4);
    let mut io = |prp1: u64, prp2: u64, blocks: u32| {
        let mut sqe = [0u32; 16];
        sqe[0] = opc::READ as u32;
        sqe[1] = 1;
        sqe[6] = prp1 as u32;
        sqe[7] = (prp1 >> 32) as u32;
        sqe[8] = prp2 as u32;
        sqe[9] = (prp2 >> 32) as u32;
        sqe[12] = blocks - 1;
        c.exec(true, sqe)
    };
    // Two pages with a PRP2 that has an offset: PRP Offset Invalid, typed.
    let e = io(p[0], p[1] + 0x200, 16).unwrap_err();
    assert_eq!(
        e,
        NvmeError::Status {
            qid: 1,
            opcode: opc::READ,
            sct: 0,
            sc: 0x13,
            dnr: true
        }
    );
    assert!(e.to_string().contains("PRP offset invalid"), "{e}");
    // 12 KiB with MDTS 1 (8 KiB): Invalid Field.
    let e = io(p[0], p[1], 24).unwrap_err();
    assert!(
        matches!(
            e,
            NvmeError::Status {
                sct: 0,
                sc: 0x02,
                ..
            }
        ),
        "{e}"
    );
    // The queue still works.
    assert_eq!(io(p[0], p[1], 16), Ok(0));
    assert_eq!(md.resets(), 0, "a status error needs no reset");
    let st: Vec<Option<u16>> = md
        .commands()
        .iter()
        .filter(|c| c.qid == 1)
        .map(|c| c.status)
        .collect();
    assert_eq!(
        st,
        [
            Some(status::PRP_OFFSET),
            Some(status::INVALID_FIELD),
            Some(0)
        ]
    );
}

#[test]
fn the_block_layer_splits_at_mdts_and_at_page_gaps() {
    let mc = machine();
    let md = model(Direct(mc), Options { mdts: 1, ..opts() });
    let clock = Clock::default();
    let mut c = probe(&md, device(mc, DmaBackend::Direct), &clock);
    assert_eq!(c.max_transfer(), 8192);
    let p = pages(mc, 8);
    // Eight separate whole pages = 32 KiB: four commands of two pages (MDTS 8 KiB).
    let whole: Vec<(u64, usize)> = p.iter().map(|&a| (a, 4096)).collect();
    let mut d = c.disk().unwrap();
    assert_eq!(d.name(), "nvme0n1");
    assert_eq!(d.capacity(), SECTORS);
    assert_eq!(d.sector_size(), 512);
    assert_eq!(d.limits().max_sectors, 16);
    d.read(200, &table(&whole)).unwrap();
    assert_eq!(gather(mc, &whole), md.disk_bytes(200 * 512, 8 * 4096));
    let rw: Vec<(u64, u32, u64, u64)> = md
        .commands()
        .iter()
        .filter(|c| c.qid == 1)
        .map(|c| (c.slba(), c.blocks(), c.prp1, c.prp2))
        .collect();
    assert_eq!(
        rw,
        [
            (200, 16, p[0], p[1]),
            (216, 16, p[2], p[3]),
            (232, 16, p[4], p[5]),
            (248, 16, p[6], p[7])
        ]
    );
    // Pieces that break the PRP rule between them are split there, not refused.
    let gaps = [(p[0], 0x400), (p[1] + 0x200, 0x200), (p[2], 0x200)];
    let data: Vec<u8> = (0..0x800u32).map(|i| (i * 7 + 1) as u8).collect();
    scatter(mc, &gaps, &data);
    d.write(1000, &table(&gaps)).unwrap();
    assert_eq!(md.disk_bytes(1000 * 512, 0x800), data);
    let shapes: Vec<(u64, u32)> = md
        .commands()
        .iter()
        .filter(|c| c.qid == 1 && c.opcode == opc::WRITE)
        .map(|c| (c.slba(), c.blocks()))
        .collect();
    assert_eq!(shapes, [(1000, 2), (1002, 1), (1003, 1)]);
    // A gap inside a sector: the block layer says to bounce.
    let e = d
        .read(0, &table(&[(p[0], 0x300), (p[1] + 0x100, 0x100)]))
        .unwrap_err();
    assert!(matches!(e, BlockError::GapInSector { .. }), "{e}");
    d.flush().unwrap();
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn bounced_through_swiotlb_the_page_offsets_survive() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    // SAFETY: the fake machine's swiotlb region, reserved for this pool alone.
    let pool =
        Arc::new(unsafe { Swiotlb::new(mc, PhysAddr::new(SWIOTLB_BASE), SWIOTLB_SIZE) }.unwrap());
    let dev = device(mc, DmaBackend::Swiotlb(pool.clone()));
    dev.set_force_bounce(true);
    let mut c = probe(&md, dev.clone(), &clock);
    let p = pages(mc, 4);
    assert!(p.iter().all(|&a| a >= HIGH), "buffers above 4 GiB");
    let e = page_shapes(&p);
    c.read(30, &table(&e)).unwrap();
    assert_eq!(gather(mc, &e), md.disk_bytes(30 * 512, 0x3200));
    let cmd = last_io(&md);
    let in_pool = |a: u64| (SWIOTLB_BASE..SWIOTLB_BASE + SWIOTLB_SIZE as u64).contains(&a);
    assert!(in_pool(cmd.prp1), "{:#x}", cmd.prp1);
    // min_align_mask: the bounce slot keeps the 0x200 page offset, so the PRP rules
    // still hold on the bounced addresses.
    assert_eq!(cmd.prp1 & 0xfff, 0x200);
    assert_eq!(cmd.prp_list.len(), 3);
    assert!(cmd.prp_list.iter().all(|&a| in_pool(a) && a & 0xfff == 0));
    let data: Vec<u8> = (0..0x3200u32).map(|i| (i * 3 + 1) as u8).collect();
    scatter(mc, &e, &data);
    c.write(500, &table(&e)).unwrap();
    assert_eq!(md.disk_bytes(500 * 512, 0x3200), data);
    assert_eq!(pool.stats().used_slots, 0, "bounce slots released");
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn a_media_error_is_a_typed_error_and_later_commands_work() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut c = probe(&md, dev.clone(), &clock);
    md.set_media_error(52);
    let p = pages(mc, 1);
    let e = c.read(48, &table(&[(p[0], 4096)])).unwrap_err();
    assert_eq!(
        e,
        NvmeError::Status {
            qid: 1,
            opcode: opc::READ,
            sct: 2,
            sc: 0x81,
            dnr: true
        }
    );
    assert!(e.to_string().contains("media error"), "{e}");
    assert_eq!(md.resets(), 0);
    assert_eq!(dev.mapping_count(), 4, "the failed request was unmapped");
    c.read(40, &table(&[(p[0], 4096)])).unwrap();
    assert_eq!(mc.bytes(p[0], 4096), md.disk_bytes(40 * 512, 4096));
    c.read(53, &table(&[(p[0], 4096)])).unwrap();
    assert_eq!(mc.bytes(p[0], 4096), md.disk_bytes(53 * 512, 4096));
    let e = c.write(52, &table(&[(p[0], 512)])).unwrap_err();
    assert!(
        matches!(
            e,
            NvmeError::Status {
                sct: 2,
                sc: 0x80,
                ..
            }
        ),
        "{e}"
    );
    // Through the block layer the error names the disk and the sector.
    let mut d = c.disk().unwrap();
    let e = d.read(50, &table(&[(p[0], 4096)])).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("nvme0n1: I/O error at sector 50: nvme: unrecovered read error"),
        "{e}"
    );
}

#[test]
fn a_command_that_never_completes_times_out_and_the_controller_is_reset() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut c = probe(&md, dev.clone(), &clock);
    md.set_hung(true);
    let p = pages(mc, 1);
    let t0 = clock.us();
    let e = c.read(0, &table(&[(p[0], 512)])).unwrap_err();
    assert_eq!(
        e,
        NvmeError::Timeout {
            qid: 1,
            opcode: opc::READ,
            ms: 50
        }
    );
    let waited = clock.us() - t0;
    assert!((50_000..200_000).contains(&waited), "waited {waited} µs");
    assert_eq!((md.resets(), c.resets()), (1, 1));
    assert_eq!(md.io_queues(), 1, "the I/O queue pair was re-created");
    assert_eq!(dev.mapping_count(), 4, "unmapped after the reset");
    // Still hung: times out again rather than hanging; healed: works.
    assert!(matches!(
        c.read(0, &table(&[(p[0], 512)])),
        Err(NvmeError::Timeout { .. })
    ));
    md.set_hung(false);
    c.read(9, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(9 * 512, 512));
    assert!(!c.failed());
}

/// The command `blk aer` sends in QEMU: a controller completes an Asynchronous Event
/// Request only when it has an event, so with none it times out like a hung command,
/// the controller is reset, and the next I/O works.
#[test]
fn an_async_event_request_with_no_event_times_out_and_the_next_read_works() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut c = probe(&md, dev.clone(), &clock);
    let t0 = clock.us();
    let e = c.async_event_request().unwrap_err();
    assert_eq!(
        e,
        NvmeError::Timeout {
            qid: 0,
            opcode: opc::ASYNC_EVENT_REQUEST,
            ms: 50
        }
    );
    assert!(e.to_string().contains("did not complete in 50 ms"), "{e}");
    let waited = clock.us() - t0;
    assert!((50_000..200_000).contains(&waited), "waited {waited} µs");
    assert_eq!((md.resets(), c.resets()), (1, 1));
    assert_eq!(md.io_queues(), 1, "the I/O queue pair was re-created");
    let p = pages(mc, 1);
    c.read(9, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(9 * 512, 512));
    assert!(!c.failed());
}

#[test]
fn controller_fatal_status_is_reported_and_recovered() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let mut c = probe(&md, device(mc, DmaBackend::Direct), &clock);
    md.set_fatal();
    let p = pages(mc, 1);
    let t0 = clock.us();
    let e = c.read(0, &table(&[(p[0], 512)])).unwrap_err();
    assert_eq!(e, NvmeError::ControllerFatal { opcode: opc::READ });
    assert!(e.to_string().contains("CSTS.CFS"), "{e}");
    assert!(clock.us() - t0 < 1000, "found at once, not by the timeout");
    assert_eq!(md.resets(), 1);
    assert_eq!(md.read32(regs::CSTS) & 3, 1, "ready again, CFS clear");
    c.read(11, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(11 * 512, 512));
}

mod vtd {
    //! The controller behind the real VT-d driver on the VT-d model: every PRP, list
    //! and queue address is an IOVA the model's page walk translates.
    use super::*;

    use hal::Bdf;

    use testbed::vtd::{Shared, Translated};

    const NVME: Bdf = Bdf::b(0, 4, 0);

    fn setup(mc: &'static Machine) -> Shared {
        testbed::vtd::setup(mc, NVME)
    }

    #[test]
    fn scattered_pages_become_consecutive_iova_pages_in_the_prp_list() {
        let mc = machine();
        let dom = setup(mc);
        let md = model(Translated(dom.clone()), opts());
        let clock = Clock::default();
        let shared: dma::SharedDomain = dom.clone();
        let dev = device(mc, DmaBackend::Iommu(shared));
        let mut c = probe(&md, dev.clone(), &clock);
        assert_eq!(c.info().serial, "busmaster");
        let p = pages(mc, 4);
        let e = page_shapes(&p);
        c.read(64, &table(&e)).unwrap();
        assert_eq!(gather(mc, &e), md.disk_bytes(64 * 512, 0x3200));
        let cmd = last_io(&md);
        // One IOVA range: PRP1 keeps the offset, the list holds the next three IOVA
        // pages in a row, none of them the physical pages.
        assert_eq!(cmd.prp1 & 0xfff, 0x200);
        let first = cmd.prp1 & !0xfff;
        assert_eq!(
            cmd.prp_list,
            vec![first + 0x1000, first + 0x2000, first + 0x3000]
        );
        assert!(cmd.prp_list.iter().all(|a| !p.contains(a)));
        let data: Vec<u8> = (0..0x3200u32).map(|i| (i * 11 + 3) as u8).collect();
        scatter(mc, &e, &data);
        c.write(7, &table(&e)).unwrap();
        assert_eq!(md.disk_bytes(7 * 512, 0x3200), data);
        // After the request its IOVAs are gone: the controller can no longer reach them.
        let stale = last_io(&md).prp1;
        assert!(Translated(dom.clone()).dma_write(stale, &[0; 4]).is_err());
        // Errors and recovery work behind the IOMMU too.
        md.set_fatal();
        assert!(matches!(
            c.read(0, &table(&e)),
            Err(NvmeError::ControllerFatal { .. })
        ));
        c.read(0, &table(&e)).unwrap();
        assert_eq!(gather(mc, &e), md.disk_bytes(0, 0x3200));
        assert!(md.errors().is_empty(), "{:?}", md.errors());
    }
}

#[test]
fn the_queues_wrap_with_the_phase_tag() {
    // Four-entry I/O queue: ten commands wrap the CQ twice, each wrap flips the phase
    // the driver waits for (a driver that did not flip would time out).
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let mut c = Controller::probe(
        &md,
        device(mc, DmaBackend::Direct),
        clock.clone(),
        Config {
            io_depth: 4,
            ..cfg()
        },
    )
    .unwrap();
    let p = pages(mc, 1);
    for lba in 0..10u64 {
        c.read(lba * 3, &table(&[(p[0], 512)])).unwrap();
        assert_eq!(
            mc.bytes(p[0], 512),
            md.disk_bytes(lba as usize * 3 * 512, 512)
        );
    }
    let cids: Vec<u16> = md
        .commands()
        .iter()
        .filter(|c| c.qid == 1)
        .map(|c| c.cid)
        .collect();
    assert_eq!(cids, (0..10).collect::<Vec<u16>>(), "a fresh CID each");
    assert_eq!(c.resets(), 0);
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn the_model_follows_a_chained_prp_list() {
    // The driver never needs a second list page (MDTS and max_transfer keep it to
    // one); the model still walks a chain as the spec says: the last entry of a full
    // list page points to the next list page.
    let mc = machine();
    let md = model(
        Direct(mc),
        Options {
            mdts: 0,
            sectors: 8192,
            ..opts()
        },
    );
    let clock = Clock::default();
    let mut c = probe(&md, device(mc, DmaBackend::Direct), &clock);
    let p = pages(mc, 3);
    let (data, l1, l2) = (p[0], p[1], p[2]);
    // 514 pages: PRP1, 511 entries in the first list page, its last entry chaining
    // to a second page with 2 more. Every entry names the same data page (a read).
    let mut first = vec![0u8; 4096];
    for i in 0..511 {
        first[8 * i..8 * i + 8].copy_from_slice(&data.to_le_bytes());
    }
    first[8 * 511..].copy_from_slice(&l2.to_le_bytes());
    mc.write(PhysAddr::new(l1), &first);
    let second: Vec<u8> = [data, data].iter().flat_map(|a| a.to_le_bytes()).collect();
    mc.write(PhysAddr::new(l2), &second);
    let mut sqe = [0u32; 16];
    sqe[0] = opc::READ as u32;
    sqe[1] = 1;
    sqe[6] = data as u32;
    sqe[7] = (data >> 32) as u32;
    sqe[8] = l1 as u32;
    sqe[9] = (l1 >> 32) as u32;
    sqe[12] = 514 * 8 - 1;
    assert_eq!(c.exec(true, sqe), Ok(0));
    let cmd = last_io(&md);
    assert_eq!(cmd.prp_list.len(), 513);
    assert_eq!(cmd.data.len(), 514);
    assert!(cmd.prp_list.iter().all(|&a| a == data));
    // The last page read was disk page 513.
    assert_eq!(mc.bytes(data, 4096), md.disk_bytes(513 * 4096, 4096));
    // A chain pointer with an offset is PRP Offset Invalid.
    first[8 * 511..].copy_from_slice(&(l2 + 8).to_le_bytes());
    mc.write(PhysAddr::new(l1), &first);
    assert!(matches!(
        c.exec(true, sqe),
        Err(NvmeError::Status { sc: 0x13, .. })
    ));
}

#[test]
fn a_controller_that_fails_its_reset_goes_out_of_service_without_recursing() {
    // I/O and admin commands never complete: the read times out, the reset's own Set
    // Features times out too, and that failure does not start another reset.
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut c = probe(&md, dev.clone(), &clock);
    md.set_hung(true);
    md.set_hung_admin(true);
    let p = pages(mc, 1);
    let e = c.read(0, &table(&[(p[0], 512)])).unwrap_err();
    assert!(matches!(e, NvmeError::Timeout { qid: 1, .. }), "{e}");
    assert_eq!(
        (c.resets(), md.resets()),
        (1, 2),
        "one reset, then disabled"
    );
    assert!(c.failed());
    assert_eq!(md.read32(regs::CSTS) & 1, 0, "left disabled: no more DMA");
    assert_eq!(dev.mapping_count(), 4, "the request was unmapped");
    // Out of service: a clear error at once, nothing issued.
    let before = md.commands().len();
    let t0 = clock.us();
    assert_eq!(c.read(0, &table(&[(p[0], 512)])), Err(NvmeError::Failed));
    assert_eq!(md.commands().len(), before);
    assert_eq!(clock.us(), t0);
}

/// A clock that plays the CPU's part for MSI-X: while the driver sleeps for an
/// interrupt, the messages the model sent are delivered to the handler of the CQs on
/// that vector (unless `deliver` is off: a lost interrupt).
struct IrqClock<'a> {
    us: std::rc::Rc<std::cell::Cell<u64>>,
    model: &'a NvmeModel<Direct>,
    cqs: std::rc::Rc<std::cell::RefCell<Vec<Arc<CompletionQueue>>>>,
    deliver: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Delay for IrqClock<'_> {
    fn delay_us(&self, us: u32) {
        self.us.set(self.us.get() + us as u64);
    }

    fn wait_interrupt(&self, max_us: u32, woken: &dyn Fn() -> bool) -> Option<u32> {
        let v = self.model.take_interrupts();
        if self.deliver.get() {
            for cq in self.cqs.borrow().iter() {
                if cq.vector().is_some_and(|n| v & (1 << n) != 0) {
                    cq.handle_interrupt(self.model);
                }
            }
        }
        if woken() {
            return Some(1);
        }
        let t = max_us.min(1000);
        self.us.set(self.us.get() + t as u64);
        Some(t)
    }
}

type IrqCtrl<'a> = Controller<&'a NvmeModel<Direct>, IrqClock<'a>>;

/// Probes with two MSI-X vectors, hands the CQs to the "handler", turns interrupts on.
fn probe_irq<'a>(
    md: &'a NvmeModel<Direct>,
    dev: Arc<DmaDevice>,
    io_depth: u16,
) -> (IrqCtrl<'a>, IrqClock<'a>) {
    let clock = IrqClock {
        us: Default::default(),
        model: md,
        cqs: Default::default(),
        deliver: std::rc::Rc::new(std::cell::Cell::new(true)),
    };
    let shared = IrqClock {
        us: clock.us.clone(),
        model: md,
        cqs: clock.cqs.clone(),
        deliver: clock.deliver.clone(),
    };
    let mut c = Controller::probe(
        md,
        dev,
        shared,
        Config {
            io_depth,
            irq_vectors: 2,
            ..cfg()
        },
    )
    .unwrap();
    *clock.cqs.borrow_mut() = c.completion_queues();
    c.enable_interrupts(true).unwrap();
    (c, clock)
}

#[test]
fn msix_completions_are_consumed_by_the_handler() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let (mut c, clock) = probe_irq(&md, device(mc, DmaBackend::Direct), 64);
    // The I/O CQ was created with IEN on vector 1; INTMS was never written (MSI-X).
    let create = md
        .commands()
        .into_iter()
        .find(|l| l.qid == 0 && l.opcode == opc::CREATE_CQ)
        .unwrap();
    assert_eq!(create.cdw[1], 1 << 16 | 1 << 1 | 1);
    assert_eq!(md.read32(regs::INTMS), 0);
    let before = c.cq_stats();
    // Probe ran polled: Identify ×2, Set Features, Create CQ/SQ on the admin queue.
    assert_eq!(
        (before[0].completed_by_poll, before[0].completed_by_irq),
        (5, 0)
    );
    let p = pages(mc, 4);
    let sg = table(&page_shapes(&p));
    for lba in [0u64, 7, 100] {
        c.read(lba, &sg).unwrap();
        assert_eq!(
            gather(mc, &page_shapes(&p)),
            md.disk_bytes(lba as usize * 512, 0x3200)
        );
    }
    scatter(mc, &page_shapes(&p), &vec![0x5a; 0x3200]);
    c.write(200, &sg).unwrap();
    c.flush().unwrap();
    assert_eq!(md.disk_bytes(200 * 512, 0x3200), vec![0x5a; 0x3200]);
    let s = c.cq_stats();
    assert_eq!(s[1].qid, 1);
    assert_eq!(s[1].vector, Some(1));
    assert_eq!((s[1].completed_by_irq, s[1].completed_by_poll), (5, 0));
    assert_eq!(s[1].interrupts, 5);
    assert_eq!(md.interrupts_sent(1), 5);
    // The handler rang the head doorbell: the controller sees every entry consumed.
    assert_eq!(md.cq_head(1), Some(5));
    // Nothing waited out a timeout.
    assert!(clock.us.get() < 1000, "waited {} µs", clock.us.get());
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn under_interrupts_the_cq_wraps_several_times_with_the_phase_tag() {
    // Four entries, 13 commands: the handler's head wraps three times and each wrap
    // flips the phase it consumes by (a handler that kept phase 1 would miss the
    // fifth completion and the command would time out).
    let mc = machine();
    let md = model(Direct(mc), opts());
    let (mut c, clock) = probe_irq(&md, device(mc, DmaBackend::Direct), 4);
    let p = pages(mc, 1);
    for lba in 0..13u64 {
        c.read(lba * 5, &table(&[(p[0], 1024)])).unwrap();
        assert_eq!(
            mc.bytes(p[0], 1024),
            md.disk_bytes(lba as usize * 5 * 512, 1024)
        );
    }
    let s = c.cq_stats();
    assert_eq!((s[1].completed_by_irq, s[1].completed_by_poll), (13, 0));
    assert_eq!(s[1].wraps, 3);
    assert_eq!(s[1].stale, 0);
    assert_eq!(md.cq_head(1), Some(1));
    assert_eq!(c.resets(), 0);
    assert!(clock.us.get() < 1000, "waited {} µs", clock.us.get());
}

#[test]
fn under_interrupts_a_hung_command_times_out_and_a_lost_interrupt_costs_only_time() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let dev = device(mc, DmaBackend::Direct);
    let (mut c, clock) = probe_irq(&md, dev.clone(), 64);
    let p = pages(mc, 1);
    md.set_hung(true);
    let t0 = clock.us.get();
    let e = c.read(0, &table(&[(p[0], 512)])).unwrap_err();
    assert!(matches!(e, NvmeError::Timeout { qid: 1, .. }), "{e:?}");
    let waited = clock.us.get() - t0;
    assert!((50_000..200_000).contains(&waited), "waited {waited} µs");
    assert_eq!(c.resets(), 1);
    md.set_hung(false);
    // The reset re-created the I/O CQ with its vector, and interrupts still complete.
    c.read(3, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(3 * 512, 512));
    assert_eq!(c.cq_stats()[1].completed_by_irq, 1);
    // The message is lost: the command completes at its timeout, by the last look.
    clock.deliver.set(false);
    let t0 = clock.us.get();
    c.read(4, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(4 * 512, 512));
    assert!(clock.us.get() - t0 >= 50_000);
    let s = c.cq_stats();
    assert_eq!((s[1].completed_by_irq, s[1].completed_by_poll), (1, 1));
    assert_eq!(c.resets(), 1);
    assert_eq!(dev.mapping_count(), 4);
}

#[test]
fn interrupts_cannot_be_enabled_without_vectors() {
    let mc = machine();
    let md = model(Direct(mc), opts());
    let clock = Clock::default();
    let mut c = probe(&md, device(mc, DmaBackend::Direct), &clock);
    assert!(matches!(
        c.enable_interrupts(true),
        Err(NvmeError::BadRequest(_))
    ));
    // Polled: INTMS masks everything, the I/O CQ has IEN = 0, no message is sent.
    assert_eq!(md.read32(regs::INTMS), u32::MAX);
    let p = pages(mc, 1);
    c.read(0, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(md.interrupts_sent(1), 0);
    assert_eq!(c.cq_stats()[1].completed_by_poll, 1);
}

mod queued;
