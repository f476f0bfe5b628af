//! dmaengine in the kernel: the simulated iDMA64 end to end (interrupts, residue,
//! terminate, cyclic, misuse), the ISA provider's rules, and dmatest on every kind of
//! channel, including the failure it must report.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

use dma::stream::{DmaBuf, DmaStream, FromDevice, ToDevice};
use dmaengine::{ChanId, DmaCaps, DmaStatus, EngineError, SlaveConfig};
use hal::DmaAddr;

use super::{KTest, TestResult};
use crate::dmaengine::{self as kde, dmatest};
use crate::kassert;

mod lli;
mod uart;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "dmaengine::sim_memcpy_by_interrupt_with_live_residue",
        run: sim_memcpy_residue,
        profiles: &["idma64-sim", "idma64-sim-intx"],
        manual: false,
    },
    KTest {
        name: "dmaengine::sim_terminate_mid_transfer_stops_the_engine",
        run: sim_terminate,
        profiles: &["idma64-sim", "idma64-sim-intx"],
        manual: false,
    },
    KTest {
        name: "dmaengine::sim_pause_freezes_the_residue_and_resume_finishes",
        run: sim_pause_resume,
        profiles: &["idma64-sim", "idma64-sim-intx"],
        manual: false,
    },
    KTest {
        name: "dmaengine::sim_cyclic_periods_until_terminated",
        run: sim_cyclic,
        profiles: &["idma64-sim", "idma64-sim-intx"],
        manual: false,
    },
    KTest {
        name: "dmaengine::sim_interrupts_come_on_the_prt_routed_intx_line",
        run: sim_intx_line,
        profiles: &["idma64-sim-intx"],
        manual: false,
    },
    KTest {
        name: "dmaengine::misuse_is_an_error_value",
        run: misuse,
        profiles: &["idma64-sim"],
        manual: false,
    },
    KTest {
        name: "dmaengine::dmatest_passes_and_catches_corruption_on_sim_and_edu",
        run: dmatest_sim_edu,
        profiles: &["idma64-sim"],
        manual: false,
    },
    KTest {
        name: "dmaengine::isa_provider_rules",
        run: isa_rules,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "dmaengine::dmatest_on_isa_channel_2_via_the_floppy",
        run: dmatest_floppy,
        profiles: &["floppy"],
        manual: false,
    },
    KTest {
        name: "dmaengine::idma64_llis_share_pool_pages_and_a_leak_is_reported",
        run: lli::llis_share_pool_pages,
        profiles: &["idma64-sim"],
        manual: false,
    },
    KTest {
        name: "dmaengine::lpss_uart_slave_tx_rx_loopback_by_handshake",
        run: uart::uart_slave_loopback,
        profiles: &["idma64-sim-uart"],
        manual: false,
    },
    KTest {
        name: "dmaengine::lpss_uart_cyclic_rx_periods_by_handshake",
        run: uart::uart_cyclic_rx,
        profiles: &["idma64-sim-uart"],
        manual: false,
    },
];

