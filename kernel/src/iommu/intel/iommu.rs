//! VT-d device attach and the boot sequence (Linux: drivers/iommu/intel/iommu.c):
//! the boot options, the units set up once the PCI topology is known, every
//! function in a default domain and translation turned on before any driver
//! binds, and a driver-bound device's own translated domain.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use acpi_tables::dmar::DmarFlags;
use core::sync::atomic::Ordering;
use dma::SharedDomain;
use iommu_vtd::policy::{self, Mode};
use iommu_vtd::{Coverage, DomainId, DomainKind};
use spin::Mutex;

use super::default_domain::{attach_passthrough, attach_unclaimed, is_unclaimed_domain, Unclaimed};
use super::dma_iommu::{flush_queue_timer, VtdDomain};
use super::dmar::{bring_up, coverage, dma_aliases, resolve, unit_for};
use super::{get, with_unit, Iommu, Setup, Unused, IOMMU, SETUP};
use crate::acpi;
use crate::arch::apic;

/// Reads the boot options and the DMAR's flags; the units are dealt with
/// once the PCI topology is known (`set_topology`), before any driver binds.
pub fn init() {
    let cmdline = crate::cmdline::boot_cmdline();
    let strict = cmdline.get("iommu.strict") != Some("0");
    let Some(Ok(dmar)) = acpi::get().and_then(|p| p.dmar.as_ref()) else {
        log::info!("iommu: no usable DMAR table; DMA is untranslated");
        return;
    };
    let opt_in = dmar.flags.contains(DmarFlags::DMA_CTRL_PLATFORM_OPT_IN);
    let d = policy::decide(cmdline.get("iommu"), opt_in);
    if d.unknown_option {
        log::warn!(
            "iommu: unknown option iommu={} (on, off, pt, force-off); taken as not given",
            cmdline.get("iommu").unwrap_or("")
        );
    }
    if d.forced_by_platform {
        log::warn!(
            "iommu: the firmware opts in to DMA protection (DMAR DMA_CTRL_PLATFORM_OPT_IN): translation forced on; boot with iommu=force-off to keep VT-d off"
        );
    } else if d.mode == Mode::Off {
        log::info!("iommu: off (boot with iommu=on or iommu=pt to use VT-d); DMA is untranslated");
    }
    let inval = match cmdline.get("iommu.qi") {
        Some("0") => Some(iommu_vtd::InvalMode::Register),
        _ => None, // queued when ECAP.QI says so
    };
    SETUP.call_once(|| Setup {
        mode: d.mode,
        strict,
        forced_by_platform: d.forced_by_platform,
        inval,
        igfx_off: cmdline.get("iommu.igfx") == Some("off"),
        fail_enable: cmdline.get("iommu.fail_enable") == Some("1"),
        fq_delay_ticks: match cmdline.get("iommu.fq_delay_ms") {
            None => 10,
            Some(v) => match v.parse::<u64>() {
                Ok(ms @ 10..=10_000) => ms.div_ceil(10),
                _ => {
                    log::warn!("iommu: iommu.fq_delay_ms={v} is not 10..10000; using 100");
                    10
                }
            },
        },
        intremap: match cmdline.get("intremap") {
            None | Some("on") => true,
            Some("off") => false,
            Some(v) => {
                log::warn!("iommu: unknown option intremap={v} (on, off); taken as on");
                true
            }
        },
    });
    // The PCI layer hands over its topology before drivers bind.
    if let Err(e) = crate::pci::register_topology_hook(set_topology) {
        log::warn!("iommu: no PCI topology hook ({e}); setting the units up without devices");
        set_topology(pci::Topology::default(), &[]);
    }
}

/// Called (through the PCI layer's topology hook) after enumeration, before
/// any driver binds: DMAR scope paths of any length can now be resolved and
/// the devices' classes and IDs are known, so the units are set up
/// (`bring_up`), the RMRRs handed to them (memory the listed devices keep
/// using, USB legacy or graphics, stays identity-mapped in whatever domain
/// they get), the PCI windows kept out of their IOVA spaces, and translation
/// turned on with every covered device in the pass-through domain.
pub fn set_topology(topo: pci::Topology, devices: &[pci::PciDevice]) {
    let Some(s) = SETUP.get() else { return };
    let Some(Ok(dmar)) = acpi::get().and_then(|p| p.dmar.as_ref()) else {
        return;
    };
    let io = IOMMU.call_once(|| bring_up(s, dmar, topo, devices));
    let topo = &io.topology;
    if io.mode == Mode::Off {
        return;
    }
    for e in &io.units {
        for r in dmar
            .rmrrs()
            .filter(|r| r.segment == e.segment && r.limit > r.base)
        {
            let devs: Vec<pci::Bdf> = r
                .scopes
                .iter()
                .filter_map(|s| resolve(topo, r.segment, s))
                .collect();
            if devs.len() < r.scopes.len() {
                log::warn!(
                    "iommu: RMRR [{:#x}-{:#x}]: {} scope(s) name no enumerated device",
                    r.base,
                    r.limit,
                    r.scopes.len() - devs.len()
                );
            }
            with_unit(&e.unit, |u| u.add_rmrr(&devs, r.base, r.limit - r.base + 1));
            log::info!(
                "iommu: RMRR [{:#x}-{:#x}] identity-mapped for {} device(s)",
                r.base,
                r.limit,
                devs.len()
            );
        }
        for &(start, len) in &io.iova_windows {
            if let Err(err) = with_unit(&e.unit, |u| u.reserve_iova_window(start, len)) {
                log::warn!(
                    "iommu {:#x}: IOVA window [{start:#x}-{:#x}]: {err}",
                    e.base,
                    start.saturating_add(len) - 1
                );
            }
        }
    }
    if let Some(&(start, len)) = io.iova_windows.first() {
        log::info!(
            "iommu: IOVAs kept out of {} PCI window range(s), the lowest [{start:#x}-{:#x}]",
            io.iova_windows.len(),
            start.saturating_add(len) - 1
        );
    }
    if !io.strict && io.mode == Mode::Translate {
        if let Err(e) = apic::register_tick_hook(flush_queue_timer) {
            log::warn!("iommu: no flush-queue timer ({e}); queues flush only when full");
        }
    }
    super::namespace::place(io, dmar, devices);
    enable(io, devices, s.fail_enable);
    super::irq_remapping::enable(io, s.intremap);
}

