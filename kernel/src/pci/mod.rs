//! PCI in the kernel: the configuration mechanism (ECAM from the MCFG, mapped
//! uncached, or the legacy 0xCF8/0xCFC ports), enumeration at boot, and the
//! driver registry that binds our drivers to what was found.

use alloc::vec::Vec;

use pci::{Bdf, ConfigAccess, DriverRegistry, PciDevice, ScanOptions};

use crate::acpi;
use crate::mm::{self as kmm, IoMem};
use crate::sync::{HookTable, HookTableFull, IrqSpinLock};

pub mod intx;
mod untrusted;

pub use untrusted::{bad_untrusted_entries, is_untrusted};

/// The two ways to reach configuration space.
pub enum Kind {
    Ecam(pci::Ecam<IoMem>),
    Legacy(pci::Legacy<hal::PortIo>),
}

/// A function that exists only in software (`idma64=sim`): its configuration space
/// is a model, laid over the real mechanism at one address.
pub struct SimFunction {
    pub bdf: Bdf,
    pub cfg: pci::fake::FakeConfig,
    /// Called after every configuration write to the function (it watches MSI).
    pub on_write: fn(&pci::fake::FakeConfig, Bdf),
}

pub struct Mechanism {
    kind: Kind,
    sim: Option<SimFunction>,
}

impl Mechanism {
    fn new(kind: Kind) -> Self {
        Mechanism { kind, sim: None }
    }

    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Ecam(_) => "ECAM (MCFG, uncached MMIO)",
            Kind::Legacy(_) => "legacy I/O ports 0xCF8/0xCFC",
        }
    }

    /// Lays a simulated function over the real configuration space.
    pub fn add_sim(&mut self, sim: SimFunction) {
        self.sim = Some(sim);
    }

    fn inner(&self, bdf: Bdf) -> &dyn ConfigAccess {
        match (&self.sim, &self.kind) {
            (Some(s), _) if s.bdf == bdf => &s.cfg,
            (_, Kind::Ecam(e)) => e,
            (_, Kind::Legacy(l)) => l,
        }
    }

    fn written(&self, bdf: Bdf) {
        if let Some(s) = self.sim.as_ref().filter(|s| s.bdf == bdf) {
            (s.on_write)(&s.cfg, bdf);
        }
    }
}

impl ConfigAccess for Mechanism {
    fn read32(&self, addr: Bdf, offset: u16) -> u32 {
        self.inner(addr).read32(addr, offset)
    }
    fn write32(&self, addr: Bdf, offset: u16, value: u32) {
        self.inner(addr).write32(addr, offset, value);
        self.written(addr);
    }
    fn extended(&self) -> bool {
        match &self.kind {
            Kind::Ecam(e) => e.extended(),
            Kind::Legacy(l) => l.extended(),
        }
    }
    fn reaches(&self, segment: u16, bus: u8) -> bool {
        match &self.kind {
            Kind::Ecam(e) => e.reaches(segment, bus),
            Kind::Legacy(l) => l.reaches(segment, bus),
        }
    }
    fn read16(&self, addr: Bdf, offset: u16) -> u16 {
        self.inner(addr).read16(addr, offset)
    }
    fn read8(&self, addr: Bdf, offset: u16) -> u8 {
        self.inner(addr).read8(addr, offset)
    }
    fn write16(&self, addr: Bdf, offset: u16, value: u16) {
        self.inner(addr).write16(addr, offset, value);
        self.written(addr);
    }
    fn write8(&self, addr: Bdf, offset: u16, value: u8) {
        self.inner(addr).write8(addr, offset, value);
        self.written(addr);
    }
}

/// Which mechanism to build.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Want {
    Auto,
    Legacy,
}

pub fn legacy() -> Mechanism {
    // SAFETY: 0xCF8..0xD00 is the PC's configuration mechanism #1; only the
    // PCI layer drives these ports, always through `pci::Legacy`'s lock.
    Mechanism::new(Kind::Legacy(pci::Legacy::new(unsafe {
        hal::PortIo::new(0xCF8, 8)
    })))
}

/// Why ECAM could not be set up over the MCFG window.
#[derive(Debug)]
pub enum MechanismError {
    /// The MCFG window's bus range is unusable.
    Window(pci::config::ConfigError),
    /// Mapping the window failed.
    Map(crate::mm::MmError),
    /// The mapped window was refused by the ECAM accessor.
    Ecam(pci::config::ConfigError),
}

