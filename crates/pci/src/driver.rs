//! Driver model: PCI drivers matched by ID tables, probe/remove, and child (platform)
//! devices a PCI driver registers for blocks inside its function (the iDMA64 inside an
//! LPSS UART, hw-facts §1.1).
//!
//! No global state: the kernel owns a [`DriverRegistry`] and passes the config
//! mechanism into every call that may touch hardware.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

use crate::addr::Bdf;
use crate::command;
use crate::config::ConfigAccess;
use crate::device::{DmaMaskError, DmaParams, PciDevice};
use crate::msi::MsiError;

/// Wildcard for vendor/device/subsystem fields of a [`PciDeviceId`].
pub const PCI_ANY_ID: u32 = !0;

/// One entry of a driver's ID table (Linux `struct pci_device_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciDeviceId {
    /// Vendor ID or [`PCI_ANY_ID`].
    pub vendor: u32,
    /// Device ID or [`PCI_ANY_ID`].
    pub device: u32,
    /// Subsystem vendor or [`PCI_ANY_ID`].
    pub subvendor: u32,
    /// Subsystem ID or [`PCI_ANY_ID`].
    pub subdevice: u32,
    /// 24-bit class code to match under `class_mask`.
    pub class: u32,
    /// Bits of the class code compared (0 = any class).
    pub class_mask: u32,
    /// Driver's own data for this entry (e.g. an index into a table of variants).
    pub driver_data: usize,
}

impl PciDeviceId {
    /// Matches `vendor:device`, any subsystem, any class.
    pub const fn new(vendor: u16, device: u16) -> Self {
        PciDeviceId {
            vendor: vendor as u32,
            device: device as u32,
            subvendor: PCI_ANY_ID,
            subdevice: PCI_ANY_ID,
            class: 0,
            class_mask: 0,
            driver_data: 0,
        }
    }

    /// Matches any device whose class code, masked with `mask`, equals `class`.
    pub const fn class(class: u32, mask: u32) -> Self {
        PciDeviceId {
            vendor: PCI_ANY_ID,
            device: PCI_ANY_ID,
            subvendor: PCI_ANY_ID,
            subdevice: PCI_ANY_ID,
            class,
            class_mask: mask,
            driver_data: 0,
        }
    }

    /// The same entry with subsystem IDs to match.
    pub const fn subsystem(mut self, subvendor: u16, subdevice: u16) -> Self {
        self.subvendor = subvendor as u32;
        self.subdevice = subdevice as u32;
        self
    }

    /// The same entry with `driver_data`.
    pub const fn data(mut self, driver_data: usize) -> Self {
        self.driver_data = driver_data;
        self
    }

    /// True when `dev` matches (Linux `pci_match_one_device`).
    pub fn matches(&self, dev: &PciDevice) -> bool {
        let field = |want: u32, have: u16| want == PCI_ANY_ID || want == u32::from(have);
        let (sv, sd) = dev.subsystem.unwrap_or((0xFFFF, 0xFFFF));
        field(self.vendor, dev.vendor_id)
            && field(self.device, dev.device_id)
            && field(self.subvendor, sv)
            && field(self.subdevice, sd)
            && (self.class ^ dev.class.as_u32()) & self.class_mask == 0
    }
}

/// Why a probe failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// Not a device this driver handles after all (Linux -ENODEV): try the next.
    NoDevice,
    /// A resource the driver needs is missing (BAR, capability, memory).
    MissingResource(&'static str),
    /// The device did not behave.
    Device(&'static str),
    /// A DMA mask the platform cannot give.
    DmaMask(DmaMaskError),
    /// MSI/MSI-X set-up failed.
    Msi(MsiError),
    /// A child device could not be registered.
    Child(ChildError),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NoDevice => f.write_str("no such device"),
            ProbeError::MissingResource(r) => write!(f, "missing resource: {r}"),
            ProbeError::Device(e) => write!(f, "device error: {e}"),
            ProbeError::DmaMask(e) => write!(f, "{e}"),
            ProbeError::Msi(e) => write!(f, "{e}"),
            ProbeError::Child(e) => write!(f, "{e}"),
        }
    }
}

