//! Configuration-space access: the [`ConfigAccess`] trait and the two x86 mechanisms,
//! [`Ecam`] (PCIe enhanced configuration access, memory mapped, from ACPI MCFG) and
//! [`Legacy`] (configuration mechanism #1, I/O ports 0xCF8/0xCFC).
//!
//! Both are pure address computation over a [`RegisterAccess`] the kernel supplies: a
//! [`hal::Mmio`] mapping of the ECAM window, or a [`hal::PortIo`] block of the eight
//! ports 0xCF8..0xD00. Host tests plug in fakes that record what is accessed.

use core::fmt;
use core::ops::RangeInclusive;

use hal::RegisterAccess;

use crate::addr::Bdf;
use crate::regs;

/// Size of a function's configuration space with ECAM (PCIe base spec 5.0 §7.2.2).
pub const ECAM_CONFIG_SIZE: u16 = 4096;
/// Size reachable through the legacy mechanism (PCI Local Bus spec 3.0 §3.2.2.3.2).
pub const LEGACY_CONFIG_SIZE: u16 = 256;

/// Why a configuration access could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Register offset outside the space this mechanism reaches (>= 4096 for ECAM,
    /// >= 256 for legacy) or not aligned for the access width.
    BadOffset {
        /// The offending offset.
        offset: u16,
        /// Mechanism limit.
        limit: u16,
    },
    /// Bus outside the range the MCFG entry decodes.
    BusOutOfRange {
        /// The bus asked for.
        bus: u8,
        /// First bus of the ECAM window.
        start: u8,
        /// Last bus of the ECAM window.
        end: u8,
    },
    /// Segment other than the one this mechanism serves (legacy only reaches 0).
    WrongSegment {
        /// The segment asked for.
        segment: u16,
        /// The segment served.
        served: u16,
    },
    /// Device or function number out of range in a hand-built [`Bdf`].
    BadAddress,
    /// An ECAM bus range whose end is below its start.
    BadBusRange {
        /// First bus.
        start: u8,
        /// Last bus.
        end: u8,
    },
    /// The register window given for the mechanism is too small.
    WindowTooSmall {
        /// Bytes needed.
        needed: u64,
        /// Bytes given.
        given: u64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::BadOffset { offset, limit } => write!(
                f,
                "config offset {offset:#x} not reachable (limit {limit:#x}, dword-aligned)"
            ),
            ConfigError::BusOutOfRange { bus, start, end } => write!(
                f,
                "bus {bus:02x} outside ECAM bus range {start:02x}-{end:02x}"
            ),
            ConfigError::WrongSegment { segment, served } => {
                write!(f, "segment {segment:04x} not served (serves {served:04x})")
            }
            ConfigError::BadAddress => f.write_str("device or function number out of range"),
            ConfigError::BadBusRange { start, end } => {
                write!(f, "ECAM bus range {start:02x}-{end:02x} is empty")
            }
            ConfigError::WindowTooSmall { needed, given } => write!(
                f,
                "register window of {given:#x} bytes, mechanism needs {needed:#x}"
            ),
        }
    }
}

/// Access to PCI configuration space.
///
/// Reads of an absent function or an unreachable register return all-ones, as a master
/// abort does on real hardware (PCI Local Bus spec 3.0 §6.1); writes to them are
/// dropped. Callers that need the reason use the mechanism's `try_*` methods.
///
/// The 8/16-bit helpers have read-modify-write defaults on the containing dword for
/// mechanisms that only do 32-bit accesses; [`Ecam`] and [`Legacy`] override them with
/// real narrow accesses. The default must not write back the Status register's
/// write-1-to-clear bits (PCI Local Bus spec 3.0 §6.2.3) when it changes Command, so a
/// write that lands in the dword at 0x04 sends zeroes in the other half.
pub trait ConfigAccess {
    /// Reads the dword at `offset` (low two bits ignored) of function `addr`.
    fn read32(&self, addr: Bdf, offset: u16) -> u32;
    /// Writes the dword at `offset` (low two bits ignored) of function `addr`.
    fn write32(&self, addr: Bdf, offset: u16, value: u32);

    /// True when offsets 0x100..0x1000 (PCIe extended space) are reachable.
    fn extended(&self) -> bool {
        false
    }

    /// True when `bus` of `segment` can be reached at all (an ECAM window covers a bus
    /// range; legacy only segment 0).
    fn reaches(&self, segment: u16, bus: u8) -> bool {
        let _ = (segment, bus);
        true
    }

