//! Named QEMU configurations ("profiles") and the QEMU command line they make.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    pub summary: &'static str,
    pub firmware: Firmware,
    pub memory: &'static str,
    /// Device arguments. `intel-iommu` must come before other PCI devices.
    pub devices: &'static [&'static str],
    /// Attach the generated 1.44 MB floppy image (q35 then creates an isa-fdc).
    pub floppy: bool,
    /// Attach the generated NVMe namespace image as `-device nvme` (namespace 1).
    pub nvme: bool,
    /// Boot options this profile always passes (before the user's).
    pub cmdline: &'static str,
}

const IOMMU_EDU: &[&str] = &["-device", "intel-iommu", "-device", "edu"];
/// As `IOMMU_EDU`, with TCG's own `max` CPU (AuthenticAMD, so a 1 TiB
/// physical address space with QEMU's HyperTransport hole to map and walk).
const IOMMU_EDU_AMD: &[&str] = &["-device", "intel-iommu", "-device", "edu", "-cpu", "max"];
const EDU_ONLY: &[&str] = &["-device", "edu"];
/// edu reaching 32 bits (the interrupt range at 0xFEE0_0000 included), for the
/// `attack` bench's MSI injection.
const IOMMU_EDU32: &[&str] = &[
    "-device",
    "intel-iommu",
    "-device",
    "edu,dma_mask=0xffffffff",
];
const IOMMU_TWO_EDU: &[&str] = &["-device", "intel-iommu", "-device", "edu", "-device", "edu"];
/// No VGA (so no framebuffer; UEFI, since SeaBIOS with no VGA never reaches
/// the bootloader) and no i8042: only the serial console is left.
const HEADLESS: &[&str] = &[
    "-vga",
    "none",
    "-machine",
    "i8042=off",
    "-device",
    "intel-iommu",
    "-device",
    "edu",
];
const IOMMU48_EDU: &[&str] = &["-device", "intel-iommu,aw-bits=48", "-device", "edu"];
/// A PCIe root port with an e1000e behind it, so enumeration must cross a bridge.
const WITH_ROOT_PORT: &[&str] = &[
    "-device",
    "intel-iommu",
    "-device",
    "edu",
    "-device",
    "pcie-root-port,id=rp1,chassis=1,slot=1",
    "-device",
    "e1000e,bus=rp1",
];

/// An edu behind a PCIe switch (root port 00:04.0 -> upstream 01:00.0 ->
/// downstream 02:00.0 -> edu 03:00.0): QEMU's DMAR names only the root port
/// (a sub-hierarchy scope), three bridges above the device.
const PCIE_SWITCH: &[&str] = &[
    "-device",
    "intel-iommu",
    "-device",
    "edu",
    "-device",
    "pcie-root-port,id=rp2,chassis=2,slot=2",
    "-device",
    "x3130-upstream,id=up,bus=rp2",
    "-device",
    "xio3130-downstream,id=dn,bus=up,chassis=3,slot=0",
    "-device",
    "edu,bus=dn",
];
/// Two conventional edus behind one PCIe-to-PCI bridge (root port 00:04.0 ->
/// pcie-pci-bridge 01:00.0 -> edus 02:03.0 and 02:05.0): both DMA with the
/// bridge's requester ID 02:00.0, so they share one domain.
const PCI_BRIDGE: &[&str] = &[
    "-device",
    "intel-iommu",
    "-device",
    "edu",
    "-device",
    "pcie-root-port,id=rp1,chassis=1,slot=1",
    "-device",
    "pcie-pci-bridge,id=br1,bus=rp1",
    "-device",
    "edu,bus=br1,addr=3",
    "-device",
    "edu,bus=br1,addr=5",
];

