//! The COM1 serial console: output for the log and the shell, input for the
//! shell. Under QEMU it is `-serial stdio`; on real hardware a null-modem cable.

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::SerialPort;

/// COM1's fixed I/O base on the PC platform.
const COM1: u16 = 0x3F8;

// SAFETY: 0x3F8 is COM1 on every PC; nothing else in the kernel drives it.
static PORT: Mutex<SerialPort> = Mutex::new(unsafe { SerialPort::new(COM1) });

pub fn init() {
    PORT.lock().init();
}

/// Serial output that takes the port lock around each call.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut port = PORT.lock();
            for b in s.bytes() {
                if b == b'\n' {
                    port.send(b'\r');
                }
                port.send(b);
            }
        });
        Ok(())
    }
}

pub fn write_fmt(args: fmt::Arguments) {
    let _ = Serial.write_fmt(args);
}

/// One byte from the console if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    x86_64::instructions::interrupts::without_interrupts(|| PORT.lock().try_receive().ok())
}

/// Output for the dying kernel (panic, exception): takes the port even if the
/// code that crashed held its lock, since nothing will run after us.
pub struct EmergencySerial;

impl Write for EmergencySerial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: called only on the fatal path with interrupts off; the holder
        // of the lock (if any) is the code that crashed and will never resume.
        unsafe { PORT.force_unlock() };
        Serial.write_str(s)
    }
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
