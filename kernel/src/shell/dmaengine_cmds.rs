//! Shell views of dmaengine: the channel list (inside `dma`), `dmatest`, and
//! `dmaengine demo`, which walks the client steps one at a time.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use dmaengine::{ChanId, DmaCaps, SlaveConfig};

use super::{parse_u64, CmdError, CmdResult, Command};
use crate::arch::tsc;
use crate::console::Out;
use crate::dmaengine::{self as kde, dmatest};
use crate::kprintln;

fn caps_names(c: DmaCaps) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (DmaCaps::MEMCPY, "MEMCPY"),
        (DmaCaps::SLAVE, "SLAVE"),
        (DmaCaps::CYCLIC, "CYCLIC"),
        (DmaCaps::PRIVATE, "PRIVATE"),
    ] {
        if c.contains(bit) {
            v.push(name);
        }
    }
    v.join("|")
}

/// The dmaengine part of `dma`: devices and channels, like /sys/class/dma.
pub fn print_channels() {
    let chans = kde::with(|e| {
        let mut v = Vec::new();
        for dev in 0..e.device_count() {
            let (name, caps) = e
                .provider(dev)
                .map(|p| (String::from(p.name()), p.caps()))
                .unwrap_or((String::new(), DmaCaps::empty()));
            let infos: Vec<_> = e
                .channels()
                .into_iter()
                .filter(|(c, _)| c.dev == dev)
                .filter_map(|(c, _)| e.chan_info(c).ok())
                .collect();
            v.push((dev, name, caps, infos));
        }
        v
    });
    if chans.is_empty() {
        kprintln!("dmaengine: no DMA controllers registered");
        return;
    }
    kprintln!("dmaengine: {} controller(s)", chans.len());
    for (dev, name, caps, infos) in chans {
        let (desc, irqs) = kde::dev_info(dev)
            .map(|d| (d.desc.clone(), d.irqs.load(Ordering::Relaxed)))
            .unwrap_or_default();
        kprintln!(
            "dma{dev}: {name} [{}] {irqs} irq(s): {desc}",
            caps_names(caps)
        );
        if desc.contains("(simulated)") {
            kprintln!(
                "  model: clocked by the timer, {} KiB per channel per step, {} step(s) per tick; {} error(s) raised",
                crate::drivers::lpss::sim::STEP_BYTES / 1024,
                crate::drivers::lpss::sim::STEPS_PER_TICK,
                crate::drivers::lpss::sim::model_errors()
            );
        }
        for i in infos {
            let user = if i.in_use {
                format!("in use by {}", kde::client_of(i.id).unwrap_or("?"))
            } else {
                String::from("free")
            };
            kprintln!(
                "  {}: {user}, {} transfer(s), {} bytes, {} queued",
                i.id,
                i.completed,
                i.bytes_transferred,
                i.queued
            );
        }
    }
}

fn parse_chan(s: &str) -> Option<ChanId> {
    let rest = s.strip_prefix("dma")?;
    let (d, c) = rest.split_once("chan")?;
    Some(ChanId {
        dev: d.parse().ok()?,
        chan: c.parse().ok()?,
    })
}

