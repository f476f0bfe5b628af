//! Platform discovery in the running kernel: ACPI, PCI, the edu driver's MSI.

use alloc::vec::Vec;

use pci::ConfigAccess;

use super::{KTest, TestResult};
use crate::acpi as platform;
use crate::drivers::edu;
use crate::{kassert, pci as kpci};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "acpi::madt_mcfg_hpet_fadt_found",
        run: acpi_found,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "acpi::our_walk_lists_the_tables_and_parses_dmar",
        run: own_tables,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "pci::ecam_and_legacy_enumerations_agree",
        run: ecam_vs_legacy,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "pci::edu_found_with_1mib_bar0_and_msi",
        run: edu_found,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "pci::edu_raise_interrupt_delivers_one_msi",
        run: edu_msi,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "pci::bus_master_only_by_drivers_and_off_after_unbind",
        run: bus_master_off,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "pci::function_behind_root_port_found",
        run: behind_root_port,
        profiles: &["pcie"],
        manual: false,
    },
];

fn acpi_found() -> TestResult {
    let p = platform::get().ok_or("no platform information")?;
    kassert!(
        p.local_apic == 0xfee0_0000,
        "local APIC at {:#x}",
        p.local_apic
    );
    kassert!(
        p.io_apics.len() == 1 && p.io_apics[0].address == 0xfec0_0000,
        "IO-APICs {:?}",
        p.io_apics
    );
    // QEMU q35 routes ISA IRQ 0 (PIT) to GSI 2.
    kassert!(
        p.overrides.iter().any(|o| o.isa_irq == 0 && o.gsi == 2),
        "no IRQ0->GSI2 override: {:?}",
        p.overrides
    );
    let ecam = p.ecam.first().ok_or("no MCFG window")?;
    kassert!(
        ecam.base == 0xb000_0000 && ecam.bus_start == 0 && ecam.bus_end == 0xff,
        "MCFG {ecam:?}"
    );
    kassert!(p.hpet == Some(0xfed0_0000), "HPET {:?}", p.hpet);
    // \_S5 is checked with the AML interpreter (ktest/intx.rs).
    kassert!(p.pm1a_cnt == Some(0x604), "PM1a {:?}", p.pm1a_cnt);
    Ok(())
}

fn own_tables() -> TestResult {
    let p = platform::get().ok_or("no platform information")?;
    let sigs: Vec<[u8; 4]> = p.tables.iter().map(|t| t.signature).collect();
    for want in [b"FACP", b"APIC", b"HPET", b"MCFG"] {
        kassert!(
            sigs.contains(want),
            "table {} missing from {:?}",
            core::str::from_utf8(want).unwrap_or("?"),
            p.tables.len()
        );
    }
    let profile = crate::cmdline::boot_cmdline()
        .get("profile")
        .unwrap_or("default");
    if profile == "noiommu" {
        kassert!(p.dmar.is_none(), "a DMAR without intel-iommu");
        return Ok(());
    }
    let dmar = match &p.dmar {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(alloc::format!("DMAR did not parse: {e}")),
        None => return Err("no DMAR with intel-iommu".into()),
    };
    // hw-facts §4.13: QEMU's DMAR has HAW byte 38 (39-bit) and one DRHD at
    // 0xfed90000 *without* INCLUDE_PCI_ALL: it lists the IOAPIC (bus 0xff)
    // and every function on the root bus, bridges as bridge scopes.
    // aw-bits=48 in the iommu-4level profile, QEMU's default 39 elsewhere.
    let want_width = if profile == "iommu-4level" { 48 } else { 39 };
    kassert!(
        dmar.address_width_bits() == want_width,
        "host address width {}, expected {want_width}",
        dmar.address_width_bits()
    );
    let units: Vec<_> = dmar.drhds().collect();
    kassert!(
        units.len() == 1 && units[0].register_base == 0xfed9_0000 && !units[0].include_pci_all(),
        "DRHDs {units:?}"
    );
    let unit = units[0];
    kassert!(
        unit.scopes
            .iter()
            .any(|sc| sc.scope_type.name() == "IOAPIC" && sc.start_bus == 0xff),
        "no IOAPIC scope"
    );
    // Cross-check two independent sources: every root-bus function PCI found
    // has a scope of the right kind, and no scope names a missing function.
    let devs = kpci::devices();
    // QEMU's DMAR lists QEMU's devices; the simulated LPSS function is not one.
    for d in devs
        .iter()
        .filter(|d| d.parent.is_none() && !crate::drivers::lpss::sim::is_sim(d.bdf))
    {
        let scope = unit
            .scopes
            .iter()
            .find(|sc| sc.single_hop_bdf() == Some((d.bdf.bus, d.bdf.device, d.bdf.function)))
            .ok_or_else(|| alloc::format!("{} has no DRHD device scope", d.bdf))?;
        let want = if d.is_bridge() {
            "PCI sub-hierarchy"
        } else {
            "PCI endpoint"
        };
        kassert!(
            scope.scope_type.name() == want,
            "{}: scope {} for a {}",
            d.bdf,
            scope.scope_type.name(),
            want
        );
    }
    let pci_scopes = unit.scopes.iter().filter(|sc| sc.start_bus != 0xff).count();
    kassert!(
        pci_scopes
            == devs
                .iter()
                .filter(|d| d.parent.is_none() && !crate::drivers::lpss::sim::is_sim(d.bdf))
                .count(),
        "{pci_scopes} PCI scopes"
    );
    let mut text = alloc::string::String::new();
    crate::shell::write_dmar_for_test(&mut text, dmar);
    kassert!(
        text.contains("DRHD register base 0xfed90000")
            && text.contains(&alloc::format!("host address width {want_width}")),
        "dmar view: {text}"
    );
    Ok(())
}