/// Gives a driver-bound device its own translated domain (mode Translate).
/// `None`: no IOMMU covers it, or the mode keeps bus = physical.
pub fn attach_dma_domain(bdf: pci::Bdf, parent: Option<pci::Bdf>) -> Option<SharedDomain> {
    let io = get()?;
    // An untrusted device is translated even with iommu=pt (Linux: no
    // identity domain for it), and invalidated strictly whatever the mode.
    let untrusted = crate::pci::is_untrusted(bdf);
    if !(io.mode == Mode::Translate || io.mode == Mode::PassThrough && untrusted) {
        return None;
    }
    let strict = io.strict || untrusted;
    let ui = match coverage(bdf, parent) {
        Coverage::Unit(i) => io.drhds.get(i).and_then(|d| d.unit)?,
        Coverage::FailedUnit(i) => {
            match io.drhds.get(i) {
                Some(d) if d.unused != Unused::Failed => log::info!(
                    "iommu: {bdf}: its remapping unit {:#x} is not used ({}); no IOMMU for it",
                    d.base,
                    d.unused.reason()
                ),
                d => log::warn!(
                    "iommu: {bdf}: its remapping unit {:#x} failed to come up; no IOMMU for it",
                    d.map_or(0, |d| d.base)
                ),
            }
            return None;
        }
        Coverage::None => return None,
    };
    let entry = &io.units[ui];
    if !entry.enabled.load(Ordering::Acquire) {
        log::warn!(
            "iommu: {bdf}: translation is off on unit {:#x} (enabling it failed); its DMA goes direct or through swiotlb",
            entry.base
        );
        return None;
    }
    let aliases = dma_aliases(bdf);
    // Devices that share a requester ID (behind one PCIe-to-PCI bridge) are
    // one group: the unit cannot tell them apart, so they share a domain.
    // A rebound driver gets the domain its device already has (as Linux keeps
    // a group's default domain across binds).
    let before = io
        .attached
        .lock()
        .iter()
        .find(|a| a.0 == bdf && a.1 == ui)
        .map(|a| a.2);
    let did = with_unit(&entry.unit, |u| {
        if let Some(did) = before {
            return u.attach_aliases(&aliases, did).map(|_| (did, false));
        }
        // A translated domain one of the requester IDs is already in (a
        // device behind the same bridge bound first) wins over the default
        // domain the others still hold from before any driver bound.
        // The default domains of driverless functions (blocking, RMRR-only,
        // ISA) are translated too, but never a driver's domain.
        let drivers = |d: DomainId| {
            u.domain_kind(d) == Some(DomainKind::Translated) && !is_unclaimed_domain(io, ui, d)
        };
        let translated = aliases
            .iter()
            .filter_map(|a| u.domain_of(*a))
            .find(|&d| drivers(d));
        match translated.or_else(|| u.group_domain(&aliases)) {
            Some(did) if drivers(did) => u.attach_aliases(&aliases, did).map(|_| (did, true)),
            held => {
                // The group leaves its default domain (pass-through,
                // identity, blocking, RMRR-only or ISA) together, into a new
                // translated one.
                if let Some(pt) = held {
                    for a in &aliases {
                        if u.domain_of(*a) == Some(pt) {
                            u.detach(*a)?;
                        }
                    }
                }
                let did = u.create_domain(DomainKind::Translated)?;
                match u.attach_aliases(&aliases, did) {
                    Ok(()) => Ok((did, false)),
                    Err(e) => {
                        let _ = u.destroy_domain(did);
                        Err(e)
                    }
                }
            }
        }
    });
    match did {
        Ok((did, _)) if before.is_some() => {
            log::info!("iommu: {bdf} back in its {did} (unit {:#x})", entry.base);
            Some(Arc::new(Mutex::new(VtdDomain {
                unit: entry.unit.clone(),
                did,
                strict,
            })))
        }
        Ok((did, shared)) => {
            let ids = aliases
                .iter()
                .skip(1)
                .map(|a| alloc::format!(" {}", a.short()))
                .collect::<String>();
            if shared {
                log::info!(
                    "iommu: {bdf} shares {did} with the devices behind its bridge (unit {:#x}; requester ID{ids}): no isolation between them",
                    entry.base
                );
            } else if ids.is_empty() {
                log::info!("iommu: {bdf} in its own {did} (unit {:#x})", entry.base);
            } else {
                log::info!(
                    "iommu: {bdf} in {did} (unit {:#x}), also as requester ID{ids}",
                    entry.base
                );
            }
            io.attached.lock().push((bdf, ui, did));
            io.unclaimed.lock().retain(|u| u.0 != bdf);
            Some(Arc::new(Mutex::new(VtdDomain {
                unit: entry.unit.clone(),
                did,
                strict,
            })))
        }
        Err(e) => {
            log::warn!("iommu: {bdf}: no domain: {e}");
            None
        }
    }
}

