//! Framework lifecycle against a trivial fake provider.

use super::*;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Fake {
    caps: Option<DmaCaps>,
    running: [Option<usize>; 2],
    done: [usize; 2],
    paused: [bool; 2],
    pending: Vec<ChanEvent>,
    started: Vec<(usize, usize)>,
    stops: usize,
    freed: usize,
}

impl Fake {
    fn finish(&mut self, ch: usize) {
        self.pending.push(ChanEvent::Done(ch));
    }
}

impl DmaProvider for Fake {
    type Desc = usize;
    fn caps(&self) -> DmaCaps {
        self.caps
            .unwrap_or(DmaCaps::MEMCPY | DmaCaps::SLAVE | DmaCaps::PRIVATE)
    }
    fn channel_count(&self) -> usize {
        2
    }
    fn check_config(&self, cfg: &SlaveConfig) -> Result<(), EngineError> {
        if cfg.src_addr_width > 4 {
            return Err(EngineError::BadBusWidth(cfg.src_addr_width));
        }
        Ok(())
    }
    fn prep_memcpy(
        &mut self,
        _: usize,
        _: DmaAddr,
        _: DmaAddr,
        len: usize,
    ) -> Result<usize, EngineError> {
        Ok(len)
    }
    fn prep_slave_sg(
        &mut self,
        _: usize,
        sg: &[(DmaAddr, usize)],
        _: TransferDirection,
        _: &SlaveConfig,
    ) -> Result<usize, EngineError> {
        Ok(sg.iter().map(|s| s.1).sum())
    }
    fn desc_len(&self, d: &usize) -> usize {
        *d
    }
    fn start(&mut self, ch: usize, d: &usize) {
        self.running[ch] = Some(*d);
        self.done[ch] = 0;
        self.started.push((ch, *d));
    }
    fn stop(&mut self, ch: usize) {
        self.running[ch] = None;
        self.stops += 1;
    }
    fn residue(&self, ch: usize, d: &usize) -> usize {
        d - self.done[ch]
    }
    fn pause(&mut self, ch: usize) -> Result<(), EngineError> {
        self.paused[ch] = true;
        Ok(())
    }
    fn resume(&mut self, ch: usize) -> Result<(), EngineError> {
        self.paused[ch] = false;
        Ok(())
    }
    fn prep_cyclic(
        &mut self,
        _: usize,
        _: DmaAddr,
        buf_len: usize,
        _: usize,
        _: TransferDirection,
        _: &SlaveConfig,
    ) -> Result<usize, EngineError> {
        Ok(buf_len)
    }
    fn free_desc(&mut self, _: usize) {
        self.freed += 1;
    }
    fn handle_irq(&mut self, ev: &mut Vec<ChanEvent>) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        ev.append(&mut self.pending);
        true
    }
}

fn engine() -> (DmaEngine<Fake>, ChanId) {
    let mut e = DmaEngine::new();
    e.register(Fake::default());
    let c = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    (e, c)
}

fn memcpy(e: &mut DmaEngine<Fake>, c: ChanId, len: usize) -> Descriptor<usize> {
    e.prep_memcpy(c, DmaAddr::new(0x1000), DmaAddr::new(0x2000), len)
        .unwrap()
}

#[test]
fn names_caps_and_filtered_request() {
    let mut e = DmaEngine::new();
    e.register(Fake::default());
    e.register(Fake {
        caps: Some(DmaCaps::SLAVE),
        ..Fake::default()
    });
    let names: Vec<String> = e.channels().iter().map(|c| c.0.name()).collect();
    assert_eq!(names, ["dma0chan0", "dma0chan1", "dma1chan0", "dma1chan1"]);
    // Filter picks device 1's second channel.
    let c = e
        .request_channel(DmaCaps::SLAVE, |c| c.dev == 1 && c.chan == 1)
        .unwrap();
    assert_eq!(c.to_string(), "dma1chan1");
    // MEMCPY is only on device 0: two requests succeed, the third fails.
    assert_eq!(e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap().dev, 0);
    assert_eq!(e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap().dev, 0);
    assert_eq!(
        e.request_channel(DmaCaps::MEMCPY, |_| true),
        Err(EngineError::NoChannel)
    );
    e.release(c).unwrap();
    assert_eq!(
        e.request_channel(DmaCaps::SLAVE, |c| c.dev == 1).unwrap(),
        ChanId { dev: 1, chan: 0 }
    );
    assert_eq!(
        e.request_channel(DmaCaps::SLAVE, |c| c.dev == 1).unwrap(),
        c
    );
}

