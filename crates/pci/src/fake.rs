//! A behavioural model of PCI configuration space for host tests (feature `fake`).
//!
//! Each function is 4 KiB of dwords with, per dword, a mask of writable bits and a
//! mask of write-1-to-clear bits (the way QEMU models config space), so a BAR answers
//! an all-ones write with its size mask and type bits, Status error bits clear on
//! writing 1, and read-only registers ignore writes. Absent functions read all-ones.
//! Every BAR write is logged with the Command register value at that moment, so tests
//! can check that decoding was off while a BAR held all-ones.
//!
//! [`FakeConfig`] implements [`ConfigAccess`] directly (with byte-enable narrow
//! writes, like hardware); [`FakePorts`] and [`FakeEcamWindow`] put it behind the
//! 0xCF8/0xCFC ports and an ECAM window so [`crate::Legacy`] and [`crate::Ecam`] can be
//! tested end to end. [`FakeMmio`] is plain register memory (an MSI-X table BAR).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use hal::RegisterAccess;

use crate::addr::Bdf;
use crate::config::ConfigAccess;
use crate::regs;

const DWORDS: usize = 1024;

/// One function's configuration space.
#[derive(Clone)]
pub struct FakeFunction {
    data: Box<[u32; DWORDS]>,
    wmask: Box<[u32; DWORDS]>,
    w1c: Box<[u32; DWORDS]>,
    /// PMCSR offset and No_Soft_Reset, when the function has a PM capability.
    pm: Option<(u16, bool)>,
}

fn di(offset: u16) -> usize {
    usize::from(offset / 4) % DWORDS
}

impl FakeFunction {
    fn blank() -> Self {
        let mut f = FakeFunction {
            data: Box::new([0; DWORDS]),
            wmask: Box::new([0; DWORDS]),
            w1c: Box::new([0; DWORDS]),
            pm: None,
        };
        // Command: the defined bits are writable; Status: error bits 15:11 and 8 are
        // RW1C (PCI Local Bus spec 3.0 §6.2.3).
        f.wmask[di(regs::COMMAND)] = 0x0000_07FF;
        f.w1c[di(regs::COMMAND)] = 0xF900_0000;
        // Cache line size / latency timer.
        f.wmask[3] = 0x0000_FFFF;
        f
    }

    /// A type 0 function `vendor:device` with 24-bit `class` and `revision`.
    pub fn endpoint(vendor: u16, device: u16, class: u32, revision: u8) -> Self {
        let mut f = Self::blank();
        f.data[0] = u32::from(device) << 16 | u32::from(vendor);
        f.data[2] = (class & 0xFF_FFFF) << 8 | u32::from(revision);
        f.wmask[di(regs::INTERRUPT_LINE)] = 0xFF;
        f
    }

    /// A type 1 (PCI-to-PCI bridge) function with bus numbers programmed.
    pub fn bridge(vendor: u16, device: u16, primary: u8, secondary: u8, subordinate: u8) -> Self {
        let mut f = Self::blank();
        f.data[0] = u32::from(device) << 16 | u32::from(vendor);
        f.data[2] = 0x06_0400 << 8;
        f.data[3] = 0x01 << 16;
        f.data[6] = u32::from(subordinate) << 16 | u32::from(secondary) << 8 | u32::from(primary);
        f.wmask[6] = 0x00FF_FFFF;
        f.wmask[di(regs::INTERRUPT_LINE)] = 0xFF;
        f
    }

    /// A function from raw dwords (missing ones 0) and writable masks (missing ones
    /// all-ones): anything at all, for property tests. Status stays RW1C.
    pub fn raw(data: &[u32], wmask: &[u32]) -> Self {
        let mut f = Self::blank();
        for (i, d) in data.iter().take(DWORDS).enumerate() {
            f.data[i] = *d;
        }
        for i in 0..DWORDS {
            f.wmask[i] = wmask.get(i).copied().unwrap_or(!0);
        }
        // Status has no plain read-write bits in any header (PCI 3.0 §6.2.3): keep
        // it read-only / RW1C even in a random function.
        f.wmask[di(regs::COMMAND)] &= 0x0000_FFFF;
        f
    }

    /// Sets header type bit 7.
    pub fn multifunction(mut self) -> Self {
        self.data[3] |= 0x80 << 16;
        self
    }

    /// Sets a dword (no masks applied).
    pub fn set32(mut self, offset: u16, value: u32) -> Self {
        self.data[di(offset)] = value;
        self
    }

