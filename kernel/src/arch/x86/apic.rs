//! Interrupt controllers: the legacy 8259 PICs (remapped, then masked), the
//! local APIC (EOI, the periodic tick) and the IO-APIC (device lines routed
//! with the MADT's overrides), plus vector allocation for MSI/MSI-X.
//!
//! Vector map: 0x20–0x2F legacy PIC (masked; only spurious ones can arrive),
//! 0x30–0x4F IO-APIC lines (GSI n → 0x30 + n), 0x50–0xDF allocated (MSI),
//! 0xEF LAPIC timer, 0xFE LAPIC error, 0xFF spurious.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use spin::{Mutex, Once};
use x86_64::registers::model_specific::Msr;

use crate::arch::idt::{self, IrqHandler, TrapFrame};
use crate::arch::port::{inb, outb};
use crate::mm::{self as kmm, IoMem};
use crate::sync::{HookTable, HookTableFull};

pub const IOAPIC_VECTOR_BASE: u8 = 0x30;
const DYN_FIRST: u8 = 0x50;
const DYN_LAST: u8 = 0xDF;
pub const TIMER_VECTOR: u8 = 0xEF;
const ERROR_VECTOR: u8 = 0xFE;
const SPURIOUS_VECTOR: u8 = 0xFF;
pub const TICK_HZ: u64 = 100;

// Local APIC registers (SDM Vol. 3A §11.4.1, Table 11-1).
const LAPIC_ID: usize = 0x20;
const LAPIC_VERSION: usize = 0x30;
const LAPIC_TPR: usize = 0x80;
const LAPIC_EOI: usize = 0xB0;
const LAPIC_SVR: usize = 0xF0;
const LAPIC_ESR: usize = 0x280;
const LAPIC_LVT_TIMER: usize = 0x320;
const LAPIC_LVT_LINT0: usize = 0x350;
const LAPIC_LVT_LINT1: usize = 0x360;
const LAPIC_LVT_ERROR: usize = 0x370;
const LAPIC_TIMER_INIT: usize = 0x380;
const LAPIC_TIMER_CURRENT: usize = 0x390;
const LAPIC_TIMER_DIVIDE: usize = 0x3E0;
const LVT_MASKED: u32 = 1 << 16;
const TIMER_PERIODIC: u32 = 1 << 17;

struct Lapic {
    regs: IoMem,
    id: u8,
}

struct IoApic {
    regs: IoMem,
    gsi_base: u32,
    lines: u32,
}

static LAPIC: Once<Lapic> = Once::new();
static IOAPICS: Mutex<alloc::vec::Vec<IoApic>> = Mutex::new(alloc::vec::Vec::new());
static READY: AtomicBool = AtomicBool::new(false);
static TICKS: AtomicU64 = AtomicU64::new(0);
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// The MADT's interrupt source overrides, kept for `route_isa_irq`.
static OVERRIDES: Once<&'static [IrqOverride]> = Once::new();
static NEXT_DYN: AtomicU8 = AtomicU8::new(DYN_FIRST);

/// Signals end of interrupt to the local APIC; a no-op before it is set up.
pub fn eoi() {
    if let Some(l) = LAPIC.get() {
        l.regs.write32(LAPIC_EOI, 0);
    }
}

pub fn ready() -> bool {
    READY.load(Ordering::Acquire)
}

pub fn lapic_id() -> u8 {
    LAPIC.get().map_or(0, |l| l.id)
}

/// Ticks of the periodic LAPIC timer since it started (TICK_HZ per second).
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// The periodic timer's reload value (its period in LAPIC counts).
pub fn timer_initial_count() -> Option<u32> {
    LAPIC.get().map(|l| l.regs.read32(LAPIC_TIMER_INIT))
}

/// LAPIC timer input frequency (after the divide-by-16), as measured.
pub fn timer_hz() -> u64 {
    TIMER_HZ.load(Ordering::Relaxed)
}

/// Reprograms both 8259s so their vectors (0x20–0x2F) cannot be mistaken for
/// CPU exceptions, then masks every line: the APICs take over.
fn disable_8259() {
    const PIC1: u16 = 0x20;
    const PIC2: u16 = 0xA0;
    outb(PIC1, 0x11); // ICW1: init, expect ICW4
    outb(PIC2, 0x11);
    outb(PIC1 + 1, 0x20); // ICW2: vector base
    outb(PIC2 + 1, 0x28);
    outb(PIC1 + 1, 0x04); // ICW3: slave on IRQ2
    outb(PIC2 + 1, 0x02);
    outb(PIC1 + 1, 0x01); // ICW4: 8086 mode
    outb(PIC2 + 1, 0x01);
    outb(PIC1 + 1, 0xFF);
    outb(PIC2 + 1, 0xFF);
    let _ = inb(PIC1 + 1);
}

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

fn timer_handler(_f: &mut TrapFrame) {
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    TICK_HOOKS.for_each(|hook| hook(now));
}