/// `dmatest [channel|all] [iterations] [size] [--corrupt]`
pub fn dmatest(cmd: &Command, args: &[&str]) -> CmdResult {
    let mut p = dmatest::Params {
        iterations: 10,
        size: 16384,
        corrupt: false,
    };
    let mut chans: Option<Vec<ChanId>> = None;
    let mut nums = Vec::new();
    for &a in args {
        match a {
            "--corrupt" => p.corrupt = true,
            "all" => chans = None,
            a if a.starts_with("dma") => {
                let c = parse_chan(a).ok_or_else(|| {
                    CmdError::Failed(format!("dmatest: '{a}' is not a channel name (dmaNchanM)"))
                })?;
                chans = Some(alloc::vec![c]);
            }
            a => nums.push(parse_u64(a).ok_or_else(|| cmd.usage_error())?),
        }
    }
    match nums[..] {
        [] => {}
        [i] => p.iterations = i as u32,
        [i, s] => {
            p.iterations = i as u32;
            p.size = s as usize;
        }
        _ => return Err(cmd.usage_error()),
    }
    if p.iterations == 0 || p.iterations > 10_000 {
        return Err(CmdError::Failed(
            "dmatest: iterations must be 1..=10000".into(),
        ));
    }
    if p.size == 0 || p.size > 1 << 20 {
        return Err(CmdError::Failed(
            "dmatest: size must be 1..=1M bytes".into(),
        ));
    }
    let chans = chans.unwrap_or_else(dmatest::default_channels);
    if chans.is_empty() {
        return Err(CmdError::Failed(
            "dmatest: no channel to test (no MEMCPY-capable DMA controller, no floppy); try --profile idma64-sim".into(),
        ));
    }
    let mut failed = false;
    for c in chans {
        match dmatest::run_channel(&mut Out, c, &p) {
            Ok(s) => {
                failed |= s.failures > 0;
                kprintln!("{}", s.line());
            }
            Err(e) => {
                failed = true;
                kprintln!("dmatest: {e}");
            }
        }
    }
    if failed {
        Err(CmdError::Failed("dmatest: some tests failed".into()))
    } else {
        Ok(())
    }
}

static PERIODS: AtomicU32 = AtomicU32::new(0);

/// `dmaengine demo [cyclic]`: the client steps on a free slave-capable channel (the
/// simulated iDMA64 when present), printed as they happen.
pub fn dmaengine_cmd(cmd: &Command, args: &[&str]) -> CmdResult {
    let cyclic = match args {
        ["demo"] => false,
        ["demo", "cyclic"] => true,
        _ => return Err(cmd.usage_error()),
    };
    let mask = if cyclic {
        DmaCaps::SLAVE | DmaCaps::CYCLIC
    } else {
        DmaCaps::MEMCPY
    };
    kprintln!("1. request: dma_request_channel(mask {})", caps_names(mask));
    let chan = kde::request("dmaengine-demo", mask, |_| true)
        .map_err(|e| CmdError::Failed(format!("no channel: {e} (try --profile idma64-sim)")))?;
    let r = demo_steps(chan, cyclic);
    let _ = kde::release(chan);
    kprintln!("7. release: {chan} is free again");
    r
}

