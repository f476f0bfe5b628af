//! The PS/2 keyboard behind the i8042 controller (ports 0x60/0x64): typed
//! keys become console input next to the serial port's, so the shell works
//! on a laptop's own keyboard. (On many laptops the built-in keyboard is
//! PS/2; USB keyboards reach us too when the firmware emulates the i8042.)
//!
//! The controller translates the keyboard's scancode set 2 into set 1 (the
//! PC default, kept on); `fbcon::keyboard` turns set 1 into terminal bytes.
//! IRQ 1 goes through the IO-APIC; without it, reads poll the controller.
//!
//! Some machines have no i8042 at all (UEFI-only laptops, and the ports then
//! read 0xFF): every wait here has a timeout, and `init` says what it found.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use fbcon::keyboard::Decoder;

use crate::arch::port::{inb, outb};
use crate::sync::IrqSpinLock;

const DATA: u16 = 0x60;
const STATUS: u16 = 0x64;
const COMMAND: u16 = 0x64;
/// Status: output buffer full (a byte for us at 0x60).
const OUT_FULL: u8 = 1 << 0;
/// Status: input buffer full (the controller has not taken our last byte).
const IN_FULL: u8 = 1 << 1;
/// Status: the byte in the output buffer came from the second (mouse) port.
const AUX_DATA: u8 = 1 << 5;

// Controller configuration byte.
const CFG_IRQ1: u8 = 1 << 0;
const CFG_IRQ12: u8 = 1 << 1;
const CFG_PORT1_CLOCK_OFF: u8 = 1 << 4;
const CFG_PORT2_CLOCK_OFF: u8 = 1 << 5;
const CFG_TRANSLATE: u8 = 1 << 6;

/// How long the controller may take to answer one byte.
const TIMEOUT_US: u64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KbdError {
    /// The status port reads 0xFF: nothing decodes it.
    NoController,
    /// The controller did not take or answer a byte in time.
    Timeout(&'static str),
}

impl fmt::Display for KbdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KbdError::NoController => f.write_str("no i8042 controller (status port reads 0xff)"),
            KbdError::Timeout(what) => write!(f, "i8042 timed out {what}"),
        }
    }
}

const QUEUE: usize = 64;

/// Bytes typed and not yet read; filled by the interrupt handler (or by
/// polling), emptied by `try_read_byte`.
struct Input {
    decoder: Decoder,
    buf: [u8; QUEUE],
    head: usize,
    len: usize,
}

static INPUT: IrqSpinLock<Input> = IrqSpinLock::new(Input {
    decoder: Decoder::new(),
    buf: [0; QUEUE],
    head: 0,
    len: 0,
});
static PRESENT: AtomicBool = AtomicBool::new(false);
static IRQ_VECTOR: AtomicU8 = AtomicU8::new(0);
static SCANCODES: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn wait(mask: u8, want_set: bool, what: &'static str) -> Result<u8, KbdError> {
    let start = crate::arch::tsc::uptime_ns();
    loop {
        let s = inb(STATUS);
        if (s & mask != 0) == want_set {
            return Ok(s);
        }
        if crate::arch::tsc::uptime_ns() - start > TIMEOUT_US * 1000 {
            return Err(KbdError::Timeout(what));
        }
        core::hint::spin_loop();
    }
}

fn command(cmd: u8) -> Result<(), KbdError> {
    wait(IN_FULL, false, "accepting a command")?;
    outb(COMMAND, cmd);
    Ok(())
}

fn read_data(what: &'static str) -> Result<u8, KbdError> {
    wait(OUT_FULL, true, what)?;
    Ok(inb(DATA))
}

fn write_data(b: u8) -> Result<(), KbdError> {
    wait(IN_FULL, false, "accepting data")?;
    outb(DATA, b);
    Ok(())
}

/// Empties the output buffer (stale keys from the firmware); bounded.
fn drain() {
    for _ in 0..64 {
        if inb(STATUS) & OUT_FULL == 0 {
            break;
        }
        let _ = inb(DATA);
    }
}