    /// 16-bit read at `offset` (low bit ignored).
    fn read16(&self, addr: Bdf, offset: u16) -> u16 {
        let shift = u32::from(offset & 2) * 8;
        (self.read32(addr, offset) >> shift) as u16
    }

    /// 8-bit read at `offset`.
    fn read8(&self, addr: Bdf, offset: u16) -> u8 {
        let shift = u32::from(offset & 3) * 8;
        (self.read32(addr, offset) >> shift) as u8
    }

    /// 16-bit write at `offset` (low bit ignored), read-modify-write of the dword.
    fn write16(&self, addr: Bdf, offset: u16, value: u16) {
        let shift = u32::from(offset & 2) * 8;
        let old = rmw_base(self.read32(addr, offset), offset);
        let new = (old & !(0xFFFF << shift)) | (u32::from(value) << shift);
        self.write32(addr, offset, new);
    }

    /// 8-bit write at `offset`, read-modify-write of the dword.
    fn write8(&self, addr: Bdf, offset: u16, value: u8) {
        let shift = u32::from(offset & 3) * 8;
        let old = rmw_base(self.read32(addr, offset), offset);
        let new = (old & !(0xFF << shift)) | (u32::from(value) << shift);
        self.write32(addr, offset, new);
    }
}

/// The value to merge a narrow write into: the dword as read, except that Status
/// (upper half of 0x04) reads back as zero so its RW1C error bits are not cleared by a
/// write meant for Command.
fn rmw_base(read: u32, offset: u16) -> u32 {
    if offset & !3 == regs::COMMAND {
        read & 0x0000_FFFF
    } else {
        read
    }
}

impl<T: ConfigAccess + ?Sized> ConfigAccess for &T {
    fn read32(&self, a: Bdf, o: u16) -> u32 {
        (**self).read32(a, o)
    }
    fn write32(&self, a: Bdf, o: u16, v: u32) {
        (**self).write32(a, o, v)
    }
    fn extended(&self) -> bool {
        (**self).extended()
    }
    fn reaches(&self, s: u16, b: u8) -> bool {
        (**self).reaches(s, b)
    }
    fn read16(&self, a: Bdf, o: u16) -> u16 {
        (**self).read16(a, o)
    }
    fn read8(&self, a: Bdf, o: u16) -> u8 {
        (**self).read8(a, o)
    }
    fn write16(&self, a: Bdf, o: u16, v: u16) {
        (**self).write16(a, o, v)
    }
    fn write8(&self, a: Bdf, o: u16, v: u8) {
        (**self).write8(a, o, v)
    }
}

/// PCIe ECAM over one MCFG allocation: `base` is where bus `start_bus` begins, the
/// window is mapped by the kernel and handed in as `mmio`, offset 0 = `start_bus`.
///
/// Address of a register (PCIe base spec 5.0 §7.2.2, Table 7-1):
/// `(bus - start_bus) << 20 | device << 15 | function << 12 | offset`.
pub struct Ecam<M> {
    mmio: M,
    segment: u16,
    start_bus: u8,
    end_bus: u8,
}

impl<M: RegisterAccess> Ecam<M> {
    /// An ECAM mechanism for `segment`, buses `buses`, over `mmio`, which must map
    /// `(end - start + 1) << 20` bytes starting at the MCFG base address for
    /// `start_bus` (the MCFG base itself is for bus 0; the kernel adds
    /// `start_bus << 20` when it maps only the decoded buses).
    ///
    /// `window_len` is the length of `mmio`, checked against the bus range.
    pub fn new(
        mmio: M,
        window_len: u64,
        segment: u16,
        buses: RangeInclusive<u8>,
    ) -> Result<Self, ConfigError> {
        let (start, end) = (*buses.start(), *buses.end());
        if end < start {
            return Err(ConfigError::BadBusRange { start, end });
        }
        let needed = (u64::from(end - start) + 1) << 20;
        if window_len < needed {
            return Err(ConfigError::WindowTooSmall {
                needed,
                given: window_len,
            });
        }
        Ok(Ecam {
            mmio,
            segment,
            start_bus: start,
            end_bus: end,
        })
    }

    /// The byte offset of register `offset` of `addr` in the window.
    pub fn address(&self, addr: Bdf, offset: u16) -> Result<usize, ConfigError> {
        ecam_offset(addr, offset, self.segment, self.start_bus..=self.end_bus)
    }

    /// The bus range decoded.
    pub fn buses(&self) -> RangeInclusive<u8> {
        self.start_bus..=self.end_bus
    }

