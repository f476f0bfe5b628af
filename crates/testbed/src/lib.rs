//! The fake machine the storage drivers' host tests run on: RAM in regions
//! (a swiotlb pool, 4 MiB below 4 GiB, 4 MiB above) backed by byte arenas, a
//! page allocator over them (`DmaPlatform`), and the bus a device model sees
//! without an IOMMU (bus address = physical; outside RAM faults). Shared by
//! `crates/ahci` and `crates/nvme` (and any later driver crate's tests).
#![allow(unsafe_code)] // the platform implements the unsafe DmaPlatform trait

use devmodels::ahci::{BusFault, DmaBus};
use dma::{DmaPlatform, DmaZone};
use hal::{Arena, PhysAddr, PhysMemory, VirtAddr};
use std::sync::Mutex;

pub const SWIOTLB_BASE: u64 = 0x10_0000;
pub const SWIOTLB_SIZE: usize = 512 * 1024;
pub const LOW: u64 = 0x40_0000;
pub const HIGH: u64 = 0x1_0000_0000;
pub const REGION: usize = 4 << 20;

pub struct Region {
    arena: Mutex<Arena>,
    base: u64,
    size: usize,
    pages: Option<Mutex<Vec<bool>>>,
}

/// RAM: the swiotlb pool (reserved), 4 MiB below 4 GiB, 4 MiB above.
pub struct Machine {
    regions: Vec<Region>,
}

impl Machine {
    pub fn region(&self, pa: u64, len: usize) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| pa >= r.base && pa + len as u64 <= r.base + r.size as u64)
    }

    pub fn bytes(&self, pa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.read(PhysAddr::new(pa), &mut v);
        v
    }
}

impl PhysMemory for Machine {
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        match self.region(pa.as_u64(), buf.len()) {
            Some(r) => r.arena.lock().unwrap().read(pa, buf),
            None => panic!("no RAM at {pa:?}+{:#x}", buf.len()),
        }
    }
    fn write(&self, pa: PhysAddr, data: &[u8]) {
        match self.region(pa.as_u64(), data.len()) {
            Some(r) => r.arena.lock().unwrap().write(pa, data),
            None => panic!("no RAM at {pa:?}+{:#x}", data.len()),
        }
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        self.region(pa.as_u64(), 1)?
            .arena
            .lock()
            .unwrap()
            .phys_to_virt(pa)
    }
}

// SAFETY: blocks come from per-region page maps (exclusive until freed) inside one
// arena each, whose host buffer maps them linearly for the machine's (leaked) life.
unsafe impl DmaPlatform for Machine {
    fn mem(&self) -> &dyn PhysMemory {
        self
    }
    /// Highest region first, as long as the block is under the zone of `limit`.
    fn alloc_pages(&self, order: u32, limit: u64) -> Option<PhysAddr> {
        let top = DmaZone::for_limit(limit).limit();
        let n = 1usize << order;
        for r in self.regions.iter().rev() {
            let Some(pages) = &r.pages else { continue };
            let mut pages = pages.lock().unwrap();
            let mut i = 0;
            while i + n <= pages.len() {
                let addr = r.base + (i * 4096) as u64;
                if addr + (n * 4096) as u64 - 1 > top {
                    break;
                }
                if pages[i..i + n].iter().all(|&b| !b) {
                    pages[i..i + n].iter_mut().for_each(|b| *b = true);
                    return Some(PhysAddr::new(addr));
                }
                i += n;
            }
        }
        None
    }
    fn free_pages(&self, pa: PhysAddr, order: u32) {
        let r = self.region(pa.as_u64(), 4096 << order).unwrap();
        let first = ((pa.as_u64() - r.base) / 4096) as usize;
        let mut pages = r.pages.as_ref().unwrap().lock().unwrap();
        for p in &mut pages[first..first + (1 << order)] {
            assert!(*p, "double free of {pa:?}");
            *p = false;
        }
    }
    fn max_phys_addr(&self) -> u64 {
        HIGH + REGION as u64 - 1
    }
}

pub fn machine() -> &'static Machine {
    let mk = |base: u64, size: usize, alloc: bool| Region {
        arena: Mutex::new(Arena::new(PhysAddr::new(base), size)),
        base,
        size,
        pages: alloc.then(|| Mutex::new(vec![false; size / 4096])),
    };
    Box::leak(Box::new(Machine {
        regions: vec![
            mk(SWIOTLB_BASE, SWIOTLB_SIZE, false),
            mk(LOW, REGION, true),
            mk(HIGH, REGION, true),
        ],
    }))
}

