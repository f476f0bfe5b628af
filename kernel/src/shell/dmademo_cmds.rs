//! `dmademo`: the mapping API's three kinds of memory, watched with edu.
//!
//! * `coherent`: memory CPU and device share at any time, no sync calls.
//! * `streaming [--nosync]`: a buffer handed to the device and back; reading it
//!   without `sync_for_cpu` shows what a missing sync costs when the mapping bounced.
//! * `sg [--pages | --maxseg N]`: a scatter list of pieces in different pages, mapped into DMA
//!   segments (split at the device's segment limits, merged where contiguous) and
//!   gathered by edu's dmaengine channel into its buffer.
//! * `keep <len>` / `release`: a coherent buffer and a streaming mapping for edu
//!   held until released, so `iommu domains`, `dma` and `./run.sh report` have
//!   live mappings to show (at an idle prompt there are none).

use alloc::format;
use alloc::vec::Vec;

use dma::{Coherent, DmaBuf, DmaDirection, DmaStream, FromDevice, SgTable, ToDevice, Via};
use dmaengine::{DmaCaps, SlaveConfig};
use hal::{DmaAddr, PhysMemory};

use super::{parse_u64, CmdError, CmdResult, Command};
use crate::drivers::edu::{self, Edu, EduDir, EDU_BUFFER};
use crate::kprintln;
use crate::{dma as kdma, dmaengine as kde};

fn fail(msg: impl core::fmt::Display) -> CmdError {
    CmdError::Failed(format!("dmademo: {msg}"))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) | 1)
        .collect()
}

fn via(dev: &dma::DmaDevice, addr: DmaAddr) -> &'static str {
    match dev
        .mappings()
        .iter()
        .find(|m| m.addr == addr)
        .map(|m| m.via)
    {
        Some(Via::Direct) => "direct",
        Some(Via::Bounce) => "swiotlb bounce",
        Some(Via::Iommu) => "IOMMU",
        None => "?",
    }
}

/// Puts `data` into edu's buffer (offset 0) with an ordinary streaming mapping.
fn load_device(e: &Edu, data: &[u8]) -> Result<(), CmdError> {
    let mut b =
        DmaBuf::alloc_below(&kdma::PLATFORM, data.len(), dma::dma_bit_mask(28)).map_err(fail)?;
    b.write(0, data);
    let s = DmaStream::<ToDevice>::map(&e.dma, b).map_err(|x| fail(x.error))?;
    e.transfer(EduDir::ToDevice, s.dma_addr(), data.len())
        .map_err(fail)?;
    Ok(())
}

/// Reads `len` bytes of edu's buffer back.
fn read_device(e: &Edu, len: usize) -> Result<Vec<u8>, CmdError> {
    let b = DmaBuf::alloc_below(&kdma::PLATFORM, len, dma::dma_bit_mask(28)).map_err(fail)?;
    let s = DmaStream::<FromDevice>::map(&e.dma, b).map_err(|x| fail(x.error))?;
    e.transfer(EduDir::FromDevice, s.dma_addr(), len)
        .map_err(fail)?;
    Ok(s.unmap().to_vec())
}

