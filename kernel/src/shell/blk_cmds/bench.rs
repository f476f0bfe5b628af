//! `blkbench`: the same reads through a disk in every IOMMU mode (direct, swiotlb,
//! strict, lazy) in one boot, the controller re-bound on each mode's DMA device.

use alloc::vec::Vec;

use super::{with_blk, BlkError};

mod run;
use crate::drivers::{ahci, nvme};
use crate::kprintln;
use crate::shell::{parse_u64, CmdError, CmdResult, Command};
use run::{Plan, Sample};

/// Why one `blkbench` mode, or the whole run, failed.
#[derive(Debug)]
enum BenchError {
    /// At qd > 1 each read must be one command; the block layer would split this.
    MoreThanOneCommand { bs: u64, pieces: usize },
    /// The driver completed a tag that was not in flight.
    UnknownTag(u32),
    /// No disk of that name.
    NoSuchDisk(alloc::string::String),
    /// A read, or reaching the disk, failed.
    Blk(BlkError),
    /// `--bs` is not a whole number of sectors.
    NotSectorMultiple { bs: u64, sector: u64 },
    /// `--bs` is larger than the disk.
    LargerThanDisk { bs: u64, sectors: u64 },
    /// The AHCI controller did not come back on the mode's DMA device.
    AhciRebind(ahci::BindError<crate::iommu::Error>),
    /// The NVMe controller did not come back on the mode's DMA device.
    NvmeRebind(nvme::BindError<crate::iommu::Error>),
    /// Mapping the request's scatter list (timed without I/O) failed.
    Dma(dma::DmaError),
    /// `--qd` above what the driver can keep in flight.
    QueueDepth { asked: usize, offered: usize },
}

impl From<BlkError> for BenchError {
    fn from(e: BlkError) -> Self {
        BenchError::Blk(e)
    }
}

impl core::fmt::Display for BenchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BenchError::MoreThanOneCommand { bs, pieces } => write!(
                f,
                "a {bs}-byte read is {pieces} commands for this disk; --qd above 1 needs one command per read (use a smaller --bs)"
            ),
            BenchError::UnknownTag(t) => {
                write!(f, "the driver completed tag {t}, which was not in flight")
            }
            BenchError::NoSuchDisk(dev) => write!(f, "no disk called '{dev}' (see lsblk)"),
            BenchError::Blk(e) => write!(f, "{e}"),
            BenchError::NotSectorMultiple { bs, sector } => write!(
                f,
                "block size {bs} is not a multiple of the {sector}-byte sector"
            ),
            BenchError::LargerThanDisk { bs, sectors } => write!(
                f,
                "block size {bs} is larger than the disk ({sectors} sectors)"
            ),
            BenchError::AhciRebind(e) => write!(f, "{e}"),
            BenchError::NvmeRebind(e) => write!(f, "{e}"),
            BenchError::Dma(e) => write!(f, "{e}"),
            BenchError::QueueDepth { asked, offered: 1 } => write!(
                f,
                "--qd {asked}: the driver carries one request at a time (queue depth 1); use --qd 1"
            ),
            BenchError::QueueDepth { asked, offered } => write!(
                f,
                "--qd {asked}: the driver keeps at most {offered} requests in flight"
            ),
        }
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

/// The parsed `blkbench` arguments.
struct BenchArgs<'a> {
    dev: &'a str,
    bs: u64,
    count: u64,
    random: bool,
    /// One scatter-list entry for the whole buffer instead of one per page.
    contig: bool,
    /// Reads in flight at once.
    qd: usize,
    /// The modes take turns this many times, each turn reading its share of
    /// the requests, so a slow spell of the host falls on every mode alike.
    rounds: u64,
}

/// Largest request `blkbench` issues (one buffer of contiguous pages).
const BENCH_MAX_BS: u64 = 1 << 20;
const BENCH_MAX_COUNT: u64 = 65536;

