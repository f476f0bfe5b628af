//! The screen-and-keyboard console: the framebuffer mirrors console output,
//! and the i8042 delivers keys through IRQ 1 into the console input.

use super::{KTest, TestResult};
use crate::arch::port::{inb, outb};
use crate::drivers::fbcon as screen;
use crate::{arch::idt, drivers::i8042, kassert, kprintln};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "console::screen_mirrors_console_output",
        run: screen_mirror,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "console::i8042_key_arrives_through_irq1",
        run: keyboard_irq,
        profiles: &[],
        manual: false,
    },
];

fn screen_mirror() -> TestResult {
    let info = screen::info();
    kassert!(
        info.is_some(),
        "no framebuffer console (QEMU's std VGA should give one)"
    );
    let rows = info.map_or(0, |i| i.rows);
    let marker = "screen-mirror-marker 7f3a";
    kprintln!("{marker}");
    kassert!(
        (0..rows).any(|r| screen::row_text(r).is_some_and(|t| t.contains(marker))),
        "the line printed on the console is not on the screen's text grid"
    );
    Ok(())
}

/// Pushes a scancode into the controller's output buffer as if the keyboard
/// sent it (i8042 command 0xD2), which also raises IRQ 1.
fn inject(sc: u8) {
    let wait = || (0..100_000).any(|_| inb(0x64) & 0x02 == 0);
    wait();
    outb(0x64, 0xD2);
    wait();
    outb(0x60, sc);
}

fn keyboard_irq() -> TestResult {
    let k = i8042::stats();
    kassert!(k.present, "no i8042 found (q35 has one)");
    let Some(vector) = k.vector else {
        return Err("IRQ 1 not routed".into());
    };
    while crate::console::try_read_byte().is_some() {}
    let before = idt::irq_count(vector);
    // 'k' make, 'k' break, then Shift+'k'.
    let mut got = alloc::vec::Vec::new();
    for sc in [0x25, 0xA5, 0x2A, 0x25, 0xA5, 0xAA] {
        inject(sc);
        // Let the interrupt take the byte before the next one overwrites it.
        let fired = super::wait_until(super::EVENT_BOUND_MS, || inb(0x64) & 0x01 == 0);
        kassert!(
            fired,
            "scancode {sc:#04x} was not taken from the controller"
        );
    }
    while let Some(b) = i8042::try_read_byte() {
        got.push(b);
    }
    kassert!(got == b"kK", "typed {:?}, expected \"kK\"", got);
    let irqs = idt::irq_count(vector) - before;
    kassert!(irqs >= 6, "IRQ 1 fired {irqs} times for 6 scancodes");
    kprintln!(
        "    6 scancodes, {irqs} IRQ 1 interrupts, typed {:?}",
        core::str::from_utf8(&got).unwrap_or("?")
    );
    Ok(())
}
