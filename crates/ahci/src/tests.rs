//! The driver against the behavioural HBA in `devmodels::ahci`, on a fake machine with
//! RAM below and above 4 GiB, a swiotlb pool, and optionally the VT-d model between
//! the HBA and memory.
#![allow(unsafe_code)] // the test platform implements the unsafe DmaPlatform trait

use super::*;
use block::BlockDevice;
use devmodels::ahci::{AhciModel, CmdLog, Disk, DmaBus, Options};
use dma::{DmaBackend, DmaPlatform, Swiotlb};
use hal::PhysAddr;
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

const SECTORS: usize = 2048;

fn disk_pattern(seed: u8) -> Vec<u8> {
    (0..SECTORS * 512)
        .map(|i| ((i / 512) as u8).wrapping_mul(7) ^ (i as u8).wrapping_add(seed))
        .collect()
}

fn model<B: DmaBus>(bus: B, s64a: bool, disks: &[usize]) -> AhciModel<B> {
    let m = AhciModel::new(bus, Options { ports: 6, s64a });
    for &p in disks {
        let mut d = Disk::new(SECTORS, "QEMU HARDDISK", &format!("QM0000{p}"));
        d.data = disk_pattern(p as u8);
        m.attach(p, d);
    }
    m
}

fn probe<R: RegisterAccess>(regs: R, dev: Arc<DmaDevice>, clock: &Clock) -> Hba<R, Clock> {
    Hba::probe(
        regs,
        dev,
        clock.clone(),
        Config {
            command_timeout_ms: 50,
            first_disk_index: 0,
        },
    )
    .unwrap()
}

fn device(m: &'static Machine, backend: DmaBackend) -> Arc<DmaDevice> {
    DmaDevice::new("0000:00:1f.2 ahci", m, backend)
}

/// Pages for buffers: `n` blocks of 2 pages, every other one so none are adjacent.
fn pages(m: &'static Machine, n: usize, limit: u64) -> Vec<u64> {
    let all: Vec<u64> = (0..2 * n)
        .map(|_| m.alloc_pages(1, limit).unwrap().as_u64())
        .collect();
    all.into_iter().step_by(2).collect()
}

/// Sub-page, unaligned (but even) pieces in four separate blocks, one crossing a
/// page boundary: 768 + 512 + 1312 + 480 = 3072 bytes = 6 sectors.
fn odd_shapes(p: &[u64]) -> Vec<(u64, usize)> {
    vec![
        (p[0] + 0x100, 0x300),
        (p[1] + 0x2, 0x200),
        (p[2] + 0xff0, 0x520),
        (p[3] + 0x20, 0x1e0),
    ]
}

fn last_rw(m: &AhciModel<impl DmaBus>) -> CmdLog {
    m.commands()
        .into_iter()
        .rev()
        .find(|c| c.command == regs::ATA_READ_DMA_EXT || c.command == regs::ATA_WRITE_DMA_EXT)
        .unwrap()
}

fn dseg(a: u64, l: usize) -> DmaSegment {
    DmaSegment {
        addr: dma::DmaAddr::new(a),
        len: l,
    }
}

#[test]
fn prd_entry_holds_the_address_and_bytes_minus_one() {
    assert_eq!(regs::prd(0x1_2345_6002, 0x200), [0x2345_6002, 1, 0, 0x1ff]);
    assert_eq!(regs::prd(0x1000, 2), [0x1000, 0, 0, 1]);
    // The largest entry: 4 MiB is DBC 0x3fffff, the whole field.
    assert_eq!(
        regs::prd(0xffff_f000, 4 << 20),
        [0xffff_f000, 0, 0, 0x3f_ffff]
    );
}

