//! Names for `lspci`: vendors, the devices QEMU's q35 machine offers, the Intel LPSS
//! functions of hw-facts §1.9, and class names (wording after pci.ids / lspci).

use core::fmt;

use crate::device::{ClassCode, PciDevice};

/// Intel's vendor ID.
pub const VENDOR_INTEL: u16 = 0x8086;

/// Vendor name, if known.
pub fn vendor_name(vendor: u16) -> Option<&'static str> {
    Some(match vendor {
        VENDOR_INTEL => "Intel Corporation",
        0x1234 => "Technical Corp.",
        0x1b36 | 0x1af4 => "Red Hat, Inc.",
        0x1022 => "Advanced Micro Devices, Inc. [AMD]",
        0x1002 => "Advanced Micro Devices, Inc. [AMD/ATI]",
        0x10de => "NVIDIA Corporation",
        0x10ec => "Realtek Semiconductor Co., Ltd.",
        0x14e4 => "Broadcom Inc. and subsidiaries",
        0x144d => "Samsung Electronics Co Ltd",
        0x15ad => "VMware",
        0x80ee => "InnoTek Systemberatung GmbH",
        _ => return None,
    })
}

/// Fixed device names: QEMU's devices (q35 and common `-device` models).
const DEVICES: &[(u16, u16, &str)] = &[
    (0x8086, 0x29c0, "82G33/G31/P35/P31 Express DRAM Controller"),
    (0x8086, 0x2918, "82801IB (ICH9) LPC Interface Controller"),
    (
        0x8086,
        0x2922,
        "82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]",
    ),
    (0x8086, 0x2930, "82801I (ICH9 Family) SMBus Controller"),
    (
        0x8086,
        0x2934,
        "82801I (ICH9 Family) USB UHCI Controller #1",
    ),
    (
        0x8086,
        0x2935,
        "82801I (ICH9 Family) USB UHCI Controller #2",
    ),
    (
        0x8086,
        0x2936,
        "82801I (ICH9 Family) USB UHCI Controller #3",
    ),
    (
        0x8086,
        0x2937,
        "82801I (ICH9 Family) USB UHCI Controller #4",
    ),
    (
        0x8086,
        0x2938,
        "82801I (ICH9 Family) USB UHCI Controller #5",
    ),
    (
        0x8086,
        0x2939,
        "82801I (ICH9 Family) USB UHCI Controller #6",
    ),
    (
        0x8086,
        0x293a,
        "82801I (ICH9 Family) USB2 EHCI Controller #1",
    ),
    (
        0x8086,
        0x293c,
        "82801I (ICH9 Family) USB2 EHCI Controller #2",
    ),
    (0x8086, 0x293e, "82801I (ICH9 Family) HD Audio Controller"),
    (0x8086, 0x10d3, "82574L Gigabit Network Connection"),
    (0x8086, 0x100e, "82540EM Gigabit Ethernet Controller"),
    (0x8086, 0x1237, "440FX - 82441FX PMC [Natoma]"),
    (0x8086, 0x7000, "82371SB PIIX3 ISA [Natoma/Triton II]"),
    (0x8086, 0x7010, "82371SB PIIX3 IDE [Natoma/Triton II]"),
    (0x8086, 0x7113, "82371AB/EB/MB PIIX4 ACPI"),
    (0x1234, 0x1111, "QEMU Virtual Video Controller"),
    (0x1234, 0x11e8, "QEMU edu educational device"),
    (0x1b36, 0x0001, "QEMU PCI-PCI bridge"),
    (0x1b36, 0x0002, "QEMU PCI 16550A Adapter"),
    (0x1b36, 0x0008, "QEMU PCIe Host bridge"),
    (0x1b36, 0x000c, "QEMU PCIe Root port"),
    (0x1b36, 0x000d, "QEMU XHCI Host Controller"),
    (0x1b36, 0x000e, "QEMU PCIe-to-PCI bridge"),
    (0x1b36, 0x0010, "QEMU NVM Express Controller"),
    (0x1b36, 0x0011, "QEMU PVPanic device"),
    (0x1af4, 0x1000, "Virtio network device"),
    (0x1af4, 0x1001, "Virtio block device"),
    (0x1af4, 0x1002, "Virtio memory balloon"),
    (0x1af4, 0x1003, "Virtio console"),
    (0x1af4, 0x1004, "Virtio SCSI"),
    (0x1af4, 0x1005, "Virtio RNG"),
    (0x1af4, 0x1009, "Virtio filesystem"),
    (0x1af4, 0x1041, "Virtio 1.0 network device"),
    (0x1af4, 0x1042, "Virtio 1.0 block device"),
    (0x1af4, 0x1043, "Virtio 1.0 console"),
    (0x1af4, 0x1044, "Virtio 1.0 RNG"),
    (0x1af4, 0x1045, "Virtio 1.0 balloon"),
    (0x1af4, 0x1048, "Virtio 1.0 SCSI"),
    (0x1af4, 0x1049, "Virtio 1.0 filesystem"),
    (0x1af4, 0x1050, "Virtio 1.0 GPU"),
    (0x1af4, 0x1052, "Virtio 1.0 input"),
];

