//! The driver against the behavioural model in `devmodels::idma64`.

use super::*;
use devmodels::idma64::{Idma64Model, ModelError};
use dmaengine::{ChanId, Cookie, DmaEngine, DmaStatus, TxResult};
use hal::Arena;
use std::sync::{Arc, Mutex};

const BASE: u64 = 0x1000_0000;
const SIZE: usize = 0x20_0000;
const LLI_AREA: u64 = BASE;
const SRC: u64 = BASE + 0x1_0000;
const DST: u64 = BASE + 0x10_0000;
const TX_FIFO: u64 = 0xfe00_0000;
const RX_FIFO: u64 = 0xfe00_1000;

/// Bump allocator over the LLI area (the arena starts zeroed, nothing is reused).
struct Bump {
    next: u64,
    live: usize,
}

impl LliAllocator for Bump {
    fn alloc(&mut self, bytes: usize) -> Option<(PhysAddr, DmaAddr)> {
        let at = (self.next + 7) & !7;
        if at + bytes as u64 > SRC {
            return None;
        }
        self.next = at + bytes as u64;
        self.live += 1;
        Some((PhysAddr::new(at), DmaAddr::new(at)))
    }
    fn free(&mut self, _: PhysAddr, _: usize) {
        self.live -= 1;
    }
}

type Model<'a> = Idma64Model<&'a Arena>;
type Drv<'a> = Idma64<&'a Model<'a>, &'a Arena, Bump>;

fn setup<'a>(a: &'a Arena, m: &'a Model<'a>) -> DmaEngine<Drv<'a>> {
    let d = Idma64::new(
        m,
        a,
        Bump {
            next: LLI_AREA,
            live: 0,
        },
    )
    .unwrap();
    let mut e = DmaEngine::new();
    assert_eq!(e.register(d), 0);
    e
}

fn pattern(a: &Arena, at: u64, len: usize, seed: u8) -> Vec<u8> {
    let v: Vec<u8> = (0..len)
        .map(|i| ((i + seed as usize) % 251) as u8 + 1)
        .collect();
    a.write(PhysAddr::new(at), &v);
    v
}

type Log = Arc<Mutex<Vec<(Cookie, TxResult)>>>;

fn submit_memcpy(
    e: &mut DmaEngine<Drv>,
    c: ChanId,
    dst: u64,
    src: u64,
    len: usize,
    log: &Log,
) -> Cookie {
    let mut d = e
        .prep_memcpy(c, DmaAddr::new(dst), DmaAddr::new(src), len)
        .unwrap();
    let l = log.clone();
    d.set_callback(move |ck, r| l.lock().unwrap().push((ck, r)));
    e.submit(d).unwrap()
}

fn slave_cfg(dir: TransferDirection, width: u8, burst: u32) -> SlaveConfig {
    SlaveConfig {
        direction: dir,
        src_addr: DmaAddr::new(RX_FIFO),
        dst_addr: DmaAddr::new(TX_FIFO),
        src_addr_width: width,
        dst_addr_width: width,
        src_maxburst: burst,
        dst_maxburst: burst,
    }
}

#[test]
fn probe_turns_controller_off() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    m.write32(regs::DMA_CFG, 1);
    m.write32(regs::MASK + regs::INT_XFER, 0x0303);
    let e = setup(&a, &m);
    assert_eq!(m.read32(regs::DMA_CFG), 0);
    assert_eq!(m.read32(regs::MASK + regs::INT_XFER), 0);
    assert_eq!(e.channels().len(), 2);
    assert_eq!(e.channels()[1].0.name(), "dma0chan1");
}

#[test]
fn memcpy_in_every_memory_width() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let log: Log = Arc::default();
    // (src offset, dst offset, len, expected width)
    let cases = [
        (0, 0, 4096, 4),
        (2, 6, 2050, 2),
        (1, 3, 1001, 1),
        (4, 8, 1002, 2),
    ];
    for (i, &(so, doff, len, w)) in cases.iter().enumerate() {
        let (s, d) = (
            SRC + 0x1_0000 * i as u64 + so,
            DST + 0x1_0000 * i as u64 + doff,
        );
        let want = pattern(&a, s, len, i as u8);
        let ck = submit_memcpy(&mut e, c, d, s, len, &log);
        e.issue_pending(c).unwrap();
        assert_eq!(e.tx_status(c, ck).unwrap().residue, len);
        m.run_until_idle();
        assert_eq!(e.handle_irq(0), Ok(true));
        assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Complete);
        assert_eq!(a.to_vec(PhysAddr::new(d), len), want, "case {i}");
        let b = *m.blocks().last().unwrap();
        assert_eq!(
            (b.src_width(), b.dst_width(), b.tt_fc()),
            (w, w, 0),
            "case {i}"
        );
    }
    assert_eq!(log.lock().unwrap().len(), cases.len());
    assert!(log.lock().unwrap().iter().all(|l| l.1 == TxResult::NoError));
    assert!(m.errors().is_empty());
    assert_eq!(e.provider(0).unwrap().allocator().live, 0);
}

