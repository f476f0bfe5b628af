//! Fixed ACPI Description Table (ACPI 6.5 §5.2.9, Table 5.9), signature
//! "FACP". Tables grew over the revisions (116 bytes in ACPI 1.0, 244 in
//! 2.0, 268/276 in 5.x/6.x); a field past the table's length is `None`.

use alloc::vec::Vec;

use bitflags::bitflags;

use crate::bytes::{u16_at, u32_at, u64_at, u8_at};
use crate::error::{Error, ErrorKind, Location, Signature, Warning, WarningKind};
use crate::gas::{GenericAddress, GAS_LEN};
use crate::sdt::{SdtHeader, Table};

pub const SIGNATURE: Signature = *b"FACP";
/// The ACPI 1.0 FADT, up to and including the Flags field.
pub const FADT_MIN_LEN: usize = 116;

bitflags! {
    /// IAPC_BOOT_ARCH (ACPI 6.5 §5.2.9.3, Table 5.11).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct IapcBootArch: u16 {
        const LEGACY_DEVICES = 1 << 0;
        const I8042_PRESENT = 1 << 1;
        const VGA_NOT_PRESENT = 1 << 2;
        const MSI_NOT_SUPPORTED = 1 << 3;
        const PCIE_ASPM_CONTROLS = 1 << 4;
        const CMOS_RTC_NOT_PRESENT = 1 << 5;
        const _ = !0;
    }
}

bitflags! {
    /// Fixed feature flags (ACPI 6.5 Table 5.10).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FadtFlags: u32 {
        const WBINVD = 1 << 0;
        const WBINVD_FLUSH = 1 << 1;
        const PROC_C1 = 1 << 2;
        const P_LVL2_UP = 1 << 3;
        const PWR_BUTTON = 1 << 4;
        const SLP_BUTTON = 1 << 5;
        const FIX_RTC = 1 << 6;
        const RTC_S4 = 1 << 7;
        const TMR_VAL_EXT = 1 << 8;
        const DCK_CAP = 1 << 9;
        const RESET_REG_SUP = 1 << 10;
        const SEALED_CASE = 1 << 11;
        const HEADLESS = 1 << 12;
        const CPU_SW_SLP = 1 << 13;
        const PCI_EXP_WAK = 1 << 14;
        const USE_PLATFORM_CLOCK = 1 << 15;
        const S4_RTC_STS_VALID = 1 << 16;
        const REMOTE_POWER_ON_CAPABLE = 1 << 17;
        const FORCE_APIC_CLUSTER_MODEL = 1 << 18;
        const FORCE_APIC_PHYSICAL_DESTINATION_MODE = 1 << 19;
        const HW_REDUCED_ACPI = 1 << 20;
        const LOW_POWER_S0_IDLE_CAPABLE = 1 << 21;
        const _ = !0;
    }
}