/// Function type of an Intel LPSS PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LpssFunction {
    /// DesignWare UART host.
    Uart,
    /// DesignWare I2C host.
    I2c,
    /// PXA2xx-style SSP (SPI) host.
    Spi,
}

impl fmt::Display for LpssFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LpssFunction::Uart => "UART",
            LpssFunction::I2c => "I2C",
            LpssFunction::Spi => "SPI",
        })
    }
}

/// An Intel LPSS PCI device ID, as `intel-lpss-pci` binds it (hw-facts §1.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpssId {
    /// Device ID (vendor 0x8086).
    pub device: u16,
    /// Platform short name as in the table comment (`"SPT-LP"`).
    pub platform: &'static str,
    /// Platform name (`"Sunrise Point-LP"`).
    pub platform_name: &'static str,
    /// Function type.
    pub function: LpssFunction,
    /// Index among the platform's functions of this type, in the order of Linux's
    /// `intel-lpss-pci` table. Not the hardware's instance number: see `pciids_number`.
    pub index: u8,
    /// The `#n` the PCI ID database gives this function, where known
    /// ([`PCIIDS_NUMBER`]); `None` prints no number.
    pub pciids_number: Option<u8>,
}

impl fmt::Display for LpssId {
    /// `Sunrise Point-LP LPSS UART #0`, numbered as the PCI ID database does; without
    /// a number where that is not known (table order is not the instance number:
    /// Tiger Lake-H's 43E8 is fourth in the table but I2C #0).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} LPSS {}", self.platform_name, self.function)?;
        match self.pciids_number {
            Some(n) => write!(f, " #{n}"),
            None => Ok(()),
        }
    }
}

struct Entry {
    first: u16,
    last: u16,
    step: u16,
    function: LpssFunction,
}

const fn one(id: u16, function: LpssFunction) -> Entry {
    Entry {
        first: id,
        last: id,
        step: 1,
        function,
    }
}
const fn run(first: u16, last: u16, function: LpssFunction) -> Entry {
    Entry {
        first,
        last,
        step: 1,
        function,
    }
}
/// Broxton-family tables list every other ID.
const fn even(first: u16, last: u16, function: LpssFunction) -> Entry {
    Entry {
        first,
        last,
        step: 2,
        function,
    }
}

struct LpssPlatform {
    short: &'static str,
    name: &'static str,
    ids: &'static [Entry],
}

use LpssFunction::{I2c, Spi, Uart};

