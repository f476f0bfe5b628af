//! `lsblk`, `blk read`, `blk write`/`blk verify`: the block devices the AHCI and NVMe drivers found, and a
//! hex dump of sectors read by DMA through the block layer.

use super::{parse_u64, CmdError, CmdResult, Command};
use crate::drivers::{ahci, nvme};
use crate::kprintln;
use alloc::vec::Vec;

mod bench;
mod stray;

pub use bench::blkbench;

/// Why a `blk` request (or one of `blkbench`'s) failed.
#[derive(Debug)]
pub(super) enum BlkError {
    /// The AHCI disk could not be reached.
    Ahci(ahci::BindError),
    /// The NVMe namespace could not be reached.
    Nvme(nvme::BindError),
    /// No memory for the data buffer.
    Alloc(dma::DmaError),
    /// The block layer refused the request, or the device failed it.
    Io(block::BlockError),
    /// `--mask BITS`: the device refused the narrowed mask.
    Mask { bits: u32, error: dma::DmaError },
    /// The NVMe controller failed a command of its own (`blk aer`).
    NvmeCommand(::nvme::NvmeError),
}

impl core::fmt::Display for BlkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BlkError::Ahci(e) => write!(f, "{e}"),
            BlkError::Nvme(e) => write!(f, "{e}"),
            BlkError::Alloc(e) => write!(f, "{e}"),
            BlkError::Io(e) => write!(f, "{e}"),
            BlkError::Mask { bits, error } => write!(f, "--mask {bits}: {error}"),
            BlkError::NvmeCommand(e) => write!(f, "{e}"),
        }
    }
}

/// `blk: <dev>: <error>`, without naming the disk twice (a device error names it
/// already; the block layer's own checks do not).
fn blk_failed(dev: &str, e: &dyn core::fmt::Display) -> CmdError {
    let e = alloc::format!("{e}");
    let sep = if e.starts_with(dev) { "" } else { ": " };
    let d = if sep.is_empty() { "" } else { dev };
    CmdError::Failed(alloc::format!("blk: {d}{sep}{e}"))
}

pub fn lsblk(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let disks = ahci::disks();
    let namespaces = nvme::disks();
    if disks.is_empty() && namespaces.is_empty() {
        kprintln!("no block devices (no AHCI disk or NVMe namespace found)");
        return Ok(());
    }
    kprintln!("NAME     CONTROLLER          PORT  SECTORS     SIZE       MODEL");
    for (bdf, _, d) in disks {
        let bytes = d.id.sectors * d.id.sector_size as u64;
        kprintln!(
            "{:<8} {:<19} {:<4}  {:<10}  {:<9}  {}{}",
            d.name,
            alloc::format!("{bdf} ahci"),
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
            "{name:<8} {:<19} -     {:<10}  {:<9}  {}",
            alloc::format!("{bdf} nvme"),
            ns.sectors,
            human(bytes),
            info.model
        );
    }
    irq_lines();
    // How many requests each disk's driver keeps in flight (blkbench --qd).
    let names = ahci::disks()
        .into_iter()
        .map(|(_, _, d)| d.name)
        .chain(nvme::disks().into_iter().map(|(_, name, _, _)| name));
    for name in names {
        if let Ok(depth) = with_blk(&name, |d, _| d.queue_depth()) {
            let how = match depth {
                1 => "one request at a time",
                _ if name.starts_with("nvme") => "command IDs on one I/O queue pair",
                _ => "NCQ tags",
            };
            kprintln!("{name}: queue depth {depth} ({how})");
        }
    }
    Ok(())
}