impl core::fmt::Display for MechanismError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MechanismError::Window(e) => write!(f, "MCFG window: {e}"),
            MechanismError::Map(e) => write!(f, "mapping ECAM: {e}"),
            MechanismError::Ecam(e) => write!(f, "ECAM: {e}"),
        }
    }
}

/// Builds the mechanism: ECAM over the first MCFG window when there is one
/// (and `want` allows), else the legacy ports.
pub fn mechanism(want: Want) -> Result<(Mechanism, u16, u8), MechanismError> {
    let ecam = acpi::get().and_then(|p| p.ecam.first().copied());
    match (want, ecam) {
        (Want::Auto, Some(w)) => {
            let (phys, len) = pci::config::mcfg_window(w.base, w.bus_start..=w.bus_end)
                .map_err(MechanismError::Window)?;
            let mmio = kmm::ioremap(phys, len).map_err(MechanismError::Map)?;
            let ecam = pci::Ecam::new(mmio, len, w.segment, w.bus_start..=w.bus_end)
                .map_err(MechanismError::Ecam)?;
            Ok((Mechanism::new(Kind::Ecam(ecam)), w.segment, w.bus_start))
        }
        _ => Ok((legacy(), 0, 0)),
    }
}

pub struct PciState {
    pub cfg: Mechanism,
    pub registry: DriverRegistry,
    /// What the scan found odd, kept typed and printed by `lspci`.
    pub warnings: Vec<pci::Warning>,
}

// SAFETY: the kernel runs on one CPU and the state is only reached through the
// PCI mutex; drivers' boxed state never moves to another CPU. (DriverRegistry
// holds `Box<dyn Any>` driver data, which is not `Send` by type only.)
unsafe impl Send for PciState {}

static PCI: IrqSpinLock<Option<PciState>> = IrqSpinLock::new(None);

/// Runs `f` with the PCI state (interrupts off: drivers' handlers never take
/// this lock, but a holder must not be interrupted by code that does).
pub fn with<R>(f: impl FnOnce(&mut PciState) -> R) -> Option<R> {
    PCI.lock().as_mut().map(f)
}

pub fn scan(cfg: &Mechanism, segment: u16, root_bus: u8) -> pci::Enumeration {
    pci::enumerate(
        cfg,
        &ScanOptions {
            segment,
            root_bus,
            ..Default::default()
        },
    )
}