impl From<DmaMaskError> for ProbeError {
    fn from(e: DmaMaskError) -> Self {
        ProbeError::DmaMask(e)
    }
}
impl From<MsiError> for ProbeError {
    fn from(e: MsiError) -> Self {
        ProbeError::Msi(e)
    }
}
impl From<ChildError> for ProbeError {
    fn from(e: ChildError) -> Self {
        ProbeError::Child(e)
    }
}

/// Why a child device could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildError {
    /// The parent has no such BAR.
    NoSuchBar(u8),
    /// The BAR is an I/O BAR.
    NotMemoryBar(u8),
    /// The window does not fit in the BAR.
    OutsideBar {
        /// BAR index.
        bar: u8,
        /// Window offset.
        offset: u64,
        /// Window length.
        len: u64,
        /// BAR size.
        size: u64,
    },
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChildError::NoSuchBar(b) => write!(f, "parent has no BAR {b}"),
            ChildError::NotMemoryBar(b) => write!(f, "BAR {b} is not a memory BAR"),
            ChildError::OutsideBar {
                bar,
                offset,
                len,
                size,
            } => write!(
                f,
                "window {offset:#x}+{len:#x} outside BAR {bar} of {size:#x} bytes"
            ),
        }
    }
}

/// Why a bind or unbind request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindError {
    /// No device at that address.
    NoSuchDevice(Bdf),
    /// No driver is bound.
    NotBound(Bdf),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::NoSuchDevice(b) => write!(f, "pci {b}: no such device"),
            BindError::NotBound(b) => write!(f, "pci {b}: no driver bound"),
        }
    }
}

/// A PCI driver. `Send + Sync` so the kernel can keep its registry in a lock.
pub trait PciDriver: Send + Sync {
    /// Driver name (as in `lspci -k`).
    fn name(&self) -> &'static str;
    /// Devices this driver handles.
    fn id_table(&self) -> &[PciDeviceId];
    /// Takes the device. On error nothing the probe registered stays (children are
    /// dropped, driver data cleared) and the next matching driver is tried.
    fn probe(&self, ctx: &mut DeviceCtx<'_>) -> Result<(), ProbeError>;
    /// Lets go of the device; its children are already gone.
    fn remove(&self, ctx: &mut DeviceCtx<'_>);
}

/// Identifies a child device in a [`DriverRegistry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChildId(pub u32);

/// A window of a parent's memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioWindow {
    /// Parent BAR index.
    pub bar: u8,
    /// Offset in the BAR.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// CPU physical address of the window (BAR address + offset).
    pub phys: u64,
}

/// A child (platform) device inside a PCI function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformDevice {
    /// Identifier.
    pub id: ChildId,
    /// Name platform drivers match on (e.g. `"idma64"`).
    pub name: &'static str,
    /// The PCI function it lives in.
    pub parent: Bdf,
    /// Its registers.
    pub mmio: MmioWindow,
    /// The device DMA is done against: the parent function (its requester ID is what
    /// the IOMMU sees, its DMA parameters are the ones that apply; hw-facts §1.1).
    pub dma_device: Bdf,
    /// The parent's interrupt, shared with the parent's own driver.
    pub interrupt_pin: u8,
}

/// What a parent's driver asks for when registering a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildSpec {
    /// Child name.
    pub name: &'static str,
    /// Parent BAR holding the child's registers.
    pub bar: u8,
    /// Offset of the registers in the BAR.
    pub offset: u64,
    /// Length of the register window.
    pub len: u64,
}

