//! What the firmware's ACPI tables say about this machine: interrupt
//! controllers (MADT), PCI ECAM windows (MCFG), the HPET, and the FADT's power
//! registers, read once at boot through `acpi_tables::platform` (the `acpi`
//! crate underneath; the same functions the corpus test runs on real dumps).

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use acpi_tables::platform;
use spin::Once;

use crate::mm::direct;

/// Maps ACPI tables through the direct map (they are in RAM, so write-back is
/// the right cache type; nothing to unmap).
#[derive(Clone, Copy)]
pub struct DirectMapHandler;

impl AcpiHandler for DirectMapHandler {
    // The trait's contract makes this unsafe for the caller (the address must
    // hold a `T`); our side only computes a direct-map address.
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let va = direct::to_virt(pa as u64).as_mut_ptr::<T>();
        // The direct map never maps at address 0, so the pointer is non-null.
        let ptr = NonNull::new(va).unwrap_or(NonNull::dangling());
        // SAFETY: the direct map covers the whole physical range the firmware
        // reported, so `size` bytes from `va` are mapped; the acpi crate's own
        // contract (see its docs) makes `pa` point at a `T`.
        unsafe { PhysicalMapping::new(pa, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The MADT's interrupt model, in the types the APIC code takes.
pub use crate::arch::apic::{IoApicInfo, IrqOverride};

/// An MCFG entry: where a segment's buses' configuration space is mapped.
pub use acpi_tables::platform::EcamWindow;

/// Why the DMAR could not be had: reading it from memory, or parsing it.
#[derive(Debug)]
pub enum DmarError {
    /// The table's bytes could not be read (bad pointer or length).
    Read(acpi_tables::walk::WalkError),
    /// Our parser rejected it.
    Parse(acpi_tables::Error),
}

impl core::fmt::Display for DmarError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DmarError::Read(e) => write!(f, "reading the table: {e}"),
            DmarError::Parse(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct Platform {
    pub rsdp: u64,
    pub acpi_revision: u8,
    pub local_apic: u64,
    pub io_apics: Vec<IoApicInfo>,
    pub overrides: Vec<IrqOverride>,
    pub has_8259: bool,
    pub ecam: Vec<EcamWindow>,
    pub hpet: Option<u64>,
    /// PM1a/PM1b control blocks (I/O ports); `\_S5`'s sleep types come from the
    /// AML interpreter (`acpi::aml`).
    pub pm1a_cnt: Option<u16>,
    pub pm1b_cnt: Option<u16>,
    /// Processors the MADT lists, boot processor first.
    pub cpus: Vec<platform::Cpu>,
    /// The FADT's reset register (I/O port, value), when it says it has one.
    pub reset: Option<(u16, u8)>,
    /// The FADT's fixed feature flags.
    pub fadt_flags: u32,
    /// Every table the RSDT/XSDT lists (our own walker, for the `acpi` view).
    pub tables: Vec<acpi_tables::walk::TableInfo>,
    /// The DMAR, parsed by our parser; `None` when the firmware has none
    /// (no VT-d), the error when it is unreadable or malformed.
    pub dmar: Option<Result<acpi_tables::dmar::Dmar, DmarError>>,
}

/// `PhysRead` over the direct map that refuses addresses outside the ranges
/// the firmware's memory map describes: a corrupt table pointer must give an
/// error, not a page fault.
struct MappedPhys;

impl acpi_tables::walk::PhysRead for MappedPhys {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), acpi_tables::walk::PhysReadError> {
        let err = acpi_tables::walk::PhysReadError {
            phys,
            len: buf.len(),
        };
        let end = phys.checked_add(buf.len() as u64).ok_or(err)?;
        // Tables may sit in any described range (ACPI data/NVS, reserved);
        // BIOS tables also live in the legacy area below 1 MiB.
        let covered = crate::mm::memmap::regions()
            .iter()
            .any(|r| r.start <= phys && end <= r.end)
            || end <= 0x10_0000;
        if !covered {
            return Err(err);
        }
        hal::PhysMemory::read(&direct::direct(), hal::PhysAddr::new(phys), buf);
        Ok(())
    }
}

/// Our walk of the root tables and our DMAR parse (the acpi crate is used for
/// the rest).
fn read_own_tables(p: &mut Platform) {
    let tables = match acpi_tables::walk::walk(&MappedPhys, p.rsdp) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("acpi: walking the root table: {e}");
            return;
        }
    };
    for w in &tables.warnings {
        log::warn!("acpi: {w}");
    }
    p.tables = tables.tables.clone();
    let Some(info) = tables.find(&acpi_tables::dmar::SIGNATURE).next() else {
        log::info!("acpi: no DMAR table: no VT-d remapping hardware described");
        return;
    };
    let parsed = acpi_tables::walk::read_table(&MappedPhys, info.address, 64 * 1024)
        .map_err(DmarError::Read)
        .and_then(|bytes| acpi_tables::dmar::parse(&bytes).map_err(DmarError::Parse));
    match &parsed {
        Ok(d) => {
            for w in &d.warnings {
                log::warn!("DMAR: {w}");
            }
            log::info!(
                "DMAR: host address width {}, {} DRHD, {} RMRR",
                d.address_width_bits(),
                d.drhds().count(),
                d.rmrrs().count()
            );
        }
        Err(e) => log::warn!("DMAR: {e}"),
    }
    p.dmar = Some(parsed);
}

static PLATFORM: Once<Platform> = Once::new();

pub fn get() -> Option<&'static Platform> {
    PLATFORM.get()
}