/// Finds and sets up the controller and keyboard, and routes IRQ 1.
pub fn init() -> Result<(), KbdError> {
    if inb(STATUS) == 0xFF {
        return Err(KbdError::NoController);
    }
    // Both ports off while we configure, so no key lands in the middle.
    command(0xAD)?;
    command(0xA7)?;
    drain();
    command(0x20)?;
    let old = read_data("reading the configuration")?;
    let cfg =
        (old | CFG_TRANSLATE | CFG_PORT2_CLOCK_OFF) & !(CFG_IRQ1 | CFG_IRQ12 | CFG_PORT1_CLOCK_OFF);
    command(0x60)?;
    write_data(cfg)?;
    command(0xAE)?;
    // Keyboard command 0xF4: enable scanning (the firmware may have left it
    // off). A keyboard that is not there does not answer: say so, go on.
    let kbd = write_data(0xF4).and_then(|_| read_data("waiting for the keyboard's ACK"));
    match kbd {
        Ok(0xFA) => {}
        Ok(other) => log::warn!("i8042: keyboard answered {other:#04x} to 'enable scanning'"),
        Err(e) => log::warn!("i8042: no keyboard on port 1? ({e})"),
    }
    drain();
    PRESENT.store(true, Ordering::Release);
    if let Err(e) = crate::console::register_input(try_read_byte) {
        log::warn!("i8042: not a console input ({e})");
    }
    let irq = if crate::arch::apic::ready() {
        match crate::arch::apic::route_isa_irq(1, irq_handler) {
            Ok(v) => {
                IRQ_VECTOR.store(v, Ordering::Relaxed);
                command(0x60)?;
                write_data(cfg | CFG_IRQ1)?;
                true
            }
            Err(e) => {
                log::warn!("i8042: IRQ 1 not routed ({e}); polling the keyboard");
                false
            }
        }
    } else {
        false
    };
    log::info!(
        "i8042: PS/2 keyboard on port 1 (config {old:#04x} -> {:#04x}), {}",
        if irq { cfg | CFG_IRQ1 } else { cfg },
        if irq { "IRQ 1" } else { "polled" }
    );
    Ok(())
}

/// Decodes one scancode into the queue (caller holds `INPUT` with interrupts off).
fn accept(input: &mut Input, sc: u8) {
    SCANCODES.fetch_add(1, Ordering::Relaxed);
    let Some(bytes) = input.decoder.feed(sc) else {
        return;
    };
    for &b in bytes.as_slice() {
        if input.len == QUEUE {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let at = (input.head + input.len) % QUEUE;
        input.buf[at] = b;
        input.len += 1;
    }
}

/// Takes what the controller holds for port 1 (mouse bytes are discarded).
fn poll(input: &mut Input) {
    for _ in 0..16 {
        let s = inb(STATUS);
        if s & OUT_FULL == 0 {
            break;
        }
        let b = inb(DATA);
        if s & AUX_DATA == 0 {
            accept(input, b);
        }
    }
}

fn irq_handler(_frame: &mut crate::arch::idt::TrapFrame) {
    // INPUT is only held with interrupts off, so it is free here.
    if let Some(mut input) = INPUT.try_lock() {
        poll(&mut input);
    }
}

/// One typed byte if any. Polls the controller too: without an interrupt
/// that is the only way in, and with one it picks up a byte whose edge was
/// missed (a key that arrived while IRQ 1 was being set up).
pub fn try_read_byte() -> Option<u8> {
    if !PRESENT.load(Ordering::Acquire) {
        return None;
    }
    let mut input = INPUT.lock();
    poll(&mut input);
    if input.len == 0 {
        return None;
    }
    let b = input.buf[input.head];
    input.head = (input.head + 1) % QUEUE;
    input.len -= 1;
    Some(b)
}

pub struct Stats {
    pub present: bool,
    /// The IO-APIC vector of IRQ 1, if routed.
    pub vector: Option<u8>,
    pub scancodes: u64,
    pub dropped: u64,
    pub caps_lock: bool,
}

pub fn stats() -> Stats {
    let v = IRQ_VECTOR.load(Ordering::Relaxed);
    Stats {
        present: PRESENT.load(Ordering::Acquire),
        vector: (v != 0).then_some(v),
        scancodes: SCANCODES.load(Ordering::Relaxed),
        dropped: DROPPED.load(Ordering::Relaxed),
        caps_lock: INPUT.lock().decoder.caps_lock(),
    }
}
