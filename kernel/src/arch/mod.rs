//! Machine glue (Linux: arch/): descriptor tables, interrupt entry, interrupt
//! controllers and timers, port I/O, leaving the machine.
//!
//! Everything here is x86_64-specific and is the only place that executes
//! privileged instructions directly. It sits just above `mm` (it ioremaps the
//! APIC and HPET) and imports nothing else of the kernel: what the firmware
//! says (MADT, HPET table) is handed down at boot, and what must run on a tick
//! or on an exception is registered by the layers above.

pub mod x86;

pub use x86::{apic, gdt, hpet, idt, ioapic, irq_remap, port, reboot, tsc};

/// Stops the CPU for good (interrupts off, `hlt` forever).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
