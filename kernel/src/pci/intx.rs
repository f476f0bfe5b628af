//! Legacy PCI interrupts (INTx): which IO-APIC input each function's pin
//! reaches, from the firmware's `_PRT` (Linux: drivers/acpi/pci_irq.c), worked
//! out once at enumeration, before any driver binds, so that a driver without
//! MSI (or one told not to use it) can take its line at probe time.
//!
//! PCI INTx lines are level-triggered and shared: a driver adds its handler
//! with [`request`], which chains it on the line (`arch::apic`'s shared lines).

use alloc::vec::Vec;

use pci::{Bdf, PciDevice, Topology};

use crate::acpi::aml::{self, IntxRoute, IntxRouteError};
use crate::arch::apic::{self, GsiError, SharedHandler};
use crate::sync::IrqSpinLock;

/// Each function with an interrupt pin, and where the pin goes (or why not).
/// (function, interrupt pin, where the pin goes or why not).
type PinRoute = (Bdf, u8, Result<IntxRoute, IntxRouteError>);

static ROUTES: IrqSpinLock<Vec<PinRoute>> = IrqSpinLock::new(Vec::new());

/// Works out the route of every function that has a pin. `topology` gives the
/// bridges above each function; `root_bus` is the bus the host bridge decodes.
pub fn route_all(topology: &Topology, devices: &[PciDevice], root_bus: u8) {
    let mut out = Vec::new();
    let mut routed = 0;
    for d in devices
        .iter()
        .filter(|d| (1..=4).contains(&d.interrupt_pin))
    {
        // Bridges from the root down: `ancestors` is nearest first.
        let mut bridges: Vec<aml::BridgeHop> = topology
            .ancestors(d.bdf)
            .iter()
            .map(|b| (b.device, b.function))
            .collect();
        bridges.reverse();
        let r = aml::pci_intx_route(
            root_bus,
            &bridges,
            d.bdf.device,
            d.bdf.function,
            d.interrupt_pin,
        );
        match &r {
            Ok(route) => {
                routed += 1;
                log::debug!(
                    "pci {}: INT{} -> GSI {} ({}, active {}) via {}{}",
                    d.bdf,
                    pin_name(d.interrupt_pin),
                    route.gsi,
                    if route.level { "level" } else { "edge" },
                    if route.active_low { "low" } else { "high" },
                    route.prt,
                    route
                        .link
                        .as_deref()
                        .map_or(alloc::string::String::new(), |l| alloc::format!(
                            " link {l}"
                        ))
                );
            }
            Err(e) => log::debug!(
                "pci {}: INT{}: no route: {e}",
                d.bdf,
                pin_name(d.interrupt_pin)
            ),
        }
        out.push((d.bdf, d.interrupt_pin, r));
    }
    log::info!(
        "pci: INTx routes from _PRT: {routed} of {} functions with a pin",
        out.len()
    );
    *ROUTES.lock() = out;
}

/// `A`..`D` for pin 1..4.
pub fn pin_name(pin: u8) -> char {
    match pin {
        1..=4 => (b'A' + pin - 1) as char,
        _ => '?',
    }
}

/// The route of `bdf`'s pin, as found at enumeration.
pub fn route(bdf: Bdf) -> Result<IntxRoute, IntxRouteError> {
    ROUTES
        .lock()
        .iter()
        .find(|(b, _, _)| *b == bdf)
        .map(|(_, _, r)| r.clone())
        .unwrap_or(Err(IntxRouteError::NoPin))
}

/// Every function with a pin: (function, pin, route).
pub fn routes() -> Vec<(Bdf, u8, Result<IntxRoute, IntxRouteError>)> {
    ROUTES.lock().clone()
}

/// Why a driver could not take its INTx line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntxError {
    Route(IntxRouteError),
    Line(GsiError),
}

impl core::fmt::Display for IntxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IntxError::Route(e) => write!(f, "no INTx route: {e}"),
            IntxError::Line(e) => write!(f, "INTx line: {e}"),
        }
    }
}

/// Adds `handler` to the line `bdf`'s pin reaches; returns (GSI, vector). The
/// handler must return whether its device had raised the line, and acknowledge
/// the device before returning (the line is level-triggered). The caller
/// clears the function's Interrupt Disable bit once its device is ready.
pub fn request(bdf: Bdf, handler: SharedHandler) -> Result<(u32, u8), IntxError> {
    let r = route(bdf).map_err(IntxError::Route)?;
    let v =
        apic::request_shared_gsi(r.gsi, r.active_low, r.level, handler).map_err(IntxError::Line)?;
    Ok((r.gsi, v))
}
