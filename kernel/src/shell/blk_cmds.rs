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
        ["read", dev, lba, count, flags @ ..] => return read_show_sg(cmd, dev, lba, count, flags),
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
            // SAFETY: a piece of `buf`, an owned DmaBuf that outlives the I/O on `sg`.
            unsafe { sg.push(buf.phys() + off as u64, n) };
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

/// Runs `f` on disk `dev` (`nvme…` or an AHCI `sd…`).
fn with_blk<R>(
    dev: &str,
    f: impl FnOnce(&mut dyn block::BlockDevice, &alloc::sync::Arc<dma::DmaDevice>) -> R,
) -> Result<R, alloc::string::String> {
    if dev.starts_with("nvme") {
        nvme::with_disk(dev, f)
    } else {
        ahci::with_disk(dev, f)
    }
}

/// The IOMMU modes `blkbench` measures, in its table's order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BenchMode {
    /// Bus address = physical (pass-through context entry under VT-d).
    Direct,
    /// Every mapping bounced through the swiotlb pool (`swiotlb=force`).
    Swiotlb,
    /// A translated domain, IOTLB invalidated at every unmap.
    Strict,
    /// A translated domain with the flush queue.
    Lazy,
}

impl BenchMode {
    const ALL: [BenchMode; 4] = [
        BenchMode::Direct,
        BenchMode::Swiotlb,
        BenchMode::Strict,
        BenchMode::Lazy,
    ];

    fn name(self) -> &'static str {
        match self {
            BenchMode::Direct => "direct",
            BenchMode::Swiotlb => "swiotlb",
            BenchMode::Strict => "strict",
            BenchMode::Lazy => "lazy",
        }
    }
}

/// What one mode measured.
struct BenchStats {
    bytes: u64,
    /// Sum of the requests' times (qd 1: the device is idle in between).
    busy_ns: u64,
    median_ns: u64,
    p99_ns: u64,
    /// A checksum of every byte read (outside the timed part): every mode
    /// read the same sectors, so it must agree with the direct mode's.
    sum: u64,
}

/// The parsed `blkbench` arguments.
struct BenchArgs<'a> {
    dev: &'a str,
    bs: u64,
    count: u64,
    random: bool,
    /// One scatter-list entry for the whole buffer instead of one per page.
    contig: bool,
}

/// Largest request `blkbench` issues (one buffer of contiguous pages).
const BENCH_MAX_BS: u64 = 1 << 20;
const BENCH_MAX_COUNT: u64 = 65536;

fn bench_args<'a>(cmd: &Command, args: &[&'a str]) -> Result<(BenchArgs<'a>, u64), CmdError> {
    let [dev, rest @ ..] = args else {
        return Err(cmd.usage_error());
    };
    if dev.starts_with('-') {
        return Err(cmd.bad_arg(alloc::format!("expected a disk name before '{dev}'")));
    }
    let mut a = BenchArgs {
        dev,
        bs: 128 * 1024,
        count: 256,
        random: false,
        contig: false,
    };
    let mut qd = 1;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .ok_or_else(|| cmd.bad_arg(alloc::format!("{flag} needs {what}")))
        };
        match *flag {
            "--bs" => {
                let v = value("a size in bytes (e.g. 4k, 128k)")?;
                a.bs = parse_u64(v)
                    .filter(|b| (512..=BENCH_MAX_BS).contains(b) && b % 512 == 0)
                    .ok_or_else(|| {
                        cmd.bad_arg(alloc::format!(
                            "bad block size '{v}' (a multiple of 512 from 512 to 1m)"
                        ))
                    })?;
            }
            "--count" => {
                let v = value("a number of requests")?;
                a.count = parse_u64(v)
                    .filter(|c| (1..=BENCH_MAX_COUNT).contains(c))
                    .ok_or_else(|| {
                        cmd.bad_arg(alloc::format!("bad count '{v}' (1..{BENCH_MAX_COUNT})"))
                    })?;
            }
            "--qd" => {
                let v = value("a queue depth")?;
                qd = parse_u64(v)
                    .filter(|q| (1..=1024).contains(q))
                    .ok_or_else(|| {
                        cmd.bad_arg(alloc::format!("bad queue depth '{v}' (1..1024)"))
                    })?;
            }
            "--random" => a.random = true,
            "--contig" => a.contig = true,
            other => return Err(cmd.bad_arg(alloc::format!("unknown option '{other}'"))),
        }
    }
    Ok((a, qd))
}