    /// The segment served.
    pub fn segment(&self) -> u16 {
        self.segment
    }

    /// A dword read, or why it cannot be made.
    pub fn try_read32(&self, addr: Bdf, offset: u16) -> Result<u32, ConfigError> {
        Ok(self.mmio.read32(self.address(addr, offset & !3)?))
    }

    /// A dword write, or why it cannot be made.
    pub fn try_write32(&self, addr: Bdf, offset: u16, value: u32) -> Result<(), ConfigError> {
        self.mmio.write32(self.address(addr, offset & !3)?, value);
        Ok(())
    }
}

/// The physical range to map for an MCFG allocation: `(start, len)`.
///
/// MCFG's base address is where bus 0 of the segment would be, even when the
/// allocation starts at a higher bus (PCI Firmware spec 3.2 §4.1.2; Linux computes
/// `base + (bus << 20)` the same way), so only buses `start..=end` are mapped.
pub fn mcfg_window(base: u64, buses: RangeInclusive<u8>) -> Result<(u64, u64), ConfigError> {
    let (start, end) = (*buses.start(), *buses.end());
    if end < start {
        return Err(ConfigError::BadBusRange { start, end });
    }
    let len = (u64::from(end - start) + 1) << 20;
    let phys = base
        .checked_add(u64::from(start) << 20)
        .filter(|p| p.checked_add(len).is_some())
        .ok_or(ConfigError::WindowTooSmall {
            needed: len,
            given: 0,
        })?;
    Ok((phys, len))
}

/// The ECAM offset computation on its own, for the kernel's own checks and tests.
pub fn ecam_offset(
    addr: Bdf,
    offset: u16,
    segment: u16,
    buses: RangeInclusive<u8>,
) -> Result<usize, ConfigError> {
    if !addr.is_valid() {
        return Err(ConfigError::BadAddress);
    }
    if addr.segment != segment {
        return Err(ConfigError::WrongSegment {
            segment: addr.segment,
            served: segment,
        });
    }
    if offset >= ECAM_CONFIG_SIZE {
        return Err(ConfigError::BadOffset {
            offset,
            limit: ECAM_CONFIG_SIZE,
        });
    }
    if !buses.contains(&addr.bus) {
        return Err(ConfigError::BusOutOfRange {
            bus: addr.bus,
            start: *buses.start(),
            end: *buses.end(),
        });
    }
    let bus = usize::from(addr.bus - *buses.start());
    Ok(bus << 20
        | usize::from(addr.device) << 15
        | usize::from(addr.function) << 12
        | usize::from(offset))
}

impl<M: RegisterAccess> ConfigAccess for Ecam<M> {
    fn read32(&self, addr: Bdf, offset: u16) -> u32 {
        self.try_read32(addr, offset).unwrap_or(!0)
    }
    fn write32(&self, addr: Bdf, offset: u16, value: u32) {
        if let Err(e) = self.try_write32(addr, offset, value) {
            log::warn!("pci {addr}: config write dropped: {e}");
        }
    }
    fn extended(&self) -> bool {
        true
    }
    fn reaches(&self, segment: u16, bus: u8) -> bool {
        segment == self.segment && (self.start_bus..=self.end_bus).contains(&bus)
    }
    fn read16(&self, addr: Bdf, offset: u16) -> u16 {
        match self.address(addr, offset & !1) {
            Ok(o) => self.mmio.read16(o),
            Err(_) => !0,
        }
    }
    fn read8(&self, addr: Bdf, offset: u16) -> u8 {
        match self.address(addr, offset) {
            Ok(o) => self.mmio.read8(o),
            Err(_) => !0,
        }
    }
    fn write16(&self, addr: Bdf, offset: u16, value: u16) {
        match self.address(addr, offset & !1) {
            Ok(o) => self.mmio.write16(o, value),
            Err(e) => log::warn!("pci {addr}: config write dropped: {e}"),
        }
    }
    fn write8(&self, addr: Bdf, offset: u16, value: u8) {
        match self.address(addr, offset) {
            Ok(o) => self.mmio.write8(o, value),
            Err(e) => log::warn!("pci {addr}: config write dropped: {e}"),
        }
    }
}

/// CONFIG_ADDRESS I/O port (PCI Local Bus spec 3.0 §3.2.2.3.2).
pub const CONFIG_ADDRESS_PORT: u16 = 0xCF8;
/// CONFIG_DATA I/O port.
pub const CONFIG_DATA_PORT: u16 = 0xCFC;
/// Enable bit of CONFIG_ADDRESS.
pub const CONFIG_ENABLE: u32 = 1 << 31;

