//! Domains: domain IDs (the DID tag), create/destroy, identity and pass-through domains, RMRR identity ranges (spec §8.4), and each domain's IOVA space.

use super::*;
use crate::iova::IovaAllocator;

/// A domain id (the DID tag in context entries and invalidations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u16);

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain {}", self.0)
    }
}

/// What a domain does with a device's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainKind {
    /// Second-level translation through our page tables (per-device DMA domains).
    Translated,
    /// Second-level tables mapping RAM 1:1 (for devices that must see physical
    /// addresses but should still be confined to RAM).
    Identity,
    /// Context TT=10: no translation at all (needs ECAP.PT).
    PassThrough,
}

pub(super) struct Domain {
    pub(super) kind: DomainKind,
    pub(super) pgd: Option<PhysAddr>,
    pub(super) iova: IovaAllocator,
    pub(super) devices: u32,
}

/// Domains indexed by id (ids are small and allocated lowest first): the
/// map and unmap paths look their domain up several times per call, and an
/// index is cheaper than a tree search, which matters under emulation.
pub(super) struct DomainTable(pub(super) Vec<Option<Domain>>);

impl DomainTable {
    #[inline]
    pub(super) fn get(&self, id: &u16) -> Option<&Domain> {
        self.0.get(*id as usize).and_then(Option::as_ref)
    }
    #[inline]
    pub(super) fn get_mut(&mut self, id: &u16) -> Option<&mut Domain> {
        self.0.get_mut(*id as usize).and_then(Option::as_mut)
    }
    pub(super) fn contains_key(&self, id: &u16) -> bool {
        self.get(id).is_some()
    }
    pub(super) fn insert(&mut self, id: u16, d: Domain) {
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        self.0[i] = Some(d);
    }
    pub(super) fn remove(&mut self, id: &u16) {
        if let Some(slot) = self.0.get_mut(*id as usize) {
            *slot = None;
        }
    }
}

pub(super) struct Rmrr {
    devices: Vec<Bdf>,
    base: u64,
    len: u64,
}

impl<R: RegisterAccess, M: PhysMemory, A: FrameAlloc> RemappingUnit<R, M, A> {
    pub(super) fn alloc_did(&self) -> Result<u16, Error> {
        // DID 0 is reserved when CAP.CM = 1 (§6.2.3.1); Linux never uses it, nor do we.
        let max = self.cap.domain_count().min(1 << 16);
        (1..max)
            .map(|d| d as u16)
            .find(|d| !self.domains.contains_key(d))
            .ok_or(Error::DomainIdsExhausted)
    }

    /// The highest free domain ID below min(CAP.ND's count, 256), for the
    /// unit's default domain.
    pub(super) fn alloc_did_top(&self) -> Result<u16, Error> {
        let max = self.cap.domain_count().min(256);
        (1..max)
            .rev()
            .map(|d| d as u16)
            .find(|d| !self.domains.contains_key(d))
            .ok_or(Error::DomainIdsExhausted)
    }

    /// Creates an empty domain of `kind` (use [`RemappingUnit::create_identity_domain`]
    /// to get the RAM mapped for [`DomainKind::Identity`]).
    pub fn create_domain(&mut self, kind: DomainKind) -> Result<DomainId, Error> {
        if kind == DomainKind::PassThrough && !self.ecap.pt {
            return Err(Error::NoPassThrough);
        }
        let did = self.alloc_did()?;
        self.create_domain_with(kind, did)
    }

    /// The unit's default domain, for the devices no driver has claimed:
    /// pass-through when ECAP.PT, else an identity domain over `ram`. It is
    /// made before any driver binds, and takes the highest free ID below 256
    /// (not the lowest), so drivers' domains get IDs 1, 2, ... in bind order
    /// whether it exists or not.
    pub fn create_default_domain(&mut self, ram: &[(PhysAddr, u64)]) -> Result<DomainId, Error> {
        let did = self.alloc_did_top()?;
        if self.ecap.pt {
            return self.create_domain_with(DomainKind::PassThrough, did);
        }
        let d = self.create_domain_with(DomainKind::Identity, did)?;
        if let Err(e) = self.map_identity(d, ram) {
            let _ = self.destroy_domain(d);
            return Err(e);
        }
        Ok(d)
    }

    /// A domain of `kind` with the highest free ID below 256, for the default
    /// domains made before any driver binds (see
    /// [`create_default_domain`](Self::create_default_domain)).
    pub fn create_domain_top(&mut self, kind: DomainKind) -> Result<DomainId, Error> {
        let did = self.alloc_did_top()?;
        self.create_domain_with(kind, did)
    }