/// The INTx-only simulated function: its pin is routed by q35's `_PRT` (slot
/// 0x15 INTA), the driver took that shared line, and the memcpy and cyclic tests
/// before this one were served by it: the line's vector counted interrupts the
/// handler claimed.
fn sim_intx_line() -> TestResult {
    let bdf = lpss::sim::SIM_BDF;
    let route = crate::pci::intx::route(bdf).map_err(|e| alloc::format!("{bdf}: {e}"))?;
    let vector = crate::arch::apic::IOAPIC_VECTOR_BASE + route.gsi as u8;
    kassert!(route.level, "{bdf}: INTx route is not level-triggered");
    let (_, _, handlers, _) = crate::arch::apic::shared_gsi_info(route.gsi)
        .ok_or_else(|| alloc::format!("GSI {} is not a shared line", route.gsi))?;
    kassert!(handlers >= 1, "no handler on GSI {}", route.gsi);
    let before = crate::arch::idt::irq_count(vector);
    // One more transfer, by interrupt: its completion must arrive on the line.
    let chan = sim_chan(DmaCaps::MEMCPY)?;
    let len = 64 * 1024;
    let b = bufs(chan, len)?;
    let done = Arc::new(AtomicU32::new(0));
    let d2 = done.clone();
    kde::with(|e| {
        let mut d = e.prep_memcpy(chan, b.dst.dma_addr(), b.src.dma_addr(), len)?;
        d.set_callback(move |_, _| {
            d2.fetch_add(1, Ordering::AcqRel);
        });
        e.submit(d)?;
        e.issue_pending(chan)
    })
    .map_err(|e| alloc::format!("{e}"))?;
    let came = super::wait_until(super::EVENT_BOUND_MS, || done.load(Ordering::Acquire) > 0);
    let after = crate::arch::idt::irq_count(vector);
    let _ = kde::release(chan);
    kassert!(came, "the memcpy's completion callback never ran");
    kassert!(
        after > before,
        "vector {vector:#x} (GSI {}) counted no interrupt for the transfer",
        route.gsi
    );
    let dst = b.dst.unmap().to_vec();
    kassert!(
        dst == b.pattern,
        "the copy through the INTx-served engine differs"
    );
    Ok(())
}

fn sim_chan(mask: DmaCaps) -> Result<ChanId, alloc::string::String> {
    let dev = (0..8)
        .find(|&d| kde::dev_info(d).is_some_and(|i| i.desc.contains("(simulated)")))
        .ok_or("no simulated iDMA64 registered")?;
    kde::request("ktest", mask, |c| c.dev == dev).map_err(|e| alloc::format!("request: {e}"))
}

struct Bufs {
    src: DmaStream<ToDevice>,
    dst: DmaStream<FromDevice>,
    pattern: alloc::vec::Vec<u8>,
}

fn bufs(chan: ChanId, len: usize) -> Result<Bufs, alloc::string::String> {
    let dev = kde::dev_info(chan.dev)
        .and_then(|i| i.dma())
        .ok_or("no DMA device")?;
    let p = &crate::dma::PLATFORM;
    let pattern: alloc::vec::Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8 | 1).collect();
    let mut s = DmaBuf::alloc(p, len).map_err(|e| alloc::format!("{e}"))?;
    s.write(0, &pattern);
    let src = DmaStream::<ToDevice>::map(&dev, s).map_err(|e| alloc::format!("{}", e.error))?;
    let d = DmaBuf::alloc(p, len).map_err(|e| alloc::format!("{e}"))?;
    let dst = DmaStream::<FromDevice>::map(&dev, d).map_err(|e| alloc::format!("{}", e.error))?;
    Ok(Bufs { src, dst, pattern })
}

