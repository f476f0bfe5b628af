//! Thin wrappers over x86 port I/O so callers need no `unsafe` of their own.
//!
//! Port I/O can have side effects on devices, so these are only for ports whose
//! meaning on the PC platform is fixed (PIT, fw_cfg, isa-debug-exit, ACPI PM,
//! reset control). Each caller documents the port it uses.

use x86_64::instructions::port::Port;

pub fn outb(port: u16, value: u8) {
    // SAFETY: callers only name fixed-function PC ports (see module doc); writing
    // them cannot violate Rust memory safety.
    unsafe { Port::<u8>::new(port).write(value) }
}

pub fn inb(port: u16) -> u8 {
    // SAFETY: as in `outb`; reads of these ports have no memory-safety effect.
    unsafe { Port::<u8>::new(port).read() }
}

pub fn outw(port: u16, value: u16) {
    // SAFETY: as in `outb`.
    unsafe { Port::<u16>::new(port).write(value) }
}

pub fn outl(port: u16, value: u32) {
    // SAFETY: as in `outb`.
    unsafe { Port::<u32>::new(port).write(value) }
}

pub fn inw(port: u16) -> u16 {
    // SAFETY: as in `inb`.
    unsafe { Port::<u16>::new(port).read() }
}

pub fn inl(port: u16) -> u32 {
    // SAFETY: as in `inb`.
    unsafe { Port::<u32>::new(port).read() }
}