    pub(super) fn create_domain_with(
        &mut self,
        kind: DomainKind,
        did: u16,
    ) -> Result<DomainId, Error> {
        if kind == DomainKind::PassThrough && !self.ecap.pt {
            return Err(Error::NoPassThrough);
        }
        let pgd = match kind {
            DomainKind::PassThrough => None,
            _ => Some(self.new_table()?),
        };
        let mut iova = IovaAllocator::new(
            PAGE_SIZE,
            self.cfg.flush_queue_len,
            self.cfg.flush_queue_delay,
        );
        let _ = iova.reserve(INTERRUPT_WINDOW.0, INTERRUPT_WINDOW.1);
        for &(s, l) in &self.iova_windows {
            // A fresh allocator holds only reservations: this cannot overlap.
            let _ = iova.reserve_window(s, l);
        }
        self.domains.insert(
            did,
            Domain {
                kind,
                pgd,
                iova,
                devices: 0,
            },
        );
        log::debug!("DMAR: created domain {did} ({kind:?})");
        Ok(DomainId(did))
    }

    /// An identity domain mapping each `(start, len)` RAM range 1:1, read/write, with
    /// 2 MiB pages where aligned and supported.
    pub fn create_identity_domain(&mut self, ram: &[(PhysAddr, u64)]) -> Result<DomainId, Error> {
        let d = self.create_domain(DomainKind::Identity)?;
        self.map_identity(d, ram)?;
        Ok(d)
    }

    pub(super) fn map_identity(
        &mut self,
        d: DomainId,
        ram: &[(PhysAddr, u64)],
    ) -> Result<(), Error> {
        for &(start, len) in ram {
            let s = start.as_u64() & !(PAGE_SIZE - 1);
            let e = (start.as_u64() + len).next_multiple_of(PAGE_SIZE);
            self.map(d, s, PhysAddr::new(s), e - s, Perm::READ | Perm::WRITE)?;
            let _ = self.domain_mut(d)?.iova.reserve(s, e - s);
        }
        Ok(())
    }

    #[inline]
    pub(super) fn domain_mut(&mut self, d: DomainId) -> Result<&mut Domain, Error> {
        self.domains.get_mut(&d.0).ok_or(Error::NoSuchDomain(d))
    }