#[test]
fn slave_sg_both_directions_every_bus_width() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    m.add_fifo(TX_FIFO);
    m.add_fifo(RX_FIFO);
    let mut e = setup(&a, &m);
    let tx = e.request_channel(DmaCaps::SLAVE, |c| c.chan == 0).unwrap();
    let rx = e.request_channel(DmaCaps::SLAVE, |c| c.chan == 1).unwrap();
    for (k, w) in [1u8, 2, 4].into_iter().enumerate() {
        let base = SRC + 0x2_0000 * k as u64;
        // TX: three scattered segments, memory → FIFO.
        e.slave_config(tx, slave_cfg(TransferDirection::MemToDev, w, 8))
            .unwrap();
        let sg = [(base, 512usize), (base + 0x1000, 64), (base + 0x3000, 1024)];
        let mut want = Vec::new();
        for (i, &(at, len)) in sg.iter().enumerate() {
            want.extend(pattern(&a, at, len, i as u8 * 7));
        }
        let sgd: Vec<(DmaAddr, usize)> = sg.iter().map(|&(p, l)| (DmaAddr::new(p), l)).collect();
        let d = e
            .prep_slave_sg(tx, &sgd, TransferDirection::MemToDev)
            .unwrap();
        assert_eq!(d.len(), 1600);
        let ck_tx = e.submit(d).unwrap();
        // RX: FIFO → two memory segments.
        e.slave_config(rx, slave_cfg(TransferDirection::DevToMem, w, 4))
            .unwrap();
        let incoming: Vec<u8> = (0..768u32).map(|i| (i * 7 + w as u32) as u8).collect();
        m.push_fifo(RX_FIFO, &incoming);
        let dst = DST + 0x2_0000 * k as u64;
        let rsg = [
            (DmaAddr::new(dst), 256usize),
            (DmaAddr::new(dst + 0x800), 512),
        ];
        let d = e
            .prep_slave_sg(rx, &rsg, TransferDirection::DevToMem)
            .unwrap();
        let ck_rx = e.submit(d).unwrap();
        let before = m.blocks().len();
        e.issue_pending(tx).unwrap();
        e.issue_pending(rx).unwrap();
        m.run_until_idle();
        assert_eq!(e.handle_irq(0), Ok(true));
        assert_eq!(e.tx_status(tx, ck_tx).unwrap().status, DmaStatus::Complete);
        assert_eq!(e.tx_status(rx, ck_rx).unwrap().status, DmaStatus::Complete);
        assert_eq!(m.take_fifo(TX_FIFO), want, "width {w}");
        assert_eq!(a.to_vec(PhysAddr::new(dst), 256), incoming[..256]);
        assert_eq!(a.to_vec(PhysAddr::new(dst + 0x800), 512), incoming[256..]);
        let blocks = &m.blocks()[before..];
        assert_eq!(blocks.len(), 5);
        for b in blocks {
            if b.chan == 0 {
                assert_eq!(
                    (b.dst_width(), b.src_width(), b.tt_fc()),
                    (w as usize, 4, 1)
                );
                assert_eq!(b.dar, TX_FIFO);
                assert_eq!((b.ctl_lo >> 11) & 7, 3, "burst 8 → code 3");
                assert!(b.ctl_lo & CtlLo::DST_FIX.bits() != 0);
            } else {
                assert_eq!(
                    (b.src_width(), b.dst_width(), b.tt_fc()),
                    (w as usize, 4, 2)
                );
                assert_eq!(b.sar, RX_FIFO);
                assert_eq!((b.ctl_lo >> 14) & 7, 2, "burst 4 → code 2");
                assert!(b.ctl_lo & CtlLo::SRC_FIX.bits() != 0);
            }
        }
    }
    assert!(m.errors().is_empty());
}

