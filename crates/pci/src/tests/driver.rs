use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::sync::{Arc, Mutex};

use crate::driver::{BindError, ChildError};
use crate::*;

type Log = Arc<Mutex<Vec<String>>>;

struct TestDriver {
    name: &'static str,
    ids: Vec<PciDeviceId>,
    log: Log,
    result: Result<(), ProbeError>,
    bus_master: bool,
    children: Vec<ChildSpec>,
}

impl TestDriver {
    fn new(name: &'static str, ids: &[PciDeviceId], log: &Log) -> Self {
        TestDriver {
            name,
            ids: ids.to_vec(),
            log: log.clone(),
            result: Ok(()),
            bus_master: false,
            children: Vec::new(),
        }
    }
}

impl PciDriver for TestDriver {
    fn name(&self) -> &'static str {
        self.name
    }
    fn id_table(&self) -> &[PciDeviceId] {
        &self.ids
    }
    fn probe(&self, ctx: &mut DeviceCtx<'_>) -> Result<(), ProbeError> {
        self.log.lock().unwrap().push(alloc::format!(
            "{} probe {} data={}",
            self.name,
            ctx.bdf().short(),
            ctx.id.driver_data
        ));
        ctx.set_drvdata(7u32);
        for c in &self.children {
            ctx.register_child(*c)?;
        }
        if self.bus_master {
            ctx.enable_bus_master();
        }
        self.result
    }
    fn remove(&self, ctx: &mut DeviceCtx<'_>) {
        let data = ctx.drvdata::<u32>().copied();
        let kids = ctx.children().count();
        self.log.lock().unwrap().push(alloc::format!(
            "{} remove {} data={:?} children={kids}",
            self.name,
            ctx.bdf().short(),
            data
        ));
    }
}

struct Idma64 {
    log: Log,
}

impl PlatformDriver for Idma64 {
    fn name(&self) -> &'static str {
        "idma64"
    }
    fn probe(&self, ctx: &mut PlatformCtx<'_>) -> Result<(), ProbeError> {
        // As Linux's idma64: DMA against the parent, 64-bit mask, 0x1FFFF segments.
        ctx.dma.set_mask_and_coherent(64)?;
        ctx.dma.max_segment_size = 0x1FFFF;
        ctx.set_drvdata(ctx.device.mmio.phys);
        self.log.lock().unwrap().push(alloc::format!(
            "idma64 probe parent={} dma={} at {:#x}",
            ctx.device.parent.short(),
            ctx.device.dma_device.short(),
            ctx.device.mmio.phys
        ));
        Ok(())
    }
    fn remove(&self, ctx: &mut PlatformCtx<'_>) {
        let phys = ctx.drvdata::<u64>().copied();
        self.log
            .lock()
            .unwrap()
            .push(alloc::format!("idma64 remove {:#x}", phys.unwrap_or(0)));
    }
}

fn registry(cfg: &fake::FakeConfig) -> DriverRegistry {
    let mut r = DriverRegistry::new();
    r.add_devices(enumerate(cfg, &ScanOptions::default()).devices);
    r
}

#[test]
fn id_matching() {
    let cfg = super::q35();
    let e = enumerate(&cfg, &ScanOptions::default());
    let uart = e.get(Bdf::b(3, 0, 0)).unwrap();
    assert!(PciDeviceId::new(0x8086, 0x9d27).matches(uart));
    assert!(!PciDeviceId::new(0x8086, 0x9d28).matches(uart));
    assert!(PciDeviceId::new(0x8086, 0x9d27)
        .subsystem(0x17aa, 0x2245)
        .matches(uart));
    assert!(!PciDeviceId::new(0x8086, 0x9d27)
        .subsystem(0x17aa, 0x0001)
        .matches(uart));
    assert!(PciDeviceId::class(0x07_8000, 0xFF_FF00).matches(uart));
    assert!(PciDeviceId::class(0x07_0000, 0xFF_0000).matches(uart));
    assert!(!PciDeviceId::class(0x0c_8000, 0xFF_FF00).matches(uart));
    let any = PciDeviceId {
        vendor: PCI_ANY_ID,
        ..PciDeviceId::new(0, 0x9d27)
    };
    assert!(any.matches(uart));
    // A bridge has no subsystem IDs: a subsystem-specific entry does not match it.
    let rp = e.get(Bdf::b(0, 0x1c, 0)).unwrap();
    assert!(!PciDeviceId::new(0x1b36, 0x000c).subsystem(0, 0).matches(rp));
    assert!(PciDeviceId::new(0x1b36, 0x000c).matches(rp));
}

