//! The physical memory map handed over by the bootloader, merged and named.

use alloc::vec::Vec;
use core::fmt;

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use spin::Once;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Usable,
    /// In use by the bootloader: page tables, boot info, the kernel image.
    Bootloader,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Unusable,
    /// UEFI runtime services, MMIO and other firmware-owned ranges.
    Firmware,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Usable => "usable",
            Kind::Bootloader => "bootloader/kernel",
            Kind::Reserved => "reserved",
            Kind::AcpiReclaimable => "ACPI data",
            Kind::AcpiNvs => "ACPI NVS",
            Kind::Unusable => "unusable",
            Kind::Firmware => "firmware",
        }
    }

    pub const ALL: [Kind; 7] = [
        Kind::Usable,
        Kind::Bootloader,
        Kind::Reserved,
        Kind::AcpiReclaimable,
        Kind::AcpiNvs,
        Kind::Unusable,
        Kind::Firmware,
    ];

    fn from_boot(kind: MemoryRegionKind) -> Kind {
        match kind {
            MemoryRegionKind::Usable => Kind::Usable,
            MemoryRegionKind::Bootloader => Kind::Bootloader,
            // E820 types (ACPI spec §15, Table 15.312).
            MemoryRegionKind::UnknownBios(3) => Kind::AcpiReclaimable,
            MemoryRegionKind::UnknownBios(4) => Kind::AcpiNvs,
            MemoryRegionKind::UnknownBios(5) => Kind::Unusable,
            MemoryRegionKind::UnknownBios(_) => Kind::Reserved,
            // UEFI memory types (UEFI spec §7.2, EFI_MEMORY_TYPE).
            MemoryRegionKind::UnknownUefi(9) => Kind::AcpiReclaimable,
            MemoryRegionKind::UnknownUefi(10) => Kind::AcpiNvs,
            MemoryRegionKind::UnknownUefi(8) => Kind::Unusable,
            MemoryRegionKind::UnknownUefi(0) => Kind::Reserved,
            MemoryRegionKind::UnknownUefi(_) => Kind::Firmware,
            _ => Kind::Reserved,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
    pub kind: Kind,
}

impl Region {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[mem {:#018x}-{:#018x}] {:>9} KiB {}",
            self.start,
            self.end.saturating_sub(1),
            self.len() / 1024,
            self.kind.name()
        )
    }
}

static MAP: Once<Vec<Region>> = Once::new();

/// Copies and merges the bootloader's regions (adjacent ranges of one kind
/// become one), sorted by address.
pub fn init(regions: &MemoryRegions) -> &'static [Region] {
    MAP.call_once(|| {
        let mut list: Vec<Region> = regions
            .iter()
            .filter(|r| r.end > r.start)
            .map(|r| Region {
                start: r.start,
                end: r.end,
                kind: Kind::from_boot(r.kind),
            })
            .collect();
        list.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Region> = Vec::with_capacity(list.len());
        for r in list {
            match merged.last_mut() {
                Some(last) if last.kind == r.kind && last.end == r.start => last.end = r.end,
                _ => merged.push(r),
            }
        }
        merged
    })
}

pub fn regions() -> &'static [Region] {
    MAP.get().map(Vec::as_slice).unwrap_or(&[])
}

pub fn total(kind: Kind) -> u64 {
    regions()
        .iter()
        .filter(|r| r.kind == kind)
        .map(Region::len)
        .sum()
}

/// Prints the map and the totals by type to the log (the boot summary).
pub fn log_summary() {
    let map = regions();
    log::info!("memory map: {} regions", map.len());
    for r in map {
        log::info!("  {r}");
    }
    for kind in Kind::ALL {
        let bytes = total(kind);
        if bytes > 0 {
            log::info!(
                "  total {:<18} {:>8} KiB ({} MiB)",
                kind.name(),
                bytes / 1024,
                bytes >> 20
            );
        }
    }
}
