//! The ISA 8237 as a dmaengine provider: the `i8237` crate's [`IsaEngine`] over
//! the kernel binding (its lock and channel table). The floppy controller's IRQ 6
//! handler calls [`crate::dmaengine::irq`], which runs the engine's `handle_irq`:
//! the 8237 has no interrupt of its own (third-party DMA).

use ::i8237::engine::{Controller, IsaEngine};

use crate::drivers::i8237::{self, Direction, IsaDmaError};

/// The PC's controllers as the provider drives them (channel ownership checked).
struct Pc;

impl Controller for Pc {
    unsafe fn program(
        &self,
        channel: u8,
        phys: u64,
        len: usize,
        dir: Direction,
    ) -> Result<(), IsaDmaError> {
        // SAFETY: the caller's contract (the engine's: a dmaengine client's buffer).
        unsafe { i8237::program(channel, phys, len, dir) }
    }
    fn mask(&self, channel: u8) {
        i8237::mask(channel)
    }
    fn unmask(&self, channel: u8) {
        i8237::unmask(channel)
    }
    fn residue(&self, channel: u8) -> usize {
        i8237::residue(channel)
    }
    fn status(&self) -> u8 {
        i8237::status()
    }
}

static DEV: spin::Once<usize> = spin::Once::new();

/// dmaengine device id of the 8237.
pub fn dev() -> Option<usize> {
    DEV.get().copied()
}

/// Registers the 8237 (every PC-compatible has one; q35's is QEMU's i8257 model).
pub fn init() {
    let id = crate::dmaengine::register(
        dmaengine::Boxed::new_dyn(IsaEngine::new(Pc)),
        alloc::string::String::from(
            "i8237 ISA DMA controller, channels 0-3 (8-bit; 4 is the cascade), third-party",
        ),
        None,
    );
    DEV.call_once(|| id);
}
