//! A simulated Intel LPSS function with an iDMA64 (`idma64=sim`, profile
//! `idma64-sim`; `idma64=sim-uart`, a UART function; `idma64=sim-intx`, the I2C
//! function without MSI, interrupting on its `_PRT`-routed INTx line). QEMU has no iDMA64 model, so this
//! one is ours: the function's configuration space and wiring are `lpss::sim`'s (a
//! `pci::fake` function in D3hot, laid over the real mechanism at its slot), and BAR0's
//! registers are served by the LPSS function model from `crates/devmodels` that the
//! driver's host tests run against. What stays here is kernel glue: the model behind a
//! lock, its clock and its interrupt.
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

use devmodels::lpss::LpssModel;
use hal::{DirectMap, PhysAddr, RegisterAccess};
use lpss::sim::SimKind;
use lpss::sim::SIM_BAR;
use pci::fake::FakeConfig;
use pci::Bdf;
use spin::{Mutex, Once};

use crate::pci::SimFunction;

/// Bytes each enabled channel moves per model step.
pub const STEP_BYTES: usize = 16 * 1024;
/// Model steps per timer tick.
pub const STEPS_PER_TICK: usize = 4;

struct Sim {
    model: Mutex<LpssModel<DirectMap>>,
    bdf: Bdf,
}

static SIM: Once<Sim> = Once::new();
static VECTOR: AtomicU8 = AtomicU8::new(0);
static MSI_ON: AtomicBool = AtomicBool::new(false);
/// The INTx-only function (`idma64=sim-intx`): the vector its pin's IO-APIC input
/// is delivered on (set by the driver once it took the line), and whether the
/// function may assert the pin (Interrupt Disable clear, MSI off).
static INTX_VECTOR: AtomicU8 = AtomicU8::new(0);
static INTX_ALLOWED: AtomicBool = AtomicBool::new(false);

/// Tells the model which vector its INTx line arrives on: the simulated function
/// has no wire to the IO-APIC, so asserting the pin is delivering that vector
/// (a self-IPI) while an interrupt is pending, once per model tick, as a level
/// line keeps interrupting until the device is acknowledged.
pub fn set_intx_vector(vector: u8) {
    INTX_VECTOR.store(vector, Ordering::Release);
}

/// Whether `bdf` is the simulated function (lock-free: probes call it).
pub fn is_sim(bdf: Bdf) -> bool {
    SIM.get().is_some_and(|s| s.bdf == bdf)
}

/// The simulated function for the PCI layer, when the command line asks for it.
pub fn pci_function() -> Option<SimFunction> {
    let kind = SimKind::from_cmdline(crate::cmdline::boot_cmdline().get("idma64"))?;
    let bdf = kind.bdf();
    let limit = crate::dma::max_ram() + 1;
    let model = LpssModel::new(
        crate::mm::direct::direct(),
        PhysAddr::new(0),
        limit as usize,
        SIM_BAR,
        kind.function(),
    );
    model.idma().set_step_bytes(STEP_BYTES);
    SIM.call_once(|| Sim {
        model: Mutex::new(model),
        bdf,
    });
    if let Err(e) = crate::arch::apic::register_tick_hook(tick) {
        log::warn!("idma64-sim: no clock ({e}); the model will not run");
    }
    Some(SimFunction {
        bdf,
        cfg: lpss::sim::config(kind),
        on_write: config_written,
    })
}

/// A configuration write: the model learns PMCSR's power state, and the vector the
/// device will send is whatever MSI data the driver programmed, once Enable is set.
fn config_written(cfg: &FakeConfig, bdf: Bdf) {
    let Some(sim) = SIM.get() else {
        return;
    };
    let target = lpss::sim::sync_config(cfg, bdf, &sim.model.lock());
    if let Some(t) = target {
        VECTOR.store(t.vector, Ordering::Release);
        MSI_ON.store(t.enabled, Ordering::Release);
    }
    let msi = MSI_ON.load(Ordering::Acquire);
    INTX_ALLOWED.store(lpss::sim::intx_allowed(cfg, bdf, msi), Ordering::Release);
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
    } else if pending && INTX_ALLOWED.load(Ordering::Acquire) {
        let v = INTX_VECTOR.load(Ordering::Acquire);
        if v != 0 {
            crate::arch::apic::send_self_ipi(v);
        }
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

/// BAR0 of the simulated function as a register window: the model's own register
/// interface (its sub-word accesses included), under the lock. Reads float high when
/// there is no model.
#[derive(Clone, Copy)]
pub struct SimBar;

impl SimBar {
    fn with<T>(&self, none: T, f: impl FnOnce(&LpssModel<DirectMap>) -> T) -> T {
        match SIM.get() {
            Some(sim) => f(&sim.model.lock()),
            None => none,
        }
    }
}

impl RegisterAccess for SimBar {
    fn read8(&self, o: usize) -> u8 {
        self.with(!0, |m| m.read8(o))
    }
    fn read16(&self, o: usize) -> u16 {
        self.with(!0, |m| m.read16(o))
    }
    fn read32(&self, o: usize) -> u32 {
        self.with(!0, |m| m.read32(o))
    }
    fn write8(&self, o: usize, v: u8) {
        self.with((), |m| m.write8(o, v))
    }
    fn write16(&self, o: usize, v: u16) {
        self.with((), |m| m.write16(o, v))
    }
    fn write32(&self, o: usize, v: u32) {
        self.with((), |m| m.write32(o, v))
    }
}
