//! The firmware's AML (DSDT and SSDTs), loaded into rust-osdev's `aml`
//! interpreter (Linux: drivers/acpi/acpica/ and drivers/acpi/pci_irq.c), for
//! what the static tables cannot say: the `\_S5` sleep type for power-off and
//! which IO-APIC input each PCI interrupt pin (INTx) is wired to (`_PRT`, and the
//! `_CRS` of the interrupt link devices it names), and whether a PCIe root port
//! leads out of the machine (its `_DSD`'s `ExternalFacingPort`, in [`property`]).
//!
//! Loading runs `\_PIC(1)` first, as Linux does, so that firmware which keeps
//! two routing tables (q35 returns the 8259 one until told otherwise) hands out
//! the IO-APIC one. Nothing here is needed to boot: when the AML cannot be
//! parsed, power-off falls back to QEMU's values and INTx is not available.
//!
//! The interpreter runs with a lock held and interrupts on; it is never called
//! from an interrupt handler.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use aml::pci_routing::{PciRoutingTable, Pin};
use aml::resource::{InterruptPolarity, InterruptTrigger};
use aml::value::Args;
use aml::{AmlContext, AmlError, AmlName, AmlValue, DebugVerbosity, LevelType};
use spin::{Mutex, Once};

use crate::mm::direct;

pub mod property;

/// PCI configuration access for AML `PciConfig` regions (dword read, dword
/// write), provided by the PCI layer once it has built its access mechanism (it
/// sits above this one).
pub type PciConfigHook = (fn(pci::Bdf, u16) -> u32, fn(pci::Bdf, u16, u32));

static PCI_CONFIG: Once<PciConfigHook> = Once::new();

/// Lets AML reach PCI configuration space (called by the PCI layer at init).
pub fn set_pci_config(read: fn(pci::Bdf, u16) -> u32, write: fn(pci::Bdf, u16, u32)) {
    PCI_CONFIG.call_once(|| (read, write));
}

/// The loaded namespace: `None` until [`init`] succeeds.
static NAMESPACE: Mutex<Option<Loaded>> = Mutex::new(None);

struct Loaded {
    ctx: AmlContext,
    /// The PCI host bridges found (`PNP0A08`/`PNP0A03`), with their bus numbers.
    roots: Vec<(AmlName, u8)>,
}

/// Why the AML could not be loaded or asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmlLoadError {
    /// The bootloader found no RSDP or the acpi crate could not read the tables.
    NoTables(String),
    /// The table with this signature did not parse.
    Parse(&'static str, String),
    /// [`init`] has not run or failed.
    NotLoaded,
}

impl fmt::Display for AmlLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmlLoadError::NoTables(e) => write!(f, "no ACPI tables to read AML from ({e})"),
            AmlLoadError::Parse(sig, e) => write!(f, "{sig}: AML did not parse: {e}"),
            AmlLoadError::NotLoaded => f.write_str("the AML namespace is not loaded"),
        }
    }
}

/// The interrupt-controller input a PCI pin reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntxRoute {
    pub gsi: u32,
    pub level: bool,
    pub active_low: bool,
    /// The `_PRT` that held the entry (`\_SB.PCI0._PRT`), after any bridge
    /// swizzling; and the link device when the entry named one.
    pub prt: String,
    pub link: Option<String>,
    /// The (device, pin 1..=4) looked up in that `_PRT` after swizzling.
    pub looked_up: (u8, u8),
}

/// Why a pin has no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntxRouteError {
    NotLoaded,
    /// The interrupt pin register says the function uses no pin.
    NoPin,
    /// No PCI host bridge in the namespace decodes this bus.
    NoHostBridge(u8),
    /// The host bridge has no `_PRT` (and no bridge on the way has one).
    NoPrt(String),
    /// The `_PRT` (or the link device's `_CRS`) failed to evaluate.
    Eval(String, String),
}

impl fmt::Display for IntxRouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntxRouteError::NotLoaded => f.write_str("the AML namespace is not loaded"),
            IntxRouteError::NoPin => f.write_str("the function uses no interrupt pin"),
            IntxRouteError::NoHostBridge(b) => {
                write!(
                    f,
                    "no PCI host bridge in the ACPI namespace for bus {b:#04x}"
                )
            }
            IntxRouteError::NoPrt(p) => write!(f, "{p} has no _PRT"),
            IntxRouteError::Eval(what, e) => write!(f, "evaluating {what}: {e}"),
        }
    }
}

