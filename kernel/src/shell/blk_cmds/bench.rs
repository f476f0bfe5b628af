//! `blkbench`: the same reads through a disk in every IOMMU mode (direct, swiotlb,
//! strict, lazy) in one boot, the controller re-bound on each mode's DMA device.

use alloc::vec::Vec;

use super::{with_blk, BlkError};
use crate::drivers::{ahci, nvme};
use crate::kprintln;
use crate::shell::{parse_u64, CmdError, CmdResult, Command};

/// Why one `blkbench` mode, or the whole run, failed.
#[derive(Debug)]
enum BenchError {
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
}

impl From<BlkError> for BenchError {
    fn from(e: BlkError) -> Self {
        BenchError::Blk(e)
    }
}

impl core::fmt::Display for BenchError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
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
    /// Median of the same scatter list mapped and unmapped on the mode's DMA
    /// device with no I/O: the DMA API's share of a request.
    dma_ns: u64,
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
fn bench_once(a: &BenchArgs<'_>) -> Result<BenchStats, BenchError> {
    use crate::arch::tsc;
    let (ss, cap) = with_blk(a.dev, |d, _| (d.sector_size() as u64, d.capacity()))?;
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
    let len = a.bs as usize;
    let buf = dma::DmaBuf::alloc(&crate::dma::PLATFORM, len).map_err(BlkError::Alloc)?;
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
    with_blk(a.dev, |d, _| d.read(0, &sg))?.map_err(BlkError::Io)?;
    let mut lat = Vec::with_capacity(a.count as usize);
    let mut sum: u64 = 0;
    for i in 0..a.count {
        let lba = lba_of(i);
        let (r, ticks) = with_blk(a.dev, |d, _| {
            let t0 = tsc::rdtsc();
            let r = d.read(lba, &sg);
            (r, tsc::rdtsc() - t0)
        })?;
        r.map_err(BlkError::Io)?;
        lat.push(tsc::ticks_to_ns(ticks));
        for (j, w) in buf.to_vec().chunks(8).enumerate() {
            let mut v = [0u8; 8];
            v[..w.len()].copy_from_slice(w);
            sum = sum
                .rotate_left(5)
                .wrapping_add(u64::from_le_bytes(v) ^ (j as u64).wrapping_add(lba));
        }
    }
    // The DMA API's part of a request: the same list mapped and unmapped on
    // the mode's device, no I/O (map_sg + unmap, as the driver does).
    let mut dma_lat = Vec::with_capacity(64);
    for _ in 0..a.count.min(64) {
        let (r, ticks) = with_blk(a.dev, |_, dev| {
            let t0 = tsc::rdtsc();
            let r = dev
                .map_sg(sg.clone(), dma::DmaDirection::FromDevice)
                .map(|m| drop(m.unmap()));
            (r, tsc::rdtsc() - t0)
        })?;
        r.map_err(BenchError::Dma)?;
        dma_lat.push(tsc::ticks_to_ns(ticks));
    }
    dma_lat.sort_unstable();
    let busy_ns = lat.iter().sum::<u64>().max(1);
    lat.sort_unstable();
    let n = lat.len();
    Ok(BenchStats {
        dma_ns: dma_lat[dma_lat.len() / 2],
        bytes: a.bs * a.count,
        busy_ns,
        median_ns: lat[n / 2],
        p99_ns: lat[(n * 99 / 100).min(n - 1)],
        sum,
    })
}

/// `blkbench <dev> [--bs N] [--count N] [--qd N] [--random]`: the same reads in
/// every IOMMU mode in one boot. Between modes the controller is quiesced
/// (dropped), its context entry re-pointed and the controller brought up again
/// on a DMA device of the mode's backend; at the end it goes back to the
/// device and domain it had.
pub fn blkbench(cmd: &Command, args: &[&str]) -> CmdResult {
    let (a, qd) = bench_args(cmd, args)?;
    let fail = |e: &dyn core::fmt::Display| CmdError::Failed(alloc::format!("blkbench: {e}"));
    let (kind, found) = if a.dev.starts_with("nvme") {
        ("nvme", nvme::controller_of(a.dev))
    } else {
        ("ahci", ahci::controller_of(a.dev))
    };
    let (bdf, orig) = found.ok_or_else(|| fail(&BenchError::NoSuchDisk(a.dev.into())))?;
    if qd > 1 {
        return Err(fail(&alloc::format!(
            "{}: --qd {qd}: the {kind} driver is synchronous (qd 1: one command in flight, completion polled); use --qd 1",
            a.dev
        )));
    }
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
    // (mode, DMA API median, request median): printed after the table.
    let mut dma_split: Vec<(&str, u64, u64)> = Vec::new();
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
                dma_split.push((mode.name(), s.dma_ns, s.median_ns));
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
    if let Some(&(_, direct_dma, direct_req)) = dma_split.first() {
        // The device's side (submit to completion, QEMU's translation of the
        // device's accesses included) is the request minus the DMA API's part.
        let direct_dev = direct_req as i64 - direct_dma as i64;
        kprintln!(
            "where a request's time goes (medians; DMA API = map_sg + unmap of the same list, no I/O):"
        );
        for (mode, dma_ns, req_ns) in &dma_split {
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
        (Err(e), _) => return Err(fail(&alloc::format!("restoring {}: {e}", a.dev))),
    }
    Ok(())
}