#[test]
fn first_matching_driver_whose_probe_succeeds() {
    let cfg = super::q35();
    let log: Log = Default::default();
    let mut r = registry(&cfg);
    let edu = Bdf::b(0, 3, 0);
    let mut picky = TestDriver::new("picky", &[PciDeviceId::new(0x1234, 0x11e8).data(1)], &log);
    picky.result = Err(ProbeError::NoDevice);
    picky.children = alloc::vec![ChildSpec {
        name: "ghost",
        bar: 0,
        offset: 0,
        len: 16
    }];
    r.register_driver(&cfg, Box::new(picky));
    assert_eq!(r.driver_name(edu), None);
    // The failed probe's child and drvdata are gone.
    assert_eq!(r.children().count(), 0);
    r.register_driver(
        &cfg,
        Box::new(TestDriver::new(
            "other",
            &[PciDeviceId::new(0x8086, 0x0001)],
            &log,
        )),
    );
    r.register_driver(
        &cfg,
        Box::new(TestDriver::new(
            "edu",
            &[PciDeviceId::class(0x00_ff00, 0xff_ff00).data(2)],
            &log,
        )),
    );
    r.register_driver(
        &cfg,
        Box::new(TestDriver::new(
            "late",
            &[PciDeviceId::new(0x1234, 0x11e8)],
            &log,
        )),
    );
    assert_eq!(r.driver_name(edu), Some("edu"));
    assert_eq!(
        *log.lock().unwrap(),
        ["picky probe 00:03.0 data=1", "edu probe 00:03.0 data=2"]
    );
    // Unbind: remove sees its drvdata; then a rebind tries drivers in registration
    // order again (picky fails, edu takes it).
    log.lock().unwrap().clear();
    r.unbind(&cfg, edu).unwrap();
    assert_eq!(r.driver_name(edu), None);
    assert_eq!(r.bind(&cfg, edu), Ok(Some("edu")));
    assert_eq!(
        *log.lock().unwrap(),
        [
            "edu remove 00:03.0 data=Some(7) children=0",
            "picky probe 00:03.0 data=1",
            "edu probe 00:03.0 data=2"
        ]
    );
    assert_eq!(
        r.unbind(&cfg, Bdf::b(0, 9, 0)),
        Err(BindError::NoSuchDevice(Bdf::b(0, 9, 0)))
    );
    assert_eq!(
        r.unbind(&cfg, Bdf::b(0, 1, 0)),
        Err(BindError::NotBound(Bdf::b(0, 1, 0)))
    );
    let removed = r.remove_device(&cfg, edu).unwrap();
    assert_eq!(removed.bdf, edu);
    assert!(r.device(edu).is_none());
    assert_eq!(
        log.lock().unwrap().last().map(String::as_str),
        Some("edu remove 00:03.0 data=Some(7) children=0")
    );
}

#[test]
fn bus_master_only_on_request_and_off_after_unbind() {
    let cfg = super::q35();
    let log: Log = Default::default();
    let mut r = registry(&cfg);
    let edu = Bdf::b(0, 3, 0);
    let vga = Bdf::b(0, 1, 0);
    r.register_driver(
        &cfg,
        Box::new(TestDriver::new(
            "vga",
            &[PciDeviceId::new(0x1234, 0x1111)],
            &log,
        )),
    );
    let mut d = TestDriver::new("edu", &[PciDeviceId::new(0x1234, 0x11e8)], &log);
    d.bus_master = true;
    r.register_driver(&cfg, Box::new(d));
    assert_eq!(cfg.peek16(vga, 4).map(|c| c & 4), Some(0));
    assert_eq!(cfg.peek16(edu, 4).map(|c| c & 4), Some(4));
    r.unbind(&cfg, edu).unwrap();
    assert_eq!(cfg.peek16(edu, 4).map(|c| c & 4), Some(0));
    // Memory decoding as firmware left it.
    assert_eq!(cfg.peek16(edu, 4).map(|c| c & 2), Some(2));
}

