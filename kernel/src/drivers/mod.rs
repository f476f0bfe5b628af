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
    let dev = crate::dma::pci_dma_device(&name, ctx.bdf(), ctx.device.parent);
    Ok((bar, regs, dev))
}