fn sim_memcpy_residue() -> TestResult {
    let chan = sim_chan(DmaCaps::MEMCPY)?;
    // 1 MiB: the model moves 64 KiB per channel per 10 ms tick, so ~16 ticks.
    let len = 1 << 20;
    let b = bufs(chan, len)?;
    let irqs0 = kde::dev_info(chan.dev).map_or(0, |i| i.irqs.load(Ordering::Relaxed));
    let hit = Arc::new(AtomicU32::new(0));
    let h = hit.clone();
    let cookie = kde::with(|e| {
        let mut d = e.prep_memcpy(chan, b.dst.dma_addr(), b.src.dma_addr(), len)?;
        kassert_ok(d.len() == len)?;
        d.set_callback(move |_, _| {
            h.fetch_add(1, Ordering::AcqRel);
        });
        let c = e.submit(d)?;
        let st = e.tx_status(chan, c)?;
        kassert_ok(st.status == DmaStatus::InProgress && st.residue == len)?;
        e.issue_pending(chan)?;
        Ok::<_, EngineError>(c)
    })
    .map_err(|e| alloc::format!("{e}"))?;
    // Watch the residue go down while the engine runs.
    let mut seen_mid = false;
    for _ in 0..200 {
        let st = kde::with(|e| e.tx_status(chan, cookie)).map_err(|e| alloc::format!("{e}"))?;
        if st.status == DmaStatus::Complete {
            break;
        }
        if st.residue > 0 && st.residue < len {
            seen_mid = true;
        }
        x86_64::instructions::interrupts::enable_and_hlt();
    }
    let st = kde::wait(chan, cookie, 2000).map_err(|e| alloc::format!("{e}"))?;
    kassert!(st.status == DmaStatus::Complete, "status {:?}", st.status);
    kassert!(
        seen_mid,
        "never saw a residue between 0 and {len} while running"
    );
    kassert!(
        hit.load(Ordering::Acquire) == 1,
        "callback ran {} times",
        hit.load(Ordering::Acquire)
    );
    let irqs = kde::dev_info(chan.dev).map_or(0, |i| i.irqs.load(Ordering::Relaxed)) - irqs0;
    kassert!(irqs >= 1, "completion without an interrupt");
    let got = b.dst.unmap().to_vec();
    kassert!(got == b.pattern, "destination differs from the source");
    kde::release(chan).map_err(|e| alloc::format!("{e}"))?;
    Ok(())
}

fn kassert_ok(c: bool) -> Result<(), EngineError> {
    if c {
        Ok(())
    } else {
        Err(EngineError::Unsupported)
    }
}

fn sim_terminate() -> TestResult {
    let chan = sim_chan(DmaCaps::MEMCPY)?;
    let len = 4 << 20;
    let b = bufs(chan, len)?;
    let cookie = kde::with(|e| {
        let d = e.prep_memcpy(chan, b.dst.dma_addr(), b.src.dma_addr(), len)?;
        let c = e.submit(d)?;
        e.issue_pending(chan)?;
        Ok::<_, EngineError>(c)
    })
    .map_err(|e| alloc::format!("{e}"))?;
    // Wait for the engine to have moved some bytes (the model moves 64 KiB a
    // tick, so 4 MiB is far from done when the first progress shows).
    let progress = || kde::with(|e| e.tx_status(chan, cookie)).is_ok_and(|st| st.residue < len);
    super::wait_until(super::EVENT_BOUND_MS, progress);
    let mid = kde::with(|e| e.tx_status(chan, cookie)).map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        mid.status == DmaStatus::InProgress && mid.residue > 0 && mid.residue < len,
        "mid-transfer: {:?}, residue {}",
        mid.status,
        mid.residue
    );
    kde::with(|e| e.terminate_all(chan)).map_err(|e| alloc::format!("{e}"))?;
    let dst = b.dst.unmap();
    let snap = dst.to_vec();
    let copied = snap
        .iter()
        .zip(&b.pattern)
        .take_while(|(a, b)| a == b)
        .count();
    kassert!(
        copied > 0 && copied < len,
        "{copied} bytes copied before terminate"
    );
    kassert!(
        snap[copied..].iter().all(|&x| x == 0),
        "bytes beyond the copied prefix were written"
    );
    // Nothing may be written after terminate: read the memory again later.
    crate::arch::apic::sleep_ms(50);
    kassert!(dst.to_vec() == snap, "the engine wrote after terminate_all");
    kde::release(chan).map_err(|e| alloc::format!("{e}"))?;
    Ok(())
}