// Generated from hw-facts.md §1.9 (the intel-lpss-pci table, newest found); order
// within a platform is the table's (it gives `LpssId::index`, not the `#n`: that is PCIIDS_NUMBER).
const PLATFORMS: &[LpssPlatform] = &[
    LpssPlatform {
        short: "SPT-LP",
        name: "Sunrise Point-LP",
        ids: &[
            one(0x9D27, Uart),
            one(0x9D28, Uart),
            one(0x9D29, Spi),
            one(0x9D2A, Spi),
            run(0x9D60, 0x9D65, I2c),
            one(0x9D66, Uart),
        ],
    },
    LpssPlatform {
        short: "SPT-H",
        name: "Sunrise Point-H",
        ids: &[
            one(0xA127, Uart),
            one(0xA128, Uart),
            one(0xA129, Spi),
            one(0xA12A, Spi),
            run(0xA160, 0xA162, I2c),
            one(0xA166, Uart),
        ],
    },
    LpssPlatform {
        short: "KBL-H",
        name: "Kaby Lake-H",
        ids: &[
            one(0xA2A7, Uart),
            one(0xA2A8, Uart),
            one(0xA2A9, Spi),
            one(0xA2AA, Spi),
            run(0xA2E0, 0xA2E3, I2c),
            one(0xA2E6, Uart),
        ],
    },
    LpssPlatform {
        short: "BXT A-step",
        name: "Broxton A-step",
        ids: &[
            even(0x0AAC, 0x0ABA, I2c),
            even(0x0ABC, 0x0AC0, Uart),
            even(0x0AC2, 0x0AC6, Spi),
            one(0x0AEE, Uart),
        ],
    },
    LpssPlatform {
        short: "BXT B-step",
        name: "Broxton B-step",
        ids: &[
            even(0x1AAC, 0x1ABA, I2c),
            even(0x1ABC, 0x1AC0, Uart),
            even(0x1AC2, 0x1AC6, Spi),
            one(0x1AEE, Uart),
        ],
    },
    LpssPlatform {
        short: "APL",
        name: "Apollo Lake",
        ids: &[
            even(0x5AAC, 0x5ABA, I2c),
            even(0x5ABC, 0x5AC0, Uart),
            even(0x5AC2, 0x5AC6, Spi),
            one(0x5AEE, Uart),
        ],
    },
    LpssPlatform {
        short: "GLK",
        name: "Gemini Lake",
        ids: &[
            even(0x31AC, 0x31BA, I2c),
            even(0x31BC, 0x31C0, Uart),
            even(0x31C2, 0x31C6, Spi),
            one(0x31EE, Uart),
        ],
    },
    LpssPlatform {
        short: "CNL-LP",
        name: "Cannon Lake-LP",
        ids: &[
            one(0x9DA8, Uart),
            one(0x9DA9, Uart),
            one(0x9DAA, Spi),
            one(0x9DAB, Spi),
            one(0x9DC5, I2c),
            one(0x9DC6, I2c),
            one(0x9DC7, Uart),
            run(0x9DE8, 0x9DEB, I2c),
            one(0x9DFB, Spi),
        ],
    },
    LpssPlatform {
        short: "CNL-H",
        name: "Cannon Lake-H",
        ids: &[
            one(0xA328, Uart),
            one(0xA329, Uart),
            one(0xA32A, Spi),
            one(0xA32B, Spi),
            one(0xA347, Uart),
            run(0xA368, 0xA36B, I2c),
            one(0xA37B, Spi),
        ],
    },
    LpssPlatform {
        short: "CML-LP",
        name: "Comet Lake-LP",
        ids: &[
            one(0x02A8, Uart),
            one(0x02A9, Uart),
            one(0x02AA, Spi),
            one(0x02AB, Spi),
            one(0x02C5, I2c),
            one(0x02C6, I2c),
            one(0x02C7, Uart),
            run(0x02E8, 0x02EB, I2c),
            one(0x02FB, Spi),
        ],
    },
    LpssPlatform {
        short: "CML-H",
        name: "Comet Lake-H",
        ids: &[
            one(0x06A8, Uart),
            one(0x06A9, Uart),
            one(0x06AA, Spi),
            one(0x06AB, Spi),
            one(0x06C7, Uart),
            run(0x06E8, 0x06EB, I2c),
            one(0x06FB, Spi),
        ],
    },
    LpssPlatform {
        short: "CML-V",
        name: "Comet Lake-V",
        ids: &[
            one(0xA3A7, Uart),
            one(0xA3A8, Uart),
            one(0xA3A9, Spi),
            one(0xA3AA, Spi),
            run(0xA3E0, 0xA3E3, I2c),
            one(0xA3E6, Uart),
        ],
    },
    LpssPlatform {
        short: "ICL-LP",
        name: "Ice Lake-LP",
        ids: &[
            one(0x34A8, Uart),
            one(0x34A9, Uart),
            one(0x34AA, Spi),
            one(0x34AB, Spi),
            one(0x34C5, I2c),
            one(0x34C6, I2c),
            one(0x34C7, Uart),
            run(0x34E8, 0x34EB, I2c),
            one(0x34FB, Spi),
        ],
    },
    LpssPlatform {
        short: "ICL-N",
        name: "Ice Lake-N",
        ids: &[one(0x38A8, Uart)],
    },
    LpssPlatform {
        short: "LKF",
        name: "Lakefield",
        ids: &[
            one(0x98A8, Uart),
            one(0x98A9, Uart),
            one(0x98AA, Spi),
            one(0x98C5, I2c),
            one(0x98C6, I2c),
            one(0x98C7, Uart),
            run(0x98E8, 0x98EB, I2c),
        ],
    },
    LpssPlatform {
        short: "TGL-LP",
        name: "Tiger Lake-LP",
        ids: &[
            one(0xA0A8, Uart),
            one(0xA0A9, Uart),
            one(0xA0AA, Spi),
            one(0xA0AB, Spi),
            one(0xA0C5, I2c),
            one(0xA0C6, I2c),
            one(0xA0C7, Uart),
            one(0xA0D8, I2c),
            one(0xA0D9, I2c),
            run(0xA0DA, 0xA0DD, Uart),
            one(0xA0DE, Spi),
            one(0xA0DF, Spi),
            run(0xA0E8, 0xA0EB, I2c),
            one(0xA0FB, Spi),
            one(0xA0FD, Spi),
            one(0xA0FE, Spi),
        ],
    },
    LpssPlatform {
        short: "TGL-H",
        name: "Tiger Lake-H",
        ids: &[
            one(0x43A7, Uart),
            one(0x43A8, Uart),
            one(0x43A9, Uart),
            one(0x43AA, Spi),
            one(0x43AB, Spi),
            one(0x43AD, I2c),
            one(0x43AE, I2c),
            one(0x43D8, I2c),
            one(0x43DA, Uart),
            run(0x43E8, 0x43EB, I2c),
            one(0x43FB, Spi),
            one(0x43FD, Spi),
        ],
    },
    LpssPlatform {
        short: "EHL",
        name: "Elkhart Lake",
        ids: &[
            one(0x4B28, Uart),
            one(0x4B29, Uart),
            one(0x4B2A, Spi),
            one(0x4B2B, Spi),
            one(0x4B37, Spi),
            one(0x4B44, I2c),
            one(0x4B45, I2c),
            one(0x4B4B, I2c),
            one(0x4B4C, I2c),
            one(0x4B4D, Uart),
            run(0x4B78, 0x4B7B, I2c),
        ],
    },
    LpssPlatform {
        short: "JSL",
        name: "Jasper Lake",
        ids: &[
            one(0x4DA8, Uart),
            one(0x4DA9, Uart),
            one(0x4DAA, Spi),
            one(0x4DAB, Spi),
            one(0x4DC5, I2c),
            one(0x4DC6, I2c),
            one(0x4DC7, Uart),
            run(0x4DE8, 0x4DEB, I2c),
            one(0x4DFB, Spi),
        ],
    },
    LpssPlatform {
        short: "EBG",
        name: "Emmitsburg",
        ids: &[one(0x1BAD, Uart), one(0x1BAE, Uart)],
    },
    LpssPlatform {
        short: "ADL-P",
        name: "Alder Lake-P",
        ids: &[
            one(0x51A8, Uart),
            one(0x51A9, Uart),
            one(0x51AA, Spi),
            one(0x51AB, Spi),
            one(0x51C5, I2c),
            one(0x51C6, I2c),
            one(0x51C7, Uart),
            one(0x51D8, I2c),
            one(0x51D9, I2c),
            run(0x51E8, 0x51EB, I2c),
            one(0x51FB, Spi),
        ],
    },
    LpssPlatform {
        short: "ADL-M",
        name: "Alder Lake-M",
        ids: &[
            one(0x54A8, Uart),
            one(0x54A9, Uart),
            one(0x54AA, Spi),
            one(0x54AB, Spi),
            one(0x54C5, I2c),
            one(0x54C6, I2c),
            one(0x54C7, Uart),
            run(0x54E8, 0x54EB, I2c),
            one(0x54FB, Spi),
        ],
    },
    LpssPlatform {
        short: "ADL-S",
        name: "Alder Lake-S",
        ids: &[
            one(0x7AA8, Uart),
            one(0x7AA9, Uart),
            one(0x7AAA, Spi),
            one(0x7AAB, Spi),
            run(0x7ACC, 0x7ACF, I2c),
            one(0x7ADC, Uart),
            one(0x7AF9, Spi),
            one(0x7AFB, Spi),
            one(0x7AFC, I2c),
            one(0x7AFD, I2c),
            one(0x7AFE, Uart),
        ],
    },
    LpssPlatform {
        short: "RPL-S",
        name: "Raptor Lake-S",
        ids: &[
            one(0x7A28, Uart),
            one(0x7A29, Uart),
            one(0x7A2A, Spi),
            one(0x7A2B, Spi),
            run(0x7A4C, 0x7A4F, I2c),
            one(0x7A5C, Uart),
            one(0x7A79, Spi),
            one(0x7A7B, Spi),
            one(0x7A7C, I2c),
            one(0x7A7D, I2c),
            one(0x7A7E, Uart),
        ],
    },
    LpssPlatform {
        short: "MTL-P",
        name: "Meteor Lake-P",
        ids: &[
            one(0x7E25, Uart),
            one(0x7E26, Uart),
            one(0x7E27, Spi),
            one(0x7E30, Spi),
            one(0x7E46, Spi),
            one(0x7E50, I2c),
            one(0x7E51, I2c),
            one(0x7E52, Uart),
            run(0x7E78, 0x7E7B, I2c),
        ],
    },
    LpssPlatform {
        short: "MTP-S",
        name: "Meteor Lake PCH-S",
        ids: &[
            one(0x7F28, Uart),
            one(0x7F29, Uart),
            one(0x7F2A, Spi),
            one(0x7F2B, Spi),
            run(0x7F4C, 0x7F4F, I2c),
            one(0x7F5C, Uart),
            one(0x7F5D, Uart),
            one(0x7F5E, Spi),
            one(0x7F5F, Spi),
            one(0x7F7A, I2c),
            one(0x7F7B, I2c),
        ],
    },
    LpssPlatform {
        short: "ARL-H",
        name: "Arrow Lake-H",
        ids: &[
            one(0x7725, Uart),
            one(0x7726, Uart),
            one(0x7727, Spi),
            one(0x7730, Spi),
            one(0x7746, Spi),
            one(0x7750, I2c),
            one(0x7751, I2c),
            one(0x7752, Uart),
            run(0x7778, 0x777B, I2c),
        ],
    },
    LpssPlatform {
        short: "LNL-M",
        name: "Lunar Lake-M",
        ids: &[
            one(0xA825, Uart),
            one(0xA826, Uart),
            one(0xA827, Spi),
            one(0xA830, Spi),
            one(0xA846, Spi),
            one(0xA850, I2c),
            one(0xA851, I2c),
            one(0xA852, Uart),
            run(0xA878, 0xA87B, I2c),
        ],
    },
    LpssPlatform {
        short: "PTL-H",
        name: "Panther Lake-H",
        ids: &[
            one(0xE325, Uart),
            one(0xE326, Uart),
            one(0xE327, Spi),
            one(0xE330, Spi),
            one(0xE346, Spi),
            one(0xE350, I2c),
            one(0xE351, I2c),
            one(0xE352, Uart),
            run(0xE378, 0xE37B, I2c),
        ],
    },
    LpssPlatform {
        short: "PTL-P",
        name: "Panther Lake-P",
        ids: &[
            one(0xE425, Uart),
            one(0xE426, Uart),
            one(0xE427, Spi),
            one(0xE430, Spi),
            one(0xE446, Spi),
            one(0xE450, I2c),
            one(0xE451, I2c),
            one(0xE452, Uart),
            run(0xE478, 0xE47B, I2c),
        ],
    },
    LpssPlatform {
        short: "WCL",
        name: "Wildcat Lake",
        ids: &[
            one(0x4D25, Uart),
            one(0x4D26, Uart),
            one(0x4D27, Spi),
            one(0x4D30, Spi),
            one(0x4D46, Spi),
            one(0x4D50, I2c),
            one(0x4D51, I2c),
            one(0x4D52, Uart),
            run(0x4D78, 0x4D7B, I2c),
        ],
    },
    LpssPlatform {
        short: "NVL-S",
        name: "Nova Lake-S",
        ids: &[
            one(0x6E28, Uart),
            one(0x6E29, Uart),
            one(0x6E2A, Spi),
            one(0x6E2B, Spi),
            run(0x6E4C, 0x6E4F, I2c),
            one(0x6E5C, Uart),
            one(0x6E5E, Spi),
            one(0x6E7A, I2c),
            one(0x6E7B, I2c),
        ],
    },
    LpssPlatform {
        short: "NVL-H",
        name: "Nova Lake-H",
        ids: &[
            one(0xD325, Uart),
            one(0xD326, Uart),
            one(0xD327, Spi),
            one(0xD330, Spi),
            one(0xD347, Spi),
            one(0xD350, I2c),
            one(0xD351, I2c),
            one(0xD352, Uart),
            run(0xD378, 0xD37B, I2c),
        ],
    },
];

