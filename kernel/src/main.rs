//! Busmaster: a small x86_64 kernel about DMA.
//!
//! Boot order: TSC mark, serial, log, GDT/IDT, heap, TSC calibration, memory
//! map, command line; then either the shell or, with `mode=test`, the in-kernel
//! test suite.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod apic;
mod arch;
mod cmdline;
mod drivers;
mod fatal;
mod fwcfg;
mod heap;
mod hpet;
mod iommu;
mod isadma;
mod kdma;
mod kdmaengine;
mod klog;
mod kmem;
mod ktest;
mod memmap;
mod pci;
mod physmem;
mod platform;
mod power;
mod screen;
mod serial;
mod shell;
mod time;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{entry_point, BootInfo};
use spin::Once;

use cmdline::Cmdline;

pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    // All of physical memory mapped at an offset the bootloader picks: page
    // tables, ACPI tables and DMA buffers are reached through it.
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = 512 * 1024;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

static CMDLINE: Once<Cmdline> = Once::new();

/// The boot options (empty until read from fw_cfg).
pub fn boot_cmdline() -> &'static Cmdline {
    CMDLINE.call_once(|| Cmdline::parse(""))
}

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    time::mark_boot();
    serial::init();
    klog::init();
    arch::gdt::init();
    arch::idt::init();
    heap::init_early();
    let hz = time::calibrate();
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
    physmem::init(offset, limit);
    log::info!("physical memory mapped at {offset:#x}");
    let cmdline = CMDLINE.call_once(|| Cmdline::parse(&fwcfg::cmdline()));
    log::info!("command line: '{}'", cmdline.raw());
    memmap::init(&boot_info.memory_regions);
    memmap::log_summary();
    if let Err(e) = kmem::init() {
        panic!("memory manager: {e}");
    }
    if let Err(e) = heap::init_main() {
        panic!("kernel heap: {e}");
    }
    screen::init(boot_info.framebuffer.as_mut());
    platform::init(boot_info.rsdp_addr.into_option());
    time::calibrate_with_hpet();
    if let Err(e) = apic::init() {
        log::warn!("apic: {e}; staying with polled I/O and no timer interrupts");
    }
    serial::enable_rx_interrupt();
    if let Err(e) = drivers::i8042::init() {
        log::info!("keyboard: {e}; input from the serial port only");
    }
    if let Err(e) = kdma::init() {
        log::warn!("dma: {e}; devices that cannot reach all of RAM will fail to map");
    }
    iommu::init();
    pci::init(match boot_cmdline().get("pci") {
        Some("legacy") => pci::Want::Legacy,
        _ => pci::Want::Auto,
    });
    iommu::enable(&pci::devices());
    drivers::ahci::start();
    drivers::nvme::start();
    kdmaengine::init();
    match drivers::floppy::init() {
        Ok(()) => {}
        Err(drivers::floppy::FloppyError::NoDrive) => log::info!("floppy: no drive"),
        Err(e) => log::warn!("floppy: {e}"),
    }
    let cmdline = boot_cmdline();
    match cmdline.get("mode") {
        Some("test") => ktest::run(cmdline),
        _ => shell::run(),
    }
}
