use alloc::string::ToString;
use alloc::vec::Vec;

use crate::names::*;
use crate::*;

#[test]
fn lspci_lines_for_q35() {
    let cfg = super::q35();
    let e = enumerate(&cfg, &ScanOptions::default());
    let lines: Vec<_> = e
        .devices
        .iter()
        .map(|d| lspci_line(d).to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "00:00.0 Host bridge: Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller [8086:29c0]",
            "00:01.0 VGA compatible controller: Technical Corp. QEMU Virtual Video Controller [1234:1111] (rev 02)",
            "00:02.0 Ethernet controller: Intel Corporation 82574L Gigabit Network Connection [8086:10d3]",
            "00:03.0 Unclassified device: Technical Corp. QEMU edu educational device [1234:11e8] (rev 10)",
            "00:1c.0 PCI bridge: Red Hat, Inc. QEMU PCIe Root port [1b36:000c]",
            "00:1f.0 ISA bridge: Intel Corporation 82801IB (ICH9) LPC Interface Controller [8086:2918] (rev 02)",
            "00:1f.2 SATA controller: Intel Corporation 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode] [8086:2922] (rev 02)",
            "00:1f.3 SMBus: Intel Corporation 82801I (ICH9 Family) SMBus Controller [8086:2930] (rev 02)",
            "01:00.0 PCI bridge: Intel Corporation Device 1234 [8086:1234]",
            "02:00.0 PCI bridge: Intel Corporation Device 1235 [8086:1235]",
            "03:00.0 Communication controller: Intel Corporation Sunrise Point-LP LPSS UART #0 [8086:9d27] (rev 21)",
        ]
    );
}

#[test]
fn names_and_classes() {
    assert_eq!(
        device_name(0x1af4, 0x1041).unwrap().to_string(),
        "Virtio 1.0 network device"
    );
    assert_eq!(
        device_name(0x1af4, 0x105a).unwrap().to_string(),
        "Virtio device"
    );
    assert_eq!(
        device_name(0x8086, 0x2937).unwrap().to_string(),
        "82801I (ICH9 Family) USB UHCI Controller #4"
    );
    assert_eq!(
        device_name(0x8086, 0x293a).unwrap().to_string(),
        "82801I (ICH9 Family) USB2 EHCI Controller #1"
    );
    assert!(device_name(0x8086, 0xffff).is_none());
    assert!(vendor_name(0x5555).is_none());
    let c = |v| class_name(ClassCode::from_u32(v));
    assert_eq!(c(0x0c_0330), "USB controller");
    assert_eq!(c(0x0c_8000), "Serial bus controller");
    assert_eq!(c(0x07_8000), "Communication controller");
    assert_eq!(c(0x08_0600), "IOMMU");
    assert_eq!(c(0xfe_0000), "Unassigned class");
    let d = PciDevice {
        bdf: Bdf::b(0, 5, 0),
        vendor_id: 0x5555,
        device_id: 0x0001,
        revision: 0,
        class: ClassCode::from_u32(0x01_0802),
        header_layout: 0,
        multifunction: false,
        subsystem: None,
        interrupt_line: 0,
        interrupt_pin: 0,
        parent: None,
        bridge: None,
        bridge_windows: None,
        bars: Vec::new(),
        capabilities: Vec::new(),
        ext_capabilities: Vec::new(),
        dma: DmaParams::default(),
    };
    assert_eq!(
        lspci_line(&d).to_string(),
        "00:05.0 Non-Volatile memory controller: Vendor 5555 Device 0001 [5555:0001]"
    );
}

#[test]
fn lpss_table_numbering() {
    let l = |d| lpss_lookup(d).unwrap().to_string();
    assert_eq!(l(0x9d27), "Sunrise Point-LP LPSS UART #0");
    assert_eq!(l(0x9d28), "Sunrise Point-LP LPSS UART #1");
    assert_eq!(l(0x9d66), "Sunrise Point-LP LPSS UART #2");
    assert_eq!(l(0x9d29), "Sunrise Point-LP LPSS SPI #0");
    assert_eq!(l(0x9d65), "Sunrise Point-LP LPSS I2C #5");
    // Broxton family lists every other ID; the PCI ID database numbers Apollo Lake
    // from 1.
    assert_eq!(l(0x5aba), "Apollo Lake LPSS I2C #8");
    assert!(lpss_lookup(0x5aad).is_none());
    assert_eq!(l(0x5aee), "Apollo Lake LPSS UART #4");
    // Numbered as the database does, not by table order (43E8 is fourth in the table).
    assert_eq!(l(0x43e8), "Tiger Lake-H LPSS I2C #0");
    assert_eq!(l(0x9da8), "Cannon Lake-LP LPSS UART #2");
    assert_eq!(l(0xa0c5), "Tiger Lake-LP LPSS I2C #4");
    // No database name known: no invented number.
    assert_eq!(l(0xa0dd), "Tiger Lake-LP LPSS UART");
    assert_eq!(l(0xd37b), "Nova Lake-H LPSS I2C");
    let x = lpss_lookup(0x02a8).unwrap();
    assert_eq!(
        (x.platform, x.function, x.index),
        ("CML-LP", LpssFunction::Uart, 0)
    );
    // IDs are unique across the table.
    let mut ids: Vec<u16> = lpss_ids().map(|l| l.device).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
    assert!(n > 250, "{n} LPSS IDs");
}