pub fn init(want: Want) {
    let (mut cfg, segment, root) = match mechanism(want) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("pci: {e}; falling back to the legacy ports");
            (legacy(), 0, 0)
        }
    };
    SIM_FUNCTIONS.for_each(|make| {
        if let Some(sim) = make() {
            log::info!(
                "pci {}: simulated LPSS function (idma64=sim): config space and registers are a model, no QEMU device",
                sim.bdf
            );
            cfg.add_sim(sim);
        }
    });
    for bad in bad_untrusted_entries() {
        log::warn!("pci: pci.untrusted: '{bad}' is not a bus:device.function; ignored");
    }
    let found = scan(&cfg, segment, root);
    log::info!("pci: {} functions via {}", found.devices.len(), cfg.name());
    for d in &found.devices {
        log::info!(
            "pci {}: [{:04x}:{:04x}] class {:#08x}",
            d.bdf,
            d.vendor_id,
            d.device_id,
            d.class.as_u32()
        );
    }
    let warnings = found.warnings.clone();
    for w in &warnings {
        log::warn!("pci: {w}");
    }
    let topology = pci::Topology::from_config(&cfg, &found.devices);
    for n in topology
        .nodes()
        .iter()
        .filter(|n| n.quirk != pci::DmaQuirk::None)
    {
        log::info!(
            "pci {}: requester-ID quirk: {}; DMA aliases {}",
            n.bdf,
            n.quirk.describe(),
            topology
                .dma_aliases(n.bdf)
                .iter()
                .map(|a| alloc::format!("{}", a.short()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut registry = DriverRegistry::new();
    // PCI PM recovery times (10 ms after D3hot) before a driver probes.
    registry.set_delay(|us| crate::arch::tsc::delay_us(u64::from(us)));
    registry.add_devices(found.devices);
    *PCI.lock() = Some(PciState {
        cfg,
        registry,
        warnings,
    });
    // The AML may read configuration space (through `with`, so the state must
    // be in place and its lock free); the INTx routes must be known before a
    // driver probes.
    crate::acpi::aml::set_pci_config(aml_config_read, aml_config_write);
    if let Some(rsdp) = acpi::get().map(|p| p.rsdp).filter(|r| *r != 0) {
        match crate::acpi::aml::init(rsdp) {
            Ok(()) => intx::route_all(&topology, &devices_now(), root),
            Err(e) => log::warn!("pci: no INTx routing: {e}"),
        }
    }
    // Before drivers bind (their DMA devices ask `is_untrusted`); without
    // AML every port reads as not external-facing.
    let ports = with(|p| {
        let devices: Vec<PciDevice> = p.registry.devices().cloned().collect();
        untrusted::root_ports(&p.cfg, &devices)
    })
    .unwrap_or_default();
    untrusted::mark_below_external_ports(&ports, &topology);
    // Before any driver binds: the IOMMU needs the bridges above each device
    // and which are untrusted; it clears bus mastering of the functions it
    // blocks, through the state stored above (and with its lock free).
    let devices = devices_now();
    TOPOLOGY_HOOKS.for_each(|hook| hook(topology.clone(), &devices));
    with(|p| {
        let PciState { cfg, registry, .. } = p;
        DRIVERS.for_each(|register| register(registry, &*cfg));
    });
}

fn devices_now() -> Vec<PciDevice> {
    with(|p| p.registry.devices().cloned().collect()).unwrap_or_default()
}

fn aml_config_read(bdf: Bdf, offset: u16) -> u32 {
    with(|p| p.cfg.read32(bdf, offset)).unwrap_or(!0)
}

fn aml_config_write(bdf: Bdf, offset: u16, value: u32) {
    with(|p| p.cfg.write32(bdf, offset, value));
}

/// A driver's registration with the bus's driver table (Linux: `pci_register_driver`):
/// called once the bus is scanned, it adds the driver, which probes what matches.
pub type DriverRegistration = fn(&mut DriverRegistry, &dyn ConfigAccess);

/// The drivers, in registration order; the bus names none of them.
static DRIVERS: HookTable<DriverRegistration, 8> = HookTable::new();

/// Simulated functions to add to config space before the scan (`idma64=sim`).
static SIM_FUNCTIONS: HookTable<fn() -> Option<SimFunction>, 2> = HookTable::new();

/// Who wants the enumerated topology (parents, bridge kinds, requester-ID
/// aliases) and the functions found (IDs, classes, BARs) before any driver
/// binds: the IOMMU, to find each device's unit, its graphics unit and the
/// PCI windows, and to turn translation on before a driver can DMA.
pub type TopologyHook = fn(pci::Topology, &[PciDevice]);

static TOPOLOGY_HOOKS: HookTable<TopologyHook, 2> = HookTable::new();

/// Asks for the topology and functions of the next `init`'s enumeration.
pub fn register_topology_hook(f: TopologyHook) -> Result<(), HookTableFull> {
    TOPOLOGY_HOOKS.register(f)
}

/// Adds a driver to the table `init` registers with the bus.
pub fn register_driver(f: DriverRegistration) -> Result<(), HookTableFull> {
    DRIVERS.register(f)
}

/// Adds a source of a simulated function (`None` when not wanted this boot).
pub fn register_sim_function(f: fn() -> Option<SimFunction>) -> Result<(), HookTableFull> {
    SIM_FUNCTIONS.register(f)
}

pub fn devices() -> Vec<PciDevice> {
    with(|p| p.registry.devices().cloned().collect()).unwrap_or_default()
}

pub fn mechanism_name() -> &'static str {
    with(|p| p.cfg.name()).unwrap_or("none")
}

pub fn driver_of(bdf: Bdf) -> Option<&'static str> {
    with(|p| p.registry.driver_name(bdf)).flatten()
}

/// Whether a function's Command register has Bus Master Enable set now.
pub fn bus_master(bdf: Bdf) -> Option<bool> {
    with(|p| p.cfg.read16(bdf, 0x04) & 0x4 != 0)
}

/// Sets or clears a function's Bus Master Enable (the IOMMU clears it for
/// functions no driver claimed; a driver's probe sets it again).
pub fn set_bus_master(bdf: Bdf, on: bool) {
    with(|p| {
        if on {
            pci::command::enable_bus_master(&p.cfg, bdf);
        } else {
            pci::command::disable_bus_master(&p.cfg, bdf);
        }
    });
}
