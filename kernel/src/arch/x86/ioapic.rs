//! The IO-APICs (Linux: arch/x86/kernel/apic/io_apic.c): device lines (GSIs)
//! routed to vectors with the MADT's overrides, lines shared by PCI INTx
//! handlers, and each line's redirection entry, in compatibility format or,
//! once the IOMMU turned interrupt remapping on, in remappable format
//! (`irq_remap`).

use spin::{Mutex, Once};

use super::apic::IOAPIC_VECTOR_BASE;
use super::irq_remap;
use crate::arch::idt::{self, IrqHandler, TrapFrame};
use crate::mm::{self as kmm, IoMem};

const LVT_MASKED: u32 = 1 << 16;
/// Vectors 0x30..0x50 are the IO-APIC lines (GSI n on 0x30 + n).
const DYN_FIRST: u8 = 0x50;

struct IoApic {
    regs: IoMem,
    id: u8,
    gsi_base: u32,
    lines: u32,
}

static IOAPICS: Mutex<alloc::vec::Vec<IoApic>> = Mutex::new(alloc::vec::Vec::new());
/// The MADT's interrupt source overrides, kept for `route_isa_irq`.
static OVERRIDES: Once<&'static [IrqOverride]> = Once::new();

impl IoApic {
    fn read(&self, reg: u32) -> u32 {
        self.regs.write32(0x00, reg);
        self.regs.read32(0x10)
    }
    fn write(&self, reg: u32, value: u32) {
        self.regs.write32(0x00, reg);
        self.regs.write32(0x10, value);
    }
    fn set_entry(&self, line: u32, low: u32, high: u32) {
        // Mask first so the entry is never live half-written.
        self.write(0x10 + 2 * line, LVT_MASKED);
        self.write(0x11 + 2 * line, high);
        self.write(0x10 + 2 * line, low);
    }
}

/// An IO-APIC as the MADT describes it (ACPI spec §5.2.12.3).
#[derive(Debug, Clone, Copy)]
pub struct IoApicInfo {
    pub id: u8,
    pub address: u64,
    pub gsi_base: u32,
}

/// An ISA interrupt source override from the MADT (ACPI spec §5.2.12.5).
#[derive(Debug, Clone, Copy)]
pub struct IrqOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    pub active_low: bool,
    pub level: bool,
}

/// Maps every IO-APIC the MADT lists and masks all their lines.
pub fn init(infos: &[IoApicInfo], overrides: &'static [IrqOverride]) {
    OVERRIDES.call_once(|| overrides);
    let mut ioapics = alloc::vec::Vec::new();
    for info in infos {
        let Ok(regs) = kmm::ioremap(info.address, 0x20) else {
            log::warn!(
                "apic: cannot map IO-APIC {} at {:#x}",
                info.id,
                info.address
            );
            continue;
        };
        let mut io = IoApic {
            regs,
            id: info.id,
            gsi_base: info.gsi_base,
            lines: 0,
        };
        io.lines = ((io.read(0x01) >> 16) & 0xFF) + 1;
        for line in 0..io.lines {
            io.set_entry(line, LVT_MASKED, 0);
        }
        log::info!(
            "apic: IO-APIC {} at {:#x}: GSIs {}-{}",
            info.id,
            info.address,
            io.gsi_base,
            io.gsi_base + io.lines - 1
        );
        ioapics.push(io);
    }
    *IOAPICS.lock() = ioapics;
}

/// Routes ISA IRQ `irq` (after MADT overrides) to `handler`; returns the vector.
pub fn route_isa_irq(irq: u8, handler: IrqHandler) -> Result<u8, &'static str> {
    // ISA lines are edge-triggered, active high, identity-mapped to GSIs unless
    // the MADT says otherwise (ACPI spec §5.2.12.5).
    let (gsi, active_low, level) = OVERRIDES
        .get()
        .and_then(|o| o.iter().find(|o| o.isa_irq == irq))
        .map_or((irq as u32, false, false), |o| {
            (o.gsi, o.active_low, o.level)
        });
    route_gsi(gsi, active_low, level, handler)
}

pub fn route_gsi(
    gsi: u32,
    active_low: bool,
    level: bool,
    handler: IrqHandler,
) -> Result<u8, &'static str> {
    let vector = gsi_vector(gsi).map_err(|e| e.as_str())?;
    idt::register_handler(vector, handler).map_err(|_| "vector already taken")?;
    program_gsi(gsi, vector, active_low, level).map_err(|e| e.as_str())?;
    Ok(vector)
}

