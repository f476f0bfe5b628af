//! `edu dma`, `dma` and `dmabench`: first-party DMA through the mapping API,
//! and what the API is doing.

use alloc::sync::Arc;
use alloc::vec::Vec;

use dma::{DmaBuf, DmaDevice, DmaDirection, DmaPlatform, DmaStream, FromDevice, ToDevice, Via};

use super::{parse_u64, CmdError, CmdResult, Command};
use crate::arch::tsc;
use crate::dma as kdma;
use crate::drivers::edu::{self, Edu, EduDir};
use crate::kprintln;

fn fail(msg: impl core::fmt::Display) -> CmdError {
    CmdError::Failed(alloc::format!("{msg}"))
}

/// A byte pattern that differs per call, so stale data cannot pass.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// How the live mapping at bus address `addr` of `dev` was made.
pub fn via_kind(dev: &DmaDevice, addr: hal::DmaAddr) -> Option<Via> {
    dev.mappings()
        .iter()
        .find(|m| m.addr == addr)
        .map(|m| m.via)
}

fn via_of(dev: &DmaDevice, addr: hal::DmaAddr) -> &'static str {
    match via_kind(dev, addr) {
        Some(Via::Direct) => "direct (bus address = physical address)",
        Some(Via::Bounce) => "swiotlb bounce buffer",
        Some(Via::Iommu) => "IOMMU (bus address is an IOVA)",
        None => "unknown",
    }
}

/// What one `edu dma` did, for the shell and for tests.
pub struct Report {
    pub cpu_phys: u64,
    pub bus: u64,
    pub via: &'static str,
    pub verified: Result<usize, usize>,
}

/// A buffer edu can reach without help: below its 28-bit mask, as a driver
/// allocates for a device with a small mask.
fn reachable(len: usize) -> Result<DmaBuf, CmdError> {
    DmaBuf::alloc_below(&kdma::PLATFORM, len, dma::dma_bit_mask(28)).map_err(fail)
}

/// Moves `len` bytes with edu in direction `dir` through a buffer from
/// `platform` (`None`: a buffer below edu's mask), then checks the data with a
/// second transfer the other way through a reachable buffer.
pub fn round_trip(
    e: &Edu,
    dir: EduDir,
    len: usize,
    platform: Option<&'static dyn DmaPlatform>,
) -> Result<Report, CmdError> {
    let test_buf = |len| match platform {
        Some(p) => DmaBuf::alloc(p, len).map_err(fail),
        None => reachable(len),
    };
    let seed = (tsc::rdtsc() >> 4) as u8 | 1;
    let want = pattern(len, seed);
    let dev = &e.dma;
    let (cpu_phys, bus, via, got) = match dir {
        EduDir::ToDevice => {
            let mut buf = test_buf(len)?;
            buf.write(0, &want);
            let cpu_phys = buf.phys().as_u64();
            let s = DmaStream::<ToDevice>::map(dev, buf).map_err(|e| fail(e.error))?;
            let via = via_of(dev, s.dma_addr());
            let bus = s.dma_addr().as_u64();
            e.to_device(&s, len).map_err(fail)?;
            drop(s.unmap());
            // Read it back with an independent mapping.
            let back =
                DmaStream::<FromDevice>::map(dev, reachable(len)?).map_err(|e| fail(e.error))?;
            e.from_device(&back, len).map_err(fail)?;
            (cpu_phys, bus, via, back.unmap().to_vec())
        }
        EduDir::FromDevice => {
            // Load the device's buffer first, through an ordinary mapping.
            let mut src = reachable(len)?;
            src.write(0, &want);
            let s = DmaStream::<ToDevice>::map(dev, src).map_err(|e| fail(e.error))?;
            e.to_device(&s, len).map_err(fail)?;
            drop(s);
            let buf = test_buf(len)?;
            let cpu_phys = buf.phys().as_u64();
            let r = DmaStream::<FromDevice>::map(dev, buf).map_err(|e| fail(e.error))?;
            let via = via_of(dev, r.dma_addr());
            let bus = r.dma_addr().as_u64();
            e.from_device(&r, len).map_err(fail)?;
            (cpu_phys, bus, via, r.unmap().to_vec())
        }
    };
    let verified = match got.iter().zip(&want).position(|(a, b)| a != b) {
        None if got.len() == want.len() => Ok(len),
        None => Err(got.len().min(want.len())),
        Some(i) => Err(i),
    };
    Ok(Report {
        cpu_phys,
        bus,
        via,
        verified,
    })
}

/// What pointing edu at an unmapped IOVA did.
pub struct Blocked {
    pub iova: u64,
    pub faults: alloc::vec::Vec<alloc::string::String>,
    pub memory_unchanged: bool,
}

