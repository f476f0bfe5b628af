//! One table dump as physical memory, for the `acpi` crate on the host.
//!
//! The `acpi` crate reads tables through an [`AcpiHandler`] that maps physical
//! addresses; a dump on disk has none. [`TableImage`] lays the table out in a
//! byte buffer behind an XSDT that lists only it, and [`SliceHandler`] maps
//! "physical" addresses as offsets into that buffer, so the platform functions
//! run on a dump exactly as they run on the firmware's tables in the kernel.

use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

use crate::error::Error;
use crate::sdt::{fix_checksum, Table, HEADER_LEN};

/// Where the XSDT sits in the image.
const XSDT_AT: usize = 0x40;
/// Where the table sits in the image.
const TABLE_AT: usize = 0x100;
/// Zeros after the table: the `acpi` crate maps `size_of::<T>()` bytes even
/// when the table declares fewer (its largest, the FADT, is 276 bytes).
const PAD: usize = 4096;

/// A table dump laid out as physical memory behind a one-entry XSDT.
#[derive(Debug, Clone)]
pub struct TableImage {
    bytes: Vec<u8>,
}

/// Maps image offsets as physical addresses. Created only by
/// [`TableImage::tables`], which is what makes its addresses in range.
#[derive(Debug, Clone, Copy)]
pub struct SliceHandler<'a> {
    image: &'a [u8],
}

// The acpi crate's handler trait is unsafe to implement; the only unsafe code
// in this crate is here and in `TableImage::tables`/`hpet_base`.
#[allow(unsafe_code)]
impl AcpiHandler for SliceHandler<'_> {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        // The acpi crate maps only the XSDT we wrote and the one table it lists,
        // whose declared length `TableImage::new` checked against the image
        // (plus PAD for short tables); anything else is a bug here, not bad input.
        let region = pa
            .checked_add(size)
            .filter(|_| pa > 0)
            .and_then(|end| self.image.get(pa..end));
        let Some(region) = region else {
            panic!("SliceHandler: {pa:#x}+{size:#x} outside the image");
        };
        let ptr = NonNull::from(region).cast::<T>();
        // SAFETY: `size` bytes from `ptr` lie in the image, which outlives the
        // handler (lifetime 'a); the acpi crate only reads through mappings.
        // Every acpi table type is `repr(C, packed)` (alignment 1).
        unsafe { PhysicalMapping::new(pa, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

impl TableImage {
    /// Lays out `table` (a whole table, header first). Fails as [`Table::new`]
    /// does: a header cut short, a length beyond the dump (the `acpi` crate
    /// would read past it) or a bad checksum.
    pub fn new(table: &[u8]) -> Result<TableImage, Error> {
        let table = Table::new(table, None, 0)?.bytes;
        let declared = table.len();
        let mut xsdt = Vec::with_capacity(HEADER_LEN + 8);
        xsdt.extend_from_slice(b"XSDT");
        xsdt.extend_from_slice(&((HEADER_LEN + 8) as u32).to_le_bytes());
        xsdt.extend_from_slice(&[1, 0]); // revision, checksum
        xsdt.extend_from_slice(b"BUSMST"); // OEM ID
        xsdt.extend_from_slice(b"HOSTDUMP"); // OEM table ID
        xsdt.extend_from_slice(&[0; 12]); // OEM revision, creator ID and revision
        xsdt.extend_from_slice(&(TABLE_AT as u64).to_le_bytes());
        fix_checksum(&mut xsdt);
        let mut bytes = vec![0u8; XSDT_AT];
        bytes.extend_from_slice(&xsdt);
        bytes.resize(TABLE_AT, 0);
        bytes.extend_from_slice(table);
        bytes.resize(TABLE_AT + declared + PAD, 0);
        Ok(TableImage { bytes })
    }

    /// The `acpi` crate's view of the image, as the kernel has of the firmware's.
    pub fn tables(&self) -> Result<AcpiTables<SliceHandler<'_>>, super::PlatformError> {
        let handler = SliceHandler { image: &self.bytes };
        // SAFETY: XSDT_AT holds the XSDT written by `new`, whose only entry
        // points at the table; the handler maps offsets into this image.
        #[allow(unsafe_code)]
        let tables = unsafe { AcpiTables::from_rsdt(handler, 2, XSDT_AT) }?;
        Ok(tables)
    }
}

/// What the kernel takes from one table, for a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelView {
    /// MADT (`APIC`): [`super::interrupts`].
    Madt(super::Interrupts),
    /// MCFG: [`super::ecam_windows`].
    Mcfg(Vec<super::EcamWindow>),
    /// HPET: [`super::hpet_base`].
    Hpet(u64),
    /// FADT (`FACP`): [`super::fadt_info`].
    Fadt(super::FadtInfo),
}

/// Why a dump gave no [`KernelView`].
#[derive(Debug)]
pub enum DumpError {
    /// The dump is not a whole table (see [`TableImage::new`]).
    Layout(Error),
    /// The platform function refused it.
    Platform(super::PlatformError),
}

impl core::fmt::Display for DumpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DumpError::Layout(e) => write!(f, "{e}"),
            DumpError::Platform(e) => write!(f, "{e}"),
        }
    }
}

impl From<super::PlatformError> for DumpError {
    fn from(e: super::PlatformError) -> Self {
        DumpError::Platform(e)
    }
}

/// Runs the platform function the kernel runs on a table of this signature
/// (`APIC`, `MCFG`, `HPET`, `FACP`); `None` for any other table.
pub fn kernel_view(table: &[u8]) -> Option<Result<KernelView, DumpError>> {
    let sig = table.get(..4)?;
    if ![&b"APIC"[..], b"MCFG", b"HPET", b"FACP"].contains(&sig) {
        return None;
    }
    let run = || -> Result<KernelView, DumpError> {
        let image = TableImage::new(table).map_err(DumpError::Layout)?;
        let tables = image.tables()?;
        Ok(match sig {
            b"APIC" => KernelView::Madt(super::interrupts(&tables)?),
            b"MCFG" => KernelView::Mcfg(super::ecam_windows(&tables)?),
            b"HPET" => KernelView::Hpet(super::hpet_base(&tables)?),
            _ => KernelView::Fadt(super::fadt_info(&tables)?),
        })
    };
    Some(run())
}