/// The vector GSI `gsi` is delivered on (0x30 + gsi).
fn gsi_vector(gsi: u32) -> Result<u8, GsiError> {
    IOAPIC_VECTOR_BASE
        .checked_add(u8::try_from(gsi).map_err(|_| GsiError::BeyondVectors(gsi))?)
        .filter(|v| *v < DYN_FIRST)
        .ok_or(GsiError::BeyondVectors(gsi))
}

/// How a routed line was programmed, kept so that its entry can be rewritten
/// when interrupt remapping comes on (`remap_routed_lines`).
#[derive(Clone, Copy)]
struct Routed {
    vector: u8,
    active_low: bool,
    level: bool,
}

static ROUTED: Mutex<[Option<Routed>; GSI_LINES]> = Mutex::new([None; GSI_LINES]);

/// Writes the IO-APIC redirection entry of `gsi`: fixed delivery to this CPU.
/// With interrupt remapping on, the entry is in remappable format: it names an
/// IRTE (which holds the destination) and keeps the vector only for EOI
/// matching; without, it is in compatibility format.
fn program_gsi(gsi: u32, vector: u8, active_low: bool, level: bool) -> Result<(), GsiError> {
    let ioapics = IOAPICS.lock();
    let io = ioapics
        .iter()
        .find(|io| (io.gsi_base..io.gsi_base + io.lines).contains(&gsi))
        .ok_or(GsiError::NoIoApic(gsi))?;
    if let Some(r) = ROUTED.lock().get_mut(gsi as usize) {
        *r = Some(Routed {
            vector,
            active_low,
            level,
        });
    }
    let rte = match irq_remap::ioapic_entry(io.id, gsi, vector, level, active_low) {
        Some(rte) => rte,
        None => {
            let mut low = vector as u64; // fixed delivery, physical destination
            if active_low {
                low |= 1 << 13;
            }
            if level {
                low |= 1 << 15;
            }
            low | (super::apic::lapic_id() as u64) << 56
        }
    };
    io.set_entry(gsi - io.gsi_base, rte as u32, (rte >> 32) as u32);
    Ok(())
}

/// Masks every routed line (before interrupt remapping comes on: on hardware a
/// compatibility-format message is blocked once it is on).
pub fn mask_routed_lines() {
    let ioapics = IOAPICS.lock();
    for (gsi, r) in ROUTED.lock().iter().enumerate() {
        let Some(io) = r.and_then(|_| {
            ioapics
                .iter()
                .find(|io| (io.gsi_base..io.gsi_base + io.lines).contains(&(gsi as u32)))
        }) else {
            continue;
        };
        let line = gsi as u32 - io.gsi_base;
        let low = io.read(0x10 + 2 * line);
        io.write(0x10 + 2 * line, low | LVT_MASKED);
    }
}

/// Rewrites (and unmasks) every routed line's entry, in remappable format once
/// a remapper is registered. Returns how many lines were rewritten.
pub fn remap_routed_lines() -> usize {
    let routed = *ROUTED.lock();
    let mut n = 0;
    for (gsi, r) in routed.iter().enumerate() {
        if let Some(r) = r {
            match program_gsi(gsi as u32, r.vector, r.active_low, r.level) {
                Ok(()) => n += 1,
                Err(e) => log::warn!("ioapic: {e}: not rewritten"),
            }
        }
    }
    n
}

/// The raw redirection entry of `gsi` (for the `irq` view), if an IO-APIC serves it.
pub fn entry(gsi: u32) -> Option<u64> {
    let ioapics = IOAPICS.lock();
    let io = ioapics
        .iter()
        .find(|io| (io.gsi_base..io.gsi_base + io.lines).contains(&gsi))?;
    let line = gsi - io.gsi_base;
    Some(io.read(0x10 + 2 * line) as u64 | (io.read(0x11 + 2 * line) as u64) << 32)
}

/// The GSIs routed so far, with their vectors.
pub fn routed_lines() -> alloc::vec::Vec<(u32, u8)> {
    ROUTED
        .lock()
        .iter()
        .enumerate()
        .filter_map(|(g, r)| r.map(|r| (g as u32, r.vector)))
        .collect()
}

/// Why a GSI could not be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsiError {
    /// The GSI is past the IO-APIC vector range (0x30..0x4F: GSIs 0..=31).
    BeyondVectors(u32),
    /// No IO-APIC in the MADT serves this GSI.
    NoIoApic(u32),
    /// The line is already routed exclusively (an ISA device's edge line).
    Exclusive(u32),
    /// The line is shared, but with another trigger mode or polarity.
    ModeMismatch(u32),
    /// Every slot on the shared line is taken.
    TooManySharers(u32),
}