#[test]
fn lpss_parent_registers_idma64_child() {
    let cfg = super::q35();
    let log: Log = Default::default();
    let mut r = registry(&cfg);
    let uart = Bdf::b(3, 0, 0);
    // Platform driver first: the child binds as soon as the parent's probe succeeds.
    r.register_platform_driver(&cfg, Box::new(Idma64 { log: log.clone() }));
    let mut lpss = TestDriver::new(
        "intel-lpss",
        &[PciDeviceId::class(0x07_8000, 0xff_ff00)],
        &log,
    );
    lpss.children = alloc::vec![
        crate::lpss::idma64_child(),
        crate::lpss::host_child(crate::names::LpssFunction::Uart),
    ];
    r.register_driver(&cfg, Box::new(lpss));
    assert_eq!(r.driver_name(uart), Some("intel-lpss"));
    let kids: Vec<_> = r.children().cloned().collect();
    assert_eq!(kids.len(), 2);
    let idma = &kids[0];
    assert_eq!(idma.name, "idma64");
    assert_eq!(idma.parent, uart);
    assert_eq!(idma.dma_device, uart);
    assert_eq!(idma.interrupt_pin, 1);
    assert_eq!(idma.mmio.phys, 0x1_2340_0800);
    assert_eq!(
        (idma.mmio.bar, idma.mmio.offset, idma.mmio.len),
        (0, 0x800, 0x800)
    );
    assert_eq!(r.child_driver_name(idma.id), Some("idma64"));
    assert_eq!(r.child_driver_name(kids[1].id), None);
    // The child's driver changed the parent's DMA parameters.
    let dma = r.device(uart).unwrap().dma;
    assert_eq!(dma.dma_mask, u64::MAX);
    assert_eq!(dma.coherent_dma_mask, u64::MAX);
    assert_eq!(dma.max_segment_size, 0x1FFFF);
    // Unbind the parent: children go first, then the parent's remove (which no longer
    // sees children), and DMA parameters return to defaults.
    r.unbind(&cfg, uart).unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "intel-lpss probe 03:00.0 data=0",
            "idma64 probe parent=03:00.0 dma=03:00.0 at 0x123400800",
            "idma64 remove 0x123400800",
            "intel-lpss remove 03:00.0 data=Some(7) children=0",
        ]
    );
    assert_eq!(r.children().count(), 0);
    assert_eq!(r.device(uart).unwrap().dma, DmaParams::default());
}

#[test]
fn platform_driver_registered_later_binds_existing_children() {
    let cfg = super::q35();
    let log: Log = Default::default();
    let mut r = registry(&cfg);
    let mut lpss = TestDriver::new("intel-lpss", &[PciDeviceId::new(0x8086, 0x9d27)], &log);
    lpss.children = alloc::vec![ChildSpec {
        name: "idma64",
        bar: 0,
        offset: 0x800,
        len: 0x800
    }];
    r.register_driver(&cfg, Box::new(lpss));
    let id = r.children().next().unwrap().id;
    assert_eq!(r.child_driver_name(id), None);
    r.register_platform_driver(&cfg, Box::new(Idma64 { log: log.clone() }));
    assert_eq!(r.child_driver_name(id), Some("idma64"));
}

