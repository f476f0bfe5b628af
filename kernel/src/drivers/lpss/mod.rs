//! Intel LPSS PCI functions and the iDMA64 behind them (hw-facts §1.1–1.2).
//!
//! [`LpssDriver`] binds the LPSS IDs from `pci::names` (the `intel-lpss-pci` table),
//! takes the function out of reset, reads CAPS and, when an iDMA64 is present,
//! registers an `idma64` child at BAR0 + 0x800 before the host-controller child — as
//! Linux's MFD code does. [`Idma64Driver`] binds that child: it builds the `idma64`
//! provider over the child's register window and registers it with dmaengine, with
//! DMA mappings made against the parent PCI function (64-bit mask, 0x1FFFF-byte
//! segments). The host controllers themselves are left alone, except that a UART
//! function is recorded for [`uart`], an iDMA64 client with hardware handshake used by
//! the loopback tests.
//!
//! The function may have been left in D3hot by firmware: the PCI bus brings it to D0
//! (`pci::pm`) before this probe runs, so a CAPS of all-ones means it does not decode
//! even in D0.
//!
//! The function's one interrupt (MSI when it has the capability) is shared by the
//! host controller and the iDMA64. Without MSI (as on many laptops) its INTx pin is
//! used: the IO-APIC input the ACPI `_PRT` routes it to, level-triggered and shared
//! with whatever else the board wired there (`pci::intx`). With neither, the
//! channels are polled (and cyclic transfers get no period callbacks).

pub mod lli;
pub mod sim;
pub mod uart;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};

use hal::RegisterAccess;
use pci::lpss as lpss_res;
use pci::{
    Bdf, DeviceCtx, MsiMessage, PciDeviceId, PciDriver, PlatformCtx, PlatformDriver, ProbeError,
};
use spin::Once;

use self::sim::SimBar;
use crate::arch::idt::TrapFrame;
use crate::mm::{self as kmm, IoMem};

/// An LPSS BAR0 or iDMA64 window: real MMIO, or the simulated function's registers
/// from an offset of its BAR0.
pub enum Window {
    /// Uncached mapping of the real registers.
    Mmio(IoMem),
    /// The simulated function's BAR0, from an offset.
    Sim(lpss::SubWindow<SimBar>),
}

impl Window {
    fn regs(&self) -> &dyn RegisterAccess {
        match self {
            Window::Mmio(m) => m,
            Window::Sim(w) => w,
        }
    }
}

impl RegisterAccess for Window {
    fn read8(&self, o: usize) -> u8 {
        self.regs().read8(o)
    }
    fn read16(&self, o: usize) -> u16 {
        self.regs().read16(o)
    }
    fn read32(&self, o: usize) -> u32 {
        self.regs().read32(o)
    }
    fn write8(&self, o: usize, v: u8) {
        self.regs().write8(o, v)
    }
    fn write16(&self, o: usize, v: u16) {
        self.regs().write16(o, v)
    }
    fn write32(&self, o: usize, v: u32) {
        self.regs().write32(o, v)
    }
}

fn window(bdf: Bdf, phys: u64, offset: u64, len: u64) -> Result<Window, ProbeError> {
    if sim::is_sim(bdf) {
        return Ok(Window::Sim(lpss::SubWindow::new(SimBar, offset as usize)));
    }
    kmm::ioremap(phys, len)
        .map(Window::Mmio)
        .map_err(|_| ProbeError::MissingResource("an uncached mapping of BAR0"))
}

/// Interrupt routing: parent function → vector → dmaengine device.
struct IrqSlot {
    bdf: AtomicU32,
    vector: AtomicU8,
    /// The vector is a shared INTx line's, served by [`intx_handler`].
    intx: core::sync::atomic::AtomicBool,
    dev: AtomicUsize,
}
const SLOTS: usize = 16;
const NO_DEV: usize = usize::MAX;
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: IrqSlot = IrqSlot {
    bdf: AtomicU32::new(u32::MAX),
    vector: AtomicU8::new(0),
    intx: core::sync::atomic::AtomicBool::new(false),
    dev: AtomicUsize::new(NO_DEV),
};
static IRQ_SLOTS: [IrqSlot; SLOTS] = [EMPTY; SLOTS];

fn key(b: Bdf) -> u32 {
    (b.segment as u32) << 16 | (b.bus as u32) << 8 | (b.device as u32) << 3 | b.function as u32
}

fn slot_of(b: Bdf) -> Option<&'static IrqSlot> {
    IRQ_SLOTS
        .iter()
        .find(|s| s.bdf.load(Ordering::Acquire) == key(b))
}