/// The `#n` the PCI ID database (pci.ids) gives LPSS functions, where the shared corpus
/// (`lpss-devices.tsv`, column `pciids_name`) records the database's name; sorted by ID.
/// The database numbers irregularly (Apollo Lake from 1, Alder Lake-P's 51C5 and 51E8
/// both #0), so no rule derives it from the table order; IDs not listed print no number.
const PCIIDS_NUMBER: &[(u16, u8)] = &[
    (0x02EA, 2),
    (0x06A8, 0),
    (0x06A9, 1),
    (0x06AA, 0),
    (0x06AB, 1),
    (0x06E8, 0),
    (0x06E9, 1),
    (0x06EA, 2),
    (0x06EB, 3),
    (0x06FB, 2),
    (0x0F0A, 1),
    (0x0F0C, 2),
    (0x0F41, 1),
    (0x0F42, 2),
    (0x0F43, 3),
    (0x0F44, 4),
    (0x0F45, 5),
    (0x0F46, 6),
    (0x0F47, 7),
    (0x228A, 1),
    (0x228C, 2),
    (0x22C1, 1),
    (0x22C2, 2),
    (0x22C3, 3),
    (0x22C4, 4),
    (0x22C6, 6),
    (0x22C7, 7),
    (0x34A8, 0),
    (0x34AA, 0),
    (0x34AB, 1),
    (0x34C5, 4),
    (0x34C6, 5),
    (0x34E8, 0),
    (0x34E9, 1),
    (0x34EA, 2),
    (0x34EB, 3),
    (0x43E8, 0),
    (0x43E9, 1),
    (0x51A8, 0),
    (0x51C5, 0),
    (0x51C6, 1),
    (0x51D8, 2),
    (0x51D9, 3),
    (0x51E8, 0),
    (0x51E9, 1),
    (0x51EA, 2),
    (0x51EB, 3),
    (0x5AAC, 1),
    (0x5AAE, 2),
    (0x5AB0, 3),
    (0x5AB2, 4),
    (0x5AB4, 5),
    (0x5AB6, 6),
    (0x5AB8, 7),
    (0x5ABA, 8),
    (0x5ABC, 1),
    (0x5ABE, 2),
    (0x5AC0, 3),
    (0x5AC2, 1),
    (0x5AC4, 2),
    (0x5AC6, 3),
    (0x5AEE, 4),
    (0x7AA8, 0),
    (0x7AAB, 1),
    (0x7ACC, 0),
    (0x7ACD, 1),
    (0x7ACE, 2),
    (0x7ACF, 3),
    (0x7AFC, 4),
    (0x7AFD, 5),
    (0x7E78, 0),
    (0x9C61, 0),
    (0x9C62, 1),
    (0x9C66, 1),
    (0x9CE2, 1),
    (0x9CE3, 0),
    (0x9CE6, 1),
    (0x9D27, 0),
    (0x9D28, 1),
    (0x9D29, 0),
    (0x9D2A, 1),
    (0x9D60, 0),
    (0x9D61, 1),
    (0x9D62, 2),
    (0x9D63, 3),
    (0x9D64, 4),
    (0x9D65, 5),
    (0x9D66, 2),
    (0x9DA8, 2),
    (0x9DE8, 0),
    (0x9DE9, 1),
    (0xA0A8, 0),
    (0xA0AB, 1),
    (0xA0C5, 4),
    (0xA0C6, 5),
    (0xA0E8, 0),
    (0xA0E9, 1),
    (0xA0EA, 2),
    (0xA0EB, 3),
    (0xA127, 0),
    (0xA128, 1),
    (0xA129, 0),
    (0xA12A, 1),
    (0xA160, 0),
    (0xA161, 1),
    (0xA162, 2),
    (0xA166, 2),
    (0xA2A7, 0),
    (0xA2A8, 1),
    (0xA2E0, 0),
    (0xA2E1, 1),
    (0xA368, 0),
    (0xA369, 1),
    (0xA36A, 2),
    (0xA36B, 3),
];