/// The LPSS IDs seen on real machines (shared corpus) agree with our table on the
/// function type wherever both know the ID.
#[test]
fn lpss_table_agrees_with_corpus() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/lpss-devices.tsv"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        std::println!("corpus not found at {path}; skipped");
        return;
    };
    let (mut checked, mut unclassified, mut numbered, mut disagree) = (0, 0, 0, Vec::new());
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (Some(id), Some(lpss), Some(func)) = (cols.first(), cols.get(1), cols.get(2)) else {
            continue;
        };
        let Some(dev) = id
            .strip_prefix("8086:")
            .and_then(|d| u16::from_str_radix(d, 16).ok())
        else {
            continue;
        };
        let Some(ours) = lpss_lookup(dev) else {
            continue;
        };
        // The corpus writes e.g. "I2C (by BDF 00:15.2)", "GSPI" for SPI, and "other"
        // where it could not tell.
        let theirs = match func.split_whitespace().next() {
            Some("GSPI") => "SPI",
            Some(f @ ("UART" | "I2C" | "SPI")) => f,
            _ => {
                unclassified += 1;
                continue;
            }
        };
        checked += 1;
        if *lpss != "yes" || ours.function.to_string() != theirs {
            disagree.push(alloc::format!(
                "{id}: corpus {lpss} {func}, ours {}",
                ours.function
            ));
        }
        // Where the corpus has the PCI ID database's name, our `#n` is the database's.
        let db_number = cols
            .get(7)
            .and_then(|n| n.rsplit_once('#'))
            .and_then(|(_, n)| n.parse::<u8>().ok());
        if let Some(n) = db_number {
            numbered += 1;
            if ours.pciids_number != Some(n)
                || !ours.to_string().ends_with(&alloc::format!(" #{n}"))
            {
                disagree.push(alloc::format!("{id}: database #{n}, ours {ours}"));
            }
        }
    }
    std::println!("LPSS corpus: {numbered} IDs with a database number checked");
    assert!(numbered > 80, "only {numbered} database numbers checked");
    std::println!("LPSS corpus: {checked} IDs checked, {unclassified} without a function type");
    assert!(checked > 50, "only {checked} corpus IDs matched");
    assert!(disagree.is_empty(), "{disagree:#?}");
}

#[test]
fn lspci_verbose_block() {
    let cfg = super::q35();
    let e = enumerate(&cfg, &ScanOptions::default());
    let edu = e.get(Bdf::b(0, 3, 0)).unwrap();
    assert_eq!(
        lspci_verbose(edu, Some("edu")).to_string(),
        "00:03.0 Unclassified device: Technical Corp. QEMU edu educational device [1234:11e8] (rev 10)\n\
         \tInterrupt: pin A routed to IRQ 11\n\
         \tMemory at fea00000 (32-bit, non-prefetchable) [size=1M]\n\
         \tCapabilities: [40] MSI\n\
         \tKernel driver in use: edu"
    );
    let nic = e.get(Bdf::b(0, 2, 0)).unwrap();
    let text = lspci_verbose(nic, None).to_string();
    assert!(text.contains("\tI/O ports at c000 [size=32]"), "{text}");
    assert!(text.contains("[size=128K]"), "{text}");
    let uart = e.get(Bdf::b(3, 0, 0)).unwrap();
    let text = lspci_verbose(uart, None).to_string();
    assert!(
        text.contains("\tSubsystem: Vendor 17aa Device 2245"),
        "{text}"
    );
    assert!(
        text.contains("Memory at 123400000 (64-bit, non-prefetchable) [size=4K]"),
        "{text}"
    );
    let rp = e.get(Bdf::b(0, 0x1c, 0)).unwrap();
    let text = lspci_verbose(rp, None).to_string();
    assert!(
        text.contains("\tBus: primary=00, secondary=01, subordinate=03"),
        "{text}"
    );
    assert!(text.contains("\tCapabilities: [40] Express"), "{text}");
    assert!(
        text.contains("\tMemory behind bridge: fe800000-fe9fffff [size=2M]"),
        "{text}"
    );
    assert!(
        text.contains("\tI/O behind bridge: 1000-1fff [size=4K]"),
        "{text}"
    );
    assert!(!text.contains("Prefetchable"), "{text}");
}
