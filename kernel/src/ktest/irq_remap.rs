//! Interrupt remapping in the running kernel: with VT-d up and `intremap` on
//! (the default), every routed IO-APIC line and every device MSI names an
//! IRTE that holds its vector, this CPU and the only requester allowed to use
//! it. The interrupts themselves still arriving is what the serial, edu, AHCI
//! and NVMe tests of the same profiles show; `intremap=off` (compatibility
//! format kept) is a shell case of the attack bench (boot/src/ktest.rs).

use super::{KTest, TestResult};
use crate::arch::{apic, ioapic, irq_remap};
use crate::drivers::edu;
use crate::iommu::irq_remapping::{self as ir, IrteUser};
use crate::iommu::{self, with_unit};
use crate::kassert;
use pci::ConfigAccess;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "irq_remap::io_apic_lines_name_irtes_holding_their_vector",
        run: ioapic_lines,
        profiles: &["default", "iommu-lazy", "iommu-pt"],
        manual: false,
    },
    KTest {
        name: "irq_remap::edu_msi_is_remappable_and_only_edu_may_use_its_irte",
        run: edu_msi,
        profiles: &["default", "iommu-lazy"],
        manual: false,
    },
];

/// Reads IRTE `index` of unit `ui` from the table in memory.
fn irte(ui: usize, index: u16) -> Result<iommu_vtd::Irte, alloc::string::String> {
    let io = iommu::get().ok_or("no IOMMU")?;
    with_unit(&io.units[ui].unit, |u| u.irte(index))
        .map_err(|e| alloc::format!("IRTE {index}: {e}"))
}

fn ioapic_lines() -> TestResult {
    let st = ir::state().ok_or("interrupt remapping is off")?;
    let lines = ioapic::routed_lines();
    kassert!(
        !lines.is_empty(),
        "no IO-APIC line routed (the serial port's should be)"
    );
    for (gsi, vector) in lines {
        let rte = ioapic::entry(gsi).ok_or("no IO-APIC for a routed line")?;
        kassert!(
            rte & (1 << 48) != 0,
            "GSI {gsi}: entry {rte:#018x} is in compatibility format"
        );
        let index = ((rte >> 49) & 0x7fff) as u16 | (((rte >> 11) & 1) as u16) << 15;
        kassert!(
            (rte & 0xff) as u8 == vector,
            "GSI {gsi}: entry vector {:#04x}, routed {vector:#04x} (EOI matching needs them equal)",
            rte & 0xff
        );
        let g = ir::given()
            .into_iter()
            .find(|g| g.index == index)
            .ok_or_else(|| alloc::format!("GSI {gsi}: IRTE {index} was never handed out"))?;
        let IrteUser::IoApic(_, sid) = g.user else {
            return Err(alloc::format!(
                "GSI {gsi}: IRTE {index} belongs to {:?}",
                g.user
            ));
        };
        kassert!(
            st.ioapics.iter().any(|a| a.2 == sid),
            "IRTE {index}: source {sid} is no IO-APIC's"
        );
        let t = irte(g.unit, index)?;
        kassert!(t.present, "IRTE {index} not present");
        kassert!(
            t.vector == vector,
            "IRTE {index}: vector {:#04x}, line {vector:#04x}",
            t.vector
        );
        kassert!(
            t.xapic_id() == apic::lapic_id(),
            "IRTE {index}: destination {}",
            t.xapic_id()
        );
        kassert!(
            t.source
                == iommu_vtd::SourceValidation::Requester {
                    sid: sid.sid(),
                    sq: 0
                },
            "IRTE {index}: source check {:?}",
            t.source
        );
        kassert!(
            irq_remap::irte_of(vector) == Some(index),
            "vector {vector:#04x} not shown as remapped"
        );
    }
    Ok(())
}

fn edu_msi() -> TestResult {
    let (bdf, vector) = edu::with_edu(|e| (e.bdf, edu::vector())).ok_or("edu not bound")?;
    let index = irq_remap::irte_of(vector).ok_or("edu's vector has no IRTE")?;
    // What edu was told to write: its MSI capability's address and data.
    let dev = crate::pci::devices()
        .into_iter()
        .find(|d| d.bdf == bdf)
        .ok_or("edu not enumerated")?;
    let off = dev
        .find_capability(pci::caps::id::MSI)
        .ok_or("edu has no MSI capability")? as u16;
    let (addr, data) = crate::pci::with(|p| {
        let msi = pci::Msi::read(&p.cfg, bdf, off).ok()?;
        Some((
            p.cfg.read32(bdf, msi.address_offset()) as u64,
            p.cfg.read16(bdf, msi.data_offset()) as u32,
        ))
    })
    .flatten()
    .ok_or("edu's MSI capability unreadable")?;
    kassert!(
        iommu_vtd::intremap::msi_index(addr, data) == Some(index as u32),
        "edu's MSI {addr:#x}/{data:#x} does not name IRTE {index}"
    );
    let g = ir::given()
        .into_iter()
        .find(|g| g.index == index)
        .ok_or("IRTE not handed out")?;
    let t = irte(g.unit, index)?;
    kassert!(t.present && t.vector == vector, "IRTE {index}: {t:?}");
    kassert!(
        t.source.allows(bdf.sid()) && !t.source.allows(pci::Bdf::b(0, 0x1f, 2).sid()),
        "IRTE {index}: source check {:?} is not edu's alone",
        t.source
    );
    Ok(())
}
