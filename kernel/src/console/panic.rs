//! The fatal path (Linux: kernel/panic.c): panics and CPU exceptions print a
//! full report, let the registered reporters add their lines (the test harness
//! names the test that died), and end QEMU with a failure code.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::idt::{write_exception_report, TrapFrame};
use crate::arch::reboot::{exit_qemu, QemuExit};
use crate::console::Emergency;
use crate::sync::{HookTable, HookTableFull};

/// What ended the kernel, for reporters.
pub enum Fatal<'a> {
    /// A CPU exception (vector 0–31).
    Exception { vector: u64, rip: u64 },
    /// A Rust panic.
    Panic {
        file: &'a str,
        line: u32,
        col: u32,
        message: core::panic::PanicMessage<'a>,
    },
}

/// Functions that add lines to a fatal report (after the report itself).
static REPORTERS: HookTable<fn(&mut dyn Write, &Fatal), 2> = HookTable::new();

/// Adds `f` to the functions the fatal path calls (with interrupts off, on the
/// emergency console; it must not take locks that the dying code may hold).
pub fn register_reporter(f: fn(&mut dyn Write, &Fatal)) -> Result<(), HookTableFull> {
    REPORTERS.register(f)
}

static DYING: AtomicBool = AtomicBool::new(false);

fn enter() {
    x86_64::instructions::interrupts::disable();
    if DYING.swap(true, Ordering::SeqCst) {
        // A fault while reporting a fault: say so and stop, do not recurse.
        let _ = Emergency.write_str("\n!!! nested fault while reporting; halting\n");
        exit_qemu(QemuExit::Crashed);
    }
}

fn report(out: &mut dyn Write, what: &Fatal) {
    if let Some(reporters) = REPORTERS.try_snapshot() {
        for r in reporters.into_iter().flatten() {
            r(out, what);
        }
    }
}

/// The handler `arch::idt` calls for CPU exceptions (registered by `init`).
fn exception(frame: &TrapFrame) -> ! {
    enter();
    let mut out = Emergency;
    let _ = write_exception_report(&mut out, frame);
    report(
        &mut out,
        &Fatal::Exception {
            vector: frame.vector,
            rip: frame.rip,
        },
    );
    exit_qemu(QemuExit::Crashed)
}

/// Makes CPU exceptions end in this report.
pub fn init() {
    crate::arch::idt::set_exception_handler(exception);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    enter();
    let mut out = Emergency;
    let (file, line, col) = info
        .location()
        .map(|l| (l.file(), l.line(), l.column()))
        .unwrap_or(("<unknown>", 0, 0));
    let _ = writeln!(
        out,
        "\n!!! KERNEL PANIC at {file}:{line}:{col}: {}",
        info.message()
    );
    report(
        &mut out,
        &Fatal::Panic {
            file,
            line,
            col,
            message: info.message(),
        },
    );
    exit_qemu(QemuExit::Crashed)
}