    /// Sets a 16-bit field (no masks applied).
    pub fn set16(mut self, offset: u16, value: u16) -> Self {
        let sh = u32::from(offset & 2) * 8;
        let d = &mut self.data[di(offset)];
        *d = (*d & !(0xFFFF << sh)) | u32::from(value) << sh;
        self
    }

    /// Sets an 8-bit field (no masks applied).
    pub fn set8(mut self, offset: u16, value: u8) -> Self {
        let sh = u32::from(offset & 3) * 8;
        let d = &mut self.data[di(offset)];
        *d = (*d & !(0xFF << sh)) | u32::from(value) << sh;
        self
    }

    /// Makes `mask` bits of the dword at `offset` writable.
    pub fn writable(mut self, offset: u16, mask: u32) -> Self {
        self.wmask[di(offset)] |= mask;
        self
    }

    /// Command register value.
    pub fn command(self, cmd: u16) -> Self {
        self.set16(regs::COMMAND, cmd)
    }

    /// Status register value (e.g. error bits, to check they survive).
    pub fn status(self, status: u16) -> Self {
        self.set16(regs::STATUS, status)
    }

    /// Subsystem vendor and ID.
    pub fn subsystem(self, vendor: u16, id: u16) -> Self {
        self.set32(
            regs::SUBSYSTEM_VENDOR_ID,
            u32::from(id) << 16 | u32::from(vendor),
        )
    }

    /// Interrupt line and pin.
    pub fn interrupt(self, line: u8, pin: u8) -> Self {
        self.set8(regs::INTERRUPT_LINE, line)
            .set8(regs::INTERRUPT_PIN, pin)
    }

    fn bar_off(index: u8) -> u16 {
        regs::BAR0 + 4 * u16::from(index)
    }

    /// A 32-bit memory BAR of `size` (a power of two >= 16) at `address`.
    pub fn bar32(mut self, index: u8, size: u32, prefetchable: bool, address: u32) -> Self {
        let o = di(Self::bar_off(index));
        let ty = if prefetchable { 0x8 } else { 0 };
        self.data[o] = (address & !(size - 1)) | ty;
        self.wmask[o] = !(size - 1) & !0xF;
        self
    }

    /// A 64-bit memory BAR of `size` at `address` in slots `index`, `index + 1`.
    pub fn bar64(mut self, index: u8, size: u64, prefetchable: bool, address: u64) -> Self {
        let lo = di(Self::bar_off(index));
        let ty = 0x4 | if prefetchable { 0x8 } else { 0 };
        let mask = !(size - 1);
        let addr = address & mask;
        self.data[lo] = (addr as u32 & !0xF) | ty;
        self.wmask[lo] = mask as u32 & !0xF;
        self.data[lo + 1] = (addr >> 32) as u32;
        self.wmask[lo + 1] = (mask >> 32) as u32;
        self
    }

    /// An I/O BAR of `size` (>= 4) at `port`; `decode16` hardwires the upper 16
    /// address bits to zero, as 16-bit I/O decoders do.
    pub fn bar_io(mut self, index: u8, size: u32, port: u32, decode16: bool) -> Self {
        let o = di(Self::bar_off(index));
        self.data[o] = (port & !(size - 1)) | 1;
        let mut m = !(size - 1) & !0x3;
        if decode16 {
            m &= 0xFFFF;
        }
        self.wmask[o] = m;
        self
    }

    /// Capability pointer at 0x34 (raw; may point anywhere) and Status bit 4.
    pub fn cap_ptr(self, ptr: u8) -> Self {
        let st = (self.data[1] >> 16) as u16 | regs::STATUS_CAP_LIST;
        self.set8(regs::CAPABILITIES_PTR, ptr)
            .set16(regs::STATUS, st)
    }

    /// A capability header `id`, `next` at `offset`.
    pub fn cap(self, offset: u8, id: u8, next: u8) -> Self {
        self.set16(u16::from(offset), u16::from(next) << 8 | u16::from(id))
    }

    /// An MSI capability at `offset` (header, Message Control with the capability
    /// bits, writable address/data/mask registers).
    pub fn msi(
        self,
        offset: u8,
        next: u8,
        is_64bit: bool,
        per_vector_mask: bool,
        mmc_log2: u8,
    ) -> Self {
        let o = u16::from(offset);
        let ctl = u16::from(mmc_log2 & 7) << 1
            | if is_64bit { 1 << 7 } else { 0 }
            | if per_vector_mask { 1 << 8 } else { 0 };
        let mut f = self
            .cap(offset, crate::caps::id::MSI, next)
            .set16(o + 2, ctl)
            // Enable and Multiple Message Enable are writable.
            .writable(o, 0x0071 << 16)
            .writable(o + 4, 0xFFFF_FFFC);
        let data = if is_64bit {
            f = f.writable(o + 8, !0);
            o + 0xC
        } else {
            o + 8
        };
        f = f.writable(data, 0xFFFF);
        if per_vector_mask {
            f = f.writable(data + 4, !0);
        }
        f
    }