/// Before any driver binds, every covered function gets a default domain,
/// then translation is switched on. A driver bound later moves its device
/// into a translated domain of its own (`attach_dma_domain`), only on a unit
/// whose translation is on; where enabling failed the unit gives no domains
/// and drivers fall back to direct or swiotlb DMA. `fail_enable` (debug)
/// pretends enabling failed.
///
/// With `iommu=pt` the default domain is the unit's pass-through (or
/// identity) domain, except for an untrusted function (`pci.untrusted=`, or
/// below an external-facing port), which is blocked as below. With translation on, a function no driver claims is not
/// left able to reach memory (Linux gives every device a default domain at
/// once):
/// - it joins the unit's blocking domain, where nothing is ever mapped, and its
///   Bus Master Enable is cleared (a driver's probe sets it again);
/// - unless an RMRR names it: the firmware keeps using that memory (USB legacy
///   emulation, graphics), so it gets a domain of its own holding only those
///   ranges, identity-mapped, and its bus mastering stays as the firmware left it;
/// - or it shares a requester ID with a function already placed (behind one
///   PCIe-to-PCI bridge), so it is in that domain whatever we do;
/// - the ISA (LPC) bridge carries the i8237's third-party DMA with its own
///   requester ID: it gets the low 16 MiB identity-mapped, nothing else.
///
/// Bridges keep bus mastering: they forward their children's DMA.
fn enable(io: &Iommu, devices: &[pci::PciDevice], fail_enable: bool) {
    for d in devices {
        let Some(ui) = unit_for(d.bdf, d.parent) else {
            continue;
        };
        let entry = &io.units[ui];
        let aliases = dma_aliases(d.bdf);
        // An untrusted function never gets pass-through, driver or not
        // (Linux gives it no identity domain): it is blocked like any other.
        let r = if io.mode == Mode::PassThrough && !crate::pci::is_untrusted(d.bdf) {
            with_unit(&entry.unit, |u| attach_passthrough(u, entry, &aliases))
        } else {
            let isa = d.class.base == 0x06 && d.class.sub == 0x01;
            with_unit(&entry.unit, |u| attach_unclaimed(u, entry, &aliases, isa))
        };
        match r {
            Ok(None) => {}
            Ok(Some((did, how))) => {
                if how == Unclaimed::Blocked && d.class.base != 0x06 {
                    crate::pci::set_bus_master(d.bdf, false);
                }
                io.unclaimed.lock().push((d.bdf, ui, did, how));
            }
            Err(e) => log::warn!("iommu: {}: default domain attach failed: {e}", d.bdf),
        }
    }
    if io.mode == Mode::Translate {
        let blocked = io
            .unclaimed
            .lock()
            .iter()
            .filter(|u| u.3 == Unclaimed::Blocked)
            .count();
        log::info!(
            "iommu: {blocked} function(s) in the blocking domain until a driver claims them (nothing mapped, bus mastering off)"
        );
    }
    for e in &io.units {
        let r = if fail_enable {
            Err(EnableFailure::DebugOption)
        } else {
            with_unit(&e.unit, |u| u.enable_translation()).map_err(EnableFailure::Vtd)
        };
        match r {
            Ok(()) => {
                e.enabled.store(true, Ordering::Release);
                log::info!("iommu {:#x}: DMA remapping enabled", e.base);
            }
            Err(err) => log::warn!(
                "iommu {:#x}: enabling translation failed: {err}; drivers of its devices get direct or swiotlb DMA",
                e.base
            ),
        }
    }
}

/// Why translation did not come on for a unit.
enum EnableFailure {
    /// `iommu.fail_enable=1`: the debug option pretends it failed.
    DebugOption,
    /// The unit refused or timed out.
    Vtd(iommu_vtd::Error),
}

impl core::fmt::Display for EnableFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EnableFailure::DebugOption => f.write_str("iommu.fail_enable=1 (debug option)"),
            EnableFailure::Vtd(e) => write!(f, "{e}"),
        }
    }
}
