//! The simulated LPSS function (`idma64=sim`, `idma64=sim-uart`, `idma64=sim-intx`): QEMU has no iDMA64,
//! so the kernel lays a `pci::fake` function over the real configuration mechanism and
//! serves BAR0 from the `devmodels::lpss` model. This module is that function's
//! description and wiring, host-tested: its configuration space ([`config_space`]) and
//! what a configuration write means for the model ([`sync_config`]: PMCSR's power state,
//! the MSI message the driver programmed). The kernel keeps the clock (timer tick), the
//! self-IPI and the lock around the model.
//!
//! Like many laptops' firmware, the function is left in **D3hot** (a PCI PM capability
//! whose PMCSR says 3): BAR0 reads all-ones until the bus brings it to D0, and the
//! D3hot→D0 transition resets it (No_Soft_Reset clear, so the bus restores BAR0).

use devmodels::lpss::{Function, LpssModel};
use hal::PhysMemory;
use pci::fake::{FakeConfig, FakeFunction};
use pci::Bdf;

/// `idma64=sim`: 00:15.0, the Sunrise Point-LP I2C #0 slot.
pub const SIM_BDF: Bdf = Bdf::b(0, 0x15, 0);
/// Intel Sunrise Point-LP (Skylake) Serial IO I2C Controller #0.
pub const SIM_DEVICE: u16 = 0x9D60;
/// `idma64=sim-uart`: 00:1e.0, the Sunrise Point-LP UART #0 slot.
pub const SIM_UART_BDF: Bdf = Bdf::b(0, 0x1e, 0);
/// Intel Sunrise Point-LP (Skylake) Serial IO UART Controller #0.
pub const SIM_UART_DEVICE: u16 = 0x9D27;
/// Address shown in BAR0. The CPU never touches it: the kernel serves the registers
/// from the model.
pub const SIM_BAR: u64 = 0xFE40_0000;
/// Offset of the MSI capability.
pub const MSI_CAP: u8 = 0x40;
/// Offset of the PCI power management capability.
pub const PM_CAP: u8 = 0x50;

/// Which function to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKind {
    /// An I2C function (no host block modelled).
    I2c,
    /// A UART function whose 16550 block has loopback and DMA request lines.
    Uart,
    /// The I2C function as many laptops wire it: no MSI capability, only its INTx
    /// pin (INTA), routed by the ACPI `_PRT` and shared.
    I2cIntx,
}

impl SimKind {
    /// From the `idma64=` command-line value (`sim`, `sim-uart`).
    pub fn from_cmdline(v: Option<&str>) -> Option<SimKind> {
        match v {
            Some("sim") => Some(SimKind::I2c),
            Some("sim-uart") => Some(SimKind::Uart),
            Some("sim-intx") => Some(SimKind::I2cIntx),
            _ => None,
        }
    }
    /// Where the function appears.
    pub fn bdf(self) -> Bdf {
        match self {
            SimKind::I2c | SimKind::I2cIntx => SIM_BDF,
            SimKind::Uart => SIM_UART_BDF,
        }
    }
    /// The model's function type (CAPS bits 7:4).
    pub fn function(self) -> Function {
        match self {
            SimKind::I2c | SimKind::I2cIntx => Function::I2c,
            SimKind::Uart => Function::Uart,
        }
    }
}

/// The function's configuration space: Intel IDs and class, a 4 KiB 64-bit BAR0 at
/// [`SIM_BAR`], an MSI capability (64-bit, one vector; not for `I2cIntx`), INTA, and a
/// PM capability in D3hot.
pub fn config_space(kind: SimKind) -> FakeFunction {
    let (device, class) = match kind {
        SimKind::I2c | SimKind::I2cIntx => (SIM_DEVICE, 0x0c_8000),
        SimKind::Uart => (SIM_UART_DEVICE, 0x11_8000),
    };
    let f = FakeFunction::endpoint(0x8086, device, class, 0x21)
        .subsystem(0x8086, 0x7270)
        .interrupt(0xFF, 1)
        .bar64(0, 0x1000, false, SIM_BAR);
    match kind {
        SimKind::I2cIntx => f.cap_ptr(PM_CAP).pm(PM_CAP, 0, false, 3),
        _ => f
            .cap_ptr(MSI_CAP)
            .msi(MSI_CAP, PM_CAP, true, false, 0)
            .pm(PM_CAP, 0, false, 3),
    }
}

/// Whether the function may assert its INTx pin: Interrupt Disable (command bit
/// 10) clear and MSI not enabled (PCI 3.0 §6.8.1.3: with MSI on, the pin is off).
pub fn intx_allowed(cfg: &FakeConfig, bdf: Bdf, msi_enabled: bool) -> bool {
    use pci::ConfigAccess;
    let cmd = cfg.read32(bdf, 0x04) & 0xFFFF;
    cmd & (1 << 10) == 0 && !msi_enabled
}

/// The fake configuration space holding the function at its slot.
pub fn config(kind: SimKind) -> FakeConfig {
    let cfg = FakeConfig::new();
    cfg.add(kind.bdf(), config_space(kind));
    cfg
}

/// Where the function's interrupt goes, as the driver programmed MSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiTarget {
    /// The vector (MSI data bits 7:0).
    pub vector: u8,
    /// MSI is enabled with a usable vector (≥ 0x20).
    pub enabled: bool,
}

/// After a configuration write to `bdf`: hands PMCSR's power state to the model (BAR0
/// decodes only in D0; leaving D3hot resets the function) and returns where MSI
/// points, if the capability reads.
pub fn sync_config<M: PhysMemory>(
    cfg: &FakeConfig,
    bdf: Bdf,
    model: &LpssModel<M>,
) -> Option<MsiTarget> {
    let state = pci::pm::power_state(cfg, bdf, PM_CAP) as u8;
    if model.power_state() != state {
        model.set_power_state(state);
    }
    let msi = pci::Msi::read(cfg, bdf, u16::from(MSI_CAP)).ok()?;
    let data = pci::ConfigAccess::read32(cfg, bdf, msi.data_offset()) & 0xFF;
    Some(MsiTarget {
        vector: data as u8,
        enabled: msi.is_enabled(cfg) && data >= 0x20,
    })
}