fn sim_pause_resume() -> TestResult {
    let chan = sim_chan(DmaCaps::MEMCPY)?;
    let len = 2 << 20;
    let b = bufs(chan, len)?;
    let err = |e: EngineError| alloc::format!("{e}");
    let cookie = kde::with(|e| {
        let d = e.prep_memcpy(chan, b.dst.dma_addr(), b.src.dma_addr(), len)?;
        let c = e.submit(d)?;
        e.issue_pending(chan)?;
        Ok::<_, EngineError>(c)
    })
    .map_err(err)?;
    super::wait_until(super::EVENT_BOUND_MS, || {
        kde::with(|e| e.tx_status(chan, cookie)).is_ok_and(|st| st.residue < len)
    });
    kde::with(|e| e.pause(chan)).map_err(err)?;
    let p1 = kde::with(|e| e.tx_status(chan, cookie)).map_err(err)?;
    kassert!(
        p1.status == DmaStatus::Paused && p1.residue > 0 && p1.residue < len,
        "paused: {:?}, residue {}",
        p1.status,
        p1.residue
    );
    crate::arch::apic::sleep_ms(60);
    let p2 = kde::with(|e| e.tx_status(chan, cookie)).map_err(err)?;
    kassert!(
        p2.residue == p1.residue,
        "the engine moved while paused: residue {} then {}",
        p1.residue,
        p2.residue
    );
    kde::with(|e| e.resume(chan)).map_err(err)?;
    let st = kde::wait(chan, cookie, 3000).map_err(err)?;
    kassert!(
        st.status == DmaStatus::Complete,
        "after resume: {:?}",
        st.status
    );
    kassert!(
        b.dst.unmap().to_vec() == b.pattern,
        "data differs after pause/resume"
    );
    kde::release(chan).map_err(err)?;
    Ok(())
}

fn sim_cyclic() -> TestResult {
    let chan = sim_chan(DmaCaps::CYCLIC)?;
    let b = bufs(chan, 16384)?;
    let cfg = SlaveConfig {
        direction: dmaengine::TransferDirection::MemToDev,
        src_addr: DmaAddr::new(0),
        dst_addr: b.dst.dma_addr(),
        src_addr_width: 4,
        dst_addr_width: 4,
        src_maxburst: 8,
        dst_maxburst: 8,
    };
    let periods = Arc::new(AtomicU32::new(0));
    let p2 = periods.clone();
    kde::with(|e| {
        e.slave_config(chan, cfg)?;
        let mut d = e.prep_dma_cyclic(
            chan,
            b.src.dma_addr(),
            16384,
            4096,
            dmaengine::TransferDirection::MemToDev,
        )?;
        d.set_callback(move |_, _| {
            p2.fetch_add(1, Ordering::AcqRel);
        });
        e.submit(d)?;
        e.issue_pending(chan)
    })
    .map_err(|e| alloc::format!("{e}"))?;
    // The ring goes round and round: wait for two full turns of callbacks.
    super::wait_until(super::EVENT_BOUND_MS, || {
        periods.load(Ordering::Acquire) >= 8
    });
    let n = periods.load(Ordering::Acquire);
    kassert!(
        n >= 8,
        "only {n} period callbacks in {} s",
        super::EVENT_BOUND_MS / 1000
    );
    kde::with(|e| e.terminate_all(chan)).map_err(|e| alloc::format!("{e}"))?;
    let after = periods.load(Ordering::Acquire);
    crate::arch::apic::sleep_ms(50);
    kassert!(
        periods.load(Ordering::Acquire) == after,
        "periods kept coming after terminate_all"
    );
    kde::release(chan).map_err(|e| alloc::format!("{e}"))?;
    Ok(())
}

