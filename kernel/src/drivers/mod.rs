//! Device drivers: thin bindings of the crates to this machine (ioremap,
//! vectors, MSI), each registering with the layer below it: PCI drivers with
//! `pci`, DMA engine providers with `dmaengine`, consoles and input sources
//! with `console`.
//!
//! - `edu`: QEMU's edu device (PCI), and its dmaengine provider (`edu::dmaengine`)
//! - `lpss`: Intel LPSS iDMA64 binding (PCI; Linux: drivers/mfd/intel-lpss*.c,
//!   drivers/dma/idma64.c), and the simulated LPSS function (`lpss::sim`)
//! - `i8237`: the ISA DMA controller (Linux: kernel/dma.c, arch/x86/include/asm/dma.h)
//!   and its dmaengine provider (`i8237::dmaengine`)
//! - `floppy`: the floppy controller, a client of ISA DMA channel 2
//! - `i8042`: the PS/2 keyboard controller (an input source)
//! - `serial`: the COM1 UART (a console and an input source)
//! - `fbcon`: the framebuffer console (a console)
//! - `ahci`, `nvme`: the storage controllers (PCI; logic in crates/ahci, crates/nvme)

pub mod ahci;
pub mod edu;
pub mod fbcon;
pub mod floppy;
pub mod i8042;
pub mod i8237;
pub mod lpss;
pub mod nvme;
pub mod serial;

/// Puts the PCI drivers (and the simulated LPSS function) in the bus's driver
/// table; boot calls it before `pci::init` scans.
pub fn register_pci_drivers() {
    let regs: [(&str, crate::pci::DriverRegistration); 4] = [
        ("edu", edu::register),
        ("lpss", lpss::register),
        ("ahci", ahci::register),
        ("nvme", nvme::register),
    ];
    for (name, f) in regs {
        if let Err(e) = crate::pci::register_driver(f) {
            log::warn!("pci: {name} driver not registered ({e})");
        }
    }
    if let Err(e) = crate::pci::register_sim_function(lpss::sim::pci_function) {
        log::warn!("pci: simulated LPSS function not registered ({e})");
    }
}

/// What a bus-master PCI driver's probe starts with: the register BAR mapped
/// uncached, memory decoding and bus mastering on, and the function's DMA
/// device (named `<bdf> <driver>`) on the backend the platform chose for it
/// (direct, swiotlb or its IOMMU domain). `bar_name` and `mapping` name what
/// is missing when the probe must give up.
pub(crate) fn probe_bus_master(
    ctx: &mut pci::DeviceCtx<'_>,
    index: u8,
    driver: &str,
    bar_name: &'static str,
    mapping: &'static str,
) -> Result<
    (
        pci::Bar,
        crate::mm::IoMem,
        alloc::sync::Arc<::dma::DmaDevice>,
    ),
    pci::ProbeError,
> {
    let bar = *ctx
        .device
        .bar(index)
        .ok_or(pci::ProbeError::MissingResource(bar_name))?;
    let regs = crate::mm::ioremap(bar.address, bar.size)
        .map_err(|_| pci::ProbeError::MissingResource(mapping))?;
    pci::command::enable_memory(ctx.config, ctx.bdf());
    ctx.enable_bus_master();
    let name = alloc::format!("{} {driver}", ctx.bdf());
    let dev = crate::dma::pci_dma_device(&name, ctx.bdf(), ctx.device.parent, ctx.device.dma)
        .map_err(|_| pci::ProbeError::MissingResource("a DMA mask the platform can serve"))?;
    Ok((bar, regs, dev))
}

/// A second, unowned view of a device's register block for its interrupt handler
/// (the driver's own `IoMem` sits inside a controller behind a lock the handler must
/// not take). Accesses outside the block or misaligned read all ones and are
/// dropped, like `IoMem`'s.
pub(crate) struct IrqRegs {
    base: u64,
    size: usize,
}

impl IrqRegs {
    /// A view of `io`'s registers.
    ///
    /// # Safety
    /// `io` must stay mapped for as long as the view is used: the owner removes the
    /// view (and stops the device interrupting) before the `IoMem` drops.
    pub(crate) unsafe fn new(io: &crate::mm::IoMem) -> IrqRegs {
        IrqRegs {
            base: io.virt().as_u64(),
            size: io.size() as usize,
        }
    }

    fn at(&self, offset: usize, width: usize) -> Option<u64> {
        let end = offset.checked_add(width)?;
        (end <= self.size && (self.base + offset as u64).is_multiple_of(width as u64))
            .then_some(self.base + offset as u64)
    }
}

macro_rules! irq_regs_access {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, offset: usize) -> $t {
            match self.at(offset, core::mem::size_of::<$t>()) {
                // SAFETY: inside the block and aligned (`at`), and the block is
                // mapped uncached while the view exists (`IrqRegs::new`'s contract).
                Some(a) => unsafe { core::ptr::read_volatile(a as *const $t) },
                None => <$t>::MAX,
            }
        }
        fn $write(&self, offset: usize, value: $t) {
            if let Some(a) = self.at(offset, core::mem::size_of::<$t>()) {
                // SAFETY: as for the read.
                unsafe { core::ptr::write_volatile(a as *mut $t, value) }
            }
        }
    };
}

impl hal::RegisterAccess for IrqRegs {
    irq_regs_access!(read8, write8, u8);
    irq_regs_access!(read16, write16, u16);
    irq_regs_access!(read32, write32, u32);
}

/// Sleeps in `hlt` until an interrupt (a device's, or the 100 Hz tick), for the
/// storage drivers' `wait_interrupt`: `None` when interrupts are off here or the
/// APIC is not up (the driver polls then), else the µs that passed.
pub(crate) fn sleep_for_interrupt(woken: &dyn Fn() -> bool) -> Option<u32> {
    use x86_64::instructions::interrupts;
    if !interrupts::are_enabled() || !crate::arch::apic::ready() {
        return None;
    }
    let t0 = crate::arch::tsc::rdtsc();
    // Checked with interrupts off, then `sti; hlt` (the one-instruction interrupt
    // shadow of sti): a handler that ran after the check still wakes the hlt.
    interrupts::disable();
    if woken() {
        interrupts::enable();
    } else {
        interrupts::enable_and_hlt();
    }
    let ns = crate::arch::tsc::ticks_to_ns(crate::arch::tsc::rdtsc().saturating_sub(t0));
    Some(u32::try_from(ns / 1000).unwrap_or(u32::MAX))
}