/// The identity of a function as both mechanisms must see it: address,
/// vendor, device, class, and (index, address, size) of each BAR.
type Identity = (pci::Bdf, u16, u16, u32, Vec<(u8, u64, u64)>);

fn summary(devs: &[pci::PciDevice]) -> Vec<Identity> {
    devs.iter()
        .map(|d| {
            let bars = d
                .bars
                .iter()
                .map(|b| (b.index, b.address, b.size))
                .collect();
            (d.bdf, d.vendor_id, d.device_id, d.class.as_u32(), bars)
        })
        .collect()
}

fn ecam_vs_legacy() -> TestResult {
    kassert!(
        kpci::mechanism_name().starts_with("ECAM"),
        "boot mechanism is {}",
        kpci::mechanism_name()
    );
    // A simulated function exists only in the boot mechanism's overlay, not in
    // hardware the legacy ports reach.
    let booted: alloc::vec::Vec<_> = kpci::devices()
        .into_iter()
        .filter(|d| !crate::drivers::lpss::sim::is_sim(d.bdf))
        .collect();
    let legacy = kpci::legacy();
    let scan = kpci::scan(&legacy, 0, 0);
    kassert!(!booted.is_empty(), "nothing enumerated");
    let (a, b) = (summary(&booted), summary(&scan.devices));
    kassert!(a == b, "ECAM and legacy disagree:\n{a:?}\n{b:?}");
    // Extended capabilities are only reachable through ECAM.
    kassert!(
        scan.devices.iter().all(|d| d.ext_capabilities.is_empty()),
        "legacy access found extended capabilities"
    );
    Ok(())
}

fn edu_found() -> TestResult {
    let devs = kpci::devices();
    let d = devs
        .iter()
        .find(|d| d.vendor_id == edu::VENDOR && d.device_id == edu::DEVICE)
        .ok_or("edu not enumerated")?;
    let bar = d.bar(0).ok_or("edu has no BAR0")?;
    kassert!(
        bar.size == 1 << 20 && matches!(bar.kind, pci::BarKind::Memory32),
        "BAR0 {bar:?}"
    );
    kassert!(
        d.class.as_u32() == 0x00ff00,
        "class {:#x}",
        d.class.as_u32()
    );
    kassert!(
        kpci::driver_of(d.bdf) == Some("edu"),
        "edu driver not bound"
    );
    kassert!(
        d.find_capability(pci::caps::id::MSI) == Some(0x40),
        "MSI capability not at 0x40"
    );
    Ok(())
}