/// The FADT fields a kernel and a reader care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fadt {
    pub header: SdtHeader,
    /// FIRMWARE_CTRL: 32-bit FACS address.
    pub firmware_ctrl: u32,
    pub dsdt: u32,
    pub preferred_pm_profile: u8,
    pub sci_int: u16,
    pub smi_cmd: u32,
    pub acpi_enable: u8,
    pub acpi_disable: u8,
    pub pm1a_evt_blk: u32,
    pub pm1b_evt_blk: u32,
    pub pm1a_cnt_blk: u32,
    pub pm1b_cnt_blk: u32,
    pub pm2_cnt_blk: u32,
    pub pm_tmr_blk: u32,
    pub gpe0_blk: u32,
    pub gpe1_blk: u32,
    pub pm1_evt_len: u8,
    pub pm1_cnt_len: u8,
    pub pm2_cnt_len: u8,
    pub pm_tmr_len: u8,
    pub gpe0_blk_len: u8,
    pub gpe1_blk_len: u8,
    pub century: u8,
    /// Reserved in ACPI 1.0 (then 0).
    pub iapc_boot_arch: IapcBootArch,
    pub flags: FadtFlags,
    pub reset_reg: Option<GenericAddress>,
    pub reset_value: Option<u8>,
    pub arm_boot_arch: Option<u16>,
    pub minor_version: Option<u8>,
    pub x_firmware_ctrl: Option<u64>,
    pub x_dsdt: Option<u64>,
    pub x_pm1a_evt_blk: Option<GenericAddress>,
    pub x_pm1b_evt_blk: Option<GenericAddress>,
    pub x_pm1a_cnt_blk: Option<GenericAddress>,
    pub x_pm1b_cnt_blk: Option<GenericAddress>,
    pub x_pm2_cnt_blk: Option<GenericAddress>,
    pub x_pm_tmr_blk: Option<GenericAddress>,
    pub x_gpe0_blk: Option<GenericAddress>,
    pub x_gpe1_blk: Option<GenericAddress>,
    pub sleep_control_reg: Option<GenericAddress>,
    pub sleep_status_reg: Option<GenericAddress>,
    pub hypervisor_vendor_id: Option<u64>,
    pub warnings: Vec<Warning>,
}

impl Fadt {
    pub fn parse(bytes: &[u8]) -> Result<Fadt, Error> {
        parse(bytes)
    }

    /// DSDT address: X_DSDT when present and non-zero, else DSDT (§5.2.9).
    pub fn dsdt_address(&self) -> u64 {
        match self.x_dsdt {
            Some(x) if x != 0 => x,
            _ => u64::from(self.dsdt),
        }
    }

    /// FACS address: X_FIRMWARE_CTRL when present and non-zero.
    pub fn facs_address(&self) -> u64 {
        match self.x_firmware_ctrl {
            Some(x) if x != 0 => x,
            _ => u64::from(self.firmware_ctrl),
        }
    }

    pub fn hw_reduced(&self) -> bool {
        self.flags.contains(FadtFlags::HW_REDUCED_ACPI)
    }

    /// The PM timer as a GAS: X_PM_TMR_BLK when non-null, else the legacy
    /// I/O port (`None` when neither is set, e.g. on HW-reduced platforms).
    pub fn pm_timer(&self) -> Option<GenericAddress> {
        legacy_or_x(self.x_pm_tmr_blk, self.pm_tmr_blk, self.pm_tmr_len)
    }

    pub fn pm1a_event_block(&self) -> Option<GenericAddress> {
        legacy_or_x(self.x_pm1a_evt_blk, self.pm1a_evt_blk, self.pm1_evt_len)
    }

    pub fn pm1a_control_block(&self) -> Option<GenericAddress> {
        legacy_or_x(self.x_pm1a_cnt_blk, self.pm1a_cnt_blk, self.pm1_cnt_len)
    }

    /// Reset register and value, when RESET_REG_SUP says they are valid.
    pub fn reset(&self) -> Option<(GenericAddress, u8)> {
        if !self.flags.contains(FadtFlags::RESET_REG_SUP) {
            return None;
        }
        Some((self.reset_reg?, self.reset_value?))
    }
}

fn legacy_or_x(x: Option<GenericAddress>, legacy: u32, len: u8) -> Option<GenericAddress> {
    match x {
        Some(g) if !g.is_null() => Some(g),
        _ if legacy != 0 => Some(GenericAddress {
            address_space: 1,
            bit_width: len.saturating_mul(8),
            bit_offset: 0,
            access_size: 0,
            address: u64::from(legacy),
        }),
        _ => None,
    }
}