#[test]
fn long_memcpy_is_split_into_an_lli_chain() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let len = 300 * 1024;
    let want = pattern(&a, SRC, len, 3);
    let d = e
        .prep_memcpy(c, DmaAddr::new(DST), DmaAddr::new(SRC), len)
        .unwrap();
    // The chain in memory: 0x1FFFC, 0x1FFFC, rest; links and flags as Linux builds them.
    let first = d.hw().first_lli().as_u64();
    assert_eq!(d.hw().nr_lli(), 3);
    let lens = [0x1fffc, 0x1fffc, len - 2 * 0x1fffc];
    for (i, &l) in lens.iter().enumerate() {
        let at = first + (i * regs::LLI_SIZE) as u64;
        let llp = a.read_u64(PhysAddr::new(at + regs::LLI_LLP as u64));
        let ctl = CtlLo::from_bits_retain(a.read_u32(PhysAddr::new(at + regs::LLI_CTL_LO as u64)));
        let hi = a.read_u32(PhysAddr::new(at + regs::LLI_CTL_HI as u64));
        assert_eq!(hi as usize, l);
        let last = i == 2;
        assert_eq!(llp, if last { 0 } else { at + regs::LLI_SIZE as u64 });
        assert_eq!(ctl.contains(CtlLo::INT_EN), last);
        assert_eq!(ctl.contains(CtlLo::LLP_SRC_EN | CtlLo::LLP_DST_EN), !last);
    }
    let ck = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    m.run_until_idle();
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Complete);
    assert_eq!(a.to_vec(PhysAddr::new(DST), len), want);
    let lens_seen: Vec<usize> = m.blocks().iter().map(|b| b.len as usize).collect();
    assert_eq!(lens_seen, lens);
    // Split at an aligned maximum, every chunk keeps the 4-byte width of the first
    // (a split at 0x1FFFF made every later chunk odd-addressed and byte-wide).
    for b in m.blocks() {
        assert_eq!((b.src_width(), b.dst_width()), (4, 4), "{b:?}");
    }
    // Nothing pending any more: the next interrupt on the shared line is not ours.
    assert_eq!(e.handle_irq(0), Ok(false));
}

/// Bytes of `dst` that already equal `want`, from the start.
fn copied(a: &Arena, dst: u64, want: &[u8]) -> usize {
    let got = a.to_vec(PhysAddr::new(dst), want.len());
    got.iter().zip(want).take_while(|(g, w)| g == w).count()
}

#[test]
fn residue_pause_resume_and_terminate_mid_transfer() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let len = 300 * 1024;
    let want = pattern(&a, SRC, len, 9);
    let log: Log = Arc::default();
    let ck = submit_memcpy(&mut e, c, DST, SRC, len, &log);
    let queued = submit_memcpy(&mut e, c, DST + 0x8_0000, SRC, 4096, &log);
    e.issue_pending(c).unwrap();
    assert_eq!(
        e.tx_status(c, ck).unwrap().residue,
        len,
        "nothing fetched yet"
    );
    m.set_step_bytes(0x7000);
    let mut checked_boundary = false;
    for _ in 0..8 {
        m.step();
        let done = copied(&a, DST, &want);
        let st = e.tx_status(c, ck).unwrap();
        assert_eq!(st.status, DmaStatus::InProgress);
        assert_eq!(st.residue, len - done, "after {done} bytes");
        checked_boundary |= done == regs::MAX_BLOCK;
    }
    assert!(
        checked_boundary,
        "a stop exactly at a block boundary was checked"
    );
    // Pause: nothing moves, the residue stays readable.
    e.pause(c).unwrap();
    let r = e.tx_status(c, ck).unwrap();
    assert_eq!(r.status, DmaStatus::Paused);
    assert_eq!(m.run_until_idle(), 0);
    assert_eq!(e.tx_status(c, ck).unwrap().residue, r.residue);
    e.resume(c).unwrap();
    m.step();
    let done = copied(&a, DST, &want);
    assert!(len - done < r.residue);
    assert_eq!(e.tx_status(c, ck).unwrap().residue, len - done);
    // Terminate: the channel stops where it is; the queued descriptor is dropped.
    let llp = m.read64(regs::LLP);
    e.terminate_all(c).unwrap();
    assert!(!m.channel_enabled(0));
    assert_eq!(m.run_until_idle(), 0);
    assert_eq!(
        copied(&a, DST, &want),
        done,
        "nothing moved after terminate"
    );
    assert!(a
        .to_vec(PhysAddr::new(DST + done as u64), len - done)
        .iter()
        .all(|&b| b == 0));
    assert_eq!(m.read64(regs::LLP), llp, "LLP left for residue computation");
    assert_eq!(e.handle_irq(0), Ok(false));
    assert!(
        log.lock().unwrap().is_empty(),
        "no callbacks for terminated work"
    );
    assert_eq!(
        e.tx_status(c, queued).unwrap().status,
        DmaStatus::InProgress
    );
    assert_eq!(e.provider(0).unwrap().allocator().live, 0);
    // The channel works again afterwards.
    m.set_step_bytes(1 << 20);
    let ck2 = submit_memcpy(&mut e, c, DST, SRC, 64, &log);
    e.issue_pending(c).unwrap();
    m.run_until_idle();
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(c, ck2).unwrap().status, DmaStatus::Complete);
}