/// Maps a buffer for edu, unmaps it (in strict mode the IOTLB entry is gone
/// before the call returns), then makes edu write to that IOVA anyway: the
/// IOMMU must block it and record a fault; the buffer must be unchanged.
pub fn unmapped_write(e: &Edu, len: usize) -> Result<Blocked, CmdError> {
    if crate::iommu::domain_of(e.bdf).is_none() {
        return Err(fail(
            "edu: --unmapped needs edu in its own IOMMU domain (boot with iommu=on, as the default profile does)",
        ));
    }
    let buf = reachable(len)?;
    let s = DmaStream::<FromDevice>::map(&e.dma, buf).map_err(|e| fail(e.error))?;
    let iova = s.dma_addr();
    let mut buf = s.unmap();
    buf.fill(0x5A);
    let before = crate::iommu::fault_count();
    // Deliberately a stale bus address: the one thing drivers must not do.
    // SAFETY: deliberate misuse under study: `iova` was unmapped above; the IOMMU
    // (or, without one, the still-allocated buffer) is what this demonstrates.
    unsafe { e.transfer_raw(EduDir::FromDevice, iova, len) }.map_err(fail)?;
    crate::arch::apic::sleep_ms(20);
    crate::iommu::collect_faults();
    let n = (crate::iommu::fault_count() - before) as usize;
    let hist = crate::iommu::fault_history();
    let faults = hist[hist.len().saturating_sub(n)..].to_vec();
    let memory_unchanged = buf.to_vec().iter().all(|&b| b == 0x5A);
    Ok(Blocked {
        iova: iova.as_u64(),
        faults,
        memory_unchanged,
    })
}

/// `edu dma <to|from> <len> [--high | --unmapped]`.
pub fn edu_dma(cmd: &Command, args: &[&str]) -> CmdResult {
    if let ["dma", "from", len, "--unmapped"] = args {
        let len = parse_u64(len)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|l| (1..=edu::MAX_DMA).contains(l))
            .ok_or_else(|| fail(alloc::format!("edu: length '{len}' must be 1..=4095")))?;
        let b = edu::with_edu(|e| unmapped_write(e, len))
            .ok_or_else(|| fail("edu: no edu device bound"))??;
        kprintln!(
            "edu dma from device to IOVA {:#x}, which was mapped and has been unmapped",
            b.iova
        );
        if b.faults.is_empty() {
            kprintln!("  NOT blocked: no fault (lazy invalidation: the IOTLB still held the old translation)");
        } else {
            kprintln!("  blocked by the IOMMU: {} fault(s)", b.faults.len());
            for f in &b.faults {
                kprintln!("  {f}");
            }
        }
        kprintln!(
            "  memory behind the old mapping: {}",
            if b.memory_unchanged {
                "unchanged"
            } else {
                "OVERWRITTEN by the device"
            }
        );
        return Ok(());
    }
    let (dir, len, high) = match args {
        ["dma", d, len] => (d, len, false),
        ["dma", d, len, "--high"] => (d, len, true),
        _ => return Err(cmd.usage_error()),
    };
    let dir = match *dir {
        "to" => EduDir::ToDevice,
        "from" => EduDir::FromDevice,
        other => {
            return Err(fail(alloc::format!(
                "edu: direction '{other}' is not 'to' or 'from'"
            )))
        }
    };
    let len = parse_u64(len)
        .and_then(|l| usize::try_from(l).ok())
        .filter(|l| (1..=edu::MAX_DMA).contains(l))
        .ok_or_else(|| {
            fail(alloc::format!(
                "edu: length '{len}' must be 1..=4095 (QEMU 7.2 aborts on 4096)"
            ))
        })?;
    let platform: Option<&'static dyn DmaPlatform> = if high { Some(&kdma::HIGH) } else { None };
    let report = edu::with_edu(|e| round_trip(e, dir, len, platform))
        .ok_or_else(|| fail("edu: no edu device bound"))??;
    kprintln!(
        "edu dma {}: {len} bytes, CPU buffer at phys {:#x}{}",
        if dir == EduDir::ToDevice {
            "to device"
        } else {
            "from device"
        },
        report.cpu_phys,
        if report.cpu_phys >= 1 << 28 {
            " (above edu's 28-bit reach)"
        } else {
            ""
        }
    );
    kprintln!(
        "  device was given bus address {:#x} via {}",
        report.bus,
        report.via
    );
    match report.verified {
        Ok(n) => kprintln!("  verified: {n} bytes match"),
        Err(at) => return Err(fail(alloc::format!("edu: data mismatch at byte {at}"))),
    }
    Ok(())
}

