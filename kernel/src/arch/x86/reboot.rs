//! Leaving the machine (Linux: arch/x86/kernel/reboot.c): QEMU's
//! isa-debug-exit and the reset sequence. ACPI power-off is `acpi::power`.

use crate::arch::port::{inb, outb, outl};

/// Values for QEMU's `isa-debug-exit` device (iobase 0xf4). QEMU exits with
/// status `(value << 1) | 1`, so these become 33, 35 and 37; the host runner
/// maps them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum QemuExit {
    Success = 0x10,
    TestsFailed = 0x11,
    Crashed = 0x12,
}

const ISA_DEBUG_EXIT_PORT: u16 = 0xf4;

/// Ends QEMU with `code`; on hardware without the device, halts.
pub fn exit_qemu(code: QemuExit) -> ! {
    outl(ISA_DEBUG_EXIT_PORT, code as u32);
    crate::arch::halt_forever()
}

/// Resets the machine: the chipset reset control register (0xCF9, "full reset"),
/// then the keyboard controller's pulse-reset command, then a triple fault.
pub fn reboot() -> ! {
    log::info!("power: reset");
    outb(0xCF9, 0x02);
    outb(0xCF9, 0x06);
    super::tsc::delay_us(50_000);
    // i8042: wait for the input buffer to drain, then command 0xFE.
    for _ in 0..100_000 {
        if inb(0x64) & 0x02 == 0 {
            break;
        }
    }
    outb(0x64, 0xFE);
    super::tsc::delay_us(50_000);
    crate::arch::idt::load_empty_idt();
    x86_64::instructions::interrupts::int3();
    crate::arch::halt_forever()
}