#[test]
fn bad_address_raises_error_interrupt() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let log: Log = Arc::default();
    let bad = submit_memcpy(&mut e, c, DST, 0x9000_0000, 256, &log);
    let good = submit_memcpy(&mut e, c, DST, SRC, 256, &log);
    let want = pattern(&a, SRC, 256, 1);
    e.issue_pending(c).unwrap();
    m.run_until_idle();
    assert_eq!(m.errors(), [(0, ModelError::BadAddress(0x9000_0000))]);
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(c, bad).unwrap().status, DmaStatus::Error);
    assert_eq!(m.read32(regs::RAW + regs::INT_ERROR), 0, "error cleared");
    // The queued descriptor starts after the error and completes.
    m.run_until_idle();
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(c, good).unwrap().status, DmaStatus::Complete);
    assert_eq!(a.to_vec(PhysAddr::new(DST), 256), want);
    assert_eq!(
        *log.lock().unwrap(),
        [(bad, TxResult::Error), (good, TxResult::NoError)]
    );
}

#[test]
fn shared_interrupt_not_ours_when_status_int_is_zero() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    assert_eq!(e.handle_irq(0), Ok(false));
    let log: Log = Arc::default();
    submit_memcpy(&mut e, c, DST, SRC, 128, &log);
    e.issue_pending(c).unwrap();
    assert_eq!(e.handle_irq(0), Ok(false), "running, not finished");
    m.run_until_idle();
    // BLOCK is raw-set by the INT_EN block but masked: it does not make the IRQ ours.
    assert_ne!(m.read32(regs::RAW + regs::INT_BLOCK), 0);
    assert_ne!(m.read32(regs::STATUS_INT), 0);
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(m.read32(regs::STATUS_INT), 0);
    assert_eq!(e.handle_irq(0), Ok(false));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn dmatest_verification_catches_a_corrupted_byte() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let log: Log = Arc::default();
    let len = 4096;
    let mut verify = |corrupt: bool| {
        let want = pattern(&a, SRC, len, corrupt as u8);
        a.fill(PhysAddr::new(DST), 0, len);
        if corrupt {
            m.corrupt_next_byte();
        }
        submit_memcpy(&mut e, c, DST, SRC, len, &log);
        e.issue_pending(c).unwrap();
        m.run_until_idle();
        assert_eq!(e.handle_irq(0), Ok(true));
        let got = a.to_vec(PhysAddr::new(DST), len);
        got.iter().zip(&want).filter(|(g, w)| g != w).count()
    };
    assert_eq!(verify(false), 0);
    assert_eq!(verify(true), 1, "the corrupted byte is detected");
    assert_eq!(verify(false), 0, "the knob is one-shot");
}

