//! The console layer (Linux: kernel/printk/, drivers/tty/ in spirit): where
//! kernel output goes and where console input comes from, and the fatal path.
//!
//! - output: consoles register a [`ConsoleDriver`] (the UART, the framebuffer
//!   console); `kprint!`/`kprintln!` and the log write to every one of them;
//! - input: drivers register an input source (the UART, the PS/2 keyboard);
//!   [`try_read_byte`] asks them in order;
//! - `printk`: the `log` backend and the `dmesg` ring;
//! - `panic`: the panic handler and the CPU exception report, with reporters
//!   that the test harness hooks in (the panic path imports no test code).
//!
//! This layer names no driver: drivers register with it.

use core::fmt::{self, Write};

use crate::sync::{HookTable, HookTableFull};

pub mod panic;
pub mod printk;

/// One console's operations (Linux: `struct console`).
pub struct ConsoleDriver {
    /// Adds text (it may be drawn later, at `flush`).
    pub write: fn(&str),
    /// Shows what was written (a screen draws its grid).
    pub flush: fn(),
    /// Called when console input is polled and none is waiting: a chance to
    /// show output that was held back.
    pub idle: fn(),
    /// For the dying kernel: write and show at once, taking the device even
    /// if the code that crashed held it (or skipping it if that is unsafe).
    pub emergency_write: fn(&str),
}

static CONSOLES: HookTable<&'static ConsoleDriver, 4> = HookTable::new();
static INPUTS: HookTable<fn() -> Option<u8>, 4> = HookTable::new();

/// Adds a console: every later output goes to it too.
pub fn register_console(c: &'static ConsoleDriver) -> Result<(), HookTableFull> {
    CONSOLES.register(c)
}

/// Adds an input source, asked after those registered before it.
pub fn register_input(read: fn() -> Option<u8>) -> Result<(), HookTableFull> {
    INPUTS.register(read)
}

/// Console output: every registered console. Text shows at the next
/// `flush` (every `kprint!` and every log record end with one).
pub struct Out;

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        CONSOLES.for_each(|c| (c.write)(s));
        Ok(())
    }
}

/// Shows what was written on every console.
pub fn flush() {
    CONSOLES.for_each(|c| (c.flush)());
}

/// `kprint!`: formatted output to every console, then shown.
pub fn write_fmt(args: fmt::Arguments) {
    let _ = Out.write_fmt(args);
    flush();
}

/// One byte of console input if one is waiting, from the first source that has
/// one. Called when the shell is idle, so consoles may also draw held-back
/// output first.
pub fn try_read_byte() -> Option<u8> {
    CONSOLES.for_each(|c| (c.idle)());
    let mut got = None;
    INPUTS.for_each(|read| {
        if got.is_none() {
            got = read();
        }
    });
    got
}

/// Output for the dying kernel (panic, exception): every console's emergency
/// path. Never spins on a lock (the table is only read if it is free).
pub struct Emergency;

impl Write for Emergency {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(consoles) = CONSOLES.try_snapshot() {
            for c in consoles.into_iter().flatten() {
                (c.emergency_write)(s);
            }
        }
        Ok(())
    }
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
