//! Register access: one trait for MMIO and port I/O, so drivers are generic over it and
//! host tests can plug in a device model (DESIGN.md §3).

use crate::VirtAddr;

/// Reads and writes of device registers at a byte offset in a register block.
///
/// Offsets are relative to the start of the block (a BAR, an I/O port range). Callers
/// use naturally aligned offsets for the width. Methods take `&self`: registers are
/// hardware state, and a read may itself have side effects (clear-on-read), which an
/// implementation models with interior mutability.
pub trait RegisterAccess {
    /// 8-bit read at `offset`.
    fn read8(&self, offset: usize) -> u8;
    /// 16-bit read at `offset`.
    fn read16(&self, offset: usize) -> u16;
    /// 32-bit read at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// 64-bit read at `offset`.
    ///
    /// The default does two 32-bit reads, low half first, as drivers do for devices
    /// that do not accept 64-bit accesses; override it for a single access.
    fn read64(&self, offset: usize) -> u64 {
        let lo = self.read32(offset) as u64;
        let hi = self.read32(offset + 4) as u64;
        lo | (hi << 32)
    }
    /// 8-bit write at `offset`.
    fn write8(&self, offset: usize, value: u8);
    /// 16-bit write at `offset`.
    fn write16(&self, offset: usize, value: u16);
    /// 32-bit write at `offset`.
    fn write32(&self, offset: usize, value: u32);
    /// 64-bit write at `offset`; the default writes the low half first, then the high.
    fn write64(&self, offset: usize, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

impl<T: RegisterAccess + ?Sized> RegisterAccess for &T {
    fn read8(&self, o: usize) -> u8 {
        (**self).read8(o)
    }
    fn read16(&self, o: usize) -> u16 {
        (**self).read16(o)
    }
    fn read32(&self, o: usize) -> u32 {
        (**self).read32(o)
    }
    fn read64(&self, o: usize) -> u64 {
        (**self).read64(o)
    }
    fn write8(&self, o: usize, v: u8) {
        (**self).write8(o, v)
    }
    fn write16(&self, o: usize, v: u16) {
        (**self).write16(o, v)
    }
    fn write32(&self, o: usize, v: u32) {
        (**self).write32(o, v)
    }
    fn write64(&self, o: usize, v: u64) {
        (**self).write64(o, v)
    }
}

/// A memory-mapped register block accessed with volatile loads and stores.
///
/// The mapping must be uncached (UC or UC-, see `mm::pat`) for device registers; that is
/// the caller's promise in [`Mmio::new`].
#[derive(Debug)]
pub struct Mmio {
    base: *mut u8,
    len: usize,
}

// SAFETY: MMIO registers are device state, not Rust memory; concurrent volatile accesses
// are what hardware sees anyway. Ordering between them is the driver's business (locks,
// barriers), as in C.
unsafe impl Send for Mmio {}
// SAFETY: as above.
unsafe impl Sync for Mmio {}

impl Mmio {
    /// Wraps the register block mapped at `base` for `len` bytes.
    ///
    /// # Safety
    /// `[base, base + len)` must stay mapped (normally uncached) to device registers or
    /// memory for as long as the `Mmio` lives, and must not be accessed through Rust
    /// references.
    pub unsafe fn new(base: VirtAddr, len: usize) -> Self {
        Mmio {
            base: base.as_mut_ptr(),
            len,
        }
    }

    /// Start of the block.
    pub fn base(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.base)
    }

    /// Length of the block in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pointer to a `width`-byte register at `offset`.
    ///
    /// # Panics
    /// If the register is not inside the block or not naturally aligned: a driver bug
    /// (offsets are constants from the register layout), and continuing would touch
    /// memory outside the mapping.
    #[inline]
    #[track_caller]
    fn reg<T>(&self, offset: usize) -> *mut T {
        let w = core::mem::size_of::<T>();
        let in_range = offset.checked_add(w).is_some_and(|e| e <= self.len);
        assert!(
            in_range && offset.is_multiple_of(w),
            "MMIO access of {w} bytes at offset {offset:#x} outside/misaligned in block of {:#x} bytes",
            self.len
        );
        self.base.wrapping_add(offset).cast()
    }
}

macro_rules! mmio_rw {
    ($read:ident, $write:ident, $t:ty) => {
        #[inline]
        fn $read(&self, offset: usize) -> $t {
            let p = self.reg::<$t>(offset);
            // SAFETY: `reg` checked the access lies inside the block and is aligned;
            // `new`'s contract says the block is mapped.
            unsafe { core::ptr::read_volatile(p) }
        }
        #[inline]
        fn $write(&self, offset: usize, value: $t) {
            let p = self.reg::<$t>(offset);
            // SAFETY: as for the read.
            unsafe { core::ptr::write_volatile(p, value) }
        }
    };
}

impl RegisterAccess for Mmio {
    mmio_rw!(read8, write8, u8);
    mmio_rw!(read16, write16, u16);
    mmio_rw!(read32, write32, u32);
    mmio_rw!(read64, write64, u64);
}

/// A block of x86 I/O ports starting at `base` (e.g. the ISA DMA controller, legacy PCI
/// configuration ports).
#[derive(Debug, Clone, Copy)]
pub struct PortIo {
    base: u16,
    len: u16,
}

impl PortIo {
    /// Wraps the ports `[base, base + len)`.
    ///
    /// # Safety
    /// Port I/O can reprogram any device; the caller must own these ports.
    pub unsafe fn new(base: u16, len: u16) -> Self {
        PortIo { base, len }
    }