/// A driver for child devices, matched by name.
pub trait PlatformDriver: Send + Sync {
    /// The child name it handles.
    fn name(&self) -> &'static str;
    /// Takes the child.
    fn probe(&self, ctx: &mut PlatformCtx<'_>) -> Result<(), ProbeError>;
    /// Lets go of it.
    fn remove(&self, ctx: &mut PlatformCtx<'_>);
}

/// What a PCI driver's probe and remove get.
pub struct DeviceCtx<'a> {
    /// The device, including its DMA parameters.
    pub device: &'a mut PciDevice,
    /// The ID-table entry that matched.
    pub id: PciDeviceId,
    /// Config-space access.
    pub config: &'a dyn ConfigAccess,
    drvdata: &'a mut Option<Box<dyn Any + Send>>,
    children: &'a mut Vec<ChildSlot>,
    next_child: &'a mut u32,
}

impl<'a> DeviceCtx<'a> {
    /// The device's address.
    pub fn bdf(&self) -> Bdf {
        self.device.bdf
    }

    /// Lets the device do DMA (Command.BME). Only a driver calls this, once its DMA
    /// set-up is done.
    pub fn enable_bus_master(&self) {
        command::enable_bus_master(self.config, self.device.bdf);
    }

    /// Stops the device's DMA.
    pub fn disable_bus_master(&self) {
        command::disable_bus_master(self.config, self.device.bdf);
    }

    /// Stores the driver's per-device state.
    pub fn set_drvdata<T: Any + Send>(&mut self, data: T) {
        *self.drvdata = Some(Box::new(data));
    }

    /// The driver's per-device state, if it is a `T`.
    pub fn drvdata<T: Any>(&mut self) -> Option<&mut T> {
        self.drvdata.as_mut().and_then(|b| b.downcast_mut::<T>())
    }

    /// Registers a child device in window `spec` of one of this device's memory
    /// BARs. It is bound to a platform driver after this probe succeeds.
    pub fn register_child(&mut self, spec: ChildSpec) -> Result<ChildId, ChildError> {
        let bar = self
            .device
            .bar(spec.bar)
            .ok_or(ChildError::NoSuchBar(spec.bar))?;
        if !bar.is_memory() {
            return Err(ChildError::NotMemoryBar(spec.bar));
        }
        let fits = spec
            .offset
            .checked_add(spec.len)
            .is_some_and(|end| end <= bar.size);
        if !fits {
            return Err(ChildError::OutsideBar {
                bar: spec.bar,
                offset: spec.offset,
                len: spec.len,
                size: bar.size,
            });
        }
        let id = ChildId(*self.next_child);
        *self.next_child = self.next_child.wrapping_add(1);
        let dev = PlatformDevice {
            id,
            name: spec.name,
            parent: self.device.bdf,
            mmio: MmioWindow {
                bar: spec.bar,
                offset: spec.offset,
                len: spec.len,
                phys: bar.address.saturating_add(spec.offset),
            },
            dma_device: self.device.bdf,
            interrupt_pin: self.device.interrupt_pin,
        };
        log::info!(
            "pci {}: child {} at {:#x}",
            self.device.bdf,
            dev.name,
            dev.mmio.phys
        );
        self.children.push(ChildSlot {
            dev,
            driver: None,
            drvdata: None,
        });
        Ok(id)
    }

    /// This device's children.
    pub fn children(&self) -> impl Iterator<Item = &PlatformDevice> {
        let me = self.device.bdf;
        self.children
            .iter()
            .filter(move |c| c.dev.parent == me)
            .map(|c| &c.dev)
    }
}

/// What a platform driver's probe and remove get.
pub struct PlatformCtx<'a> {
    /// The child.
    pub device: &'a PlatformDevice,
    /// DMA parameters of the device DMA is done against (the parent function):
    /// iDMA64, for one, widens its mask to 64 bits here.
    pub dma: &'a mut DmaParams,
    /// Config-space access (for the parent).
    pub config: &'a dyn ConfigAccess,
    drvdata: &'a mut Option<Box<dyn Any + Send>>,
}