#[test]
fn cookies_order_and_states_and_callbacks() {
    let (mut e, c) = engine();
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut cookies = Vec::new();
    for len in [100, 200, 300] {
        let mut d = memcpy(&mut e, c, len);
        let l = log.clone();
        d.set_callback(move |ck, r| l.lock().unwrap().push((ck, r)));
        cookies.push(e.submit(d).unwrap());
    }
    assert_eq!(cookies, [Cookie(1), Cookie(2), Cookie(3)]);
    // Submitted but not issued: nothing runs.
    assert!(e.provider(0).unwrap().started.is_empty());
    let st = e.tx_status(c, cookies[1]).unwrap();
    assert_eq!((st.status, st.residue), (DmaStatus::InProgress, 200));
    e.issue_pending(c).unwrap();
    assert_eq!(e.provider(0).unwrap().started, [(0, 100)]);
    e.provider_mut(0).unwrap().done[0] = 40;
    assert_eq!(e.tx_status(c, cookies[0]).unwrap().residue, 60);
    assert_eq!(e.tx_status(c, cookies[2]).unwrap().residue, 300);
    // Interrupt with nothing pending is not ours.
    assert_eq!(e.handle_irq(0), Ok(false));
    for _ in 0..3 {
        e.provider_mut(0).unwrap().finish(0);
        assert_eq!(e.handle_irq(0), Ok(true));
    }
    assert_eq!(
        *log.lock().unwrap(),
        cookies
            .iter()
            .map(|&c| (c, TxResult::NoError))
            .collect::<Vec<_>>()
    );
    for &ck in &cookies {
        let st = e.tx_status(c, ck).unwrap();
        assert_eq!((st.status, st.residue), (DmaStatus::Complete, 0));
    }
    let p = e.provider(0).unwrap();
    assert_eq!(p.started, [(0, 100), (0, 200), (0, 300)]);
    assert_eq!(p.freed, 3);
    assert_eq!(p.stops, 1, "stopped once, when the queue ran dry");
}

#[test]
fn cookie_wraps_to_one_and_status_stays_right() {
    let (mut e, c) = engine();
    e.devices[0].chans[0].cookie = i32::MAX - 1;
    e.devices[0].chans[0].completed = i32::MAX - 1;
    let d = memcpy(&mut e, c, 8);
    let a = e.submit(d).unwrap();
    let d = memcpy(&mut e, c, 8);
    let b = e.submit(d).unwrap();
    assert_eq!((a, b), (Cookie(i32::MAX), Cookie(1)));
    e.issue_pending(c).unwrap();
    assert_eq!(e.tx_status(c, b).unwrap().status, DmaStatus::InProgress);
    e.provider_mut(0).unwrap().finish(0);
    e.handle_irq(0).unwrap();
    assert_eq!(e.tx_status(c, a).unwrap().status, DmaStatus::Complete);
    assert_eq!(e.tx_status(c, b).unwrap().status, DmaStatus::InProgress);
    e.provider_mut(0).unwrap().finish(0);
    e.handle_irq(0).unwrap();
    assert_eq!(e.tx_status(c, b).unwrap().status, DmaStatus::Complete);
    assert!(cookie_is_complete(Cookie(i32::MAX), Cookie(1), Cookie(1)));
    assert!(!cookie_is_complete(Cookie(1), Cookie(i32::MAX), Cookie(1)));
}