fn pciids_number(device: u16) -> Option<u8> {
    PCIIDS_NUMBER
        .binary_search_by_key(&device, |&(d, _)| d)
        .ok()
        .and_then(|i| PCIIDS_NUMBER.get(i))
        .map(|&(_, n)| n)
}

/// Every LPSS ID in the table, in table order.
pub fn lpss_ids() -> impl Iterator<Item = LpssId> {
    PLATFORMS.iter().flat_map(|p| {
        let mut counts = [0u8; 3];
        let mut out = alloc::vec::Vec::new();
        for e in p.ids {
            let mut id = e.first;
            while id <= e.last {
                let slot = match e.function {
                    Uart => 0,
                    I2c => 1,
                    Spi => 2,
                };
                let index = counts.get(slot).copied().unwrap_or(0);
                if let Some(c) = counts.get_mut(slot) {
                    *c = c.saturating_add(1);
                }
                out.push(LpssId {
                    device: id,
                    platform: p.short,
                    platform_name: p.name,
                    function: e.function,
                    index,
                    pciids_number: pciids_number(id),
                });
                match id.checked_add(e.step) {
                    Some(n) => id = n,
                    None => break,
                }
            }
        }
        out
    })
}

/// The LPSS entry for Intel device `device`.
pub fn lpss_lookup(device: u16) -> Option<LpssId> {
    // Cheap pre-check on the raw ranges before numbering the platform.
    let known = PLATFORMS.iter().any(|p| {
        p.ids.iter().any(|e| {
            (e.first..=e.last).contains(&device) && (device - e.first).is_multiple_of(e.step)
        })
    });
    if !known {
        return None;
    }
    lpss_ids().find(|l| l.device == device)
}