#[test]
fn prdt_rules_are_checked_per_segment() {
    let ok = [
        dseg(0x1000, 0x200),
        dseg(0x2002, 2),
        dseg(0x40_0000, 4 << 20),
    ];
    assert_eq!(check_prdt(&ok, false), Ok(()));
    assert_eq!(check_prdt(&[], false), Ok(()));
    let idx = |segs: &[DmaSegment], s64a| check_prdt(segs, s64a).map_err(|e| e.0);
    // Odd and zero byte counts.
    assert_eq!(idx(&[dseg(0x1000, 0x200), dseg(0x2000, 511)], true), Err(1));
    assert_eq!(idx(&[dseg(0x1000, 0)], true), Err(0));
    // Odd address.
    assert_eq!(idx(&[dseg(0x1001, 0x200)], true), Err(0));
    // Larger than 4 MiB.
    assert_eq!(
        idx(&[dseg(0, 2), dseg(0x100_0000, (4 << 20) + 2)], true),
        Err(1)
    );
    // Above 4 GiB: only with S64A; the last byte counts.
    let high = [dseg(0x1_0000_0000, 0x200)];
    assert_eq!(idx(&high, false), Err(0));
    assert_eq!(idx(&high, true), Ok(()));
    assert_eq!(idx(&[dseg(0xffff_fe00, 0x200)], false), Ok(()));
    assert_eq!(idx(&[dseg(0xffff_fe00, 0x400)], false), Err(0));
    // 248 entries fit, 249 do not: the 249th is named.
    let many: Vec<DmaSegment> = (0..249).map(|i| dseg(i * 0x1000, 0x200)).collect();
    assert_eq!(idx(&many[..MAX_PRDT], false), Ok(()));
    assert_eq!(idx(&many, false), Err(MAX_PRDT));
}

#[test]
fn probe_resets_enables_and_identifies_the_disks() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0, 2]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let h = probe(&md, dev.clone(), &clock);
    assert!(h.cap().contains(Cap::S64A));
    assert_eq!((h.cap().ports(), h.cap().slots()), (6, 32));
    assert_eq!(dev.params().dma_mask, u64::MAX);
    assert_eq!(dev.params().max_segment_size, 4 << 20);
    let disks = h.disks();
    let names: Vec<(usize, &str)> = disks.iter().map(|d| (d.port, d.name.as_str())).collect();
    assert_eq!(names, [(0, "sda"), (2, "sdb")]);
    assert_eq!(disks[0].id.model, "QEMU HARDDISK");
    assert_eq!(disks[1].id.serial, "QM00002");
    assert_eq!(disks[0].id.sectors, SECTORS as u64);
    assert!(disks[0].id.lba48);
    assert_eq!(disks[0].id.sector_size, 512);
    // One IDENTIFY per disk, a single 512-byte PRD each, into a live mapping.
    let ids: Vec<CmdLog> = md.commands();
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|c| c.command == regs::ATA_IDENTIFY
        && c.ok
        && c.prdt.len() == 1
        && c.prdt[0].1 == 512));
    // Started: ST/FRE and CR/FR; the command list is the coherent page that stays
    // mapped, and the received-FIS area is 1 KiB into it.
    let cmd = md.read32(regs::port(0, regs::PX_CMD));
    assert_eq!(cmd & 0xc011, 0xc011, "{cmd:#x}");
    let clb = md.read32(regs::port(0, regs::PX_CLB)) as u64
        | (md.read32(regs::port(0, regs::PX_CLBU)) as u64) << 32;
    let fb = md.read32(regs::port(0, regs::PX_FB)) as u64
        | (md.read32(regs::port(0, regs::PX_FBU)) as u64) << 32;
    assert_eq!(fb, clb + 1024);
    assert!(dev
        .mappings()
        .iter()
        .any(|m| m.addr.as_u64() == clb && m.map_type == dma::MapType::Coherent));
    // Probe leaves nothing mapped but the two ports' pages and pool chunks.
    drop(h);
    assert_eq!(dev.mapping_count(), 0);
    // After the driver let go, both ports are stopped.
    assert_eq!(md.read32(regs::port(0, regs::PX_CMD)) & 0xc011, 0);
}