    #[inline]
    #[track_caller]
    fn port(&self, offset: usize, width: usize) -> u16 {
        let ok = offset
            .checked_add(width)
            .is_some_and(|e| e <= self.len as usize);
        assert!(
            ok,
            "port access of {width} bytes at offset {offset:#x} outside block of {:#x} ports",
            self.len
        );
        self.base.wrapping_add(offset as u16)
    }
}

macro_rules! port_rw {
    ($read:ident, $write:ident, $t:ty) => {
        #[inline]
        fn $read(&self, offset: usize) -> $t {
            let mut p = x86_64::instructions::port::Port::<$t>::new(
                self.port(offset, core::mem::size_of::<$t>()),
            );
            // SAFETY: `new`'s contract says the caller owns these ports; `port` checked
            // the range.
            unsafe { p.read() }
        }
        #[inline]
        fn $write(&self, offset: usize, value: $t) {
            let mut p = x86_64::instructions::port::Port::<$t>::new(
                self.port(offset, core::mem::size_of::<$t>()),
            );
            // SAFETY: as for the read.
            unsafe { p.write(value) }
        }
    };
}

impl RegisterAccess for PortIo {
    port_rw!(read8, write8, u8);
    port_rw!(read16, write16, u16);
    port_rw!(read32, write32, u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmio_over_host_memory_is_volatile_little_endian() {
        let mut backing = [0u64; 4];
        // SAFETY: `backing` outlives `regs` and is not touched through references meanwhile.
        let regs = unsafe { Mmio::new(VirtAddr::from_ptr(backing.as_mut_ptr()), 32) };
        regs.write32(0, 0x1122_3344);
        regs.write8(8, 0xab);
        regs.write16(10, 0xbeef);
        regs.write64(16, 0x0102_0304_0506_0708);
        assert_eq!(regs.read8(0), 0x44);
        assert_eq!(regs.read16(2), 0x1122);
        assert_eq!(regs.read64(16), 0x0102_0304_0506_0708);
        assert_eq!(regs.read32(20), 0x0102_0304);
        let _ = regs;
        assert_eq!(backing[0], 0x1122_3344);
        assert_eq!(backing[1], 0xbeef_00ab);
    }

    #[test]
    #[should_panic(expected = "outside/misaligned")]
    fn mmio_out_of_block_panics() {
        let mut backing = [0u64; 1];
        // SAFETY: as above.
        let regs = unsafe { Mmio::new(VirtAddr::from_ptr(backing.as_mut_ptr()), 8) };
        regs.read32(8);
    }

    /// A default `read64` / `write64` splits into two 32-bit accesses, low half first.
    #[test]
    fn default_64bit_access_is_two_32bit_accesses_low_first() {
        use core::cell::RefCell;
        struct Log(RefCell<std::vec::Vec<(char, usize, u32)>>);
        impl RegisterAccess for Log {
            fn read8(&self, _: usize) -> u8 {
                0
            }
            fn read16(&self, _: usize) -> u16 {
                0
            }
            fn read32(&self, o: usize) -> u32 {
                self.0.borrow_mut().push(('r', o, 0));
                o as u32
            }
            fn write8(&self, _: usize, _: u8) {}
            fn write16(&self, _: usize, _: u16) {}
            fn write32(&self, o: usize, v: u32) {
                self.0.borrow_mut().push(('w', o, v));
            }
        }
        let l = Log(RefCell::new(std::vec::Vec::new()));
        l.write64(0x10, 0xaaaa_bbbb_cccc_dddd);
        assert_eq!(l.read64(0x20), 0x24_0000_0020);
        assert_eq!(
            *l.0.borrow(),
            [
                ('w', 0x10, 0xcccc_dddd),
                ('w', 0x14, 0xaaaa_bbbb),
                ('r', 0x20, 0),
                ('r', 0x24, 0)
            ]
        );
    }
}