fn edu_msi() -> TestResult {
    let before = edu::irq_count();
    let vector = edu::vector();
    let vec_before = crate::arch::idt::irq_count(vector);
    edu::with_edu(|e| e.dev.raise_irq(0x0002_0000)).ok_or("edu not bound")?;
    super::wait_until(super::EVENT_BOUND_MS, || edu::irq_count() != before);
    kassert!(
        edu::irq_count() == before + 1,
        "MSI count {before} -> {}",
        edu::irq_count()
    );
    kassert!(
        crate::arch::idt::irq_count(vector) == vec_before + 1,
        "vector {vector:#x} count"
    );
    kassert!(
        edu::last_status() & 0x0002_0000 != 0,
        "handler saw status {:#x}",
        edu::last_status()
    );
    let status = edu::with_edu(|e| e.dev.irq_status()).ok_or("edu gone")?;
    kassert!(status == 0, "interrupt status {status:#x} not acknowledged");
    Ok(())
}

fn bus_master_off() -> TestResult {
    // Enumeration (BAR sizing included) must leave every Command register as
    // it found it: we never give a device bus mastering on our own.
    let devs = kpci::devices();
    let before: Vec<u16> = devs
        .iter()
        .map(|d| kpci::with(|p| p.cfg.read16(d.bdf, 0x04)).unwrap_or(0))
        .collect();
    let rescan = kpci::with(|p| kpci::scan(&p.cfg, 0, 0).devices.len()).ok_or("no PCI")?;
    kassert!(
        rescan == devs.len(),
        "rescan found {rescan} functions, boot {}",
        devs.len()
    );
    for (d, b) in devs.iter().zip(&before) {
        let now = kpci::with(|p| p.cfg.read16(d.bdf, 0x04)).unwrap_or(0);
        kassert!(
            now == *b,
            "{}: Command {b:#06x} -> {now:#06x} after a rescan",
            d.bdf
        );
    }
    // A driver asks for it, and unbinding takes it away.
    let edu = devs
        .iter()
        .find(|d| d.vendor_id == edu::VENDOR && d.device_id == edu::DEVICE)
        .ok_or("edu not enumerated")?;
    kassert!(
        kpci::bus_master(edu.bdf) == Some(true),
        "bound edu driver did not enable BusMaster"
    );
    kpci::with(|p| {
        let kpci::PciState { cfg, registry, .. } = p;
        registry.unbind(&*cfg, edu.bdf)
    })
    .ok_or("no PCI")?
    .map_err(|e| alloc::format!("unbind: {e}"))?;
    kassert!(
        kpci::driver_of(edu.bdf).is_none(),
        "still bound after unbind"
    );
    kassert!(
        kpci::bus_master(edu.bdf) == Some(false),
        "BusMaster left on after unbind"
    );
    kassert!(!edu::bound(edu.bdf), "driver state survived remove");
    kpci::with(|p| {
        let kpci::PciState { cfg, registry, .. } = p;
        registry.bind(&*cfg, edu.bdf)
    })
    .ok_or("no PCI")?
    .map_err(|e| alloc::format!("rebind: {e}"))?;
    kassert!(
        kpci::driver_of(edu.bdf) == Some("edu"),
        "rebind did not bind edu"
    );
    kassert!(
        kpci::bus_master(edu.bdf) == Some(true),
        "BusMaster not back after rebind"
    );
    Ok(())
}

fn behind_root_port() -> TestResult {
    let devs = kpci::devices();
    let port = devs
        .iter()
        .find(|d| d.bridge.is_some() && d.vendor_id == 0x1b36 && d.device_id == 0x000c)
        .ok_or("no PCIe root port (1b36:000c)")?;
    let secondary = port.bridge.map(|b| b.secondary).unwrap_or(0);
    let child = devs
        .iter()
        .find(|d| d.parent == Some(port.bdf))
        .ok_or("nothing found behind the root port")?;
    kassert!(
        child.bdf.bus == secondary && secondary != 0,
        "child {} on bus {secondary}",
        child.bdf
    );
    kassert!(
        child.vendor_id == 0x8086 && child.device_id == 0x10d3,
        "child is {:04x}:{:04x}",
        child.vendor_id,
        child.device_id
    );
    Ok(())
}