fn misuse() -> TestResult {
    let chan = sim_chan(DmaCaps::SLAVE)?;
    let good = SlaveConfig {
        direction: dmaengine::TransferDirection::DevToMem,
        src_addr: DmaAddr::new(0x1000),
        dst_addr: DmaAddr::new(0),
        src_addr_width: 4,
        dst_addr_width: 4,
        src_maxburst: 8,
        dst_maxburst: 8,
    };
    let r = kde::with(|e| {
        let no_cfg = e.prep_slave_sg(
            chan,
            &[(DmaAddr::new(0x10_0000), 64)],
            dmaengine::TransferDirection::DevToMem,
        );
        let wide = e.slave_config(
            chan,
            SlaveConfig {
                src_addr_width: 8,
                ..good
            },
        );
        let burst = e.slave_config(
            chan,
            SlaveConfig {
                src_maxburst: 256,
                ..good
            },
        );
        let m2m = e.slave_config(
            chan,
            SlaveConfig {
                direction: dmaengine::TransferDirection::MemToMem,
                ..good
            },
        );
        (no_cfg.err(), wide.err(), burst.err(), m2m.err())
    });
    kassert!(
        matches!(r.0, Some(EngineError::NotConfigured(_))),
        "prep without config: {:?}",
        r.0
    );
    kassert!(
        r.1 == Some(EngineError::BadBusWidth(8)),
        "8-byte device width: {:?}",
        r.1
    );
    kassert!(
        r.2 == Some(EngineError::BadBurst(256)),
        "burst 256: {:?}",
        r.2
    );
    kassert!(r.3.is_some(), "MemToMem slave config accepted");
    kde::release(chan).map_err(|e| alloc::format!("{e}"))?;
    // A released channel refuses everything; releasing twice is an error, not a crash.
    let after = kde::with(|e| {
        e.prep_memcpy(chan, DmaAddr::new(0x10_0000), DmaAddr::new(0x20_0000), 64)
            .err()
    });
    kassert!(
        matches!(after, Some(EngineError::ChannelNotHeld(_))),
        "prep on a released channel: {after:?}"
    );
    kassert!(kde::release(chan).is_err(), "double release accepted");
    // A transfer to an address no memory answers: the engine raises its error
    // interrupt, the cookie ends in Error and the callback says so.
    let chan = sim_chan(DmaCaps::MEMCPY)?;
    let b = bufs(chan, 4096)?;
    let errs0 = crate::drivers::lpss::sim::model_errors();
    let outcome = Arc::new(AtomicU32::new(0));
    let o2 = outcome.clone();
    let cookie = kde::with(|e| {
        let mut d = e.prep_memcpy(chan, DmaAddr::new(1 << 40), b.src.dma_addr(), 4096)?;
        d.set_callback(move |_, r| {
            o2.store(
                if r == dmaengine::TxResult::Error {
                    2
                } else {
                    1
                },
                Ordering::Release,
            )
        });
        let c = e.submit(d)?;
        e.issue_pending(chan)?;
        Ok::<_, EngineError>(c)
    })
    .map_err(|e| alloc::format!("{e}"))?;
    let st = kde::wait(chan, cookie, 1000).map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        st.status == DmaStatus::Error,
        "bad address ended {:?}",
        st.status
    );
    kassert!(
        outcome.load(Ordering::Acquire) == 2,
        "callback did not report the error"
    );
    kassert!(
        crate::drivers::lpss::sim::model_errors() == errs0 + 1,
        "the model raised no error"
    );
    kde::release(chan).map_err(|e| alloc::format!("{e}"))?;
    drop(b);
    let nochan = kde::with(|e| {
        e.tx_status(ChanId { dev: 99, chan: 0 }, dmaengine::Cookie(1))
            .err()
    });
    kassert!(
        matches!(nochan, Some(EngineError::NoSuchDevice(99))),
        "{nochan:?}"
    );
    Ok(())
}

fn dmatest_sim_edu() -> TestResult {
    let chans = dmatest::default_channels();
    kassert!(
        chans.len() >= 3,
        "expected 2 iDMA64 + 1 edu channels, got {}",
        chans.len()
    );
    let mut out = alloc::string::String::new();
    for &c in &chans {
        let p = dmatest::Params {
            iterations: 4,
            size: 8192,
            corrupt: false,
        };
        let s = dmatest::run_channel(&mut out, c, &p).map_err(|e| alloc::format!("{e}"))?;
        let tail: alloc::vec::Vec<&str> = out.lines().rev().take(4).collect();
        kassert!(
            s.tests == 4 && s.failures == 0,
            "{}; last output: {}",
            s.line(),
            tail.join(" | ")
        );
        // The same run with one byte corrupted inside the model must fail exactly
        // once; real devices (edu) refuse the knob.
        let corrupt = dmatest::run_channel(&mut out, c, &dmatest::Params { corrupt: true, ..p });
        let simulated = kde::dev_info(c.dev).is_some_and(|i| i.desc.contains("(simulated)"));
        if simulated {
            let s = corrupt.map_err(|e| alloc::format!("{e}"))?;
            kassert!(
                s.failures == 1,
                "{c}: corruption not reported: {}",
                s.line()
            );
        } else {
            kassert!(corrupt.is_err(), "{c}: --corrupt accepted on a real device");
        }
    }
    kassert!(
        out.contains("'data error'"),
        "no result line for the corrupted run"
    );
    Ok(())
}