#[test]
fn scattered_sub_page_unaligned_reads_and_writes_round_trip() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    let p = pages(mc, 4, u64::MAX);
    let e = odd_shapes(&p);
    h.read(0, 10, &table(&e)).unwrap();
    assert_eq!(gather(mc, &e), md.disk_bytes(0, 10 * 512, 3072));
    // The PRDT is the scatter list, entry for entry (direct: bus = physical).
    let c = last_rw(&md);
    assert_eq!((c.command, c.lba, c.count, c.write), (0x25, 10, 6, false));
    let want: Vec<(u64, u32)> = e.iter().map(|&(a, l)| (a, l as u32)).collect();
    assert_eq!(c.prdt, want);
    // Write a new pattern from the same pieces to sector 100.
    let data: Vec<u8> = (0..3072u32).map(|i| (i * 13 + 5) as u8).collect();
    scatter(mc, &e, &data);
    h.write(0, 100, &table(&e)).unwrap();
    assert_eq!(md.disk_bytes(0, 100 * 512, 3072), data);
    let c = last_rw(&md);
    assert_eq!((c.command, c.lba, c.count, c.write), (0x35, 100, 6, true));
    assert_eq!(c.prdt, want);
    h.flush(0).unwrap();
    assert_eq!(md.flushes(0), 1);
    assert!(md.errors().is_empty(), "{:?}", md.errors());
    assert_eq!(
        dev.mapping_count(),
        2,
        "only the port page and one pool chunk"
    );
}

#[test]
fn segments_a_prd_cannot_carry_are_refused_before_issue() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    let p = pages(mc, 2, u64::MAX);
    let before = md.commands().len();
    // Odd byte count.
    let e = h.read(0, 0, &table(&[(p[0], 511), (p[1], 1)])).unwrap_err();
    assert!(
        matches!(
            e,
            AhciError::BadSegment {
                index: 0,
                len: 511,
                ..
            }
        ),
        "{e}"
    );
    // Odd address.
    let e = h.read(0, 0, &table(&[(p[0] + 1, 512)])).unwrap_err();
    assert!(matches!(e, AhciError::BadSegment { index: 0, .. }), "{e}");
    // More segments than the PRDT holds: 249 separate 512-byte pieces.
    let many: Vec<u64> = (0..249)
        .map(|_| mc.alloc_pages(0, u64::MAX).unwrap().as_u64())
        .collect();
    let t: Vec<(u64, usize)> = many.iter().map(|&a| (a, 512)).collect();
    let e = h.read(0, 0, &table(&t)).unwrap_err();
    assert!(matches!(e, AhciError::BadSegment { index: 248, .. }), "{e}");
    // Not sector-sized, beyond the end.
    assert!(matches!(
        h.read(0, 0, &table(&[(p[0], 100)])),
        Err(AhciError::BadRequest { .. })
    ));
    assert!(matches!(
        h.read(0, SECTORS as u64 - 1, &table(&[(p[0], 1024)])),
        Err(AhciError::BadRequest { .. })
    ));
    assert_eq!(md.commands().len(), before, "nothing reached the HBA");
    assert_eq!(dev.mapping_count(), 2, "the refused mappings were undone");
}

#[test]
fn a_32_bit_hba_gets_high_buffers_through_swiotlb() {
    let mc = machine();
    let md = model(Direct(mc), false, &[0]);
    let clock = Clock::default();
    // SAFETY: the fake machine's swiotlb region, reserved for this pool alone.
    let pool =
        Arc::new(unsafe { Swiotlb::new(mc, PhysAddr::new(SWIOTLB_BASE), SWIOTLB_SIZE) }.unwrap());
    let dev = device(mc, DmaBackend::Swiotlb(pool.clone()));
    let mut h = probe(&md, dev.clone(), &clock);
    assert!(!h.cap().contains(Cap::S64A));
    assert_eq!(dev.params().dma_mask, 0xffff_ffff);
    let p = pages(mc, 4, u64::MAX);
    assert!(p.iter().all(|&a| a >= HIGH), "buffers above 4 GiB");
    let e = odd_shapes(&p);
    h.read(0, 3, &table(&e)).unwrap();
    assert_eq!(gather(mc, &e), md.disk_bytes(0, 3 * 512, 3072));
    let c = last_rw(&md);
    assert_eq!(c.prdt.len(), 4);
    for &(a, l) in &c.prdt {
        assert!(
            a >= SWIOTLB_BASE && a + l as u64 <= SWIOTLB_BASE + SWIOTLB_SIZE as u64,
            "PRD {a:#x}+{l:#x} is not a bounce slot"
        );
    }
    let data: Vec<u8> = (0..3072u32).map(|i| (i * 3 + 1) as u8).collect();
    scatter(mc, &e, &data);
    h.write(0, 500, &table(&e)).unwrap();
    assert_eq!(md.disk_bytes(0, 500 * 512, 3072), data);
    assert_eq!(pool.stats().used_slots, 0, "bounce slots released");
    assert!(md.errors().is_empty(), "{:?}", md.errors());
}