fn irq_handler(f: &mut TrapFrame) {
    for s in IRQ_SLOTS.iter().filter(|s| {
        !s.intx.load(Ordering::Acquire) && s.vector.load(Ordering::Acquire) as u64 == f.vector
    }) {
        let dev = s.dev.load(Ordering::Acquire);
        if dev != NO_DEV {
            crate::dmaengine::irq(dev);
        }
    }
}

/// The functions' handler on their shared INTx lines: runs the iDMA64 of each
/// function that uses one; says whether any had an interrupt pending.
fn intx_handler() -> bool {
    let mut ours = false;
    for s in IRQ_SLOTS.iter().filter(|s| s.intx.load(Ordering::Acquire)) {
        let dev = s.dev.load(Ordering::Acquire);
        if dev != NO_DEV {
            ours |= crate::dmaengine::irq(dev);
        }
    }
    ours
}

/// The LPSS PCI driver.
pub struct LpssDriver;

static IDS: Once<Vec<PciDeviceId>> = Once::new();

impl PciDriver for LpssDriver {
    fn name(&self) -> &'static str {
        "intel-lpss"
    }

    fn id_table(&self) -> &[PciDeviceId] {
        IDS.call_once(|| {
            pci::names::lpss_ids()
                .map(|l| PciDeviceId::new(0x8086, l.device))
                .collect()
        })
    }

    fn probe(&self, ctx: &mut DeviceCtx<'_>) -> Result<(), ProbeError> {
        let bdf = ctx.bdf();
        let bar = *ctx
            .device
            .bar(lpss_res::LPSS_BAR)
            .ok_or(ProbeError::MissingResource("BAR0"))?;
        if !bar.is_memory() || bar.size < lpss_res::IDMA64_OFFSET + lpss_res::IDMA64_LEN {
            return Err(ProbeError::MissingResource("a 4 KiB memory BAR0"));
        }
        pci::command::enable_memory(ctx.config, bdf);
        let regs = window(bdf, bar.address, 0, bar.size)?;
        let info = lpss::bring_up(&regs, bar.address).map_err(|e| match e {
            lpss::LpssError::NotDecoding => {
                ProbeError::Device("CAPS reads all-ones: the function does not decode (not in D0?)")
            }
        })?;
        let (caps, function, has_idma) = (info.caps, info.function, info.has_idma);
        let fname = function.map_or_else(
            || alloc::string::String::from("unknown"),
            |f| alloc::format!("{f}"),
        );
        log::info!(
            "lpss {bdf}: {fname} function, CAPS {caps:#x}, iDMA64 {}{}",
            if has_idma { "present" } else { "absent" },
            if sim::is_sim(bdf) { " (simulated)" } else { "" }
        );
        let slot = IRQ_SLOTS
            .iter()
            .find(|s| {
                s.bdf
                    .compare_exchange(u32::MAX, key(bdf), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .ok_or(ProbeError::MissingResource(
                "an LPSS slot (at most 16 functions)",
            ))?;
        if let Some(off) = ctx.device.find_capability(pci::caps::id::MSI) {
            let msi = pci::Msi::read(ctx.config, bdf, off as u16).map_err(ProbeError::Msi)?;
            let vector = crate::arch::apic::alloc_vector(irq_handler)
                .map_err(ProbeError::MissingResource)?;
            let (address, data) = crate::arch::apic::msi_for(bdf, vector);
            let msg = MsiMessage { address, data };
            msi.enable(ctx.config, msg, 1).map_err(ProbeError::Msi)?;
            pci::command::set_intx_disabled(ctx.config, bdf, true);
            slot.vector.store(vector, Ordering::Release);
            log::info!(
                "lpss {bdf}: MSI vector {vector:#x}, shared by the host controller and iDMA64"
            );
        } else {
            match crate::pci::intx::request(bdf, intx_handler) {
                Ok((gsi, vector)) => {
                    crate::arch::apic::set_vector_name(vector, "INTx (IO-APIC, shared)");
                    slot.intx.store(true, Ordering::Release);
                    slot.vector.store(vector, Ordering::Release);
                    if sim::is_sim(bdf) {
                        sim::set_intx_vector(vector);
                    }
                    pci::command::set_intx_disabled(ctx.config, bdf, false);
                    log::info!(
                        "lpss {bdf}: no MSI capability; INTx on GSI {gsi} (from _PRT), vector {vector:#x}, shared by the host controller and iDMA64"
                    );
                }
                Err(e) => log::info!(
                    "lpss {bdf}: no MSI capability and no INTx line ({e}); iDMA64 completions are polled"
                ),
            }
        }
        ctx.enable_bus_master();
        if has_idma {
            ctx.register_child(lpss_res::idma64_child())
                .map_err(ProbeError::Child)?;
        }
        if function == Some(pci::names::LpssFunction::Uart) {
            // A DMA client for loopback tests (drivers::lpss::uart).
            uart::found(bdf, bar.address);
        }
        if let Some(f) = function {
            // Registered, not bound: the UART has only the loopback client above; no
            // I2C or SPI host drivers.
            ctx.register_child(lpss_res::host_child(f))
                .map_err(ProbeError::Child)?;
        }
        Ok(())
    }

    fn remove(&self, ctx: &mut DeviceCtx<'_>) {
        if let Some(s) = slot_of(ctx.bdf()) {
            s.dev.store(NO_DEV, Ordering::Release);
        }
        ctx.disable_bus_master();
    }
}

/// The iDMA64 platform driver (the `idma64` child of an LPSS function).
pub struct Idma64Driver;

impl PlatformDriver for Idma64Driver {
    fn name(&self) -> &'static str {
        lpss_res::IDMA64_NAME
    }

    fn probe(&self, ctx: &mut PlatformCtx<'_>) -> Result<(), ProbeError> {
        let parent = ctx.device.parent;
        let w = ctx.device.mmio;
        let regs = window(parent, w.phys, w.offset, w.len)?;
        // hw-facts §1.1: mappings against the parent, 64-bit mask, 0x1FFFF segments.
        ctx.dma
            .set_mask_and_coherent(64)
            .map_err(ProbeError::DmaMask)?;
        ctx.dma.max_segment_size = idma64::regs::MAX_BLOCK;
        let simulated = sim::is_sim(parent);
        let backend = if simulated {
            dma::DmaBackend::Direct
        } else {
            crate::dma::backend_for(parent, None)
        };
        let name = alloc::format!("{parent} idma64");
        // The parameters set above, handed over once (not set a second time).
        let params = *ctx.dma;
        let dev = dma::DmaDevice::with_params(&name, &crate::dma::PLATFORM, backend, params);
        dev.set_mask(params.dma_mask)
            .and_then(|()| dev.set_coherent_mask(params.coherent_dma_mask))
            .map_err(|_| ProbeError::MissingResource("a 64-bit DMA mask"))?;
        // LLIs from DMA pools of the parent (Linux: dma_pool_create("idma64_desc", …)).
        let lli = lli::PoolLli::new(dev.clone()).map_err(|e| {
            log::error!("idma64 on {parent}: LLI pools: {e}");
            ProbeError::MissingResource("DMA pools for the iDMA64 LLIs")
        })?;
        let pools = lli.pools().clone();
        let mut drv = idma64::Idma64::new(regs, crate::mm::direct::direct(), lli)
            .map_err(|_| ProbeError::Device("iDMA64 did not turn off (DMA_EN stuck)"))?;
        // The driver's bounded polls wait a calibrated microsecond between reads.
        drv.set_delay(|us| crate::arch::tsc::delay_us(u64::from(us)));
        let desc = alloc::format!(
            "idma64 on {parent}{}, 2 channels, registers at {:#x}",
            if simulated { " (simulated)" } else { "" },
            w.phys
        );
        let id = crate::dmaengine::register(dmaengine::Boxed::new_dyn(drv), desc, Some(dev));
        lli::record(id, pools);
        if simulated {
            crate::dmaengine::set_fault_injection(id, sim::corrupt_next_byte);
        }
        match slot_of(parent) {
            Some(s) => {
                s.dev.store(id, Ordering::Release);
                if s.vector.load(Ordering::Acquire) == 0 {
                    crate::dmaengine::set_polled(id);
                }
            }
            None => crate::dmaengine::set_polled(id),
        }
        ctx.set_drvdata(id);
        Ok(())
    }

    fn remove(&self, ctx: &mut PlatformCtx<'_>) {
        if let Some(s) = slot_of(ctx.device.parent) {
            s.dev.store(NO_DEV, Ordering::Release);
        }
    }
}

/// Registers both drivers with the PCI registry.
pub fn register(reg: &mut pci::DriverRegistry, cfg: &dyn pci::ConfigAccess) {
    reg.register_platform_driver(cfg, Box::new(Idma64Driver));
    reg.register_driver(cfg, Box::new(LpssDriver));
}
