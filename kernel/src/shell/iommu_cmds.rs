//! `iommu` and its views.

use super::{parse_u64, CmdError, CmdResult, Command};
use crate::iommu::{self, with_unit};
use crate::kprintln;

fn fail(msg: impl core::fmt::Display) -> CmdError {
    CmdError::Failed(alloc::format!("iommu: {msg}"))
}

pub fn iommu(cmd: &Command, args: &[&str]) -> CmdResult {
    match args {
        [] => units(),
        ["domains"] => domains(),
        ["ir"] => ir(),
        ["faults"] => {
            iommu::collect_faults();
            let h = iommu::fault_history();
            kprintln!("{} fault(s) recorded since boot", iommu::fault_count());
            for f in h {
                kprintln!("  {f}");
            }
            Ok(())
        }
        ["translate", bdf, iova] => {
            let b: pci::Bdf = bdf
                .parse()
                .map_err(|_| fail(alloc::format!("bad device address '{bdf}' (bb:dd.f)")))?;
            let iova = parse_u64(iova).ok_or_else(|| fail(alloc::format!("bad IOVA '{iova}'")))?;
            match iommu::translate(b, iova) {
                Ok(t) => {
                    kprintln!(
                        "{b} IOVA {iova:#x} -> phys {:#x} ({:?}, {} KiB page, domain {})",
                        t.pa.as_u64(),
                        t.perm,
                        t.page_size / 1024,
                        t.did
                    );
                    Ok(())
                }
                Err(e) => Err(fail(alloc::format!("{b} IOVA {iova:#x}: {e}"))),
            }
        }
        _ => Err(cmd.usage_error()),
    }
}

fn units() -> CmdResult {
    let io = iommu::get()
        .ok_or_else(|| fail("no IOMMU (no DMAR table; the default profile has intel-iommu)"))?;
    kprintln!(
        "mode {:?}, {}",
        io.mode,
        if io.strict {
            "strict invalidation"
        } else {
            "lazy invalidation (flush queue)"
        }
    );
    if io.units.is_empty() {
        if io.mode == crate::iommu::Mode::Off {
            kprintln!("no units in use (iommu=off)");
        } else {
            kprintln!("no units in use: no DRHD unit came up (the reasons are in dmesg)");
        }
    }
    for d in io.drhds.iter().filter(|d| d.unit.is_none()) {
        kprintln!(
            "unit {:#x} segment {}: not in use ({}); the devices it covers get no IOMMU",
            d.base,
            d.segment,
            d.unused.reason()
        );
    }
    if io.forced_by_platform {
        kprintln!("forced on by the firmware (DMAR DMA_CTRL_PLATFORM_OPT_IN); iommu=force-off keeps it off");
    }
    for e in &io.units {
        with_unit(&e.unit, |u| {
            let gsts = u.gsts();
            kprintln!(
                "unit {:#x} segment {}: {}-level tables, {:?} invalidation",
                e.base,
                e.segment,
                u.levels(),
                u.inval_mode()
            );
            kprintln!(
                "  translation {}, root table {:#x}",
                if gsts.bits() & (1 << 31) != 0 {
                    "ENABLED"
                } else {
                    "disabled"
                },
                u.root_table().as_u64()
            );
            if !e.enabled.load(core::sync::atomic::Ordering::Acquire) {
                kprintln!("  not used for drivers' DMA: enabling translation failed");
            }
            if u.handoff().any() {
                kprintln!("  firmware hand-off: {}", u.handoff());
            }
            kprintln!(
                "  IOVAs kept out of {} PCI window range(s) and the interrupt window",
                u.iova_windows().len()
            );
            match u.irt_address() {
                Some(t) if u.interrupt_remapping_enabled() => kprintln!(
                    "  interrupt remapping ENABLED, table {:#x} ({} entries in use; `iommu ir`)",
                    t.as_u64(),
                    u.irte_blocks().len()
                ),
                _ => kprintln!("  interrupt remapping disabled"),
            }
            kprintln!("  CAP  {}", u.cap());
            kprintln!("  ECAP {}", u.ecap());
            let s = u.stats();
            kprintln!(
                "  invalidations: {} context, {} IOTLB, {} queue waits; {} table cache flushes",
                s.context_invalidations,
                s.iotlb_invalidations,
                s.qi_waits,
                s.cache_flushes
            );
        });
    }
    namespace_devices();
    Ok(())
}