#[test]
fn a_32_bit_hba_without_bouncing_or_iommu_cannot_reach_high_memory() {
    let mc = machine();
    let md = model(Direct(mc), false, &[0]);
    let clock = Clock::default();
    // Direct only: IDENTIFY's own buffer is high, so the disk never comes up, and
    // says why (a mask violation), instead of the HBA writing a truncated address.
    let dev = device(mc, DmaBackend::Direct);
    let h = probe(&md, dev.clone(), &clock);
    assert!(h.disks().is_empty());
    assert!(md.commands().is_empty(), "nothing reached the HBA");
    assert_eq!(dev.params().dma_mask, 0xffff_ffff);
}

#[test]
fn a_media_error_fails_that_request_and_the_port_recovers() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    md.set_media_error(0, 52);
    let p = pages(mc, 1, u64::MAX);
    let e = h.read(0, 48, &table(&[(p[0], 8 * 512)])).unwrap_err();
    assert_eq!(
        e,
        AhciError::TaskFile {
            port: 0,
            command: 0x25,
            status: 0x41,
            error: 0x40,
            lba: 52
        }
    );
    assert!(e.to_string().contains("media error"), "{e}");
    assert_eq!(md.resets(0), 1, "COMRESET");
    assert_eq!(dev.mapping_count(), 2, "the failed request was unmapped");
    // The port works again: before and after the bad sector, reads and writes.
    h.read(0, 40, &table(&[(p[0], 8 * 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 4096), md.disk_bytes(0, 40 * 512, 4096));
    h.read(0, 53, &table(&[(p[0], 8 * 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 4096), md.disk_bytes(0, 53 * 512, 4096));
    h.write(0, 60, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(
        md.disk_bytes(0, 60 * 512, 512),
        md.disk_bytes(0, 53 * 512, 512)
    );
    // Writing the bad sector fails the same way.
    assert!(matches!(
        h.write(0, 52, &table(&[(p[0], 512)])),
        Err(AhciError::TaskFile { lba: 52, .. })
    ));
    assert_eq!(md.resets(0), 2);
    assert!(!h.disks()[0].failed);
}

#[test]
fn a_port_that_never_completes_times_out_and_the_others_go_on() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0, 1]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    md.set_hung(1, true);
    let p = pages(mc, 1, u64::MAX);
    let t0 = clock.us();
    let e = h.read(1, 0, &table(&[(p[0], 512)])).unwrap_err();
    assert_eq!(
        e,
        AhciError::Timeout {
            port: 1,
            command: 0x25,
            ms: 50
        }
    );
    let waited = clock.us() - t0;
    assert!((50_000..200_000).contains(&waited), "waited {waited} µs");
    assert_eq!(md.resets(1), 1);
    // Port 0 is unaffected.
    h.read(0, 7, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(0, 7 * 512, 512));
    // Still hung: times out again rather than hanging; healed: works.
    assert!(matches!(
        h.read(1, 0, &table(&[(p[0], 512)])),
        Err(AhciError::Timeout { .. })
    ));
    md.set_hung(1, false);
    h.read(1, 9, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(1, 9 * 512, 512));
    assert_eq!(dev.mapping_count(), 4, "two ports' pages and pool chunks");
}

#[test]
fn the_block_layer_splits_at_the_prdt_size() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0]);
    let clock = Clock::default();
    let dev = device(mc, DmaBackend::Direct);
    let mut h = probe(&md, dev.clone(), &clock);
    // 300 separate sectors' worth of memory: 248 segments fit one PRDT.
    let bufs: Vec<u64> = (0..600)
        .map(|_| mc.alloc_pages(0, u64::MAX).unwrap().as_u64())
        .step_by(2)
        .collect();
    let e: Vec<(u64, usize)> = bufs.iter().map(|&a| (a + 0x200, 512)).collect();
    let mut d = h.disk(0).unwrap();
    assert_eq!(d.name(), "sda");
    assert_eq!(d.capacity(), SECTORS as u64);
    assert_eq!(d.limits().max_segments, 248);
    d.read(1000, &table(&e)).unwrap();
    let rw: Vec<(u64, u32, usize)> = md
        .commands()
        .iter()
        .filter(|c| c.command == 0x25)
        .map(|c| (c.lba, c.count, c.prdt.len()))
        .collect();
    assert_eq!(rw, [(1000, 248, 248), (1248, 52, 52)]);
    assert_eq!(gather(mc, &e), md.disk_bytes(0, 1000 * 512, 300 * 512));
    let err = d.read(SECTORS as u64 - 10, &table(&e)).unwrap_err();
    assert!(matches!(err, BlockError::OutOfRange { .. }));
    md.set_media_error(0, 1260);
    let err = d.read(1000, &table(&e)).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("sda: I/O error at sector 1248: ahci port 0: media error"),
        "{err}"
    );
    d.flush().unwrap();
}

