//! LLI memory for the iDMA64 from DMA pools, as Linux's idma64 takes its LLIs from
//! `dma_pool_create("idma64_desc", …, sizeof(struct idma64_lli), 8, 0)`.
//!
//! The `idma64` crate writes a descriptor's LLIs as one contiguous chain, so the pools
//! here are size classes of whole chains: [`CLASSES`] pools of 1, 2, 4, … 64 LLIs
//! (40 to 2560 bytes, 8-byte aligned), each carving coherent pages into blocks. A chain
//! longer than the largest class (a transfer above 8 MiB) gets coherent pages of its
//! own. Blocks go back to their pool when the driver frees the descriptor; what is
//! still out when the allocator is dropped is reported as a leak, and
//! [`LliPools::check_leaks`] says so at any time.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use dma::{Coherent, DmaDevice, DmaPool, DmaPoolBlock, PoolError};
use hal::{DmaAddr, PhysAddr};
use idma64::regs::LLI_SIZE;

use crate::sync::IrqSpinLock;

/// Number of chain size classes: chains of 1, 2, 4, … `1 << (CLASSES - 1)` LLIs.
pub const CLASSES: usize = 7;
/// LLI alignment the engine needs (LLP bits 2:0 are reserved).
const LLI_ALIGN: usize = 8;

/// LLI blocks still allocated where none should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LliLeak {
    /// Pool blocks still in use.
    pub blocks: usize,
    /// Chains above the largest class still allocated.
    pub large: usize,
}

impl fmt::Display for LliLeak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} LLI pool blocks and {} large LLI chains not freed",
            self.blocks, self.large
        )
    }
}

/// The pools of one controller; shared with [`stats_of`] so a test can look.
pub struct LliPools {
    name: alloc::string::String,
    pools: Vec<DmaPool>,
    large: AtomicUsize,
}

/// Usage of a controller's LLI memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LliStats {
    /// Pool blocks (chains) handed out.
    pub in_use: usize,
    /// Coherent pages the pools took.
    pub pages: usize,
    /// Chains above the largest class (a coherent allocation each).
    pub large: usize,
}

impl LliPools {
    /// Pools for `dev`'s LLIs, named after it (`idma64_desc-1` … `idma64_desc-64`).
    pub fn new(dev: &Arc<DmaDevice>) -> Result<Arc<Self>, PoolError> {
        let pools = (0..CLASSES)
            .map(|c| {
                let lli = 1usize << c;
                let name = alloc::format!("idma64_desc-{lli}");
                DmaPool::new(dev, &name, lli * LLI_SIZE, LLI_ALIGN, 0)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(LliPools {
            name: alloc::string::String::from(dev.name()),
            pools,
            large: AtomicUsize::new(0),
        }))
    }

    /// Blocks out, pages taken.
    pub fn stats(&self) -> LliStats {
        let mut s = LliStats {
            large: self.large.load(Ordering::Acquire),
            ..LliStats::default()
        };
        for p in &self.pools {
            let ps = p.stats();
            s.in_use += ps.in_use;
            s.pages += ps.chunks;
        }
        s
    }

    /// `Err` with what is still allocated, if anything is.
    pub fn check_leaks(&self) -> Result<(), LliLeak> {
        let s = self.stats();
        if s.in_use == 0 && s.large == 0 {
            Ok(())
        } else {
            Err(LliLeak {
                blocks: s.in_use,
                large: s.large,
            })
        }
    }

    /// The size class of a chain of `bytes`, if a pool takes it.
    fn class(bytes: usize) -> Option<usize> {
        let lli = bytes.div_ceil(LLI_SIZE).max(1).next_power_of_two();
        let c = lli.trailing_zeros() as usize;
        (c < CLASSES).then_some(c)
    }
}

enum LliBlock {
    Pool(#[allow(dead_code)] DmaPoolBlock),
    Large(#[allow(dead_code)] Coherent),
}

/// The iDMA64's [`idma64::LliAllocator`]: chains from [`LliPools`], kept until the
/// driver frees them.
pub struct PoolLli {
    dev: Arc<DmaDevice>,
    pools: Arc<LliPools>,
    live: BTreeMap<u64, LliBlock>,
}

impl PoolLli {
    /// An allocator for `dev`'s LLIs.
    pub fn new(dev: Arc<DmaDevice>) -> Result<Self, PoolError> {
        let pools = LliPools::new(&dev)?;
        Ok(PoolLli {
            dev,
            pools,
            live: BTreeMap::new(),
        })
    }

    /// The pools, to look at their usage.
    pub fn pools(&self) -> &Arc<LliPools> {
        &self.pools
    }
}

impl idma64::LliAllocator for PoolLli {
    fn alloc(&mut self, bytes: usize) -> Option<(PhysAddr, DmaAddr)> {
        let (pa, dma, block) = match LliPools::class(bytes) {
            Some(c) => {
                let b = self.pools.pools[c].zalloc().ok()?;
                (b.phys(), b.dma_addr(), LliBlock::Pool(b))
            }
            None => {
                let c = self.dev.alloc_coherent(bytes).ok()?.into_device();
                self.pools.large.fetch_add(1, Ordering::AcqRel);
                (c.phys(), c.dma_addr(), LliBlock::Large(c))
            }
        };
        self.live.insert(pa.as_u64(), block);
        Some((pa, dma))
    }

    fn free(&mut self, pa: PhysAddr, _bytes: usize) {
        match self.live.remove(&pa.as_u64()) {
            Some(LliBlock::Large(_)) => {
                self.pools.large.fetch_sub(1, Ordering::AcqRel);
            }
            Some(LliBlock::Pool(_)) => {}
            None => log::error!(
                "idma64: freeing LLI memory {:#x} that was not allocated",
                pa.as_u64()
            ),
        }
    }
}

impl Drop for PoolLli {
    fn drop(&mut self) {
        // Linux's dma_pool_destroy complains about busy blocks; so do we, before the
        // blocks go back and hide the leak.
        if let Err(e) = self.pools.check_leaks() {
            log::error!("{}: idma64 LLI memory: {e}", self.pools.name);
        }
    }
}

/// Each registered controller's pools, by dmaengine device id.
static CONTROLLERS: IrqSpinLock<Vec<(usize, Arc<LliPools>)>> = IrqSpinLock::new(Vec::new());

/// Records the pools of dmaengine device `dev` for [`stats_of`].
pub fn record(dev: usize, pools: Arc<LliPools>) {
    CONTROLLERS.lock().push((dev, pools));
}

/// The pools of dmaengine device `dev`, if it is an iDMA64.
pub fn stats_of(dev: usize) -> Option<Arc<LliPools>> {
    CONTROLLERS
        .lock()
        .iter()
        .find(|(d, _)| *d == dev)
        .map(|(_, p)| p.clone())
}