fn demo_steps(chan: ChanId, cyclic: bool) -> CmdResult {
    let fail = |e: dmaengine::EngineError| CmdError::Failed(format!("{chan}: {e}"));
    let info = kde::dev_info(chan.dev).ok_or_else(|| CmdError::Failed("no device".into()))?;
    let dev = info
        .dma()
        .ok_or_else(|| CmdError::Failed(format!("{chan} has no device to map for")))?;
    kprintln!("   got {chan} ({})", info.desc);
    let platform = &crate::dma::PLATFORM;
    let len = 8192usize;
    let mut src =
        dma::stream::DmaBuf::alloc(platform, len).map_err(|e| CmdError::Failed(format!("{e}")))?;
    let pattern: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    src.write(0, &pattern);
    let src = dma::stream::DmaStream::<dma::stream::ToDevice>::map(&dev, src)
        .map_err(|e| CmdError::Failed(format!("{}", e.error)))?;
    let dst =
        dma::stream::DmaBuf::alloc(platform, len).map_err(|e| CmdError::Failed(format!("{e}")))?;
    let dst = dma::stream::DmaStream::<dma::stream::FromDevice>::map(&dev, dst)
        .map_err(|e| CmdError::Failed(format!("{}", e.error)))?;
    if cyclic {
        // A ring of 4 periods streamed to a device register (the simulated FIFO
        // address is not a FIFO: the engine writes every byte to it).
        let cfg = SlaveConfig {
            direction: dmaengine::TransferDirection::MemToDev,
            src_addr: hal::DmaAddr::new(0),
            dst_addr: dst.dma_addr(),
            src_addr_width: 4,
            dst_addr_width: 4,
            src_maxburst: 8,
            dst_maxburst: 8,
        };
        kprintln!(
            "2. config: dmaengine_slave_config(MEM_TO_DEV, dst {:#x}, width 4, burst 8)",
            cfg.dst_addr.as_u64()
        );
        kde::with(|e| e.slave_config(chan, cfg)).map_err(fail)?;
        PERIODS.store(0, Ordering::Release);
        let cookie = kde::with(|e| {
            let mut d = e.prep_dma_cyclic(
                chan,
                src.dma_addr(),
                len,
                len / 4,
                dmaengine::TransferDirection::MemToDev,
            )?;
            kprintln!(
                "3. prep: dmaengine_prep_dma_cyclic({} bytes, period {}) -> descriptor",
                len,
                len / 4
            );
            d.set_callback(|_, _| {
                PERIODS.fetch_add(1, Ordering::AcqRel);
            });
            let c = e.submit(d)?;
            kprintln!(
                "4. submit: dmaengine_submit -> cookie {} (nothing runs yet)",
                c.0
            );
            e.issue_pending(chan)?;
            kprintln!("5. issue_pending: the engine starts");
            Ok(c)
        })
        .map_err(fail)?;
        let t0 = tsc::uptime_ns();
        while PERIODS.load(Ordering::Acquire) < 6 && tsc::uptime_ns() - t0 < 2_000_000_000 {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
        let st = kde::with(|e| e.tx_status(chan, cookie)).map_err(fail)?;
        kprintln!(
            "6. callbacks: {} period callbacks from interrupt context; status {:?}, residue {}",
            PERIODS.load(Ordering::Acquire),
            st.status,
            st.residue
        );
        kde::with(|e| e.terminate_all(chan)).map_err(fail)?;
        kprintln!("   terminate_all: the ring stops");
        return Ok(());
    }
    kprintln!("2. config: (memcpy needs no slave config)");
    let done = alloc::sync::Arc::new(AtomicU32::new(0));
    let flag = done.clone();
    let cookie = kde::with(|e| {
        let mut d = e.prep_memcpy(chan, dst.dma_addr(), src.dma_addr(), len)?;
        kprintln!(
            "3. prep: dmaengine_prep_dma_memcpy(dst {:#x}, src {:#x}, {len}) -> descriptor",
            dst.dma_addr().as_u64(),
            src.dma_addr().as_u64()
        );
        d.set_callback(move |c, r| {
            flag.store(
                c.0 as u32
                    | if r == dmaengine::TxResult::NoError {
                        0
                    } else {
                        1 << 31
                    },
                Ordering::Release,
            );
        });
        let c = e.submit(d)?;
        let st = e.tx_status(chan, c)?;
        kprintln!(
            "4. submit: cookie {} -> status {:?}, residue {} (queued, not running)",
            c.0,
            st.status,
            st.residue
        );
        e.issue_pending(chan)?;
        kprintln!("5. issue_pending: the engine starts");
        Ok(c)
    })
    .map_err(fail)?;
    let st = kde::wait(chan, cookie, 3000).map_err(fail)?;
    kprintln!(
        "6. callback: ran in interrupt context for cookie {}; tx_status {:?}, residue {}",
        done.load(Ordering::Acquire) & 0x7fff_ffff,
        st.status,
        st.residue
    );
    drop(src);
    let got = dst.unmap().to_vec();
    let same = got == pattern;
    kprintln!(
        "   verify: {} bytes {}",
        len,
        if same { "match" } else { "DIFFER" }
    );
    if same {
        Ok(())
    } else {
        Err(CmdError::Failed("the copy differs".into()))
    }
}