mod vtd {
    //! The HBA behind the real VT-d driver on the VT-d model: every PRD and list
    //! address is an IOVA the model's page walk translates.
    use super::*;

    use hal::Bdf;

    use testbed::vtd::{Shared, Translated};

    const AHCI: Bdf = Bdf::b(0, 0x1f, 2);

    fn setup(mc: &'static Machine) -> Shared {
        testbed::vtd::setup(mc, AHCI)
    }

    fn run(s64a: bool) {
        let mc = machine();
        let dom = setup(mc);
        let md = model(Translated(dom.clone()), s64a, &[0]);
        let clock = Clock::default();
        let shared: dma::SharedDomain = dom.clone();
        let dev = device(mc, DmaBackend::Iommu(shared));
        let mut h = probe(&md, dev.clone(), &clock);
        assert_eq!(h.disks().len(), 1);
        // Four page-aligned, page-sized pieces in separate high blocks: one IOVA run,
        // one PRD entry.
        let p = pages(mc, 4, u64::MAX);
        let whole: Vec<(u64, usize)> = p.iter().map(|&a| (a, 4096)).collect();
        h.read(0, 64, &table(&whole)).unwrap();
        assert_eq!(gather(mc, &whole), md.disk_bytes(0, 64 * 512, 4 * 4096));
        let c = last_rw(&md);
        assert_eq!(c.prdt.len(), 1, "{:?}", c.prdt);
        assert_eq!(c.prdt[0].1, 4 * 4096);
        assert!(c.prdt[0].0 + 4 * 4096 <= 1 << 32 || s64a);
        // Unaligned sub-page pieces: data lands right, one PRD per break.
        let e = odd_shapes(&p);
        let data: Vec<u8> = (0..3072u32).map(|i| (i * 11 + 3) as u8).collect();
        scatter(mc, &e, &data);
        h.write(0, 7, &table(&e)).unwrap();
        assert_eq!(md.disk_bytes(0, 7 * 512, 3072), data);
        let c = last_rw(&md);
        assert!(c.prdt.len() >= 3, "{:?}", c.prdt);
        let sum: u32 = c.prdt.iter().map(|e| e.1).sum();
        assert_eq!(sum, 3072);
        h.read(0, 0, &table(&e)).unwrap();
        assert_eq!(gather(mc, &e), md.disk_bytes(0, 0, 3072));
        // After the request the IOVAs are gone: the device can no longer reach them.
        let stale = last_rw(&md).prdt[0].0;
        assert!(Translated(dom.clone()).dma_write(stale, &[0; 2]).is_err());
        assert!(md.errors().is_empty(), "{:?}", md.errors());
    }

    #[test]
    fn reads_and_writes_through_vtd_with_s64a() {
        run(true);
    }

    #[test]
    fn reads_and_writes_through_vtd_with_a_32_bit_hba() {
        run(false);
    }

