//! ACPI table decoders for Busmaster.
//!
//! * [`dmar`]: our own parser for the DMA Remapping table (Intel VT-d spec,
//!   chapter 8), the input of the IOMMU layer. Every length is checked; a
//!   malformed table is an [`Error`] value, quirks seen in real firmware are
//!   [`Warning`]s next to the parse result.
//! * [`platform`]: what the kernel takes from MADT, MCFG, HPET and FADT
//!   (APICs, overrides, CPUs, ECAM windows, HPET base, PM1/reset/flags), read
//!   with the `acpi` crate. The kernel calls these at boot; `acpi-decode` and
//!   the corpus test call the same functions on dumps ([`platform::image`]).
//! * [`madt`], [`mcfg`], [`hpet`], [`fadt`]: field-by-field decoders over
//!   byte slices for `acpi-decode`'s full listing (every field, offsets,
//!   warnings), which the `acpi` crate does not give. The kernel does not use them.
//! * [`property`]: `_DSD` device properties (the `ExternalFacingPort` of a
//!   PCIe root port), decoded from a value tree the kernel builds from its
//!   AML interpreter's result.
//! * [`walk`]: RSDP → RSDT/XSDT → table list over a [`walk::PhysRead`] trait,
//!   so it runs against a byte image on the host and the direct map in the
//!   kernel.
//!
//! No function here panics or reads out of bounds on any input: all reads go
//! through the checked helpers in `bytes`, and every loop over variable-length
//! records advances by a validated, non-zero length.

#![cfg_attr(not(test), no_std)]
// `Madt::parse_interrupt_model_in` takes an allocator (`alloc::alloc::Global`).
#![feature(allocator_api)]
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
// Tests may index and unwrap: a panic there is a test failure, not a parser bug.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

extern crate alloc;

pub mod any;
mod bytes;
#[cfg(test)]
mod decoder_tests;
pub mod dmar;
mod error;
pub mod fadt;
mod gas;
pub mod hpet;
pub mod madt;
pub mod mcfg;
pub mod platform;
pub mod property;
#[cfg(test)]
mod property_tests;
pub mod sdt;
#[cfg(test)]
mod testutil;
pub mod walk;
#[cfg(test)]
mod walk_tests;

pub use bytes::Lossy;
pub use error::{Error, ErrorKind, Location, Signature, Warning, WarningKind};
pub use gas::GenericAddress;
pub use sdt::{fix_checksum, SdtHeader, Table, HEADER_LEN};
