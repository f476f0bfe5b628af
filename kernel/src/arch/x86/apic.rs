//! Interrupt controllers: the legacy 8259 PICs (remapped, then masked), the
//! local APIC (EOI, the periodic tick), plus vector allocation for MSI/MSI-X.
//! The IO-APIC lines are in `ioapic`, the MSI messages in `irq_remap`; both
//! are re-exported here, where callers always found them.
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

pub use super::ioapic::{
    request_shared_gsi, route_isa_irq, shared_gsi_info, GsiError, IoApicInfo, IrqOverride,
    SharedHandler,
};
pub use super::irq_remap::{msi_for, msi_message};

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

static LAPIC: Once<Lapic> = Once::new();
static READY: AtomicBool = AtomicBool::new(false);
static TICKS: AtomicU64 = AtomicU64::new(0);
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
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

/// What the firmware's MADT says about the interrupt controllers; the ACPI
/// layer reads it and boot code hands it down here.
pub struct Topology {
    pub local_apic: u64,
    pub io_apics: &'static [IoApicInfo],
    pub overrides: &'static [IrqOverride],
}

pub fn init(p: Topology) -> Result<(), &'static str> {
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

    super::ioapic::init(p.io_apics, p.overrides);

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