/// The DMAR's ACPI namespace devices (type-5 scopes) and where they went.
fn namespace_devices() {
    use iommu::namespace::Placed;
    for n in iommu::namespace::devices() {
        let rid = n.requester.map_or(alloc::string::String::from("?"), |r| {
            alloc::format!("{}", r.short())
        });
        let what = match n.placed {
            Placed::Domain {
                base,
                did,
                passthrough: false,
            } => alloc::format!("{did} (blocked: no driver) on unit {base:#x}"),
            Placed::Domain {
                base,
                did,
                passthrough: true,
            } => alloc::format!("{did} (pass-through) on unit {base:#x}"),
            Placed::AsPciFunction => "placed as the PCI function with that requester ID".into(),
            Placed::UnitUnused(base, why) => {
                alloc::format!("its unit {base:#x} is not in use ({})", why.reason())
            }
            Placed::Problem(p) => alloc::format!("ignored: {p}"),
            Placed::Failed(e) => alloc::format!("attach failed: {e}"),
            Placed::NotAttached => "not attached".into(),
        };
        kprintln!("ACPI namespace device {} (requester {rid}): {what}", n.name);
    }
}

fn domains() -> CmdResult {
    let io = iommu::get().ok_or_else(|| fail("no IOMMU"))?;
    let attached = io.attached.lock().clone();
    for (i, (bdf, ui, did)) in attached.iter().enumerate() {
        let group: alloc::vec::Vec<pci::Bdf> = attached
            .iter()
            .filter(|a| a.1 == *ui && a.2 == *did)
            .map(|a| a.0)
            .collect();
        if group.len() == 1 {
            kprintln!(
                "{bdf}: {did} (translated) on unit {:#x}",
                io.units[*ui].base
            );
        } else if attached.iter().position(|a| a.1 == *ui && a.2 == *did) == Some(i) {
            // One line per shared domain: the unit sees one requester ID.
            let rid = iommu::dma_aliases(*bdf).last().copied();
            let names: alloc::vec::Vec<alloc::string::String> =
                group.iter().map(|b| alloc::format!("{b}")).collect();
            kprintln!(
                "{}: {did} (translated, shared: DMA arrives as requester ID {} for all; no isolation between them) on unit {:#x}",
                names.join(", "),
                rid.map_or(alloc::string::String::from("?"), |r| alloc::format!("{}", r.short())),
                io.units[*ui].base
            );
        }
    }
    // Functions without a driver: one line per default domain.
    let unclaimed = io.unclaimed.lock().clone();
    for (i, (_, ui, did, how)) in unclaimed.iter().enumerate() {
        if unclaimed[..i].iter().any(|u| u.1 == *ui && u.2 == *did) {
            continue;
        }
        let names: alloc::vec::Vec<alloc::string::String> = unclaimed
            .iter()
            .filter(|u| u.1 == *ui && u.2 == *did)
            .map(|u| alloc::format!("{}", u.0))
            .collect();
        let translating = io.units[*ui]
            .enabled
            .load(core::sync::atomic::Ordering::Acquire);
        let what = match how {
            iommu::Unclaimed::Blocked if !translating => {
                "no driver: in the blocking domain, but translation is off on this unit, so only bus mastering off stops its DMA"
            }
            iommu::Unclaimed::Blocked => {
                "blocked: no driver, nothing mapped, every DMA faults; bus mastering off"
            }
            iommu::Unclaimed::RmrrOnly => {
                "no driver: only its RMRR ranges, identity-mapped; bus mastering as firmware left it"
            }
            iommu::Unclaimed::IsaDma => {
                "ISA bridge: the low 16 MiB identity-mapped for ISA DMA (the i8237)"
            }
            iommu::Unclaimed::SharesGroup => {
                "no driver: in the domain of a device behind the same bridge"
            }
        };
        kprintln!(
            "{}: {did} ({what}) on unit {:#x}",
            names.join(", "),
            io.units[*ui].base
        );
    }
    for e in &io.units {
        if let Some(pt) = *e.passthrough.lock() {
            kprintln!(
                "other devices on unit {:#x}: {pt} (pass-through: bus address = physical)",
                e.base
            );
        }
    }
    // The storage controllers' mappings (command lists, FIS areas, queues).
    for (bdf, dev) in super::blk_cmds::storage_dma_devices() {
        let maps = dev.mappings();
        let dom = iommu::domain_of(bdf).map_or(alloc::string::String::new(), |(_, d)| {
            alloc::format!(" in {d}")
        });
        kprintln!("{}: {} live mapping(s){dom}", dev.name(), maps.len());
        for m in maps {
            kprintln!("  {m}");
        }
    }
    // Live mappings per edu, with the domain whose tables hold them.
    for i in 0.. {
        let shown = crate::drivers::edu::with_edu_at(i, |e| {
            let maps = e.dma.mappings();
            let dom = iommu::domain_of(e.bdf).map_or(alloc::string::String::new(), |(_, d)| {
                alloc::format!(" in {d}")
            });
            kprintln!("{}: {} live mapping(s){dom}", e.dma.name(), maps.len());
            for m in maps {
                kprintln!("  {m}");
            }
        });
        if shown.is_none() {
            break;
        }
    }
    Ok(())
}

