//! `blk stray <sd…>`: an AHCI read with one sector aimed outside its mapping, to
//! watch VT-d stop a real bus master.

use super::sg_page;
use crate::drivers::ahci;
use crate::kprintln;
use crate::shell::{CmdError, CmdResult, Command};

/// LBA `blk stray` reads from: two sectors, the first to a mapping, the second not.
const STRAY_LBA: u64 = 100;

/// `blk stray <sd…>`: an attack on the IOMMU from a real bus master. The AHCI HBA
/// is told to read two sectors, the first to a live mapping of one page, the
/// second to an IOVA reserved in the HBA's own domain and never mapped (the
/// driver's unchecked `read_to_bus`, as a buggy or hostile driver would). Under
/// VT-d that write is blocked and recorded as a fault. QEMU 7.2's AHCI still ends
/// the command with good status (a DMA write is posted: nothing tells the device),
/// so the verdict comes from the fault log, read right after the command. A
/// command that fails instead (a device that does hear of it) is reported too.
/// Refused unless a walk of the unit's tables for the stray IOVA fails: without
/// translation (iommu=off, pass-through) the address is physical memory.
pub(super) fn stray(cmd: &Command, dev: &str) -> CmdResult {
    let fail = |e: &dyn core::fmt::Display| CmdError::Failed(alloc::format!("blk stray: {e}"));
    let Some((bdf, dmadev)) = ahci::controller_of(dev) else {
        return Err(cmd.bad_arg(alloc::format!(
            "blk stray: '{dev}' is not an AHCI disk (see lsblk)"
        )));
    };
    if let Some(why) = crate::iommu::why_no_translation(bdf) {
        return Err(fail(&alloc::format!(
            "{dev}'s controller {bdf} is not translated ({why}): the stray write would reach physical memory; refused"
        )));
    }
    let dma::DmaBackend::Iommu(domain) = dmadev.backend() else {
        return Err(fail(&alloc::format!(
            "{dev}'s DMA device {} does not map through an IOMMU domain; refused",
            dmadev.name()
        )));
    };
    let buf = sg_page().map_err(|e| fail(&e))?;
    let mut sg = dma::SgTable::new();
    // SAFETY: the first sector of `buf`, an owned page that outlives the mapping.
    unsafe { sg.push(buf.phys(), 512) };
    let map = dmadev
        .map_sg(sg, dma::DmaDirection::FromDevice)
        .map_err(|e| fail(&e))?;
    let good = map.segments()[0];
    let mask = dmadev.params().dma_mask;
    let Some(stray) = domain.lock().alloc_iova(dma::PAGE_SIZE as u64, mask) else {
        drop(map.unmap());
        return Err(fail(&"no IOVA space left to reserve"));
    };
    // What the unit's tables say about the stray address as the HBA will present
    // it: only a failed walk makes the experiment safe (a pass-through context, or
    // a translation that exists, would let the write reach memory).
    let walk = match crate::iommu::translate_write(bdf, stray.as_u64()) {
        Err(crate::iommu::Error::Walk(reason)) => reason,
        other => {
            drop(map.unmap());
            domain.lock().free_iova(stray, dma::PAGE_SIZE as u64);
            return Err(fail(&match other {
                Ok(t) => alloc::format!(
                    "the IOMMU would let a write to {:#x} through to {:#x}; refused",
                    stray.as_u64(),
                    t.pa.as_u64()
                ),
                Err(e) => alloc::format!("walking {bdf}'s tables: {e}; refused"),
            }));
        }
    };
    kprintln!(
        "{dev}: READ DMA EXT of sectors {STRAY_LBA}-{}: sector {STRAY_LBA} to {:#x} (mapped, phys {:#x}), sector {} to {:#x} (reserved in the domain, never mapped: a write there faults with reason {walk})",
        STRAY_LBA + 1,
        good.addr.as_u64(),
        buf.phys().as_u64(),
        STRAY_LBA + 1,
        stray.as_u64()
    );
    // Faults from this HBA on the stray page (the IOVA may have been reserved by
    // an earlier run too).
    let stray_page = stray.as_u64() & !(dma::PAGE_SIZE as u64 - 1);
    let hits = || {
        crate::iommu::fault_entries()
            .iter()
            .filter(|e| e.record.source == bdf && e.record.write && e.record.addr == stray_page)
            .count()
    };
    let before = hits();
    let t0 = crate::arch::tsc::rdtsc();
    let segs = [
        good,
        dma::DmaSegment {
            addr: stray,
            len: 512,
        },
    ];
    let r = ahci::with_hba_of(dev, |hba, disk| {
        // SAFETY: `good` is a live mapping of this HBA's DMA device holding one
        // sector; `stray` was reserved in the same domain and is not mapped, so
        // under translation (checked above) the HBA's write there faults.
        unsafe { hba.read_to_bus(disk, STRAY_LBA, 2, &segs) }
    });
    let ms = crate::arch::tsc::ticks_to_ns(crate::arch::tsc::rdtsc() - t0) / 1_000_000;
    drop(map.unmap());
    // Nothing was mapped there, so there is no translation to invalidate.
    domain.lock().free_iova(stray, dma::PAGE_SIZE as u64);
    // The unit records a fault as the write is blocked, before the command ends:
    // read the fault registers now (this also logs the new records).
    crate::iommu::collect_faults();
    let faults = hits() - before;
    let mut first = [0u8; 512];
    buf.read(0, &mut first);
    let landed = first.iter().any(|&b| b != 0);
    match &r {
        Err(e) => return Err(fail(e)),
        Ok(Ok(())) => kprintln!(
            "{dev}: the command ended with good status after {ms} ms: a DMA write is posted, so the HBA never learns that the IOMMU dropped one"
        ),
        Ok(Err(e)) => kprintln!("{dev}: the command failed after {ms} ms: {e}"),
    }
    kprintln!(
        "{dev}: sector {STRAY_LBA} {} the mapped page; {faults} IOMMU fault(s) from {bdf} writing {stray_page:#x} ('iommu faults' lists them)",
        if landed { "reached" } else { "did not reach" }
    );
    if faults == 0 {
        return Err(fail(&alloc::format!(
            "no fault recorded for the write to {stray_page:#x}: the IOMMU was not seen to stop it"
        )));
    }
    kprintln!("{dev}: stopped by the IOMMU: nothing was written outside the request's mapping");
    Ok(())
}
