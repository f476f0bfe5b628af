//! Host tests against `hal::Arena`: a fake machine with RAM in three zones and a
#![allow(unsafe_code)] // the test platform implements the unsafe DmaPlatform trait
//! swiotlb pool, all real bytes a test can inspect.

mod bounce;
mod coherent;
#[cfg(feature = "debug")]
mod debug;
mod iommu;
mod maptable;
mod pool;
mod sg;
mod vtd_sg;

use crate::{
    DebugEvent, DebugSink, DmaBackend, DmaDevice, DmaDirection, DmaPlatform, DmaZone, Swiotlb,
};
use hal::{Arena, DmaAddr, PhysAddr, PhysMemory, VirtAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

/// Swiotlb pool: [1 MiB, 1.5 MiB) — 256 slots, in ZONE_DMA and under a 21-bit mask.
pub const SWIOTLB_BASE: u64 = 0x10_0000;
pub const SWIOTLB_SIZE: usize = 512 * 1024;
/// RAM regions (base, size): ZONE_DMA, DMA32 above 256 MiB (out of edu's 28 bits), Normal.
pub const LOW: u64 = 0x20_0000;
pub const MID: u64 = 0x2000_0000;
pub const HIGH: u64 = 0x1_0000_0000;
const REGION: usize = 2 * 1024 * 1024;

struct Region {
    arena: Mutex<Arena>,
    base: u64,
    size: usize,
    /// Page allocation map; `None` for the reserved swiotlb region.
    pages: Option<Mutex<Vec<bool>>>,
}

/// The fake machine.
pub struct TestPlatform {
    regions: Vec<Region>,
    pub cache_for_device: AtomicUsize,
    pub cache_for_cpu: AtomicUsize,
    /// Limits passed to `alloc_pages`, in order.
    pub alloc_limits: Mutex<Vec<u64>>,
}

impl TestPlatform {
    fn region(&self, pa: u64, len: usize) -> &Region {
        match self
            .regions
            .iter()
            .find(|r| pa >= r.base && pa + len as u64 <= r.base + r.size as u64)
        {
            Some(r) => r,
            None => panic!("test platform: no RAM at [{pa:#x}+{len:#x}]"),
        }
    }

    /// Pages currently allocated, over all regions.
    pub fn pages_in_use(&self) -> usize {
        self.regions
            .iter()
            .filter_map(|r| r.pages.as_ref())
            .map(|p| p.lock().unwrap().iter().filter(|&&b| b).count())
            .sum()
    }

    pub fn bytes(&self, pa: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.read(PhysAddr::new(pa), &mut v);
        v
    }
}

impl PhysMemory for TestPlatform {
    fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        let r = self.region(pa.as_u64(), buf.len());
        r.arena.lock().unwrap().read(pa, buf)
    }
    fn write(&self, pa: PhysAddr, data: &[u8]) {
        let r = self.region(pa.as_u64(), data.len());
        r.arena.lock().unwrap().write(pa, data)
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> Option<VirtAddr> {
        let r = self
            .regions
            .iter()
            .find(|r| pa.as_u64() >= r.base && pa.as_u64() < r.base + r.size as u64)?;
        r.arena.lock().unwrap().phys_to_virt(pa)
    }
}

// SAFETY: blocks come from per-region page maps (exclusive until freed) inside one arena,
// whose host buffer maps them linearly for the arena's life (the platform is leaked).
unsafe impl DmaPlatform for TestPlatform {
    fn mem(&self) -> &dyn PhysMemory {
        self
    }

    /// Like the kernel: the limit picks a zone; the zone's allocator may return anything
    /// in the zone (highest region first, as Linux prefers the highest allowed zone).
    fn alloc_pages(&self, order: u32, limit: u64) -> Option<PhysAddr> {
        self.alloc_limits.lock().unwrap().push(limit);
        let top = DmaZone::for_limit(limit).limit();
        let n = 1usize << order;
        let block = (n * 4096) as u64;
        for r in self.regions.iter().rev() {
            let Some(pages) = &r.pages else { continue };
            let mut pages = pages.lock().unwrap();
            let mut i = 0;
            while i + n <= pages.len() {
                let addr = r.base + (i * 4096) as u64;
                if !addr.is_multiple_of(block) {
                    i += 1;
                    continue;
                }
                if addr + block - 1 > top {
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
        let r = self.region(pa.as_u64(), 4096 << order);
        let first = ((pa.as_u64() - r.base) / 4096) as usize;
        let mut pages = r
            .pages
            .as_ref()
            .expect("free in reserved region")
            .lock()
            .unwrap();
        for p in &mut pages[first..first + (1 << order)] {
            assert!(*p, "test platform: double free of page {pa:?}");
            *p = false;
        }
    }

    fn max_phys_addr(&self) -> u64 {
        HIGH + REGION as u64 - 1
    }

    fn cache_sync_for_device(&self, _pa: PhysAddr, _len: usize, _dir: DmaDirection) {
        self.cache_for_device.fetch_add(1, Ordering::Relaxed);
    }

    fn cache_sync_for_cpu(&self, _pa: PhysAddr, _len: usize, _dir: DmaDirection) {
        self.cache_for_cpu.fetch_add(1, Ordering::Relaxed);
    }
}

/// A fresh machine (leaked: handles need a `'static` platform, as in the kernel).
pub fn machine() -> &'static TestPlatform {
    let mk = |base: u64, size: usize, alloc: bool| Region {
        arena: Mutex::new(Arena::new(PhysAddr::new(base), size)),
        base,
        size,
        pages: alloc.then(|| Mutex::new(vec![false; size / 4096])),
    };
    Box::leak(Box::new(TestPlatform {
        regions: vec![
            mk(SWIOTLB_BASE, SWIOTLB_SIZE, false),
            mk(LOW, REGION, true),
            mk(MID, REGION, true),
            mk(HIGH, REGION, true),
        ],
        cache_for_device: AtomicUsize::new(0),
        cache_for_cpu: AtomicUsize::new(0),
        alloc_limits: Mutex::new(Vec::new()),
    }))
}

pub fn swiotlb(p: &'static TestPlatform) -> Arc<Swiotlb> {
    // SAFETY: the fake machine's reserved swiotlb region (no page allocator hands it
    // out); each machine is fresh, so the pool is its only user.
    Arc::new(unsafe { Swiotlb::new(p, PhysAddr::new(SWIOTLB_BASE), SWIOTLB_SIZE) }.unwrap())
}

/// Collects dma-debug events.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<DebugEvent>>);

impl DebugSink for Collect {
    fn report(&self, event: &DebugEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Collect {
    pub fn take(&self) -> Vec<DebugEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// An edu-like device (28-bit masks) with a collecting sink.
pub fn edu(
    p: &'static TestPlatform,
    backend: DmaBackend,
) -> (std::sync::Arc<DmaDevice>, Arc<Collect>) {
    let dev = DmaDevice::new("0000:00:03.0 edu", p, backend);
    dev.set_mask_and_coherent(crate::dma_bit_mask(28)).unwrap();
    let sink = Arc::new(Collect::default());
    dev.set_debug_sink(Some(sink.clone()));
    (dev, sink)
}

/// What a device does on the bus without an IOMMU: bus address = physical.
pub fn device_write(p: &TestPlatform, addr: DmaAddr, data: &[u8]) {
    p.write(PhysAddr::new(addr.as_u64()), data)
}

pub fn device_read(p: &TestPlatform, addr: DmaAddr, len: usize) -> Vec<u8> {
    p.bytes(addr.as_u64(), len)
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn test_platform_allocates_by_zone_and_frees() {
    let p = machine();
    let a = p.alloc_pages(0, crate::ZONE_DMA_LIMIT).unwrap();
    assert!(a.as_u64() >= LOW && a.as_u64() < LOW + REGION as u64);
    let b = p.alloc_pages(1, crate::ZONE_DMA32_LIMIT).unwrap();
    assert!(b.as_u64() >= MID && b.as_u64().is_multiple_of(8192));
    let c = p.alloc_pages(0, u64::MAX).unwrap();
    assert!(c.as_u64() >= HIGH);
    assert_eq!(p.pages_in_use(), 4);
    p.free_pages(a, 0);
    p.free_pages(b, 1);
    p.free_pages(c, 0);
    assert_eq!(p.pages_in_use(), 0);
}

/// The raw, `unsafe` layer on test-platform memory, under one safety argument.
pub trait RawMap {
    /// [`DmaDevice::map_single`].
    fn map_owned(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
    ) -> Result<DmaAddr, crate::DmaError>;
}

impl RawMap for DmaDevice {
    fn map_owned(
        &self,
        phys: PhysAddr,
        len: usize,
        dir: DmaDirection,
    ) -> Result<DmaAddr, crate::DmaError> {
        // SAFETY: the tests map arena RAM of the fake machine that they allocated and
        // keep until unmap (or addresses the map path must refuse); the arena is
        // plain host memory no other code uses.
        unsafe { self.map_single(phys, len, dir) }
    }
}

/// [`crate::SgTable::from_entries`] for tests, under the same argument as [`RawMap`].
pub trait CollectSg: Iterator<Item = crate::SgEntry> + Sized {
    /// Collects the entries into a table.
    fn collect_sg(self) -> crate::SgTable {
        // SAFETY: as for `RawMap::map_owned`: fake-machine RAM the test owns.
        unsafe { crate::SgTable::from_entries(self) }
    }
}

impl<I: Iterator<Item = crate::SgEntry>> CollectSg for I {}