    /// An MSI-X capability at `offset`.
    // One argument per field of the capability, in register order.
    #[allow(clippy::too_many_arguments)]
    pub fn msix(
        self,
        offset: u8,
        next: u8,
        table_size: u16,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> Self {
        let o = u16::from(offset);
        self.cap(offset, crate::caps::id::MSIX, next)
            .set16(o + 2, (table_size - 1) & 0x7FF)
            .writable(o, 0xC000 << 16)
            .set32(o + 4, table_offset | u32::from(table_bar & 7))
            .set32(o + 8, pba_offset | u32::from(pba_bar & 7))
    }

    /// A PCI power management capability at `offset` (version 1.2) with PMCSR in
    /// power `state` (0 = D0 .. 3 = D3hot). PowerState is writable; without
    /// `no_soft_reset` the function resets itself on D3hot→D0 as real functions do:
    /// BARs lose their addresses and Command clears (PCI PM 1.2 §3.2.4, §5.4.1).
    pub fn pm(mut self, offset: u8, next: u8, no_soft_reset: bool, state: u8) -> Self {
        let o = u16::from(offset);
        let pmcsr = u16::from(state & 3) | if no_soft_reset { 1 << 3 } else { 0 };
        self.pm = Some((o + 4, no_soft_reset));
        self.cap(offset, crate::caps::id::PM, next)
            .set16(o + 2, 0x0003)
            .set16(o + 4, pmcsr)
            .writable(o + 4, 0x0000_0103)
    }

    /// The function's internal reset on D3hot→D0 without No_Soft_Reset: BARs keep
    /// only their read-only type bits, Command clears.
    fn soft_reset(&mut self) {
        for i in di(regs::BAR0)..di(regs::BAR0) + 6 {
            self.data[i] &= !self.wmask[i];
        }
        self.data[di(regs::COMMAND)] &= 0xFFFF_0000;
    }

    /// A PCI Express capability at `offset` with Device/Port Type `port_type`.
    pub fn pcie(self, offset: u8, next: u8, port_type: u8) -> Self {
        self.cap(offset, crate::caps::id::EXP, next)
            .set16(u16::from(offset) + 2, u16::from(port_type & 0xF) << 4 | 2)
    }

    /// An extended capability header at `offset` (>= 0x100).
    pub fn ext_cap(self, offset: u16, id: u16, version: u8, next: u16) -> Self {
        self.set32(
            offset,
            u32::from(next & 0xFFC) << 20 | u32::from(version & 0xF) << 16 | u32::from(id),
        )
    }
}

/// A BAR write as the fake saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarWrite {
    /// Function.
    pub bdf: Bdf,
    /// BAR register offset.
    pub offset: u16,
    /// Value written.
    pub value: u32,
    /// Command register at the time of the write.
    pub command: u16,
}

#[derive(Default)]
struct State {
    functions: BTreeMap<Bdf, FakeFunction>,
    aliased: Vec<(u16, u8, u8)>,
    bar_writes: Vec<BarWrite>,
}

