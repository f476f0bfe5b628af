//! The driver against the whole LPSS function model (`devmodels::lpss`): PCI power
//! state (the function starts in D3hot) and the UART's DMA request lines (slave and
//! cyclic transfers move only when the UART asks).

use super::*;
use devmodels::lpss::{self, uart, Function, LpssModel};
use dmaengine::{ChanId, DmaEngine, DmaStatus, TxResult};
use hal::Arena;
use pci::fake::{FakeConfig, FakeFunction};
use pci::{pm, Bdf};
use std::sync::{Arc, Mutex};

const BASE: u64 = 0x1000_0000;
const SIZE: usize = 0x20_0000;
const SRC: u64 = BASE + 0x1_0000;
const DST: u64 = BASE + 0x10_0000;
const BAR: u64 = 0xFE40_0000;
const PM_CAP: u8 = 0x80;
const UART_BDF: Bdf = Bdf::b(0, 0x1e, 0);

struct Bump(u64);

impl LliAllocator for Bump {
    fn alloc(&mut self, bytes: usize) -> Option<(PhysAddr, DmaAddr)> {
        let at = (self.0 + 7) & !7;
        if at + bytes as u64 > SRC {
            return None;
        }
        self.0 = at + bytes as u64;
        Some((PhysAddr::new(at), DmaAddr::new(at)))
    }
    fn free(&mut self, _: PhysAddr, _: usize) {}
}

/// The iDMA64 window of the function: BAR0 + 0x800, found as the LPSS binding finds it.
type IdmaWindow<'a> = ::lpss::SubWindow<&'a LpssModel<&'a Arena>>;

type Drv<'a> = Idma64<IdmaWindow<'a>, &'a Arena, Bump>;

fn config() -> FakeConfig {
    let c = FakeConfig::new();
    c.add(
        UART_BDF,
        FakeFunction::endpoint(0x8086, 0x9d27, 0x11_8000, 0x21)
            .bar64(0, 0x1000, false, BAR)
            .cap_ptr(PM_CAP)
            .pm(PM_CAP, 0, false, 3),
    );
    c
}

/// What the kernel's config-space hook does: tell the function what PMCSR says.
fn sync_power(c: &FakeConfig, m: &LpssModel<&Arena>) {
    m.set_power_state(pm::power_state(c, UART_BDF, PM_CAP) as u8);
}

fn powered<'a>(a: &'a Arena, c: &FakeConfig) -> LpssModel<&'a Arena> {
    let m = LpssModel::new(a, a.base(), a.size(), BAR, Function::Uart);
    pm::set_d0(c, UART_BDF, Some(PM_CAP), &mut |_| {}).unwrap();
    sync_power(c, &m);
    m
}

#[test]
fn probe_fails_in_d3hot_and_works_after_the_function_is_brought_to_d0() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let c = config();
    let m = LpssModel::new(&a, a.base(), a.size(), BAR, Function::Uart);
    sync_power(&c, &m);
    // As firmware left it: CAPS and every iDMA register read all-ones, DMA_EN never
    // reads 0, the probe gives up.
    assert_eq!(m.read32(lpss::PRIV + lpss::CAPS), u32::MAX);
    assert!(matches!(
        Idma64::new(::lpss::idma64_window(&m), &a, Bump(BASE)),
        Err(EngineError::Timeout)
    ));
    let mut waited = Vec::new();
    let up = pm::set_d0(&c, UART_BDF, Some(PM_CAP), &mut |us| waited.push(us)).unwrap();
    sync_power(&c, &m);
    assert_eq!(up.from, pm::PowerState::D3Hot);
    assert_eq!(waited, [pm::D3HOT_DELAY_US]);
    assert_eq!(
        m.read32(lpss::PRIV + lpss::CAPS),
        0x10,
        "UART, iDMA present"
    );
    let d = Idma64::new(::lpss::idma64_window(&m), &a, Bump(BASE)).unwrap();
    let mut e = DmaEngine::new();
    e.register(d);
    let ch = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let src: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 1) as u8).collect();
    a.write(PhysAddr::new(SRC), &src);
    let d = e
        .prep_memcpy(ch, DmaAddr::new(DST), DmaAddr::new(SRC), 4096)
        .unwrap();
    let ck = e.submit(d).unwrap();
    e.issue_pending(ch).unwrap();
    m.run_until_idle();
    assert_eq!(e.handle_irq(0), Ok(true));
    assert_eq!(e.tx_status(ch, ck).unwrap().status, DmaStatus::Complete);
    assert_eq!(a.to_vec(PhysAddr::new(DST), 4096), src);
}