impl<'a> PlatformCtx<'a> {
    /// Stores the driver's per-device state.
    pub fn set_drvdata<T: Any + Send>(&mut self, data: T) {
        *self.drvdata = Some(Box::new(data));
    }

    /// The driver's per-device state, if it is a `T`.
    pub fn drvdata<T: Any>(&mut self) -> Option<&mut T> {
        self.drvdata.as_mut().and_then(|b| b.downcast_mut::<T>())
    }
}

struct DeviceSlot {
    dev: PciDevice,
    driver: Option<usize>,
    id: Option<PciDeviceId>,
    drvdata: Option<Box<dyn Any + Send>>,
}

struct ChildSlot {
    dev: PlatformDevice,
    driver: Option<usize>,
    drvdata: Option<Box<dyn Any + Send>>,
}

/// Identifies a registered PCI driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverId(pub usize);

/// Devices, drivers and bindings. The kernel owns one.
#[derive(Default)]
pub struct DriverRegistry {
    devices: Vec<DeviceSlot>,
    drivers: Vec<Box<dyn PciDriver>>,
    platform_drivers: Vec<Box<dyn PlatformDriver>>,
    children: Vec<ChildSlot>,
    next_child: u32,
    delay_us: Option<fn(u32)>,
}

/// Fallback wait before the kernel installs a calibrated one: an uncalibrated spin of
/// roughly a microsecond per unit on a GHz CPU.
fn spin_us(us: u32) {
    for _ in 0..u64::from(us) * 1000 {
        core::hint::spin_loop();
    }
}