/// What the timer interrupt calls on every tick, with the tick count (the
/// IOMMU's flush-queue timer, the simulated iDMA64's clock). Registered by the
/// layers above; the timer names none of them.
static TICK_HOOKS: HookTable<fn(u64), 4> = HookTable::new();

/// Adds `f` to the functions the timer interrupt calls every tick. It runs with
/// interrupts off, so it must not spin on a lock that code with interrupts on may
/// hold (use `try_lock`), nor allocate.
pub fn register_tick_hook(f: fn(u64)) -> Result<(), HookTableFull> {
    TICK_HOOKS.register(f)
}

const LAPIC_ICR_LOW: usize = 0x300;

/// Sends `vector` to this CPU as a fixed interrupt (ICR destination shorthand
/// "self", SDM Vol. 3A §11.6.1). It is delivered once interrupts are enabled again.
pub fn send_self_ipi(vector: u8) {
    if let Some(l) = LAPIC.get() {
        l.regs.write32(LAPIC_ICR_LOW, (0b01 << 18) | vector as u32);
    }
}

fn error_handler(_f: &mut TrapFrame) {
    if let Some(l) = LAPIC.get() {
        l.regs.write32(LAPIC_ESR, 0);
        let esr = l.regs.read32(LAPIC_ESR);
        log::warn!("apic: local APIC error, ESR {esr:#x}");
    }
}

fn spurious_handler(_f: &mut TrapFrame) {}

/// The HPET main counter and the LAPIC timer's current count at one moment:
/// the LAPIC read sits between two HPET reads, and the pair whose HPET reads
/// are closest is kept (a spread of 10 µs ends the search), so a vCPU
/// descheduled by a busy host (or an SMI on real hardware) between the two
/// reads cannot skew a measurement. Call with interrupts off.
fn paired_count(l: &Lapic, h: &crate::arch::hpet::Hpet) -> (u64, u32) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..1000 {
        let a = h.counter();
        let count = l.regs.read32(LAPIC_TIMER_CURRENT);
        let spread = h.counter().wrapping_sub(a);
        if spread < best.2 {
            best = (a + spread / 2, count, spread);
        }
        if h.ticks_to_ns(spread) <= 10_000 {
            break;
        }
    }
    (best.0, best.1)
}

/// [`paired_count`] on the running timer: (HPET counter, LAPIC current
/// count), for checking the programmed period against the HPET.
pub fn timer_sample() -> Option<(u64, u32)> {
    let (l, h) = (LAPIC.get()?, crate::arch::hpet::get()?);
    Some(x86_64::instructions::interrupts::without_interrupts(|| {
        paired_count(l, h)
    }))
}