/// The UART set up as Linux's 8250 DMA path does: FIFOs on, DMA mode 1, RX trigger
/// at a quarter (16 bytes), and internal loopback.
fn uart_loopback(m: &LpssModel<&Arena>) {
    m.write8(
        uart::FCR_IIR,
        uart::FCR_FIFO_EN
            | uart::FCR_CLEAR_RX
            | uart::FCR_CLEAR_TX
            | uart::FCR_DMA_MODE1
            | uart::fcr_rx_trigger(1),
    );
    m.write8(uart::LCR, 0x03); // 8N1
    m.write8(uart::MCR, uart::MCR_LOOP);
}

fn slave(dir: TransferDirection, port: u64, burst: u32) -> SlaveConfig {
    SlaveConfig {
        direction: dir,
        src_addr: DmaAddr::new(port),
        dst_addr: DmaAddr::new(port),
        src_addr_width: 1,
        dst_addr_width: 1,
        src_maxburst: burst,
        dst_maxburst: burst,
    }
}

fn engine<'a>(a: &'a Arena, m: &'a LpssModel<&'a Arena>) -> (DmaEngine<Drv<'a>>, ChanId, ChanId) {
    let d = Idma64::new(::lpss::idma64_window(m), a, Bump(BASE)).unwrap();
    let mut e = DmaEngine::new();
    e.register(d);
    let tx = e.request_channel(DmaCaps::SLAVE, |c| c.chan == 0).unwrap();
    let rx = e.request_channel(DmaCaps::SLAVE, |c| c.chan == 1).unwrap();
    (e, tx, rx)
}

#[test]
fn slave_tx_and_rx_through_the_uart_loopback_move_only_on_request() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let c = config();
    let m = powered(&a, &c);
    let port = m.uart_data_addr();
    let (mut e, tx, rx) = engine(&a, &m);
    let n = 3000usize; // not a multiple of the trigger: the tail needs the timeout
    let out: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
    a.write(PhysAddr::new(SRC), &out);
    e.slave_config(rx, slave(TransferDirection::DevToMem, port, 8))
        .unwrap();
    let d = e
        .prep_slave_sg(rx, &[(DmaAddr::new(DST), n)], TransferDirection::DevToMem)
        .unwrap();
    let ck_rx = e.submit(d).unwrap();
    e.slave_config(tx, slave(TransferDirection::MemToDev, port, 8))
        .unwrap();
    let d = e
        .prep_slave_sg(tx, &[(DmaAddr::new(SRC), n)], TransferDirection::MemToDev)
        .unwrap();
    let ck_tx = e.submit(d).unwrap();
    e.issue_pending(rx).unwrap();
    e.issue_pending(tx).unwrap();
    uart_loopback(&m);
    let mut steps = 0;
    while e.tx_status(rx, ck_rx).unwrap().status != DmaStatus::Complete {
        assert!(steps < 10_000, "loopback stalled");
        m.step();
        e.handle_irq(0).unwrap();
        steps += 1;
    }
    assert_eq!(e.tx_status(tx, ck_tx).unwrap().status, DmaStatus::Complete);
    assert_eq!(a.to_vec(PhysAddr::new(DST), n), out, "byte for byte");
    assert!(m.idma().errors().is_empty());
    // Handshake: every burst is at most 8 bytes per request, so this took many steps
    // (the UART shifts 16 characters a step).
    assert!(steps >= n / lpss::CHARS_PER_STEP, "{steps} steps");
    assert_eq!(m.uart_sent(), 0);
}