/// Reads the tables. Errors are logged and leave the fields empty: a machine
/// with broken tables still boots, it just has less to show.
pub fn init(rsdp: Option<u64>) -> &'static Platform {
    PLATFORM.call_once(|| {
        let mut p = Platform::default();
        let Some(rsdp) = rsdp else {
            log::warn!("acpi: the bootloader found no RSDP");
            return p;
        };
        p.rsdp = rsdp;
        // SAFETY: the address comes from the bootloader, which found and
        // checksummed the RSDP; the acpi crate validates what it maps.
        let tables = match unsafe { AcpiTables::from_rsdp(DirectMapHandler, rsdp as usize) } {
            Ok(t) => t,
            Err(e) => {
                log::warn!("acpi: cannot read the tables from RSDP {rsdp:#x}: {e:?}");
                return p;
            }
        };
        p.acpi_revision = tables.revision();
        match platform::interrupts(&tables) {
            Ok(irq) => {
                p.local_apic = irq.local_apic;
                p.has_8259 = irq.has_8259;
                p.io_apics = irq
                    .io_apics
                    .iter()
                    .map(|io| IoApicInfo {
                        id: io.id,
                        address: io.address,
                        gsi_base: io.gsi_base,
                    })
                    .collect();
                p.overrides = irq
                    .overrides
                    .iter()
                    .map(|o| IrqOverride {
                        isa_irq: o.isa_irq,
                        gsi: o.gsi,
                        active_low: o.active_low,
                        level: o.level,
                    })
                    .collect();
                p.cpus = irq.cpus;
            }
            Err(e) => log::warn!("acpi: MADT: {e}"),
        }
        match platform::ecam_windows(&tables) {
            Ok(w) => p.ecam = w,
            Err(e) => log::info!("acpi: no usable MCFG ({e}); PCI will use port I/O"),
        }
        match platform::hpet_base(&tables) {
            Ok(base) => p.hpet = Some(base),
            Err(e) => log::info!("acpi: no HPET ({e})"),
        }
        match platform::fadt_info(&tables) {
            Ok(f) => {
                p.pm1a_cnt = f.pm1a_cnt;
                p.pm1b_cnt = f.pm1b_cnt;
                p.reset = f.reset;
                p.fadt_flags = f.flags;
            }
            Err(e) => log::warn!("acpi: FADT: {e}"),
        }
        read_own_tables(&mut p);
        log::info!(
            "acpi: revision {}, {} CPU(s), local APIC {:#x}, {} IO-APIC(s), {} ECAM window(s), HPET {}, PM1a_CNT {}",
            p.acpi_revision,
            p.cpus.len(),
            p.local_apic,
            p.io_apics.len(),
            p.ecam.len(),
            p.hpet.map_or("none".into(), |a| alloc::format!("{a:#x}")),
            p.pm1a_cnt.map_or("none".into(), |a| alloc::format!("{a:#x}")),
        );
        p
    })
}