impl DriverRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs the wait used for power-state recovery times (microseconds).
    pub fn set_delay(&mut self, delay_us: fn(u32)) {
        self.delay_us = Some(delay_us);
    }

    /// Adds devices (from [`crate::enumerate()`]) without binding them; a device already
    /// present is replaced only if unbound.
    pub fn add_devices(&mut self, devices: impl IntoIterator<Item = PciDevice>) {
        for dev in devices {
            match self.devices.iter_mut().find(|s| s.dev.bdf == dev.bdf) {
                Some(s) if s.driver.is_none() => s.dev = dev,
                Some(_) => log::warn!("pci {}: already present and bound; kept", dev.bdf),
                None => self.devices.push(DeviceSlot {
                    dev,
                    driver: None,
                    id: None,
                    drvdata: None,
                }),
            }
        }
    }

    /// Registers a PCI driver and binds it to every unbound device it matches.
    pub fn register_driver(
        &mut self,
        cfg: &dyn ConfigAccess,
        driver: Box<dyn PciDriver>,
    ) -> DriverId {
        self.drivers.push(driver);
        let id = self.drivers.len() - 1;
        for i in 0..self.devices.len() {
            if self.devices.get(i).is_some_and(|s| s.driver.is_none()) {
                self.try_bind(cfg, i, Some(id));
            }
        }
        DriverId(id)
    }

    /// Registers a platform driver and binds it to unbound children of its name.
    pub fn register_platform_driver(
        &mut self,
        cfg: &dyn ConfigAccess,
        driver: Box<dyn PlatformDriver>,
    ) {
        self.platform_drivers.push(driver);
        let d = self.platform_drivers.len() - 1;
        for i in 0..self.children.len() {
            self.try_bind_child(cfg, i, Some(d));
        }
    }

    /// Tries every unbound device against every driver.
    pub fn bind_all(&mut self, cfg: &dyn ConfigAccess) {
        for i in 0..self.devices.len() {
            self.try_bind(cfg, i, None);
        }
    }

    /// Binds `bdf` to the first matching driver whose probe succeeds; returns that
    /// driver's name, `None` if none took it.
    pub fn bind(
        &mut self,
        cfg: &dyn ConfigAccess,
        bdf: Bdf,
    ) -> Result<Option<&'static str>, BindError> {
        let i = self.index(bdf).ok_or(BindError::NoSuchDevice(bdf))?;
        self.try_bind(cfg, i, None);
        Ok(self.driver_name(bdf))
    }

    fn index(&self, bdf: Bdf) -> Option<usize> {
        self.devices.iter().position(|s| s.dev.bdf == bdf)
    }

    /// Tries drivers (all, or only `only`) on unbound device `i`; children the
    /// successful probe registered are bound afterwards.
    fn try_bind(&mut self, cfg: &dyn ConfigAccess, i: usize, only: Option<usize>) {
        let Some(slot) = self.devices.get_mut(i) else {
            return;
        };
        if slot.driver.is_some() {
            return;
        }
        let children_before = self.children.len();
        let mut bound = false;
        let mut powered = false;
        let delay = self.delay_us.unwrap_or(spin_us);
        for (d, driver) in self.drivers.iter().enumerate() {
            if only.is_some_and(|o| o != d) {
                continue;
            }
            let Some(id) = driver
                .id_table()
                .iter()
                .find(|e| e.matches(&slot.dev))
                .copied()
            else {
                continue;
            };
            // A driver is about to touch the BARs: the function must decode them
            // (firmware may have left it in D3hot, where they read all-ones).
            if !powered {
                let cap = slot.dev.find_capability(crate::caps::id::PM);
                if let Err(e) = crate::pm::set_d0(cfg, slot.dev.bdf, cap, &mut |us| delay(us)) {
                    log::warn!("pci {}: not probed: cannot reach D0: {e}", slot.dev.bdf);
                    return;
                }
                powered = true;
            }
            let mut ctx = DeviceCtx {
                device: &mut slot.dev,
                id,
                config: cfg,
                drvdata: &mut slot.drvdata,
                children: &mut self.children,
                next_child: &mut self.next_child,
            };
            match driver.probe(&mut ctx) {
                Ok(()) => {
                    log::info!("pci {}: bound to {}", slot.dev.bdf, driver.name());
                    slot.driver = Some(d);
                    slot.id = Some(id);
                    bound = true;
                    break;
                }
                Err(e) => {
                    log::info!("pci {}: {} probe failed: {e}", slot.dev.bdf, driver.name());
                    self.children.truncate(children_before);
                    slot.drvdata = None;
                    slot.dev.dma = DmaParams::default();
                }
            }
        }
        if bound {
            for c in children_before..self.children.len() {
                self.try_bind_child(cfg, c, None);
            }
        }
    }

    fn try_bind_child(&mut self, cfg: &dyn ConfigAccess, c: usize, only: Option<usize>) {
        bind_child(
            cfg,
            &self.platform_drivers,
            &mut self.children,
            &mut self.devices,
            c,
            only,
        );
    }

    /// Unbinds the driver of `bdf`: first its children (their drivers' `remove`, in
    /// reverse order of registration, then the records), then the driver's own
    /// `remove`. A device the driver left with bus mastering on has it turned off,
    /// so nothing DMAs into memory its driver no longer owns.
    pub fn unbind(&mut self, cfg: &dyn ConfigAccess, bdf: Bdf) -> Result<(), BindError> {
        let i = self.index(bdf).ok_or(BindError::NoSuchDevice(bdf))?;
        let Some(slot) = self.devices.get_mut(i) else {
            return Err(BindError::NoSuchDevice(bdf));
        };
        let (Some(d), Some(id)) = (slot.driver, slot.id) else {
            return Err(BindError::NotBound(bdf));
        };
        // Children first, newest first.
        let mut c = self.children.len();
        while c > 0 {
            c -= 1;
            if self.children.get(c).is_some_and(|ch| ch.dev.parent == bdf) {
                let mut ch = self.children.remove(c);
                if let Some(pdrv) = ch.driver.and_then(|pd| self.platform_drivers.get(pd)) {
                    let mut pctx = PlatformCtx {
                        device: &ch.dev,
                        dma: &mut slot.dev.dma,
                        config: cfg,
                        drvdata: &mut ch.drvdata,
                    };
                    pdrv.remove(&mut pctx);
                    log::info!(
                        "pci {bdf}: child {} unbound from {}",
                        ch.dev.name,
                        pdrv.name()
                    );
                }
            }
        }
        if let Some(driver) = self.drivers.get(d) {
            let mut ctx = DeviceCtx {
                device: &mut slot.dev,
                id,
                config: cfg,
                drvdata: &mut slot.drvdata,
                children: &mut self.children,
                next_child: &mut self.next_child,
            };
            driver.remove(&mut ctx);
            log::info!("pci {bdf}: unbound from {}", driver.name());
        }
        // A child registered during remove has no one left to own it.
        self.children.retain(|c| c.dev.parent != bdf);
        if command::disable_bus_master(cfg, bdf) {
            log::warn!("pci {bdf}: driver left bus mastering on; turned off");
        }
        slot.driver = None;
        slot.id = None;
        slot.drvdata = None;
        slot.dev.dma = DmaParams::default();
        Ok(())
    }

    /// Unbinds (if bound) and forgets `bdf` (hot removal).
    pub fn remove_device(
        &mut self,
        cfg: &dyn ConfigAccess,
        bdf: Bdf,
    ) -> Result<PciDevice, BindError> {
        match self.unbind(cfg, bdf) {
            Ok(()) | Err(BindError::NotBound(_)) => {}
            Err(e) => return Err(e),
        }
        let i = self.index(bdf).ok_or(BindError::NoSuchDevice(bdf))?;
        Ok(self.devices.remove(i).dev)
    }

    /// All devices.
    pub fn devices(&self) -> impl Iterator<Item = &PciDevice> {
        self.devices.iter().map(|s| &s.dev)
    }

    /// The device at `bdf`.
    pub fn device(&self, bdf: Bdf) -> Option<&PciDevice> {
        self.devices
            .iter()
            .find(|s| s.dev.bdf == bdf)
            .map(|s| &s.dev)
    }

    /// Name of the driver bound to `bdf`.
    pub fn driver_name(&self, bdf: Bdf) -> Option<&'static str> {
        let s = self.devices.iter().find(|s| s.dev.bdf == bdf)?;
        self.drivers.get(s.driver?).map(|d| d.name())
    }

    /// All child devices.
    pub fn children(&self) -> impl Iterator<Item = &PlatformDevice> {
        self.children.iter().map(|c| &c.dev)
    }

    /// Name of the platform driver bound to child `id`.
    pub fn child_driver_name(&self, id: ChildId) -> Option<&'static str> {
        let c = self.children.iter().find(|c| c.dev.id == id)?;
        self.platform_drivers.get(c.driver?).map(|d| d.name())
    }
}