#[test]
fn error_event_reports_error_status_and_callback() {
    let (mut e, c) = engine();
    let got = Arc::new(Mutex::new(None));
    let mut d = memcpy(&mut e, c, 64);
    let g = got.clone();
    d.set_callback(move |_, r| *g.lock().unwrap() = Some(r));
    let ck = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    e.provider_mut(0).unwrap().pending.push(ChanEvent::Error(0));
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(*got.lock().unwrap(), Some(TxResult::Error));
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Error);
}

#[test]
fn terminate_drops_queue_without_callbacks_and_pause_resume() {
    let (mut e, c) = engine();
    let calls = Arc::new(Mutex::new(0));
    let mut cks = Vec::new();
    for _ in 0..3 {
        let mut d = memcpy(&mut e, c, 10);
        let n = calls.clone();
        d.set_callback(move |_, _| *n.lock().unwrap() += 1);
        cks.push(e.submit(d).unwrap());
    }
    e.issue_pending(c).unwrap();
    e.pause(c).unwrap();
    assert!(e.provider(0).unwrap().paused[0]);
    assert_eq!(e.tx_status(c, cks[0]).unwrap().status, DmaStatus::Paused);
    e.resume(c).unwrap();
    assert!(!e.provider(0).unwrap().paused[0]);
    assert_eq!(
        e.tx_status(c, cks[0]).unwrap().status,
        DmaStatus::InProgress
    );
    e.terminate_all(c).unwrap();
    let p = e.provider(0).unwrap();
    assert_eq!((p.running[0], p.freed), (None, 3));
    // A late interrupt finds nothing active and runs no callback.
    e.provider_mut(0).unwrap().finish(0);
    e.handle_irq(0).unwrap();
    assert_eq!(*calls.lock().unwrap(), 0);
    // The channel is usable again; cookies keep counting.
    let d = memcpy(&mut e, c, 1);
    assert_eq!(e.submit(d).unwrap(), Cookie(4));
}

#[test]
fn misuse_is_a_typed_error() {
    let (mut e, c) = engine();
    // Slave prep without configuration.
    assert_eq!(
        e.prep_slave_sg(c, &[(DmaAddr::new(0), 4)], TransferDirection::MemToDev)
            .err(),
        Some(EngineError::NotConfigured(c))
    );
    let mut cfg = SlaveConfig {
        direction: TransferDirection::MemToDev,
        src_addr: DmaAddr::ZERO,
        dst_addr: DmaAddr::new(0xfe00_0000),
        src_addr_width: 3,
        dst_addr_width: 4,
        src_maxburst: 1,
        dst_maxburst: 1,
    };
    assert_eq!(e.slave_config(c, cfg), Err(EngineError::BadBusWidth(3)));
    cfg.src_addr_width = 8; // valid in general, but the provider refuses it
    assert_eq!(e.slave_config(c, cfg), Err(EngineError::BadBusWidth(8)));
    cfg.src_addr_width = 4;
    cfg.direction = TransferDirection::MemToMem;
    assert_eq!(
        e.slave_config(c, cfg),
        Err(EngineError::BadDirection(TransferDirection::MemToMem))
    );
    cfg.direction = TransferDirection::MemToDev;
    e.slave_config(c, cfg).unwrap();
    assert!(e
        .prep_slave_sg(c, &[(DmaAddr::new(0), 4)], TransferDirection::MemToDev)
        .is_ok());
    assert_eq!(
        e.prep_memcpy(c, DmaAddr::ZERO, DmaAddr::ZERO, 0).err(),
        Some(EngineError::BadLength(0))
    );
    // Prepared before release, submitted after: refused, resources freed.
    let d = memcpy(&mut e, c, 4);
    e.release(c).unwrap();
    let freed = e.provider(0).unwrap().freed;
    assert_eq!(e.submit(d), Err(EngineError::ChannelNotHeld(c)));
    assert_eq!(e.provider(0).unwrap().freed, freed + 1);
    assert_eq!(
        e.prep_memcpy(c, DmaAddr::ZERO, DmaAddr::ZERO, 4).err(),
        Some(EngineError::ChannelNotHeld(c))
    );
    assert_eq!(e.issue_pending(c), Err(EngineError::ChannelNotHeld(c)));
    // Capability missing.
    let mut e2 = DmaEngine::new();
    e2.register(Fake {
        caps: Some(DmaCaps::SLAVE),
        ..Fake::default()
    });
    let c2 = e2.request_channel(DmaCaps::SLAVE, |_| true).unwrap();
    assert_eq!(
        e2.prep_memcpy(c2, DmaAddr::ZERO, DmaAddr::ZERO, 4).err(),
        Some(EngineError::NotCapable(DmaCaps::MEMCPY))
    );
    assert_eq!(
        EngineError::ChannelNotHeld(c).to_string(),
        "channel dma0chan0 is not held by a client"
    );
    // Submitting twice does not compile: `submit` takes the descriptor by value.
}

