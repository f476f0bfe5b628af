//! `lpss`: the Intel LPSS PCI function binding, after Linux's `drivers/mfd/intel-lpss.c`
//! (hw-facts §1.1–1.2), generic over BAR0 as a [`RegisterAccess`] window so that it runs
//! on the host against the behavioural model (`devmodels::lpss`) as in the kernel.
//!
//! * [`bring_up`]: read CAPS through the private register block at BAR0 + 0x200 (all
//!   ones: the function does not decode), take the function out of reset (RESETS: 0,
//!   then 0x7, as Linux's `intel_lpss_deassert_reset`), and write the function's own
//!   BAR0 address into REMAP_ADDR (`intel_lpss_set_remap_addr`). Returns the function
//!   type and whether an iDMA64 is present (CAPS bit 8 clear).
//! * [`SubWindow`]: a register window at an offset of BAR0: the iDMA64 block at
//!   BAR0 + 0x800 ([`idma64_window`]), the host controller at BAR0 + 0x000
//!   ([`host_window`]).
//! * [`sim`]: the simulated function the kernel offers with `idma64=sim` /
//!   `idma64=sim-uart`: its configuration space and how config writes reach the model
//!   (power state, MSI vector).
//!
//! The register offsets are `pci::lpss`'s (the MFD children's resources are described
//! there); this crate is the one that programs them. The kernel keeps the thin bindings:
//! ioremap, interrupt vectors, MSI, the dmaengine registration.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

use hal::RegisterAccess;
use pci::lpss::{self as regs, private};
pub use pci::names::LpssFunction;

pub mod sim;

/// What [`bring_up`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LpssInfo {
    /// The CAPS register.
    pub caps: u32,
    /// The host controller type (CAPS bits 7:4), if a known one.
    pub function: Option<LpssFunction>,
    /// Whether an iDMA64 sits at BAR0 + 0x800.
    pub has_idma: bool,
}

/// Why [`bring_up`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LpssError {
    /// CAPS reads all-ones: the function does not decode (not in D0?).
    NotDecoding,
}

impl fmt::Display for LpssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LpssError::NotDecoding => {
                f.write_str("CAPS reads all-ones: the function does not decode (not in D0?)")
            }
        }
    }
}

/// Offset of a private register in BAR0.
fn priv_reg(r: u64) -> usize {
    (regs::PRIV_OFFSET + r) as usize
}

/// Brings up the LPSS function whose BAR0 is `bar0` (mapped) at bus address
/// `bar_addr`: checks that it decodes, releases its resets and tells it its address.
pub fn bring_up<R: RegisterAccess>(bar0: &R, bar_addr: u64) -> Result<LpssInfo, LpssError> {
    let caps = bar0.read32(priv_reg(private::CAPS));
    if caps == u32::MAX {
        return Err(LpssError::NotDecoding);
    }
    // Out of reset (Linux writes 0, then 0x7), and tell the block its own address.
    bar0.write32(priv_reg(private::RESETS), 0);
    bar0.write32(priv_reg(private::RESETS), private::RESETS_RELEASE);
    bar0.write32(priv_reg(private::REMAP_ADDR), bar_addr as u32);
    bar0.write32(priv_reg(private::REMAP_ADDR) + 4, (bar_addr >> 32) as u32);
    Ok(LpssInfo {
        caps,
        function: regs::caps_function(caps),
        has_idma: regs::has_idma(caps),
    })
}

/// A register window `base` bytes into another one.
#[derive(Debug, Clone, Copy)]
pub struct SubWindow<R> {
    inner: R,
    base: usize,
}

impl<R: RegisterAccess> SubWindow<R> {
    /// The registers of `inner` from `base` on.
    pub fn new(inner: R, base: usize) -> Self {
        SubWindow { inner, base }
    }
    /// The outer window.
    pub fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: RegisterAccess> RegisterAccess for SubWindow<R> {
    fn read8(&self, o: usize) -> u8 {
        self.inner.read8(self.base + o)
    }
    fn read16(&self, o: usize) -> u16 {
        self.inner.read16(self.base + o)
    }
    fn read32(&self, o: usize) -> u32 {
        self.inner.read32(self.base + o)
    }
    fn write8(&self, o: usize, v: u8) {
        self.inner.write8(self.base + o, v)
    }
    fn write16(&self, o: usize, v: u16) {
        self.inner.write16(self.base + o, v)
    }
    fn write32(&self, o: usize, v: u32) {
        self.inner.write32(self.base + o, v)
    }
}

/// The iDMA64's registers in BAR0 (BAR0 + 0x800).
pub fn idma64_window<R: RegisterAccess>(bar0: R) -> SubWindow<R> {
    SubWindow::new(bar0, regs::IDMA64_OFFSET as usize)
}

/// The host controller's registers in BAR0 (BAR0 + 0x000).
pub fn host_window<R: RegisterAccess>(bar0: R) -> SubWindow<R> {
    SubWindow::new(bar0, regs::HOST_OFFSET as usize)
}

#[cfg(test)]
mod tests;
