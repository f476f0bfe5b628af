//! The fatal path: panics and CPU exceptions print a full report, tell the test
//! runner which test died, and end QEMU with a failure code.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::idt::{write_exception_report, TrapFrame};
use crate::power::{exit_qemu, QemuExit};
use crate::serial::EmergencySerial;

static DYING: AtomicBool = AtomicBool::new(false);

fn enter() {
    x86_64::instructions::interrupts::disable();
    if DYING.swap(true, Ordering::SeqCst) {
        // A fault while reporting a fault: say so and stop, do not recurse.
        let _ = EmergencySerial.write_str("\n!!! nested fault while reporting; halting\n");
        exit_qemu(QemuExit::Crashed);
    }
}

pub fn exception(frame: &TrapFrame) -> ! {
    enter();
    let mut out = EmergencySerial;
    let _ = write_exception_report(&mut out, frame);
    if let Some(test) = crate::ktest::current() {
        let _ = writeln!(
            out,
            "BUSMASTER-TEST fail {test}: CPU exception vector {} at RIP={:#x}",
            frame.vector, frame.rip
        );
    }
    exit_qemu(QemuExit::Crashed)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    enter();
    let mut out = EmergencySerial;
    let (file, line, col) = info
        .location()
        .map(|l| (l.file(), l.line(), l.column()))
        .unwrap_or(("<unknown>", 0, 0));
    let _ = writeln!(
        out,
        "\n!!! KERNEL PANIC at {file}:{line}:{col}: {}",
        info.message()
    );
    if let Some(test) = crate::ktest::current() {
        let _ = writeln!(
            out,
            "BUSMASTER-TEST fail {test}: panicked at {file}:{line}:{col}: {}",
            info.message()
        );
    }
    exit_qemu(QemuExit::Crashed)
}