fn slave_cfg() -> SlaveConfig {
    SlaveConfig {
        direction: TransferDirection::MemToDev,
        src_addr: DmaAddr::new(0),
        dst_addr: DmaAddr::new(0xfe00_0000),
        src_addr_width: 4,
        dst_addr_width: 4,
        src_maxburst: 8,
        dst_maxburst: 8,
    }
}

#[test]
fn cyclic_runs_a_callback_per_period_until_terminated() {
    let mut e = DmaEngine::new();
    e.register(Fake {
        caps: Some(DmaCaps::SLAVE | DmaCaps::CYCLIC),
        ..Fake::default()
    });
    let c = e.request_channel(DmaCaps::CYCLIC, |_| true).unwrap();
    // Without a slave configuration the prep is refused.
    assert!(matches!(
        e.prep_dma_cyclic(
            c,
            DmaAddr::new(0x10000),
            4096,
            1024,
            TransferDirection::MemToDev
        ),
        Err(EngineError::NotConfigured(_))
    ));
    e.slave_config(c, slave_cfg()).unwrap();
    // A ring that is not a whole number of periods is refused.
    assert!(matches!(
        e.prep_dma_cyclic(
            c,
            DmaAddr::new(0x10000),
            4000,
            1024,
            TransferDirection::MemToDev
        ),
        Err(EngineError::BadLength(_))
    ));
    let mut d = e
        .prep_dma_cyclic(
            c,
            DmaAddr::new(0x10000),
            4096,
            1024,
            TransferDirection::MemToDev,
        )
        .unwrap();
    assert!(d.is_cyclic());
    let periods = Arc::new(Mutex::new(0usize));
    let p2 = periods.clone();
    d.set_callback(move |_, r| {
        assert_eq!(r, TxResult::NoError);
        *p2.lock().unwrap() += 1;
    });
    let cookie = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    for _ in 0..10 {
        e.provider_mut(0)
            .unwrap()
            .pending
            .push(ChanEvent::Period(0));
        e.handle_irq(0).unwrap();
    }
    assert_eq!(*periods.lock().unwrap(), 10);
    // Ten periods later the transfer is still in progress, with the ring's residue.
    let st = e.tx_status(c, cookie).unwrap();
    assert_eq!(st.status, DmaStatus::InProgress);
    assert_eq!(st.residue, 4096);
    assert_eq!(e.chan_info(c).unwrap().completed, 0);
    e.terminate_all(c).unwrap();
    assert_eq!(e.provider(0).unwrap().stops, 1);
    assert_eq!(e.chan_info(c).unwrap().queued, 0);
    // A period event with nothing cyclic running is ignored, not a crash.
    e.provider_mut(0)
        .unwrap()
        .pending
        .push(ChanEvent::Period(0));
    assert!(e.handle_irq(0).unwrap());
    assert_eq!(*periods.lock().unwrap(), 10);
    // Providers without CYCLIC are refused before the driver is asked.
    let (mut e2, c2) = engine();
    e2.slave_config(c2, slave_cfg()).unwrap();
    assert!(matches!(
        e2.prep_dma_cyclic(c2, DmaAddr::new(0), 4096, 1024, TransferDirection::MemToDev),
        Err(EngineError::NotCapable(DmaCaps::CYCLIC))
    ));
}

