//! The kernel log (Linux: kernel/printk/printk.c): `log` facade records stamped
//! with uptime, dmesg-style (`[    1.234567] message`), written to every console
//! and kept in a ring buffer that the `dmesg` command prints.

use core::fmt::{self, Write};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::arch::tsc;
use crate::sync::IrqSpinLock;

const RING_SIZE: usize = 64 * 1024;

struct Ring {
    buf: [u8; RING_SIZE],
    /// Next write position.
    head: usize,
    /// Bytes held (<= RING_SIZE).
    len: usize,
}

impl Ring {
    fn push(&mut self, b: u8) {
        self.buf[self.head] = b;
        self.head = (self.head + 1) % RING_SIZE;
        self.len = (self.len + 1).min(RING_SIZE);
    }

    /// Calls `f` with the held bytes, oldest first, as at most two slices.
    fn with_contents(&self, mut f: impl FnMut(&[u8])) {
        let start = (self.head + RING_SIZE - self.len) % RING_SIZE;
        if start + self.len <= RING_SIZE {
            f(&self.buf[start..start + self.len]);
        } else {
            f(&self.buf[start..]);
            f(&self.buf[..self.head]);
        }
    }
}

impl Write for Ring {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            self.push(b);
        }
        Ok(())
    }
}

static RING: IrqSpinLock<Ring> = IrqSpinLock::new(Ring {
    buf: [0; RING_SIZE],
    head: 0,
    len: 0,
});

struct KernelLog;

static LOGGER: KernelLog = KernelLog;

fn write_record(out: &mut dyn Write, record: &Record) -> fmt::Result {
    let ns = tsc::uptime_ns();
    write!(
        out,
        "[{:5}.{:06}] ",
        ns / 1_000_000_000,
        (ns / 1_000) % 1_000_000
    )?;
    match record.level() {
        Level::Error => out.write_str("error: ")?,
        Level::Warn => out.write_str("warning: ")?,
        _ => {}
    }
    writeln!(out, "{}", record.args())
}

impl Log for KernelLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        {
            // The ring's guard keeps interrupts off, so a record from an
            // interrupt handler cannot land inside this one.
            let mut ring = RING.lock();
            let _ = write_record(&mut crate::console::Out, record);
            let _ = write_record(&mut *ring, record);
        }
        crate::console::flush();
    }

    fn flush(&self) {}
}

pub fn init() {
    // A second init would be a bug in main; the logger stays the first one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

/// Calls `f` with the log ring's contents, oldest first.
pub fn with_ring(f: impl FnMut(&[u8])) {
    RING.lock().with_contents(f);
}
