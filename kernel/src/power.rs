//! Leaving the machine: QEMU exit codes, ACPI power-off, reset.

use crate::arch::port::{inb, outb, outl, outw};

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

/// ACPI soft-off (S5). QEMU's q35 firmware (SeaBIOS and OVMF alike) places the
/// ICH9 PM1a control block at I/O 0x604 and its DSDT's `\_S5` has SLP_TYP 0, so
/// SLP_EN (bit 13) alone requests S5 (ACPI spec §4.8.3.2.1). Real machines need
/// the FADT's PM1a_CNT and the DSDT's SLP_TYP: that comes with ACPI parsing.
pub fn poweroff() -> ! {
    log::info!("power: requesting ACPI S5 (soft off)");
    outw(0x604, 1 << 13);
    crate::time::delay_us(100_000);
    // Still here: not QEMU's q35, or S5 not honoured. QEMU with isa-debug-exit
    // still ends cleanly (the runner maps this code to success).
    exit_qemu(QemuExit::Success)
}

/// Resets the machine: the chipset reset control register (0xCF9, "full reset"),
/// then the keyboard controller's pulse-reset command, then a triple fault.
pub fn reboot() -> ! {
    log::info!("power: reset");
    outb(0xCF9, 0x02);
    outb(0xCF9, 0x06);
    crate::time::delay_us(50_000);
    // i8042: wait for the input buffer to drain, then command 0xFE.
    for _ in 0..100_000 {
        if inb(0x64) & 0x02 == 0 {
            break;
        }
    }
    outb(0x64, 0xFE);
    crate::time::delay_us(50_000);
    crate::arch::idt::load_empty_idt_for_test();
    x86_64::instructions::interrupts::int3();
    crate::arch::halt_forever()
}
