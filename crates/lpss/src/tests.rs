//! The binding against the LPSS function model (`devmodels::lpss`), configured as the
//! kernel's simulated function is.

use super::sim::{self, SimKind, MSI_CAP, PM_CAP, SIM_BAR};
use super::*;
use devmodels::lpss::{LpssModel, CAPS, IDMA, PRIV};
use dmaengine::{DmaCaps, DmaEngine, DmaStatus};
use hal::{Arena, DmaAddr, PhysAddr, PhysMemory};
use pci::{pm, MsiMessage};

const BASE: u64 = 0x1000_0000;
const SIZE: usize = 0x20_0000;
const SRC: u64 = BASE + 0x1_0000;
const DST: u64 = BASE + 0x10_0000;

fn model(a: &Arena, kind: SimKind) -> LpssModel<&Arena> {
    LpssModel::new(a, a.base(), a.size(), SIM_BAR, kind.function())
}

/// The simulated function as the kernel builds it, after the PCI bus brought it to D0.
fn powered(a: &Arena, kind: SimKind) -> (pci::fake::FakeConfig, LpssModel<&Arena>) {
    let cfg = sim::config(kind);
    let m = model(a, kind);
    sim::sync_config(&cfg, kind.bdf(), &m);
    pm::set_d0(&cfg, kind.bdf(), Some(PM_CAP), &mut |_| {}).unwrap();
    sim::sync_config(&cfg, kind.bdf(), &m);
    (cfg, m)
}

#[test]
fn d3hot_function_does_not_decode_until_the_bus_brings_it_to_d0() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let cfg = sim::config(SimKind::I2c);
    let m = model(&a, SimKind::I2c);
    sim::sync_config(&cfg, SimKind::I2c.bdf(), &m);
    assert_eq!(m.power_state(), 3, "firmware left it in D3hot");
    assert_eq!(bring_up(&m, SIM_BAR), Err(LpssError::NotDecoding));
    let up = pm::set_d0(&cfg, SimKind::I2c.bdf(), Some(PM_CAP), &mut |_| {}).unwrap();
    assert_eq!(up.from, pm::PowerState::D3Hot);
    sim::sync_config(&cfg, SimKind::I2c.bdf(), &m);
    assert_eq!(m.power_state(), 0);
    assert!(bring_up(&m, SIM_BAR).is_ok());
}

#[test]
fn bring_up_releases_the_resets_and_writes_the_remap_address() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let (_, m) = powered(&a, SimKind::I2c);
    let bar = 0x1_2345_6000u64;
    bring_up(&m, bar).unwrap();
    assert_eq!(m.read32(PRIV + 0x04), private::RESETS_RELEASE, "RESETS");
    assert_eq!(m.read32(PRIV + 0x40), bar as u32, "REMAP_ADDR low");
    assert_eq!(m.read32(PRIV + 0x44), (bar >> 32) as u32, "REMAP_ADDR high");
}

#[test]
fn caps_give_the_function_type_and_idma64_presence() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    for (kind, function) in [
        (SimKind::I2c, LpssFunction::I2c),
        (SimKind::Uart, LpssFunction::Uart),
    ] {
        let (_, m) = powered(&a, kind);
        let info = bring_up(&m, SIM_BAR).unwrap();
        assert_eq!(info.caps, m.read32(PRIV + CAPS));
        assert_eq!(info.function, Some(function));
        assert!(info.has_idma, "{kind:?}: CAPS bit 8 clear");
    }
}

#[test]
fn idma64_window_reaches_the_engine_at_0x800_and_host_window_the_uart() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let (_, m) = powered(&a, SimKind::Uart);
    let w = idma64_window(&m);
    w.write32(idma64::regs::DMA_CFG, idma64::regs::DMA_EN);
    assert_eq!(m.idma().read32(idma64::regs::DMA_CFG), idma64::regs::DMA_EN);
    assert_eq!(m.read32(IDMA + idma64::regs::DMA_CFG), idma64::regs::DMA_EN);
    // Byte registers of the UART on a 32-bit stride: the scratch register.
    let h = host_window(&m);
    h.write8(devmodels::lpss::uart::SCR, 0x5A);
    assert_eq!(h.read8(devmodels::lpss::uart::SCR), 0x5A);
}

#[test]
fn msi_target_follows_what_the_driver_programs() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let (cfg, m) = powered(&a, SimKind::I2c);
    let bdf = SimKind::I2c.bdf();
    let t = sim::sync_config(&cfg, bdf, &m).unwrap();
    assert!(!t.enabled, "MSI starts disabled");
    let msi = pci::Msi::read(&cfg, bdf, u16::from(MSI_CAP)).unwrap();
    msi.enable(&cfg, MsiMessage::x86(0, 0x41).unwrap(), 1)
        .unwrap();
    let t = sim::sync_config(&cfg, bdf, &m).unwrap();
    assert_eq!(
        t,
        sim::MsiTarget {
            vector: 0x41,
            enabled: true
        }
    );
}

#[test]
fn sim_kind_from_the_command_line() {
    assert_eq!(SimKind::from_cmdline(Some("sim")), Some(SimKind::I2c));
    assert_eq!(SimKind::from_cmdline(Some("sim-uart")), Some(SimKind::Uart));
    assert_eq!(SimKind::from_cmdline(Some("on")), None);
    assert_eq!(SimKind::from_cmdline(None), None);
}

struct Bump(u64);

impl idma64::LliAllocator for Bump {
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

#[test]
fn brought_up_function_copies_through_its_idma64() {
    let a = Arena::new(PhysAddr::new(BASE), SIZE);
    let (_, m) = powered(&a, SimKind::I2c);
    let info = bring_up(&m, SIM_BAR).unwrap();
    assert!(info.has_idma);
    let d = idma64::Idma64::new(idma64_window(&m), &a, Bump(BASE)).unwrap();
    let mut e = DmaEngine::new();
    e.register(d);
    let ch = e.request_channel(DmaCaps::MEMCPY, |_| true).unwrap();
    let src: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
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

#[test]
fn intx_only_function_has_no_msi_and_asserts_its_pin_only_when_allowed() {
    use pci::ConfigAccess;
    let kind = SimKind::I2cIntx;
    let cfg = sim::config(kind);
    let bdf = kind.bdf();
    // The capability list holds PM only, and the pin is INTA.
    let cap0 = (cfg.read32(bdf, 0x34) & 0xFF) as u8;
    assert_eq!(cap0, PM_CAP, "first capability");
    assert_eq!(
        (cfg.read32(bdf, PM_CAP as u16) >> 8) & 0xFF,
        0,
        "PM is the last capability"
    );
    assert_eq!((cfg.read32(bdf, 0x3C) >> 8) & 0xFF, 1, "interrupt pin INTA");
    // The pin follows the command register's Interrupt Disable bit.
    assert!(
        sim::intx_allowed(&cfg, bdf, false),
        "pin allowed after reset"
    );
    pci::command::set_intx_disabled(&cfg, bdf, true);
    assert!(
        !sim::intx_allowed(&cfg, bdf, false),
        "pin asserted with Interrupt Disable set"
    );
    pci::command::set_intx_disabled(&cfg, bdf, false);
    assert!(
        !sim::intx_allowed(&cfg, bdf, true),
        "pin asserted with MSI on"
    );
    // The MSI variant still has its MSI capability first.
    let msi_cfg = sim::config(SimKind::I2c);
    assert_eq!(
        (msi_cfg.read32(SimKind::I2c.bdf(), 0x34) & 0xFF) as u8,
        MSI_CAP
    );
}