/// Measures the LAPIC timer against the HPET main counter (or the TSC when
/// there is no HPET) over ~20 ms.
fn calibrate_timer(l: &Lapic) -> u64 {
    l.regs.write32(LAPIC_TIMER_DIVIDE, 0b0011); // divide by 16
    l.regs
        .write32(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    let start_count = u32::MAX;
    if let Some(h) = crate::arch::hpet::get() {
        let window = 20_000_000_000_000 / h.period_fs().max(1); // 20 ms
        l.regs.write32(LAPIC_TIMER_INIT, start_count);
        // Both ends are read as pairs: an unpaired read once made the tick
        // 14% short on a busy host (the test caught it).
        let (c0, l0) = paired_count(l, h);
        while h.counter().wrapping_sub(c0) < window {
            core::hint::spin_loop();
        }
        let (c1, l1) = paired_count(l, h);
        let counted = l0.wrapping_sub(l1) as u64;
        let elapsed_ns = h.ticks_to_ns(c1.wrapping_sub(c0)).max(1);
        l.regs.write32(LAPIC_TIMER_INIT, 0);
        log::info!(
            "apic: LAPIC timer calibrated against the HPET ({} fs/tick)",
            h.period_fs()
        );
        return counted * 1_000_000_000 / elapsed_ns;
    }
    let t0 = crate::arch::tsc::rdtsc();
    l.regs.write32(LAPIC_TIMER_INIT, start_count);
    crate::arch::tsc::delay_us(20_000);
    let counted = (start_count - l.regs.read32(LAPIC_TIMER_CURRENT)) as u64;
    let ns = crate::arch::tsc::ticks_to_ns(crate::arch::tsc::rdtsc() - t0).max(1);
    l.regs.write32(LAPIC_TIMER_INIT, 0);
    log::info!("apic: LAPIC timer calibrated against the TSC (no HPET)");
    counted * 1_000_000_000 / ns
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

/// What the firmware's MADT says about the interrupt controllers; the ACPI
/// layer reads it and boot code hands it down here.
pub struct Topology {
    pub local_apic: u64,
    pub io_apics: &'static [IoApicInfo],
    pub overrides: &'static [IrqOverride],
}

pub fn init(p: Topology) -> Result<(), &'static str> {
    OVERRIDES.call_once(|| p.overrides);
    if p.local_apic == 0 {
        return Err("MADT gives no local APIC");
    }
    disable_8259();
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the global
    // enable bit (11) keeps the base the firmware chose.
    unsafe {
        let mut msr = Msr::new(0x1B);
        let v = msr.read();
        msr.write(v | (1 << 11));
    }
    let regs = kmm::ioremap(p.local_apic, 0x1000).map_err(|_| "cannot map the local APIC")?;
    let id = (regs.read32(LAPIC_ID) >> 24) as u8;
    let lapic = LAPIC.call_once(|| Lapic { regs, id });
    let r = &lapic.regs;
    r.write32(LAPIC_TPR, 0);
    r.write32(LAPIC_LVT_LINT0, LVT_MASKED);
    r.write32(LAPIC_LVT_LINT1, LVT_MASKED);
    r.write32(LAPIC_LVT_ERROR, ERROR_VECTOR as u32);
    // Software-enable the APIC with our spurious vector (SVR bit 8).
    r.write32(LAPIC_SVR, (1 << 8) | SPURIOUS_VECTOR as u32);
    let _ = idt::register_handler(SPURIOUS_VECTOR, spurious_handler);
    let _ = idt::register_handler(ERROR_VECTOR, error_handler);
    let _ = idt::register_handler(TIMER_VECTOR, timer_handler);

    let mut ioapics = alloc::vec::Vec::new();
    for info in p.io_apics {
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

    let hz = calibrate_timer(lapic);
    TIMER_HZ.store(hz, Ordering::Relaxed);
    let initial = (hz / TICK_HZ).max(1) as u32;
    r.write32(LAPIC_TIMER_DIVIDE, 0b0011);
    r.write32(LAPIC_LVT_TIMER, TIMER_PERIODIC | TIMER_VECTOR as u32);
    r.write32(LAPIC_TIMER_INIT, initial);
    log::info!(
        "apic: local APIC id {id} version {:#x}; timer {} kHz, tick {TICK_HZ} Hz",
        r.read32(LAPIC_VERSION) & 0xFF,
        hz / 1000
    );
    READY.store(true, Ordering::Release);
    x86_64::instructions::interrupts::enable();
    Ok(())
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

/// Writes the IO-APIC redirection entry of `gsi`: fixed delivery to this CPU.
fn program_gsi(gsi: u32, vector: u8, active_low: bool, level: bool) -> Result<(), GsiError> {
    let ioapics = IOAPICS.lock();
    let io = ioapics
        .iter()
        .find(|io| (io.gsi_base..io.gsi_base + io.lines).contains(&gsi))
        .ok_or(GsiError::NoIoApic(gsi))?;
    let mut low = vector as u32; // fixed delivery, physical destination
    if active_low {
        low |= 1 << 13;
    }
    if level {
        low |= 1 << 15;
    }
    io.set_entry(gsi - io.gsi_base, low, (lapic_id() as u32) << 24);
    Ok(())
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

/// Allocates a vector for an MSI/MSI-X source and installs `handler`.
pub fn alloc_vector(handler: IrqHandler) -> Result<u8, &'static str> {
    loop {
        let v = NEXT_DYN.load(Ordering::Relaxed);
        if v > DYN_LAST {
            return Err("out of interrupt vectors");
        }
        if NEXT_DYN
            .compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            idt::register_handler(v, handler).map_err(|_| "vector already taken")?;
            return Ok(v);
        }
    }
}

/// The MSI address/data pair that delivers `vector` to this CPU: address
/// 0xFEE0_0000 | destination APIC ID << 12, data = vector, fixed, edge
/// (SDM Vol. 3A §11.11).
pub fn msi_message(vector: u8) -> (u64, u32) {
    (0xFEE0_0000 | ((lapic_id() as u64) << 12), vector as u32)
}

/// Waits `ms` milliseconds sleeping in `hlt` between ticks.
pub fn sleep_ms(ms: u64) {
    if !ready() {
        crate::arch::tsc::delay_us(ms * 1000);
        return;
    }
    let until = ticks() + ms.div_ceil(1000 / TICK_HZ);
    while ticks() < until {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

/// What drivers named their allocated vectors (the `irq` view), by vector.
static VECTOR_NAMES: Mutex<[Option<&'static str>; 256]> = Mutex::new([None; 256]);

/// Names an allocated vector for the `irq` view (`"MSI ahci 0000:00:1f.2"`).
pub fn set_vector_name(v: u8, name: &'static str) {
    VECTOR_NAMES.lock()[v as usize] = Some(name);
}

/// Names for the `irq` view.
pub fn vector_name(v: u8) -> &'static str {
    if let Some(n) = VECTOR_NAMES.lock()[v as usize] {
        return n;
    }
    match v {
        TIMER_VECTOR => "LAPIC timer",
        ERROR_VECTOR => "LAPIC error",
        SPURIOUS_VECTOR => "spurious",
        0x20..=0x2F => "8259 (masked)",
        0x30..=0x4F => "IO-APIC",
        DYN_FIRST..=DYN_LAST => "MSI",
        _ => "",
    }
}