fn bench_args<'a>(cmd: &Command, args: &[&'a str]) -> Result<BenchArgs<'a>, CmdError> {
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
        qd: 1,
        rounds: 4,
    };
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
                a.qd = parse_u64(v)
                    .filter(|q| (1..=1024).contains(q))
                    .ok_or_else(|| cmd.bad_arg(alloc::format!("bad queue depth '{v}' (1..1024)")))?
                    as usize;
            }
            "--rounds" => {
                let v = value("a number of turns")?;
                a.rounds = parse_u64(v)
                    .filter(|r| (1..=64).contains(r))
                    .ok_or_else(|| cmd.bad_arg(alloc::format!("bad rounds '{v}' (1..64)")))?;
            }
            "--random" => a.random = true,
            "--contig" => a.contig = true,
            other => return Err(cmd.bad_arg(alloc::format!("unknown option '{other}'"))),
        }
    }
    if a.count < a.rounds {
        a.rounds = a.count;
    }
    Ok(a)
}

/// The disk's geometry as `blkbench` reads it, and the queue depth it can have.
fn plan_of<'a>(a: &BenchArgs<'a>) -> Result<Plan<'a>, BenchError> {
    let (ss, cap, depth) = with_blk(a.dev, |d, _| {
        (d.sector_size() as u64, d.capacity(), d.queue_depth())
    })?;
    if !a.bs.is_multiple_of(ss) {
        return Err(BenchError::NotSectorMultiple {
            bs: a.bs,
            sector: ss,
        });
    }
    let per = a.bs / ss;
    let slots = cap / per;
    if slots == 0 {
        return Err(BenchError::LargerThanDisk {
            bs: a.bs,
            sectors: cap,
        });
    }
    if a.qd > depth {
        return Err(BenchError::QueueDepth {
            asked: a.qd,
            offered: depth,
        });
    }
    Ok(Plan {
        dev: a.dev,
        bs: a.bs,
        per,
        ss,
        slots,
        random: a.random,
        contig: a.contig,
        qd: a.qd,
    })
}

/// One mode, ready to be measured: its DMA device, where its context entry
/// points, and the bench domain (kept until the device is home again: a VT-d
/// domain dropped while a device is still attached cannot give its ID back).
struct ModeSetup {
    mode: BenchMode,
    dev: alloc::sync::Arc<dma::DmaDevice>,
    target: crate::iommu::BenchTarget,
    _domain: Option<dma::SharedDomain>,
    sample: Sample,
    error: Option<BenchError>,
}

