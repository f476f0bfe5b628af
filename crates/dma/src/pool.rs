//! DMA pools (Linux `mm/dmapool.c`, hw-facts §3.4): small fixed-size blocks carved from
//! coherent chunks, aligned, and never crossing the pool's boundary.

use crate::coherent::{Coherent, Pod};
use crate::{DmaDevice, DmaError, PAGE_SIZE};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use hal::{DmaAddr, PhysAddr};

/// Smallest block (Linux ≥ 6.4: `sizeof(struct dma_block)`, a next pointer + a DMA
/// address).
pub const MIN_BLOCK: usize = 16;

/// Pool creation and use errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// Block size 0 or above `i32::MAX`.
    BadSize(usize),
    /// Alignment not a power of two.
    BadAlign(usize),
    /// Boundary not a power of two, or smaller than the block.
    BadBoundary(usize),
    /// A block given to a pool it does not belong to (it goes back to its own pool).
    WrongPool {
        /// Pool the block was given to.
        pool: String,
        /// Pool it came from.
        owner: String,
    },
    /// Allocating a new chunk failed.
    Dma(DmaError),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::BadSize(s) => write!(f, "dma_pool: bad block size {s}"),
            PoolError::BadAlign(a) => write!(f, "dma_pool: alignment {a} not a power of two"),
            PoolError::BadBoundary(b) => write!(
                f,
                "dma_pool: boundary {b} not a power of two at least the block size"
            ),
            PoolError::WrongPool { pool, owner } => {
                write!(f, "dma_pool {pool}: block belongs to pool {owner}")
            }
            PoolError::Dma(e) => write!(f, "dma_pool: {e}"),
        }
    }
}

/// Usage figures for a pool (Linux's `pools` sysfs line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Blocks handed out.
    pub in_use: usize,
    /// Blocks in all chunks.
    pub total: usize,
    /// Block stride (size rounded up to the alignment).
    pub block_size: usize,
    /// Chunks allocated.
    pub chunks: usize,
}

struct Chunk {
    mem: Coherent,
    free: Vec<usize>,
    blocks: usize,
}

struct PoolInner {
    name: String,
    dev: Arc<DmaDevice>,
    size: usize,
    allocation: usize,
    boundary: usize,
    chunks: spin::Mutex<Vec<Chunk>>,
}

/// A DMA pool.
pub struct DmaPool {
    inner: Arc<PoolInner>,
}

/// One block; goes back to its pool on drop (or with [`DmaPool::free`]).
pub struct DmaPoolBlock {
    pool: Arc<PoolInner>,
    chunk: usize,
    offset: usize,
    dma: DmaAddr,
    phys: PhysAddr,
}

/// Block offsets in a chunk: stride `size`, skipping to the next boundary multiple where a
/// block would cross one (Linux `pool_initialise_page`).
pub(crate) fn block_offsets(size: usize, allocation: usize, boundary: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut off = 0usize;
    let mut next_boundary = boundary;
    while off + size <= allocation {
        if off + size > next_boundary {
            off = next_boundary;
            next_boundary += boundary;
            continue;
        }
        v.push(off);
        off += size;
    }
    v
}