/// The CONFIG_ADDRESS value selecting dword `offset` of `addr`: enable bit 31,
/// bus 23:16, device 15:11, function 10:8, register 7:2, bits 1:0 zero.
pub fn legacy_address(addr: Bdf, offset: u16) -> Result<u32, ConfigError> {
    if !addr.is_valid() {
        return Err(ConfigError::BadAddress);
    }
    if addr.segment != 0 {
        return Err(ConfigError::WrongSegment {
            segment: addr.segment,
            served: 0,
        });
    }
    if offset >= LEGACY_CONFIG_SIZE {
        return Err(ConfigError::BadOffset {
            offset,
            limit: LEGACY_CONFIG_SIZE,
        });
    }
    Ok(CONFIG_ENABLE
        | u32::from(addr.bus) << 16
        | u32::from(addr.device) << 11
        | u32::from(addr.function) << 8
        | u32::from(offset & 0xFC))
}

/// Configuration mechanism #1 over I/O ports: `ports` covers 0xCF8..0xD00 (8 ports;
/// offset 0 = CONFIG_ADDRESS, offset 4..8 = CONFIG_DATA).
///
/// Every access is two port operations (select, then transfer), so a lock keeps them
/// together; interrupt handlers that touch config space must not interrupt a holder
/// on the same CPU (the kernel's business, as with any spin lock).
pub struct Legacy<P> {
    ports: P,
    lock: spin::Mutex<()>,
}

impl<P: RegisterAccess> Legacy<P> {
    /// Wraps the 8-port block at 0xCF8.
    pub fn new(ports: P) -> Self {
        Legacy {
            ports,
            lock: spin::Mutex::new(()),
        }
    }

    /// A dword read, or why it cannot be made.
    pub fn try_read32(&self, addr: Bdf, offset: u16) -> Result<u32, ConfigError> {
        let a = legacy_address(addr, offset)?;
        let _g = self.lock.lock();
        self.ports.write32(0, a);
        Ok(self.ports.read32(4))
    }

    /// A dword write, or why it cannot be made.
    pub fn try_write32(&self, addr: Bdf, offset: u16, value: u32) -> Result<(), ConfigError> {
        let a = legacy_address(addr, offset)?;
        let _g = self.lock.lock();
        self.ports.write32(0, a);
        self.ports.write32(4, value);
        Ok(())
    }
}

impl<P: RegisterAccess> ConfigAccess for Legacy<P> {
    fn read32(&self, addr: Bdf, offset: u16) -> u32 {
        self.try_read32(addr, offset).unwrap_or(!0)
    }
    fn write32(&self, addr: Bdf, offset: u16, value: u32) {
        if let Err(e) = self.try_write32(addr, offset, value) {
            log::warn!("pci {addr}: config write dropped: {e}");
        }
    }
    fn reaches(&self, segment: u16, _bus: u8) -> bool {
        segment == 0
    }
    // Narrow accesses use the byte lanes of CONFIG_DATA (0xCFC + offset & 3), so no
    // read-modify-write touches neighbouring registers.
    fn read16(&self, addr: Bdf, offset: u16) -> u16 {
        let Ok(a) = legacy_address(addr, offset) else {
            return !0;
        };
        let _g = self.lock.lock();
        self.ports.write32(0, a);
        self.ports.read16(4 + usize::from(offset & 2))
    }
    fn read8(&self, addr: Bdf, offset: u16) -> u8 {
        let Ok(a) = legacy_address(addr, offset) else {
            return !0;
        };
        let _g = self.lock.lock();
        self.ports.write32(0, a);
        self.ports.read8(4 + usize::from(offset & 3))
    }
    fn write16(&self, addr: Bdf, offset: u16, value: u16) {
        match legacy_address(addr, offset) {
            Ok(a) => {
                let _g = self.lock.lock();
                self.ports.write32(0, a);
                self.ports.write16(4 + usize::from(offset & 2), value);
            }
            Err(e) => log::warn!("pci {addr}: config write dropped: {e}"),
        }
    }
    fn write8(&self, addr: Bdf, offset: u16, value: u8) {
        match legacy_address(addr, offset) {
            Ok(a) => {
                let _g = self.lock.lock();
                self.ports.write32(0, a);
                self.ports.write8(4 + usize::from(offset & 3), value);
            }
            Err(e) => log::warn!("pci {addr}: config write dropped: {e}"),
        }
    }
}
