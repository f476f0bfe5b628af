//! Bus/device/function addresses: [`Bdf`] lives in `hal` (the layer below both
//! this crate and the IOMMU driver, so there is one PCI address type), and is
//! re-exported here so PCI users name it `pci::Bdf` as before.

pub use hal::addr::{Bdf, BdfError, ShortBdf, MAX_DEVICE, MAX_FUNCTION};

/// The same address as a `pci_types` address (for that crate's header parsers).
pub fn pci_address(b: Bdf) -> pci_types::PciAddress {
    pci_types::PciAddress::new(b.segment, b.bus, b.device, b.function)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_as_pci_types_address() {
        let b = Bdf::new(1, 0x1f, 0x1d, 7).unwrap();
        let a = pci_address(b);
        assert_eq!(
            (a.segment(), a.bus(), a.device(), a.function()),
            (1, 0x1f, 0x1d, 7)
        );
    }
}