    /// `blk stray` on the host: a read whose second sector goes to an IOVA the
    /// domain reserved and never mapped. The model's VT-d refuses that write and
    /// records a fault naming the HBA, the command ends in an error (no hang), the
    /// mapped sector got its data, and the next read works.
    #[test]
    fn a_read_to_an_unmapped_iova_faults_at_the_iommu_and_fails() {
        let mc = machine();
        let dom = setup(mc);
        let md = model(Translated(dom.clone()), true, &[0]);
        let clock = Clock::default();
        let shared: dma::SharedDomain = dom.clone();
        let dev = device(mc, DmaBackend::Iommu(shared.clone()));
        let mut h = probe(&md, dev.clone(), &clock);
        dom.lock().unit.take_faults();
        let p = pages(mc, 2, u64::MAX);
        let m = dev
            .map_sg(table(&[(p[0], 512)]), dma::DmaDirection::FromDevice)
            .unwrap();
        let good = m.segments()[0];
        let stray = shared.lock().alloc_iova(4096, u64::MAX).unwrap();
        let segs = [
            good,
            dma::DmaSegment {
                addr: stray,
                len: 512,
            },
        ];
        // SAFETY: the first segment is a live mapping of the HBA's device with room
        // for a sector; the second an IOVA the domain reserved and left unmapped.
        let r = unsafe { h.read_to_bus(0, 40, 2, &segs) };
        assert!(
            r.is_err(),
            "a write to an unmapped IOVA must fail the command"
        );
        let faults = dom.lock().unit.take_faults();
        assert!(
            faults
                .iter()
                .any(|f| f.source == AHCI && f.write && f.addr == stray.as_u64() & !0xfff),
            "{faults:?}"
        );
        drop(m.unmap());
        shared.lock().free_iova(stray, 4096);
        assert_eq!(mc.bytes(p[0], 512), md.disk_bytes(0, 40 * 512, 512));
        // Sizes that do not add up are refused before anything is issued.
        // SAFETY: refused before the HBA sees it.
        let r = unsafe { h.read_to_bus(0, 40, 3, &segs) };
        assert!(matches!(r, Err(AhciError::BadRequest { .. })), "{r:?}");
        let q = [(p[1], 4096)];
        h.read(0, 8, &table(&q)).unwrap();
        assert_eq!(gather(mc, &q), md.disk_bytes(0, 8 * 512, 4096));
    }
}

/// A clock that plays the CPU's part for the HBA's interrupt: while the driver sleeps
/// for an interrupt and the model's line is up (IS ≠ 0 with GHC.IE), the handler runs
/// (unless `deliver` is off: a lost interrupt).
struct IrqClock<'a> {
    us: std::rc::Rc<std::cell::Cell<u64>>,
    model: &'a AhciModel<Direct>,
    shared: std::rc::Rc<std::cell::RefCell<Option<Arc<IrqShared>>>>,
    deliver: std::rc::Rc<std::cell::Cell<bool>>,
    /// Interrupts are off on this "CPU": the driver must poll.
    cli: std::rc::Rc<std::cell::Cell<bool>>,
}

impl IrqClock<'_> {
    fn share(&self) -> Self {
        IrqClock {
            us: self.us.clone(),
            model: self.model,
            shared: self.shared.clone(),
            deliver: self.deliver.clone(),
            cli: self.cli.clone(),
        }
    }
}