#[test]
fn rx_moves_only_on_the_uart_request_trigger_or_timeout() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let c = config();
    let m = powered(&a, &c);
    let port = m.uart_data_addr();
    let (mut e, _tx, rx) = engine(&a, &m);
    // FIFOs on, DMA mode 1, loopback, but nothing transmitted: the RX request never
    // rises, so a peripheral-to-memory transfer waits however long the engine runs.
    uart_loopback(&m);
    e.slave_config(rx, slave(TransferDirection::DevToMem, port, 8))
        .unwrap();
    let d = e
        .prep_slave_sg(rx, &[(DmaAddr::new(DST), 64)], TransferDirection::DevToMem)
        .unwrap();
    let ck = e.submit(d).unwrap();
    e.issue_pending(rx).unwrap();
    for _ in 0..100 {
        m.step();
    }
    assert_eq!(e.tx_status(rx, ck).unwrap().residue, 64);
    // The CPU sends 8 characters by PIO, below the trigger (16): they sit in the RX
    // FIFO and the DMA leaves them there until the character timeout raises the
    // request ...
    for i in 0..8u8 {
        m.write8(uart::RBR_THR, 0xA0 + i);
    }
    m.step(); // shifted into the RX FIFO
    m.step(); // one idle step: no request yet
    assert_eq!(m.read8(uart::LSR) & uart::LSR_DR, uart::LSR_DR);
    assert_eq!(
        e.tx_status(rx, ck).unwrap().residue,
        64,
        "taken before the request"
    );
    for _ in 0..4 {
        m.step();
    }
    assert_eq!(e.tx_status(rx, ck).unwrap().residue, 56);
    // ... and 20 more, above the trigger, are taken at once: the request rises as the
    // FIFO reaches 16 (the last 4 again after the timeout).
    for i in 8..28u8 {
        m.write8(uart::RBR_THR, 0xA0 + i);
    }
    m.step();
    m.step();
    assert_eq!(e.tx_status(rx, ck).unwrap().residue, 40);
    for _ in 0..4 {
        m.step();
    }
    assert_eq!(e.tx_status(rx, ck).unwrap().residue, 36);
    let want: Vec<u8> = (0..28u8).map(|i| 0xA0 + i).collect();
    assert_eq!(a.to_vec(PhysAddr::new(DST), 28), want);
}

#[test]
fn cyclic_rx_from_the_uart_calls_back_per_period() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let c = config();
    let m = powered(&a, &c);
    let port = m.uart_data_addr();
    let (mut e, tx, rx) = engine(&a, &m);
    uart_loopback(&m);
    // A 1 KiB ring of 4 periods on the RX channel.
    e.slave_config(rx, slave(TransferDirection::DevToMem, port, 8))
        .unwrap();
    let mut d = e
        .prep_dma_cyclic(
            rx,
            DmaAddr::new(DST),
            1024,
            256,
            TransferDirection::DevToMem,
        )
        .unwrap();
    let periods = Arc::new(Mutex::new(0usize));
    let p2 = periods.clone();
    d.set_callback(move |_, r| {
        assert_eq!(r, TxResult::NoError);
        *p2.lock().unwrap() += 1;
    });
    let ck = e.submit(d).unwrap();
    e.issue_pending(rx).unwrap();
    // 1.5 rings' worth sent by the TX channel.
    let n = 1536usize;
    let out: Vec<u8> = (0..n).map(|i| (i * 31 + 5) as u8).collect();
    a.write(PhysAddr::new(SRC), &out);
    e.slave_config(tx, slave(TransferDirection::MemToDev, port, 8))
        .unwrap();
    let d = e
        .prep_slave_sg(tx, &[(DmaAddr::new(SRC), n)], TransferDirection::MemToDev)
        .unwrap();
    let ck_tx = e.submit(d).unwrap();
    e.issue_pending(tx).unwrap();
    for _ in 0..2000 {
        m.step();
        e.handle_irq(0).unwrap();
        if *periods.lock().unwrap() == 6 {
            break;
        }
    }
    assert_eq!(
        *periods.lock().unwrap(),
        6,
        "one callback per 256-byte period"
    );
    assert_eq!(e.tx_status(tx, ck_tx).unwrap().status, DmaStatus::Complete);
    assert_eq!(e.tx_status(rx, ck).unwrap().status, DmaStatus::InProgress);
    // The ring holds the last 1024 bytes: periods 4 and 5 overwrote 0 and 1.
    let mut want = out[1024..1536].to_vec();
    want.extend_from_slice(&out[512..1024]);
    assert_eq!(a.to_vec(PhysAddr::new(DST), 1024), want);
    e.terminate_all(rx).unwrap();
    assert!(!m.idma().channel_enabled(1));
}
