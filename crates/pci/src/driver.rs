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

mod registry;
pub use registry::{DriverId, DriverRegistry};