#[test]
fn configs_the_controller_cannot_do_are_refused() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::SLAVE, |_| true).unwrap();
    assert_eq!(
        e.slave_config(c, slave_cfg(TransferDirection::MemToDev, 8, 1)),
        Err(EngineError::BadBusWidth(8))
    );
    assert_eq!(
        e.slave_config(c, slave_cfg(TransferDirection::DevToMem, 4, 3)),
        Err(EngineError::BadBurst(3))
    );
    assert_eq!(
        e.slave_config(c, slave_cfg(TransferDirection::MemToDev, 4, 256)),
        Err(EngineError::BadBurst(256))
    );
    assert_eq!(
        e.slave_config(c, slave_cfg(TransferDirection::MemToMem, 4, 1)),
        Err(EngineError::BadDirection(TransferDirection::MemToMem))
    );
    e.slave_config(c, slave_cfg(TransferDirection::MemToDev, 2, 16))
        .unwrap();
    e.release(c).unwrap();
    assert_eq!(
        e.prep_slave_sg(c, &[(DmaAddr::new(SRC), 4)], TransferDirection::MemToDev)
            .err(),
        Some(EngineError::ChannelNotHeld(c))
    );
}

#[test]
fn cyclic_ring_wraps_with_an_interrupt_per_period_until_terminated() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    m.add_fifo(TX_FIFO);
    m.set_step_bytes(256);
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::CYCLIC, |_| true).unwrap();
    e.slave_config(c, slave_cfg(TransferDirection::MemToDev, 4, 8))
        .unwrap();
    let ring = pattern(&a, SRC, 1024, 3);
    // A period longer than one hardware block is refused.
    assert!(matches!(
        e.prep_dma_cyclic(
            c,
            DmaAddr::new(SRC),
            0x40000,
            0x20000,
            TransferDirection::MemToDev
        ),
        Err(EngineError::BadLength(0x20000))
    ));
    let mut d = e
        .prep_dma_cyclic(c, DmaAddr::new(SRC), 1024, 256, TransferDirection::MemToDev)
        .unwrap();
    assert_eq!(d.hw().nr_lli(), 4);
    let periods = Arc::new(Mutex::new(0usize));
    let p2 = periods.clone();
    d.set_callback(move |_, r| {
        assert_eq!(r, TxResult::NoError);
        *p2.lock().unwrap() += 1;
    });
    let ck = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    // Six periods: one step (256 bytes) each, then the interrupt.
    for i in 1..=6 {
        assert!(m.step());
        assert_eq!(e.handle_irq(0), Ok(true), "period {i}");
        assert_eq!(*periods.lock().unwrap(), i);
    }
    let mut want = ring.clone();
    want.extend_from_slice(&ring[..512]);
    assert_eq!(
        m.take_fifo(TX_FIFO),
        want,
        "the ring wrapped after 4 periods"
    );
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::InProgress);
    assert!(m.channel_enabled(0));
    e.terminate_all(c).unwrap();
    assert!(!m.channel_enabled(0));
    assert!(!m.step(), "nothing moves after terminate");
    assert!(m.take_fifo(TX_FIFO).is_empty());
    assert!(m.errors().is_empty());
    // The channel is reusable for a plain transfer afterwards.
    let log: Log = Arc::default();
    e.release(c).unwrap();
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let ck = submit_memcpy(&mut e, c, DST, SRC, 1024, &log);
    e.issue_pending(c).unwrap();
    m.run_until_idle();
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Complete);
    assert_eq!(a.to_vec(PhysAddr::new(DST), 1024), ring);
}

#[test]
fn long_slave_transfer_on_a_4_byte_peripheral_splits_aligned() {
    // A 4-byte-wide peripheral cannot take a 0x1FFFF-byte block: the split must keep
    // every chunk a multiple of the device width.
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    m.add_fifo(RX_FIFO);
    m.set_step_bytes(1 << 20);
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::SLAVE, |_| true).unwrap();
    e.slave_config(c, slave_cfg(TransferDirection::DevToMem, 4, 8))
        .unwrap();
    let len = 0x3_0000;
    let incoming: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
    m.push_fifo(RX_FIFO, &incoming);
    let d = e
        .prep_slave_sg(c, &[(DmaAddr::new(DST), len)], TransferDirection::DevToMem)
        .unwrap();
    let ck = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    m.run_until_idle();
    assert_eq!(m.errors(), []);
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Complete);
    assert_eq!(a.to_vec(PhysAddr::new(DST), len), incoming);
    assert!(m
        .blocks()
        .iter()
        .all(|b| b.dst_width() == 4 && b.len % 4 == 0));
}