fn err_text(e: &AmlError) -> String {
    alloc::format!("{e:?}")
}

/// The namespace's access to the machine. Memory goes through the direct map
/// for RAM and an uncached mapping of the page otherwise; port I/O and PCI
/// configuration as the AML asks (executing the firmware's own description of
/// its hardware is what ACPI is for).
struct Machine;

impl Machine {
    fn read_mem(&self, address: usize, buf: &mut [u8]) {
        let pa = address as u64;
        let in_ram = crate::mm::memmap::regions()
            .iter()
            .any(|r| r.start <= pa && pa + buf.len() as u64 <= r.end);
        if in_ram {
            hal::PhysMemory::read(&direct::direct(), hal::PhysAddr::new(pa), buf);
            return;
        }
        match crate::mm::ioremap(pa & !0xFFF, 0x1000) {
            Ok(io) => {
                let off = (pa & 0xFFF) as usize;
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = io.read8(off + i);
                }
            }
            Err(e) => {
                log::warn!("aml: cannot map {pa:#x} for a read ({e}); reading all-ones");
                buf.fill(0xFF);
            }
        }
    }

    fn write_mem(&self, address: usize, bytes: &[u8]) {
        let pa = address as u64;
        let in_ram = crate::mm::memmap::regions()
            .iter()
            .any(|r| r.start <= pa && pa + bytes.len() as u64 <= r.end);
        if in_ram {
            hal::PhysMemory::write(&direct::direct(), hal::PhysAddr::new(pa), bytes);
            return;
        }
        match crate::mm::ioremap(pa & !0xFFF, 0x1000) {
            Ok(io) => {
                let off = (pa & 0xFFF) as usize;
                for (i, b) in bytes.iter().enumerate() {
                    io.write8(off + i, *b);
                }
            }
            Err(e) => log::warn!("aml: cannot map {pa:#x} for a write ({e}); dropped"),
        }
    }

    fn pci(&self, seg: u16, bus: u8, dev: u8, func: u8) -> Option<(PciConfigHook, pci::Bdf)> {
        let access = *PCI_CONFIG.get()?;
        // None for a device or function number out of range.
        let bdf = pci::Bdf::new(seg, bus, dev, func)?;
        Some((access, bdf))
    }

    fn pci_read(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16, width: u32) -> u32 {
        let Some((access, bdf)) = self.pci(seg, bus, dev, func) else {
            return !0;
        };
        let dword = (access.0)(bdf, off & !3);
        let v = dword >> ((off & 3) * 8);
        match width {
            8 => v & 0xFF,
            16 => v & 0xFFFF,
            _ => v,
        }
    }

    // The signature is the `acpi` crate's `Handler` trait's.
    #[allow(clippy::too_many_arguments)]
    fn pci_write(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16, width: u32, value: u32) {
        let Some((access, bdf)) = self.pci(seg, bus, dev, func) else {
            log::warn!("aml: PCI config write before PCI is up; dropped");
            return;
        };
        let shift = (off & 3) * 8;
        let mask: u32 = match width {
            8 => 0xFF,
            16 => 0xFFFF,
            _ => !0,
        };
        let old = (access.0)(bdf, off & !3);
        let new = (old & !(mask << shift)) | ((value & mask) << shift);
        (access.1)(bdf, off & !3, new);
    }
}

macro_rules! mem_rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, address: usize) -> $t {
            let mut b = [0u8; core::mem::size_of::<$t>()];
            self.read_mem(address, &mut b);
            <$t>::from_le_bytes(b)
        }
        fn $write(&mut self, address: usize, value: $t) {
            self.write_mem(address, &value.to_le_bytes());
        }
    };
}

impl aml::Handler for Machine {
    mem_rw!(read_u8, write_u8, u8);
    mem_rw!(read_u16, write_u16, u16);
    mem_rw!(read_u32, write_u32, u32);
    mem_rw!(read_u64, write_u64, u64);