/// Reads `a.count` requests of `a.bs` bytes through the disk's current DMA
/// device: one untimed request first (the emulator translates the code path on
/// first use), then each request TSC-timed on its own.
fn bench_once(a: &BenchArgs<'_>) -> Result<BenchStats, alloc::string::String> {
    use crate::arch::tsc;
    let (ss, cap) = with_blk(a.dev, |d, _| (d.sector_size() as u64, d.capacity()))?;
    if !a.bs.is_multiple_of(ss) {
        return Err(alloc::format!(
            "block size {} is not a multiple of the {ss}-byte sector",
            a.bs
        ));
    }
    let per = a.bs / ss;
    let slots = cap / per;
    if slots == 0 {
        return Err(alloc::format!(
            "block size {} is larger than the disk ({cap} sectors)",
            a.bs
        ));
    }
    let len = a.bs as usize;
    let buf = dma::DmaBuf::alloc(&crate::dma::PLATFORM, len).map_err(|e| alloc::format!("{e}"))?;
    // One entry per page, as pages of a page cache would come (the buffer is
    // contiguous, so the DMA API may merge them), or with --contig one entry.
    let mut sg = dma::SgTable::new();
    let mut off = 0;
    while off < len {
        let n = if a.contig {
            len
        } else {
            (len - off).min(dma::PAGE_SIZE)
        };
        // SAFETY: a piece of `buf`, an owned DmaBuf that outlives the I/O on `sg`.
        unsafe { sg.push(buf.phys() + off as u64, n) };
        off += n;
    }
    // The same LBA sequence in every mode (a fixed seed), so the checksums compare.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut lba_of = |i: u64| {
        if a.random {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) % slots) * per
        } else {
            (i % slots) * per
        }
    };
    // Untimed: the emulator translates the code path on first use.
    with_blk(a.dev, |d, _| d.read(0, &sg))?.map_err(|e| alloc::format!("{e}"))?;
    let mut lat = Vec::with_capacity(a.count as usize);
    let mut sum: u64 = 0;
    for i in 0..a.count {
        let lba = lba_of(i);
        let (r, ticks) = with_blk(a.dev, |d, _| {
            let t0 = tsc::rdtsc();
            let r = d.read(lba, &sg);
            (r, tsc::rdtsc() - t0)
        })?;
        r.map_err(|e| alloc::format!("{e}"))?;
        lat.push(tsc::ticks_to_ns(ticks));
        for (j, w) in buf.to_vec().chunks(8).enumerate() {
            let mut v = [0u8; 8];
            v[..w.len()].copy_from_slice(w);
            sum = sum
                .rotate_left(5)
                .wrapping_add(u64::from_le_bytes(v) ^ (j as u64).wrapping_add(lba));
        }
    }
    let busy_ns = lat.iter().sum::<u64>().max(1);
    lat.sort_unstable();
    let n = lat.len();
    Ok(BenchStats {
        bytes: a.bs * a.count,
        busy_ns,
        median_ns: lat[n / 2],
        p99_ns: lat[(n * 99 / 100).min(n - 1)],
        sum,
    })
}

use alloc::vec::Vec;

