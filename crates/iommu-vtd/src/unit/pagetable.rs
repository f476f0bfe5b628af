//! Second-level page tables (spec §9.8): map, unmap, the walks (allocating and not), and the software translation of a domain's IOVA.

use super::*;
use crate::tables;

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    /// IOVA space covered by the tables: 2^min(AGAW, MGAW).
    #[inline]
    pub fn address_limit(&self) -> u64 {
        1u64 << tables::agaw_bits(self.levels).min(self.cap.mgaw as u32)
    }

    pub(super) fn free_tables(&mut self, table: PhysAddr, level: u8) {
        if level > 1 {
            for i in 0..512u64 {
                let e = self.mem.read_u64(table + i * 8);
                if e & (tables::SL_R | tables::SL_W) != 0 && e & tables::SL_PS == 0 {
                    self.free_tables(PhysAddr::new(e & tables::ADDR_MASK), level - 1);
                }
            }
        }
        self.frames.free_page(table);
    }

    #[inline]
    pub(crate) fn pgd(&self, d: DomainId) -> Result<PhysAddr, Error> {
        let dom = self.domains.get(&d.0).ok_or(Error::NoSuchDomain(d))?;
        dom.pgd.ok_or(Error::NotTranslated(d))
    }

    /// Entry slot at `target` level for `iova`, allocating intermediate tables.
    pub(super) fn walk_alloc(
        &mut self,
        pgd: PhysAddr,
        iova: u64,
        target: u8,
    ) -> Result<PhysAddr, Error> {
        // From the top table (`pgd`, level `self.levels`) down to `target`: the slot
        // for `iova` at each level is `table + tables::level_index(iova, level) * 8`.
        // An entry with neither R nor W is not present: get a zeroed table from
        // `self.new_table()?` and point the entry at it with R and W set (the hardware
        // ANDs the permissions of every level, so the leaf decides) through
        // `self.write_entry` (which also flushes the cache line for a non-coherent
        // unit). A present entry with PS set is
        // a large page in the way: `Error::AlreadyMapped(iova)`. Return the slot at
        // `target` (level 1: a 4 KiB leaf, level 2: a 2 MiB leaf).
        // exercise(vtd-pagetables): begin
        let mut table = pgd;
        let mut level = self.levels;
        while level > target {
            let slot = table + tables::level_index(iova, level) * 8;
            let e = self.mem.read_u64(slot);
            if e & (tables::SL_R | tables::SL_W) == 0 {
                let t = self.new_table()?;
                // Non-leaf entries carry R|W: QEMU ANDs permissions over all levels.
                self.write_entry(slot, t.as_u64() | tables::SL_R | tables::SL_W);
                table = t;
            } else if e & tables::SL_PS != 0 {
                return Err(Error::AlreadyMapped(iova));
            } else {
                table = PhysAddr::new(e & tables::ADDR_MASK);
            }
            level -= 1;
        }
        Ok(table + tables::level_index(iova, target) * 8)
        // exercise(vtd-pagetables): stub
        // let _ = (pgd, iova, target);
        // todo!("exercise vtd-pagetables: walk down to `target`, allocating tables")
        // exercise(vtd-pagetables): end
    }

    /// The level-1 slot for `iova` in domain `d`, allocating tables on the way;
    /// through [`RemappingUnit::leaf_cache`] when the last walk ended in the same
    /// 2 MiB.
    #[inline]
    pub(super) fn leaf_slot_alloc(
        &mut self,
        d: DomainId,
        pgd: PhysAddr,
        iova: u64,
    ) -> Result<PhysAddr, Error> {
        let region = iova >> 21;
        if let Some((did, r, table)) = self.leaf_cache {
            if did == d.0 && r == region {
                return Ok(table + tables::level_index(iova, 1) * 8);
            }
        }
        let slot = self.walk_alloc(pgd, iova, 1)?;
        let table = PhysAddr::new(slot.as_u64() & !(PAGE_SIZE - 1));
        self.leaf_cache = Some((d.0, region, table));
        Ok(slot)
    }

    /// The leaf slot, level and entry for `iova` like [`RemappingUnit::find_leaf`],
    /// through the leaf cache when it covers `iova` (and filling it otherwise).
    #[inline]
    pub(super) fn find_leaf_cached(
        &mut self,
        d: DomainId,
        pgd: PhysAddr,
        iova: u64,
    ) -> Option<(PhysAddr, u8, u64)> {
        let region = iova >> 21;
        if let Some((did, r, table)) = self.leaf_cache {
            if did == d.0 && r == region {
                let slot = table + tables::level_index(iova, 1) * 8;
                let e = self.mem.read_u64(slot);
                return (e & (tables::SL_R | tables::SL_W) != 0).then_some((slot, 1, e));
            }
        }
        let found = self.find_leaf(pgd, iova);
        if let Some((slot, 1, _)) = found {
            let table = PhysAddr::new(slot.as_u64() & !(PAGE_SIZE - 1));
            self.leaf_cache = Some((d.0, region, table));
        }
        found
    }

    /// Maps `[iova, iova + len)` to `[pa, pa + len)` in domain `d` with `perm`, using
    /// 2 MiB pages where both addresses are 2 MiB aligned and CAP.SLLPS allows. On
    /// error nothing stays mapped. A new mapping needs no IOTLB invalidation (only
    /// present entries are cached), but a write-buffer flush when CAP.RWBF, and an
    /// IOTLB flush when CAP.CM (§6.1).
    pub fn map(
        &mut self,
        d: DomainId,
        iova: u64,
        pa: PhysAddr,
        len: u64,
        perm: Perm,
    ) -> Result<(), Error> {
        let pgd = self.pgd(d)?;
        if !iova.is_multiple_of(PAGE_SIZE)
            || !pa.as_u64().is_multiple_of(PAGE_SIZE)
            || !len.is_multiple_of(PAGE_SIZE)
            || len == 0
        {
            return Err(Error::Misaligned);
        }
        let end = iova
            .checked_add(len)
            .ok_or(Error::BeyondAddressWidth(iova))?;
        if end > self.address_limit() {
            return Err(Error::BeyondAddressWidth(end - 1));
        }
        let mut off = 0;
        while off < len {
            let (v, p) = (iova + off, pa.as_u64() + off);
            let big = tables::level_size(2);
            // A level-1 table left behind by earlier 4 KiB mappings stays (replacing it
            // would need a paging-structure invalidation first), so the range is then
            // mapped with 4 KiB pages.
            let large = self.cap.has_2m()
                && v % big == 0
                && p % big == 0
                && len - off >= big
                && !self.has_table_at_level2(pgd, v);
            let size = if large { big } else { PAGE_SIZE };
            let slot = if large {
                self.walk_alloc(pgd, v, 2)
            } else {
                self.leaf_slot_alloc(d, pgd, v)
            };
            let r = slot.and_then(|slot| {
                if self.mem.read_u64(slot) & (tables::SL_R | tables::SL_W) != 0 {
                    Err(Error::AlreadyMapped(v))
                } else {
                    self.write_entry(slot, tables::sl_entry(p, perm, large));
                    Ok(())
                }
            });
            if let Err(e) = r {
                if off > 0 {
                    let _ = self.clear_range(d, pgd, iova, off);
                }
                return Err(e);
            }
            off += size;
        }
        self.flush_write_buffer()?;
        if self.cap.cm {
            self.flush_iotlb(IotlbInval::for_range(
                d.0,
                iova,
                len,
                self.cap.psi,
                self.cap.mamv,
            ))?;
        }
        Ok(())
    }

    /// True if the level-2 entry for `iova` points to a level-1 table.
    pub(super) fn has_table_at_level2(&self, pgd: PhysAddr, iova: u64) -> bool {
        let mut table = pgd;
        let mut level = self.levels;
        loop {
            let e = self
                .mem
                .read_u64(table + tables::level_index(iova, level) * 8);
            if e & (tables::SL_R | tables::SL_W) == 0 || e & tables::SL_PS != 0 {
                return false;
            }
            if level == 2 {
                return true;
            }
            table = PhysAddr::new(e & tables::ADDR_MASK);
            level -= 1;
        }
    }

    /// Leaf slot and its level for `iova`, without allocating.
    pub(super) fn find_leaf(&self, pgd: PhysAddr, iova: u64) -> Option<(PhysAddr, u8, u64)> {
        // The walk the hardware does: from the top level down, stop with `None` at an
        // entry that is not present, and with (slot, level, entry) at a leaf: level 1,
        // or an entry with PS set (a 2 MiB or 1 GiB page).
        // exercise(vtd-pagetables): begin
        let mut table = pgd;
        let mut level = self.levels;
        loop {
            let slot = table + tables::level_index(iova, level) * 8;
            let e = self.mem.read_u64(slot);
            if e & (tables::SL_R | tables::SL_W) == 0 {
                return None;
            }
            if level == 1 || e & tables::SL_PS != 0 {
                return Some((slot, level, e));
            }
            table = PhysAddr::new(e & tables::ADDR_MASK);
            level -= 1;
        }
        // exercise(vtd-pagetables): stub
        // let _ = (pgd, iova);
        // todo!("exercise vtd-pagetables: find the leaf entry for `iova`")
        // exercise(vtd-pagetables): end
    }

    #[inline]
    pub(crate) fn clear_range(
        &mut self,
        d: DomainId,
        pgd: PhysAddr,
        iova: u64,
        len: u64,
    ) -> Result<(), Error> {
        // Check first, so a failed unmap changes nothing; then walk again to
        // clear (no list of slots on the heap: this runs for every unmap, and
        // the second walk of each 2 MiB hits the leaf cache).
        if len == PAGE_SIZE {
            // The common single page: one lookup, nothing to check beyond it.
            return match self.find_leaf_cached(d, pgd, iova) {
                Some((slot, 1, _)) => {
                    self.write_entry(slot, 0);
                    Ok(())
                }
                _ => Err(Error::NotMapped(iova)),
            };
        }
        let mut off = 0;
        while off < len {
            let v = iova + off;
            let (_, level, _) = self
                .find_leaf_cached(d, pgd, v)
                .ok_or(Error::NotMapped(v))?;
            let size = tables::level_size(level);
            if !v.is_multiple_of(size) || len - off < size {
                return Err(Error::NotMapped(v));
            }
            off += size;
        }
        off = 0;
        while off < len {
            let v = iova + off;
            let (slot, level, _) = self
                .find_leaf_cached(d, pgd, v)
                .ok_or(Error::NotMapped(v))?;
            self.write_entry(slot, 0);
            off += tables::level_size(level);
        }
        Ok(())
    }

    /// Unmaps `[iova, iova + len)` (whole pages; a 2 MiB page only as a whole). The
    /// IOTLB still holds the old translations: issue `inval` of the returned
    /// [`UnmapInfo`] ([`RemappingUnit::flush_unmap`]) before reusing the range.
    /// Intermediate tables are kept (they are reused by later maps and freed with the
    /// domain).
    pub fn unmap(&mut self, d: DomainId, iova: u64, len: u64) -> Result<UnmapInfo, Error> {
        let pgd = self.pgd(d)?;
        if !iova.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Error::Misaligned);
        }
        self.clear_range(d, pgd, iova, len)?;
        Ok(UnmapInfo {
            did: d,
            iova,
            len,
            inval: IotlbInval::for_range(d.0, iova, len, self.cap.psi, self.cap.mamv),
        })
    }

    /// Software walk of the domain's page tables.
    pub fn translate_domain(&self, d: DomainId, iova: u64) -> Option<Translation> {
        let dom = self.domains.get(&d.0)?;
        let Some(pgd) = dom.pgd else {
            return Some(Translation {
                pa: PhysAddr::new(iova),
                perm: Perm::READ | Perm::WRITE,
                page_size: 0,
                did: d.0,
            });
        };
        let (_, level, e) = self.find_leaf(pgd, iova)?;
        let size = tables::level_size(level);
        let mut perm = Perm::empty();
        perm.set(Perm::READ, e & tables::SL_R != 0);
        perm.set(Perm::WRITE, e & tables::SL_W != 0);
        Some(Translation {
            pa: PhysAddr::new((e & tables::ADDR_MASK & !(size - 1)) | (iova & (size - 1))),
            perm,
            page_size: size,
            did: d.0,
        })
    }
}
