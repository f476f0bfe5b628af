//! VT-d in the running kernel (profiles iommu, iommu-lazy, iommu-pt,
//! iommu-4level): translation state, where edu's IOVAs land, a blocked DMA.

use super::{KTest, TestResult};
use crate::drivers::edu;
use crate::iommu::{self, Mode};
use crate::shell::dma_cmds::unmapped_write;
use crate::{kassert, kdma};

pub static TESTS: &[KTest] = &[
    KTest {
        name: "iommu::unit_up_in_the_requested_mode",
        run: unit_state,
        profiles: &[
            "iommu",
            "iommu-lazy",
            "iommu-pt",
            "iommu-4level",
            "iommu-reginval",
        ],
        manual: false,
    },
    KTest {
        name: "iommu::edu_iova_lands_in_its_buffer",
        run: iova_lands,
        profiles: &["iommu", "iommu-lazy", "iommu-4level", "iommu-reginval"],
        manual: false,
    },
    KTest {
        name: "iommu::unmapped_iova_is_blocked_with_a_decoded_fault",
        run: blocked,
        profiles: &["iommu", "iommu-4level", "iommu-reginval"],
        manual: false,
    },
];

fn unit_state() -> TestResult {
    let io = iommu::get().ok_or("no IOMMU state")?;
    let profile = crate::boot_cmdline().get("profile").unwrap_or("");
    let want = if profile == "iommu-pt" {
        Mode::PassThrough
    } else {
        Mode::Translate
    };
    kassert!(io.mode == want, "mode {:?}, expected {want:?}", io.mode);
    kassert!(
        io.strict == (profile != "iommu-lazy"),
        "strict = {}",
        io.strict
    );
    let e = io.units.first().ok_or("no unit")?;
    let (tes, levels) =
        iommu::with_unit(&e.unit, |u| (u.gsts().bits() & (1 << 31) != 0, u.levels()));
    kassert!(tes, "translation not enabled");
    let want_levels = if profile == "iommu-4level" { 4 } else { 3 };
    kassert!(
        levels == want_levels,
        "{levels}-level tables, expected {want_levels}"
    );
    let edu_domain = edu::with_edu(|d| iommu::domain_of(d.bdf)).ok_or("edu not bound")?;
    kassert!(
        edu_domain.is_some() == (want == Mode::Translate),
        "edu domain {edu_domain:?} in {want:?}"
    );
    Ok(())
}

/// Asks the unit's page walk (not our bookkeeping) where a live mapping's
/// IOVA goes, for edu's source id.
fn iova_lands() -> TestResult {
    edu::with_edu(|e| -> TestResult {
        let buf = dma::DmaBuf::alloc(&kdma::HIGH, 4096).map_err(|e| alloc::format!("{e}"))?;
        let phys = buf.phys().as_u64();
        let s = dma::DmaStream::<dma::ToDevice>::map(&e.dma, buf)
            .map_err(|e| alloc::format!("{}", e.error))?;
        let iova = s.dma_addr().as_u64();
        let t = iommu::translate(e.bdf, iova + 0x123);
        drop(s);
        let t = t?;
        kassert!(iova < 1 << 28, "IOVA {iova:#x} beyond edu's mask");
        kassert!(
            t.pa.as_u64() == phys + 0x123,
            "IOVA {iova:#x}+0x123 walks to {:#x}, buffer at {phys:#x}",
            t.pa.as_u64()
        );
        kassert!(
            iommu::translate(e.bdf, iova).is_err() || !iommu::get().is_some_and(|i| i.strict),
            "still translated after a strict unmap"
        );
        Ok(())
    })
    .ok_or("edu not bound")?
}

fn blocked() -> TestResult {
    let vector = iommu::fault_vector();
    kassert!(vector != 0, "no fault-event vector");
    let msis = crate::arch::idt::irq_count(vector);
    let b = edu::with_edu(|e| unmapped_write(e, 64))
        .ok_or("edu not bound")?
        .map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        b.faults.len() == 1,
        "{} faults: {:?}",
        b.faults.len(),
        b.faults
    );
    let f = &b.faults[0];
    let bdf = edu::with_edu(|e| e.bdf).ok_or("edu gone")?;
    let short = alloc::format!("{:02x}:{:02x}.{}", bdf.bus, bdf.device, bdf.function);
    kassert!(
        f.contains(&short) && f.contains("write") && f.contains(&alloc::format!("{:#x}", b.iova)),
        "fault {f}"
    );
    kassert!(f.contains("reason 0x5"), "fault reason in {f}");
    kassert!(b.memory_unchanged, "the blocked DMA changed memory");
    // Delivered by the unit's fault-event MSI, not only found by polling.
    kassert!(
        crate::arch::idt::irq_count(vector) > msis,
        "no fault-event MSI arrived on vector {vector:#x}"
    );
    // The next fault must be recorded too (the previous one was cleared).
    let again = edu::with_edu(|e| unmapped_write(e, 16))
        .ok_or("edu gone")?
        .map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        again.faults.len() == 1,
        "second fault not recorded: {:?}",
        again.faults
    );
    Ok(())
}