/// A machine with an edu and no VT-d device, handed a real laptop's DMAR from
/// `boot/fixtures/` with `-acpitable` (boot/fixtures/README.md).
macro_rules! laptop_dmar {
    ($file:literal) => {
        &[
            "-device",
            "edu",
            "-acpitable",
            concat!("file=", env!("CARGO_MANIFEST_DIR"), "/fixtures/", $file),
        ]
    };
}

/// A ThinkPad's DMAR: its units are not in the machine, so bring-up must fail
/// cleanly.
const LAPTOP_DMAR: &[&str] = laptop_dmar!("thinkpad-x1-carbon-6-dmar.dat");

/// A Kaby Lake-R laptop's DMAR naming an ACPI namespace device
/// (`\_SB.PCI0.I2C0` at 00:15.0, through an ANDD).
const LAPTOP_ANDD: &[&str] = laptop_dmar!("vostro-5471-dmar.dat");

/// A Tiger Lake laptop's DMAR whose flags carry DMA_CTRL_PLATFORM_OPT_IN.
const LAPTOP_OPTIN: &[&str] = laptop_dmar!("ideapad-flex5-14itl05-dmar.dat");

/// An edu behind a PCIe root port (00:04.0 -> 01:00.0) that an SSDT the build
/// script generates (boot/src/ssdt.rs) marks `ExternalFacingPort`, as laptop
/// firmware marks a Thunderbolt port: the kernel must treat the edu as
/// untrusted with no `pci.untrusted=`. edu reaches 32 bits as in `attack`.
/// A second, empty root port (00:05.0) gets a malformed `_DSD` in the same SSDT.
const EXTERNAL_PORT_EDU32: &[&str] = &[
    "-device",
    "intel-iommu",
    "-device",
    "pcie-root-port,id=rp1,chassis=1,slot=1,addr=4",
    "-device",
    "edu,bus=rp1,dma_mask=0xffffffff",
    "-device",
    "pcie-root-port,id=rp2,chassis=2,slot=2,addr=5",
    "-acpitable",
    concat!("file=", env!("OUT_DIR"), "/external-facing-port-ssdt.aml"),
];