/// The interrupt remapping tables: every IRTE handed out, read back from the
/// table in memory (what the unit itself will read), with who uses it.
fn ir() -> CmdResult {
    use iommu::irq_remapping::{self as ir, IrteUser};
    let io = iommu::get().ok_or_else(|| fail("no IOMMU (no DMAR table)"))?;
    let Some(st) = ir::state() else {
        let why = ir::why_off().map_or(alloc::string::String::from("VT-d is off"), |w| {
            alloc::format!("{w}")
        });
        kprintln!("interrupt remapping: off ({why}); MSIs and IO-APIC entries are in compatibility format");
        return Ok(());
    };
    let given = ir::given();
    kprintln!(
        "interrupt remapping: on, {} unit(s), {} IRTE(s) in use",
        st.units.len(),
        given.len()
    );
    for &ui in &st.units {
        let e = &io.units[ui];
        with_unit(&e.unit, |u| {
            let cfis = u.gsts().bits() & (1 << 23) != 0;
            kprintln!(
                "unit {:#x}: table {:#x}, compatibility format {}",
                e.base,
                u.irt_address().map_or(0, |a| a.as_u64()),
                if cfis {
                    "passes (GSTS.CFIS=1)"
                } else {
                    "blocked (GSTS.CFIS=0; QEMU 7.2 delivers it anyway)"
                }
            );
            kprintln!("  IRTE  vector  dest  trigger  source-id check          used by");
            for g in given.iter().filter(|g| g.unit == ui) {
                let user = match g.user {
                    IrteUser::Msi(b) => alloc::format!(
                        "MSI {} ({})",
                        b.short(),
                        crate::arch::apic::vector_name(g.vector)
                    ),
                    IrteUser::IoApic(id, _) => alloc::format!(
                        "IO-APIC {id} line, GSI {}",
                        g.vector.wrapping_sub(crate::arch::apic::IOAPIC_VECTOR_BASE)
                    ),
                };
                match u.irte(g.index) {
                    Ok(t) if t.present => kprintln!(
                        "  {:>4}  {:#04x}    {:>4}  {:<7}  {:<23}  {user}",
                        g.index,
                        t.vector,
                        t.xapic_id(),
                        if t.level { "level" } else { "edge" },
                        source_check(t.source)
                    ),
                    Ok(_) => kprintln!("  {:>4}  not present  {user}", g.index),
                    Err(err) => kprintln!("  {:>4}  unreadable ({err})  {user}", g.index),
                }
            }
        });
    }
    Ok(())
}

fn source_check(s: iommu_vtd::SourceValidation) -> alloc::string::String {
    match s {
        iommu_vtd::SourceValidation::None => "none (any requester)".into(),
        iommu_vtd::SourceValidation::Requester { sid, sq: 0 } => {
            alloc::format!("requester {}", pci::Bdf::from_sid(sid).short())
        }
        iommu_vtd::SourceValidation::Requester { sid, sq } => {
            alloc::format!("requester {} (SQ {sq})", pci::Bdf::from_sid(sid).short())
        }
        iommu_vtd::SourceValidation::Bus { start, end } => {
            alloc::format!("bus {start:02x}..{end:02x}")
        }
    }
}
