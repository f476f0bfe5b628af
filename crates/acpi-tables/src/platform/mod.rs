//! The kernel's view of MADT, MCFG, HPET and FADT, read with the `acpi` crate.
//!
//! These are the functions the kernel calls at boot (`kernel/src/acpi`), and the
//! ones `acpi-decode` and the real-firmware corpus test call on table dumps
//! (through [`image::TableImage`]), so the corpus checks exactly what the kernel
//! runs. They are generic over the `acpi` crate's [`AcpiHandler`]: the kernel
//! maps physical memory through its direct map, the host maps a byte image.
//!
//! The byte-level decoders next door ([`crate::madt`], [`crate::mcfg`],
//! [`crate::hpet`], [`crate::fadt`]) stay for what the `acpi` crate does not
//! give: every field and reserved bit, with offsets and warnings, as `acpi-decode`
//! prints them for a reader comparing with `iasl -d`. The kernel does not use them.

pub mod image;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::fmt;

use acpi::address::{AddressSpace, GenericAddress};
use acpi::fadt::Fadt;
use acpi::hpet::{HpetInfo, HpetTable};
use acpi::madt::{Madt, MadtError};
use acpi::mcfg::Mcfg;
use acpi::platform::interrupt::{InterruptModel, Polarity, TriggerMode};
use acpi::platform::ProcessorState;
use acpi::{AcpiError, AcpiHandler, AcpiTables};

/// Why one of the tables could not be turned into the kernel's data.
#[derive(Debug)]
pub enum PlatformError {
    /// The `acpi` crate refused the table (missing, bad header or checksum,
    /// malformed entries).
    Acpi(AcpiError),
    /// The MADT describes no APIC (no local APIC, I/O APIC or override entry).
    NoApicModel,
    /// The HPET's register block is not in system memory (address space id).
    HpetNotInMemory(u8),
    /// The HPET table is shorter than its base-address field.
    HpetTooShort(usize),
}

impl From<AcpiError> for PlatformError {
    fn from(e: AcpiError) -> Self {
        PlatformError::Acpi(e)
    }
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Acpi(AcpiError::TableMissing(s)) => write!(f, "no {} table", s.as_str()),
            PlatformError::Acpi(AcpiError::SdtInvalidChecksum(s)) => {
                write!(f, "{} table: bad checksum", s.as_str())
            }
            PlatformError::Acpi(AcpiError::SdtInvalidOemId(s)) => {
                write!(f, "{} table: OEM ID is not text", s.as_str())
            }
            PlatformError::Acpi(AcpiError::SdtInvalidTableId(s)) => {
                write!(f, "{} table: OEM table ID is not text", s.as_str())
            }
            PlatformError::Acpi(AcpiError::SdtInvalidSignature(s)) => {
                write!(f, "{} table: wrong signature", s.as_str())
            }
            PlatformError::Acpi(AcpiError::InvalidMadt(MadtError::InvalidLocalNmiLine)) => {
                f.write_str("MADT: a local APIC NMI entry names a LINT pin other than 0 or 1")
            }
            PlatformError::Acpi(e) => write!(f, "acpi crate: {e:?}"),
            PlatformError::NoApicModel => f.write_str("MADT describes no APIC"),
            PlatformError::HpetNotInMemory(space) => {
                write!(
                    f,
                    "HPET registers in address space {space}, not system memory"
                )
            }
            PlatformError::HpetTooShort(len) => write!(f, "HPET table of {len} bytes is too short"),
        }
    }
}

/// An I/O APIC (MADT type 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    /// APIC ID.
    pub id: u8,
    /// Register block.
    pub address: u64,
    /// First GSI it serves.
    pub gsi_base: u32,
}

/// An ISA IRQ routed to another GSI or with other flags (MADT type 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqOverride {
    /// ISA IRQ.
    pub isa_irq: u8,
    /// Global system interrupt it arrives at.
    pub gsi: u32,
    /// Active low (ISA default: high).
    pub active_low: bool,
    /// Level-triggered (ISA default: edge).
    pub level: bool,
}