impl Delay for IrqClock<'_> {
    fn delay_us(&self, us: u32) {
        self.us.set(self.us.get() + us as u64);
    }

    fn wait_interrupt(&self, max_us: u32, woken: &dyn Fn() -> bool) -> Option<u32> {
        if self.cli.get() {
            return None;
        }
        if self.deliver.get() && self.model.irq_pending() {
            if let Some(s) = &*self.shared.borrow() {
                assert!(handle_interrupt(self.model, s));
                // A level-triggered line (INTx) must be down when the handler returns,
                // or the CPU takes the interrupt again at once.
                assert!(!self.model.irq_pending(), "line still up after the handler");
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

fn probe_irq<'a>(
    md: &'a AhciModel<Direct>,
    dev: Arc<DmaDevice>,
) -> (Hba<&'a AhciModel<Direct>, IrqClock<'a>>, IrqClock<'a>) {
    let clock = IrqClock {
        us: Default::default(),
        model: md,
        shared: Default::default(),
        deliver: std::rc::Rc::new(std::cell::Cell::new(true)),
        cli: Default::default(),
    };
    let mut h = Hba::probe(
        md,
        dev,
        clock.share(),
        Config {
            command_timeout_ms: 50,
            first_disk_index: 0,
        },
    )
    .unwrap();
    *clock.shared.borrow_mut() = Some(h.irq_shared().clone());
    h.enable_interrupts(true);
    (h, clock)
}

#[test]
fn interrupts_complete_commands_and_the_handler_acknowledges_them() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0, 2]);
    let (mut h, clock) = probe_irq(&md, device(mc, DmaBackend::Direct));
    assert_eq!(md.read32(regs::GHC) & Ghc::IE.bits(), Ghc::IE.bits());
    // IDENTIFY at probe was polled (no handler yet).
    assert_eq!(h.irq_shared().stats().completed_by_poll, 2);
    let p = pages(mc, 4, u64::MAX);
    let shapes = odd_shapes(&p);
    let sg = table(&shapes);
    for (disk, lba) in [(0, 0u64), (1, 100), (0, 2000)] {
        h.read(disk, lba, &sg).unwrap();
        let port = [0, 2][disk];
        let want = disk_pattern(port as u8)[lba as usize * 512..][..3072].to_vec();
        assert_eq!(gather(mc, &shapes), want);
        // Acknowledged: PxIS and IS are clear, the line is down.
        assert_eq!(md.read32(regs::port(port, regs::PX_IS)), 0);
        assert!(!md.irq_pending());
    }
    scatter(mc, &shapes, &vec![0xa5; 3072]);
    h.write(1, 10, &sg).unwrap();
    h.flush(1).unwrap();
    assert_eq!(md.disk_bytes(2, 10 * 512, 3072), vec![0xa5; 3072]);
    let s = h.irq_shared().stats();
    assert_eq!((s.completed_by_irq, s.completed_by_poll), (5, 2));
    assert_eq!((s.interrupts, s.not_ours), (5, 0));
    assert!(clock.us.get() < 1000, "waited {} µs", clock.us.get());
    // Dropping the HBA turns GHC.IE off again.
    drop(h);
    assert_eq!(md.read32(regs::GHC) & Ghc::IE.bits(), 0);
}

#[test]
fn under_interrupts_media_errors_hangs_and_lost_interrupts_end_cleanly() {
    let mc = machine();
    let md = model(Direct(mc), true, &[0, 1]);
    let dev = device(mc, DmaBackend::Direct);
    let (mut h, clock) = probe_irq(&md, dev.clone());
    let p = pages(mc, 1, u64::MAX);
    // A media error arrives as TFES through the handler: the request's error names
    // the LBA, the port is recovered (COMRESET) and works again by interrupt.
    md.set_media_error(0, 52);
    let e = h.read(0, 50, &table(&[(p[0], 4096)])).unwrap_err();
    assert!(matches!(e, AhciError::TaskFile { lba: 52, .. }), "{e:?}");
    assert_eq!(md.resets(0), 1);
    h.read(0, 60, &table(&[(p[0], 512)])).unwrap();
    assert_eq!(h.irq_shared().stats().completed_by_irq, 2);
    // A port that never completes: the timeout, not a hang.
    md.set_hung(1, true);
    let t0 = clock.us.get();
    let e = h.read(1, 0, &table(&[(p[0], 512)])).unwrap_err();
    assert!(matches!(e, AhciError::Timeout { port: 1, .. }), "{e:?}");
    let waited = clock.us.get() - t0;
    assert!((50_000..200_000).contains(&waited), "waited {waited} µs");
    md.set_hung(1, false);
    // A lost interrupt: the command completes at its timeout, by the last look.
    clock.deliver.set(false);
    let t0 = clock.us.get();
    h.read(1, 7, &table(&[(p[0], 512)])).unwrap();
    assert!(clock.us.get() - t0 >= 50_000);
    assert_eq!(
        mc.bytes(p[0], 512),
        disk_pattern(1)[7 * 512..8 * 512].to_vec()
    );
    clock.deliver.set(true);
    // Interrupts off on the "CPU": the driver polls instead of sleeping.
    clock.cli.set(true);
    let t0 = clock.us.get();
    h.read(1, 8, &table(&[(p[0], 512)])).unwrap();
    assert!(clock.us.get() - t0 < 1000);
    let s = h.irq_shared().stats();
    assert_eq!((s.completed_by_irq, s.completed_by_poll), (2, 2 + 2));
    assert_eq!(
        dev.mapping_count(),
        4,
        "only the ports' pages and pool chunks"
    );
}

mod ncq;