/// `blkbench <dev> [--bs N] [--count N] [--qd N] [--rounds N] [--random]
/// [--contig]`: the same reads in every IOMMU mode in one boot. The modes take
/// turns (`--rounds`, 4 by default), each turn reading its share of the requests.
/// Between turns the controller is quiesced (dropped), its context entry
/// re-pointed and the controller brought up again on a DMA device of the next
/// mode's backend; at the end it goes back to the device and domain it had.
pub fn blkbench(cmd: &Command, args: &[&str]) -> CmdResult {
    let a = bench_args(cmd, args)?;
    let fail = |e: &dyn core::fmt::Display| CmdError::Failed(alloc::format!("blkbench: {e}"));
    let (kind, found) = if a.dev.starts_with("nvme") {
        ("nvme", nvme::controller_of(a.dev))
    } else {
        ("ahci", ahci::controller_of(a.dev))
    };
    let (bdf, orig) = found.ok_or_else(|| fail(&BenchError::NoSuchDisk(a.dev.into())))?;
    let plan = plan_of(&a).map_err(|e| fail(&e))?;
    let rebind = |dev: alloc::sync::Arc<dma::DmaDevice>,
                  between: &mut dyn FnMut() -> Result<(), crate::iommu::Error>|
     -> Result<(), BenchError> {
        if kind == "nvme" {
            nvme::rebind(bdf, dev, between).map_err(BenchError::NvmeRebind)
        } else {
            ahci::rebind(bdf, dev, between).map_err(BenchError::AhciRebind)
        }
    };
    // Where the device is now under VT-d (restored at the end).
    let home = crate::iommu::attachment_of(bdf);
    let no_xlate = crate::iommu::why_no_translation(bdf);
    kprintln!(
        "blkbench {}: {} x {} bytes, {} reads, qd {}{}, the modes taking turns {} time(s), TSC-timed per request{}",
        a.dev,
        a.count,
        a.bs,
        if a.random { "random" } else { "sequential" },
        a.qd,
        if a.qd == 1 {
            alloc::format!(" (one request at a time through the {kind} driver)")
        } else {
            alloc::format!(" ({} reads kept in flight through the {kind} driver)", a.qd)
        },
        a.rounds,
        if a.contig { ", one scatter-list entry per request" } else { "" }
    );
    let mut modes: Vec<ModeSetup> = Vec::new();
    let mut unavailable: Vec<(BenchMode, alloc::string::String)> = Vec::new();
    for mode in BenchMode::ALL {
        let params = orig.params();
        let name = alloc::format!("{bdf} {kind} [blkbench {}]", mode.name());
        let (backend, target, domain) = match mode {
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
                    unavailable.push((mode, "no swiotlb pool this boot".into()));
                    continue;
                }
            },
            BenchMode::Strict | BenchMode::Lazy => {
                if let Some(why) = &no_xlate {
                    unavailable.push((mode, alloc::format!("{why}")));
                    continue;
                }
                match crate::iommu::bench_domain_for(bdf, mode == BenchMode::Strict) {
                    Ok((d, did)) => (
                        dma::DmaBackend::Iommu(d.clone()),
                        crate::iommu::BenchTarget::Domain(did),
                        Some(d),
                    ),
                    Err(e) => {
                        unavailable.push((mode, alloc::format!("{e}")));
                        continue;
                    }
                }
            }
        };
        let dev = dma::DmaDevice::with_params(&name, &crate::dma::PLATFORM, backend, params);
        if mode == BenchMode::Swiotlb {
            dev.set_force_bounce(true);
        }
        modes.push(ModeSetup {
            mode,
            dev,
            target,
            _domain: domain,
            sample: Sample::default(),
            error: None,
        });
    }
    for round in 0..a.rounds {
        let range = a.count * round / a.rounds..a.count * (round + 1) / a.rounds;
        for m in modes.iter_mut().filter(|m| m.error.is_none()) {
            let target = m.target;
            let r = rebind(m.dev.clone(), &mut || {
                if home.is_some() {
                    crate::iommu::bench_attach(bdf, target).map(|_| ())
                } else {
                    Ok(())
                }
            })
            .and_then(|()| run::run_range(&plan, range.clone()));
            match r {
                Ok(s) => m.sample.merge(s),
                Err(e) => m.error = Some(e),
            }
        }
    }
    // Back to the original device and context entry.
    let restored = rebind(orig.clone(), &mut || match home {
        Some((_, did)) => {
            crate::iommu::bench_attach(bdf, crate::iommu::BenchTarget::Domain(did)).map(|_| ())
        }
        None => Ok(()),
    });
    crate::iommu::flush_lazy_queues();
    print_table(&a, &mut modes, &unavailable);
    // Every mode's controller is gone: no mapping may be left.
    for m in &modes {
        let leaked = m.dev.check_leaks();
        if leaked > 0 {
            kprintln!(
                "warning: {leaked} DMA mapping(s) of {} still live",
                m.dev.name()
            );
        }
    }
    drop(modes);
    match (restored, home) {
        (Ok(()), Some((_, did))) => kprintln!("restored: {} on {} in {did}", a.dev, orig.name()),
        (Ok(()), None) => kprintln!("restored: {} on {}", a.dev, orig.name()),
        (Err(e), _) => return Err(fail(&alloc::format!("restoring {}: {e}", a.dev))),
    }
    Ok(())
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The table (one row per mode, in `BenchMode::ALL`'s order) and where a
/// request's time goes.
fn print_table(
    a: &BenchArgs<'_>,
    modes: &mut [ModeSetup],
    unavailable: &[(BenchMode, alloc::string::String)],
) {
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
    let mut direct_rate: Option<u64> = None;
    let mut direct_sum: Option<u64> = None;
    // (mode, DMA API median, request median): printed after the table.
    let mut split: Vec<(&str, u64, u64)> = Vec::new();
    // (mode, starts that waited for DMA resources): printed after the table.
    let mut waited: Vec<(&str, u64)> = Vec::new();
    for mode in BenchMode::ALL {
        if let Some((_, why)) = unavailable.iter().find(|(m, _)| *m == mode) {
            kprintln!("{:<8} n/a ({why})", mode.name());
            continue;
        }
        let Some(m) = modes.iter_mut().find(|m| m.mode == mode) else {
            continue;
        };
        if let Some(e) = &m.error {
            kprintln!("{:<8} error: {e}", mode.name());
            continue;
        }
        let s = &mut m.sample;
        let busy = s.busy_ns.max(1);
        let med = median(&mut s.lat_ns);
        let n = s.lat_ns.len().max(1);
        let p99 = s
            .lat_ns
            .get((n * 99 / 100).min(n - 1))
            .copied()
            .unwrap_or(0);
        let dma = median(&mut s.dma_ns);
        split.push((mode.name(), dma, med));
        if s.waited > 0 {
            waited.push((mode.name(), s.waited));
        }
        // MB/s (10^6 bytes) times 10^8, so two decimals survive integer maths.
        let rate_x100 = (s.bytes as u128 * 100_000_000_000 / busy as u128) as u64;
        let base = *direct_rate.get_or_insert(rate_x100);
        let ratio = rate_x100 * 100 / base.max(1);
        let same = *direct_sum.get_or_insert(s.sum) == s.sum;
        kprintln!(
            "{:<8} {:>6}.{:02} {:>9} {:>7}.{:03} {:>5}.{:03} {:>11} {:>5}.{:02}  {}",
            mode.name(),
            rate_x100 / 100_000_000,
            rate_x100 / 1_000_000 % 100,
            s.bytes / a.bs * 1_000_000_000 / busy,
            med / 1000,
            med % 1000,
            p99 / 1000,
            p99 % 1000,
            s.bytes,
            ratio / 100,
            ratio % 100,
            if same {
                alloc::format!("same as direct ({:016x})", s.sum)
            } else {
                alloc::format!("DIFFERS from direct ({:016x})", s.sum)
            }
        );
    }
    for (mode, n) in &waited {
        kprintln!(
            "{mode}: {n} start(s) waited for a completion: the DMA mapping ran short of what the reads in flight held (Linux: BLK_STS_RESOURCE, requeued)"
        );
    }
    if let Some(&(_, direct_dma, direct_req)) = split.first() {
        // The device's side (submit to completion, QEMU's translation of the
        // device's accesses included) is the request minus the DMA API's part.
        let direct_dev = direct_req as i64 - direct_dma as i64;
        kprintln!(
            "where a request's time goes (medians; DMA API = map_sg + unmap of the same list, no I/O):"
        );
        for (mode, dma_ns, req_ns) in &split {
            kprintln!(
                "  {mode:<8} request {:>5}.{:03} us = DMA API {:>4}.{:03} us + device side {:>5} us ({:+} us over direct's)",
                req_ns / 1000,
                req_ns % 1000,
                dma_ns / 1000,
                dma_ns % 1000,
                (*req_ns as i64 - *dma_ns as i64) / 1000,
                (*req_ns as i64 - *dma_ns as i64 - direct_dev) / 1000
            );
        }
    }
}
