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

/// ACPI soft-off (S5): SLP_TYP from the DSDT's `\_S5` with SLP_EN (bit 13)
/// written to the FADT's PM1a (and PM1b) control blocks (ACPI spec §4.8.3.2.1,
/// §16.1.7). Without usable tables, QEMU's q35 values are tried (ICH9 PM1a_CNT
/// at 0x604 as SeaBIOS and OVMF program it, SLP_TYP 0), then isa-debug-exit.
pub fn poweroff() -> ! {
    const SLP_EN: u16 = 1 << 13;
    let p = crate::platform::get();
    match p.and_then(|p| Some((p.pm1a_cnt?, p.pm1b_cnt, p.s5?))) {
        Some((pm1a, pm1b, (typ_a, typ_b))) => {
            log::info!(
                "power: requesting ACPI S5 (soft off) via PM1a_CNT {pm1a:#x}, SLP_TYP {typ_a}"
            );
            outw(pm1a, ((typ_a as u16 & 7) << 10) | SLP_EN);
            if let Some(pm1b) = pm1b {
                outw(pm1b, ((typ_b as u16 & 7) << 10) | SLP_EN);
            }
        }
        None => {
            log::info!("power: requesting ACPI S5 (soft off) with QEMU q35 defaults");
            outw(0x604, SLP_EN);
        }
    }
    crate::time::delay_us(100_000);
    // Still here: S5 not honoured. QEMU with isa-debug-exit still ends
    // cleanly (the runner maps this code to success); hardware halts.
    log::warn!("power: S5 did not take effect; halting");
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
    crate::arch::idt::load_empty_idt();
    x86_64::instructions::interrupts::int3();
    crate::arch::halt_forever()
}
