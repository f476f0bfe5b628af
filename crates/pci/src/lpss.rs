//! Intel LPSS function layout (hw-facts §1.1, §1.2): where the host controller, the
//! private registers and the iDMA64 sit in BAR0, and how to tell from the CAPS
//! register whether this function has an iDMA64. An LPSS parent driver reads CAPS
//! through its BAR0 mapping and, when iDMA is present, registers
//! [`idma64_child`] before the host-controller child (Linux registers the iDMA cell
//! first so channels exist when the host driver probes).

use crate::driver::ChildSpec;
use crate::names::LpssFunction;

/// BAR holding all LPSS blocks.
pub const LPSS_BAR: u8 = 0;
/// Host controller (DW UART / DW I2C / PXA2xx SSP) registers.
pub const HOST_OFFSET: u64 = 0x000;
/// Host controller window length.
pub const HOST_LEN: u64 = 0x200;
/// LPSS private registers.
pub const PRIV_OFFSET: u64 = 0x200;
/// Private register window length.
pub const PRIV_LEN: u64 = 0x100;
/// iDMA64 registers.
pub const IDMA64_OFFSET: u64 = 0x800;
/// iDMA64 window length.
pub const IDMA64_LEN: u64 = 0x800;
/// Child name the iDMA64 platform driver matches (Linux `LPSS_IDMA64_DRIVER_NAME`).
pub const IDMA64_NAME: &str = "idma64";

/// Private register offsets (from [`PRIV_OFFSET`]).
pub mod private {
    /// Reset control: bits 1:0 function out of reset, bit 2 iDMA out of reset.
    pub const RESETS: u64 = 0x04;
    /// Value that takes function and iDMA out of reset.
    pub const RESETS_RELEASE: u32 = 0x7;
    /// Remap address (64-bit, low dword first): BAR0's physical base.
    pub const REMAP_ADDR: u64 = 0x40;
    /// Capabilities: type in bits 7:4, bit 8 = no iDMA.
    pub const CAPS: u64 = 0xFC;
    /// CAPS bit 8: no iDMA64 behind this function.
    pub const CAPS_NO_IDMA: u32 = 1 << 8;
}

/// Whether the function has an iDMA64, from the CAPS register (hw-facts §1.2:
/// presence is a runtime property; there is no per-ID list).
pub fn has_idma(caps: u32) -> bool {
    caps & private::CAPS_NO_IDMA == 0
}

/// Function type from CAPS bits 7:4 (0 I2C, 1 UART, 2 SPI).
pub fn caps_function(caps: u32) -> Option<LpssFunction> {
    match (caps >> 4) & 0xF {
        0 => Some(LpssFunction::I2c),
        1 => Some(LpssFunction::Uart),
        2 => Some(LpssFunction::Spi),
        _ => None,
    }
}

/// The child spec for the iDMA64 at BAR0 + 0x800.
pub fn idma64_child() -> ChildSpec {
    ChildSpec {
        name: IDMA64_NAME,
        bar: LPSS_BAR,
        offset: IDMA64_OFFSET,
        len: IDMA64_LEN,
    }
}

/// The child spec for the host controller, named after its function type (the
/// Linux MFD cell names).
pub fn host_child(function: LpssFunction) -> ChildSpec {
    ChildSpec {
        name: match function {
            LpssFunction::Uart => "dw-apb-uart",
            LpssFunction::I2c => "i2c_designware",
            LpssFunction::Spi => "pxa2xx-spi",
        },
        bar: LPSS_BAR,
        offset: HOST_OFFSET,
        len: HOST_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_decoding() {
        assert!(has_idma(0x10));
        assert!(!has_idma(0x110));
        assert_eq!(caps_function(0x10), Some(LpssFunction::Uart));
        assert_eq!(caps_function(0x120), Some(LpssFunction::Spi));
        assert_eq!(caps_function(0x00), Some(LpssFunction::I2c));
        assert_eq!(caps_function(0x30), None);
        assert_eq!(idma64_child().offset, 0x800);
        assert_eq!(host_child(LpssFunction::I2c).name, "i2c_designware");
    }
}