fn matching(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

fn coherent(e: &Edu) -> CmdResult {
    let len = 2048;
    let want = pattern(len, 0x31);
    let c = e.dma.alloc_coherent(len).map_err(fail)?.into_device();
    kprintln!(
        "coherent: {len} bytes at phys {:#x}, device address {:#x} (below the 28-bit coherent mask or an IOVA)",
        c.phys().as_u64(),
        c.dma_addr().as_u64()
    );
    load_device(e, &want)?;
    e.transfer(EduDir::FromDevice, c.dma_addr(), len)
        .map_err(fail)?;
    let mut got = alloc::vec![0u8; len];
    c.read_bytes(0, &mut got);
    kprintln!(
        "  device wrote, CPU read at once: {} of {len} bytes are the device's (no sync call)",
        matching(&got, &want)
    );
    let back = pattern(len, 0x77);
    c.write_bytes(0, &back);
    e.transfer(EduDir::ToDevice, c.dma_addr(), len)
        .map_err(fail)?;
    let seen = read_device(e, len)?;
    kprintln!(
        "  CPU wrote, device read at once: {} of {len} bytes are the CPU's (no sync call)",
        matching(&seen, &back)
    );
    kprintln!(
        "  the price: the memory must lie where the device reaches it, for as long as it lives"
    );
    if matching(&got, &want) == len && matching(&seen, &back) == len {
        Ok(())
    } else {
        Err(fail("coherent memory did not match"))
    }
}

fn streaming(e: &Edu, nosync: bool) -> CmdResult {
    let len = 2048;
    let want = pattern(len, 0x45);
    load_device(e, &want)?;
    // A buffer above edu's reach, as a driver gets for data from anywhere.
    let buf = DmaBuf::alloc(&kdma::HIGH, len).map_err(fail)?;
    let pa = buf.phys();
    let mut s = DmaStream::<FromDevice>::map(&e.dma, buf).map_err(|x| fail(x.error))?;
    let bus = s.dma_addr();
    kprintln!(
        "streaming: {len}-byte buffer at phys {:#x}, mapped FROM_DEVICE: device address {:#x} ({})",
        pa.as_u64(),
        bus.as_u64(),
        via(&e.dma, bus)
    );
    e.transfer(EduDir::FromDevice, bus, len).map_err(fail)?;
    let mut raw = alloc::vec![0u8; len];
    crate::mm::direct::direct().read(pa, &mut raw);
    let before = matching(&raw, &want);
    kprintln!(
        "  without sync_for_cpu the CPU's buffer holds {before} of {len} bytes of the device's data"
    );
    if before < len {
        kprintln!("  (the device wrote into the bounce slot; only the sync copies it back)");
    } else {
        kprintln!("  (no bounce: x86 caches snoop DMA, so the missing sync goes unnoticed here)");
    }
    if nosync {
        kprintln!("  --nosync: stopping here; the driver would now use stale data");
        return Ok(());
    }
    let after = matching(&s.sync_for_cpu().to_vec(), &want);
    kprintln!("  after sync_for_cpu: {after} of {len} bytes");
    if after == len {
        Ok(())
    } else {
        Err(fail("streaming data did not match after sync"))
    }
}

fn sg(e: &Edu, maxseg: Option<usize>, pages: bool) -> CmdResult {
    // Default: three pieces in different pages, two low (one at an odd offset), one
    // above edu's reach. `--pages`: two pieces that meet at a page boundary (the
    // first ends a page, the second starts one), so an IOMMU can join them.
    let layout: &[(usize, usize, bool)] = if pages {
        &[(2048, 2048, false), (0, 2000, true)]
    } else {
        &[(0, 1200, false), (0x300, 700, false), (0, 1500, true)]
    };
    let total: usize = layout.iter().map(|l| l.1).sum();
    let mut bufs = Vec::new();
    let mut table = SgTable::new();
    let mut want = Vec::new();
    for (i, &(off, n, high)) in layout.iter().enumerate() {
        let platform: &'static dyn dma::DmaPlatform =
            if high { &kdma::HIGH } else { &kdma::PLATFORM };
        let mut b = if !high {
            DmaBuf::alloc_below(platform, off + n, dma::dma_bit_mask(28)).map_err(fail)?
        } else {
            DmaBuf::alloc(platform, off + n).map_err(fail)?
        };
        let p = pattern(n, 0x10 * i as u8 + 3);
        b.write(off, &p);
        want.extend_from_slice(&p);
        table.push(hal::PhysAddr::new(b.phys().as_u64() + off as u64), n);
        bufs.push(b);
    }
    let old = e.dma.params().max_segment_size;
    if let Some(m) = maxseg {
        e.dma.set_max_segment_size(m);
    }
    let mapped = e.dma.map_sg(table, DmaDirection::ToDevice);
    if maxseg.is_some() {
        e.dma.set_max_segment_size(old);
    }
    let mapped = mapped.map_err(fail)?;
    let p = e.dma.params();
    kprintln!(
        "sg: {} entries, {total} bytes; device limits: max segment {} bytes, boundary {:#x}",
        mapped.table().entries().len(),
        maxseg.unwrap_or(p.max_segment_size),
        p.segment_boundary_mask
    );
    for (i, en) in mapped.table().entries().iter().enumerate() {
        kprintln!("  entry {i}: phys {:#x} len {}", en.phys.as_u64(), en.len);
    }
    kprintln!("  mapped into {} DMA segment(s):", mapped.segments().len());
    for (i, s) in mapped.segments().iter().enumerate() {
        kprintln!("  segment {i}: bus {:#x} len {}", s.addr.as_u64(), s.len);
    }
    // Gather with edu's dmaengine channel: slave sg into the device buffer.
    // (Look the device up first: the filter runs under the registry's lock.)
    let want_desc = format!("edu on {}", e.bdf);
    let edu_dev = (0..16)
        .find(|&d| kde::dev_info(d).is_some_and(|i| i.desc.starts_with(&want_desc)))
        .ok_or_else(|| fail("edu has no dmaengine channel"))?;
    let chan = kde::request("dmademo", DmaCaps::SLAVE, |c| c.dev == edu_dev).map_err(fail)?;
    let segs: Vec<(DmaAddr, usize)> = mapped.segments().iter().map(|s| (s.addr, s.len)).collect();
    let cfg = SlaveConfig {
        direction: dmaengine::TransferDirection::MemToDev,
        src_addr: DmaAddr::new(0),
        dst_addr: DmaAddr::new(EDU_BUFFER),
        src_addr_width: 4,
        dst_addr_width: 4,
        src_maxburst: 1,
        dst_maxburst: 1,
    };
    let r = kde::with(|en| {
        en.slave_config(chan, cfg)?;
        let d = en.prep_slave_sg(chan, &segs, dmaengine::TransferDirection::MemToDev)?;
        let c = en.submit(d)?;
        en.issue_pending(chan)?;
        Ok::<_, dmaengine::EngineError>(c)
    })
    .and_then(|c| kde::wait(chan, c, 5000));
    let _ = kde::release(chan);
    let st = r.map_err(fail)?;
    drop(mapped);
    let got = read_device(e, total)?;
    kprintln!(
        "  gathered by {chan} (prep_slave_sg, {:?}): device buffer holds {} of {total} bytes in order",
        st.status,
        matching(&got, &want)
    );
    if got == want {
        Ok(())
    } else {
        Err(fail("gathered data differs"))
    }
}

/// Mappings `dmademo keep` holds until `dmademo release`.
struct Kept {
    coherent: Coherent,
    stream: DmaStream<ToDevice>,
}

static KEPT: spin::Mutex<Option<Kept>> = spin::Mutex::new(None);

fn keep(e: &Edu, len: usize) -> CmdResult {
    let mut kept = KEPT.lock();
    if kept.is_some() {
        return Err(fail("already holding mappings ('dmademo release' first)"));
    }
    let coherent = e.dma.alloc_coherent(len).map_err(fail)?.into_device();
    // A buffer above edu's reach: translated by the IOMMU, or bounced without one.
    let mut buf = DmaBuf::alloc(&kdma::HIGH, len).map_err(fail)?;
    let pa = buf.phys();
    buf.write(0, &pattern(len, 0x5a));
    let stream = DmaStream::<ToDevice>::map(&e.dma, buf).map_err(|x| fail(x.error))?;
    kprintln!(
        "dmademo: holding 2 mapping(s) for {} until 'dmademo release':",
        e.dma.name()
    );
    kprintln!(
        "  coherent  {len} bytes: device address {:#x}",
        coherent.dma_addr().as_u64()
    );
    kprintln!(
        "  streaming {len} bytes to device: phys {:#x}, device address {:#x} ({})",
        pa.as_u64(),
        stream.dma_addr().as_u64(),
        via(&e.dma, stream.dma_addr())
    );
    *kept = Some(Kept { coherent, stream });
    Ok(())
}

fn release() -> CmdResult {
    let k = KEPT
        .lock()
        .take()
        .ok_or_else(|| fail("nothing held ('dmademo keep <len>' first)"))?;
    let name = alloc::string::String::from(k.coherent.device().name());
    drop(k.stream);
    drop(k.coherent);
    kprintln!("dmademo: released 2 mapping(s) of {name}");
    Ok(())
}

/// `dmademo coherent | streaming [--nosync] | sg [--pages | --maxseg N] | keep <len> | release`.
pub fn dmademo(cmd: &Command, args: &[&str]) -> CmdResult {
    let run = |f: &dyn Fn(&Edu) -> CmdResult| {
        edu::with_edu(f)
            .ok_or_else(|| fail("no edu device bound (the default profiles have one)"))?
    };
    match args {
        ["coherent"] => run(&coherent),
        ["streaming"] => run(&|e| streaming(e, false)),
        ["streaming", "--nosync"] => run(&|e| streaming(e, true)),
        ["sg"] => run(&|e| sg(e, None, false)),
        ["sg", "--pages"] => run(&|e| sg(e, None, true)),
        ["sg", "--maxseg", n] => {
            let m = parse_u64(n)
                .and_then(|v| usize::try_from(v).ok())
                .filter(|v| (64..=65536).contains(v))
                .ok_or_else(|| fail(format!("--maxseg '{n}' must be 64..=65536")))?;
            run(&|e| sg(e, Some(m), false))
        }
        ["keep", n] => {
            let len = parse_u64(n)
                .and_then(|v| usize::try_from(v).ok())
                .filter(|v| (1..=1 << 20).contains(v))
                .ok_or_else(|| fail(format!("length '{n}' must be 1..=1048576")))?;
            run(&|e| keep(e, len))
        }
        ["release"] => release(),
        _ => Err(cmd.usage_error()),
    }
}