pub const PROFILES: &[Profile] = &[
    Profile {
        name: "default",
        summary:
            "q35, 2 GiB, Intel VT-d translating (iommu=on, strict), edu PCI DMA device, BIOS boot",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        // The kernel's own default is off (kernel/src/iommu.rs); the machine
        // we teach on shows translation.
        cmdline: "iommu=on",
    },
    Profile {
        name: "noiommu",
        summary: "as default, without the VT-d device: DMA is direct or bounced through swiotlb",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: EDU_ONLY,
        floppy: false,
        nvme: false,
        cmdline: "",
    },
    Profile {
        name: "uefi",
        summary: "as default, booted by OVMF (UEFI)",
        firmware: Firmware::Uefi,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "pcie",
        summary: "as default plus a PCIe root port with an e1000e NIC behind it (bus 1)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: WITH_ROOT_PORT,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "floppy",
        summary: "as default plus a 1.44 MB floppy drive on the ISA DMA controller (channel 2)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: true,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "nvme",
        summary: "as default plus an NVMe controller whose namespace is a 1 MiB image with a known pattern",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: true,
        cmdline: "iommu=on",
    },
    Profile {
        name: "ahci",
        summary: "as default plus a second AHCI disk (sdb, ICH9 port 1): a 32 MiB image with a known pattern",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "storage-noiommu",
        summary: "as storage without the VT-d device: DMA is direct, or bounced through swiotlb (Lab 08)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: EDU_ONLY,
        floppy: false,
        nvme: false,
        cmdline: "",
    },
    Profile {
        name: "storage",
        summary: "as default plus both storage disks: sdb (AHCI port 1) and nvme0n1, 32 MiB patterned images each",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "idma64-sim",
        summary: "as default plus a simulated Intel LPSS I2C function with an iDMA64 (idma64=sim; QEMU has no iDMA64)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on idma64=sim",
    },
    Profile {
        name: "idma64-sim-intx",
        summary: "as idma64-sim, but the LPSS function has no MSI (as on many laptops): its interrupts come on the INTx line the ACPI _PRT routes",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on idma64=sim-intx",
    },
    Profile {
        name: "idma64-sim-uart",
        summary: "as default plus a simulated Intel LPSS UART function with an iDMA64 (idma64=sim-uart): loopback, DMA request lines",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on idma64=sim-uart",
    },
    Profile {
        name: "laptop-dmar",
        summary: "no VT-d device, but a ThinkPad's DMAR (2 DRHD, 2 RMRR) naming units that are not there; iommu=on",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: LAPTOP_DMAR,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "iommu",
        summary: "the same machine as default, named for what it shows (iommu=on, strict)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "iommu-lazy",
        summary: "VT-d on with lazy invalidation (iommu=on iommu.strict=0: a flush queue)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on iommu.strict=0",
    },
    Profile {
        name: "iommu-pt",
        summary: "VT-d in pass-through mode (iommu=pt: bus address = physical)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=pt",
    },
    Profile {
        name: "iommu-4level",
        summary: "VT-d on with 48-bit addresses (intel-iommu,aw-bits=48: 4-level tables)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU48_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "iommu-reginval",
        summary: "VT-d on with register-based invalidation (iommu=on iommu.qi=0)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on iommu.qi=0",
    },
    Profile {
        name: "two-edu",
        summary: "VT-d on with two edu devices, each in its own domain (isolation)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_TWO_EDU,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "attack",
        summary: "VT-d on, edu reaching 32 bits (dma_mask=0xffffffff, edu.dma_bits=32) as the attack bench's malicious device",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: IOMMU_EDU32,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on edu.dma_bits=32",
    },
    Profile {
        name: "pcie-switch",
        summary: "VT-d on, a second edu behind a PCIe switch (03:00.0, covered through root port 00:04.0's scope)",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: PCIE_SWITCH,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "pci-bridge",
        summary: "VT-d on, two edus behind a PCIe-to-PCI bridge (02:03.0, 02:05.0): one requester ID 02:00.0, one shared domain",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: PCI_BRIDGE,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "headless",
        summary: "as uefi with no VGA and no i8042: no screen, no PS/2 keyboard, serial only",
        firmware: Firmware::Uefi,
        memory: "2G",
        devices: HEADLESS,
        floppy: false,
        nvme: false,
        cmdline: "",
    },
    Profile {
        name: "laptop-andd",
        summary: "no VT-d device, but a Dell Vostro 5471's DMAR whose INCLUDE_PCI_ALL unit names an ACPI namespace device (I2C0 at 00:15.0); iommu=on",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: LAPTOP_ANDD,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on",
    },
    Profile {
        name: "laptop-optin",
        summary: "no VT-d device, but a Tiger Lake IdeaPad's DMAR with DMA_CTRL_PLATFORM_OPT_IN; iommu=off, which the opt-in overrides",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: LAPTOP_OPTIN,
        floppy: false,
        nvme: false,
        cmdline: "iommu=off",
    },
    Profile {
        name: "bigmem",
        summary: "6 GiB, so RAM exists above 4 GiB; VT-d present but left off (iommu=off); TCG's own AMD CPU (1 TiB address space)",
        firmware: Firmware::Bios,
        memory: "6G",
        devices: IOMMU_EDU_AMD,
        floppy: false,
        nvme: false,
        // The one suite profile with a DMAR and translation off: the kernel's
        // own default, and high buffers bounce through swiotlb.
        cmdline: "iommu=off",
    },
    Profile {
        name: "attack-external",
        summary: "as attack, but edu sits behind root port 00:04.0, which an added SSDT marks ACPI ExternalFacingPort: edu is untrusted with no pci.untrusted=",
        firmware: Firmware::Bios,
        memory: "2G",
        devices: EXTERNAL_PORT_EDU32,
        floppy: false,
        nvme: false,
        cmdline: "iommu=on edu.dma_bits=32",
    },
];

pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// How the serial port is wired to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialMode {
    /// QEMU owns the terminal (raw mode, Ctrl-A X quits, Ctrl-A C monitor).
    Terminal,
    /// Serial on QEMU's stdin/stdout pipes, driven by the runner.
    Piped,
}

#[derive(Debug, Clone)]
pub struct Launch {
    pub profile: Profile,
    pub firmware: Firmware,
    pub cmdline: String,
    pub serial: SerialMode,
    /// `-no-reboot`: a reset (or triple fault) ends QEMU instead of rebooting.
    pub no_reboot: bool,
    /// A QEMU human monitor on this unix socket (piped mode), for oracle tests.
    pub monitor: Option<PathBuf>,
    pub extra: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Images {
    pub bios: PathBuf,
    pub uefi: PathBuf,
    /// Attach the boot image as a USB stick (usb-storage on an xHCI controller)
    /// instead of the default disk: how `./run.sh image` output is used on a PC.
    pub usb: bool,
    /// The floppy image for the `floppy` profile (created on demand).
    pub floppy: PathBuf,
    /// The namespace image for the `nvme` profile (created on demand).
    pub nvme: PathBuf,
}

/// Sector size and count of a 1.44 MB floppy.
pub const FLOPPY_SECTOR: usize = 512;
pub const FLOPPY_SECTORS: usize = 2880;

/// The content of sector `lba` in the generated image: a text label, then a
/// pattern that differs per sector and per byte, so a read of the wrong
/// sector, a shifted buffer or a dropped byte all show. The kernel's floppy
/// test checks the same formula (kernel/src/ktest/isa.rs).
pub fn floppy_sector(lba: usize) -> Vec<u8> {
    let mut s = vec![0u8; FLOPPY_SECTOR];
    let label = format!("BUSMASTER FLOPPY LBA {lba:05}\n");
    for (i, b) in s.iter_mut().enumerate() {
        *b = if i < label.len() {
            label.as_bytes()[i]
        } else {
            ((lba * 7 + i * 13) ^ (i >> 4)) as u8
        };
    }
    s
}

/// Writes the floppy image if it is missing or has the wrong size.
pub fn ensure_floppy_image(path: &Path) -> Result<(), String> {
    if std::fs::metadata(path)
        .map(|m| m.len() as usize == FLOPPY_SECTOR * FLOPPY_SECTORS)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let data: Vec<u8> = (0..FLOPPY_SECTORS).flat_map(floppy_sector).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Sector size and count of the NVMe namespace image (1 MiB).
pub const NVME_SECTOR: usize = 512;
pub const NVME_SECTORS: usize = 2048;

/// The content of sector `lba` of the NVMe image: a label, then a per-sector,
/// per-byte pattern (different from the floppy's, so the two cannot be confused).
pub fn nvme_sector(lba: usize) -> Vec<u8> {
    let label = format!("BUSMASTER NVME LBA {lba:05}\n");
    (0..NVME_SECTOR)
        .map(|i| {
            if i < label.len() {
                label.as_bytes()[i]
            } else {
                ((lba * 11 + i * 5) ^ (i >> 3) ^ 0x5a) as u8
            }
        })
        .collect()
}

/// Writes the NVMe image if it is missing or has the wrong size.
pub fn ensure_nvme_image(path: &Path) -> Result<(), String> {
    if std::fs::metadata(path)
        .map(|m| m.len() as usize == NVME_SECTOR * NVME_SECTORS)
        .unwrap_or(false)
    {
        return Ok(());
    }
    let data: Vec<u8> = (0..NVME_SECTORS).flat_map(nvme_sector).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Sectors of the `ahci` and `storage` profiles' disk images (32 MiB each: the
/// Linux comparison reads 256 x 128 KiB from each).
pub const STORAGE_SECTORS: usize = 65536;

/// The content of sector `lba` of the extra AHCI disk (`sdb` in the `ahci` and
/// `storage` profiles): a label, then a pattern unlike the NVMe and floppy ones.
pub fn ahci_sector(lba: usize) -> Vec<u8> {
    let label = format!("BUSMASTER AHCI LBA {lba:05}\n");
    (0..NVME_SECTOR)
        .map(|i| {
            if i < label.len() {
                label.as_bytes()[i]
            } else {
                ((lba * 3 + i * 7) ^ (i >> 2) ^ (lba >> 8) ^ 0xa5) as u8
            }
        })
        .collect()
}

/// A storage profile's extra disk: which controller, the image and its pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDisk {
    /// `sdb`: an AHCI disk on the ICH9's port 1 (`ide.1`).
    Ahci,
    /// `nvme0n1`: a 32 MiB namespace (the `nvme` profile's is 1 MiB).
    Nvme,
}

impl StorageDisk {
    /// The image file, beside the NVMe profile's.
    pub fn image(self, images: &Images) -> PathBuf {
        images.nvme.with_file_name(match self {
            StorageDisk::Ahci => "ahci.img",
            StorageDisk::Nvme => "nvme-storage.img",
        })
    }

    /// Sector `lba` as the runner writes it.
    pub fn sector(self, lba: usize) -> Vec<u8> {
        match self {
            StorageDisk::Ahci => ahci_sector(lba),
            StorageDisk::Nvme => nvme_sector(lba),
        }
    }
}

/// The extra disks a profile attaches (by name, so no other profile changes).
pub fn storage_disks(profile: &str) -> &'static [StorageDisk] {
    match profile {
        "ahci" => &[StorageDisk::Ahci],
        "storage" | "storage-noiommu" => &[StorageDisk::Ahci, StorageDisk::Nvme],
        _ => &[],
    }
}

/// Writes the profile's storage images if missing or of the wrong size.
pub fn ensure_storage_images(profile: &str, images: &Images) -> Result<(), String> {
    for &d in storage_disks(profile) {
        let path = d.image(images);
        if std::fs::metadata(&path)
            .map(|m| m.len() as usize == NVME_SECTOR * STORAGE_SECTORS)
            .unwrap_or(false)
        {
            continue;
        }
        let data: Vec<u8> = (0..STORAGE_SECTORS).flat_map(|l| d.sector(l)).collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The QEMU arguments attaching a profile's storage disks (read-only snapshots).
pub fn storage_args(profile: &str, images: &Images) -> Vec<String> {
    let mut a = Vec::new();
    for &d in storage_disks(profile) {
        let file = d.image(images);
        let (id, dev) = match d {
            StorageDisk::Ahci => ("s1", "ide-hd,drive=s1,bus=ide.1"),
            StorageDisk::Nvme => ("s2", "nvme,serial=busmaster,drive=s2"),
        };
        a.push("-drive".into());
        a.push(format!(
            "if=none,id={id},format=raw,file={},snapshot=on",
            file.display()
        ));
        a.push("-device".into());
        a.push(dev.into());
    }
    a
}

/// OVMF firmware files (Debian's `ovmf` package).
pub struct Ovmf {
    pub code: PathBuf,
    pub vars_template: PathBuf,
}

impl Ovmf {
    pub fn locate() -> Result<Ovmf, String> {
        let env = |k: &str| std::env::var_os(k).map(PathBuf::from);
        if let (Some(code), Some(vars)) = (env("BUSMASTER_OVMF_CODE"), env("BUSMASTER_OVMF_VARS")) {
            return Ok(Ovmf {
                code,
                vars_template: vars,
            });
        }
        for dir in ["/usr/share/OVMF", "/usr/share/ovmf", "/usr/share/edk2/ovmf"] {
            let code = Path::new(dir).join("OVMF_CODE_4M.fd");
            let vars = Path::new(dir).join("OVMF_VARS_4M.fd");
            if code.exists() && vars.exists() {
                return Ok(Ovmf {
                    code,
                    vars_template: vars,
                });
            }
        }
        Err("OVMF not found (install Debian's 'ovmf' package, or set BUSMASTER_OVMF_CODE and BUSMASTER_OVMF_VARS)".into())
    }
}

/// fw_cfg string values are comma-separated options: a literal comma is doubled.
pub fn fw_cfg_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// The QEMU arguments for a launch. `vars` is the per-run copy of the UEFI
/// variable store (UEFI only).
pub fn qemu_args(
    launch: &Launch,
    images: &Images,
    ovmf: Option<&Ovmf>,
    vars: Option<&Path>,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    // The CPU says GenuineIntel, as the machines Busmaster is for do. TCG's
    // `max` CPU otherwise says AuthenticAMD, and QEMU then reserves the AMD
    // HyperTransport hole below 1 TiB in the e820 map: the bootloader maps
    // all 1 TiB of physical address space (512K 2 MiB pages) and the kernel
    // walks it to uncache the holes, about a second of every boot. The
    // `bigmem` profile keeps the AMD view (its devices end with `-cpu max`;
    // QEMU takes the last -cpu), so that path stays tested.
    push(&[
        "-machine",
        "q35",
        "-cpu",
        "max,vendor=GenuineIntel",
        "-m",
        launch.profile.memory,
    ]);
    push(&["-display", "none"]);
    match launch.serial {
        SerialMode::Terminal => push(&["-serial", "mon:stdio"]),
        SerialMode::Piped => push(&["-serial", "stdio", "-monitor", "none"]),
    }
    if let Some(sock) = &launch.monitor {
        let spec = format!("unix:{},server=on,wait=off", sock.display());
        push(&["-monitor", &spec]);
    }
    // isa-debug-exit lets the kernel end QEMU with a status the runner reads.
    push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    if launch.no_reboot {
        push(&["-no-reboot"]);
    }
    let image = match launch.firmware {
        Firmware::Bios => &images.bios,
        Firmware::Uefi => &images.uefi,
    };
    if let (Firmware::Uefi, Some(ovmf), Some(vars)) = (launch.firmware, ovmf, vars) {
        a.push("-drive".into());
        a.push(format!(
            "if=pflash,format=raw,readonly=on,file={}",
            ovmf.code.display()
        ));
        a.push("-drive".into());
        a.push(format!("if=pflash,format=raw,file={}", vars.display()));
    }
    // snapshot=on: the image is never written, so runs can share it.
    if images.usb {
        a.push("-device".into());
        a.push("qemu-xhci,id=xhci".into());
        a.push("-drive".into());
        a.push(format!(
            "if=none,id=stick,format=raw,file={},snapshot=on",
            image.display()
        ));
        a.push("-device".into());
        a.push("usb-storage,bus=xhci.0,drive=stick,bootindex=1".into());
    } else {
        a.push("-drive".into());
        a.push(format!("format=raw,file={},snapshot=on", image.display()));
    }
    // The profile's options first, so a user's --cmdline can override them
    // (the kernel takes the last value of a key).
    let cmdline = [launch.profile.cmdline, launch.cmdline.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if !cmdline.is_empty() {
        a.push("-fw_cfg".into());
        a.push(format!(
            "name=opt/busmaster/cmdline,string={}",
            fw_cfg_escape(&cmdline)
        ));
    }
    a.extend(launch.profile.devices.iter().map(|s| s.to_string()));
    if launch.profile.floppy {
        a.push("-drive".into());
        a.push(format!(
            "if=floppy,index=0,format=raw,file={},snapshot=on",
            images.floppy.display()
        ));
    }
    if launch.profile.nvme {
        a.push("-drive".into());
        a.push(format!(
            "if=none,id=n0,format=raw,file={},snapshot=on",
            images.nvme.display()
        ));
        a.push("-device".into());
        a.push("nvme,serial=busmaster,drive=n0".into());
    }
    a.extend(storage_args(launch.profile.name, images));
    a.extend(launch.extra.iter().cloned());
    a
}

/// Maps QEMU's exit status to ours: isa-debug-exit writes `v` and QEMU exits
/// with `(v << 1) | 1` (kernel/src/power.rs names the values).
pub fn exit_meaning(status: i32) -> (i32, &'static str) {
    match status {
        0 => (0, "powered off"),
        33 => (0, "kernel reported success"),
        35 => (1, "kernel reported test failures"),
        37 => (2, "kernel crashed (panic or CPU exception)"),
        _ => (1, "QEMU failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(profile: &str, firmware: Firmware) -> Launch {
        Launch {
            profile: find(profile).unwrap().clone(),
            firmware,
            cmdline: "mode=test a=b,c".into(),
            serial: SerialMode::Piped,
            no_reboot: true,
            monitor: None,
            extra: vec!["-s".into(), "-S".into()],
        }
    }

    fn images() -> Images {
        Images {
            usb: false,
            bios: "/img/bios.img".into(),
            uefi: "/img/uefi.img".into(),
            floppy: "/img/floppy.img".into(),
            nvme: "/img/nvme.img".into(),
        }
    }

    #[test]
    fn default_profile_has_iommu_before_edu_and_escapes_fw_cfg() {
        let args = qemu_args(&launch("default", Firmware::Bios), &images(), None, None);
        let iommu = args.iter().position(|a| a == "intel-iommu").unwrap();
        let edu = args.iter().position(|a| a == "edu").unwrap();
        assert!(iommu < edu);
        // The default machine translates; the user's options come after the
        // profile's, so `--cmdline iommu=off` overrides it.
        assert!(args
            .contains(&"name=opt/busmaster/cmdline,string=iommu=on mode=test a=b,,c".to_string()));
        assert!(args.contains(&"format=raw,file=/img/bios.img,snapshot=on".to_string()));
        assert!(args.contains(&"-no-reboot".to_string()));
        // user arguments come last, unchanged
        assert_eq!(&args[args.len() - 2..], ["-s", "-S"]);
        assert!(!args.iter().any(|a| a.contains("pflash")));
    }

    #[test]
    fn uefi_launch_uses_pflash_and_uefi_image() {
        let ovmf = Ovmf {
            code: "/fw/CODE.fd".into(),
            vars_template: "/fw/VARS.fd".into(),
        };
        let args = qemu_args(
            &launch("uefi", Firmware::Uefi),
            &images(),
            Some(&ovmf),
            Some(Path::new("/tmp/v.fd")),
        );
        assert!(args.contains(&"if=pflash,format=raw,readonly=on,file=/fw/CODE.fd".to_string()));
        assert!(args.contains(&"if=pflash,format=raw,file=/tmp/v.fd".to_string()));
        assert!(args.contains(&"format=raw,file=/img/uefi.img,snapshot=on".to_string()));
    }

    #[test]
    fn nvme_profile_attaches_the_namespace_image_to_an_nvme_controller() {
        let args = qemu_args(&launch("nvme", Firmware::Bios), &images(), None, None);
        let drive = args
            .iter()
            .position(|a| a == "if=none,id=n0,format=raw,file=/img/nvme.img,snapshot=on")
            .unwrap();
        assert_eq!(args[drive - 1], "-drive");
        assert_eq!(
            args[drive + 1..drive + 3],
            ["-device", "nvme,serial=busmaster,drive=n0"]
        );
        assert!(args.iter().position(|a| a == "intel-iommu").unwrap() < drive);
        assert!(
            !qemu_args(&launch("default", Firmware::Bios), &images(), None, None)
                .iter()
                .any(|a| a.contains("nvme"))
        );
        let s0 = nvme_sector(0);
        assert!(s0.starts_with(b"BUSMASTER NVME LBA 00000\n"));
        assert_ne!(nvme_sector(1)[100], s0[100]);
        assert_ne!(s0[100], s0[101]);
    }

    #[test]
    fn storage_profiles_attach_the_ahci_and_nvme_images() {
        let args = qemu_args(&launch("storage", Firmware::Bios), &images(), None, None);
        let at = |want: &str| args.iter().position(|a| a == want).unwrap();
        let ahci = at("if=none,id=s1,format=raw,file=/img/ahci.img,snapshot=on");
        assert_eq!(args[ahci + 2], "ide-hd,drive=s1,bus=ide.1");
        let nvme = at("if=none,id=s2,format=raw,file=/img/nvme-storage.img,snapshot=on");
        assert_eq!(args[nvme + 2], "nvme,serial=busmaster,drive=s2");
        let ahci_only = qemu_args(&launch("ahci", Firmware::Bios), &images(), None, None);
        assert!(ahci_only.iter().any(|a| a.contains("ahci.img")));
        assert!(!ahci_only.iter().any(|a| a.contains("nvme")));
        let s0 = ahci_sector(0);
        assert!(s0.starts_with(b"BUSMASTER AHCI LBA 00000\n"));
        assert_ne!(ahci_sector(1)[100], s0[100]);
        assert_ne!(ahci_sector(256)[100], ahci_sector(0)[100]);
    }

    #[test]
    fn profiles_have_unique_names_and_bigmem_has_6g() {
        for (i, p) in PROFILES.iter().enumerate() {
            assert!(
                PROFILES[i + 1..].iter().all(|q| q.name != p.name),
                "{}",
                p.name
            );
        }
        assert_eq!(find("bigmem").unwrap().memory, "6G");
        assert!(!find("noiommu").unwrap().devices.contains(&"intel-iommu"));
        assert!(find("nope").is_none());
    }

    #[test]
    fn exit_codes_map_back() {
        assert_eq!(exit_meaning(0).0, 0);
        assert_eq!(exit_meaning(33).0, 0);
        assert_eq!(exit_meaning(35).0, 1);
        assert_eq!(exit_meaning(37).0, 2);
        assert_eq!(exit_meaning(1).0, 1);
    }
}

#[cfg(test)]
mod external_port_tests {
    use super::*;

    #[test]
    fn attack_external_passes_the_generated_ssdt_and_no_untrusted_option() {
        let p = find("attack-external").unwrap();
        let table = p
            .devices
            .iter()
            .position(|a| *a == "-acpitable")
            .map(|i| p.devices[i + 1])
            .unwrap();
        assert!(table.ends_with(&format!("/{}", crate::ssdt::EXTERNAL_PORT_SSDT)));
        // The build script wrote it, for the root port the profile declares.
        let bytes = std::fs::read(table.trim_start_matches("file=")).unwrap();
        assert_eq!(bytes, crate::ssdt::attack_external_ssdt());
        for (dev, _) in [crate::ssdt::EXTERNAL_PORT, crate::ssdt::MALFORMED_PORT] {
            assert!(p
                .devices
                .iter()
                .any(|a| a.starts_with("pcie-root-port,") && a.ends_with(&format!(",addr={dev}"))));
        }
        assert!(!p.cmdline.contains("pci.untrusted"));
    }
}

#[cfg(test)]
mod floppy_tests {
    use super::*;

    #[test]
    fn sectors_are_labelled_and_distinct() {
        let a = floppy_sector(0);
        let b = floppy_sector(1);
        assert_eq!(a.len(), 512);
        assert!(a.starts_with(b"BUSMASTER FLOPPY LBA 00000\n"));
        assert!(b.starts_with(b"BUSMASTER FLOPPY LBA 00001\n"));
        assert_ne!(a[100..], b[100..]);
        assert_eq!(floppy_sector(2879)[27], ((2879 * 7 + 27 * 13) ^ 1) as u8);
    }
}