    /// Keeps `[start, start + len)` out of every domain's IOVA space, now and
    /// for domains created later (Linux's `iova_reserve_pci_windows`: the PCI
    /// host bridge's memory windows, where a device's DMA would be claimed by
    /// a bridge or another device and never reach the unit). An identity
    /// domain maps RAM only, so a window never collides with its maps. Returns
    /// the first domain whose IOVAs already in use overlap the window (that
    /// domain keeps them; every other domain gets the window).
    pub fn reserve_iova_window(&mut self, start: u64, len: u64) -> Result<(), Error> {
        self.iova_windows.push((start, len));
        let mut first_err = None;
        for dom in self.domains.0.iter_mut().flatten() {
            if let Err(e) = dom.iova.reserve_window(start, len) {
                first_err.get_or_insert(Error::Iova(e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The IOVA windows [`RemappingUnit::reserve_iova_window`] keeps out.
    pub fn iova_windows(&self) -> &[(u64, u64)] {
        &self.iova_windows
    }

    /// One past the highest domain ID ever created (for walking every domain).
    pub(crate) fn domain_id_limit(&self) -> u16 {
        self.domains.0.len() as u16
    }

    /// The domain's IOVA allocator, read-only; `None` for no such domain.
    pub(crate) fn iova_allocator_of(&self, d: DomainId) -> Option<&IovaAllocator> {
        self.domains.get(&d.0).map(|dom| &dom.iova)
    }

    /// Kind of a domain.
    pub fn domain_kind(&self, d: DomainId) -> Option<DomainKind> {
        self.domains.get(&d.0).map(|x| x.kind)
    }

    /// The domain's IOVA allocator (for the DMA API backend).
    pub fn iova_allocator(&mut self, d: DomainId) -> Result<&mut IovaAllocator, Error> {
        Ok(&mut self.domain_mut(d)?.iova)
    }

    /// Allocates an IOVA range of `size` bytes below `dma_mask` (inclusive mask, e.g.
    /// `(1 << 28) - 1`) and below the tables' address width.
    #[inline]
    pub fn alloc_iova(&mut self, d: DomainId, size: u64, dma_mask: u64) -> Result<u64, Error> {
        let limit = dma_mask.saturating_add(1).min(self.address_limit());
        Ok(self.domain_mut(d)?.iova.alloc(size, limit)?.as_u64())
    }

    /// Queues an unmapped IOVA range for release after the next IOTLB flush of
    /// the domain: it stays unusable until [`RemappingUnit::iotlb_flushed`] (or its
    /// own [`RemappingUnit::free_iova`] after a flush covering it). Returns its
    /// size. See [`IovaAllocator::queue_iova`].
    #[inline]
    pub fn queue_iova(&mut self, d: DomainId, iova: u64, now: u64) -> Result<u64, Error> {
        Ok(self
            .domain_mut(d)?
            .iova
            .queue_iova(hal::DmaAddr::new(iova), now)?)
    }

    /// Frees an IOVA range at once: it was never mapped, or the caller has
    /// already removed its translations *and* the IOTLB invalidation covering it
    /// has completed (the `crates/dma` backend order: unmap → flush_iotlb →
    /// free_iova). A queued range may be freed this way too, once a flush
    /// covering just it has completed. See [`IovaAllocator::free_iova`].
    pub fn free_iova(&mut self, d: DomainId, iova: u64) -> Result<(), Error> {
        Ok(self
            .domain_mut(d)?
            .iova
            .free_iova(hal::DmaAddr::new(iova))?)
    }

    /// An IOTLB invalidation covering the domain's queued ranges has completed:
    /// releases them all; returns how many. See [`IovaAllocator::iotlb_flushed`].
    pub fn iotlb_flushed(&mut self, d: DomainId) -> Result<usize, Error> {
        Ok(self.domain_mut(d)?.iova.iotlb_flushed())
    }

    /// Destroys a domain without devices: frees its tables and flushes its IOTLB
    /// entries so the id can be reused.
    pub fn destroy_domain(&mut self, d: DomainId) -> Result<(), Error> {
        let dom = self.domains.get(&d.0).ok_or(Error::NoSuchDomain(d))?;
        if dom.devices != 0 {
            return Err(Error::DomainBusy(d));
        }
        let pgd = dom.pgd;
        if dom.kind != DomainKind::PassThrough {
            self.flush_iotlb(IotlbInval::Domain(d.0))?;
        }
        if let Some(p) = pgd {
            self.free_tables(p, self.levels);
        }
        if self.leaf_cache.is_some_and(|(did, _, _)| did == d.0) {
            self.leaf_cache = None;
        }
        self.domains.remove(&d.0);
        Ok(())
    }

    /// Registers an RMRR (from the DMAR table): `[base, base + len)` must stay
    /// identity-mapped for `devices` in whatever translated domain they are attached
    /// to (spec §8.4).
    pub fn add_rmrr(&mut self, devices: &[Bdf], base: u64, len: u64) {
        self.rmrrs.push(Rmrr {
            devices: devices.to_vec(),
            base,
            len,
        });
    }

    /// Whether an RMRR names `bdf` (its firmware keeps using that memory, so it
    /// cannot be left with nothing mapped).
    pub fn has_rmrr(&self, bdf: Bdf) -> bool {
        self.rmrrs
            .iter()
            .any(|r| r.devices.iter().any(|x| x.sid() == bdf.sid()))
    }

    pub(super) fn apply_rmrrs(&mut self, bdf: Bdf, d: DomainId) -> Result<(), Error> {
        let ranges: Vec<(u64, u64)> = self
            .rmrrs
            .iter()
            .filter(|r| r.devices.iter().any(|x| x.sid() == bdf.sid()))
            .map(|r| (r.base, r.len))
            .collect();
        for (base, len) in ranges {
            let s = base & !(PAGE_SIZE - 1);
            let e = (base + len).next_multiple_of(PAGE_SIZE);
            for p in (s..e).step_by(PAGE_SIZE as usize) {
                match self.translate_domain(d, p) {
                    Some(t) if t.pa.as_u64() == p => continue,
                    Some(_) => return Err(Error::AlreadyMapped(p)),
                    None => {
                        self.map(d, p, PhysAddr::new(p), PAGE_SIZE, Perm::READ | Perm::WRITE)?
                    }
                }
            }
            let _ = self.domain_mut(d)?.iova.reserve(s, e - s);
        }
        Ok(())
    }
}
