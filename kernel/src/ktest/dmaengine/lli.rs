//! The iDMA64's LLIs come from DMA pools: many descriptors share a few coherent pages
//! (before, each took a page of its own), a descriptor's blocks go back when it is
//! freed, and blocks still out are reported as a leak.

use alloc::vec::Vec;

use dmaengine::DmaCaps;
use hal::{DmaAddr, PhysAddr};
use idma64::regs::LLI_SIZE;
use idma64::LliAllocator;

use crate::dmaengine as kde;
use crate::drivers::lpss::lli::{self, LliLeak, PoolLli};
use crate::kassert;
use crate::ktest::TestResult;

/// Descriptors allocated: 64 each of 1, 2, 3 and 4 LLIs.
const DESCS: usize = 256;
/// Pages they may take (a page per descriptor before the pools: 256).
const MAX_PAGES: usize = 16;

pub(super) fn llis_share_pool_pages() -> TestResult {
    let dev = dma::DmaDevice::new(
        "ktest idma64 llis",
        &crate::dma::PLATFORM,
        dma::DmaBackend::Direct,
    );
    dev.set_mask_and_coherent(u64::MAX)
        .map_err(|e| alloc::format!("{e}"))?;
    let mut a = PoolLli::new(dev).map_err(|e| alloc::format!("{e}"))?;
    let pools = a.pools().clone();
    let mut chains: Vec<(PhysAddr, DmaAddr, usize)> = Vec::with_capacity(DESCS);
    for i in 0..DESCS {
        let bytes = (1 + i % 4) * LLI_SIZE;
        let (pa, dma) = a.alloc(bytes).ok_or("LLI allocation failed")?;
        kassert!(
            dma.as_u64() % 8 == 0,
            "LLI chain at {:#x} not 8-byte aligned",
            dma.as_u64()
        );
        chains.push((pa, dma, bytes));
    }
    // No two chains overlap.
    let mut sorted: Vec<(u64, usize)> = chains.iter().map(|c| (c.1.as_u64(), c.2)).collect();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        kassert!(
            w[0].0 + w[0].1 as u64 <= w[1].0,
            "LLI chains at {:#x} and {:#x} overlap",
            w[0].0,
            w[1].0
        );
    }
    let s = pools.stats();
    log::info!(
        "ktest: {DESCS} iDMA64 descriptors (1-4 LLIs) in {} pooled pages (one page each before)",
        s.pages
    );
    kassert!(
        s.in_use == DESCS && s.pages <= MAX_PAGES,
        "{DESCS} descriptors: {} blocks in {} pages (at most {MAX_PAGES} expected)",
        s.in_use,
        s.pages
    );
    // A chain above the largest class (64 LLIs) still works, from pages of its own.
    let big = a.alloc(100 * LLI_SIZE).ok_or("large LLI chain failed")?;
    kassert!(pools.stats().large == 1, "large chain not counted");
    a.free(big.0, 100 * LLI_SIZE);
    for &(pa, _, bytes) in &chains {
        a.free(pa, bytes);
    }
    kassert!(
        pools.check_leaks().is_ok(),
        "all freed, yet {:?}",
        pools.check_leaks()
    );
    // A descriptor that is never freed is a leak, and is reported as one.
    let leaked = a.alloc(3 * LLI_SIZE).ok_or("LLI allocation failed")?;
    let r = pools.check_leaks();
    kassert!(
        r == Err(LliLeak {
            blocks: 1,
            large: 0
        }),
        "one chain left out, leak check says {r:?}"
    );
    a.free(leaked.0, 3 * LLI_SIZE);
    kassert!(pools.check_leaks().is_ok(), "freed, still reported");

    // The registered simulated controller: a prepared descriptor holds a pool block
    // until it is freed (here discarded).
    let chan = super::sim_chan(DmaCaps::MEMCPY)?;
    let ctl = lli::stats_of(chan.dev).ok_or("the simulated iDMA64 has no LLI pools")?;
    let before = ctl.stats().in_use;
    let r = kde::with(|e| {
        let d = e.prep_memcpy(chan, DmaAddr::new(0x20_0000), DmaAddr::new(0x30_0000), 4096)?;
        let during = ctl.stats().in_use;
        e.discard(d);
        Ok::<_, dmaengine::EngineError>(during)
    });
    let _ = kde::release(chan);
    let during = r.map_err(|e| alloc::format!("{e}"))?;
    let after = ctl.stats().in_use;
    kassert!(
        during == before + 1 && after == before,
        "pool blocks in use: {before} before, {during} with a descriptor, {after} after discard"
    );
    Ok(())
}
