//! The COM1 serial console: output for the log and the shell, input for the
//! shell. Under QEMU it is `-serial stdio`; on real hardware a null-modem cable.
//! It registers with the console layer as a console and an input source (the
//! framebuffer console and the PS/2 keyboard register there too, so a machine
//! without COM1 still has a console).

use core::fmt::{self, Write};

use uart_16550::SerialPort;

use crate::console::{self, ConsoleDriver};
use crate::sync::IrqSpinLock;

/// COM1's fixed I/O base on the PC platform.
const COM1: u16 = 0x3F8;

// SAFETY: 0x3F8 is COM1 on every PC; nothing else in the kernel drives it.
static PORT: IrqSpinLock<SerialPort> = IrqSpinLock::new(unsafe { SerialPort::new(COM1) });

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
    register();
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
    if !crate::arch::apic::ready() {
        return false;
    }
    match crate::arch::apic::route_isa_irq(4, rx_irq) {
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

/// The UART as a console (output) and input source.
static CONSOLE: ConsoleDriver = ConsoleDriver {
    write: |s| {
        let _ = Uart.write_str(s);
    },
    flush: || {},
    idle: || {},
    emergency_write: |s| {
        // SAFETY: called only on the fatal path with interrupts off; the holder
        // of the lock (if any) is the code that crashed and will never resume.
        unsafe { PORT.force_unlock() };
        let _ = Uart.write_str(s);
    },
};

/// Registers COM1 with the console layer (output, and input when present).
fn register() {
    if let Err(e) = console::register_console(&CONSOLE) {
        log::warn!("serial: not a console ({e})");
    }
    if let Err(e) = console::register_input(try_read_byte) {
        log::warn!("serial: no console input ({e})");
    }
}

/// The UART alone.
struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !present() {
            return Ok(());
        }
        let mut port = PORT.lock();
        // Raw bytes: the shell's line editor writes BS and escape
        // sequences itself (`send` would turn each BS into BS SP BS).
        for b in s.bytes() {
            if b == b'\n' {
                port.send_raw(b'\r');
            }
            port.send_raw(b);
        }
        Ok(())
    }
}

/// One byte from the UART if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    if !present() {
        return None;
    }
    PORT.lock().try_receive().ok()
}
