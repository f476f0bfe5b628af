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

/// Serial output that takes the port lock around each call.
pub struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
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