/// How each controller completes commands (by interrupt or polled), with counts.
fn irq_lines() {
    for (bdf, irq, s) in ahci::irq_info() {
        match irq {
            Ok(ahci::IrqLine::Msi(v)) => kprintln!(
                "{bdf} ahci: completions by MSI, vector {v:#04x}: {} interrupts, {} commands by interrupt, {} polled",
                s.interrupts,
                s.completed_by_irq,
                s.completed_by_poll
            ),
            Ok(ahci::IrqLine::Intx { gsi, vector }) => kprintln!(
                "{bdf} ahci: completions by INTx on GSI {gsi} (from _PRT), vector {vector:#04x}: {} interrupts, {} commands by interrupt, {} polled, {} interrupts not ours",
                s.interrupts,
                s.completed_by_irq,
                s.completed_by_poll,
                s.not_ours
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
        ["read", dev, lba, count, flags @ ..] => return read_show_sg(cmd, dev, lba, count, flags),
        ["aer", dev] => return aer(cmd, dev),
        ["stray", dev] => return stray::stray(cmd, dev),
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
        let mut buf = dma::DmaBuf::alloc(&crate::dma::PLATFORM, len).map_err(BlkError::Alloc)?;
        // One physically contiguous buffer, given as page-sized pieces: the DMA API
        // merges what is contiguous for the device (one PRD entry, or one IOVA run).
        let mut sg = dma::SgTable::new();
        let mut off = 0;
        while off < len {
            let n = (len - off).min(dma::PAGE_SIZE);
            // SAFETY: a piece of `buf`, an owned DmaBuf that outlives the I/O on `sg`.
            unsafe { sg.push(buf.phys() + off as u64, n) };
            off += n;
        }
        if let BlkOp::Write(seed) = op {
            let mut data = alloc::vec![0u8; len];
            block::pattern::fill_pattern(seed, lba, ss, &mut data);
            buf.write(0, &data);
            d.write(lba, &sg).map_err(BlkError::Io)?;
            // The data is only on the medium once the volatile cache is flushed.
            d.flush().map_err(BlkError::Io)?;
        } else {
            d.read(lba, &sg).map_err(BlkError::Io)?;
        }
        let name = dmadev.name();
        Ok::<_, BlkError>((buf.to_vec(), ss, name.into(), buf.phys()))
    };
    let r = with_blk(dev, run);
    let (data, ss, name, phys): (
        alloc::vec::Vec<u8>,
        usize,
        alloc::string::String,
        hal::PhysAddr,
    ) = r
        .map_err(|e| CmdError::Failed(alloc::format!("blk: {e}")))?
        .map_err(|e| blk_failed(dev, &e))?;
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

/// `blk aer <nvme…>`: one Asynchronous Event Request, waited for as any command.
/// QEMU completes it only on an event and has none, so this is a command the device
/// never completes: it must end in the driver's timeout error and a controller
/// reset, after which the next request works (issue 14, item 5).
fn aer(cmd: &Command, dev: &str) -> CmdResult {
    if !dev.starts_with("nvme") {
        return Err(cmd.bad_arg(alloc::format!("blk aer: '{dev}' is not an NVMe namespace")));
    }
    let t0 = crate::arch::tsc::rdtsc();
    let r = nvme::async_event_request(dev)
        .map_err(BlkError::Nvme)
        .and_then(|r| r.map_err(BlkError::NvmeCommand));
    let ms = crate::arch::tsc::ticks_to_ns(crate::arch::tsc::rdtsc() - t0) / 1_000_000;
    match r {
        Ok(dw0) => {
            kprintln!("{dev}: asynchronous event after {ms} ms: CQE dword 0 {dw0:#010x}");
            Ok(())
        }
        Err(e) => {
            kprintln!("{dev}: asynchronous event request ended after {ms} ms");
            Err(blk_failed(dev, &e))
        }
    }
}

/// Runs `f` on disk `dev` (`nvme…` or an AHCI `sd…`).
fn with_blk<R>(
    dev: &str,
    f: impl FnOnce(&mut dyn block::BlockDevice, &alloc::sync::Arc<dma::DmaDevice>) -> R,
) -> Result<R, BlkError> {
    if dev.starts_with("nvme") {
        nvme::with_disk(dev, f).map_err(BlkError::Nvme)
    } else {
        ahci::with_disk(dev, f).map_err(BlkError::Ahci)
    }
}

/// Allocates one page of the buddy allocator for a scattered buffer.
fn sg_page() -> Result<dma::DmaBuf, BlkError> {
    dma::DmaBuf::alloc(&crate::dma::PLATFORM, dma::PAGE_SIZE).map_err(BlkError::Alloc)
}

/// `blk read <dev> <lba> <count> --show-sg [--first N] [--mask BITS]` (Lab 08): the
/// sectors are read into one buffer scattered over pages that are not neighbours
/// (a first piece of N bytes, default 512, ending a page; then whole pages; the
/// last piece may end inside a page), and the command's scatter list, mapped DMA
/// segments and PRDT or PRP entries are printed before the dump. `--mask BITS`
/// narrows the device's streaming DMA mask for this one read.
fn read_show_sg(cmd: &Command, dev: &str, lba: &str, count: &str, flags: &[&str]) -> CmdResult {
    let bad = |what: alloc::string::String| cmd.bad_arg(what);
    let lba = parse_u64(lba).ok_or_else(|| bad(alloc::format!("bad sector number '{lba}'")))?;
    let count = parse_u64(count)
        .filter(|c| (1..=64).contains(c))
        .ok_or_else(|| bad(alloc::format!("bad count (1..64) '{count}'")))?;
    let (mut show, mut first, mut mask) = (false, 512usize, None);
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        match *f {
            "--show-sg" => show = true,
            "--first" => {
                let v = it
                    .next()
                    .ok_or_else(|| bad("--first needs a byte count".into()))?;
                first = parse_u64(v)
                    .filter(|n| (1..=dma::PAGE_SIZE as u64).contains(n))
                    .ok_or_else(|| bad(alloc::format!("bad first piece '{v}' (1..4096 bytes)")))?
                    as usize;
            }
            "--mask" => {
                let v = it
                    .next()
                    .ok_or_else(|| bad("--mask needs a number of bits".into()))?;
                mask = Some(
                    parse_u64(v)
                        .filter(|b| (24..=64).contains(b))
                        .ok_or_else(|| bad(alloc::format!("bad mask '{v}' (24..64 bits)")))?
                        as u32,
                );
            }
            other => return Err(bad(alloc::format!("unknown option '{other}'"))),
        }
    }
    if !show {
        return Err(bad("--first and --mask go with --show-sg".into()));
    }
    let fail = |e: BlkError| blk_failed(dev, &e);
    let ss = with_blk(dev, |d, _| d.sector_size()).map_err(fail)?;
    let total = count as usize * ss;
    // Pages 0, 2, 4, ... of twice as many: no two pieces are neighbours.
    let npages = (dma::PAGE_SIZE - first + total)
        .div_ceil(dma::PAGE_SIZE)
        .max(1);
    let pages: Vec<dma::DmaBuf> = (0..2 * npages)
        .map(|_| sg_page())
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let mut used: Vec<&dma::DmaBuf> = pages.iter().collect();
    used.sort_by_key(|p| p.phys().as_u64());
    let used: Vec<&dma::DmaBuf> = used.into_iter().step_by(2).collect();
    let mut sg = dma::SgTable::new();
    let mut left = total;
    for (i, p) in used.iter().enumerate() {
        if left == 0 {
            break;
        }
        let (off, n) = if i == 0 {
            (dma::PAGE_SIZE - first, first.min(left))
        } else {
            (0, dma::PAGE_SIZE.min(left))
        };
        // SAFETY: a piece of `p`, one of `pages`, owned DmaBufs that outlive the I/O.
        unsafe { sg.push(p.phys() + off as u64, n) };
        left -= n;
    }
    let r = with_blk(dev, |d, dmadev| {
        let saved = dmadev.params();
        if let Some(bits) = mask {
            if let Err(e) = dmadev.set_mask(dma::dma_bit_mask(bits)) {
                return Err(BlkError::Mask { bits, error: e });
            }
        }
        block::trace::arm();
        let r = d.read(lba, &sg);
        let rows = block::trace::take();
        if mask.is_some() {
            let _ = dmadev.set_mask(saved.dma_mask);
        }
        let backend = match dmadev.backend() {
            dma::DmaBackend::Direct => "direct: bus address = physical",
            dma::DmaBackend::Swiotlb(_) => "swiotlb when a piece is above the mask, else direct",
            dma::DmaBackend::Iommu(_) => "IOMMU: bus addresses are IOVAs",
        };
        Ok((
            r,
            rows,
            alloc::string::String::from(dmadev.name()),
            backend,
            saved.dma_mask,
        ))
    })
    .map_err(fail)?
    .map_err(fail)?;
    let (r, (rows, nrows), name, backend, dmask) = r;
    kprintln!(
        "{dev}: scatter list: {} piece(s), {total} bytes",
        sg.entries().len()
    );
    for (i, e) in sg.entries().iter().enumerate() {
        kprintln!("  piece {i}: phys {:#x} len {}", e.phys.as_u64(), e.len);
    }
    kprintln!(
        "{dev}: mapped by {name} ({backend}{}), dma_mask {:#x}:",
        match mask {
            Some(b) => alloc::format!("; mask narrowed to {b} bits for this read"),
            None => alloc::string::String::new(),
        },
        mask.map_or(dmask, dma::dma_bit_mask)
    );
    use block::trace::Kind;
    let segs: Vec<_> = rows.iter().filter(|r| r.0 == Kind::Segment).collect();
    if !segs.is_empty() {
        kprintln!("  {} DMA segment(s):", segs.len());
    }
    for (i, (_, a, l)) in segs.iter().enumerate() {
        kprintln!("  segment {i}: bus {a:#x} len {l}");
    }
    let prds: Vec<_> = rows.iter().filter(|r| r.0 == Kind::Prd).collect();
    if !prds.is_empty() {
        kprintln!(
            "{dev}: PRDT (read back from the command table): {} entr{}",
            prds.len(),
            if prds.len() == 1 { "y" } else { "ies" }
        );
        for (i, (_, a, l)) in prds.iter().enumerate() {
            kprintln!("  PRD {i}: DBA {a:#x} DBC {} ({l} bytes)", l - 1);
        }
    }
    for (k, a, b) in &rows {
        match k {
            Kind::Prp1 => kprintln!("{dev}: PRP1 {a:#x}"),
            Kind::Prp2 if *b > 0 => kprintln!(
                "{dev}: PRP2 {a:#x} -> a PRP list of {b} entr{}",
                if *b == 1 { "y" } else { "ies" }
            ),
            Kind::Prp2 if *a == 0 => kprintln!("{dev}: PRP2 0 (one page)"),
            Kind::Prp2 => kprintln!("{dev}: PRP2 {a:#x} (the second page)"),
            Kind::PrpList => kprintln!("  list[{b}]: {a:#x}"),
            _ => {}
        }
    }
    if nrows > rows.len() {
        kprintln!("  ({} more row(s) not kept)", nrows - rows.len());
    }
    if rows.is_empty() && r.is_ok() {
        kprintln!("{dev}: (the driver recorded no command)");
    }
    r.map_err(|e| fail(BlkError::Io(e)))?;
    // Gather the pieces back in order for the dump.
    let mut data = Vec::with_capacity(total);
    for (e, p) in sg.entries().iter().zip(&used) {
        let off = (e.phys.as_u64() - p.phys().as_u64()) as usize;
        data.extend_from_slice(&p.to_vec()[off..off + e.len]);
    }
    kprintln!("{dev}: {count} sector(s) of {ss} bytes from LBA {lba}, gathered from the pieces:");
    super::commands::hexdump(&data, lba * ss as u64);
    Ok(())
}

/// The storage controllers' DMA devices (each AHCI HBA, each NVMe controller) with
/// their function, for `dma`, `iommu domains` and the report: their command lists,
/// FIS areas and queues stay mapped while the controller runs.
pub fn storage_dma_devices() -> Vec<(pci::Bdf, alloc::sync::Arc<dma::DmaDevice>)> {
    let mut v: Vec<_> = ahci::with_hbas(|h| {
        h.iter()
            .map(|c| (c.bdf, c.hba.dma_device().clone()))
            .collect::<Vec<_>>()
    });
    v.extend(nvme::with_ctrls(|c| {
        c.iter()
            .map(|b| (b.bdf, b.ctrl.dma_device().clone()))
            .collect::<Vec<_>>()
    }));
    v
}
