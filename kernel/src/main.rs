//! Busmaster: a small x86_64 kernel about DMA.
//!
//! Boot order: TSC mark, serial, log, GDT/IDT, heap, TSC calibration, memory
//! map, command line (the image's options file, then fw_cfg); then either the
//! shell or, with `mode=test`, the in-kernel test suite.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

// The layers, lowest first: sync, cmdline, mm, arch, acpi, console, pci,
// iommu, dma, dmaengine, drivers, shell, ktest. A module imports only layers
// below it (tools/layers checks this, with the same list); what must run
// upward registers a hook. See docs/ARCHITECTURE.md.
mod acpi;
mod arch;
mod cmdline;
mod console;
mod dma;
mod dmaengine;
mod drivers;
mod iommu;
mod ktest;
mod mm;
mod pci;
mod shell;
mod sync;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{entry_point, BootInfo};

pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    // All of physical memory mapped at an offset the bootloader picks: page
    // tables, ACPI tables and DMA buffers are reached through it.
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = 512 * 1024;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    arch::tsc::mark_boot();
    drivers::serial::init();
    console::printk::init();
    arch::gdt::init();
    arch::idt::init();
    console::panic::init();
    mm::heap::init_early();
    let hz = arch::tsc::calibrate();
    log::info!(
        "Busmaster {} booting; TSC {}.{:03} MHz",
        env!("CARGO_PKG_VERSION"),
        hz / 1_000_000,
        (hz / 1000) % 1000
    );
    let Some(offset) = boot_info.physical_memory_offset.into_option() else {
        panic!("the bootloader did not map physical memory (BOOTLOADER_CONFIG asks for it)");
    };
    let limit = boot_info
        .memory_regions
        .iter()
        .map(|r| r.end)
        .max()
        .unwrap_or(0);
    mm::direct::init(offset, limit);
    log::info!("physical memory mapped at {offset:#x}");
    // The image's options file, if the bootloader loaded it as its ramdisk.
    let options_file = boot_info.ramdisk_addr.into_option().map(|addr| {
        // SAFETY: the bootloader mapped the ramdisk it loaded at this address,
        // ramdisk_len bytes, readable, in the page tables still in use; its
        // frames are a Bootloader region of the memory map, which the frame
        // allocator never hands out (only Usable regions are managed), so
        // nothing writes them while the slice is read.
        unsafe { core::slice::from_raw_parts(addr as *const u8, boot_info.ramdisk_len as usize) }
    });
    let cmdline =
        cmdline::set_boot_cmdline(&cmdline::assemble(options_file, &acpi::fwcfg::cmdline()));
    log::info!("command line: '{}'", cmdline.raw());
    mm::memmap::init(&boot_info.memory_regions);
    mm::memmap::log_summary();
    if let Err(e) = mm::init() {
        panic!("memory manager: {e}");
    }
    if let Err(e) = mm::heap::init_main() {
        panic!("kernel heap: {e}");
    }
    drivers::fbcon::init(boot_info.framebuffer.as_mut());
    let platform = acpi::init(boot_info.rsdp_addr.into_option());
    arch::hpet::init(platform.hpet);
    arch::tsc::calibrate_with_hpet();
    let topology = arch::apic::Topology {
        local_apic: platform.local_apic,
        io_apics: &platform.io_apics,
        overrides: &platform.overrides,
    };
    if let Err(e) = arch::apic::init(topology) {
        log::warn!("apic: {e}; staying with polled I/O and no timer interrupts");
    }
    drivers::serial::enable_rx_interrupt();
    if let Err(e) = drivers::i8042::init() {
        log::info!("keyboard: {e}; input from the serial port only");
    }
    if let Err(e) = dma::init() {
        log::warn!("dma: {e}; devices that cannot reach all of RAM will fail to map");
    }
    iommu::init();
    drivers::register_pci_drivers();
    pci::init(match cmdline.get("pci") {
        Some("legacy") => pci::Want::Legacy,
        _ => pci::Want::Auto,
    });
    drivers::ahci::start();
    drivers::nvme::start();
    drivers::i8237::dmaengine::init();
    drivers::edu::dmaengine::init();
    match drivers::floppy::init() {
        Ok(()) => {}
        Err(drivers::floppy::FloppyError::NoDrive) => log::info!("floppy: no drive"),
        Err(e) => log::warn!("floppy: {e}"),
    }
    match cmdline.get("mode") {
        Some("test") => ktest::run(cmdline),
        _ => shell::run(),
    }
}