pub fn parse(bytes: &[u8]) -> Result<Fadt, Error> {
    let table = Table::new(bytes, Some(SIGNATURE), FADT_MIN_LEN)?;
    let t = table.bytes;
    let mut warnings = table.header.warnings();
    let req =
        |v: Option<u32>, off: usize| -> Result<u32, Error> { v.ok_or_else(|| short(t.len(), off)) };
    let b = |off: usize| u8_at(t, off).ok_or_else(|| short(t.len(), off));
    let w = |off: usize| u16_at(t, off).ok_or_else(|| short(t.len(), off));
    let d = |off: usize| req(u32_at(t, off), off);
    // Optional (revision-dependent) fields: present iff they fit.
    let gas = |off: usize| {
        off.checked_add(GAS_LEN)
            .filter(|&end| end <= t.len())
            .and_then(|_| GenericAddress::read(t, off))
    };

    let fadt = Fadt {
        header: table.header,
        firmware_ctrl: d(36)?,
        dsdt: d(40)?,
        preferred_pm_profile: b(45)?,
        sci_int: w(46)?,
        smi_cmd: d(48)?,
        acpi_enable: b(52)?,
        acpi_disable: b(53)?,
        pm1a_evt_blk: d(56)?,
        pm1b_evt_blk: d(60)?,
        pm1a_cnt_blk: d(64)?,
        pm1b_cnt_blk: d(68)?,
        pm2_cnt_blk: d(72)?,
        pm_tmr_blk: d(76)?,
        gpe0_blk: d(80)?,
        gpe1_blk: d(84)?,
        pm1_evt_len: b(88)?,
        pm1_cnt_len: b(89)?,
        pm2_cnt_len: b(90)?,
        pm_tmr_len: b(91)?,
        gpe0_blk_len: b(92)?,
        gpe1_blk_len: b(93)?,
        century: b(108)?,
        iapc_boot_arch: IapcBootArch::from_bits_retain(w(109)?),
        flags: FadtFlags::from_bits_retain(d(112)?),
        reset_reg: gas(116),
        reset_value: u8_at(t, 128),
        arm_boot_arch: u16_at(t, 129),
        minor_version: u8_at(t, 131),
        x_firmware_ctrl: u64_at(t, 132),
        x_dsdt: u64_at(t, 140),
        x_pm1a_evt_blk: gas(148),
        x_pm1b_evt_blk: gas(160),
        x_pm1a_cnt_blk: gas(172),
        x_pm1b_cnt_blk: gas(184),
        x_pm2_cnt_blk: gas(196),
        x_pm_tmr_blk: gas(208),
        x_gpe0_blk: gas(220),
        x_gpe1_blk: gas(232),
        sleep_control_reg: gas(244),
        sleep_status_reg: gas(256),
        hypervisor_vendor_id: u64_at(t, 268),
        warnings: Vec::new(),
    };

    // §5.2.9: when both are set the X_ field is the one to use; a mismatch
    // is a firmware bug worth showing (Linux warns about it too).
    let pairs = [
        (
            "FIRMWARE_CTRL",
            36,
            fadt.firmware_ctrl,
            fadt.x_firmware_ctrl,
        ),
        ("DSDT", 40, fadt.dsdt, fadt.x_dsdt),
    ];
    for (field, off, legacy, x) in pairs {
        if let Some(x) = x {
            if legacy != 0 && x != 0 && u64::from(legacy) != x {
                warnings.push(Warning::new(
                    SIGNATURE,
                    off,
                    Location::Header,
                    WarningKind::AddressMismatch {
                        field,
                        legacy: u64::from(legacy),
                        extended: x,
                    },
                ));
            }
        }
    }
    if fadt.dsdt_address() == 0 {
        warnings.push(Warning::new(
            SIGNATURE,
            40,
            Location::Header,
            WarningKind::ZeroAddress { field: "DSDT" },
        ));
    }
    Ok(Fadt { warnings, ..fadt })
}

fn short(available: usize, off: usize) -> Error {
    Error::new(
        SIGNATURE,
        off,
        Location::Header,
        ErrorKind::Truncated {
            needed: FADT_MIN_LEN,
            available,
        },
    )
}
