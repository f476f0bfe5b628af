//! DMAR remapping units (Linux: drivers/iommu/dmar.c): each DRHD's registers
//! mapped and its unit brought up (or left off, firmware state turned off),
//! DRHD and RMRR device scopes resolved against the PCI topology, and which
//! unit covers a device.

use alloc::sync::Arc;
use alloc::vec::Vec;

use acpi_tables::dmar::{DeviceScope, ScopeType};
use core::sync::atomic::AtomicBool;
use iommu_vtd::policy::{self, Mode, UnitRole};
use iommu_vtd::{Config, Coverage, RemappingUnit};
use spin::Mutex;

use super::dma_iommu::pci_windows;
use super::{fault, get, relax, DrhdEntry, Iommu, KFrames, Setup, UnitEntry, Unused};
use crate::arch::apic;
use crate::mm::{self as kmm, direct, IoMem};
use crate::sync::IrqSpinLock;

/// Sets every DRHD up (or leaves it off, firmware state turned off), keeps
/// the PCI windows out of the IOVA spaces, and turns translation on, with
/// every covered device in the pass-through domain. Returns the units.
pub(super) fn bring_up(
    s: &Setup,
    dmar: &acpi_tables::dmar::Dmar,
    topology: pci::Topology,
    devices: &[pci::PciDevice],
) -> Iommu {
    let vector = if s.mode == Mode::Off {
        None
    } else {
        apic::alloc_vector(fault::fault_irq).ok()
    };
    let quirked_igfx = devices
        .iter()
        .find(|d| policy::igfx_skip_te_disable(d.vendor_id, d.device_id, d.class.as_u32()));
    if let Some(g) = quirked_igfx {
        log::info!(
            "iommu: {} [{:04x}:{:04x}]: translation on the graphics unit is never turned off (skip-TE-disable quirk)",
            g.bdf,
            g.vendor_id,
            g.device_id
        );
    }
    let class_of = |seg: u16| {
        move |b: pci::Bdf| {
            devices
                .iter()
                .find(|d| d.bdf.segment == seg && d.bdf.sid() == b.sid())
                .map(|d| d.class.as_u32())
        }
    };
    let mut units = Vec::new();
    let mut drhds = Vec::new();
    for drhd in dmar.drhds() {
        let mut entry = DrhdEntry {
            base: drhd.register_base,
            segment: drhd.segment,
            include_all: drhd.include_pci_all(),
            scopes: drhd.scopes.clone(),
            unit: None,
            unused: Unused::Failed,
            role: UnitRole::Normal,
        };
        entry.role = policy::unit_role(&reach_of(&topology, &entry), class_of(drhd.segment));
        // Every DRHD is remembered, so an unused unit's devices stay its own.
        let leave_off = match (s.mode, entry.role) {
            (Mode::Off, _) => Some(Unused::Off),
            (_, UnitRole::Empty) => Some(Unused::NoDevices),
            (_, UnitRole::Graphics) if s.igfx_off => Some(Unused::GraphicsOff),
            _ => None,
        };
        if drhd.register_base == 0 {
            log::warn!("iommu: DRHD with register base 0 skipped (firmware bug)");
            entry.unused = leave_off.unwrap_or(Unused::Failed);
            drhds.push(entry);
            continue;
        }
        let base = drhd.register_base;
        let Some((regs, window)) = map_unit_registers(base, drhd.register_size()) else {
            entry.unused = leave_off.unwrap_or(Unused::Failed);
            drhds.push(entry);
            continue;
        };
        let cap = iommu_vtd::Cap::decode(regs.read64(iommu_vtd::regs::CAP));
        let cfg = Config {
            inval: s.inval,
            poll_budget: 1_000_000,
            relax,
            fault_msi: vector.map(|v| {
                let (addr, data) = apic::msi_message(v);
                (addr as u32, data)
            }),
            // 64 unmaps per domain-wide invalidation (Linux: 256 per CPU).
            flush_queue_len: 64,
            // Ticks of the 100 Hz timer: pending IOVAs wait at most 100 ms,
            // or what `iommu.fq_delay_ms=` says (10 ms .. 10 s; a longer wait
            // makes the lazy window visible to the `attack` bench).
            flush_queue_delay: s.fq_delay_ticks,
            window_size: Some(window),
            keep_translation: policy::keep_translation(entry.role, quirked_igfx.is_some(), &cap),
            ..Config::default()
        };
        if let Some(why) = leave_off {
            entry.unused = why;
            match iommu_vtd::quiesce(&regs, &cfg) {
                Ok(h) => log::info!(
                    "iommu {base:#x}: left off ({}); firmware state: {h}",
                    why.reason()
                ),
                Err(e) => log::warn!(
                    "iommu {base:#x}: left off ({}); turning off firmware state failed: {e}",
                    why.reason()
                ),
            }
            drhds.push(entry);
            continue;
        }
        let unit = match RemappingUnit::new(regs, direct::direct(), KFrames, cfg) {
            Ok(u) => u,
            Err(e) => {
                log::warn!("iommu {base:#x}: bring-up failed: {e}");
                drhds.push(entry);
                continue;
            }
        };
        log::info!(
            "iommu {base:#x}: VT-d {}-level tables, {:?} invalidation, mode {:?}{}{}",
            unit.levels(),
            unit.inval_mode(),
            s.mode,
            if s.strict {
                ", strict"
            } else {
                ", lazy (flush queue)"
            },
            if entry.role == UnitRole::Graphics {
                ", graphics unit"
            } else {
                ""
            }
        );
        entry.unit = Some(units.len());
        drhds.push(entry);
        units.push(UnitEntry {
            base,
            segment: drhd.segment,
            unit: Arc::new(IrqSpinLock::new(unit)),
            passthrough: Mutex::new(None),
            blocked: Mutex::new(None),
            enabled: AtomicBool::new(false),
        });
    }
    Iommu {
        mode: s.mode,
        strict: s.strict,
        units,
        drhds,
        attached: Mutex::new(Vec::new()),
        unclaimed: Mutex::new(Vec::new()),
        forced_by_platform: s.forced_by_platform,
        iova_windows: pci_windows(devices),
        topology,
        fault_vector: vector.unwrap_or(0),
    }
}

