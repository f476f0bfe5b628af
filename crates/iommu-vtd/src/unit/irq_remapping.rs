//! Interrupt remapping on a unit (spec chapter 5, §9.10): the interrupt remapping table, its enable sequence, and IRTE allocation and updates.

use super::*;
use crate::intremap::{self, IecInval, Irte, IrteAllocator};
use crate::regs::Gcmd;

/// The interrupt remapping table of a unit.
pub(super) struct IntRemap {
    table: PhysAddr,
    alloc: IrteAllocator,
}

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    /// Turns interrupt remapping on with a one-page table of 256 entries (IRTA.S =
    /// 7, EIME = 0: xAPIC destinations, the only mode QEMU offers under TCG):
    /// IRTA → GCMD.SIRTP (wait IRTPS) → global IEC invalidation → GCMD.IRE (wait
    /// IRES) → GCMD.CFI clear if GSTS.CFIS was set (wait CFIS clear), so
    /// compatibility-format MSIs are blocked, as Linux does. Needs ECAP.IR and queued invalidation (the IEC is
    /// invalidated only through the queue, §6.5.2.7).
    pub fn enable_interrupt_remapping(&mut self) -> Result<(), Error> {
        if !self.ecap.ir {
            return Err(Error::NoInterruptRemapping);
        }
        if self.mode != InvalMode::Queued {
            return Err(Error::NoQueuedInvalidation);
        }
        if self.ir.is_none() {
            let table = self.new_table()?;
            self.ir = Some(IntRemap {
                table,
                alloc: IrteAllocator::new(intremap::ONE_PAGE_ENTRIES),
            });
        }
        let table = self.ir.as_ref().map_or(PhysAddr::new(0), |i| i.table);
        self.regs
            .write64(regs::IRTA, intremap::irta_value(table.as_u64(), 7, false));
        self.gcmd_oneshot(Gcmd::SIRTP, |s| s.contains(Gsts::IRTPS), "GSTS.IRTPS")?;
        self.flush_iec(IecInval::Global)?;
        // One GCMD change at a time (§10.4.4), as Linux does since 5.10: IRE,
        // then CFI off if firmware left compatibility format on.
        self.gcmd_persistent(Gcmd::IRE, true, Gsts::IRES, "GSTS.IRES set")?;
        if self.gsts().contains(Gsts::CFIS) {
            self.gcmd_persistent(Gcmd::CFI, false, Gsts::CFIS, "GSTS.CFIS clear")?;
        }
        Ok(())
    }

    /// Turns interrupt remapping off (GCMD.IRE clear, wait IRES clear). The
    /// table and its allocations stay, for a later enable.
    pub fn disable_interrupt_remapping(&mut self) -> Result<(), Error> {
        self.gcmd_persistent(Gcmd::IRE, false, Gsts::IRES, "GSTS.IRES clear")
    }

    /// Whether GSTS.IRES is set.
    pub fn interrupt_remapping_enabled(&self) -> bool {
        self.gsts().contains(Gsts::IRES)
    }

    /// Physical address of the interrupt remapping table, once enabled.
    pub fn irt_address(&self) -> Option<PhysAddr> {
        self.ir.as_ref().map(|i| i.table)
    }

    /// Allocates `count` (a power of two) IRTEs for requester `owner`, all
    /// not present; returns the handle (first index).
    pub fn alloc_irte(&mut self, owner: Bdf, count: u16) -> Result<u16, Error> {
        let ir = self.ir.as_mut().ok_or(Error::InterruptRemappingOff)?;
        ir.alloc.alloc(owner.sid(), count).map_err(Error::Irte)
    }

    /// Writes IRTE `index` (inside a block `owner` holds) and invalidates its
    /// IEC entry. The entry's source validation is forced to `owner` (full
    /// 16-bit match) unless it already names a check that `owner` passes, so
    /// an entry can never be opened to another requester by mistake.
    pub fn set_irte(&mut self, owner: Bdf, index: u16, mut irte: Irte) -> Result<(), Error> {
        let ir = self.ir.as_ref().ok_or(Error::InterruptRemappingOff)?;
        let b = ir
            .alloc
            .block_containing(index)
            .ok_or(Error::Irte(IrteError::NotAllocated(index)))?;
        if b.owner != owner.sid() {
            return Err(Error::Irte(IrteError::NotOwner {
                index,
                owner: b.owner,
            }));
        }
        if matches!(irte.source, intremap::SourceValidation::None)
            || !irte.source.allows(owner.sid())
        {
            irte.source = intremap::SourceValidation::Requester {
                sid: owner.sid(),
                sq: 0,
            };
        }
        let pa = ir.table + index as u64 * intremap::IRTE_SIZE;
        let [lo, hi] = irte.encode();
        // High qword first, then the low one with P: the unit never sees a
        // present entry with a stale source check (§9.10 guidance on updates).
        self.mem.write_u64(pa + 8u64, hi);
        self.mem.write_u64(pa, lo);
        self.flush_cache(pa, 16);
        self.flush_iec(IecInval::Index { index, im: 0 })
    }

    /// Reads IRTE `index` back from the table.
    pub fn irte(&self, index: u16) -> Result<Irte, Error> {
        let ir = self.ir.as_ref().ok_or(Error::InterruptRemappingOff)?;
        if index >= ir.alloc.size() {
            return Err(Error::Irte(IrteError::NotAllocated(index)));
        }
        let pa = ir.table + index as u64 * intremap::IRTE_SIZE;
        let raw = [self.mem.read_u64(pa), self.mem.read_u64(pa + 8u64)];
        // Only this driver writes the table, with no reserved bits.
        Irte::decode(raw, false).map_err(|_| Error::Irte(IrteError::NotAllocated(index)))
    }

    /// Clears the block at `handle` (P = 0), invalidates it in the IEC, and frees it.
    pub fn free_irte(&mut self, owner: Bdf, handle: u16) -> Result<(), Error> {
        let ir = self.ir.as_mut().ok_or(Error::InterruptRemappingOff)?;
        let b = ir.alloc.free(handle, owner.sid()).map_err(Error::Irte)?;
        let table = ir.table;
        for i in b.index..b.index + b.count {
            let pa = table + i as u64 * intremap::IRTE_SIZE;
            self.mem.write_u64(pa, 0);
            self.mem.write_u64(pa + 8u64, 0);
            self.flush_cache(pa, 16);
        }
        self.flush_iec(IecInval::Index {
            index: b.index,
            im: b.count.trailing_zeros() as u8,
        })
    }

    /// Allocated IRTE blocks (for the shell's `iommu` table).
    pub fn irte_blocks(&self) -> Vec<intremap::IrteBlock> {
        self.ir.as_ref().map_or_else(Vec::new, |i| i.alloc.blocks())
    }
}
