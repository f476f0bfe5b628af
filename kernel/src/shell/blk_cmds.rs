//! `lsblk`, `blk read`, `blk write`/`blk verify`: the block devices the AHCI and NVMe drivers found, and a
//! hex dump of sectors read by DMA through the block layer.

use super::{parse_u64, CmdError, CmdResult, Command};
use crate::drivers::{ahci, nvme};
use crate::kprintln;

pub fn lsblk(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let disks = ahci::disks();
    let namespaces = nvme::disks();
    if disks.is_empty() && namespaces.is_empty() {
        kprintln!("no block devices (no AHCI disk or NVMe namespace found)");
        return Ok(());
    }
    kprintln!("NAME  CONTROLLER       PORT  SECTORS     SIZE       MODEL");
    for (bdf, _, d) in disks {
        let bytes = d.id.sectors * d.id.sector_size as u64;
        kprintln!(
            "{:<5} {} ahci  {:<4}  {:<10}  {:<9}  {}{}",
            d.name,
            bdf,
            d.port,
            d.id.sectors,
            human(bytes),
            d.id.model,
            if d.failed { "  (failed)" } else { "" }
        );
    }
    for (bdf, name, info, ns) in namespaces {
        let bytes = ns.sectors * ns.sector_size as u64;
        kprintln!(
            "{name} {bdf} nvme  -     {:<10}  {:<9}  {}",
            ns.sectors,
            human(bytes),
            info.model
        );
    }
    irq_lines();
    Ok(())
}

/// How each controller completes commands (by interrupt or polled), with counts.
fn irq_lines() {
    for (bdf, irq, s) in ahci::irq_info() {
        match irq {
            Ok(v) => kprintln!(
                "{bdf} ahci: completions by MSI, vector {v:#04x}: {} interrupts, {} commands by interrupt, {} polled",
                s.interrupts,
                s.completed_by_irq,
                s.completed_by_poll
            ),
            Err(why) => kprintln!(
                "{bdf} ahci: completions polled ({why}): {} commands",
                s.completed_by_poll
            ),
        }
    }
    for (bdf, irq, cqs) in nvme::irq_info() {
        match irq {
            Ok(v) => kprintln!(
                "{bdf} nvme: completions by MSI-X, vectors {}",
                nvme::vector_list(&v)
            ),
            Err(why) => kprintln!("{bdf} nvme: completions polled ({why})"),
        }
        for c in cqs {
            kprintln!(
                "{bdf} nvme: CQ {}{}: {} interrupts, {} commands by interrupt, {} polled, {} wraps",
                c.qid,
                c.vector
                    .map_or(alloc::string::String::new(), |e| alloc::format!(
                        " (MSI-X entry {e})"
                    )),
                c.interrupts,
                c.completed_by_irq,
                c.completed_by_poll,
                c.wraps
            );
        }
    }
}

fn human(bytes: u64) -> alloc::string::String {
    if bytes >= 1 << 30 {
        alloc::format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        alloc::format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// What `blk` was asked to do.
enum BlkOp {
    Read,
    Write(u64),
    Verify(u64),
}

/// Most sectors `blk write`/`blk verify` move in one command (one contiguous buffer).
const MAX_PATTERN_SECTORS: u64 = 256;

pub fn blk(cmd: &Command, args: &[&str]) -> CmdResult {
    let bad = |what: &str, v: &str| cmd.bad_arg(alloc::format!("bad {what} '{v}'"));
    let (op, dev, lba, count, max) = match args {
        ["read", dev, lba] => (BlkOp::Read, *dev, *lba, "1", 64),
        ["read", dev, lba, count] => (BlkOp::Read, *dev, *lba, *count, 64),
        [w @ ("write" | "verify"), dev, lba, count, "--pattern", seed] => {
            let seed = parse_u64(seed).ok_or_else(|| bad("pattern seed", seed))?;
            let op = if *w == "write" {
                BlkOp::Write(seed)
            } else {
                BlkOp::Verify(seed)
            };
            (op, *dev, *lba, *count, MAX_PATTERN_SECTORS)
        }
        [w @ ("write" | "verify"), ..] => {
            return Err(cmd.bad_arg(alloc::format!(
                "blk {w} takes <dev> <lba> <count> --pattern <seed>"
            )))
        }
        _ => return Err(cmd.usage_error()),
    };
    let lba = parse_u64(lba).ok_or_else(|| bad("sector number", lba))?;
    let count = parse_u64(count)
        .filter(|c| (1..=max).contains(c))
        .ok_or_else(|| bad(&alloc::format!("count (1..{max})"), count))?;
    let run = |d: &mut dyn block::BlockDevice, dmadev: &alloc::sync::Arc<dma::DmaDevice>| {
        let ss = d.sector_size();
        let len = count as usize * ss;
        let mut buf =
            dma::DmaBuf::alloc(&crate::dma::PLATFORM, len).map_err(|e| alloc::format!("{e}"))?;
        // One physically contiguous buffer, given as page-sized pieces: the DMA API
        // merges what is contiguous for the device (one PRD entry, or one IOVA run).
        let mut sg = dma::SgTable::new();
        let mut off = 0;
        while off < len {
            let n = (len - off).min(dma::PAGE_SIZE);
            sg.push(buf.phys() + off as u64, n);
            off += n;
        }
        if let BlkOp::Write(seed) = op {
            let mut data = alloc::vec![0u8; len];
            block::pattern::fill_pattern(seed, lba, ss, &mut data);
            buf.write(0, &data);
            d.write(lba, &sg).map_err(|e| alloc::format!("{e}"))?;
            // The data is only on the medium once the volatile cache is flushed.
            d.flush().map_err(|e| alloc::format!("{e}"))?;
        } else {
            d.read(lba, &sg).map_err(|e| alloc::format!("{e}"))?;
        }
        let name = dmadev.name();
        Ok::<_, alloc::string::String>((buf.to_vec(), ss, name.into(), buf.phys()))
    };
    let r = if dev.starts_with("nvme") {
        nvme::with_disk(dev, run)
    } else {
        ahci::with_disk(dev, run)
    };
    let (data, ss, name, phys): (
        alloc::vec::Vec<u8>,
        usize,
        alloc::string::String,
        hal::PhysAddr,
    ) = r
        .map_err(|e| CmdError::Failed(alloc::format!("blk: {e}")))?
        .map_err(|e| {
            // A device error names the disk already; the block layer's own checks do not.
            let sep = if e.starts_with(dev) { "" } else { ": " };
            let dev = if sep.is_empty() { "" } else { dev };
            CmdError::Failed(alloc::format!("blk: {dev}{sep}{e}"))
        })?;
    match op {
        BlkOp::Read => {
            kprintln!(
                "{dev}: {count} sector(s) of {ss} bytes from LBA {lba}, read by {name} into {phys:#x}"
            );
            super::commands::hexdump(&data, lba * ss as u64);
        }
        BlkOp::Write(seed) => kprintln!(
            "{dev}: wrote {count} sector(s) of {ss} bytes at LBA {lba} with pattern {seed} (by {name} from {phys:#x}), flushed"
        ),
        BlkOp::Verify(seed) => match block::pattern::first_mismatch(seed, lba, ss, &data) {
            None => kprintln!("{dev}: verified: {count} sectors match pattern {seed} from LBA {lba}"),
            Some((off, found, want)) => {
                return Err(CmdError::Failed(alloc::format!(
                    "blk: {dev}: mismatch at LBA {} byte {}: found {found:#04x}, expected {want:#04x} (pattern {seed})",
                    lba + (off / ss) as u64,
                    off % ss
                )))
            }
        },
    }
    Ok(())
}