impl GsiError {
    fn as_str(self) -> &'static str {
        match self {
            GsiError::BeyondVectors(_) => "GSI beyond the IO-APIC vector range",
            GsiError::NoIoApic(_) => "no IO-APIC serves this GSI",
            GsiError::Exclusive(_) => "the GSI is routed exclusively to another handler",
            GsiError::ModeMismatch(_) => "the GSI is shared with another trigger mode or polarity",
            GsiError::TooManySharers(_) => "every handler slot on the shared GSI is taken",
        }
    }
}

impl core::fmt::Display for GsiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let gsi = match *self {
            GsiError::BeyondVectors(g)
            | GsiError::NoIoApic(g)
            | GsiError::Exclusive(g)
            | GsiError::ModeMismatch(g)
            | GsiError::TooManySharers(g) => g,
        };
        write!(f, "GSI {gsi}: {}", self.as_str())
    }
}

/// Handlers one shared line can hold (a PCI INTx line on a laptop is shared by
/// the functions of one slot and whatever else the board wired to it).
pub const MAX_SHARERS: usize = 4;

/// A handler on a shared line: returns whether its device had raised the line
/// (Linux's `IRQ_HANDLED`), so a line nobody claims can be counted.
pub type SharedHandler = fn() -> bool;

#[derive(Clone, Copy)]
struct SharedLine {
    active_low: bool,
    level: bool,
    handlers: [Option<SharedHandler>; MAX_SHARERS],
    unclaimed: u64,
}

const GSI_LINES: usize = (DYN_FIRST - IOAPIC_VECTOR_BASE) as usize;
static SHARED: crate::sync::IrqSpinLock<[Option<SharedLine>; GSI_LINES]> =
    crate::sync::IrqSpinLock::new([None; GSI_LINES]);

/// Entry for every shared line's vector: calls each handler on the line. The
/// handlers acknowledge their devices, so by the EOI the dispatcher sends after
/// this returns a level-triggered line has dropped (or fires again, correctly,
/// for a device that raised it meanwhile).
fn shared_dispatch(f: &mut TrapFrame) {
    let idx = (f.vector as usize).wrapping_sub(IOAPIC_VECTOR_BASE as usize);
    // Copy the handler list out: a handler may route another line.
    let Some(line) = SHARED.lock().get(idx).copied().flatten() else {
        return;
    };
    let mut claimed = false;
    for h in line.handlers.iter().flatten() {
        claimed |= h();
    }
    if !claimed {
        if let Some(Some(l)) = SHARED.lock().get_mut(idx) {
            l.unclaimed += 1;
        }
    }
}

/// Adds `handler` to GSI `gsi` as a shared line (PCI INTx: level-triggered,
/// usually active-low; the polarity and trigger come from the ACPI `_PRT` or the
/// link device's `_CRS`). The first sharer programs the IO-APIC entry; later ones
/// must ask for the same mode. Returns the vector.
pub fn request_shared_gsi(
    gsi: u32,
    active_low: bool,
    level: bool,
    handler: SharedHandler,
) -> Result<u8, GsiError> {
    let vector = gsi_vector(gsi)?;
    let idx = (vector - IOAPIC_VECTOR_BASE) as usize;
    let mut lines = SHARED.lock();
    match &mut lines[idx] {
        Some(line) => {
            if line.active_low != active_low || line.level != level {
                return Err(GsiError::ModeMismatch(gsi));
            }
            if line.handlers.contains(&Some(handler)) {
                return Ok(vector);
            }
            let slot = line
                .handlers
                .iter_mut()
                .find(|h| h.is_none())
                .ok_or(GsiError::TooManySharers(gsi))?;
            *slot = Some(handler);
            Ok(vector)
        }
        empty @ None => {
            let served = IOAPICS
                .lock()
                .iter()
                .any(|io| (io.gsi_base..io.gsi_base + io.lines).contains(&gsi));
            if !served {
                return Err(GsiError::NoIoApic(gsi));
            }
            idt::register_handler(vector, shared_dispatch).map_err(|_| GsiError::Exclusive(gsi))?;
            let mut handlers = [None; MAX_SHARERS];
            handlers[0] = Some(handler);
            *empty = Some(SharedLine {
                active_low,
                level,
                handlers,
                unclaimed: 0,
            });
            drop(lines);
            program_gsi(gsi, vector, active_low, level)?;
            Ok(vector)
        }
    }
}

/// A shared line as the `irq` view shows it: (trigger is level, active low,
/// handlers installed, interrupts no handler claimed).
pub fn shared_gsi_info(gsi: u32) -> Option<(bool, bool, usize, u64)> {
    let vector = gsi_vector(gsi).ok()?;
    let line = SHARED.lock()[(vector - IOAPIC_VECTOR_BASE) as usize]?;
    Some((
        line.level,
        line.active_low,
        line.handlers.iter().flatten().count(),
        line.unclaimed,
    ))
}
