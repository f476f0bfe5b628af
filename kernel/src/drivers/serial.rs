//! The COM1 serial console: output for the log and the shell, input for the
//! shell. Under QEMU it is `-serial stdio`; on real hardware a null-modem cable.
//! Output is mirrored on the framebuffer console (`screen`) and input merged
//! with the PS/2 keyboard (`drivers::i8042`), so a machine without COM1 still
//! has a console.

use core::fmt::{self, Write};

use spin::Mutex;
use uart_16550::SerialPort;

/// COM1's fixed I/O base on the PC platform.
const COM1: u16 = 0x3F8;

// SAFETY: 0x3F8 is COM1 on every PC; nothing else in the kernel drives it.
static PORT: Mutex<SerialPort> = Mutex::new(unsafe { SerialPort::new(COM1) });

/// Whether a UART answers at COM1. Laptops often have none there (their
/// UARTs, if any, are LPSS devices elsewhere); the port then reads 0xFF,
/// which would look like an endless stream of received 0xFF bytes.
static PRESENT: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub fn init() {
    // The scratch register (base + 7) holds what was written on any 16450 or
    // later; with nothing decoding the port the read floats to 0xFF.
    let present = [0x5A, 0xA5].iter().all(|&v| {
        crate::arch::port::outb(COM1 + 7, v);
        crate::arch::port::inb(COM1 + 7) == v
    });
    PRESENT.store(present, core::sync::atomic::Ordering::Relaxed);
    if present {
        PORT.lock().init();
    }
}

/// Whether COM1 exists (see `init`).
pub fn present() -> bool {
    PRESENT.load(core::sync::atomic::Ordering::Relaxed)
}

static RX_IRQS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn rx_irq(_frame: &mut crate::arch::idt::TrapFrame) {
    // Nothing to do here: the shell reads the byte after `hlt` returns. The
    // interrupt only wakes it.
    RX_IRQS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// Routes COM1's IRQ 4 through the IO-APIC and enables the UART's "received
/// data available" interrupt, so an idle shell can sleep in `hlt`.
pub fn enable_rx_interrupt() -> bool {
    if !crate::apic::ready() {
        return false;
    }
    match crate::apic::route_isa_irq(4, rx_irq) {
        Ok(_) => {
            // IER (base + 1) bit 0: received data available; MCR OUT2 (bit 3)
            // gates the UART's interrupt onto the ISA line on PCs.
            crate::arch::port::outb(COM1 + 1, 0x01);
            let mcr = crate::arch::port::inb(COM1 + 4);
            crate::arch::port::outb(COM1 + 4, mcr | 0x08);
            RX_ENABLED.store(true, core::sync::atomic::Ordering::Release);
            true
        }
        Err(e) => {
            log::warn!("serial: no receive interrupt ({e}); the shell will poll");
            false
        }
    }
}

static RX_ENABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether an idle reader may sleep until the next interrupt.
pub fn rx_interrupt_enabled() -> bool {
    RX_ENABLED.load(core::sync::atomic::Ordering::Acquire)
}

/// Console output: the UART (taking the port lock around each call) and the
/// screen's text grid when there is a framebuffer. The screen is drawn by
/// `write_fmt` (every `kprint!`) and by the log after each record; output
/// written through `Serial` directly shows at the next of those.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::screen::write(s.as_bytes());
        Uart.write_str(s)
    }
}

/// The UART alone.
struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !present() {
            return Ok(());
        }
        x86_64::instructions::interrupts::without_interrupts(|| {
            let mut port = PORT.lock();
            // Raw bytes: the shell's line editor writes BS and escape
            // sequences itself (`send` would turn each BS into BS SP BS).
            for b in s.bytes() {
                if b == b'\n' {
                    port.send_raw(b'\r');
                }
                port.send_raw(b);
            }
        });
        Ok(())
    }
}

pub fn write_fmt(args: fmt::Arguments) {
    let _ = Serial.write_fmt(args);
    crate::screen::flush();
}

/// One byte of console input if one is waiting: from the UART, else from the
/// PS/2 keyboard. Called when the shell is idle, so it also lets the screen
/// draw output it held back.
pub fn try_read_byte() -> Option<u8> {
    crate::screen::flush_pending();
    if present() {
        let b =
            x86_64::instructions::interrupts::without_interrupts(|| PORT.lock().try_receive().ok());
        if b.is_some() {
            return b;
        }
    }
    crate::drivers::i8042::try_read_byte()
}

/// Output for the dying kernel (panic, exception): takes the port even if the
/// code that crashed held its lock, since nothing will run after us.
pub struct EmergencySerial;

impl Write for EmergencySerial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // SAFETY: called only on the fatal path with interrupts off; the holder
        // of the lock (if any) is the code that crashed and will never resume.
        unsafe { PORT.force_unlock() };
        crate::screen::emergency_write(s);
        Uart.write_str(s)
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
