//! The driver registry (Linux: the PCI bus's device and driver lists and
//! `pci_bus_match`/`really_probe`): devices, drivers, their bindings, and the child
//! platform devices drivers register.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::*;

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
