//! The root and context tables (spec §9.1, §9.3): attach and detach a device (with the invalidations §6.5.3.3 asks for), requester-ID aliases, and the software walk from the root table.

use super::*;
use crate::fault::FaultReason;
use crate::inval::ContextInval;
use crate::tables;

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    pub(super) fn context_table(&mut self, bus: u8) -> Result<PhysAddr, Error> {
        if let Some(&t) = self.context_tables.get(&bus) {
            return Ok(t);
        }
        let t = self.new_table()?;
        // §9.1: root entry lo = CTP | P; hi reserved (0) in legacy mode.
        let re = self.root + bus as u64 * 16;
        self.write_entry(re + 8u64, 0);
        self.write_entry(re, t.as_u64() | tables::ROOT_P);
        self.context_tables.insert(bus, t);
        Ok(t)
    }

    /// Attaches `bdf` to domain `d`: writes its context entry (detaching it from a
    /// previous domain first), identity-maps its RMRRs into translated domains, and
    /// performs the invalidations §6.5.3.3 asks for.
    pub fn attach(&mut self, bdf: Bdf, d: DomainId) -> Result<(), Error> {
        let dom = self.domains.get(&d.0).ok_or(Error::NoSuchDomain(d))?;
        let (kind, pgd) = (dom.kind, dom.pgd);
        if self.attached.get(&bdf.sid()) == Some(&d.0) {
            return Ok(());
        }
        if self.attached.contains_key(&bdf.sid()) {
            self.detach(bdf)?;
        }
        if kind != DomainKind::PassThrough {
            self.apply_rmrrs(bdf, d)?;
        }
        let ct = self.context_table(bdf.bus)?;
        // AW: the domain's depth for translated entries; for pass-through the largest
        // AGAW the unit supports (§9.3, Linux's msagaw), not the domain's depth.
        let (tt, ptr, aw) = match kind {
            DomainKind::PassThrough => (
                tables::TT_PASS_THROUGH,
                0,
                self.cap.max_levels().unwrap_or(self.levels),
            ),
            _ => (
                tables::TT_SECOND_LEVEL,
                pgd.map_or(0, |p| p.as_u64()),
                self.levels,
            ),
        };
        let (lo, hi) = tables::context_entry(ptr, tt, aw, d.0);
        let ce = ct + bdf.devfn() as u64 * 16;
        // High qword first, then the low one with P: the unit never sees a present
        // entry with a stale DID/AW.
        self.write_entry(ce + 8u64, hi);
        self.write_entry(ce, lo);
        self.attached.insert(bdf.sid(), d.0);
        if let Some(x) = self.domains.get_mut(&d.0) {
            x.devices += 1;
        }
        if self.cap.cm {
            // §6.1 caching mode: not-present entries may be cached (tagged DID 0).
            self.flush_context(ContextInval::Device {
                did: 0,
                sid: bdf.sid(),
                fm: 0,
            })?;
            self.flush_iotlb(IotlbInval::Domain(d.0))?;
        } else {
            // A not-present → present change needs no invalidation, only the write
            // buffer flush when CAP.RWBF (§6.8).
            self.flush_write_buffer()?;
        }
        log::info!(
            "DMAR: {} attached to domain {} ({kind:?})",
            bdf.short(),
            d.0
        );
        Ok(())
    }

    /// Detaches `bdf`: clears its context entry, then device-selective context-cache
    /// and domain-selective IOTLB invalidation (§6.5.3.3).
    pub fn detach(&mut self, bdf: Bdf) -> Result<DomainId, Error> {
        let did = self
            .attached
            .remove(&bdf.sid())
            .ok_or(Error::NotAttached(bdf))?;
        if let Some(ct) = self.context_tables.get(&bdf.bus).copied() {
            let ce = ct + bdf.devfn() as u64 * 16;
            self.write_entry(ce, 0);
            self.write_entry(ce + 8u64, 0);
        }
        if let Some(x) = self.domains.get_mut(&did) {
            x.devices = x.devices.saturating_sub(1);
        }
        self.flush_context(ContextInval::Device {
            did,
            sid: bdf.sid(),
            fm: 0,
        })?;
        self.flush_iotlb(IotlbInval::Domain(did))?;
        Ok(DomainId(did))
    }

    /// The domain one of `aliases` (the requester IDs a device's DMA can carry,
    /// see `pci::Topology::dma_aliases`) is already attached to. The unit tells
    /// requests apart by source-id alone (§3.4), so a device sharing an ID with
    /// an attached device must join that device's domain: no isolation between
    /// them is possible.
    pub fn group_domain(&self, aliases: &[Bdf]) -> Option<DomainId> {
        aliases.iter().find_map(|a| self.domain_of(*a))
    }

    /// Attaches a device to `d` under every requester ID its DMA can carry:
    /// `aliases[0]` is its own (moved from a previous domain, as
    /// [`RemappingUnit::attach`] does), the others are those bridges substitute
    /// for it, one context entry each. An alias already in another domain is
    /// refused before anything is written ([`Error::AliasInOtherDomain`]):
    /// taking it would silently move the devices that share it.
    pub fn attach_aliases(&mut self, aliases: &[Bdf], d: DomainId) -> Result<(), Error> {
        if !self.domains.contains_key(&d.0) {
            return Err(Error::NoSuchDomain(d));
        }
        for a in aliases.iter().skip(1) {
            match self.domain_of(*a) {
                Some(other) if other != d => {
                    return Err(Error::AliasInOtherDomain(*a, other));
                }
                _ => {}
            }
        }
        for a in aliases {
            self.attach(*a, d)?;
        }
        Ok(())
    }

    /// Domain a device is attached to.
    pub fn domain_of(&self, bdf: Bdf) -> Option<DomainId> {
        self.attached.get(&bdf.sid()).map(|&d| DomainId(d))
    }

    /// Software walk from the root table in memory, for `iommu translate`: where would
    /// `iova` from `bus:devfn` land? Mirrors the hardware walk of §3.4-§3.7 and reports
    /// what would fault with the fault reason the unit would record. (Tests use the
    /// device model's independent walk as the oracle, not this.)
    ///
    /// An entry with neither permission fails as a read would (reason 0x6); use
    /// [`Self::translate_write`] for what a write would see.
    pub fn translate(&self, bdf: Bdf, iova: u64) -> Result<Translation, FaultReason> {
        let re = self.mem.read_u64(self.root + bdf.bus as u64 * 16);
        if re & tables::ROOT_P == 0 {
            return Err(FaultReason::ROOT_NOT_PRESENT);
        }
        let ce = PhysAddr::new(re & tables::ADDR_MASK) + bdf.devfn() as u64 * 16;
        let (lo, hi) = (self.mem.read_u64(ce), self.mem.read_u64(ce + 8u64));
        if lo & tables::CTX_P == 0 {
            return Err(FaultReason::CONTEXT_NOT_PRESENT);
        }
        let did = (hi >> tables::CTX_DID_SHIFT) as u16;
        let levels = (hi & 7) as u8 + 2;
        if !self.cap.supports_levels(levels) {
            return Err(FaultReason::CONTEXT_INVALID);
        }
        match (lo >> tables::CTX_TT_SHIFT) & 3 {
            tables::TT_PASS_THROUGH if self.ecap.pt => {
                return Ok(Translation {
                    pa: PhysAddr::new(iova),
                    perm: Perm::READ | Perm::WRITE,
                    page_size: 0,
                    did,
                })
            }
            tables::TT_SECOND_LEVEL => {}
            _ => return Err(FaultReason::CONTEXT_INVALID),
        }
        if iova >> tables::agaw_bits(levels).min(self.cap.mgaw as u32) != 0 {
            return Err(FaultReason::ADDRESS_BEYOND_AGAW);
        }
        let mut table = lo & tables::ADDR_MASK;
        let mut level = levels;
        let mut perm = Perm::READ | Perm::WRITE;
        loop {
            let e = self
                .mem
                .read_u64(PhysAddr::new(table + tables::level_index(iova, level) * 8));
            if e & tables::SL_R == 0 {
                perm.remove(Perm::READ);
            }
            if e & tables::SL_W == 0 {
                perm.remove(Perm::WRITE);
            }
            if perm.is_empty() {
                return Err(FaultReason::READ_DENIED);
            }
            if level == 1 || e & tables::SL_PS != 0 {
                let size = tables::level_size(level);
                return Ok(Translation {
                    pa: PhysAddr::new((e & tables::ADDR_MASK & !(size - 1)) | (iova & (size - 1))),
                    perm,
                    page_size: size,
                    did,
                });
            }
            table = e & tables::ADDR_MASK;
            level -= 1;
        }
    }

    /// The walk for a DMA write: where a read faults for lack of permission, or
    /// lands on a page without write permission, a write faults with reason 0x5
    /// (write denied), as the unit records it; other faults are the same.
    pub fn translate_write(&self, bdf: Bdf, iova: u64) -> Result<Translation, FaultReason> {
        match self.translate(bdf, iova) {
            Err(FaultReason::READ_DENIED) => Err(FaultReason::WRITE_DENIED),
            Ok(t) if !t.perm.contains(Perm::WRITE) => Err(FaultReason::WRITE_DENIED),
            other => other,
        }
    }
}
