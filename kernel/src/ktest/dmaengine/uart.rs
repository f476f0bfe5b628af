//! The LPSS UART's iDMA64 channels with hardware handshake: slave TX/RX in loopback
//! and a cyclic RX ring, on the simulated UART function (`idma64=sim-uart`).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

use dma::stream::{DmaBuf, DmaStream, FromDevice};
use dmaengine::{ChanId, DmaCaps, DmaStatus, EngineError};

use super::bufs;
use crate::dmaengine as kde;
use crate::kassert;
use crate::ktest::{wait_until, TestResult, EVENT_BOUND_MS};

/// The LPSS UART in loopback with its iDMA64's two channels: TX on channel 0, RX on 1.
fn uart_chans(
) -> Result<(crate::drivers::lpss::uart::LpssUart, ChanId, ChanId), alloc::string::String> {
    let u = crate::drivers::lpss::uart::get().ok_or("no LPSS UART function bound")?;
    let dev = u.dma_dev().ok_or("the UART's iDMA64 is not registered")?;
    u.set_loopback(true);
    let tx = kde::request("ktest", DmaCaps::SLAVE, |c| c.dev == dev && c.chan == 0)
        .map_err(|e| alloc::format!("request tx: {e}"))?;
    let rx = kde::request("ktest", DmaCaps::SLAVE, |c| c.dev == dev && c.chan == 1)
        .map_err(|e| alloc::format!("request rx: {e}"))?;
    Ok((u, tx, rx))
}

pub(super) fn uart_slave_loopback() -> TestResult {
    use dmaengine::TransferDirection::{DevToMem, MemToDev};
    let (u, tx, rx) = uart_chans()?;
    // Not a multiple of the RX trigger (16): the tail comes by the character timeout.
    let len = 3000;
    let b = bufs(tx, len)?;
    let irqs0 = kde::dev_info(tx.dev).map_or(0, |i| i.irqs.load(Ordering::Relaxed));
    let (ck_tx, ck_rx) = kde::with(|e| {
        e.slave_config(rx, u.slave_config(DevToMem, 8))?;
        let d = e.prep_slave_sg(rx, &[(b.dst.dma_addr(), len)], DevToMem)?;
        let ck_rx = e.submit(d)?;
        e.slave_config(tx, u.slave_config(MemToDev, 8))?;
        let d = e.prep_slave_sg(tx, &[(b.src.dma_addr(), len)], MemToDev)?;
        let ck_tx = e.submit(d)?;
        e.issue_pending(rx)?;
        e.issue_pending(tx)?;
        Ok::<_, EngineError>((ck_tx, ck_rx))
    })
    .map_err(|e| alloc::format!("{e}"))?;
    let st = kde::wait(rx, ck_rx, EVENT_BOUND_MS).map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        st.status == DmaStatus::Complete,
        "rx {:?}, residue {}",
        st.status,
        st.residue
    );
    let st = kde::wait(tx, ck_tx, EVENT_BOUND_MS).map_err(|e| alloc::format!("{e}"))?;
    kassert!(st.status == DmaStatus::Complete, "tx {:?}", st.status);
    let irqs = kde::dev_info(tx.dev).map_or(0, |i| i.irqs.load(Ordering::Relaxed)) - irqs0;
    kassert!(irqs >= 1, "completion without an interrupt");
    kassert!(
        u.line_status() & crate::drivers::lpss::uart::LSR_OE == 0,
        "RX overrun"
    );
    let got = b.dst.unmap().to_vec();
    kassert!(got == b.pattern, "received bytes differ from the sent ones");
    crate::kprintln!("lpss uart: {len} bytes looped back by DMA handshake, {irqs} interrupts");
    kde::release(tx).map_err(|e| alloc::format!("{e}"))?;
    kde::release(rx).map_err(|e| alloc::format!("{e}"))?;
    Ok(())
}

pub(super) fn uart_cyclic_rx() -> TestResult {
    use dmaengine::TransferDirection::{DevToMem, MemToDev};
    let (u, tx, rx) = uart_chans()?;
    // A 1 KiB ring of four 256-byte periods on RX; 1.5 rings' worth sent on TX.
    let (ring, period, sent) = (1024usize, 256usize, 1536usize);
    let b = bufs(tx, sent)?;
    let dev = kde::dev_info(rx.dev)
        .and_then(|i| i.dma())
        .ok_or("no DMA device")?;
    let r = DmaBuf::alloc(&crate::dma::PLATFORM, ring).map_err(|e| alloc::format!("{e}"))?;
    let r = DmaStream::<FromDevice>::map(&dev, r).map_err(|e| alloc::format!("{}", e.error))?;
    let periods = Arc::new(AtomicU32::new(0));
    let p2 = periods.clone();
    let ck_tx = kde::with(|e| {
        e.slave_config(rx, u.slave_config(DevToMem, 8))?;
        let mut d = e.prep_dma_cyclic(rx, r.dma_addr(), ring, period, DevToMem)?;
        d.set_callback(move |_, _| {
            p2.fetch_add(1, Ordering::AcqRel);
        });
        e.submit(d)?;
        e.issue_pending(rx)?;
        e.slave_config(tx, u.slave_config(MemToDev, 8))?;
        let d = e.prep_slave_sg(tx, &[(b.src.dma_addr(), sent)], MemToDev)?;
        let ck = e.submit(d)?;
        e.issue_pending(tx)?;
        Ok::<_, EngineError>(ck)
    })
    .map_err(|e| alloc::format!("{e}"))?;
    let want = (sent / period) as u32;
    wait_until(EVENT_BOUND_MS, || periods.load(Ordering::Acquire) >= want);
    let n = periods.load(Ordering::Acquire);
    kassert!(n == want, "{n} period callbacks, want {want}");
    let st = kde::wait(tx, ck_tx, EVENT_BOUND_MS).map_err(|e| alloc::format!("{e}"))?;
    kassert!(st.status == DmaStatus::Complete, "tx {:?}", st.status);
    kde::with(|e| e.terminate_all(rx)).map_err(|e| alloc::format!("{e}"))?;
    // The ring holds the last 1024 bytes: periods 4 and 5 overwrote 0 and 1.
    let mut expect = b.pattern[1024..1536].to_vec();
    expect.extend_from_slice(&b.pattern[512..1024]);
    let got = r.unmap().to_vec();
    kassert!(got == expect, "ring contents differ from the bytes sent");
    crate::kprintln!("lpss uart: cyclic rx, {n} period callbacks, ring checked");
    kde::release(tx).map_err(|e| alloc::format!("{e}"))?;
    kde::release(rx).map_err(|e| alloc::format!("{e}"))?;
    Ok(())
}
