//! Machine glue: descriptor tables, interrupt entry, port I/O.
//!
//! Everything here is x86_64-specific and is the only place that executes
//! privileged instructions directly.

pub mod gdt;
pub mod idt;
pub mod port;

/// Stops the CPU for good (interrupts off, `hlt` forever).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
