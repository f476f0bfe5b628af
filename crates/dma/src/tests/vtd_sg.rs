//! Scatter-gather behind the real VT-d driver (crates/iommu-vtd) on the
//! devmodels VT-d unit: every "where does this IOVA land" is answered by the
//! model's own page walk, never by reading our tables back.

use super::*;
use crate::iommu::{IommuDomain, IommuError, IommuPerm};
use crate::{DmaError, SgTable};
use devmodels::vtd::VtdModel;
use hal::Bdf;
use iommu_vtd::{Config, DomainId, DomainKind, FrameAlloc, InvalMode, Perm, RemappingUnit};

/// Table pages from the test machine's allocator.
struct PlatFrames(&'static TestPlatform);

impl FrameAlloc for PlatFrames {
    fn alloc_page(&mut self) -> Option<PhysAddr> {
        self.0.alloc_pages(0, u64::MAX)
    }
    fn free_page(&mut self, pa: PhysAddr) {
        self.0.free_pages(pa, 0)
    }
}

type Unit = RemappingUnit<VtdModel<&'static TestPlatform>, &'static TestPlatform, PlatFrames>;

const EDU: Bdf = Bdf::b(0, 3, 0);

/// The DMA API's view of one translated VT-d domain (what the kernel's
/// `VtdDomain` does, strict mode), with call counters and a map failure switch.
struct ModelDomain {
    unit: Unit,
    did: DomainId,
    maps: usize,
    flushes: usize,
    fail_map_at: Option<usize>,
    last_alloc: Option<u64>,
}

impl IommuDomain for ModelDomain {
    fn alloc_iova(&mut self, len: u64, mask: u64) -> Option<DmaAddr> {
        let a = self.unit.alloc_iova(self.did, len, mask).ok();
        self.last_alloc = a;
        a.map(DmaAddr::new)
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
        self.maps += 1;
        if self.fail_map_at == Some(self.maps) {
            return Err(IommuError::OutOfMemory);
        }
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
        self.flushes += 1;
        self.unit
            .flush_iotlb_range(self.did, iova.as_u64(), len)
            .map_err(|_| IommuError::FlushFailed)
    }
}

type Shared = Arc<spin::Mutex<ModelDomain>>;

/// A machine with a VT-d unit translating for edu (00:03.0) and edu's
/// DmaDevice behind it.
fn setup() -> (&'static TestPlatform, Shared, std::sync::Arc<DmaDevice>) {
    let p = machine();
    let model = VtdModel::qemu_default(p);
    let cfg = Config {
        inval: Some(InvalMode::Queued),
        poll_budget: 16,
        ..Config::default()
    };
    let mut unit = RemappingUnit::new(model, p, PlatFrames(p), cfg).unwrap();
    let did = unit.create_domain(DomainKind::Translated).unwrap();
    unit.attach(EDU, did).unwrap();
    unit.enable_translation().unwrap();
    let shared: Shared = Arc::new(spin::Mutex::new(ModelDomain {
        unit,
        did,
        maps: 0,
        flushes: 0,
        fail_map_at: None,
        last_alloc: None,
    }));
    let (dev, _sink) = edu(p, DmaBackend::Iommu(shared.clone()));
    (p, shared, dev)
}

/// Where the model's walk sends a device access of edu at `iova`.
fn lands(d: &Shared, iova: u64, len: usize, write: bool) -> Result<u64, u8> {
    d.lock()
        .unit
        .registers()
        .dma(EDU.bus, EDU.devfn(), iova, len, write)
        .map(|pa| pa.as_u64())
        .map_err(|f| f.reason)
}

/// Three separate pages (not adjacent in physical memory).
fn scattered(p: &'static TestPlatform, n: usize) -> Vec<PhysAddr> {
    let pages: Vec<PhysAddr> = (0..2 * n)
        .map(|_| p.alloc_pages(0, crate::dma_bit_mask(32)).unwrap())
        .collect();
    // Every other one, backwards: no two neighbours are physically adjacent.
    pages.iter().rev().step_by(2).copied().collect()
}

#[test]
fn page_aligned_pieces_get_one_contiguous_iova_range() {
    let (p, d, dev) = setup();
    let pages = scattered(p, 3);
    let table: SgTable = pages
        .iter()
        .map(|&pa| crate::sg::SgEntry {
            phys: pa,
            len: 4096,
        })
        .collect_sg();
    let m = dev.map_sg(table, DmaDirection::FromDevice).unwrap();
    assert_eq!(m.segments().len(), 1, "{:?}", m.segments());
    let seg = m.segments()[0];
    assert_eq!(seg.len, 3 * 4096);
    let (start, len) = m.iova_range().unwrap();
    assert_eq!(seg.addr, start);
    assert!(len >= 3 * 4096);
    assert!(start.as_u64() + len <= 1 << 28, "beyond edu's mask");
    for (i, pa) in pages.iter().enumerate() {
        let iova = seg.addr.as_u64() + i as u64 * 4096;
        assert_eq!(lands(&d, iova + 0x10, 1, true), Ok(pa.as_u64() + 0x10));
        // FromDevice: the device may write, not read.
        assert_eq!(lands(&d, iova, 1, false), Err(6), "read allowed");
    }
    // One device write across the whole run scatters into the three pages.
    let data: Vec<u8> = (0..3 * 4096).map(|i| (i / 4096 + 1) as u8).collect();
    d.lock()
        .unit
        .registers()
        .dma_write(EDU.bus, EDU.devfn(), seg.addr.as_u64(), &data)
        .unwrap();
    for (i, pa) in pages.iter().enumerate() {
        assert_eq!(p.bytes(pa.as_u64(), 4096), vec![(i + 1) as u8; 4096]);
    }
    // Unmapped as one: one invalidation, every page blocked, the range free again.
    let maps_before = d.lock().maps;
    let flushes = d.lock().flushes;
    drop(m);
    assert_eq!(d.lock().flushes, flushes + 1, "not one unmap");
    for i in 0..3u64 {
        assert_eq!(lands(&d, start.as_u64() + i * 4096, 1, true), Err(5));
    }
    assert!(dev.mappings().is_empty());
    let again: SgTable = pages
        .iter()
        .map(|&pa| crate::sg::SgEntry {
            phys: pa,
            len: 4096,
        })
        .collect_sg();
    let m2 = dev.map_sg(again, DmaDirection::ToDevice).unwrap();
    assert_eq!(m2.iova_range().unwrap().0, start, "range not reusable");
    assert_eq!(d.lock().maps, maps_before + 3);
}

#[test]
fn unaligned_interior_pieces_break_segments_but_share_the_range() {
    let (p, d, dev) = setup();
    let pages = scattered(p, 3);
    // A: ends on its page's end; B: starts at offset 0, ends mid-page;
    // C: starts mid-page.
    let a = (pages[0] + 0x100u64, 0xf00);
    let b = (pages[1], 0x800);
    let c = (pages[2] + 0x40u64, 0x200);
    let table: SgTable = [a, b, c]
        .iter()
        .map(|&(phys, len)| crate::sg::SgEntry { phys, len })
        .collect_sg();
    let m = dev.map_sg(table, DmaDirection::Bidirectional).unwrap();
    let (start, len) = m.iova_range().unwrap();
    let segs = m.segments().to_vec();
    // A and B meet at a page boundary: one segment; C starts a new one.
    assert_eq!(segs.len(), 2, "{segs:?}");
    assert_eq!(segs[0].addr.as_u64(), start.as_u64() + 0x100);
    assert_eq!(segs[0].len, 0xf00 + 0x800);
    assert_eq!(segs[1].addr.as_u64(), start.as_u64() + 0x2000 + 0x40);
    assert_eq!(segs[1].len, 0x200);
    assert!(segs[1].addr.as_u64() + 0x200 <= start.as_u64() + len);
    for (iova, pa) in [
        (segs[0].addr.as_u64(), a.0),
        (segs[0].addr.as_u64() + 0xf00, b.0),
        (segs[0].addr.as_u64() + 0xf00 + 0x7ff, b.0 + 0x7ffu64),
        (segs[1].addr.as_u64(), c.0),
    ] {
        assert_eq!(lands(&d, iova, 1, false), Ok(pa.as_u64()));
    }
    drop(m);
    assert_eq!(lands(&d, start.as_u64() + 0x100, 1, false), Err(6));
}

#[test]
fn a_failed_piece_unmaps_the_others_and_frees_the_range() {
    let (p, d, dev) = setup();
    let pages = scattered(p, 3);
    let table: SgTable = pages
        .iter()
        .map(|&pa| crate::sg::SgEntry {
            phys: pa,
            len: 4096,
        })
        .collect_sg();
    d.lock().fail_map_at = Some(3);
    let err = dev
        .map_sg(table.clone(), DmaDirection::ToDevice)
        .unwrap_err();
    assert!(matches!(err, DmaError::Iommu { .. }), "{err}");
    assert!(dev.mappings().is_empty());
    let failed = d.lock().last_alloc.unwrap();
    // The two pieces mapped before the failure are gone again.
    for i in 0..2u64 {
        assert_eq!(lands(&d, failed + i * 4096, 1, false), Err(6));
    }
    d.lock().fail_map_at = None;
    let m = dev.map_sg(table, DmaDirection::ToDevice).unwrap();
    let (start, _) = m.iova_range().unwrap();
    assert_eq!(
        start.as_u64(),
        failed,
        "the failed attempt's range was not given back"
    );
    for (i, pa) in pages.iter().enumerate() {
        assert_eq!(
            lands(&d, start.as_u64() + i as u64 * 4096, 1, false),
            Ok(pa.as_u64())
        );
    }
}