#[test]
fn stale_raw_bit_does_not_complete_the_next_transfer() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let log: Log = Arc::default();
    // A transfer finishes but is terminated before its interrupt is handled: RAW XFER
    // stays set in the hardware.
    let want = pattern(&a, SRC, 0x4000, 5);
    submit_memcpy(&mut e, c, DST, SRC, 0x4000, &log);
    e.issue_pending(c).unwrap();
    m.run_until_idle();
    e.terminate_all(c).unwrap();
    assert_eq!(m.raw(devmodels::idma64::IRQ_XFER), 1, "model keeps RAW set");
    // The next transfer has moved only part of its data when the line fires.
    m.set_step_bytes(0x1000);
    let ck = submit_memcpy(&mut e, c, DST + 0x8_0000, SRC, 0x4000, &log);
    e.issue_pending(c).unwrap();
    m.step();
    let _ = e.handle_irq(0);
    assert_eq!(
        e.tx_status(c, ck).unwrap().status,
        DmaStatus::InProgress,
        "not done while the engine still writes"
    );
    assert!(log.lock().unwrap().is_empty());
    m.run_until_idle();
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Complete);
    assert_eq!(a.to_vec(PhysAddr::new(DST + 0x8_0000), 0x4000), want);
}

std::thread_local! {
    static DELAYS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn counting_delay(us: u32) {
    DELAYS.with(|d| d.set(d.get() + us));
}

#[test]
fn pause_with_data_in_the_fifo_is_tolerated_and_polls_wait() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    m.add_fifo(RX_FIFO);
    m.set_step_bytes(64);
    let mut d = Idma64::new(
        &m,
        &a,
        Bump {
            next: LLI_AREA,
            live: 0,
        },
    )
    .unwrap();
    d.set_delay(counting_delay);
    let mut e = DmaEngine::new();
    assert_eq!(e.register(d), 0);
    let c = e.request_channel(DmaCaps::SLAVE, |_| true).unwrap();
    e.slave_config(c, slave_cfg(TransferDirection::DevToMem, 4, 8))
        .unwrap();
    m.push_fifo(RX_FIFO, &[0x5a; 128]);
    let d = e
        .prep_slave_sg(c, &[(DmaAddr::new(DST), 256)], TransferDirection::DevToMem)
        .unwrap();
    let ck = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    m.step();
    // Suspended without drain, the channel keeps data in its FIFO: FIFO_EMPTY never
    // sets. Pause still succeeds (Linux tolerates it) after a bounded, delayed poll.
    m.hold_fifo(0, 3);
    DELAYS.with(|d| d.set(0));
    assert_eq!(e.pause(c), Ok(()));
    assert_eq!(DELAYS.with(|d| d.get()), POLL_LIMIT as u32 * POLL_DELAY_US);
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Paused);
    assert_eq!(m.run_until_idle(), 0, "suspended: nothing moves");
    // Terminate drains: FIFO_EMPTY sets after a few polls, each one waited for.
    DELAYS.with(|d| d.set(0));
    e.terminate_all(c).unwrap();
    assert_eq!(DELAYS.with(|d| d.get()), 3);
    assert!(!m.channel_enabled(0));
}

#[test]
fn cyclic_residue_counts_down_through_the_last_period() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let m = Model::new(&a, a.base(), a.size());
    m.add_fifo(TX_FIFO);
    m.set_step_bytes(128);
    let mut e = setup(&a, &m);
    let c = e.request_channel(DmaCaps::CYCLIC, |_| true).unwrap();
    e.slave_config(c, slave_cfg(TransferDirection::MemToDev, 4, 8))
        .unwrap();
    pattern(&a, SRC, 1024, 3);
    let d = e
        .prep_dma_cyclic(c, DmaAddr::new(SRC), 1024, 256, TransferDirection::MemToDev)
        .unwrap();
    let ck = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    assert_eq!(e.tx_status(c, ck).unwrap().residue, 1024, "not started");
    // Two rounds of the ring: the residue is the bytes left to the end of the buffer.
    for round in 0..2 {
        for k in 1..=8usize {
            m.step();
            let _ = e.handle_irq(0);
            // At the wrap (0 left) dmaengine reports a whole ring again.
            let want = match 1024 - 128 * k {
                0 => 1024,
                n => n,
            };
            assert_eq!(
                e.tx_status(c, ck).unwrap().residue,
                want,
                "round {round}, after {} bytes",
                128 * k
            );
        }
    }
    e.terminate_all(c).unwrap();
}