/// A device name: fixed text or an LPSS function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceName {
    /// From the fixed table.
    Fixed(&'static str),
    /// An LPSS function.
    Lpss(LpssId),
    /// A virtio device ID without its own entry.
    Virtio,
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceName::Fixed(s) => f.write_str(s),
            DeviceName::Lpss(l) => l.fmt(f),
            DeviceName::Virtio => f.write_str("Virtio device"),
        }
    }
}

/// Device name, if known.
pub fn device_name(vendor: u16, device: u16) -> Option<DeviceName> {
    if let Some((_, _, n)) = DEVICES
        .iter()
        .find(|(v, d, _)| *v == vendor && *d == device)
    {
        return Some(DeviceName::Fixed(n));
    }
    if vendor == VENDOR_INTEL {
        return lpss_lookup(device).map(DeviceName::Lpss);
    }
    if vendor == 0x1af4 && (0x1000..=0x107f).contains(&device) {
        return Some(DeviceName::Virtio);
    }
    None
}

/// Class name as lspci prints it: the sub-class name when known, else the base
/// class name.
pub fn class_name(class: ClassCode) -> &'static str {
    let sub = match (class.base, class.sub) {
        (0x00, 0x00) => Some("Non-VGA unclassified device"),
        (0x00, 0x01) => Some("VGA compatible unclassified device"),
        (0x01, 0x00) => Some("SCSI storage controller"),
        (0x01, 0x01) => Some("IDE interface"),
        (0x01, 0x02) => Some("Floppy disk controller"),
        (0x01, 0x03) => Some("IPI bus controller"),
        (0x01, 0x04) => Some("RAID bus controller"),
        (0x01, 0x05) => Some("ATA controller"),
        (0x01, 0x06) => Some("SATA controller"),
        (0x01, 0x07) => Some("Serial Attached SCSI controller"),
        (0x01, 0x08) => Some("Non-Volatile memory controller"),
        (0x02, 0x00) => Some("Ethernet controller"),
        (0x02, 0x01) => Some("Token ring network controller"),
        (0x02, 0x02) => Some("FDDI network controller"),
        (0x02, 0x03) => Some("ATM network controller"),
        (0x02, 0x04) => Some("ISDN controller"),
        (0x03, 0x00) => Some("VGA compatible controller"),
        (0x03, 0x01) => Some("XGA compatible controller"),
        (0x03, 0x02) => Some("3D controller"),
        (0x04, 0x00) => Some("Multimedia video controller"),
        (0x04, 0x01) => Some("Multimedia audio controller"),
        (0x04, 0x02) => Some("Computer telephony device"),
        (0x04, 0x03) => Some("Audio device"),
        (0x05, 0x00) => Some("RAM memory"),
        (0x05, 0x01) => Some("FLASH memory"),
        (0x06, 0x00) => Some("Host bridge"),
        (0x06, 0x01) => Some("ISA bridge"),
        (0x06, 0x02) => Some("EISA bridge"),
        (0x06, 0x03) => Some("MicroChannel bridge"),
        (0x06, 0x04) => Some("PCI bridge"),
        (0x06, 0x05) => Some("PCMCIA bridge"),
        (0x06, 0x06) => Some("NuBus bridge"),
        (0x06, 0x07) => Some("CardBus bridge"),
        (0x06, 0x08) => Some("RACEway bridge"),
        (0x06, 0x09) => Some("Semi-transparent PCI-to-PCI bridge"),
        (0x06, 0x0a) => Some("InfiniBand to PCI host bridge"),
        (0x07, 0x00) => Some("Serial controller"),
        (0x07, 0x01) => Some("Parallel controller"),
        (0x07, 0x02) => Some("Multiport serial controller"),
        (0x07, 0x03) => Some("Modem"),
        (0x08, 0x00) => Some("PIC"),
        (0x08, 0x01) => Some("DMA controller"),
        (0x08, 0x02) => Some("Timer"),
        (0x08, 0x03) => Some("RTC"),
        (0x08, 0x04) => Some("PCI Hot-plug controller"),
        (0x08, 0x05) => Some("SD Host controller"),
        (0x08, 0x06) => Some("IOMMU"),
        (0x09, 0x00) => Some("Keyboard controller"),
        (0x09, 0x02) => Some("Mouse controller"),
        (0x0c, 0x00) => Some("FireWire (IEEE 1394)"),
        (0x0c, 0x03) => Some("USB controller"),
        (0x0c, 0x04) => Some("Fibre Channel"),
        (0x0c, 0x05) => Some("SMBus"),
        (0x0c, 0x06) => Some("InfiniBand"),
        (0x0c, 0x07) => Some("IPMI Interface"),
        _ => None,
    };
    sub.unwrap_or(match class.base {
        0x00 => "Unclassified device",
        0x01 => "Mass storage controller",
        0x02 => "Network controller",
        0x03 => "Display controller",
        0x04 => "Multimedia controller",
        0x05 => "Memory controller",
        0x06 => "Bridge",
        0x07 => "Communication controller",
        0x08 => "System peripheral",
        0x09 => "Input device controller",
        0x0a => "Docking station",
        0x0b => "Processor",
        0x0c => "Serial bus controller",
        0x0d => "Wireless controller",
        0x0e => "Intelligent controller",
        0x0f => "Satellite communications controller",
        0x10 => "Encryption controller",
        0x11 => "Signal processing controller",
        0x12 => "Processing accelerators",
        0x13 => "Non-Essential Instrumentation",
        0x40 => "Coprocessor",
        _ => "Unassigned class",
    })
}

