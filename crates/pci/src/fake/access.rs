//! The fake configuration space behind the access paths the kernel uses: the
//! 0xCF8/0xCFC ports ([`FakePorts`]) and an ECAM window ([`FakeEcamWindow`]), plus a
//! plain fake MMIO block ([`FakeMmio`]).

use super::*;

/// The eight ports 0xCF8..0xD00 in front of a [`FakeConfig`]: offset 0 latches
/// CONFIG_ADDRESS, offsets 4..8 transfer data for the latched address (when its
/// enable bit is set). Records every port write.
pub struct FakePorts<'a> {
    cfg: &'a FakeConfig,
    address: Cell<u32>,
    /// (port offset, value) of every write.
    pub writes: RefCell<Vec<(usize, u32)>>,
}

impl<'a> FakePorts<'a> {
    /// Ports in front of `cfg`.
    pub fn new(cfg: &'a FakeConfig) -> Self {
        FakePorts {
            cfg,
            address: Cell::new(0),
            writes: RefCell::new(Vec::new()),
        }
    }

    fn target(&self) -> Option<(Bdf, u16)> {
        let a = self.address.get();
        if a & crate::config::CONFIG_ENABLE == 0 {
            return None;
        }
        let bdf = Bdf::new(
            0,
            (a >> 16) as u8,
            ((a >> 11) & 0x1F) as u8,
            ((a >> 8) & 7) as u8,
        )?;
        Some((bdf, (a & 0xFC) as u16))
    }

    fn data_read(&self, lane: usize, width: usize) -> u32 {
        match self.target() {
            Some((bdf, off)) if (4..8).contains(&lane) => {
                let d = self.cfg.read32(bdf, off);
                let sh = (lane - 4) * 8;
                let v = d >> sh;
                if width >= 4 {
                    v
                } else {
                    v & ((1u32 << (width * 8)) - 1)
                }
            }
            _ => !0,
        }
    }

    fn data_write(&self, lane: usize, width: usize, value: u32) {
        if let Some((bdf, off)) = self.target() {
            if (4..8).contains(&lane) {
                let sh = (lane - 4) * 8;
                let be = (((1u32 << width) - 1) << (lane - 4)) as u8;
                self.cfg.write_lanes(bdf, off, value << sh, be);
            }
        }
    }
}

impl RegisterAccess for FakePorts<'_> {
    fn read8(&self, offset: usize) -> u8 {
        self.data_read(offset, 1) as u8
    }
    fn read16(&self, offset: usize) -> u16 {
        self.data_read(offset, 2) as u16
    }
    fn read32(&self, offset: usize) -> u32 {
        if offset == 0 {
            return self.address.get();
        }
        self.data_read(offset, 4)
    }
    fn write8(&self, offset: usize, value: u8) {
        self.writes.borrow_mut().push((offset, u32::from(value)));
        self.data_write(offset, 1, u32::from(value));
    }
    fn write16(&self, offset: usize, value: u16) {
        self.writes.borrow_mut().push((offset, u32::from(value)));
        self.data_write(offset, 2, u32::from(value));
    }
    fn write32(&self, offset: usize, value: u32) {
        self.writes.borrow_mut().push((offset, value));
        if offset == 0 {
            self.address.set(value);
        } else {
            self.data_write(offset, 4, value);
        }
    }
}

/// An ECAM window in front of a [`FakeConfig`] for `segment`, window offset 0 = bus
/// `start_bus`. Records every offset accessed.
pub struct FakeEcamWindow<'a> {
    cfg: &'a FakeConfig,
    segment: u16,
    start_bus: u8,
    /// Every window offset accessed, in order.
    pub offsets: RefCell<Vec<usize>>,
}

impl<'a> FakeEcamWindow<'a> {
    /// Window in front of `cfg`.
    pub fn new(cfg: &'a FakeConfig, segment: u16, start_bus: u8) -> Self {
        FakeEcamWindow {
            cfg,
            segment,
            start_bus,
            offsets: RefCell::new(Vec::new()),
        }
    }

    fn decode(&self, offset: usize) -> Option<(Bdf, u16)> {
        self.offsets.borrow_mut().push(offset);
        let bus = u8::try_from((offset >> 20) + usize::from(self.start_bus)).ok()?;
        let bdf = Bdf::new(
            self.segment,
            bus,
            ((offset >> 15) & 0x1F) as u8,
            ((offset >> 12) & 7) as u8,
        )?;
        Some((bdf, (offset & 0xFFF) as u16))
    }
}

impl RegisterAccess for FakeEcamWindow<'_> {
    fn read8(&self, offset: usize) -> u8 {
        self.decode(offset)
            .map_or(!0, |(b, o)| self.cfg.read8(b, o))
    }
    fn read16(&self, offset: usize) -> u16 {
        self.decode(offset)
            .map_or(!0, |(b, o)| self.cfg.read16(b, o))
    }
    fn read32(&self, offset: usize) -> u32 {
        self.decode(offset)
            .map_or(!0, |(b, o)| self.cfg.read32(b, o))
    }
    fn write8(&self, offset: usize, value: u8) {
        if let Some((b, o)) = self.decode(offset) {
            self.cfg.write8(b, o, value)
        }
    }
    fn write16(&self, offset: usize, value: u16) {
        if let Some((b, o)) = self.decode(offset) {
            self.cfg.write16(b, o, value)
        }
    }
    fn write32(&self, offset: usize, value: u32) {
        if let Some((b, o)) = self.decode(offset) {
            self.cfg.write32(b, o, value)
        }
    }
}

/// Plain register memory (e.g. the BAR holding an MSI-X table), recording writes.
pub struct FakeMmio {
    bytes: RefCell<Vec<u8>>,
    /// (offset, width in bytes, value) of every write, in order.
    pub writes: RefCell<Vec<(usize, usize, u64)>>,
}

impl FakeMmio {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        FakeMmio {
            bytes: RefCell::new(vec![0; len]),
            writes: RefCell::new(Vec::new()),
        }
    }

    fn get(&self, offset: usize, width: usize) -> u64 {
        let b = self.bytes.borrow();
        (0..width).fold(0u64, |v, i| {
            v | u64::from(b.get(offset + i).copied().unwrap_or(0xFF)) << (8 * i)
        })
    }

    fn put(&self, offset: usize, width: usize, value: u64) {
        self.writes.borrow_mut().push((offset, width, value));
        let mut b = self.bytes.borrow_mut();
        for i in 0..width {
            if let Some(x) = b.get_mut(offset + i) {
                *x = (value >> (8 * i)) as u8;
            }
        }
    }
}

impl RegisterAccess for FakeMmio {
    fn read8(&self, offset: usize) -> u8 {
        self.get(offset, 1) as u8
    }
    fn read16(&self, offset: usize) -> u16 {
        self.get(offset, 2) as u16
    }
    fn read32(&self, offset: usize) -> u32 {
        self.get(offset, 4) as u32
    }
    fn write8(&self, offset: usize, value: u8) {
        self.put(offset, 1, u64::from(value))
    }
    fn write16(&self, offset: usize, value: u16) {
        self.put(offset, 2, u64::from(value))
    }
    fn write32(&self, offset: usize, value: u32) {
        self.put(offset, 4, u64::from(value))
    }
}
