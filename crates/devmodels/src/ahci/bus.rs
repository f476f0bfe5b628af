//! The bus between a device model and memory: [`DmaBus`] (an IOMMU model can be one) and
//! [`PhysBus`], plain RAM with the ranges that exist.

use alloc::vec::Vec;
use hal::{PhysAddr, PhysMemory};

/// A DMA the bus refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusFault {
    /// Bus address.
    pub addr: u64,
    /// True for a write to memory.
    pub write: bool,
}

/// What stands between the HBA and memory: RAM directly, or an IOMMU.
pub trait DmaBus {
    /// Reads `buf.len()` bytes at bus address `addr`.
    fn dma_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BusFault>;
    /// Writes `data` at bus address `addr`.
    fn dma_write(&self, addr: u64, data: &[u8]) -> Result<(), BusFault>;
}

impl<T: DmaBus + ?Sized> DmaBus for &T {
    fn dma_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BusFault> {
        (**self).dma_read(addr, buf)
    }
    fn dma_write(&self, addr: u64, data: &[u8]) -> Result<(), BusFault> {
        (**self).dma_write(addr, data)
    }
}

/// Bus address = physical address, over RAM `[base, base + size)`; anything else faults.
pub struct PhysBus<M: PhysMemory> {
    mem: M,
    ranges: Vec<(u64, u64)>,
}

impl<M: PhysMemory> PhysBus<M> {
    /// RAM is the given `(base, size)` ranges of `mem`.
    pub fn new(mem: M, ranges: &[(u64, u64)]) -> Self {
        PhysBus {
            mem,
            ranges: ranges.to_vec(),
        }
    }

    fn check(&self, addr: u64, len: usize, write: bool) -> Result<(), BusFault> {
        let ok = self
            .ranges
            .iter()
            .any(|&(b, s)| addr >= b && addr.checked_add(len as u64).is_some_and(|e| e <= b + s));
        if ok {
            Ok(())
        } else {
            Err(BusFault { addr, write })
        }
    }
}

impl<M: PhysMemory> DmaBus for PhysBus<M> {
    fn dma_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BusFault> {
        self.check(addr, buf.len(), false)?;
        self.mem.read(PhysAddr::new(addr), buf);
        Ok(())
    }
    fn dma_write(&self, addr: u64, data: &[u8]) -> Result<(), BusFault> {
        self.check(addr, data.len(), true)?;
        self.mem.write(PhysAddr::new(addr), data);
        Ok(())
    }
}
