//! Storage in the running kernel: completions by interrupt.

use alloc::format;

use super::{KTest, TestResult};
use crate::drivers::ahci;
use crate::kassert;

pub static TESTS: &[KTest] = &[KTest {
    name: "ahci::sda_reads_complete_by_msi_on_its_vector",
    run: ahci_reads_by_msi,
    // BIOS profiles, whose boot disk is sda (port 0 of the ICH9 AHCI).
    profiles: &["default", "noiommu"],
    manual: false,
}];

/// Reads LBA 0 of `sda` (the MBR: 0x55 0xAA at 510) into a page.
fn read_mbr() -> Result<alloc::vec::Vec<u8>, alloc::string::String> {
    ahci::with_disk("sda", |d, _| {
        let buf = dma::DmaBuf::alloc(&crate::dma::PLATFORM, 4096).map_err(|e| format!("{e}"))?;
        let mut sg = dma::SgTable::new();
        // SAFETY: `buf` is an owned 4 KiB DmaBuf that outlives the read.
        unsafe { sg.push(buf.phys(), 4096) };
        d.read(0, &sg).map_err(|e| format!("{e}"))?;
        Ok(buf.to_vec())
    })
    .map_err(|e| format!("{e}"))?
}

fn ahci_reads_by_msi() -> TestResult {
    let (bdf, _, _) = ahci::disks()
        .into_iter()
        .find(|(_, _, d)| d.name == "sda")
        .ok_or("no sda")?;
    let vector = match ahci::irq_line(bdf)
        .ok_or("sda's HBA has no interrupt: its completions are polled")?
    {
        ahci::IrqLine::Msi(v) => v,
        l => return Err(alloc::format!("sda's HBA uses {l:?}, not MSI")),
    };
    let stats = || {
        ahci::irq_info()
            .into_iter()
            .find(|(b, _, _)| *b == bdf)
            .map(|(_, _, s)| s)
            .unwrap_or_default()
    };
    let (irqs0, s0) = (crate::arch::idt::irq_count(vector), stats());
    for _ in 0..3 {
        let mbr = read_mbr()?;
        kassert!(
            mbr[510..512] == [0x55, 0xaa],
            "LBA 0 ends in {:02x?}, not the MBR signature",
            &mbr[510..512]
        );
    }
    let (irqs1, s1) = (crate::arch::idt::irq_count(vector), stats());
    kassert!(
        irqs1 >= irqs0 + 3,
        "vector {vector:#x} fired {} times for 3 reads",
        irqs1 - irqs0
    );
    kassert!(
        s1.completed_by_irq == s0.completed_by_irq + 3,
        "{} of 3 reads completed by interrupt",
        s1.completed_by_irq - s0.completed_by_irq
    );
    kassert!(
        s1.completed_by_poll == s0.completed_by_poll,
        "{} reads were polled",
        s1.completed_by_poll - s0.completed_by_poll
    );
    Ok(())
}
