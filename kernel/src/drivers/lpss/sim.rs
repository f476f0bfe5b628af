//! A simulated Intel LPSS function with an iDMA64 (`idma64=sim`, profile
//! `idma64-sim`). QEMU has no iDMA64 model, so this one is ours: configuration space is
//! a `pci::fake` function laid over the real mechanism at [`SIM_BDF`], and BAR0's
//! registers are served by software: the LPSS private block (resets, remap address,
//! CAPS saying "I2C, iDMA present") and, at BAR0 + 0x800, the iDMA64 — the LPSS
//! function model from `crates/devmodels` that the driver's host tests run against.
//!
//! Like many laptops' firmware, the function is left in **D3hot** (a PCI PM capability
//! whose PMCSR says 3): BAR0 reads all-ones until the bus brings it to D0, and the
//! D3hot→D0 transition resets it (No_Soft_Reset clear, so the bus restores BAR0).
//!
//! The real `idma64` driver runs unchanged on top. The model moves data in physical
//! memory when the timer interrupt clocks it ([`tick`]: up to [`STEP_BYTES`] per
//! channel per step, [`STEPS_PER_TICK`] steps per 10 ms tick), and raises its interrupt
//! the way the function's MSI would: it reads the MSI data the driver programmed into
//! the (simulated) capability and sends that vector to this CPU as a self-IPI.
//!
//! Not simulated: the device is not behind QEMU's IOMMU, so its DMA device uses
//! direct mapping (bus address = physical address) whatever `iommu=` says.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use devmodels::lpss::{Function, LpssModel};
use hal::{DirectMap, PhysAddr, RegisterAccess};
use pci::fake::{FakeConfig, FakeFunction};
use pci::Bdf;
use spin::{Mutex, Once};

use crate::pci::SimFunction;

/// Where the simulated function appears: 00:15.0, the Sunrise Point-LP I2C #0 slot.
pub const SIM_BDF: Bdf = Bdf::b(0, 0x15, 0);
/// Intel Sunrise Point-LP (Skylake) Serial IO I2C Controller #0.
pub const SIM_DEVICE: u16 = 0x9D60;
/// Address shown in BAR0. The CPU never touches it: the driver reaches the registers
/// through [`SimBar`].
pub const SIM_BAR: u64 = 0xFE40_0000;
/// Bytes each enabled channel moves per model step.
pub const STEP_BYTES: usize = 16 * 1024;
/// With `idma64=sim-uart`: 00:1e.0, the Sunrise Point-LP UART #0 slot.
pub const SIM_UART_BDF: Bdf = Bdf::b(0, 0x1e, 0);
/// Intel Sunrise Point-LP (Skylake) Serial IO UART Controller #0.
pub const SIM_UART_DEVICE: u16 = 0x9D27;
/// Model steps per timer tick.
pub const STEPS_PER_TICK: usize = 4;

const MSI_CAP: u8 = 0x40;
const PM_CAP: u8 = 0x50;

struct Sim {
    model: Mutex<LpssModel<DirectMap>>,
    bdf: Bdf,
}

static SIM: Once<Sim> = Once::new();
static VECTOR: AtomicU8 = AtomicU8::new(0);
static MSI_ON: AtomicBool = AtomicBool::new(false);

/// Whether `bdf` is the simulated function (lock-free: probes call it).
pub fn is_sim(bdf: Bdf) -> bool {
    SIM.get().is_some_and(|s| s.bdf == bdf)
}

/// The simulated function for the PCI layer, when the command line asks for it.
pub fn pci_function() -> Option<SimFunction> {
    // `sim`: an I2C function (no host block modelled); `sim-uart`: a UART function
    // whose 16550 block has loopback and DMA request lines (slave transfers wait for
    // them).
    let (bdf, device, class, function) = match crate::cmdline::boot_cmdline().get("idma64") {
        Some("sim") => (SIM_BDF, SIM_DEVICE, 0x0c_8000, Function::I2c),
        Some("sim-uart") => (SIM_UART_BDF, SIM_UART_DEVICE, 0x11_8000, Function::Uart),
        _ => return None,
    };
    let limit = crate::dma::max_ram() + 1;
    // CAPS: the function type in bits 7:4, bit 8 clear: an iDMA64 is present.
    let model = LpssModel::new(
        crate::mm::direct::direct(),
        PhysAddr::new(0),
        limit as usize,
        SIM_BAR,
        function,
    );
    model.idma().set_step_bytes(STEP_BYTES);
    SIM.call_once(|| Sim {
        model: Mutex::new(model),
        bdf,
    });
    if let Err(e) = crate::arch::apic::register_tick_hook(tick) {
        log::warn!("idma64-sim: no clock ({e}); the model will not run");
    }
    let f = FakeFunction::endpoint(0x8086, device, class, 0x21)
        .subsystem(0x8086, 0x7270)
        .interrupt(0xFF, 1)
        .bar64(0, 0x1000, false, SIM_BAR)
        .cap_ptr(MSI_CAP)
        .msi(MSI_CAP, PM_CAP, true, false, 0)
        .pm(PM_CAP, 0, false, 3);
    let cfg = FakeConfig::new();
    cfg.add(bdf, f);
    Some(SimFunction {
        bdf,
        cfg,
        on_write: config_written,
    })
}