/// Maps a unit's registers: the DRHD's size, grown to what CAP.FRO and
/// ECAP.IRO need (the fault records and IOTLB registers may lie past the
/// first page; Linux's map_iommu does the same). Returns the mapping and its
/// size, or `None` (said in the log) when it cannot be mapped.
pub(super) fn map_unit_registers(base: u64, drhd_size: u64) -> Option<(IoMem, usize)> {
    use iommu_vtd::regs;
    let map = |size: u64| match kmm::ioremap(base, size) {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn!("iommu {base:#x}: cannot map {size:#x} bytes of registers: {e}");
            None
        }
    };
    let first = map(drhd_size)?;
    let cap = regs::Cap::decode(first.read64(regs::CAP));
    let ecap = regs::Ecap::decode(first.read64(regs::ECAP));
    let need = regs::register_window_size(&cap, &ecap) as u64;
    if need <= drhd_size {
        return Some((first, drhd_size as usize));
    }
    drop(first);
    log::info!("iommu {base:#x}: registers need {need:#x} bytes (the DRHD says {drhd_size:#x})");
    Some((map(need)?, need as usize))
}

/// A DMAR device scope's PCI function, its path followed through the
/// enumerated bridges (multi-hop paths included).
pub(super) fn resolve(topo: &pci::Topology, segment: u16, s: &DeviceScope) -> Option<pci::Bdf> {
    s.resolve(|b, d, f| topo.secondary_bus(segment, b, d, f))
        .and_then(|(b, d, f)| pci::Bdf::new(segment, b, d, f))
}

/// Every DRHD's reach, scopes resolved (crates/iommu-vtd's `coverage` input).
pub(super) fn reach(io: &Iommu) -> Vec<iommu_vtd::UnitScope> {
    io.drhds.iter().map(|d| reach_of(&io.topology, d)).collect()
}

/// One DRHD's reach, its scopes resolved against the topology.
pub(super) fn reach_of(topo: &pci::Topology, d: &DrhdEntry) -> iommu_vtd::UnitScope {
    let mut u = iommu_vtd::UnitScope {
        segment: d.segment,
        include_all: d.include_all,
        usable: d.unit.is_some(),
        ..Default::default()
    };
    for s in &d.scopes {
        let Some(b) = resolve(topo, d.segment, s) else {
            continue;
        };
        match s.scope_type {
            ScopeType::PciEndpoint => u.endpoints.push(b),
            ScopeType::PciSubHierarchy => u.bridges.push(b),
            _ => {}
        }
    }
    u
}

/// The requester IDs `bdf`'s DMA can carry (its own first, then those
/// bridges above it substitute), from the topology.
pub fn dma_aliases(bdf: pci::Bdf) -> Vec<pci::Bdf> {
    get().map_or_else(|| alloc::vec![bdf], |io| io.topology.dma_aliases(bdf))
}

/// Which DRHD covers `bdf`: a scope naming it or any bridge above it (the
/// nearest wins), else the INCLUDE_PCI_ALL unit of its segment. The
/// bridges above it come from the topology, which the units are set up with;
/// `_parent` (the caller's idea of its parent bridge) is not needed.
pub fn coverage(bdf: pci::Bdf, _parent: Option<pci::Bdf>) -> Coverage {
    let Some(io) = get() else {
        return Coverage::None;
    };
    let mut path = alloc::vec![bdf];
    path.extend(io.topology.ancestors(bdf));
    iommu_vtd::coverage(&reach(io), bdf.segment, &path)
}

/// The working unit (index into `units`) that translates `bdf`; `None` when
/// no DRHD covers it or its unit's bring-up failed.
pub fn unit_for(bdf: pci::Bdf, parent: Option<pci::Bdf>) -> Option<usize> {
    let io = get()?;
    match coverage(bdf, parent) {
        Coverage::Unit(i) => io.drhds.get(i).and_then(|d| d.unit),
        _ => None,
    }
}