/// A processor's local APIC (MADT types 0 and 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// ACPI processor UID.
    pub uid: u32,
    /// Local APIC (or x2APIC) ID.
    pub apic_id: u32,
    /// Enabled or online-capable (false: firmware says not to start it).
    pub usable: bool,
    /// The processor running this code at boot.
    pub boot: bool,
}

/// What the MADT says about interrupt controllers and processors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interrupts {
    /// Local APIC base (after any address-override entry).
    pub local_apic: u64,
    /// The machine also has dual 8259 PICs (flag PCAT_COMPAT).
    pub has_8259: bool,
    /// I/O APICs.
    pub io_apics: Vec<IoApic>,
    /// Interrupt source overrides.
    pub overrides: Vec<IrqOverride>,
    /// Processors, boot processor first.
    pub cpus: Vec<Cpu>,
}

/// One MCFG entry: where a segment's buses' configuration space is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    /// Base address (of bus 0, even when `bus_start` > 0).
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// The FADT fields the kernel uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FadtInfo {
    /// PM1a control block, when it is an I/O port.
    pub pm1a_cnt: Option<u16>,
    /// PM1b control block, when present and an I/O port.
    pub pm1b_cnt: Option<u16>,
    /// Reset register (I/O port) and the value to write, when the FADT
    /// says the reset register is supported and it is in I/O space.
    pub reset: Option<(u16, u8)>,
    /// The fixed feature flags (FADT offset 112).
    pub flags: u32,
    /// Physical address of the DSDT.
    pub dsdt: Option<u64>,
}

fn io_port(gas: GenericAddress) -> Option<u16> {
    (gas.address_space == AddressSpace::SystemIo && gas.address != 0 && gas.address <= 0xFFFF)
        .then_some(gas.address as u16)
}

/// The MADT's APIC model: local APIC base, I/O APICs, overrides, processors.
///
/// The `acpi` crate stops with `unimplemented!` on an IA-64 SAPIC or ARM GIC
/// entry before any APIC entry; x86 firmware does not have those.
pub fn interrupts<H: AcpiHandler>(tables: &AcpiTables<H>) -> Result<Interrupts, PlatformError> {
    let madt = tables.find_table::<Madt>()?;
    let (model, cpus) = madt.get().parse_interrupt_model_in(alloc::alloc::Global)?;
    let InterruptModel::Apic(apic) = model else {
        return Err(PlatformError::NoApicModel);
    };
    let mut out = Interrupts {
        local_apic: apic.local_apic_address,
        has_8259: apic.also_has_legacy_pics,
        io_apics: apic
            .io_apics
            .iter()
            .map(|io| IoApic {
                id: io.id,
                address: u64::from(io.address),
                gsi_base: io.global_system_interrupt_base,
            })
            .collect(),
        overrides: apic
            .interrupt_source_overrides
            .iter()
            .map(|o| IrqOverride {
                isa_irq: o.isa_source,
                gsi: o.global_system_interrupt,
                active_low: matches!(o.polarity, Polarity::ActiveLow),
                level: matches!(o.trigger_mode, TriggerMode::Level),
            })
            .collect(),
        cpus: Vec::new(),
    };
    if let Some(info) = cpus {
        let cpu = |p: &acpi::platform::Processor, boot| Cpu {
            uid: p.processor_uid,
            apic_id: p.local_apic_id,
            usable: !matches!(p.state, ProcessorState::Disabled),
            boot,
        };
        out.cpus.push(cpu(&info.boot_processor, true));
        out.cpus
            .extend(info.application_processors.iter().map(|p| cpu(p, false)));
    }
    Ok(out)
}

