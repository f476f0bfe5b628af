//! x86_64 (Linux: arch/x86/kernel/): GDT and TSS, the IDT and exception
//! reports, the 8259/LAPIC/IO-APIC, the TSC and HPET clocks, port I/O, and
//! QEMU exit / machine reset.

pub mod apic;
pub mod gdt;
pub mod hpet;
pub mod idt;
pub mod ioapic;
pub mod irq_remap;
pub mod port;
pub mod reboot;
pub mod tsc;