/// The HBA's bus without an IOMMU: bus address = physical, outside RAM faults.
pub struct Direct(pub &'static Machine);

impl DmaBus for Direct {
    fn dma_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BusFault> {
        self.0
            .region(addr, buf.len())
            .ok_or(BusFault { addr, write: false })?;
        self.0.read(PhysAddr::new(addr), buf);
        Ok(())
    }
    fn dma_write(&self, addr: u64, data: &[u8]) -> Result<(), BusFault> {
        self.0
            .region(addr, data.len())
            .ok_or(BusFault { addr, write: true })?;
        self.0.write(PhysAddr::new(addr), data);
        Ok(())
    }
}

/// A scatter list of (physical address, length) pieces.
/// Host tests only: the addresses are the fake [`Machine`]'s memory.
pub fn table(entries: &[(u64, usize)]) -> dma::SgTable {
    let entries = entries.iter().map(|&(p, l)| dma::SgEntry {
        phys: PhysAddr::new(p),
        len: l,
    });
    // SAFETY: testbed is a host-only test crate: its tables address the fake
    // Machine's memory, which the calling test owns; no real device exists.
    unsafe { dma::SgTable::from_entries(entries) }
}

/// A block-layer request for the pieces `entries` (512-byte sectors) from `lba`,
/// a segment per piece.
pub fn request(lba: u64, entries: &[(u64, usize)]) -> block::Request {
    let len: usize = entries.iter().map(|e| e.1).sum();
    block::Request {
        lba,
        sectors: (len / 512) as u64,
        sg: table(entries),
        segments: entries.len(),
    }
}

/// The bytes of the pieces, in order.
pub fn gather(m: &Machine, entries: &[(u64, usize)]) -> Vec<u8> {
    entries.iter().flat_map(|&(p, l)| m.bytes(p, l)).collect()
}

/// Writes `data` across the pieces, in order.
pub fn scatter(m: &Machine, entries: &[(u64, usize)], data: &[u8]) {
    let mut off = 0;
    for &(p, l) in entries {
        m.write(PhysAddr::new(p), &data[off..off + l]);
        off += l;
    }
}

/// The device behind the real VT-d driver on the VT-d model: every address
/// it is given is an IOVA the model's page walk translates.
pub mod vtd {
    use super::*;
    use devmodels::vtd::VtdModel;
    use dma::{IommuDomain, IommuError, IommuPerm};
    use hal::Bdf;
    use hal::DmaAddr;
    use iommu_vtd::{
        Config as VtdConfig, DomainId, DomainKind, FrameAlloc, InvalMode, Perm, RemappingUnit,
    };
    use std::sync::Arc;

    /// Page-table frames for the VT-d driver, from the machine's allocator.
    pub struct Frames(pub &'static Machine);

    impl FrameAlloc for Frames {
        fn alloc_page(&mut self) -> Option<PhysAddr> {
            self.0.alloc_pages(0, u64::MAX)
        }
        fn free_page(&mut self, pa: PhysAddr) {
            self.0.free_pages(pa, 0)
        }
    }

    /// The real VT-d driver on QEMU's default VT-d model, over the machine.
    pub type Unit = RemappingUnit<VtdModel<&'static Machine>, &'static Machine, Frames>;

    /// Strict-mode domain, as the kernel's glue does it, with the device it
    /// translates for.
    pub struct Domain {
        pub unit: Unit,
        pub did: DomainId,
        pub dev: Bdf,
    }

    impl IommuDomain for Domain {
        fn alloc_iova(&mut self, len: u64, mask: u64) -> Option<DmaAddr> {
            self.unit
                .alloc_iova(self.did, len, mask)
                .ok()
                .map(DmaAddr::new)
        }
        fn free_iova(&mut self, iova: DmaAddr, _len: u64) {
            self.unit.free_iova(self.did, iova.as_u64()).unwrap();
        }
        fn map(
            &mut self,
            iova: DmaAddr,
            phys: PhysAddr,
            len: u64,
            perm: IommuPerm,
        ) -> Result<(), IommuError> {
            let mut p = Perm::empty();
            p.set(Perm::READ, perm.contains(IommuPerm::READ));
            p.set(Perm::WRITE, perm.contains(IommuPerm::WRITE));
            self.unit
                .map(self.did, iova.as_u64(), phys, len, p)
                .map_err(|_| IommuError::AlreadyMapped)
        }
        fn unmap(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
            self.unit
                .unmap(self.did, iova.as_u64(), len)
                .map(|_| ())
                .map_err(|_| IommuError::NotMapped)
        }
        fn flush_iotlb(&mut self, iova: DmaAddr, len: u64) -> Result<(), IommuError> {
            self.unit
                .flush_iotlb_range(self.did, iova.as_u64(), len)
                .map_err(|_| IommuError::FlushFailed)
        }
    }

    pub type Shared = Arc<spin::Mutex<Domain>>;

    /// The device's requests go through the VT-d model with its requester ID.
    pub struct Translated(pub Shared);

    impl DmaBus for Translated {
        fn dma_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), BusFault> {
            let d = self.0.lock();
            let dev = d.dev;
            d.unit
                .registers()
                .dma_read(dev.bus, dev.devfn(), addr, buf)
                .map_err(|_| BusFault { addr, write: false })
        }
        fn dma_write(&self, addr: u64, data: &[u8]) -> Result<(), BusFault> {
            let d = self.0.lock();
            let dev = d.dev;
            d.unit
                .registers()
                .dma_write(dev.bus, dev.devfn(), addr, data)
                .map_err(|_| BusFault { addr, write: true })
        }
    }

    /// A VT-d unit (queued invalidation) with one translated domain that `dev`
    /// is attached to, translation on.
    pub fn setup(mc: &'static Machine, dev: Bdf) -> Shared {
        let model = VtdModel::qemu_default(mc);
        let cfg = VtdConfig {
            inval: Some(InvalMode::Queued),
            poll_budget: 16,
            ..VtdConfig::default()
        };
        let mut unit = RemappingUnit::new(model, mc, Frames(mc), cfg).unwrap();
        let did = unit.create_domain(DomainKind::Translated).unwrap();
        unit.attach(dev, did).unwrap();
        unit.enable_translation().unwrap();
        Arc::new(spin::Mutex::new(Domain { unit, did, dev }))
    }
}