impl DmaPool {
    /// `dma_pool_create(name, dev, size, align, boundary)` with Linux's rules: `align` 0
    /// means 1 and must be a power of two; `size` is raised to 16 and rounded up to
    /// `align`; chunks are max(size, PAGE_SIZE) of coherent memory; `boundary` 0 means
    /// the chunk, else a power of two ≥ size, clamped to the chunk.
    pub fn new(
        dev: &Arc<DmaDevice>,
        name: &str,
        size: usize,
        align: usize,
        boundary: usize,
    ) -> Result<DmaPool, PoolError> {
        let align = if align == 0 { 1 } else { align };
        if !align.is_power_of_two() {
            return Err(PoolError::BadAlign(align));
        }
        if size == 0 || size > i32::MAX as usize {
            return Err(PoolError::BadSize(size));
        }
        let size = size.max(MIN_BLOCK).next_multiple_of(align);
        let allocation = size.max(PAGE_SIZE);
        let boundary = if boundary == 0 {
            allocation
        } else if !boundary.is_power_of_two() || boundary < size {
            return Err(PoolError::BadBoundary(boundary));
        } else {
            boundary.min(allocation)
        };
        Ok(DmaPool {
            inner: Arc::new(PoolInner {
                name: String::from(name),
                dev: dev.clone(),
                size,
                allocation,
                boundary,
                chunks: spin::Mutex::new(Vec::new()),
            }),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `dma_pool_alloc`: a block (contents unspecified: possibly a freed block's).
    pub fn alloc(&self) -> Result<DmaPoolBlock, PoolError> {
        let inner = &self.inner;
        let mut chunks = inner.chunks.lock();
        let idx = match chunks.iter().position(|c| !c.free.is_empty()) {
            Some(i) => i,
            None => {
                let mem = inner
                    .dev
                    .alloc_coherent(inner.allocation)
                    .map_err(PoolError::Dma)?
                    .into_device();
                let mut free = block_offsets(inner.size, inner.allocation, inner.boundary);
                let blocks = free.len();
                free.reverse(); // pop() hands out the lowest offset first
                chunks.push(Chunk { mem, free, blocks });
                chunks.len() - 1
            }
        };
        let c = &mut chunks[idx];
        let Some(offset) = c.free.pop() else {
            unreachable!("chunk chosen with a free block")
        };
        Ok(DmaPoolBlock {
            pool: inner.clone(),
            chunk: idx,
            offset,
            dma: DmaAddr::new(c.mem.dma_addr().as_u64() + offset as u64),
            phys: c.mem.phys() + offset as u64,
        })
    }

    /// `dma_pool_zalloc`: a zeroed block.
    pub fn zalloc(&self) -> Result<DmaPoolBlock, PoolError> {
        let b = self.alloc()?;
        b.write_bytes(0, &alloc::vec![0u8; b.len()]);
        Ok(b)
    }

    /// `dma_pool_free`. A block from another pool is an error (and returns to its own).
    pub fn free(&self, block: DmaPoolBlock) -> Result<(), PoolError> {
        if !Arc::ptr_eq(&block.pool, &self.inner) {
            let e = PoolError::WrongPool {
                pool: self.inner.name.clone(),
                owner: block.pool.name.clone(),
            };
            log::error!("{}: {e}", self.inner.dev.name());
            return Err(e);
        }
        drop(block);
        Ok(())
    }

    /// Usage figures.
    pub fn stats(&self) -> PoolStats {
        let chunks = self.inner.chunks.lock();
        let total: usize = chunks.iter().map(|c| c.blocks).sum();
        let free: usize = chunks.iter().map(|c| c.free.len()).sum();
        PoolStats {
            in_use: total - free,
            total,
            block_size: self.inner.size,
            chunks: chunks.len(),
        }
    }
}

impl Drop for DmaPool {
    fn drop(&mut self) {
        // Blocks keep the chunks alive, so this is safe; still a driver bug (Linux
        // `dma_pool_destroy` complains "busy").
        let s = self.stats();
        if s.in_use != 0 {
            log::error!(
                "{}: dma_pool_destroy {}, {} busy blocks",
                self.inner.dev.name(),
                self.inner.name,
                s.in_use
            );
        }
    }
}

impl fmt::Debug for DmaPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        write!(
            f,
            "DmaPool({} {}/{} blocks of {} bytes, {} chunks)",
            self.inner.name, s.in_use, s.total, s.block_size, s.chunks
        )
    }
}

impl DmaPoolBlock {
    /// Bus address for the device.
    pub fn dma_addr(&self) -> DmaAddr {
        self.dma
    }

    /// Block size (the pool's stride).
    pub fn len(&self) -> usize {
        self.pool.size
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Physical address (for diagnostics).
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    #[track_caller]
    fn check(&self, offset: usize, n: usize) {
        assert!(
            offset.checked_add(n).is_some_and(|e| e <= self.pool.size),
            "pool block access [{offset:#x}+{n}] outside {} bytes",
            self.pool.size
        );
    }

    /// Volatile read of a `T` at `offset` in the block. Panics if out of bounds or
    /// misaligned.
    #[track_caller]
    pub fn read<T: Pod>(&self, offset: usize) -> T {
        self.check(offset, core::mem::size_of::<T>());
        let chunks = self.pool.chunks.lock();
        chunks[self.chunk].mem.read(self.offset + offset)
    }

    /// Volatile write of a `T` at `offset`. Panics if out of bounds or misaligned.
    #[track_caller]
    pub fn write<T: Pod>(&self, offset: usize, v: T) {
        self.check(offset, core::mem::size_of::<T>());
        let chunks = self.pool.chunks.lock();
        chunks[self.chunk].mem.write(self.offset + offset, v)
    }

    /// Volatile copy out.
    #[track_caller]
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        self.check(offset, buf.len());
        let chunks = self.pool.chunks.lock();
        chunks[self.chunk].mem.read_bytes(self.offset + offset, buf)
    }

    /// Volatile copy in.
    #[track_caller]
    pub fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        let chunks = self.pool.chunks.lock();
        chunks[self.chunk]
            .mem
            .write_bytes(self.offset + offset, data)
    }
}

impl Drop for DmaPoolBlock {
    fn drop(&mut self) {
        let mut chunks = self.pool.chunks.lock();
        if let Some(c) = chunks.get_mut(self.chunk) {
            debug_assert!(!c.free.contains(&self.offset), "dma_pool: double free");
            c.free.push(self.offset);
        }
    }
}

impl fmt::Debug for DmaPoolBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DmaPoolBlock({} {:#x}+{})",
            self.pool.name, self.dma, self.pool.size
        )
    }
}
