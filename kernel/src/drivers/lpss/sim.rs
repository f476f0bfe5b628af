//! A simulated Intel LPSS function with an iDMA64 (`idma64=sim`, profile
//! `idma64-sim`). QEMU has no iDMA64 model, so this one is ours: configuration space is
//! a `pci::fake` function laid over the real mechanism at [`SIM_BDF`], and BAR0's
//! registers are served by software: the LPSS private block (resets, remap address,
//! CAPS saying "I2C, iDMA present") and, at BAR0 + 0x800, the behavioural model from
//! `crates/devmodels` — the same model the driver's host tests run against.
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

use devmodels::idma64::Idma64Model;
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
/// Model steps per timer tick.
pub const STEPS_PER_TICK: usize = 4;

const PRIV: usize = 0x200;
const IDMA: usize = 0x800;
const MSI_CAP: u8 = 0x40;

struct Sim {
    model: Mutex<Idma64Model<DirectMap>>,
    private: Mutex<[u32; 64]>,
}

static SIM: Once<Sim> = Once::new();
static VECTOR: AtomicU8 = AtomicU8::new(0);
static MSI_ON: AtomicBool = AtomicBool::new(false);

/// Whether `idma64=sim` is on (after [`pci_function`]).
pub fn active() -> bool {
    SIM.get().is_some()
}

/// Whether `bdf` is the simulated function (lock-free: probes call it).
pub fn is_sim(bdf: Bdf) -> bool {
    active() && bdf == SIM_BDF
}

/// The simulated function for the PCI layer, when the command line asks for it.
pub fn pci_function() -> Option<SimFunction> {
    if crate::cmdline::boot_cmdline().get("idma64") != Some("sim") {
        return None;
    }
    let limit = crate::dma::max_ram() + 1;
    let model = Idma64Model::new(
        crate::mm::direct::direct(),
        PhysAddr::new(0),
        limit as usize,
    );
    model.set_step_bytes(STEP_BYTES);
    let mut private = [0u32; 64];
    // CAPS: type 0 (I2C) in bits 7:4, bit 8 clear: an iDMA64 is present.
    private[pci::lpss::private::CAPS as usize / 4] = 0x0;
    SIM.call_once(|| Sim {
        model: Mutex::new(model),
        private: Mutex::new(private),
    });
    if let Err(e) = crate::arch::apic::register_tick_hook(tick) {
        log::warn!("idma64-sim: no clock ({e}); the model will not run");
    }
    let f = FakeFunction::endpoint(0x8086, SIM_DEVICE, 0x0c_8000, 0x21)
        .subsystem(0x8086, 0x7270)
        .interrupt(0xFF, 1)
        .bar64(0, 0x1000, false, SIM_BAR)
        .cap_ptr(MSI_CAP)
        .msi(MSI_CAP, 0, true, false, 0);
    let cfg = FakeConfig::new();
    cfg.add(SIM_BDF, f);
    Some(SimFunction {
        bdf: SIM_BDF,
        cfg,
        on_write: config_written,
    })
}

/// Watches the MSI capability: the vector the device will send is whatever data the
/// driver programmed, once Enable is set.
fn config_written(cfg: &FakeConfig, bdf: Bdf) {
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
    let pending = model.read32(idma64::regs::STATUS_INT) != 0;
    drop(model);
    if pending && MSI_ON.load(Ordering::Acquire) {
        crate::arch::apic::send_self_ipi(VECTOR.load(Ordering::Acquire));
    }
}

/// Flips the next byte the simulated engine copies (the dmatest failure demo).
pub fn corrupt_next_byte() -> bool {
    SIM.get()
        .map(|s| s.model.lock().corrupt_next_byte())
        .is_some()
}

/// Errors the model raised so far (bad addresses, misalignment), for the `dma` view.
pub fn model_errors() -> usize {
    SIM.get().map_or(0, |s| s.model.lock().errors().len())
}

/// BAR0 of the simulated function as a register window.
#[derive(Clone, Copy)]
pub struct SimBar;

impl SimBar {
    fn read(&self, off: usize) -> u32 {
        let Some(sim) = SIM.get() else {
            return !0;
        };
        match off {
            o if (PRIV..PRIV + 0x100).contains(&o) => sim.private.lock()[(o - PRIV) / 4],
            o if (IDMA..IDMA + 0x800).contains(&o) => sim.model.lock().read32(o - IDMA),
            // The host controller block is not simulated: reads float high.
            _ => !0,
        }
    }
    fn write(&self, off: usize, v: u32) {
        let Some(sim) = SIM.get() else {
            return;
        };
        match off {
            o if (PRIV..PRIV + 0x100).contains(&o) => {
                let i = (o - PRIV) / 4;
                // CAPS is read-only.
                if i != pci::lpss::private::CAPS as usize / 4 {
                    sim.private.lock()[i] = v;
                }
            }
            o if (IDMA..IDMA + 0x800).contains(&o) => sim.model.lock().write32(o - IDMA, v),
            _ => {}
        }
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
