//! Command-register control: decoding and bus mastering.
//!
//! Enumeration never sets [`Command::BUS_MASTER`]: letting a device issue its own DMA
//! (first-party DMA) is a driver's decision, taken with [`enable_bus_master`] once the
//! driver has set up its DMA mappings (and, with VT-d, the device's domain).

use crate::addr::Bdf;
use crate::config::ConfigAccess;
use crate::regs::{Command, COMMAND};

/// The Command register of `bdf`.
pub fn read_command<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf) -> Command {
    Command::from_bits_retain(cfg.read16(bdf, COMMAND))
}

/// Sets `set` and clears `clear` in the Command register with a 16-bit write (so
/// Status, whose error bits are write-1-to-clear, is left alone). Returns the old value.
pub fn update_command<C: ConfigAccess + ?Sized>(
    cfg: &C,
    bdf: Bdf,
    set: Command,
    clear: Command,
) -> Command {
    let old = read_command(cfg, bdf);
    let new = (old - clear) | set;
    if new != old {
        cfg.write16(bdf, COMMAND, new.bits());
    }
    old
}

/// Lets the device master the bus (DMA). Returns whether it was already on.
pub fn enable_bus_master<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf) -> bool {
    let old = update_command(cfg, bdf, Command::BUS_MASTER, Command::empty());
    if !old.contains(Command::BUS_MASTER) {
        log::info!("pci {bdf}: enabling bus master");
    }
    old.contains(Command::BUS_MASTER)
}

/// Stops the device from mastering the bus. Returns whether it was on.
pub fn disable_bus_master<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf) -> bool {
    let old = update_command(cfg, bdf, Command::empty(), Command::BUS_MASTER);
    old.contains(Command::BUS_MASTER)
}

/// Turns memory-space and I/O-space decoding on or off.
pub fn set_decoding<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf, memory: bool, io: bool) {
    let mut set = Command::empty();
    let mut clear = Command::empty();
    for (on, bit) in [(memory, Command::MEMORY_SPACE), (io, Command::IO_SPACE)] {
        if on {
            set |= bit;
        } else {
            clear |= bit;
        }
    }
    update_command(cfg, bdf, set, clear);
}

/// Turns memory-space decoding on (BARs answer).
pub fn enable_memory<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf) {
    update_command(cfg, bdf, Command::MEMORY_SPACE, Command::empty());
}

/// Turns I/O-space decoding on.
pub fn enable_io<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf) {
    update_command(cfg, bdf, Command::IO_SPACE, Command::empty());
}

/// Masks or unmasks legacy INTx (Command bit 10, PCI Local Bus spec 3.0 §6.2.2).
pub fn set_intx_disabled<C: ConfigAccess + ?Sized>(cfg: &C, bdf: Bdf, disabled: bool) {
    if disabled {
        update_command(cfg, bdf, Command::INTX_DISABLE, Command::empty());
    } else {
        update_command(cfg, bdf, Command::empty(), Command::INTX_DISABLE);
    }
}