/// One `lspci` line, from [`lspci_line`].
pub struct LspciLine<'a>(&'a PciDevice);

/// `bb:dd.f class-name: vendor-name device-name [vvvv:dddd]`, plus ` (rev xx)` when
/// the revision is not 0, as lspci prints it. Unknown names print as `Vendor vvvv` /
/// `Device dddd`.
pub fn lspci_line(dev: &PciDevice) -> LspciLine<'_> {
    LspciLine(dev)
}

impl fmt::Display for LspciLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{} {}: ", d.bdf.short(), class_name(d.class))?;
        match vendor_name(d.vendor_id) {
            Some(v) => write!(f, "{v} ")?,
            None => write!(f, "Vendor {:04x} ", d.vendor_id)?,
        }
        match device_name(d.vendor_id, d.device_id) {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "Device {:04x}", d.device_id)?,
        }
        write!(f, " [{:04x}:{:04x}]", d.vendor_id, d.device_id)?;
        if d.revision != 0 {
            write!(f, " (rev {:02x})", d.revision)?;
        }
        Ok(())
    }
}

/// `lspci -v`-style block for one device, from [`lspci_verbose`].
pub struct LspciVerbose<'a> {
    dev: &'a PciDevice,
    driver: Option<&'a str>,
}

/// The [`lspci_line`] followed by tab-indented detail lines: subsystem, interrupt,
/// bridge buses, BARs, capabilities, and the bound driver if given.
pub fn lspci_verbose<'a>(dev: &'a PciDevice, driver: Option<&'a str>) -> LspciVerbose<'a> {
    LspciVerbose { dev, driver }
}