    fn read_io_u8(&self, port: u16) -> u8 {
        crate::arch::port::inb(port)
    }
    fn read_io_u16(&self, port: u16) -> u16 {
        crate::arch::port::inw(port)
    }
    fn read_io_u32(&self, port: u16) -> u32 {
        crate::arch::port::inl(port)
    }
    fn write_io_u8(&self, port: u16, value: u8) {
        crate::arch::port::outb(port, value)
    }
    fn write_io_u16(&self, port: u16, value: u16) {
        crate::arch::port::outw(port, value)
    }
    fn write_io_u32(&self, port: u16, value: u32) {
        crate::arch::port::outl(port, value)
    }

    fn read_pci_u8(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16) -> u8 {
        self.pci_read(seg, bus, dev, func, off, 8) as u8
    }
    fn read_pci_u16(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16) -> u16 {
        self.pci_read(seg, bus, dev, func, off, 16) as u16
    }
    fn read_pci_u32(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16) -> u32 {
        self.pci_read(seg, bus, dev, func, off, 32)
    }
    fn write_pci_u8(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16, value: u8) {
        self.pci_write(seg, bus, dev, func, off, 8, value as u32)
    }
    fn write_pci_u16(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16, value: u16) {
        self.pci_write(seg, bus, dev, func, off, 16, value as u32)
    }
    fn write_pci_u32(&self, seg: u16, bus: u8, dev: u8, func: u8, off: u16, value: u32) {
        self.pci_write(seg, bus, dev, func, off, 32, value)
    }
}

/// The AML byte stream at `phys` (the acpi crate's `AmlTable` already points
/// past the table header), bounded at 4 MiB.
fn aml_stream(phys: u64, len: u32) -> &'static [u8] {
    let len = (len as usize).min(4 << 20);
    let va = direct::to_virt(phys).as_ptr::<u8>();
    // SAFETY: the table lies in firmware memory covered by the direct map (the
    // acpi crate found it there and checked its header); it is never freed or
    // written, so a shared 'static view of its bytes is sound.
    unsafe { core::slice::from_raw_parts(va, len) }
}

/// `EISAID("PNP0A08")` / `EISAID("PNP0A03")`: PCI Express and PCI host bridges.
const PNP0A08: u64 = 0x080A_D041;
const PNP0A03: u64 = 0x030A_D041;

fn is_host_bridge_id(v: &AmlValue) -> bool {
    match v {
        AmlValue::Integer(i) => *i == PNP0A08 || *i == PNP0A03,
        AmlValue::String(s) => s == "PNP0A08" || s == "PNP0A03",
        _ => false,
    }
}

fn child(ctx: &mut AmlContext, scope: &AmlName, seg: &str) -> Option<AmlValue> {
    let path = AmlName::from_str(seg).ok()?.resolve(scope).ok()?;
    ctx.invoke_method(&path, Args::EMPTY).ok()
}

/// Every device whose `_HID` or `_CID` says PCI host bridge, with its `_BBN`.
fn find_roots(ctx: &mut AmlContext) -> Vec<(AmlName, u8)> {
    let mut devices = Vec::new();
    let _ = ctx.namespace.clone().traverse(|name, level| {
        if level.typ == LevelType::Device {
            devices.push(name.clone());
        }
        Ok(true)
    });
    let mut roots = Vec::new();
    for d in devices {
        let hid = child(ctx, &d, "_HID");
        let cid = child(ctx, &d, "_CID");
        if hid.iter().chain(cid.iter()).any(is_host_bridge_id) {
            let bbn = match child(ctx, &d, "_BBN") {
                Some(AmlValue::Integer(b)) => b as u8,
                _ => 0,
            };
            roots.push((d, bbn));
        }
    }
    roots
}