fn isa_rules() -> TestResult {
    let isa = crate::drivers::i8237::dmaengine::dev().ok_or("no i8237 registered")?;
    let chan = kde::request("ktest", DmaCaps::SLAVE, |c| c.dev == isa && c.chan == 3)
        .map_err(|e| alloc::format!("{e}"))?;
    let cfg = SlaveConfig {
        direction: dmaengine::TransferDirection::DevToMem,
        src_addr: DmaAddr::new(0x3F5),
        dst_addr: DmaAddr::new(0),
        src_addr_width: 1,
        dst_addr_width: 1,
        src_maxburst: 1,
        dst_maxburst: 1,
    };
    let r = kde::with(|e| {
        let wide = e
            .slave_config(
                chan,
                SlaveConfig {
                    src_addr_width: 2,
                    ..cfg
                },
            )
            .err();
        e.slave_config(chan, cfg).ok();
        let high = e
            .prep_slave_sg(
                chan,
                &[(DmaAddr::new(0x100_0000), 512)],
                dmaengine::TransferDirection::DevToMem,
            )
            .err();
        let cross = e
            .prep_slave_sg(
                chan,
                &[(DmaAddr::new(0x1_FF00), 512)],
                dmaengine::TransferDirection::DevToMem,
            )
            .err();
        let two = e
            .prep_slave_sg(
                chan,
                &[(DmaAddr::new(0x1_0000), 512), (DmaAddr::new(0x2_0000), 512)],
                dmaengine::TransferDirection::DevToMem,
            )
            .err();
        let memcpy = e
            .prep_memcpy(chan, DmaAddr::new(0x1_0000), DmaAddr::new(0x2_0000), 16)
            .err();
        (wide, high, cross, two, memcpy)
    });
    kde::release(chan).map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        r.0 == Some(EngineError::BadBusWidth(2)),
        "16-bit width on an 8-bit channel: {:?}",
        r.0
    );
    kassert!(
        matches!(r.1, Some(EngineError::BadAddress(_))),
        "above 16 MiB: {:?}",
        r.1
    );
    kassert!(
        matches!(r.2, Some(EngineError::BadAddress(_))),
        "across 64 KiB: {:?}",
        r.2
    );
    kassert!(
        r.3 == Some(EngineError::TooManySegments { max: 1, got: 2 }),
        "two segments: {:?}",
        r.3
    );
    kassert!(
        matches!(r.4, Some(EngineError::NotCapable(_))),
        "memcpy on the 8237: {:?}",
        r.4
    );
    Ok(())
}

fn dmatest_floppy() -> TestResult {
    let chan = crate::drivers::floppy::channel().ok_or("floppy holds no channel")?;
    kassert!(
        kde::client_of(chan) == Some("floppy"),
        "channel {chan} not held by the floppy"
    );
    let mut out = alloc::string::String::new();
    let s = dmatest::run_channel(
        &mut out,
        chan,
        &dmatest::Params {
            iterations: 12,
            size: 0,
            corrupt: false,
        },
    )
    .map_err(|e| alloc::format!("{e}"))?;
    kassert!(s.tests == 12 && s.failures == 0, "{} {}", s.line(), out);
    Ok(())
}