/// `blkbench <dev> [--bs N] [--count N] [--qd N] [--random]`: the same reads in
/// every IOMMU mode in one boot. Between modes the controller is quiesced
/// (dropped), its context entry re-pointed and the controller brought up again
/// on a DMA device of the mode's backend; at the end it goes back to the
/// device and domain it had.
pub fn blkbench(cmd: &Command, args: &[&str]) -> CmdResult {
    let (a, qd) = bench_args(cmd, args)?;
    let fail = |e: alloc::string::String| CmdError::Failed(alloc::format!("blkbench: {e}"));
    let (kind, found) = if a.dev.starts_with("nvme") {
        ("nvme", nvme::controller_of(a.dev))
    } else {
        ("ahci", ahci::controller_of(a.dev))
    };
    let (bdf, orig) =
        found.ok_or_else(|| fail(alloc::format!("no disk called '{}' (see lsblk)", a.dev)))?;
    if qd > 1 {
        return Err(fail(alloc::format!(
            "{}: --qd {qd}: the {kind} driver is synchronous (qd 1: one command in flight, completion polled); use --qd 1",
            a.dev
        )));
    }
    let rebind = |dev: alloc::sync::Arc<dma::DmaDevice>,
                  between: &mut dyn FnMut() -> Result<(), alloc::string::String>| {
        if kind == "nvme" {
            nvme::rebind(bdf, dev, between)
        } else {
            ahci::rebind(bdf, dev, between)
        }
    };
    // Where the device is now under VT-d (restored at the end).
    let home = crate::iommu::attachment_of(bdf);
    let no_xlate = crate::iommu::why_no_translation(bdf);
    kprintln!(
        "blkbench {}: {} x {} bytes, {} reads, qd 1 ({kind} driver: synchronous), TSC-timed per request{}",
        a.dev,
        a.count,
        a.bs,
        if a.random { "random" } else { "sequential" },
        if a.contig { ", one scatter-list entry per request" } else { "" }
    );
    kprintln!(
        "{:<8} {:>9} {:>9} {:>11} {:>9} {:>11} {:>8}  data",
        "mode",
        "MB/s",
        "IOPS",
        "median us",
        "p99 us",
        "bytes",
        "x direct"
    );
    // A mode's device, once its controller is gone: no mapping may be left.
    let retire = |prev: Option<(alloc::sync::Arc<dma::DmaDevice>, Option<dma::SharedDomain>)>| {
        if let Some((dev, _)) = prev {
            let leaked = dev.check_leaks();
            if leaked > 0 {
                kprintln!(
                    "warning: {leaked} DMA mapping(s) of {} still live",
                    dev.name()
                );
            }
        }
    };
    let mut prev: Option<(alloc::sync::Arc<dma::DmaDevice>, Option<dma::SharedDomain>)> = None;
    let mut direct_rate: Option<u64> = None;
    let mut direct_sum: Option<u64> = None;
    for mode in BenchMode::ALL {
        let params = orig.params();
        let name = alloc::format!("{bdf} {kind} [blkbench {}]", mode.name());
        let (backend, target, _domain) = match mode {
            BenchMode::Direct => (
                dma::DmaBackend::Direct,
                crate::iommu::BenchTarget::PassThrough,
                None,
            ),
            BenchMode::Swiotlb => match crate::dma::swiotlb() {
                Some(pool) => (
                    dma::DmaBackend::Swiotlb(pool),
                    crate::iommu::BenchTarget::PassThrough,
                    None,
                ),
                None => {
                    kprintln!("{:<8} n/a (no swiotlb pool this boot)", mode.name());
                    continue;
                }
            },
            BenchMode::Strict | BenchMode::Lazy => {
                if let Some(why) = &no_xlate {
                    kprintln!("{:<8} n/a ({why})", mode.name());
                    continue;
                }
                match crate::iommu::bench_domain_for(bdf, mode == BenchMode::Strict) {
                    Ok((d, did)) => (
                        dma::DmaBackend::Iommu(d.clone()),
                        crate::iommu::BenchTarget::Domain(did),
                        Some(d),
                    ),
                    Err(e) => {
                        kprintln!("{:<8} n/a ({e})", mode.name());
                        continue;
                    }
                }
            }
        };
        let dev = dma::DmaDevice::with_params(&name, &crate::dma::PLATFORM, backend, params);
        if mode == BenchMode::Swiotlb {
            dev.set_force_bounce(true);
        }
        let r = rebind(dev.clone(), &mut || {
            if home.is_some() {
                crate::iommu::bench_attach(bdf, target).map(|_| ())
            } else {
                Ok(())
            }
        });
        retire(prev.take());
        let r = r.and_then(|()| bench_once(&a));
        match r {
            Ok(s) => {
                // MB/s (10^6 bytes) times 10^8, so two decimals survive integer maths.
                let rate_x100 = (s.bytes as u128 * 100_000_000_000 / s.busy_ns as u128) as u64;
                let base = *direct_rate.get_or_insert(rate_x100);
                let ratio = rate_x100 * 100 / base.max(1);
                let same = *direct_sum.get_or_insert(s.sum) == s.sum;
                kprintln!(
                    "{:<8} {:>6}.{:02} {:>9} {:>7}.{:03} {:>5}.{:03} {:>11} {:>5}.{:02}  {}",
                    mode.name(),
                    rate_x100 / 100_000_000,
                    rate_x100 / 1_000_000 % 100,
                    s.bytes / a.bs * 1_000_000_000 / s.busy_ns,
                    s.median_ns / 1000,
                    s.median_ns % 1000,
                    s.p99_ns / 1000,
                    s.p99_ns % 1000,
                    s.bytes,
                    ratio / 100,
                    ratio % 100,
                    if same {
                        "same as direct"
                    } else {
                        "DIFFERS from direct"
                    }
                );
            }
            Err(e) => kprintln!("{:<8} error: {e}", mode.name()),
        }
        // Kept until the next rebind has moved the device out of its domain:
        // a VT-d domain dropped while a device is still attached cannot give
        // its ID back.
        prev = Some((dev, _domain));
    }
    // Back to the original device and context entry.
    let r = rebind(orig.clone(), &mut || match home {
        Some((_, did)) => {
            crate::iommu::bench_attach(bdf, crate::iommu::BenchTarget::Domain(did)).map(|_| ())
        }
        None => Ok(()),
    });
    crate::iommu::flush_lazy_queues();
    retire(prev.take());
    match (r, home) {
        (Ok(()), Some((_, did))) => kprintln!("restored: {} on {} in {did}", a.dev, orig.name()),
        (Ok(()), None) => kprintln!("restored: {} on {}", a.dev, orig.name()),
        (Err(e), _) => return Err(fail(alloc::format!("restoring {}: {e}", a.dev))),
    }
    Ok(())
}

/// Allocates one page of the buddy allocator for a scattered buffer.
fn sg_page() -> Result<dma::DmaBuf, alloc::string::String> {
    dma::DmaBuf::alloc(&crate::dma::PLATFORM, dma::PAGE_SIZE).map_err(|e| alloc::format!("{e}"))
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
    let fail = |e: alloc::string::String| {
        let sep = if e.starts_with(dev) { "" } else { ": " };
        let d = if sep.is_empty() { "" } else { dev };
        CmdError::Failed(alloc::format!("blk: {d}{sep}{e}"))
    };
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
                return Err(alloc::format!("--mask {bits}: {e}"));
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
    r.map_err(|e| fail(alloc::format!("{e}")))?;
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