/// The MCFG's ECAM windows, in table order.
pub fn ecam_windows<H: AcpiHandler>(
    tables: &AcpiTables<H>,
) -> Result<Vec<EcamWindow>, PlatformError> {
    let mcfg = tables.find_table::<Mcfg>()?;
    Ok(mcfg
        .entries()
        .iter()
        .map(|e| EcamWindow {
            base: e.base_address,
            segment: e.pci_segment_group,
            bus_start: e.bus_number_start,
            bus_end: e.bus_number_end,
        })
        .collect())
}

/// Offset of the HPET's base-address GAS (after the header and the
/// event-timer-block ID): its first byte is the address space.
const HPET_GAS_OFFSET: usize = 40;

/// The HPET's register block address.
pub fn hpet_base<H: AcpiHandler>(tables: &AcpiTables<H>) -> Result<u64, PlatformError> {
    // `HpetInfo::new` asserts (panics) when the block is not in system memory:
    // check the address space first, from the table's bytes.
    let table = tables.find_table::<HpetTable>()?;
    let len = table.region_length();
    if len < HPET_GAS_OFFSET + 12 {
        return Err(PlatformError::HpetTooShort(len));
    }
    let start = table.virtual_start().cast::<u8>();
    // SAFETY: the mapping covers `region_length` bytes from its start (the
    // handler's contract), and HPET_GAS_OFFSET < len was checked above.
    #[allow(unsafe_code)]
    let space = unsafe { start.add(HPET_GAS_OFFSET).read() };
    if space != 0 {
        return Err(PlatformError::HpetNotInMemory(space));
    }
    drop(table);
    Ok(HpetInfo::new(tables)?.base_address as u64)
}

/// The FADT's PM1 control blocks, reset register, flags and DSDT address.
pub fn fadt_info<H: AcpiHandler>(tables: &AcpiTables<H>) -> Result<FadtInfo, PlatformError> {
    let fadt = tables.find_table::<Fadt>()?;
    let flags = fadt.flags;
    let reset = if flags.supports_system_reset_via_fadt() {
        fadt.reset_register()
            .ok()
            .and_then(io_port)
            .map(|port| (port, fadt.reset_value))
    } else {
        None
    };
    Ok(FadtInfo {
        pm1a_cnt: fadt.pm1a_control_block().ok().and_then(io_port),
        pm1b_cnt: fadt.pm1b_control_block().ok().flatten().and_then(io_port),
        reset,
        flags: fixed_flags_bits(&flags),
        dsdt: fadt.dsdt_address().ok().map(|a| a as u64),
    })
}

/// The raw value of the FADT's fixed feature flags (the `acpi` crate keeps
/// it private; every bit has an accessor, bits 0..=21 are defined).
fn fixed_flags_bits(f: &acpi::fadt::FixedFeatureFlags) -> u32 {
    let bits = [
        f.supports_equivalent_to_wbinvd(),
        f.wbinvd_flushes_all_caches(),
        f.all_procs_support_c1_power_state(),
        f.c2_configured_for_mp_system(),
        f.power_button_is_control_method(),
        f.sleep_button_is_control_method(),
        f.no_rtc_wake_in_fixed_register_space(),
        f.rtc_wakes_system_from_s4(),
        f.pm_timer_is_32_bit(),
        f.supports_docking(),
        f.supports_system_reset_via_fadt(),
        f.case_is_sealed(),
        f.system_is_headless(),
        f.use_instr_after_write_to_slp_typx(),
        f.supports_pciexp_wake_in_pm1(),
        f.use_pm_or_hpet_for_monotonically_decreasing_timers(),
        f.rtc_sts_is_valid_after_wakeup_from_s4(),
        f.ospm_may_leave_gpe_wake_events_armed_before_s5(),
        f.lapics_must_use_cluster_model_for_logical_mode(),
        f.local_xapics_must_use_physical_destination_mode(),
        f.system_is_hw_reduced_acpi(),
        f.no_benefit_to_s3(),
    ];
    bits.iter()
        .enumerate()
        .fold(0, |acc, (i, &b)| acc | (u32::from(b) << i))
}