/// A machine's worth of configuration space.
pub struct FakeConfig {
    state: RefCell<State>,
    extended: bool,
    accesses: Cell<u64>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeConfig {
    /// Empty, with the extended space reachable (as through ECAM).
    pub fn new() -> Self {
        FakeConfig {
            state: RefCell::new(State::default()),
            extended: true,
            accesses: Cell::new(0),
        }
    }

    /// Empty, with only the first 256 bytes reachable (as through 0xCF8/0xCFC).
    pub fn conventional() -> Self {
        FakeConfig {
            extended: false,
            ..Self::new()
        }
    }

    /// Puts `f` at `bdf`.
    pub fn add(&self, bdf: Bdf, f: FakeFunction) -> &Self {
        self.state.borrow_mut().functions.insert(bdf, f);
        self
    }

    /// Makes device `bdf.device` ignore the function number: every function reads
    /// and writes function 0.
    pub fn alias_functions(&self, bdf: Bdf) {
        self.state
            .borrow_mut()
            .aliased
            .push((bdf.segment, bdf.bus, bdf.device));
    }

    /// Reads a dword without side effects or masks (`None`: absent).
    pub fn peek32(&self, bdf: Bdf, offset: u16) -> Option<u32> {
        let st = self.state.borrow();
        let b = Self::resolve(&st, bdf);
        st.functions.get(&b).map(|f| f.data[di(offset)])
    }

    /// The 16-bit field at `offset`, without side effects.
    pub fn peek16(&self, bdf: Bdf, offset: u16) -> Option<u16> {
        self.peek32(bdf, offset)
            .map(|d| (d >> (u32::from(offset & 2) * 8)) as u16)
    }

    /// Every BAR write so far.
    pub fn bar_writes(&self) -> Vec<BarWrite> {
        self.state.borrow().bar_writes.clone()
    }

    /// Number of config accesses so far.
    pub fn accesses(&self) -> u64 {
        self.accesses.get()
    }

    fn resolve(st: &State, bdf: Bdf) -> Bdf {
        if st
            .aliased
            .iter()
            .any(|&(s, b, d)| (s, b, d) == (bdf.segment, bdf.bus, bdf.device))
        {
            Bdf { function: 0, ..bdf }
        } else {
            bdf
        }
    }

    fn reachable(&self, offset: u16) -> bool {
        offset < if self.extended { 4096 } else { 256 }
    }

    fn read_dword(&self, bdf: Bdf, offset: u16) -> u32 {
        self.accesses.set(self.accesses.get() + 1);
        if !self.reachable(offset) {
            return !0;
        }
        self.peek32(bdf, offset).unwrap_or(!0)
    }

    /// A write of the bytes selected by `byte_enable` (bit n = byte n of the dword).
    pub fn write_lanes(&self, bdf: Bdf, offset: u16, value: u32, byte_enable: u8) {
        self.accesses.set(self.accesses.get() + 1);
        if !self.reachable(offset) {
            return;
        }
        let mut st = self.state.borrow_mut();
        let b = Self::resolve(&st, bdf);
        let Some(f) = st.functions.get_mut(&b) else {
            return;
        };
        let i = di(offset);
        let lanes = (0..4).fold(0u32, |m, n| {
            if byte_enable & (1 << n) != 0 {
                m | 0xFF << (8 * n)
            } else {
                m
            }
        });
        let wm = f.wmask[i] & lanes;
        let old = f.data[i];
        let mut new = (old & !wm) | (value & wm);
        new &= !(value & f.w1c[i] & lanes);
        f.data[i] = new;
        if let Some((pmcsr, no_soft_reset)) = f.pm {
            let sh = u32::from(pmcsr & 2) * 8;
            let state = |d: u32| (d >> sh) & 3;
            if di(pmcsr) == i && state(old) == 3 && state(new) == 0 && !no_soft_reset {
                f.soft_reset();
            }
        }
        let layout = (f.data[3] >> 16) as u8 & 0x7F;
        let command = f.data[1] as u16;
        let bar_end = match layout {
            0 => regs::BAR0 + 24,
            1 => regs::BAR0 + 8,
            _ => regs::BAR0,
        };
        if (regs::BAR0..bar_end).contains(&(offset & !3)) {
            st.bar_writes.push(BarWrite {
                bdf,
                offset: offset & !3,
                value,
                command,
            });
        }
    }
}

impl ConfigAccess for FakeConfig {
    fn read32(&self, addr: Bdf, offset: u16) -> u32 {
        self.read_dword(addr, offset)
    }
    fn write32(&self, addr: Bdf, offset: u16, value: u32) {
        self.write_lanes(addr, offset, value, 0xF);
    }
    fn extended(&self) -> bool {
        self.extended
    }
    fn write16(&self, addr: Bdf, offset: u16, value: u16) {
        let sh = u32::from(offset & 2) * 8;
        self.write_lanes(addr, offset, u32::from(value) << sh, 0x3 << (offset & 2));
    }
    fn write8(&self, addr: Bdf, offset: u16, value: u8) {
        let sh = u32::from(offset & 3) * 8;
        self.write_lanes(addr, offset, u32::from(value) << sh, 1 << (offset & 3));
    }
}

/// A config mechanism that only does 32-bit accesses, to exercise the trait's
/// read-modify-write defaults for 8/16-bit access.
pub struct DwordOnly<'a>(pub &'a FakeConfig);

impl ConfigAccess for DwordOnly<'_> {
    fn read32(&self, addr: Bdf, offset: u16) -> u32 {
        self.0.read32(addr, offset)
    }
    fn write32(&self, addr: Bdf, offset: u16, value: u32) {
        self.0.write32(addr, offset, value)
    }
    fn extended(&self) -> bool {
        self.0.extended
    }
}

mod access;
pub mod machines;

pub use access::{FakeEcamWindow, FakeMmio, FakePorts};