fn show_device(dev: &DmaDevice) {
    let p = dev.params();
    kprintln!(
        "{}: dma_mask {:#x}, coherent_dma_mask {:#x}, max segment {} bytes, boundary {:#x}",
        dev.name(),
        p.dma_mask,
        p.coherent_dma_mask,
        p.max_segment_size,
        p.segment_boundary_mask
    );
    let maps = dev.mappings();
    kprintln!("  {} live mapping(s)", maps.len());
    for m in maps {
        kprintln!("    {m}");
    }
}

/// `dma`: devices with DMA parameters, live mappings, the bounce pool and the
/// dma-debug counters.
pub fn dma(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    super::dmaengine_cmds::print_channels();
    // Every bound edu (two-edu has two), not only the first.
    for i in 0.. {
        if edu::with_edu_at(i, |e| show_device(&e.dma)).is_none() {
            break;
        }
    }
    // The storage controllers, counted only: their mappings (command lists, FIS
    // areas, queues, live while the controller runs) are listed by `iommu domains`.
    for (_, dev) in super::blk_cmds::storage_dma_devices() {
        let p = dev.params();
        kprintln!(
            "{}: dma_mask {:#x}, coherent_dma_mask {:#x}, max segment {} bytes, boundary {:#x}",
            dev.name(),
            p.dma_mask,
            p.coherent_dma_mask,
            p.max_segment_size,
            p.segment_boundary_mask
        );
        kprintln!(
            "  {} live mapping(s) held by the running controller",
            dev.mappings().len()
        );
    }
    if let Some(pool) = kdma::swiotlb() {
        let s = pool.stats();
        kprintln!(
            "swiotlb: [{:#x}-{:#x}] {} KiB, {}/{} slots in use (high water {}), {} mapping(s), {} refused when full",
            s.start.as_u64(),
            s.start.as_u64() + s.size as u64 - 1,
            s.size / 1024,
            s.used_slots,
            s.total_slots,
            s.high_water,
            s.mappings,
            s.full_failures
        );
    }
    let (msi, poll) = edu::dma_completions();
    kprintln!("edu completions: {msi} by MSI, {poll} by polling");
    let counts: Vec<_> = dma::debug::global_counts()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    if counts.is_empty() {
        kprintln!("dma-debug: no errors");
    }
    for (kind, n) in counts {
        kprintln!("dma-debug: {n} x {}", kind.name());
    }
    for r in kdma::recent_reports() {
        kprintln!("  {r}");
    }
    Ok(())
}