/// Loads the DSDT and every SSDT, tells the firmware we route through the
/// IO-APIC (`\_PIC(1)`), runs the devices' `_STA`/`_INI`, and finds the PCI host
/// bridges. Called once after PCI is up (AML may read PCI configuration space).
pub fn init(rsdp: u64) -> Result<(), AmlLoadError> {
    // SAFETY: the RSDP address comes from the bootloader, which found and
    // checksummed it; the acpi crate validates every table it maps.
    let tables =
        unsafe { acpi::AcpiTables::from_rsdp(super::tables::DirectMapHandler, rsdp as usize) }
            .map_err(|e| AmlLoadError::NoTables(alloc::format!("{e:?}")))?;
    let mut ctx = AmlContext::new(Box::new(Machine), DebugVerbosity::None);
    let dsdt = tables
        .dsdt()
        .map_err(|e| AmlLoadError::NoTables(alloc::format!("DSDT: {e:?}")))?;
    ctx.parse_table(aml_stream(dsdt.address as u64, dsdt.length))
        .map_err(|e| AmlLoadError::Parse("DSDT", err_text(&e)))?;
    let mut ssdts = 0;
    for ssdt in tables.ssdts() {
        match ctx.parse_table(aml_stream(ssdt.address as u64, ssdt.length)) {
            Ok(()) => ssdts += 1,
            // One bad SSDT must not lose the DSDT's objects.
            Err(e) => log::warn!(
                "aml: an SSDT at {:#x} did not parse: {}",
                ssdt.address,
                err_text(&e)
            ),
        }
    }
    // \_PIC(1): "the OS uses the APIC" (ACPI spec §5.8.1); absent on some machines.
    if let Ok(pic) = AmlName::from_str("\\_PIC") {
        let args = Args::from_list(vec![AmlValue::Integer(1)]).unwrap_or(Args::EMPTY);
        match ctx.invoke_method(&pic, args) {
            Ok(_) | Err(AmlError::ValueDoesNotExist(_)) => {}
            Err(e) => log::warn!("aml: \\_PIC(1) failed: {}", err_text(&e)),
        }
    }
    if let Err(e) = ctx.initialize_objects() {
        log::warn!("aml: initialising devices (_STA/_INI): {}", err_text(&e));
    }
    let roots = find_roots(&mut ctx);
    log::info!(
        "aml: DSDT and {ssdts} SSDT(s) loaded; PCI host bridge(s): {}",
        roots
            .iter()
            .map(|(n, b)| alloc::format!("{n} (bus {b:#04x})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    *NAMESPACE.lock() = Some(Loaded { ctx, roots });
    Ok(())
}

/// `\_S5`'s SLP_TYPa and SLP_TYPb, evaluated (ACPI spec §7.4.2).
pub fn sleep_type_s5() -> Result<(u8, u8), AmlLoadError> {
    let mut ns = NAMESPACE.lock();
    let l = ns.as_mut().ok_or(AmlLoadError::NotLoaded)?;
    let path =
        AmlName::from_str("\\_S5").map_err(|e| AmlLoadError::Parse("\\_S5", err_text(&e)))?;
    let v = l
        .ctx
        .invoke_method(&path, Args::EMPTY)
        .map_err(|e| AmlLoadError::Parse("\\_S5", err_text(&e)))?;
    let AmlValue::Package(p) = v else {
        return Err(AmlLoadError::Parse("\\_S5", "not a package".into()));
    };
    let int = |i: usize| match p.get(i) {
        Some(AmlValue::Integer(n)) => Some(*n as u8),
        _ => None,
    };
    let a = int(0).ok_or(AmlLoadError::Parse("\\_S5", "no SLP_TYPa".into()))?;
    Ok((a, int(1).unwrap_or(a)))
}

/// One step from a bus to the bridge above it: the bridge's (device, function)
/// on its own bus.
pub type BridgeHop = (u8, u8);

/// The ACPI node of the device at (dev, func) below `parent`, by `_ADR`.
fn node_for(ctx: &mut AmlContext, parent: &AmlName, dev: u8, func: u8) -> Option<AmlName> {
    let want = ((dev as u64) << 16) | func as u64;
    let mut kids = Vec::new();
    let _ = ctx.namespace.clone().traverse(|name, level| {
        // Only direct children of `parent` (traversal visits every level).
        if level.typ == LevelType::Device && name.as_string().len() > parent.as_string().len() {
            let p = parent.as_string();
            let n = name.as_string();
            if n.starts_with(&p) && !n[p.len()..].trim_start_matches('.').contains('.') {
                kids.push(name.clone());
            }
        }
        Ok(true)
    });
    kids.into_iter()
        .find(|k| matches!(child(ctx, k, "_ADR"), Some(AmlValue::Integer(a)) if a == want))
}

/// Where pin `pin` (1 = INTA .. 4 = INTD) of function (dev, func) is wired.
/// `bridges` lists the PCI-to-PCI bridges from the host bridge down to the
/// function's bus (empty on the root bus), and `root_bus` is the bus the host
/// bridge decodes. As Linux's `acpi_pci_irq_lookup`: the nearest `_PRT` on the
/// way up is used; at each bridge without one, the pin is swizzled
/// ((pin - 1 + device) mod 4, PCI-to-PCI bridge spec §9.1) and the lookup moves
/// to the bridge.
pub fn pci_intx_route(
    root_bus: u8,
    bridges: &[BridgeHop],
    dev: u8,
    func: u8,
    pin: u8,
) -> Result<IntxRoute, IntxRouteError> {
    if !(1..=4).contains(&pin) {
        return Err(IntxRouteError::NoPin);
    }
    let mut ns = NAMESPACE.lock();
    let l = ns.as_mut().ok_or(IntxRouteError::NotLoaded)?;
    let root = l
        .roots
        .iter()
        .find(|(_, b)| *b == root_bus)
        .map(|(n, _)| n.clone())
        .ok_or(IntxRouteError::NoHostBridge(root_bus))?;
    // The ACPI node of each bridge on the way down, where the namespace has one.
    let mut nodes: Vec<Option<AmlName>> = Vec::new();
    let mut parent = Some(root.clone());
    for &(bd, bf) in bridges {
        let n = parent
            .as_ref()
            .and_then(|p| node_for(&mut l.ctx, p, bd, bf));
        nodes.push(n.clone());
        parent = n;
    }
    // Walk up: the function's bus is below the last bridge.
    let (mut d, mut p) = (dev, pin);
    let mut level = bridges.len();
    loop {
        let scope = if level == 0 {
            Some(root.clone())
        } else {
            nodes[level - 1].clone()
        };
        if let Some(scope) = scope {
            let prt_path = AmlName::from_str("_PRT")
                .and_then(|n| n.resolve(&scope))
                .map_err(|e| IntxRouteError::Eval(alloc::format!("{scope}._PRT"), err_text(&e)))?;
            if l.ctx.namespace.get_by_path(&prt_path).is_ok() {
                return route_in(&mut l.ctx, &prt_path, d, func, p);
            }
        }
        if level == 0 {
            return Err(IntxRouteError::NoPrt(root.as_string()));
        }
        // Swizzle through the bridge (bridges.len() ≥ level ≥ 1).
        p = ((p - 1 + d) % 4) + 1;
        d = bridges[level - 1].0;
        level -= 1;
    }
}

fn route_in(
    ctx: &mut AmlContext,
    prt_path: &AmlName,
    dev: u8,
    func: u8,
    pin: u8,
) -> Result<IntxRoute, IntxRouteError> {
    let what = prt_path.as_string();
    let table = PciRoutingTable::from_prt_path(prt_path, ctx)
        .map_err(|e| IntxRouteError::Eval(what.clone(), err_text(&e)))?;
    let aml_pin = match pin {
        1 => Pin::IntA,
        2 => Pin::IntB,
        3 => Pin::IntC,
        _ => Pin::IntD,
    };
    let link = link_name(ctx, prt_path, dev, pin);
    let irq = table
        .route(dev as u16, func as u16, aml_pin, ctx)
        .map_err(|e| {
            IntxRouteError::Eval(
                alloc::format!("{what} entry for device {dev:#x} pin {pin}"),
                err_text(&e),
            )
        })?;
    Ok(IntxRoute {
        gsi: irq.irq,
        level: irq.trigger == InterruptTrigger::Level,
        active_low: irq.polarity == InterruptPolarity::ActiveLow,
        prt: what,
        link,
        looked_up: (dev, pin),
    })
}

/// The link device a `_PRT` entry names, for the `irq` view (the aml crate
/// resolves it but does not say which it was).
fn link_name(ctx: &mut AmlContext, prt_path: &AmlName, dev: u8, pin: u8) -> Option<String> {
    let AmlValue::Package(entries) = ctx.invoke_method(prt_path, Args::EMPTY).ok()? else {
        return None;
    };
    entries.iter().find_map(|e| {
        let AmlValue::Package(e) = e else { return None };
        let addr = e.first()?.as_integer(ctx).ok()?;
        let p = e.get(1)?.as_integer(ctx).ok()?;
        if (addr >> 16) as u8 == dev && p + 1 == pin as u64 {
            match e.get(2)? {
                AmlValue::String(s) => Some(s.clone()),
                _ => None,
            }
        } else {
            None
        }
    })
}