/// A second provider type, so one engine holds two different drivers. Its events
/// come through a shared queue, since the engine only sees it as a trait object.
struct Other {
    pending: Arc<Mutex<Vec<ChanEvent>>>,
    started: Arc<Mutex<Vec<u32>>>,
}

impl DmaProvider for Other {
    type Desc = u32;
    fn name(&self) -> &str {
        "other"
    }
    fn caps(&self) -> DmaCaps {
        DmaCaps::MEMCPY
    }
    fn channel_count(&self) -> usize {
        1
    }
    fn check_config(&self, _: &SlaveConfig) -> Result<(), EngineError> {
        Err(EngineError::Unsupported)
    }
    fn prep_memcpy(
        &mut self,
        _: usize,
        _: DmaAddr,
        _: DmaAddr,
        len: usize,
    ) -> Result<u32, EngineError> {
        Ok(len as u32 | 0x8000_0000)
    }
    fn prep_slave_sg(
        &mut self,
        _: usize,
        _: &[(DmaAddr, usize)],
        _: TransferDirection,
        _: &SlaveConfig,
    ) -> Result<u32, EngineError> {
        Err(EngineError::Unsupported)
    }
    fn desc_len(&self, d: &u32) -> usize {
        (*d & 0xffff) as usize
    }
    fn start(&mut self, _: usize, d: &u32) {
        self.started.lock().unwrap().push(*d);
    }
    fn stop(&mut self, _: usize) {}
    fn residue(&self, _: usize, _: &u32) -> usize {
        0
    }
    fn pause(&mut self, _: usize) -> Result<(), EngineError> {
        Err(EngineError::Unsupported)
    }
    fn resume(&mut self, _: usize) -> Result<(), EngineError> {
        Err(EngineError::Unsupported)
    }
    fn free_desc(&mut self, _: u32) {}
    fn handle_irq(&mut self, ev: &mut Vec<ChanEvent>) -> bool {
        let mut p = self.pending.lock().unwrap();
        if p.is_empty() {
            return false;
        }
        ev.append(&mut p);
        true
    }
}

#[test]
fn one_engine_holds_different_drivers() {
    let pending = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(Mutex::new(Vec::new()));
    let mut e: DmaEngine<DynProvider> = DmaEngine::new();
    e.register(Boxed::new_dyn(Fake::default()));
    e.register(Boxed::new_dyn(Other {
        pending: pending.clone(),
        started: started.clone(),
    }));
    assert_eq!(e.provider(0).unwrap().name(), "dma");
    assert_eq!(e.provider(1).unwrap().name(), "other");
    let c = e.request_channel(DmaCaps::MEMCPY, |c| c.dev == 1).unwrap();
    assert_eq!(c.name(), "dma1chan0");
    let mut d = e
        .prep_memcpy(c, DmaAddr::new(0x1000), DmaAddr::new(0x2000), 300)
        .unwrap();
    assert_eq!(d.len(), 300);
    let done = Arc::new(Mutex::new(None));
    let d2 = done.clone();
    d.set_callback(move |ck, r| *d2.lock().unwrap() = Some((ck, r)));
    let ck = e.submit(d).unwrap();
    e.issue_pending(c).unwrap();
    // The erased descriptor reached the driver as its own type.
    assert_eq!(*started.lock().unwrap(), [300 | 0x8000_0000]);
    assert_eq!(e.chan_info(c).unwrap().queued, 1);
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::InProgress);
    // Device 0's interrupt is not device 1's.
    assert!(!e.handle_irq(0).unwrap());
    pending.lock().unwrap().push(ChanEvent::Done(0));
    assert!(e.handle_irq(1).unwrap());
    assert_eq!(*done.lock().unwrap(), Some((ck, TxResult::NoError)));
    let info = e.chan_info(c).unwrap();
    assert_eq!(
        (info.completed, info.bytes_transferred, info.queued),
        (1, 300, 0)
    );
    assert_eq!(e.tx_status(c, ck).unwrap().status, DmaStatus::Complete);
    // Slave config is the driver's decision: "other" refuses every config.
    assert_eq!(
        e.slave_config(c, slave_cfg()),
        Err(EngineError::Unsupported)
    );
}