/// Median of `rounds` timings of `op`, each over `batch` calls, in ns per call.
fn median_ns(rounds: usize, batch: usize, mut op: impl FnMut()) -> u64 {
    // One untimed batch first: the emulator translates the code and fills
    // its TLB on first use.
    for _ in 0..batch {
        op();
    }
    let mut v: Vec<u64> = (0..rounds)
        .map(|_| {
            let t0 = tsc::rdtsc();
            for _ in 0..batch {
                op();
            }
            tsc::ticks_to_ns(tsc::rdtsc() - t0) / batch as u64
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

pub struct BenchRow {
    pub name: &'static str,
    pub ns: u64,
}

/// map+unmap of one 4 KiB buffer per backend, and a 4 KiB memcpy, in one boot.
/// Each backend gets a device of its own with edu's 28-bit mask.
pub fn bench() -> Result<Vec<BenchRow>, CmdError> {
    let mk = |name: &str, backend: dma::DmaBackend| -> Result<Arc<DmaDevice>, CmdError> {
        let d = DmaDevice::new(name, &kdma::PLATFORM, backend);
        d.set_mask_and_coherent(dma::dma_bit_mask(28))
            .map_err(fail)?;
        Ok(d)
    };
    let pool = kdma::swiotlb().ok_or_else(|| fail("dmabench: no bounce pool"))?;
    let bounce_pool = pool.clone();
    let dev = &mk("bench-swiotlb", dma::DmaBackend::Swiotlb(pool))?;
    const LEN: usize = 4096;
    let low = reachable(LEN)?;
    // The high platform hands out 64 KiB chunks of one 4 MiB-aligned block:
    // chunk 0 sits at the same offset modulo 4 MiB as the bounce pool's first
    // slot, chunk 1 does not. See the "same page colour" row.
    let high_same_colour = DmaBuf::alloc(&kdma::HIGH, LEN).map_err(fail)?;
    let high = DmaBuf::alloc(&kdma::HIGH, LEN).map_err(fail)?;
    let other = reachable(LEN)?;
    let (src, dst) = (low.phys(), other.phys());
    let (rounds, batch) = (31, 64);
    let mut rows = Vec::new();
    let direct = crate::mm::direct::direct();
    let (s, d) = (
        direct.virt(src).as_ptr::<u8>(),
        direct.virt(dst).as_mut_ptr::<u8>(),
    );
    rows.push(BenchRow {
        name: "memcpy 4 KiB (reference)",
        ns: median_ns(rounds, batch, || {
            // SAFETY: two distinct 4 KiB buffers this function owns, through
            // the direct map.
            unsafe { core::ptr::copy_nonoverlapping(core::hint::black_box(s), d, LEN) }
        }),
    });
    let time_map_unmap =
        |dev: &DmaDevice, phys: hal::PhysAddr, dir: DmaDirection| -> Result<u64, CmdError> {
            let mut err = None;
            // SAFETY: `phys` is one of this function's own 4 KiB buffers, alive for
            // the whole benchmark; each mapping is unmapped before the next.
            let ns = median_ns(rounds, batch, || {
                match unsafe { dev.map_single(phys, LEN, dir) } {
                    Ok(a) => {
                        if let Err(e) = dev.unmap_single(a, LEN, dir) {
                            err = Some(e);
                        }
                    }
                    Err(e) => err = Some(e),
                }
            });
            err.map_or(Ok(ns), |e| Err(fail(e)))
        };
    let map_unmap = |phys, dir| time_map_unmap(dev, phys, dir);
    rows.push(BenchRow {
        name: "direct map+unmap",
        ns: map_unmap(low.phys(), DmaDirection::ToDevice)?,
    });
    rows.push(BenchRow {
        name: "bounce map+unmap (to device)",
        ns: map_unmap(high.phys(), DmaDirection::ToDevice)?,
    });
    rows.push(BenchRow {
        name: "bounce map+unmap (bidirectional)",
        ns: map_unmap(high.phys(), DmaDirection::Bidirectional)?,
    });
    // Under QEMU TCG a buffer whose address equals the bounce slot's modulo
    // 4 MiB thrashes the emulator's direct-mapped software TLB on every
    // access of the copy; real CPUs have associative TLBs. Shown, not hidden.
    rows.push(BenchRow {
        name: "bounce (to device), same page colour",
        ns: map_unmap(high_same_colour.phys(), DmaDirection::ToDevice)?,
    });
    for (name, strict) in [
        ("iommu-strict map+unmap", true),
        ("iommu-lazy map+unmap", false),
    ] {
        let Some(domain) = crate::iommu::bench_domain(strict) else {
            continue;
        };
        let d = mk(name, dma::DmaBackend::Iommu(domain))?;
        let ns = time_map_unmap(&d, high.phys(), DmaDirection::ToDevice)?;
        rows.push(BenchRow { name, ns });
    }
    // The price of the untrusted-device mitigation: a 64-byte buffer inside a
    // page, mapped strictly for a trusted device (the IOMMU maps its whole
    // page) and for an untrusted one (bounced into a zero-padded page).
    for (name, untrusted) in [
        ("iommu-strict 64 B sub-page, trusted", false),
        ("iommu-strict 64 B sub-page, untrusted", true),
    ] {
        let Some(domain) = crate::iommu::bench_domain(true) else {
            continue;
        };
        let d = mk(name, dma::DmaBackend::Iommu(domain))?;
        if untrusted {
            d.set_untrusted(bounce_pool.clone());
        }
        let phys = high.phys() + 0x40;
        let mut err = None;
        let ns = median_ns(rounds, batch, || {
            // SAFETY: 64 bytes inside `high`, this function's own buffer, alive for the
            // whole benchmark; each mapping is unmapped before the next.
            match unsafe { d.map_single(phys, 64, DmaDirection::ToDevice) } {
                Ok(a) => {
                    if let Err(e) = d.unmap_single(a, 64, DmaDirection::ToDevice) {
                        err = Some(e);
                    }
                }
                Err(e) => err = Some(e),
            }
        });
        if let Some(e) = err {
            return Err(fail(e));
        }
        rows.push(BenchRow { name, ns });
    }
    Ok(rows)
}

pub fn dmabench(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let rows = bench()?;
    let memcpy = rows.first().map_or(1, |r| r.ns.max(1));
    let direct = rows
        .iter()
        .find(|r| r.name.starts_with("direct"))
        .map_or(1, |r| r.ns.max(1));
    kprintln!("dmabench: 4 KiB, median of 31 rounds x 64 ops, TSC-timed");
    kprintln!(
        "{:<38} {:>8} {:>9} {:>9}",
        "operation",
        "ns/op",
        "x memcpy",
        "x direct"
    );
    for r in &rows {
        kprintln!(
            "{:<38} {:>8} {:>6}.{:02} {:>6}.{:02}",
            r.name,
            r.ns,
            r.ns / memcpy,
            (r.ns % memcpy) * 100 / memcpy,
            r.ns / direct,
            (r.ns % direct) * 100 / direct
        );
    }
    Ok(())
}