#[test]
fn child_window_must_fit_a_memory_bar() {
    let cfg = super::q35();
    let log: Log = Default::default();
    for (spec, err) in [
        (
            ChildSpec {
                name: "x",
                bar: 0,
                offset: 0x800,
                len: 0x1000,
            },
            ChildError::OutsideBar {
                bar: 0,
                offset: 0x800,
                len: 0x1000,
                size: 0x1000,
            },
        ),
        (
            ChildSpec {
                name: "x",
                bar: 0,
                offset: u64::MAX,
                len: 2,
            },
            ChildError::OutsideBar {
                bar: 0,
                offset: u64::MAX,
                len: 2,
                size: 0x1000,
            },
        ),
        (
            ChildSpec {
                name: "x",
                bar: 2,
                offset: 0,
                len: 1,
            },
            ChildError::NoSuchBar(2),
        ),
    ] {
        let mut r = registry(&cfg);
        let mut d = TestDriver::new("lpss", &[PciDeviceId::new(0x8086, 0x9d27)], &log);
        d.children = alloc::vec![spec];
        r.register_driver(&cfg, Box::new(d));
        assert_eq!(r.driver_name(Bdf::b(3, 0, 0)), None, "{err}");
        assert!(!err.to_string().is_empty());
    }
    // I/O BAR.
    let mut r = registry(&cfg);
    let mut d = TestDriver::new("e1000e", &[PciDeviceId::new(0x8086, 0x10d3)], &log);
    d.children = alloc::vec![ChildSpec {
        name: "x",
        bar: 2,
        offset: 0,
        len: 1
    }];
    r.register_driver(&cfg, Box::new(d));
    assert_eq!(r.driver_name(Bdf::b(0, 2, 0)), None);
}

#[test]
fn dma_params() {
    let mut p = DmaParams::default();
    assert_eq!(p.segment_boundary_mask, 0xFFFF_FFFF);
    assert!(p.set_mask_and_coherent(16).is_err());
    assert!(p.set_mask(65).is_err());
    p.set_mask(40).unwrap();
    assert_eq!(
        (p.dma_mask, p.coherent_dma_mask),
        (dma_bit_mask(40), 0xFFFF_FFFF)
    );
    assert_eq!(dma_bit_mask(64), u64::MAX);
    assert_eq!(dma_bit_mask(24), 0xFF_FFFF);
}

#[test]
fn registry_can_live_in_a_lock() {
    fn assert_send<T: Send>() {}
    assert_send::<DriverRegistry>();
    static REG: spin::Mutex<Option<DriverRegistry>> = spin::Mutex::new(None);
    *REG.lock() = Some(DriverRegistry::new());
    assert!(REG
        .lock()
        .as_ref()
        .is_some_and(|r| r.devices().count() == 0));
}

/// A driver that, like a real one, fails when its function does not decode (in D3hot
/// its BARs read all-ones; here PMCSR stands in for a register read).
struct NeedsD0;

impl PciDriver for NeedsD0 {
    fn name(&self) -> &'static str {
        "needs-d0"
    }
    fn id_table(&self) -> &[PciDeviceId] {
        const IDS: [PciDeviceId; 1] = [PciDeviceId::new(0x8086, 0x9d60)];
        &IDS
    }
    fn probe(&self, ctx: &mut DeviceCtx<'_>) -> Result<(), ProbeError> {
        let cap = ctx.device.find_capability(caps::id::PM).unwrap_or(0);
        match pm::power_state(ctx.config, ctx.bdf(), cap) {
            pm::PowerState::D0 => Ok(()),
            _ => Err(ProbeError::Device("registers read all-ones")),
        }
    }
    fn remove(&self, _ctx: &mut DeviceCtx<'_>) {}
}

#[test]
fn functions_left_in_d3hot_are_brought_to_d0_before_probe() {
    let cfg = fake::FakeConfig::new();
    let lpss = Bdf::b(0, 0x15, 0);
    cfg.add(
        lpss,
        fake::FakeFunction::endpoint(0x8086, 0x9d60, 0x0c_8000, 0x21)
            .bar64(0, 0x1000, false, 0xFE40_0000)
            .cap_ptr(0x80)
            .pm(0x80, 0, false, 3),
    );
    let mut r = registry(&cfg);
    static WAITED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    r.set_delay(|us| {
        WAITED.fetch_add(us, core::sync::atomic::Ordering::Relaxed);
    });
    r.register_driver(&cfg, Box::new(NeedsD0));
    assert_eq!(r.driver_name(lpss), Some("needs-d0"));
    assert_eq!(WAITED.load(core::sync::atomic::Ordering::Relaxed), 10_000);
    // The soft reset of D3hot->D0 cleared BAR0; the bus wrote it back.
    assert_eq!(cfg.peek32(lpss, 0x10), Some(0xFE40_0004));
}