/// Watches the MSI capability: the vector the device will send is whatever data the
/// driver programmed, once Enable is set.
fn config_written(cfg: &FakeConfig, bdf: Bdf) {
    // BAR0 decodes only in D0 (PMCSR.PowerState).
    if let Some(sim) = SIM.get() {
        let state = pci::pm::power_state(cfg, bdf, PM_CAP);
        let m = sim.model.lock();
        if m.power_state() != state as u8 {
            m.set_power_state(state as u8);
        }
    }
    let Ok(msi) = pci::Msi::read(cfg, bdf, u16::from(MSI_CAP)) else {
        return;
    };
    let on = msi.is_enabled(cfg);
    let data = pci::ConfigAccess::read32(cfg, bdf, msi.data_offset()) & 0xFF;
    VECTOR.store(data as u8, Ordering::Release);
    MSI_ON.store(on && data >= 0x20, Ordering::Release);
}

/// The model's clock, from the timer interrupt. Skips the tick if the driver holds the
/// model right now (it cannot, in fact: the driver runs with interrupts off).
fn tick(_now: u64) {
    let Some(sim) = SIM.get() else {
        return;
    };
    let Some(model) = sim.model.try_lock() else {
        return;
    };
    for _ in 0..STEPS_PER_TICK {
        if !model.step() {
            break;
        }
    }
    let pending = model.idma().read32(idma64::regs::STATUS_INT) != 0;
    drop(model);
    if pending && MSI_ON.load(Ordering::Acquire) {
        crate::arch::apic::send_self_ipi(VECTOR.load(Ordering::Acquire));
    }
}

/// Flips the next byte the simulated engine copies (the dmatest failure demo).
pub fn corrupt_next_byte() -> bool {
    SIM.get()
        .map(|s| s.model.lock().idma().corrupt_next_byte())
        .is_some()
}

/// Errors the model raised so far (bad addresses, misalignment), for the `dma` view.
pub fn model_errors() -> usize {
    SIM.get()
        .map_or(0, |s| s.model.lock().idma().errors().len())
}

/// BAR0 of the simulated function as a register window.
#[derive(Clone, Copy)]
pub struct SimBar;

impl SimBar {
    fn read(&self, off: usize) -> u32 {
        let Some(sim) = SIM.get() else {
            return !0;
        };
        // Out of D0, and in the host controller block (not simulated for I2C), reads
        // float high.
        sim.model.lock().read32(off)
    }
    fn write(&self, off: usize, v: u32) {
        let Some(sim) = SIM.get() else {
            return;
        };
        sim.model.lock().write32(off, v);
    }
}

impl RegisterAccess for SimBar {
    fn read8(&self, o: usize) -> u8 {
        (self.read(o & !3) >> ((o & 3) * 8)) as u8
    }
    fn read16(&self, o: usize) -> u16 {
        (self.read(o & !3) >> ((o & 2) * 8)) as u16
    }
    fn read32(&self, o: usize) -> u32 {
        self.read(o & !3)
    }
    fn write8(&self, o: usize, v: u8) {
        let sh = (o & 3) * 8;
        let old = self.read(o & !3) & !(0xFF << sh);
        self.write(o & !3, old | (v as u32) << sh);
    }
    fn write16(&self, o: usize, v: u16) {
        let sh = (o & 2) * 8;
        let old = self.read(o & !3) & !(0xFFFF << sh);
        self.write(o & !3, old | (v as u32) << sh);
    }
    fn write32(&self, o: usize, v: u32) {
        self.write(o & !3, v);
    }
}