/// Binds child `c` to the first platform driver of its name whose probe succeeds.
fn bind_child(
    cfg: &dyn ConfigAccess,
    drivers: &[Box<dyn PlatformDriver>],
    children: &mut [ChildSlot],
    devices: &mut [DeviceSlot],
    c: usize,
    only: Option<usize>,
) {
    let Some(ch) = children.get_mut(c) else {
        return;
    };
    if ch.driver.is_some() {
        return;
    }
    let Some(parent) = devices.iter_mut().find(|s| s.dev.bdf == ch.dev.dma_device) else {
        return;
    };
    for (d, drv) in drivers.iter().enumerate() {
        if only.is_some_and(|o| o != d) || drv.name() != ch.dev.name {
            continue;
        }
        let mut ctx = PlatformCtx {
            device: &ch.dev,
            dma: &mut parent.dev.dma,
            config: cfg,
            drvdata: &mut ch.drvdata,
        };
        match drv.probe(&mut ctx) {
            Ok(()) => {
                ch.driver = Some(d);
                log::info!("pci {}: child {} bound", ch.dev.parent, ch.dev.name);
                return;
            }
            Err(e) => {
                log::info!(
                    "pci {}: child {} probe failed: {e}",
                    ch.dev.parent,
                    ch.dev.name
                );
                ch.drvdata = None;
            }
        }
    }
}