/// `1M`, `4K`, `32` as lspci prints sizes.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
            if s >= 1 << shift && s.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", s >> shift);
            }
        }
        write!(f, "{s}")
    }
}

impl fmt::Display for LspciVerbose<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.dev;
        write!(f, "{}", lspci_line(d))?;
        if let Some((sv, sd)) = d.subsystem.filter(|s| *s != (0, 0)) {
            match vendor_name(sv) {
                Some(v) => write!(f, "\n\tSubsystem: {v} Device {sd:04x}")?,
                None => write!(f, "\n\tSubsystem: Vendor {sv:04x} Device {sd:04x}")?,
            }
        }
        if (1..=4).contains(&d.interrupt_pin) {
            let pin = char::from(b'A' + d.interrupt_pin - 1);
            write!(
                f,
                "\n\tInterrupt: pin {pin} routed to IRQ {}",
                d.interrupt_line
            )?;
        }
        if let Some(b) = d.bridge {
            write!(
                f,
                "\n\tBus: primary={:02x}, secondary={:02x}, subordinate={:02x}",
                b.primary, b.secondary, b.subordinate
            )?;
        }
        if let Some(w) = d.bridge_windows {
            for (what, win) in [
                ("I/O", w.io),
                ("Memory", w.memory),
                ("Prefetchable memory", w.prefetchable),
            ] {
                if let Some(win) = win {
                    write!(
                        f,
                        "\n\t{what} behind bridge: {:x}-{:x} [size={}]",
                        win.base,
                        win.limit,
                        Size(win.size())
                    )?;
                }
            }
        }
        for b in &d.bars {
            match b.kind {
                crate::bar::BarKind::Io => write!(
                    f,
                    "\n\tI/O ports at {:04x} [size={}]",
                    b.address,
                    Size(b.size)
                )?,
                k => write!(
                    f,
                    "\n\tMemory at {:x} ({}, {}) [size={}]",
                    b.address,
                    match k {
                        crate::bar::BarKind::Memory64 => "64-bit",
                        crate::bar::BarKind::Memory1M => "low-1M",
                        _ => "32-bit",
                    },
                    if b.prefetchable {
                        "prefetchable"
                    } else {
                        "non-prefetchable"
                    },
                    Size(b.size)
                )?,
            }
        }
        for c in &d.capabilities {
            write!(f, "\n\tCapabilities: [{:02x}] {}", c.offset, c.name())?;
        }
        for c in &d.ext_capabilities {
            write!(
                f,
                "\n\tCapabilities: [{:03x} v{}] {}",
                c.offset,
                c.version,
                c.name()
            )?;
        }
        if let Some(drv) = self.driver {
            write!(f, "\n\tKernel driver in use: {drv}")?;
        }
        Ok(())
    }
}
